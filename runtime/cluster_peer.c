/* The peer client: libcurl multi on one I/O thread, answers streamed into one buffer.
 *
 * DESIGN
 * - Threads: the I/O thread owns the multi handle and every easy handle in it. Other
 *   threads hand it calls to add and calls to cancel through two lists under `lock`, and
 *   wake it with curl_multi_wakeup (as runtime/remote.c does) only when it sleeps in
 *   curl_multi_poll: it says so in `sleeping` and then looks at the lists once more, and
 *   a caller adds to a list and then takes `sleeping` (exchange), so either the thread
 *   sees the work or the caller wakes it. A wakeup costs a socketpair write, the thread's
 *   wakeup and two reads; under load the thread is mostly awake and takes new calls on
 *   its next turn without any.
 * - Lifetime: a call has two references, the caller's and the I/O thread's; the I/O
 *   thread drops its own after the DONE notification returned. So a caller may release
 *   at any time and the thread never touches freed memory.
 * - The answer's head fields are written by the I/O thread before head_ready is set
 *   (release); body bytes before `filled` is advanced (sequentially consistent, as the
 *   relay's wakeups need: api/forward.c); the outcome before `done` (same). Readers load
 *   those with acquire or stronger, so they never see a half-written
 *   field. The body rt_buf is written past `filled` while readers read below it: the one
 *   place where a buffer is written after it is shared, and only in bytes nobody reads
 *   yet.
 * - A windowed answer: the I/O thread writes the ring at [filled, filled + n) only while
 *   that stays within RT_PEER_WINDOW of `released` (what the reader is done with), and
 *   the reader reads [released, filled): the two never touch the same bytes. When the
 *   ring is full the write callback pauses the transfer after setting `paused`; the reader,
 *   after releasing bytes, takes `paused` back (atomic exchange) once half the window is
 *   free and queues the call for the I/O thread to unpause (curl handles belong to that
 *   thread). Both sides store, then load, sequentially consistent (no fences: TSan has
 *   none), so one of them sees the other. */
#include "runtime/cluster_peer.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/peer_http.h"

#define CONNECT_TIMEOUT_MS 2000L
#define CURL_BUFFER (256 * 1024L)
/* Easy handles kept for the next calls: making one (a large calloc, its options, its
 * receive buffer) and freeing it was a tenth of the peer client's time per relayed call. */
#define IDLE_HANDLES 32

enum { CALL_ADDING = 0, CALL_RUNNING, CALL_DONE };

struct rt_peer_call {
    rt_peer_call *next;                  /* adding list (lock) */
    rt_peer_call *run_prev, *run_next;   /* calls in the multi (I/O thread only) */
    rt_peer *owner;
    int refs;                            /* atomic */
    CURL *easy;
    struct curl_slist *headers;
    char *payload;
    size_t payload_len;
    rt_peer_notify notify;
    void *arg;
    int state;                           /* lock */
    int cancel_requested;                /* lock */
    rt_peer_call *unpause_next;          /* unpause list (lock) */
    bool unpause_queued;                 /* lock */
    bool unpause_now;                    /* I/O thread: running, not cancelled, when taken */
    bool cancelled_early;                /* I/O thread: cancel_requested when taken */
    size_t window_over;                  /* from the request */
    char *window;                        /* the ring of a windowed answer */
    size_t released;                     /* atomic: windowed bytes the reader is done with */
    int paused;                          /* atomic: the write callback paused the transfer */
    bool head_request;                   /* a HEAD: the answer has no body */
    bool lean;                           /* on the lean client (runtime/peer_http.h) */
    rt_http_exchange *exchange;          /* lock: the lean client's, until DONE */
    /* I/O thread only */
    bool head_sent;
    bool failed;     /* the write callback refused: see answer.error */
    bool too_large;
    rt_peer_answer answer;
    int head_ready;  /* atomic */
    size_t filled;   /* atomic */
    int done;        /* atomic */
};

