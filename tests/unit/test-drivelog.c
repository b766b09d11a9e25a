/*
 * drivelog.c: the official copy-log samples (fields, blocks, hashes,
 * verdicts), the quirks of README §4.4 (no Version, stray spaces, empty
 * lists, unknown statuses, renames), refusals (garbage, truncation, wrong
 * root, size) with *ret left alone, entity attacks leaking nothing, and a
 * generated 100 000-blob verbose log.
 *
 * Samples live in $SOURCE_ROOT/tests/unit/data (see its README.md); without
 * SOURCE_ROOT they are skipped and the rest still runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libxml/parser.h>

#include "test.h"
#include "drivelog.h"
#include "proto/util.h"

#define HEAD "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"

static char *data_dir;

/* ---- helpers ------------------------------------------------------------ */

static char *
slurp(const char *name, size_t *len)
{
	_cleanup_free_ char *path = xprintf("%s/%s", data_dir, name);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;

	check(fd >= 0);
	check(fstat(fd, &st) == 0);
	buf = xmalloc((size_t)st.st_size + 1);
	check(read(fd, buf, (size_t)st.st_size) == st.st_size);
	*len = (size_t)st.st_size;
	return buf;
}

static void
parse_file(const char *name, struct drivelog *l)
{
	size_t len;
	_cleanup_free_ char *xml = slurp(name, &len);
	_cleanup_free_ char *err = NULL;
	int r = drivelog_parse(xml, len, l, &err);

	if (r < 0)
		fprintf(stderr, "%s: %s\n", name, err);
	check_int(r, 0);
	check(err == NULL);
}

static void
parse_str(const char *xml, struct drivelog *l)
{
	_cleanup_free_ char *err = NULL;
	int r = drivelog_parse(xml, strlen(xml), l, &err);

	if (r < 0)
		fprintf(stderr, "parse: %s\n", err);
	check_int(r, 0);
}

/* Parse must fail with want; *ret stays untouched; the message is returned. */
static char *
parse_fails(const char *xml, size_t len, int want)
{
	struct drivelog l = {.n_blobs = 4242};
	char *err = NULL;

	check_int(drivelog_parse(xml, len, &l, &err), want);
	check_int(l.n_blobs, 4242);
	check(l.blobs == NULL && l.drive_id == NULL);
	check(err != NULL && err[0] != '\0');
	return err;
}

static void
check_md5(const unsigned char md5[16], const char *hex)
{
	char got[33];

	for (int i = 0; i < 16; i++)
		snprintf(got + 2 * i, 3, "%02X", md5[i]);
	check_str(got, hex);
}

/* One-blob document around the given Blob body and attributes. */
static char *
one_blob(const char *blob_attrs, const char *body)
{
	return xprintf(HEAD "<DriveLog Version=\"2014-11-01\"><DriveId>D1</DriveId>"
	                    "<Blob %s><BlobPath>c/a.bin</BlobPath><FilePath>\\j\\a.bin</FilePath>"
	                    "<Length>10</Length>%s</Blob><Status>Completed</Status></DriveLog>",
	               blob_attrs, body);
}

static enum drivelog_verdict
verdict_of(const char *blob_attrs, const char *body)
{
	_cleanup_free_ char *xml = one_blob(blob_attrs, body);
	struct drivelog l;
	enum drivelog_verdict v;

	parse_str(xml, &l);
	check_int(l.n_blobs, 1);
	v = l.blobs[0].verdict;
	drivelog_done(&l);
	return v;
}

/* ---- official samples --------------------------------------------------- */

