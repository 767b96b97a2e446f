/* A quick parser for the plain JSON most request bodies are ({"function":"echo","args":[1]},
 * {"args":[1]}): see json_plain.c for what it takes. Thread-safe: pure. */
#ifndef RAYD_API_JSON_PLAIN_H
#define RAYD_API_JSON_PLAIN_H

#include <jansson.h>
#include <stddef.h>

/* The tree json_loadb(data, len, JSON_REJECT_DUPLICATES) would build, as a new reference;
 * or NULL when the text is not plain JSON or not valid (parse it with jansson then: its
 * answer, and its error message, stand). */
json_t *api_json_plain_parse(const char *data, size_t len);

#endif
