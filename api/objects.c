/* /v1/objects: put, batch put, list, get (with long-poll, ETag and Range), head, meta,
 * delete. get_batch and wait live in api/waiting.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/decode.h"
#include "api/forward.h"
#include "api/handlers.h"
#include "api/listing.h"
#include "api/park.h"
#include "api/problem.h"
#include "api/range.h"
#include "api/values.h"
#include "runtime/clock.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

/* Answers 400 when a path segment is not a ref. Returns 0 when it is. */
static int check_ref(api_request *req, const char *ref)
{
    if (rt_ref_valid(ref))
        return 0;
    api_problemf(req, 400, "BadRequest",
                 "'%.80s' is not a ref: refs are 1 to 64 characters of [A-Za-z0-9_-]", ref);
    return -1;
}

static enum MHD_Result reply_lost(api_request *req, const rt_object_view *view)
{
    char detail[160];
    snprintf(detail, sizeof(detail), "object %s was %s", view->ref,
             api_value_lost_reason(view->lost_reason));
    return api_problem(req, 410, "ObjectLost", detail, json_pack("{s:s}", "ref", view->ref));
}

static enum MHD_Result reply_not_found(api_request *req, const char *ref)
{
    char detail[160];
    snprintf(detail, sizeof(detail), "object %s does not exist", ref);
    return api_problem(req, 404, "NotFound", detail, json_pack("{s:s}", "ref", ref));
}

static enum MHD_Result reply_pending(api_request *req, const char *ref)
{
    req->retry_after = 1;
    return api_reply_json(req, 202, json_pack("{s:s,s:s}", "ref", ref, "state", "pending"));
}

static enum MHD_Result serve_ready(api_request *req, const rt_object_view *view);

/* ---- cluster mode: objects another node owns ------------------------------------------ */

enum { FOREIGN_READ, FOREIGN_META, FOREIGN_DELETE };

/* Handles a ref that another node owns (cluster mode only): an unknown owner is a 404, a
 * dead one a 410 (its objects are lost, copies or not: as Ray's OwnerDiedError); a live
 * owner's object is read from a secondary copy when this node has one, and anything else
 * is relayed to the owner. Returns true when it answered or relayed (*result set), false
 * when the ref is this node's own. */
static bool foreign_object(api_request *req, const char *ref, int what, enum MHD_Result *result)
{
    char tag[RT_NODE_TAG_SIZE], url[RT_CLUSTER_URL_MAX];
    rt_owner owner = rt_cluster_owner(req->ctx->cluster, ref, tag, url, sizeof(url));
    if (owner == RT_OWNER_SELF)
        return false;
    if (owner != RT_OWNER_ALIVE || what == FOREIGN_DELETE) {
        rt_store_drop_copy(req->ctx->store, ref); /* no copy outlives its owner or a free */
    } else if (what == FOREIGN_READ) {
        rt_object_view view;
        rt_status st = rt_store_get(req->ctx->store, ref, &view);
        bool copy = st == RT_OK && view.copy && view.state == RT_OBJ_READY;
        if (copy)
            *result = serve_ready(req, &view);
        rt_object_view_release(&view);
        if (copy)
            return true;
    }
    char detail[200];
    if (owner == RT_OWNER_UNKNOWN) {
        *result = api_forward_reply_unknown_owner(req, ref, tag);
    } else if (owner == RT_OWNER_DEAD) {
        *result = api_forward_reply_owner_died(req, ref, tag);
    } else if (api_header(req, API_FORWARDED_HEADER)) {
        /* Sent here by a node that took this one for the owner: never send it on. */
        snprintf(detail, sizeof(detail),
                 "object %s belongs to node %s, not to this node (a peer's membership is "
                 "out of date); retry",
                 ref, tag);
        req->retry_after = 1;
        *result = api_problem(req, 503, "ClusterUnavailable", detail, NULL);
    } else {
        char path[64 + RT_REF_SIZE];
        if (what == FOREIGN_META) {
            snprintf(path, sizeof(path), "/v1/objects/%s/meta", ref);
        } else if (what == FOREIGN_READ && req->method[0] == 'G') {
            double left = req->deadline - rt_clock_monotonic();
            snprintf(path, sizeof(path), "/v1/objects/%s?timeout=%.3f", ref, left > 0 ? left : 0);
        } else {
            snprintf(path, sizeof(path), "/v1/objects/%s", ref);
        }
        *result = api_forward_relay(req, url, path, tag, ref,
                                    what == FOREIGN_READ ? API_FORWARD_CACHE : 0, NULL, 0);
    }
    return true;
}

