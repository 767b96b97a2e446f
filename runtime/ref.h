/* Refs: the opaque ids of objects, tasks and actors. A fresh id is 22 characters of
 * base64url (128 random bits); any id a client sends is checked against the contract:
 * 1 to 64 characters of [A-Za-z0-9_-]. Thread-safe. */
#ifndef RAYD_RUNTIME_REF_H
#define RAYD_RUNTIME_REF_H

#include <stddef.h>

#define RT_REF_MAX 64               /* longest id accepted */
#define RT_REF_LEN 22               /* length of ids rayd makes */
#define RT_REF_SIZE (RT_REF_MAX + 1) /* buffer size that holds any id and its NUL */

/* Writes a fresh random id of RT_REF_LEN characters and a NUL into out (RT_REF_LEN + 1
 * bytes). prefix, if not NULL, is one character placed first so that ids say what they
 * name ('o' object, 't' task, 'a' actor). */
void rt_ref_generate(char *out, char prefix);

/* 1 when s is a syntactically valid id (1..64 chars of [A-Za-z0-9_-]), else 0. */
int rt_ref_valid(const char *s);

#endif
