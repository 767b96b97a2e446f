/* libFuzzer harness for api_range_parse (api/range.c), the Range header of object reads.
 *
 * Input: "SIZE\nHEADER": the object size as decimal digits on the first line (wrapping
 * modulo 2^64, so every size_t is reachable; no digits means 0), then the header value as a
 * C string (libmicrohttpd never hands over bytes after a NUL). Without a newline the whole
 * input is the header and the size is 256. Invariants checked:
 *   OK             len > 0, start < size, start + len <= size (without overflow); a suffix
 *                  range "bytes=-N" ends at the last byte.
 *   UNSATISFIABLE  only "bytes=" ranges are refused.
 *   any            the result is one of the three values; the same header against size 0
 *                  is never OK; a NULL header is NONE. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/range.h"
#include "fuzz_common.h"

static void check(const char *header, size_t size)
{
    size_t start = (size_t)-7, len = (size_t)-7;
    api_range_result r = api_range_parse(header, size, &start, &len);
    FUZZ_CHECK(r == API_RANGE_NONE || r == API_RANGE_OK || r == API_RANGE_UNSATISFIABLE);
    if (r == API_RANGE_OK) {
        FUZZ_CHECK(len > 0);
        FUZZ_CHECK(start < size);
        FUZZ_CHECK(len <= size - start);
        const char *eq = strchr(header, '=');
        FUZZ_CHECK(eq != NULL);
        const char *p = eq + 1;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '-')
            FUZZ_CHECK(start + len == size);
    }
    if (r != API_RANGE_NONE) {
        const char *p = header;
        while (*p == ' ' || *p == '\t')
            p++;
        FUZZ_CHECK(strncasecmp(p, "bytes", 5) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *input = fuzz_strndup(data, size);
    size_t object_size = 256;
    const char *header = input;
    char *nl = memchr(input, '\n', size);
    if (nl) {
        object_size = 0;
        for (const char *p = input; p < nl; p++)
            if (*p >= '0' && *p <= '9')
                object_size = object_size * 10 + (size_t)(*p - '0'); /* wraps on purpose */
        header = nl + 1;
    }
    /* The header in an exact-size allocation, so reading past its NUL is caught. */
    char *h = fuzz_strndup((const uint8_t *)header, strlen(header));
    check(h, object_size);
    check(h, 0);
    check(h, (size_t)-1);
    size_t start, len;
    FUZZ_CHECK(api_range_parse(NULL, object_size, &start, &len) == API_RANGE_NONE);
    free(h);
    free(input);
    return 0;
}
