/* The remote-call I/O thread on libcurl's multi interface.
 *
 * DESIGN
 * - Threads: one I/O thread owns the multi handle and every easy handle in it. Other
 *   threads hand it work through two lists under `lock` (calls to add, calls to cancel)
 *   and wake it with curl_multi_wakeup.
 * - A call is freed by its callback's owner, never by the I/O thread, so a cancel from
 *   another thread can only race with completion inside the I/O thread, where it is
 *   resolved: a cancel that finds the call finished does nothing.
 * - Lifetime of a call: posted (in `adding`) -> running (in the multi) -> done (callback ran).
 *   `state` records it under `lock`.
 * - Stopping comes before freeing: rt_remote_stop refuses posts from then on (under `lock`,
 *   so none slips in after the last sweep), joins the thread and completes every call left
 *   as cancelled. Workers and actors may still run and post until they are stopped; they
 *   get a refusal, never a freed handle.
 * - Quick calls (rt_remote_send with a wait) go on the lean HTTP client instead
 *   (runtime/peer_http.h, made on the first rt_remote_enable_quick): the sending thread
 *   writes the request on a kept-alive connection and reads the answer itself for a short
 *   while; a call it does not finish is finished by the lean client's I/O thread. A call
 *   the lean client cannot take (https, every connection busy) goes to libcurl as usual,
 *   so its easy handle is only made then. rt_remote_stop stops the lean client too (every
 *   call on it ends cancelled, on its thread, before rt_remote_stop returns). */
#include "runtime/remote.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/clock.h"
#include "runtime/peer_http.h"

/* PREPARED: made by rt_remote_prepare, not sent yet; LEAN: on the lean client. */
enum { CALL_PREPARED = 0, CALL_ADDING, CALL_RUNNING, CALL_LEAN, CALL_DONE };

struct rt_remote_call {
    rt_remote_call *next; /* adding list (lock) */
    rt_remote_call *run_prev, *run_next; /* calls in the multi (I/O thread only) */
    rt_remote *owner;
    CURL *easy;               /* made when the call goes to libcurl */
    struct curl_slist *headers;
    char request_id_line[200]; /* "X-Request-Id: ..." or "" */
    char traceparent_line[100]; /* "traceparent: ..." or "" */
    rt_http_exchange *lean_ex;  /* the lean client's lock (its slot) */
    int lean_cancel;            /* atomic: a cancel came while on the lean client */
    char *url;
    char *payload;
    size_t payload_len;
    double timeout;
    double posted_at; /* monotonic */
    rt_remote_done done;
    void *arg;
    int state;            /* lock */
    int cancel_requested; /* lock */
    int cancelled_early;  /* I/O thread: cancel_requested when it took the call */
    int too_large;        /* I/O thread */
    rt_remote_result result;
    size_t body_cap;
};

