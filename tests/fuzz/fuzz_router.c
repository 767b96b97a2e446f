/* libFuzzer harness for api/router.c (api_route_match): method + path matching, {name}
 * captures and the 405 Allow list, driven through the real route table.
 *
 * Input: "METHOD PATH" (split at the first space; without a space the whole input is a GET
 * path). The path is a C string as libmicrohttpd hands it over (bytes after a NUL are
 * dropped). Invariants checked:
 *   OK         the route's method is the method, and the route's pattern with each {name}
 *              replaced by its capture, in order, rebuilds the path exactly; every capture is
 *              non-empty, has no '/', and points into the path buffer.
 *   NO_METHOD  the Allow list (server's 64-byte buffer) is non-empty, NUL-terminated, and
 *              each method in it matches the same path with OK.
 *   NO_PATH    no method at all matches the path.
 * A 405 is repeated with an Allow buffer of every size from 0 to 24 bytes (exact-size
 * allocations) so that ASan sees any write past it; the outcome must not change. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/router.h"
#include "fuzz_common.h"

#define SERVER_ALLOW 64 /* sizeof(api_request.allow) */

static api_match_result match_copy(const char *method, const char *path, const api_route **route,
                                   const char *params[API_MAX_PARAMS], char **buf_out,
                                   char *allow, size_t allow_size)
{
    size_t n = strlen(path);
    char *buf = malloc(n + 1);
    if (!buf)
        abort();
    memcpy(buf, path, n + 1);
    api_match_result m = api_route_match(method, buf, route, params, allow, allow_size);
    if (buf_out)
        *buf_out = buf;
    else
        free(buf);
    return m;
}

/* Rebuilds the path from the pattern and the captures; checks the captures on the way. */
static void check_captures(const api_route *route, const char *path, const char *buf,
                           const char *const params[API_MAX_PARAMS])
{
    size_t plen = strlen(path);
    char *rebuilt = malloc(plen + 1);
    if (!rebuilt)
        abort();
    size_t o = 0;
    int k = 0;
    for (const char *p = route->pattern; *p;) {
        if (*p == '{') {
            FUZZ_CHECK(k < API_MAX_PARAMS);
            const char *cap = params[k++];
            FUZZ_CHECK(cap >= buf && cap <= buf + plen);
            size_t clen = strlen(cap);
            FUZZ_CHECK(clen > 0);
            FUZZ_CHECK(memchr(cap, '/', clen) == NULL);
            FUZZ_CHECK(o + clen <= plen);
            memcpy(rebuilt + o, cap, clen);
            o += clen;
            p = strchr(p, '}');
            FUZZ_CHECK(p != NULL);
            p++;
        } else {
            FUZZ_CHECK(o < plen);
            rebuilt[o++] = *p++;
        }
    }
    rebuilt[o] = '\0';
    FUZZ_CHECK(strcmp(rebuilt, path) == 0);
    free(rebuilt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *input = fuzz_strndup(data, size);
    const char *method = "GET", *path = input;
    char *space = strchr(input, ' ');
    if (space) {
        *space = '\0';
        method = input;
        path = space + 1;
    }

    const api_route *route = NULL;
    const char *params[API_MAX_PARAMS] = {0};
    char *allow = malloc(SERVER_ALLOW);
    char *buf = NULL;
    if (!allow)
        abort();
    memset(allow, 'X', SERVER_ALLOW);
    api_match_result m = match_copy(method, path, &route, params, &buf, allow, SERVER_ALLOW);

    const api_route *table;
    size_t nroutes = api_route_table(&table);
    switch (m) {
    case API_MATCH_OK:
        FUZZ_CHECK(route >= table && route < table + nroutes);
        FUZZ_CHECK(strcmp(route->method, method) == 0);
        check_captures(route, path, buf, params);
        break;
    case API_MATCH_NO_METHOD: {
        FUZZ_CHECK(route == NULL);
        FUZZ_CHECK(memchr(allow, '\0', SERVER_ALLOW) != NULL);
        FUZZ_CHECK(allow[0] != '\0');
        char list[SERVER_ALLOW];
        memcpy(list, allow, SERVER_ALLOW);
        for (char *save = NULL, *tok = strtok_r(list, ", ", &save); tok;
             tok = strtok_r(NULL, ", ", &save)) {
            const api_route *r2;
            const char *p2[API_MAX_PARAMS];
            char a2[SERVER_ALLOW];
            FUZZ_CHECK(strcmp(tok, method) != 0);
            FUZZ_CHECK(match_copy(tok, path, &r2, p2, NULL, a2, sizeof(a2)) == API_MATCH_OK);
        }
        break;
    }
    case API_MATCH_NO_PATH:
        FUZZ_CHECK(route == NULL);
        for (size_t i = 0; i < nroutes; i++) {
            int seen = 0; /* each distinct method of the table once */
            for (size_t j = 0; j < i && !seen; j++)
                seen = strcmp(table[j].method, table[i].method) == 0;
            if (seen)
                continue;
            const api_route *r2;
            const char *p2[API_MAX_PARAMS];
            char a2[SERVER_ALLOW];
            FUZZ_CHECK(match_copy(table[i].method, path, &r2, p2, NULL, a2, sizeof(a2)) ==
                       API_MATCH_NO_PATH);
        }
        break;
    default:
        FUZZ_CHECK(!"unknown api_match_result");
    }
    free(buf);

    /* Every small Allow buffer, down to none at all: never written past its end, and the
     * outcome does not depend on its size (only a 405 writes the list, so other outcomes
     * try the extremes). */
    for (size_t as = 0; as <= 24; as += m == API_MATCH_NO_METHOD ? 1 : 24) {
        char *small = as ? malloc(as) : NULL;
        if (as && !small)
            abort();
        if (as)
            memset(small, 'X', as);
        const api_route *r3;
        const char *p3[API_MAX_PARAMS];
        FUZZ_CHECK(match_copy(method, path, &r3, p3, NULL, small, as) == m);
        if (m == API_MATCH_NO_METHOD && as)
            FUZZ_CHECK(memchr(small, '\0', as) != NULL);
        free(small);
    }
    free(allow);
    free(input);
    return 0;
}
