/* The lean peer client: an HTTP/1.1 answer parser, and keep-alive connections read on one
 * epoll thread. See peer_http.h.
 *
 * DESIGN
 * - Threads: a caller takes an idle connection to the peer under `lock`, marks it
 *   `sending` and writes the request itself (the common case: it fits the socket buffer
 *   at once). While `sending` is set the I/O thread leaves that connection alone (it notes
 *   `recheck` when an event came meanwhile); the caller then clears it and, when bytes are
 *   left, the send failed, or an event came, queues the connection on `pokes` for the I/O
 *   thread. So a connection's fd is only ever written by one thread at a time, and only
 *   the I/O thread closes it (no fd is reused under a writer).
 * - A call that finds no idle connection reserves one (nconns, bounded per peer) and is
 *   queued on `news`: the I/O thread resolves the peer (once; again after a failure),
 *   connects without blocking and writes the request when the connection is up.
 * - Idle connections stay in epoll (edge-triggered, EPOLLIN|EPOLLRDHUP): a peer that
 *   closes one is seen at once and it is dropped, instead of a liveness poll before each
 *   reuse. A reused connection that breaks before any byte of the answer (the peer closed
 *   it while the request was on its way) is retried once on a new connection, as libcurl
 *   does; a new one that breaks is a failure.
 * - Wakeups: an eventfd, written only when the I/O thread says it sleeps (`sleeping`, set
 *   before it looks at its lists a last time; callers add to a list, then exchange it).
 * - Lifetime: an exchange is freed by the I/O thread right after its end callback; it is
 *   on `busy` (lock) from start to end, and taken off `cancels` when it ends.
 * - Waiting callers (rt_http_start_waiting): the caller keeps `sending` set after its write
 *   and reads the answer itself, so the connection, its parser and the exchange stay the
 *   caller's as while it writes. Its epoll mask is emptied for that time (ERR/HUP still
 *   come, and only set `recheck`): the answer's bytes must not wake the I/O thread. A
 *   whole answer on a connection that stays open is ended on the caller's thread (the
 *   connection goes back idle, its mask restored first); anything else (no answer in
 *   time, the connection broke or closed, a malformed answer, an answer that closes the
 *   connection) is left to the I/O thread: the caller restores the mask, notes in
 *   `handback` what it already knows, clears `sending` and pokes. */
#include "runtime/peer_http.h"

#include "runtime/clock.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the parser ----------------------------------------------------------------------- */

enum {
    P_STATUS = 0, /* the status line */
    P_HEADER,     /* header lines up to the blank one */
    P_BODY,       /* `left` bytes of a Content-Length body */
    P_CHUNK_SIZE, /* a chunk's size line */
    P_CHUNK_DATA, /* `left` bytes of a chunk */
    P_CHUNK_END,  /* the CRLF after a chunk (`left`: bytes of it still to come) */
    P_TRAILER,    /* trailer lines up to the blank one (ignored) */
    P_TO_CLOSE,   /* a body without framing: everything to the connection's end */
    P_DONE,
    P_ERROR
};

#define CHUNK_LINE_MAX 256

void rt_http_parser_init(rt_http_parser *p, bool head_request)
{
    p->state = P_STATUS;
    p->head_request = head_request;
    p->status = 0;
    p->has_length = p->chunked = p->close = false;
    p->length = p->left = 0;
    p->head_bytes = p->line_len = 0;
    p->error[0] = '\0';
}

bool rt_http_parser_done(const rt_http_parser *p)
{
    return p->state == P_DONE;
}

static long fail(rt_http_parser *p, const char *why)
{
    p->state = P_ERROR;
    snprintf(p->error, sizeof(p->error), "%s", why);
    return -1;
}

