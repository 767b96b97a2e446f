/* Parsing of configuration values: sizes ("512M", "2G"), durations ("500ms", "30s", "1.5")
 * and bounded integers. Pure functions, so they can be fuzzed and tested alone. */
#ifndef RAYD_SERVICE_PARSE_H
#define RAYD_SERVICE_PARSE_H

#include <stddef.h>

/* A size in bytes: a number (decimals allowed) with an optional binary unit K, M, G, T
 * (also KB/KiB, ...; case-insensitive). Returns 0 and sets *out, -1 when malformed, zero,
 * or too large. */
int svc_parse_size(const char *text, size_t *out);

/* A duration in seconds: a number with an optional unit ms, s, m, h. Returns 0 and sets
 * *out (>= 0), -1 when malformed or negative. */
int svc_parse_duration(const char *text, double *out);

/* An integer in [min, max]. Returns 0 and sets *out, -1 otherwise. */
int svc_parse_uint(const char *text, unsigned long min, unsigned long max, unsigned long *out);

#endif
