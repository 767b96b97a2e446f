/* Listings on one node, or merged across the cluster behind one cursor. See listing.h.
 *
 * DESIGN
 * - The merged cursor holds every node's position: "<tag>-<seq>" for a node with more to
 *   list (after its record seq), "<tag>-x" for a node listed to its end, joined by "_"
 *   (only [A-Za-z0-9_-]: it needs no escaping). Clients treat it as opaque. A live node the
 *   cursor does not name (it joined since) is listed from its beginning; a named node that
 *   has died is skipped (what it held is lost).
 * - One page: every live node with more to list is asked for `limit` records after its
 *   position (in parallel, over the peer route; this node reads its own directly), the
 *   answers are merged by creation time (ties: node order), and the first `limit` taken. A
 *   node all of whose records were taken moves to its own next cursor (or "x"); one with
 *   records left moves to the last one taken. So no record is skipped or listed twice,
 *   whatever the clocks say. The merge stops early when a node's page ran out while that
 *   node has more (a function filter may give short pages): what it has next is unknown.
 * - A live node that does not answer makes the page a 503 ClusterUnavailable to retry,
 *   never a page silently missing its records. */
#include "api/listing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/forward.h"
#include "api/problem.h"
#include "runtime/cluster.h"
#include "runtime/cluster_peer.h"

#define PEER_TIMEOUT 5.0 /* seconds a node has to answer for its page */
#define CURSOR_NODES_MAX 1024

/* ---- small helpers ------------------------------------------------------------------- */