static bool is_token_char(unsigned char ch)
{
    return ch > 32 && ch < 127 && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* Digits only, at most 18 of them (no sign, no blanks, no overflow). */
static int parse_decimal(const char *s, size_t len, unsigned long long *out)
{
    if (len == 0 || len > 18)
        return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* "HTTP/1.x NNN[ reason]" */
static int status_line(rt_http_parser *p, const char *s, size_t len)
{
    if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ' ||
        (len > 12 && s[12] != ' '))
        return -1;
    unsigned long long code;
    if (parse_decimal(s + 9, 3, &code) != 0 || code < 100 || code > 599)
        return -1;
    p->status = (int)code;
    p->close = s[7] == '0'; /* HTTP/1.0: no keep-alive unless said (never, from rayd) */
    return 0;
}

static int header_line(rt_http_parser *p, const char *s, size_t len, const rt_http_callbacks *cb,
                       void *arg)
{
    const char *colon = memchr(s, ':', len);
    if (!colon || colon == s)
        return fail(p, "a header line without a name"), -1;
    for (const char *c = s; c < colon; c++)
        if (!is_token_char((unsigned char)*c))
            return fail(p, "a header name with a character not allowed"), -1;
    const char *v = colon + 1, *end = s + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    for (const char *c = v; c < end; c++)
        if ((unsigned char)*c < 32 && *c != '\t')
            return fail(p, "a header value with a control character"), -1;
    size_t name_len = (size_t)(colon - s), value_len = (size_t)(end - v);
    if (p->status >= 200) {
        if (name_len == 14 && strncasecmp(s, "content-length", 14) == 0) {
            unsigned long long n;
            if (parse_decimal(v, value_len, &n) != 0)
                return fail(p, "a Content-Length that is not a number"), -1;
            if (p->has_length && n != p->length)
                return fail(p, "two different Content-Length headers"), -1;
            p->has_length = true;
            p->length = n;
        } else if (name_len == 17 && strncasecmp(s, "transfer-encoding", 17) == 0) {
            if (value_len != 7 || strncasecmp(v, "chunked", 7) != 0)
                return fail(p, "a Transfer-Encoding other than chunked"), -1;
            p->chunked = true;
        } else if (name_len == 10 && strncasecmp(s, "connection", 10) == 0) {
            if (value_len == 5 && strncasecmp(v, "close", 5) == 0)
                p->close = true;
            else if (value_len == 10 && strncasecmp(v, "keep-alive", 10) == 0)
                p->close = false;
        }
        if (cb->header && cb->header(arg, s, name_len, v, value_len) != 0)
            return fail(p, "the answer's reader refused a header"), -1;
    }
    return 0;
}

/* The blank line after the headers. */
static int head_end(rt_http_parser *p, const rt_http_callbacks *cb, void *arg)
{
    if (p->status < 200) {
        if (p->status == 101)
            return fail(p, "an answer switching protocols"), -1;
        p->state = P_STATUS; /* an interim answer: the real one follows */
        return 0;
    }
    if (p->has_length && p->chunked)
        return fail(p, "both Content-Length and Transfer-Encoding"), -1;
    if (cb->head_end && cb->head_end(arg, p->status) != 0)
        return fail(p, "the answer's reader refused its head"), -1;
    if (p->head_request || p->status == 204 || p->status == 304)
        p->state = P_DONE;
    else if (p->chunked)
        p->state = P_CHUNK_SIZE;
    else if (p->has_length) {
        p->left = p->length;
        p->state = p->left ? P_BODY : P_DONE;
    } else {
        p->close = true;
        p->state = P_TO_CLOSE;
    }
    return 0;
}

/* "HEX[;extensions]" */
static int chunk_size_line(rt_http_parser *p, const char *s, size_t len)
{
    size_t i = 0;
    unsigned long long v = 0;
    for (; i < len && i < 16; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (d < 0)
            break;
        v = v * 16 + (unsigned)d;
    }
    if (i == 0 || i == 16 || (i < len && s[i] != ';' && s[i] != ' ' && s[i] != '\t'))
        return fail(p, "a malformed chunk size"), -1;
    p->left = v;
    p->state = v ? P_CHUNK_DATA : P_TRAILER;
    return 0;
}

/* One whole line (without its line end) in the state that collects lines. */
static int line_done(rt_http_parser *p, const char *s, size_t len, const rt_http_callbacks *cb,
                     void *arg)
{
    switch (p->state) {
    case P_STATUS:
        if (status_line(p, s, len) != 0)
            return fail(p, "a malformed status line"), -1;
        p->state = P_HEADER;
        return 0;
    case P_HEADER:
        if (len == 0)
            return head_end(p, cb, arg);
        if (s[0] == ' ' || s[0] == '\t')
            return fail(p, "a folded header line"), -1;
        return header_line(p, s, len, cb, arg);
    case P_CHUNK_SIZE:
        return chunk_size_line(p, s, len);
    default: /* P_TRAILER */
        if (len == 0)
            p->state = P_DONE;
        return 0;
    }
}

long rt_http_parse(rt_http_parser *p, const char *data, size_t len, const rt_http_callbacks *cb,
                   void *arg)
{
    size_t i = 0;
    while (i < len) {
        switch (p->state) {
        case P_DONE:
            return (long)i;
        case P_ERROR:
            return -1;
        case P_BODY:
        case P_CHUNK_DATA:
        case P_TO_CLOSE: {
            size_t n = len - i;
            if (p->state != P_TO_CLOSE && n > p->left)
                n = (size_t)p->left;
            if (cb->body && cb->body(arg, data + i, n) != 0)
                return fail(p, "the answer's reader refused its body");
            i += n;
            if (p->state == P_TO_CLOSE)
                break;
            p->left -= n;
            if (p->left == 0) {
                p->state = p->state == P_BODY ? P_DONE : P_CHUNK_END;
                p->left = 2;
            }
            break;
        }
        case P_CHUNK_END:
            if (data[i] != (p->left == 2 ? '\r' : '\n'))
                return fail(p, "a chunk not followed by CRLF");
            i++;
            if (--p->left == 0)
                p->state = P_CHUNK_SIZE;
            break;
        default: { /* a state that collects a line */
            bool in_head = p->state == P_STATUS || p->state == P_HEADER || p->state == P_TRAILER;
            size_t max = in_head ? RT_HTTP_HEAD_MAX : CHUNK_LINE_MAX;
            const char *nl = memchr(data + i, '\n', len - i);
            size_t take = nl ? (size_t)(nl - (data + i)) : len - i;
            if (p->line_len + take >= max || (in_head && p->head_bytes + take + 1 > max))
                return fail(p, in_head ? "an answer head over the size limit"
                                       : "a chunk size line over the size limit");
            memcpy(p->line + p->line_len, data + i, take);
            p->line_len += take;
            if (in_head)
                p->head_bytes += take + (nl ? 1 : 0);
            i += take;
            if (!nl)
                break;
            i++; /* the '\n' */
            size_t l = p->line_len;
            if (l == 0 || p->line[l - 1] != '\r')
                return fail(p, "a line not ended by CRLF");
            p->line_len = 0;
            if (line_done(p, p->line, l - 1, cb, arg) != 0)
                return -1;
            break;
        }
        }
    }
    if (p->state == P_ERROR)
        return -1;
    return (long)i;
}

int rt_http_parse_eof(rt_http_parser *p)
{
    if (p->state == P_TO_CLOSE)
        p->state = P_DONE;
    return p->state == P_DONE ? 0 : -1;
}

/* ---- the client ----------------------------------------------------------------------- */

enum { CONN_CONNECTING = 0, CONN_IDLE, CONN_CHECKING, CONN_BUSY };

/* A waiting caller's exchange given back to the I/O thread: as it is, with its answer
 * malformed (the parser says why), or with its whole answer on a connection to close. */
enum { HANDBACK_NONE = 0, HANDBACK_MALFORMED, HANDBACK_ANSWERED_CLOSE };

#define IDLE_EVENTS (EPOLLIN | EPOLLRDHUP | EPOLLET)

#define CONNECT_TIMEOUT 2.0
#define SCAN_MS 100 /* how often the I/O thread looks for calls over their time */
#define READ_CHUNK 65536

typedef struct peer_host peer_host;
typedef struct conn conn;

struct peer_host {
    peer_host *next;
    char key[264]; /* "host:port" as in the URL */
    char name[256], port[8];
    conn *idle;                   /* lock */
    size_t nconns;                /* lock: open, opening, or reserved for a new call */
    struct sockaddr_storage addr; /* I/O thread */
    socklen_t addr_len;
    bool resolved;
};

struct conn {
    conn *next_idle;           /* lock */
    conn *next_poke;           /* lock */
    conn *all_prev, *all_next; /* I/O thread */
    peer_host *host;
    int fd;
    int state;             /* lock */
    bool sending;          /* lock: a caller writes on it now */
    bool recheck;          /* lock: an event came while it did */
    bool poked;            /* lock: on `pokes` */
    int send_errno;        /* lock: the caller's write failed */
    bool reused;           /* carried a whole answer before */
    bool out_armed;        /* EPOLLOUT is in its epoll mask (I/O thread) */
    rt_http_exchange *ex;  /* lock */
    rt_http_parser parser; /* I/O thread, for the call it carries */
};

struct rt_http_exchange {
    rt_http_exchange *busy_prev, *busy_next; /* lock */
    rt_http_exchange *next_new;              /* lock */
    peer_host *host;
    conn *conn; /* lock */
    const rt_http_handler *h;
    void *arg;
    char *out;               /* the request */
    size_t out_len, out_off; /* out_off: lock while a caller writes */
    bool head_request;
    bool retried;       /* I/O thread */
    bool got_bytes;     /* I/O thread */
    bool cancel_wanted; /* lock */
    bool cancel_queued; /* lock */
    int handback;       /* what a waiting caller left: HANDBACK_* (then I/O thread) */
    const int *cancel_flag;
    rt_http_exchange **slot; /* lock */
    /* Set by rt_http_start before the I/O thread sees the exchange; then the I/O thread's
     * (last, connect_by: I/O thread only). Monotonic seconds. */
    double started, deadline, stall, last, connect_by;
};

struct rt_http_client {
    pthread_t thread;
    int epfd, evfd;
    pthread_mutex_t lock;
    peer_host *hosts;           /* lock */
    rt_http_exchange *busy;     /* lock: started and not ended */
    rt_http_exchange *news;     /* lock: waiting for a new connection */
    conn *pokes;                /* lock */
    rt_http_exchange **cancels; /* lock */
    size_t ncancels, cancels_cap;
    bool closed, stopping; /* lock */
    bool joined;           /* rt_http_client_stop has run */
    int sleeping;          /* atomic */
    conn *all;             /* I/O thread */
};

static void wake(rt_http_client *cl)
{
    if (__atomic_exchange_n(&cl->sleeping, 0, __ATOMIC_SEQ_CST)) {
        uint64_t one = 1;
        ssize_t w = write(cl->evfd, &one, sizeof(one));
        (void)w; /* a full counter already wakes it */
    }
}

/* "http://host[:port]/path" into key (host:port), name, port and the path. */
static int split_url(const char *url, char *key, char *name, char *port, const char **path)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= 256 || memchr(h, '@', hl) || memchr(h, '[', hl))
        return -1; /* userinfo and IPv6 literals: libcurl's */
    memcpy(key, h, hl);
    key[hl] = '\0';
    const char *colon = memchr(h, ':', hl);
    size_t nl = colon ? (size_t)(colon - h) : hl;
    if (nl == 0)
        return -1;
    memcpy(name, h, nl);
    name[nl] = '\0';
    if (colon) {
        size_t pl = hl - nl - 1;
        unsigned long long v;
        if (parse_decimal(colon + 1, pl, &v) != 0 || v == 0 || v > 65535)
            return -1;
        snprintf(port, 8, "%llu", v);
    } else {
        snprintf(port, 8, "80");
    }
    *path = slash ? slash : "/";
    return 0;
}

