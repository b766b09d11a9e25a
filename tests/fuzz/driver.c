/*
 * Stand-alone runner of a fuzz target, linked when libFuzzer is not: runs
 * every file of a seed corpus directory, then N pseudo-random mutations of
 * them (bit flips, byte inserts and deletes, splices of two seeds,
 * truncations). The PRNG is xorshift64 with a fixed seed, so every run tries
 * the same inputs and a failure reproduces. Single-threaded.
 *
 *	fuzz-TARGET CORPUS_DIR [N]	seeds, then N mutations (default 20000)
 *	fuzz-TARGET FILE		that one input (a saved crash)
 *
 * A crash or a broken invariant aborts, which fails the test; the input that
 * did it is first saved to ./fuzz-crash-<iteration> (-1 for a seed).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#ifdef FUZZ_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#define SEEDS_MAX 1024
#define INPUT_MAX (256 * 1024) /* bytes; larger seeds are cut */
#define DEFAULT_RUNS 20000

struct seed {
	uint8_t *data;
	size_t len;
};

/* Byte strings worth inserting: UTF-8 edge cases and the parsers' syntax. */
/* clang-format off */
static const char *const tokens[] = {
	"\xf0\x9f\x98\x80", "\xc3\xa9", "\xed\xa0\x80", "\xef\xbf\xbe", "\xf4\x90\x80\x80",
	"\xc0\xaf", "\\u0000", "\\ud800", "\\ud83d\\ude00", "1e999", "-0", "0.5e-320",
	"9223372036854775808", "null", "[]", "{}", "\"\":", "&amp;", "&#0;", "<![CDATA[", "]]>",
	"<!DOCTYPE x>", "<?xml version=\"1.0\" encoding=\"UTF-16\"?>", "xmlns:a=\"u\"",
	"\r\n", "[Azure]", "=", "CON", "COM1.txt", ".seedd-tmp", "//", "/.", "..",
};
/* clang-format on */

static const uint8_t bytes[] = {
    0x00, 0xff, 0x7f, 0x80, 0xbf, 0xc0, 0xe0, 0xf0, 0xf4, '"',  '\\', '/',  '.', '<', '>', '&',
    '[',  ']',  '{',  '}',  ':',  ',',  '=',  '#',  '\n', '\r', ' ',  '\t', '-', '0', '9', 'a',
};

static uint64_t rng_state = 0x5eedd0f0220b1e55ULL;

/* What runs now, for the crash hooks. */
static const uint8_t *cur_data;
static size_t cur_len;
static long cur_iter = -1;
static volatile sig_atomic_t saved;

static uint64_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static size_t
rng_below(size_t n)
{
	return n > 0 ? (size_t)(rng() % n) : 0;
}

/* Async-signal-safe: write the current input to ./fuzz-crash-<iteration>. */
static void
save_input(void)
{
	char name[64] = "fuzz-crash-", digits[24];
	size_t n = strlen(name), k = 0;
	unsigned long v = cur_iter < 0 ? 1 : (unsigned long)cur_iter;
	int fd;

	if (saved || cur_data == NULL)
		return;
	saved = 1;
	if (cur_iter < 0)
		name[n++] = '-';
	do
		digits[k++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (k > 0)
		name[n++] = digits[--k];
	name[n] = '\0';
	if ((fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		return;
	if (write(fd, cur_data, cur_len) == (ssize_t)cur_len) {
		(void)!write(STDERR_FILENO, "fuzz: input saved to ", 21);
		(void)!write(STDERR_FILENO, name, n);
		(void)!write(STDERR_FILENO, "\n", 1);
	}
	close(fd);
}

static void
on_abort(int sig)
{
	save_input();
	signal(sig, SIG_DFL);
	raise(sig);
}

#ifdef FUZZ_ASAN
static void
on_sanitizer_death(void)
{
	save_input();
}
#endif

/* Run one input from its own exact-size allocation, as libFuzzer does. */
static void
run_one(const uint8_t *data, size_t len, long iter)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);

	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, data, len);
	cur_data = copy;
	cur_len = len;
	cur_iter = iter;
	(void)LLVMFuzzerTestOneInput(copy, len);
	cur_data = NULL;
	free(copy);
}

static int
read_file(int dirfd, const char *name, struct seed *ret)
{
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	ret->len = (size_t)st.st_size < INPUT_MAX ? (size_t)st.st_size : INPUT_MAX;
	if ((ret->data = malloc(ret->len + 1)) == NULL)
		abort();
	n = ret->len > 0 ? read(fd, ret->data, ret->len) : 0;
	close(fd);
	if (n < 0 || (size_t)n != ret->len) {
		free(ret->data);
		return -EIO;
	}
	return 0;
}

/* Every regular file of dir, in name order, into seeds; their number or -1. */
static long
load_seeds(const char *dir, struct seed *seeds)
{
	struct dirent **names;
	int n, dirfd;
	long count = 0;

	if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (n = scandir(dir, &names, NULL, alphasort)) < 0) {
		fprintf(stderr, "fuzz: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.' && count < SEEDS_MAX &&
		    read_file(dirfd, names[i]->d_name, &seeds[count]) == 0)
			count++;
		free(names[i]);
	}
	free(names);
	close(dirfd);
	return count;
}

