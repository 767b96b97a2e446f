/* Relays and fan-outs to other nodes over the peer client. See forward.h.
 *
 * DESIGN
 * - A forward is reference-counted: one reference for the request, one per peer call in
 *   flight (dropped by its DONE notification), one while a streamed response reads from
 *   it (dropped by the response's free callback). So the I/O thread, the MHD thread and
 *   libmicrohttpd's response may each finish last.
 * - Resuming: the connection is suspended before any call starts, and `suspended` (1
 *   while it waits) is cleared by whoever resumes it, with an atomic exchange, so there is
 *   exactly one MHD_resume_connection per suspension (as api/park.c does).
 * - Streaming: the response's reader sends the bytes the call has so far. With none left,
 *   it suspends the connection, notes where it wants to be woken (wake_at: a block further
 *   on, or the end), then sets reader_waiting and looks again; the I/O thread, after
 *   adding bytes, looks at reader_waiting and, once wake_at has arrived (or the call
 *   ended), exchanges it. Both sides store, then load, sequentially consistent (the peer
 *   client stores `filled` so, and rt_peer_filled loads it so), so one of them sees the
 *   other and resumes exactly once. Waking a block at a time
 *   rather than for every 16 KiB libcurl hands over keeps the suspend/resume round trips
 *   through libmicrohttpd's loop to one per block.
 * - A cacheable answer up to API_FORWARD_COPY_MAX is collected whole in one buffer (it may
 *   become the copy); anything bigger passes through the peer client's window, so a relay
 *   holds at most RT_PEER_WINDOW bytes whatever the object's size. */
#include "api/forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/problem.h"
#include "runtime/cluster.h"
#include "runtime/cluster_peer.h"

enum { FORWARD_RELAY = 1, FORWARD_FANOUT };

#define STREAM_BLOCK (256 * 1024) /* bytes the stream reader hands libmicrohttpd at a time */
#define PEER_HEADERS_MAX 16

struct api_forward {
    int refs; /* atomic */
    int kind;
    api_context *ctx;
    struct MHD_Connection *conn;
    int suspended;      /* atomic: the connection waits for this forward */
    int reader_waiting; /* atomic: the stream reader suspended the connection */
    int streaming;      /* atomic: the answer is sent on as it arrives */
    size_t wake_at;     /* atomic: the waiting reader wants bytes up to here */
    bool start_failed;
    bool head_only;     /* a HEAD request: no body comes back */
    char owner_tag[RT_NODE_TAG_SIZE];
    char ref[RT_REF_SIZE]; /* the object asked about, or "" */
    bool cache;            /* a whole 200 answer may be kept as a copy of ref */
    bool actor_call;       /* an actor call: a failure may have run it (ActorDied) */
    rt_peer_call *call;    /* RELAY: the caller's reference */
    rt_peer_call **calls;  /* FANOUT: the caller's references (NULL when not started) */
    size_t ncalls;
    long remaining;        /* atomic, FANOUT: calls not ended */
};

