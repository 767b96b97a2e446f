/* API tests of the production service: Prometheus /metrics (parsed and checked by a small
 * text-format parser here), one log line per request on stdout (JSON or text, silenced at
 * warn), bearer-token auth on /v1/, and the graceful drain on SIGTERM/SIGINT (readiness
 * 503 at once, new work refused, parked requests answered at once, running work waited
 * for up to the drain timeout, a second signal exits at once), and the pages problem
 * types resolve to. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"

#define ID TK_ID_SIZE

/* Shared server for metrics and JSON logs: --workers 4. */
static rayd_server g_srv;
/* Per-test servers (auth, log formats, drain); the teardown kills one left running. */
static rayd_server g_own;

/* ================================================================ Prometheus text parser */

typedef struct mx_label {
    char *name, *value;
} mx_label;

typedef struct mx_sample {
    char *name;
    mx_label *labels;
    size_t n_labels;
    double value;
    char *key; /* labels sorted by name, as k="v",... (le included) */
} mx_sample;

typedef struct mx_family {
    char *name;
    char type[16]; /* "" until # TYPE */
    bool has_help;
    bool has_samples;
} mx_family;

typedef struct mx_set {
    mx_sample *samples;
    size_t n, cap;
    mx_family *fams;
    size_t nf, fcap;
} mx_set;

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    assert_non_null(d);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const mx_label *)a)->name, ((const mx_label *)b)->name);
}

/* Sorted k="v" list of labels, leaving out `skip` (may be NULL). New string. */
static char *labels_key(const mx_label *labels, size_t n, const char *skip)
{
    mx_label *sorted = malloc((n ? n : 1) * sizeof *sorted);
    assert_non_null(sorted);
    if (n)
        memcpy(sorted, labels, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, label_cmp);
    size_t cap = 16;
    for (size_t i = 0; i < n; i++)
        cap += strlen(sorted[i].name) + strlen(sorted[i].value) + 4;
    char *key = malloc(cap);
    assert_non_null(key);
    key[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip && strcmp(sorted[i].name, skip) == 0)
            continue;
        len += (size_t)snprintf(key + len, cap - len, "%s%s=\"%s\"", len ? "," : "",
                                sorted[i].name, sorted[i].value);
    }
    free(sorted);
    return key;
}

static mx_family *mx_family_get(mx_set *m, const char *name, bool create)
{
    for (size_t i = 0; i < m->nf; i++)
        if (strcmp(m->fams[i].name, name) == 0)
            return &m->fams[i];
    if (!create)
        return NULL;
    if (m->nf == m->fcap) {
        m->fcap = m->fcap ? m->fcap * 2 : 32;
        m->fams = realloc(m->fams, m->fcap * sizeof *m->fams);
        assert_non_null(m->fams);
    }
    mx_family *f = &m->fams[m->nf++];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    return f;
}

static void mx_free(mx_set *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        mx_sample *s = &m->samples[i];
        for (size_t j = 0; j < s->n_labels; j++) {
            free(s->labels[j].name);
            free(s->labels[j].value);
        }
        free(s->labels);
        free(s->name);
        free(s->key);
    }
    free(m->samples);
    for (size_t i = 0; i < m->nf; i++)
        free(m->fams[i].name);
    free(m->fams);
    free(m);
}

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The family a sample name belongs to: itself, or for histograms (and summaries) the name
 * without _bucket / _sum / _count. */
static mx_family *family_of(mx_set *m, const char *name)
{
    mx_family *f = mx_family_get(m, name, false);
    if (f)
        return f;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++)
        if (ends_with(name, suffixes[i])) {
            char *base = xstrndup(name, strlen(name) - strlen(suffixes[i]));
            f = mx_family_get(m, base, false);
            free(base);
            if (f && (strcmp(f->type, "histogram") == 0 ||
                      (strcmp(f->type, "summary") == 0 && i > 0)))
                return f;
        }
    return NULL;
}

#define PARSE_FAIL(...)                                                                        \
    do {                                                                                       \
        fprintf(stderr, "metrics line %d: %.300s\n", lineno, line);                            \
        fail_msg(__VA_ARGS__);                                                                 \
    } while (0)

/* Parses one sample line into m (failing the test on a syntax error). */
static void parse_sample(mx_set *m, const char *line, int lineno)
{
    const char *p = line;
    if (!is_name_start(*p))
        PARSE_FAIL("metric name expected");
    while (is_name_char(*p))
        p++;
    mx_sample s = {.name = xstrndup(line, (size_t)(p - line))};
    size_t lcap = 0;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            const char *ln = p;
            if (!is_name_start(*p) || *p == ':')
                PARSE_FAIL("label name expected");
            while (is_name_char(*p) && *p != ':')
                p++;
            size_t lnl = (size_t)(p - ln);
            if (*p++ != '=' || *p++ != '"')
                PARSE_FAIL("label %.*s: =\" expected", (int)lnl, ln);
            char *val = malloc(strlen(p) + 1);
            assert_non_null(val);
            size_t vl = 0;
            while (*p && *p != '"') {
                if (*p == '\\') {
                    p++;
                    if (*p == 'n')
                        val[vl++] = '\n';
                    else if (*p == '\\' || *p == '"')
                        val[vl++] = *p;
                    else
                        PARSE_FAIL("bad escape \\%c in a label value", *p);
                    p++;
                } else if (*p == '\n') {
                    PARSE_FAIL("newline in a label value");
                } else {
                    val[vl++] = *p++;
                }
            }
            if (*p++ != '"')
                PARSE_FAIL("unterminated label value");
            val[vl] = '\0';
            for (size_t j = 0; j < s.n_labels; j++)
                if (strlen(s.labels[j].name) == lnl && strncmp(s.labels[j].name, ln, lnl) == 0)
                    PARSE_FAIL("label %.*s twice", (int)lnl, ln);
            if (s.n_labels == lcap) {
                lcap = lcap ? lcap * 2 : 4;
                s.labels = realloc(s.labels, lcap * sizeof *s.labels);
                assert_non_null(s.labels);
            }
            s.labels[s.n_labels].name = xstrndup(ln, lnl);
            s.labels[s.n_labels].value = val;
            s.n_labels++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                PARSE_FAIL("',' or '}' expected after a label");
        }
        p++;
    }
    if (*p != ' ')
        PARSE_FAIL("one space expected before the value");
    while (*p == ' ')
        p++;
    char *end;
    s.value = strtod(p, &end);
    if (end == p)
        PARSE_FAIL("value expected");
    bool ok_word = strncmp(p, "+Inf", 4) == 0 || strncmp(p, "-Inf", 4) == 0 ||
                   strncmp(p, "NaN", 3) == 0;
    if (isinf(s.value) || isnan(s.value)) {
        if (!ok_word)
            PARSE_FAIL("non-finite values are written +Inf, -Inf or NaN");
    }
    p = end;
    if (*p == ' ') { /* optional timestamp (integer milliseconds) */
        p++;
        if (*p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            PARSE_FAIL("timestamp expected after the value");
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p != '\0')
        PARSE_FAIL("trailing text after the sample");
    s.key = labels_key(s.labels, s.n_labels, NULL);
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->samples[i].name, s.name) == 0 && strcmp(m->samples[i].key, s.key) == 0)
            PARSE_FAIL("duplicate series %s{%s}", s.name, s.key);
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->samples = realloc(m->samples, m->cap * sizeof *m->samples);
        assert_non_null(m->samples);
    }
    m->samples[m->n++] = s;
}

/* Checks every histogram family: per label set (le aside) the buckets have increasing le,
 * cumulative counts, end in +Inf, and +Inf equals _count; _sum is there. */
