/* The Idempotency-Key table: key -> body digest and the first answer, bounded in keys and
 * bytes (see idempotency.h). */
#include "api/idempotency.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/problem.h"
#include "runtime/clock.h"
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

void api_idempotency_record(api_idempotency *t, api_request *req, unsigned status,
                            struct MHD_Response *resp, const char *content_type)
{
    entry *e = req->idem_entry;
    if (!e || !t)
        return;
    req->idem_entry = NULL;
    if (!req->idem_buf) /* an answer without a body */
        req->idem_buf = rt_buf_new(0, NULL);
    pthread_mutex_lock(&t->lock);
    if (status == 429 || status >= 500 || !req->idem_buf) {
        /* Not an answer to remember (or no memory to keep it): let a retry do the work. */
        unlink_entry(t, e);
        entry_free(e);
        pthread_mutex_unlock(&t->lock);
        return;
    }
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
    pthread_mutex_unlock(&t->lock);
}

void api_idempotency_abandon(api_idempotency *t, api_request *req)
{
    entry *e = req->idem_entry;
    if (!e || !t)
        return;
    req->idem_entry = NULL;
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
