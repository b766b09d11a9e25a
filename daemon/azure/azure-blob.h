/*
 * Azure Blob Storage over the HTTP layer (azure-http.h). Loop thread only.
 * Auth, in this order of preference: SharedKey (AccountName= + account key
 * secret), SAS token (SasTokenFile= / storage-sas-token credential, appended
 * to every URL, never logged), else an Entra bearer token for
 * https://storage.azure.com/.default via azure_token() (azure-arm.h); then
 * requests carry "Authorization: Bearer" and x-ms-version >= 2017-11-09.
 * Endpoint: BlobEndpoint= if set (path-style for emulators, e.g.
 * https://127.0.0.1:10000/devstoreaccount1), else
 * https://<AccountName>.blob.core.windows.net (core.chinacloudapi.cn /
 * core.usgovcloudapi.net for the other clouds; Custom requires BlobEndpoint=).
 * x-ms-version pinned to BLOB_API_VERSION (Azurite 3.35 accepts it).
 */
#ifndef SEEDD_AZURE_BLOB_H
#define SEEDD_AZURE_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLOB_API_VERSION "2021-12-02"
#define BLOB_BLOCK_MAX (4u << 20)

struct http;
struct azure;
struct config;
struct blob_client;
struct blob_call;

/* From List Blobs entries or Get Blob Properties. */
struct blob_props {
	char *name; /* blob name within the container */
	int64_t length;
	bool has_md5;
	unsigned char md5[16]; /* Content-MD5 (base64 on the wire) */
	char *etag;
	char *content_type; /* NULL if not reported */
	char *access_tier;  /* NULL if not reported */
	char *copy_status;  /* pending, success, aborted, failed; NULL if never copied */
	char *copy_id;
	char *copy_status_description;
	int64_t copy_done, copy_total; /* from x-ms-copy-progress "done/total" */
};
void blob_props_done(struct blob_props *p);

/* One committed block from Get Block List. */
struct blob_block {
	char *id; /* as Azure lists it: the base64 id it was put with */
	int64_t size;
};

struct blob_result {
	long status;         /* HTTP status, 0 if none */
	int error;           /* 0 on success (2xx); else negative errno (transport, -ENOENT for 404,
	                        -EIO other HTTP errors, -EBADMSG unparsable answer, -EACCES auth) */
	const char *code;    /* from the Error XML <Code> or x-ms-error-code, e.g. "BlobNotFound" */
	const char *message; /* <Message> text, or a seedd sentence */
	/* per operation, valid during the callback only: */
	struct blob_props *props; /* get_properties, copy (status right after the copy call) */
	struct blob_props *list;  /* list: entries */
	size_t n_list;
	const char *next_marker; /* list: NULL when no more pages */
	const char *body;        /* get */
	size_t body_len;
	const struct blob_block *blocks; /* get_block_list: committed blocks, in order */
	size_t n_blocks;
};
typedef void (*blob_done_fn)(const struct blob_result *r, void *userdata);

/* NULL and *ret_err if the storage config is incomplete (names the missing key). */
struct blob_client *blob_client_new(struct http *h, struct azure *az /* may be NULL: no bearer */,
                                    const struct config *c, char **ret_err);
/* Cancels calls, no callbacks. Free it before the http and the azure it uses. */
struct blob_client *blob_client_free(struct blob_client *bc);
/* Absolute URL of a blob (no SAS or credentials in it), e.g. for a copy source or a log line. */
char *blob_url(const struct blob_client *bc, const char *container, const char *name);

struct blob_call *blob_list(struct blob_client *bc, const char *container, const char *prefix,
                            const char *marker, unsigned max_results, blob_done_fn done, void *ud);
struct blob_call *blob_get_properties(struct blob_client *bc, const char *container,
                                      const char *name, blob_done_fn done, void *ud);
/*
 * GET a blob's content, at most max_bytes (larger: -EMSGSIZE). url: an
 * absolute blob URL in this account (e.g. a log link from Azure; any SAS in
 * it is kept, else this client's auth is used).
 */
struct blob_call *blob_get_url(struct blob_client *bc, const char *url, size_t max_bytes,
                               blob_done_fn done, void *ud);
/*
 * Put Block with Content-MD5 of data; block_id: base64 as in the manifest
 * ("MD5/..."), URL-encoded by this function. data is copied.
 */
struct blob_call *blob_put_block(struct blob_client *bc, const char *container, const char *name,
                                 const char *block_id, const void *data, size_t len,
                                 const unsigned char md5[16], blob_done_fn done, void *ud);
/* Put Block List (all ids "Latest"), setting x-ms-blob-content-md5 to the whole file's MD5. */
struct blob_call *blob_put_block_list(struct blob_client *bc, const char *container,
                                      const char *name, const char *const *block_ids, size_t n,
                                      const unsigned char content_md5[16], blob_done_fn done,
                                      void *ud);
/*
 * Copy Blob (x-ms-copy-source = source_url, same account; x-ms-access-tier =
 * tier if not NULL). result->props->copy_status/copy_id as answered (Azurite
 * answers "success" at once; Azure may say "pending": poll with
 * blob_get_properties).
 */
struct blob_call *blob_copy(struct blob_client *bc, const char *container, const char *name,
                            const char *source_url, const char *tier, blob_done_fn done, void *ud);
struct blob_call *blob_set_tier(struct blob_client *bc, const char *container, const char *name,
                                const char *tier, blob_done_fn done, void *ud);
/*
 * Get Block List, committed blocks only (comp=blocklist&blocklisttype=committed):
 * result->blocks in blob order. A blob without blocks (empty, or written by Put
 * Blob) answers an empty list.
 */
struct blob_call *blob_get_block_list(struct blob_client *bc, const char *container,
                                      const char *name, blob_done_fn done, void *ud);
/*
 * Set Blob Properties (comp=properties) with x-ms-blob-content-md5 and, if
 * content_type is not NULL, x-ms-blob-content-type. Azure clears the other
 * x-ms-blob-content-* properties not sent (Cache-Control, Content-Encoding,
 * Content-Language, Content-Disposition); callers use it only on blobs that
 * carry none.
 */
struct blob_call *blob_set_content_md5(struct blob_client *bc, const char *container,
                                       const char *name, const unsigned char md5[16],
                                       const char *content_type, blob_done_fn done, void *ud);
/* 404 counts as success (error 0). */
struct blob_call *blob_delete(struct blob_client *bc, const char *container, const char *name,
                              blob_done_fn done, void *ud);
/* 409 ContainerAlreadyExists = success. */
struct blob_call *blob_create_container(struct blob_client *bc, const char *container,
                                        blob_done_fn done, void *ud);
/* The call's done is not called; NULL is ignored. Not from inside its own done. */
void blob_cancel(struct blob_call *c);

/*
 * For the fuzz target (tests/fuzz/fuzz-blob.c): read resp (status, headers,
 * body, as received) as the answer to an operation of this kind, as a call
 * does, and pass done the result (on this stack; nothing is sent). The blob
 * is called "blob"; a GET takes at most 1 MiB.
 */
enum blob_answer {
	BLOB_ANSWER_LIST,
	BLOB_ANSWER_BLOCK_LIST,
	BLOB_ANSWER_PROPERTIES,
	BLOB_ANSWER_COPY,
	BLOB_ANSWER_GET,
	BLOB_ANSWER_DELETE,
	BLOB_ANSWER_CREATE_CONTAINER,
	_BLOB_ANSWER_MAX,
};
struct http_response;
void blob_read_answer(enum blob_answer kind, const struct http_response *resp, blob_done_fn done,
                      void *ud);

#endif