static void forward_decref(api_forward *fw)
{
    if (__atomic_sub_fetch(&fw->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    rt_peer_call_release(fw->call);
    for (size_t i = 0; i < fw->ncalls; i++)
        rt_peer_call_release(fw->calls[i]);
    free(fw->calls);
    free(fw);
}

static void wake(api_forward *fw)
{
    if (__atomic_exchange_n(&fw->suspended, 0, __ATOMIC_ACQ_REL))
        MHD_resume_connection(fw->conn);
}

static void reader_wake(api_forward *fw)
{
    if (__atomic_exchange_n(&fw->reader_waiting, 0, __ATOMIC_SEQ_CST))
        MHD_resume_connection(fw->conn);
}

/* More bytes arrived: wakes the waiting reader once what it waits for is in. I/O thread. */
static void reader_more(api_forward *fw, rt_peer_call *call)
{
    if (__atomic_load_n(&fw->reader_waiting, __ATOMIC_SEQ_CST) &&
        rt_peer_filled(call) >= __atomic_load_n(&fw->wake_at, __ATOMIC_RELAXED))
        reader_wake(fw);
}

size_t api_forward_peer_headers(const api_request *req, const char **lines, size_t max,
                                char *buf, size_t buf_size)
{
    const char *token = req->ctx->config.cluster_token;
    const char *tag = rt_ref_node_tag();
    size_t n = 0, used = 0;
    for (int which = 0; which < 4 && n < max; which++) {
        int len = -1;
        if (which == 0 && token && *token)
            len = snprintf(buf + used, buf_size - used, "Authorization: Bearer %s", token);
        else if (which == 1)
            len = snprintf(buf + used, buf_size - used, API_FORWARDED_HEADER ": %s",
                           tag ? tag : "");
        else if (which == 2)
            len = snprintf(buf + used, buf_size - used, "X-Request-Id: %s", req->request_id);
        else if (which == 3 && req->traceparent[0]) /* the owner's work joins the trace */
            len = snprintf(buf + used, buf_size - used, "traceparent: %s", req->traceparent);
        if (len < 0 || (size_t)len >= buf_size - used)
            continue; /* absent, or too long for buf */
        lines[n++] = buf + used;
        used += (size_t)len + 1;
    }
    return n;
}

/* ---- relays -------------------------------------------------------------------------- */

/* Keeps a whole, cacheable 200 answer as a secondary copy. I/O thread, at DONE. */
static void keep_copy(api_forward *fw, rt_peer_call *call)
{
    const rt_peer_answer *a = rt_peer_answer_of(call);
    if (!fw->cache || a->outcome != RT_PEER_ANSWERED || a->status != 200 || !a->body ||
        !a->body_sized || !rt_peer_header(a, API_CACHEABLE_HEADER))
        return;
    rt_buf *buf = rt_buf_incref(a->body);
    if (rt_store_put_copy(fw->ctx->store, fw->ref, buf) != RT_OK)
        rt_buf_decref(buf); /* already there, or no room: it is only a copy */
}

static void relay_notify(rt_peer_call *call, rt_peer_event event, void *arg)
{
    api_forward *fw = arg;
    const rt_peer_answer *a = rt_peer_answer_of(call);
    switch (event) {
    case RT_PEER_HEAD:
        /* A big body is sent on as it comes; anything else once it is whole. */
        if (a->windowed || (a->body_sized && a->content_length >= API_FORWARD_STREAM_MIN)) {
            __atomic_store_n(&fw->streaming, 1, __ATOMIC_RELEASE);
            wake(fw);
        }
        break;
    case RT_PEER_DATA:
        reader_more(fw, call);
        break;
    case RT_PEER_DONE:
        keep_copy(fw, call);
        wake(fw);
        reader_wake(fw);
        forward_decref(fw); /* the call's reference */
        break;
    }
}

enum MHD_Result api_forward_relay(api_request *req, const char *base_url,
                                  const char *path_and_query, const char *owner_tag,
                                  const char *ref, unsigned flags, const void *body,
                                  size_t len)
{
    api_forward *fw = calloc(1, sizeof(*fw));
    char *url = NULL;
    size_t base_len = strlen(base_url);
    while (base_len > 0 && base_url[base_len - 1] == '/')
        base_len--;
    if (!fw || asprintf(&url, "%.*s%s", (int)base_len, base_url, path_and_query) < 0) {
        free(fw);
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    }
    fw->refs = 1; /* the request's */
    fw->kind = FORWARD_RELAY;
    fw->ctx = req->ctx;
    fw->conn = req->conn;
    fw->head_only = strcmp(req->method, "HEAD") == 0;
    snprintf(fw->owner_tag, sizeof(fw->owner_tag), "%s", owner_tag ? owner_tag : "");
    if (ref) {
        snprintf(fw->ref, sizeof(fw->ref), "%s", ref);
        fw->cache = (flags & API_FORWARD_CACHE) && strcmp(req->method, "GET") == 0;
    }
    fw->actor_call = (flags & API_FORWARD_ACTOR_CALL) != 0;

    /* The headers the owner needs to answer as this node would. */
    static const char *const COPIED[] = {"Range", "If-None-Match", "If-Match", "Content-Type",
                                          "Prefer", "Idempotency-Key", "Accept"};
    const char *lines[PEER_HEADERS_MAX + 1];
    char storage[2048], copied[4096];
    size_t n = api_forward_peer_headers(req, lines, PEER_HEADERS_MAX, storage, sizeof(storage));
    size_t used = 0;
    for (size_t i = 0; i < sizeof(COPIED) / sizeof(COPIED[0]) && n < PEER_HEADERS_MAX; i++) {
        const char *v = api_header(req, COPIED[i]);
        if (!v)
            continue;
        int l = snprintf(copied + used, sizeof(copied) - used, "%s: %s", COPIED[i], v);
        if (l < 0 || (size_t)l >= sizeof(copied) - used)
            continue; /* too long to pass on: the owner answers without it */
        lines[n++] = copied + used;
        used += (size_t)l + 1;
    }
    lines[n] = NULL;
    rt_peer_request rq = {
        .method = req->method,
        .url = url,
        .headers = lines,
        .body = body,
        .body_len = len,
        .has_body = body != NULL,
        /* The owner bounds waits by the client's timeout; a stall this long is a fault. */
        .stall = req->ctx->config.max_wait + 30,
        .window_over = fw->cache ? API_FORWARD_COPY_MAX : API_FORWARD_STREAM_MIN,
        .small = fw->actor_call,
    };

    req->forward = fw;
    MHD_suspend_connection(req->conn); /* before anything can resume it */
    __atomic_store_n(&fw->suspended, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&fw->refs, 1, __ATOMIC_RELAXED); /* the call's */
    fw->call = rt_peer_start(req->ctx->peer, &rq, relay_notify, fw);
    free(url);
    if (!fw->call) {
        __atomic_sub_fetch(&fw->refs, 1, __ATOMIC_RELAXED);
        fw->start_failed = true;
        wake(fw); /* answered (503) when the handler runs again */
    }
    return MHD_YES;
}

bool api_forward_relaying(const api_request *req)
{
    return req->forward && req->forward->kind == FORWARD_RELAY;
}

enum MHD_Result api_forward_reply_owner_died(api_request *req, const char *ref, const char *tag)
{
    char detail[256];
    snprintf(detail, sizeof(detail),
             "object %s is lost: node %s, which owned it, died (its heartbeat stopped)", ref,
             tag);
    return api_problem(req, 410, "ObjectLost", detail,
                       json_pack("{s:s,s:s,s:s,s:b}", "ref", ref, "lost_reason", "owner_died",
                                 "owner", tag, "owner_died", 1));
}

bool api_cluster_unavailable(const api_request *req)
{
    return req->ctx->cluster && !rt_cluster_redis_up(req->ctx->cluster);
}

enum MHD_Result api_forward_reply_unknown_owner(api_request *req, const char *ref,
                                                const char *tag)
{
    char detail[256];
    if (api_cluster_unavailable(req)) {
        snprintf(detail, sizeof(detail),
                 "object %s names node %s, which this node does not know, and Redis (which "
                 "says which nodes there are) is unreachable: retry",
                 ref, tag);
        req->retry_after = 1;
        return api_problem(req, 503, "ClusterUnavailable", detail,
                           json_pack("{s:s,s:s}", "ref", ref, "owner", tag));
    }
    snprintf(detail, sizeof(detail),
             "object %s does not exist: no node of this cluster has tag %s", ref, tag);
    return api_problem(req, 404, "NotFound", detail,
                       json_pack("{s:s,s:s}", "ref", ref, "owner", tag));
}

/* The call failed before a whole answer: the owner died (410 for its object), or did not
 * answer (503, retry). */
static enum MHD_Result reply_failure(api_request *req, api_forward *fw, const char *why)
{
    char url[RT_CLUSTER_URL_MAX];
    rt_owner owner = rt_cluster_owner_of_tag(req->ctx->cluster, fw->owner_tag, url, sizeof(url));
    if (owner == RT_OWNER_DEAD && fw->ref[0])
        return api_forward_reply_owner_died(req, fw->ref, fw->owner_tag);
    /* Even "could not connect" may follow a request sent on a kept-alive connection that
     * broke (libcurl then tries a new one), so no failure proves the call did not run. */
    if (fw->actor_call && !fw->start_failed)
        return api_problem(req, 424, "ActorDied",
                           "the node holding the actor did not answer this call: it may or "
                           "may not have run (the node may have died: if so, the actor is "
                           "restarted on a live node while its max_restarts allows)",
                           json_pack("{s:s,s:b,s:b,s:s}", "owner", fw->owner_tag, "owner_died",
                                     owner == RT_OWNER_DEAD, "may_have_run", 1, "why", why));
    req->retry_after = 1;
    if (__atomic_load_n(&req->ctx->lifecycle, __ATOMIC_ACQUIRE) == API_DRAINING)
        return api_problem(req, 503, "ShuttingDown",
                           "this node is stopping and gave up waiting for another node; "
                           "retry on another replica",
                           NULL);
    return api_problemf(req, 503, "ClusterUnavailable",
                        "node %s (%s), which can answer this, did not: %s", fw->owner_tag,
                        url[0] ? url : "address unknown", why);
}

/* The body reader of a response without a body (HEAD, 304): never asked for bytes. */
static ssize_t no_body_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_OF_STREAM;
}

/* Bytes of the answer that may be sent now. The last byte waits for the end of the call,
 * so that a client holding the whole object knows the call is over (and its copy kept). */
static size_t sendable(const api_forward *fw, size_t size, bool *done)
{
    *done = rt_peer_done(fw->call); /* first: once done, filled is final */
    size_t filled = rt_peer_filled(fw->call);
    return !*done && filled == size ? size - 1 : filled;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    api_forward *fw = cls;
    const rt_peer_answer *a = rt_peer_answer_of(fw->call);
    size_t size = (size_t)a->content_length;
    if (pos >= size)
        return MHD_CONTENT_READER_END_OF_STREAM;
    bool done;
    size_t ready = sendable(fw, size, &done);
    if (pos < ready) {
        size_t n = ready - (size_t)pos < max ? ready - (size_t)pos : max;
        return (ssize_t)rt_peer_read(fw->call, (size_t)pos, buf, n);
    }
    if (done)
        return MHD_CONTENT_READER_END_WITH_ERROR; /* the owner's answer broke off */
    /* Nothing yet: wait without the thread (see the DESIGN note) for a block, or the end,
     * and look once more after saying so, in case the bytes came in between. */
    MHD_suspend_connection(fw->conn);
    size_t want = size - (size_t)pos < STREAM_BLOCK ? size : (size_t)pos + STREAM_BLOCK;
    __atomic_store_n(&fw->wake_at, want, __ATOMIC_RELAXED);
    __atomic_store_n(&fw->reader_waiting, 1, __ATOMIC_SEQ_CST);
    if (sendable(fw, size, &done) >= want || done) {
        int expected = 1;
        if (__atomic_compare_exchange_n(&fw->reader_waiting, &expected, 0, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            MHD_resume_connection(fw->conn);
    }
    return 0;
}

static void stream_free(void *cls)
{
    api_forward *fw = cls;
    if (!rt_peer_done(fw->call))
        rt_peer_cancel(fw->call); /* the client went away: stop fetching */
    forward_decref(fw);
}

enum MHD_Result api_forward_answer(api_request *req)
{
    api_forward *fw = req->forward;
    rt_peer_call *call = fw->call;
    if (fw->start_failed || !call)
        return reply_failure(req, fw, "out of memory, or this node is stopping");
    const rt_peer_answer *a = rt_peer_answer_of(call);
    bool done = rt_peer_done(call);
    if (!rt_peer_head_ready(call) || (done && a->outcome != RT_PEER_ANSWERED))
        return reply_failure(req, fw, a->error[0] ? a->error : "no answer");
    if (a->status == 401 || a->status == 403) {
        req->retry_after = 1;
        return api_problemf(req, 503, "ClusterUnavailable",
                            "node %s refused this node's cluster token (RAYD_CLUSTER_TOKEN "
                            "differs between nodes?)",
                            fw->owner_tag);
    }

    /* A windowed body is always read through the window, even when it has all come. */
    bool streaming = a->windowed || (__atomic_load_n(&fw->streaming, __ATOMIC_ACQUIRE) && !done);
    struct MHD_Response *resp;
    if (fw->head_only || (!a->body && !a->windowed)) {
        /* No body: a HEAD or 304 keeps the representation's Content-Length. */
        if (a->content_length >= 0 && (fw->head_only || a->status == 304))
            resp = MHD_create_response_from_callback((uint64_t)a->content_length, 4096,
                                                     no_body_reader, NULL, NULL);
        else
            resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else if (!streaming) {
        resp = api_response_from_buf(req, a->body, 0, rt_peer_filled(call));
    } else {
        __atomic_add_fetch(&fw->refs, 1, __ATOMIC_RELAXED); /* the response's */
        resp = MHD_create_response_from_callback((uint64_t)a->content_length, STREAM_BLOCK,
                                                 stream_reader, fw, stream_free);
        if (!resp)
            forward_decref(fw);
        req->bytes_out = (size_t)a->content_length;
    }
    if (!resp)
        return MHD_NO;
    static const char *const RELAYED[] = {"ETag", "Content-Range", "Accept-Ranges", "Location",
                                           "X-Ray-Ref", "Preference-Applied",
                                           "Idempotent-Replayed"};
    for (size_t i = 0; i < sizeof(RELAYED) / sizeof(RELAYED[0]); i++) {
        const char *v = rt_peer_header(a, RELAYED[i]);
        if (v)
            MHD_add_response_header(resp, RELAYED[i], v);
    }
    const char *retry = rt_peer_header(a, "Retry-After");
    if (retry)
        req->retry_after = (unsigned)strtoul(retry, NULL, 10);
    return api_reply(req, (unsigned)a->status, resp, rt_peer_header(a, "Content-Type"));
}

/* ---- fan-outs ------------------------------------------------------------------------ */

static void fanout_notify(rt_peer_call *call, rt_peer_event event, void *arg)
{
    api_forward *fw = arg;
    (void)call;
    if (event != RT_PEER_DONE)
        return;
    if (__atomic_sub_fetch(&fw->remaining, 1, __ATOMIC_ACQ_REL) == 0)
        wake(fw);
    forward_decref(fw); /* the call's reference */
}

static enum MHD_Result fanout_start(api_request *req, const char *const *base_urls,
                                    const char *const *paths, size_t n, const char *method,
                                    const char *const *bodies, const size_t *lens,
                                    double timeout);

enum MHD_Result api_forward_fanout(api_request *req, const char *const *base_urls, size_t n,
                                   const char *method, const char *path, double timeout)
{
    const char **paths = calloc(n + 1, sizeof(*paths));
    if (!paths)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    for (size_t i = 0; i < n; i++)
        paths[i] = path;
    enum MHD_Result r = fanout_start(req, base_urls, paths, n, method, NULL, NULL, timeout);
    free(paths);
    return r;
}

enum MHD_Result api_forward_fanout_each(api_request *req, const char *const *base_urls,
                                        const char *const *paths, size_t n, const char *method,
                                        double timeout)
{
    return fanout_start(req, base_urls, paths, n, method, NULL, NULL, timeout);
}

enum MHD_Result api_forward_fanout_posts(api_request *req, const char *const *base_urls,
                                         const char *const *paths, const char *const *bodies,
                                         const size_t *lens, size_t n, double timeout)
{
    return fanout_start(req, base_urls, paths, n, "POST", bodies, lens, timeout);
}

enum MHD_Result api_forward_call(api_request *req, const char *base_url, const char *method,
                                 const char *path, const char *json_body, size_t len,
                                 double timeout)
{
    const char *urls[1] = {base_url}, *paths[1] = {path}, *bodies[1] = {json_body};
    size_t lens[1] = {len};
    return fanout_start(req, urls, paths, 1, method, json_body ? bodies : NULL, lens, timeout);
}

/* Sends `method paths[i]` to each base_urls[i] (with the JSON body bodies[i], lens[i] bytes,
 * when bodies is not NULL) and suspends the request until every call has answered or
 * failed. */
static enum MHD_Result fanout_start(api_request *req, const char *const *base_urls,
                                    const char *const *paths, size_t n, const char *method,
                                    const char *const *bodies, const size_t *lens,
                                    double timeout)
{
    api_forward *fw = calloc(1, sizeof(*fw));
    rt_peer_call **calls = calloc(n + 1, sizeof(*calls));
    if (!fw || !calls) {
        free(fw);
        free(calls);
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    }
    fw->refs = 1;
    fw->kind = FORWARD_FANOUT;
    fw->ctx = req->ctx;
    fw->conn = req->conn;
    fw->calls = calls;
    fw->ncalls = n;
    fw->remaining = (long)n;
    req->forward = fw;
    if (n == 0)
        return MHD_YES;
    const char *lines[PEER_HEADERS_MAX + 1];
    char storage[2048];
    size_t nlines = api_forward_peer_headers(req, lines, PEER_HEADERS_MAX, storage,
                                             sizeof(storage));
    if (bodies && nlines < PEER_HEADERS_MAX)
        lines[nlines++] = "Content-Type: application/json";
    lines[nlines] = NULL;

    MHD_suspend_connection(req->conn);
    __atomic_store_n(&fw->suspended, 1, __ATOMIC_RELEASE);
    long failed = 0;
    for (size_t i = 0; i < n; i++) {
        char *url = NULL;
        if (asprintf(&url, "%s%s", base_urls[i], paths[i]) < 0) {
            failed++;
            continue;
        }
        rt_peer_request rq = {.method = method,
                              .url = url,
                              .headers = lines,
                              .body = bodies ? bodies[i] : NULL,
                              .body_len = bodies ? lens[i] : 0,
                              .has_body = bodies != NULL,
                              .timeout = timeout};
        __atomic_add_fetch(&fw->refs, 1, __ATOMIC_RELAXED);
        calls[i] = rt_peer_start(req->ctx->peer, &rq, fanout_notify, fw);
        free(url);
        if (!calls[i]) {
            __atomic_sub_fetch(&fw->refs, 1, __ATOMIC_RELAXED);
            failed++;
        }
    }
    if (failed && __atomic_sub_fetch(&fw->remaining, failed, __ATOMIC_ACQ_REL) == 0)
        wake(fw);
    return MHD_YES;
}

bool api_forward_fanout_done(const api_request *req)
{
    return req->forward && req->forward->kind == FORWARD_FANOUT &&
           __atomic_load_n(&req->forward->remaining, __ATOMIC_ACQUIRE) <= 0;
}

const rt_peer_answer *api_forward_fanout_answer(const api_request *req, size_t i)
{
    const api_forward *fw = req->forward;
    if (!fw || fw->kind != FORWARD_FANOUT || i >= fw->ncalls || !fw->calls[i] ||
        !rt_peer_done(fw->calls[i]))
        return NULL;
    return rt_peer_answer_of(fw->calls[i]);
}

size_t api_forward_fanout_body(const api_request *req, size_t i)
{
    const rt_peer_answer *a = api_forward_fanout_answer(req, i);
    return a && a->body ? rt_peer_filled(req->forward->calls[i]) : 0;
}

void api_forward_release(api_request *req)
{
    api_forward *fw = req->forward;
    if (!fw)
        return;
    req->forward = NULL;
    if (fw->call && !rt_peer_done(fw->call))
        rt_peer_cancel(fw->call);
    for (size_t i = 0; i < fw->ncalls; i++)
        if (fw->calls[i] && !rt_peer_done(fw->calls[i]))
            rt_peer_cancel(fw->calls[i]);
    forward_decref(fw);
}