/* ---- POST /v1/objects ---------------------------------------------------------------- */

#define OBJECTS_PATH "/v1/objects/"

/* Appends len bytes at *at and moves it past them. */
static void append(char **at, const char *s, size_t len)
{
    memcpy(*at, s, len);
    *at += len;
}

/* {"ref":"...","size":N,"content_type":"..."} in a new buffer (*len its length), or NULL.
 * ct_json is already escaped. Put together by hand: asprintf was a quarter of a small
 * put's own instructions. */
static char *put_receipt(const char *ref, size_t size, const char *ct_json, size_t *len)
{
    static const char k_ref[] = "{\"ref\":\"", k_size[] = "\",\"size\":",
                      k_ct[] = ",\"content_type\":\"", k_end[] = "\"}";
    char digits[24];
    size_t nd = 0;
    do {
        digits[sizeof(digits) - ++nd] = (char)('0' + size % 10);
        size /= 10;
    } while (size);
    size_t ref_len = strlen(ref), ct_len = strlen(ct_json);
    *len = sizeof(k_ref) - 1 + ref_len + sizeof(k_size) - 1 + nd + sizeof(k_ct) - 1 + ct_len +
           sizeof(k_end) - 1;
    char *body = malloc(*len + 1);
    if (!body)
        return NULL;
    char *at = body;
    append(&at, k_ref, sizeof(k_ref) - 1);
    append(&at, ref, ref_len);
    append(&at, k_size, sizeof(k_size) - 1);
    append(&at, digits + sizeof(digits) - nd, nd);
    append(&at, k_ct, sizeof(k_ct) - 1);
    append(&at, ct_json, ct_len);
    append(&at, k_end, sizeof(k_end) - 1);
    *at = '\0';
    return body;
}

enum MHD_Result api_objects_put(api_request *req)
{
    double ttl = 0;
    if (api_query_seconds(req, "ttl", 0, &ttl) != 0)
        return MHD_YES;
    if (api_query(req, "ttl") && ttl <= 0)
        return api_problem(req, 400, "BadRequest", "ttl must be a number of seconds > 0", NULL);

    char ref[RT_REF_SIZE];
    rt_buf *buf = req->raw_buf;
    /* Read these now: once stored, the buffer (and a content type it owns) may be evicted
     * by another thread. Written directly: jansson's pack and dump were half of a small
     * put's own cost. */
    size_t size = buf->size;
    char ct_json[6 * RT_CONTENT_TYPE_MAX + 1];
    ct_json[api_json_escape_into(ct_json, buf->content_type, RT_CONTENT_TYPE_MAX)] = '\0';
    rt_status st = rt_store_put(req->ctx->store, buf, ttl, ref);
    if (st != RT_OK)
        return api_problem_status(req, st, "the object");
    req->raw_buf = NULL; /* the store owns it now */
    if (api_session_adopt_objects(req, &ref, 1) != 0)
        return api_session_reply_closed(req);

    size_t len;
    char *body = put_receipt(ref, size, ct_json, &len);
    struct MHD_Response *resp = api_response_text(req, body, len);
    if (!resp)
        return MHD_NO;
    char location[sizeof(OBJECTS_PATH) + RT_REF_SIZE];
    memcpy(location, OBJECTS_PATH, sizeof(OBJECTS_PATH) - 1);
    memcpy(location + sizeof(OBJECTS_PATH) - 1, ref, strlen(ref) + 1);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return api_reply(req, 201, resp, "application/json");
}

/* ---- POST /v1/objects/batch ---------------------------------------------------------- */

