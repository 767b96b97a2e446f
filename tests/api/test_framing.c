/* API tests of request framing and of what a request may carry, spoken as raw HTTP/1.1 over
 * TCP (a client library would refuse to send most of these):
 *
 *   - ambiguous framing (two Content-Length values, whitespace before a colon, a
 *     Transfer-Encoding other than exactly chunked) is answered at once, 400 or 501, and the
 *     connection closed, with nothing hidden in the body served or stored;
 *   - a request target with too many query arguments or too long is 414 at once;
 *   - a body answered early (413, 507) is read away after the answer (lingering close), so
 *     a client that writes its whole body before it reads gets the answer, not a reset;
 *   - a Content-Type that is not header text is 400 (object put and batch put), and content
 *     types are kept beyond the intern table's 4,096;
 *   - If-None-Match is parsed as RFC 9110 entity-tags ("a,*" is one tag, not a wildcard);
 *   - remote registrations refuse URLs that could never be called (spaces, CR/LF).
 *
 * Every answer must arrive: the sockets have a 10 s receive timeout only as a safety net,
 * and a test that reaches it fails. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/api/support/harness.h"

#define MiB (1024 * 1024)
/* Far more than any answer here needs: reaching it fails the test. */
#define SAFETY_TIMEOUT_S 10

/* --max-body 16M, --memory-limit 4M --on-full refuse: a 20 MiB body is 413, an 8 MiB one 507. */
static rayd_server g_srv;

/* ---------------------------------------------------------------- raw HTTP */

typedef struct raw_answer {
    int status;        /* of the first response; 0 when none arrived */
    char *text;        /* every byte received (new, NUL-terminated) */
    size_t len;
    size_t first_len;  /* bytes of the first response (head and Content-Length body) */
    bool complete;     /* the first response arrived in full */
    bool closed;       /* the server closed the connection after it */
    bool timed_out;    /* the safety timeout ran out */
    int send_errno;    /* 0, or why sending the request failed */
} raw_answer;

static void raw_answer_free(raw_answer *a)
{
    free(a->text);
    memset(a, 0, sizeof(*a));
}

/* Length of a complete first response in text[0..len), or 0 when incomplete. */
static size_t response_length(const char *text, size_t len)
{
    const char *hend = memmem(text, len, "\r\n\r\n", 4);
    if (!hend)
        return 0;
    size_t head = (size_t)(hend - text) + 4;
    size_t body = 0;
    for (const char *p = text; p < hend; p++) {
        if (strncasecmp(p, "\r\nContent-Length:", 17) == 0) {
            body = (size_t)strtoull(p + 17, NULL, 10);
            break;
        }
    }
    return len >= head + body ? head + body : 0;
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    struct timeval tv = {.tv_sec = SAFETY_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_srv.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        fail_msg("connect: %s", strerror(e));
    }
    return fd;
}

/* Sends all of req (head, then body_len bytes of 'b' when body_len > 0), the way a client
 * that writes its whole request before reading does; then reads the first response and,
 * when wait_close, on until the server closes. */
static void raw_exchange_body(const char *head, size_t body_len, bool wait_close,
                              raw_answer *a)
{
    memset(a, 0, sizeof(*a));
    int fd = connect_server();
    size_t head_len = strlen(head), total = head_len + body_len, sent = 0;
    static char chunk[256 * 1024];
    memset(chunk, 'b', sizeof(chunk));
    while (sent < total) {
        const char *p;
        size_t n;
        if (sent < head_len) {
            p = head + sent;
            n = head_len - sent;
        } else {
            p = chunk;
            n = total - sent < sizeof(chunk) ? total - sent : sizeof(chunk);
        }
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            a->send_errno = w < 0 ? errno : EPIPE;
            break;
        }
        sent += (size_t)w;
    }
    size_t cap = 4096;
    a->text = malloc(cap + 1);
    for (;;) {
        if (!a->complete) {
            a->first_len = response_length(a->text, a->len);
            a->complete = a->first_len > 0;
            if (a->complete && !wait_close)
                break;
        }
        if (a->len + 4096 > cap) {
            cap *= 2;
            a->text = realloc(a->text, cap + 1);
        }
        ssize_t n = recv(fd, a->text + a->len, cap - a->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            a->timed_out = true;
            break;
        }
        if (n <= 0) {
            a->closed = true; /* EOF, or a reset after the answer */
            break;
        }
        a->len += (size_t)n;
    }
    a->text[a->len] = '\0';
    if (!a->complete) {
        a->first_len = response_length(a->text, a->len);
        a->complete = a->first_len > 0;
    }
    if (strncmp(a->text, "HTTP/1.1 ", 9) == 0)
        a->status = atoi(a->text + 9);
    close(fd);
}