struct rt_remote {
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t lock;
    rt_remote_call *adding;     /* lock */
    rt_remote_call *running;    /* calls in the multi (I/O thread only) */
    rt_remote_call **cancels;   /* lock: calls to take out of the multi */
    size_t ncancels, cancels_cap;
    int stopping;               /* lock: rt_remote_stop began; posts are refused */
    size_t in_flight;           /* lock */
    size_t max_body;
    rt_http_client *lean;       /* lock: for quick calls; NULL until rt_remote_enable_quick */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- per-call callbacks (I/O thread) ---------------------------------------------- */

/* Appends answer bytes to the result. 0, or -1 when over max_body or out of memory. */
static int body_append(rt_remote_call *c, const char *data, size_t len)
{
    rt_remote_result *r = &c->result;
    if (r->body_len + len > c->owner->max_body) {
        c->too_large = 1;
        return -1;
    }
    if (r->body_len + len + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap * 2 : 4096;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        char *grown = realloc(r->body, cap);
        if (!grown)
            return -1;
        r->body = grown;
        c->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    size_t len = size * n;
    return body_append(arg, data, len) == 0 ? len : 0; /* 0 aborts the transfer */
}

static int setup_easy(rt_remote_call *c)
{
    c->easy = curl_easy_init();
    if (!c->easy)
        return -1;
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */
    if (c->request_id_line[0])
        c->headers = curl_slist_append(c->headers, c->request_id_line);
    if (c->traceparent_line[0])
        c->headers = curl_slist_append(c->headers, c->traceparent_line);
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->payload);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->payload_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    if (c->timeout > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(c->timeout * 1000.0 + 0.5));
    return 0;
}

static void running_add(rt_remote *r, rt_remote_call *c)
{
    c->run_prev = NULL;
    c->run_next = r->running;
    if (r->running)
        r->running->run_prev = c;
    r->running = c;
}

static void running_remove(rt_remote *r, rt_remote_call *c)
{
    if (c->run_prev)
        c->run_prev->run_next = c->run_next;
    else if (r->running == c)
        r->running = c->run_next;
    if (c->run_next)
        c->run_next->run_prev = c->run_prev;
    c->run_prev = c->run_next = NULL;
}

/* Fills the result from a finished transfer and runs the callback. I/O thread. */
static void complete(rt_remote *r, rt_remote_call *c, CURLcode code, int cancelled)
{
    rt_remote_result *res = &c->result;
    res->seconds = rt_clock_monotonic() - c->posted_at;
    if (cancelled) {
        res->outcome = RT_REMOTE_CANCELLED;
        snprintf(res->error, sizeof(res->error), "the call was cancelled");
    } else if (c->too_large) {
        res->outcome = RT_REMOTE_TOO_LARGE;
        snprintf(res->error, sizeof(res->error), "the answer was over %zu bytes", r->max_body);
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        res->outcome = RT_REMOTE_TIMED_OUT;
        snprintf(res->error, sizeof(res->error), "no answer within %g s", c->timeout);
    } else if (code != CURLE_OK) {
        res->outcome = RT_REMOTE_UNREACHABLE;
        snprintf(res->error, sizeof(res->error), "%s", curl_easy_strerror(code));
    } else {
        res->outcome = RT_REMOTE_ANSWERED;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &res->status);
        char *ct = NULL;
        curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct);
        if (ct)
            res->content_type = strdup(ct);
        if (!res->body) {
            res->body = calloc(1, 1);
            res->body_len = 0;
        }
    }
    pthread_mutex_lock(&r->lock);
    c->state = CALL_DONE;
    r->in_flight--;
    /* A cancel queued for this call must not outlive it (the callback may free it). */
    for (size_t i = 0; i < r->ncancels; i++)
        if (r->cancels[i] == c)
            r->cancels[i] = NULL;
    pthread_mutex_unlock(&r->lock);
    c->done(c, res, c->arg);
}

/* ---- the I/O thread ---------------------------------------------------------------- */

static void take_new_work(rt_remote *r, rt_remote_call **adds, rt_remote_call ***cancels,
                          size_t *ncancels)
{
    pthread_mutex_lock(&r->lock);
    *adds = r->adding;
    r->adding = NULL;
    *cancels = r->cancels;
    *ncancels = r->ncancels;
    r->cancels = NULL;
    r->ncancels = r->cancels_cap = 0;
    for (rt_remote_call *c = *adds; c; c = c->next) {
        c->state = CALL_RUNNING; /* a cancel from now on is queued in r->cancels */
        c->cancelled_early = c->cancel_requested;
    }
    pthread_mutex_unlock(&r->lock);
}