static void check_histograms(const mx_set *m)
{
    for (size_t fi = 0; fi < m->nf; fi++) {
        const mx_family *f = &m->fams[fi];
        if (strcmp(f->type, "histogram") != 0)
            continue;
        char bucket[256], count[256], sum[256];
        snprintf(bucket, sizeof bucket, "%s_bucket", f->name);
        snprintf(count, sizeof count, "%s_count", f->name);
        snprintf(sum, sizeof sum, "%s_sum", f->name);
        size_t groups = 0;
        for (size_t ci = 0; ci < m->n; ci++) {
            const mx_sample *c = &m->samples[ci];
            if (strcmp(c->name, count) != 0)
                continue;
            groups++;
            bool has_sum = false;
            for (size_t k = 0; k < m->n; k++)
                if (strcmp(m->samples[k].name, sum) == 0 && strcmp(m->samples[k].key, c->key) == 0)
                    has_sum = true;
            if (!has_sum)
                fail_msg("%s{%s} has no _sum", f->name, c->key);
            double prev_le = -INFINITY, prev_v = -1, last_v = -1;
            int nb = 0;
            bool inf = false;
            for (size_t k = 0; k < m->n; k++) {
                const mx_sample *b = &m->samples[k];
                if (strcmp(b->name, bucket) != 0)
                    continue;
                char *rest = labels_key(b->labels, b->n_labels, "le");
                bool mine = strcmp(rest, c->key) == 0;
                free(rest);
                if (!mine)
                    continue;
                const char *le = NULL;
                for (size_t j = 0; j < b->n_labels; j++)
                    if (strcmp(b->labels[j].name, "le") == 0)
                        le = b->labels[j].value;
                if (!le)
                    fail_msg("%s{%s} without le", bucket, b->key);
                if (inf)
                    fail_msg("%s{%s}: a bucket after +Inf", bucket, c->key);
                char *e;
                double lev = strtod(le, &e);
                if (e == le || *e)
                    fail_msg("%s: le=\"%s\" is not a number", bucket, le);
                if (!(lev > prev_le))
                    fail_msg("%s{%s}: le %s not above the previous bucket's", bucket, c->key, le);
                if (b->value < prev_v)
                    fail_msg("%s{%s}: bucket le=%s holds %g, below the previous %g: not "
                             "cumulative",
                             bucket, c->key, le, b->value, prev_v);
                inf = strcmp(le, "+Inf") == 0;
                prev_le = lev;
                prev_v = last_v = b->value;
                nb++;
            }
            if (nb == 0 || !inf)
                fail_msg("%s{%s}: %d buckets, not ending in le=\"+Inf\"", f->name, c->key, nb);
            if (last_v != c->value)
                fail_msg("%s{%s}: +Inf bucket %g != _count %g", f->name, c->key, last_v,
                         c->value);
        }
        /* every bucket group has a _count */
        for (size_t k = 0; k < m->n; k++) {
            const mx_sample *b = &m->samples[k];
            if (strcmp(b->name, bucket) != 0)
                continue;
            char *rest = labels_key(b->labels, b->n_labels, "le");
            bool found = false;
            for (size_t ci = 0; ci < m->n && !found; ci++)
                found = strcmp(m->samples[ci].name, count) == 0 &&
                        strcmp(m->samples[ci].key, rest) == 0;
            if (!found)
                fail_msg("%s{%s} has buckets but no _count", f->name, rest);
            free(rest);
        }
        if (groups == 0 && f->has_samples)
            fail_msg("histogram %s has samples but no _count", f->name);
    }
}

/* Parses a whole exposition, checking the format (see the file comment). New set. */
static mx_set *mx_parse(const char *text)
{
    mx_set *m = calloc(1, sizeof *m);
    assert_non_null(m);
    char *copy = strdup(text);
    assert_non_null(copy);
    size_t tl = strlen(text);
    if (tl == 0 || text[tl - 1] != '\n')
        fail_msg("the exposition does not end with a newline");
    /* The family whose samples may follow, by index: fams moves when it grows. */
    size_t current = SIZE_MAX;
    int lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (strchr(line, '\r'))
            PARSE_FAIL("CR in the exposition");
        if (line[0] == '#') {
            char kw[8], name[256];
            int off = 0;
            if (sscanf(line, "# %7s %255s %n", kw, name, &off) >= 2 &&
                (strcmp(kw, "HELP") == 0 || strcmp(kw, "TYPE") == 0)) {
                mx_family *f = mx_family_get(m, name, true);
                size_t fi = (size_t)(f - m->fams);
                if (f->has_samples)
                    PARSE_FAIL("%s %s after its samples", kw, name);
                if (current != SIZE_MAX && current != fi && m->fams[current].has_samples)
                    current = SIZE_MAX;
                if (strcmp(kw, "HELP") == 0) {
                    if (f->has_help)
                        PARSE_FAIL("second HELP for %s", name);
                    if (off == 0 || !line[off])
                        PARSE_FAIL("HELP %s without text", name);
                    f->has_help = true;
                } else {
                    if (f->type[0])
                        PARSE_FAIL("second TYPE for %s", name);
                    const char *t = line + off;
                    if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                        strcmp(t, "summary") && strcmp(t, "untyped"))
                        PARSE_FAIL("unknown TYPE %s", t);
                    snprintf(f->type, sizeof f->type, "%s", t);
                }
                current = fi;
            }
            continue;
        }
        if (line[0] == '\0')
            continue;
        parse_sample(m, line, lineno);
        const mx_sample *s = &m->samples[m->n - 1];
        mx_family *f = family_of(m, s->name);
        if (!f)
            PARSE_FAIL("sample %s before any HELP/TYPE of its family", s->name);
        if (!f->has_help || !f->type[0])
            PARSE_FAIL("family %s lacks %s before its samples", f->name,
                       f->has_help ? "TYPE" : "HELP");
        if (current == SIZE_MAX || f != &m->fams[current])
            PARSE_FAIL("sample %s is not grouped with its family %s", s->name, f->name);
        if (strcmp(f->type, "histogram") == 0 && strcmp(f->name, s->name) == 0)
            PARSE_FAIL("histogram %s sample without _bucket/_sum/_count", s->name);
        if (strcmp(f->type, "counter") == 0 && !(s->value >= 0))
            PARSE_FAIL("counter %s is %g", s->name, s->value);
        f->has_samples = true;
    }
    free(copy);
    check_histograms(m);
    return m;
}

/* Value of the series name{labels}, labels given as name, value, ..., NULL (exactly these
 * labels). false when absent. */
static bool mx_find(const mx_set *m, double *out, const char *name, ...)
{
    mx_label want[8];
    size_t n = 0;
    va_list ap;
    va_start(ap, name);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        assert_true(n < 8);
        want[n].name = (char *)k;
        want[n].value = va_arg(ap, char *);
        n++;
    }
    va_end(ap);
    char *key = labels_key(want, n, NULL);
    bool found = false;
    for (size_t i = 0; i < m->n && !found; i++)
        if (strcmp(m->samples[i].name, name) == 0 && strcmp(m->samples[i].key, key) == 0) {
            *out = m->samples[i].value;
            found = true;
        }
    free(key);
    return found;
}

/* The same, 0 when absent (counters with labels appear once they are non-zero). */
#define MX_OR0(m, ...)                                                                         \
    ({                                                                                         \
        double v_ = 0;                                                                         \
        if (!mx_find((m), &v_, __VA_ARGS__, NULL))                                             \
            v_ = 0;                                                                            \
        v_;                                                                                    \
    })

