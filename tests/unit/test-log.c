/*
 * log.c on the stderr target: the exact line format with and without
 * context, the priority filter, %m and errno, long and multi-line messages,
 * whole lines from concurrent threads, and the fallback from an absent journal.
 * As root, the journal target is checked too, against a socket of our own at
 * /run/systemd/journal/socket in a private mount namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog-ids.h"
#include "log.h"
#include "test.h"

#define THREADS 4
#define LINES_PER_THREAD 400

static char out_path[] = "/tmp/test-log-XXXXXX";
static int out_fd = -1, saved_stderr = -1;

/* Send stderr to the capture file, emptied. */
static void
capture(void)
{
	check(ftruncate(out_fd, 0) == 0);
	check(dup2(out_fd, STDERR_FILENO) == STDERR_FILENO);
}

/* Restore stderr (so failed checks show) and return what was captured (caller frees). */
static char *
take_output(void)
{
	char *buf;
	off_t size;

	check(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
	size = lseek(out_fd, 0, SEEK_END);
	check(size >= 0);
	buf = malloc((size_t)size + 1);
	check(buf != NULL);
	check(pread(out_fd, buf, (size_t)size, 0) == size);
	buf[size] = '\0';
	return buf;
}

static void
check_output(const char *expect)
{
	char *got = take_output();

	check_str(got, expect);
	free(got);
}

static void
test_format(void)
{
	struct log_ctx ctx = {
	    .job = "backup-1",
	    .state = "drive_prep",
	    .drive = "WD-123",
	    .message_id = SEEDD_MESSAGE_DRIVE_DONE,
	};
	struct log_ctx only_state = {.state = "shipped"};
	struct log_ctx empty = {0};
	char expect[1024];
	int pid = (int)getpid();

	check_int(log_get_target(), LOG_TARGET_STDERR);
	check(!log_to_journal());

	capture();
	log_ctx(LOG_NOTICE, &ctx, "drive %s done: %d files", "WD-123", 42);
	snprintf(expect, sizeof(expect),
	         "seedd[%d]: notice: [job=backup-1 state=drive_prep drive=WD-123] drive WD-123 "
	         "done: 42 files\n",
	         pid);
	check_output(expect);

	capture();
	log_info("plain %s", "message");
	log_ctx(LOG_ERR, &only_state, "deadline");
	log_ctx(LOG_WARNING, &empty, "nothing set");
	snprintf(expect, sizeof(expect),
	         "seedd[%d]: info: plain message\n"
	         "seedd[%d]: error: [state=shipped] deadline\n"
	         "seedd[%d]: warning: nothing set\n",
	         pid, pid, pid);
	check_output(expect);

	/* A message cannot forge a second line. */
	capture();
	log_warning("two\nlines\r\n");
	snprintf(expect, sizeof(expect), "seedd[%d]: warning: two lines  \n", pid);
	check_output(expect);
}

static void
test_priority_filter(void)
{
	char expect[256];
	int pid = (int)getpid();

	log_set_max_priority(LOG_INFO);
	check_int(log_get_max_priority(), LOG_INFO);
	capture();
	log_debug("dropped");
	check_output("");

	log_set_max_priority(LOG_DEBUG);
	capture();
	log_debug("kept");
	snprintf(expect, sizeof(expect), "seedd[%d]: debug: kept\n", pid);
	check_output(expect);

	log_set_max_priority(LOG_ERR);
	capture();
	log_warning("dropped");
	log_notice("dropped");
	log_error("kept");
	snprintf(expect, sizeof(expect), "seedd[%d]: error: kept\n", pid);
	check_output(expect);
	log_set_max_priority(LOG_INFO);
}

static void
test_errno_and_length(void)
{
	char expect[256], *big, *got;
	int pid = (int)getpid();

	capture();
	errno = ENOENT;
	log_error("open: %m");
	check_int(errno, ENOENT);
	snprintf(expect, sizeof(expect), "seedd[%d]: error: open: No such file or directory\n",
	         pid);
	check_output(expect);

	/* Longer than the stack buffer: printed in full, %m still right. */
	big = malloc(10001);
	check(big != NULL);
	memset(big, 'z', 10000);
	big[10000] = '\0';
	capture();
	errno = EACCES;
	log_info("%s %m", big);
	check_int(errno, EACCES);
	got = take_output();
	check(strstr(got, big) != NULL);
	check(strstr(got, " Permission denied\n") != NULL);
	check_int(strlen(got), strlen("seedd[]: info: ") + snprintf(NULL, 0, "%d", pid) + 10000 +
	                           strlen(" Permission denied\n"));
	free(got);
	free(big);
}

static void *
thread_main(void *arg)
{
	struct log_ctx ctx = {.job = arg};
	int i;

	for (i = 0; i < LINES_PER_THREAD; i++)
		log_ctx(LOG_INFO, &ctx, "line %04d %0200d", i, 0);
	return NULL;
}

/* Lines from concurrent threads never interleave. */
static void
test_threads(void)
{
	static const char *const names[THREADS] = {"ta", "tb", "tc", "td"};
	pthread_t t[THREADS];
	char prefix[64], *got, *line, *save = NULL;
	int counts[THREADS] = {0}, i, n = 0;
	size_t plen;

	capture();
	for (i = 0; i < THREADS; i++)
		check(pthread_create(&t[i], NULL, thread_main, (void *)names[i]) == 0);
	for (i = 0; i < THREADS; i++)
		check(pthread_join(t[i], NULL) == 0);

	got = take_output();
	plen = (size_t)snprintf(prefix, sizeof(prefix), "seedd[%d]: info: [job=t", (int)getpid());
	for (line = strtok_r(got, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		check(strncmp(line, prefix, plen) == 0);
		i = line[plen] - 'a';
		check(i >= 0 && i < THREADS);
		check(strncmp(line + plen + 1, "] line ", 7) == 0);
		check_int(strlen(line), plen + 1 + 7 + 4 + 1 + 200);
		counts[i]++;
		n++;
	}
	check_int(n, THREADS * LINES_PER_THREAD);
	for (i = 0; i < THREADS; i++)
		check_int(counts[i], LINES_PER_THREAD);
	free(got);
}

/* With no journal socket, AUTO means stderr and a journal target falls back to it. */
static void
test_journal_fallback(void)
{
	char expect[256];

	if (access("/run/systemd/journal/socket", F_OK) == 0) {
		fprintf(stdout, "journal socket present: fallback check skipped\n");
		return;
	}
	log_set_target(LOG_TARGET_AUTO);
	check_int(log_get_target(), LOG_TARGET_STDERR);

	log_set_target(LOG_TARGET_JOURNAL);
	check(log_to_journal());
	capture();
	log_ctx(LOG_NOTICE, &(struct log_ctx){.job = "j"}, "via fallback");
	snprintf(expect, sizeof(expect), "seedd[%d]: notice: [job=j] via fallback\n",
	         (int)getpid());
	check_output(expect);
	log_set_target(LOG_TARGET_STDERR);
}

/* In a child with its own /run/systemd: receive one native-protocol datagram. */
static int
journal_child(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char buf[4096];
	ssize_t n;
	int fd;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/run/systemd", "tmpfs", 0, "mode=0755") < 0 ||
	    mkdir("/run/systemd/journal", 0755) < 0)
		return TEST_SKIP;
	strcpy(sa.sun_path, "/run/systemd/journal/socket");
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	check(fd >= 0);
	check(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);

	log_set_target(LOG_TARGET_AUTO);
	check_int(log_get_target(), LOG_TARGET_JOURNAL);
	log_ctx(LOG_WARNING,
	        &(struct log_ctx){.job = "jj",
	                          .state = "shipped",
	                          .drive = "SER9",
	                          .message_id = SEEDD_MESSAGE_DEADLINE_NEAR},
	        "deadline in %d days", 3);
	n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	check(n > 0);
	buf[n] = '\0';
	check_str(buf, "MESSAGE=deadline in 3 days\nPRIORITY=4\nSYSLOG_IDENTIFIER=seedd\n"
	               "SEEDD_JOB=jj\nSEEDD_STATE=shipped\nSEEDD_DRIVE=SER9\n"
	               "MESSAGE_ID=" SEEDD_MESSAGE_DEADLINE_NEAR "\n");

	log_info("no context");
	n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	check(n > 0);
	buf[n] = '\0';
	check_str(buf, "MESSAGE=no context\nPRIORITY=6\nSYSLOG_IDENTIFIER=seedd\n");
	return 0;
}

static void
test_journal_native(void)
{
	pid_t pid;
	int status;

	if (geteuid() != 0 || access("/run/systemd", F_OK) < 0) {
		printf("not root or no /run/systemd: journal check skipped\n");
		return;
	}
	pid = fork();
	check(pid >= 0);
	if (pid == 0)
		_exit(journal_child());
	check(waitpid(pid, &status, 0) == pid);
	check(WIFEXITED(status));
	if (WEXITSTATUS(status) == TEST_SKIP)
		printf("no private mount namespace: journal check skipped\n");
	else
		check_int(WEXITSTATUS(status), 0);
}

int
main(void)
{
	out_fd = mkstemp(out_path);
	check(out_fd >= 0);
	check(fcntl(out_fd, F_SETFL, O_APPEND) == 0);
	saved_stderr = dup(STDERR_FILENO);
	check(saved_stderr >= 0);

	log_init(LOG_TARGET_STDERR, LOG_INFO);
	test_format();
	test_priority_filter();
	test_errno_and_length();
	test_threads();
	test_journal_fallback();
	test_journal_native();

	check(unlink(out_path) == 0);
	return 0;
}
