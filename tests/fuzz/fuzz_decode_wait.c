/* libFuzzer harness for api_decode_wait (api/decode.c), the decoder behind both
 * POST /v1/objects/get (is_wait false) and POST /v1/wait (is_wait true).
 *
 * Input: a request body. It is parsed as the handlers parse it (api_decode_body),
 * decoded both ways, and freed as api/waiting.c does
 * (api_wait_request_release, then the JSON). Invariants checked:
 *   OK   refs holds n valid refs, each the string at that index of the body's "refs" (the
 *        result borrows from the JSON); 1 <= num_returns <= max(n, 1); timeout is -1 or
 *        >= 0; a wait has no duplicate refs; get-only bodies never carry num_returns.
 *   BAD  the reason is a non-empty C string in the 256-byte handler buffer, and the 400
 *        problem built from it dumps and parses back. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api/decode.h"
#include "fuzz_common.h"
#include "runtime/ref.h"

static void decode_one(json_t *body, bool is_wait)
{
    api_wait_request req;
    char err[256];
    memset(err, 'X', sizeof(err));
    int d = api_decode_wait(body, is_wait, &req, err, sizeof(err));
    if (d == API_DECODE_BAD) {
        fuzz_check_reason(err, sizeof(err));
        return;
    }
    if (d == API_DECODE_NOMEM)
        return;
    FUZZ_CHECK(d == API_DECODE_OK);
    json_t *refs = json_object_get(body, "refs");
    FUZZ_CHECK(json_is_array(refs) && json_array_size(refs) == req.n);
    FUZZ_CHECK(req.refs != NULL);
    FUZZ_CHECK(req.n <= API_REFS_MAX);
    for (size_t i = 0; i < req.n; i++) {
        FUZZ_CHECK(rt_ref_valid(req.refs[i]));
        FUZZ_CHECK(req.refs[i] == json_string_value(json_array_get(refs, i)));
        if (is_wait)
            for (size_t j = 0; j < i; j++)
                FUZZ_CHECK(strcmp(req.refs[i], req.refs[j]) != 0);
    }
    FUZZ_CHECK(req.num_returns >= 1);
    FUZZ_CHECK(req.num_returns <= (req.n ? req.n : 1));
    FUZZ_CHECK(req.timeout == -1 || req.timeout >= 0);
    if (!is_wait)
        FUZZ_CHECK(json_object_get(body, "num_returns") == NULL);
    api_wait_request_release(&req);
    FUZZ_CHECK(req.refs == NULL);
    api_wait_request_release(&req); /* twice is harmless */
    api_wait_request_release(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t error;
    json_t *body = api_decode_body((const char *)data, size, &error);
    if (!body)
        return 0;
    decode_one(body, false);
    decode_one(body, true);
    json_decref(body);
    return 0;
}