/* The same, failing the test when absent. */
#define MX_MUST(m, ...)                                                                        \
    ({                                                                                         \
        double v_ = 0;                                                                         \
        if (!mx_find((m), &v_, __VA_ARGS__, NULL))                                             \
            fail_msg("metric %s not in /metrics", #__VA_ARGS__);                               \
        v_;                                                                                    \
    })

/* GET /metrics: 200, text/plain; version=0.0.4, parsed and checked. */
static mx_set *mx_fetch(const rayd_server *s)
{
    http_resp *r = http_get(s, "/metrics");
    assert_status(r, 200);
    const char *ct = http_header_get(r, "Content-Type");
    if (!http_ct_is(r, "text/plain") || !ct || !strstr(ct, "version=0.0.4"))
        fail_msg("/metrics Content-Type %s, wanted text/plain; version=0.0.4", ct ? ct : "-");
    mx_set *m = mx_parse(r->body);
    http_resp_free(r);
    return m;
}

/* Polls /metrics (every 10 ms, up to timeout_s) until the series is >= want; returns the
 * last value seen. */
#define MX_WAIT_GE(srv, timeout_s, want, ...)                                                  \
    ({                                                                                         \
        double deadline_ = now_s() + (timeout_s), got_ = 0;                                    \
        for (;;) {                                                                             \
            mx_set *m_ = mx_fetch(srv);                                                        \
            got_ = MX_OR0(m_, __VA_ARGS__);                                                    \
            mx_free(m_);                                                                       \
            if (got_ >= (want) || now_s() > deadline_)                                         \
                break;                                                                         \
            sleep_s(0.01);                                                                     \
        }                                                                                      \
        got_;                                                                                  \
    })

/* Requests counted, /metrics itself left out. */
static double requests_but_metrics(const mx_set *m)
{
    double sum = 0;
    for (size_t i = 0; i < m->n; i++) {
        const mx_sample *s = &m->samples[i];
        if (strcmp(s->name, "rayd_http_requests_total") != 0 &&
            strcmp(s->name, "rayd_http_request_duration_seconds_count") != 0)
            continue;
        bool metrics = false;
        for (size_t j = 0; j < s->n_labels; j++)
            if (strcmp(s->labels[j].name, "route") == 0 &&
                strcmp(s->labels[j].value, "/metrics") == 0)
                metrics = true;
        if (!metrics)
            sum += s->value;
    }
    return sum;
}

/* A request is counted when it completes, which may be just after its client has the
 * answer: for a baseline, fetch until the request counters stand still for 30 ms. */
static mx_set *mx_fetch_settled(const rayd_server *s)
{
    mx_set *a = mx_fetch(s);
    for (double deadline = now_s() + 2; now_s() < deadline;) {
        sleep_s(0.03);
        mx_set *b = mx_fetch(s);
        bool same = requests_but_metrics(a) == requests_but_metrics(b);
        mx_free(a);
        a = b;
        if (same)
            break;
    }
    return a;
}

static void expect_family(const mx_set *m, const char *name, const char *type)
{
    for (size_t i = 0; i < m->nf; i++)
        if (strcmp(m->fams[i].name, name) == 0) {
            if (strcmp(m->fams[i].type, type) != 0)
                fail_msg("%s is a %s, wanted %s", name, m->fams[i].type, type);
            return;
        }
    fail_msg("metric family %s missing from /metrics", name);
}

/* ================================================================ setup */

static int group_setup(void **state)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024) {
        rl.rlim_cur = rl.rlim_max < 1024 ? rl.rlim_max : 1024;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    static const char *const args[] = {"--workers", "4", "--drain-timeout", "2", NULL};
    return rayd_start(&g_srv, args, NULL);
}

static int group_teardown(void **state)
{
    return rayd_stop_clean(&g_srv);
}

static int own_teardown(void **state)
{
    if (g_own.pid > 0)
        rayd_stop_signal(&g_own, SIGKILL);
    return 0;
}

/* ================================================================ metrics */

static void test_metrics_format_and_families(void **state)
{
    http_resp *r = http_get(&g_srv, "/healthz"); /* at least one request counted */
    http_resp_free(r);
    (void)MX_WAIT_GE(&g_srv, 10.0, 1, "rayd_http_requests_total", "route", "/healthz", "method",
                     "GET", "status", "200");
    /* ready: the server may say "starting" (503) for a moment after its listening line */
    for (double deadline = now_s() + 2;;) {
        r = http_get(&g_srv, "/readyz");
        if (r->status == 200 || now_s() > deadline)
            break;
        assert_problem(r, 503, "ShuttingDown");
        http_resp_free(r);
        sleep_s(0.005);
    }
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "status"), "ready");
    http_resp_free(r);
    mx_set *m = mx_fetch(&g_srv);
    expect_family(m, "rayd_http_requests_total", "counter");
    expect_family(m, "rayd_http_request_duration_seconds", "histogram");
    expect_family(m, "rayd_store_objects", "gauge");
    expect_family(m, "rayd_store_bytes", "gauge");
    expect_family(m, "rayd_store_evictions_total", "counter");
    expect_family(m, "rayd_store_hits_total", "counter");
    expect_family(m, "rayd_store_misses_total", "counter");
    expect_family(m, "rayd_tasks", "gauge");
    expect_family(m, "rayd_task_run_seconds", "histogram");
    expect_family(m, "rayd_actors", "gauge");
    expect_family(m, "rayd_actor_calls_total", "counter");
    expect_family(m, "rayd_parked_requests", "gauge");
    /* every task state is a series, as Ray's states */
    static const char *const states[] = {"PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT",
                                         "RUNNING", "FINISHED", "FAILED", "CANCELLED"};
    for (size_t i = 0; i < 6; i++)
        (void)MX_MUST(m, "rayd_tasks", "state", states[i]);
    (void)MX_MUST(m, "rayd_actors", "state", "ALIVE");
    assert_true(MX_MUST(m, "rayd_http_requests_total", "route", "/healthz", "method", "GET",
                        "status", "200") >= 1);
    mx_free(m);
}

static void test_metrics_object_gets_counted(void **state)
{
    char ref[ID];
    static const char body[] = "metrics-object-body";
    put_object(&g_srv, "text/plain", body, sizeof body - 1, ref);
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/%s", ref);
    http_resp *r = http_get(&g_srv, path);
    assert_status(r, 200);
    http_resp_free(r);

    mx_set *m0 = mx_fetch_settled(&g_srv);
    double req0 = MX_MUST(m0, "rayd_http_requests_total", "route", "/v1/objects/{ref}",
                          "method", "GET", "status", "200");
    double dur0 = MX_MUST(m0, "rayd_http_request_duration_seconds_count", "route",
                          "/v1/objects/{ref}");
    double hits0 = MX_MUST(m0, "rayd_store_hits_total");
    double miss0 = MX_MUST(m0, "rayd_store_misses_total");
    assert_true(MX_MUST(m0, "rayd_store_objects") >= 1);
    assert_true(MX_MUST(m0, "rayd_store_bytes") >= (double)(sizeof body - 1));
    mx_free(m0);

    const int N = 7;
    for (int i = 0; i < N; i++) {
        r = http_get(&g_srv, path);
        assert_status(r, 200);
        assert_int_equal(r->body_len, sizeof body - 1);
        http_resp_free(r);
    }
    r = http_get(&g_srv, "/v1/objects/no-such-object-here");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);

    /* the counters are bumped when a request completes, maybe just after the client has
     * its answer: wait a little for them */
    /* (generous deadline: under valgrind a completion can lag by a second; the waits end
     * as soon as the counts arrive) */
    (void)MX_WAIT_GE(&g_srv, 10.0, req0 + N, "rayd_http_requests_total", "route",
                     "/v1/objects/{ref}", "method", "GET", "status", "200");
    (void)MX_WAIT_GE(&g_srv, 10.0, dur0 + N + 1, "rayd_http_request_duration_seconds_count",
                     "route", "/v1/objects/{ref}");
    mx_set *m1 = mx_fetch(&g_srv);
    double req1 = MX_MUST(m1, "rayd_http_requests_total", "route", "/v1/objects/{ref}",
                          "method", "GET", "status", "200");
    double dur1 = MX_MUST(m1, "rayd_http_request_duration_seconds_count", "route",
                          "/v1/objects/{ref}");
    if (req1 != req0 + N)
        fail_msg("GET /v1/objects/{ref} 200 counter went %g -> %g, wanted +%d", req0, req1, N);
    /* the 404 has its own status series: the duration histogram counts it too */
    if (dur1 != dur0 + N + 1)
        fail_msg("duration histogram count went %g -> %g, wanted +%d (7 GETs and a 404)", dur0,
                 dur1, N + 1);
    assert_true(MX_MUST(m1, "rayd_http_requests_total", "route", "/v1/objects/{ref}", "method",
                        "GET", "status", "404") >= 1);
    double hits1 = MX_MUST(m1, "rayd_store_hits_total");
    if (hits1 < hits0 + N)
        fail_msg("rayd_store_hits_total went %g -> %g after %d reads", hits0, hits1, N);
    if (!(MX_MUST(m1, "rayd_store_misses_total") > miss0))
        fail_msg("rayd_store_misses_total did not move after a 404 read");
    mx_free(m1);
}

/* GET and HEAD share the route pattern /v1/objects/{ref} (as GET and POST share
 * /v1/objects): the exposition must still not hold two series with the same labels
 * (mx_parse fails on a duplicate series). On its own server, so that a failure here does
 * not spoil the other metrics tests. */
