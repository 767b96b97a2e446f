/* Asking the owners of a wait's or batch get's refs for their states. See wait_owners.h. */
#include "api/wait_owners.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/context.h"
#include "api/forward.h"
#include "api/problem.h"
#include "runtime/clock.h"
#include "runtime/cluster.h"
#include "runtime/object_store.h"
#include "runtime/ref.h"

#define NO_GROUP SIZE_MAX
#define PROBE_TIMEOUT 5.0     /* seconds an owner has to answer a timeout-0 question */
#define WHOLE_MARGIN 10.0     /* seconds past the client's deadline the owner has to answer */

enum { PHASE_NEW = 0, PHASE_ASKED, PHASE_DONE };

typedef struct owner_group {
    char tag[RT_NODE_TAG_SIZE];
    char url[RT_CLUSTER_URL_MAX];
    size_t count; /* refs asked about */
} owner_group;

struct api_wait_owners {
    int phase;
    bool whole;            /* one call carrying the client's own request */
    size_t n;
    size_t *group;         /* per ref: the call asking about it, or NO_GROUP */
    unsigned char *resolved; /* per ref: its owner said it was resolved */
    json_t **entries;      /* per ref (batch get): its owner's entry, or NULL */
    size_t ngroups;
};

void api_wait_owners_free(api_wait_owners *w)
{
    if (!w)
        return;
    if (w->entries)
        for (size_t i = 0; i < w->n; i++)
            json_decref(w->entries[i]);
    free(w->entries);
    free(w->group);
    free(w->resolved);
    free(w);
}

bool api_wait_owners_resolved(const api_wait_owners *w, size_t i)
{
    return w && w->resolved && i < w->n && w->resolved[i];
}

json_t *api_wait_owners_entry(const api_wait_owners *w, size_t i)
{
    return w && w->entries && i < w->n ? w->entries[i] : NULL;
}

/* Whether this node's store has ref resolved (a copy, or a stand-in answered). */
static bool resolved_here(api_request *req, const char *ref)
{
    rt_object_view view;
    rt_status st = rt_store_peek(req->ctx->store, ref, &view);
    bool resolved = st == RT_OK && view.state != RT_OBJ_PENDING;
    rt_object_view_release(&view);
    return resolved;
}

/* Puts each ref that another live node owns, and that is not resolved here, in its owner's
 * group. Returns the groups (malloc'd; *ngroups of them), or NULL with *ngroups 0 when there
 * are none. */
static owner_group *group_refs(api_request *req, api_wait_owners *w, const char *const *refs,
                               size_t n, size_t *ngroups)
{
    owner_group *groups = NULL;
    size_t ng = 0, cap = 0;
    for (size_t i = 0; i < n; i++) {
        w->group[i] = NO_GROUP;
        char tag[RT_NODE_TAG_SIZE], url[RT_CLUSTER_URL_MAX];
        rt_owner owner = rt_cluster_owner(req->ctx->cluster, refs[i], tag, url, sizeof(url));
        if (owner != RT_OWNER_ALIVE || resolved_here(req, refs[i]))
            continue;
        size_t g = 0;
        while (g < ng && strcmp(groups[g].tag, tag) != 0)
            g++;
        if (g == ng) {
            if (ng == cap) {
                size_t ncap = cap ? cap * 2 : 4;
                owner_group *bigger = realloc(groups, ncap * sizeof(*groups));
                if (!bigger)
                    continue; /* not asked: its stand-in answers for it */
                groups = bigger;
                cap = ncap;
            }
            memset(&groups[ng], 0, sizeof(groups[ng]));
            snprintf(groups[ng].tag, sizeof(groups[ng].tag), "%s", tag);
            size_t len = strlen(url);
            while (len > 0 && url[len - 1] == '/')
                len--;
            snprintf(groups[ng].url, sizeof(groups[ng].url), "%.*s", (int)len, url);
            ng++;
        }
        w->group[i] = g;
        groups[g].count++;
    }
    *ngroups = ng;
    return groups;
}

