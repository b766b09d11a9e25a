/*
 * DriveLog parser (drivelog.h): the service's error and verbose copy logs,
 * drive-format README §4. Runs on whichever thread asks (a worker or the
 * loop), with no shared state; main() has initialised libxml2.
 *
 * libxml2's SAX2 interface feeds a small state machine that fills the C
 * structs directly, so no document tree is built: a 64 MiB verbose log costs
 * the structs and nothing more. Safety: any DOCTYPE stops the parse at once
 * (the service writes none, and entities are the only road to XXE or
 * "billion laughs"); XML_PARSE_NONET, never XML_PARSE_NOENT; errors go to our
 * own handler, never stderr. Unknown elements are skipped, as are elements
 * at unexpected places, so later additions to the format do no harm.
 *
 * Robustness (README §4.4): Version may be missing; attribute values and
 * status texts are trimmed; Hash and Id are optional and a bad Hash only
 * clears has_hash; empty BlockList/Properties are fine; Blob Status is an
 * attribute. BlobPath and FilePath are kept byte for byte.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/SAX2.h>

#include "util.h"
#include "drivelog.h"

#define TEXT_MAX (64 * 1024) /* bytes of one text field */
#define DEPTH_MAX 4          /* levels we look at; deeper ones are skipped */

#if LIBXML_VERSION >= 21200
typedef const xmlError *xml_error_t;
#else
typedef xmlErrorPtr xml_error_t;
#endif

enum elem {
	E_OTHER,
	E_ROOT,
	E_DRIVE_ID,
	E_DRIVE_STATUS,
	E_BLOB,
	E_BLOB_PATH,
	E_FILE_PATH,
	E_LENGTH,
	E_DISPOSITION,
	E_BLOCK_LIST,
	E_PAGE_LIST,
	E_BLOCK,
	E_METADATA,
	E_PROPERTIES,
};

struct parse_state {
	xmlParserCtxtPtr ctxt;
	struct drivelog log;
	size_t blobs_cap;
	size_t blocks_cap; /* of the blob being parsed */
	bool root_seen;
	unsigned depth;
	enum elem stack[DEPTH_MAX];
	char *text; /* text of the current text element */
	size_t text_len;
	char *error; /* first failure, "line N: ..." */
};

/* ---- small helpers ----------------------------------------------------- */

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A trimmed copy of [s, e). */
static char *
trimmed(const char *s, const char *e)
{
	while (s < e && is_space(*s))
		s++;
	while (e > s && is_space(e[-1]))
		e--;
	return xstrndup(s, (size_t)(e - s));
}

/* A non-negative decimal, surrounding spaces allowed; -1 if anything else. */
static int64_t
parse_int64(const char *s, const char *e)
{
	int64_t v = 0;
	bool any = false;

	while (s < e && is_space(*s))
		s++;
	while (e > s && is_space(e[-1]))
		e--;
	for (; s < e; s++) {
		if (*s < '0' || *s > '9' || v > (INT64_MAX - (*s - '0')) / 10)
			return -1;
		v = v * 10 + (*s - '0');
		any = true;
	}
	return any ? v : -1;
}


/* 32 hex digits, either case, whitespace anywhere ignored. */
static bool
parse_md5(const char *s, const char *e, unsigned char out[16])
{
	unsigned char md5[16];
	size_t n = 0;
	int v;

	for (; s < e; s++) {
		if (is_space(*s))
			continue;
		if ((v = hex_digit(*s)) < 0 || n == 32)
			return false;
		if (n % 2 == 0)
			md5[n / 2] = (unsigned char)(v << 4);
		else
			md5[n / 2] |= (unsigned char)v;
		n++;
	}
	if (n != 32)
		return false;
	memcpy(out, md5, 16);
	return true;
}

/* The value of the unprefixed attribute name as [*s, *e); false if absent. */
static bool
find_attr(int n, const xmlChar **attrs, const char *name, const char **s, const char **e)
{
	for (int i = 0; i < n; i++, attrs += 5) {
		if (attrs[1] == NULL && strcmp((const char *)attrs[0], name) == 0) {
			*s = (const char *)attrs[3];
			*e = (const char *)attrs[4];
			return true;
		}
	}
	return false;
}

