/* Unit tests for runtime/peer_http.c: the answer parser on well-formed and malformed input
 * (split anywhere, oversize heads, bad lengths, bad chunks), and the client against small
 * servers in this process (keep-alive reuse, a peer closing an idle or a reused
 * connection, refused connections, timeouts, cancels, the client's close, the bound per
 * peer), and callers that wait for the answer themselves (answered on their thread, or
 * handed on to the I/O thread when late, malformed or closing). Every wait is for the
 * client's end callback, the server thread's exit, or the server's own state. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/peer_http.h"

/* ---- the parser ----------------------------------------------------------------------- */

typedef struct seen {
    int status;
    int heads;
    char headers[1024];
    size_t headers_len;
    char body[65536];
    size_t body_len;
    bool refuse_body;
} seen;

static int on_header(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
    seen *s = arg;
    if (s->headers_len + nl + vl + 3 > sizeof(s->headers))
        return 0; /* keeps what fits */
    s->headers_len +=
        (size_t)snprintf(s->headers + s->headers_len, sizeof(s->headers) - s->headers_len,
                         "%.*s=%.*s;", (int)nl, name, (int)vl, value);
    return 0;
}

static int on_head_end(void *arg, int status)
{
    seen *s = arg;
    s->status = status;
    s->heads++;
    return 0;
}

static int on_body(void *arg, const char *data, size_t len)
{
    seen *s = arg;
    if (s->refuse_body)
        return -1;
    assert_true(s->body_len + len <= sizeof(s->body));
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
    return 0;
}

static const rt_http_callbacks CB = {on_header, on_head_end, on_body};

/* Feeds text in pieces of `step` bytes (0: at once); returns the parser's last result or
 * the total used. */
static long feed(rt_http_parser *p, seen *s, const char *text, size_t len, size_t step)
{
    rt_http_parser_init(p, false);
    memset(s, 0, sizeof(*s));
    if (!step)
        step = len;
    size_t used = 0;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        long r = rt_http_parse(p, text + i, n, &CB, s);
        if (r < 0)
            return r;
        used += (size_t)r;
        if ((size_t)r < n)
            break;
    }
    return (long)used;
}

static rt_http_parser parser; /* 16 KiB: not on the stack */
static seen got;