enum MHD_Result api_objects_put_batch(api_request *req)
{
    if (api_body_json(req) != 0)
        return MHD_YES;
    rt_buf **bufs = NULL;
    size_t n = 0;
    char err[256];
    int d = api_decode_object_batch(req->json, &bufs, &n, err, sizeof(err));
    if (d == API_DECODE_NOMEM)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    if (d != API_DECODE_OK)
        return api_problem(req, 400, "BadRequest", err, NULL);
    char(*refs)[RT_REF_SIZE] = malloc(n * sizeof(*refs));
    enum MHD_Result result;
    if (!refs) {
        result = api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        goto done;
    }
    rt_status st = rt_store_put_many(req->ctx->store, bufs, n, refs);
    if (st != RT_OK) {
        result = api_problem_status(req, st, "the batch");
        goto done;
    }
    memset(bufs, 0, n * sizeof(*bufs)); /* the store owns them now */
    if (api_session_adopt_objects(req, refs, n) != 0) {
        result = api_session_reply_closed(req);
        goto done;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_string(refs[i]));
    result = api_reply_json(req, 201, json_pack("{s:o}", "refs", list));
done:
    api_free_bufs(bufs, n);
    free(refs);
    return result;
}

/* ---- GET /v1/objects ------------------------------------------------------------------ */

static int objects_list_check(api_request *req)
{
    const char *state = api_query(req, "state");
    if (state && rt_object_state_parse(state) < 0) {
        api_problem(req, 400, "BadRequest", "state must be one of pending, ready, error, lost",
                    NULL);
        return -1;
    }
    return 0;
}

static int objects_list_local(api_request *req, uint64_t after, size_t limit,
                              api_list_page *page)
{
    const char *state = api_query(req, "state");
    rt_object_view *views = calloc(limit, sizeof(*views));
    if (!views)
        return -1;
    size_t n = rt_store_list(req->ctx->store, after, state ? rt_object_state_parse(state) : -1,
                             limit, views, &page->next);
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(page->items, api_value_meta(&views[i]));
        if (page->seqs) {
            page->seqs[i] = views[i].seq;
            page->times[i] = views[i].created_at;
        }
        rt_object_view_release(&views[i]);
    }
    page->n = n;
    free(views);
    return 0;
}

static const char *const OBJECTS_LIST_FILTERS[] = {"state", NULL};
static const api_list_kind OBJECTS_LISTING = {
    "objects", "/v1/objects", "/v1/cluster/list/objects", OBJECTS_LIST_FILTERS,
    objects_list_check, objects_list_local,
};

enum MHD_Result api_objects_list(api_request *req)
{
    return api_list(req, &OBJECTS_LISTING);
}

enum MHD_Result api_objects_list_peer(api_request *req)
{
    return api_list_peer(req, &OBJECTS_LISTING);
}

/* ---- GET and HEAD /v1/objects/{ref} --------------------------------------------------- */

/* True when an If-None-Match header names this ref's ETag, or is "*" (RFC 9110 13.1.2:
 * If-None-Match = "*" / #entity-tag, compared weakly). A comma inside a quoted tag is part
 * of the tag, and a header that is not such a list is ignored (no match). */
static int etag_matches(const char *header, const char *ref)
{
    if (!header)
        return 0;
    size_t rlen = strlen(ref);
    const char *p = header;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '*') {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        return *p == '\0';
    }
    int matched = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++; /* empty list elements are allowed */
        if (!*p)
            return matched;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p != '"')
            return 0;
        const char *tag = ++p;
        for (unsigned char c = (unsigned char)*p; c == 0x21 || (c >= 0x23 && c != 0x7f);
             c = (unsigned char)*++p)
            ; /* etagc: %x21 / %x23-7E / obs-text */
        if (*p != '"')
            return 0;
        if ((size_t)(p - tag) == rlen && strncmp(tag, ref, rlen) == 0)
            matched = 1;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p && *p != ',')
            return 0;
    }
}

/* The body reader of a 304: there is no body, so it ends at once if ever asked. */
static ssize_t no_body_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_OF_STREAM;
}

