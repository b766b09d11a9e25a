/*
 * Azure Resource Manager over the HTTP layer: Microsoft Entra ID tokens
 * (client credentials, cached per scope and renewed before expiry), bearer
 * requests with api-version, one retry with a fresh token on an expired or
 * invalid one, and long-running operations followed to their end
 * (Azure-AsyncOperation or Location, 201/202). Loop thread only.
 */
#ifndef SEEDD_AZURE_ARM_H
#define SEEDD_AZURE_ARM_H

#include <jansson.h>
#include <stdbool.h>

struct event_base;
struct config;
struct azure;
struct arm_call;

#define ARM_SCOPE "/.default"
#define STORAGE_SCOPE "https://storage.azure.com/.default"

/* What a call ended with. */
struct arm_result {
	long status;         /* HTTP status of the final answer; 0 if none */
	json_t *body;        /* parsed JSON body (borrowed), or NULL */
	int error;           /* 0, or negative errno (transport, -EBADMSG bad body, -EACCES auth) */
	const char *code;    /* Azure's error code (ARM or Entra), or a seedd one; NULL if ok */
	const char *message; /* a human sentence for AzureError; NULL if ok */
	const char *location; /* Location header of the final answer, if any */
	bool in_operation;    /* the answer came from following the operation, not the request */
};

typedef void (*arm_done_fn)(const struct arm_result *r, void *userdata);

/* The code of a call that got no token because Entra ID did not answer at all (error -EACCES). */
#define ARM_CODE_TOKEN_UNREACHABLE "TokenEndpointUnreachable"

#define ARM_FOLLOW_LRO 0x1 /* follow 201/202 to the end of the operation */
/*
 * A create: the request itself is resent only where Azure cannot have acted
 * (429, 503, no connection); a timeout, reset or other 5xx comes back to the
 * caller, who looks the resource up by name before anything else.
 */
#define ARM_CREATE 0x2

struct azure *azure_new(struct event_base *base, const struct config *c, char **ret_err);
struct azure *azure_free(struct azure *az);
/* A reloaded configuration: cached tokens are dropped. */
void azure_set_config(struct azure *az, const struct config *c);

/*
 * method on path (relative to ResourceManagerEndpoint, e.g.
 * "/subscriptions/…/jobs/x") or an absolute URL, with api-version appended
 * to a path. body may be NULL. done gets the outcome on a later loop
 * iteration; a result counts as success when error is 0 and 200 <= status
 * < 300. Never NULL. A 201/202 without Location or Azure-AsyncOperation
 * ends the call at once (status 201/202, body as answered, maybe NULL):
 * the caller reads the resource to learn the outcome.
 */
struct arm_call *arm_request(struct azure *az, const char *method, const char *path,
			     const char *api_version, json_t *body, unsigned flags, arm_done_fn done,
			     void *userdata);
void arm_cancel(struct arm_call *c);

/* A bearer token for scope, for the blob client: done(token or NULL, code, message, userdata). */
typedef void (*azure_token_fn)(const char *token, const char *code, const char *message,
			       void *userdata);
struct token_waiter;
/*
 * A cached token is handed over at once (returns NULL); otherwise done runs
 * on a later loop iteration and the returned waiter can be cancelled.
 */
struct token_waiter *azure_token(struct azure *az, const char *scope, azure_token_fn done,
				 void *userdata);
void azure_token_cancel(struct token_waiter *w);

/* The token scope of ARM: the management endpoint's resource id plus /.default. Allocated. */
char *azure_arm_scope(const struct config *c);

/* The HTTP client, for the blob code. */
struct http *azure_http(struct azure *az);

/* The LRO poll interval in ms when Azure gives no Retry-After (default 5000; tests lower it). */
void azure_set_lro_poll_ms(struct azure *az, long ms);

#endif
