/* Ref lists written as JSON text (see ref_lists.h). Each answer is measured first and
 * written into one allocation of that size. */
#include "api/ref_lists.h"

#include <stdlib.h>
#include <string.h>

/* Appends s (no NUL) at *at. */
static void put(char **at, const char *s, size_t n)
{
    memcpy(*at, s, n);
    *at += n;
}

#define PUT_LITERAL(at, lit) put(at, lit, sizeof(lit) - 1)

/* Appends "ref". */
static void put_ref(char **at, const char *ref, size_t n)
{
    *(*at)++ = '"';
    put(at, ref, n);
    *(*at)++ = '"';
}

char *api_task_receipts_text(const char (*ids)[RT_REF_SIZE], const char (*refs)[RT_REF_SIZE],
                             const rt_task_spec *specs, size_t n, size_t *len)
{
    static const char HEAD[] = "{\"tasks\":[", TAIL[] = "]}";
    static const char ID[] = "{\"task_id\":", ONE[] = ",\"ref\":", MANY[] = ",\"refs\":[";
    /* each ref or id: its characters, two quotes and a comma; each receipt: its keys and
     * braces (the longer form) */
    size_t size = sizeof(HEAD) + sizeof(TAIL);
    for (size_t i = 0, r = 0; i < n; r += specs[i].num_returns, i++) {
        size += sizeof(ID) + sizeof(MANY) + 3 + strnlen(ids[i], RT_REF_MAX) + 3;
        for (unsigned k = 0; k < specs[i].num_returns; k++)
            size += strnlen(refs[r + k], RT_REF_MAX) + 3;
    }
    char *text = malloc(size);
    if (!text)
        return NULL;
    char *at = text;
    PUT_LITERAL(&at, HEAD);
    for (size_t i = 0, r = 0; i < n; r += specs[i].num_returns, i++) {
        if (i > 0)
            *at++ = ',';
        PUT_LITERAL(&at, ID);
        put_ref(&at, ids[i], strnlen(ids[i], RT_REF_MAX));
        if (specs[i].num_returns == 1) {
            PUT_LITERAL(&at, ONE);
            put_ref(&at, refs[r], strnlen(refs[r], RT_REF_MAX));
        } else {
            PUT_LITERAL(&at, MANY);
            for (unsigned k = 0; k < specs[i].num_returns; k++) {
                if (k > 0)
                    *at++ = ',';
                put_ref(&at, refs[r + k], strnlen(refs[r + k], RT_REF_MAX));
            }
            *at++ = ']';
        }
        *at++ = '}';
    }
    PUT_LITERAL(&at, TAIL);
    *at = '\0';
    *len = (size_t)(at - text);
    return text;
}

/* Appends "key":[refs i with ready[i] == which]. */
static void put_list(char **at, const char *key, size_t key_len, const char *const *refs,
                     const size_t *lens, const bool *ready, size_t n, bool which)
{
    put_ref(at, key, key_len);
    PUT_LITERAL(at, ":[");
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (ready[i] != which)
            continue;
        if (!first)
            *(*at)++ = ',';
        first = false;
        put_ref(at, refs[i], lens[i]);
    }
    *(*at)++ = ']';
}

char *api_wait_answer_text(const char *const *refs, const bool *ready, size_t n, size_t *len)
{
    static const char READY[] = "ready", NOT_READY[] = "not_ready";
    size_t *lens = malloc((n + 1) * sizeof(*lens));
    if (!lens)
        return NULL;
    size_t size = sizeof("{\"\":[],\"\":[]}") + sizeof(READY) + sizeof(NOT_READY);
    for (size_t i = 0; i < n; i++) {
        lens[i] = strnlen(refs[i], RT_REF_MAX);
        size += lens[i] + 3;
    }
    char *text = malloc(size);
    if (!text) {
        free(lens);
        return NULL;
    }
    char *at = text;
    *at++ = '{';
    put_list(&at, READY, sizeof(READY) - 1, refs, lens, ready, n, true);
    *at++ = ',';
    put_list(&at, NOT_READY, sizeof(NOT_READY) - 1, refs, lens, ready, n, false);
    *at++ = '}';
    *at = '\0';
    *len = (size_t)(at - text);
    free(lens);
    return text;
}