/* Make room for n bytes at pos; false if the input would grow past INPUT_MAX. */
static bool
open_gap(uint8_t *buf, size_t *len, size_t pos, size_t n)
{
	if (*len + n > INPUT_MAX)
		return false;
	memmove(buf + pos + n, buf + pos, *len - pos);
	*len += n;
	return true;
}

static void
insert_bytes(uint8_t *buf, size_t *len, const void *what, size_t n)
{
	size_t pos = rng_below(*len + 1);

	if (open_gap(buf, len, pos, n))
		memcpy(buf + pos, what, n);
}

static void
insert_token(uint8_t *buf, size_t *len)
{
	const char *t = tokens[rng_below(sizeof(tokens) / sizeof(tokens[0]))];

	insert_bytes(buf, len, t, strlen(t));
}

static void
delete_range(uint8_t *buf, size_t *len)
{
	size_t pos, n;

	if (*len == 0)
		return;
	pos = rng_below(*len);
	n = 1 + rng_below(*len - pos < 16 ? *len - pos : 16);
	memmove(buf + pos, buf + pos + n, *len - pos - n);
	*len -= n;
}

/* Copy up to 64 bytes of the input to another place in it. */
static void
duplicate_chunk(uint8_t *buf, size_t *len)
{
	uint8_t chunk[64];
	size_t from, n;

	if (*len == 0)
		return;
	from = rng_below(*len);
	n = 1 + rng_below(*len - from < sizeof(chunk) ? *len - from : sizeof(chunk));
	memcpy(chunk, buf + from, n);
	insert_bytes(buf, len, chunk, n);
}

/* Keep a prefix of the input and append a suffix of another seed. */
static void
splice_seed(uint8_t *buf, size_t *len, const struct seed *other)
{
	size_t keep = rng_below(*len + 1), from = rng_below(other->len + 1);
	size_t n = other->len - from;

	if (keep + n > INPUT_MAX)
		n = INPUT_MAX - keep;
	memcpy(buf + keep, other->data + from, n);
	*len = keep + n;
}

static void
mutate_once(uint8_t *buf, size_t *len, const struct seed *seeds, size_t n_seeds)
{
	uint8_t b;

	switch (rng_below(8)) {
	case 0:
		if (*len > 0)
			buf[rng_below(*len)] ^= (uint8_t)(1u << rng_below(8));
		break;
	case 1:
		if (*len > 0)
			buf[rng_below(*len)] = bytes[rng_below(sizeof(bytes))];
		break;
	case 2:
		b = rng_below(2) ? bytes[rng_below(sizeof(bytes))] : (uint8_t)rng();
		insert_bytes(buf, len, &b, 1);
		break;
	case 3:
		insert_token(buf, len);
		break;
	case 4:
		delete_range(buf, len);
		break;
	case 5:
		duplicate_chunk(buf, len);
		break;
	case 6:
		splice_seed(buf, len, &seeds[rng_below(n_seeds)]);
		break;
	default:
		*len = rng_below(*len + 1);
		break;
	}
}

/* N runs, each of a seed put through 1 to 4 mutations. */
static void
run_mutations(const struct seed *seeds, size_t n_seeds, long runs)
{
	uint8_t *buf = malloc(INPUT_MAX);

	if (buf == NULL)
		abort();
	for (long i = 0; i < runs; i++) {
		const struct seed *s = &seeds[rng_below(n_seeds)];
		size_t len = s->len;
		unsigned k = 1 + (unsigned)rng_below(4);

		memcpy(buf, s->data, len);
		while (k-- > 0)
			mutate_once(buf, &len, seeds, n_seeds);
		run_one(buf, len, i);
	}
	free(buf);
}

static void
install_hooks(void)
{
	signal(SIGABRT, on_abort);
#ifdef FUZZ_ASAN
	__sanitizer_set_death_callback(on_sanitizer_death);
#endif
}

int
main(int argc, char **argv)
{
	static struct seed seeds[SEEDS_MAX];
	struct stat st;
	long n, runs = DEFAULT_RUNS;
	char *end;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s CORPUS_DIR [N] | %s FILE\n", argv[0], argv[0]);
		return 2;
	}
	if (argc == 3) {
		errno = 0;
		runs = strtol(argv[2], &end, 10);
		if (errno != 0 || *end != '\0' || end == argv[2] || runs < 0) {
			fprintf(stderr, "fuzz: bad count %s\n", argv[2]);
			return 2;
		}
	}
	install_hooks();
	if (stat(argv[1], &st) == 0 && S_ISREG(st.st_mode)) {
		if (read_file(AT_FDCWD, argv[1], &seeds[0]) < 0) {
			fprintf(stderr, "fuzz: cannot read %s\n", argv[1]);
			return 2;
		}
		run_one(seeds[0].data, seeds[0].len, -1);
		printf("fuzz: %s: ok\n", argv[1]);
		return 0;
	}
	if ((n = load_seeds(argv[1], seeds)) <= 0) {
		fprintf(stderr, "fuzz: no seeds in %s\n", argv[1]);
		return 2;
	}
	for (long i = 0; i < n; i++)
		run_one(seeds[i].data, seeds[i].len, -1);
	run_mutations(seeds, (size_t)n, runs);
	for (long i = 0; i < n; i++)
		free(seeds[i].data);
	printf("fuzz: %ld seeds and %ld mutations of them ran without a crash\n", n, runs);
	return 0;
}