static void
test_error_sample(void)
{
	struct drivelog l;
	const struct drivelog_blob *b;

	parse_file("log-error-sample.xml", &l);
	check_str(l.version, "2014-11-01");
	check_str(l.drive_id, "WD-WMATV6965824");
	check_str(l.drive_status, "CompletedWithErrors");
	check(!l.drive_ok);
	check_int(l.n_blobs, 1);
	b = &l.blobs[0];
	check_str(b->blob_path, "pictures/bob/animals/koala.jpg");
	check_str(b->file_path, "\\Users\\bob\\Pictures\\animals\\koala.jpg");
	check_str(b->rel_path, "Users/bob/Pictures/animals/koala.jpg");
	check_str(b->status, "CompletedWithErrors");
	check_str(b->disposition, "overwrite");
	check_str(b->disposition_status, "Overwritten");
	check(b->metadata_status == NULL && b->properties_status == NULL);
	check_int(b->length, 163840);
	check(b->page_ranges);
	check_int(b->n_blocks, 1);
	check_int(b->blocks[0].offset, 65536);
	check_int(b->blocks[0].length, 65536);
	check_str(b->blocks[0].status, "Corrupted");
	check(b->blocks[0].has_hash);
	check_md5(b->blocks[0].md5, "AA2585F6F6FD01C4AD4256E018240CD4");
	check_int(b->verdict, DLOG_FAILED);
	check(drivelog_find_file(&l, "Users/bob/Pictures/animals/koala.jpg") == b);
	check(drivelog_find_file(&l, "pictures/bob/animals/koala.jpg") == NULL);
	drivelog_done(&l);
	check(l.blobs == NULL && l.n_blobs == 0);
	drivelog_done(&l); /* a zeroed struct is fine */
}

static void
test_filenotfound_sample(void)
{
	static const char *const hashes[] = {
	    "700CE7E21ED55525977FAF7AAA9E546B", "3C49C6C18388F0B3CB35875F2ABEE402",
	    "146E16C6A7D92AE5166769C64D4DAA54", "67389B343CEBDC8441404351C9E81E5D",
	    "67389B343CEBDC8441404351C9E81E5D",
	};
	struct drivelog l;
	const struct drivelog_blob *b;

	parse_file("log-error-import-filenotfound.xml", &l);
	check_str(l.drive_id, "9WM35C2V");
	check_int(l.n_blobs, 1);
	b = &l.blobs[0];
	check_str(b->status, "FileNotFound");
	check_str(b->disposition, "rename");
	check_str(b->disposition_status, "Cancelled");
	check_int(b->length, 30310);
	check(!b->page_ranges);
	check_int(b->n_blocks, 5);
	for (size_t i = 0; i < 5; i++) {
		check_int(b->blocks[i].offset, 6062 * (int64_t)i);
		check_int(b->blocks[i].length, 6062);
		check_str(b->blocks[i].status, "Cancelled");
		check(b->blocks[i].has_hash);
		check_md5(b->blocks[i].md5, hashes[i]);
	}
	check_int(b->verdict, DLOG_FAILED);
	check(drivelog_find_file(&l, "animals/koala.jpg") == b);
	drivelog_done(&l);
}

static void
test_verbose_sample(void)
{
	struct drivelog l;
	const struct drivelog_blob *d, *k;

	parse_file("log-verbose-sample.xml", &l);
	check_str(l.drive_id, "WD-WMATV123456");
	check_str(l.drive_status, "CompletedWithErrors");
	check_int(l.n_blobs, 2);
	d = &l.blobs[0];
	check_str(d->status, "Completed");
	check_str(d->disposition_status, "Created");
	check_str(d->metadata_status, "Completed");
	check_int(d->length, 98304);
	check_int(d->n_blocks, 2);
	check_int(d->blocks[1].offset, 65536);
	check_int(d->blocks[1].length, 32768);
	/* Hash=" 9C8A...": the leading space is trimmed */
	check(d->blocks[0].has_hash && d->blocks[1].has_hash);
	check_md5(d->blocks[0].md5, "9C8AE14A55241F98533C4D80D85CDC68");
	check_md5(d->blocks[1].md5, "DF54C531C9B3CA2570FDDDB3BCD0E27D");
	check_int(d->verdict, DLOG_OK);
	k = &l.blobs[1];
	check(k->page_ranges);
	check_int(k->n_blocks, 3);
	check_str(k->blocks[0].status, "Completed");
	check_str(k->blocks[1].status, "Corrupted");
	check_str(k->properties_status, "Completed");
	check_int(k->verdict, DLOG_FAILED);
	check(drivelog_find_file(&l, "Users/bob/Pictures/wild/desert.jpg") == d);
	check(drivelog_find_file(&l, "Users/bob/Pictures/animals/koala.jpg") == k);
	check(drivelog_find_file(&l, "Users/bob/Pictures/animals") == NULL);
	check(drivelog_find_file(&l, "") == NULL);
	drivelog_done(&l);
}