struct rt_peer {
    CURLM *multi;
    rt_http_client *lean;     /* small calls (rt_peer_request.small) to plain http peers */
    pthread_t thread;
    pthread_mutex_t lock;
    rt_peer_call *adding;     /* lock */
    rt_peer_call *running;    /* I/O thread only */
    rt_peer_call **cancels;   /* lock */
    size_t ncancels, cancels_cap;
    rt_peer_call *unpauses;   /* lock: windowed calls the reader made room for */
    CURL *idle[IDLE_HANDLES]; /* lock: easy handles of ended calls, reset, for reuse */
    size_t nidle;
    int sleeping;             /* atomic: the I/O thread is in (or about to be in) poll */
    int stopping;             /* lock */
    int closed;               /* lock: no new calls; those in flight are cancelled */
    size_t in_flight;         /* lock */
    size_t max_body;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void call_decref(rt_peer_call *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    free(c->payload);
    free(c->window);
    rt_buf_decref(c->answer.body);
    free(c);
}

/* ---- the answer's head (I/O thread) ---------------------------------------------------- */

static void keep_header(rt_peer_answer *a, const char *name, size_t name_len,
                        const char *value, size_t value_len)
{
    if (a->headers_len + name_len + value_len + 2 > sizeof(a->headers))
        return;
    char *out = a->headers + a->headers_len;
    for (size_t i = 0; i < name_len; i++) {
        char ch = name[i];
        out[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    out[name_len] = '\0';
    memcpy(out + name_len + 1, value, value_len);
    out[name_len + 1 + value_len] = '\0';
    a->headers_len += name_len + value_len + 2;
}

const char *rt_peer_header(const rt_peer_answer *a, const char *name)
{
    for (size_t i = 0; i < a->headers_len;) {
        const char *n = a->headers + i;
        const char *v = n + strlen(n) + 1;
        if (strcasecmp(n, name) == 0)
            return v;
        i = (size_t)(v + strlen(v) + 1 - a->headers);
    }
    return NULL;
}

/* The headers are complete: size the body and tell the caller. */
static int head_complete(rt_peer_call *c)
{
    rt_peer_answer *a = &c->answer;
    const char *cl = rt_peer_header(a, "content-length");
    a->content_length = -1;
    if (cl) {
        char *end;
        long long v = strtoll(cl, &end, 10);
        if (end != cl && v >= 0)
            a->content_length = v;
    }
    bool no_body = c->head_request || a->status == 204 || a->status == 304;
    if (!no_body && a->content_length >= 0 && c->window_over &&
        (unsigned long long)a->content_length > c->window_over) {
        size_t size = (unsigned long long)a->content_length < RT_PEER_WINDOW
                          ? (size_t)a->content_length
                          : RT_PEER_WINDOW;
        c->window = malloc(size);
        if (!c->window) {
            c->failed = true;
            snprintf(a->error, sizeof(a->error), "out of memory for a %zu-byte window", size);
            return -1;
        }
        a->windowed = true;
    } else if (!no_body && a->content_length >= 0) {
        if ((unsigned long long)a->content_length > c->owner->max_body) {
            c->too_large = true;
            return -1;
        }
        const char *ct = rt_peer_header(a, "content-type");
        a->body = rt_buf_new((size_t)a->content_length, ct);
        if (!a->body)
            a->body = rt_buf_new((size_t)a->content_length, NULL); /* an odd content type */
        if (!a->body) {
            c->failed = true;
            snprintf(a->error, sizeof(a->error), "out of memory for %lld bytes",
                     a->content_length);
            return -1;
        }
        a->body_sized = true;
    }
    c->head_sent = true;
    __atomic_store_n(&c->head_ready, 1, __ATOMIC_RELEASE);
    c->notify(c, RT_PEER_HEAD, c->arg);
    return 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    rt_peer_call *c = arg;
    size_t len = size * n;
    rt_peer_answer *a = &c->answer;
    if (c->head_sent)
        return len; /* trailers: the head others read is final */
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A status line: a new (final or interim) answer starts. */
        const char *sp = memchr(data, ' ', len);
        a->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        a->headers_len = 0;
        return len;
    }
    if (len <= 2 && (len == 0 || data[0] == '\r' || data[0] == '\n')) {
        if (a->status >= 200 && !c->head_sent && head_complete(c) != 0)
            return 0; /* aborts the transfer */
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    keep_header(a, data, (size_t)(colon - data), v, (size_t)(end - v));
    return len;
}

static size_t window_size(const rt_peer_call *c)
{
    size_t total = (size_t)c->answer.content_length;
    return total < RT_PEER_WINDOW ? total : RT_PEER_WINDOW;
}

/* A windowed answer's bytes into the ring, or a pause when it has no room for all of them
 * (curl hands them again on unpause). I/O thread. */
static size_t window_write(rt_peer_call *c, const char *data, size_t len)
{
    size_t filled = c->filled, room = window_size(c);
    if (len > (size_t)c->answer.content_length - filled) {
        c->failed = true;
        snprintf(c->answer.error, sizeof(c->answer.error),
                 "the answer is longer than its Content-Length");
        return 0;
    }
    if (filled + len - __atomic_load_n(&c->released, __ATOMIC_ACQUIRE) > room) {
        __atomic_store_n(&c->paused, 1, __ATOMIC_SEQ_CST);
        if (filled + len - __atomic_load_n(&c->released, __ATOMIC_SEQ_CST) > room)
            return CURL_WRITEFUNC_PAUSE;
        /* The reader made room meanwhile; an unpause it may have queued is harmless. */
        __atomic_store_n(&c->paused, 0, __ATOMIC_SEQ_CST);
    }
    size_t at = filled % room, first = room - at < len ? room - at : len;
    memcpy(c->window + at, data, first);
    memcpy(c->window, data + first, len - first);
    __atomic_store_n(&c->filled, filled + len, __ATOMIC_SEQ_CST);
    c->notify(c, RT_PEER_DATA, c->arg);
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    rt_peer_call *c = arg;
    size_t len = size * n;
    rt_peer_answer *a = &c->answer;
    size_t filled = c->filled;
    if (!c->head_sent && head_complete(c) != 0)
        return 0;
    if (a->windowed)
        return window_write(c, data, len);
    if (a->body_sized) {
        if (len > a->body->size - filled) {
            c->failed = true;
            snprintf(a->error, sizeof(a->error), "the answer is longer than its Content-Length");
            return 0;
        }
        memcpy(a->body->data + filled, data, len);
    } else {
        /* No Content-Length: collected whole; nobody reads it before DONE, so it may move. */
        if (filled + len > c->owner->max_body) {
            c->too_large = true;
            return 0;
        }
        if (!a->body || filled + len > a->body->size) {
            size_t cap = a->body ? a->body->size * 2 : 64 * 1024;
            while (cap < filled + len)
                cap *= 2;
            rt_buf *grown = a->body ? rt_buf_resize(a->body, cap)
                                    : rt_buf_new(cap, rt_peer_header(a, "content-type"));
            if (!grown) {
                c->failed = true;
                snprintf(a->error, sizeof(a->error), "out of memory");
                return 0;
            }
            a->body = grown;
        }
        memcpy(a->body->data + filled, data, len);
    }
    __atomic_store_n(&c->filled, filled + len, __ATOMIC_SEQ_CST);
    if (a->body_sized)
        c->notify(c, RT_PEER_DATA, c->arg);
    return len;
}

/* ---- setting a call up -------------------------------------------------------------- */

/* An easy handle from the idle ones, or a new one. */
static CURL *easy_take(rt_peer *p)
{
    CURL *e = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->nidle)
        e = p->idle[--p->nidle];
    pthread_mutex_unlock(&p->lock);
    return e ? e : curl_easy_init();
}

/* A call's handle once it is out of the multi: reset (its options pointed into the call)
 * and kept for the next call, or freed. */
static void easy_give_back(rt_peer *p, rt_peer_call *c)
{
    CURL *e = c->easy;
    if (!e)
        return;
    c->easy = NULL;
    curl_easy_reset(e);
    pthread_mutex_lock(&p->lock);
    if (p->nidle < IDLE_HANDLES) {
        p->idle[p->nidle++] = e;
        e = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    if (e)
        curl_easy_cleanup(e);
}

static int setup_easy(rt_peer_call *c, const rt_peer_request *rq)
{
    c->easy = easy_take(c->owner);
    if (!c->easy)
        return -1;
    for (const char *const *h = rq->headers; h && *h; h++)
        if (!(c->headers = curl_slist_append(c->headers, *h)))
            return -1;
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */
    if (!c->headers)
        return -1;
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, rq->url);
    if (strcmp(rq->method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(rq->method, "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method);
    if (rq->has_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->payload);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->payload_len);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    c->window_over = rq->window_over;
    /* A big receive buffer for what may be a big object (GET); the default for the rest
     * (calls, waits, listings answer small bodies), as a 256 KiB buffer made for every
     * relayed call costs more than the call itself. */
    if (strcmp(rq->method, "GET") == 0)
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, CURL_BUFFER);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    if (rq->timeout > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(rq->timeout * 1000.0 + 0.5));
    if (rq->stall > 0) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(rq->stall + 0.999));
    }
    return 0;
}

static void running_add(rt_peer *p, rt_peer_call *c)
{
    c->run_prev = NULL;
    c->run_next = p->running;
    if (p->running)
        p->running->run_prev = c;
    p->running = c;
}

static void running_remove(rt_peer *p, rt_peer_call *c)
{
    if (c->run_prev)
        c->run_prev->run_next = c->run_next;
    else if (p->running == c)
        p->running = c->run_next;
    if (c->run_next)
        c->run_next->run_prev = c->run_prev;
    c->run_prev = c->run_next = NULL;
}

static void finish(rt_peer *p, rt_peer_call *c);

/* A whole answer arrived: checks it against its Content-Length. */
static void answered(rt_peer_call *c)
{
    rt_peer_answer *a = &c->answer;
    if ((a->body_sized && c->filled != a->body->size) ||
        (a->windowed && c->filled != (size_t)a->content_length)) {
        a->outcome = RT_PEER_FAILED;
        snprintf(a->error, sizeof(a->error), "the answer ended before its Content-Length");
        return;
    }
    a->outcome = RT_PEER_ANSWERED;
    if (!c->head_sent)
        head_complete(c); /* an answer without a blank line after its headers */
    if (!a->body_sized && a->body) { /* collected whole: trim to what came */
        rt_buf *fitted = rt_buf_resize(a->body, c->filled);
        if (fitted)
            a->body = fitted;
    }
}

/* Sets the outcome, notifies DONE and drops the I/O thread's reference. I/O thread. */
static void complete(rt_peer *p, rt_peer_call *c, CURLcode code, int cancelled)
{
    rt_peer_answer *a = &c->answer;
    if (cancelled) {
        a->outcome = RT_PEER_CANCELLED;
        snprintf(a->error, sizeof(a->error), "the call was cancelled");
    } else if (c->too_large) {
        a->outcome = RT_PEER_TOO_LARGE;
        snprintf(a->error, sizeof(a->error), "the answer was over %zu bytes", p->max_body);
    } else if (c->failed) {
        a->outcome = RT_PEER_FAILED;
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        a->outcome = RT_PEER_TIMED_OUT;
        snprintf(a->error, sizeof(a->error), "%s", curl_easy_strerror(code));
    } else if (code != CURLE_OK) {
        a->outcome = RT_PEER_UNREACHABLE;
        snprintf(a->error, sizeof(a->error), "%s", curl_easy_strerror(code));
    } else {
        answered(c);
    }
    easy_give_back(p, c); /* out of the multi by now, and nothing reads it after this */
    finish(p, c);
}

/* The end of every call: DONE, and the I/O thread's reference dropped. */
static void finish(rt_peer *p, rt_peer_call *c)
{
    pthread_mutex_lock(&p->lock);
    c->exchange = NULL;
    c->state = CALL_DONE;
    p->in_flight--;
    for (size_t i = 0; i < p->ncancels; i++)
        if (p->cancels[i] == c)
            p->cancels[i] = NULL;
    pthread_mutex_unlock(&p->lock);
    __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
    c->notify(c, RT_PEER_DONE, c->arg);
    call_decref(c); /* the I/O thread's reference */
}

/* ---- small calls on the lean client (runtime/peer_http.h; its I/O thread) ------------- */

static int lean_header(void *arg, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    rt_peer_call *c = arg;
    keep_header(&c->answer, name, name_len, value, value_len);
    return 0;
}

static int lean_head_end(void *arg, int status)
{
    rt_peer_call *c = arg;
    c->answer.status = status;
    return head_complete(c);
}

static int lean_body(void *arg, const char *data, size_t len)
{
    return on_body((char *)data, 1, len, arg) == len ? 0 : -1;
}

static void lean_end(void *arg, rt_http_end how, const char *why)
{
    rt_peer_call *c = arg;
    rt_peer_answer *a = &c->answer;
    if (how == RT_HTTP_ANSWERED) {
        answered(c);
    } else if (how == RT_HTTP_CANCELLED) {
        a->outcome = RT_PEER_CANCELLED;
        snprintf(a->error, sizeof(a->error), "the call was cancelled");
    } else if (c->too_large) {
        a->outcome = RT_PEER_TOO_LARGE;
        snprintf(a->error, sizeof(a->error), "the answer was over %zu bytes", c->owner->max_body);
    } else if (c->failed) {
        a->outcome = RT_PEER_FAILED; /* the body's callback said why */
    } else {
        a->outcome = how == RT_HTTP_TIMED_OUT    ? RT_PEER_TIMED_OUT
                     : how == RT_HTTP_UNREACHABLE ? RT_PEER_UNREACHABLE
                                                  : RT_PEER_FAILED;
        snprintf(a->error, sizeof(a->error), "%s", why);
    }
    finish(c->owner, c);
}

static const rt_http_handler LEAN_HANDLER = {{lean_header, lean_head_end, lean_body}, lean_end};

/* Starts c on the lean client; -1 when it cannot take it (c is untouched then). Its answer
 * is collected whole (no window): small calls answer small bodies, bounded by max_body. */
static int lean_start(rt_peer *p, rt_peer_call *c, const rt_peer_request *rq)
{
    pthread_mutex_lock(&p->lock);
    if (p->closed) {
        pthread_mutex_unlock(&p->lock);
        return -1;
    }
    c->lean = true;
    c->state = CALL_RUNNING;
    p->in_flight++;
    pthread_mutex_unlock(&p->lock);
    rt_http_request hr = {.method = rq->method,
                          .url = rq->url,
                          .headers = rq->headers,
                          .body = rq->body,
                          .body_len = rq->body_len,
                          .has_body = rq->has_body,
                          .timeout = rq->timeout,
                          .stall = rq->stall};
    rt_http_exchange *ex = rt_http_start(p->lean, &hr, &LEAN_HANDLER, c);
    pthread_mutex_lock(&p->lock);
    if (!ex) {
        c->lean = false;
        c->state = CALL_ADDING;
        p->in_flight--;
    } else if (c->state != CALL_DONE) {
        c->exchange = ex; /* until DONE (finish clears it under the lock) */
    }
    pthread_mutex_unlock(&p->lock);
    return ex ? 0 : -1;
}

/* ---- the I/O thread ------------------------------------------------------------------ */

/* Takes the calls to add and to cancel; returns whether the client is closed (then every
 * call is to be cancelled). */
static int take_new_work(rt_peer *p, rt_peer_call **adds, rt_peer_call ***cancels,
                         size_t *ncancels, rt_peer_call **unpauses)
{
    pthread_mutex_lock(&p->lock);
    int closed = p->closed;
    *adds = p->adding;
    p->adding = NULL;
    *unpauses = p->unpauses;
    p->unpauses = NULL;
    for (rt_peer_call *c = *unpauses; c; c = c->unpause_next) {
        c->unpause_queued = false;
        c->unpause_now = c->state == CALL_RUNNING && !c->cancel_requested;
    }
    *cancels = p->cancels;
    *ncancels = p->ncancels;
    p->cancels = NULL;
    p->ncancels = p->cancels_cap = 0;
    for (rt_peer_call *c = *adds; c; c = c->next) {
        c->state = CALL_RUNNING; /* a cancel from now on is queued in p->cancels */
        if (closed)
            c->cancel_requested = 1;
        c->cancelled_early = c->cancel_requested;
    }
    pthread_mutex_unlock(&p->lock);
    return closed;
}

static void *io_thread(void *arg)
{
    rt_peer *p = arg;
    for (;;) {
        rt_peer_call *adds, **cancels, *unpauses;
        size_t ncancels;
        int closed = take_new_work(p, &adds, &cancels, &ncancels, &unpauses);
        while (unpauses) {
            rt_peer_call *next = unpauses->unpause_next;
            if (unpauses->unpause_now)
                curl_easy_pause(unpauses->easy, CURLPAUSE_CONT); /* may deliver at once */
            call_decref(unpauses); /* the list's reference */
            unpauses = next;
        }
        while (adds) {
            rt_peer_call *next = adds->next;
            if (adds->cancelled_early || curl_multi_add_handle(p->multi, adds->easy) != CURLM_OK)
                complete(p, adds, CURLE_ABORTED_BY_CALLBACK, 1);
            else
                running_add(p, adds);
            adds = next;
        }
        for (size_t i = 0; i < ncancels; i++) {
            rt_peer_call *c = cancels[i];
            if (!c)
                continue; /* it completed before the cancel was seen */
            curl_multi_remove_handle(p->multi, c->easy);
            running_remove(p, c);
            complete(p, c, CURLE_ABORTED_BY_CALLBACK, 1);
        }
        free(cancels);
        while (closed && p->running) {
            rt_peer_call *c = p->running;
            curl_multi_remove_handle(p->multi, c->easy);
            running_remove(p, c);
            complete(p, c, CURLE_ABORTED_BY_CALLBACK, 1);
        }

        int still;
        curl_multi_perform(p->multi, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(p->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            rt_peer_call *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            CURLcode code = msg->data.result;
            curl_multi_remove_handle(p->multi, msg->easy_handle);
            running_remove(p, c);
            complete(p, c, code, 0);
        }

        __atomic_store_n(&p->sleeping, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_lock(&p->lock);
        int stop = p->stopping;
        bool work = p->adding || p->ncancels || p->unpauses;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            break;
        if (!work)
            curl_multi_poll(p->multi, NULL, 0, 1000, NULL);
        __atomic_store_n(&p->sleeping, 0, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* ---- public ----------------------------------------------------------------------- */

rt_peer *rt_peer_new(size_t max_body)
{
    pthread_once(&curl_once, curl_init_once);
    rt_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->max_body = max_body ? max_body : (size_t)256 << 20;
    p->multi = curl_multi_init();
    if (!p->multi) {
        free(p);
        return NULL;
    }
    /* Keep-alive connections to peers are kept whatever the number of calls in flight at
     * the moment (libcurl's default cache is 4 per call added, so a burst of relayed calls
     * followed by a lull closes connections the next burst must open again). */
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, 256L);
    p->lean = rt_http_client_new(); /* without it, small calls go through libcurl too */
    pthread_mutex_init(&p->lock, NULL);
    if (pthread_create(&p->thread, NULL, io_thread, p) != 0) {
        curl_multi_cleanup(p->multi);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    return p;
}

/* Wakes the I/O thread if it sleeps; call after adding work to a list. */
static void wake_io(rt_peer *p)
{
    if (__atomic_exchange_n(&p->sleeping, 0, __ATOMIC_SEQ_CST))
        curl_multi_wakeup(p->multi);
}

/* Queues a cancel for a call. lock held. */
static void cancel_locked(rt_peer *p, rt_peer_call *c)
{
    if (c->state == CALL_DONE || c->cancel_requested)
        return;
    c->cancel_requested = 1;
    if (c->lean) {
        if (c->exchange)
            rt_http_cancel(p->lean, c->exchange);
        return; /* else it is being started: rt_peer_start cancels it then */
    }
    if (c->state != CALL_RUNNING)
        return; /* still in `adding`: the I/O thread completes it when it takes it */
    if (p->ncancels == p->cancels_cap) {
        size_t cap = p->cancels_cap ? p->cancels_cap * 2 : 16;
        rt_peer_call **grown = realloc(p->cancels, cap * sizeof(*grown));
        if (!grown)
            return;
        p->cancels = grown;
        p->cancels_cap = cap;
    }
    p->cancels[p->ncancels++] = c;
}

void rt_peer_close(rt_peer *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->closed = 1; /* the I/O thread cancels everything it has at its next turn */
    pthread_mutex_unlock(&p->lock);
    rt_http_client_close(p->lean);
    curl_multi_wakeup(p->multi);
}

void rt_peer_free(rt_peer *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    p->closed = 1;
    pthread_mutex_unlock(&p->lock);
    curl_multi_wakeup(p->multi);
    pthread_join(p->thread, NULL);
    rt_http_client_free(p->lean); /* every lean call's DONE has run when it returns */
    rt_peer_call *adds, **cancels, *unpauses;
    size_t ncancels;
    take_new_work(p, &adds, &cancels, &ncancels, &unpauses);
    free(cancels);
    while (unpauses) {
        rt_peer_call *next = unpauses->unpause_next;
        call_decref(unpauses);
        unpauses = next;
    }
    while (adds) {
        rt_peer_call *next = adds->next;
        complete(p, adds, CURLE_ABORTED_BY_CALLBACK, 1);
        adds = next;
    }
    while (p->running) {
        rt_peer_call *c = p->running;
        curl_multi_remove_handle(p->multi, c->easy);
        running_remove(p, c);
        complete(p, c, CURLE_ABORTED_BY_CALLBACK, 1);
    }
    while (p->nidle)
        curl_easy_cleanup(p->idle[--p->nidle]);
    curl_multi_cleanup(p->multi);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

rt_peer_call *rt_peer_start(rt_peer *p, const rt_peer_request *rq, rt_peer_notify notify,
                            void *arg)
{
    rt_peer_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->owner = p;
    c->refs = 2; /* the caller's and the I/O thread's */
    c->notify = notify;
    c->arg = arg;
    c->answer.content_length = -1;
    c->head_request = strcmp(rq->method, "HEAD") == 0;
    if (rq->small && p->lean && lean_start(p, c, rq) == 0) {
        pthread_mutex_lock(&p->lock);
        if (c->cancel_requested && c->exchange)
            rt_http_cancel(p->lean, c->exchange); /* asked while it was being started */
        pthread_mutex_unlock(&p->lock);
        return c;
    }
    if (rq->has_body) {
        c->payload = malloc(rq->body_len + 1);
        if (!c->payload) {
            free(c);
            return NULL;
        }
        memcpy(c->payload, rq->body, rq->body_len);
        c->payload[rq->body_len] = '\0';
        c->payload_len = rq->body_len;
    }
    if (setup_easy(c, rq) != 0) {
        c->refs = 1;
        call_decref(c);
        return NULL;
    }
    pthread_mutex_lock(&p->lock);
    if (p->closed) {
        pthread_mutex_unlock(&p->lock);
        c->refs = 1;
        call_decref(c);
        return NULL;
    }
    c->state = CALL_ADDING;
    c->next = p->adding;
    p->adding = c;
    p->in_flight++;
    pthread_mutex_unlock(&p->lock);
    wake_io(p);
    return c;
}

void rt_peer_cancel(rt_peer_call *c)
{
    rt_peer *p = c->owner;
    pthread_mutex_lock(&p->lock);
    cancel_locked(p, c);
    pthread_mutex_unlock(&p->lock);
    curl_multi_wakeup(p->multi);
}

void rt_peer_call_release(rt_peer_call *c)
{
    call_decref(c);
}

const rt_peer_answer *rt_peer_answer_of(const rt_peer_call *c)
{
    return &c->answer;
}

bool rt_peer_head_ready(const rt_peer_call *c)
{
    return __atomic_load_n(&c->head_ready, __ATOMIC_ACQUIRE) != 0;
}

size_t rt_peer_filled(const rt_peer_call *c)
{
    return __atomic_load_n(&c->filled, __ATOMIC_SEQ_CST);
}

bool rt_peer_done(const rt_peer_call *c)
{
    return __atomic_load_n(&c->done, __ATOMIC_SEQ_CST) != 0;
}

/* The reader made room: has the I/O thread go on with a paused transfer. */
static void queue_unpause(rt_peer_call *c)
{
    rt_peer *p = c->owner;
    pthread_mutex_lock(&p->lock);
    bool queue = c->state != CALL_DONE && !c->unpause_queued;
    if (queue) {
        c->unpause_queued = true;
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED); /* the list's */
        c->unpause_next = p->unpauses;
        p->unpauses = c;
    }
    pthread_mutex_unlock(&p->lock);
    if (queue)
        wake_io(p);
}

size_t rt_peer_read(rt_peer_call *c, size_t pos, void *dst, size_t max)
{
    size_t filled = rt_peer_filled(c);
    if (pos >= filled)
        return 0;
    size_t n = filled - pos < max ? filled - pos : max;
    const rt_peer_answer *a = &c->answer;
    if (!a->windowed) {
        memcpy(dst, a->body->data + pos, n);
        return n;
    }
    if (pos < __atomic_load_n(&c->released, __ATOMIC_ACQUIRE))
        return 0; /* out of order: those bytes are gone */
    size_t room = window_size(c), at = pos % room, first = room - at < n ? room - at : n;
    memcpy(dst, c->window + at, first);
    memcpy((char *)dst + first, c->window, n - first);
    __atomic_store_n(&c->released, pos + n, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&c->paused, __ATOMIC_SEQ_CST) &&
        room - (rt_peer_filled(c) - (pos + n)) >= room / 2 &&
        __atomic_exchange_n(&c->paused, 0, __ATOMIC_SEQ_CST))
        queue_unpause(c);
    return n;
}

size_t rt_peer_in_flight(rt_peer *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->in_flight;
    pthread_mutex_unlock(&p->lock);
    return n;
}
