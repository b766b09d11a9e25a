/*
 * manifest.c: byte-exact output for blobs taken from the official samples,
 * element order against the 2014-11-01 grammar, block hashes and ids on real
 * data, the returned manifest MD5, the temp-file life cycle and the refusals.
 *
 * Fixtures live in $SOURCE_ROOT/tests/unit/data (see its README.md); without
 * SOURCE_ROOT the fixture comparisons are skipped and the rest still runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

#include "test.h"
#include "manifest.h"
#include "proto/util.h"

/* A blob without a properties file (positional, like the struct's first fields). */
#define BLOB(bp, fp, len, disp, n, blk)                                                            \
	((struct manifest_blob){.blob_path = (bp),                                                 \
	                        .file_path = (fp),                                                 \
	                        .length = (len),                                                   \
	                        .disposition = (disp),                                             \
	                        .n_blocks = (n),                                                   \
	                        .blocks = (blk)})

static char tmpdir[256];
static int dirfd_ = -1;
static char *data_dir;

/* ---- helpers ------------------------------------------------------------ */

static void
md5_of(const void *p, size_t n, unsigned char out[16])
{
	unsigned int len = 0;

	check(EVP_Digest(p, n, out, &len, EVP_md5(), NULL) == 1);
	check_int(len, 16);
}

static void
hex_to_md5(const char *hex, unsigned char out[16])
{
	for (int i = 0; i < 16; i++) {
		unsigned v;

		check(sscanf(hex + 2 * i, "%2x", &v) == 1);
		out[i] = (unsigned char)v;
	}
}

/* Whole file into memory; *len set. */
static unsigned char *
slurp(int dfd, const char *name, size_t *len)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	unsigned char *buf;
	struct stat st;

	check(fd >= 0);
	check(fstat(fd, &st) == 0);
	buf = xmalloc((size_t)st.st_size + 1);
	check(read(fd, buf, (size_t)st.st_size) == st.st_size);
	close(fd);
	buf[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return buf;
}

static bool
exists(const char *name)
{
	return faccessat(dirfd_, name, F_OK, 0) == 0;
}

static xmlDocPtr
parse_in_tmp(const char *name)
{
	char path[512];
	xmlDocPtr doc;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	doc = xmlReadFile(path, NULL, XML_PARSE_NONET);
	check(doc != NULL);
	return doc;
}

static xmlNodePtr
next_element(xmlNodePtr n)
{
	while (n != NULL && n->type != XML_ELEMENT_NODE)
		n = n->next;
	return n;
}

static xmlNodePtr
first_element(xmlNodePtr parent)
{
	return next_element(parent->children);
}

static xmlNodePtr
child(xmlNodePtr parent, const char *name)
{
	for (xmlNodePtr n = first_element(parent); n != NULL; n = next_element(n->next))
		if (strcmp((const char *)n->name, name) == 0)
			return n;
	return NULL;
}

static bool
named(xmlNodePtr n, const char *name)
{
	return n != NULL && strcmp((const char *)n->name, name) == 0;
}

/* Element text or attribute, as a static-lifetime-free copy in buf. */
static const char *
text_of(xmlNodePtr n, char *buf, size_t size)
{
	xmlChar *s;

	check(n != NULL);
	s = xmlNodeGetContent(n);
	snprintf(buf, size, "%s", s != NULL ? (const char *)s : "");
	xmlFree(s);
	return buf;
}

static const char *
attr_of(xmlNodePtr n, const char *name, char *buf, size_t size)
{
	xmlChar *s = xmlGetProp(n, BAD_CAST name);

	if (s == NULL)
		return NULL;
	snprintf(buf, size, "%s", (const char *)s);
	xmlFree(s);
	return buf;
}

/* The Blob whose FilePath is file_path (the key the log parser will use too). */
static xmlNodePtr
find_blob(xmlNodePtr parent, const char *file_path)
{
	char buf[512];

	for (xmlNodePtr n = first_element(parent); n != NULL; n = next_element(n->next)) {
		xmlNodePtr f;

		if (named(n, "Blob") && (f = child(n, "FilePath")) != NULL &&
		    strcmp(text_of(f, buf, sizeof(buf)), file_path) == 0)
			return n;
		if (!named(n, "Blob") && (f = find_blob(n, file_path)) != NULL)
			return f;
	}
	return NULL;
}

/* ---- grammar order ------------------------------------------------------ */

/*
 * True if the element children of n follow `order` (each name at most once,
 * in this order, '|' alternatives at one position; list items may repeat)
 * and every name of the NULL-terminated `required` is present.
 */
