/* Refs: the opaque ids of objects, tasks and actors. Any id a client sends is checked
 * against the contract: 1 to 64 characters of [A-Za-z0-9_-].
 *
 * A node alone makes ids of exactly 22 characters: a one-letter prefix and base64url.
 * In cluster mode (once rt_ref_set_node_tag was called) every id names its owner:
 *
 *     <prefix><tag>-<22 base62 characters>     e.g. "o3-4fJx0q...", 25 to 35 characters
 *
 * where tag is the node's tag (base62 of a number from Redis, at most 11 characters) and
 * the random part comes from the kernel's CSPRNG (getrandom, about 131 bits). The two
 * shapes never collide (22 characters against 25 or more), and rt_ref_owner reads the
 * tag back unambiguously: the random part has no '-', the tag none either.
 *
 * Thread-safe; rt_ref_set_node_tag is called once, before the node makes any id. */
#ifndef RAYD_RUNTIME_REF_H
#define RAYD_RUNTIME_REF_H

#include <stddef.h>

#define RT_REF_MAX 64               /* longest id accepted */
#define RT_REF_LEN 22               /* length of ids rayd makes */
#define RT_REF_SIZE (RT_REF_MAX + 1) /* buffer size that holds any id and its NUL */

#define RT_NODE_TAG_MAX 11          /* longest node tag: base62 of a 64-bit number */
#define RT_NODE_TAG_SIZE (RT_NODE_TAG_MAX + 1)
#define RT_REF_RANDOM_LEN 22        /* random characters of a cluster id */
/* Longest id rayd makes (a cluster id with the longest tag); the store keeps this many. */
#define RT_REF_MADE_MAX (1 + RT_NODE_TAG_MAX + 1 + RT_REF_RANDOM_LEN)

/* Writes a fresh random id and a NUL into out (RT_REF_MADE_MAX + 1 bytes at least):
 * RT_REF_LEN characters on a node alone; the cluster shape above once a node tag is set
 * (then prefix 0 is taken as 'x'). prefix, if not 0, is one character placed first so that
 * ids say what they name ('o' object, 't' task, 'a' actor). */
void rt_ref_generate(char *out, char prefix);

/* Makes every id generated from now on carry tag (1..RT_NODE_TAG_MAX base62 characters,
 * copied). NULL goes back to single-node ids (for tests). Returns 0, or -1 when tag is not
 * a valid tag (nothing changes then). */
int rt_ref_set_node_tag(const char *tag);

/* 1 when tag is a valid node tag (1..RT_NODE_TAG_MAX base62 characters), else 0. */
int rt_ref_node_tag_valid(const char *tag);

/* The tag set by rt_ref_set_node_tag, or NULL. Borrowed, lives as long as the process. */
const char *rt_ref_node_tag(void);

/* The owner of an id: when id has the cluster shape, copies its tag into tag (NUL-
 * terminated) and returns the tag's length; else (a single-node id, or any other string)
 * returns 0. */
size_t rt_ref_owner(const char *id, char tag[RT_NODE_TAG_SIZE]);

/* Writes n in base62 (digits, then A-Z, then a-z: "0".."9", "A".."Z", "a".."z", "10", ...)
 * into tag, NUL-terminated; returns its length (1..RT_NODE_TAG_MAX). */
size_t rt_ref_tag_from_number(unsigned long long n, char tag[RT_NODE_TAG_SIZE]);

/* 1 when s is a syntactically valid id (1..64 chars of [A-Za-z0-9_-]), else 0. */
int rt_ref_valid(const char *s);

#endif
