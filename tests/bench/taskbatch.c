/*
 * taskbatch: the libcurl client of the task, actor and remote-function benchmarks and of the
 * profiled GETs (e, g, h, i, j, l) in
 * tests/bench/run.sh. Loopback only; every request has a timeout, so a stuck server
 * fails the benchmark instead of hanging it.
 *
 *   taskbatch batch  PORT ROUNDS N [WAIT_PORT]
 *                                     e: ROUNDS x (POST /v1/tasks/batch of N `echo` tasks,
 *                                        then POST /v1/wait num_returns=N on all N refs);
 *                                        n: the same, the wait (and the value read back)
 *                                        sent to WAIT_PORT, another node of the cluster
 *   taskbatch chain  PORT N           g: chains of N dependent `add` tasks (see below)
 *   taskbatch actors PORT N CONNS OUT h, i: create N Counter actors over CONNS keep-alive
 *                                        connections; ids to OUT, one a line (- = none)
 *   taskbatch remote WPORT PORT FN N CONC M
 *                                     j: the remote function FN (a wordcount: one string
 *                                        argument, answers its number of words) called
 *                                        directly on the worker at WPORT and through rayd
 *                                        (POST /v1/tasks, Prefer: wait=5): N sequential calls
 *                                        per side on one keep-alive connection, then M calls
 *                                        per side over CONC concurrent connections
 *   taskbatch gets   PORT PATH N FILE l: N sequential GETs of PATH on one keep-alive
 *                                        connection, each answer byte for byte FILE
 *
 * Output: `key=value` lines on stdout (parsed by run.sh), progress and errors on stderr.
 * Exit status 0 when every answer was checked and right, 1 otherwise, 2 on bad usage.
 *
 * Built by tests/bench/run.sh: cc -O2 taskbatch.c $(pkg-config --cflags --libs libcurl)
 *
 * The answers are scanned by hand rather than parsed with a JSON library, because the
 * client's own time is inside the measurement: refs and ids are [A-Za-z0-9_-] strings, so
 * `"ref":"` ... `"` is unambiguous in rayd's compact JSON.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REQ_TIMEOUT_S 120L
#define REF_MAX 64

static char g_base[64]; /* http://127.0.0.1:PORT */
static char g_wait_base[64]; /* batch: where the wait goes (another node), else g_base */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("taskbatch: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---------------------------------------------------------------------------------------
 * Growable buffers */
struct buf {
    char *p;
    size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->p = realloc(b->p, cap);
    if (b->p == NULL)
        die("out of memory");
    b->cap = cap;
}

static void buf_add(struct buf *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    buf_add(ud, data, size * nmemb);
    return size * nmemb;
}

/* ---------------------------------------------------------------------------------------
 * One request on a keep-alive handle. Returns the HTTP status (0 on a transport error);
 * the answer body is in *resp (reset first). */
static struct curl_slist *g_json_hdr;

static CURL *new_handle(void)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        die("curl_easy_init failed");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, REQ_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    return h;
}

static long request_to(CURL *h, const char *base, const char *path, const struct buf *body,
                       struct buf *resp)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", base, path);
    resp->len = 0;
    buf_reserve(resp, 0);
    resp->p[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->p);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, g_json_hdr);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    }
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "taskbatch: %s: %s\n", path, curl_easy_strerror(rc));
        return 0;
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

/* Copies the string value following `key` (e.g. "\"ref\":\"") at or after *pos into out;
 * advances *pos past it. Returns 0 when there is none. */
static int scan_str(const char *s, const char **pos, const char *key, char *out, size_t outsz)
{
    const char *p = strstr(*pos ? *pos : s, key);
    if (p == NULL)
        return 0;
    p += strlen(key);
    const char *q = strchr(p, '"');
    if (q == NULL || (size_t)(q - p) >= outsz)
        return 0;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    *pos = q + 1;
    return 1;
}

