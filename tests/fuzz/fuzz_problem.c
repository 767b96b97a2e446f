/* libFuzzer harness for api/problem.c: api_problem_new with hostile titles and details, and
 * api_problem_from_error over an rt_error cause chain (runtime/error.c) built from the input.
 *
 * Input (structured, read front to back; missing bytes read as zero):
 *   u16 status; chunk title; chunk detail        -> api_problem_new
 *   u8 flags (bit 0: a ref follows; bits 1-7: errors in the chain, 1..128)
 *   [chunk ref]
 *   per error, innermost first: u8 kind (any value, also out of range), chunk message (any
 *   bytes: invalid UTF-8, NULs cut it as in C), chunk fields (parsed with json_loadb like a
 *   remote endpoint's problem body; anything but an object means none)
 *   u16 repeat: the outermost error is wrapped this many more times (long chains)
 * A chunk is a length (one byte, two for messages and fields) and that many bytes.
 *
 * Invariants checked: json_dumps succeeds and json_loads parses the text back to an equal
 * object; every level of the chain is a problem with the kind's name as title, the kind's
 * status (410 ObjectLost, else 424), a string detail that is the message whenever the
 * message is valid UTF-8, and a "cause" object down to the innermost error (or at least
 * MIN_LEVELS levels, should rayd ever cut long chains short); "ref" is the given ref when it
 * is valid UTF-8. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/problem.h"
#include "fuzz_common.h"
#include "runtime/error.h"

/* Longest extra wrapping: past 2048 levels the body is nested deeper than jansson's parser
 * (and most clients) accept, which is a finding (see regressions/fuzz_problem/). Build with
 * -DMAX_REPEAT=1900 to fuzz everything else while that stands. */
/* Levels every problem must show before a renderer may cut the chain short. */
#define MIN_LEVELS 32

#ifndef MAX_REPEAT
#define MAX_REPEAT 4096
#endif

static char *take_string(fuzz_reader *r, size_t max)
{
    size_t len;
    const uint8_t *at = fuzz_chunk(r, max, &len);
    return fuzz_strndup(at, len);
}

static void check_new(fuzz_reader *r)
{
    unsigned status = fuzz_u16(r);
    char *title = take_string(r, 255);
    char *detail = take_string(r, 255);
    int null_detail = detail[0] == '\0' && (status & 1); /* NULL detail: title stands in */
    json_t *p = api_problem_new(status, title, null_detail ? NULL : detail);
    json_t *back = fuzz_check_problem_json(p, status);
    const char *want = null_detail ? title : detail;
    if (fuzz_utf8_ok(want))
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(back, "detail")), want) == 0);
    if (fuzz_utf8_ok(title))
        FUZZ_CHECK(json_is_string(json_object_get(back, "title")) &&
                   strcmp(json_string_value(json_object_get(back, "title")), title) == 0);
    json_decref(back);
    json_decref(p);
    free(title);
    free(detail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader r = {data, size};
    check_new(&r);

    unsigned flags = fuzz_u8(&r);
    char *ref = flags & 1 ? take_string(&r, 255) : NULL;
    size_t count = 1 + (flags >> 1);
    rt_error *err = NULL;
    rt_error_kind *kinds = calloc(count + MAX_REPEAT, sizeof(*kinds));
    char **messages = calloc(count, sizeof(*messages));
    FUZZ_CHECK(kinds && messages);
    for (size_t i = 0; i < count; i++) { /* innermost first */
        rt_error_kind kind = (rt_error_kind)(fuzz_u8(&r) % 8); /* 5..7 are out of range */
        messages[i] = take_string(&r, 4096);
        size_t flen;
        const uint8_t *f = fuzz_chunk(&r, 4096, &flen);
        json_t *fields = flen ? json_loadb((const char *)f, flen, JSON_DECODE_ANY, NULL) : NULL;
        rt_error *e = rt_error_new(kind, messages[i], fields, err);
        FUZZ_CHECK(e != NULL);
        json_decref(fields);
        rt_error_decref(err); /* e holds its own reference to its cause */
        err = e;
        kinds[i] = kind;
    }
    size_t repeat = fuzz_u16(&r) % (MAX_REPEAT + 1);
    for (size_t i = 0; i < repeat; i++) {
        rt_error *e = rt_error_new(RT_ERR_TASK_ERROR, "wrapped", NULL, err);
        FUZZ_CHECK(e != NULL);
        rt_error_decref(err);
        err = e;
        kinds[count + i] = RT_ERR_TASK_ERROR;
    }
    size_t depth = count + repeat;

    json_t *p = api_problem_from_error(err, ref);
    FUZZ_CHECK(p != NULL);
    rt_error_kind outer = rt_error_kind_of(err);
    json_t *back = fuzz_check_problem_json(p, api_problem_status_of_kind(outer));
    if (ref && fuzz_utf8_ok(ref))
        FUZZ_CHECK(json_is_string(json_object_get(back, "ref")) &&
                   strcmp(json_string_value(json_object_get(back, "ref")), ref) == 0);
    json_t *level = back;
    for (size_t k = depth; k-- > 0;) { /* outermost (index depth-1) first */
        FUZZ_CHECK(json_is_object(level));
        rt_error_kind kind = kinds[k];
        json_t *title = json_object_get(level, "title");
        FUZZ_CHECK(json_is_string(title) &&
                   strcmp(json_string_value(title), rt_error_kind_name(kind)) == 0);
        json_t *st = json_object_get(level, "status");
        FUZZ_CHECK(json_is_integer(st) &&
                   json_integer_value(st) == (json_int_t)api_problem_status_of_kind(kind));
        json_t *detail = json_object_get(level, "detail");
        FUZZ_CHECK(json_is_string(detail));
        const char *msg = k < count ? messages[k] : "wrapped";
        if (fuzz_utf8_ok(msg))
            FUZZ_CHECK(strcmp(json_string_value(detail), msg) == 0);
        if (k > 0) {
            level = json_object_get(level, "cause");
            /* A renderer may cut a very long chain short, but not before MIN_LEVELS. */
            if (!json_is_object(level) && depth - k >= MIN_LEVELS)
                break;
        }
    }
    json_decref(back);
    json_decref(p);
    rt_error_decref(err);
    for (size_t i = 0; i < count; i++)
        free(messages[i]);
    free(messages);
    free(kinds);
    free(ref);
    return 0;
}