static char *
attr_dup(int n, const xmlChar **attrs, const char *name)
{
	const char *s, *e;

	return find_attr(n, attrs, name, &s, &e) ? trimmed(s, e) : NULL;
}

static void
fail(struct parse_state *st, const char *fmt, ...)
{
	va_list ap;
	char msg[256];

	if (st->error == NULL) {
		va_start(ap, fmt);
		(void)vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		st->error = xprintf("line %d: %s", xmlSAX2GetLineNumber(st->ctxt), msg);
	}
	xmlStopParser(st->ctxt);
}

/* ---- verdicts ----------------------------------------------------------- */

static bool
is_completed(const char *status)
{
	return status != NULL && strcmp(status, "Completed") == 0;
}

static enum drivelog_verdict
blob_verdict(const struct drivelog_blob *b)
{
	const char *ds = b->disposition_status;

	if (ds != NULL && strcmp(ds, "Skipped") == 0)
		return DLOG_SKIPPED;
	if (!is_completed(b->status))
		return DLOG_FAILED;
	for (size_t i = 0; i < b->n_blocks; i++) {
		if (!is_completed(b->blocks[i].status) || b->blocks[i].offset < 0 ||
		    b->blocks[i].length < 0)
			return DLOG_FAILED;
	}
	if ((b->metadata_status != NULL && !is_completed(b->metadata_status)) ||
	    (b->properties_status != NULL && !is_completed(b->properties_status)))
		return DLOG_FAILED;
	if (ds == NULL || strcmp(ds, "Created") == 0 || strcmp(ds, "Overwritten") == 0)
		return DLOG_OK;
	if (strcmp(ds, "Renamed") == 0)
		return DLOG_RENAMED;
	return DLOG_FAILED;
}

/* ---- SAX callbacks ------------------------------------------------------ */

static enum elem
classify(enum elem parent, bool top, const char *name)
{
	static const struct {
		enum elem parent;
		const char *name;
		enum elem kind;
	} table[] = {
	    {E_ROOT, "DriveId", E_DRIVE_ID},
	    {E_ROOT, "Status", E_DRIVE_STATUS},
	    {E_ROOT, "Blob", E_BLOB},
	    {E_BLOB, "BlobPath", E_BLOB_PATH},
	    {E_BLOB, "FilePath", E_FILE_PATH},
	    {E_BLOB, "Length", E_LENGTH},
	    {E_BLOB, "ImportDisposition", E_DISPOSITION},
	    {E_BLOB, "BlockList", E_BLOCK_LIST},
	    {E_BLOB, "PageRangeList", E_PAGE_LIST},
	    {E_BLOB, "Metadata", E_METADATA},
	    {E_BLOB, "Properties", E_PROPERTIES},
	    {E_BLOCK_LIST, "Block", E_BLOCK},
	    {E_PAGE_LIST, "PageRange", E_BLOCK},
	};

	if (top)
		return E_ROOT;
	for (size_t i = 0; i < ELEMENTSOF(table); i++)
		if (table[i].parent == parent && strcmp(table[i].name, name) == 0)
			return table[i].kind;
	return E_OTHER;
}

static bool
is_text_elem(enum elem e)
{
	return e == E_DRIVE_ID || e == E_DRIVE_STATUS || e == E_BLOB_PATH || e == E_FILE_PATH ||
	       e == E_LENGTH || e == E_DISPOSITION;
}

static struct drivelog_blob *
cur_blob(struct parse_state *st)
{
	return &st->log.blobs[st->log.n_blobs - 1];
}

static void
start_blob(struct parse_state *st, int n, const xmlChar **attrs)
{
	struct drivelog_blob *b;

	if (st->log.n_blobs == st->blobs_cap) {
		st->blobs_cap = st->blobs_cap ? st->blobs_cap * 2 : 64;
		st->log.blobs = xreallocarray(st->log.blobs, st->blobs_cap, sizeof(*b));
	}
	b = &st->log.blobs[st->log.n_blobs++];
	*b = (struct drivelog_blob){.length = -1};
	b->status = attr_dup(n, attrs, "Status");
	if (b->status == NULL)
		b->status = xstrdup("");
	st->blocks_cap = 0;
}