static char *build_request(const rt_http_request *rq, const char *key, const char *path,
                           size_t *len_out)
{
    size_t cap = strlen(rq->method) + strlen(path) + strlen(key) + 96 + rq->body_len;
    for (const char *const *h = rq->headers; h && *h; h++)
        cap += strlen(*h) + 2;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = (size_t)snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n", rq->method, path, key);
    for (const char *const *h = rq->headers; h && *h; h++) {
        size_t l = strlen(*h);
        if (strpbrk(*h, "\r\n"))
            continue; /* never a line that would split the request */
        memcpy(out + n, *h, l);
        memcpy(out + n + l, "\r\n", 2);
        n += l + 2;
    }
    if (rq->has_body)
        n += (size_t)snprintf(out + n, cap - n, "Content-Length: %zu\r\n", rq->body_len);
    memcpy(out + n, "\r\n", 2);
    n += 2;
    if (rq->has_body && rq->body_len) {
        memcpy(out + n, rq->body, rq->body_len);
        n += rq->body_len;
    }
    *len_out = n;
    return out;
}

static peer_host *host_find(rt_http_client *cl, const char *key, const char *name, const char *port)
{
    for (peer_host *h = cl->hosts; h; h = h->next)
        if (strcmp(h->key, key) == 0)
            return h;
    peer_host *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    snprintf(h->key, sizeof(h->key), "%s", key);
    snprintf(h->name, sizeof(h->name), "%s", name);
    snprintf(h->port, sizeof(h->port), "%s", port);
    h->next = cl->hosts;
    cl->hosts = h;
    return h;
}

