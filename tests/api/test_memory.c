/* API tests of memory that must stay within the configured limits under abuse (issue 10,
 * "Memory beyond the limit"):
 *
 *   stored errors        count in object_store.bytes and are evicted like values: a flood
 *                        of failed tasks with large messages stays within --memory-limit
 *   Idempotency-Key      the remembered answers stay within --idempotency-max-bytes, and an
 *                        answer that is a stored object is kept by reference, not copied
 *   bodies in flight     parallel uploads and parked requests stay within --body-budget:
 *                        beyond it 503 with Retry-After (507 when the store cannot take it)
 *   remote registrations replaced or removed remote functions and classes are freed once
 *                        no work uses them
 *
 * Each test runs its own server and asserts on the server's own figures (/v1/status) and,
 * where the server runs without a sanitizer (whose quarantine and shadow memory make RSS
 * meaningless), on its resident memory read from /proc/<pid>/status with a generous bound. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"

#define ID TK_ID_SIZE
#define MIB (1024L * 1024L)

/* The server of the running test; the teardown stops one a failed test left running. */
static rayd_server g_own;

static int own_teardown(void **state)
{
    if (g_own.pid > 0)
        rayd_stop(&g_own);
    g_own.pid = 0;
    return 0;
}

static void start_own(const char *const *args)
{
    static const char *const env[] = {"RAYD_DRAIN_TIMEOUT=2", NULL};
    memset(&g_own, 0, sizeof g_own);
    if (rayd_start(&g_own, args, env) != 0) /* after its listening line: fully started */
        fail_msg("rayd did not start");
}

static void stop_own(void)
{
    int st = rayd_stop(&g_own);
    g_own.pid = 0;
    if (st != 0)
        fail_msg("rayd exited with status %d after SIGTERM (want 0)", st);
}

/* ---------------------------------------------------------------- server figures */

/* A kB field of /proc/<pid>/status (VmRSS, VmHWM) in bytes, -1 when unreadable. */
static long proc_status_bytes(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = atol(line + n + 1) * 1024;
            break;
        }
    fclose(f);
    return v;
}

/* True when the server runs under a sanitizer or valgrind: its RSS then says nothing about
 * what rayd holds (quarantined frees, shadow memory). */
static bool rss_meaningless(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "libasan") || strstr(line, "libtsan") || strstr(line, "vgpreload");
    fclose(f);
    if (!found) {
        /* a static sanitizer runtime shows in the environment it needs instead */
        snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
        char exe[512];
        ssize_t n = readlink(path, exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            found = strstr(exe, "/san-") != NULL;
        }
    }
    if (found)
        fprintf(stderr, "  (rayd runs under a sanitizer or valgrind: RSS bounds not checked)\n");
    return found;
}

/* Asserts the server's resident memory is at most base + allowance bytes (skipped where it
 * means nothing). field: "VmRSS" (now) or "VmHWM" (the peak). */
static void assert_rss_within(pid_t pid, const char *field, long base, long allowance,
                              const char *what)
{
    if (rss_meaningless(pid))
        return;
    long v = proc_status_bytes(pid, field);
    if (v < 0)
        fail_msg("cannot read %s of pid %d", field, (int)pid);
    fprintf(stderr, "  %s: %s %ld MiB (bound %ld MiB)\n", what, field, v / MIB,
            (base + allowance) / MIB);
    if (v > base + allowance)
        fail_msg("%s: %s is %ld MiB, over the bound of %ld MiB (start %ld MiB + %ld MiB)", what,
                 field, v / MIB, (base + allowance) / MIB, base / MIB, allowance / MIB);
}

/* status.<section>.<key> as an integer (fails the test when missing). */
static long long status_int(const rayd_server *s, const char *section, const char *key)
{
    json_t *st = tk_status(s);
    long long v = json_int(json_member(st, section), key);
    json_decref(st);
    return v;
}

/* Polls status.<section>.<key> until it is at least want (every 20 ms, up to timeout_s). */
static long long wait_status_at_least(const rayd_server *s, const char *section, const char *key,
                                      long long want, double timeout_s)
{
    double end = now_s() + timeout_s;
    long long v;
    while ((v = status_int(s, section, key)) < want) {
        if (now_s() > end)
            fail_msg("status.%s.%s stayed at %lld, want >= %lld", section, key, v, want);
        sleep_s(0.02);
    }
    return v;
}