static void raw_exchange(const char *req, bool wait_close, raw_answer *a)
{
    raw_exchange_body(req, 0, wait_close, a);
}

/* Fails unless the answer arrived in full with status, as a problem with title, and the
 * server closed the connection; and only one response came. */
static void assert_refused(const char *what, const raw_answer *a, int status, const char *title)
{
    if (a->timed_out || !a->complete)
        fail_msg("%s: no complete answer%s: %.300s", what,
                 a->timed_out ? " within the safety timeout" : "", a->text);
    if (a->status != status)
        fail_msg("%s: status %d, wanted %d: %.400s", what, a->status, status, a->text);
    const char *body = strstr(a->text, "\r\n\r\n");
    if (!strcasestr(a->text, "\r\nContent-Type: application/problem+json") ||
        !strcasestr(a->text, "\r\nX-Request-Id: "))
        fail_msg("%s: not a problem+json answer with X-Request-Id: %.400s", what, a->text);
    char want[80];
    snprintf(want, sizeof(want), "\"title\":\"%s\"", title);
    if (!body || !strstr(body, want))
        fail_msg("%s: body lacks %s: %.400s", what, want, body ? body : a->text);
    if (!a->closed)
        fail_msg("%s: the connection was left open after the %d", what, status);
    if (a->len != a->first_len)
        fail_msg("%s: more followed the answer: %.600s", what, a->text + a->first_len);
}

/* The store's object count, from /v1/status. */
static long long object_count(void)
{
    http_resp *r = http_get(&g_srv, "/v1/status");
    assert_status(r, 200);
    long long n = json_int(json_member(r->json, "object_store"), "objects");
    http_resp_free(r);
    return n;
}

/* ---------------------------------------------------------------- setup */

static int group_setup(void **state)
{
    /* refuse: a body over the memory limit is 507 (a spilling store would take it) */
    static const char *const args[] = {"--max-body", "16M", "--memory-limit", "4M", "--on-full",
                                       "refuse", "--remote-allow", "http://127.0.0.1:9", NULL};
    return rayd_start(&g_srv, args, NULL);
}

static int g_teardown_failed; /* cmocka 1.1.5 does not count a failed group teardown */