static bool
children_follow(xmlNodePtr n, const char *const *order, size_t n_order, const char *const *required)
{
	static const char *const repeating[] = {"BlobList", "Blob", "Block", "PageRange"};
	size_t pos = 0;

	for (xmlNodePtr c = first_element(n); c != NULL; c = next_element(c->next)) {
		const char *name = (const char *)c->name;
		bool repeat = false;

		for (size_t i = 0; i < ELEMENTSOF(repeating); i++)
			repeat = repeat || strcmp(name, repeating[i]) == 0;
		for (; pos < n_order; pos++) {
			char alts[128], *save = NULL;
			bool match = false;

			snprintf(alts, sizeof(alts), "%s", order[pos]);
			for (char *a = strtok_r(alts, "|", &save); a;
			     a = strtok_r(NULL, "|", &save))
				match = match || strcmp(a, name) == 0;
			if (match)
				break;
		}
		if (pos == n_order)
			return false;
		if (!repeat)
			pos++;
	}
	for (; *required != NULL; required++)
		if (child(n, *required) == NULL)
			return false;
	return true;
}

/* The 2014-11-01 grammar (examples/manifest-grammar-2014-11-01.txt). */
static void
check_grammar_order(xmlDocPtr doc)
{
	static const char *const root[] = {"Drive", NULL};
	static const char *const drive_req[] = {"DriveId", "BlobList", NULL};
	static const char *const list_req[] = {"Blob", NULL};
	static const char *const blob_req[] = {"BlobPath", "FilePath", "Length", NULL};
	static const char *const none[] = {NULL};
	static const char *const drive[] = {"DriveId", "StorageAccountKey|ContainerSas",
	                                    "ClientCreator", "BlobList"};
	static const char *const list[] = {"MetadataPath", "PropertiesPath", "Blob"};
	static const char *const blob[] = {"BlobPath",
	                                   "FilePath",
	                                   "ClientData",
	                                   "Snapshot",
	                                   "Length",
	                                   "ImportDisposition",
	                                   "PageRangeList|BlockList",
	                                   "MetadataPath",
	                                   "PropertiesPath"};
	static const char *const blocks[] = {"Block"};
	static const char *const ranges[] = {"PageRange"};
	xmlNodePtr r = xmlDocGetRootElement(doc), d;

	check(named(r, "DriveManifest"));
	check(xmlHasProp(r, BAD_CAST "Version") != NULL);
	check(children_follow(r, root, 1, root));
	d = child(r, "Drive");
	check(children_follow(d, drive, ELEMENTSOF(drive), drive_req));
	for (xmlNodePtr l = first_element(d); l != NULL; l = next_element(l->next)) {
		if (!named(l, "BlobList"))
			continue;
		check(children_follow(l, list, ELEMENTSOF(list), list_req));
		for (xmlNodePtr b = child(l, "Blob"); b != NULL; b = next_element(b->next)) {
			xmlNodePtr k;

			check(children_follow(b, blob, ELEMENTSOF(blob), blob_req));
			if ((k = child(b, "BlockList")) != NULL)
				check(children_follow(k, blocks, 1, none));
			else
				check(children_follow(child(b, "PageRangeList"), ranges, 1, none));
		}
	}
}

/* Attributes of a Block in grammar order: Offset, Length, Id, Hash. */
static void
check_block_attr_order(xmlNodePtr block)
{
	static const char *const names[] = {"Offset", "Length", "Id", "Hash"};
	size_t i = 0;

	for (xmlAttrPtr a = block->properties; a != NULL; a = a->next, i++) {
		check(i < ELEMENTSOF(names));
		check_str((const char *)a->name, names[i]);
	}
	check_int(i, 4);
}

/* ---- tests -------------------------------------------------------------- */

static void
test_hex_and_id(void)
{
	unsigned char md5[16];
	char hex[33], id[MANIFEST_BLOCK_ID_LEN + 1];

	hex_to_md5("700CE7E21ED55525977FAF7AAA9E546B", md5);
	manifest_hash_hex(md5, hex);
	check_str(hex, "700CE7E21ED55525977FAF7AAA9E546B");
	manifest_block_id(md5, id);
	check_str(id, "MD5/cAzn4h7VVSWXf696qp5Uaw==");

	/* MD5 of "" and of "abc", the RFC 1321 test vectors. */
	md5_of("", 0, md5);
	manifest_hash_hex(md5, hex);
	check_str(hex, "D41D8CD98F00B204E9800998ECF8427E");
	md5_of("abc", 3, md5);
	manifest_hash_hex(md5, hex);
	check_str(hex, "900150983CD24FB0D6963F7D28E17F72");
}

/* Every block of the official import log: our Id from its Hash is its Id. */
static void
test_ids_match_sample_log(void)
{
	char path[512], hash[64], id[64], ours[MANIFEST_BLOCK_ID_LEN + 1];
	xmlDocPtr doc;
	xmlNodePtr list;
	int n = 0;

	snprintf(path, sizeof(path), "%s/log-error-import-filenotfound.xml", data_dir);
	check((doc = xmlReadFile(path, NULL, XML_PARSE_NONET)) != NULL);
	list = child(find_blob(xmlDocGetRootElement(doc), "\\animals\\koala.jpg"), "BlockList");
	for (xmlNodePtr b = first_element(list); b != NULL; b = next_element(b->next), n++) {
		unsigned char md5[16];

		hex_to_md5(attr_of(b, "Hash", hash, sizeof(hash)), md5);
		manifest_block_id(md5, ours);
		check_str(ours, attr_of(b, "Id", id, sizeof(id)));
	}
	check_int(n, 5);
	xmlFreeDoc(doc);
}

