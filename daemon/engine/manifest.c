/*
 * DriveManifest.xml writer (manifest.h). Streams the document through
 * libxml2's xmlTextWriter into a temporary file inside the drive's directory,
 * hashing every byte on its way out (the manifestHash), then fsyncs and
 * renames it into place. Runs on the drive's copy worker; one writer per
 * thread. libxml2 must have been initialised (xmlInitParser) by main() before
 * workers start; the call here only repeats it.
 *
 * Format choices, each from shared/reference/drive-format/README.md:
 *  - element order per the 2014-11-01 grammar (§1.2): DriveId, ClientCreator,
 *    one BlobList; Blob = BlobPath, FilePath, Length, ImportDisposition,
 *    BlockList, PropertiesPath (the per-blob override, after the BlockList as
 *    the grammar places it). No credential element (§1.8: current tools
 *    write none);
 *  - FilePath in Windows form with a leading backslash, as every sample (§1.2);
 *  - Block Hash = upper-case hex MD5 of the block (§1.3); Block Id = "MD5/" +
 *    base64 of the raw MD5, as WAImportExport writes it (§1.3 recommendation):
 *    28 characters for every block, itself valid base64;
 *  - an empty file gets an empty <BlockList></BlockList>: the grammar makes
 *    every Block optional (examples/manifest-grammar-2014-11-01.txt);
 *  - PropertiesPath Hash = upper-case hex MD5 of the properties file (§1.3),
 *    its text a Windows path like FilePath;
 *  - UTF-8 without BOM, two-space indentation like the samples (§1.7).
 *
 * Properties files (§5) are rendered from a fixed template rather than with
 * libxml2: the only variable text is Base64, which needs no escaping, and
 * the bytes must be the same on every run for the name-fixes-content rule.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libxml/xmlwriter.h>
#include <openssl/evp.h>

#include "util.h"
#include "manifest.h"

#define OUT_BUF_SIZE (64 * 1024)

struct manifest_writer {
	int dirfd;
	int fd;
	char *tmpname;
	xmlTextWriterPtr xml;
	EVP_MD_CTX *md5;
	int err;          /* first failure, negative errno; sticky */
	bool discard;     /* aborting: drop whatever libxml2 still flushes */
	uint64_t n_blobs; /* blobs written */
	char *path_buf;   /* FilePath conversion buffer, reused */
	size_t path_size;
	size_t out_len;
	unsigned char out[OUT_BUF_SIZE];
};

static const char *const disposition_names[] = {
    [MANIFEST_RENAME] = "rename",
    [MANIFEST_NO_OVERWRITE] = "no-overwrite",
    [MANIFEST_OVERWRITE] = "overwrite",
};

static int
write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int
flush_out(struct manifest_writer *w)
{
	int r = write_all(w->fd, w->out, w->out_len);

	w->out_len = 0;
	return r;
}

/* libxml2's output callback: hash, buffer, write. Returns len or -1. */
static int
xml_write_cb(void *ctx, const char *data, int len)
{
	struct manifest_writer *w = ctx;
	int r;

	if (w->discard)
		return len;
	if (w->err < 0 || len < 0)
		return -1;
	if (EVP_DigestUpdate(w->md5, data, (size_t)len) != 1) {
		w->err = -EIO;
		return -1;
	}
	if (w->out_len + (size_t)len > sizeof(w->out) && (r = flush_out(w)) < 0) {
		w->err = r;
		return -1;
	}
	if ((size_t)len >= sizeof(w->out)) {
		if ((r = write_all(w->fd, (const unsigned char *)data, (size_t)len)) < 0) {
			w->err = r;
			return -1;
		}
		return len;
	}
	memcpy(w->out + w->out_len, data, (size_t)len);
	w->out_len += (size_t)len;
	return len;
}

static int
xml_close_cb(void *ctx)
{
	return 0; /* the fd is ours: fsync and close happen in manifest_writer_close() */
}

/* Map a libxml2 result to 0 or the writer's (sticky) error. */
static int
xml_check(struct manifest_writer *w, int r)
{
	if (r >= 0 && w->err == 0)
		return 0;
	if (w->err == 0)
		w->err = -EIO;
	return w->err;
}

/* Text the document can carry: valid UTF-8 without C0 controls or DEL. */
static bool
text_ok(const char *s)
{
	size_t n;

	if (s == NULL || *s == '\0')
		return false;
	n = strlen(s);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return utf8_valid(s, n);
}

