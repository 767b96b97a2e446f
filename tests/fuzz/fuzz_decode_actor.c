/* libFuzzer harness for api_decode_actor (api/decode.c), the decoder of POST /v1/actors.
 *
 * Input: a request body, parsed as the handlers parse it (api_decode_body),
 * decoded, and freed as api/actors.c does (the spec only borrows,
 * so only the JSON is freed). Invariants checked:
 *   OK   class_name is the body's "class" string; args NULL or an array and kwargs NULL or
 *        an object, borrowed from the body; name NULL or the body's "name" string;
 *        get_if_exists true only when the body says true; max_restarts in -1..1000000;
 *        max_pending_calls -1 or 1..100000000. The 409 answer's extra member
 *        json_pack("{s:s}", "name", name), as the handler builds it, succeeds when named.
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
    rt_actor_spec spec;
    bool detached;
    char err[256];
    memset(err, 'X', sizeof(err));
    int d = api_decode_actor(body, &spec, &detached, err, sizeof(err));
    if (d == API_DECODE_BAD) {
        fuzz_check_reason(err, sizeof(err));
    } else if (d == API_DECODE_OK) {
        FUZZ_CHECK(spec.class_name != NULL &&
                   spec.class_name == json_string_value(json_object_get(body, "class")));
        FUZZ_CHECK(!spec.args || (json_is_array(spec.args) &&
                                  spec.args == json_object_get(body, "args")));
        FUZZ_CHECK(!spec.kwargs || (json_is_object(spec.kwargs) &&
                                    spec.kwargs == json_object_get(body, "kwargs")));
        FUZZ_CHECK(!spec.name || spec.name == json_string_value(json_object_get(body, "name")));
        FUZZ_CHECK(!spec.get_if_exists || json_is_true(json_object_get(body, "get_if_exists")));
        FUZZ_CHECK(spec.max_restarts >= -1 && spec.max_restarts <= 1000000);
        FUZZ_CHECK(spec.max_pending_calls == -1 ||
                   (spec.max_pending_calls >= 1 && spec.max_pending_calls <= 100000000));
        if (spec.name) {
            json_t *extra = json_pack("{s:s}", "name", spec.name);
            FUZZ_CHECK(extra != NULL);
            json_t *p = api_problem_new(409, "Conflict", "taken");
            json_object_update_missing(p, extra);
            json_decref(extra);
            json_decref(fuzz_check_problem_json(p, 409));
            json_decref(p);
        }
    } else {
        FUZZ_CHECK(d == API_DECODE_NOMEM);
    }
    json_decref(body);
    return 0;
}