static void
add_block(struct parse_state *st, int n, const xmlChar **attrs)
{
	struct drivelog_blob *b = cur_blob(st);
	struct drivelog_block *k;
	const char *s, *e;

	if (b->n_blocks == st->blocks_cap) {
		st->blocks_cap = st->blocks_cap ? st->blocks_cap * 2 : 8;
		b->blocks = xreallocarray(b->blocks, st->blocks_cap, sizeof(*k));
	}
	k = &b->blocks[b->n_blocks++];
	*k = (struct drivelog_block){.offset = -1, .length = -1};
	if (find_attr(n, attrs, "Offset", &s, &e))
		k->offset = parse_int64(s, e);
	if (find_attr(n, attrs, "Length", &s, &e))
		k->length = parse_int64(s, e);
	if (find_attr(n, attrs, "Hash", &s, &e))
		k->has_hash = parse_md5(s, e, k->md5);
	k->status = attr_dup(n, attrs, "Status");
	if (k->status == NULL)
		k->status = xstrdup("");
}

/* Status attribute of Metadata, Properties or ImportDisposition: first one wins. */
static void
set_status_attr(char **field, int n, const xmlChar **attrs)
{
	if (*field == NULL)
		*field = attr_dup(n, attrs, "Status");
	if (*field == NULL)
		*field = xstrdup("");
}

static void
on_start(void *ctx, const xmlChar *localname, _unused_ const xmlChar *prefix,
         _unused_ const xmlChar *uri, _unused_ int nb_ns, _unused_ const xmlChar **ns, int n,
         _unused_ int nb_defaulted, const xmlChar **attrs)
{
	struct parse_state *st = ctx;
	const char *name = (const char *)localname;
	enum elem parent =
	    st->depth > 0 && st->depth <= DEPTH_MAX ? st->stack[st->depth - 1] : E_OTHER;
	enum elem kind = classify(parent, st->depth == 0, name);

	if (kind == E_ROOT) {
		if (strcmp(name, "DriveLog") != 0) {
			fail(st, "root element is <%.64s>, not <DriveLog>", name);
			return;
		}
		st->root_seen = true;
		st->log.version = attr_dup(n, attrs, "Version");
	} else if (kind == E_BLOB) {
		start_blob(st, n, attrs);
	} else if (kind == E_BLOCK) {
		add_block(st, n, attrs);
	} else if (kind == E_PAGE_LIST) {
		cur_blob(st)->page_ranges = true;
	} else if (kind == E_METADATA) {
		set_status_attr(&cur_blob(st)->metadata_status, n, attrs);
	} else if (kind == E_PROPERTIES) {
		set_status_attr(&cur_blob(st)->properties_status, n, attrs);
	} else if (kind == E_DISPOSITION && cur_blob(st)->disposition_status == NULL) {
		cur_blob(st)->disposition_status = attr_dup(n, attrs, "Status");
	}
	if (is_text_elem(kind))
		st->text_len = 0;
	if (st->depth < DEPTH_MAX)
		st->stack[st->depth] = kind;
	st->depth++;
}

static void
on_text(void *ctx, const xmlChar *ch, int len)
{
	struct parse_state *st = ctx;

	if (st->depth == 0 || st->depth > DEPTH_MAX || !is_text_elem(st->stack[st->depth - 1]))
		return;
	if (st->text_len + (size_t)len > TEXT_MAX) {
		fail(st, "text longer than %d bytes", TEXT_MAX);
		return;
	}
	memcpy(st->text + st->text_len, ch, (size_t)len);
	st->text_len += (size_t)len;
}