static void
test_export_properties_sample(void)
{
	struct drivelog l;
	const struct drivelog_blob *b;

	parse_file("log-error-export-properties-failed.xml", &l);
	check_str(l.drive_id, "9WM35C3U");
	check_int(l.n_blobs, 1);
	b = &l.blobs[0];
	check_str(b->rel_path, "pictures/wild/canyon.jpg");
	check_int(b->n_blocks, 0); /* <BlockList /> */
	check_str(b->properties_status, "Failed");
	check(b->disposition == NULL && b->disposition_status == NULL);
	check_int(b->verdict, DLOG_FAILED);
	drivelog_done(&l);
}

static void
test_repair_samples(void)
{
	struct drivelog l;

	parse_file("copylog-repair-import-sample.xml", &l);
	check(l.version == NULL);
	check_str(l.drive_id, "9WM35C2V");
	check_int(l.n_blobs, 1);
	check_str(l.blobs[0].blocks[0].status, "Corrupted");
	check_int(l.blobs[0].verdict, DLOG_FAILED);
	drivelog_done(&l);

	parse_file("copylog-repair-export-sample.xml", &l);
	check(l.version == NULL);
	check_int(l.blobs[0].n_blocks, 1);
	check(!l.blobs[0].blocks[0].has_hash); /* no Hash attribute */
	check_str(l.blobs[0].blocks[0].status, "Failed");
	check_int(l.blobs[0].blocks[0].offset, 65536);
	check_int(l.blobs[0].verdict, DLOG_FAILED);
	drivelog_done(&l);
}

/* ---- quirks and verdicts ------------------------------------------------ */

static void
test_verdicts(void)
{
	const char *ok_block = "<BlockList><Block Offset=\"0\" Length=\"10\" Status=\"Completed\"/>"
	                       "</BlockList>";

	check_int(verdict_of("Status=\"Completed\"", ok_block), DLOG_OK);
	check_int(verdict_of("Status=\" Completed \"", ""), DLOG_OK); /* stray spaces */
	check_int(verdict_of("Status=\"Completed\"", "<BlockList/>"), DLOG_OK);
	check_int(verdict_of("Status=\"Completed\"",
	                     "<ImportDisposition Status=\"Created\">rename</ImportDisposition>"),
	          DLOG_OK);
	check_int(
	    verdict_of("Status=\"Completed\"",
	               "<ImportDisposition Status=\"Skipped\">no-overwrite</ImportDisposition>"),
	    DLOG_SKIPPED);
	check_int(verdict_of("Status=\"Completed\"",
	                     "<ImportDisposition Status=\"Cancelled\">rename</ImportDisposition>"),
	          DLOG_FAILED);
	check_int(verdict_of("Status=\"Completed\"",
	                     "<ImportDisposition Status=\"Mangled\">rename</ImportDisposition>"),
	          DLOG_FAILED);
	check_int(verdict_of("", ok_block), DLOG_FAILED); /* no Blob Status */
	check_int(verdict_of("Status=\"completed\"", ok_block), DLOG_FAILED);
	check_int(verdict_of("Status=\"Completed\"",
	                     "<BlockList><Block Offset=\"0\" Length=\"10\" Status=\"Committed\"/>"
	                     "</BlockList>"),
	          DLOG_FAILED);
	check_int(verdict_of("Status=\"Completed\"",
	                     "<BlockList><Block Offset=\"0\" Length=\"10\"/></BlockList>"),
	          DLOG_FAILED); /* block without Status */
	check_int(verdict_of("Status=\"Completed\"",
	                     "<BlockList><Block Length=\"10\" Status=\"Completed\"/></BlockList>"),
	          DLOG_FAILED); /* a range we cannot place */
	check_int(verdict_of("Status=\"Completed\"",
	                     "<BlockList><Block Offset=\"-1\" Length=\"10\" Status=\"Completed\"/>"
	                     "</BlockList>"),
	          DLOG_FAILED);
	check_int(verdict_of("Status=\"Completed\"", "<Metadata Status=\"XmlReadFailed\"/>"),
	          DLOG_FAILED);
	check_int(verdict_of("Status=\"Completed\"", "<Properties/>"), DLOG_FAILED);
	check_int(verdict_of("Status=\"Completed\"", "<Properties Status=\"Completed\"/>"),
	          DLOG_OK);
	check_str(drivelog_verdict_to_string(DLOG_RENAMED), "RENAMED");
	check_str(drivelog_verdict_to_string(DLOG_FAILED), "FAILED");
}