static void test_metrics_routes_sharing_a_pattern(void **state)
{
    assert_int_equal(rayd_start(&g_own, NULL, NULL), 0);
    char ref[ID];
    put_object(&g_own, "application/octet-stream", "x", 1, ref);
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/%s", ref);
    http_resp *r = http_head(&g_own, path);
    assert_status(r, 200);
    http_resp_free(r);
    r = http_get(&g_own, path);
    assert_status(r, 200);
    http_resp_free(r);
    r = http_get(&g_own, "/v1/objects");
    assert_status(r, 200);
    http_resp_free(r);
    /* counted on completion, maybe just after the client has its answer */
    (void)MX_WAIT_GE(&g_own, 10.0, 2, "rayd_http_request_duration_seconds_count", "route",
                     "/v1/objects/{ref}");
    mx_set *m = mx_fetch(&g_own);
    assert_int_equal(MX_MUST(m, "rayd_http_requests_total", "route", "/v1/objects/{ref}",
                             "method", "HEAD", "status", "200"),
                     1);
    assert_int_equal(MX_MUST(m, "rayd_http_requests_total", "route", "/v1/objects/{ref}",
                             "method", "GET", "status", "200"),
                     1);
    /* one histogram series per route pattern, counting both methods */
    assert_int_equal(MX_MUST(m, "rayd_http_request_duration_seconds_count", "route",
                             "/v1/objects/{ref}"),
                     2);
    mx_free(m);
    assert_int_equal(rayd_stop(&g_own), 0);
}

static void test_metrics_tasks_and_actors_move(void **state)
{
    mx_set *m0 = mx_fetch(&g_srv);
    double fin0 = MX_MUST(m0, "rayd_tasks", "state", "FINISHED");
    double run0 = MX_MUST(m0, "rayd_task_run_seconds_count");
    double alive0 = MX_MUST(m0, "rayd_actors", "state", "ALIVE");
    double calls0 = MX_MUST(m0, "rayd_actor_calls_total");
    mx_free(m0);

    char ref[ID];
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[0.01]}", NULL, ref);
    json_decref(tk_value(&g_srv, ref));
    double fin1 = MX_WAIT_GE(&g_srv, 10.0, fin0 + 1, "rayd_tasks", "state", "FINISHED");
    if (fin1 != fin0 + 1)
        fail_msg("rayd_tasks{state=\"FINISHED\"} went %g -> %g after one task", fin0, fin1);
    double run1 = MX_WAIT_GE(&g_srv, 10.0, run0 + 1, "rayd_task_run_seconds_count");
    if (run1 != run0 + 1)
        fail_msg("rayd_task_run_seconds_count went %g -> %g after one task", run0, run1);

    http_resp *r = http_post_json(&g_srv, "/v1/actors", "{\"class\":\"Counter\"}");
    assert_status(r, 201);
    char actor[ID];
    snprintf(actor, sizeof actor, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
    double alive1 = MX_WAIT_GE(&g_srv, 10.0, alive0 + 1, "rayd_actors", "state", "ALIVE");
    if (alive1 != alive0 + 1)
        fail_msg("rayd_actors{state=\"ALIVE\"} went %g -> %g after creating one", alive0,
                 alive1);
    char path[160];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", actor);
    r = http_post_json(&g_srv, path, "{\"args\":[2]}");
    assert_status(r, 202);
    char cref[ID];
    snprintf(cref, sizeof cref, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    json_decref(tk_value(&g_srv, cref));
    double calls1 = MX_WAIT_GE(&g_srv, 10.0, calls0 + 1, "rayd_actor_calls_total");
    if (calls1 != calls0 + 1)
        fail_msg("rayd_actor_calls_total went %g -> %g after one call", calls0, calls1);

    snprintf(path, sizeof path, "/v1/actors/%s", actor);
    r = http_delete(&g_srv, path);
    assert_status(r, 204);
    http_resp_free(r);
    double alive2 = 1e9;
    for (double deadline = now_s() + 2; now_s() < deadline;) {
        mx_set *m = mx_fetch(&g_srv);
        alive2 = MX_MUST(m, "rayd_actors", "state", "ALIVE");
        mx_free(m);
        if (alive2 == alive0)
            break;
        sleep_s(0.01);
    }
    if (alive2 != alive0)
        fail_msg("rayd_actors{state=\"ALIVE\"} is %g after the kill, wanted %g", alive2, alive0);
}

typedef struct parked_one {
    const rayd_server *s;
    char path[160];
    long status;
    char error[CURL_ERROR_SIZE];
} parked_one;

static void *parked_one_main(void *arg)
{
    parked_one *p = arg;
    http_opts o = {.path = p->path, .soft = true, .timeout_ms = 20000};
    http_resp *r = http_request_opts(p->s, &o);
    p->status = r->status;
    snprintf(p->error, sizeof p->error, "%s", r->error);
    http_resp_free(r);
    return NULL;
}

static void test_metrics_parked_requests(void **state)
{
    char task[ID], ref[ID];
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[30]}", task, ref);
    mx_set *m0 = mx_fetch(&g_srv);
    double parked0 = MX_MUST(m0, "rayd_parked_requests");
    mx_free(m0);
    static parked_one p;
    p = (parked_one){.s = &g_srv};
    snprintf(p.path, sizeof p.path, "/v1/objects/%s?timeout=15", ref);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, parked_one_main, &p), 0);
    double parked1 = MX_WAIT_GE(&g_srv, 10.0, parked0 + 1, "rayd_parked_requests");
    char cancel[160];
    snprintf(cancel, sizeof cancel, "/v1/tasks/%s/cancel", task);
    http_resp *r = http_request(&g_srv, "POST", cancel, NULL, NULL, 0);
    long cancel_status = r->status;
    http_resp_free(r);
    pthread_join(th, NULL);
    if (!(parked1 > 0) || parked1 < parked0 + 1)
        fail_msg("rayd_parked_requests was %g -> %g with a GET parked", parked0, parked1);
    assert_int_equal(cancel_status, 202);
    if (p.status != 424)
        fail_msg("the parked GET got %ld (%s), wanted 424 TaskCancelled", p.status, p.error);
    /* and it is gone from the gauge */
    double parked2 = 1e9;
    for (double deadline = now_s() + 2; now_s() < deadline;) {
        mx_set *m = mx_fetch(&g_srv);
        parked2 = MX_MUST(m, "rayd_parked_requests");
        mx_free(m);
        if (parked2 <= parked0)
            break;
        sleep_s(0.01);
    }
    if (parked2 > parked0)
        fail_msg("rayd_parked_requests still %g after the parked GET was answered", parked2);
}

/* The histogram +Inf bucket must equal _count in every scrape, also while requests are
 * being observed concurrently. */
typedef struct hammer {
    const rayd_server *s;
    volatile int stop;
    long done;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    CURL *c = curl_easy_init();
    while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
        http_opts o = {.path = "/healthz", .soft = true, .handle = c, .timeout_ms = 5000};
        http_resp *r = http_request_opts(h->s, &o);
        http_resp_free(r);
        h->done++;
    }
    curl_easy_cleanup(c);
    return NULL;
}

static void test_metrics_consistent_under_load(void **state)
{
    enum { THREADS = 8 };
    /* static: a failure longjmps out of here while the threads are still stopping */
    static hammer h[THREADS];
    static pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        h[i] = (hammer){.s = &g_srv};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    }
    double end = now_s() + 2.5;
    int scrapes = 0;
    char why[512] = "";
    while (now_s() < end && !why[0]) {
        http_opts o = {.path = "/metrics", .soft = true};
        http_resp *r = http_request_opts(&g_srv, &o);
        scrapes++;
        if (r->status != 200) {
            snprintf(why, sizeof why, "/metrics answered %ld (%s)", r->status, r->error);
        } else {
            /* the /healthz histogram is being observed right now */
            const char *inf = strstr(r->body, "rayd_http_request_duration_seconds_bucket{route="
                                              "\"/healthz\",le=\"+Inf\"} ");
            const char *cnt = strstr(r->body, "rayd_http_request_duration_seconds_count{route="
                                              "\"/healthz\"} ");
            if (inf && cnt) {
                long long a = atoll(strchr(inf, '}') + 2), b = atoll(strchr(cnt, '}') + 2);
                if (a != b)
                    snprintf(why, sizeof why,
                             "scrape %d: /healthz histogram +Inf bucket %lld != _count %lld",
                             scrapes, a, b);
            }
        }
        http_resp_free(r);
    }
    long total = 0;
    for (int i = 0; i < THREADS; i++)
        __atomic_store_n(&h[i].stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        total += h[i].done;
    }
    if (why[0])
        fail_msg("under load: %s", why);
    assert_true(total > 0);
    mx_free(mx_fetch(&g_srv)); /* full format check at rest */
}

