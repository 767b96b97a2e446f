/* The budget for memory held by requests in flight: accounting, and what a parked request
 * is counted for. */
#include "api/budget.h"

#include "runtime/object_store.h"

bool api_budget_take(api_budget *b, size_t bytes)
{
    size_t used = __atomic_load_n(&b->used, __ATOMIC_RELAXED);
    do {
        if (b->limit && (bytes > b->limit || used > b->limit - bytes))
            return false;
    } while (!__atomic_compare_exchange_n(&b->used, &used, used + bytes, true, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    return true;
}

void api_budget_give(api_budget *b, size_t bytes)
{
    if (bytes)
        __atomic_sub_fetch(&b->used, bytes, __ATOMIC_RELEASE);
}

int api_budget_reserve(api_request *req, size_t total)
{
    if (total <= req->budget_held)
        return 0;
    if (!api_budget_take(&req->ctx->bodies, total - req->budget_held))
        return -1;
    req->budget_held = total;
    return 0;
}

void api_budget_release(api_request *req)
{
    api_budget_give(&req->ctx->bodies, req->budget_held);
    req->budget_held = 0;
}

void api_budget_count_refusal(api_request *req)
{
    __atomic_add_fetch(&req->ctx->bodies.refused, 1, __ATOMIC_RELAXED);
}

/* Per-node costs, from jansson 2.14's structures plus an allocator's rounding: a scalar is
 * one small block, a string two (the node and its text), an array its node and its table
 * of pointers, an object its node, its hash table and a block per member with the key. */
#define COST_SCALAR 32
#define COST_STRING 48
#define COST_ARRAY 64
#define COST_OBJECT 128
#define COST_MEMBER 64
/* Deeper than this, values are counted as scalars: the decoder refuses much deeper
 * documents anyway, and the walk must not recurse without bound. */
#define COST_DEPTH_MAX 64

static size_t json_cost_at(const json_t *v, int depth)
{
    if (!v)
        return 0;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return COST_STRING + json_string_length(v);
    case JSON_ARRAY: {
        size_t n = json_array_size(v), cost = COST_ARRAY + n * sizeof(void *);
        for (size_t i = 0; i < n; i++)
            cost += depth < COST_DEPTH_MAX ? json_cost_at(json_array_get(v, i), depth + 1)
                                           : COST_SCALAR;
        return cost;
    }
    case JSON_OBJECT: {
        size_t cost = COST_OBJECT;
        const char *key;
        size_t key_len;
        json_t *member;
        json_object_keylen_foreach((json_t *)v, key, key_len, member)
        {
            cost += COST_MEMBER + key_len;
            cost += depth < COST_DEPTH_MAX ? json_cost_at(member, depth + 1) : COST_SCALAR;
        }
        return cost;
    }
    default:
        return COST_SCALAR;
    }
}

size_t api_json_cost(const json_t *value)
{
    return json_cost_at(value, 0);
}

int api_budget_reserve_parked(api_request *req, size_t nwatch)
{
    if (!req->parked_cost) /* the parsed body does not change between rounds */
        req->parked_cost = api_json_cost(req->json) + 256;
    size_t body = req->body_cap + (req->raw_buf ? req->raw_buf->size : 0);
    /* the park (api/park.c: a header and one watcher per ref) and the handler's pointers */
    size_t park = 128 + nwatch * (sizeof(rt_watcher) + 2 * sizeof(void *));
    if (api_budget_reserve(req, body + req->parked_cost + park) == 0)
        return 0;
    api_budget_count_refusal(req);
    return -1;
}