static void test_content_length_answer_split_anywhere(void **state)
{
    (void)state;
    static const char text[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "X-Ray-Ref:  o1-abc \r\nContent-Length: 7\r\n\r\n{\"a\":1}";
    for (size_t step = 0; step < 9; step++) {
        long r = feed(&parser, &got, text, sizeof(text) - 1, step);
        assert_int_equal(r, (long)sizeof(text) - 1);
        assert_true(rt_http_parser_done(&parser));
        assert_int_equal(got.status, 200);
        assert_int_equal(got.heads, 1);
        assert_string_equal(got.headers,
                            "Content-Type=application/json;X-Ray-Ref=o1-abc;Content-Length=7;");
        assert_int_equal(got.body_len, 7);
        assert_memory_equal(got.body, "{\"a\":1}", 7);
        assert_false(parser.close);
    }
}

static void test_chunked_answer_with_extensions_and_trailers(void **state)
{
    (void)state;
    static const char text[] = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5;ext=1\r\nhello\r\n1a\r\n abcdefghijklmnopqrstuvwxy\r\n"
                               "0\r\nX-Trailer: t\r\n\r\n";
    for (size_t step = 0; step < 7; step++) {
        long r = feed(&parser, &got, text, sizeof(text) - 1, step);
        assert_int_equal(r, (long)sizeof(text) - 1);
        assert_true(rt_http_parser_done(&parser));
        assert_int_equal(got.status, 201);
        assert_int_equal(got.body_len, 31);
        assert_memory_equal(got.body, "hello abcdefghijklmnopqrstuvwxy", 31);
    }
}

static void test_interim_answer_then_final(void **state)
{
    (void)state;
    static const char text[] = "HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n"
                               "HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n";
    assert_int_equal(feed(&parser, &got, text, sizeof(text) - 1, 3), (long)sizeof(text) - 1);
    assert_true(rt_http_parser_done(&parser));
    assert_int_equal(got.status, 204);
    assert_int_equal(got.heads, 1);
    assert_string_equal(got.headers, "X-B=2;"); /* the interim answer's headers are not kept */
}

static void test_head_answer_has_no_body(void **state)
{
    (void)state;
    static const char text[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    rt_http_parser_init(&parser, true);
    memset(&got, 0, sizeof(got));
    assert_int_equal(rt_http_parse(&parser, text, sizeof(text) - 1, &CB, &got),
                     (long)sizeof(text) - 1);
    assert_true(rt_http_parser_done(&parser));
    assert_int_equal(got.body_len, 0);
}

static void test_bytes_after_the_answer_are_not_used(void **state)
{
    (void)state;
    static const char text[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
    assert_int_equal(feed(&parser, &got, text, sizeof(text) - 1, 0), (long)sizeof(text) - 6);
    assert_true(rt_http_parser_done(&parser));
    assert_int_equal(got.body_len, 2);
}

static void test_body_to_the_end_of_the_connection(void **state)
{
    (void)state;
    static const char text[] = "HTTP/1.1 200 OK\r\n\r\nall of it";
    assert_int_equal(feed(&parser, &got, text, sizeof(text) - 1, 4), (long)sizeof(text) - 1);
    assert_false(rt_http_parser_done(&parser));
    assert_true(parser.close);
    assert_int_equal(rt_http_parse_eof(&parser), 0);
    assert_true(rt_http_parser_done(&parser));
    assert_int_equal(got.body_len, 9);
}

static void test_truncated_answers_fail_at_eof(void **state)
{
    (void)state;
    static const char *const cut[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        "HTTP/1.1 200 OK\r\nContent-Len",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        "",
    };
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        assert_true(feed(&parser, &got, cut[i], strlen(cut[i]), 1) >= 0);
        assert_int_equal(rt_http_parse_eof(&parser), -1);
    }
}

static void test_malformed_answers_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\n\n", /* bare LF */
        "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: no name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\001b\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t step = 0; step < 3; step++) {
            long r = feed(&parser, &got, bad[i], strlen(bad[i]), step);
            if (r != -1)
                print_error("accepted: %s (step %zu)\n", bad[i], step);
            assert_int_equal(r, -1);
            assert_true(parser.error[0] != '\0');
            assert_false(rt_http_parser_done(&parser));
        }
    }
}

