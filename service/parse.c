/* Strict parsers for configuration values. */
#include "service/parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Reads a plain decimal number (digits with at most one '.'), no sign, no exponent. */
static int read_decimal(const char *text, double *value, const char **rest)
{
    const char *p = text;
    int digits = 0, dots = 0;
    while (isdigit((unsigned char)*p) || *p == '.') {
        if (*p == '.')
            dots++;
        else
            digits++;
        p++;
    }
    if (digits == 0 || dots > 1 || p - text > 32)
        return -1;
    char tmp[40];
    memcpy(tmp, text, (size_t)(p - text));
    tmp[p - text] = '\0';
    errno = 0;
    *value = strtod(tmp, NULL);
    if (errno || !isfinite(*value))
        return -1;
    *rest = p;
    return 0;
}

int svc_parse_size(const char *text, size_t *out)
{
    double v;
    const char *unit;
    if (!text || read_decimal(text, &v, &unit) != 0)
        return -1;
    double mult = 1;
    if (*unit) {
        switch (toupper((unsigned char)*unit)) {
        case 'B': mult = 1; break;
        case 'K': mult = 1024.0; break;
        case 'M': mult = 1024.0 * 1024; break;
        case 'G': mult = 1024.0 * 1024 * 1024; break;
        case 'T': mult = 1024.0 * 1024 * 1024 * 1024; break;
        default: return -1;
        }
        const char *suffix = unit + 1;
        if (toupper((unsigned char)*unit) != 'B' && *suffix &&
            strcasecmp(suffix, "B") != 0 && strcasecmp(suffix, "iB") != 0)
            return -1;
        if (toupper((unsigned char)*unit) == 'B' && *suffix)
            return -1;
    }
    double bytes = v * mult;
    if (bytes < 1 || bytes > 9.0e18)
        return -1;
    *out = (size_t)bytes;
    return 0;
}

int svc_parse_duration(const char *text, double *out)
{
    double v;
    const char *unit;
    if (!text || read_decimal(text, &v, &unit) != 0)
        return -1;
    if (*unit == '\0' || strcmp(unit, "s") == 0)
        *out = v;
    else if (strcmp(unit, "ms") == 0)
        *out = v / 1000.0;
    else if (strcmp(unit, "m") == 0)
        *out = v * 60.0;
    else if (strcmp(unit, "h") == 0)
        *out = v * 3600.0;
    else
        return -1;
    return *out > 1e9 ? -1 : 0;
}

int svc_parse_uint(const char *text, unsigned long min, unsigned long max, unsigned long *out)
{
    if (!text || !*text || strlen(text) > 20)
        return -1;
    for (const char *p = text; *p; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    errno = 0;
    unsigned long v = strtoul(text, NULL, 10);
    if (errno || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}
