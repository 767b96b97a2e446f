/* Arguments of tasks and actor calls: finding ref arguments, checking them at submission,
 * and resolving them to values when the work runs. One place, so tasks and actors resolve
 * exactly alike.
 *
 * A ref argument is a top-level argument (an element of args, or a value of kwargs) that
 * is exactly {"$ref": "<ref>"}; refs nested deeper are values like any other, as in Ray.
 * A ready object's value is its parsed JSON for JSON content types, otherwise
 * {"$bytes": base64, "content_type": ...}. Thread-safe: pure, apart from store reads. */
#ifndef RAYD_RUNTIME_ARGS_H
#define RAYD_RUNTIME_ARGS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "runtime/object_store.h"

/* True when v is a ref argument. */
bool rt_args_is_ref(json_t *v);

/* How many ref arguments args (array or NULL) and kwargs (object or NULL) hold. */
size_t rt_args_count_refs(json_t *args, json_t *kwargs);

/* Copies the ref arguments' refs, in order (args first, then kwargs), into refs (room for
 * rt_args_count_refs of them). */
void rt_args_collect_refs(json_t *args, json_t *kwargs, char (*refs)[RT_REF_SIZE]);

/* Checks at submission that every value that looks like a ref argument is exactly one and
 * names an object that exists or existed. RT_OK, or RT_EINVAL with err naming the argument
 * ("args[2]: ref X does not exist"). */
rt_status rt_args_check(rt_store *store, json_t *args, json_t *kwargs, char *err,
                        size_t err_size);

/* The value of a READY object as a function receives it (new reference; NULL when out of
 * memory). */
json_t *rt_args_value_of(const rt_object_view *view);

/* Builds the arguments a function receives: plain values shared, ref arguments replaced by
 * their objects' values. On RT_OK sets *args_out and *kwargs_out (new references). When a
 * ref argument holds an error, or its object is gone, returns RT_EINVAL and sets *cause
 * (new reference): the error, or an ObjectLost error naming the ref. */
rt_status rt_args_resolve(rt_store *store, json_t *args, json_t *kwargs, json_t **args_out,
                          json_t **kwargs_out, rt_error **cause);

#endif
