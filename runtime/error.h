/* rt_error: a stored error value. Failed work becomes one of these, kept in the object
 * store under the result's ref like any value, and travels through refs: a task whose
 * argument holds an error fails with a new error whose cause is the argument's.
 *
 * An error is immutable once made and reference-counted. Thread-safe: incref/decref are
 * atomic; everything else only reads. */
#ifndef RAYD_RUNTIME_ERROR_H
#define RAYD_RUNTIME_ERROR_H

#include <jansson.h>

typedef enum rt_error_kind {
    RT_ERR_TASK_ERROR = 0,     /* the function failed */
    RT_ERR_ACTOR_DIED,         /* the actor was killed or exhausted its restarts */
    RT_ERR_TASK_CANCELLED,     /* the task was cancelled */
    RT_ERR_WORKER_UNAVAILABLE, /* a remote endpoint could not be reached */
    RT_ERR_OBJECT_LOST         /* an argument object was freed or evicted */
} rt_error_kind;

typedef struct rt_error rt_error;

/* A new error with one reference owned by the caller, or NULL when out of memory.
 * message is copied (NULL means empty). fields is borrowed and deep-copied: a JSON
 * object of extra members such as task_id, function, actor_id, method, ref (NULL for
 * none). cause is borrowed; the new error takes its own reference to it. */
rt_error *rt_error_new(rt_error_kind kind, const char *message, json_t *fields,
                       rt_error *cause);

/* printf-style convenience: fields and cause as rt_error_new. */
rt_error *rt_error_newf(rt_error_kind kind, json_t *fields, rt_error *cause, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

rt_error *rt_error_incref(rt_error *err); /* returns err; NULL accepted */
void rt_error_decref(rt_error *err);      /* NULL accepted */

rt_error_kind rt_error_kind_of(const rt_error *err);
/* Borrowed; valid while err lives. Never NULL. */
const char *rt_error_message(const rt_error *err);
/* Borrowed; NULL when the error has no cause. */
rt_error *rt_error_cause(const rt_error *err);
/* Borrowed JSON object of extra members; never NULL (may be empty). Do not modify. */
json_t *rt_error_fields(const rt_error *err);

/* The kind's name as the API spells it (docs/api-notes.md): "TaskError", "ActorDied",
 * "TaskCancelled", "WorkerUnavailable", "ObjectLost". */
const char *rt_error_kind_name(rt_error_kind kind);

/* Approximate bytes this error occupies by itself (its allocation, message and fields),
 * not counting its cause. */
size_t rt_error_size(const rt_error *err);

/* Approximate bytes the error keeps alive: its own and those of its whole cause chain
 * (shared causes counted in full). */
size_t rt_error_chain_size(const rt_error *err);

/* Store accounting. The object store counts an error's bytes against its memory limit
 * once however many stored objects reach it, directly or as a cause: every error keeps a
 * "held" count, and a node's bytes count while it is held by a stored object or by a held
 * error whose cause it is. rt_error_hold marks err held once more and returns the bytes
 * that became held (those of err and of causes that were not held yet); rt_error_unhold
 * undoes one rt_error_hold and returns the bytes that stopped being held. Each call walks
 * the chain only as far as the first node that was (or stays) held, so a long chain of
 * propagated errors costs O(1) per new link. Thread-safe (atomic counts). The counts are
 * one per error, so one error value must not be held by two stores at once (rayd has one
 * store). */
size_t rt_error_hold(rt_error *err);
size_t rt_error_unhold(rt_error *err);

/* Longest chain (rt_error_chain_size) that rt_error_summary shares as it is. */
#define RT_ERROR_SUMMARY_MAX 4096

/* A bounded copy of err for records that outlive its object (task records): err itself
 * (new reference) when its chain takes at most max_bytes; otherwise a new chain of
 * copies whose messages are cut (marked "[... N bytes omitted]"), whose large field
 * values are left out, and which stops after about max_bytes with a "causes_omitted"
 * field counting the levels left out, as problem bodies do. New reference; NULL only when
 * out of memory. */
rt_error *rt_error_summary(rt_error *err, size_t max_bytes);

#endif
