/* A quick reader for POST /v1/tasks/batch bodies of the usual shape. The general path
 * parses the whole body into a jansson tree first; for 10,000 small tasks, the objects,
 * keys and strings of that tree were most of the parse, itself about 40% of a batch
 * round's instructions once the answers were written as text (callgrind, BENCHMARKS.md
 * 2026-12-06 "e: the batch path").
 *
 * It reads {"tasks": [task, ...]} with 1 to API_TASKS_BATCH_MAX tasks, each an object
 * whose members are among "function" (a string of printable ASCII without escapes),
 * "args", "kwargs" and "options" (each null, or an array or object of at most 4,000
 * bytes parsed by jansson), each at most once, with keys written without escapes. It decodes each
 * task as api_decode_task would. Anything else, valid or not, it leaves to the general path
 * (api_body_json, api_decode_task_batch), which answers it as before: the reader never
 * answers itself, so bad input gets the same problem+json either way. */
#ifndef RAYD_API_TASK_BATCH_SCAN_H
#define RAYD_API_TASK_BATCH_SCAN_H

#include <jansson.h>
#include <stddef.h>

#include "runtime/task.h"

typedef struct api_task_batch {
    rt_task_spec *specs; /* n specs; their args and kwargs are the caller's (args_given) */
    size_t n;
    char *names;     /* the function names the specs point to */
    json_t *options; /* the tasks' options objects (the names of tasks point there) */
} api_task_batch;

/* Reads body (len bytes). Returns 0 with *out filled (args and kwargs handed to the
 * caller; the rest is freed by api_task_batch_release), or -1: not read (not of this
 * shape, invalid, or out of memory), out left empty: take the general path. */
int api_task_batch_scan(const char *body, size_t len, api_task_batch *out);

/* Frees specs, names and options; not the specs' args and kwargs. */
void api_task_batch_release(api_task_batch *batch);

#endif
