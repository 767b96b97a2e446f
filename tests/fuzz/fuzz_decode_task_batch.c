/* libFuzzer harness for api_decode_task_batch (api/decode.c), the decoder of
 * POST /v1/tasks/batch.
 *
 * Input: a request body, parsed as the handlers parse it (api_decode_body),
 * decoded, and freed as api/tasks.c does (free(specs), then the
 * JSON). Invariants checked:
 *   OK   1 <= n <= API_TASKS_BATCH_MAX and n is the size of "tasks"; every spec is what
 *        api_decode_task makes of that element (same fields, same borrowed pointers).
 *   BAD  *specs is NULL and *n is 0; the reason is a non-empty C string in the 256-byte
 *        handler buffer, and the 400 problem built from it dumps and parses back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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
    rt_task_spec *specs = (rt_task_spec *)(uintptr_t)1; /* must be overwritten */
    size_t n = 12345;
    char err[256];
    memset(err, 'X', sizeof(err));
    int d = api_decode_task_batch(body, &specs, &n, err, sizeof(err));
    if (d == API_DECODE_OK) {
        json_t *list = json_object_get(body, "tasks");
        FUZZ_CHECK(json_is_array(list) && json_array_size(list) == n);
        FUZZ_CHECK(n >= 1 && n <= API_TASKS_BATCH_MAX && specs != NULL);
        for (size_t i = 0; i < n; i++) {
            rt_task_spec one;
            char why[256];
            FUZZ_CHECK(api_decode_task(json_array_get(list, i), &one, why, sizeof(why)) ==
                       API_DECODE_OK);
            FUZZ_CHECK(specs[i].function == one.function && specs[i].args == one.args &&
                       specs[i].kwargs == one.kwargs && specs[i].name == one.name);
            FUZZ_CHECK(specs[i].num_returns == one.num_returns &&
                       specs[i].max_retries == one.max_retries &&
                       specs[i].retry_exceptions == one.retry_exceptions);
            FUZZ_CHECK(specs[i].timeout == one.timeout);
            FUZZ_CHECK(specs[i].num_returns >= 1 &&
                       specs[i].num_returns <= RT_TASK_NUM_RETURNS_MAX);
        }
    } else {
        FUZZ_CHECK(d == API_DECODE_BAD || d == API_DECODE_NOMEM);
        FUZZ_CHECK(specs == NULL && n == 0);
        if (d == API_DECODE_BAD)
            fuzz_check_reason(err, sizeof(err));
    }
    free(specs);
    json_decref(body);
    return 0;
}
