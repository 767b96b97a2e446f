/* libFuzzer harness for api_decode_object_batch (api/decode.c), the decoder of
 * POST /v1/objects/batch, and through it api_value_to_buf (api/values.c: JSON values and
 * {"$bytes": base64, "content_type"} values) and the runtime's base64 and buffers.
 *
 * Input: a request body, parsed as the handlers parse it (api_decode_body),
 * decoded, and freed as api/objects.c does (api_free_bufs, then
 * the JSON). Invariants checked:
 *   OK   1 <= n <= API_OBJECTS_BATCH_MAX, n is the size of "objects"; every buffer has one
 *        reference, a content type, and a NUL after its bytes. Each buffer read back the
 *        way POST /v1/objects/get answers (api_value_put_in) gives the value again: a plain
 *        JSON value comes back equal (or as $bytes of its compact dump when it cannot be
 *        re-parsed), a $bytes value comes back as bytes equal to the decoded input.
 *   BAD  *bufs is NULL and *n is 0; the reason is a non-empty C string in the 256-byte
 *        handler buffer, and the 400 problem built from it dumps and parses back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/decode.h"
#include "api/values.h"
#include "fuzz_common.h"
#include "runtime/base64.h"

/* Checks that buf read back (as a batch get answers) matches the value it was made from. */
static void check_read_back(json_t *value, const rt_buf *buf)
{
    json_t *entry = json_object();
    FUZZ_CHECK(api_value_put_in(entry, buf) == 0);
    FUZZ_CHECK(json_is_string(json_object_get(entry, "content_type")));
    json_t *v = json_object_get(entry, "value");
    json_t *b64 = json_object_get(entry, "$bytes");
    FUZZ_CHECK((v != NULL) != (b64 != NULL));
    if (b64) {
        size_t len = json_string_length(b64);
        char *bytes = malloc(rt_base64_decoded_max(len));
        FUZZ_CHECK(bytes != NULL);
        long n = rt_base64_decode(json_string_value(b64), len, bytes);
        FUZZ_CHECK(n >= 0 && (size_t)n == buf->size);
        FUZZ_CHECK(buf->size == 0 || memcmp(bytes, buf->data, buf->size) == 0);
        free(bytes);
    }
    int is_bytes = json_is_object(value) && json_object_get(value, "$bytes");
    if (!is_bytes) {
        FUZZ_CHECK(strcmp(buf->content_type, "application/json") == 0);
        if (v)
            FUZZ_CHECK(json_equal(v, value));
    }
    /* The whole answer entry must serialise. */
    char *text = json_dumps(entry, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    free(text);
    json_decref(entry);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t error;
    json_t *body = api_decode_body((const char *)data, size, &error);
    if (!body)
        return 0;
    rt_buf **bufs = (rt_buf **)(uintptr_t)1; /* must be overwritten */
    size_t n = 12345;
    char err[256];
    memset(err, 'X', sizeof(err));
    int d = api_decode_object_batch(body, &bufs, &n, err, sizeof(err));
    if (d == API_DECODE_OK) {
        json_t *objects = json_object_get(body, "objects");
        FUZZ_CHECK(json_is_array(objects) && json_array_size(objects) == n);
        FUZZ_CHECK(n >= 1 && n <= API_OBJECTS_BATCH_MAX && bufs != NULL);
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(bufs[i] != NULL);
            FUZZ_CHECK(bufs[i]->refs == 1);
            FUZZ_CHECK(bufs[i]->content_type != NULL);
            FUZZ_CHECK(bufs[i]->data[bufs[i]->size] == '\0');
            check_read_back(json_array_get(objects, i), bufs[i]);
        }
    } else {
        FUZZ_CHECK(d == API_DECODE_BAD || d == API_DECODE_NOMEM);
        FUZZ_CHECK(bufs == NULL && n == 0);
        if (d == API_DECODE_BAD)
            fuzz_check_reason(err, sizeof(err));
    }
    api_free_bufs(bufs, n);
    json_decref(body);
    return 0;
}