static void busy_remove(rt_http_client *cl, rt_http_exchange *ex)
{
    if (ex->busy_prev)
        ex->busy_prev->busy_next = ex->busy_next;
    else if (cl->busy == ex)
        cl->busy = ex->busy_next;
    if (ex->busy_next)
        ex->busy_next->busy_prev = ex->busy_prev;
    ex->busy_prev = ex->busy_next = NULL;
}

/* The call on c had its whole answer and c stays open: c goes back to the idle list. */
static void conn_idle_locked(conn *c, rt_http_exchange *ex)
{
    c->ex = NULL;
    ex->conn = NULL;
    c->reused = true;
    c->state = CONN_IDLE;
    c->next_idle = c->host->idle;
    c->host->idle = c;
}

/* A call ends: off `busy`, its slot emptied, any cancel queued for it forgotten. */
static void exchange_off_lists_locked(rt_http_client *cl, rt_http_exchange *ex)
{
    busy_remove(cl, ex);
    if (ex->slot)
        *ex->slot = NULL;
    for (size_t i = 0; i < cl->ncancels; i++)
        if (cl->cancels[i] == ex)
            cl->cancels[i] = NULL;
}

/* The epoll mask of a connection a caller holds (`sending`): empty while it waits on it
 * itself, so that the answer does not wake the I/O thread; IDLE_EVENTS again before it
 * lets go (a change re-reports what is pending then). */