static void snip(const struct buf *b, char *out, size_t n)
{
    snprintf(out, n, "%.*s", (int)(b->len < 300 ? b->len : 300), b->p ? b->p : "");
}

/* ---------------------------------------------------------------------------------------
 * e) batch: ROUNDS x (batch of N echo tasks, then wait for all N). */
static long request(CURL *h, const char *path, const struct buf *body, struct buf *resp)
{
    return request_to(h, g_base, path, body, resp);
}

static int cmd_batch(int rounds, int n)
{
    CURL *h = new_handle(), *hw = new_handle(); /* hw: the wait's node, its own connection */
    struct buf body = {0}, resp = {0}, wait = {0};
    char(*refs)[REF_MAX] = malloc((size_t)n * REF_MAX);
    if (refs == NULL)
        die("out of memory");
    double total = 0, best = 1e9, worst = 0;
    struct buf per = {0};
    for (int r = 0; r < rounds; r++) {
        /* the body is prepared before the clock starts: echo(r*N+i) answers r*N+i */
        body.len = 0;
        buf_add(&body, "{\"tasks\":[", 10);
        for (int i = 0; i < n; i++)
            buf_printf(&body, "%s{\"function\":\"echo\",\"args\":[%d]}", i ? "," : "", r * n + i);
        buf_add(&body, "]}", 2);

        double t0 = now_s();
        long code = request(h, "/v1/tasks/batch", &body, &resp);
        if (code != 202) {
            char s[320];
            snip(&resp, s, sizeof s);
            die("round %d: POST /v1/tasks/batch answered %ld: %s", r, code, s);
        }
        const char *pos = NULL;
        wait.len = 0;
        buf_add(&wait, "{\"refs\":[", 9);
        for (int i = 0; i < n; i++) {
            if (!scan_str(resp.p, &pos, "\"ref\":\"", refs[i], REF_MAX))
                die("round %d: batch receipt has %d refs, expected %d", r, i, n);
            buf_printf(&wait, "%s\"%s\"", i ? "," : "", refs[i]);
        }
        buf_printf(&wait, "],\"num_returns\":%d,\"timeout\":60}", n);
        code = request_to(hw, g_wait_base, "/v1/wait", &wait, &resp);
        double dt = now_s() - t0;
        if (code != 200) {
            char s[320];
            snip(&resp, s, sizeof s);
            die("round %d: POST /v1/wait answered %ld: %s", r, code, s);
        }
        /* all N must be in "ready", none in "not_ready" */
        const char *ready = strstr(resp.p, "\"ready\":[");
        const char *nready = strstr(resp.p, "\"not_ready\":[");
        if (ready == NULL || nready == NULL || strncmp(nready, "\"not_ready\":[]", 14) != 0)
            die("round %d: wait answer lists refs not ready", r);
        int count = 0;
        const char *end = strchr(ready, ']');
        for (const char *p = ready + 9; p < end; p++)
            count += (*p == '"');
        count /= 2;
        if (count != n)
            die("round %d: wait answer lists %d ready refs, expected %d", r, count, n);
        /* one value, outside the timed part: echo of r*N+k is r*N+k */
        int k = (r * 7919 + 4321) % n;
        char path[128], want[32];
        snprintf(path, sizeof path, "/v1/objects/%s", refs[k]);
        code = request_to(hw, g_wait_base, path, NULL, &resp);
        snprintf(want, sizeof want, "%d", r * n + k);
        if (code != 200 || strcmp(resp.p, want) != 0)
            die("round %d: GET %s answered %ld '%s', expected 200 '%s'", r, path, code, resp.p,
                want);
        total += dt;
        if (dt < best)
            best = dt;
        if (dt > worst)
            worst = dt;
        buf_printf(&per, "%s%.0f", r ? "," : "", n / dt);
        fprintf(stderr,
                "taskbatch: round %d: %d tasks submitted and waited for in %.1f ms "
                "(%.0f tasks/s); %s = %s\n",
                r + 1, n, dt * 1e3, n / dt, refs[k], want);
    }
    printf("tasks=%d\nrounds=%d\nseconds=%.6f\nrate=%.0f\nbest_rate=%.0f\nworst_rate=%.0f\n"
           "rates=%s\n",
           n * rounds, rounds, total, n * rounds / total, n / best, n / worst, per.p);
    curl_easy_cleanup(h);
    curl_easy_cleanup(hw);
    free(refs);
    free(body.p);
    free(resp.p);
    free(wait.p);
    free(per.p);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * g) chain: tasks t1..tN, t_i = add({"$ref": ref(t_{i-1})}, 1), each submitted on its own
 * request (its argument is the previous task's ref, known only from that receipt).
 *
 *  1. open chain: t1 = add(0, 1). Clock from the first submit to the last ref ready
 *     (GET ?timeout=60): submission and resolution overlapped, end to end.
 *  2. gated chain: t1 = add({"$ref": gate}, 1), gate = sleep(S), S > twice the open chain's
 *     submit time. All N are submitted while the gate is pending (checked: GET
 *     gate?timeout=0 must still answer 202 after the last submit); then the clock runs from
 *     the gate being ready (a long-poll GET of it returns) to the last ref being ready: the
 *     cost of resolving N dependencies one after the other, with no HTTP in between.
 *     The server's own finished_at of the gate task and of the last task give a second
 *     figure (millisecond timestamps). */
static long submit(CURL *h, const char *body_s, struct buf *resp, char *ref, char *task_id)
{
    struct buf b = {(char *)body_s, strlen(body_s), 0};
    long code = request(h, "/v1/tasks", &b, resp);
    const char *pos = NULL;
    if (code != 202 || !scan_str(resp->p, &pos, "\"task_id\":\"", task_id, REF_MAX))
        return code ? -code : -1;
    if (!scan_str(resp->p, &pos, "\"ref\":\"", ref, REF_MAX))
        return -2;
    return code;
}

static int ts_ms(const char *json, const char *key, double *out)
{
    /* "finished_at":"2026-11-25T23:06:59.150Z" -> seconds since the epoch */
    char v[64];
    const char *pos = NULL;
    if (!scan_str(json, &pos, key, v, sizeof v))
        return 0;
    struct tm tm = {0};
    int ms = 0;
    if (sscanf(v, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (double)timegm(&tm) + ms / 1e3;
    return 1;
}

static double get_number(CURL *h, const char *ref, double timeout, long *code_out)
{
    char path[160];
    struct buf resp = {0};
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=%g", ref, timeout);
    long code = request(h, path, NULL, &resp);
    *code_out = code;
    double v = (code == 200) ? strtod(resp.p, NULL) : NAN;
    free(resp.p);
    return v;
}

static int cmd_chain(int n)
{
    CURL *h = new_handle();
    struct buf resp = {0};
    char ref[REF_MAX], prev[REF_MAX], tid[REF_MAX], body[256];
    long code;

    /* 1. open chain */
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        if (i == 0)
            snprintf(body, sizeof body, "{\"function\":\"add\",\"args\":[0,1]}");
        else
            snprintf(body, sizeof body, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}",
                     prev);
        if ((code = submit(h, body, &resp, ref, tid)) < 0)
            die("open chain: submit %d answered %ld: %.200s", i, -code, resp.p);
        memcpy(prev, ref, sizeof prev);
    }
    double t_sub = now_s();
    double v = get_number(h, prev, 60, &code);
    double t_last = now_s();
    if (code != 200 || v != (double)n)
        die("open chain: last ref %s answered %ld value %g, expected %d", prev, code, v, n);
    double open_sub = t_sub - t0, open_total = t_last - t0;
    fprintf(stderr,
            "taskbatch: open chain of %d: submitted in %.3f s, last ready %.3f s after "
            "the first submit (value %g)\n",
            n, open_sub, open_total, v);

    /* 2. gated chain */
    double gate_s = ceil(2 * open_sub + 0.5);
    if (gate_s < 1)
        gate_s = 1;
    char gate[REF_MAX], gate_tid[REF_MAX], last_tid[REF_MAX] = "";
    snprintf(body, sizeof body, "{\"function\":\"sleep\",\"args\":[%g]}", gate_s);
    if ((code = submit(h, body, &resp, gate, gate_tid)) < 0)
        die("gate: submit answered %ld: %.200s", -code, resp.p);
    memcpy(prev, gate, sizeof prev);
    double g0 = now_s();
    for (int i = 0; i < n; i++) {
        snprintf(body, sizeof body, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}", prev);
        if ((code = submit(h, body, &resp, ref, tid)) < 0)
            die("gated chain: submit %d answered %ld: %.200s", i, -code, resp.p);
        memcpy(prev, ref, sizeof prev);
        memcpy(last_tid, tid, sizeof last_tid);
    }
    double g_sub = now_s() - g0;
    double gv = get_number(h, gate, 0, &code);
    if (code != 202)
        die("gated chain: the gate (sleep %g s) was %s once all %d were submitted (%.3f s); "
            "the chain was not held back",
            gate_s, code == 200 ? "already ready" : "not pending", n, g_sub);
    gv = get_number(h, gate, 60, &code);
    double t_rel = now_s();
    if (code != 200)
        die("gated chain: gate answered %ld", code);
    v = get_number(h, prev, 60, &code);
    double t_end = now_s();
    if (code != 200 || fabs(v - (gv + n)) > 1e-6)
        die("gated chain: last ref %s answered %ld value %.9g, expected %.9g", prev, code, v,
            gv + n);
    /* server-side timestamps. A task's ref can be ready a moment before its record says
     * FINISHED (finished_at still null): ask again for up to a second. */
    double srv = NAN, f_gate = NAN, f_last = NAN;
    char path[160];
    for (int k = 0; k < 100 && isnan(srv); k++) {
        if (k)
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
        snprintf(path, sizeof path, "/v1/tasks/%s", gate_tid);
        if (isnan(f_gate) &&
            !(request(h, path, NULL, &resp) == 200 && ts_ms(resp.p, "\"finished_at\":\"", &f_gate)))
            f_gate = NAN;
        snprintf(path, sizeof path, "/v1/tasks/%s", last_tid);
        if (isnan(f_last) &&
            !(request(h, path, NULL, &resp) == 200 && ts_ms(resp.p, "\"finished_at\":\"", &f_last)))
            f_last = NAN;
        srv = f_last - f_gate;
    }
    fprintf(stderr,
            "taskbatch: gated chain of %d: submitted in %.3f s behind a %g s gate; "
            "last ready %.3f s after the gate (server: %.3f s); value %.9g\n",
            n, g_sub, gate_s, t_end - t_rel, srv, v);
    printf("n=%d\nopen_submit_s=%.6f\nopen_total_s=%.6f\nopen_us_per_hop=%.2f\n"
           "open_submit_rate=%.0f\ngate_s=%g\ngated_submit_s=%.6f\ngated_release_s=%.6f\n"
           "gated_us_per_hop=%.2f\nserver_release_s=%.3f\nserver_us_per_hop=%.2f\n"
           "final_value=%.9g\n",
           n, open_sub, open_total, open_total / n * 1e6, n / open_sub, gate_s, g_sub,
           t_end - t_rel, (t_end - t_rel) / n * 1e6, srv, srv / n * 1e6, v);
    curl_easy_cleanup(h);
    free(resp.p);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * h, i) actors: N x POST /v1/actors {"class":"Counter"} over CONNS parallel keep-alive
 * connections (curl multi; a finished handle is re-added for the next actor). */
struct slot {
    CURL *h;
    struct buf resp;
};

static int cmd_actors(int n, int conns, const char *out_path)
{
    FILE *out = NULL;
    if (strcmp(out_path, "-") != 0 && (out = fopen(out_path, "w")) == NULL)
        die("cannot write %s", out_path);
    if (conns > n)
        conns = n;
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conns);
    char url[128];
    snprintf(url, sizeof url, "%s/v1/actors", g_base);
    static const char body[] = "{\"class\":\"Counter\"}";
    struct slot *slots = calloc((size_t)conns, sizeof *slots);
    int started = 0, done = 0, running = 0;
    double t0 = now_s();
    for (int i = 0; i < conns; i++) {
        slots[i].h = new_handle();
        curl_easy_setopt(slots[i].h, CURLOPT_URL, url);
        curl_easy_setopt(slots[i].h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(slots[i].h, CURLOPT_POSTFIELDSIZE, (long)(sizeof body - 1));
        curl_easy_setopt(slots[i].h, CURLOPT_HTTPHEADER, g_json_hdr);
        curl_easy_setopt(slots[i].h, CURLOPT_WRITEDATA, &slots[i].resp);
        curl_easy_setopt(slots[i].h, CURLOPT_PRIVATE, &slots[i]);
        curl_multi_add_handle(m, slots[i].h);
        started++;
    }
    while (done < n) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct slot *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            long code = 0;
            curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
            char id[REF_MAX];
            const char *pos = NULL;
            if (msg->data.result != CURLE_OK)
                die("actor %d: %s", done, curl_easy_strerror(msg->data.result));
            if (code != 201 || !scan_str(s->resp.p, &pos, "\"actor_id\":\"", id, sizeof id))
                die("actor %d: POST /v1/actors answered %ld: %.200s", done, code, s->resp.p);
            if (out)
                fprintf(out, "%s\n", id);
            done++;
            curl_multi_remove_handle(m, s->h);
            if (started < n) {
                s->resp.len = 0;
                curl_multi_add_handle(m, s->h);
                started++;
            }
        }
        if (done < n)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    double dt = now_s() - t0;
    for (int i = 0; i < conns; i++) {
        curl_easy_cleanup(slots[i].h);
        free(slots[i].resp.p);
    }
    curl_multi_cleanup(m);
    if (out && fclose(out) != 0)
        die("cannot write %s", out_path);
    printf("actors=%d\nseconds=%.6f\nrate=%.0f\n", n, dt, n / dt);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * j) remote: one remote function called directly on its worker and through rayd.
 *
 * The argument of call i is a string of k = i % 64 + 1 words ("w w ... w"), so the answer
 * must be k: a stale or cached answer cannot pass. Directly, the body is the one rayd sends
 * (runtime/remote_function.c: task_id, function, attempt, args, kwargs); through rayd it is
 * POST /v1/tasks {"function":FN,"args":[text]} with Prefer: wait=5, answered 200 with the
 * worker's body (a 202 receipt means the 5 s wait ran out and fails the run).
 *
 * Interleaved like the wrk benchmarks: sequential direct, rayd, rayd, direct (N/2 calls
 * each), then concurrent direct, rayd, rayd, direct (M/2 calls each); each side's latencies
 * are pooled over its two runs. Latency: around curl_easy_perform (sequential), from adding
 * the handle to its completion (concurrent). */