/* Polls status.<section>.<key> until it is at most want: what a request holds is given back
 * when the server has finished with it, which may be just after its client read the
 * answer. */
static void wait_status_at_most(const rayd_server *s, const char *section, const char *key,
                                long long want, double timeout_s)
{
    double end = now_s() + timeout_s;
    long long v;
    while ((v = status_int(s, section, key)) > want) {
        if (now_s() > end)
            fail_msg("status.%s.%s stayed at %lld, want <= %lld", section, key, v, want);
        sleep_s(0.01);
    }
}

/* ================================================================ stored errors */

/* 3,000 failed tasks with 100 KB messages at a 1 MiB store limit: the errors count in the
 * store's bytes, older ones are evicted (their refs answer 410), the newest is served whole,
 * task records keep a bounded summary, and the process does not grow by the 300 MB the
 * messages add up to. */
static void test_errors_count_and_are_evicted(void **state)
{
    static const char *const args[] = {"--memory-limit", "1M", "--workers", "2", NULL};
    start_own(args);
    enum { TASKS = 3000, PER_BATCH = 30, MESSAGE = 100 * 1000 };
    long rss_start = proc_status_bytes(g_own.pid, "VmRSS");

    char *message = malloc(MESSAGE + 1);
    memset(message, 'e', MESSAGE);
    message[MESSAGE] = '\0';
    size_t task_len = MESSAGE + 64;
    char *body = malloc(PER_BATCH * task_len + 64);
    char first_ref[ID] = "", first_task[ID] = "", last_ref[ID] = "";
    for (int b = 0; b < TASKS / PER_BATCH; b++) {
        size_t o = (size_t)sprintf(body, "{\"tasks\":[");
        for (int i = 0; i < PER_BATCH; i++)
            o += (size_t)sprintf(body + o, "%s{\"function\":\"fail\",\"args\":[\"%s\"]}",
                                 i ? "," : "", message);
        o += (size_t)sprintf(body + o, "]}");
        http_resp *r = http_request(&g_own, "POST", "/v1/tasks/batch",
                                    (const char *const[]){"Content-Type: application/json", NULL},
                                    body, o);
        assert_status(r, 202);
        json_t *tasks = json_member(r->json, "tasks");
        if (b == 0) {
            snprintf(first_ref, ID, "%s", json_str(json_array_get(tasks, 0), "ref"));
            snprintf(first_task, ID, "%s", json_str(json_array_get(tasks, 0), "task_id"));
        }
        snprintf(last_ref, ID, "%s", json_str(json_array_get(tasks, PER_BATCH - 1), "ref"));
        http_resp_free(r);
    }
    wait_status_at_least(&g_own, "tasks", "failed", TASKS, 120);

    json_t *st = tk_status(&g_own);
    json_t *store = json_member(st, "object_store");
    long long bytes = json_int(store, "bytes"), error_bytes = json_int(store, "error_bytes");
    long long evictions = json_int(store, "evictions");
    json_decref(st);
    if (bytes > 1 * MIB || error_bytes < MESSAGE || error_bytes > bytes)
        fail_msg("object_store.bytes %lld, error_bytes %lld: want errors counted, at most 1 MiB",
                 bytes, error_bytes);
    if (evictions < TASKS - 1 * MIB / MESSAGE)
        fail_msg("only %lld evictions for %d errors of %d bytes in 1 MiB", evictions, TASKS,
                 MESSAGE);

    /* The oldest error was evicted like an object; the newest is there in full. */
    http_resp *r = tk_getf(&g_own, "/v1/objects/%s", first_ref);
    assert_problem(r, 410, "ObjectLost");
    http_resp_free(r);
    r = tk_getf(&g_own, "/v1/objects/%s", last_ref);
    assert_problem(r, 424, "TaskError");
    assert_int_equal(strlen(json_str(r->json, "detail")), MESSAGE);
    http_resp_free(r);
    /* The task's record keeps a summary, not 100 KB. */
    json_t *info = tk_info(&g_own, first_task);
    const char *detail = json_str(json_member(info, "error"), "detail");
    assert_true(strlen(detail) < 4096);
    assert_non_null(strstr(detail, "bytes omitted"));
    json_decref(info);

    assert_rss_within(g_own.pid, "VmRSS", rss_start, 64 * MIB, "after 3,000 failed tasks");
    free(body);
    free(message);
    stop_own();
}