/* A file name directly inside dirfd. */
static bool
plain_name_ok(const char *s)
{
	return s != NULL && *s != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 &&
	       strcmp(s, "..") != 0;
}

static int
start_element(struct manifest_writer *w, const char *name)
{
	return xml_check(w, xmlTextWriterStartElement(w->xml, BAD_CAST name));
}

static int
write_attr(struct manifest_writer *w, const char *name, const char *value)
{
	return xml_check(w, xmlTextWriterWriteAttribute(w->xml, BAD_CAST name, BAD_CAST value));
}

static int
write_element(struct manifest_writer *w, const char *name, const char *text)
{
	return xml_check(w, xmlTextWriterWriteElement(w->xml, BAD_CAST name, BAD_CAST text));
}

static int
write_head(struct manifest_writer *w, const char *drive_id, const char *client_creator)
{
	int r;

	if ((r = xml_check(w, xmlTextWriterSetIndent(w->xml, 1))) < 0 ||
	    (r = xml_check(w, xmlTextWriterSetIndentString(w->xml, BAD_CAST "  "))) < 0 ||
	    (r = xml_check(w, xmlTextWriterStartDocument(w->xml, NULL, "UTF-8", NULL))) < 0 ||
	    (r = start_element(w, "DriveManifest")) < 0 ||
	    (r = write_attr(w, "Version", MANIFEST_VERSION)) < 0 ||
	    (r = start_element(w, "Drive")) < 0 ||
	    (r = write_element(w, "DriveId", drive_id)) < 0 ||
	    (r = write_element(w, "ClientCreator", client_creator)) < 0)
		return r;
	return start_element(w, "BlobList");
}

/* Set up the fd, the hash and libxml2's writer on top of our callbacks. */
static int
writer_start(struct manifest_writer *w)
{
	xmlOutputBufferPtr out;

	w->fd = openat(w->dirfd, w->tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	               0644);
	if (w->fd < 0)
		return -errno;
	if ((w->md5 = EVP_MD_CTX_new()) == NULL)
		return -ENOMEM;
	if (EVP_DigestInit_ex(w->md5, EVP_md5(), NULL) != 1)
		return -EOPNOTSUPP; /* MD5 unavailable (FIPS provider only?) */
	xmlInitParser();
	if ((out = xmlOutputBufferCreateIO(xml_write_cb, xml_close_cb, w, NULL)) == NULL)
		return -ENOMEM;
	if ((w->xml = xmlNewTextWriter(out)) == NULL) {
		xmlOutputBufferClose(out);
		return -ENOMEM;
	}
	return 0;
}

struct manifest_writer *
manifest_writer_open(int dirfd, const char *tmpname, const char *drive_id,
                     const char *client_creator, int *ret_err)
{
	struct manifest_writer *w;
	int r;

	if (dirfd < 0 || !plain_name_ok(tmpname) || !text_ok(drive_id) ||
	    strchr(drive_id, ' ') != NULL || !text_ok(client_creator)) {
		*ret_err = -EINVAL;
		return NULL;
	}
	w = xcalloc(1, sizeof(*w));
	w->dirfd = dirfd;
	w->fd = -1;
	w->tmpname = xstrdup(tmpname);
	if ((r = writer_start(w)) < 0 || (r = write_head(w, drive_id, client_creator)) < 0) {
		manifest_writer_abort(w);
		*ret_err = r;
		return NULL;
	}
	return w;
}

/* file_path: relative, '/'-separated, no empty segment, no backslash. */
static bool
file_path_ok(const char *p)
{
	size_t n;

	if (!text_ok(p) || strchr(p, '\\') != NULL || strstr(p, "//") != NULL)
		return false;
	n = strlen(p);
	return p[0] != '/' && p[n - 1] != '/';
}

static int
check_blob(const struct manifest_blob *b)
{
	uint64_t end = 0;

	if (!text_ok(b->blob_path) || !file_path_ok(b->file_path) ||
	    (b->properties_path != NULL && !file_path_ok(b->properties_path)) ||
	    (unsigned)b->disposition >= ELEMENTSOF(disposition_names))
		return -EINVAL;
	/* The 2014-11-01 format cannot describe a block blob of more blocks. */
	if (b->n_blocks > MANIFEST_BLOCKS_MAX)
		return -EFBIG;
	if ((b->n_blocks == 0) != (b->length == 0) || (b->n_blocks > 0 && b->blocks == NULL))
		return -EINVAL;
	for (size_t i = 0; i < b->n_blocks; i++) {
		const struct manifest_block *k = &b->blocks[i];

		if (k->offset != end || k->length == 0 || k->length > MANIFEST_BLOCK_MAX)
			return -EINVAL;
		end += k->length;
	}
	return end == b->length ? 0 : -EINVAL;
}

