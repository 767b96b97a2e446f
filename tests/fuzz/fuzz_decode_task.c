/* libFuzzer harness for api_decode_task (api/decode.c), the decoder of POST /v1/tasks.
 *
 * Input: a request body, parsed as the handlers parse it (api_decode_body),
 * decoded, and freed as api/tasks.c does (the spec only borrows
 * from the JSON, so only the JSON is freed). Invariants checked:
 *   OK   function is the body's "function" string; args is NULL or an array and kwargs
 *        NULL or an object, both borrowed from the body; 1 <= num_returns <=
 *        RT_TASK_NUM_RETURNS_MAX; max_retries is -1 (default) or 0..1000; timeout >= 0;
 *        name is NULL or the body's options.name string.
 *   BAD  the reason is a non-empty C string in the 256-byte handler buffer, and the 400
 *        problem built from it dumps and parses back. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api/decode.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t error;
    json_t *body = api_decode_body((const char *)data, size, &error);
    if (!body)
        return 0;
    rt_task_spec spec;
    char err[256];
    memset(err, 'X', sizeof(err));
    int d = api_decode_task(body, &spec, err, sizeof(err));
    if (d == API_DECODE_BAD) {
        fuzz_check_reason(err, sizeof(err));
    } else if (d == API_DECODE_OK) {
        FUZZ_CHECK(spec.function != NULL);
        FUZZ_CHECK(spec.function == json_string_value(json_object_get(body, "function")));
        FUZZ_CHECK(!spec.args || (json_is_array(spec.args) &&
                                  spec.args == json_object_get(body, "args")));
        FUZZ_CHECK(!spec.kwargs || (json_is_object(spec.kwargs) &&
                                    spec.kwargs == json_object_get(body, "kwargs")));
        FUZZ_CHECK(spec.num_returns >= 1 && spec.num_returns <= RT_TASK_NUM_RETURNS_MAX);
        FUZZ_CHECK(spec.max_retries == -1 ||
                   (spec.max_retries >= 0 && spec.max_retries <= 1000));
        FUZZ_CHECK(spec.timeout >= 0);
        json_t *options = json_object_get(body, "options");
        FUZZ_CHECK(!spec.name || spec.name == json_string_value(json_object_get(options, "name")));
        FUZZ_CHECK(spec.request_id == NULL);
    } else {
        FUZZ_CHECK(d == API_DECODE_NOMEM);
    }
    json_decref(body);
    return 0;
}
