/* api_request: one HTTP request as the handlers see it, and the helpers they answer with.
 *
 * A request lives from its first header to MHD's completion callback. Handlers run on an
 * MHD thread, never block, and answer by queueing exactly one response with api_reply_*
 * or api_problem*, or by parking (api/park.h) to be called again later. A handler may be
 * called more than once for the same request when it parked: it recomputes its answer from
 * the request and the store each time, so it must not keep half-done work between calls.
 *
 * Thread-safety: a request is touched by one MHD thread at a time; only its park
 * (api/park.h) is shared with other threads. */
#ifndef RAYD_API_REQUEST_H
#define RAYD_API_REQUEST_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/context.h"
#include "runtime/buffer.h"
#include "runtime/ref.h"
#include "runtime/trace.h"

#define API_MAX_PARAMS 4
#define API_REQUEST_ID_MAX RT_REQUEST_ID_MAX /* the runtime keeps no more */
/* The header that names the session a request works for (api/sessions.c). */
#define API_SESSION_HEADER "Rayd-Session"

typedef struct api_route api_route;
typedef struct api_park api_park;
typedef struct api_forward api_forward;

typedef struct api_request {
    struct MHD_Connection *conn;
    api_context *ctx;       /* borrowed, lives as long as the server */
    const api_route *route; /* NULL when no route matched */
    const char *method;     /* borrowed from MHD */
    const char *url;        /* borrowed from MHD, the path without the query */
    const char *params[API_MAX_PARAMS]; /* captured {name} segments, in path_copy */
    char *path_copy;        /* owned */
    char request_id[API_REQUEST_ID_MAX + 1];
    char traceparent[RT_TRACEPARENT_SIZE]; /* rayd's span in the caller's trace, or "" */
    double started;         /* monotonic seconds */

    /* Body. JSON routes collect into body/body_len; raw routes (object put) collect
     * straight into raw_buf, preallocated from Content-Length. */
    char *body;
    size_t body_len, body_cap;
    rt_buf *raw_buf;        /* owned until handed to the store */
    size_t raw_len;
    bool body_too_large;    /* discard the rest and answer 413 */
    unsigned body_refused;  /* 0, or the status to answer after discarding the rest: 413
                               (over the whole body budget), 503 (the budget is spent now),
                               507 (an object the store can never take) */
    size_t body_expected;   /* Content-Length, 0 when chunked */
    size_t budget_held;     /* bytes this request holds of ctx->bodies (api/budget.h) */
    size_t parked_cost;     /* api/budget.h: what parking keeps beyond the body, 0: unknown */
    bool replied;           /* a response is queued */
    bool linger;            /* answered before its body: read the rest away (api/linger.h) */
    json_t *json;           /* parsed body, owned; kept across parks */
    void *handler_state;    /* owned by the handler: freed with handler_state_free */
    void (*handler_state_free)(void *state);

    /* Waiting. deadline is monotonic seconds, 0 until a handler sets it. */
    double deadline;
    api_park *park;         /* non-NULL while parked or just resumed */
    bool parked;            /* parked at least once: counted by the parking until it
                               completes (api_park_complete) */
    api_forward *forward;   /* cluster mode: a relay or fan-out to other nodes (forward.h) */
    struct api_redis_call *redis_call; /* cluster mode: a Redis command (redis_call.h) */
    unsigned rounds;        /* how many times the handler was called */
    unsigned status;        /* status of the queued response, for logs and metrics */
    size_t bytes_out;       /* body bytes of the queued response, for logs */
    char allow[64];         /* for 405 answers: the Allow header */
    bool www_authenticate;  /* 401 answers: add WWW-Authenticate */
    void *idem_entry;       /* the Idempotency-Key entry this request will answer, if any */
    rt_buf *idem_buf;       /* owned reference: the answer's body, for that entry: the stored
                               object itself when the answer is one, else a copy */
    size_t idem_offset, idem_len; /* the answer's part of idem_buf */
    bool idem_shared;       /* idem_buf is a stored object's buffer, not a copy */
    struct MHD_Response *idem_held; /* cluster mode: the answer, held until Redis has it */
    unsigned idem_held_status;
    unsigned retry_after;   /* seconds for a Retry-After header (429, 202 pending), 0: none */
    char ray_ref[RT_REF_SIZE]; /* Prefer: wait answers: adds X-Ray-Ref and Location */
    double prefer_wait;     /* seconds asked for with Prefer: wait=N, 0 when absent */
    char session[RT_REF_SIZE]; /* the open session its Rayd-Session header named, or "" */
} api_request;

/* ---- answering ---------------------------------------------------------------------- */