/* ================================================================ logs */

static json_t *parse_log_line(const char *line)
{
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (!json_is_object(j))
        fail_msg("log line is not a JSON object (%s): %.300s", err.text, line);
    return j;
}

/* Lines of text that contain needle. */
static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    const char *line = text, *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
        const char *hit = strstr(line, needle);
        if (hit && hit < nl)
            n++;
        line = nl + 1;
    }
    return n;
}

/* Paths are logged as what they are: UTF-8 kept (a name "café" reads "café", not "cafÃ©"),
 * and a byte that is not UTF-8 written as U+FFFD, so that the line stays valid JSON. */
static void test_log_utf8_paths(void **state)
{
    rayd_stdout_clear(&g_srv);
    rayd_capture_stdout(&g_srv, true);
    http_resp *r = http_get(&g_srv, "/v1/actors/by-name/caf%C3%A9-logutf8");
    assert_status(r, 404);
    http_resp_free(r);
    r = http_get(&g_srv, "/v1/actors/by-name/bad%FF%E2%82-logutf8");
    assert_status(r, 404);
    http_resp_free(r);
    static const char *const want[][2] = {
        {"caf\xc3\xa9-logutf8", "/v1/actors/by-name/caf\xc3\xa9-logutf8"},
        {"bad\\ufffd\\ufffd\\ufffd-logutf8",
         "/v1/actors/by-name/bad\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd-logutf8"},
    };
    for (size_t i = 0; i < 2; i++) {
        char *line = rayd_stdout_wait_line(&g_srv, want[i][0], 3.0);
        if (!line)
            fail_msg("no log line with %s within 3 s", want[i][0]);
        json_t *j = parse_log_line(line);
        const char *path = json_string_value(json_object_get(j, "path"));
        if (!path || strcmp(path, want[i][1]) != 0)
            fail_msg("logged path %s, wanted %s (line: %.300s)", path ? path : "(none)",
                     want[i][1], line);
        json_decref(j);
        free(line);
    }
    rayd_capture_stdout(&g_srv, false);
}