static void set_events(rt_http_client *cl, conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(cl->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* A waiting caller reads the answer on c for up to wait seconds. 1: a whole answer on a
 * connection that stays open; 0: the I/O thread goes on (ex->handback says what it must
 * know). The buffer is per thread, as read_answer's. */
static int wait_answer(conn *c, rt_http_exchange *ex, double wait)
{
    static __thread char buf[READ_CHUNK];
    double until = rt_clock_monotonic() + wait;
    for (;;) {
        double left = until - rt_clock_monotonic();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        struct timespec ts = {.tv_sec = (time_t)left,
                              .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
        int r = ppoll(&p, 1, &ts, NULL);
        if (r == 0 || (r < 0 && errno == EINTR))
            continue;
        if (r < 0)
            return 0;
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            return 0; /* broke or closed: the I/O thread reads the same and retries or fails */
        ex->got_bytes = true;
        ex->last = rt_clock_monotonic();
        long used = rt_http_parse(&c->parser, buf, (size_t)n, &ex->h->parse, ex->arg);
        if (used < 0) {
            ex->handback = HANDBACK_MALFORMED;
            return 0;
        }
        if (!rt_http_parser_done(&c->parser))
            continue;
        if (c->parser.close || used != n) {
            ex->handback = HANDBACK_ANSWERED_CLOSE;
            return 0;
        }
        return 1;
    }
}

/* A waiting caller got a whole answer on c: the connection goes back idle and the call
 * ends on the caller's thread. false when the client is closing or an event came (the
 * connection may be over): the I/O thread then closes it and ends the call. */
static bool end_here(rt_http_client *cl, conn *c, rt_http_exchange *ex)
{
    set_events(cl, c, IDLE_EVENTS); /* before another caller can take it */
    pthread_mutex_lock(&cl->lock);
    bool keep = !cl->closed && !c->recheck;
    if (keep) {
        c->sending = false;
        conn_idle_locked(c, ex);
        exchange_off_lists_locked(cl, ex);
    }
    pthread_mutex_unlock(&cl->lock);
    if (!keep)
        return false;
    ex->h->end(ex->arg, RT_HTTP_ANSWERED, "");
    free(ex->out);
    free(ex);
    return true;
}

/* What rt_http_start_waiting returns for a call that ended on the caller's thread. */
static rt_http_exchange answered_here;

rt_http_exchange *rt_http_start_waiting(rt_http_client *cl, const rt_http_request *rq,
                                        const rt_http_handler *handler, void *arg,
                                        rt_http_waited *waited)
{
    char key[264], name[256], port[8];
    const char *path;
    if (waited)
        *waited = RT_HTTP_NOT_WAITED;
    if (!cl || split_url(rq->url, key, name, port, &path) != 0)
        return NULL;
    rt_http_exchange *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return NULL;
    ex->out = build_request(rq, key, path, &ex->out_len);
    if (!ex->out) {
        free(ex);
        return NULL;
    }
    ex->h = handler;
    ex->arg = arg;
    ex->head_request = strcmp(rq->method, "HEAD") == 0;
    ex->started = ex->last = rt_clock_monotonic();
    ex->deadline = rq->timeout > 0 ? ex->started + rq->timeout : 0;
    ex->stall = rq->stall > 0 ? rq->stall : 0;
    ex->cancel_flag = rq->cancel_flag;
    ex->slot = rq->slot;

    pthread_mutex_lock(&cl->lock);
    peer_host *h = cl->closed ? NULL : host_find(cl, key, name, port);
    conn *c = h ? h->idle : NULL;
    bool queued = false;
    if (c) {
        h->idle = c->next_idle;
        c->state = CONN_BUSY;
        c->sending = true;
        c->ex = ex;
        ex->conn = c;
        rt_http_parser_init(&c->parser, ex->head_request);
    } else if (h && h->nconns < RT_HTTP_CONNS_PER_PEER) {
        h->nconns++; /* reserved for the connection the I/O thread opens */
        ex->next_new = cl->news;
        cl->news = ex;
        queued = true;
    }
    if (!c && !queued) {
        pthread_mutex_unlock(&cl->lock);
        free(ex->out);
        free(ex);
        return NULL;
    }
    ex->host = h;
    ex->busy_next = cl->busy;
    if (cl->busy)
        cl->busy->busy_prev = ex;
    cl->busy = ex;
    if (ex->slot)
        *ex->slot = ex;
    pthread_mutex_unlock(&cl->lock);
    if (queued) {
        wake(cl);
        return ex;
    }

    /* The request goes out from this thread (see the DESIGN note). */
    bool wait = rq->wait > 0;
    if (wait)
        set_events(cl, c, 0);
    size_t sent = 0;
    int err = 0;
    while (sent < ex->out_len) {
        ssize_t w = send(c->fd, ex->out + sent, ex->out_len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            sent += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else {
            err = w < 0 && errno != EAGAIN && errno != EWOULDBLOCK ? errno : 0;
            break;
        }
    }
    if (wait) {
        if (sent == ex->out_len && !err) {
            ex->out_off = sent;
            if (waited)
                *waited = RT_HTTP_WAIT_MISSED; /* unless answered below */
            if (wait_answer(c, ex, rq->wait) == 1) {
                if (end_here(cl, c, ex)) {
                    if (waited)
                        *waited = RT_HTTP_ANSWERED_HERE;
                    return &answered_here; /* not NULL; the exchange is gone */
                }
                ex->handback = HANDBACK_ANSWERED_CLOSE;
            }
        }
        set_events(cl, c, IDLE_EVENTS);
    }
    pthread_mutex_lock(&cl->lock);
    c->sending = false;
    ex->out_off = sent;
    c->send_errno = err;
    /* A caller that waited gives the call to the I/O thread, which reads on. */
    bool poke = (sent < ex->out_len || c->recheck || ex->cancel_wanted || wait) && !c->poked;
    c->recheck = false;
    if (poke) {
        c->poked = true;
        c->next_poke = cl->pokes;
        cl->pokes = c;
    }
    pthread_mutex_unlock(&cl->lock);
    if (poke)
        wake(cl);
    return ex;
}

rt_http_exchange *rt_http_start(rt_http_client *cl, const rt_http_request *rq,
                                const rt_http_handler *handler, void *arg)
{
    return rt_http_start_waiting(cl, rq, handler, arg, NULL);
}

static void cancel_locked(rt_http_client *cl, rt_http_exchange *ex)
{
    bool queue = !ex->cancel_queued;
    if (queue && cl->ncancels == cl->cancels_cap) {
        size_t cap = cl->cancels_cap ? cl->cancels_cap * 2 : 16;
        rt_http_exchange **grown = realloc(cl->cancels, cap * sizeof(*grown));
        if (grown) {
            cl->cancels = grown;
            cl->cancels_cap = cap;
        } else {
            queue = false; /* it ends by itself (answer, timeout, or the client's close) */
        }
    }
    if (queue) {
        ex->cancel_queued = true;
        cl->cancels[cl->ncancels++] = ex;
    }
}

void rt_http_cancel(rt_http_client *cl, rt_http_exchange *ex)
{
    pthread_mutex_lock(&cl->lock);
    cancel_locked(cl, ex);
    pthread_mutex_unlock(&cl->lock);
    wake(cl);
}

void rt_http_cancel_slot(rt_http_client *cl, rt_http_exchange **slot)
{
    pthread_mutex_lock(&cl->lock);
    rt_http_exchange *ex = *slot;
    if (ex)
        cancel_locked(cl, ex);
    pthread_mutex_unlock(&cl->lock);
    if (ex)
        wake(cl);
}

/* ---- the I/O thread ------------------------------------------------------------------- */

/* Ends a call: off the lists, its end callback, freed. Its connection is detached first. */
static void end_exchange(rt_http_client *cl, rt_http_exchange *ex, rt_http_end how, const char *why)
{
    pthread_mutex_lock(&cl->lock);
    exchange_off_lists_locked(cl, ex);
    if (ex->conn)
        ex->conn->ex = NULL;
    ex->conn = NULL;
    pthread_mutex_unlock(&cl->lock);
    ex->h->end(ex->arg, how, why ? why : "");
    free(ex->out);
    free(ex);
}

static void conn_close(rt_http_client *cl, conn *c)
{
    close(c->fd); /* also takes it out of the epoll set */
    pthread_mutex_lock(&cl->lock);
    if (c->poked) {
        /* A caller poked it and an epoll event closed it first: off `pokes` before free. */
        conn **pp = &cl->pokes;
        while (*pp && *pp != c)
            pp = &(*pp)->next_poke;
        if (*pp)
            *pp = c->next_poke;
        c->poked = false;
    }
    c->host->nconns--;
    if (c->ex)
        c->ex->conn = NULL;
    pthread_mutex_unlock(&cl->lock);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else if (cl->all == c)
        cl->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    free(c);
}

static void set_out_armed(rt_http_client *cl, conn *c, bool armed)
{
    if (c->out_armed == armed)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (armed ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(cl->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->out_armed = armed;
}

static void start_on_new_conn(rt_http_client *cl, rt_http_exchange *ex);

/* The connection carrying ex broke (err: why). A kept-alive one that broke before any byte
 * of the answer is retried once on a new connection; otherwise the call fails. */
static void conn_broke(rt_http_client *cl, conn *c, const char *why)
{
    rt_http_exchange *ex = c->ex;
    bool retry = ex && c->reused && !ex->got_bytes && !ex->retried;
    if (retry) {
        pthread_mutex_lock(&cl->lock);
        c->host->nconns++; /* reserved for the new connection */
        pthread_mutex_unlock(&cl->lock);
    }
    conn_close(cl, c);
    if (!ex)
        return;
    if (retry) {
        ex->retried = true;
        ex->out_off = 0;
        start_on_new_conn(cl, ex);
        return;
    }
    char msg[200];
    snprintf(msg, sizeof(msg), "%.80s (%.100s:%s)", why, ex->host->name, ex->host->port);
    end_exchange(cl, ex, RT_HTTP_UNREACHABLE, msg);
}

/* Writes what is left of the request. 0: all out, or more when the socket has room. */
static int flush_out(rt_http_client *cl, conn *c)
{
    rt_http_exchange *ex = c->ex;
    while (ex->out_off < ex->out_len) {
        ssize_t w = send(c->fd, ex->out + ex->out_off, ex->out_len - ex->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            ex->out_off += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out_armed(cl, c, true);
            return 0;
        } else {
            return -1;
        }
    }
    set_out_armed(cl, c, false);
    return 0;
}

static int resolve(peer_host *h, char *why, size_t why_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(h->name, h->port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(why, why_size, "could not resolve %.100s: %s", h->name, gai_strerror(rc));
        return -1;
    }
    memcpy(&h->addr, res->ai_addr, res->ai_addrlen);
    h->addr_len = res->ai_addrlen;
    h->resolved = true;
    freeaddrinfo(res);
    return 0;
}

/* Opens a connection for ex (its slot in nconns is reserved) and writes when it is up. */
static void start_on_new_conn(rt_http_client *cl, rt_http_exchange *ex)
{
    peer_host *h = ex->host;
    char why[200] = "";
    int fd = -1;
    if (!h->resolved && resolve(h, why, sizeof(why)) != 0)
        goto failed;
    fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, sizeof(why), "socket: %s", strerror(errno));
        goto failed;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&h->addr, h->addr_len) != 0 && errno != EINPROGRESS) {
        snprintf(why, sizeof(why), "could not connect to %.100s:%s: %s", h->name, h->port,
                 strerror(errno));
        h->resolved = false; /* the name may point elsewhere now */
        goto failed;
    }
    conn *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(why, sizeof(why), "out of memory");
        goto failed;
    }
    c->host = h;
    c->fd = fd;
    c->state = CONN_CONNECTING;
    c->out_armed = true;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(cl->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        snprintf(why, sizeof(why), "epoll: %s", strerror(errno));
        free(c);
        goto failed;
    }
    c->all_next = cl->all;
    if (cl->all)
        cl->all->all_prev = c;
    cl->all = c;
    ex->connect_by = rt_clock_monotonic() + CONNECT_TIMEOUT;
    pthread_mutex_lock(&cl->lock);
    c->ex = ex;
    ex->conn = c;
    pthread_mutex_unlock(&cl->lock);
    return;
failed:
    if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&cl->lock);
    h->nconns--;
    pthread_mutex_unlock(&cl->lock);
    end_exchange(cl, ex, RT_HTTP_UNREACHABLE, why);
}

/* Reads the answer of the call on c until the socket is drained or the answer is whole. */
static void read_answer(rt_http_client *cl, conn *c)
{
    static __thread char buf[READ_CHUNK];
    rt_http_exchange *ex = c->ex;
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            conn_broke(cl, c, strerror(errno));
            return;
        }
        if (n == 0) {
            if (ex->got_bytes && rt_http_parse_eof(&c->parser) == 0) {
                conn_close(cl, c);
                end_exchange(cl, ex, RT_HTTP_ANSWERED, NULL);
            } else {
                conn_broke(cl, c, "the peer closed the connection before its answer ended");
            }
            return;
        }
        ex->got_bytes = true;
        ex->last = rt_clock_monotonic();
        long used = rt_http_parse(&c->parser, buf, (size_t)n, &ex->h->parse, ex->arg);
        if (used < 0) {
            char why[200];
            snprintf(why, sizeof(why), "%s", c->parser.error);
            conn_close(cl, c);
            end_exchange(cl, ex, RT_HTTP_FAILED, why);
            return;
        }
        if (!rt_http_parser_done(&c->parser))
            continue;
        bool keep = !c->parser.close && used == n;
        pthread_mutex_lock(&cl->lock);
        bool closing = cl->closed;
        pthread_mutex_unlock(&cl->lock);
        if (!keep || closing) {
            conn_close(cl, c);
        } else {
            pthread_mutex_lock(&cl->lock);
            conn_idle_locked(c, ex);
            pthread_mutex_unlock(&cl->lock);
        }
        end_exchange(cl, ex, RT_HTTP_ANSWERED, NULL);
        return;
    }
}

