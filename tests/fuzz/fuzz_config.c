/* libFuzzer harness for the configuration value parsers (service/parse.c): svc_parse_size,
 * svc_parse_duration and svc_parse_uint, as service/config.c calls them for flags and
 * RAYD_* variables.
 *
 * Input: the value as a C string (argv and the environment carry no NUL; bytes after one
 * are dropped). Every parser sees it; svc_parse_uint with each (min, max) the settings
 * table uses and a few edge pairs. Invariants checked:
 *   size      success: 1 <= bytes <= 9e18, the text starts with a digit or '.', and the
 *             plain-digit form (no unit) equals its decimal value when it fits 2^53.
 *   duration  success: a finite number of seconds in [0, 1e9]; the text starts with a
 *             digit or '.'.
 *   uint      success: min <= value <= max, the text is only digits, and printing the
 *             value gives the text without its leading zeros.
 *   failure   size and uint leave the output untouched (duration may have written it:
 *             its header promises nothing on failure, and config.c ignores it). */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "service/parse.h"

static const unsigned long BOUNDS[][2] = {
    {0, 65535},        {2, 256},    {1, 1000000}, {1, 1024},     {1, 100000000},
    {1, 10000000},     {0, 0},      {5, 5},       {0, ULONG_MAX}, {ULONG_MAX, ULONG_MAX},
    {10, 1},           /* empty range: nothing parses */
};

static void check_size(const char *text)
{
    size_t out = 77;
    if (svc_parse_size(text, &out) != 0) {
        FUZZ_CHECK(out == 77);
        return;
    }
    FUZZ_CHECK(out >= 1 && (double)out <= 9.0e18);
    FUZZ_CHECK(isdigit((unsigned char)text[0]) || text[0] == '.');
    size_t n = strlen(text);
    if (n <= 15 && strspn(text, "0123456789") == n)
        FUZZ_CHECK(out == (size_t)strtoull(text, NULL, 10));
}

static void check_duration(const char *text)
{
    double out = -77;
    if (svc_parse_duration(text, &out) != 0)
        return;
    FUZZ_CHECK(isfinite(out) && out >= 0 && out <= 1e9);
    FUZZ_CHECK(isdigit((unsigned char)text[0]) || text[0] == '.');
}

static void check_uint(const char *text, unsigned long min, unsigned long max)
{
    unsigned long out = 77;
    if (svc_parse_uint(text, min, max, &out) != 0) {
        FUZZ_CHECK(out == 77);
        return;
    }
    FUZZ_CHECK(min <= out && out <= max);
    size_t n = strlen(text);
    FUZZ_CHECK(n > 0 && strspn(text, "0123456789") == n);
    const char *digits = text;
    while (digits[0] == '0' && digits[1])
        digits++;
    char printed[32];
    snprintf(printed, sizeof(printed), "%lu", out);
    FUZZ_CHECK(strcmp(printed, digits) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, strnlen((const char *)data, size));
    check_size(text);
    check_duration(text);
    for (size_t i = 0; i < sizeof(BOUNDS) / sizeof(BOUNDS[0]); i++)
        check_uint(text, BOUNDS[i][0], BOUNDS[i][1]);
    /* NULL is refused, never dereferenced. */
    size_t s;
    double d;
    unsigned long u;
    FUZZ_CHECK(svc_parse_size(NULL, &s) != 0);
    FUZZ_CHECK(svc_parse_duration(NULL, &d) != 0);
    FUZZ_CHECK(svc_parse_uint(NULL, 0, 1, &u) != 0);
    free(text);
    return 0;
}
