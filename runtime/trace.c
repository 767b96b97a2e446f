/* W3C traceparent parsing and rayd's child span (see trace.h). */
#include "runtime/trace.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

/* n lower-case hex digits at s, not all zero when nonzero is set. */
static bool hex_run(const char *s, size_t n, bool nonzero)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        any |= c != '0';
    }
    return any || !nonzero;
}

bool rt_traceparent_child(const char *given, char out[RT_TRACEPARENT_SIZE])
{
    out[0] = '\0';
    if (!given)
        return false;
    size_t n = strlen(given);
    /* version-trace_id-parent_id-flags; a later version may append "-..." */
    if (n < 55 || given[2] != '-' || given[35] != '-' || given[52] != '-')
        return false;
    if (!hex_run(given, 2, false) || strncmp(given, "ff", 2) == 0)
        return false;
    if (strncmp(given, "00", 2) == 0 ? n != 55 : (n > 55 && given[55] != '-'))
        return false;
    if (!hex_run(given + 3, 32, true) || !hex_run(given + 36, 16, true) ||
        !hex_run(given + 53, 2, false))
        return false;
    uint64_t span = 0;
    while (span == 0) {
        if (getrandom(&span, sizeof(span), 0) != (ssize_t)sizeof(span))
            return false;
    }
    snprintf(out, RT_TRACEPARENT_SIZE, "00-%.32s-%016llx-%.2s", given + 3,
             (unsigned long long)span, given + 53);
    return true;
}