static bool valid_tag(const char *tag, size_t len)
{
    if (len == 0 || len > RT_NODE_TAG_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = tag[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')))
            return false;
    }
    return true;
}

/* Appends "&name=value" (value percent-encoded) to out (size bytes). */
static void append_arg(char *out, size_t size, const char *name, const char *value)
{
    size_t used = strlen(out);
    int n = snprintf(out + used, size - used, "%s%s=", strchr(out, '?') ? "&" : "?", name);
    if (n < 0 || (size_t)n >= size - used)
        return;
    used += (size_t)n;
    static const char HEX[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)value; *p && used + 4 < size; p++) {
        if ((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[used++] = (char)*p;
        } else {
            out[used++] = '%';
            out[used++] = HEX[*p >> 4];
            out[used++] = HEX[*p & 15];
        }
    }
    out[used] = '\0';
}

/* The filters of req, passed on as query arguments (appended to out). */
static void append_filters(api_request *req, const api_list_kind *kind, char *out, size_t size)
{
    for (const char *const *f = kind->filters; f && *f; f++) {
        const char *v = api_query(req, *f);
        if (v)
            append_arg(out, size, *f, v);
    }
}

static void page_free(api_list_page *page)
{
    json_decref(page->items);
    free(page->seqs);
    free(page->times);
    memset(page, 0, sizeof(*page));
}

/* This node's page after `after`, with each record's position and time when positions:
 * 0, or -1 when out of memory (page then empty). */
static int local_page(api_request *req, const api_list_kind *kind, uint64_t after, size_t limit,
                      bool positions, api_list_page *page)
{
    memset(page, 0, sizeof(*page));
    page->items = json_array();
    if (positions) { /* only merging needs them: a node alone allocates nothing more */
        page->seqs = calloc(limit + 1, sizeof(*page->seqs));
        page->times = calloc(limit + 1, sizeof(*page->times));
    }
    if (!page->items || (positions && (!page->seqs || !page->times)) ||
        kind->local(req, after, limit, page) != 0) {
        page_free(page);
        return -1;
    }
    return 0;
}

/* Reads limit and cursor (a number: this node's own position). Answers 400 itself and
 * returns -1 on bad ones. */
static int read_local_args(api_request *req, unsigned long long *limit, unsigned long long *cursor)
{
    *limit = API_LIST_LIMIT_DEFAULT;
    *cursor = 0;
    if (api_query_uint(req, "limit", 1, API_LIST_LIMIT_MAX, limit) != 0 ||
        api_query_uint(req, "cursor", 0, (unsigned long long)-1, cursor) != 0)
        return -1;
    return 0;
}

/* One page of this node's own records, as a client sees it. */
static enum MHD_Result answer_local(api_request *req, const api_list_kind *kind)
{
    unsigned long long limit, cursor;
    if (read_local_args(req, &limit, &cursor) != 0)
        return MHD_YES;
    api_list_page page;
    if (local_page(req, kind, cursor, limit, false, &page) != 0)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    json_t *items = json_incref(page.items);
    uint64_t next = page.next;
    page_free(&page);
    return api_reply_page(req, kind->key, items, next);
}

enum MHD_Result api_list_peer(api_request *req, const api_list_kind *kind)
{
    if (!req->ctx->cluster)
        return api_problem(req, 404, "NotFound", "this node is not in cluster mode", NULL);
    if (kind->check(req) != 0)
        return MHD_YES;
    unsigned long long limit, cursor;
    if (read_local_args(req, &limit, &cursor) != 0)
        return MHD_YES;
    api_list_page page;
    if (local_page(req, kind, cursor, limit, true, &page) != 0)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    json_t *seqs = json_array(), *times = json_array();
    for (size_t i = 0; i < page.n; i++) {
        json_array_append_new(seqs, json_integer((json_int_t)page.seqs[i]));
        json_array_append_new(times, json_real(page.times[i]));
    }
    json_t *body = json_pack("{s:O,s:o,s:o,s:I}", "items", page.items, "seqs", seqs, "times",
                             times, "next", (json_int_t)page.next);
    page_free(&page);
    return api_reply_json(req, 200, body);
}

/* ---- ?node=<tag> ------------------------------------------------------------------------ */

static enum MHD_Result answer_one_node(api_request *req, const api_list_kind *kind,
                                       const char *tag)
{
    if (!valid_tag(tag, strlen(tag)))
        return api_problem(req, 400, "BadRequest", "node must be a node's tag (see /v1/status)",
                           NULL);
    char url[RT_CLUSTER_URL_MAX];
    rt_owner owner = rt_cluster_owner_of_tag(req->ctx->cluster, tag, url, sizeof(url));
    switch (owner) {
    case RT_OWNER_SELF:
        return answer_local(req, kind);
    case RT_OWNER_UNKNOWN:
        if (api_cluster_unavailable(req)) {
            req->retry_after = 1;
            return api_problemf(req, 503, "ClusterUnavailable",
                                "no node known here has tag %s, and Redis, which says which "
                                "nodes there are, is unreachable; retry",
                                tag);
        }
        return api_problem(req, 404, "NotFound", "no node of this cluster has this tag",
                           json_pack("{s:s}", "node", tag));
    case RT_OWNER_DEAD:
        return api_problem(req, 404, "NotFound",
                           "that node is dead (its heartbeat stopped): what it held is lost",
                           json_pack("{s:s}", "node", tag));
    case RT_OWNER_ALIVE:
        break;
    }
    if (api_header(req, API_FORWARDED_HEADER)) {
        req->retry_after = 1;
        return api_problemf(req, 503, "ClusterUnavailable",
                            "node %s is not this node (a peer's membership is out of date); "
                            "retry",
                            tag);
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s", kind->path);
    append_arg(path, sizeof(path), "node", tag);
    const char *limit = api_query(req, "limit"), *cursor = api_query(req, "cursor");
    if (limit)
        append_arg(path, sizeof(path), "limit", limit);
    if (cursor)
        append_arg(path, sizeof(path), "cursor", cursor);
    append_filters(req, kind, path, sizeof(path));
    return api_forward_relay(req, url, path, tag, NULL, 0, NULL, 0);
}

/* ---- merged across the cluster ------------------------------------------------------------ */

typedef struct position {
    char tag[RT_NODE_TAG_SIZE];
    bool done;
    uint64_t seq;
} position;

typedef struct merge_state {
    position *pos; /* the cursor given */
    size_t npos;
    unsigned long long limit;
    rt_cluster_node *nodes; /* the membership when the page began */
    size_t nnodes;
    long *call_of;          /* per node: its call in the fan-out, or -1 */
} merge_state;

static void merge_state_free(void *p)
{
    merge_state *s = p;
    if (!s)
        return;
    free(s->pos);
    free(s->nodes);
    free(s->call_of);
    free(s);
}

static const position *find_position(const merge_state *s, const char *tag)
{
    for (size_t i = 0; i < s->npos; i++)
        if (strcmp(s->pos[i].tag, tag) == 0)
            return &s->pos[i];
    return NULL;
}

/* Parses a merged cursor into s->pos. 0, or -1 when it is not one this listing gave. */
static int parse_cursor(const char *text, merge_state *s)
{
    size_t entries = 1;
    for (const char *p = text; *p; p++)
        entries += *p == '_';
    if (entries > CURSOR_NODES_MAX || !(s->pos = calloc(entries, sizeof(*s->pos))))
        return -1;
    const char *p = text;
    for (;;) {
        size_t len = strcspn(p, "_");
        const char *dash = memchr(p, '-', len);
        if (!dash || !valid_tag(p, (size_t)(dash - p)))
            return -1;
        position *pos = &s->pos[s->npos];
        memcpy(pos->tag, p, (size_t)(dash - p));
        pos->tag[dash - p] = '\0';
        const char *v = dash + 1, *end = p + len;
        if (end - v == 1 && *v == 'x') {
            pos->done = true;
        } else {
            if (v == end || end - v > 20)
                return -1;
            for (const char *q = v; q < end; q++) {
                if (*q < '0' || *q > '9')
                    return -1;
                pos->seq = pos->seq * 10 + (uint64_t)(*q - '0');
            }
        }
        if (find_position(s, pos->tag))
            return -1; /* a node named twice */
        s->npos++;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

/* One node's part of a page. */
typedef struct source {
    bool listed; /* has a page (else done, or dead) */
    api_list_page page;
    size_t taken;
} source;

/* Reads a node's answer to the peer route into page. 0, or -1 when it is not one. */
static int peer_page(const rt_peer_answer *a, size_t filled, api_list_page *page)
{
    memset(page, 0, sizeof(*page));
    if (!a || a->outcome != RT_PEER_ANSWERED || a->status != 200 || !a->body)
        return -1;
    json_t *body = json_loadb((const char *)a->body->data, filled, 0, NULL);
    json_t *items = json_object_get(body, "items"), *seqs = json_object_get(body, "seqs"),
           *times = json_object_get(body, "times"), *next = json_object_get(body, "next");
    size_t n = json_array_size(items);
    if (!json_is_array(items) || json_array_size(seqs) != n || json_array_size(times) != n ||
        !json_is_integer(next)) {
        json_decref(body);
        return -1;
    }
    page->items = json_incref(items);
    page->seqs = calloc(n + 1, sizeof(*page->seqs));
    page->times = calloc(n + 1, sizeof(*page->times));
    page->n = n;
    page->next = (uint64_t)json_integer_value(next);
    for (size_t i = 0; page->seqs && page->times && i < n; i++) {
        page->seqs[i] = (uint64_t)json_integer_value(json_array_get(seqs, i));
        page->times[i] = json_number_value(json_array_get(times, i));
    }
    json_decref(body); /* seqs and times live in it: read above */
    if (!page->seqs || !page->times) {
        page_free(page);
        return -1;
    }
    return 0;
}

/* Builds the next cursor into a new string (free()), or NULL when every node is done. */
static char *next_cursor(const merge_state *s, const source *src)
{
    size_t cap = s->nnodes * (RT_NODE_TAG_SIZE + 24) + 1, used = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[0] = '\0';
    bool more = false;
    for (size_t i = 0; i < s->nnodes; i++) {
        const rt_cluster_node *node = &s->nodes[i];
        if (!node->alive)
            continue; /* dead: skipped for good */
        const position *was = find_position(s, node->tag);
        bool done = was && was->done;
        uint64_t seq = was ? was->seq : 0;
        const source *x = &src[i];
        if (x->listed) {
            if (x->taken == x->page.n) {
                done = x->page.next == 0;
                seq = x->page.next;
            } else if (x->taken > 0) {
                seq = x->page.seqs[x->taken - 1];
            }
        } else if (!done) {
            continue; /* dead by now: skipped */
        }
        more |= !done;
        int n = done ? snprintf(out + used, cap - used, "%s%s-x", used ? "_" : "", node->tag)
                     : snprintf(out + used, cap - used, "%s%s-%llu", used ? "_" : "", node->tag,
                                (unsigned long long)seq);
        if (n > 0 && (size_t)n < cap - used)
            used += (size_t)n;
    }
    if (!more) {
        free(out);
        return NULL;
    }
    return out;
}

/* The second round: every node's page is in; merge and answer. */
static enum MHD_Result finish_merged(api_request *req, const api_list_kind *kind, merge_state *s)
{
    source *src = calloc(s->nnodes + 1, sizeof(*src));
    if (!src)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    enum MHD_Result result = MHD_YES;
    bool answered = false;
    for (size_t i = 0; i < s->nnodes && !answered; i++) {
        const rt_cluster_node *node = &s->nodes[i];
        const position *was = find_position(s, node->tag);
        if (!node->alive || (was && was->done))
            continue;
        if (node->self) {
            if (local_page(req, kind, was ? was->seq : 0, s->limit, true, &src[i].page) != 0) {
                result = api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
                answered = true;
            }
            src[i].listed = !answered;
            continue;
        }
        long call = s->call_of[i];
        const rt_peer_answer *a = call >= 0 ? api_forward_fanout_answer(req, (size_t)call) : NULL;
        size_t filled = call >= 0 ? api_forward_fanout_body(req, (size_t)call) : 0;
        if (peer_page(a, filled, &src[i].page) == 0) {
            src[i].listed = true;
            continue;
        }
        if (rt_cluster_owner_of_tag(req->ctx->cluster, node->tag, NULL, 0) == RT_OWNER_DEAD)
            continue; /* died meanwhile: its records are lost, the listing goes on */
        req->retry_after = 1;
        result = api_problemf(req, 503, "ClusterUnavailable",
                              "node %s (%s) did not give its part of this listing (%s); retry",
                              node->tag, node->url,
                              !a                ? "the request could not start"
                              : a->error[0]     ? a->error
                              : a->status != 200 ? "it answered with an error"
                                                 : "its answer was not a page");
        answered = true;
    }
    if (!answered) {
        json_t *items = json_array();
        for (size_t total = 0; total < s->limit; total++) {
            long best = -1;
            bool blocked = false;
            for (size_t i = 0; i < s->nnodes; i++) {
                const source *x = &src[i];
                if (!x->listed)
                    continue;
                if (x->taken == x->page.n) {
                    blocked |= x->page.next != 0; /* more there, not fetched */
                    continue;
                }
                if (best < 0 || x->page.times[x->taken] < src[best].page.times[src[best].taken])
                    best = (long)i;
            }
            if (best < 0 || blocked)
                break;
            source *x = &src[best];
            json_array_append(items, json_array_get(x->page.items, x->taken));
            x->taken++;
        }
        char *cursor = next_cursor(s, src);
        result = api_reply_json(req, 200,
                                json_pack("{s:o,s:o}", kind->key, items, "next_cursor",
                                          cursor ? json_string(cursor) : json_null()));
        free(cursor);
    }
    for (size_t i = 0; i < s->nnodes; i++)
        page_free(&src[i].page);
    free(src);
    return result;
}

static enum MHD_Result answer_merged(api_request *req, const api_list_kind *kind)
{
    if (req->handler_state && api_forward_fanout_done(req))
        return finish_merged(req, kind, req->handler_state);
    merge_state *s = calloc(1, sizeof(*s));
    if (!s)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    req->handler_state = s;
    req->handler_state_free = merge_state_free;
    s->limit = API_LIST_LIMIT_DEFAULT;
    if (api_query_uint(req, "limit", 1, API_LIST_LIMIT_MAX, &s->limit) != 0)
        return MHD_YES;
    const char *cursor = api_query(req, "cursor");
    if (cursor && parse_cursor(cursor, s) != 0)
        return api_problem(req, 400, "BadRequest",
                           "cursor is not one this listing gave (pass next_cursor as it is)",
                           NULL);
    s->nnodes = rt_cluster_nodes(req->ctx->cluster, &s->nodes);
    s->call_of = calloc(s->nnodes + 1, sizeof(*s->call_of));
    const char **urls = calloc(s->nnodes + 1, sizeof(*urls));
    char (*paths)[1024] = calloc(s->nnodes + 1, sizeof(*paths));
    const char **path_list = calloc(s->nnodes + 1, sizeof(*path_list));
    if (!s->nodes || !s->call_of || !urls || !paths || !path_list) {
        free(urls);
        free(paths);
        free(path_list);
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    }
    size_t n = 0;
    for (size_t i = 0; i < s->nnodes; i++) {
        const rt_cluster_node *node = &s->nodes[i];
        const position *was = find_position(s, node->tag);
        s->call_of[i] = -1;
        if (node->self || !node->alive || (was && was->done))
            continue;
        snprintf(paths[n], sizeof(paths[n]), "%s?cursor=%llu&limit=%llu", kind->peer_path,
                 was ? (unsigned long long)was->seq : 0ULL, s->limit);
        append_filters(req, kind, paths[n], sizeof(paths[n]));
        urls[n] = node->url;
        path_list[n] = paths[n];
        s->call_of[i] = (long)n++;
    }
    enum MHD_Result r = api_forward_fanout_each(req, urls, path_list, n, "GET", PEER_TIMEOUT);
    free(urls);
    free(paths);
    free(path_list);
    if (n == 0 && api_forward_fanout_done(req))
        return finish_merged(req, kind, s);
    return r;
}

/* ---- the handler ------------------------------------------------------------------------ */

enum MHD_Result api_list(api_request *req, const api_list_kind *kind)
{
    if (kind->check(req) != 0)
        return MHD_YES;
    if (!req->ctx->cluster)
        return answer_local(req, kind);
    const char *node = api_query(req, "node");
    if (node)
        return answer_one_node(req, kind, node);
    return answer_merged(req, kind);
}
