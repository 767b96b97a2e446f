/* The runtime's one error enum: 0 is success, negatives are errors. Only api/ turns
 * these into HTTP statuses. Thread-safe: everything here is pure. */
#ifndef RAYD_RUNTIME_STATUS_H
#define RAYD_RUNTIME_STATUS_H

typedef enum rt_status {
    RT_OK = 0,
    RT_ENOMEM = -1,    /* allocation failed */
    RT_ENOTFOUND = -2, /* no such ref, task, actor, function or class */
    RT_ELOST = -3,     /* the object existed but was freed, evicted or expired */
    RT_EFULL = -4,     /* the object store cannot fit the object even after eviction */
    RT_EINVAL = -5,    /* an argument is malformed or out of range */
    RT_EEXIST = -6,    /* the name or id is taken */
    RT_EPENDING = -7,  /* the object is not resolved yet */
    RT_ELIMIT = -8,    /* a configured pending-work limit is reached */
    RT_ESTATE = -9,    /* the operation does not apply in the current state */
    RT_ESHUTDOWN = -10 /* the runtime is shutting down */
} rt_status;

/* A stable, human-readable name for a status ("RT_ENOTFOUND"); never NULL. */
const char *rt_status_name(rt_status status);

#endif
