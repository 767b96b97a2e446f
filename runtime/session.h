/* rt_sessions: Ray Client's references. A session is a client's claim on what it made:
 * objects, tasks and actors created under it belong to it, and it holds them with a lease
 * that each of its requests renews. When the session is closed, or its lease runs out:
 *   - its tasks that have not ended are cancelled (rt_task_cancel),
 *   - its actors are killed (rt_actor_kill), except those adopted as detached, which
 *     are never recorded here (Ray's lifetime="detached"),
 *   - its objects are freed with rt_store_release: one that a task or actor call still
 *     depends on (pinned), of this session or another, stays until that work ends.
 * Work made without a session is not touched.
 *
 * Leases: a session is in a min-heap by the expiry it had when it last entered the heap.
 * A renewal only moves the session's own expiry forward (no heap work); rt_sessions_expire
 * looks at the heap's top only, and a top whose lease was renewed meanwhile goes back down
 * with its new expiry. So expiring costs what is due (plus one look per session per lease
 * period), never a scan of every session.
 *
 * Memory: a session remembers the ids of what it owns. The lists are pruned of what is
 * already gone (freed objects, ended tasks, dead actors) whenever one doubles, so they stay
 * proportional to what the session holds alive.
 *
 * Thread-safety: every function may be called from any thread. One mutex guards the table,
 * the heap and the sessions' lists; the cleanup of a closed session runs after the session
 * left the table, with that mutex released. Lock order: sessions -> task, actor and store
 * locks (a list is pruned under the mutex with peeks); nothing calls back into sessions. */
#ifndef RAYD_RUNTIME_SESSION_H
#define RAYD_RUNTIME_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/actor.h"
#include "runtime/object_store.h"
#include "runtime/ref.h"
#include "runtime/status.h"
#include "runtime/task.h"

typedef struct rt_sessions rt_sessions;

typedef struct rt_sessions_config {
    size_t max_sessions; /* open at once; beyond it rt_session_open is RT_ELIMIT */
    double max_ttl;      /* seconds; a lease may be at most this long */
} rt_sessions_config;

/* What rt_session_open and rt_session_get report. */
typedef struct rt_session_info {
    char session_id[RT_REF_SIZE];
    double ttl;         /* seconds each renewal extends the lease to */
    double created_at;  /* wall clock seconds */
    double expires_at;  /* wall clock seconds: the lease ends then unless renewed */
    unsigned long long renewals;
    size_t objects, tasks, actors; /* ids remembered (some may be gone already) */
} rt_session_info;

typedef struct rt_sessions_stats {
    size_t open;
    size_t max_sessions;
    unsigned long long opened, closed, expired; /* closed: by rt_session_close */
    unsigned long long objects_released, tasks_cancelled, actors_killed;
} rt_sessions_stats;

/* store, tasks and actors are borrowed and must outlive the sessions. NULL on no memory. */
rt_sessions *rt_sessions_new(rt_store *store, rt_tasks *tasks, rt_actors *actors,
                             const rt_sessions_config *config);
/* Frees the table without cleaning anything up (the process is stopping). NULL accepted. */
void rt_sessions_free(rt_sessions *sessions);

/* Opens a session whose lease lasts ttl seconds from now (wall clock seconds). Returns
 * RT_OK (info filled), RT_EINVAL (ttl not in (0, max_ttl]), RT_ELIMIT (max_sessions are
 * open), RT_ENOMEM. */
rt_status rt_session_open(rt_sessions *sessions, double ttl, double now, rt_session_info *info);

/* RT_OK (info filled) or RT_ENOTFOUND (never opened, closed, or expired). */
rt_status rt_session_get(rt_sessions *sessions, const char *id, rt_session_info *info);

/* Extends the lease to now + ttl (never backwards). RT_OK or RT_ENOTFOUND. */
rt_status rt_session_renew(rt_sessions *sessions, const char *id, double now);

/* Closes a session and cleans up what it owns (see above) before returning. RT_OK or
 * RT_ENOTFOUND. */
rt_status rt_session_close(rt_sessions *sessions, const char *id);

/* Records what was made under a session. When the session is gone (closed meanwhile) the
 * things are cleaned up at once as a close would have, and RT_ENOTFOUND is returned.
 * RT_ENOMEM leaves them unowned (as if made without a session). */
rt_status rt_session_add_objects(rt_sessions *sessions, const char *id,
                                 char (*refs)[RT_REF_SIZE], size_t n);
rt_status rt_session_add_task(rt_sessions *sessions, const char *id, const char *task_id);
rt_status rt_session_add_actor(rt_sessions *sessions, const char *id, const char *actor_id);

/* Closes every session whose lease ended by now; returns how many. Call it now and then
 * (the service does, every second). */
size_t rt_sessions_expire(rt_sessions *sessions, double now);

/* For tests: how many heap tops rt_sessions_expire has looked at so far. */
uint64_t rt__sessions_expire_visits(rt_sessions *sessions);

void rt_sessions_get_stats(rt_sessions *sessions, rt_sessions_stats *out);

#endif
