/* Values between JSON and the store: a JSON value is stored as compact application/json
 * bytes; {"$bytes": base64, "content_type": ...} carries binary data; reading back turns
 * JSON objects into their value and anything else into {"$bytes": ...}. Thread-safe. */
#ifndef RAYD_API_VALUES_H
#define RAYD_API_VALUES_H

#include <jansson.h>
#include <stddef.h>

#include "runtime/object_store.h"

/* Turns one JSON value into a new buffer (new reference). On failure returns NULL and
 * writes why into err (err_size bytes). */
rt_buf *api_value_to_buf(json_t *value, char *err, size_t err_size);

/* Adds the value of a READY object to entry: "value" (parsed JSON) for JSON content types
 * that parse, else "$bytes" (base64); plus "content_type". Returns 0, or -1 when out of
 * memory. */
int api_value_put_in(json_t *entry, const rt_buf *buf);

/* The metadata object of an object view (GET /v1/objects/{ref}/meta and listings). */
json_t *api_value_meta(const rt_object_view *view);

/* "freed", "evicted", "expired". */
const char *api_value_lost_reason(rt_lost_reason reason);

#endif
