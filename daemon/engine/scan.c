/*
 * The staging-tree scanner (scan.h). Runs on a worker thread.
 *
 * An explicit stack of open directories, one per level of the current path,
 * each read with readdir() in its own order; entries are opened only as
 * directories (openat O_NOFOLLOW|O_DIRECTORY) and otherwise only stat'ed
 * (fstatat AT_SYMLINK_NOFOLLOW), always relative to their parent's fd, so
 * nothing outside the staging tree is ever reached. d_type spares the stat of
 * anything that is not a file. Paths of a batch live in one arena reused from
 * batch to batch. An entry that vanishes between readdir and stat is dropped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scan.h"
#include "util.h"

/* One directory of the current path. */
struct frame {
	DIR *dir;
	size_t prefix_len; /* path[0, prefix_len) is its path and a '/' ("" for the root) */
};

struct scan {
	size_t batch_size;
	unsigned max_depth;
	const atomic_bool *cancel;
	atomic_llong *found_files, *found_bytes;
	int (*exclude)(const char *path, size_t len, void *arg);
	void *exclude_arg;
	int excluded_rule; /* of the SCAN_EXCLUDED entry being emitted */
	bool excluded_dir;
	scan_batch_cb cb;
	void *userdata;
	dev_t root_dev;

	struct frame *stack; /* max_depth + 1 frames */
	unsigned depth;

	char *path; /* the current entry's path */
	size_t path_len;
	size_t path_cap;

	struct scan_entry *batch;
	size_t *offsets; /* of each batch entry's path in names */
	size_t n;
	char *names;
	size_t names_len;
	size_t names_cap;
};

static const char *const kind_names[_SCAN_KIND_MAX] = {
    [SCAN_FILE] = "file",         [SCAN_SYMLINK] = "symlink",   [SCAN_DEVICE] = "device",
    [SCAN_SOCKET] = "socket",     [SCAN_FIFO] = "fifo",         [SCAN_UNREADABLE] = "unreadable",
    [SCAN_OTHER_FS] = "other-fs", [SCAN_TOO_DEEP] = "too-deep", [SCAN_OTHER] = "other",
    [SCAN_EXCLUDED] = "excluded",
};

const char *
scan_kind_to_string(enum scan_kind k)
{
	if ((unsigned)k >= _SCAN_KIND_MAX)
		return NULL;
	return kind_names[k];
}

static void
grow(char **buf, size_t *cap, size_t need)
{
	size_t n = *cap != 0 ? *cap : 4096;

	if (need <= *cap)
		return;
	while (n < need)
		n *= 2;
	*buf = xreallocarray(*buf, n, 1);
	*cap = n;
}

/* Hand the batch to the callback and empty it. */
static int
scan_flush(struct scan *s)
{
	int r;

	if (s->n == 0)
		return 0;
	for (size_t i = 0; i < s->n; i++)
		s->batch[i].path = s->names + s->offsets[i];
	r = s->cb(s->batch, s->n, s->userdata);
	s->n = 0;
	s->names_len = 0;
	return r < 0 ? r : 0;
}

/* Add the current path as an entry of this kind; st for a file. */
static int
scan_emit(struct scan *s, enum scan_kind kind, int error, const struct stat *st)
{
	struct scan_entry *e = &s->batch[s->n];

	grow(&s->names, &s->names_cap, s->names_len + s->path_len + 1);
	memcpy(s->names + s->names_len, s->path, s->path_len + 1);
	s->offsets[s->n] = s->names_len;
	s->names_len += s->path_len + 1;
	*e = (struct scan_entry){.path_len = s->path_len, .kind = kind, .error = error};
	if (kind == SCAN_EXCLUDED) {
		e->rule = s->excluded_rule;
		e->dir = s->excluded_dir;
	}
	if (kind == SCAN_FILE) {
		e->size = (uint64_t)st->st_size;
		e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
		e->links = (uint64_t)st->st_nlink;
		if (s->found_files != NULL) {
			atomic_fetch_add(s->found_files, 1);
			atomic_fetch_add(s->found_bytes, (long long)st->st_size);
		}
	}
	if (++s->n == s->batch_size)
		return scan_flush(s);
	return 0;
}

/* The current path becomes prefix (of the directory being read) + name. */
static void
scan_set_path(struct scan *s, size_t prefix_len, const char *name)
{
	size_t len = strlen(name);

	grow(&s->path, &s->path_cap, prefix_len + len + 2);
	memcpy(s->path + prefix_len, name, len + 1);
	s->path_len = prefix_len + len;
}

static void
scan_push(struct scan *s, DIR *dir)
{
	s->stack[s->depth++] = (struct frame){.dir = dir, .prefix_len = s->path_len + 1};
	s->path[s->path_len] = '/';
	s->path[s->path_len + 1] = '\0';
}

static void
scan_pop(struct scan *s)
{
	closedir(s->stack[--s->depth].dir);
}

/* Enter directory name of dirfd, unless it is too deep or on another filesystem. */
static int
scan_enter(struct scan *s, int dirfd, const char *name)
{
	struct stat st;
	DIR *dir;
	int fd, r;

	if (s->depth > s->max_depth)
		return scan_emit(s, SCAN_TOO_DEEP, 0, NULL);
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : scan_emit(s, SCAN_UNREADABLE, errno, NULL);
	if (fstat(fd, &st) < 0) {
		r = errno;
		close(fd);
		return scan_emit(s, SCAN_UNREADABLE, r, NULL);
	}
	if (st.st_dev != s->root_dev) {
		close(fd);
		return scan_emit(s, SCAN_OTHER_FS, 0, NULL);
	}
	if ((dir = fdopendir(fd)) == NULL) {
		r = errno;
		close(fd);
		return scan_emit(s, SCAN_UNREADABLE, r, NULL);
	}
	scan_push(s, dir);
	return 0;
}