/* Store the text of a finished text element; the first occurrence wins. */
static void
end_text(struct parse_state *st, enum elem kind)
{
	const char *s = st->text, *e = st->text + st->text_len;
	struct drivelog_blob *b =
	    kind == E_DRIVE_ID || kind == E_DRIVE_STATUS ? NULL : cur_blob(st);
	char **field = NULL;

	switch (kind) {
	case E_DRIVE_ID:
		field = &st->log.drive_id;
		break;
	case E_DRIVE_STATUS:
		field = &st->log.drive_status;
		break;
	case E_DISPOSITION:
		field = &b->disposition;
		break;
	case E_LENGTH:
		if (b->length < 0)
			b->length = parse_int64(s, e);
		return;
	case E_BLOB_PATH:
		if (b->blob_path == NULL)
			b->blob_path = xstrndup(s, st->text_len); /* verbatim */
		return;
	case E_FILE_PATH:
		if (b->file_path == NULL)
			b->file_path = xstrndup(s, st->text_len);
		return;
	default:
		return;
	}
	if (*field == NULL)
		*field = trimmed(s, e);
}

static void
end_blob(struct drivelog_blob *b)
{
	if (b->blob_path == NULL)
		b->blob_path = xstrdup("");
	if (b->file_path == NULL)
		b->file_path = xstrdup("");
	b->rel_path = drivelog_file_path_to_rel(b->file_path);
	b->verdict = blob_verdict(b);
}

static void
on_end(void *ctx, _unused_ const xmlChar *localname, _unused_ const xmlChar *prefix,
       _unused_ const xmlChar *uri)
{
	struct parse_state *st = ctx;
	enum elem kind;

	if (st->depth == 0)
		return;
	st->depth--;
	if (st->depth >= DEPTH_MAX)
		return;
	kind = st->stack[st->depth];
	if (is_text_elem(kind))
		end_text(st, kind);
	else if (kind == E_BLOB)
		end_blob(cur_blob(st));
}

static void
on_doctype(void *ctx, const xmlChar *name, _unused_ const xmlChar *external_id,
           _unused_ const xmlChar *system_id)
{
	fail(ctx, "DOCTYPE <!DOCTYPE %.64s> refused: copy logs have none", (const char *)name);
}

static void
on_xml_error(void *ctx, xml_error_t err)
{
	struct parse_state *st = ctx;
	size_t n;

	if (st->error != NULL || err->level < XML_ERR_ERROR)
		return;
	n = err->message != NULL ? strlen(err->message) : 0;
	while (n > 0 && is_space(err->message[n - 1]))
		n--;
	st->error = xprintf("line %d: %.*s", err->line, (int)n, n ? err->message : "XML error");
	for (char *p = st->error; *p != '\0'; p++) /* libxml2 may add a second line */
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
}

/* ---- parse -------------------------------------------------------------- */

static void
log_free_fields(struct drivelog *l)
{
	for (size_t i = 0; i < l->n_blobs; i++) {
		struct drivelog_blob *b = &l->blobs[i];

		for (size_t j = 0; j < b->n_blocks; j++)
			free(b->blocks[j].status);
		free(b->blocks);
		free(b->blob_path);
		free(b->file_path);
		free(b->rel_path);
		free(b->status);
		free(b->disposition);
		free(b->disposition_status);
		free(b->metadata_status);
		free(b->properties_status);
	}
	free(l->blobs);
	free(l->by_path);
	free(l->version);
	free(l->drive_id);
	free(l->drive_status);
}

static int
by_path_cmp(const void *a, const void *b)
{
	const struct drivelog_blob *x = *(const struct drivelog_blob *const *)a;
	const struct drivelog_blob *y = *(const struct drivelog_blob *const *)b;
	int r = strcmp(x->rel_path, y->rel_path);

	if (r != 0)
		return r;
	return x < y ? -1 : x > y;
}

static void
build_index(struct drivelog *l)
{
	if (l->n_blobs == 0)
		return;
	l->by_path = xreallocarray(NULL, l->n_blobs, sizeof(*l->by_path));
	for (size_t i = 0; i < l->n_blobs; i++)
		l->by_path[i] = &l->blobs[i];
	qsort(l->by_path, l->n_blobs, sizeof(*l->by_path), by_path_cmp);
}

/* libxml2 reports some errors (encoding) through its generic, per-thread handler: keep them off stderr. */
static void
xml_quiet(void *ctx, const char *msg, ...)
{
}

