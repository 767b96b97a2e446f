/* API tests of the server's limits, each hit on a real server started with a small value and
 * answered as README.md ("Running it in production", the configuration table) says:
 *
 *   --connection-limit    connections beyond it are not served (refused, closed, or held
 *                         unanswered by the kernel's backlog); once some close, it serves again
 *   --connection-timeout  a slowloris client (half a request line, then nothing) is cut off
 *                         after about the timeout; a parked request is not idle
 *   --max-body            413 PayloadTooLarge from Content-Length before the body; a chunked
 *                         body over the limit is read, discarded and answered 413 too
 *   --max-parked          the request beyond it is 429 TooManyRequests with Retry-After; by
 *                         default it stays below the connection limit; a parked client that
 *                         leaves frees its slot at once
 *   --admin-port          /healthz, /readyz and /metrics answer there while parked requests
 *                         take every connection of the API port
 *   --max-pending-tasks   429 with Retry-After (single and batch), room again once tasks end
 *   max_pending_calls     (actor option) 429 with Retry-After
 *   --max-wait            caps every longer wait (GET ?timeout=, Prefer: wait, wait, get)
 *
 * Every test runs its own server, checks /healthz and /v1/status after the limit was hit,
 * and stops it with SIGTERM expecting exit status 0. */
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"

#define ID TK_ID_SIZE

/* The server of the running test; the teardown kills one a failed test left running. */
static rayd_server g_own;

/* A failed test leaves its server running: SIGTERM (it runs with a short drain timeout),
 * so that a clean shutdown is still checked (and its memory, under tests/valgrind). */
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
    if (rayd_start(&g_own, args, env) != 0)
        fail_msg("rayd did not start");
}

/* SIGTERM, and a clean exit (0) is part of every test. */
static void stop_own(void)
{
    int st = rayd_stop(&g_own);
    g_own.pid = 0;
    if (st != 0)
        fail_msg("rayd exited with status %d after SIGTERM (want 0)", st);
}

/* ================================================================ raw sockets */

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1; /* refused: the caller decides */
    }
    return fd;
}

static void send_all(int fd, const char *text)
{
    size_t len = strlen(text), sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, text + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* the server may have closed; the read side tells */
        sent += (size_t)n;
    }
}

enum { SOCK_SILENT = 0, SOCK_DATA = 1, SOCK_CLOSED = 2 };

/* Waits up to timeout_s for the socket to become readable: SOCK_DATA (bytes copied into
 * buf, NUL-terminated, at most n-1), SOCK_CLOSED (EOF or reset), or SOCK_SILENT. */
static int sock_wait(int fd, double timeout_s, char *buf, size_t n)
{
    double deadline = now_s() + timeout_s;
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0)
            return SOCK_SILENT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        char tmp[4096];
        ssize_t got = recv(fd, buf ? buf : tmp, buf ? n - 1 : sizeof tmp, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return SOCK_CLOSED;
        if (buf)
            buf[got] = '\0';
        return SOCK_DATA;
    }
}

/* ================================================================ helpers */

/* /healthz 200, /readyz 200 and a /v1/status whose figures are sane: counters present and
 * not negative, no task left pending and no worker busy (polled up to 5 s: a cancelled task's
 * worker returns asynchronously). */
static json_t *check_sane(const rayd_server *s)
{
    http_resp *r = http_get(s, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
    r = http_get(s, "/readyz");
    assert_status(r, 200);
    http_resp_free(r);
    json_t *st = NULL;
    for (double deadline = now_s() + 5;;) {
        json_decref(st);
        st = tk_status(s);
        json_t *sc = json_member(st, "scheduler");
        if ((json_int(json_member(st, "tasks"), "pending") == 0 && json_int(sc, "busy") == 0 &&
             json_int(sc, "queued") == 0) ||
            now_s() > deadline)
            break;
        sleep_s(0.02);
    }
    json_t *tasks = json_member(st, "tasks");
    if (json_int(tasks, "pending") != 0)
        fail_msg("status.tasks.pending is %lld after every task ended",
                 json_int(tasks, "pending"));
    static const char *const task_keys[] = {"submitted", "finished", "failed", "cancelled",
                                            NULL};
    for (size_t i = 0; task_keys[i]; i++)
        if (json_int(tasks, task_keys[i]) < 0)
            fail_msg("status.tasks.%s is negative", task_keys[i]);
    long long ended = json_int(tasks, "finished") + json_int(tasks, "failed") +
                      json_int(tasks, "cancelled");
    if (ended != json_int(tasks, "submitted"))
        fail_msg("status.tasks: finished+failed+cancelled = %lld, submitted = %lld", ended,
                 json_int(tasks, "submitted"));
    json_t *store = json_member(st, "object_store");
    if (json_int(store, "objects") < 0 || json_int(store, "bytes") < 0 ||
        json_int(store, "pending") < 0)
        fail_msg("status.object_store has a negative figure");
    json_t *sched = json_member(st, "scheduler");
    if (json_int(sched, "busy") != 0 || json_int(sched, "queued") != 0)
        fail_msg("scheduler busy %lld queued %lld with nothing running",
                 json_int(sched, "busy"), json_int(sched, "queued"));
    return st; /* the caller may check its config */
}

static void check_sane_free(const rayd_server *s)
{
    json_decref(check_sane(s));
}

/* Retry-After: a positive integer of seconds. */
static void assert_retry_after(const http_resp *r)
{
    const char *ra = http_header_get(r, "Retry-After");
    if (!ra)
        fail_msg("%ld %s without Retry-After", r->status, r->body);
    char *end;
    long v = strtol(ra, &end, 10);
    if (end == ra || *end || v < 1)
        fail_msg("Retry-After is '%s', want a positive number of seconds", ra);
}

static void cancel_task(const rayd_server *s, const char *task_id)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", task_id);
    http_resp *r = http_request(s, "POST", path, NULL, NULL, 0);
    if (r->status != 202 && r->status != 409)
        fail_msg("cancel %s: %ld %s", task_id, r->status, r->body);
    http_resp_free(r);
}

