/* rt_http: a small HTTP/1.1 client for small calls to peer rayd nodes (actor calls relayed
 * by a node that does not own the actor), beside the libcurl client (runtime/cluster_peer.c)
 * that keeps every other peer transfer (big and streamed objects, https peers).
 *
 * Why: a relayed actor call is a few hundred bytes each way, and libcurl's fixed cost per
 * transfer (building the request through its printf engine, its connection cache, a
 * liveness poll before reusing a connection, header callbacks) plus a hand-off to its I/O
 * thread cost the relaying node more CPU than the owner spends on the whole call. Here the
 * request is written by the thread that starts the call, on a pooled keep-alive
 * connection, and the answer is read on one epoll thread: no per-transfer set-up, no
 * liveness poll (a connection the peer closes while idle is seen by epoll and dropped),
 * one hand-off fewer.
 *
 * Two parts:
 * - rt_http_parser: a strict, incremental parser of one HTTP/1.1 answer (status line,
 *   headers up to RT_HTTP_HEAD_MAX bytes, a body framed by Content-Length or chunked, or
 *   read to the connection's end when it has neither). No I/O: unit-tested on its own.
 * - rt_http_client: connections per peer (host:port, plain http only), at most
 *   RT_HTTP_CONNS_PER_PEER each; rt_http_start returns NULL when it cannot take a call
 *   (https, a bad URL, every connection to that peer busy, closed, out of memory) and the
 *   caller uses another way (libcurl) then.
 *
 * Thread-safety: rt_http_start, rt_http_cancel and rt_http_client_close from any thread;
 * the handler's callbacks run on the client's I/O thread, one call at a time, and must not
 * block (or, for a call answered within its wait, on the thread that started it). */
#ifndef RAYD_RUNTIME_PEER_HTTP_H
#define RAYD_RUNTIME_PEER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define RT_HTTP_HEAD_MAX 16384    /* bytes of an answer's head (status line, headers) */
#define RT_HTTP_CONNS_PER_PEER 64 /* connections kept to one peer */

/* ---- the parser ----------------------------------------------------------------------- */

typedef struct rt_http_callbacks {
    /* One header (name as sent, value without surrounding blanks). Non-zero aborts. */
    int (*header)(void *arg, const char *name, size_t name_len, const char *value,
                  size_t value_len);
    /* The head is complete (a final status, 200..599). Non-zero aborts. */
    int (*head_end)(void *arg, int status);
    /* Body bytes, in order. Non-zero aborts. */
    int (*body)(void *arg, const char *data, size_t len);
} rt_http_callbacks;

typedef struct rt_http_parser {
    int state;
    bool head_request; /* the answer to a HEAD has no body whatever it says */
    int status;
    bool has_length, chunked;
    bool close;                /* the connection cannot carry another call after this */
    unsigned long long length; /* Content-Length */
    unsigned long long left;   /* body or chunk bytes still to come */
    size_t head_bytes;         /* of the head (and of the trailers) so far */
    size_t line_len;
    char line[RT_HTTP_HEAD_MAX];
    char error[160];
} rt_http_parser;

void rt_http_parser_init(rt_http_parser *p, bool head_request);

/* Feeds len bytes of the answer. Returns how many were used: all of them, or fewer when the
 * answer ended before them (rt_http_parser_done; the rest belongs to nothing); -1 when the
 * answer is malformed, too big, or a callback refused (p->error says why). */
long rt_http_parse(rt_http_parser *p, const char *data, size_t len, const rt_http_callbacks *cb,
                   void *arg);

/* The connection ended: 0 when that ends the answer (a body read to the end), else -1. */
int rt_http_parse_eof(rt_http_parser *p);

/* Whether a whole answer has been parsed. */
bool rt_http_parser_done(const rt_http_parser *p);

/* ---- the client ----------------------------------------------------------------------- */

