/* Request decoders: pure functions from a parsed JSON body to what the runtime takes, with a
 * one-line reason when the body is wrong. No HTTP and no store here, so the handlers answer
 * 400 with the reason, and fuzzers (tests/fuzz/) drive exactly this code.
 *
 * Every decoder returns API_DECODE_OK, API_DECODE_BAD (err says why: answer 400) or
 * API_DECODE_NOMEM. Results point into the JSON they were decoded from (borrowed): keep it
 * alive while using them. Thread-safe: pure. */
#ifndef RAYD_API_DECODE_H
#define RAYD_API_DECODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "runtime/actor.h"
#include "runtime/buffer.h"
#include "runtime/task.h"

enum { API_DECODE_OK = 0, API_DECODE_BAD = -1, API_DECODE_NOMEM = -2 };

#define API_REFS_MAX 100000        /* refs in one get or wait */
#define API_OBJECTS_BATCH_MAX 100000
#define API_TASKS_BATCH_MAX 10000

/* A request body parsed as every JSON endpoint parses it (duplicate members refused):
 * a new reference, or NULL with error filled. The fuzzers parse their inputs with it too. */
json_t *api_decode_body(const char *data, size_t len, json_error_t *error);

/* Checks that obj has only the allowed members (NULL-terminated list). */
int api_decode_only_keys(json_t *obj, const char *const *allowed, const char *what, char *err,
                         size_t err_size);

/* POST /v1/objects/get and /v1/wait: {"refs", "timeout", "num_returns" (wait only)}. */
typedef struct api_wait_request {
    const char **refs;  /* owned array of strings: in the body's JSON, or in text */
    char *text;         /* owned: the refs' characters, when the quick reader
                           (api/wait_scan.h) read the body; else NULL */
    size_t n;
    size_t num_returns; /* wait: 1..n (1 when refs is empty) */
    double timeout;     /* seconds; negative when absent (the server's maximum applies) */
} api_wait_request;

int api_decode_wait(json_t *body, bool is_wait, api_wait_request *out, char *err,
                    size_t err_size);
void api_wait_request_release(api_wait_request *req);
/* api_decode_wait's checks, on the refs (n, each NULL when it is not a string; owned:
 * moved into out, or freed on failure, as is out->text) and on members, the body's other
 * members (members named refs are not looked at); refs_is_list: refs was a list. */
int api_decode_wait_parts(json_t *members, bool refs_is_list, const char **refs, size_t n,
                          bool is_wait, api_wait_request *out, char *err, size_t err_size);

/* One task: {"function", "args", "kwargs", "options"}. */
int api_decode_task(json_t *task, rt_task_spec *spec, char *err, size_t err_size);
/* A task's options (an object, or NULL or null: none) into spec, whose other fields it
 * leaves alone (spec->name points into options). */
int api_decode_task_options(json_t *options, rt_task_spec *spec, char *err, size_t err_size);

/* {"tasks": [task, ...]}: *specs is malloc'd (n entries); err names the bad index. */
int api_decode_task_batch(json_t *body, rt_task_spec **specs, size_t *n, char *err,
                          size_t err_size);

/* POST /v1/actors: {"class", "args", "kwargs", "name", "get_if_exists", "options"}.
 * *detached: options.lifetime is "detached" (the actor outlives the session that made it). */
int api_decode_actor(json_t *body, rt_actor_spec *spec, bool *detached, char *err,
                     size_t err_size);

/* An actor call: {"args", "kwargs", "options": {"result_ttl"}} (body may be NULL: no
 * arguments). *result_ttl as rt_task_spec.result_ttl (0 when not given). */
int api_decode_call(json_t *body, json_t **args, json_t **kwargs, double *result_ttl, char *err,
                    size_t err_size);

/* {"objects": [value, ...]}: *bufs is a malloc'd array of n new buffers. */
int api_decode_object_batch(json_t *body, rt_buf ***bufs, size_t *n, char *err,
                            size_t err_size);
void api_free_bufs(rt_buf **bufs, size_t n);

#endif