/* ================================================================ Idempotency-Key */

/* POST /v1/tasks {"function":"identity","args":[<text>]} with a key and Prefer: wait. */
static http_resp *keyed_echo(const rayd_server *s, const char *key, const char *text)
{
    char kh[200];
    snprintf(kh, sizeof kh, "Idempotency-Key: %s", key);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=20", kh, NULL};
    size_t n = strlen(text) + 64;
    char *body = malloc(n);
    int len = snprintf(body, n, "{\"function\":\"identity\",\"args\":[\"%s\"]}", text);
    http_resp *r = http_request(s, "POST", "/v1/tasks", h, body, (size_t)len);
    free(body);
    return r;
}

/* 150 keyed 900 KB echoes at a 4 MiB store and an 8 MiB idempotency limit: the table holds
 * at most its limit (the oldest answers are forgotten, counted as evictions), keeps the
 * answers by reference to the stored result, still replays the newest, and redoes the work
 * for a forgotten key; the process does not grow by the 135 MB the answers add up to. */
static void test_idempotency_bounded_in_bytes(void **state)
{
    static const char *const args[] = {"--memory-limit", "4M", "--idempotency-max-bytes", "8M",
                                       "--workers", "2", NULL};
    start_own(args);
    enum { KEYS = 150, TEXT = 900 * 1000 };
    long rss_start = proc_status_bytes(g_own.pid, "VmRSS");
    char *text = malloc(TEXT + 1);
    memset(text, 'k', TEXT);
    text[TEXT] = '\0';
    char key[64];
    long long shared_seen = 0;
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "echo-%d-%d", (int)getpid(), i);
        http_resp *r = keyed_echo(&g_own, key, text);
        assert_status(r, 200);
        assert_int_equal(r->body_len, TEXT + 2); /* the JSON string */
        http_resp_free(r);
        if (i == 0) /* the answer is the stored result: kept by reference */
            shared_seen = status_int(&g_own, "idempotency", "shared_bytes");
    }
    if (shared_seen < TEXT)
        fail_msg("idempotency.shared_bytes was %lld after a %d-byte answer that is a stored "
                 "object: the answer was copied, not kept by reference", shared_seen, TEXT);
    json_t *st = tk_status(&g_own);
    json_t *idem = json_member(st, "idempotency");
    long long bytes = json_int(idem, "bytes"), evictions = json_int(idem, "evictions");
    assert_int_equal(json_int(idem, "max_bytes"), 8 * MIB);
    assert_int_equal(json_int(json_member(st, "config"), "idempotency_max_bytes"), 8 * MIB);
    json_decref(st);
    if (bytes > 8 * MIB || bytes < TEXT)
        fail_msg("idempotency.bytes is %lld: want the answers counted, at most 8 MiB", bytes);
    if (evictions < KEYS - 8 * MIB / TEXT)
        fail_msg("only %lld idempotency evictions for %d answers of %d bytes in 8 MiB",
                 evictions, KEYS, TEXT);
    assert_rss_within(g_own.pid, "VmRSS", rss_start, 64 * MIB, "after 150 keyed echoes");

    /* The newest key replays (the store evicted its result meanwhile or not: the entry
     * holds the buffer), without new work; the oldest was forgotten and runs again. */
    long long submitted = tk_status_tasks(&g_own, "submitted");
    http_resp *r = keyed_echo(&g_own, key, text);
    assert_status(r, 200);
    assert_string_equal(http_header_get(r, "Idempotent-Replayed"), "true");
    assert_int_equal(r->body_len, TEXT + 2);
    assert_int_equal(r->body[1], 'k');
    http_resp_free(r);
    assert_int_equal(tk_status_tasks(&g_own, "submitted"), submitted);
    snprintf(key, sizeof key, "echo-%d-%d", (int)getpid(), 0);
    r = keyed_echo(&g_own, key, text);
    assert_status(r, 200);
    assert_null(http_header_get(r, "Idempotent-Replayed"));
    http_resp_free(r);
    assert_int_equal(tk_status_tasks(&g_own, "submitted"), submitted + 1);
    free(text);
    stop_own();
}