static const char *g_fn;
static struct curl_slist *g_rayd_hdr;

static int remote_words(long i)
{
    return (int)(i % 64) + 1;
}

static void remote_body(struct buf *b, int direct, long i)
{
    int k = remote_words(i);
    char text[160];
    for (int w = 0; w < k; w++) {
        text[2 * w] = 'w';
        text[2 * w + 1] = ' ';
    }
    text[2 * k - 1] = '\0';
    b->len = 0;
    if (direct)
        buf_printf(b,
                   "{\"task_id\":\"bench-%ld\",\"function\":\"%s\",\"attempt\":1,"
                   "\"args\":[\"%s\"],\"kwargs\":{}}",
                   i, g_fn, text);
    else
        buf_printf(b, "{\"function\":\"%s\",\"args\":[\"%s\"]}", g_fn, text);
}

static void remote_setup(CURL *h, int direct, char *url, size_t urlsz, int wport, int port)
{
    if (direct)
        snprintf(url, urlsz, "http://127.0.0.1:%d/functions/%s", wport, g_fn);
    else
        snprintf(url, urlsz, "http://127.0.0.1:%d/v1/tasks", port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, direct ? g_json_hdr : g_rayd_hdr);
}

static void remote_check(int direct, long i, long code, CURLcode rc, const struct buf *resp)
{
    char want[16];
    snprintf(want, sizeof want, "%d", remote_words(i));
    if (rc != CURLE_OK)
        die("%s call %ld: %s", direct ? "direct" : "rayd", i, curl_easy_strerror(rc));
    if (code != 200 || strcmp(resp->p ? resp->p : "", want) != 0)
        die("%s call %ld: answered %ld '%.200s', expected 200 '%s'", direct ? "direct" : "rayd",
            i, code, resp->p ? resp->p : "", want);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* mean, p50, p99 (nearest rank), max of n latencies (s), printed in µs as PREFIX_... */
static void print_lat(const char *prefix, double *v, long n)
{
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += v[i];
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    long i50 = (long)ceil(0.50 * n) - 1, i99 = (long)ceil(0.99 * n) - 1;
    printf("%s_calls=%ld\n%s_mean_us=%.1f\n%s_p50_us=%.1f\n%s_p99_us=%.1f\n%s_max_us=%.1f\n",
           prefix, n, prefix, sum / n * 1e6, prefix, v[i50 < 0 ? 0 : i50] * 1e6, prefix,
           v[i99 < 0 ? 0 : i99] * 1e6, prefix, v[n - 1] * 1e6);
}

/* n sequential calls on h from call number *next on; latencies appended to lat */
static double remote_seq(CURL *h, int direct, int wport, int port, long n, long *next,
                         double *lat)
{
    char url[128];
    struct buf body = {0}, resp = {0};
    remote_setup(h, direct, url, sizeof url, wport, port);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    double t0 = now_s();
    for (long j = 0; j < n; j++) {
        long i = (*next)++;
        remote_body(&body, direct, i);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.p);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
        resp.len = 0;
        buf_reserve(&resp, 0);
        resp.p[0] = '\0';
        double t = now_s();
        CURLcode rc = curl_easy_perform(h);
        lat[j] = now_s() - t;
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        remote_check(direct, i, code, rc, &resp);
    }
    double dt = now_s() - t0;
    free(body.p);
    free(resp.p);
    return dt;
}

