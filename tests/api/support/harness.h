/* API test harness: starts the real rayd binary on an ephemeral port and talks HTTP to it
 * with libcurl, the way a client would.
 *
 * Include <stdarg.h>, <stddef.h>, <setjmp.h>, <stdint.h> and <cmocka.h> before this header
 * in test files (cmocka needs them first). The HTTP helpers fail the running cmocka test
 * (fail_msg) when something every response must satisfy does not hold: a transport error,
 * a missing X-Request-Id, or a JSON content type with a body that does not parse.
 *
 * Environment:
 *   RAYD_BIN           server binary (default build/rayd)
 *   RAYD_TEST_VERBOSE  when set, the server's stdout is echoed to stderr
 *   RAYD_CONTRACT_LOG  when set to a file path, every response http_request_opts (and so
 *                      every helper built on it) receives is appended to that file as one
 *                      JSON line, for tests/contract/validate.mjs (see
 *                      http_contract_record)
 *   RAYD_EXIT_LOG      when set to a file path, rayd_stop_signal/rayd_stop/rayd_wait_exit
 *                      append "pid=P how=signal|wait sig=S status=X" for each server that
 *                      ended (tests/valgrind/run.sh checks clean exits with it)
 *   RAYD_TEST_FILTER   run only the tests whose name matches this glob (cmocka's filter)
 *   RAYD_TEST_SKIP     skip the tests whose name matches one of these globs (separated
 *                      by commas)
 *   RAYD_TEST_URL      talk to the rayd at this URL ("http://host:port", e.g. nginx in
 *                      front of a cluster) instead of starting one: rayd_start and
 *                      rayd_start_no_log start nothing (their arguments are ignored) and
 *                      rayd_stop stops nothing (and returns 0). Tests that need a server of
 *                      their own (flags, signals, its log) cannot run so; see
 *                      tests/cluster/api_node_local.txt.
 *
 * Thread-safety: one rayd_server per thread; the HTTP helpers are thread-safe. */
#ifndef RAYD_TESTS_API_SUPPORT_HARNESS_H
#define RAYD_TESTS_API_SUPPORT_HARNESS_H

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h> /* the test-group wrapper below takes cmocka's types */

#include <curl/curl.h>

/* ---------------------------------------------------------------- server process */

typedef struct rayd_server {
    pid_t pid;
    int port;
    int out_fd;        /* read end of the server's stdout */
    pthread_t drainer; /* keeps reading out_fd so the pipe never fills */
    bool drainer_running;
    char base_url[64]; /* "http://127.0.0.1:PORT" */
    int admin_port;    /* --admin-port's bound port from the listening line; <= 0: none */
    char admin_url[64]; /* "http://127.0.0.1:ADMIN_PORT" when admin_port > 0 */
    /* stdout capture (rayd_capture_stdout): what the drainer read while capturing */
    pthread_mutex_t out_lock;
    bool capturing;
    char *captured; /* NUL-terminated when not NULL */
    size_t captured_len, captured_cap;
    bool stalled;                   /* rayd_stdout_stall: the drainer reads nothing */
    pthread_cond_t out_unstalled;   /* with out_lock */
    char early[8192]; /* rayd_start: the lines before the listening line (as many as fit,
                         whole lines, NUL-terminated), e.g. "module loaded" */
    bool shared;                    /* RAYD_TEST_URL: a server this test did not start */
} rayd_server;

/* Whether RAYD_TEST_URL points the tests at a server they did not start. */
bool rayd_test_url_set(void);

/* The binary under test: $RAYD_BIN, or "build/rayd". Borrowed. */
const char *rayd_bin(void);

/* Start the server: rayd --bind 127.0.0.1 --port 0 <args...>, with env_add ("NAME=value"
 * strings, NULL-terminated, may be NULL) added to (or replacing in) the environment.
 * args is NULL-terminated and may be NULL. Waits up to 10 s for the "listening" line.
 * Returns 0, or -1 after printing why (and killing the child) when it did not start. */
int rayd_start(rayd_server *s, const char *const *args, const char *const *env_add);

/* The same for a server that prints no listening line (RAYD_LOG_LEVEL=warn): runs it on a
 * port free at the time (--port P instead of 0) and waits up to 10 s until it accepts
 * connections. A text-format listening line (RAYD_LOG_FORMAT=text) rayd_start finds. */