static void
test_unknown_status_kept(void)
{
	_cleanup_free_ char *xml = one_blob(
	    "Status=\"QuantumFlux\"",
	    "<BlockList><Block Offset=\"0\" Length=\"10\" Status=\"  Frobnicated\"/></BlockList>");
	struct drivelog l;

	parse_str(xml, &l);
	check_str(l.blobs[0].status, "QuantumFlux");
	check_str(l.blobs[0].blocks[0].status, "Frobnicated");
	check_int(l.blobs[0].verdict, DLOG_FAILED);
	check(l.drive_ok);
	drivelog_done(&l);
}

static void
test_renamed(void)
{
	const char *xml =
	    HEAD "<DriveLog><DriveId>D2</DriveId>"
	         "<Blob Status=\"Completed\"><BlobPath>photos/Seattle (2).jpg</BlobPath>"
	         "<FilePath>\\job\\Seattle.jpg</FilePath><Length>5</Length>"
	         "<ImportDisposition Status=\"Renamed\">rename</ImportDisposition>"
	         "<BlockList><Block Offset=\"0\" Length=\"5\" Status=\"Completed\"/></BlockList>"
	         "</Blob><Status>CompletedWithWarnings</Status></DriveLog>";
	struct drivelog l;
	const struct drivelog_blob *b;

	parse_str(xml, &l);
	check(l.version == NULL);
	check(l.drive_ok);
	b = drivelog_find_file(&l, "job/Seattle.jpg");
	check(b != NULL);
	check_int(b->verdict, DLOG_RENAMED);
	check_str(b->blob_path, "photos/Seattle (2).jpg");
	check_str(b->disposition, "rename");
	drivelog_done(&l);
}

static void
test_hashes(void)
{
	static const struct {
		const char *attr;
		bool ok;
	} cases[] = {
	    {"9c8ae14a55241f98533c4d80d85cdc68", true},
	    {" 9C8AE14A 55241F98 533C4D80 D85CDC68 ", true},
	    {"9C8AE14A55241F98533C4D80D85CDC6", false},    /* 31 digits */
	    {"9C8AE14A55241F98533C4D80D85CDC6800", false}, /* 34 digits */
	    {"9C8AE14A55241F98533C4D80D85CDC6G", false},   /* not hex */
	    {"nIrhSlUkH5hTPE2A2FzcaA==", false},           /* base64 */
	    {"", false},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_free_ char *body =
		    xprintf("<BlockList><Block Offset=\"0\" Length=\"10\" "
		            "Hash=\"%s\" Status=\"Completed\"/></BlockList>",
		            cases[i].attr);
		_cleanup_free_ char *xml = one_blob("Status=\"Completed\"", body);
		struct drivelog l;

		parse_str(xml, &l);
		check_int(l.blobs[0].blocks[0].has_hash, cases[i].ok);
		if (cases[i].ok)
			check_md5(l.blobs[0].blocks[0].md5, "9C8AE14A55241F98533C4D80D85CDC68");
		check_int(l.blobs[0].verdict, DLOG_OK); /* a bad hash is no error */
		drivelog_done(&l);
	}
}

/* README §4.3: drive statuses that mean nothing of the drive was imported. */
static void
test_drive_failed(void)
{
	static const struct {
		const char *status;
		bool ok, failed;
	} cases[] = {
	    {"Completed", true, false},
	    {"CompletedWithWarnings", true, false},
	    {"CompletedWithErrors", false, false},
	    {"BitLockerKeyInvalid", false, true},
	    {"ManifestCorrupted", false, true},
	    {"ManifestDriveIdMismatch", false, true},
	    {"DiskNotFound", false, true},
	    {"SomethingNew", false, true},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_free_ char *xml = xprintf("<DriveLog Version=\"2014-11-01\"><DriveId>D1"
		                                   "</DriveId><Status>%s</Status></DriveLog>",
		                                   cases[i].status);
		struct drivelog l;

		parse_str(xml, &l);
		check_str(l.drive_status, cases[i].status);
		check(l.drive_ok == cases[i].ok);
		check(l.drive_failed == cases[i].failed);
		check_int(l.n_blobs, 0);
		drivelog_done(&l);
	}
}