static void test_log_json_request_line(void **state)
{
    char ref[ID];
    static const char body[] = "{\"log\":\"me\"}";
    put_object(&g_srv, "application/json", body, sizeof body - 1, ref);
    rayd_stdout_clear(&g_srv);
    rayd_capture_stdout(&g_srv, true);
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/%s", ref);
    const char *h[] = {"X-Request-Id: abc-123", NULL};
    http_resp *r = http_request(&g_srv, "GET", path, h, NULL, 0);
    assert_status(r, 200);
    assert_string_equal(http_header_get(r, "X-Request-Id"), "abc-123");
    size_t got_bytes = r->body_len;
    http_resp_free(r);
    /* one without an id: the server's fresh id is logged */
    r = http_get(&g_srv, "/healthz");
    char fresh[256];
    snprintf(fresh, sizeof fresh, "\"request_id\":\"%s\"", http_header_get(r, "X-Request-Id"));
    http_resp_free(r);

    char *line = rayd_stdout_wait_line(&g_srv, "abc-123", 3.0);
    if (!line)
        fail_msg("no log line with request_id abc-123 within 3 s");
    char *line2 = rayd_stdout_wait_line(&g_srv, fresh, 3.0);
    if (!line2)
        fail_msg("no log line with the server-made %s", fresh);
    free(line2);
    /* A later request's line: lines are written as requests complete, so a duplicate of
     * the first would come before it. */
    const char *hm[] = {"X-Request-Id: the-request-after", NULL};
    r = http_request(&g_srv, "GET", "/healthz", hm, NULL, 0);
    http_resp_free(r);
    char *marker = rayd_stdout_wait_line(&g_srv, "the-request-after", 3.0);
    if (!marker)
        fail_msg("no log line for the request after");
    free(marker);
    rayd_capture_stdout(&g_srv, false);
    char *all = rayd_stdout_text(&g_srv);
    int n = count_lines_with(all, "abc-123");
    if (n != 1) {
        fprintf(stderr, "captured:\n%s", all);
        free(all);
        fail_msg("%d log lines mention abc-123, wanted 1", n);
    }
    /* every captured line is a JSON object */
    char *save = NULL;
    for (char *l = strtok_r(all, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        json_decref(parse_log_line(l));
    free(all);

    json_t *j = parse_log_line(line);
    free(line);
    assert_true(json_is_string(json_object_get(j, "time")) &&
                strlen(json_str(j, "time")) >= 20);
    assert_string_equal(json_str(j, "level"), "info");
    assert_string_equal(json_str(j, "event"), "request");
    assert_string_equal(json_str(j, "request_id"), "abc-123");
    assert_string_equal(json_str(j, "method"), "GET");
    assert_string_equal(json_str(j, "route"), "/v1/objects/{ref}");
    assert_string_equal(json_str(j, "path"), path);
    assert_int_equal(json_int(j, "status"), 200);
    double d = json_num(j, "duration_seconds");
    assert_true(d >= 0 && d < 5);
    assert_int_equal(json_int(j, "bytes"), (long long)got_bytes);
    json_decref(j);
}

static void test_log_text_format(void **state)
{
    static const char *const env[] = {"RAYD_LOG_FORMAT=text", NULL};
    assert_int_equal(rayd_start(&g_own, NULL, env), 0);
    rayd_capture_stdout(&g_own, true);
    const char *h[] = {"X-Request-Id: txt-line-1", NULL};
    http_resp *r = http_request(&g_own, "GET", "/healthz", h, NULL, 0);
    assert_status(r, 200);
    http_resp_free(r);
    char *line = rayd_stdout_wait_line(&g_own, "txt-line-1", 3.0);
    if (!line)
        fail_msg("no text log line with the request id within 3 s");
    json_t *j = json_loads(line, 0, NULL);
    if (j || line[0] == '{') {
        json_decref(j);
        fail_msg("RAYD_LOG_FORMAT=text gave a JSON line: %s", line);
    }
    if (!strstr(line, "GET") || !strstr(line, "/healthz") || !strstr(line, "200"))
        fail_msg("text line lacks method, path or status: %s", line);
    free(line);
    assert_int_equal(rayd_stop(&g_own), 0);
}

static void test_log_level_warn_silences_requests(void **state)
{
    static const char *const env[] = {"RAYD_LOG_LEVEL=warn", NULL};
    /* warn also silences the listening line: the harness finds the server by its port */
    assert_int_equal(rayd_start_no_log(&g_own, NULL, env), 0);
    rayd_capture_stdout(&g_own, true);
    const char *h[] = {"X-Request-Id: warn-level-1", NULL};
    for (int i = 0; i < 3; i++) {
        http_resp *r = http_request(&g_own, "GET", "/healthz", h, NULL, 0);
        assert_status(r, 200);
        http_resp_free(r);
    }
    http_resp *r = http_get(&g_own, "/v1/objects/nope-warn"); /* a 404 is no warning */
    assert_int_equal(r->status, 404);
    http_resp_free(r);
    /* Once the server has counted the requests (it logs each right after counting it), a
     * SIGHUP's "reloaded" line, written at every level after any request line before it,
     * shows that nothing else came. */
    (void)MX_WAIT_GE(&g_own, 10.0, 3, "rayd_http_requests_total", "route", "/healthz", "method",
                     "GET", "status", "200");
    (void)MX_WAIT_GE(&g_own, 10.0, 1, "rayd_http_requests_total", "route", "/v1/objects/{ref}",
                     "method", "GET", "status", "404");
    assert_int_equal(kill(g_own.pid, SIGHUP), 0);
    char *reloaded = rayd_stdout_wait_line(&g_own, "\"event\":\"reloaded\"", 10.0);
    if (!reloaded)
        fail_msg("no reloaded line after SIGHUP");
    free(reloaded);
    char *all = rayd_stdout_text(&g_own);
    bool has = strstr(all, "\"event\":\"request\"") || strstr(all, "warn-level-1");
    if (has) {
        fprintf(stderr, "captured:\n%s", all);
        free(all);
        fail_msg("RAYD_LOG_LEVEL=warn still logs requests");
    }
    free(all);
    assert_int_equal(rayd_stop(&g_own), 0);
}

/* A stdout that nobody reads (a stuck log collector) fills its pipe: requests are still
 * answered, the lines that do not fit are dropped and counted in
 * rayd_log_lines_dropped_total, and once stdout reads again a warning says how many. */
static void test_log_stdout_stalled_drops_lines(void **state)
{
    assert_int_equal(rayd_start(&g_own, NULL, NULL), 0);
    rayd_stdout_stall(&g_own, true);
    /* Long paths make long lines: the pipe (64 KiB) and the log's buffers (512 KiB) hold
     * about a thousand of them. */
    char path[512];
    int len = snprintf(path, sizeof path, "/stalled-log/");
    memset(path + len, 'x', sizeof path - (size_t)len - 1);
    path[sizeof path - 1] = '\0';
    CURL *h = curl_easy_init();
    assert_non_null(h);
    double dropped = 0;
    for (int i = 1; i <= 20000 && dropped == 0; i++) {
        /* before the fix, the request thread blocked on the pipe holding the log's lock,
         * and every request after it waited: the timeout turns that into a failure */
        http_opts o = {.path = path, .timeout_ms = 5000, .handle = h};
        http_resp *r = http_request_opts(&g_own, &o);
        if (r->status != 404)
            fail_msg("request %d with stdout stalled: %ld %s", i, r->status, r->error);
        http_resp_free(r);
        if (i % 250 == 0) {
            mx_set *m = mx_fetch(&g_own);
            dropped = MX_MUST(m, "rayd_log_lines_dropped_total");
            mx_free(m);
        }
    }
    curl_easy_cleanup(h);
    if (dropped <= 0)
        fail_msg("20000 requests with stdout stalled, and no log line was dropped");
    rayd_capture_stdout(&g_own, true);
    rayd_stdout_stall(&g_own, false);
    char *line = rayd_stdout_wait_line(&g_own, "\"event\":\"log lines dropped\"", 10);
    if (!line) {
        char *all = rayd_stdout_text(&g_own);
        size_t n = strlen(all);
        fprintf(stderr, "captured %zu bytes, ending: %s\n", n, n > 600 ? all + n - 600 : all);
        free(all);
        fail_msg("no \"log lines dropped\" warning once stdout was read again");
    }
    json_t *j = json_loads(line, 0, NULL);
    if (!j || json_int(j, "dropped") <= 0 || strcmp(json_str(j, "level"), "warn") != 0)
        fail_msg("bad warning line: %s", line);
    json_decref(j);
    free(line);
    http_resp *r = http_get(&g_own, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
    assert_int_equal(rayd_stop(&g_own), 0);
}

/* ================================================================ auth */

static void auth_get(const rayd_server *s, const char *path, const char *auth, long want)
{
    const char *h[] = {auth, NULL};
    http_resp *r = http_request(s, "GET", path, auth ? h : NULL, NULL, 0);
    if (want == 401) {
        assert_problem(r, 401, "Unauthorized");
        const char *www = http_header_get(r, "WWW-Authenticate");
        if (!www || strncmp(www, "Bearer realm=\"rayd\"", 19) != 0)
            fail_msg("GET %s (%s): WWW-Authenticate is %s", path, auth ? auth : "no token",
                     www ? www : "(missing)");
    } else if (r->status != want) {
        fprintf(stderr, "body: %.300s\n", r->body);
        fail_msg("GET %s (%s): %ld, wanted %ld", path, auth ? auth : "no token", r->status, want);
    }
    http_resp_free(r);
}

static void test_auth_token_file(void **state)
{
    char file[] = "/tmp/rayd-test-token-XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    static const char token[] = "s3cret-T0ken\n";
    assert_int_equal(write(fd, token, sizeof token - 1), (ssize_t)(sizeof token - 1));
    close(fd);
    const char *args[] = {"--api-token-file", file, NULL};
    int st = rayd_start(&g_own, args, NULL);
    unlink(file);
    assert_int_equal(st, 0);

    const char *right = "Authorization: Bearer s3cret-T0ken";
    auth_get(&g_own, "/v1/status", NULL, 401);
    auth_get(&g_own, "/v1/status", "Authorization: Bearer wrong", 401);
    auth_get(&g_own, "/v1/status", "Authorization: Bearer s3cret", 401);        /* prefix */
    auth_get(&g_own, "/v1/status", "Authorization: Bearer s3cret-T0kenX", 401); /* longer */
    auth_get(&g_own, "/v1/status", "Authorization: Basic s3cret-T0ken", 401);
    auth_get(&g_own, "/v1/status", right, 200);
    auth_get(&g_own, "/v1/functions", right, 200);
    /* the open routes */
    auth_get(&g_own, "/healthz", NULL, 200);
    auth_get(&g_own, "/readyz", NULL, 200);
    auth_get(&g_own, "/metrics", NULL, 200);
    auth_get(&g_own, "/openapi.yaml", NULL, 200);
    auth_get(&g_own, "/openapi.json", NULL, 200);
    auth_get(&g_own, "/problems", NULL, 200);
    auth_get(&g_own, "/problems/Unauthorized", NULL, 200);
    /* unknown /v1/ paths: 401 before 404 */
    auth_get(&g_own, "/v1/nope", NULL, 401);
    auth_get(&g_own, "/v1/nope", right, 404);
    /* work needs the token too; nothing is stored without it */
    http_resp *r = http_post_bytes(&g_own, "/v1/objects", "text/plain", "x", 1);
    assert_problem(r, 401, "Unauthorized");
    http_resp_free(r);
    r = http_post_json(&g_own, "/v1/tasks", "{\"function\":\"len\",\"args\":[[1]]}");
    assert_problem(r, 401, "Unauthorized");
    http_resp_free(r);
    /* a wrong method on a /v1/ path: 401 before 405 */
    r = http_delete(&g_own, "/v1/status");
    assert_problem(r, 401, "Unauthorized");
    http_resp_free(r);
    const char *h[] = {right, "Content-Type: text/plain", NULL};
    r = http_request(&g_own, "POST", "/v1/objects", h, "x", 1);
    assert_status(r, 201);
    http_resp_free(r);
    /* the 401s are counted */
    double unauth = MX_WAIT_GE(&g_own, 10.0, 5, "rayd_http_requests_total", "route",
                               "/v1/status", "method", "GET", "status", "401");
    if (unauth < 5)
        fail_msg("rayd_http_requests_total{route=\"/v1/status\",status=\"401\"} is %g after 5 "
                 "refused requests",
                 unauth);
    assert_int_equal(rayd_stop(&g_own), 0);
}

static void test_auth_token_env(void **state)
{
    static const char *const env[] = {"RAYD_API_TOKEN=env-token-42", NULL};
    assert_int_equal(rayd_start(&g_own, NULL, env), 0);
    auth_get(&g_own, "/v1/status", NULL, 401);
    auth_get(&g_own, "/v1/status", "Authorization: Bearer env-token-4", 401);
    auth_get(&g_own, "/v1/status", "Authorization: Bearer env-token-42", 200);
    auth_get(&g_own, "/healthz", NULL, 200);
    assert_int_equal(rayd_stop(&g_own), 0);
}

static void test_auth_token_file_missing(void **state)
{
    static const char *const args[] = {"--bind", "127.0.0.1", "--port", "0", "--api-token-file",
                                       "/nonexistent/rayd-token", NULL};
    char *out = NULL, *err = NULL;
    int st = rayd_run(args, NULL, 10.0, &out, &err);
    if (st != 2)
        fprintf(stderr, "stdout: %s\nstderr: %s\n", out, err);
    assert_int_equal(st, 2);
    if (!strstr(err, "/nonexistent/rayd-token"))
        fprintf(stderr, "note: the start-up error does not name the file: %s\n", err);
    free(out);
    free(err);
    static const char *const env[] = {"RAYD_API_TOKEN_FILE=/nonexistent/rayd-token", NULL};
    static const char *const args2[] = {"--bind", "127.0.0.1", "--port", "0", NULL};
    st = rayd_run(args2, env, 10.0, NULL, NULL);
    assert_int_equal(st, 2);
}

/* ================================================================ drain */

/* Many GETs at once on one curl multi handle, in a thread. */
typedef struct multi_get {
    char path[160];
    long status;
    double done_at;
    char body[512];
    size_t body_len;
    bool done;
} multi_get;

typedef struct multi_batch {
    const rayd_server *s;
    multi_get *gets;
    int n;
    double give_up_s;
    int started; /* handles added (atomic) */
} multi_batch;

static size_t multi_write(char *data, size_t size, size_t nmemb, void *ctx)
{
    multi_get *g = ctx;
    size_t n = size * nmemb;
    size_t room = sizeof g->body - 1 - g->body_len;
    size_t k = n < room ? n : room;
    memcpy(g->body + g->body_len, data, k);
    g->body_len += k;
    g->body[g->body_len] = '\0';
    return n;
}

static void *multi_main(void *arg)
{
    multi_batch *b = arg;
    CURLM *multi = curl_multi_init();
    CURL **easy = calloc((size_t)b->n, sizeof *easy);
    char url[256];
    for (int i = 0; i < b->n; i++) {
        easy[i] = curl_easy_init();
        snprintf(url, sizeof url, "%s%s", b->s->base_url, b->gets[i].path);
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_NOPROXY, "*");
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, (long)(b->give_up_s * 1000));
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, multi_write);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &b->gets[i]);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, &b->gets[i]);
        curl_multi_add_handle(multi, easy[i]);
    }
    __atomic_store_n(&b->started, b->n, __ATOMIC_RELEASE);
    int running = 1;
    double deadline = now_s() + b->give_up_s + 2;
    while (running && now_s() < deadline) {
        curl_multi_perform(multi, &running);
        int left;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            multi_get *g = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&g);
            g->done_at = now_s();
            g->done = true;
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &g->status);
            else
                g->status = 0;
        }
        if (running)
            curl_multi_poll(multi, NULL, 0, 20, NULL);
    }
    for (int i = 0; i < b->n; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    free(easy);
    curl_multi_cleanup(multi);
    return NULL;
}