/* The question for one owner: its refs, timeout 0; a wait wants all of them. */
static char *question(const char *const *refs, const api_wait_owners *w, size_t g,
                      size_t count, bool is_wait, size_t *len)
{
    json_t *list = json_array();
    for (size_t i = 0; i < w->n && list; i++)
        if (w->group[i] == g && json_array_append_new(list, json_string(refs[i])) != 0)
            break;
    json_t *body = is_wait ? json_pack("{s:o,s:I,s:i}", "refs", list, "num_returns",
                                       (json_int_t)count, "timeout", 0)
                           : json_pack("{s:o,s:i}", "refs", list, "timeout", 0);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    *len = text ? strlen(text) : 0;
    return text;
}

/* Whether every ref names one owner, another live node (its URL into url): a cheap look at
 * the tags first, without the store or the membership's lock per ref. */
static bool one_other_owner(const api_request *req, const char *const *refs, size_t n,
                            char *url, size_t url_size)
{
    char first[RT_NODE_TAG_SIZE], tag[RT_NODE_TAG_SIZE];
    if (n == 0 || rt_ref_owner(refs[0], first) == 0)
        return false;
    for (size_t i = 1; i < n; i++)
        if (rt_ref_owner(refs[i], tag) == 0 || strcmp(tag, first) != 0)
            return false;
    if (rt_cluster_owner_of_tag(req->ctx->cluster, first, url, url_size) != RT_OWNER_ALIVE)
        return false;
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        url[--len] = '\0';
    return true;
}

bool api_wait_owners_one_other(const api_request *req, const char *const *refs, size_t n)
{
    char url[RT_CLUSTER_URL_MAX];
    return req->ctx->cluster && !api_header((api_request *)req, API_FORWARDED_HEADER) &&
           one_other_owner(req, refs, n, url, sizeof(url));
}

/* First round: asks the owners. Returns true when it suspended (or answered) the request. */
static bool ask(api_request *req, api_wait_owners *w, const char *const *refs, bool is_wait,
                enum MHD_Result *result)
{
    const char *path = is_wait ? "/v1/wait" : "/v1/objects/get";
    char url[RT_CLUSTER_URL_MAX];
    if (one_other_owner(req, refs, w->n, url, sizeof(url))) {
        /* Every ref is that owner's: its answer to the client's own request is the answer. */
        w->phase = PHASE_ASKED;
        w->whole = true;
        w->ngroups = 1;
        double left = req->deadline - rt_clock_monotonic();
        *result = api_forward_call(req, url, "POST", path, req->body, req->body_len,
                                   (left > 0 ? left : 0) + WHOLE_MARGIN);
        return true;
    }
    size_t ng = 0;
    owner_group *groups = group_refs(req, w, refs, w->n, &ng);
    w->ngroups = ng;
    if (ng == 0) {
        free(groups);
        w->phase = PHASE_DONE;
        return false;
    }
    w->phase = PHASE_ASKED;
    const char **urls = calloc(ng, sizeof(*urls)), **paths = calloc(ng, sizeof(*paths));
    char **bodies = calloc(ng, sizeof(*bodies));
    size_t *lens = calloc(ng, sizeof(*lens));
    bool ok = urls && paths && bodies && lens;
    for (size_t g = 0; ok && g < ng; g++) {
        urls[g] = groups[g].url;
        paths[g] = path;
        bodies[g] = question(refs, w, g, groups[g].count, is_wait, &lens[g]);
        ok = bodies[g] != NULL;
    }
    if (ok)
        *result = api_forward_fanout_posts(req, urls, paths, (const char *const *)bodies, lens,
                                           ng, PROBE_TIMEOUT);
    for (size_t g = 0; bodies && g < ng; g++)
        free(bodies[g]);
    free(urls);
    free(paths);
    free(bodies);
    free(lens);
    free(groups);
    if (!ok) { /* out of memory: stand-ins answer for every ref */
        w->phase = PHASE_DONE;
        return false;
    }
    return true;
}

/* Passes an owner's answer (status, body, its Content-Type) on to the client. */
static enum MHD_Result pass_on(api_request *req, const rt_peer_answer *a, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    if (len)
        memcpy(copy, a->body->data, len);
    copy[len] = '\0';
    struct MHD_Response *resp = api_response_text(req, copy, len);
    if (!resp)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    const char *type = rt_peer_header(a, "Content-Type");
    return api_reply(req, (unsigned)a->status, resp, type ? type : "application/json");
}