/* rayd_parked_requests from /metrics. */
static double parked_now(const rayd_server *s)
{
    http_resp *r = http_get(s, "/metrics");
    assert_status(r, 200);
    const char *p = strstr(r->body, "\nrayd_parked_requests ");
    if (!p) {
        http_resp_free(r);
        fail_msg("/metrics has no rayd_parked_requests sample");
    }
    double v = strtod(p + strlen("\nrayd_parked_requests "), NULL);
    http_resp_free(r);
    return v;
}

static void wait_parked(const rayd_server *s, double want, double timeout_s)
{
    double v = -1;
    for (double deadline = now_s() + timeout_s; now_s() < deadline;) {
        v = parked_now(s);
        if (v == want)
            return;
        sleep_s(0.01);
    }
    fail_msg("rayd_parked_requests is %g, waited for %g", v, want);
}

/* A GET in another thread. */
typedef struct bg_get {
    const rayd_server *s;
    char path[200];
    long status;
    double took;
    char error[CURL_ERROR_SIZE];
    pthread_t th;
} bg_get;

static void *bg_get_main(void *arg)
{
    bg_get *g = arg;
    double t0 = now_s();
    http_opts o = {.path = g->path, .soft = true, .timeout_ms = 30000};
    http_resp *r = http_request_opts(g->s, &o);
    g->took = now_s() - t0;
    g->status = r->status;
    snprintf(g->error, sizeof g->error, "%s", r->error);
    http_resp_free(r);
    return NULL;
}

static void bg_get_start(bg_get *g, const rayd_server *s, const char *path)
{
    memset(g, 0, sizeof *g);
    g->s = s;
    snprintf(g->path, sizeof g->path, "%s", path);
    assert_int_equal(pthread_create(&g->th, NULL, bg_get_main, g), 0);
}

/* ================================================================ --connection-limit */

#define CONN_LIMIT 6
#define CONN_EXTRA 3

static void test_connection_limit(void **state)
{
    static const char *const args[] = {"--connection-limit", "6", "--http-threads", "2", NULL};
    start_own(args);
    static const char get_healthz[] =
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    char buf[512];

    /* N-1 idle connections: one more is still served */
    int idle[CONN_LIMIT];
    for (int i = 0; i < CONN_LIMIT - 1; i++) {
        idle[i] = tcp_connect(g_own.port);
        if (idle[i] < 0)
            fail_msg("connection %d of %d refused: %s", i + 1, CONN_LIMIT - 1, strerror(errno));
    }
    sleep_s(0.3); /* let the server accept them */
    int fd = tcp_connect(g_own.port);
    assert_true(fd >= 0);
    send_all(fd, get_healthz);
    int got = sock_wait(fd, 3.0, buf, sizeof buf);
    close(fd);
    if (got != SOCK_DATA || strncmp(buf, "HTTP/1.1 200", 12) != 0)
        fail_msg("with %d of %d connections open, a request was not served (%s)",
                 CONN_LIMIT - 1, CONN_LIMIT, got == SOCK_CLOSED ? "closed" : "silent");
    sleep_s(0.3); /* the served connection closes and leaves its slot */

    /* the N-th idle connection fills the limit: the extra ones are not served */
    idle[CONN_LIMIT - 1] = tcp_connect(g_own.port);
    assert_true(idle[CONN_LIMIT - 1] >= 0);
    sleep_s(0.3);
    int extra[CONN_EXTRA];
    int how[CONN_EXTRA];
    for (int i = 0; i < CONN_EXTRA; i++) {
        extra[i] = tcp_connect(g_own.port);
        if (extra[i] < 0) {
            how[i] = SOCK_CLOSED; /* refused at connect: fine */
            continue;
        }
        send_all(extra[i], get_healthz);
    }
    for (int i = 0; i < CONN_EXTRA; i++) {
        if (extra[i] < 0)
            continue;
        how[i] = sock_wait(extra[i], i == 0 ? 1.0 : 0.2, buf, sizeof buf);
        if (how[i] == SOCK_DATA)
            fail_msg("connection %d beyond --connection-limit %d was served: %.60s",
                     CONN_LIMIT + 1 + i, CONN_LIMIT, buf);
    }
    fprintf(stderr, "beyond the limit: %s, %s, %s\n",
            how[0] == SOCK_CLOSED ? "closed/refused" : "held unanswered",
            how[1] == SOCK_CLOSED ? "closed/refused" : "held unanswered",
            how[2] == SOCK_CLOSED ? "closed/refused" : "held unanswered");

    /* close some idle ones: the server serves again */
    for (int i = 0; i < CONN_EXTRA; i++)
        close(idle[i]);
    /* the extra ones still open are either served now (they were held in the backlog) or
     * closed; none may stay silent */
    for (int i = 0; i < CONN_EXTRA; i++) {
        if (extra[i] < 0)
            continue;
        if (how[i] == SOCK_SILENT) {
            int later = sock_wait(extra[i], 5.0, buf, sizeof buf);
            if (later == SOCK_SILENT)
                fail_msg("a held connection was neither served nor closed after room freed");
            if (later == SOCK_DATA && strncmp(buf, "HTTP/1.1 200", 12) != 0)
                fail_msg("a held connection got %.60s", buf);
        }
        close(extra[i]);
    }
    sleep_s(0.3);
    double t0 = now_s();
    http_opts o = {.path = "/healthz", .timeout_ms = 5000};
    http_resp *r = http_request_opts(&g_own, &o);
    assert_status(r, 200);
    http_resp_free(r);
    if (now_s() - t0 > 1.0)
        fail_msg("/healthz took %.2f s after connections were freed", now_s() - t0);
    for (int i = CONN_EXTRA; i < CONN_LIMIT; i++)
        close(idle[i]);
    sleep_s(0.2);
    json_t *st = check_sane(&g_own);
    assert_int_equal(json_int(json_member(st, "config"), "connection_limit"), CONN_LIMIT);
    json_decref(st);
    stop_own();
}

