/* rt_peer: cluster mode's HTTP client to other rayd nodes. One I/O thread drives libcurl's
 * multi interface (as runtime/remote.c does for remote functions), so requests to peers
 * in flight hold no HTTP or worker thread, and connections to each peer are kept alive
 * and reused.
 *
 * A call is any method (GET, HEAD, DELETE, POST, ...) with headers and an optional body,
 * so forwarding a read, a DELETE or a POST (a wait, a task) to the node that owns it is
 * the same thing. Its answer arrives in stages, each announced to the caller's notify
 * callback on the I/O thread:
 *
 *   RT_PEER_HEAD  the status and headers are in (not sent when the call fails first);
 *   RT_PEER_DATA  more body bytes are in: body->data[0 .. filled) is final;
 *   RT_PEER_DONE  the call ended (outcome says how); sent exactly once, always last.
 *
 * The body goes straight into one rt_buf sized from the answer's Content-Length, which a
 * reader may send on while the rest arrives, and which may become a stored object after:
 * the bytes are held once. An answer without Content-Length is collected whole and may be
 * read only after DONE.
 *
 * An answer longer than the request's window_over is not collected at all: it passes
 * through a window (a ring of RT_PEER_WINDOW bytes) that one reader drains in order with
 * rt_peer_read. When the window is full the transfer pauses (the peer's TCP connection
 * pushes back) until the reader has made room, so a relay of any size holds at most the
 * window, however slow its client.
 *
 * Thread-safety: everything may be called from any thread. The notify callback must not
 * block (it runs on the one I/O thread). */
#ifndef RAYD_RUNTIME_CLUSTER_PEER_H
#define RAYD_RUNTIME_CLUSTER_PEER_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/buffer.h"

typedef struct rt_peer rt_peer;
typedef struct rt_peer_call rt_peer_call;

typedef enum rt_peer_event { RT_PEER_HEAD = 0, RT_PEER_DATA, RT_PEER_DONE } rt_peer_event;

typedef enum rt_peer_outcome {
    RT_PEER_ANSWERED = 0, /* a whole answer arrived (any status) */
    RT_PEER_UNREACHABLE,  /* could not connect, or the connection broke */
    RT_PEER_TIMED_OUT,    /* over the call's timeout, or stalled */
    RT_PEER_TOO_LARGE,    /* the answer was over the size limit */
    RT_PEER_CANCELLED,
    RT_PEER_FAILED        /* out of memory, or an answer that broke its own Content-Length */
} rt_peer_outcome;

#define RT_PEER_HEADER_BYTES 4096 /* kept of the answer's headers; the rest are dropped */
#define RT_PEER_WINDOW ((size_t)4 << 20) /* the ring a windowed answer passes through */

/* The answer, filled as it arrives. Read the head fields only after RT_PEER_HEAD (or
 * rt_peer_head_ready), the body up to rt_peer_filled, the outcome after RT_PEER_DONE. */
typedef struct rt_peer_answer {
    long status;
    long long content_length; /* -1 when the answer had none */
    rt_buf *body;             /* NULL until the head (and for HEAD, 204, 304); owned by
                                 the call: take your own reference to keep it */
    bool body_sized;          /* body has Content-Length bytes and fills in place */
    bool windowed;            /* the body passes through a window: read it with rt_peer_read
                                 (body stays NULL) */
    rt_peer_outcome outcome;
    char error[256];          /* why, for outcomes other than ANSWERED */
    char headers[RT_PEER_HEADER_BYTES]; /* "name\0value\0" pairs, names in lower case */
    size_t headers_len;
} rt_peer_answer;

typedef void (*rt_peer_notify)(rt_peer_call *call, rt_peer_event event, void *arg);

typedef struct rt_peer_request {
    const char *method;          /* "GET", "HEAD", "DELETE", "POST", "PUT" */
    const char *url;             /* the whole URL */
    const char *const *headers;  /* "Name: value" lines, NULL-terminated; may be NULL */
    const void *body;            /* copied; sent when has_body */
    size_t body_len;
    bool has_body;
    double timeout;              /* seconds for the whole call; 0: none */
    double stall;                /* seconds without a byte before giving up; 0: none */
    size_t window_over;          /* an answer with a Content-Length over this passes through
                                    a window instead of one buffer; 0: never */
    bool small;                  /* a small call (an actor call): to a plain http peer it goes
                                    over the lean client (runtime/peer_http.h) when a
                                    connection is free, with its answer collected whole
                                    (window_over does not apply), else over libcurl */
} rt_peer_request;

/* Starts the I/O thread. max_body caps answers (bytes). NULL on failure. */
rt_peer *rt_peer_new(size_t max_body);

/* Refuses new calls from now on and cancels those in flight (each still gets its DONE).
 * For shutdown, before the HTTP server stops. */
void rt_peer_close(rt_peer *peer);

/* Cancels what is left, stops the thread, frees the client. The calls' DONE callbacks have
 * all run when it returns. NULL accepted. */
void rt_peer_free(rt_peer *peer);

/* Starts a call. Returns it with one reference for the caller (rt_peer_call_release), or
 * NULL when out of memory or closed: no callback runs then. notify runs on the I/O thread
 * for HEAD, DATA and DONE; after DONE returned, the call never calls it again. */
rt_peer_call *rt_peer_start(rt_peer *peer, const rt_peer_request *request, rt_peer_notify notify,
                            void *arg);

/* Asks a call to stop; its DONE still comes (RT_PEER_CANCELLED unless it had ended). */
void rt_peer_cancel(rt_peer_call *call);

/* Drops the caller's reference. The call may still be running (cancel it first if its
 * answer is not wanted); it is freed once it is done and released. NULL accepted. */
void rt_peer_call_release(rt_peer_call *call);

/* The call's answer (borrowed, lives as long as the call). */
const rt_peer_answer *rt_peer_answer_of(const rt_peer_call *call);

/* Whether the head is in, how many body bytes are final, and whether the call ended:
 * safe from any thread at any time. */
bool rt_peer_head_ready(const rt_peer_call *call);
size_t rt_peer_filled(const rt_peer_call *call);
bool rt_peer_done(const rt_peer_call *call);

/* Copies up to max body bytes from position pos (those that have arrived; 0 when none
 * yet) into dst and returns how many. Works for a sized body and a windowed one; for a
 * windowed one, reads must go in order (pos is where the last read ended), and the bytes
 * read are released: the window makes room for more, and a paused transfer goes on once
 * half the window is free. One reader at a time; any thread. */
size_t rt_peer_read(rt_peer_call *call, size_t pos, void *dst, size_t max);

/* A header of the answer by name (case-insensitive), or NULL. Borrowed from the answer;
 * only after the head is in. */
const char *rt_peer_header(const rt_peer_answer *answer, const char *name);

/* Calls in flight now. */
size_t rt_peer_in_flight(rt_peer *peer);

#endif