/* Whether two JSON strings name the same ref. */
static bool same_ref(json_t *s, const char *ref)
{
    const char *v = json_string_value(s);
    return v && strcmp(v, ref) == 0;
}

/* One owner's answer to a wait question: marks the refs of group g it lists ready. Its
 * ready and not_ready lists each keep the input order, so one walk pairs them up. */
static void read_wait_answer(api_wait_owners *w, const char *const *refs, size_t g, json_t *ans)
{
    json_t *ready = json_object_get(ans, "ready"), *not_ready = json_object_get(ans, "not_ready");
    size_t rp = 0, np = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (w->group[i] != g)
            continue;
        if (same_ref(json_array_get(ready, rp), refs[i])) {
            w->resolved[i] = 1;
            rp++;
        } else if (same_ref(json_array_get(not_ready, np), refs[i])) {
            np++;
        } else {
            return; /* not the answer to our question: take nothing more from it */
        }
    }
}

/* One owner's answer to a batch get question: keeps the entries of group g's refs. */
static void read_get_answer(api_wait_owners *w, const char *const *refs, size_t g, json_t *ans)
{
    json_t *objects = json_object_get(ans, "objects");
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (w->group[i] != g)
            continue;
        json_t *e = json_array_get(objects, k++);
        if (!e || !same_ref(json_object_get(e, "ref"), refs[i]))
            return;
        const char *state = json_string_value(json_object_get(e, "state"));
        w->entries[i] = json_incref(e);
        w->resolved[i] = state && strcmp(state, "pending") != 0;
    }
}

/* Second round: the owners answered (or failed). Returns true when it answered. */
static bool read_answers(api_request *req, api_wait_owners *w, const char *const *refs,
                         bool is_wait, enum MHD_Result *result)
{
    w->phase = PHASE_DONE;
    for (size_t g = 0; g < w->ngroups; g++) {
        const rt_peer_answer *a = api_forward_fanout_answer(req, g);
        if (!a || a->outcome != RT_PEER_ANSWERED || !a->body)
            continue; /* no answer: that owner's refs wait on stand-ins */
        size_t len = api_forward_fanout_body(req, g);
        if (w->whole || a->status == 404) {
            /* The owner's answer to the whole request; or a ref it does not have, which
             * is the client's error as on one node. Anything else (a 503 while it stops,
             * say) leaves the refs to their stand-ins. */
            if (a->status == 200 || a->status == 400 || a->status == 404) {
                *result = pass_on(req, a, len);
                return true;
            }
            continue;
        }
        if (a->status != 200)
            continue;
        json_t *ans = json_loadb((const char *)a->body->data, len, 0, NULL);
        if (ans && is_wait)
            read_wait_answer(w, refs, g, ans);
        else if (ans)
            read_get_answer(w, refs, g, ans);
        json_decref(ans);
    }
    api_forward_release(req); /* the answers are read: free them now */
    return false;
}

bool api_wait_owners_step(api_request *req, api_wait_owners **owners, const char *const *refs,
                          size_t n, bool is_wait, enum MHD_Result *result)
{
    api_wait_owners *w = *owners;
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w)
            return false; /* stand-ins answer for every ref */
        *owners = w;
        w->n = n;
        w->group = calloc(n + 1, sizeof(*w->group));
        w->resolved = calloc(n + 1, 1);
        w->entries = is_wait ? NULL : calloc(n + 1, sizeof(*w->entries));
        if (!w->group || !w->resolved || (!is_wait && !w->entries) || !req->ctx->cluster ||
            api_header(req, API_FORWARDED_HEADER))
            w->phase = PHASE_DONE;
    }
    if (w->phase == PHASE_NEW)
        return ask(req, w, refs, is_wait, result);
    if (w->phase == PHASE_ASKED && api_forward_fanout_done(req))
        return read_answers(req, w, refs, is_wait, result);
    return false;
}
