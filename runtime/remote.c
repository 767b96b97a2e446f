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
 *   get a refusal, never a freed handle. */
#include "runtime/remote.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/clock.h"

enum { CALL_ADDING = 0, CALL_RUNNING, CALL_DONE };

struct rt_remote_call {
    rt_remote_call *next; /* adding list (lock) */
    rt_remote_call *run_prev, *run_next; /* calls in the multi (I/O thread only) */
    rt_remote *owner;
    CURL *easy;
    struct curl_slist *headers;
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
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- per-call callbacks (I/O thread) ---------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    rt_remote_call *c = arg;
    size_t len = size * n;
    rt_remote_result *r = &c->result;
    if (r->body_len + len > c->owner->max_body) {
        c->too_large = 1;
        return 0; /* aborts the transfer */
    }
    if (r->body_len + len + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap * 2 : 4096;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        char *grown = realloc(r->body, cap);
        if (!grown)
            return 0;
        r->body = grown;
        c->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

static int setup_easy(rt_remote_call *c, const char *request_id, const char *traceparent)
{
    c->easy = curl_easy_init();
    if (!c->easy)
        return -1;
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */
    if (request_id) {
        char line[200];
        snprintf(line, sizeof(line), "X-Request-Id: %s", request_id);
        c->headers = curl_slist_append(c->headers, line);
    }
    if (traceparent) {
        char line[100];
        snprintf(line, sizeof(line), "traceparent: %.60s", traceparent);
        c->headers = curl_slist_append(c->headers, line);
    }
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
    free(r->cancels);
    curl_multi_cleanup(r->multi);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

rt_remote_call *rt_remote_post(rt_remote *r, const char *url, const char *body, size_t len,
                               double timeout, const char *request_id,
                               const char *traceparent, rt_remote_done done,
                               void *arg)
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
    if (!c->url || !c->payload) {
        rt_remote_call_free(c);
        return NULL;
    }
    memcpy(c->payload, body, len);
    c->payload[len] = '\0';
    if (setup_easy(c, request_id, traceparent) != 0) {
        rt_remote_call_free(c);
        return NULL;
    }
    pthread_mutex_lock(&r->lock);
    int refused = r->stopping;
    if (!refused) {
        c->state = CALL_ADDING;
        c->next = r->adding;
        r->adding = c;
        r->in_flight++;
    }
    pthread_mutex_unlock(&r->lock);
    if (refused) {
        rt_remote_call_free(c);
        return NULL;
    }
    curl_multi_wakeup(r->multi);
    return c;
}

void rt_remote_cancel(rt_remote *r, rt_remote_call *c)
{
    pthread_mutex_lock(&r->lock);
    /* Once stopping, rt_remote_stop completes every call itself: nothing to queue. */
    if (c->state != CALL_DONE && !c->cancel_requested && !r->stopping) {
        c->cancel_requested = 1;
        if (c->state == CALL_RUNNING) {
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