static enum scan_kind
kind_of_mode(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return SCAN_FILE;
	case S_IFLNK:
		return SCAN_SYMLINK;
	case S_IFCHR:
	case S_IFBLK:
		return SCAN_DEVICE;
	case S_IFSOCK:
		return SCAN_SOCKET;
	case S_IFIFO:
		return SCAN_FIFO;
	default:
		return SCAN_OTHER;
	}
}

/* An entry the exclude callback left out: reported, never looked at. */
static int
scan_exclude(struct scan *s, const struct dirent *de, int rule)
{
	s->excluded_rule = rule;
	s->excluded_dir = de->d_type == DT_DIR;
	return scan_emit(s, SCAN_EXCLUDED, 0, NULL);
}

/* One directory entry, named by the current path; d_type saves a stat where it can. */
static int
scan_entry(struct scan *s, int dirfd, const struct dirent *de)
{
	struct stat st;
	int rule;

	if (s->exclude != NULL && (rule = s->exclude(s->path, s->path_len, s->exclude_arg)) >= 0)
		return scan_exclude(s, de, rule);
	switch (de->d_type) {
	case DT_DIR:
		return scan_enter(s, dirfd, de->d_name);
	case DT_LNK:
		return scan_emit(s, SCAN_SYMLINK, 0, NULL);
	case DT_CHR:
	case DT_BLK:
		return scan_emit(s, SCAN_DEVICE, 0, NULL);
	case DT_SOCK:
		return scan_emit(s, SCAN_SOCKET, 0, NULL);
	case DT_FIFO:
		return scan_emit(s, SCAN_FIFO, 0, NULL);
	default:
		break;
	}
	if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : scan_emit(s, SCAN_UNREADABLE, errno, NULL);
	if (S_ISDIR(st.st_mode))
		return scan_enter(s, dirfd, de->d_name);
	return scan_emit(s, kind_of_mode(st.st_mode), 0, &st);
}

static int
scan_walk(struct scan *s)
{
	while (s->depth > 0) {
		struct frame *f = &s->stack[s->depth - 1];
		struct dirent *de;
		int r;

		if (s->cancel != NULL && atomic_load_explicit(s->cancel, memory_order_relaxed))
			return -ECANCELED;
		errno = 0;
		if ((de = readdir(f->dir)) == NULL) {
			r = errno;
			if (s->depth == 1)
				return -r;
			/* The directory's own path: its prefix without the '/'. */
			s->path_len = f->prefix_len - 1;
			s->path[s->path_len] = '\0';
			scan_pop(s);
			if (r != 0 && (r = scan_emit(s, SCAN_UNREADABLE, r, NULL)) < 0)
				return r;
			continue;
		}
		if (de->d_name[0] == '.' &&
		    (de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		scan_set_path(s, f->prefix_len, de->d_name);
		if ((r = scan_entry(s, dirfd(f->dir), de)) < 0)
			return r;
	}
	return 0;
}

static int
scan_open_root(struct scan *s, int staging_dirfd)
{
	struct stat st;
	DIR *dir;
	int fd;

	/* Our own fd: the caller's keeps its offset, and may be O_PATH. */
	fd = openat(staging_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || (dir = fdopendir(fd)) == NULL) {
		int r = -errno;

		close(fd);
		return r;
	}
	s->root_dev = st.st_dev;
	grow(&s->path, &s->path_cap, 1);
	s->path[0] = '\0';
	s->path_len = 0;
	s->stack[s->depth++] = (struct frame){.dir = dir, .prefix_len = 0};
	return 0;
}

int
scan_tree(int staging_dirfd, const struct scan_options *opt, scan_batch_cb cb, void *userdata)
{
	struct scan s = {
	    .batch_size = opt != NULL && opt->batch_size != 0 ? opt->batch_size : SCAN_BATCH_SIZE,
	    .max_depth = opt != NULL && opt->max_depth != 0 ? opt->max_depth : SCAN_MAX_DEPTH,
	    .cancel = opt != NULL ? opt->cancel : NULL,
	    .found_files = opt != NULL && opt->found_bytes != NULL ? opt->found_files : NULL,
	    .found_bytes = opt != NULL ? opt->found_bytes : NULL,
	    .exclude = opt != NULL ? opt->exclude : NULL,
	    .exclude_arg = opt != NULL ? opt->exclude_arg : NULL,
	    .cb = cb,
	    .userdata = userdata,
	};
	int r;

	s.stack = xcalloc((size_t)s.max_depth + 1, sizeof(*s.stack));
	s.batch = xcalloc(s.batch_size, sizeof(*s.batch));
	s.offsets = xcalloc(s.batch_size, sizeof(*s.offsets));
	r = scan_open_root(&s, staging_dirfd);
	if (r == 0)
		r = scan_walk(&s);
	if (r == 0)
		r = scan_flush(&s);
	while (s.depth > 0)
		scan_pop(&s);
	free(s.stack);
	free(s.batch);
	free(s.offsets);
	free(s.path);
	free(s.names);
	return r;
}