static void *io_thread(void *arg)
{
    rt_remote *r = arg;
    for (;;) {
        rt_remote_call *adds;
        rt_remote_call **cancels;
        size_t ncancels;
        take_new_work(r, &adds, &cancels, &ncancels);
        while (adds) {
            rt_remote_call *next = adds->next;
            if (adds->cancelled_early || curl_multi_add_handle(r->multi, adds->easy) != CURLM_OK)
                complete(r, adds, CURLE_ABORTED_BY_CALLBACK, 1);
            else
                running_add(r, adds);
            adds = next;
        }
        for (size_t i = 0; i < ncancels; i++) {
            rt_remote_call *c = cancels[i];
            if (!c)
                continue; /* it completed before the cancel was seen */
            curl_multi_remove_handle(r->multi, c->easy);
            running_remove(r, c);
            complete(r, c, CURLE_ABORTED_BY_CALLBACK, 1);
        }
        free(cancels);

        int still;
        curl_multi_perform(r->multi, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(r->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            rt_remote_call *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            CURLcode code = msg->data.result;
            curl_multi_remove_handle(r->multi, msg->easy_handle);
            running_remove(r, c);
            complete(r, c, code, 0);
        }

        pthread_mutex_lock(&r->lock);
        int stop = r->stopping;
        pthread_mutex_unlock(&r->lock);
        if (stop)
            break;
        curl_multi_poll(r->multi, NULL, 0, 1000, NULL);
    }
    return NULL;
}

/* ---- public ------------------------------------------------------------------------- */

rt_remote *rt_remote_new(size_t max_body)
{
    pthread_once(&curl_once, curl_init_once);
    rt_remote *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->max_body = max_body ? max_body : (size_t)256 << 20;
    r->multi = curl_multi_init();
    if (!r->multi) {
        free(r);
        return NULL;
    }
    curl_multi_setopt(r->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 256L);
    pthread_mutex_init(&r->lock, NULL);
    if (pthread_create(&r->thread, NULL, io_thread, r) != 0) {
        curl_multi_cleanup(r->multi);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    return r;
}

void rt_remote_stop(rt_remote *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    int again = r->stopping;
    r->stopping = 1; /* from here rt_remote_post refuses */
    pthread_mutex_unlock(&r->lock);
    if (again)
        return;
    curl_multi_wakeup(r->multi);
    pthread_join(r->thread, NULL);
    /* Complete what is left on this thread: calls never added, then calls still in the
     * multi. Their callbacks may post again (refused now) or cancel (nothing to do). */
    rt_remote_call *adds;
    rt_remote_call **cancels;
    size_t ncancels;
    take_new_work(r, &adds, &cancels, &ncancels);
    free(cancels);
    while (adds) {
        rt_remote_call *next = adds->next;
        complete(r, adds, CURLE_ABORTED_BY_CALLBACK, 1);
        adds = next;
    }
    while (r->running) {
        rt_remote_call *c = r->running;
        curl_multi_remove_handle(r->multi, c->easy);
        running_remove(r, c);
        complete(r, c, CURLE_ABORTED_BY_CALLBACK, 1);
    }
    /* Quick calls still on the lean client end cancelled on its thread; none starts now
     * (rt_remote_send sees stopping). */
    pthread_mutex_lock(&r->lock);
    rt_http_client *lean = r->lean;
    pthread_mutex_unlock(&r->lock);
    rt_http_client_stop(lean);
}

int rt_remote_stopped(rt_remote *r)
{
    pthread_mutex_lock(&r->lock);
    int stopping = r->stopping;
    pthread_mutex_unlock(&r->lock);
    return stopping;
}

void rt_remote_free(rt_remote *r)
{
    if (!r)
        return;
    rt_remote_stop(r);
    rt_http_client_free(r->lean);
    free(r->cancels);
    curl_multi_cleanup(r->multi);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

rt_remote_call *rt_remote_prepare(rt_remote *r, const char *url, const char *body, size_t len,
                                  double timeout, const char *request_id,
                                  const char *traceparent, rt_remote_done done, void *arg)
{
    rt_remote_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->owner = r;
    c->url = strdup(url);
    c->payload = malloc(len + 1);
    c->payload_len = len;
    c->timeout = timeout;
    c->posted_at = rt_clock_monotonic();
    c->done = done;
    c->arg = arg;
    c->state = CALL_PREPARED;
    if (!c->url || !c->payload) {
        rt_remote_call_free(c);
        return NULL;
    }
    memcpy(c->payload, body, len);
    c->payload[len] = '\0';
    if (request_id)
        snprintf(c->request_id_line, sizeof(c->request_id_line), "X-Request-Id: %s", request_id);
    if (traceparent)
        snprintf(c->traceparent_line, sizeof(c->traceparent_line), "traceparent: %.60s",
                 traceparent);
    return c;
}

/* Hands a prepared call to the libcurl thread. -1 when refused (stopping, or no easy
 * handle): the call is then still the caller's, and no callback ran. */
static int enqueue(rt_remote *r, rt_remote_call *c)
{
    if (!c->easy && setup_easy(c) != 0)
        return -1;
    pthread_mutex_lock(&r->lock);
    int refused = r->stopping;
    if (!refused) {
        c->state = CALL_ADDING;
        c->next = r->adding;
        r->adding = c;
        r->in_flight++;
    }
    pthread_mutex_unlock(&r->lock);
    if (refused)
        return -1;
    curl_multi_wakeup(r->multi);
    return 0;
}

rt_remote_call *rt_remote_post(rt_remote *r, const char *url, const char *body, size_t len,
                               double timeout, const char *request_id,
                               const char *traceparent, rt_remote_done done,
                               void *arg)
{
    rt_remote_call *c =
        rt_remote_prepare(r, url, body, len, timeout, request_id, traceparent, done, arg);
    if (c && enqueue(r, c) != 0) {
        rt_remote_call_free(c);
        return NULL;
    }
    return c;
}

/* ---- quick calls on the lean client -------------------------------------------------- */

static int lean_header(void *arg, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    rt_remote_call *c = arg;
    if (name_len == 12 && strncasecmp(name, "Content-Type", 12) == 0) {
        free(c->result.content_type);
        c->result.content_type = strndup(value, value_len);
    }
    return 0;
}

static int lean_head_end(void *arg, int status)
{
    rt_remote_call *c = arg;
    c->result.status = status;
    return 0;
}

static int lean_body(void *arg, const char *data, size_t len)
{
    return body_append(arg, data, len);
}

/* The lean client's end of a call: its result as libcurl's would be, then the callback
 * (on the lean client's I/O thread, or on the sender's within its wait). */
static void lean_end(void *arg, rt_http_end how, const char *why)
{
    rt_remote_call *c = arg;
    rt_remote *r = c->owner;
    rt_remote_result *res = &c->result;
    res->seconds = rt_clock_monotonic() - c->posted_at;
    switch (how) {
    case RT_HTTP_ANSWERED:
        res->outcome = RT_REMOTE_ANSWERED;
        if (!res->body) {
            res->body = calloc(1, 1);
            res->body_len = 0;
        }
        break;
    case RT_HTTP_TIMED_OUT:
        res->outcome = RT_REMOTE_TIMED_OUT;
        snprintf(res->error, sizeof(res->error), "no answer within %g s", c->timeout);
        break;
    case RT_HTTP_CANCELLED:
        res->outcome = RT_REMOTE_CANCELLED;
        snprintf(res->error, sizeof(res->error), "the call was cancelled");
        break;
    case RT_HTTP_FAILED:
        if (c->too_large) {
            res->outcome = RT_REMOTE_TOO_LARGE;
            snprintf(res->error, sizeof(res->error), "the answer was over %zu bytes",
                     r->max_body);
            break;
        }
        res->outcome = RT_REMOTE_UNREACHABLE;
        snprintf(res->error, sizeof(res->error), "a malformed answer: %.200s", why);
        break;
    case RT_HTTP_UNREACHABLE:
    default:
        res->outcome = RT_REMOTE_UNREACHABLE;
        snprintf(res->error, sizeof(res->error), "%.250s", why);
        break;
    }
    if (res->outcome != RT_REMOTE_ANSWERED) {
        free(res->body);
        res->body = NULL;
        res->body_len = 0;
        free(res->content_type);
        res->content_type = NULL;
    }
    pthread_mutex_lock(&r->lock);
    c->state = CALL_DONE;
    r->in_flight--;
    pthread_mutex_unlock(&r->lock);
    c->done(c, res, c->arg);
}

static const rt_http_handler LEAN_HANDLER = {
    .parse = {.header = lean_header, .head_end = lean_head_end, .body = lean_body},
    .end = lean_end,
};

/* Completes a call that was never sent (cancelled first, or the server is stopping). */
static void complete_unsent(rt_remote_call *c, const char *why)
{
    c->result.outcome = RT_REMOTE_CANCELLED;
    c->result.seconds = rt_clock_monotonic() - c->posted_at;
    snprintf(c->result.error, sizeof(c->result.error), "%s", why);
    pthread_mutex_lock(&c->owner->lock);
    c->state = CALL_DONE;
    pthread_mutex_unlock(&c->owner->lock);
    c->done(c, &c->result, c->arg);
}

int rt_remote_enable_quick(rt_remote *r)
{
    pthread_mutex_lock(&r->lock);
    if (!r->lean && !r->stopping)
        r->lean = rt_http_client_new();
    int ok = r->lean != NULL;
    pthread_mutex_unlock(&r->lock);
    return ok ? 0 : -1;
}

rt_remote_waited rt_remote_send(rt_remote *r, rt_remote_call *c, double wait)
{
    pthread_mutex_lock(&r->lock);
    const char *unsent = c->cancel_requested ? "the call was cancelled"
                         : r->stopping       ? "not sent: the server is stopping"
                                             : NULL;
    rt_http_client *lean = unsent ? NULL : r->lean;
    if (lean) {
        c->state = CALL_LEAN;
        r->in_flight++;
    }
    pthread_mutex_unlock(&r->lock);
    if (unsent) {
        complete_unsent(c, unsent);
        return RT_REMOTE_NOT_WAITED;
    }
    if (lean) {
        const char *headers[4] = {"Content-Type: application/json", NULL, NULL, NULL};
        size_t nh = 1;
        if (c->request_id_line[0])
            headers[nh++] = c->request_id_line;
        if (c->traceparent_line[0])
            headers[nh++] = c->traceparent_line;
        rt_http_request rq = {.method = "POST",
                              .url = c->url,
                              .headers = headers,
                              .body = c->payload,
                              .body_len = c->payload_len,
                              .has_body = true,
                              .timeout = c->timeout,
                              .wait = wait,
                              .cancel_flag = &c->lean_cancel,
                              .slot = &c->lean_ex};
        rt_http_waited waited;
        if (rt_http_start_waiting(lean, &rq, &LEAN_HANDLER, c, &waited))
            return waited == RT_HTTP_ANSWERED_HERE ? RT_REMOTE_ANSWERED_HERE
                   : waited == RT_HTTP_WAIT_MISSED ? RT_REMOTE_WAIT_MISSED
                                                   : RT_REMOTE_NOT_WAITED;
        /* Not taken (https, every connection busy, closing): libcurl's way. */
        pthread_mutex_lock(&r->lock);
        c->state = CALL_PREPARED;
        r->in_flight--;
        unsent = c->cancel_requested ? "the call was cancelled" : NULL;
        pthread_mutex_unlock(&r->lock);
        if (unsent) {
            complete_unsent(c, unsent);
            return RT_REMOTE_NOT_WAITED;
        }
    }
    if (enqueue(r, c) != 0)
        complete_unsent(c, rt_remote_stopped(r) ? "not sent: the server is stopping"
                                                : "not sent: out of memory");
    return RT_REMOTE_NOT_WAITED;
}

void rt_remote_cancel(rt_remote *r, rt_remote_call *c)
{
    rt_http_client *lean = NULL;
    pthread_mutex_lock(&r->lock);
    /* Once stopping, rt_remote_stop completes every call itself: nothing to queue. */
    if (c->state != CALL_DONE && !c->cancel_requested && !r->stopping) {
        c->cancel_requested = 1;
        if (c->state == CALL_LEAN) {
            __atomic_store_n(&c->lean_cancel, 1, __ATOMIC_RELEASE);
            lean = r->lean;
        } else if (c->state == CALL_RUNNING) {
            if (r->ncancels == r->cancels_cap) {
                size_t cap = r->cancels_cap ? r->cancels_cap * 2 : 16;
                rt_remote_call **grown = realloc(r->cancels, cap * sizeof(*grown));
                if (grown) {
                    r->cancels = grown;
                    r->cancels_cap = cap;
                }
            }
            if (r->ncancels < r->cancels_cap)
                r->cancels[r->ncancels++] = c;
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (lean)
        rt_http_cancel_slot(lean, &c->lean_ex); /* c lives until its callback has run */
    else
        curl_multi_wakeup(r->multi);
}

void rt_remote_call_free(rt_remote_call *c)
{
    if (!c)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    free(c->url);
    free(c->payload);
    free(c->result.body);
    free(c->result.content_type);
    free(c);
}

size_t rt_remote_in_flight(rt_remote *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->in_flight;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* RFC 3986 2.2 and 2.3: the characters a URI may hold as they are. */
static int uri_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("-._~:/?[]@!$&'()*+,;=", c) != NULL);
}

static int hex_digit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int rt_remote_url_check(const char *url, char *why, size_t why_size)
{
    size_t len = url ? strlen(url) : 0;
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        snprintf(why, why_size, "url must be an http:// or https:// URL");
        return -1;
    }
    if (len > RT_REMOTE_URL_MAX) {
        snprintf(why, why_size, "url is longer than %d bytes", RT_REMOTE_URL_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c == '%' && hex_digit(url[i + 1]) && hex_digit(url[i + 2])) {
            i += 2;
            continue;
        }
        if (c == '#') {
            snprintf(why, why_size, "url must not have a #fragment");
            return -1;
        }
        if (!uri_char(c)) {
            snprintf(why, why_size,
                     "url has a character a URL cannot hold at byte %zu (0x%02x): spaces, "
                     "control characters and non-ASCII bytes must be percent-encoded",
                     i, c);
            return -1;
        }
    }
    /* The structure (a host, a port that is a number) as libcurl, which makes the calls,
     * will read it. */
    CURLU *u = curl_url();
    char *host = NULL;
    int ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host;
    curl_free(host);
    curl_url_cleanup(u);
    if (!ok) {
        snprintf(why, why_size, "url is not a valid URL with a host");
        return -1;
    }
    return 0;
}

int rt_remote_url_allowed(const char *allow, const char *url)
{
    if (!allow || !url)
        return 0;
    for (const char *p = allow; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t len = strcspn(p, ", ");
        while (len > 0 && p[len - 1] == '/')
            len--; /* "http://h:1/" and "http://h:1" mean the same */
        if (len > 0 && strncasecmp(url, p, len) == 0 &&
            (url[len] == '\0' || url[len] == '/' || url[len] == '?'))
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}