static int group_teardown(void **state)
{
    if (rayd_stop_clean(&g_srv) != 0) {
        g_teardown_failed = 1;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- framing */

#define PUT_HEAD "POST /v1/objects HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"

static void test_two_content_lengths(void **state)
{
    long long before = object_count();
    raw_answer a;
    /* The first value frames "hello"; the second would take the hidden request as body. A
     * server that kept the first would store "hello" and then answer the hidden GET. */
    raw_exchange(PUT_HEAD "Content-Length: 5\r\nContent-Length: 44\r\n\r\n"
                          "helloGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
                 true, &a);
    assert_refused("two different Content-Length values", &a, 400, "BadRequest");
    raw_answer_free(&a);
    assert_int_equal(object_count(), before);

    /* The same value twice frames the body one way only: RFC 9112 6.3 lets it through. */
    raw_exchange(PUT_HEAD "Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
                          "hello",
                 true, &a);
    assert_int_equal(a.status, 201);
    raw_answer_free(&a);
    assert_int_equal(object_count(), before + 1);
}

static void test_whitespace_before_colon(void **state)
{
    long long before = object_count();
    static const char *const reqs[] = {
        /* libmicrohttpd keeps "Transfer-Encoding " as the name: it would frame by the
         * Content-Length while a proxy may frame by the chunks. */
        PUT_HEAD "Content-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        PUT_HEAD "Transfer-Encoding\t: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        PUT_HEAD "Content-Length : 5\r\n\r\nhello",
        NULL,
    };
    for (int i = 0; reqs[i]; i++) {
        raw_answer a;
        raw_exchange(reqs[i], true, &a);
        char what[64];
        snprintf(what, sizeof(what), "whitespace before a colon, case %d", i);
        assert_refused(what, &a, 400, "BadRequest");
        raw_answer_free(&a);
    }
    assert_int_equal(object_count(), before);
}

static void test_transfer_codings(void **state)
{
    long long before = object_count();
    static const struct {
        const char *head;
        int status;
        const char *title;
    } cases[] = {
        {PUT_HEAD "Transfer-Encoding: gzip\r\n\r\nhello", 400, "BadRequest"},
        {PUT_HEAD "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400,
         "BadRequest"},
        {PUT_HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n0\r\n\r\n",
         400, "BadRequest"},
        {PUT_HEAD "Transfer-Encoding: chunked;ext=1\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400,
         "BadRequest"},
        {PUT_HEAD "Transfer-Encoding: \r\n\r\nhello", 400, "BadRequest"},
        {"POST /v1/objects HTTP/1.0\r\nContent-Type: text/plain\r\n"
         "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         400, "BadRequest"},
        /* chunked last, but another coding rayd does not implement before it */
        {PUT_HEAD "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501,
         "NotImplemented"},
        {PUT_HEAD "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n0\r\n\r\n",
         501, "NotImplemented"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw_answer a;
        raw_exchange(cases[i].head, true, &a);
        char what[64];
        snprintf(what, sizeof(what), "transfer coding case %zu", i);
        assert_refused(what, &a, cases[i].status, cases[i].title);
        raw_answer_free(&a);
    }
    assert_int_equal(object_count(), before);

    /* Exactly chunked (any case) is the one that works. */
    static const char *const good[] = {
        PUT_HEAD "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        PUT_HEAD "Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        NULL,
    };
    for (int i = 0; good[i]; i++) {
        raw_answer a;
        raw_exchange(good[i], true, &a);
        if (a.status != 201 || !strstr(a.text, "\"size\":5"))
            fail_msg("chunked put %d: %.400s", i, a.text);
        raw_answer_free(&a);
    }
    assert_int_equal(object_count(), before + 2);
}

static void test_request_target_limits(void **state)
{
    /* ~1,000 arguments (a 4 KB URL) ran libmicrohttpd out of the connection's memory. */
    size_t n = 1000;
    char *req = malloc(64 + n * 8);
    size_t len = (size_t)sprintf(req, "GET /healthz?");
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(req + len, "%sa%zu=1", i ? "&" : "", i);
    strcpy(req + len, " HTTP/1.1\r\nHost: t\r\n\r\n");
    raw_answer a;
    raw_exchange(req, true, &a);
    assert_refused("1000 query arguments", &a, 414, "URITooLong");
    raw_answer_free(&a);
    free(req);

    /* Arguments without values cost as much: one per '&'. */
    req = malloc(64 + 2000);
    len = (size_t)sprintf(req, "GET /v1/objects?");
    memset(req + len, '&', 2000);
    len += 2000;
    strcpy(req + len, " HTTP/1.1\r\nHost: t\r\n\r\n");
    raw_exchange(req, true, &a);
    assert_refused("2000 empty query arguments", &a, 414, "URITooLong");
    raw_answer_free(&a);
    free(req);

    /* A long target (9 KB) with few arguments. */
    req = malloc(64 + 9000);
    len = (size_t)sprintf(req, "GET /healthz?x=");
    memset(req + len, 'x', 9000);
    len += 9000;
    strcpy(req + len, " HTTP/1.1\r\nHost: t\r\n\r\n");
    raw_exchange(req, true, &a);
    assert_refused("a 9 KB request target", &a, 414, "URITooLong");
    raw_answer_free(&a);
    free(req);

    /* At the limit (256 arguments) it is served, and the connection kept. */
    req = malloc(64 + 256 * 8);
    len = (size_t)sprintf(req, "GET /healthz?");
    for (size_t i = 0; i < 256; i++)
        len += (size_t)sprintf(req + len, "%sa%zu=1", i ? "&" : "", i);
    strcpy(req + len, " HTTP/1.1\r\nHost: t\r\n\r\n");
    raw_exchange(req, false, &a);
    if (a.status != 200 || !a.complete)
        fail_msg("256 query arguments: %.300s", a.text);
    raw_answer_free(&a);
    free(req);
}

/* ---------------------------------------------------------------- lingering close */

static void test_early_answer_reaches_client_that_writes_first(void **state)
{
    long long before = object_count();
    static const struct {
        size_t size;
        int status;
        const char *title;
    } cases[] = {
        {20 * (size_t)MiB, 413, "PayloadTooLarge"}, /* over --max-body 16M */
        {8 * (size_t)MiB, 507, "ObjectStoreFull"},  /* over --memory-limit 4M */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char head[256];
        snprintf(head, sizeof(head),
                 "POST /v1/objects HTTP/1.1\r\nHost: t\r\n"
                 "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                 cases[i].size);
        raw_answer a;
        raw_exchange_body(head, cases[i].size, true, &a);
        char what[96];
        snprintf(what, sizeof(what), "a %zu MiB body sent whole before reading",
                 cases[i].size / MiB);
        /* Without lingering, the server closes with the body still coming and the kernel
         * resets the connection: the client's write fails (EPIPE or ECONNRESET). */
        if (a.send_errno)
            fail_msg("%s: the client could not finish sending: %s (answer so far: %.200s)",
                     what, strerror(a.send_errno), a.text);
        assert_refused(what, &a, cases[i].status, cases[i].title);
        raw_answer_free(&a);
    }
    assert_int_equal(object_count(), before);
    http_resp *r = http_get(&g_srv, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
}

/* ---------------------------------------------------------------- content types */

static void test_content_type_not_header_text(void **state)
{
    long long before = object_count();
    static const char *const types[] = {
        "text/\xff\xfe",            /* not UTF-8 */
        "text/plain; x=\"\xc3\"",   /* a cut UTF-8 sequence */
        "text/\x01plain",           /* a control character */
        "text/plain\x7f",           /* DEL */
        "text/\xc0\xaf",            /* an overlong form */
        NULL,
    };
    for (int i = 0; types[i]; i++) {
        char req[256];
        snprintf(req, sizeof(req),
                 "POST /v1/objects HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\n"
                 "Content-Length: 2\r\n\r\nhi",
                 types[i]);
        raw_answer a;
        raw_exchange(req, true, &a);
        char what[64];
        snprintf(what, sizeof(what), "object put with content type %d", i);
        assert_refused(what, &a, 400, "BadRequest");
        raw_answer_free(&a);
    }

    /* Batch put: content_type is a JSON string, where control characters and NUL can be
     * escaped in. */
    static const char *const members[] = {"text/\\u0001plain", "text/plain\\u0000x",
                                          "text/pl\\nain", "text/\\u007f", NULL};
    for (int i = 0; members[i]; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"objects\": [{\"$bytes\": \"aGk=\", \"content_type\": \"%s\"}]}",
                 members[i]);
        http_resp *r = http_post_json(&g_srv, "/v1/objects/batch", body);
        if (r->status != 400)
            fail_msg("batch put with content_type \"%s\": %ld %s", members[i], r->status,
                     r->body);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
    }
    assert_int_equal(object_count(), before);

    /* UTF-8 and a tab are header text and are kept. */
    char ref[65];
    put_object(&g_srv, "text/plain;\tname=\"\xc3\xa9t\xc3\xa9\"", "hi", 2, ref);
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s/meta", ref);
    http_resp *r = http_get(&g_srv, path);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "content_type"), "text/plain;\tname=\"\xc3\xa9t\xc3\xa9\"");
    http_resp_free(r);
    snprintf(path, sizeof(path), "/v1/objects/%s", ref);
    r = http_delete(&g_srv, path);
    assert_status(r, 204);
    http_resp_free(r);
}

static void test_content_types_kept_beyond_intern_table(void **state)
{
    /* The intern table holds 4,096 types; past it they used to become
     * application/octet-stream. Each object here is deleted again at once (memory-limit). */
    CURL *h = curl_easy_init();
    char ct[64], ct_header[96], last_ref[65] = "";
    for (int i = 0; i < 4200; i++) {
        snprintf(ct, sizeof(ct), "application/x-framing-%d", i);
        snprintf(ct_header, sizeof(ct_header), "Content-Type: %s", ct);
        const char *hdrs[] = {ct_header, NULL};
        http_opts o = {.method = "POST",
                       .path = "/v1/objects",
                       .headers = hdrs,
                       .body = "x",
                       .body_len = 1,
                       .has_body = true,
                       .handle = h};
        http_resp *r = http_request_opts(&g_srv, &o);
        assert_status(r, 201);
        if (strcmp(json_str(r->json, "content_type"), ct) != 0)
            fail_msg("put %d: content_type %s, sent %s", i, json_str(r->json, "content_type"),
                     ct);
        char path[128];
        snprintf(path, sizeof(path), "/v1/objects/%s", json_str(r->json, "ref"));
        if (i < 4199) {
            http_opts d = {.method = "DELETE", .path = path, .handle = h};
            http_resp *rd = http_request_opts(&g_srv, &d);
            assert_status(rd, 204);
            http_resp_free(rd);
        } else {
            snprintf(last_ref, sizeof(last_ref), "%s", json_str(r->json, "ref"));
        }
        http_resp_free(r);
    }
    curl_easy_cleanup(h);

    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s", last_ref);
    http_resp *r = http_get(&g_srv, path);
    assert_status(r, 200);
    assert_string_equal(http_header_get(r, "Content-Type"), "application/x-framing-4199");
    http_resp_free(r);
    snprintf(path, sizeof(path), "/v1/objects/%s/meta", last_ref);
    r = http_get(&g_srv, path);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "content_type"), "application/x-framing-4199");
    http_resp_free(r);
    snprintf(path, sizeof(path), "/v1/objects/%s", last_ref);
    r = http_delete(&g_srv, path);
    assert_status(r, 204);
    http_resp_free(r);
}

/* ---------------------------------------------------------------- If-None-Match */

static void test_if_none_match_entity_tags(void **state)
{
    char ref[65];
    put_object(&g_srv, "text/plain", "etag", 4, ref);
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s", ref);
    /* each: what comes before the ref, what after (NULL: no ref), the status */
    struct {
        const char *pre, *post;
        long status;
    } cases[] = {
        {"\"", "\"", 304},
        {"W/\"", "\"", 304},
        {"\"other\", \"", "\"", 304},
        {"\"other\",W/\"", "\" ,", 304},
        {"*", NULL, 304},
        {" * ", NULL, 304},
        /* commas inside a quoted tag are part of it */
        {"\"a,*\"", NULL, 200},
        {"\"a,", "\"", 200},
        {"\"", ",b\"", 200},
        /* not an entity-tag list: ignored */
        {"\"other\", *", NULL, 200},
        {"\"", "", 200},
        {"", "", 200},
        {"\"", "\" x", 200},
        {"\"other\"", NULL, 200},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char value[256], header[300];
        snprintf(value, sizeof(value), "%s%s%s", cases[i].pre, cases[i].post ? ref : "",
                 cases[i].post ? cases[i].post : "");
        snprintf(header, sizeof(header), "If-None-Match: %s", value);
        const char *hdrs[] = {header, NULL};
        http_resp *r = http_request(&g_srv, "GET", path, hdrs, NULL, 0);
        if (r->status != cases[i].status)
            fail_msg("If-None-Match: %s answered %ld, wanted %ld", value, r->status,
                     cases[i].status);
        http_resp_free(r);
    }
    http_resp *r = http_delete(&g_srv, path);
    assert_status(r, 204);
    http_resp_free(r);
}

/* ---------------------------------------------------------------- remote URLs */

static void test_remote_urls_checked_at_registration(void **state)
{
    static const char *const bad[] = {
        "http://127.0.0.1:9/a b",
        "http://127.0.0.1:9/a\\r\\nX-Injected: 1",
        "http://127.0.0.1:9/a\\tb",
        "http://127.0.0.1:9/caf\xc3\xa9",
        "http://127.0.0.1:9/a%zz",
        "http://127.0.0.1:9/a#frag",
        "http://127.0.0.1:9/a\\u0000b",
        NULL,
    };
    static const char *const paths[] = {"/v1/functions/framing_fn",
                                        "/v1/actor-classes/FramingClass"};
    const char *h[] = {"Content-Type: application/json", NULL};
    for (int p = 0; p < 2; p++) {
        for (int i = 0; bad[i]; i++) {
            char body[256];
            snprintf(body, sizeof(body), "{\"url\": \"%s\"}", bad[i]);
            http_resp *r = http_request(&g_srv, "PUT", paths[p], h, body, strlen(body));
            if (r->status != 400)
                fail_msg("PUT %s with url \"%s\": %ld %s", paths[p], bad[i], r->status, r->body);
            assert_problem(r, 400, "BadRequest");
            http_resp_free(r);
        }
        /* A callable URL is still taken, percent-encoding and all. */
        const char *good = "{\"url\": \"http://127.0.0.1:9/a%20b?x=1&y=%C3%A9\"}";
        http_resp *r = http_request(&g_srv, "PUT", paths[p], h, good, strlen(good));
        assert_status(r, 201);
        http_resp_free(r);
        r = http_delete(&g_srv, paths[p]);
        assert_status(r, 204);
        http_resp_free(r);
    }
}

static void test_still_healthy(void **state)
{
    http_resp *r = http_get(&g_srv, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_content_lengths),
        cmocka_unit_test(test_whitespace_before_colon),
        cmocka_unit_test(test_transfer_codings),
        cmocka_unit_test(test_request_target_limits),
        cmocka_unit_test(test_early_answer_reaches_client_that_writes_first),
        cmocka_unit_test(test_content_type_not_header_text),
        cmocka_unit_test(test_content_types_kept_beyond_intern_table),
        cmocka_unit_test(test_if_none_match_entity_tags),
        cmocka_unit_test(test_remote_urls_checked_at_registration),
        cmocka_unit_test(test_still_healthy),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return failed ? failed : g_teardown_failed;
}