struct rslot {
    CURL *h;
    struct buf body, resp;
    long i;
    double t;
};

/* m calls over conc connections (one multi handle, a finished handle is re-added) */
static double remote_conc(struct rslot *slots, int conc, int direct, int wport, int port,
                          long m, long *next, double *lat)
{
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    char url[128];
    long started = 0, done = 0;
    int running = 0;
    double t0 = now_s();
    for (int s = 0; s < conc && started < m; s++, started++) {
        struct rslot *sl = &slots[s];
        remote_setup(sl->h, direct, url, sizeof url, wport, port);
        curl_easy_setopt(sl->h, CURLOPT_WRITEDATA, &sl->resp);
        curl_easy_setopt(sl->h, CURLOPT_PRIVATE, sl);
        sl->i = (*next)++;
        remote_body(&sl->body, direct, sl->i);
        curl_easy_setopt(sl->h, CURLOPT_POSTFIELDS, sl->body.p);
        curl_easy_setopt(sl->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)sl->body.len);
        sl->resp.len = 0;
        sl->t = now_s();
        curl_multi_add_handle(multi, sl->h);
    }
    while (done < m) {
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct rslot *sl;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
            lat[done++] = now_s() - sl->t;
            long code = 0;
            curl_easy_getinfo(sl->h, CURLINFO_RESPONSE_CODE, &code);
            buf_reserve(&sl->resp, 0);
            sl->resp.p[sl->resp.len] = '\0';
            remote_check(direct, sl->i, code, msg->data.result, &sl->resp);
            curl_multi_remove_handle(multi, sl->h);
            if (started < m) {
                started++;
                sl->i = (*next)++;
                remote_body(&sl->body, direct, sl->i);
                curl_easy_setopt(sl->h, CURLOPT_POSTFIELDS, sl->body.p);
                curl_easy_setopt(sl->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)sl->body.len);
                sl->resp.len = 0;
                sl->t = now_s();
                curl_multi_add_handle(multi, sl->h);
            }
        }
        if (done < m)
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    double dt = now_s() - t0;
    curl_multi_cleanup(multi);
    return dt;
}