static void
test_odd_documents(void)
{
	struct drivelog l;

	/* No DriveId, no Status, no blobs; unknown elements skipped; Blob elsewhere ignored. */
	parse_str("<DriveLog Version=\"2099-01-01\"><Future><Blob Status=\"Completed\"/></Future>"
	          "<!-- c --></DriveLog>",
	          &l);
	check_str(l.version, "2099-01-01");
	check_str(l.drive_id, "");
	check_str(l.drive_status, "");
	check(!l.drive_ok);
	check(!l.drive_failed); /* no Status: the blobs decide */
	check_int(l.n_blobs, 0);
	check(drivelog_find_file(&l, "x") == NULL);
	drivelog_done(&l);

	/* Entities, CDATA, extra elements; Length malformed; FilePath kept verbatim. */
	parse_str("<DriveLog><DriveId> D3 </DriveId><Blob Status=\"Completed\">"
	          "<BlobPath>c/a&amp;b</BlobPath><Snapshot>s</Snapshot>"
	          "<FilePath><![CDATA[\\j\\a&b]]> </FilePath><Length>12x</Length>"
	          "<Extra><Block Offset=\"0\" Length=\"1\" Status=\"Failed\"/></Extra>"
	          "</Blob><Status>Completed</Status></DriveLog>",
	          &l);
	check_str(l.drive_id, "D3");
	check_str(l.blobs[0].blob_path, "c/a&b");
	check_str(l.blobs[0].file_path, "\\j\\a&b ");
	check_int(l.blobs[0].length, -1);
	check_int(l.blobs[0].n_blocks, 0);
	check_int(l.blobs[0].verdict, DLOG_OK);
	drivelog_done(&l);

	/* A Latin-1 document arrives as UTF-8. */
	parse_str("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><DriveLog><DriveId>D4</DriveId>"
	          "<Blob Status=\"Completed\"><FilePath>\\caf\xe9</FilePath></Blob></DriveLog>",
	          &l);
	check_str(l.blobs[0].rel_path, "caf\xc3\xa9");
	check_str(l.blobs[0].blob_path, "");
	drivelog_done(&l);
}

static void
test_duplicate_path(void)
{
	const char *xml = "<DriveLog><DriveId>D5</DriveId>"
	                  "<Blob Status=\"Completed\"><FilePath>\\a</FilePath></Blob>"
	                  "<Blob Status=\"IOFailed\"><FilePath>\\a</FilePath></Blob>"
	                  "<Blob Status=\"Completed\"><FilePath>\\a</FilePath></Blob>"
	                  "<Status>Completed</Status></DriveLog>";
	struct drivelog l;

	parse_str(xml, &l);
	check(drivelog_find_file(&l, "a") == &l.blobs[1]);
	drivelog_done(&l);
}

static void
test_file_path_to_rel(void)
{
	static const char *const cases[][2] = {
	    {"\\job\\a\\b.txt", "job/a/b.txt"},
	    {"job\\a", "job/a"},
	    {"\\", ""},
	    {"", ""},
	    {"\\\\x", "/x"},
	    {"\\a/b", "a/b"},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_free_ char *rel = drivelog_file_path_to_rel(cases[i][0]);

		check_str(rel, cases[i][1]);
	}
}

/* ---- refusals ----------------------------------------------------------- */

static void
test_refusals(void)
{
	const char *good = "<DriveLog><DriveId>D</DriveId><Blob Status=\"Completed\">"
	                   "<FilePath>\\a</FilePath></Blob><Status>Completed</Status></DriveLog>";
	static const char *const bad[] = {
	    "hello, world",
	    "<DriveManifest Version=\"2014-11-01\"><Drive/></DriveManifest>",
	    "<DriveLog><DriveId>D</DriveId>",
	    "<DriveLog><DriveId>D</DriveLog>",
	    "<DriveLog/><DriveLog/>",
	    "<DriveLog><DriveId>&nope;</DriveId></DriveLog>",
	    "<DriveLog><DriveId>\xff\xfe</DriveId></DriveLog>",
	    "<DriveLog><Blob Status=\"a\" Status=\"b\"/></DriveLog>",
	    "   ",
	};
	char *err;
	struct drivelog l;

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		err = parse_fails(bad[i], strlen(bad[i]), -EBADMSG);
		check(strncmp(err, "line ", 5) == 0);
		check(strchr(err, '\n') == NULL);
		free(err);
	}
	err = parse_fails(bad[1], strlen(bad[1]), -EBADMSG);
	check(strstr(err, "DriveManifest") != NULL);
	free(err);
	free(parse_fails("", 0, -EBADMSG));

	/* Every proper prefix of a good document is refused. */
	for (size_t n = 1; n < strlen(good); n++)
		free(parse_fails(good, n, -EBADMSG));
	check_int(drivelog_parse(good, strlen(good), &l, NULL), 0);
	drivelog_done(&l);
	check_int(drivelog_parse("x", 1, &l, NULL), -EBADMSG); /* ret_err may be NULL */

	/* Size: refused before a byte is read. */
	{
		_cleanup_free_ char *big = xcalloc(1, (size_t)DRIVELOG_SIZE_MAX + 1);

		free(parse_fails(big, (size_t)DRIVELOG_SIZE_MAX + 1, -EMSGSIZE));
	}
}