int rayd_start_no_log(rayd_server *s, const char *const *args, const char *const *env_add);

/* Stop: SIGTERM (or sig), wait up to 10 s (then SIGKILL). Returns the exit status (0..255),
 * 128+signal when it died of a signal, or -1 when it had to be killed after the timeout. */
int rayd_stop_signal(rayd_server *s, int sig);
int rayd_stop(rayd_server *s);

/* rayd_stop for a cmocka teardown: 0 when the server exited 0, else says the status on
 * stderr and returns -1 (a teardown failure). */
int rayd_stop_clean(rayd_server *s);

/* Wait up to timeout_s for the server to exit by itself (after a signal the test sent with
 * kill(s->pid, ...)), without sending anything; then clean up as rayd_stop does. Returns
 * the exit status, 128+signal, or -1 when it had to be killed after the timeout. */
int rayd_wait_exit(rayd_server *s, double timeout_s);

/* Stop reading the server's stdout (stall true), so that its pipe fills and its writes
 * block, as with a stuck log collector; false reads on. Stopping the server reads on. */
void rayd_stdout_stall(rayd_server *s, bool stall);

/* Capture the server's stdout (after the listening line) from now on (on), or stop (off;
 * what was captured stays until rayd_stdout_clear). Off by default. */
void rayd_capture_stdout(rayd_server *s, bool on);
/* A copy of what was captured so far (new NUL-terminated string, free()). */
char *rayd_stdout_text(rayd_server *s);
/* Forget what was captured. */
void rayd_stdout_clear(rayd_server *s);
/* Wait up to timeout_s until a complete captured line contains needle. Returns a copy of
 * the first such line (without its newline, new, free()), or NULL on timeout. */
char *rayd_stdout_wait_line(rayd_server *s, const char *needle, double timeout_s);

/* Run the binary to completion with exactly argv[1..] = args (no --bind/--port added),
 * env_add as for rayd_start. Captures stdout and stderr (new NUL-terminated strings, free()).
 * Returns the exit status, 128+signal, or -1 when it did not exit within timeout_s (then it
 * is killed). */
int rayd_run(const char *const *args, const char *const *env_add, double timeout_s, char **out,
             char **err);

/* ---------------------------------------------------------------- HTTP */

typedef struct http_header {
    char *name;
    char *value;
} http_header;

typedef struct http_resp {
    long status; /* 0 when the transfer failed (see error) */
    char *body;  /* NUL-terminated for convenience; body_len excludes the NUL */
    size_t body_len;
    http_header *headers; /* of the final response (interim 1xx dropped) */
    size_t n_headers;
    json_t *json; /* parsed body when the content type is JSON or +json; else NULL */
    char error[CURL_ERROR_SIZE];
} http_resp;

typedef size_t (*http_read_fn)(char *buf, size_t size, size_t nitems, void *ctx);

typedef struct http_opts {
    const char *method;         /* "GET", "POST", ...; NULL is GET */
    const char *path;           /* sent as is (no dot-segment normalisation) */
    const char *const *headers; /* "Name: value" strings, NULL-terminated, may be NULL */
    const void *body;           /* request body (used when read_fn is NULL) */
    size_t body_len;
    bool has_body;        /* send body/body_len (even when 0 bytes) */
    http_read_fn read_fn; /* stream the body from here instead ... */
    void *read_ctx;
    long long upload_size;      /* ... announcing this Content-Length */
    long timeout_ms;            /* 0: 30 s */
    bool allow_transport_error; /* don't fail the test when curl reports an error */
    bool soft;                  /* never fail the test (for other threads than cmocka's):
                                   problems are reported in error, status 0 on transport
                                   errors */
    CURL *handle;               /* reuse this easy handle (keep-alive); NULL: a new one */
    const char *base_url;       /* talk to this instead of the server's base_url (e.g. its
                                   admin_url); NULL: base_url */
} http_opts;

/* The general request. Unless the caller sets them, no Content-Type and no Expect header is
 * sent. Fails the test on a transport error, when X-Request-Id is missing or empty, or when a
 * JSON body does not parse. New response: free with http_resp_free. */
http_resp *http_request_opts(const rayd_server *s, const http_opts *o);