static enum MHD_Result serve_ready(api_request *req, const rt_object_view *view)
{
    char etag[RT_REF_SIZE + 2]; /* "ref" */
    size_t ref_len = strnlen(view->ref, RT_REF_SIZE - 1);
    etag[0] = '"';
    memcpy(etag + 1, view->ref, ref_len);
    etag[ref_len + 1] = '"';
    etag[ref_len + 2] = '\0';
    /* Only a GET or HEAD of the object is conditional: 304 is no answer to a POST (RFC 9110
     * 15.4.5), whose Prefer: wait answer also comes here. */
    int reading = req->method[0] != 'P';
    if (reading && etag_matches(api_header(req, MHD_HTTP_HEADER_IF_NONE_MATCH), view->ref)) {
        /* RFC 9110 8.6: a 304's Content-Length, if any, is the selected representation's.
         * A response of the object's size whose reader is never asked for bytes makes
         * libmicrohttpd say exactly that (a 304 has no body), where an empty buffer would
         * make it say 0. */
        struct MHD_Response *resp = MHD_create_response_from_callback(
            view->size, 4096, no_body_reader, NULL, NULL);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
        return api_reply(req, 304, resp, NULL);
    }

    size_t start = 0, len = view->size;
    api_range_result range = API_RANGE_NONE;
    if (strcmp(req->method, "GET") == 0)
        range = api_range_parse(api_header(req, MHD_HTTP_HEADER_RANGE), view->size, &start,
                                &len);
    if (range == API_RANGE_UNSATISFIABLE) {
        char content_range[48];
        snprintf(content_range, sizeof(content_range), "bytes */%zu", view->size);
        json_t *p = api_problem_new(416, "RangeNotSatisfiable",
                                    "the range is outside the object");
        json_object_set_new(p, "ref", json_string(view->ref));
        json_object_set_new(p, "size", json_integer((json_int_t)view->size));
        json_object_set_new(p, "instance", api_problem_instance(req->url));
        struct MHD_Response *resp = api_response_json(req, p);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
        return api_reply(req, 416, resp, "application/problem+json");
    }

    struct MHD_Response *resp = view->buf ? api_response_from_buf(req, view->buf, start, len)
                                          : api_response_from_spilled(req, view->spilled, start, len);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    /* Cluster mode: another node fetching a whole object may keep a copy, unless it
     * expires (the copy would outlive it); the owner remembers to tell it of a free. */
    if (req->ctx->cluster && reading && range == API_RANGE_NONE && !view->copy &&
        view->expires_at <= 0 && req->method[0] == 'G' && api_header(req, API_FORWARDED_HEADER) &&
        rt_store_mark_shared(req->ctx->store, view->ref) == RT_OK)
        MHD_add_response_header(resp, API_CACHEABLE_HEADER, "1");
    /* Ranges are served by GET of the object itself; the result in a POST's answer
     * (Prefer: wait) does not advertise them. */
    if (reading)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (range == API_RANGE_OK) {
        char content_range[80];
        snprintf(content_range, sizeof(content_range), "bytes %zu-%zu/%zu", start,
                 start + len - 1, view->size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
        return api_reply(req, 206, resp, view->content_type);
    }
    return api_reply(req, 200, resp, view->content_type);
}

enum MHD_Result api_objects_get(api_request *req)
{
    const char *ref = req->params[0];
    if (check_ref(req, ref) != 0)
        return MHD_YES;
    int head = strcmp(req->method, "HEAD") == 0;
    if (req->rounds == 1) {
        double timeout;
        if (api_query_seconds(req, "timeout", req->ctx->config.max_wait, &timeout) != 0)
            return MHD_YES;
        if (timeout > req->ctx->config.max_wait)
            timeout = req->ctx->config.max_wait;
        req->deadline = rt_clock_monotonic() + (head ? 0 : timeout);
        enum MHD_Result result;
        if (req->ctx->cluster && foreign_object(req, ref, FOREIGN_READ, &result))
            return result;
    }