/* A text field beyond the per-field cap is refused, not grown without end. */
static void
test_long_text(void)
{
	size_t n = 200 * 1024;
	_cleanup_free_ char *body = xmalloc(n + 1);
	_cleanup_free_ char *xml = NULL;

	memset(body, 'a', n);
	body[n] = '\0';
	xml = xprintf("<DriveLog><DriveId>%s</DriveId></DriveLog>", body);
	free(parse_fails(xml, strlen(xml), -EBADMSG));
}

/*
 * Entity attacks: each must fail or leave the entity unexpanded; either way
 * the marker file's content never reaches the result or the message.
 */
static void
test_entities(void)
{
	char secret_path[] = "/tmp/seedd-test-drivelog-XXXXXX";
	const char *marker = "SEEDD-SECRET-MARKER";
	_cleanup_close_ int fd = mkstemp(secret_path);
	const char *templates[] = {
	    "<!DOCTYPE x [<!ENTITY e SYSTEM \"file://%s\">]>"
	    "<DriveLog><DriveId>&e;</DriveId><Status>&e;</Status></DriveLog>",
	    "<!DOCTYPE DriveLog [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
	    "<DriveLog><DriveId>&e;</DriveId></DriveLog><!-- %s -->",
	    "<!DOCTYPE x [<!ENTITY %% p SYSTEM \"file://%s\"> %%p;]><DriveLog/>",
	    "<!DOCTYPE DriveLog SYSTEM \"file://%s\"><DriveLog/>",
	    "<!DOCTYPE x [<!ENTITY e \"x\">]><DriveLog><Blob Status=\"&e;\">"
	    "<FilePath>%s</FilePath></Blob></DriveLog>",
	};

	check(fd >= 0);
	check(write(fd, marker, strlen(marker)) == (ssize_t)strlen(marker));
	for (size_t i = 0; i < ELEMENTSOF(templates); i++) {
		_cleanup_free_ char *xml = xprintf(templates[i], secret_path);
		_cleanup_free_ char *err = NULL;
		struct drivelog l = {0};
		int r = drivelog_parse(xml, strlen(xml), &l, &err);

		if (r == 0) {
			check(strstr(l.drive_id, marker) == NULL);
			check(strstr(l.drive_id, "root:") == NULL);
			check(strstr(l.drive_status, marker) == NULL);
			drivelog_done(&l);
		} else {
			check_int(r, -EBADMSG);
			check(strstr(err, marker) == NULL && strstr(err, "root:") == NULL);
		}
		check_int(r, -EBADMSG); /* what we do: refuse any DOCTYPE */
		check(strstr(err, "DOCTYPE") != NULL);
	}
	check(unlink(secret_path) == 0);
}

static void
test_billion_laughs(void)
{
	const char *xml = "<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
	                  "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c "
	                  "\"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">"
	                  "<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY e "
	                  "\"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">"
	                  "<!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\"><!ENTITY g "
	                  "\"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\">"
	                  "<!ENTITY h \"&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;\"><!ENTITY i "
	                  "\"&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;\">]>"
	                  "<DriveLog><DriveId>&i;&i;&i;&i;&i;&i;&i;&i;&i;&i;</DriveId></DriveLog>";

	free(parse_fails(xml, strlen(xml), -EBADMSG));
}

/* ---- scale -------------------------------------------------------------- */

#define BIG_N 100000
#define BIG_BAD 4243 /* the one failed blob; not a multiple of 7 */

