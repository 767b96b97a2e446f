/* Answers that are long lists of refs, written as JSON text without a jansson tree: the
 * receipt of POST /v1/tasks/batch and the answer of POST /v1/wait. For a batch of 10,000
 * tasks, building, dumping and freeing the trees of these two answers took about a fifth
 * of the server's instructions (callgrind, BENCHMARKS.md 2026-12-06 "e: the batch path").
 *
 * Refs and task ids are 1 to 64 characters of [A-Za-z0-9_-] (rt_ref_valid): rayd makes
 * them, or checked them when they came in, so they are written without escaping. */
#ifndef RAYD_API_REF_LISTS_H
#define RAYD_API_REF_LISTS_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/ref.h"
#include "runtime/task.h"

/* {"tasks": [receipt, ...]}: the receipt of task i is {"task_id", "ref"} when
 * specs[i].num_returns is 1, else {"task_id", "refs": [...]}; its refs follow those of
 * task i - 1 in refs. Returns the text (malloc'd, NUL-terminated, *len bytes) or NULL when
 * out of memory. */
char *api_task_receipts_text(const char (*ids)[RT_REF_SIZE], const char (*refs)[RT_REF_SIZE],
                             const rt_task_spec *specs, size_t n, size_t *len);

/* {"ready": [...], "not_ready": [...]}: refs[i] is listed in ready when ready[i], else in
 * not_ready, both in input order. Returns the text (malloc'd, NUL-terminated, *len bytes)
 * or NULL when out of memory. */
char *api_wait_answer_text(const char *const *refs, const bool *ready, size_t n, size_t *len);

#endif