/* Queues resp with status, adding X-Request-Id and the given Content-Type (NULL: none).
 * Destroys resp (MHD keeps its own reference). Returns MHD_YES or MHD_NO. */
enum MHD_Result api_reply(api_request *req, unsigned status, struct MHD_Response *resp,
                          const char *content_type);

/* Serialises json (stolen) and answers with application/json. */
enum MHD_Result api_reply_json(api_request *req, unsigned status, json_t *json);
/* Replies with JSON already written as text (malloc'd; taken, also on failure); NULL text
 * answers 503 (out of memory). */
enum MHD_Result api_reply_json_text(api_request *req, unsigned status, char *text, size_t len);

/* A response holding text (malloc'd, len bytes, stolen: freed by MHD, or here on failure),
 * counted for the log and kept for an Idempotency-Key. NULL when text is NULL or out of
 * memory. */
struct MHD_Response *api_response_text(api_request *req, char *text, size_t len);

/* A response holding json serialised (json stolen), for callers that add headers before
 * api_reply. NULL when out of memory. */
struct MHD_Response *api_response_json(api_request *req, json_t *json);

/* Writes at most max bytes of s as the inside of a JSON string into out, which has room
 * for 6 * max bytes: quotes, backslashes and control bytes escaped, well-formed UTF-8 kept
 * as it is, any other byte written as U+FFFD, so the result is always valid JSON. Returns
 * the bytes written; out is not NUL-terminated. */
size_t api_json_escape_into(char *out, const char *s, size_t max);

/* Answers 200 with one page of a listing: {key: items, "next_cursor": "N" or null}.
 * items is stolen; next is the cursor of the next page, 0 at the end. */
enum MHD_Result api_reply_page(api_request *req, const char *key, json_t *items,
                               unsigned long long next);

/* Answers with no body. */
enum MHD_Result api_reply_empty(api_request *req, unsigned status);

/* Answers with a static or long-lived text (not copied, not freed). */
enum MHD_Result api_reply_static(api_request *req, unsigned status, const char *text,
                                 size_t len, const char *content_type);

/* Answers with part of a stored buffer without copying it: the response holds a reference
 * (taken here) and drops it when MHD is done with it. */
struct MHD_Response *api_response_from_buf(api_request *req, rt_buf *buf, size_t offset,
                                           size_t len);

/* Answers with part of a spilled object straight from its spill file (sendfile), without
 * reading it into memory: the response owns a duplicate of the file's descriptor, so the
 * file may be deleted meanwhile (api/spilled.c). NULL when out of descriptors or memory. */
struct MHD_Response *api_response_from_spilled(api_request *req, const rt_spilled *sp,
                                               size_t offset, size_t len);

/* Adds the spill figures of s to /v1/status's object_store member (api/spilled.c). */
void api_system_spill_status(json_t *store, const rt_store_stats *s);

/* ---- reading the request ------------------------------------------------------------ */

/* A request header or NULL. Borrowed from MHD. */
const char *api_header(api_request *req, const char *name);
/* A query argument or NULL. Borrowed from MHD. */
const char *api_query(api_request *req, const char *name);

/* Reads Prefer: wait=N (RFC 7240) into req->prefer_wait, capped at the server's maximum.
 * A malformed preference is ignored, as the RFC asks. */
void api_read_prefer_wait(api_request *req);

/* Parses a duration in seconds (a JSON-style number >= 0). Returns 0 and sets *out, or -1. */
int api_parse_seconds(const char *text, double *out);

/* Reads a query argument holding seconds; when absent sets *out to dflt. Answers 400 itself
 * and returns -1 on a bad value. */
int api_query_seconds(api_request *req, const char *name, double dflt, double *out);

/* Reads an optional query argument holding an integer in [min, max]; leaves *out alone
 * when absent. Answers 400 itself and returns -1 on a bad value. */
int api_query_uint(api_request *req, const char *name, unsigned long long min,
                   unsigned long long max, unsigned long long *out);

/* Parses req->body as JSON into req->json (once). On failure answers 400 and returns -1. */
int api_body_json(api_request *req);

/* Takes value, the member key of obj (or NULL), out of obj: returns a new reference owned
 * by the caller, the only one when obj held the only other (as a parsed request body
 * does), so that it can be handed on without a copy. NULL gives NULL. */
json_t *api_json_take(json_t *obj, const char *key, json_t *value);

/* Checks that a JSON object has only the allowed member names (NULL-terminated list).
 * On failure answers 400 naming the member and returns -1. */
int api_json_only_keys(api_request *req, json_t *obj, const char *const *allowed,
                       const char *what);

#endif
