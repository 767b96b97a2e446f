/* POST /v1/objects/free: frees many objects at once (Ray's ray.internal.free), answering
 * which refs were freed, which were already gone and which never existed. Kept apart from
 * api/objects.c, which serves one object at a time. */
#include <stdio.h>
#include <string.h>

#include "api/decode.h"
#include "api/handlers.h"
#include "api/problem.h"

/* Checks the body: {"refs": [ref, ...]} with at most API_REFS_MAX refs. Returns the refs
 * array (borrowed from body) or NULL after writing why into err. */
static json_t *free_refs(json_t *body, char *err, size_t err_size)
{
    static const char *const KEYS[] = {"refs", NULL};
    if (!json_is_object(body)) {
        snprintf(err, err_size, "the body must be a JSON object");
        return NULL;
    }
    if (api_decode_only_keys(body, KEYS, "the body", err, err_size))
        return NULL;
    json_t *refs = json_object_get(body, "refs");
    if (!json_is_array(refs) || json_array_size(refs) > API_REFS_MAX) {
        snprintf(err, err_size, "refs must be a list of at most %d refs", API_REFS_MAX);
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(refs); i++) {
        json_t *r = json_array_get(refs, i);
        if (!json_is_string(r) || !rt_ref_valid(json_string_value(r))) {
            snprintf(err, err_size,
                     "refs[%zu] is not a ref (1 to 64 characters of [A-Za-z0-9_-])", i);
            return NULL;
        }
    }
    return refs;
}

enum MHD_Result api_objects_free(api_request *req)
{
    if (api_body_json(req) != 0)
        return MHD_YES;
    char err[256];
    json_t *refs = free_refs(req->json, err, sizeof(err));
    if (!refs)
        return api_problem(req, 400, "BadRequest", err, NULL);
    json_t *freed = json_array(), *gone = json_array(), *unknown = json_array();
    json_t *foreign = req->ctx->cluster ? json_array() : NULL;
    for (size_t i = 0; i < json_array_size(refs); i++) {
        json_t *item = json_array_get(refs, i);
        const char *ref = json_string_value(item);
        if (req->ctx->cluster) {
            char tag[RT_NODE_TAG_SIZE], url[RT_CLUSTER_URL_MAX];
            if (rt_cluster_owner(req->ctx->cluster, ref, tag, url, sizeof(url)) !=
                RT_OWNER_SELF) {
                rt_store_drop_copy(req->ctx->store, ref); /* no copy outlives a free */
                json_array_append(foreign, item);
                continue;
            }
        }
        /* Copies other nodes hold of a freed object die by their LRU (a DELETE of one
         * object tells them at once). */
        rt_status st = rt_store_delete(req->ctx->store, ref);
        json_array_append(st == RT_OK ? freed : st == RT_ELOST ? gone : unknown, item);
    }
    json_t *answer = json_pack("{s:o,s:o,s:o}", "freed", freed, "gone", gone, "unknown", unknown);
    if (answer && foreign)
        json_object_set_new(answer, "foreign", foreign);
    else
        json_decref(foreign);
    return api_reply_json(req, 200, answer);
}