/* ================================================================ --connection-timeout */

/* Seconds until the server closes a connection that sent `text` and then nothing. */
static double time_to_close(int port, const char *text, double max_s)
{
    int fd = tcp_connect(port);
    if (fd < 0)
        fail_msg("connect: %s", strerror(errno));
    double t0 = now_s();
    if (*text)
        send_all(fd, text);
    char buf[1024];
    int got;
    /* a response (the server may answer 408 before closing) is read past */
    while ((got = sock_wait(fd, max_s - (now_s() - t0), buf, sizeof buf)) == SOCK_DATA)
        ;
    double took = now_s() - t0;
    close(fd);
    return got == SOCK_CLOSED ? took : -1;
}

static void test_connection_timeout_slowloris(void **state)
{
    static const char *const args[] = {"--connection-timeout", "1", NULL};
    start_own(args);
    double half = time_to_close(g_own.port, "GET /healt", 8);
    double nothing = time_to_close(g_own.port, "", 8);
    double headers = time_to_close(
        g_own.port, "POST /v1/objects HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc", 8);
    fprintf(stderr, "closed after: half request line %.2f s, nothing %.2f s, half body %.2f s\n",
            half, nothing, headers);
    if (half < 0)
        fail_msg("a half request line was not cut off within 8 s (--connection-timeout 1)");
    if (half < 0.8 || half > 3.0)
        fail_msg("a half request line was cut off after %.2f s, want about 1 s", half);
    if (nothing < 0.8 || nothing > 3.0)
        fail_msg("a silent connection was closed after %.2f s, want about 1 s", nothing);
    if (headers < 0.8 || headers > 3.0)
        fail_msg("a stalled body was cut off after %.2f s, want about 1 s", headers);

    /* the server kept serving meanwhile, and a parked request is not idle: a GET waiting
     * 2.5 s on a pending ref gets its 202, not a cut at 1 s */
    char task[ID], ref[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", task, ref);
    char path[160];
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=2.5", ref);
    double t0 = now_s();
    http_resp *r = http_get(&g_own, path);
    double took = now_s() - t0;
    assert_status(r, 202);
    http_resp_free(r);
    if (took < 2.3)
        fail_msg("a parked GET ?timeout=2.5 ended after %.2f s", took);
    cancel_task(&g_own, task);
    json_decref(tk_wait_ended(&g_own, task, 5));
    json_t *st = check_sane(&g_own);
    assert_true(json_num(json_member(st, "config"), "connection_timeout") == 1.0);
    json_decref(st);
    stop_own();
}

/* A sub-second timeout is either refused at start-up (exit 2) or honoured (rounded up): it
 * must not turn into libmicrohttpd's 0, "no timeout at all". */
static void test_connection_timeout_subsecond(void **state)
{
    static const char *const args[] = {"--connection-timeout", "0.3", NULL};
    static const char *const env[] = {"RAYD_DRAIN_TIMEOUT=2", NULL};
    memset(&g_own, 0, sizeof g_own);
    if (rayd_start(&g_own, args, env) != 0) {
        fprintf(stderr, "--connection-timeout 0.3 is refused at start-up\n");
        return; /* refused (rayd_start printed how): fine */
    }
    double took = time_to_close(g_own.port, "GET /healt", 4);
    fprintf(stderr, "--connection-timeout 0.3: a half request line closed after %.2f s\n", took);
    if (took < 0)
        fail_msg("with --connection-timeout 0.3 a half request line was still open after 4 s: "
                 "the timeout became 0 (no timeout); /v1/status says 0.3");
    if (took > 1.6)
        fail_msg("with --connection-timeout 0.3 a stalled connection was closed after %.2f s",
                 took);
    stop_own();
}

/* ================================================================ --max-body */

#define MAX_BODY 65536

typedef struct filler {
    size_t left;
} filler;

static size_t fill_read(char *buf, size_t size, size_t nitems, void *ctx)
{
    filler *f = ctx;
    size_t n = size * nitems;
    if (n > f->left)
        n = f->left;
    memset(buf, 'x', n);
    f->left -= n;
    return n;
}

/* POST a body of len bytes; chunked (no Content-Length) when chunked. */
static http_resp *post_size(const char *path, size_t len, bool chunked, const char *ct)
{
    char ctl[128];
    snprintf(ctl, sizeof ctl, "Content-Type: %s", ct);
    const char *hdrs[] = {ctl, NULL};
    filler f = {.left = len};
    http_opts o = {.method = "POST",
                   .path = path,
                   .headers = hdrs,
                   .read_fn = fill_read,
                   .read_ctx = &f,
                   .upload_size = chunked ? -1 : (long long)len,
                   .timeout_ms = 15000};
    return http_request_opts(&g_own, &o);
}

/* The problem body of a raw response text. */
static void assert_raw_problem(const char *text, int status, const char *title)
{
    const char *body = strstr(text, "\r\n\r\n");
    if (!body)
        fail_msg("no header end in %.200s", text);
    json_t *j = json_loads(body + 4, 0, NULL);
    if (!j)
        fail_msg("the %d body is not JSON: %.200s", status, body + 4);
    const char *t = json_string_value(json_object_get(j, "title"));
    if (!t || strcmp(t, title) != 0 || json_integer_value(json_object_get(j, "status")) != status)
        fail_msg("want %d %s, got %s", status, title, body + 4);
    json_decref(j);
    if (!strcasestr(text, "\r\nContent-Type: application/problem+json"))
        fail_msg("the %d is not application/problem+json: %.300s", status, text);
}

static void test_max_body(void **state)
{
    static const char *const args[] = {"--max-body", "64K", NULL};
    start_own(args);

    /* decided from Content-Length before any body byte is sent */
    static const char *const paths[] = {"/v1/objects", "/v1/tasks", "/v1/objects/batch", NULL};
    for (size_t i = 0; paths[i]; i++) {
        char req[512];
        snprintf(req, sizeof req,
                 "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\n\r\n",
                 paths[i], 100 * MAX_BODY);
        char *text = NULL;
        double t0 = now_s();
        int st = raw_http(&g_own, req, strlen(req), 5.0, &text);
        double took = now_s() - t0;
        if (st != 413)
            fail_msg("POST %s with Content-Length %d and no body: %d (want 413 before the "
                     "body): %.300s",
                     paths[i], 100 * MAX_BODY, st, text);
        if (took > 2.0)
            fail_msg("the 413 came after %.2f s: the server waited for the body", took);
        assert_raw_problem(text, 413, "PayloadTooLarge");
        free(text);
    }

    /* Expect: 100-continue over the limit: the 413 instead of 100 Continue */
    {
        char req[256];
        snprintf(req, sizeof req,
                 "POST /v1/objects HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
                 "Expect: 100-continue\r\n\r\n",
                 2 * MAX_BODY);
        char *text = NULL;
        int st = raw_http(&g_own, req, strlen(req), 5.0, &text);
        if (st != 413)
            fail_msg("Expect: 100-continue with Content-Length over the limit got %d: %.200s", st,
                     text);
        free(text);
    }

    /* the edge: exactly the limit passes, one byte more is 413 */
    http_resp *r = post_size("/v1/objects", MAX_BODY, false, "application/octet-stream");
    assert_status(r, 201);
    assert_int_equal(json_int(r->json, "size"), MAX_BODY);
    http_resp_free(r);
    r = post_size("/v1/objects", MAX_BODY + 1, false, "application/octet-stream");
    assert_problem(r, 413, "PayloadTooLarge");
    http_resp_free(r);

    /* chunked: no Content-Length, so the server reads it, discards it and answers 413 */
    r = post_size("/v1/objects", MAX_BODY, true, "application/octet-stream");
    assert_status(r, 201);
    assert_int_equal(json_int(r->json, "size"), MAX_BODY);
    http_resp_free(r);
    r = post_size("/v1/objects", MAX_BODY + 1, true, "application/octet-stream");
    assert_problem(r, 413, "PayloadTooLarge");
    http_resp_free(r);
    r = post_size("/v1/objects", 4 * 1024 * 1024, true, "application/octet-stream");
    assert_problem(r, 413, "PayloadTooLarge");
    http_resp_free(r);
    r = post_size("/v1/tasks", 4 * 1024 * 1024, true, "application/json");
    assert_problem(r, 413, "PayloadTooLarge");
    http_resp_free(r);

    /* a chunked body over the limit on a raw keep-alive connection: 413, and the same
     * connection then serves the next request (the body was read and discarded) or is
     * closed by the server; it never hangs */
    int fd = tcp_connect(g_own.port);
    assert_true(fd >= 0);
    send_all(fd, "POST /v1/objects HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk_head[32];
    snprintf(chunk_head, sizeof chunk_head, "%x\r\n", 16384);
    char *chunk = malloc(16384 + 3);
    assert_non_null(chunk);
    memset(chunk, 'y', 16384);
    memcpy(chunk + 16384, "\r\n", 3);
    for (int i = 0; i < 8; i++) { /* 128 KiB */
        send_all(fd, chunk_head);
        send_all(fd, chunk);
    }
    free(chunk);
    send_all(fd, "0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    char *all = calloc(1, 65536);
    assert_non_null(all);
    size_t have = 0;
    char buf[8192];
    for (double deadline = now_s() + 5; now_s() < deadline;) {
        int got = sock_wait(fd, deadline - now_s(), buf, sizeof buf);
        if (got != SOCK_DATA)
            break;
        size_t n = strlen(buf);
        if (have + n < 65535) {
            memcpy(all + have, buf, n);
            have += n;
        }
    }
    close(fd);
    if (strncmp(all, "HTTP/1.1 413", 12) != 0)
        fail_msg("a chunked 128 KiB body on a raw connection got: %.300s", all);
    const char *second = strstr(all + 12, "HTTP/1.1 ");
    fprintf(stderr, "after the chunked 413 the connection %s\n",
            second ? "served the next request" : "was closed");
    if (second && strncmp(second, "HTTP/1.1 200", 12) != 0)
        fail_msg("the request after the discarded body got: %.100s", second);
    free(all);

    json_t *st = check_sane(&g_own);
    assert_int_equal(json_int(json_member(st, "config"), "max_body"), MAX_BODY);
    assert_int_equal(json_int(json_member(st, "object_store"), "objects"), 2);
    json_decref(st);
    stop_own();
}

/* ================================================================ --max-parked */

static void test_max_parked(void **state)
{
    static const char *const args[] = {"--max-parked", "3", "--workers", "2", NULL};
    start_own(args);
    char task[ID], ref[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", task, ref);
    char path[200];
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=20", ref);
    static bg_get g[3];
    for (int i = 0; i < 3; i++)
        bg_get_start(&g[i], &g_own, path);
    wait_parked(&g_own, 3, 5);

    /* the 4th, in every way of waiting */
    http_resp *r = http_get(&g_own, path);
    assert_problem(r, 429, "TooManyRequests");
    assert_retry_after(r);
    http_resp_free(r);
    char body[256];
    snprintf(body, sizeof body, "{\"refs\":[\"%s\"],\"timeout\":5}", ref);
    r = http_post_json(&g_own, "/v1/wait", body);
    assert_problem(r, 429, "TooManyRequests");
    assert_retry_after(r);
    http_resp_free(r);
    r = http_post_json(&g_own, "/v1/objects/get", body);
    assert_problem(r, 429, "TooManyRequests");
    assert_retry_after(r);
    http_resp_free(r);
    /* requests that do not wait are still served */
    r = http_get(&g_own, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=0", ref);
    r = http_get(&g_own, path);
    assert_status(r, 202);
    http_resp_free(r);
    assert_true(parked_now(&g_own) == 3);

    /* answer them: the task's cancel resolves the ref */
    cancel_task(&g_own, task);
    for (int i = 0; i < 3; i++) {
        pthread_join(g[i].th, NULL);
        if (g[i].status != 424)
            fail_msg("parked GET %d got %ld (%s), want 424 TaskCancelled", i, g[i].status,
                     g[i].error);
    }
    wait_parked(&g_own, 0, 3);

    /* parking works again: three at once, and a fourth is again 429 */
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", task, ref);
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=20", ref);
    for (int i = 0; i < 3; i++)
        bg_get_start(&g[i], &g_own, path);
    wait_parked(&g_own, 3, 5);
    r = http_get(&g_own, path);
    assert_problem(r, 429, "TooManyRequests");
    http_resp_free(r);
    cancel_task(&g_own, task);
    for (int i = 0; i < 3; i++) {
        pthread_join(g[i].th, NULL);
        assert_int_equal(g[i].status, 424);
    }
    wait_parked(&g_own, 0, 3);
    /* and a parked request that times out is answered 202 */
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", task, ref);
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=0.3", ref);
    r = http_get(&g_own, path);
    assert_status(r, 202);
    http_resp_free(r);
    cancel_task(&g_own, task);
    json_decref(tk_wait_ended(&g_own, task, 5));
    check_sane_free(&g_own);
    stop_own();
}

/* ================================================================ clients that leave */

/* A metric's value from /metrics of s (or of its admin port when admin). */
static double metric_now(const rayd_server *s, bool admin, const char *name)
{
    http_opts o = {.path = "/metrics", .base_url = admin ? s->admin_url : NULL,
                   .timeout_ms = 5000};
    http_resp *r = http_request_opts(s, &o);
    assert_status(r, 200);
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(r->body, key);
    if (!p) {
        http_resp_free(r);
        fail_msg("/metrics has no %s sample", name);
    }
    double v = strtod(p + strlen(key), NULL);
    http_resp_free(r);
    return v;
}

static void wait_metric(const rayd_server *s, bool admin, const char *name, double want,
                        double timeout_s)
{
    double v = -1;
    for (double deadline = now_s() + timeout_s; now_s() < deadline;) {
        v = metric_now(s, admin, name);
        if (v == want)
            return;
        sleep_s(0.01);
    }
    fail_msg("%s is %g, waited %g s for %g", name, v, timeout_s, want);
}

/* Opens n raw connections, each sending request (a long poll), until the server says n
 * requests are parked (read on its admin port when admin): a connection the server closed
 * (the connection limit is counted as closed ones leave) is opened again. */
static void park_raw(const rayd_server *s, bool admin, int *fds, int n, const char *request)
{
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    for (double deadline = now_s() + 10;;) {
        for (int i = 0; i < n; i++) {
            struct pollfd p = {.fd = fds[i], .events = POLLIN};
            if (fds[i] >= 0 && poll(&p, 1, 0) == 0)
                continue; /* open and silent: parked, or about to be */
            if (fds[i] >= 0)
                close(fds[i]);
            fds[i] = tcp_connect(s->port);
            if (fds[i] >= 0)
                send_all(fds[i], request);
        }
        if (metric_now(s, admin, "rayd_parked_requests") == n)
            return;
        if (now_s() > deadline)
            fail_msg("%d long polls did not all park within 10 s", n);
        sleep_s(0.01);
    }
}

/* Each raw connection gets its answer: status `status`. */
static void expect_raw_answers(int *fds, int n, int status)
{
    char want[32];
    snprintf(want, sizeof want, "HTTP/1.1 %d", status);
    for (int i = 0; i < n; i++) {
        char buf[512];
        int got = sock_wait(fds[i], 10, buf, sizeof buf);
        if (got != SOCK_DATA || strncmp(buf, want, strlen(want)) != 0)
            fail_msg("long poll %d: %s, wanted %s", i,
                     got == SOCK_DATA ? buf : got == SOCK_CLOSED ? "closed" : "no answer", want);
        close(fds[i]);
        fds[i] = -1;
    }
}

#define GONE_CLIENTS 50

/* Fifty long polls whose clients then reset (half) or close (half) their connections.
 * libmicrohttpd does not watch suspended connections, so rayd must see them go itself:
 * their parking slots come back at once, not at their 50 s deadline, and new long polls
 * are accepted again. */
static void test_parked_clients_gone_free_their_slots(void **state)
{
    static const char *const args[] = {"--max-parked", "50", "--workers", "2", NULL};
    start_own(args);
    char task[ID], ref[ID], request[256], path[200];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[60]}", task, ref);
    snprintf(request, sizeof request,
             "GET /v1/objects/%s?timeout=50 HTTP/1.1\r\nHost: t\r\n\r\n", ref);
    int fds[GONE_CLIENTS];
    park_raw(&g_own, false, fds, GONE_CLIENTS, request);
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=5", ref);
    http_resp *r = http_get(&g_own, path);
    assert_problem(r, 429, "TooManyRequests"); /* full */
    http_resp_free(r);

    for (int i = 0; i < GONE_CLIENTS; i++) {
        if (i % 2 == 0) { /* a reset: close with SO_LINGER 0 sends RST */
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(fds[i]);
    }
    wait_metric(&g_own, false, "rayd_parked_requests", 0, 5);
    assert_true(metric_now(&g_own, false, "rayd_parked_clients_gone_total") == GONE_CLIENTS);

    /* every slot is free again: fifty new long polls park, and get their answer */
    park_raw(&g_own, false, fds, GONE_CLIENTS, request);
    cancel_task(&g_own, task);
    expect_raw_answers(fds, GONE_CLIENTS, 424);
    wait_parked(&g_own, 0, 3);
    check_sane_free(&g_own);
    stop_own();
}

/* The default --max-parked stays below --connection-limit: with every parking slot taken,
 * a connection is still free, so a long poll beyond the limit gets its 429 at once (and a
 * probe its 200) instead of waiting in the listen backlog. */
static void test_max_parked_default_below_connection_limit(void **state)
{
    static const char *const args[] = {"--connection-limit", "10", "--workers", "2", NULL};
    start_own(args);
    http_resp *r = http_get(&g_own, "/v1/status");
    assert_status(r, 200);
    long long max_parked = json_int(json_member(r->json, "config"), "max_parked");
    http_resp_free(r);
    if (max_parked != 9)
        fail_msg("default max_parked is %lld with --connection-limit 10, want 9", max_parked);
    char task[ID], ref[ID], request[256], path[200];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[60]}", task, ref);
    snprintf(request, sizeof request,
             "GET /v1/objects/%s?timeout=50 HTTP/1.1\r\nHost: t\r\n\r\n", ref);
    int fds[9];
    park_raw(&g_own, false, fds, 9, request);
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=5", ref);
    http_opts o = {.path = path, .timeout_ms = 5000};
    r = http_request_opts(&g_own, &o);
    assert_problem(r, 429, "TooManyRequests");
    http_resp_free(r);
    cancel_task(&g_own, task);
    expect_raw_answers(fds, 9, 424);
    check_sane_free(&g_own);
    stop_own();
}

/* --admin-port: probes get in when parked requests take every connection of the API port
 * (--max-parked set above the connection limit on purpose). The admin port serves
 * /healthz, /readyz and /metrics, and nothing else. */
static void test_admin_port_when_parked_fill_connections(void **state)
{
    static const char *const args[] = {"--connection-limit", "8", "--max-parked", "100",
                                       "--admin-port", "0", "--workers", "2", NULL};
    start_own(args);
    if (g_own.admin_port <= 0)
        fail_msg("no admin_port in the listening line");
    char task[ID], ref[ID], request[256];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[60]}", task, ref);
    snprintf(request, sizeof request,
             "GET /v1/objects/%s?timeout=50 HTTP/1.1\r\nHost: t\r\n\r\n", ref);
    int fds[8];
    park_raw(&g_own, true, fds, 8, request); /* every connection of the API port */

    static const char *const probes[] = {"/healthz", "/readyz", "/metrics"};
    for (size_t i = 0; i < 3; i++) {
        http_opts o = {.path = probes[i], .base_url = g_own.admin_url, .timeout_ms = 3000};
        http_resp *r = http_request_opts(&g_own, &o);
        assert_status(r, 200);
        http_resp_free(r);
    }
    http_opts o = {.path = "/v1/status", .base_url = g_own.admin_url};
    http_resp *r = http_request_opts(&g_own, &o);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    o = (http_opts){.method = "POST", .path = "/healthz", .base_url = g_own.admin_url,
                    .has_body = true};
    r = http_request_opts(&g_own, &o);
    assert_problem(r, 405, "MethodNotAllowed");
    http_resp_free(r);

    /* the parked clients leave: the API port serves again */
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    wait_metric(&g_own, true, "rayd_parked_requests", 0, 5);
    r = http_get(&g_own, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
    cancel_task(&g_own, task);
    json_decref(tk_wait_ended(&g_own, task, 5));
    check_sane_free(&g_own);
    stop_own();
}

/* Prefer: wait on a submission when parking is full: the work is accepted before the wait
 * would park, so the answer must say so (the 202 receipt, as without the header), or, if it
 * is a 429, nothing may have been accepted: a client retries a 429 and would run it twice. */
static void test_max_parked_prefer_wait_submission(void **state)
{
    static const char *const args[] = {"--max-parked", "1", "--workers", "2", NULL};
    start_own(args);
    char task[ID], ref[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", task, ref);
    char path[200];
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=20", ref);
    static bg_get g;
    bg_get_start(&g, &g_own, path);
    wait_parked(&g_own, 1, 5);

    long long s0 = tk_status_tasks(&g_own, "submitted");
    const char *wait2[] = {"Prefer: wait=2", "Content-Type: application/json", NULL};
    static const char slow[] = "{\"function\":\"sleep\",\"args\":[0.5]}";
    http_resp *r = http_request(&g_own, "POST", "/v1/tasks", wait2, slow, strlen(slow));
    long status = r->status;
    long long s1 = tk_status_tasks(&g_own, "submitted");
    char bad[1024] = "";
    if (status == 429 && s1 != s0)
        snprintf(bad, sizeof bad,
                 "POST /v1/tasks with Prefer: wait=2 while --max-parked is reached answered "
                 "429 TooManyRequests, yet the task was accepted (tasks.submitted %lld -> "
                 "%lld): a retry runs it twice; want 202 with the receipt. ",
                 s0, s1);
    if (status != 202 && status != 429)
        fail_msg("POST /v1/tasks with Prefer: wait while parking is full: %ld %s", status,
                 r->body);
    http_resp_free(r);

    /* an actor call behind a busy call: the same */
    r = http_post_json(&g_own, "/v1/actors", "{\"class\":\"Counter\",\"args\":[0]}");
    assert_status(r, 201);
    char actor[ID];
    snprintf(actor, sizeof actor, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
    char cpath[200], body[200];
    snprintf(cpath, sizeof cpath, "/v1/actors/%s/methods/incr", actor);
    snprintf(body, sizeof body, "{\"args\":[{\"$ref\":\"%s\"}]}", ref);
    r = http_post_json(&g_own, cpath, body); /* holds back the calls behind it */
    assert_status(r, 202);
    http_resp_free(r);
    static const char one[] = "{\"args\":[1]}";
    r = http_request(&g_own, "POST", cpath, wait2, one, strlen(one));
    status = r->status;
    http_resp_free(r);
    char apath[160];
    snprintf(apath, sizeof apath, "/v1/actors/%s", actor);
    r = http_get(&g_own, apath);
    long long pending = json_int(r->json, "calls_pending");
    http_resp_free(r);
    if (status == 429 && pending != 1)
        snprintf(bad + strlen(bad), sizeof bad - strlen(bad),
                 "An actor call with Prefer: wait=2 while --max-parked is reached answered "
                 "429, yet the call was queued (calls_pending %lld, want 1).",
                 pending);
    if (status != 202 && status != 429)
        fail_msg("an actor call with Prefer: wait while parking is full: %ld", status);

    cancel_task(&g_own, task);
    pthread_join(g.th, NULL);
    assert_int_equal(g.status, 424);
    json_decref(tk_wait_ended(&g_own, task, 5));
    if (bad[0])
        fail_msg("%s", bad);
    check_sane_free(&g_own);
    stop_own();
}

/* ================================================================ --max-pending-tasks */

static void test_max_pending_tasks(void **state)
{
    static const char *const args[] = {"--max-pending-tasks", "3", "--workers", "1", NULL};
    start_own(args);
    char tasks[3][ID], ref[ID];
    for (int i = 0; i < 3; i++)
        tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", tasks[i], ref);
    long long submitted = tk_status_tasks(&g_own, "submitted");

    http_resp *r = http_post_json(&g_own, "/v1/tasks", "{\"function\":\"add\",\"args\":[1,2]}");
    assert_problem(r, 429, "TooManyRequests");
    assert_retry_after(r);
    http_resp_free(r);
    r = http_post_json(&g_own, "/v1/tasks/batch",
                       "{\"tasks\":[{\"function\":\"add\",\"args\":[1,2]}]}");
    assert_problem(r, 429, "TooManyRequests");
    assert_retry_after(r);
    http_resp_free(r);
    const char *wait5[] = {"Prefer: wait=5", "Content-Type: application/json", NULL};
    static const char add[] = "{\"function\":\"add\",\"args\":[1,2]}";
    r = http_request(&g_own, "POST", "/v1/tasks", wait5, add, strlen(add));
    assert_problem(r, 429, "TooManyRequests");
    assert_retry_after(r);
    http_resp_free(r);
    assert_int_equal(tk_status_tasks(&g_own, "submitted"), submitted); /* nothing accepted */

    /* one ends: room for exactly one; a batch of two is refused whole */
    cancel_task(&g_own, tasks[0]);
    json_decref(tk_wait_ended(&g_own, tasks[0], 5));
    for (double deadline = now_s() + 3; tk_status_tasks(&g_own, "pending") > 2;) {
        if (now_s() > deadline)
            fail_msg("tasks.pending stays %lld after a cancel",
                     tk_status_tasks(&g_own, "pending"));
        sleep_s(0.01);
    }
    r = http_post_json(&g_own, "/v1/tasks/batch",
                       "{\"tasks\":[{\"function\":\"sleep\",\"args\":[30]},"
                       "{\"function\":\"sleep\",\"args\":[30]}]}");
    assert_problem(r, 429, "TooManyRequests");
    assert_retry_after(r);
    http_resp_free(r);
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", tasks[0], ref);
    r = http_post_json(&g_own, "/v1/tasks", add);
    assert_problem(r, 429, "TooManyRequests");
    http_resp_free(r);

    /* all end: submission works again, as a batch of three too */
    for (int i = 0; i < 3; i++)
        cancel_task(&g_own, tasks[i]);
    for (int i = 0; i < 3; i++)
        json_decref(tk_wait_ended(&g_own, tasks[i], 5));
    for (double deadline = now_s() + 3; tk_status_tasks(&g_own, "pending") > 0;) {
        if (now_s() > deadline)
            fail_msg("tasks.pending stays %lld after every task ended",
                     tk_status_tasks(&g_own, "pending"));
        sleep_s(0.01);
    }
    r = http_request(&g_own, "POST", "/v1/tasks", wait5, add, strlen(add));
    assert_status(r, 200);
    assert_string_equal(r->body, "3");
    http_resp_free(r);
    r = http_post_json(&g_own, "/v1/tasks/batch",
                       "{\"tasks\":[{\"function\":\"add\",\"args\":[1,1]},"
                       "{\"function\":\"add\",\"args\":[2,2]},"
                       "{\"function\":\"add\",\"args\":[3,3]}]}");
    assert_status(r, 202);
    json_t *list = json_member(r->json, "tasks");
    assert_int_equal(json_array_size(list), 3);
    json_t *v = tk_value(&g_own, json_str(json_array_get(list, 2), "ref"));
    tk_assert_json_eq(v, "6");
    json_decref(v);
    http_resp_free(r);
    json_t *st = check_sane(&g_own);
    assert_int_equal(json_int(json_member(st, "config"), "max_pending_tasks"), 3);
    json_decref(st);
    stop_own();
}

/* ================================================================ actor max_pending_calls */

static http_resp *actor_call(const char *actor, const char *method, const char *body,
                             const char *const *headers)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/%s", actor, method);
    const char *h[4] = {"Content-Type: application/json", NULL, NULL, NULL};
    for (int i = 0; headers && headers[i] && i < 2; i++)
        h[i + 1] = headers[i];
    return http_request(&g_own, "POST", path, h, body, strlen(body));
}

static void test_actor_max_pending_calls(void **state)
{
    static const char *const args[] = {"--workers", "2", NULL};
    start_own(args);
    http_resp *r = http_post_json(
        &g_own, "/v1/actors",
        "{\"class\":\"Counter\",\"args\":[0],\"options\":{\"max_pending_calls\":2}}");
    assert_status(r, 201);
    char actor[ID];
    snprintf(actor, sizeof actor, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
    /* the actor is up before the calls (creation is not a pending call) */
    const char *wait5[] = {"Prefer: wait=5", NULL};
    r = actor_call(actor, "get", "{}", wait5);
    assert_status(r, 200);
    http_resp_free(r);

    /* call 1 waits for its argument (a sleeping task), call 2 queues behind it */
    char task[ID], ref[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", task, ref);
    char body[256];
    snprintf(body, sizeof body, "{\"args\":[{\"$ref\":\"%s\"}]}", ref);
    r = actor_call(actor, "incr", body, NULL);
    assert_status(r, 202);
    char call1[ID];
    snprintf(call1, sizeof call1, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    r = actor_call(actor, "incr", "{\"args\":[5]}", NULL);
    assert_status(r, 202);
    char call2[ID];
    snprintf(call2, sizeof call2, "%s", json_str(r->json, "ref"));
    http_resp_free(r);

    /* the third is refused, with and without Prefer: wait */
    r = actor_call(actor, "incr", "{\"args\":[100]}", NULL);
    assert_problem(r, 429, "TooManyRequests");
    assert_retry_after(r);
    assert_string_equal(json_str(r->json, "actor_id"), actor);
    http_resp_free(r);
    r = actor_call(actor, "get", "{}", wait5);
    assert_problem(r, 429, "TooManyRequests");
    assert_retry_after(r);
    http_resp_free(r);
    char apath[160];
    snprintf(apath, sizeof apath, "/v1/actors/%s", actor);
    r = http_get(&g_own, apath);
    assert_status(r, 200);
    assert_int_equal(json_int(r->json, "calls_pending"), 2);
    http_resp_free(r);

    /* the argument fails (cancelled): call 1 fails, call 2 runs; calls are taken again */
    cancel_task(&g_own, task);
    http_resp_free(tk_error(&g_own, call1, "TaskError"));
    json_t *v = tk_value(&g_own, call2);
    tk_assert_json_eq(v, "5");
    json_decref(v);
    r = actor_call(actor, "incr", "{\"args\":[1]}", wait5);
    assert_status(r, 200);
    assert_string_equal(r->body, "6");
    http_resp_free(r);
    r = http_get(&g_own, apath);
    assert_status(r, 200);
    assert_int_equal(json_int(r->json, "calls_pending"), 0);
    http_resp_free(r);
    check_sane_free(&g_own);
    stop_own();
}

/* ================================================================ --max-wait */

static void assert_took(double took, double want, const char *what)
{
    if (took < want - 0.1 || took > want + 1.0)
        fail_msg("%s answered after %.2f s, want about %.2f s (--max-wait)", what, took, want);
}

static void test_max_wait_caps_timeouts(void **state)
{
    static const char *const args[] = {"--max-wait", "0.5", NULL};
    start_own(args);
    char task[ID], ref[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", task, ref);

    char path[200];
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=30", ref);
    double t0 = now_s();
    http_resp *r = http_get(&g_own, path);
    double took = now_s() - t0;
    assert_status(r, 202);
    assert_string_equal(json_str(r->json, "state"), "pending");
    http_resp_free(r);
    assert_took(took, 0.5, "GET ?timeout=30");

    /* no timeout: the server maximum */
    snprintf(path, sizeof path, "/v1/objects/%s", ref);
    t0 = now_s();
    r = http_get(&g_own, path);
    took = now_s() - t0;
    assert_status(r, 202);
    http_resp_free(r);
    assert_took(took, 0.5, "GET without ?timeout");

    char body[256];
    snprintf(body, sizeof body, "{\"refs\":[\"%s\"],\"timeout\":30}", ref);
    t0 = now_s();
    r = http_post_json(&g_own, "/v1/wait", body);
    took = now_s() - t0;
    assert_status(r, 200);
    assert_int_equal(json_array_size(json_member(r->json, "not_ready")), 1);
    http_resp_free(r);
    assert_took(took, 0.5, "POST /v1/wait timeout 30");

    t0 = now_s();
    r = http_post_json(&g_own, "/v1/objects/get", body);
    took = now_s() - t0;
    assert_status(r, 200);
    http_resp_free(r);
    assert_took(took, 0.5, "POST /v1/objects/get timeout 30");

    const char *wait30[] = {"Prefer: wait=30", "Content-Type: application/json", NULL};
    static const char sleep30[] = "{\"function\":\"sleep\",\"args\":[30]}";
    t0 = now_s();
    r = http_request(&g_own, "POST", "/v1/tasks", wait30, sleep30, strlen(sleep30));
    took = now_s() - t0;
    assert_status(r, 202);
    char task2[ID];
    snprintf(task2, sizeof task2, "%s", json_str(r->json, "task_id"));
    http_resp_free(r);
    assert_took(took, 0.5, "POST /v1/tasks with Prefer: wait=30");

    cancel_task(&g_own, task);
    cancel_task(&g_own, task2);
    json_decref(tk_wait_ended(&g_own, task, 5));
    json_decref(tk_wait_ended(&g_own, task2, 5));
    json_t *st = check_sane(&g_own);
    assert_true(json_num(json_member(st, "config"), "max_wait") == 0.5);
    json_decref(st);
    stop_own();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_connection_limit, own_teardown),
        cmocka_unit_test_teardown(test_connection_timeout_slowloris, own_teardown),
        cmocka_unit_test_teardown(test_connection_timeout_subsecond, own_teardown),
        cmocka_unit_test_teardown(test_max_body, own_teardown),
        cmocka_unit_test_teardown(test_max_parked, own_teardown),
        cmocka_unit_test_teardown(test_max_parked_prefer_wait_submission, own_teardown),
        cmocka_unit_test_teardown(test_parked_clients_gone_free_their_slots, own_teardown),
        cmocka_unit_test_teardown(test_max_parked_default_below_connection_limit, own_teardown),
        cmocka_unit_test_teardown(test_admin_port_when_parked_fill_connections, own_teardown),
        cmocka_unit_test_teardown(test_max_pending_tasks, own_teardown),
        cmocka_unit_test_teardown(test_actor_max_pending_calls, own_teardown),
        cmocka_unit_test_teardown(test_max_wait_caps_timeouts, own_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