/* Something happened on c (an epoll event, or a caller's poke). */
static void conn_event(rt_http_client *cl, conn *c, uint32_t events)
{
    pthread_mutex_lock(&cl->lock);
    if (c->sending) {
        c->recheck = true; /* the caller pokes it when done */
        pthread_mutex_unlock(&cl->lock);
        return;
    }
    int state = c->state;
    if (state == CONN_IDLE) {
        conn **pp = &c->host->idle;
        while (*pp && *pp != c)
            pp = &(*pp)->next_idle;
        if (*pp)
            *pp = c->next_idle;
        c->state = CONN_CHECKING;
    }
    int send_errno = c->send_errno;
    c->send_errno = 0;
    bool cancel = c->ex && c->ex->cancel_wanted;
    pthread_mutex_unlock(&cl->lock);

    if (state == CONN_IDLE) {
        /* An idle connection has nothing to say: anything but "no data" means it is over
         * (closed by the peer, or an edge left from the last answer's bytes). */
        char b;
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pthread_mutex_lock(&cl->lock);
            c->state = CONN_IDLE;
            c->next_idle = c->host->idle;
            c->host->idle = c;
            pthread_mutex_unlock(&cl->lock);
        } else {
            conn_close(cl, c);
        }
        return;
    }
    rt_http_exchange *ex = c->ex;
    if (!ex)
        return;
    if (cancel) {
        conn_close(cl, c);
        end_exchange(cl, ex, RT_HTTP_CANCELLED, "the call was cancelled");
        return;
    }
    if (ex->handback == HANDBACK_MALFORMED) {
        char why[200];
        snprintf(why, sizeof(why), "%s", c->parser.error);
        conn_close(cl, c);
        end_exchange(cl, ex, RT_HTTP_FAILED, why);
        return;
    }
    if (ex->handback == HANDBACK_ANSWERED_CLOSE) {
        conn_close(cl, c);
        end_exchange(cl, ex, RT_HTTP_ANSWERED, NULL);
        return;
    }
    if (state == CONN_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            char why[160];
            snprintf(why, sizeof(why), "could not connect: %s", strerror(err));
            c->host->resolved = false;
            conn_broke(cl, c, why);
            return;
        }
        pthread_mutex_lock(&cl->lock);
        c->state = CONN_BUSY;
        pthread_mutex_unlock(&cl->lock);
        rt_http_parser_init(&c->parser, ex->head_request);
    }
    if (send_errno) {
        conn_broke(cl, c, strerror(send_errno));
        return;
    }
    if (ex->out_off < ex->out_len && flush_out(cl, c) != 0) {
        conn_broke(cl, c, strerror(errno));
        return;
    }
    read_answer(cl, c);
}