/* ================================================================ remote registrations */

/* A one-request-at-a-time HTTP endpoint the test drives itself, so that a remote call can
 * be held in flight for exactly as long as the test needs: listen, accept one request,
 * answer it when told. */
static int endpoint_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        fail_msg("endpoint: %s", strerror(errno));
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Accepts one connection and reads one request (headers and Content-Length body); returns
 * the connection, and the request text in *text (new, free()). Fails after timeout_s. */
static int endpoint_accept(int lfd, double timeout_s, char **text)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, (int)(timeout_s * 1000)) != 1)
        fail_msg("endpoint: no request came within %.0f s", timeout_s);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        fail_msg("endpoint: accept: %s", strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        buf[n] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t want = (size_t)(end + 4 - buf) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
            if (n >= want)
                break;
        }
        struct pollfd q = {.fd = fd, .events = POLLIN};
        if (n == cap || poll(&q, 1, (int)(timeout_s * 1000)) != 1)
            fail_msg("endpoint: the request did not come whole");
        ssize_t got = read(fd, buf + n, cap - n);
        if (got <= 0)
            fail_msg("endpoint: the connection closed mid-request");
        n += (size_t)got;
    }
    *text = buf;
    return fd;
}

static void endpoint_answer(int fd, const char *json)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     strlen(json));
    if (write(fd, head, (size_t)n) != n || write(fd, json, strlen(json)) != (ssize_t)strlen(json))
        fail_msg("endpoint: write: %s", strerror(errno));
    close(fd);
}

static void put_registration(const char *path, int port, const char *url_path, long want)
{
    char *body = NULL;
    if (asprintf(&body, "{\"url\":\"http://127.0.0.1:%d/%s\",\"timeout\":60}", port, url_path) < 0)
        fail_msg("asprintf");
    http_resp *r = http_request(&g_own, "PUT", path,
                                (const char *const[]){"Content-Type: application/json", NULL},
                                body, strlen(body));
    assert_status(r, want);
    http_resp_free(r);
    free(body);
}

/* 4,000 registrations of one remote function name with 2 KB URLs (the longest allowed), while a task runs with
 * the first: the replaced ones are freed at once, the first lives until its task is done
 * with it (and the call still goes to its URL), removal frees the last; the same for a
 * remote actor class whose actor keeps the first registration. Before, every registration
 * stayed in memory until exit (16 MB here). */