/* Waits until /metrics says what (a gauge) >= want, or fails after timeout_s. */
static void wait_gauge(const rayd_server *s, const char *name, const char *label,
                       const char *value, double want, double timeout_s)
{
    double got = 0, deadline = now_s() + timeout_s;
    for (;;) {
        mx_set *m = mx_fetch(s);
        got = label ? MX_OR0(m, name, label, value) : MX_OR0(m, name);
        mx_free(m);
        if (got >= want)
            return;
        if (now_s() > deadline)
            fail_msg("%s%s%s%s%s is %g after %.1f s, wanted >= %g", name, label ? "{" : "",
                     label ? label : "", label ? "=" : "", label ? value : "", got, timeout_s,
                     want);
        sleep_s(0.01);
    }
}

/* Polls /readyz until 503 ShuttingDown (with Retry-After); returns the seconds it took
 * from t0, failing after 2 s. */
static double wait_not_ready(const rayd_server *s, double t0)
{
    for (;;) {
        http_opts o = {.path = "/readyz", .timeout_ms = 2000};
        http_resp *r = http_request_opts(s, &o);
        if (r->status == 503) {
            double t = now_s() - t0;
            assert_problem(r, 503, "ShuttingDown");
            if (!http_header_get(r, "Retry-After"))
                fail_msg("/readyz 503 without Retry-After");
            http_resp_free(r);
            return t;
        }
        assert_status(r, 200);
        assert_string_equal(json_str(r->json, "status"), "ready");
        http_resp_free(r);
        if (now_s() - t0 > 2)
            fail_msg("/readyz still 200 2 s after SIGTERM");
        sleep_s(0.002);
    }
}

#define RUNNERS 20
#define PARKED 100

/* 20 running `sleep 1.5` tasks, 100 GETs parked on their refs (?timeout=30); SIGTERM:
 * /readyz 503 at once, new work 503, GETs still served, the parked GETs answered 202 at
 * once, and the process exits 0 as soon as the running tasks are done (~1.5 s after they
 * started), long before --drain-timeout 10. */
static void test_drain_answers_parked_and_waits_for_running(void **state)
{
    static const char *const args[] = {"--workers", "20", "--drain-timeout", "10", NULL};
    assert_int_equal(rayd_start(&g_own, args, NULL), 0);

    /* one batch request: the 20 tasks start together */
    char body[4096];
    size_t len = (size_t)snprintf(body, sizeof body, "{\"tasks\":[");
    for (int i = 0; i < RUNNERS; i++)
        len += (size_t)snprintf(body + len, sizeof body - len,
                                "%s{\"function\":\"sleep\",\"args\":[1.5]}", i ? "," : "");
    snprintf(body + len, sizeof body - len, "]}");
    double t_submit = now_s();
    http_resp *r = http_post_json(&g_own, "/v1/tasks/batch", body);
    assert_status(r, 202);
    json_t *tasks = json_member(r->json, "tasks");
    assert_int_equal(json_array_size(tasks), RUNNERS);
    char refs[RUNNERS][ID], ids[RUNNERS][ID];
    for (int i = 0; i < RUNNERS; i++) {
        snprintf(refs[i], ID, "%s", json_str(json_array_get(tasks, (size_t)i), "ref"));
        snprintf(ids[i], ID, "%s", json_str(json_array_get(tasks, (size_t)i), "task_id"));
    }
    http_resp_free(r);

    static multi_get gets[PARKED];
    memset(gets, 0, sizeof gets);
    for (int i = 0; i < PARKED; i++)
        snprintf(gets[i].path, sizeof gets[i].path, "/v1/objects/%s?timeout=30",
                 refs[i % RUNNERS]);
    static multi_batch b;
    b = (multi_batch){.s = &g_own, .gets = gets, .n = PARKED, .give_up_s = 25};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, multi_main, &b), 0);
    wait_gauge(&g_own, "rayd_tasks", "state", "RUNNING", RUNNERS, 10.0);
    wait_gauge(&g_own, "rayd_parked_requests", NULL, NULL, PARKED, 10.0);
    double since_submit = now_s() - t_submit;
    if (since_submit > 1.2) {
        pthread_join(th, NULL);
        fail_msg("setting up took %.2f s: too slow to see the drain before the tasks end",
                 since_submit);
    }

    rayd_capture_stdout(&g_own, true);
    double t0 = now_s();
    assert_int_equal(kill(g_own.pid, SIGTERM), 0);
    double not_ready = wait_not_ready(&g_own, t0);

    /* new work is refused; reads still work */
    r = http_post_bytes(&g_own, "/v1/objects", "text/plain", "late", 4);
    assert_problem(r, 503, "ShuttingDown");
    assert_non_null(http_header_get(r, "Retry-After"));
    http_resp_free(r);
    r = http_post_json(&g_own, "/v1/tasks", "{\"function\":\"len\",\"args\":[[1]]}");
    assert_problem(r, 503, "ShuttingDown");
    http_resp_free(r);
    r = http_get(&g_own, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
    r = tk_getf(&g_own, "/v1/tasks/%s", ids[0]);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "state"), "RUNNING");
    http_resp_free(r);
    /* a GET that would wait is answered at once while draining */
    double tg = now_s();
    r = tk_getf(&g_own, "/v1/objects/%s?timeout=20", refs[1]);
    double get_s = now_s() - tg;
    assert_status(r, 202);
    http_resp_free(r);

    pthread_join(th, NULL);
    double t_answered = t0;
    int bad = 0;
    for (int i = 0; i < PARKED; i++) {
        json_t *j = gets[i].body_len ? json_loads(gets[i].body, 0, NULL) : NULL;
        const char *st = json_is_object(j) && json_is_string(json_object_get(j, "state"))
                             ? json_string_value(json_object_get(j, "state"))
                             : "";
        if (!gets[i].done || gets[i].status != 202 || strcmp(st, "pending") != 0) {
            if (bad++ < 3)
                fprintf(stderr, "parked GET %d: done %d status %ld body %.200s\n", i,
                        gets[i].done, gets[i].status, gets[i].body);
        } else if (gets[i].done_at > t_answered) {
            t_answered = gets[i].done_at;
        }
        json_decref(j);
    }
    if (bad)
        fail_msg("%d of %d parked GETs were not answered 202 pending", bad, PARKED);

    /* the drain is logged; the tasks finish in time, so nothing is cancelled */
    char *draining = rayd_stdout_wait_line(&g_own, "\"event\":\"draining\"", 2.0);
    if (!draining)
        fail_msg("no \"draining\" log event after SIGTERM");
    free(draining);
    char *stopped = rayd_stdout_wait_line(&g_own, "\"event\":\"stopped\"", 10.0);
    char *out = rayd_stdout_text(&g_own);
    bool cancelled = strstr(out, "drain timeout") != NULL;
    free(out);
    int st = rayd_wait_exit(&g_own, 15.0);
    double t_exit = now_s();
    if (!stopped)
        fail_msg("no \"stopped\" log event before the exit");
    free(stopped);
    if (cancelled)
        fail_msg("the drain timed out and cancelled work although the tasks needed 1.5 s of 10");
    fprintf(stderr,
            "drain: /readyz 503 after %.0f ms, parked answered after %.0f ms, a new GET took "
            "%.0f ms, exit %d after %.2f s (tasks started %.2f s before SIGTERM)\n",
            not_ready * 1e3, (t_answered - t0) * 1e3, get_s * 1e3, st, t_exit - t0, t0 - t_submit);
    assert_int_equal(st, 0);
    if (not_ready > 0.2)
        fail_msg("/readyz turned 503 only %.3f s after SIGTERM", not_ready);
    if (t_answered - t0 > 1.0)
        fail_msg("parked GETs answered %.3f s after SIGTERM, wanted at once", t_answered - t0);
    if (get_s > 1.0)
        fail_msg("a new waiting GET during the drain took %.3f s", get_s);
    /* it waited for the running tasks (1.5 s after they started) ... */
    if (t_exit - t_submit < 1.45)
        fail_msg("exited %.2f s after the 1.5 s tasks started: it did not wait for them",
                 t_exit - t_submit);
    /* ... and no longer than it takes them to end (far from the 10 s drain timeout) */
    if (t_exit - t0 > 4.0)
        fail_msg("exited %.2f s after SIGTERM; the running tasks ended after ~%.2f s",
                 t_exit - t0, 1.5 - (t0 - t_submit));
}

