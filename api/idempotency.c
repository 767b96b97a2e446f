/* The Idempotency-Key table: key -> body digest and the first answer, bounded in keys and
 * bytes (see idempotency.h). */
#include "api/idempotency.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/forward.h"
#include "api/problem.h"
#include "api/redis_call.h"
#include "runtime/base64.h"
#include "runtime/clock.h"
#include "runtime/cluster.h"
#include "runtime/hash.h"
#include "runtime/sha256.h"

#define KEY_MAX 255
#define BUCKETS_INITIAL 1024

typedef struct entry {
    struct entry *hnext;
    struct entry *older, *newer; /* by creation, for expiry */
    uint32_t hash;
    char *scope;                 /* "POST /v1/tasks <key>" */
    unsigned char digest[RT_SHA256_DIGEST_SIZE];
    int done;
    double expires_at;           /* monotonic */
    size_t bytes;                /* what this entry holds, as counted in the table's bytes */
    /* the answer, when done */
    unsigned status;
    char *content_type;
    char *headers;    /* the answer's headers, "Name: value\n" each, as they are replayed */
    rt_buf *buf;      /* owned reference: the body is buf->data[offset, offset + len) */
    size_t offset, len;
    bool shared;      /* buf is a stored object's buffer (not a copy made for the entry) */
    /* cluster mode */
    bool clustered;   /* the key goes through Redis */
    bool won;         /* this request holds the key's claim in Redis */
    int claims;       /* claims sent (a stale claim is replaced at most a few times) */
    char redis_key[5 + 2 * RT_SHA256_DIGEST_SIZE + 1]; /* "idem:<hex>" */
    char *claim;      /* the running value this request claims the key with */
    char *stale;      /* a dead node's running value to replace, or NULL */
    double claim_ttl; /* seconds the running claim lasts in Redis */
} entry;

struct api_idempotency {
    pthread_mutex_t lock;
    entry **buckets;
    size_t nbuckets, count, max_keys;
    size_t bytes, max_bytes; /* max_bytes 0: no limit */
    size_t shared_bytes;     /* of bytes, those of shared buffers */
    unsigned long long evictions;
    entry *oldest, *newest;
    double ttl;
};

static void entry_free(entry *e)
{
    if (!e)
        return;
    free(e->scope);
    free(e->content_type);
    free(e->headers);
    free(e->claim);
    free(e->stale);
    rt_buf_decref(e->buf);
    free(e);
}