static void
sample_blocks(const char *const *hashes, size_t n, uint32_t len, struct manifest_block *out)
{
	for (size_t i = 0; i < n; i++) {
		out[i].offset = i * len;
		out[i].length = len;
		hex_to_md5(hashes[i], out[i].md5);
	}
}

/* The properties file of content_md5 and its Hash, as stage-prep names it. */
static void
sample_properties(struct manifest_blob *b, const unsigned char content_md5[16], char *path,
                  size_t size)
{
	char bytes[MANIFEST_PROPERTIES_MAX], name[MANIFEST_PROPERTIES_NAME_LEN + 1];

	manifest_properties_name(content_md5, name);
	snprintf(path, size, ".seedd-tmp/properties/%s", name);
	b->properties_path = path;
	md5_of(bytes, manifest_properties_bytes(content_md5, bytes), b->properties_hash);
}

/*
 * Write the koala (import log) and canyon (export manifest) blobs + an empty
 * one. Koala and the empty file carry a PropertiesPath: koala's content MD5
 * is the official properties sample's placeholder ("Check Integrity!"), the
 * empty file's is the real MD5 of nothing; canyon has none.
 */
static void
write_sample_manifest(const char *final, unsigned char md5[16])
{
	static const char *const koala[] = {
	    "700CE7E21ED55525977FAF7AAA9E546B", "3C49C6C18388F0B3CB35875F2ABEE402",
	    "146E16C6A7D92AE5166769C64D4DAA54", "67389B343CEBDC8441404351C9E81E5D",
	    "67389B343CEBDC8441404351C9E81E5D",
	};
	static const char *const canyon[] = {
	    "263DC9C4B99C2177769C5EBE04787037",
	    "0C52BAE2CC20EFEC15CC1E3045517AA6",
	    "73D1CB62CB426230C34C9F57B7148F10",
	    "11210E665C5F8E7E4F136D053B243E6A",
	};
	struct manifest_block kb[5], cb[4];
	struct manifest_blob blobs[] = {
	    BLOB("pictures/animals/koala.jpg", "animals/koala.jpg", 30310, MANIFEST_RENAME, 5, kb),
	    BLOB("pictures/wild/canyon.jpg", "pictures/wild/canyon.jpg", 10884, MANIFEST_OVERWRITE,
	         4, cb),
	    BLOB("pictures/notes/empty.txt", "pictures/notes/empty.txt", 0, MANIFEST_NO_OVERWRITE,
	         0, NULL),
	};
	char koala_props[128], empty_props[128];
	unsigned char empty_md5[16];
	struct manifest_writer *w;
	int err = 0;

	sample_blocks(koala, 5, 6062, kb);
	sample_blocks(canyon, 4, 2721, cb);
	sample_properties(&blobs[0], (const unsigned char *)"Check Integrity!", koala_props,
	                  sizeof(koala_props));
	md5_of("", 0, empty_md5);
	sample_properties(&blobs[2], empty_md5, empty_props, sizeof(empty_props));
	w = manifest_writer_open(dirfd_, "sample.tmp", "9WM35C2V", "seedd 0.1.0", &err);
	check(w != NULL);
	for (size_t i = 0; i < ELEMENTSOF(blobs); i++)
		check_int(manifest_writer_add_blob(w, &blobs[i]), 0);
	check_int(manifest_writer_close(w, final, md5), 0);
	check(!exists("sample.tmp"));
}

