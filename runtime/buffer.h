/* rt_buf: an immutable, reference-counted byte buffer with its content type.
 *
 * A buffer is written once by whoever created it (while it holds the only reference) and
 * never changed after it is shared. Readers share it by reference count; the HTTP layer
 * hands buf->data to the network with a free callback that drops its reference, so a GET
 * never copies the bytes.
 *
 * Thread-safety: incref/decref are atomic and may race freely. Writing into data or
 * resizing is only allowed while the caller holds the sole reference. */
#ifndef RAYD_RUNTIME_BUFFER_H
#define RAYD_RUNTIME_BUFFER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Longest content type kept, in bytes, not counting the terminating NUL. */
#define RT_CONTENT_TYPE_MAX 255

typedef struct rt_buf {
    int refs;                 /* atomic; use rt_buf_incref / rt_buf_decref */
    bool owns_content_type;   /* content_type is this buffer's own copy, freed with it */
    size_t size;              /* bytes in data */
    const char *content_type; /* never NULL; lives as long as the buffer: interned (see
                                 rt_content_type_intern), or the buffer's own copy once the
                                 intern table is full */
    char data[];              /* the bytes, plus one NUL after them for convenience */
} rt_buf;

/* A new buffer of size bytes (contents uninitialised, data[size] is NUL) with one
 * reference owned by the caller. content_type is copied (interned when the table has room);
 * NULL means "application/octet-stream". Returns NULL when out of memory or when
 * content_type is not valid (rt_content_type_valid). */
rt_buf *rt_buf_new(size_t size, const char *content_type);

/* A new buffer holding a copy of data. Same rules as rt_buf_new. */
rt_buf *rt_buf_from(const void *data, size_t size, const char *content_type);

/* A new "application/json" buffer holding value's compact text (JSON_ENCODE_ANY), or NULL
 * when out of memory. */
rt_buf *rt_buf_from_json(const json_t *value);

/* A new buffer holding a copy of data whose content type is already interned (a type a
 * buffer had: no check, no lookup). NULL when out of memory. */
rt_buf *rt_buf_from_interned(const void *data, size_t size, const char *interned_type);

/* Changes the size of a buffer the caller owns alone (refs == 1). Returns the buffer, which
 * may have moved, or NULL on failure (then *buf is unchanged and still valid). */
rt_buf *rt_buf_resize(rt_buf *buf, size_t new_size);

/* Adds a reference and returns buf. NULL is accepted and returned. */
rt_buf *rt_buf_incref(rt_buf *buf);

/* Drops a reference; the last one frees the buffer. NULL is accepted. */
void rt_buf_decref(rt_buf *buf);

/* Returns a process-lifetime pointer for a content type string, the same pointer for equal
 * strings, so content types cost nothing per object. NULL when the type is not valid, when
 * the table is full (it holds at most 4,096 types) or out of memory. Thread-safe. */
const char *rt_content_type_intern(const char *content_type);

/* True when content_type can be kept and sent back as an HTTP header and a JSON string:
 * 1 to RT_CONTENT_TYPE_MAX bytes of header text (RFC 9110 field-value: visible ASCII,
 * space, tab) where bytes over 0x7f must form well-formed UTF-8. No control characters. */
bool rt_content_type_valid(const char *content_type);

/* Length of the well-formed UTF-8 sequence of 2 to 4 bytes at p, or 0 when p does not
 * start one (overlong forms, surrogates, past U+10FFFF, a cut sequence: the NUL that ends
 * a string is never a continuation byte). p is borrowed. Thread-safe. */
size_t rt_utf8_sequence(const unsigned char *p);

/* True when a content type names JSON ("application/json", "...+json", with parameters). */
int rt_content_type_is_json(const char *content_type);

#endif
