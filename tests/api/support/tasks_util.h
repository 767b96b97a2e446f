/* Helpers for the task API tests (test_tasks.c, test_long_poll.c, test_semantics.c): submit
 * tasks, read results and task info, poll task states and read /v1/status counters.
 *
 * Include harness.h (and cmocka's prerequisites) first. Every helper fails the running cmocka
 * test when the server answers something it should not; they are not for other threads. */
#ifndef RAYD_TESTS_API_SUPPORT_TASKS_UTIL_H
#define RAYD_TESTS_API_SUPPORT_TASKS_UTIL_H

#include "tests/api/support/harness.h"

/* Room for a ref or task id (64 chars + NUL). */
#define TK_ID_SIZE 65

/* POST a JSON body built with printf formatting (Content-Type: application/json). */
http_resp *tk_post_jsonf(const rayd_server *s, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* GET with a printf-formatted path. */
http_resp *tk_getf(const rayd_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* POST /v1/tasks with this body; asserts 202 with a valid task_id and ref and a Location of
 * /v1/tasks/<task_id>, and copies them out (either may be NULL). */
void tk_submit(const rayd_server *s, const char *body, char *task_id, char *ref);
/* The same with a printf-formatted body. */
void tk_submitf(char *task_id, char *ref, const rayd_server *s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* GET /v1/objects/{ref}?timeout=T (T = 20 s): asserts 200 with a JSON content type and
 * returns the parsed value (new reference). */
json_t *tk_value(const rayd_server *s, const char *ref);

/* GET /v1/objects/{ref}?timeout=20 and assert a 424 problem with this title; returns the
 * response (free with http_resp_free). */
http_resp *tk_error(const rayd_server *s, const char *ref, const char *title);

/* GET /v1/tasks/{id}: asserts 200; returns the info object (new reference). */
json_t *tk_info(const rayd_server *s, const char *task_id);

/* Polls GET /v1/tasks/{id} (every 10 ms) until its state is `state` or timeout_s passed;
 * fails the test on timeout (naming the last state). Returns the info (new reference). */
json_t *tk_wait_state(const rayd_server *s, const char *task_id, const char *state,
                      double timeout_s);

/* Polls until the task's state is any of the ended ones (FINISHED, FAILED, CANCELLED). */
json_t *tk_wait_ended(const rayd_server *s, const char *task_id, double timeout_s);

/* GET /v1/status (asserted 200), new reference. */
json_t *tk_status(const rayd_server *s);
/* status.tasks.<key> (e.g. "submitted", "pending"). */
long long tk_status_tasks(const rayd_server *s, const char *key);

/* Asserts that a JSON value equals the given JSON text (compared with json_equal; integer
 * and real are different, as in JSON). */
void tk_assert_json_eq(const json_t *got, const char *want_json);

/* Open file descriptors of a process (counts /proc/<pid>/fd), -1 when unreadable. */
int tk_count_fds(pid_t pid);

#endif
