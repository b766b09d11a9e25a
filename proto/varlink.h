/*
 * Varlink framing: each message is one JSON object followed by a NUL byte.
 *
 * struct vl_reader accumulates bytes as they arrive (any split, many messages
 * per read) and hands out complete messages; a message longer than
 * VL_MESSAGE_MAX is an error, detected before the buffer grows past the cap.
 * No event library here: the daemon feeds it from libevent, seedctl from
 * blocking reads. Not thread-safe; one reader per connection.
 */
#ifndef SEEDD_VARLINK_H
#define SEEDD_VARLINK_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct vl_reader {
	char *buf;
	size_t len;  /* bytes held */
	size_t cap;  /* bytes allocated */
	size_t scan; /* bytes of buf already searched for a NUL */
};

void vl_reader_init(struct vl_reader *r);
void vl_reader_done(struct vl_reader *r);

/* Append data; -EMSGSIZE if the pending message would exceed VL_MESSAGE_MAX. */
int vl_reader_feed(struct vl_reader *r, const void *data, size_t len);

/*
 * Take the next complete message. Returns 1 and sets *ret (a new reference)
 * and leaves *ret_len as the message length; 0 if no complete message is
 * buffered; -EMSGSIZE if the pending message is too long; -EBADMSG if the
 * message is not a JSON object or not valid UTF-8. A bad message is consumed,
 * so the caller may answer and go on or drop the connection.
 */
int vl_reader_next(struct vl_reader *r, json_t **ret);

/* Serialize obj compactly with its NUL terminator; caller frees. -EMSGSIZE if too long. */
int vl_encode(const json_t *obj, char **ret, size_t *ret_len);

/* Build a call {"method":M,"parameters":P[,"more":true]}; steals params (may be NULL). */
json_t *vl_call_new(const char *method, json_t *params, int more);

/* Build a reply {"parameters":P[,"continues":true]}; steals params (may be NULL). */
json_t *vl_reply_new(json_t *params, int continues);

/* Build an error reply {"error":E,"parameters":P}; steals params (may be NULL). */
json_t *vl_error_new(const char *error, json_t *params);

/* Blocking helpers for seedctl: write all of a message; read one message (timeout ms, -1 none). */
int vl_send(int fd, const json_t *msg);
int vl_recv(int fd, struct vl_reader *r, json_t **ret, int timeout_ms);

/* A JSON string of s (never NULL) for text that may not be UTF-8 (paths): bad bytes become \\xNN. */
json_t *json_text(const char *s);

#endif