static void
test_sample_bytes(void)
{
	unsigned char md5[16], want_md5[16], *got, *want;
	size_t got_len, want_len;
	int ddir;

	write_sample_manifest("sample.xml", md5);
	got = slurp(dirfd_, "sample.xml", &got_len);
	check((ddir = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0);
	want = slurp(ddir, "manifest-expected.xml", &want_len);
	close(ddir);
	if (got_len != want_len || memcmp(got, want, got_len) != 0)
		fprintf(stderr, "written:\n%s\nexpected:\n%s\n", got, want);
	check_int(got_len, want_len);
	check(memcmp(got, want, got_len) == 0);
	md5_of(want, want_len, want_md5);
	check(memcmp(md5, want_md5, 16) == 0);
	free(got);
	free(want);
}

/* Compare one written Blob with the same blob in an official sample. */
static void
compare_with_sample(xmlNodePtr ours, xmlNodePtr theirs, bool compare_ids)
{
	static const char *const elements[] = {"BlobPath", "FilePath", "Length"};
	char a[512], b[512];
	xmlNodePtr x, y;
	int n = 0;

	check(ours != NULL && theirs != NULL);
	for (size_t i = 0; i < ELEMENTSOF(elements); i++)
		check_str(text_of(child(ours, elements[i]), a, sizeof(a)),
		          text_of(child(theirs, elements[i]), b, sizeof(b)));
	if (child(theirs, "ImportDisposition") != NULL)
		check_str(text_of(child(ours, "ImportDisposition"), a, sizeof(a)),
		          text_of(child(theirs, "ImportDisposition"), b, sizeof(b)));
	x = first_element(child(ours, "BlockList"));
	y = first_element(child(theirs, "BlockList"));
	for (; x != NULL && y != NULL; x = next_element(x->next), y = next_element(y->next), n++) {
		static const char *const attrs[] = {"Offset", "Length", "Hash"};

		check_block_attr_order(x);
		for (size_t i = 0; i < ELEMENTSOF(attrs); i++)
			check_str(attr_of(x, attrs[i], a, sizeof(a)),
			          attr_of(y, attrs[i], b, sizeof(b)));
		if (compare_ids)
			check_str(attr_of(x, "Id", a, sizeof(a)), attr_of(y, "Id", b, sizeof(b)));
	}
	check(x == NULL && y == NULL);
	check(n > 0);
}

static void
test_sample_tree(void)
{
	char path[512], buf[64];
	unsigned char md5[16];
	xmlDocPtr ours, log, export;
	xmlNodePtr root, empty;

	write_sample_manifest("tree.xml", md5);
	ours = parse_in_tmp("tree.xml");
	snprintf(path, sizeof(path), "%s/log-error-import-filenotfound.xml", data_dir);
	check((log = xmlReadFile(path, NULL, XML_PARSE_NONET)) != NULL);
	snprintf(path, sizeof(path), "%s/manifest-export-sample.xml", data_dir);
	check((export = xmlReadFile(path, NULL, XML_PARSE_NONET)) != NULL);

	root = xmlDocGetRootElement(ours);
	check_str(attr_of(root, "Version", buf, sizeof(buf)), "2014-11-01");
	check_str(text_of(child(child(root, "Drive"), "DriveId"), buf, sizeof(buf)),
	          text_of(child(xmlDocGetRootElement(log), "DriveId"), path, sizeof(path)));
	/* koala: everything including the WAImportExport-style ids. */
	compare_with_sample(find_blob(root, "\\animals\\koala.jpg"),
	                    find_blob(xmlDocGetRootElement(log), "\\animals\\koala.jpg"), true);
	/* canyon: the service's export ids are block indices, ours MD5/... */
	compare_with_sample(find_blob(root, "\\pictures\\wild\\canyon.jpg"),
	                    find_blob(xmlDocGetRootElement(export), "\\pictures\\wild\\canyon.jpg"),
	                    false);
	empty = child(find_blob(root, "\\pictures\\notes\\empty.txt"), "BlockList");
	check(empty != NULL && first_element(empty) == NULL);

	/* Element order per the grammar; the checker accepts the official sample too. */
	check_grammar_order(ours);
	check_grammar_order(export);
	xmlFreeDoc(ours);
	xmlFreeDoc(log);
	xmlFreeDoc(export);
}

/* A file of pseudo-random bytes in the temp dir, and its blocks. */
static unsigned char *
make_file(const char *name, size_t size, uint32_t seed)
{
	unsigned char *data = size > 0 ? xmalloc(size) : NULL;
	int fd;

	for (size_t i = 0; i < size; i++) {
		seed = seed * 1103515245u + 12345u;
		data[i] = (unsigned char)(seed >> 16);
	}
	check((fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) >= 0);
	check(size == 0 || write(fd, data, size) == (ssize_t)size);
	close(fd);
	return data;
}

static size_t
blocks_of(const unsigned char *data, size_t size, struct manifest_block *out)
{
	size_t n = 0;

	for (size_t off = 0; off < size; off += MANIFEST_BLOCK_MAX, n++) {
		size_t len = size - off < MANIFEST_BLOCK_MAX ? size - off : MANIFEST_BLOCK_MAX;

		out[n].offset = off;
		out[n].length = (uint32_t)len;
		md5_of(data + off, len, out[n].md5);
	}
	return n;
}

/* Check every Block of a written blob against the file's bytes. */
static void
check_blocks_against_file(xmlNodePtr blob, const char *name, size_t size)
{
	size_t len, expect_off = 0, id_len = 0;
	unsigned char *file = slurp(dirfd_, name, &len);
	char buf[128], want[32];
	xmlNodePtr b;

	check_int(len, size);
	snprintf(want, sizeof(want), "%zu", size);
	check_str(text_of(child(blob, "Length"), buf, sizeof(buf)), want);
	for (b = first_element(child(blob, "BlockList")); b; b = next_element(b->next)) {
		unsigned long long off = strtoull(attr_of(b, "Offset", buf, sizeof(buf)), NULL, 10);
		unsigned long long n = strtoull(attr_of(b, "Length", buf, sizeof(buf)), NULL, 10);
		unsigned char md5[16], decoded[32];
		char hex[33], id[64];

		check_int(off, expect_off);
		check(n > 0 && n <= MANIFEST_BLOCK_MAX && off + n <= len);
		md5_of(file + off, n, md5);
		manifest_hash_hex(md5, hex);
		check_str(attr_of(b, "Hash", buf, sizeof(buf)), hex);
		/* The Id: valid base64 as a whole, same length for every block,
		 * "MD5/" + base64 of exactly this block's MD5. */
		attr_of(b, "Id", id, sizeof(id));
		check(id_len == 0 || strlen(id) == id_len);
		id_len = strlen(id);
		check_int(id_len, MANIFEST_BLOCK_ID_LEN);
		check_int(EVP_DecodeBlock(decoded, (unsigned char *)id, (int)id_len), 21);
		check(strncmp(id, "MD5/", 4) == 0);
		check_int(EVP_DecodeBlock(decoded, (unsigned char *)id + 4, 24), 18);
		check(memcmp(decoded, md5, 16) == 0);
		expect_off += n;
	}
	check_int(expect_off, size);
	free(file);
}

static void
test_real_data(void)
{
	static const size_t big_size = 2 * MANIFEST_BLOCK_MAX + 12345, small_size = 100;
	struct manifest_block big_blocks[3], small_blocks[1];
	unsigned char *big, *small, md5[16], file_md5[16], *bytes;
	struct manifest_writer *w;
	char hex[33], path[64];
	size_t len;
	xmlDocPtr doc;
	xmlNodePtr root;
	int err = 0;

	big = make_file("big.bin", big_size, 1);
	small = make_file("small.bin", small_size, 2);
	free(make_file("empty.bin", 0, 3));
	check_int(blocks_of(big, big_size, big_blocks), 3);
	check_int(blocks_of(small, small_size, small_blocks), 1);

	w = manifest_writer_open(dirfd_, "DriveManifest.xml.tmp", "WD-WCC4E0000000", "seedd 9.9",
	                         &err);
	check(w != NULL);
	check(exists("DriveManifest.xml.tmp"));
	check_int(manifest_writer_add_blob(w, &BLOB("seed/job/big.bin", "big.bin",
	                                                              big_size, MANIFEST_OVERWRITE,
	                                                              3, big_blocks)),
	          0);
	check_int(manifest_writer_add_blob(
	              w, &BLOB("seed/job/small.bin", "small.bin", small_size,
	                                         MANIFEST_OVERWRITE, 1, small_blocks)),
	          0);
	check_int(
	    manifest_writer_add_blob(w, &BLOB("seed/job/empty.bin", "empty.bin",
	                                                        0, MANIFEST_OVERWRITE, 0, NULL)),
	    0);
	check_int(manifest_writer_close(w, "DriveManifest.xml", md5), 0);

	/* The temp file is gone; the returned MD5 is that of the file. */
	check(!exists("DriveManifest.xml.tmp"));
	bytes = slurp(dirfd_, "DriveManifest.xml", &len);
	md5_of(bytes, len, file_md5);
	check(memcmp(md5, file_md5, 16) == 0);
	manifest_hash_hex(md5, hex);
	check_int(strlen(hex), 32);
	check(strspn(hex, "0123456789ABCDEF") == 32);
	check(strncmp((char *)bytes, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", 39) == 0);
	free(bytes);

	doc = parse_in_tmp("DriveManifest.xml");
	root = xmlDocGetRootElement(doc);
	check_grammar_order(doc);
	check_str(text_of(child(child(root, "Drive"), "DriveId"), path, sizeof(path)),
	          "WD-WCC4E0000000");
	check_str(text_of(child(child(root, "Drive"), "ClientCreator"), path, sizeof(path)),
	          "seedd 9.9");
	check_blocks_against_file(find_blob(root, "\\big.bin"), "big.bin", big_size);
	check_blocks_against_file(find_blob(root, "\\small.bin"), "small.bin", small_size);
	check_blocks_against_file(find_blob(root, "\\empty.bin"), "empty.bin", 0);
	xmlFreeDoc(doc);
	free(big);
	free(small);
}

static void
test_replace_and_abort(void)
{
	struct manifest_blob b = BLOB("c/x", "x", 0, MANIFEST_RENAME, 0, NULL);
	unsigned char md5[16], again[16], *bytes;
	struct manifest_writer *w;
	size_t len;
	int err = 0;

	/* Abort removes the temp file and creates nothing. */
	check((w = manifest_writer_open(dirfd_, "abort.tmp", "D1", "seedd", &err)) != NULL);
	check_int(manifest_writer_add_blob(w, &b), 0);
	check(exists("abort.tmp"));
	manifest_writer_abort(w);
	check(!exists("abort.tmp"));
	check(!exists("abort.xml"));
	manifest_writer_abort(NULL);

	/* A second close replaces the first manifest; the hash follows. */
	check((w = manifest_writer_open(dirfd_, "r.tmp", "D1", "seedd", &err)) != NULL);
	check_int(manifest_writer_add_blob(w, &b), 0);
	check_int(manifest_writer_close(w, "r.xml", md5), 0);
	check((w = manifest_writer_open(dirfd_, "r.tmp", "D2", "seedd", &err)) != NULL);
	check_int(manifest_writer_add_blob(w, &b), 0);
	check_int(manifest_writer_close(w, "r.xml", again), 0);
	check(memcmp(md5, again, 16) != 0);
	bytes = slurp(dirfd_, "r.xml", &len);
	check(strstr((char *)bytes, "<DriveId>D2</DriveId>") != NULL);
	md5_of(bytes, len, md5);
	check(memcmp(md5, again, 16) == 0);
	free(bytes);

	/* No blob: the grammar needs one; the temp file goes away. */
	check((w = manifest_writer_open(dirfd_, "none.tmp", "D1", "seedd", &err)) != NULL);
	check_int(manifest_writer_close(w, "none.xml", md5), -ENODATA);
	check(!exists("none.tmp"));
	check(!exists("none.xml"));
}

static void
test_open_refusals(void)
{
	int err = 0;

	check(manifest_writer_open(dirfd_, "a.tmp", "WD 123", "seedd", &err) == NULL);
	check_int(err, -EINVAL);
	err = 0;
	check(manifest_writer_open(dirfd_, "a.tmp", "", "seedd", &err) == NULL);
	check_int(err, -EINVAL);
	err = 0;
	check(manifest_writer_open(dirfd_, "sub/a.tmp", "D", "seedd", &err) == NULL);
	check_int(err, -EINVAL);
	err = 0;
	check(manifest_writer_open(dirfd_, "a.tmp", "D", "bad\x01", &err) == NULL);
	check_int(err, -EINVAL);
	err = 0;
	check(manifest_writer_open(-1, "a.tmp", "D", "seedd", &err) == NULL);
	check_int(err, -EINVAL);
	check(!exists("a.tmp"));
}

static void
test_blob_refusals(void)
{
	struct manifest_block one = {.offset = 0, .length = 10};
	struct manifest_block gap[2] = {{.offset = 0, .length = 10}, {.offset = 11, .length = 10}};
	struct manifest_block huge = {.offset = 0, .length = MANIFEST_BLOCK_MAX + 1};
	struct manifest_block zero = {.offset = 0, .length = 0};
	struct manifest_blob bad[] = {
	    BLOB("c/a", "a", 11, MANIFEST_RENAME, 1, &one),                      /* length != sum */
	    BLOB("c/a", "a", 10, MANIFEST_RENAME, 0, NULL),                      /* no blocks */
	    BLOB("c/a", "a", 0, MANIFEST_RENAME, 1, &zero),                      /* empty block */
	    BLOB("c/a", "a", 21, MANIFEST_RENAME, 2, gap),                       /* not contiguous */
	    BLOB("c/a", "a", MANIFEST_BLOCK_MAX + 1, MANIFEST_RENAME, 1, &huge), /* > 4 MiB */
	    BLOB("c/a", "/a", 10, MANIFEST_RENAME, 1, &one),                     /* absolute */
	    BLOB("c/a", "a\\b", 10, MANIFEST_RENAME, 1, &one),                   /* backslash */
	    BLOB("c/a", "a//b", 10, MANIFEST_RENAME, 1, &one),                   /* empty segment */
	    BLOB("c/a", "a/", 10, MANIFEST_RENAME, 1, &one),                     /* trailing '/' */
	    BLOB("c/a", "", 10, MANIFEST_RENAME, 1, &one),                       /* empty */
	    BLOB("c/\xc3", "a", 10, MANIFEST_RENAME, 1, &one),                   /* bad UTF-8 */
	    BLOB("c/a", "a\x01", 10, MANIFEST_RENAME, 1, &one),                  /* control */
	    BLOB(NULL, "a", 10, MANIFEST_RENAME, 1, &one),                       /* no blob path */
	    BLOB("c/a", "a", 10, (enum manifest_disposition)3, 1, &one),         /* disposition */
	};
	struct manifest_block *many = xcalloc(MANIFEST_BLOCKS_MAX + 1, sizeof(*many));
	struct manifest_writer *w;
	unsigned char md5[16];
	xmlDocPtr doc;
	int err = 0;

	for (size_t i = 0; i <= MANIFEST_BLOCKS_MAX; i++)
		many[i] = (struct manifest_block){.offset = i, .length = 1};
	check((w = manifest_writer_open(dirfd_, "refuse.tmp", "D", "seedd", &err)) != NULL);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		int r = manifest_writer_add_blob(w, &bad[i]);

		if (r != -EINVAL)
			fprintf(stderr, "bad blob %zu: %d\n", i, r);
		check_int(r, -EINVAL);
	}
	/* 50 000 blocks are the limit; one more is -EFBIG. */
	check_int(manifest_writer_add_blob(
	              w, &BLOB("c/many", "many", MANIFEST_BLOCKS_MAX + 1,
	                                         MANIFEST_RENAME, MANIFEST_BLOCKS_MAX + 1, many)),
	          -EFBIG);
	check_int(manifest_writer_add_blob(
	              w, &BLOB("c/many", "many", MANIFEST_BLOCKS_MAX,
	                                         MANIFEST_RENAME, MANIFEST_BLOCKS_MAX, many)),
	          0);
	/* Refused blobs left no trace: the document is well-formed. */
	check_int(manifest_writer_add_blob(
	              w, &BLOB("c/a &<>", "a & b", 10, MANIFEST_RENAME, 1, &one)),
	          0);
	check_int(manifest_writer_close(w, "refuse.xml", md5), 0);
	doc = parse_in_tmp("refuse.xml");
	check_grammar_order(doc);
	check(find_blob(xmlDocGetRootElement(doc), "\\a & b") != NULL);
	check(find_blob(xmlDocGetRootElement(doc), "\\many") != NULL);
	xmlFreeDoc(doc);
	free(many);
}

/* A write error (file size limit) fails close and removes the temp file. */
static void
test_write_error(void)
{
	struct manifest_blob b = BLOB("c/x", "x", 0, MANIFEST_RENAME, 0, NULL);
	struct rlimit old, lim;
	struct manifest_writer *w;
	unsigned char md5[16];
	int err = 0, r;

	check(getrlimit(RLIMIT_FSIZE, &old) == 0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 300;
	check(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	check((w = manifest_writer_open(dirfd_, "full.tmp", "D", "seedd", &err)) != NULL);
	check_int(manifest_writer_add_blob(w, &b), 0);
	check_int(manifest_writer_add_blob(w, &b), 0);
	r = manifest_writer_close(w, "full.xml", md5);
	check(setrlimit(RLIMIT_FSIZE, &old) == 0);
	signal(SIGXFSZ, SIG_DFL);
	check_int(r, -EFBIG);
	check(!exists("full.tmp"));
	check(!exists("full.xml"));
}

/* ---- properties files -------------------------------------------------- */

/*
 * The official sample with its Content-Type and Cache-Control lines taken
 * out is exactly what seedd writes for the sample's Content-MD5 value.
 */
static void
test_properties_sample(void)
{
	char ours[MANIFEST_PROPERTIES_MAX], want[512], name[MANIFEST_PROPERTIES_NAME_LEN + 1];
	unsigned char *sample;
	size_t len, n, w = 0;
	int ddir;

	check((ddir = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0);
	sample = slurp(ddir, "properties-sample.xml", &len);
	close(ddir);
	for (char *line = (char *)sample, *nl; *line != '\0'; line = nl + 1) {
		check((nl = strchr(line, '\n')) != NULL);
		if (strncmp(line, "    <Content-Type>", 18) == 0 ||
		    strncmp(line, "    <Cache-Control>", 19) == 0)
			continue;
		check(w + (size_t)(nl + 1 - line) < sizeof(want));
		memcpy(want + w, line, (size_t)(nl + 1 - line));
		w += (size_t)(nl + 1 - line);
	}
	n = manifest_properties_bytes((const unsigned char *)"Check Integrity!", ours);
	if (n != w || memcmp(ours, want, n) != 0)
		fprintf(stderr, "ours:\n%.*s\nsample without two lines:\n%.*s\n", (int)n, ours,
		        (int)w, want);
	check_int(n, w);
	check(memcmp(ours, want, n) == 0);
	manifest_properties_name((const unsigned char *)"Check Integrity!", name);
	check_str(name, "436865636B20496E7465677269747921.xml");
	free(sample);
}

/* The file under its name holds the bytes; hash_out is their MD5. */
static void
check_properties_file(int dfd, const unsigned char content[16], const unsigned char hash[16])
{
	char want[MANIFEST_PROPERTIES_MAX], name[MANIFEST_PROPERTIES_NAME_LEN + 1];
	size_t n = manifest_properties_bytes(content, want), len;
	unsigned char md5[16], *got;

	manifest_properties_name(content, name);
	got = slurp(dfd, name, &len);
	check_int(len, n);
	check(memcmp(got, want, n) == 0);
	md5_of(got, len, md5);
	check(memcmp(md5, hash, 16) == 0);
	free(got);
}

/* Replace dfd/name with len bytes of text (a crash left this much). */
static void
put_file(int dfd, const char *name, const char *text, size_t len)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	check(fd >= 0);
	check(write(fd, text, len) == (ssize_t)len);
	close(fd);
}

/*
 * manifest_properties_put: a new file is written (1); a right one is left
 * alone (0, same inode, no write); a half-written, empty, longer or
 * different one (what a crash or an old run leaves) is rewritten (1); a
 * directory in the way is an error. Equal contents share one file.
 */
static void
test_properties_put(void)
{
	unsigned char content[16], other[16], hash[16], hash2[16];
	char bytes[MANIFEST_PROPERTIES_MAX], name[MANIFEST_PROPERTIES_NAME_LEN + 1];
	size_t n;
	struct stat a, b;
	int dfd;

	check(mkdirat(dirfd_, "props", 0755) == 0);
	check((dfd = openat(dirfd_, "props", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0);
	md5_of("koala", 5, content);
	md5_of("canyon", 6, other);
	manifest_properties_name(content, name);
	n = manifest_properties_bytes(content, bytes);

	check_int(manifest_properties_put(dfd, content, hash), 1);
	check_properties_file(dfd, content, hash);
	check(fstatat(dfd, name, &a, 0) == 0);
	check_int(manifest_properties_put(dfd, content, hash2), 0); /* same content: shared */
	check(memcmp(hash, hash2, 16) == 0);
	check(fstatat(dfd, name, &b, 0) == 0);
	check(a.st_ino == b.st_ino && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
	      a.st_mtim.tv_nsec == b.st_mtim.tv_nsec);

	put_file(dfd, name, bytes, n / 2); /* half-written */
	check_int(manifest_properties_put(dfd, content, hash2), 1);
	check_properties_file(dfd, content, hash2);
	put_file(dfd, name, "", 0); /* created, never written */
	check_int(manifest_properties_put(dfd, content, hash2), 1);
	check_properties_file(dfd, content, hash2);
	bytes[n] = 'x';
	put_file(dfd, name, bytes, n + 1); /* one byte too many */
	check_int(manifest_properties_put(dfd, content, hash2), 1);
	check_properties_file(dfd, content, hash2);
	bytes[n - 20] ^= 1;
	put_file(dfd, name, bytes, n); /* same length, one bit off */
	check_int(manifest_properties_put(dfd, content, hash2), 1);
	check_properties_file(dfd, content, hash2);

	check_int(manifest_properties_put(dfd, other, hash2), 1);
	check(memcmp(hash, hash2, 16) != 0);
	check_properties_file(dfd, other, hash2);
	check_properties_file(dfd, content, hash);

	manifest_properties_name(other, name);
	check(unlinkat(dfd, name, 0) == 0);
	check(mkdirat(dfd, name, 0755) == 0);
	check(manifest_properties_put(dfd, other, hash2) < 0);
	check(unlinkat(dfd, name, AT_REMOVEDIR) == 0);
	manifest_properties_name(content, name);
	check(unlinkat(dfd, name, 0) == 0);
	close(dfd);
	check(unlinkat(dirfd_, "props", AT_REMOVEDIR) == 0);
}

/* PropertiesPath: after the BlockList, Hash first and only, Windows path. */
static void
test_properties_path(void)
{
	struct manifest_block one = {.offset = 0, .length = 3};
	struct manifest_blob b = BLOB("c/job/a", "job/a", 3, MANIFEST_RENAME, 1, &one);
	char buf[256];
	unsigned char md5[16];
	struct manifest_writer *w;
	xmlNodePtr blob, last;
	xmlDocPtr doc;
	int err = 0;

	md5_of("abc", 3, one.md5);
	b.properties_path = "job/.seedd-tmp/properties/X.xml";
	memset(b.properties_hash, 0xab, 16);
	check((w = manifest_writer_open(dirfd_, "pp.tmp", "D", "seedd", &err)) != NULL);
	check_int(manifest_writer_add_blob(w, &b), 0);
	b.properties_path = "/abs.xml"; /* refused like a FilePath */
	check_int(manifest_writer_add_blob(w, &b), -EINVAL);
	b.properties_path = "a\\b.xml";
	check_int(manifest_writer_add_blob(w, &b), -EINVAL);
	check_int(manifest_writer_close(w, "pp.xml", md5), 0);
	doc = parse_in_tmp("pp.xml");
	check_grammar_order(doc);
	blob = find_blob(xmlDocGetRootElement(doc), "\\job\\a");
	check(blob != NULL);
	for (last = first_element(blob); next_element(last->next) != NULL;
	     last = next_element(last->next))
		;
	check(named(last, "PropertiesPath"));
	check_str(text_of(last, buf, sizeof(buf)), "\\job\\.seedd-tmp\\properties\\X.xml");
	check_str(attr_of(last, "Hash", buf, sizeof(buf)), "ABABABABABABABABABABABABABABABAB");
	check(last->properties != NULL && last->properties->next == NULL);
	xmlFreeDoc(doc);
	check(unlinkat(dirfd_, "pp.xml", 0) == 0);
}

static void
cleanup(void)
{
	static const char *const names[] = {
	    "sample.xml", "tree.xml",          "big.bin", "small.bin",
	    "empty.bin",  "DriveManifest.xml", "r.xml",   "refuse.xml",
	};

	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		check(unlinkat(dirfd_, names[i], 0) == 0);
	close(dirfd_);
	check(rmdir(tmpdir) == 0); /* fails if anything else was left behind */
}

int
main(void)
{
	const char *src = getenv("SOURCE_ROOT"), *tmp = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/seedd-test-manifest-XXXXXX", tmp ? tmp : "/tmp");
	check(mkdtemp(tmpdir) != NULL);
	check((dirfd_ = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0);
	xmlInitParser();

	test_hex_and_id();
	test_open_refusals();
	test_blob_refusals();
	test_replace_and_abort();
	test_real_data();
	test_write_error();
	test_properties_put();
	test_properties_path();
	if (src != NULL) {
		data_dir = xprintf("%s/tests/unit/data", src);
		test_ids_match_sample_log();
		test_sample_bytes();
		test_sample_tree();
		test_properties_sample();
	} else {
		unsigned char md5[16];

		fprintf(stderr, "SOURCE_ROOT unset: fixture comparisons skipped\n");
		/* Keep cleanup's list valid. */
		write_sample_manifest("sample.xml", md5);
		write_sample_manifest("tree.xml", md5);
	}
	cleanup();
	free(data_dir);
	xmlCleanupParser();
	return 0;
}