static void test_equal_duplicate_content_length_is_accepted(void **state)
{
    (void)state;
    static const char text[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n"
                               "\r\nok";
    assert_int_equal(feed(&parser, &got, text, sizeof(text) - 1, 0), (long)sizeof(text) - 1);
    assert_true(rt_http_parser_done(&parser));
}

static void test_oversize_heads_are_refused(void **state)
{
    (void)state;
    /* One header line over the limit, and many small ones adding up over it. */
    size_t n = RT_HTTP_HEAD_MAX + 100;
    char *text = malloc(n + 64);
    assert_non_null(text);
    int at = sprintf(text, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(text + at, 'a', n - (size_t)at);
    strcpy(text + n, "\r\n\r\n");
    assert_int_equal(feed(&parser, &got, text, strlen(text), 1000), -1);
    at = sprintf(text, "HTTP/1.1 200 OK\r\n");
    while ((size_t)at < n)
        at += sprintf(text + at, "X-Small: 0123456789\r\n");
    strcpy(text + at, "\r\n");
    assert_int_equal(feed(&parser, &got, text, strlen(text), 77), -1);
    assert_non_null(strstr(parser.error, "size limit"));
    free(text);
}

static void test_a_refusing_reader_stops_the_parse(void **state)
{
    (void)state;
    static const char text[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    rt_http_parser_init(&parser, false);
    memset(&got, 0, sizeof(got));
    got.refuse_body = true;
    assert_int_equal(rt_http_parse(&parser, text, sizeof(text) - 1, &CB, &got), -1);
}

/* ---- the client against servers in this process ---------------------------------------- */

typedef struct call {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ended;
    pthread_t ended_on;
    rt_http_end how;
    char why[200];
    seen s;
} call;

static void call_init(call *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
}

static void on_end(void *arg, rt_http_end how, const char *why)
{
    call *c = arg;
    pthread_mutex_lock(&c->lock);
    assert_false(c->ended); /* exactly once */
    c->ended = true;
    c->ended_on = pthread_self();
    c->how = how;
    snprintf(c->why, sizeof(c->why), "%s", why);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static int call_header(void *arg, const char *n, size_t nl, const char *v, size_t vl)
{
    return on_header(&((call *)arg)->s, n, nl, v, vl);
}
static int call_head_end(void *arg, int status)
{
    return on_head_end(&((call *)arg)->s, status);
}
static int call_body(void *arg, const char *d, size_t len)
{
    return on_body(&((call *)arg)->s, d, len);
}

static const rt_http_handler HANDLER = {{call_header, call_head_end, call_body}, on_end};

static void call_wait(call *c)
{
    pthread_mutex_lock(&c->lock);
    while (!c->ended)
        pthread_cond_wait(&c->cond, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 128), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

enum {
    SERVE_KEEP,
    SERVE_ONE_THEN_CLOSE,
    SERVE_DROP_SECOND,
    SERVE_HOLD_SECOND,    /* the second answer waits for server_release */
    SERVE_GARBAGE_SECOND, /* the second answer is not HTTP */
    SERVE_CLOSE_SECOND    /* the second answer says Connection: close, and closes */
};

typedef struct server {
    int fd, port, mode, conns_wanted;
    int conns, requests;
    char last_request[2048];
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool holding, released; /* lock: SERVE_HOLD_SECOND */
} server;

/* Reads one request (head and Content-Length body) into buf; 0 at the connection's end. */
static size_t read_request(int fd, char *buf, size_t size)
{
    size_t len = 0;
    for (;;) {
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strstr(buf, "Content-Length: ");
            size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
            if (len >= (size_t)(end + 4 - buf) + body)
                return len;
        }
        ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
        if (n <= 0)
            return 0;
        len += (size_t)n;
    }
}

static void *serve(void *arg)
{
    server *sv = arg;
    char buf[2048];
    while (sv->conns < sv->conns_wanted) {
        int fd = accept(sv->fd, NULL, NULL);
        if (fd < 0)
            break;
        int on_conn = 0;
        sv->conns++;
        while (read_request(fd, buf, sizeof(buf)) > 0) {
            snprintf(sv->last_request, sizeof(sv->last_request), "%s", buf);
            on_conn++;
            if (sv->mode == SERVE_DROP_SECOND && sv->conns == 1 && on_conn == 2)
                break; /* as a peer closing a kept-alive connection the request raced */
            sv->requests++;
            bool second = sv->requests == 2;
            if (sv->mode == SERVE_HOLD_SECOND && second) {
                pthread_mutex_lock(&sv->lock);
                sv->holding = true;
                pthread_cond_broadcast(&sv->cond);
                while (!sv->released)
                    pthread_cond_wait(&sv->cond, &sv->lock);
                pthread_mutex_unlock(&sv->lock);
            }
            char answer[160];
            int n = snprintf(answer, sizeof(answer),
                             "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\nn=%d",
                             sv->requests < 10 ? 3 : 4,
                             sv->mode == SERVE_CLOSE_SECOND && second ? "Connection: close\r\n"
                                                                       : "",
                             sv->requests);
            if (sv->mode == SERVE_GARBAGE_SECOND && second)
                n = snprintf(answer, sizeof(answer), "HTTP/1.1 2x0 Nope\r\n\r\n");
            assert_int_equal(send(fd, answer, (size_t)n, MSG_NOSIGNAL), n);
            if (sv->mode == SERVE_ONE_THEN_CLOSE || (sv->mode == SERVE_CLOSE_SECOND && second))
                break;
        }
        close(fd);
    }
    return NULL;
}

static void server_start(server *sv, int mode, int conns_wanted)
{
    memset(sv, 0, sizeof(*sv));
    pthread_mutex_init(&sv->lock, NULL);
    pthread_cond_init(&sv->cond, NULL);
    sv->fd = listener(&sv->port);
    sv->mode = mode;
    sv->conns_wanted = conns_wanted;
    assert_int_equal(pthread_create(&sv->thread, NULL, serve, sv), 0);
}

static void server_join(server *sv)
{
    pthread_join(sv->thread, NULL);
    close(sv->fd);
}

/* SERVE_HOLD_SECOND: waits until the server holds the second answer; then lets it go. */
static void server_wait_holding(server *sv)
{
    pthread_mutex_lock(&sv->lock);
    while (!sv->holding)
        pthread_cond_wait(&sv->cond, &sv->lock);
    pthread_mutex_unlock(&sv->lock);
}

static void server_release(server *sv)
{
    pthread_mutex_lock(&sv->lock);
    sv->released = true;
    pthread_cond_broadcast(&sv->cond);
    pthread_mutex_unlock(&sv->lock);
}

/* post() for a caller that waits up to `wait` seconds for the answer itself. */
static rt_http_exchange *post_waiting(rt_http_client *cl, int port, call *c, double wait,
                                      rt_http_waited *waited)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    rt_http_request rq = {.method = "POST",
                          .url = url,
                          .body = "{}",
                          .body_len = 2,
                          .has_body = true,
                          .timeout = 10,
                          .wait = wait};
    call_init(c);
    return rt_http_start_waiting(cl, &rq, &HANDLER, c, waited);
}

static rt_http_exchange *post(rt_http_client *cl, int port, const char *path, call *c,
                              double timeout)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    static const char *const headers[] = {"Content-Type: application/json", "X-Bad: a\r\nb", NULL};
    rt_http_request rq = {.method = "POST",
                          .url = url,
                          .headers = headers,
                          .body = "{\"args\":[]}",
                          .body_len = 11,
                          .has_body = true,
                          .timeout = timeout};
    call_init(c);
    return rt_http_start(cl, &rq, &HANDLER, c);
}

static void test_calls_reuse_one_connection(void **state)
{
    (void)state;
    server sv;
    server_start(&sv, SERVE_KEEP, 1);
    rt_http_client *cl = rt_http_client_new();
    assert_non_null(cl);
    for (int i = 1; i <= 3; i++) {
        call c;
        assert_non_null(post(cl, sv.port, "/v1/actors/a/methods/incr?x=1", &c, 5));
        call_wait(&c);
        assert_int_equal(c.how, RT_HTTP_ANSWERED);
        assert_int_equal(c.s.status, 200);
        char want[8];
        snprintf(want, sizeof(want), "n=%d", i);
        assert_int_equal(c.s.body_len, 3);
        assert_memory_equal(c.s.body, want, 3);
    }
    rt_http_client_free(cl); /* closes the connection: the server's loop ends */
    server_join(&sv);
    assert_int_equal(sv.conns, 1);
    /* The request as sent: the path, Host, the headers, the body's length, the body; a
     * header line with a line break in it is left out. */
    assert_non_null(strstr(sv.last_request, "POST /v1/actors/a/methods/incr?x=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(sv.last_request, "\r\nHost: 127.0.0.1:"));
    assert_non_null(strstr(sv.last_request, "\r\nContent-Type: application/json\r\n"));
    assert_null(strstr(sv.last_request, "X-Bad"));
    assert_non_null(strstr(sv.last_request, "\r\nContent-Length: 11\r\n\r\n{\"args\":[]}"));
}

static void test_a_connection_closed_by_the_peer_is_not_reused(void **state)
{
    (void)state;
    server sv;
    server_start(&sv, SERVE_ONE_THEN_CLOSE, 3);
    rt_http_client *cl = rt_http_client_new();
    for (int i = 1; i <= 3; i++) {
        call c;
        assert_non_null(post(cl, sv.port, "/", &c, 5));
        call_wait(&c);
        assert_int_equal(c.how, RT_HTTP_ANSWERED);
    }
    server_join(&sv);
    assert_int_equal(sv.conns, 3);
    rt_http_client_free(cl);
}

static void test_a_reused_connection_dropped_before_the_answer_is_retried_once(void **state)
{
    (void)state;
    server sv;
    server_start(&sv, SERVE_DROP_SECOND, 2);
    rt_http_client *cl = rt_http_client_new();
    call c;
    assert_non_null(post(cl, sv.port, "/", &c, 5));
    call_wait(&c);
    assert_int_equal(c.how, RT_HTTP_ANSWERED);
    assert_non_null(post(cl, sv.port, "/", &c, 5)); /* dropped, then answered on conn 2 */
    call_wait(&c);
    assert_int_equal(c.how, RT_HTTP_ANSWERED);
    assert_memory_equal(c.s.body, "n=2", 3);
    rt_http_client_free(cl);
    server_join(&sv);
    assert_int_equal(sv.conns, 2);
}

static void test_a_new_connection_dropped_is_unreachable(void **state)
{
    (void)state;
    server sv;
    server_start(&sv, SERVE_DROP_SECOND, 1);
    rt_http_client *cl = rt_http_client_new();
    call c;
    assert_non_null(post(cl, sv.port, "/", &c, 5));
    call_wait(&c);
    assert_int_equal(c.how, RT_HTTP_ANSWERED);
    assert_non_null(post(cl, sv.port, "/", &c, 5)); /* dropped; the retry finds no server */
    server_join(&sv);                               /* and its listener closed */
    call_wait(&c);
    assert_int_equal(c.how, RT_HTTP_UNREACHABLE);
    rt_http_client_free(cl);
}

static void test_refused_connection_is_unreachable(void **state)
{
    (void)state;
    int port, fd = listener(&port);
    close(fd); /* nothing listens there now */
    rt_http_client *cl = rt_http_client_new();
    call c;
    assert_non_null(post(cl, port, "/", &c, 5));
    call_wait(&c);
    assert_int_equal(c.how, RT_HTTP_UNREACHABLE);
    assert_non_null(strstr(c.why, "connect"));
    rt_http_client_free(cl);
}

static void test_silent_peer_times_out(void **state)
{
    (void)state;
    int port, fd = listener(&port); /* accepts (the backlog), never answers */
    rt_http_client *cl = rt_http_client_new();
    call c;
    assert_non_null(post(cl, port, "/", &c, 0.2));
    call_wait(&c);
    assert_int_equal(c.how, RT_HTTP_TIMED_OUT);
    rt_http_client_free(cl);
    close(fd);
}

static void test_cancel_and_close_end_calls(void **state)
{
    (void)state;
    int port, fd = listener(&port);
    rt_http_client *cl = rt_http_client_new();
    call a, b;
    rt_http_exchange *ex = post(cl, port, "/", &a, 0);
    assert_non_null(ex);
    rt_http_cancel(cl, ex);
    call_wait(&a);
    assert_int_equal(a.how, RT_HTTP_CANCELLED);
    assert_non_null(post(cl, port, "/", &b, 0));
    rt_http_client_close(cl);
    call_wait(&b);
    assert_int_equal(b.how, RT_HTTP_CANCELLED);
    assert_null(post(cl, port, "/", &a, 0)); /* closed: refused, no callback */
    rt_http_client_free(cl);
    close(fd);
}

static void test_what_it_does_not_take(void **state)
{
    (void)state;
    int port, fd = listener(&port);
    rt_http_client *cl = rt_http_client_new();
    static const char *const urls[] = {"https://127.0.0.1:1/", "ftp://x/",    "http://",
                                       "http://[::1]:80/",     "http://u@h/", "http://h:0/",
                                       "http://h:70000/",      "http://:80/"};
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        rt_http_request rq = {.method = "GET", .url = urls[i]};
        assert_null(rt_http_start(cl, &rq, &HANDLER, NULL));
    }
    /* At most RT_HTTP_CONNS_PER_PEER calls to one peer at a time: the next is refused (the
     * caller sends it another way), and taken again once one has ended. */
    static call calls[RT_HTTP_CONNS_PER_PEER + 1];
    rt_http_exchange *ex[RT_HTTP_CONNS_PER_PEER];
    for (int i = 0; i < RT_HTTP_CONNS_PER_PEER; i++)
        assert_non_null(ex[i] = post(cl, port, "/", &calls[i], 0));
    assert_null(post(cl, port, "/", &calls[RT_HTTP_CONNS_PER_PEER], 0));
    rt_http_cancel(cl, ex[0]);
    call_wait(&calls[0]);
    assert_non_null(post(cl, port, "/", &calls[RT_HTTP_CONNS_PER_PEER], 0));
    rt_http_client_free(cl); /* ends the rest as cancelled */
    for (int i = 0; i <= RT_HTTP_CONNS_PER_PEER; i++) {
        call_wait(&calls[i]);
        assert_int_equal(calls[i].how, RT_HTTP_CANCELLED);
    }
    close(fd);
}

/* The first call opens the connection on the I/O thread; the next, on the kept-alive
 * connection, is answered on the caller's thread before rt_http_start_waiting returns. */
static void test_a_waiting_caller_reads_the_answer_itself(void **state)
{
    (void)state;
    server sv;
    server_start(&sv, SERVE_KEEP, 1);
    rt_http_client *cl = rt_http_client_new();
    call c;
    rt_http_waited waited;
    assert_non_null(post_waiting(cl, sv.port, &c, 10, &waited));
    assert_int_equal(waited, RT_HTTP_NOT_WAITED); /* no idle connection yet */
    call_wait(&c);
    assert_int_equal(c.how, RT_HTTP_ANSWERED);
    assert_false(pthread_equal(c.ended_on, pthread_self()));
    for (int i = 2; i <= 3; i++) {
        assert_non_null(post_waiting(cl, sv.port, &c, 10, &waited));
        assert_int_equal(waited, RT_HTTP_ANSWERED_HERE);
        assert_true(c.ended); /* before it returned, on this thread */
        assert_true(pthread_equal(c.ended_on, pthread_self()));
        assert_int_equal(c.how, RT_HTTP_ANSWERED);
        assert_int_equal(c.s.status, 200);
        char want[8];
        snprintf(want, sizeof(want), "n=%d", i);
        assert_memory_equal(c.s.body, want, 3);
    }
    rt_http_client_free(cl);
    server_join(&sv);
    assert_int_equal(sv.conns, 1);
}

/* An answer later than the wait is read by the I/O thread; the connection is kept. */
static void test_a_late_answer_is_handed_to_the_io_thread(void **state)
{
    (void)state;
    server sv;
    server_start(&sv, SERVE_HOLD_SECOND, 1);
    rt_http_client *cl = rt_http_client_new();
    call c;
    rt_http_waited waited;
    assert_non_null(post_waiting(cl, sv.port, &c, 10, &waited));
    call_wait(&c);
    assert_non_null(post_waiting(cl, sv.port, &c, 0.001, &waited));
    assert_int_equal(waited, RT_HTTP_WAIT_MISSED);
    server_wait_holding(&sv);
    server_release(&sv);
    call_wait(&c);
    assert_int_equal(c.how, RT_HTTP_ANSWERED);
    assert_false(pthread_equal(c.ended_on, pthread_self()));
    assert_memory_equal(c.s.body, "n=2", 3);
    assert_non_null(post_waiting(cl, sv.port, &c, 10, &waited));
    assert_int_equal(waited, RT_HTTP_ANSWERED_HERE);
    assert_memory_equal(c.s.body, "n=3", 3);
    rt_http_client_free(cl);
    server_join(&sv);
    assert_int_equal(sv.conns, 1);
}

/* A malformed answer read by a waiting caller fails on the I/O thread, which closes the
 * connection; an answer that closes its connection is answered, and the next call opens
 * a new one. */
static void test_a_waiting_caller_hands_on_bad_and_closing_answers(void **state)
{
    (void)state;
    for (int mode = SERVE_GARBAGE_SECOND; mode <= SERVE_CLOSE_SECOND; mode++) {
        server sv;
        server_start(&sv, mode, 2);
        rt_http_client *cl = rt_http_client_new();
        call c;
        rt_http_waited waited;
        assert_non_null(post_waiting(cl, sv.port, &c, 10, &waited));
        call_wait(&c);
        assert_non_null(post_waiting(cl, sv.port, &c, 10, &waited));
        call_wait(&c);
        assert_false(pthread_equal(c.ended_on, pthread_self()));
        if (mode == SERVE_GARBAGE_SECOND) {
            assert_int_equal(c.how, RT_HTTP_FAILED);
        } else {
            assert_int_equal(c.how, RT_HTTP_ANSWERED);
            assert_memory_equal(c.s.body, "n=2", 3);
        }
        assert_non_null(post_waiting(cl, sv.port, &c, 10, &waited)); /* a new connection */
        assert_int_equal(waited, RT_HTTP_NOT_WAITED);
        call_wait(&c);
        assert_int_equal(c.how, RT_HTTP_ANSWERED);
        rt_http_client_free(cl);
        server_join(&sv);
        assert_int_equal(sv.conns, 2);
    }
}

/* A call is cancelled through its slot at once, or through its flag within the I/O
 * thread's scan (a flag set before the caller could name the exchange). */
static void test_cancel_by_slot_and_by_flag(void **state)
{
    (void)state;
    int port, fd = listener(&port); /* accepts (the backlog), never answers */
    rt_http_client *cl = rt_http_client_new();
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    for (int by_flag = 0; by_flag <= 1; by_flag++) {
        int flag = 0;
        rt_http_exchange *slot = NULL;
        rt_http_request rq = {.method = "GET",
                              .url = url,
                              .cancel_flag = &flag,
                              .slot = &slot};
        call c;
        call_init(&c);
        assert_non_null(rt_http_start(cl, &rq, &HANDLER, &c));
        if (by_flag)
            __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
        else
            rt_http_cancel_slot(cl, &slot);
        call_wait(&c);
        assert_int_equal(c.how, RT_HTTP_CANCELLED);
        assert_null(slot); /* emptied before the end */
        rt_http_cancel_slot(cl, &slot); /* nothing to cancel: nothing happens */
    }
    rt_http_client_free(cl);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_answer_split_anywhere),
        cmocka_unit_test(test_chunked_answer_with_extensions_and_trailers),
        cmocka_unit_test(test_interim_answer_then_final),
        cmocka_unit_test(test_head_answer_has_no_body),
        cmocka_unit_test(test_bytes_after_the_answer_are_not_used),
        cmocka_unit_test(test_body_to_the_end_of_the_connection),
        cmocka_unit_test(test_truncated_answers_fail_at_eof),
        cmocka_unit_test(test_malformed_answers_are_refused),
        cmocka_unit_test(test_equal_duplicate_content_length_is_accepted),
        cmocka_unit_test(test_oversize_heads_are_refused),
        cmocka_unit_test(test_a_refusing_reader_stops_the_parse),
        cmocka_unit_test(test_calls_reuse_one_connection),
        cmocka_unit_test(test_a_connection_closed_by_the_peer_is_not_reused),
        cmocka_unit_test(test_a_reused_connection_dropped_before_the_answer_is_retried_once),
        cmocka_unit_test(test_a_new_connection_dropped_is_unreachable),
        cmocka_unit_test(test_refused_connection_is_unreachable),
        cmocka_unit_test(test_silent_peer_times_out),
        cmocka_unit_test(test_cancel_and_close_end_calls),
        cmocka_unit_test(test_what_it_does_not_take),
        cmocka_unit_test(test_a_waiting_caller_reads_the_answer_itself),
        cmocka_unit_test(test_a_late_answer_is_handed_to_the_io_thread),
        cmocka_unit_test(test_a_waiting_caller_hands_on_bad_and_closing_answers),
        cmocka_unit_test(test_cancel_by_slot_and_by_flag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