    rt_object_view view;
    /* A spilled object is served from its file, not read back (api/spilled.c). */
    rt_status st = req->rounds == 1 ? rt_store_get_file(req->ctx->store, ref, &view)
                                    : rt_store_peek_file(req->ctx->store, ref, &view);
    if (st == RT_ENOTFOUND)
        return reply_not_found(req, ref);
    enum MHD_Result result;
    if (view.state == RT_OBJ_PENDING) {
        if (rt_clock_monotonic() >= req->deadline) {
            result = reply_pending(req, ref);
        } else {
            const char *refs[1] = {ref};
            result = api_park_on_refs(req, refs, 1, 1);
        }
    } else {
        result = api_objects_reply_resolved(req, &view);
    }
    rt_object_view_release(&view);
    return result;
}

enum MHD_Result api_objects_reply_resolved(api_request *req, const rt_object_view *view)
{
    if (view->state == RT_OBJ_LOST)
        return reply_lost(req, view);
    if (view->state == RT_OBJ_ERROR)
        return api_problem_send(req, api_problem_from_error(view->error, view->ref));
    return serve_ready(req, view);
}

/* ---- GET /v1/objects/{ref}/meta, DELETE /v1/objects/{ref} ----------------------------- */

enum MHD_Result api_objects_meta(api_request *req)
{
    const char *ref = req->params[0];
    if (check_ref(req, ref) != 0)
        return MHD_YES;
    enum MHD_Result result;
    if (req->ctx->cluster && foreign_object(req, ref, FOREIGN_META, &result))
        return result;
    rt_object_view view;
    rt_status st = rt_store_peek_file(req->ctx->store, ref, &view); /* a spilled one stays */
    if (st == RT_ENOTFOUND)
        return reply_not_found(req, ref);
    json_t *meta = api_value_meta(&view);
    rt_object_view_release(&view);
    return api_reply_json(req, 200, meta);
}

/* Cluster mode: the live nodes but this one, whose copies of a freed object must go. */
static size_t peers_alive(rt_cluster *cluster, char (**urls)[RT_CLUSTER_URL_MAX])
{
    rt_cluster_node *nodes;
    size_t n = rt_cluster_nodes(cluster, &nodes), k = 0;
    *urls = calloc(n + 1, sizeof(**urls));
    for (size_t i = 0; *urls && i < n; i++)
        if (nodes[i].alive && !nodes[i].self)
            memcpy((*urls)[k++], nodes[i].url, RT_CLUSTER_URL_MAX);
    free(nodes);
    return k;
}

/* Tells the other live nodes to drop their copies of a freed object, then answers 204
 * (api_objects_delete is called again once they all answered). */
static enum MHD_Result drop_copies_everywhere(api_request *req, const char *ref)
{
    char(*urls)[RT_CLUSTER_URL_MAX] = NULL;
    size_t n = peers_alive(req->ctx->cluster, &urls);
    if (n == 0) {
        free(urls);
        return api_reply_empty(req, 204);
    }
    const char **list = calloc(n, sizeof(*list));
    if (!list) {
        free(urls);
        return api_reply_empty(req, 204); /* copies then die by LRU */
    }
    for (size_t i = 0; i < n; i++)
        list[i] = urls[i];
    char path[32 + RT_REF_SIZE];
    snprintf(path, sizeof(path), "/v1/cluster/copies/%s", ref);
    enum MHD_Result r = api_forward_fanout(req, list, n, "DELETE", path, 2.0);
    free(list);
    free(urls);
    return r;
}

enum MHD_Result api_objects_delete(api_request *req)
{
    const char *ref = req->params[0];
    if (check_ref(req, ref) != 0)
        return MHD_YES;
    if (api_forward_fanout_done(req))
        return api_reply_empty(req, 204); /* freed, and the copies dropped */
    enum MHD_Result result;
    if (req->ctx->cluster && foreign_object(req, ref, FOREIGN_DELETE, &result))
        return result;
    bool shared = false;
    rt_status st = rt_store_delete_ex(req->ctx->store, ref, &shared);
    if (st == RT_OK && shared && req->ctx->cluster)
        return drop_copies_everywhere(req, ref);
    if (st == RT_ENOTFOUND)
        return reply_not_found(req, ref);
    if (st == RT_ELOST) {
        rt_object_view view;
        if (rt_store_peek(req->ctx->store, ref, &view) == RT_ELOST) {
            enum MHD_Result r = reply_lost(req, &view);
            rt_object_view_release(&view);
            return r;
        }
        return reply_not_found(req, ref);
    }
    return api_reply_empty(req, 204);
}