typedef enum rt_http_end {
    RT_HTTP_ANSWERED = 0, /* a whole answer was parsed (any status) */
    RT_HTTP_UNREACHABLE,  /* could not connect, or the connection broke */
    RT_HTTP_TIMED_OUT,    /* over the call's timeout or stall, or the connect timeout */
    RT_HTTP_CANCELLED,
    RT_HTTP_FAILED /* a malformed answer, a callback refused, out of memory */
} rt_http_end;

typedef struct rt_http_handler {
    rt_http_callbacks parse;
    /* The call ended; exactly once, always last; why is "" when answered. */
    void (*end)(void *arg, rt_http_end how, const char *why);
} rt_http_handler;

typedef struct rt_http_client rt_http_client;
typedef struct rt_http_exchange rt_http_exchange;

typedef struct rt_http_request {
    const char *method;
    const char *url;            /* http://host[:port]/path?query */
    const char *const *headers; /* "Name: value" lines, NULL-terminated; may be NULL */
    const void *body;           /* copied */
    size_t body_len;
    bool has_body;
    double timeout; /* seconds for the whole call; 0: none */
    double stall;   /* seconds without a byte of the answer; 0: none */
    /* Seconds the calling thread may wait for the answer itself (0: never; see
     * rt_http_start). */
    double wait;
    /* Optional: set (non-zero, atomically) when the caller wants the call to stop; the I/O
     * thread looks at it every 100 ms, which covers a cancel that came before the caller
     * could name the exchange. */
    const int *cancel_flag;
    /* Optional: set to the exchange while it runs and to NULL before its end, under the
     * client's lock, for rt_http_cancel_slot. */
    rt_http_exchange **slot;
} rt_http_request;

/* What the calling thread did with a request's wait. */
typedef enum rt_http_waited {
    RT_HTTP_NOT_WAITED = 0, /* no wait asked, or no idle kept-alive connection to wait on */
    RT_HTTP_ANSWERED_HERE,  /* the whole answer came in time: end ran on the calling thread */
    RT_HTTP_WAIT_MISSED     /* no whole answer in time: the I/O thread goes on with the call */
} rt_http_waited;

/* Starts the I/O thread. NULL on failure. */
rt_http_client *rt_http_client_new(void);

/* Starts a call, or returns NULL without calling the handler (the caller uses another
 * way): not an http:// URL, every connection to that peer busy, closed, or out of memory.
 * Otherwise the handler's end is called exactly once on the I/O thread, possibly before
 * this returns. The exchange lives until end has returned: cancel it only while end has
 * not been called (the caller's own lock orders the two).
 *
 * With request->wait > 0 and an idle kept-alive connection to the peer, the calling thread
 * writes the request and reads the answer itself for up to wait seconds (no thread
 * hand-off, no wake-up of the I/O thread): when the whole answer comes in time the
 * handler's callbacks, end included, run on the calling thread before this returns
 * (*waited, when not NULL, says RT_HTTP_ANSWERED_HERE; the returned exchange is then
 * already gone: compare it with NULL only). Otherwise the I/O thread carries on with the
 * call from where the caller left it, exactly as if it had sent it. */
rt_http_exchange *rt_http_start_waiting(rt_http_client *client, const rt_http_request *request,
                                        const rt_http_handler *handler, void *arg,
                                        rt_http_waited *waited);
rt_http_exchange *rt_http_start(rt_http_client *client, const rt_http_request *request,
                                const rt_http_handler *handler, void *arg);

/* Asks a call to stop: its end comes with RT_HTTP_CANCELLED (unless it had ended). */
void rt_http_cancel(rt_http_client *client, rt_http_exchange *exchange);

/* rt_http_cancel for the exchange in *slot (request->slot), if it still runs. */
void rt_http_cancel_slot(rt_http_client *client, rt_http_exchange **slot);

/* Refuses new calls and cancels those in flight (each still gets its end). */
void rt_http_client_close(rt_http_client *client);

/* Closes and stops the thread: every end has run when it returns; rt_http_start refuses
 * from then on. Call from one thread. NULL accepted. */
void rt_http_client_stop(rt_http_client *client);

/* Closes, stops the thread (every end has run when it returns), frees. NULL accepted. */
void rt_http_client_free(rt_http_client *client);

#endif
