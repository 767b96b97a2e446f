/* A quick reader for POST /v1/wait and POST /v1/objects/get bodies of the usual shape.
 * The general path parses the body into a jansson tree: for 10,000 refs, 10,000 string
 * values, about 3,800 instructions per ref (callgrind, BENCHMARKS.md 2026-12-06 "e: the
 * batch path"), where a ref needs only its characters.
 *
 * It reads an object whose member "refs" is a list of strings of printable ASCII without
 * escapes; its other members are parsed by jansson (each at most 4,000 bytes), keys
 * written without escapes, each member once. The result is checked as api_decode_wait
 * checks a parsed body (api_decode_wait_parts). Anything else, valid or not, and any
 * body those checks refuse, it leaves to the general path (api_body_json,
 * api_decode_wait), which answers as before: bad input gets the same problem+json either
 * way. */
#ifndef RAYD_API_WAIT_SCAN_H
#define RAYD_API_WAIT_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "api/decode.h"

/* Reads body (len bytes). Returns 0 with *out filled (release it with
 * api_wait_request_release), or -1: not read (not of this shape, refused by the checks,
 * or out of memory): take the general path. */
int api_wait_scan(const char *body, size_t len, bool is_wait, api_wait_request *out);

#endif