static int cmd_remote(int wport, int port, long n, int conc, long m)
{
    static const int order[4] = {1, 0, 0, 1}; /* direct, rayd, rayd, direct */
    long half_n = n / 2, half_m = m / 2, next = 0;
    n = 2 * half_n;
    m = 2 * half_m;
    double *lat[2], *clat[2], seq_t[2] = {0, 0}, conc_t[2] = {0, 0};
    long nl[2] = {0, 0}, ncl[2] = {0, 0};
    struct rslot *slots[2];
    CURL *h[2];
    for (int d = 0; d < 2; d++) {
        lat[d] = malloc((size_t)n * sizeof(double));
        clat[d] = malloc((size_t)m * sizeof(double));
        slots[d] = calloc((size_t)conc, sizeof(struct rslot));
        if (!lat[d] || !clat[d] || !slots[d])
            die("out of memory");
        h[d] = new_handle();
        for (int s = 0; s < conc; s++)
            slots[d][s].h = new_handle();
    }
    /* warm-up, not counted: one call each way on every connection that will be used */
    remote_seq(h[1], 1, wport, port, 1, &next, lat[1]);
    remote_seq(h[0], 0, wport, port, 1, &next, lat[0]);
    for (int d = 0; d < 2; d++)
        remote_conc(slots[d], conc, d, wport, port, conc, &next, clat[d]);
    long warm = next;
    for (int r = 0; r < 4; r++) {
        int d = order[r];
        double dt = remote_seq(h[d], d, wport, port, half_n, &next, lat[d] + nl[d]);
        seq_t[d] += dt;
        nl[d] += half_n;
        fprintf(stderr, "taskbatch: %s, %ld sequential calls: %.0f calls/s\n",
                d ? "direct" : "rayd", half_n, half_n / dt);
    }
    for (int r = 0; r < 4; r++) {
        int d = order[r];
        double dt = remote_conc(slots[d], conc, d, wport, port, half_m, &next, clat[d] + ncl[d]);
        conc_t[d] += dt;
        ncl[d] += half_m;
        fprintf(stderr, "taskbatch: %s, %ld calls over %d connections: %.0f calls/s\n",
                d ? "direct" : "rayd", half_m, conc, half_m / dt);
    }
    /* per side: 1 sequential + conc warm-up calls, then n sequential and m concurrent */
    printf("warmup_calls=%ld\ncalls_total=%ld\ndirect_calls=%ld\nrayd_calls=%ld\nconc=%d\n", warm,
           next, 1 + conc + n + m, 1 + conc + n + m, conc);
    printf("direct_seq_rate=%.0f\nrayd_seq_rate=%.0f\n", n / seq_t[1], n / seq_t[0]);
    printf("direct_conc_rate=%.0f\nrayd_conc_rate=%.0f\n", m / conc_t[1], m / conc_t[0]);
    print_lat("direct_seq", lat[1], n);
    print_lat("rayd_seq", lat[0], n);
    print_lat("direct_conc", clat[1], m);
    print_lat("rayd_conc", clat[0], m);
    for (int d = 0; d < 2; d++) {
        curl_easy_cleanup(h[d]);
        for (int s = 0; s < conc; s++) {
            curl_easy_cleanup(slots[d][s].h);
            free(slots[d][s].body.p);
            free(slots[d][s].resp.p);
        }
        free(slots[d]);
        free(lat[d]);
        free(clat[d]);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * l) gets: N sequential GETs of PATH on one keep-alive connection (the profiled load). */
static int cmd_gets(const char *path, long n, const char *file)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL)
        die("cannot read %s", file);
    struct buf want = {0}, resp = {0};
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&want, chunk, got);
    fclose(f);
    CURL *h = new_handle();
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        long code = request(h, path, NULL, &resp);
        if (code != 200 || resp.len != want.len || memcmp(resp.p, want.p, want.len) != 0)
            die("GET %s number %ld answered %ld with %zu bytes, not the %zu of %s", path, i, code,
                resp.len, want.len, file);
    }
    double dt = now_s() - t0;
    printf("gets=%ld\nseconds=%.6f\nrate=%.0f\n", n, dt, n / dt);
    curl_easy_cleanup(h);
    free(want.p);
    free(resp.p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: taskbatch batch PORT ROUNDS N | chain PORT N | "
                        "actors PORT N CONNS OUTFILE | remote WPORT PORT FN N CONC M | "
                        "gets PORT PATH N FILE\n");
        return 2;
    }
    int port = atoi(argv[2]);
    if (port <= 0 || port > 65535)
        return fprintf(stderr, "taskbatch: bad port\n"), 2;
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%d", port);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_json_hdr = curl_slist_append(NULL, "Content-Type: application/json");
    g_json_hdr = curl_slist_append(g_json_hdr, "Expect:"); /* no 100-continue round trip */
    g_rayd_hdr = curl_slist_append(NULL, "Content-Type: application/json");
    g_rayd_hdr = curl_slist_append(g_rayd_hdr, "Expect:");
    g_rayd_hdr = curl_slist_append(g_rayd_hdr, "Prefer: wait=5");
    int rc = 2;
    snprintf(g_wait_base, sizeof g_wait_base, "%s", g_base);
    if (strcmp(argv[1], "batch") == 0 && argc == 6 && atoi(argv[5]) > 0 && atoi(argv[5]) <= 65535)
        snprintf(g_wait_base, sizeof g_wait_base, "http://127.0.0.1:%d", atoi(argv[5]));
    if (strcmp(argv[1], "batch") == 0 && (argc == 5 || (argc == 6 && atoi(argv[5]) > 0)) &&
        atoi(argv[3]) > 0 && atoi(argv[4]) > 0)
        rc = cmd_batch(atoi(argv[3]), atoi(argv[4]));
    else if (strcmp(argv[1], "chain") == 0 && argc == 4 && atoi(argv[3]) > 0)
        rc = cmd_chain(atoi(argv[3]));
    else if (strcmp(argv[1], "actors") == 0 && argc == 6 && atoi(argv[3]) > 0 && atoi(argv[4]) > 0)
        rc = cmd_actors(atoi(argv[3]), atoi(argv[4]), argv[5]);
    else if (strcmp(argv[1], "remote") == 0 && argc == 8 && atoi(argv[3]) > 0 &&
             atoi(argv[3]) <= 65535 && atol(argv[5]) >= 2 && atoi(argv[6]) > 0 &&
             atol(argv[7]) >= 2) {
        g_fn = argv[4];
        rc = cmd_remote(port, atoi(argv[3]), atol(argv[5]), atoi(argv[6]), atol(argv[7]));
    } else if (strcmp(argv[1], "gets") == 0 && argc == 6 && atol(argv[4]) > 0)
        rc = cmd_gets(argv[3], atol(argv[4]), argv[5]);
    else
        fprintf(stderr, "taskbatch: bad arguments (see the comment at the top of taskbatch.c)\n");
    curl_slist_free_all(g_json_hdr);
    curl_slist_free_all(g_rayd_hdr);
    curl_global_cleanup();
    return rc;
}