/* "a/b/c" -> "\a\b\c", in the writer's reused buffer. */
static const char *
windows_path(struct manifest_writer *w, const char *rel)
{
	size_t n = strlen(rel) + 2;

	if (n > w->path_size) {
		w->path_buf = xreallocarray(w->path_buf, n, 1);
		w->path_size = n;
	}
	w->path_buf[0] = '\\';
	for (size_t i = 0; i < n - 1; i++)
		w->path_buf[i + 1] = rel[i] == '/' ? '\\' : rel[i];
	return w->path_buf;
}

static int
write_attr_u64(struct manifest_writer *w, const char *name, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return write_attr(w, name, buf);
}

static int
write_block(struct manifest_writer *w, const struct manifest_block *k)
{
	char id[MANIFEST_BLOCK_ID_LEN + 1], hash[33];
	int r;

	manifest_block_id(k->md5, id);
	manifest_hash_hex(k->md5, hash);
	if ((r = start_element(w, "Block")) < 0 ||
	    (r = write_attr_u64(w, "Offset", k->offset)) < 0 ||
	    (r = write_attr_u64(w, "Length", k->length)) < 0 || (r = write_attr(w, "Id", id)) < 0 ||
	    (r = write_attr(w, "Hash", hash)) < 0)
		return r;
	return xml_check(w, xmlTextWriterEndElement(w->xml));
}

/* <PropertiesPath Hash="HEX">\path</PropertiesPath>, or nothing. */
static int
write_properties_path(struct manifest_writer *w, const struct manifest_blob *b)
{
	char hash[33];
	int r;

	if (b->properties_path == NULL)
		return 0;
	manifest_hash_hex(b->properties_hash, hash);
	if ((r = start_element(w, "PropertiesPath")) < 0 || (r = write_attr(w, "Hash", hash)) < 0 ||
	    (r = xml_check(w, xmlTextWriterWriteString(
	                          w->xml, BAD_CAST windows_path(w, b->properties_path)))) < 0)
		return r;
	return xml_check(w, xmlTextWriterEndElement(w->xml));
}

int
manifest_writer_add_blob(struct manifest_writer *w, const struct manifest_blob *b)
{
	char len[24];
	int r;

	if (w->err < 0)
		return w->err;
	if ((r = check_blob(b)) < 0)
		return r;
	snprintf(len, sizeof(len), "%" PRIu64, b->length);
	if ((r = start_element(w, "Blob")) < 0 ||
	    (r = write_element(w, "BlobPath", b->blob_path)) < 0 ||
	    (r = write_element(w, "FilePath", windows_path(w, b->file_path))) < 0 ||
	    (r = write_element(w, "Length", len)) < 0 ||
	    (r = write_element(w, "ImportDisposition", disposition_names[b->disposition])) < 0 ||
	    (r = start_element(w, "BlockList")) < 0)
		return r;
	for (size_t i = 0; i < b->n_blocks; i++)
		if ((r = write_block(w, &b->blocks[i])) < 0)
			return r;
	if ((r = xml_check(w, xmlTextWriterFullEndElement(w->xml))) < 0 ||
	    (r = write_properties_path(w, b)) < 0 ||
	    (r = xml_check(w, xmlTextWriterEndElement(w->xml))) < 0)
		return r;
	w->n_blobs++;
	return 0;
}

/* End the document and push every byte to the disk. */
static int
finish_file(struct manifest_writer *w)
{
	int r;

	if ((r = xml_check(w, xmlTextWriterEndDocument(w->xml))) < 0)
		return r;
	xmlFreeTextWriter(w->xml); /* flushes through xml_write_cb */
	w->xml = NULL;
	if (w->err < 0)
		return w->err;
	if ((r = flush_out(w)) < 0)
		return r;
	if (fsync(w->fd) < 0)
		return -errno;
	r = close(w->fd);
	w->fd = -1;
	return r < 0 ? -errno : 0;
}