static void test_remote_registrations_freed(void **state)
{
    int port;
    int lfd = endpoint_listen(&port);
    char allow[64];
    snprintf(allow, sizeof allow, "http://127.0.0.1:%d", port);
    const char *const args[] = {"--remote-allow", allow, NULL};
    start_own(args);
    enum { REGISTRATIONS = 4000, URL = 2000 };
    long rss_start = proc_status_bytes(g_own.pid, "VmRSS");
    assert_int_equal(status_int(&g_own, "registry", "remote_functions"), 0);

    put_registration("/v1/functions/f", port, "first", 201);
    char ref[ID];
    tk_submit(&g_own, "{\"function\":\"f\",\"args\":[1]}", NULL, ref);
    char *request;
    int call = endpoint_accept(lfd, 20, &request); /* the task's call is in flight now */
    assert_non_null(strstr(request, "POST /first "));
    free(request);

    char *long_path = malloc(URL + 1);
    memset(long_path, 'p', URL);
    long_path[URL] = '\0';
    for (int i = 0; i < REGISTRATIONS; i++)
        put_registration("/v1/functions/f", port, long_path, 200);
    /* listed: the last; held by the running task: the first */
    assert_int_equal(status_int(&g_own, "registry", "remote_functions"), 2);
    http_resp *r = http_delete(&g_own, "/v1/functions/f");
    assert_status(r, 204);
    http_resp_free(r);
    assert_int_equal(status_int(&g_own, "registry", "remote_functions"), 1);
    endpoint_answer(call, "\"from the first\"");
    json_t *v = tk_value(&g_own, ref);
    tk_assert_json_eq(v, "\"from the first\"");
    json_decref(v);

    /* Classes: an actor keeps the registration it was made from. */
    assert_int_equal(status_int(&g_own, "registry", "remote_classes"), 0);
    put_registration("/v1/actor-classes/C", port, "class-first", 201);
    r = http_post_json(&g_own, "/v1/actors", "{\"class\":\"C\"}");
    assert_status(r, 201);
    char actor[ID];
    snprintf(actor, ID, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
    call = endpoint_accept(lfd, 20, &request); /* __init__ */
    free(request);
    endpoint_answer(call, "{\"result\":null,\"state\":0}");
    for (int i = 0; i < REGISTRATIONS / 4; i++)
        put_registration("/v1/actor-classes/C", port, long_path, 200);
    assert_int_equal(status_int(&g_own, "registry", "remote_classes"), 2);
    r = http_delete(&g_own, "/v1/actor-classes/C");
    assert_status(r, 204);
    http_resp_free(r);
    assert_int_equal(status_int(&g_own, "registry", "remote_classes"), 1);
    /* the actor's calls still go to the URL it was made with */
    char path[128];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/ping", actor);
    r = http_post_json(&g_own, path, "{}");
    assert_status(r, 202);
    snprintf(ref, ID, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    call = endpoint_accept(lfd, 20, &request);
    assert_non_null(strstr(request, "POST /class-first "));
    free(request);
    endpoint_answer(call, "{\"result\":\"pong\",\"state\":1}");
    v = tk_value(&g_own, ref);
    tk_assert_json_eq(v, "\"pong\"");
    json_decref(v);

    assert_rss_within(g_own.pid, "VmRSS", rss_start, 32 * MIB, "after 5,000 registrations");
    free(long_path);
    close(lfd);
    stop_own();
}

/* ================================================================ bodies in flight */

/* A streamed (chunked) body: prefix, then fill bytes, then suffix, total bytes in all. */
typedef struct stream_body {
    const char *prefix, *suffix;
    char fill;
    size_t total, sent;
} stream_body;

static size_t stream_read(char *buf, size_t size, size_t nitems, void *ctx)
{
    stream_body *b = ctx;
    size_t room = size * nitems, n = 0, plen = strlen(b->prefix), slen = strlen(b->suffix);
    while (n < room && b->sent < b->total) {
        size_t at = b->sent;
        if (at < plen) {
            buf[n++] = b->prefix[at];
        } else if (at >= b->total - slen) {
            buf[n++] = b->suffix[at - (b->total - slen)];
        } else {
            size_t run = b->total - slen - at;
            if (run > room - n)
                run = room - n;
            memset(buf + n, b->fill, run);
            n += run;
            b->sent += run;
            continue;
        }
        b->sent++;
    }
    return n;
}

/* One request of a parallel run, on its own thread. */
typedef struct client {
    const rayd_server *srv;
    const char *method, *path, *content_type;
    stream_body stream;     /* streamed when stream.total > 0 */
    const char *body;       /* else this body */
    size_t body_len;
    long status;            /* answers */
    bool retry_after;
    char title[64];
} client;

static void *client_run(void *arg)
{
    client *c = arg;
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", c->content_type);
    const char *h[] = {ct, NULL};
    http_opts o = {.method = c->method, .path = c->path, .headers = h, .timeout_ms = 120000,
                   .soft = true};
    if (c->stream.total) {
        o.read_fn = stream_read;
        o.read_ctx = &c->stream;
        o.upload_size = -1; /* chunked */
    } else {
        o.body = c->body;
        o.body_len = c->body_len;
        o.has_body = true;
    }
    http_resp *r = http_request_opts(c->srv, &o);
    c->status = r->status;
    c->retry_after = http_header_get(r, "Retry-After") != NULL;
    const char *title = r->json ? json_string_value(json_object_get(r->json, "title")) : NULL;
    snprintf(c->title, sizeof c->title, "%s", title ? title : "");
    http_resp_free(r);
    return NULL;
}

static void run_clients(client *cs, int n)
{
    pthread_t th[16];
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, client_run, &cs[i]);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

/* Eight parallel chunked 24 MiB JSON bodies with a 32 MiB body budget: no more than the
 * budget is held at once (the peak RSS says so), every request beyond it is refused with
 * 503 and Retry-After (or 413 once one body alone would pass the budget), none hangs, and
 * the budget is all given back. Then eight parallel chunked 64 MiB object puts at a 1 MiB
 * store: 507 each, as soon as the body passes what the store could ever take, not after
 * holding 64 MiB each (--on-full refuse). And a 24 MiB body alone goes through. */
static void test_body_budget_parallel_uploads(void **state)
{
    /* refuse: a store that spills would take the 64 MiB puts below */
    static const char *const args[] = {"--memory-limit", "1M", "--on-full", "refuse",
                                       "--body-budget", "32M", "--max-body", "256M",
                                       "--workers", "2", NULL};
    start_own(args);
    enum { CLIENTS = 8 };
    long rss_start = proc_status_bytes(g_own.pid, "VmRSS");
    assert_int_equal(status_int(&g_own, "bodies", "budget"), 32 * MIB);
    assert_int_equal(status_int(&g_own, "config", "body_budget"), 32 * MIB);

    client cs[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        cs[i] = (client){.srv = &g_own, .method = "POST", .path = "/v1/tasks",
                         .content_type = "application/json",
                         .stream = {.prefix = "{\"function\":\"len\",\"args\":[\"",
                                    .suffix = "\"]}", .fill = 'j', .total = 24 * MIB}};
    run_clients(cs, CLIENTS);
    int refused = 0;
    for (int i = 0; i < CLIENTS; i++) {
        if (cs[i].status == 503) {
            assert_string_equal(cs[i].title, "ServiceUnavailable");
            assert_true(cs[i].retry_after);
            refused++;
        } else if (cs[i].status == 413) {
            assert_string_equal(cs[i].title, "PayloadTooLarge");
            refused++;
        } else if (cs[i].status != 202) {
            fail_msg("client %d: status %ld (%s), want 202, 503 or 413", i, cs[i].status,
                     cs[i].title);
        }
    }
    if (refused == 0)
        fail_msg("8 parallel 24 MiB bodies all went through a 32 MiB body budget");
    assert_true(status_int(&g_own, "bodies", "refused") >= refused);
    wait_status_at_most(&g_own, "bodies", "in_use", 0, 10);
    assert_rss_within(g_own.pid, "VmHWM", rss_start, 32 * MIB + 64 * MIB,
                      "peak during 8 parallel 24 MiB JSON bodies");

    /* Object puts the store can never take: refused once past its limit, 507. */
    for (int i = 0; i < CLIENTS; i++)
        cs[i] = (client){.srv = &g_own, .method = "POST", .path = "/v1/objects",
                         .content_type = "application/octet-stream",
                         .stream = {.prefix = "", .suffix = "", .fill = 'o', .total = 64 * MIB}};
    run_clients(cs, CLIENTS);
    for (int i = 0; i < CLIENTS; i++) {
        if (cs[i].status != 507 || strcmp(cs[i].title, "ObjectStoreFull") != 0)
            fail_msg("object put %d: status %ld (%s), want 507 ObjectStoreFull", i, cs[i].status,
                     cs[i].title);
    }
    wait_status_at_most(&g_own, "bodies", "in_use", 0, 10);
    assert_rss_within(g_own.pid, "VmHWM", rss_start, 32 * MIB + 64 * MIB,
                      "peak during 8 parallel 64 MiB object puts");

    /* Everything was given back: a 24 MiB body alone goes through. */
    cs[0] = (client){.srv = &g_own, .method = "POST", .path = "/v1/tasks",
                     .content_type = "application/json",
                     .stream = {.prefix = "{\"function\":\"len\",\"args\":[\"",
                                .suffix = "\"]}", .fill = 'j', .total = 24 * MIB}};
    run_clients(cs, 1);
    assert_int_equal(cs[0].status, 202);
    stop_own();
}

/* The value of one /metrics sample (a line "name value"), -1 when absent. */
static double metric(const rayd_server *s, const char *name)
{
    http_resp *r = http_get(s, "/metrics");
    double v = -1;
    size_t n = strlen(name);
    for (const char *p = r->body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ') {
            v = atof(p + n + 1);
            break;
        }
    http_resp_free(r);
    return v;
}

/* Six batch gets of 100,000 copies of one pending ref (about 24 MB each while parked) at a
 * 64 MiB body budget: two or so park, the rest are refused with 503 and Retry-After
 * instead of each holding its share beyond the limit; the parked ones answer when the ref
 * resolves. */
static void test_body_budget_parked_requests(void **state)
{
    static const char *const args[] = {"--body-budget", "64M", "--workers", "2", NULL};
    start_own(args);
    enum { CLIENTS = 6, REFS = 100000 };
    long rss_start = proc_status_bytes(g_own.pid, "VmRSS");
    char task[ID], ref[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[60]}", task, ref);
    size_t cap = (size_t)REFS * (strlen(ref) + 3) + 64, n = 0;
    char *body = malloc(cap);
    n += (size_t)sprintf(body, "{\"timeout\":60,\"refs\":[");
    for (int i = 0; i < REFS; i++)
        n += (size_t)sprintf(body + n, "%s\"%s\"", i ? "," : "", ref);
    n += (size_t)sprintf(body + n, "]}");

    client cs[CLIENTS];
    pthread_t th[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        cs[i] = (client){.srv = &g_own, .method = "POST", .path = "/v1/objects/get",
                         .content_type = "application/json", .body = body, .body_len = n};
        pthread_create(&th[i], NULL, client_run, &cs[i]);
    }
    /* Every request is either parked or refused: the server says so. */
    double end = now_s() + 60;
    long long refused = 0;
    double parked = 0;
    while ((parked = metric(&g_own, "rayd_parked_requests")) +
               (double)(refused = status_int(&g_own, "bodies", "refused")) < CLIENTS) {
        if (now_s() > end)
            fail_msg("after 60 s: %.0f parked, %lld refused of %d", parked, refused, CLIENTS);
        sleep_s(0.02);
    }
    if (refused == 0)
        fail_msg("all %d batch gets of %d refs parked within a 64 MiB body budget", CLIENTS,
                 REFS);
    long long in_use = status_int(&g_own, "bodies", "in_use");
    if (parked < 1 || in_use > 64 * MIB || in_use < (long long)parked * (long long)n)
        fail_msg("%.0f parked holding %lld bytes of the budget (bodies of %zu bytes)", parked,
                 in_use, n);
    assert_rss_within(g_own.pid, "VmHWM", rss_start, 64 * MIB + 64 * MIB,
                      "peak with parked batch gets");
    /* The ref resolves (cancelled): the parked ones answer. */
    char path[128];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", task);
    http_resp *r = http_request(&g_own, "POST", path, NULL, NULL, 0);
    assert_status(r, 202);
    http_resp_free(r);
    int answered = 0, refused_seen = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        if (cs[i].status == 200) {
            answered++;
        } else if (cs[i].status == 503) {
            assert_true(cs[i].retry_after);
            refused_seen++;
        } else {
            fail_msg("batch get %d: status %ld (%s)", i, cs[i].status, cs[i].title);
        }
    }
    assert_int_equal(answered, (int)parked);
    assert_int_equal(refused_seen, (int)refused);
    wait_status_at_most(&g_own, "bodies", "in_use", 0, 10);
    free(body);
    stop_own();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_errors_count_and_are_evicted, own_teardown),
        cmocka_unit_test_teardown(test_idempotency_bounded_in_bytes, own_teardown),
        cmocka_unit_test_teardown(test_body_budget_parallel_uploads, own_teardown),
        cmocka_unit_test_teardown(test_body_budget_parked_requests, own_teardown),
        cmocka_unit_test_teardown(test_remote_registrations_freed, own_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