/* method, path, NULL-terminated headers (may be NULL), body (NULL: none). */
http_resp *http_request(const rayd_server *s, const char *method, const char *path,
                        const char *const *headers, const void *body, size_t len);
http_resp *http_get(const rayd_server *s, const char *path);
http_resp *http_head(const rayd_server *s, const char *path);
http_resp *http_delete(const rayd_server *s, const char *path);
/* POST with Content-Type: application/json. */
http_resp *http_post_json(const rayd_server *s, const char *path, const char *json);
/* POST a raw body; content_type NULL sends none. */
http_resp *http_post_bytes(const rayd_server *s, const char *path, const char *content_type,
                           const void *body, size_t len);
void http_resp_free(http_resp *r);

/* The contract recorder: when RAYD_CONTRACT_LOG names a file, appends one JSON line
 * {"method", "path" (without the query), "query" (when there is one), "status",
 * "content_type" (null when absent), "headers": {lower-case name: value}, "body" (text)
 * or "body_base64" (not UTF-8) or "body_omitted": true (over 1 MiB), "request_headers",
 * "test"} describing r; does nothing otherwise, or when r->status is 0. Thread-safe.
 * http_request_opts calls it for every response; tests that talk HTTP some other way
 * (curl multi handles) may call it themselves. request_headers as for http_opts. */
void http_contract_record(const char *method, const char *path,
                          const char *const *request_headers, const http_resp *r);

/* Header value by name, case-insensitive; NULL when absent. Borrowed. */
const char *http_header_get(const http_resp *r, const char *name);

/* Content-Type without parameters equals mime (case-insensitive). */
bool http_ct_is(const http_resp *r, const char *mime);

/* Assert an RFC 9457 problem: the status, Content-Type application/problem+json, a JSON
 * object with type "/problems/<title>", title, status, a non-empty detail,
 * and instance a string. */
void assert_problem(const http_resp *r, long status, const char *title);
/* The same check without failing: false with the reason in why. */
bool problem_ok(const http_resp *r, long status, const char *title, char *why, size_t n);

/* Assert a 2xx/3xx/4xx... status with a readable message (body shown on mismatch). */
void assert_status(const http_resp *r, long status);

/* ---------------------------------------------------------------- conveniences */

/* POST /v1/objects with a body; asserts 201 and returns the new ref (static buffer copied
 * into out, at least 65 bytes). */
void put_object(const rayd_server *s, const char *content_type, const void *body, size_t len,
                char *out_ref);

/* JSON helpers that fail the test when the member is missing or of another type. */
const char *json_str(const json_t *obj, const char *key);
long long json_int(const json_t *obj, const char *key);
double json_num(const json_t *obj, const char *key);
json_t *json_member(const json_t *obj, const char *key);

/* Does s match [A-Za-z0-9_-]{1,64}? */
bool is_valid_ref(const char *s);

/* Send raw bytes on a new TCP connection to the server and read the answer (until the
 * server closes, or the response's Content-Length is complete; at most timeout_s).
 * Returns the status code of the response (0 when none), with the whole response text in
 * *out (new, free()). Fails the test when the answer lacks X-Request-Id. */
int raw_http(const rayd_server *s, const void *req, size_t len, double timeout_s, char **out);

/* Monotonic seconds. */
double now_s(void);
void sleep_s(double secs);

/* cmocka_run_group_tests and cmocka_run_group_tests_name go through the harness, which
 * leaves out the tests RAYD_TEST_SKIP names (several globs; cmocka's own skip filter takes
 * one) and says which on stdout. */
int rayd_run_group_tests(const char *group, const struct CMUnitTest *tests, size_t n,
                         CMFixtureFunction setup, CMFixtureFunction teardown);
#undef cmocka_run_group_tests
#define cmocka_run_group_tests(group_tests, group_setup, group_teardown)                      \
    rayd_run_group_tests(#group_tests, group_tests,                                          \
                         sizeof(group_tests) / sizeof((group_tests)[0]), group_setup,        \
                         group_teardown)
#undef cmocka_run_group_tests_name
#define cmocka_run_group_tests_name(group_name, group_tests, group_setup, group_teardown)     \
    rayd_run_group_tests(group_name, group_tests,                                            \
                         sizeof(group_tests) / sizeof((group_tests)[0]), group_setup,        \
                         group_teardown)

#endif
