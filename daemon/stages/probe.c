/*
 * AddDrive's probe (see probe.h): mountinfo, udev, the boot sector, a walk of
 * what the job already has there, the O_DIRECT test and the marker, on a
 * thread of its own, so a slow disk never stalls the loop; the loop then
 * hands the result to the caller's done.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copy.h"
#include "daemon.h"
#include "drive.h"
#include "probe.h"
#include "stage.h"
#include "util.h"
#include "worker.h"


struct probe_msg {
	struct worker_msg m;
	struct probe *pr;
};

static void
probe_free(struct probe *pr)
{
	worker_thread_stop(&pr->w);
	if (pr->listed)
		LIST_REMOVE(pr, link);
	drive_attach_done(&pr->at);
	if (pr->key != NULL) {
		explicit_bzero(pr->key, strlen(pr->key));
		free(pr->key);
	}
	free(pr->job_name);
	free(pr->path);
	free(pr->serial);
	free(pr->key_file);
	free(pr->bitlocker_device);
	free(pr->err);
	free(pr);
}

static void
probe_msg_free(struct worker_msg *m)
{
	free(m);
}

/*
 * Whether the drive takes O_DIRECT, with a test file of seedd's own (DESIGN
 * §3a: FUSE drives may refuse it). A drive that fails even buffered I/O is
 * refused.
 */
static int
probe_direct(struct probe *pr, int root_fd)
{
	char detail[COPY_DETAIL_MAX];
	int r = copy_direct_probe(root_fd, &pr->direct, detail);

	if (r < 0)
		xasprintf(&pr->err, "%s on %s failed: %s%s", detail, pr->at.probe.mount_point,
			  strerror(-r), drive_write_hint(r));
	return r;
}

static void *
probe_thread(void *arg)
{
	struct probe *pr = arg;
	struct probe_msg *pm = xcalloc(1, sizeof(*pm));
	int fd;

	atomic_store(&pr->w.busy, true);
	if (pr->rekey_drive_id > 0) {
		/* The key of an attached drive, against the volume recorded for it. */
		pr->at.probe.mount_point = xstrdup(pr->path);
		pr->r = drive_bitlocker_check(&pr->args, &pr->at, &pr->err);
	} else if ((pr->r = drive_attach_check(pr->path, &pr->args, &pr->at, &pr->err)) == 0) {
		fd = open(pr->at.probe.mount_point, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		pr->r = fd < 0 ? -errno : probe_direct(pr, fd);
		if (pr->r == 0 &&
		    (pr->r = drive_marker_write(fd, pr->job_name, pr->at.serial, pr->uuid)) < 0)
			xasprintf(&pr->err, "cannot write seedd's marker on %s: %s",
				  pr->at.probe.mount_point, strerror(-pr->r));
		if (pr->r < 0 && pr->err == NULL)
			xasprintf(&pr->err, "cannot open %s: %s", pr->at.probe.mount_point,
				  strerror(-pr->r));
		if (fd >= 0)
			close(fd);
	}
	atomic_store(&pr->w.busy, false);
	pm->m.kind = MSG_DRIVE_PROBED;
	pm->m.free_fn = probe_msg_free;
	pm->pr = pr;
	worker_queue_push(pr->queue, &pm->m);
	return NULL;
}

struct probe *
probe_new(struct daemon *d, int64_t job_id, const char *job_name, const char *path)
{
	struct probe *pr = xcalloc(1, sizeof(*pr));

	pr->d = d;
	pr->queue = d->queue;
	pr->job_id = job_id;
	pr->job_name = xstrdup(job_name);
	pr->path = xstrdup(path);
	return pr;
}

int
probe_start(struct probe *pr, probe_done_fn done, void *userdata)
{
	pr->done = done;
	pr->userdata = userdata;
	LIST_INSERT_HEAD(&pr->d->probes, pr, link);
	pr->listed = true;
	if (worker_thread_start(&pr->w, probe_thread, pr) < 0) {
		probe_free(pr);
		return -EAGAIN;
	}
	return 0;
}

void
probe_handle_msg(struct daemon *d, struct worker_msg *m)
{
	struct probe *pr = ((struct probe_msg *)m)->pr;

	worker_thread_stop(&pr->w);
	pr->done(d, pr, pr->userdata);
	probe_free(pr);
}

/*
 * Shutdown: wait for the probes (each ends by queueing its result, which the
 * final drain of the worker queue records and frees).
 */
void
probe_stop_all(struct daemon *d)
{
	struct probe *pr;

	LIST_FOREACH(pr, &d->probes, link)
		worker_thread_stop(&pr->w);
}

bool
probe_healthy(struct daemon *d, int64_t max_age, const char **ret_what)
{
	struct probe *pr;

	LIST_FOREACH(pr, &d->probes, link)
		if (!worker_thread_healthy(&pr->w, max_age)) {
			*ret_what = "a drive probe";
			return false;
		}
	return true;
}
