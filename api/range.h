/* HTTP Range header parsing (RFC 9110 section 14) for object reads. Only a single byte
 * range is served; anything else is ignored, as the RFC allows. Thread-safe: pure. */
#ifndef RAYD_API_RANGE_H
#define RAYD_API_RANGE_H

#include <stddef.h>

typedef enum api_range_result {
    API_RANGE_NONE = 0,         /* no usable Range: serve the whole object (200) */
    API_RANGE_OK = 1,           /* serve [*start, *start + *len) (206) */
    API_RANGE_UNSATISFIABLE = 2 /* a valid range outside the object (416) */
} api_range_result;

/* Parses header (may be NULL) against an object of size bytes. */
api_range_result api_range_parse(const char *header, size_t size, size_t *start, size_t *len);

#endif