/* Calls over their time: the connection is closed and they end TIMED_OUT. */
static void scan_times(rt_http_client *cl, double now)
{
    rt_http_exchange *late[64];
    size_t n = 0;
    pthread_mutex_lock(&cl->lock);
    for (rt_http_exchange *ex = cl->busy; ex && n < 64; ex = ex->busy_next) {
        conn *c = ex->conn;
        if (!c || c->sending)
            continue;
        if (ex->cancel_flag && __atomic_load_n(ex->cancel_flag, __ATOMIC_ACQUIRE) &&
            !ex->cancel_queued) {
            cancel_locked(cl, ex); /* seen on the next turn of the I/O thread's loop */
            continue;
        }
        bool over = (ex->deadline && now > ex->deadline) ||
                    (ex->stall && now - ex->last > ex->stall) ||
                    (c->state == CONN_CONNECTING && now > ex->connect_by);
        if (over)
            late[n++] = ex;
    }
    pthread_mutex_unlock(&cl->lock);
    for (size_t i = 0; i < n; i++) {
        rt_http_exchange *ex = late[i];
        char why[200];
        snprintf(why, sizeof(why), "%.100s:%s did not answer in time", ex->host->name,
                 ex->host->port);
        conn_close(cl, ex->conn);
        end_exchange(cl, ex, RT_HTTP_TIMED_OUT, why);
    }
}