static xmlParserCtxtPtr
new_ctxt(const char *xml, size_t len, struct parse_state *st)
{
	xmlParserCtxtPtr ctxt;
	xmlSAXHandler *h;

	xmlSetGenericErrorFunc(NULL, xml_quiet);
	if ((ctxt = xmlCreateMemoryParserCtxt(xml, (int)len)) == NULL)
		fatalx("xmlCreateMemoryParserCtxt failed");
	h = ctxt->sax;
	*h = (xmlSAXHandler){
	    .initialized = XML_SAX2_MAGIC,
	    .internalSubset = on_doctype,
	    .startElementNs = on_start,
	    .endElementNs = on_end,
	    .characters = on_text,
	    .cdataBlock = on_text,
	    .serror = on_xml_error,
	};
	ctxt->userData = st;
	(void)xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOBLANKS);
	return ctxt;
}

static void
set_err(char **ret_err, char *msg)
{
	if (ret_err != NULL)
		*ret_err = msg;
	else
		free(msg);
}

int
drivelog_parse(const char *xml, size_t len, struct drivelog *ret, char **ret_err)
{
	struct parse_state st = {0};
	struct drivelog *l = &st.log;

	if (len > DRIVELOG_SIZE_MAX) {
		set_err(ret_err, xprintf("copy log of %zu bytes is above the %u byte limit", len,
		                         DRIVELOG_SIZE_MAX));
		return -EMSGSIZE;
	}
	if (len == 0 || xml == NULL) {
		set_err(ret_err, xstrdup("copy log is empty"));
		return -EBADMSG;
	}
	st.text = xmalloc(TEXT_MAX);
	st.ctxt = new_ctxt(xml, len, &st);
	(void)xmlParseDocument(st.ctxt);
	if (st.error == NULL && (!st.ctxt->wellFormed || !st.root_seen))
		st.error = xstrdup("not a well-formed DriveLog document");
	xmlFreeParserCtxt(st.ctxt);
	free(st.text);
	if (st.error != NULL) {
		/* a blob cut short by the error may lack its defaults: free by field */
		log_free_fields(l);
		set_err(ret_err, st.error);
		return -EBADMSG;
	}
	if (l->drive_id == NULL)
		l->drive_id = xstrdup("");
	if (l->drive_status == NULL)
		l->drive_status = xstrdup("");
	l->drive_ok = strcmp(l->drive_status, "Completed") == 0 ||
	              strcmp(l->drive_status, "CompletedWithWarnings") == 0;
	l->drive_failed = drivelog_drive_failed_status(l->drive_status);
	build_index(l);
	*ret = *l;
	return 0;
}

bool
drivelog_drive_failed_status(const char *s)
{
	return s != NULL && *s != '\0' && strcmp(s, "Completed") != 0 &&
	       strcmp(s, "CompletedWithWarnings") != 0 && strcmp(s, "CompletedWithErrors") != 0;
}

void
drivelog_done(struct drivelog *l)
{
	if (l == NULL)
		return;
	log_free_fields(l);
	*l = (struct drivelog){0};
}

char *
drivelog_file_path_to_rel(const char *file_path)
{
	char *rel = xstrdup(file_path[0] == '\\' ? file_path + 1 : file_path);

	for (char *p = rel; *p != '\0'; p++)
		if (*p == '\\')
			*p = '/';
	return rel;
}

const struct drivelog_blob *
drivelog_find_file(const struct drivelog *l, const char *rel)
{
	const struct drivelog_blob *best = NULL;
	size_t lo = 0, hi = l->n_blobs;

	while (lo < hi) { /* first entry not below rel */
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(l->by_path[mid]->rel_path, rel) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < l->n_blobs && strcmp(l->by_path[lo]->rel_path, rel) == 0; lo++)
		if (best == NULL || l->by_path[lo]->verdict > best->verdict)
			best = l->by_path[lo];
	return best;
}

const char *
drivelog_verdict_to_string(enum drivelog_verdict v)
{
	static const char *const names[] = {
	    [DLOG_OK] = "OK",
	    [DLOG_RENAMED] = "RENAMED",
	    [DLOG_SKIPPED] = "SKIPPED",
	    [DLOG_FAILED] = "FAILED",
	};

	return (size_t)v < ELEMENTSOF(names) ? names[v] : "FAILED";
}