static char *
big_log(size_t *len)
{
	size_t cap = (size_t)BIG_N * 700, n = 0;
	char *buf = xmalloc(cap);

	n += (size_t)snprintf(buf + n, cap - n,
	                      HEAD "<DriveLog Version=\"2014-11-01\">\n"
	                           "  <DriveId>BIG0001</DriveId>\n");
	for (int i = 0; i < BIG_N; i++) {
		const char *st = i == BIG_BAD ? "Corrupted" : "Completed";

		n += (size_t)snprintf(
		    buf + n, cap - n,
		    "  <Blob Status=\"%s\">\n"
		    "    <BlobPath>backup/set%03d/chunk-%06d.bin</BlobPath>\n"
		    "    <FilePath>\\job\\set%03d\\chunk-%06d.bin</FilePath>\n"
		    "    <Length>8388608</Length>\n"
		    "    <ImportDisposition Status=\"Created\">overwrite</ImportDisposition>\n"
		    "    <BlockList>\n"
		    "      <Block Offset=\"0\" Length=\"4194304\" "
		    "Id=\"MD5/AAAAAAAAAAAAAAAAAAAAAA==\" "
		    "Hash=\"9C8AE14A55241F98533C4D80D85CDC68\" Status=\"Completed\"/>\n"
		    "      <Block Offset=\"4194304\" Length=\"4194304\" "
		    "Hash=\"DF54C531C9B3CA2570FDDDB3BCD0E27D\" Status=\"%s\"/>\n"
		    "    </BlockList>\n"
		    "  </Blob>\n",
		    i == BIG_BAD ? "CompletedWithErrors" : "Completed", i % 997, i, i % 997, i, st);
		check(n < cap);
	}
	n += (size_t)snprintf(buf + n, cap - n,
	                      "  <Status>CompletedWithErrors</Status>\n</DriveLog>\n");
	check(n < cap);
	*len = n;
	return buf;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
test_big_log(void)
{
	size_t len, failed = 0;
	_cleanup_free_ char *xml = big_log(&len);
	struct drivelog l;
	struct rusage ru;
	double t0, t1, t2;
	char rel[64];

	t0 = now();
	check_int(drivelog_parse(xml, len, &l, NULL), 0);
	t1 = now();
	check_int(l.n_blobs, BIG_N);
	for (int i = 0; i < BIG_N; i += 7) {
		const struct drivelog_blob *b;

		snprintf(rel, sizeof(rel), "job/set%03d/chunk-%06d.bin", i % 997, i);
		check((b = drivelog_find_file(&l, rel)) != NULL);
		check(b == &l.blobs[i]);
		check_int(b->n_blocks, 2);
		failed += b->verdict == DLOG_FAILED;
	}
	t2 = now();
	check_int(failed, 0);
	snprintf(rel, sizeof(rel), "job/set%03d/chunk-%06d.bin", BIG_BAD % 997, BIG_BAD);
	check_int(drivelog_find_file(&l, rel)->verdict, DLOG_FAILED);
	check_str(drivelog_find_file(&l, rel)->blocks[1].status, "Corrupted");
	check(drivelog_find_file(&l, "job/set000/chunk-100000.bin") == NULL);
	check(drivelog_find_file(&l, "job/set000") == NULL);
	check(getrusage(RUSAGE_SELF, &ru) == 0);
	printf("100000-blob verbose log: %.1f MiB parsed in %.3f s, %d lookups in %.3f s, "
	       "max RSS %ld MiB\n",
	       (double)len / (1 << 20), t1 - t0, (BIG_N + 6) / 7, t2 - t1, ru.ru_maxrss / 1024);
	drivelog_done(&l);
}

int
main(void)
{
	const char *src = getenv("SOURCE_ROOT");

	xmlInitParser();
	test_verdicts();
	test_unknown_status_kept();
	test_renamed();
	test_hashes();
	test_drive_failed();
	test_odd_documents();
	test_duplicate_path();
	test_file_path_to_rel();
	test_refusals();
	test_long_text();
	test_entities();
	test_billion_laughs();
	test_big_log();
	if (src != NULL) {
		data_dir = xprintf("%s/tests/unit/data", src);
		test_error_sample();
		test_filenotfound_sample();
		test_verbose_sample();
		test_export_properties_sample();
		test_repair_samples();
		free(data_dir);
	} else {
		fprintf(stderr, "SOURCE_ROOT unset: official samples skipped\n");
	}
	return 0;
}