/* --drain-timeout 2 with a running `sleep 30`: exits 0 after about 2 s (the task is
 * cancelled), not at once and not after 30 s. */
static void test_drain_timeout_cancels_running(void **state)
{
    static const char *const args[] = {"--workers", "2", "--drain-timeout", "2", NULL};
    assert_int_equal(rayd_start(&g_own, args, NULL), 0);
    char task[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", task, NULL);
    json_decref(tk_wait_state(&g_own, task, "RUNNING", 2.0));
    rayd_capture_stdout(&g_own, true);
    double t0 = now_s();
    assert_int_equal(kill(g_own.pid, SIGTERM), 0);
    (void)wait_not_ready(&g_own, t0);
    char *line = rayd_stdout_wait_line(&g_own, "drain timeout", 5.0);
    int st = rayd_wait_exit(&g_own, 10.0);
    double took = now_s() - t0;
    if (!line)
        fail_msg("no \"drain timeout\" warning logged when the drain timed out");
    free(line);
    fprintf(stderr, "drain timeout 2 s: exit %d after %.2f s\n", st, took);
    assert_int_equal(st, 0);
    if (took < 1.9 || took > 4.0)
        fail_msg("exited %.2f s after SIGTERM with --drain-timeout 2, wanted ~2 s", took);
}

/* SIGINT starts the drain like SIGTERM; a second signal during it exits at once, code 1. */
static void test_second_signal_exits_at_once(void **state)
{
    static const char *const args[] = {"--workers", "2", "--drain-timeout", "10", NULL};
    assert_int_equal(rayd_start(&g_own, args, NULL), 0);
    char task[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", task, NULL);
    json_decref(tk_wait_state(&g_own, task, "RUNNING", 2.0));
    double t0 = now_s();
    assert_int_equal(kill(g_own.pid, SIGINT), 0);
    (void)wait_not_ready(&g_own, t0);
    /* still draining: the running task holds it */
    http_resp *r = http_get(&g_own, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
    double t1 = now_s();
    assert_int_equal(kill(g_own.pid, SIGTERM), 0);
    int st = rayd_wait_exit(&g_own, 5.0);
    double took = now_s() - t1;
    fprintf(stderr, "second signal: exit %d after %.0f ms\n", st, took * 1e3);
    assert_int_equal(st, 1);
    /* at once: not after the drain, which the running 30 s task would hold for its whole
     * 10 s timeout (a bound far from both, so that a loaded machine decides nothing) */
    if (took > 5.0)
        fail_msg("the second signal took %.2f s to end the process", took);
}


/* ================================================================ problem pages */

/* GET path: 200 text/html holding "<h1>title</h1>". */
static void expect_kind_page(const char *path, const char *title)
{
    http_resp *r = http_get(&g_srv, path);
    if (r->status != 200 || !http_ct_is(r, "text/html"))
        fail_msg("GET %s: %ld %s", path, r->status, http_header_get(r, "Content-Type"));
    char h1[128];
    snprintf(h1, sizeof h1, "<h1>%s</h1>", title);
    if (!strstr(r->body, h1))
        fail_msg("GET %s: no %s in %s", path, h1, r->body);
    http_resp_free(r);
}

/* A problem's type is a path on the server that answered, and GET on it is the kind's page. */
static void test_problem_type_resolves(void **state)
{
    http_resp *r = http_get(&g_srv, "/v1/objects/o_neverThere");
    assert_problem(r, 404, "NotFound");
    char type[128];
    snprintf(type, sizeof type, "%s", json_str(r->json, "type"));
    http_resp_free(r);
    assert_string_equal(type, "/problems/NotFound");
    expect_kind_page(type, "NotFound");

    r = http_get(&g_srv, "/problems/Teapot");
    assert_problem(r, 404, "NotFound");
    assert_string_equal(json_str(r->json, "kind"), "Teapot");
    http_resp_free(r);
}

/* Every kind the spec lists (ProblemTitle) has a page, and the index lists exactly those. */
static void test_problem_pages_match_the_spec(void **state)
{
    http_resp *spec = http_get(&g_srv, "/openapi.json");
    assert_status(spec, 200);
    json_t *kinds = json_object_get(
        json_object_get(json_object_get(json_object_get(spec->json, "components"), "schemas"),
                        "ProblemTitle"),
        "enum");
    assert_true(json_is_array(kinds) && json_array_size(kinds) > 0);
    http_resp *index = http_get(&g_srv, "/problems");
    assert_status(index, 200);
    assert_true(http_ct_is(index, "text/html"));
    size_t listed = 0;
    for (const char *at = index->body; (at = strstr(at, "href=\"/problems/")); at++)
        listed++;
    assert_int_equal(listed, json_array_size(kinds));
    size_t i;
    json_t *k;
    json_array_foreach(kinds, i, k) {
        char path[128], link[160];
        snprintf(path, sizeof path, "/problems/%s", json_string_value(k));
        snprintf(link, sizeof link, "href=\"%s\"", path);
        if (!strstr(index->body, link))
            fail_msg("/problems does not link %s", path);
        expect_kind_page(path, json_string_value(k));
    }
    http_resp_free(index);
    http_resp_free(spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_format_and_families),
        cmocka_unit_test(test_metrics_object_gets_counted),
        cmocka_unit_test_teardown(test_metrics_routes_sharing_a_pattern, own_teardown),
        cmocka_unit_test(test_metrics_tasks_and_actors_move),
        cmocka_unit_test(test_metrics_parked_requests),
        cmocka_unit_test(test_metrics_consistent_under_load),
        cmocka_unit_test(test_log_json_request_line),
        cmocka_unit_test(test_log_utf8_paths),
        cmocka_unit_test_teardown(test_log_text_format, own_teardown),
        cmocka_unit_test_teardown(test_log_level_warn_silences_requests, own_teardown),
        cmocka_unit_test_teardown(test_log_stdout_stalled_drops_lines, own_teardown),
        cmocka_unit_test_teardown(test_auth_token_file, own_teardown),
        cmocka_unit_test_teardown(test_auth_token_env, own_teardown),
        cmocka_unit_test(test_auth_token_file_missing),
        cmocka_unit_test_teardown(test_drain_answers_parked_and_waits_for_running, own_teardown),
        cmocka_unit_test_teardown(test_drain_timeout_cancels_running, own_teardown),
        cmocka_unit_test_teardown(test_second_signal_exits_at_once, own_teardown),
        cmocka_unit_test(test_problem_type_resolves),
        cmocka_unit_test(test_problem_pages_match_the_spec),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
