/* libFuzzer harness for api_decode_call (api/decode.c), the decoder of
 * POST /v1/actors/{actor_id}/methods/{method}.
 *
 * Input: a request body. As in api/actors.c, an empty body means no JSON at all (the
 * decoder gets NULL); otherwise it is parsed with api_decode_body, and a
 * body that does not parse is answered before the decoder. Freed as the handler does (args
 * and kwargs are borrowed, so only the JSON). Invariants checked:
 *   OK   args NULL or an array and kwargs NULL or an object, each the body's member; a NULL
 *        body gives both NULL.
 *   BAD  args and kwargs are NULL or the body's members; the reason is a non-empty C string
 *        in the 256-byte handler buffer, and the 400 problem built from it round-trips. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api/decode.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = NULL;
    if (size > 0) {
        json_error_t error;
        body = api_decode_body((const char *)data, size, &error);
        if (!body)
            return 0;
    }
    json_t *args = (json_t *)(uintptr_t)1, *kwargs = (json_t *)(uintptr_t)1;
    double result_ttl;
    char err[256];
    memset(err, 'X', sizeof(err));
    int d = api_decode_call(body, &args, &kwargs, &result_ttl, err, sizeof(err));
    if (d == API_DECODE_OK) {
        if (!body)
            FUZZ_CHECK(!args && !kwargs);
        FUZZ_CHECK(!args || (json_is_array(args) && args == json_object_get(body, "args")));
        FUZZ_CHECK(!kwargs ||
                   (json_is_object(kwargs) && kwargs == json_object_get(body, "kwargs")));
    } else {
        FUZZ_CHECK(d == API_DECODE_BAD);
        FUZZ_CHECK(body != NULL);
        FUZZ_CHECK(!args || args == json_object_get(body, "args"));
        FUZZ_CHECK(!kwargs || kwargs == json_object_get(body, "kwargs"));
        fuzz_check_reason(err, sizeof(err));
    }
    json_decref(body);
    return 0;
}
