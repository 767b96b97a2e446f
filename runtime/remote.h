/* rt_remote: HTTP calls to user endpoints (remote functions and actor classes), made by one
 * I/O thread that drives libcurl's multi interface, so thousands of calls in flight hold no
 * worker thread.
 *
 * A call is posted from any thread and completes exactly once: its callback runs on the I/O
 * thread with the result (an HTTP answer, or a transport failure: refused, timed out, body
 * too large, cancelled). Redirects are never followed; only http and https are allowed;
 * answers are capped at max_body bytes.
 *
 * Thread-safety: rt_remote_post and rt_remote_cancel may be called from any thread; the
 * callback must not block for long (it runs on the one I/O thread). */
#ifndef RAYD_RUNTIME_REMOTE_H
#define RAYD_RUNTIME_REMOTE_H

#include <stddef.h>

typedef struct rt_remote rt_remote;
typedef struct rt_remote_call rt_remote_call;

typedef enum rt_remote_outcome {
    RT_REMOTE_ANSWERED = 0, /* an HTTP answer arrived (any status) */
    RT_REMOTE_UNREACHABLE,  /* could not connect, or the connection broke */
    RT_REMOTE_TIMED_OUT,
    RT_REMOTE_TOO_LARGE,    /* the answer was over max_body */
    RT_REMOTE_CANCELLED
} rt_remote_outcome;

typedef struct rt_remote_result {
    rt_remote_outcome outcome;
    long status;         /* HTTP status when ANSWERED */
    char *content_type;  /* owned by the call; NULL when none */
    char *body;          /* owned by the call; NUL-terminated; body_len bytes */
    size_t body_len;
    char error[256];     /* why, for transport failures */
    double seconds;      /* from the post to the outcome */
} rt_remote_result;

/* Called once per call, on the I/O thread. The callback owns call and frees it with
 * rt_remote_call_free (after reading the result). */
typedef void (*rt_remote_done)(rt_remote_call *call, const rt_remote_result *result, void *arg);

/* Starts the I/O thread. max_body caps answers. NULL on failure. */
rt_remote *rt_remote_new(size_t max_body);

/* Stops the I/O thread: from now on rt_remote_post refuses (returns NULL), and every call
 * in flight or not yet started completes as RT_REMOTE_CANCELLED, its callback running on
 * the calling thread before this returns. Call from one thread; again does nothing. NULL
 * accepted. */
void rt_remote_stop(rt_remote *remote);

/* 1 once rt_remote_stop has begun (posts are refused), else 0. */
int rt_remote_stopped(rt_remote *remote);

/* Stops (as rt_remote_stop) if not yet stopped, then frees everything. Nothing may use
 * remote afterwards: stop the workers and actors that post to it first. NULL accepted. */
void rt_remote_free(rt_remote *remote);

/* POSTs body (copied; len bytes, application/json) to url with a total timeout in seconds
 * (0: none), an X-Request-Id header when request_id is not NULL and a traceparent header
 * when traceparent is not NULL. Returns the call (owned
 * by the callback once it runs), or NULL when out of memory or once rt_remote_stop has
 * begun (rt_remote_stopped tells which). On NULL no callback runs: the caller completes
 * its own work with an error. It never calls back from inside, so the caller may hold its
 * own lock across it. */
rt_remote_call *rt_remote_post(rt_remote *remote, const char *url, const char *body, size_t len,
                               double timeout, const char *request_id,
                               const char *traceparent, rt_remote_done done, void *arg);

/* A quick call in two steps, for a caller that must know the call before its callback can
 * run (to cancel it): rt_remote_prepare makes it (nothing is sent; NULL when out of
 * memory; cancel it already if need be), rt_remote_send sends it. */
rt_remote_call *rt_remote_prepare(rt_remote *remote, const char *url, const char *body,
                                  size_t len, double timeout, const char *request_id,
                                  const char *traceparent, rt_remote_done done, void *arg);

typedef enum rt_remote_waited {
    RT_REMOTE_NOT_WAITED = 0, /* sent to an I/O thread (or ended unsent) */
    RT_REMOTE_ANSWERED_HERE,  /* answered within the wait: the callback ran in here */
    RT_REMOTE_WAIT_MISSED     /* not answered within the wait: an I/O thread goes on */
} rt_remote_waited;

/* Sends a prepared call. Once rt_remote_enable_quick has run, an http:// call goes on the
 * lean client (runtime/peer_http.h): when a kept-alive connection to the endpoint is idle,
 * this thread writes the request and waits up to wait seconds for the answer itself, with
 * no thread hand-off (RT_REMOTE_ANSWERED_HERE); otherwise, and for https or when every
 * connection is busy, an I/O thread carries the call as rt_remote_post's. Unlike
 * rt_remote_post it may call back from inside (always for a call cancelled before, or
 * once the server stops): hold no lock the callback takes. The result is the same either
 * way, but the lean client checks timeouts every 100 ms and connects within 2 s. */
rt_remote_waited rt_remote_send(rt_remote *remote, rt_remote_call *call, double wait);

/* Starts the lean client for rt_remote_send (once; it adds a thread). 0, or -1 when it
 * could not (rt_remote_send then uses libcurl) or once stopping. */
int rt_remote_enable_quick(rt_remote *remote);

/* Asks for a call to stop; its callback still runs once (RT_REMOTE_CANCELLED, unless it
 * had already finished). The call must not have been freed yet; for a call made with
 * rt_remote_prepare, the caller's own lock must keep its callback from running meanwhile
 * (a call on the lean client is looked up after rt_remote's lock is let go). */
void rt_remote_cancel(rt_remote *remote, rt_remote_call *call);

/* Frees a call after its callback. NULL accepted. */
void rt_remote_call_free(rt_remote_call *call);

/* Calls in flight now (posted and not yet completed). */
size_t rt_remote_in_flight(rt_remote *remote);

/* Longest remote URL accepted, in bytes. */
#define RT_REMOTE_URL_MAX 2048

/* Checks a URL given for a remote function or class: an absolute http:// or https:// URL
 * with a host, of at most RT_REMOTE_URL_MAX bytes of URI characters (RFC 3986: no spaces,
 * control characters or raw non-ASCII bytes; '%' followed by two hex digits), without a
 * #fragment. Returns 0, or -1 with the reason in why (why_size bytes). */
int rt_remote_url_check(const char *url, char *why, size_t why_size);

/* 1 when url starts with one of the comma-separated scheme://host:port prefixes in allow
 * (the prefix must end the authority: "http://h:1" does not allow "http://h:10"). */
int rt_remote_url_allowed(const char *allow, const char *url);

#endif