/* Everything close does before the writer is freed; md5 filled on success. */
static int
commit(struct manifest_writer *w, const char *final_name, unsigned char md5[EVP_MAX_MD_SIZE])
{
	unsigned int md5_len = 0;
	int r;

	if (w->err < 0)
		return w->err;
	if (!plain_name_ok(final_name))
		return -EINVAL;
	if (w->n_blobs == 0)
		return -ENODATA;
	if ((r = finish_file(w)) < 0)
		return r;
	if (EVP_DigestFinal_ex(w->md5, md5, &md5_len) != 1 || md5_len != 16)
		return -EIO;
	if (renameat(w->dirfd, w->tmpname, w->dirfd, final_name) < 0)
		return -errno;
	free(w->tmpname);
	w->tmpname = NULL; /* renamed: nothing left to unlink */
	/* Some filesystems cannot fsync a directory (EINVAL); that is all they offer. */
	if (fsync(w->dirfd) < 0 && errno != EINVAL)
		return -errno;
	return 0;
}

int
manifest_writer_close(struct manifest_writer *w, const char *final_name, unsigned char md5_out[16])
{
	unsigned char md5[EVP_MAX_MD_SIZE];
	int r;

	if ((r = commit(w, final_name, md5)) == 0)
		memcpy(md5_out, md5, 16);
	manifest_writer_abort(w);
	return r;
}

void
manifest_writer_abort(struct manifest_writer *w)
{
	if (w == NULL)
		return;
	w->discard = true;
	if (w->xml != NULL)
		xmlFreeTextWriter(w->xml);
	if (w->fd >= 0)
		(void)close(w->fd);
	if (w->tmpname != NULL)
		(void)unlinkat(w->dirfd, w->tmpname, 0);
	EVP_MD_CTX_free(w->md5);
	free(w->tmpname);
	free(w->path_buf);
	free(w);
}

void
manifest_hash_hex(const unsigned char md5[16], char out[static 33])
{
	static const char hex[] = "0123456789ABCDEF";

	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[md5[i] >> 4];
		out[2 * i + 1] = hex[md5[i] & 0x0f];
	}
	out[32] = '\0';
}

void
manifest_block_id(const unsigned char md5[16], char out[static MANIFEST_BLOCK_ID_LEN + 1])
{
	memcpy(out, "MD5/", 4);
	EVP_EncodeBlock((unsigned char *)out + 4, md5, 16);
}

size_t
manifest_properties_bytes(const unsigned char content_md5[16],
                          char out[static MANIFEST_PROPERTIES_MAX])
{
	unsigned char b64[25];

	EVP_EncodeBlock(b64, content_md5, 16);
	return (size_t)snprintf(out, MANIFEST_PROPERTIES_MAX,
	                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	                        "<Properties>\n"
	                        "    <Content-MD5>%s</Content-MD5>\n"
	                        "</Properties>\n",
	                        (const char *)b64);
}

void
manifest_properties_name(const unsigned char content_md5[16],
                         char out[static MANIFEST_PROPERTIES_NAME_LEN + 1])
{
	manifest_hash_hex(content_md5, out);
	memcpy(out + 32, ".xml", 5);
}

/* 1 if fd holds exactly want[0, n), 0 if not, or -errno. */
static int
same_bytes(int fd, const char *want, size_t n)
{
	char buf[MANIFEST_PROPERTIES_MAX + 1];
	size_t got = 0;
	ssize_t k;

	while (got < sizeof(buf)) {
		k = read(fd, buf + got, sizeof(buf) - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return got == n && memcmp(buf, want, n) == 0;
}

/* Is dirfd/name already the file we want? 1 yes, 0 no (rewrite it), -errno. */
static int
properties_present(int dirfd, const char *name, const char *want, size_t n)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	return same_bytes(fd, want, n);
}

int
manifest_properties_put(int dirfd, const unsigned char content_md5[16], unsigned char hash_out[16])
{
	char bytes[MANIFEST_PROPERTIES_MAX], name[MANIFEST_PROPERTIES_NAME_LEN + 1];
	size_t n = manifest_properties_bytes(content_md5, bytes);
	unsigned int md5_len = 0;
	int fd, r;

	if (EVP_Digest(bytes, n, hash_out, &md5_len, EVP_md5(), NULL) != 1 || md5_len != 16)
		return -EIO;
	manifest_properties_name(content_md5, name);
	/* The usual case, a new drive: create it; only an existing file is read back. */
	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 && errno != EEXIST)
		return -errno;
	if (fd < 0) {
		if ((r = properties_present(dirfd, name, bytes, n)) != 0)
			return r < 0 ? r : 0;
		/* Short or different (a crash while it was written): write it again. */
		fd = openat(dirfd, name, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return -errno;
	}
	r = write_all(fd, (const unsigned char *)bytes, n);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r < 0 ? r : 1;
}