static void *io_thread(void *arg)
{
    rt_http_client *cl = arg;
    struct epoll_event events[64];
    double next_scan = 0;
    for (;;) {
        pthread_mutex_lock(&cl->lock);
        rt_http_exchange *news = cl->news;
        cl->news = NULL;
        conn *pokes = cl->pokes;
        cl->pokes = NULL;
        for (conn *c = pokes; c; c = c->next_poke)
            c->poked = false;
        rt_http_exchange **cancels = cl->cancels;
        size_t ncancels = cl->ncancels;
        cl->cancels = NULL;
        cl->ncancels = cl->cancels_cap = 0;
        for (size_t i = 0; i < ncancels; i++)
            cancels[i]->cancel_wanted = true;
        bool closed = cl->closed, stopping = cl->stopping;
        if (closed)
            for (rt_http_exchange *ex = cl->busy; ex; ex = ex->busy_next)
                ex->cancel_wanted = true;
        pthread_mutex_unlock(&cl->lock);

        /* Cancels first: the calls they name are all still alive here. */
        for (size_t i = 0; i < ncancels; i++) {
            rt_http_exchange *ex = cancels[i];
            if (ex->conn)
                conn_event(cl, ex->conn, 0); /* closes it and ends the call, unless sending */
        }
        free(cancels);
        while (news) {
            rt_http_exchange *next = news->next_new;
            if (news->cancel_wanted) {
                pthread_mutex_lock(&cl->lock);
                news->host->nconns--;
                pthread_mutex_unlock(&cl->lock);
                end_exchange(cl, news, RT_HTTP_CANCELLED, "the call was cancelled");
            } else {
                start_on_new_conn(cl, news);
            }
            news = next;
        }
        while (pokes) {
            conn *next = pokes->next_poke;
            conn_event(cl, pokes, EPOLLIN | EPOLLOUT);
            pokes = next;
        }
        if (closed) {
            /* Every call still carried ends now (those being written, once poked). */
            for (;;) {
                pthread_mutex_lock(&cl->lock);
                rt_http_exchange *ex = cl->busy;
                while (ex && (!ex->conn || ex->conn->sending))
                    ex = ex->busy_next;
                pthread_mutex_unlock(&cl->lock);
                if (!ex)
                    break;
                conn_event(cl, ex->conn, 0);
            }
        }
        double now = rt_clock_monotonic();
        if (now >= next_scan) {
            scan_times(cl, now);
            next_scan = now + SCAN_MS / 1000.0;
        }

        __atomic_store_n(&cl->sleeping, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_lock(&cl->lock);
        bool work = cl->news || cl->pokes || cl->ncancels;
        bool any = cl->busy != NULL;
        pthread_mutex_unlock(&cl->lock);
        if (stopping && !any)
            break;
        int n = epoll_wait(cl->epfd, events, 64, work ? 0 : any ? SCAN_MS : -1);
        __atomic_store_n(&cl->sleeping, 0, __ATOMIC_SEQ_CST);
        for (int i = 0; i < n; i++) {
            if (!events[i].data.ptr) {
                uint64_t v;
                ssize_t r = read(cl->evfd, &v, sizeof(v));
                (void)r;
                continue;
            }
            conn_event(cl, events[i].data.ptr, events[i].events);
        }
    }
    while (cl->all)
        conn_close(cl, cl->all);
    return NULL;
}

/* ---- public --------------------------------------------------------------------------- */

rt_http_client *rt_http_client_new(void)
{
    rt_http_client *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return NULL;
    cl->epfd = epoll_create1(EPOLL_CLOEXEC);
    cl->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (cl->epfd < 0 || cl->evfd < 0 || epoll_ctl(cl->epfd, EPOLL_CTL_ADD, cl->evfd, &ev) != 0)
        goto failed;
    pthread_mutex_init(&cl->lock, NULL);
    if (pthread_create(&cl->thread, NULL, io_thread, cl) != 0) {
        pthread_mutex_destroy(&cl->lock);
        goto failed;
    }
    return cl;
failed:
    if (cl->epfd >= 0)
        close(cl->epfd);
    if (cl->evfd >= 0)
        close(cl->evfd);
    free(cl);
    return NULL;
}

void rt_http_client_close(rt_http_client *cl)
{
    if (!cl)
        return;
    pthread_mutex_lock(&cl->lock);
    cl->closed = true;
    pthread_mutex_unlock(&cl->lock);
    __atomic_store_n(&cl->sleeping, 1, __ATOMIC_SEQ_CST);
    wake(cl);
}

void rt_http_client_stop(rt_http_client *cl)
{
    if (!cl || cl->joined)
        return;
    pthread_mutex_lock(&cl->lock);
    cl->closed = cl->stopping = true;
    pthread_mutex_unlock(&cl->lock);
    __atomic_store_n(&cl->sleeping, 1, __ATOMIC_SEQ_CST);
    wake(cl);
    pthread_join(cl->thread, NULL);
    cl->joined = true;
}

void rt_http_client_free(rt_http_client *cl)
{
    if (!cl)
        return;
    rt_http_client_stop(cl);
    while (cl->hosts) {
        peer_host *next = cl->hosts->next;
        free(cl->hosts);
        cl->hosts = next;
    }
    free(cl->cancels);
    close(cl->epfd);
    close(cl->evfd);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}