api_idempotency *api_idempotency_new(double ttl_seconds, size_t max_keys, size_t max_bytes)
{
    api_idempotency *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->nbuckets = BUCKETS_INITIAL;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    t->ttl = ttl_seconds;
    t->max_keys = max_keys ? max_keys : 100000;
    t->max_bytes = max_bytes;
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void api_idempotency_free(api_idempotency *t)
{
    if (!t)
        return;
    for (entry *e = t->oldest; e;) {
        entry *next = e->newer;
        entry_free(e);
        e = next;
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- table (lock held) ------------------------------------------------------------ */

static entry *find(api_idempotency *t, const char *scope, uint32_t h)
{
    for (entry *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->scope, scope) == 0)
            return e;
    return NULL;
}

static void unlink_entry(api_idempotency *t, entry *e)
{
    entry **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        t->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        t->newest = e->older;
    t->count--;
    t->bytes -= e->bytes;
    if (e->shared)
        t->shared_bytes -= e->buf->size;
}

static bool over_limits(const api_idempotency *t)
{
    return t->count > t->max_keys || (t->max_bytes && t->bytes > t->max_bytes);
}

/* Drops expired entries and, while over max_keys or max_bytes, the oldest finished ones
 * (counted as evictions). Entries still being answered stay. */
static void prune(api_idempotency *t, double now)
{
    entry *e = t->oldest;
    while (e && (e->expires_at <= now || over_limits(t))) {
        entry *next = e->newer;
        if (e->done) {
            if (e->expires_at > now)
                t->evictions++;
            unlink_entry(t, e);
            entry_free(e);
        }
        e = next;
    }
}

/* What an entry holds: itself, its key, and its answer's text and buffer (in full: the
 * reference keeps the whole buffer alive). */
static size_t entry_bytes(const entry *e)
{
    size_t n = sizeof(*e) + strlen(e->scope) + 1;
    if (e->content_type)
        n += strlen(e->content_type) + 1;
    if (e->headers)
        n += strlen(e->headers) + 1;
    if (e->buf)
        n += sizeof(rt_buf) + e->buf->size + 1;
    return n;
}

/* ---- requests ----------------------------------------------------------------------- */

static void body_digest(const api_request *req, unsigned char out[RT_SHA256_DIGEST_SIZE])
{
    rt_sha256_ctx c;
    rt_sha256_init(&c);
    const char *ct = api_header((api_request *)req, "Content-Type");
    if (ct)
        rt_sha256_update(&c, ct, strlen(ct));
    rt_sha256_update(&c, "\n", 1);
    const char *q = api_query((api_request *)req, "ttl");
    if (q)
        rt_sha256_update(&c, q, strlen(q));
    rt_sha256_update(&c, "\n", 1);
    if (req->raw_buf)
        rt_sha256_update(&c, req->raw_buf->data, req->raw_len);
    else if (req->body)
        rt_sha256_update(&c, req->body, req->body_len);
    rt_sha256_final(&c, out);
}

/* Answers with a remembered answer. e is a snapshot taken under the lock: its strings are
 * its own and its buffer a reference of its own, which the response takes over (no copy
 * of the body). */
static enum MHD_Result replay(api_request *req, entry *e)
{
    struct MHD_Response *resp = api_response_from_buf(req, e->buf, e->offset, e->len);
    if (!resp)
        return MHD_NO;
    for (const char *line = e->headers; line && *line;) {
        const char *colon = strchr(line, ':'), *end = strchr(line, '\n');
        if (!colon || !end || colon > end)
            break;
        char name[128], value[1024];
        snprintf(name, sizeof(name), "%.*s", (int)(colon - line), line);
        snprintf(value, sizeof(value), "%.*s", (int)(end - colon - 2), colon + 2);
        MHD_add_response_header(resp, name, value);
        line = end + 1;
    }
    MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    return api_reply(req, e->status, resp, e->content_type);
}


/* ---- across nodes (cluster mode) -----------------------------------------------------
 * Redis key idem:<sha256 of scope> holds one JSON value, for the key's TTL:
 *   running  {"d": body digest, "r": request id}        while the first request runs
 *   answered {"d", "s": status, "t": Content-Type, "h": headers, "b": base64 body}
 *   answered, too large to keep in Redis: {"d", "s", "big": bytes, "node": tag}
 * The local table still answers retries that reach the same node; Redis those that reach
 * another. An answer is sent only once Redis has it (api_idempotency_send_held), so a retry
 * anywhere after the answer replays it. */

#define REDIS_BODY_MAX (256 * 1024) /* bigger answers are replayed by their node only */
#define CLAIMS_MAX 3

/* KEYS[1] the key, ARGV[1] the claim, ARGV[2] its expiry (ms), ARGV[3] a dead node's claim
 * to replace (or ""). Answers the value held afterwards: ARGV[1] when claimed. */
static const char CLAIM[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v and v ~= ARGV[3] then return v end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return ARGV[1]";

/* KEYS[1] the key, ARGV[1] this request's claim, ARGV[2] the answer (or "" to free the
 * key), ARGV[3] its expiry (ms). Only the claim's holder writes. */
static const char FINISH[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end "
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1";

static int cluster_unavailable(api_request *req, const char *why)
{
    req->retry_after = 1;
    api_problemf(req, 503, "ClusterUnavailable",
                 "Redis, which holds Idempotency-Keys across the cluster, did not answer (%s); "
                 "retry",
                 why);
    return 1;
}

static void hex(const unsigned char *bytes, size_t n, char *out)
{
    static const char DIGITS[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = DIGITS[bytes[i] >> 4];
        out[2 * i + 1] = DIGITS[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static void ms_text(double seconds, char *out, size_t size)
{
    snprintf(out, size, "%lld", (long long)(seconds * 1000) + 1);
}

static int queue_claim(rt_cluster *cluster, rt_redis_done_fn done, void *arg, void *queue_arg)
{
    entry *e = queue_arg;
    char ttl[32];
    ms_text(e->claim_ttl, ttl, sizeof(ttl));
    const char *argv[] = {"EVAL", CLAIM, "1", e->redis_key, e->claim, ttl,
                          e->stale ? e->stale : ""};
    return rt_cluster_command(cluster, 7, argv, done, arg);
}

static int claim_start(api_idempotency *t, api_request *req, entry *e, const char *scope,
                       const unsigned char digest[RT_SHA256_DIGEST_SIZE])
{
    unsigned char scope_digest[RT_SHA256_DIGEST_SIZE];
    rt_sha256_ctx c;
    rt_sha256_init(&c);
    rt_sha256_update(&c, scope, strlen(scope));
    rt_sha256_final(&c, scope_digest);
    memcpy(e->redis_key, "idem:", 5);
    hex(scope_digest, sizeof(scope_digest), e->redis_key + 5);
    char d[2 * RT_SHA256_DIGEST_SIZE + 1];
    hex(digest, RT_SHA256_DIGEST_SIZE, d);
    json_t *claim = json_pack("{s:s,s:s}", "d", d, "r", req->request_id);
    e->claim = claim ? json_dumps(claim, JSON_COMPACT) : NULL;
    json_decref(claim);
    e->clustered = true;
    /* A claim outlives its request by a minute at most (a node that lost Redis between the
     * claim and the answer leaves a key that frees itself by then); the answer written
     * afterwards gets the whole TTL. */
    e->claim_ttl = req->ctx->config.max_wait + 60;
    if (e->claim_ttl > t->ttl)
        e->claim_ttl = t->ttl;
    if (!e->claim) {
        api_idempotency_abandon(t, req);
        api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return 1;
    }
    e->claims = 1;
    if (api_redis_call(req, queue_claim, e, NULL) != MHD_YES || req->replied)
        api_idempotency_abandon(t, req);
    return 1; /* suspended until Redis answers (or answered 503) */
}

/* Replays an answer read from Redis. */
static int replay_from_redis(api_request *req, json_t *value)
{
    const char *b64 = json_string_value(json_object_get(value, "b"));
    size_t b64len = b64 ? strlen(b64) : 0;
    rt_buf *buf = rt_buf_new(rt_base64_decoded_max(b64len), NULL);
    long len = buf ? rt_base64_decode(b64 ? b64 : "", b64len, buf->data) : -1;
    if (len < 0) {
        rt_buf_decref(buf);
        api_problem(req, 503, "ServiceUnavailable",
                    buf ? "the answer kept in Redis for this Idempotency-Key is unreadable"
                        : "out of memory",
                    NULL);
        return 1;
    }
    entry snapshot = {
        .status = (unsigned)json_integer_value(json_object_get(value, "s")),
        .content_type = (char *)json_string_value(json_object_get(value, "t")),
        .headers = (char *)json_string_value(json_object_get(value, "h")),
        .buf = buf,
        .offset = 0,
        .len = (size_t)len,
    };
    replay(req, &snapshot);
    rt_buf_decref(buf);
    return 1;
}

/* The claim's answer is in: run the request (claimed), or answer as the key's holder says. */
static int claim_answered(api_idempotency *t, api_request *req, const char *key)
{
    entry *e = req->idem_entry;
    const rt_redis_answer *a = api_redis_answer(req);
    if (!a || a->type != RT_REDIS_STRING) {
        char why[300];
        snprintf(why, sizeof(why), "%s",
                 !a ? "no answer" : a->type == RT_REDIS_FAILED ? a->why
                                  : a->str ? a->str : "an unexpected answer");
        api_redis_release(req);
        api_idempotency_abandon(t, req);
        return cluster_unavailable(req, why);
    }
    if (strcmp(a->str, e->claim) == 0) {
        api_redis_release(req);
        e->won = true;
        return 0; /* this request runs */
    }
    json_t *value = json_loads(a->str, 0, NULL);
    char *held = strdup(a->str);
    api_redis_release(req);
    json_t *mine = json_loads(e->claim, 0, NULL);
    int other_body = !json_equal(json_object_get(value, "d"), json_object_get(mine, "d"));
    json_decref(mine);
    const char *running = json_string_value(json_object_get(value, "r"));
    if (value && held && !other_body && running && e->claims < CLAIMS_MAX) {
        char tag[RT_NODE_TAG_SIZE];
        rt_owner owner = rt_cluster_owner(req->ctx->cluster, running, tag, NULL, 0);
        if (owner == RT_OWNER_DEAD || owner == RT_OWNER_UNKNOWN) {
            /* Its node died before answering: this request takes the key over. */
            free(e->stale);
            e->stale = held;
            e->claims++;
            json_decref(value);
            if (api_redis_call(req, queue_claim, e, NULL) != MHD_YES || req->replied)
                api_idempotency_abandon(t, req);
            return 1;
        }
    }
    api_idempotency_abandon(t, req); /* this request does not run: nothing to record */
    if (!value || !held) {
        api_problem(req, 503, "ServiceUnavailable",
                    held ? "the value kept in Redis for this Idempotency-Key is unreadable"
                         : "out of memory",
                    NULL);
    } else if (other_body) {
        api_problem(req, 422, "UnprocessableContent",
                    "this Idempotency-Key was used with another request body",
                    json_pack("{s:s}", "idempotency_key", key));
    } else if (running) {
        req->retry_after = 1;
        api_problem(req, 409, "Conflict",
                    "a request with this Idempotency-Key is still being answered",
                    json_pack("{s:s}", "idempotency_key", key));
    } else if (json_object_get(value, "big")) {
        api_problemf(req, 409, "Conflict",
                     "the first request with this Idempotency-Key was answered by node %s; its "
                     "answer (over %d bytes) is too large to keep in Redis, so only that node "
                     "replays it",
                     json_string_value(json_object_get(value, "node")), REDIS_BODY_MAX);
    } else {
        replay_from_redis(req, value);
    }
    free(held);
    json_decref(value);
    return 1;
}

/* The value that tells other nodes the answer (new string), or NULL when out of memory. */
static char *answer_value(const entry *e, api_request *req, unsigned status,
                          const char *content_type, const char *headers, const char *claim)
{
    (void)e;
    json_t *mine = json_loads(claim, 0, NULL);
    json_t *v = json_pack("{s:O,s:i}", "d", json_object_get(mine, "d"), "s", (int)status);
    json_decref(mine);
    if (!v)
        return NULL;
    size_t len = req->idem_buf ? req->idem_len : 0;
    if (len > REDIS_BODY_MAX) {
        char tag[RT_NODE_TAG_SIZE] = "";
        rt_cluster_info info;
        rt_cluster_get_info(req->ctx->cluster, &info);
        snprintf(tag, sizeof(tag), "%s", info.tag);
        json_object_set_new(v, "big", json_integer((json_int_t)len));
        json_object_set_new(v, "node", json_string(tag));
    } else {
        char *b64 = malloc(rt_base64_encoded_size(len) + 1);
        if (!b64) {
            json_decref(v);
            return NULL;
        }
        size_t n = len ? rt_base64_encode(req->idem_buf->data + req->idem_offset, len, b64) : 0;
        b64[n] = '\0';
        json_object_set_new(v, "b", json_string(b64));
        free(b64);
        if (content_type)
            json_object_set_new(v, "t", json_string(content_type));
        if (headers)
            json_object_set_new(v, "h", json_string(headers));
    }
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return text;
}

static void finished(const rt_redis_answer *answer, void *arg)
{
    (void)answer; /* not written: the key expires with its claim; the answer goes out */
    api_request *req = arg;
    MHD_resume_connection(req->conn); /* last: the request may end from here on */
}

static void ignored(const rt_redis_answer *answer, void *arg)
{
    (void)answer;
    (void)arg;
}

/* Writes the answer to the key (or frees it, value ""). With req: suspends req until
 * Redis answered and returns 1 (0 when it could not be queued). */
static int finish_in_redis(rt_cluster *cluster, const char *key, const char *claim,
                           const char *value, double ttl, api_request *req)
{
    char ms[32];
    ms_text(ttl, ms, sizeof(ms));
    const char *argv[] = {"EVAL", FINISH, "1", key, claim, value, ms};
    if (!req)
        return rt_cluster_command(cluster, 7, argv, ignored, NULL) == 0;
    MHD_suspend_connection(req->conn); /* before the callback can resume it */
    if (rt_cluster_command(cluster, 7, argv, finished, req) != 0) {
        MHD_resume_connection(req->conn);
        return 0;
    }
    return 1;
}

enum MHD_Result api_idempotency_send_held(api_request *req)
{
    struct MHD_Response *resp = req->idem_held;
    req->idem_held = NULL;
    enum MHD_Result r = MHD_queue_response(req->conn, req->idem_held_status, resp);
    MHD_destroy_response(resp);
    return r;
}

int api_idempotency_begin(api_idempotency *t, api_request *req)
{
    const char *key = api_header(req, "Idempotency-Key");
    if (!key || !t)
        return 0;
    size_t klen = strlen(key);
    int ok = klen > 0 && klen <= KEY_MAX;
    for (size_t i = 0; ok && i < klen; i++)
        ok = key[i] > 0x20 && key[i] < 0x7f;
    if (!ok) {
        api_problemf(req, 400, "BadRequest",
                     "Idempotency-Key must be 1 to %d printable characters without spaces",
                     KEY_MAX);
        return 1;
    }
    if (req->idem_entry) /* cluster mode: resumed with Redis's answer to the claim */
        return claim_answered(t, req, key);
    char *scope = NULL;
    if (asprintf(&scope, "%s %s %s", req->method, req->url, key) < 0) {
        api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return 1;
    }
    unsigned char digest[RT_SHA256_DIGEST_SIZE];
    body_digest(req, digest);
    uint32_t h = rt_hash_str(scope);
    double now = rt_clock_monotonic();

    pthread_mutex_lock(&t->lock);
    prune(t, now);
    entry *e = find(t, scope, h);
    if (e && memcmp(e->digest, digest, sizeof(digest)) != 0) {
        pthread_mutex_unlock(&t->lock);
        free(scope);
        api_problem(req, 422, "UnprocessableContent",
                    "this Idempotency-Key was used with another request body",
                    json_pack("{s:s}", "idempotency_key", key));
        return 1;
    }
    if (e && !e->done) {
        pthread_mutex_unlock(&t->lock);
        free(scope);
        req->retry_after = 1;
        api_problem(req, 409, "Conflict",
                    "a request with this Idempotency-Key is still being answered",
                    json_pack("{s:s}", "idempotency_key", key));
        return 1;
    }
    if (e) {
        /* Take the answer out under the lock (the body by reference); replay it after. */
        entry snapshot = *e;
        snapshot.buf = rt_buf_incref(e->buf);
        snapshot.content_type = e->content_type ? strdup(e->content_type) : NULL;
        snapshot.headers = e->headers ? strdup(e->headers) : NULL;
        pthread_mutex_unlock(&t->lock);
        free(scope);
        if ((e->content_type && !snapshot.content_type) || (e->headers && !snapshot.headers))
            api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        else
            replay(req, &snapshot);
        rt_buf_decref(snapshot.buf);
        free(snapshot.content_type);
        free(snapshot.headers);
        return 1;
    }
    /* A request another node relayed here: that node holds the key's claim in Redis. */
    bool claim = req->ctx->cluster && !api_header(req, API_FORWARDED_HEADER);
    if (claim && api_cluster_unavailable(req)) {
        pthread_mutex_unlock(&t->lock);
        free(scope);
        return cluster_unavailable(req, "unreachable");
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
        pthread_mutex_unlock(&t->lock);
        free(scope);
        api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return 1;
    }
    e->scope = scope;
    e->hash = h;
    memcpy(e->digest, digest, sizeof(digest));
    e->expires_at = now + t->ttl;
    size_t b = h & (t->nbuckets - 1);
    e->hnext = t->buckets[b];
    t->buckets[b] = e;
    e->older = t->newest;
    if (t->newest)
        t->newest->newer = e;
    else
        t->oldest = e;
    t->newest = e;
    t->count++;
    e->bytes = entry_bytes(e);
    t->bytes += e->bytes;
    req->idem_entry = e;
    pthread_mutex_unlock(&t->lock);
    if (claim)
        return claim_start(t, req, e, scope, digest);
    return 0;
}

/* Collects an answer's headers for replay, leaving out those each answer makes anew. */
static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *name,
                                      const char *value)
{
    char **text = cls;
    (void)kind;
    if (strcasecmp(name, "X-Request-Id") == 0 || strcasecmp(name, "Content-Type") == 0 ||
        strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Date") == 0 ||
        strcasecmp(name, "Connection") == 0 || !value)
        return MHD_YES;
    char *grown = NULL;
    if (asprintf(&grown, "%s%s: %s\n", *text ? *text : "", name, value) < 0)
        return MHD_NO;
    free(*text);
    *text = grown;
    return MHD_YES;
}

int api_idempotency_record(api_idempotency *t, api_request *req, unsigned status,
                           struct MHD_Response *resp, const char *content_type)
{
    entry *e = req->idem_entry;
    if (!e || !t)
        return 0;
    req->idem_entry = NULL;
    if (!req->idem_buf) /* an answer without a body */
        req->idem_buf = rt_buf_new(0, NULL);
    bool remember = !(status == 429 || status >= 500 || !req->idem_buf);
    /* Cluster mode: what Redis is to hold, taken before the entry may go. */
    char *redis_key = NULL, *claim = NULL, *value = NULL;
    if (e->won) {
        redis_key = strdup(e->redis_key);
        claim = e->claim;
        e->claim = NULL;
        if (remember) {
            char *headers = NULL;
            MHD_get_response_headers(resp, collect_header, &headers);
            value = answer_value(e, req, status, content_type, headers, claim);
            free(headers);
        }
    }
    pthread_mutex_lock(&t->lock);
    if (!remember) {
        /* Not an answer to remember (or no memory to keep it): let a retry do the work. */
        unlink_entry(t, e);
        entry_free(e);
    } else {
        e->status = status;
        e->content_type = content_type ? strdup(content_type) : NULL;
        MHD_get_response_headers(resp, collect_header, &e->headers);
        e->buf = req->idem_buf; /* stolen */
        e->offset = req->idem_offset;
        e->len = req->idem_len;
        e->shared = req->idem_shared;
        req->idem_buf = NULL;
        e->done = 1;
        t->bytes -= e->bytes;
        e->bytes = entry_bytes(e);
        t->bytes += e->bytes;
        if (e->shared)
            t->shared_bytes += e->buf->size;
        if (t->max_bytes && e->bytes > t->max_bytes) {
            /* Larger than the whole table: not remembered, rather than everything else. */
            unlink_entry(t, e);
            entry_free(e);
        }
        prune(t, rt_clock_monotonic());
    }
    pthread_mutex_unlock(&t->lock);
    int held = 0;
    if (redis_key && claim)
        /* An answer is held until Redis has it; a key not to remember is freed. */
        held = finish_in_redis(req->ctx->cluster, redis_key, claim, value ? value : "", t->ttl,
                               value ? req : NULL);
    free(redis_key);
    free(claim);
    free(value);
    return held;
}

void api_idempotency_abandon(api_idempotency *t, api_request *req)
{
    entry *e = req->idem_entry;
    if (!e || !t)
        return;
    req->idem_entry = NULL;
    if (e->won) /* the client went away: a retry may run it */
        finish_in_redis(req->ctx->cluster, e->redis_key, e->claim, "", 1, NULL);
    pthread_mutex_lock(&t->lock);
    unlink_entry(t, e);
    entry_free(e);
    pthread_mutex_unlock(&t->lock);
}

void api_idempotency_get_stats(api_idempotency *t, api_idempotency_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    out->keys = t->count;
    out->bytes = t->bytes;
    out->shared_bytes = t->shared_bytes;
    out->max_bytes = t->max_bytes;
    out->evictions = t->evictions;
    pthread_mutex_unlock(&t->lock);
}
