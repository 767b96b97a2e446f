/* rayd soak and fault test: a mixed workload on libcurl's multi interface against a running
 * rayd, then consistency checks. Started by tests/soak/run.sh, which builds it, starts rayd and
 * the remote worker, and renders the report; see that script for the environment knobs.
 *
 *   soak --base http://127.0.0.1:PORT --pid RAYD_PID --worker-url http://127.0.0.1:WPORT
 *        --worker-pidfile FILE --out DIR [--seconds N] [--concurrency N] [--hold-mb N]
 *        [--max-tasks N] [--settle S] [--seed N] -- WORKER COMMAND...
 *
 * One thread, one curl multi handle. Work is a set of "flows" (small state machines: put then
 * get then free, a task chain, a run of actor calls, ...) kept at --concurrency in flight for
 * --seconds. Every answer is checked as it arrives; anything unexpected is a "fault" counted
 * by category and kind. The remote worker is SIGKILLed at 1/3 of the load and restarted (the
 * command after --, same port) at 1/2. Afterwards: every task's final state, every ref's
 * bytes (or 410 as tracked), actor values, /metrics against the client's own counts, then
 * everything is freed and RSS and file descriptors are compared with the start.
 *
 * Writes DIR/checks.tsv (name, PASS|FAIL, detail) and DIR/soak.md (tables). Exit status 0
 * when every check passed, 1 otherwise, 2 on a usage or set-up error. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

/* ---- configuration ------------------------------------------------------------------- */

static struct {
    const char *base, *worker_url, *worker_pidfile, *out;
    pid_t pid;
    char **worker_argv;
    double seconds, settle;
    int concurrency, max_tasks;
    size_t hold_bytes;
    uint64_t seed;
} cfg = {.seconds = 60, .settle = 10, .concurrency = 32, .max_tasks = 80000,
         .hold_bytes = 320u << 20};

enum { NACTORS = 16, MAX_REMOTE = 8, MAX_CANCEL = 4, MAX_WAIT = 4, MAX_PARKED = 4 };
#define FD_SLACK 16
#define RSS_MIN_SLACK (64.0 * 1024 * 1024)
/* Bytes an ended task's record costs at most with the soak's short messages (measured with
 * jemalloc's stats.allocated: about 0.6 KiB finished, 1.1 KiB failed; README, Memory). */
#define TASK_RECORD_COST 1024.0
#define MAX_OBJECT (4u << 20)

/* Routes, spelt as the server labels them in rayd_http_requests_total. */
#define R_OBJECTS "/v1/objects"
#define R_OBJ "/v1/objects/{ref}"
#define R_WAIT "/v1/wait"
#define R_TASKS "/v1/tasks"
#define R_TASK "/v1/tasks/{task_id}"
#define R_CANCEL "/v1/tasks/{task_id}/cancel"
#define R_ACTORS "/v1/actors"
#define R_ACTOR "/v1/actors/{actor_id}"
#define R_CALL "/v1/actors/{actor_id}/methods/{method}"
#define R_FUNC "/v1/functions/{name}"
#define R_METRICS "/metrics"

/* ---- small utilities ----------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "soak: out of memory\n");
        exit(2);
    }
    return p;
}

static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n ? n : 1, s ? s : 1);
    if (!p) {
        fprintf(stderr, "soak: out of memory\n");
        exit(2);
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "soak: out of memory\n");
        exit(2);
    }
    return p;
}

static char *xstrdup(const char *s)
{
    return s ? strcpy(xmalloc(strlen(s) + 1), s) : NULL;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rng;
static uint64_t rnd(void) { return splitmix(&rng); }
static double rndu(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }
static long rndi(long lo, long hi) { return lo + (long)(rnd() % (uint64_t)(hi - lo + 1)); }
static bool chance(double p) { return rndu() < p; }

/* The bytes of an object: a pure function of (seed, size), so nothing is kept client-side. */
static void gen(uint64_t seed, unsigned char *p, size_t n)
{
    uint64_t s = seed;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = splitmix(&s);
        memcpy(p + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = splitmix(&s);
        memcpy(p + i, &v, n - i);
    }
}

/* 10 bytes .. 4 MiB, log-uniform (most objects small, some large). */
static size_t rand_size(size_t lo, size_t hi)
{
    double l = log((double)lo), h = log((double)hi);
    size_t n = (size_t)exp(l + (h - l) * rndu());
    return n < lo ? lo : n > hi ? hi : n;
}

static const char *const CTYPES[] = {"application/octet-stream", "image/png", "text/plain",
                                     "application/x-soak"};
#define NCT (sizeof CTYPES / sizeof *CTYPES)

/* ---- statistics: categories, faults, events ------------------------------------------ */

enum cat {
    C_SETUP, C_PUTGET, C_REGET, C_FREE, C_CHAIN, C_ACTOR, C_WAIT, C_CANCEL, C_PARKED,
    C_REMOTE, C_FINAL, NCAT
};
static const char *const CAT_NAME[NCAT] = {"setup", "put+get", "re-get", "free", "task chain",
                                           "actor calls", "wait", "cancel", "parked disconnect",
                                           "remote fn", "final checks"};
static struct {
    long ops, reqs, faults;
} st[NCAT];

typedef struct {
    int cat;
    bool unexpected;
    char *kind;
    long count;
    char sample[320];
} kindrec;
static kindrec *kinds;
static size_t nkinds;

static kindrec *kind_get(int cat, bool unexpected, const char *kind)
{
    for (size_t i = 0; i < nkinds; i++)
        if (kinds[i].cat == cat && kinds[i].unexpected == unexpected &&
            strcmp(kinds[i].kind, kind) == 0)
            return &kinds[i];
    kinds = xrealloc(kinds, (nkinds + 1) * sizeof *kinds);
    kindrec *k = &kinds[nkinds++];
    memset(k, 0, sizeof *k);
    k->cat = cat;
    k->unexpected = unexpected;
    k->kind = xstrdup(kind);
    return k;
}

/* An unexpected outcome: counted against its category, logged (first few per kind). */
static void fault(int cat, const char *kind, const char *fmt, ...)
{
    kindrec *k = kind_get(cat, true, kind);
    char detail[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    for (char *p = detail; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '|' || *p == '\t')
            *p = ' ';
    if (k->count == 0)
        snprintf(k->sample, sizeof k->sample, "%s", detail);
    if (k->count < 5)
        fprintf(stderr, "soak: FAULT [%s] %s: %s\n", CAT_NAME[cat], kind, detail);
    k->count++;
    st[cat].faults++;
}

/* An expected, documented outcome worth counting (an eviction seen, a disconnect made). */
static void event(int cat, const char *kind)
{
    kind_get(cat, false, kind)->count++;
}

/* Client-side counts of answers by (route, method, status), to compare with /metrics. */
typedef struct {
    const char *route, *method;
    long status, count;
} httpcount;
static httpcount hc[256];
static size_t nhc;

static void count_http(const char *route, const char *method, long status)
{
    for (size_t i = 0; i < nhc; i++)
        if (hc[i].status == status && strcmp(hc[i].route, route) == 0 &&
            strcmp(hc[i].method, method) == 0) {
            hc[i].count++;
            return;
        }
    if (nhc < sizeof hc / sizeof *hc)
        hc[nhc++] = (httpcount){route, method, status, 1};
}

static long n5xx_bad, n507, disconnects_get, disconnects_wait;

/* ---- /proc figures ------------------------------------------------------------------- */

static long proc_status_kb(const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)cfg.pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static int proc_fd_count(char *summary, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)cfg.pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0, sockets = 0, pipes = 0, anon = 0, files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        n++;
        char lp[320], target[256];
        snprintf(lp, sizeof lp, "%s/%s", path, e->d_name);
        ssize_t k = readlink(lp, target, sizeof target - 1);
        target[k > 0 ? k : 0] = '\0';
        if (strncmp(target, "socket:", 7) == 0)
            sockets++;
        else if (strncmp(target, "pipe:", 5) == 0)
            pipes++;
        else if (strncmp(target, "anon_inode:", 11) == 0)
            anon++;
        else
            files++;
    }
    closedir(d);
    if (summary)
        snprintf(summary, size, "%d sockets, %d pipes, %d anon inodes, %d files", sockets, pipes,
                 anon, files);
    return n;
}

static long rss_peak_kb;
static double next_rss_sample;

static void sample_rss(void)
{
    double t = now_s();
    if (t < next_rss_sample)
        return;
    next_rss_sample = t + 0.2;
    long v = proc_status_kb("VmRSS");
    if (v > rss_peak_kb)
        rss_peak_kb = v;
}

/* ---- objects the client holds refs to ------------------------------------------------ */

enum okind { K_BYTES, K_JSON, K_ERROR };
enum ostate { O_LIVE, O_FREED, O_EVICTED };

typedef struct obj {
    char ref[72];
    unsigned char kind, state;
    bool busy; /* a flow is using it: no other flow picks it */
    unsigned char ct;
    size_t size;
    uint64_t seed;
    json_t *expect;       /* K_JSON: the value */
    const char *title;    /* K_ERROR: the problem title */
    int depth;            /* K_ERROR: causes to follow to the leaf (-1: do not look) */
    const char *leaf;     /* K_ERROR: the leaf's title */
    char *msg;            /* K_ERROR: the leaf's detail, or NULL */
    long live_pos;        /* index in live[], -1 if not there */
    bool forgotten;       /* answered 404: its tombstone was forgotten (RAYD_MAX_TOMBSTONES) */
} obj;

static obj **objs;
static size_t nobjs, capobjs;
static obj **live;
static size_t nlive, caplive;
static size_t live_bytes;
static long evicted_seen;

static obj *obj_add(int kind, const char *ref)
{
    obj *o = xcalloc(1, sizeof *o);
    o->kind = (unsigned char)kind;
    o->state = O_LIVE;
    o->busy = true;
    o->depth = -1;
    snprintf(o->ref, sizeof o->ref, "%s", ref);
    if (nobjs == capobjs) {
        capobjs = capobjs ? capobjs * 2 : 4096;
        objs = xrealloc(objs, capobjs * sizeof *objs);
    }
    objs[nobjs++] = o;
    if (nlive == caplive) {
        caplive = caplive ? caplive * 2 : 4096;
        live = xrealloc(live, caplive * sizeof *live);
    }
    o->live_pos = (long)nlive;
    live[nlive++] = o;
    return o;
}

static void obj_set_state(obj *o, int s)
{
    if (o->state == O_LIVE && s != O_LIVE) {
        if (o->kind == K_BYTES)
            live_bytes -= o->size;
        live[o->live_pos] = live[--nlive];
        live[o->live_pos]->live_pos = o->live_pos;
        o->live_pos = -1;
        if (s == O_EVICTED)
            evicted_seen++;
    }
    o->state = (unsigned char)s;
}

/* A live object no flow is using, or NULL. */
static obj *obj_pick(void)
{
    for (int tries = 0; tries < 16 && nlive; tries++) {
        obj *o = live[rnd() % nlive];
        if (!o->busy) {
            o->busy = true;
            return o;
        }
    }
    return NULL;
}

/* ---- tasks and actors the client made ------------------------------------------------ */

enum { E_FINISHED, E_FAILED, E_CANCELLED };
static const char *const E_NAME[] = {"FINISHED", "FAILED", "CANCELLED"};

typedef struct {
    char id[72];
    unsigned char expect, cat;
} taskrec;
static taskrec *tasks;
static size_t ntasks, captasks;
static long tasks_by_expect[3];

static void task_add(const char *id, int expect, int cat)
{
    if (ntasks == captasks) {
        captasks = captasks ? captasks * 2 : 4096;
        tasks = xrealloc(tasks, captasks * sizeof *tasks);
    }
    taskrec *t = &tasks[ntasks++];
    snprintf(t->id, sizeof t->id, "%s", id);
    t->expect = (unsigned char)expect;
    t->cat = (unsigned char)cat;
    tasks_by_expect[expect]++;
}

typedef struct {
    char id[72];
    long expected;
    bool busy, tainted;
} actor;
static actor actors[NACTORS];
static long actor_calls_accepted, actors_created, actors_killed;

/* ---- HTTP on curl multi -------------------------------------------------------------- */

typedef struct flow flow;
typedef struct req {
    CURL *e;
    struct curl_slist *hdrs;
    char *out;
    char *resp;
    size_t len, cap;
    long status;
    CURLcode cc;
    int cat;
    const char *route, *method;
    char xref[72];
    flow *f;
    bool sync, done;
    char errbuf[CURL_ERROR_SIZE];
} req;

static CURLM *multi;
static long inflight;
static double t_load0_for_stalls;

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
    req *r = arg;
    size_t k = size * n;
    if (r->len + k + 1 > r->cap) {
        r->cap = (r->len + k + 1) * 2;
        r->resp = xrealloc(r->resp, r->cap);
    }
    memcpy(r->resp + r->len, p, k);
    r->len += k;
    r->resp[r->len] = '\0';
    return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    req *r = arg;
    size_t k = size * n;
    if (k > 10 && strncasecmp(p, "X-Ray-Ref:", 10) == 0) {
        const char *v = p + 10;
        while (*v == ' ')
            v++;
        size_t m = strcspn(v, "\r\n");
        if (m >= sizeof r->xref)
            m = sizeof r->xref - 1;
        memcpy(r->xref, v, m);
        r->xref[m] = '\0';
    }
    return k;
}

/* Starts a request. path is appended to --base unless it is a full URL. body (owned, may be
 * NULL) is sent for POST and PUT. route is the server's route label, NULL when the request
 * does not go to rayd. */
static req *http(flow *f, int cat, const char *method, const char *route, const char *path,
                 char *body, size_t blen, const char *ctype, long timeout_ms, const char *extra)
{
    req *r = xcalloc(1, sizeof *r);
    r->f = f;
    r->cat = cat;
    r->route = route;
    r->method = method;
    r->out = body;
    r->e = curl_easy_init();
    char url[600];
    if (strncmp(path, "http", 4) == 0)
        snprintf(url, sizeof url, "%s", path);
    else
        snprintf(url, sizeof url, "%s%s", cfg.base, path);
    curl_easy_setopt(r->e, CURLOPT_URL, url);
    curl_easy_setopt(r->e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(r->e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(r->e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(r->e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 90000L);
    curl_easy_setopt(r->e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(r->e, CURLOPT_ERRORBUFFER, r->errbuf);
    r->hdrs = curl_slist_append(r->hdrs, "Expect:");
    if (extra)
        r->hdrs = curl_slist_append(r->hdrs, extra);
    if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        if (!r->out) {
            r->out = xstrdup("");
            blen = 0;
        }
        if (strcmp(method, "PUT") == 0)
            curl_easy_setopt(r->e, CURLOPT_CUSTOMREQUEST, "PUT");
        else
            curl_easy_setopt(r->e, CURLOPT_POST, 1L);
        curl_easy_setopt(r->e, CURLOPT_POSTFIELDS, r->out);
        curl_easy_setopt(r->e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
        char h[160];
        snprintf(h, sizeof h, "Content-Type: %s", ctype ? ctype : "application/json");
        r->hdrs = curl_slist_append(r->hdrs, h);
    } else if (strcmp(method, "DELETE") == 0) {
        curl_easy_setopt(r->e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    curl_easy_setopt(r->e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_multi_add_handle(multi, r->e);
    inflight++;
    return r;
}

static req *http_json(flow *f, int cat, const char *method, const char *route, const char *path,
                      json_t *body, const char *extra)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return http(f, cat, method, route, path, s, s ? strlen(s) : 0, "application/json", 0, extra);
}

static void req_free(req *r)
{
    curl_easy_cleanup(r->e);
    curl_slist_free_all(r->hdrs);
    free(r->out);
    free(r->resp);
    free(r);
}

static const char *body_of(const req *r) { return r->resp ? r->resp : ""; }

static json_t *rjson(const req *r)
{
    return r->resp ? json_loadb(r->resp, r->len, JSON_DECODE_ANY, NULL) : NULL;
}

static const char *rctype(const req *r)
{
    char *ct = NULL;
    curl_easy_getinfo(r->e, CURLINFO_CONTENT_TYPE, &ct);
    return ct ? ct : "";
}

/* ---- flows ---------------------------------------------------------------------------- */

struct flow {
    int kind, cat, step;
    void (*fn)(flow *, req *);
    double t0, deadline;
    int i, n, k, variant;
    char ref[8][72], tid[8][72];
    long val[8];
    double d[4];
    obj *o, *objv[8];
    actor *a;
    obj *fobj[10]; /* objects this flow will free, or release, at its end */
    bool fdo[10];
    int nf, fi;
    size_t vi; /* final verifiers: current index */
    char msg[64];
};

static long active, active_kind[NCAT];
static bool load_running;

typedef struct {
    double at;
    flow *f;
} timer;
static timer timers[4096];
static size_t ntimers;

static void timer_add(flow *f, double delay)
{
    if (ntimers == sizeof timers / sizeof *timers) { /* cannot happen: flows are bounded */
        fprintf(stderr, "soak: too many timers\n");
        exit(2);
    }
    timers[ntimers++] = (timer){now_s() + delay, f};
}

static void flow_end(flow *f)
{
    st[f->cat].ops++;
    active--;
    active_kind[f->kind]--;
    free(f);
}

/* The flow's objects: a flow marks each one to free (fdo) or to release for other flows. */
static void hold(flow *f, obj *o, bool free_it)
{
    if (f->nf < 10) {
        f->fobj[f->nf] = o;
        f->fdo[f->nf++] = free_it;
    } else {
        o->busy = false;
    }
}

/* Ends a flow after an unexpected answer: its objects are released as they are (their state
 * is re-checked by the final pass), its actor is no longer trusted. */
static void flow_fail(flow *f)
{
    for (int i = 0; i < f->nf; i++)
        f->fobj[i]->busy = false;
    for (int i = 0; i < 8; i++)
        if (f->objv[i])
            f->objv[i]->busy = false;
    if (f->o)
        f->o->busy = false;
    if (f->a) {
        f->a->tainted = true;
        f->a->busy = false;
    }
    flow_end(f);
}

/* Refs that answered 404 after they existed: rayd remembers at most RAYD_MAX_TOMBSTONES lost
 * objects and forgets the oldest beyond that. The final check compares the count with the
 * server's rayd_store_tombstones_forgotten_total. */
static long forgotten_seen;

/* When r is a 404 for o, records that o's tombstone was forgotten and returns true. An
 * object the client still thought live was evicted, unseen, before being forgotten. */
static bool note_forgotten(int cat, req *r, obj *o)
{
    if (r->cc != CURLE_OK || r->status != 404)
        return false;
    if (!o->forgotten) {
        o->forgotten = true;
        forgotten_seen++;
    }
    if (o->state == O_LIVE)
        obj_set_state(o, O_EVICTED); /* counted in evicted_seen */
    event(cat, "404: tombstone forgotten beyond RAYD_MAX_TOMBSTONES (tracked)");
    return true;
}

/* The common end of flows: DELETE the objects marked for freeing, one at a time, expecting
 * 204, and release the others. Runs as steps >= 1000 of any flow. */
static void free_phase(flow *f, req *r)
{
    if (r) {
        obj *o = f->fobj[f->fi - 1];
        if (r->cc == CURLE_OK && r->status == 204) {
            obj_set_state(o, O_FREED);
        } else if (r->cc == CURLE_OK && r->status == 410 && strstr(body_of(r), "evicted")) {
            obj_set_state(o, O_EVICTED);
            event(f->cat, "410 on free: evicted before (tracked)");
        } else if (note_forgotten(f->cat, r, o)) {
            /* evicted, then forgotten */
        } else {
            fault(f->cat, "DELETE object: unexpected answer", "DELETE %s -> %ld %s: %.200s",
                  o->ref, r->status, curl_easy_strerror(r->cc), body_of(r));
        }
        o->busy = false;
    }
    while (f->fi < f->nf) {
        int i = f->fi++;
        obj *o = f->fobj[i];
        if (f->fdo[i] && o->state == O_LIVE) {
            char path[128];
            snprintf(path, sizeof path, "/v1/objects/%s", o->ref);
            http(f, f->cat, "DELETE", R_OBJ, path, NULL, 0, NULL, 0, NULL);
            return;
        }
        o->busy = false;
    }
    if (f->a)
        f->a->busy = false;
    flow_end(f);
}

static void start_free_phase(flow *f)
{
    f->step = 1000;
    f->fi = 0;
    free_phase(f, NULL);
}

static void flow_dispatch(flow *f, req *r)
{
    if (f->step >= 1000)
        free_phase(f, r);
    else
        f->fn(f, r);
}

/* Checks a request's outcome: transport success and one wanted status. */
static bool want(flow *f, req *r, long status, const char *what)
{
    if (r->cc != CURLE_OK) {
        char kind[160];
        snprintf(kind, sizeof kind, "%s: transport error (%s)", what, curl_easy_strerror(r->cc));
        fault(f->cat, kind, "%s", r->errbuf);
        return false;
    }
    if (r->status != status) {
        char kind[160];
        snprintf(kind, sizeof kind, "%s: HTTP %ld, expected %ld", what, r->status, status);
        fault(f->cat, kind, "%.250s", body_of(r));
        return false;
    }
    return true;
}

/* A ref from a 201/202 JSON answer ("ref"), or NULL after recording a fault. */
static bool answer_ref(flow *f, req *r, const char *what, char *ref, char *tid)
{
    json_t *j = rjson(r);
    const char *s = json_string_value(json_object_get(j, "ref"));
    const char *t = json_string_value(json_object_get(j, "task_id"));
    bool ok = s && strlen(s) < 72 && (!tid || (t && strlen(t) < 72));
    if (ok) {
        strcpy(ref, s);
        if (tid)
            strcpy(tid, t);
    } else {
        fault(f->cat, "malformed answer", "%s: %.200s", what, body_of(r));
    }
    json_decref(j);
    return ok;
}

/* Submits a task; the flow's next step receives the answer. */
static void submit_task(flow *f, json_t *body)
{
    http_json(f, f->cat, "POST", R_TASKS, "/v1/tasks", body, NULL);
}

/* Handles a task submission's answer: 202 and a record with the expected end state. */
static bool task_accepted(flow *f, req *r, int expect, char *ref, char *tid)
{
    if (!want(f, r, 202, "POST /v1/tasks"))
        return false;
    if (!answer_ref(f, r, "POST /v1/tasks", ref, tid))
        return false;
    task_add(tid, expect, f->cat);
    return true;
}

static void get_ref(flow *f, const char *ref, double timeout, long client_timeout_ms)
{
    char path[160];
    if (timeout > 0)
        snprintf(path, sizeof path, "/v1/objects/%s?timeout=%g", ref, timeout);
    else
        snprintf(path, sizeof path, "/v1/objects/%s", ref);
    http(f, f->cat, "GET", R_OBJ, path, NULL, 0, NULL, client_timeout_ms, NULL);
}

static unsigned char *scratch; /* MAX_OBJECT bytes for regenerating expected contents */


/* Checks a GET of o's ref against what the client knows. Returns 1 as expected, 2 when the
 * answer showed it was evicted (tracked), 0 after recording a fault. range_lo/hi: a Range
 * request was made for bytes [lo, hi]. */
static int verify_obj(int cat, req *r, obj *o, long range_lo, long range_hi)
{
    if (r->cc != CURLE_OK) {
        char kind[160];
        snprintf(kind, sizeof kind, "GET object: transport error (%s)", curl_easy_strerror(r->cc));
        fault(cat, kind, "%s: %s", o->ref, r->errbuf);
        return 0;
    }
    if (r->status == 404) {
        bool was_live = o->state == O_LIVE;
        if (note_forgotten(cat, r, o))
            return was_live ? 2 : 1;
    }
    if (o->state != O_LIVE) {
        const char *why = o->state == O_FREED ? "freed" : "evicted";
        if (r->status == 410 && strstr(body_of(r), why))
            return 1;
        char kind[120];
        snprintf(kind, sizeof kind, "GET %s object: HTTP %ld, expected 410", why, r->status);
        fault(cat, kind, "%s: %.200s", o->ref, body_of(r));
        return 0;
    }
    if (r->status == 410) {
        if (strstr(body_of(r), "evicted")) {
            obj_set_state(o, O_EVICTED);
            event(cat, "410 ObjectLost: evicted (tracked)");
            return 2;
        }
        fault(cat, "GET live object: 410 but not evicted", "%s: %.200s", o->ref, body_of(r));
        return 0;
    }
    if (o->kind == K_BYTES) {
        long want_status = range_lo >= 0 ? 206 : 200;
        if (r->status != want_status) {
            char kind[120];
            snprintf(kind, sizeof kind, "GET bytes: HTTP %ld, expected %ld", r->status,
                     want_status);
            fault(cat, kind, "%s: %.200s", o->ref, body_of(r));
            return 0;
        }
        if (strcasecmp(rctype(r), CTYPES[o->ct]) != 0) {
            fault(cat, "GET bytes: wrong Content-Type", "%s: got %s, put %s", o->ref, rctype(r),
                  CTYPES[o->ct]);
            return 0;
        }
        size_t lo = range_lo >= 0 ? (size_t)range_lo : 0;
        size_t n = range_lo >= 0 ? (size_t)(range_hi - range_lo + 1) : o->size;
        if (r->len != n) {
            fault(cat, "GET bytes: wrong length", "%s: got %zu bytes, expected %zu", o->ref,
                  r->len, n);
            return 0;
        }
        gen(o->seed, scratch, o->size);
        if (n && memcmp(r->resp, scratch + lo, n) != 0) {
            fault(cat, "GET bytes: contents differ", "%s: %zu bytes from %zu", o->ref, n, lo);
            return 0;
        }
        return 1;
    }
    if (o->kind == K_JSON) {
        if (r->status != 200) {
            char kind[120];
            snprintf(kind, sizeof kind, "GET result: HTTP %ld, expected 200", r->status);
            fault(cat, kind, "%s: %.200s", o->ref, body_of(r));
            return 0;
        }
        json_t *j = rjson(r);
        bool eq = j && json_equal(j, o->expect);
        if (!eq) {
            char *e = json_dumps(o->expect, JSON_COMPACT | JSON_ENCODE_ANY);
            fault(cat, "GET result: wrong value", "%s: got %.120s, expected %.80s", o->ref,
                  body_of(r), e ? e : "?");
            free(e);
        }
        json_decref(j);
        return eq ? 1 : 0;
    }
    /* K_ERROR */
    if (r->status != 424) {
        char kind[120];
        snprintf(kind, sizeof kind, "GET stored error: HTTP %ld, expected 424", r->status);
        fault(cat, kind, "%s: %.200s", o->ref, body_of(r));
        return 0;
    }
    json_t *j = rjson(r);
    json_t *p = j;
    bool ok = p && strcmp(json_string_value(json_object_get(p, "title")) ?: "", o->title) == 0;
    for (int d = 0; ok && d < o->depth; d++) {
        p = json_object_get(p, "cause");
        ok = json_is_object(p);
    }
    if (ok && o->depth >= 0) {
        ok = strcmp(json_string_value(json_object_get(p, "title")) ?: "", o->leaf) == 0;
        if (ok && o->msg)
            ok = strcmp(json_string_value(json_object_get(p, "detail")) ?: "", o->msg) == 0;
    }
    if (!ok)
        fault(cat, "GET stored error: wrong problem or cause chain",
              "%s: expected %s, leaf %s '%s' at depth %d; got %.200s", o->ref, o->title,
              o->leaf ? o->leaf : "-", o->msg ? o->msg : "", o->depth, body_of(r));
    json_decref(j);
    return ok ? 1 : 0;
}

/* ---- flow: put, get, then hold or free ------------------------------------------------ */

static void fl_putget(flow *f, req *r)
{
    char path[160];
    switch (f->step++) {
    case 0: {
        size_t size = rand_size(10, MAX_OBJECT);
        f->val[0] = (long)size;
        f->val[1] = rndi(0, NCT - 1);
        f->d[0] = 0;
        uint64_t seed = rnd();
        memcpy(&f->val[2], &seed, sizeof seed);
        unsigned char *b = xmalloc(size);
        gen(seed, b, size);
        http(f, f->cat, "POST", R_OBJECTS, "/v1/objects", (char *)b, size, CTYPES[f->val[1]], 0,
             NULL);
        return;
    }
    case 1: {
        if (r->cc == CURLE_OK && r->status == 507) {
            event(f->cat, "507 ObjectStoreFull on put (documented)");
            flow_end(f);
            return;
        }
        if (!want(f, r, 201, "POST /v1/objects"))
            return flow_fail(f);
        json_t *j = rjson(r);
        const char *ref = json_string_value(json_object_get(j, "ref"));
        json_int_t size = json_integer_value(json_object_get(j, "size"));
        const char *ct = json_string_value(json_object_get(j, "content_type"));
        if (!ref || strlen(ref) >= 72 || size != f->val[0] || !ct ||
            strcmp(ct, CTYPES[f->val[1]]) != 0) {
            fault(f->cat, "put: wrong answer", "%.200s (put %ld bytes)", body_of(r), f->val[0]);
            json_decref(j);
            return flow_fail(f);
        }
        obj *o = obj_add(K_BYTES, ref);
        json_decref(j);
        o->size = (size_t)f->val[0];
        o->ct = (unsigned char)f->val[1];
        memcpy(&o->seed, &f->val[2], sizeof o->seed);
        live_bytes += o->size;
        f->o = o;
        snprintf(path, sizeof path, "/v1/objects/%s", o->ref);
        http(f, f->cat, "GET", R_OBJ, path, NULL, 0, NULL, 0, NULL);
        return;
    }
    case 2: {
        obj *o = f->o;
        int v = verify_obj(f->cat, r, o, -1, -1);
        if (v == 0)
            return flow_fail(f);
        f->o = NULL;
        hold(f, o, v == 1 && live_bytes > cfg.hold_bytes);
        start_free_phase(f);
        return;
    }
    }
}

/* ---- flow: get a held ref again (sometimes a Range) ------------------------------------ */

static void fl_reget(flow *f, req *r)
{
    switch (f->step++) {
    case 0: {
        obj *o = f->o = obj_pick();
        if (!o) {
            flow_end(f);
            return;
        }
        char path[160], range[80];
        snprintf(path, sizeof path, "/v1/objects/%s", o->ref);
        f->val[0] = f->val[1] = -1;
        if (o->kind == K_BYTES && o->size >= 64 && chance(0.25)) {
            f->val[0] = rndi(0, (long)o->size - 2);
            f->val[1] = rndi(f->val[0], (long)o->size - 1);
            snprintf(range, sizeof range, "Range: bytes=%ld-%ld", f->val[0], f->val[1]);
            http(f, f->cat, "GET", R_OBJ, path, NULL, 0, NULL, 0, range);
        } else {
            http(f, f->cat, "GET", R_OBJ, path, NULL, 0, NULL, 0, NULL);
        }
        return;
    }
    case 1:
        verify_obj(f->cat, r, f->o, f->val[0], f->val[1]);
        f->o->busy = false;
        flow_end(f);
        return;
    }
}

/* ---- flow: free a held ref, then see 410 ------------------------------------------------ */

static void fl_free(flow *f, req *r)
{
    char path[160];
    switch (f->step++) {
    case 0:
        f->o = obj_pick();
        if (!f->o) {
            flow_end(f);
            return;
        }
        snprintf(path, sizeof path, "/v1/objects/%s", f->o->ref);
        http(f, f->cat, "DELETE", R_OBJ, path, NULL, 0, NULL, 0, NULL);
        return;
    case 1:
        if (r->cc == CURLE_OK && r->status == 410 && strstr(body_of(r), "evicted")) {
            obj_set_state(f->o, O_EVICTED);
            event(f->cat, "410 on free: evicted before (tracked)");
            f->o->busy = false;
            flow_end(f);
            return;
        }
        if (note_forgotten(f->cat, r, f->o)) { /* evicted, then forgotten */
            f->o->busy = false;
            flow_end(f);
            return;
        }
        if (!want(f, r, 204, "DELETE /v1/objects/{ref}"))
            return flow_fail(f);
        obj_set_state(f->o, O_FREED);
        snprintf(path, sizeof path, "/v1/objects/%s", f->o->ref);
        http(f, f->cat, "GET", R_OBJ, path, NULL, 0, NULL, 0, NULL);
        return;
    case 2:
        verify_obj(f->cat, r, f->o, -1, -1);
        f->o->busy = false;
        flow_end(f);
        return;
    }
}

/* ---- flow: a chain of add/mul tasks, sometimes with a failing link --------------------- */

static long chain_seq;

static obj *result_obj(const char *ref)
{
    return obj_add(K_JSON, ref);
}

static void fl_chain(flow *f, req *r)
{
    /* n links; link i: add/mul of link i-1's ref, or fail at index k (-1: none). */
    if (f->step == 0) {
        f->n = (int)rndi(2, 6);
        f->k = chance(0.3) ? (int)rndi(0, f->n - 1) : -1;
        f->i = 0;
        f->step = 1;
    } else {
        int i = f->i;
        int expect = f->k >= 0 && i >= f->k ? E_FAILED : E_FINISHED;
        if (!task_accepted(f, r, expect, f->ref[i], f->tid[i]))
            return flow_fail(f);
        obj *o;
        if (expect == E_FINISHED) {
            o = result_obj(f->ref[i]);
            o->expect = json_integer(f->val[i]);
        } else {
            o = obj_add(K_ERROR, f->ref[i]);
            o->title = "TaskError";
            o->leaf = "TaskError";
            o->depth = i - f->k;
            o->msg = xstrdup(f->msg);
        }
        f->objv[i] = o;
        f->i++;
    }
    if (f->i < f->n) {
        int i = f->i;
        json_t *args;
        const char *fn = "add";
        if (i == f->k) {
            snprintf(f->msg, sizeof f->msg, "soak chain %ld link %d", ++chain_seq, i);
            fn = "fail";
            args = json_pack("[s]", f->msg);
            f->val[i] = 0;
        } else if (i == 0) {
            long a = rndi(-1000, 1000), b = rndi(-1000, 1000);
            args = json_pack("[I,I]", (json_int_t)a, (json_int_t)b);
            f->val[i] = a + b;
        } else {
            long c = rndi(-3, 3);
            if (chance(0.3)) {
                fn = "mul";
                f->val[i] = f->val[i - 1] * c;
            } else {
                c = rndi(-100, 100);
                f->val[i] = f->val[i - 1] + c;
            }
            args = json_pack("[{s:s},I]", "$ref", f->ref[i - 1], (json_int_t)c);
        }
        submit_task(f, json_pack("{s:s,s:o}", "function", fn, "args", args));
        return;
    }
    /* all submitted: wait for the last, then look at every link */
    if (f->step == 1) {
        f->step = 2;
        f->i = 0;
        get_ref(f, f->ref[f->n - 1], 30, 0);
        return;
    }
    /* unreachable */
}

/* The chain's second half: GET the last link (waiting), then every link; hold or free. */
static void fl_chain_check(flow *f, req *r)
{
    int idx = f->step == 2 ? f->n - 1 : f->i;
    int v = verify_obj(f->cat, r, f->objv[idx], -1, -1);
    if (v == 0)
        return flow_fail(f);
    if (f->step == 2) {
        f->step = 3;
        f->i = 0;
    } else {
        f->i++;
    }
    if (f->i < f->n - 1) {
        get_ref(f, f->ref[f->i], 0, 0);
        return;
    }
    for (int i = 0; i < f->n; i++)
        hold(f, f->objv[i], f->objv[i]->state == O_LIVE && chance(0.5));
    start_free_phase(f);
}

static void fl_chain_entry(flow *f, req *r)
{
    if (f->step >= 2)
        fl_chain_check(f, r);
    else
        fl_chain(f, r);
}

/* ---- flow: calls on a Counter actor, values tracked ------------------------------------ */

static void fl_actor(flow *f, req *r)
{
    char path[200];
    if (f->step == 0) {
        actor *a = NULL;
        for (int t = 0; t < 8 && !a; t++) {
            actor *c = &actors[rnd() % NACTORS];
            if (!c->busy && !c->tainted && c->id[0])
                a = c;
        }
        if (!a) {
            flow_end(f);
            return;
        }
        a->busy = true;
        f->a = a;
        f->n = (int)rndi(1, 5);
        f->i = 0;
        f->step = 1;
    } else if (f->step == 1) {
        int i = f->i;
        if (r->cc == CURLE_OK && r->status == 200 && f->k) {
            /* Prefer: wait answered with the result itself */
            json_t *j = rjson(r);
            if (!r->xref[0] || !json_is_integer(j) || json_integer_value(j) != f->val[i]) {
                fault(f->cat, "actor call (Prefer: wait): wrong answer",
                      "got %.100s ref '%s', expected %ld", body_of(r), r->xref, f->val[i]);
                json_decref(j);
                return flow_fail(f);
            }
            json_decref(j);
            snprintf(f->ref[i], sizeof f->ref[i], "%s", r->xref);
        } else {
            if (!want(f, r, 202, "POST actor method"))
                return flow_fail(f);
            if (!answer_ref(f, r, "POST actor method", f->ref[i], NULL))
                return flow_fail(f);
        }
        actor_calls_accepted++;
        obj *o = result_obj(f->ref[i]);
        o->expect = json_integer(f->val[i]);
        f->objv[i] = o;
        f->i++;
    }
    if (f->step == 1 && f->i < f->n) {
        long n = rndi(1, 9);
        f->val[f->i] = f->a->expected + n;
        f->a->expected += n;
        snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", f->a->id);
        json_t *body = chance(0.3) ? json_pack("{s:{s:I}}", "kwargs", "n", (json_int_t)n)
                                   : json_pack("{s:[I]}", "args", (json_int_t)n);
        f->k = f->i == f->n - 1 && chance(0.3);
        http_json(f, f->cat, "POST", R_CALL, path, body, f->k ? "Prefer: wait=5" : NULL);
        return;
    }
    if (f->step == 1) {
        f->step = 2;
        f->i = 0;
        get_ref(f, f->ref[0], 10, 0);
        return;
    }
    /* step 2: results, in order */
    if (verify_obj(f->cat, r, f->objv[f->i], -1, -1) == 0)
        return flow_fail(f);
    if (++f->i < f->n) {
        get_ref(f, f->ref[f->i], 10, 0);
        return;
    }
    for (int i = 0; i < f->n; i++)
        hold(f, f->objv[i], f->objv[i]->state == O_LIVE && chance(0.5));
    start_free_phase(f); /* releases the actor */
}

/* An actor's whole life: create, call, kill, then a call answers 410 and it reads DEAD. */
static void fl_actor_life(flow *f, req *r)
{
    char path[200];
    switch (f->step++) {
    case 0:
        f->val[0] = rndi(0, 100);
        http_json(f, f->cat, "POST", R_ACTORS, "/v1/actors",
                  json_pack("{s:s,s:[I]}", "class", "Counter", "args", (json_int_t)f->val[0]),
                  NULL);
        return;
    case 1: {
        if (!want(f, r, 201, "POST /v1/actors"))
            return flow_fail(f);
        json_t *j = rjson(r);
        const char *id = json_string_value(json_object_get(j, "actor_id"));
        if (!id || strlen(id) >= 72) {
            fault(f->cat, "malformed answer", "POST /v1/actors: %.200s", body_of(r));
            json_decref(j);
            return flow_fail(f);
        }
        strcpy(f->tid[0], id);
        json_decref(j);
        actors_created++;
        snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", f->tid[0]);
        http_json(f, f->cat, "POST", R_CALL, path, json_pack("{s:[i]}", "args", 7),
                  "Prefer: wait=30");
        return;
    }
    case 2: {
        if (!want(f, r, 200, "actor call (Prefer: wait)"))
            return flow_fail(f);
        actor_calls_accepted++;
        if (r->xref[0]) {
            obj *o = result_obj(r->xref);
            o->expect = json_integer(f->val[0] + 7);
            hold(f, o, true);
        }
        json_t *j = rjson(r);
        if (!json_is_integer(j) || json_integer_value(j) != f->val[0] + 7 || !r->xref[0])
            fault(f->cat, "actor call (Prefer: wait): wrong answer", "got %.100s, expected %ld",
                  body_of(r), f->val[0] + 7);
        json_decref(j);
        snprintf(path, sizeof path, "/v1/actors/%s", f->tid[0]);
        http(f, f->cat, "DELETE", R_ACTOR, path, NULL, 0, NULL, 0, NULL);
        return;
    }
    case 3:
        if (!want(f, r, 204, "DELETE /v1/actors/{id}"))
            return flow_fail(f);
        actors_killed++;
        snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", f->tid[0]);
        http_json(f, f->cat, "POST", R_CALL, path, json_pack("{s:[i]}", "args", 1), NULL);
        return;
    case 4:
        if (!want(f, r, 410, "call on a killed actor"))
            return flow_fail(f);
        snprintf(path, sizeof path, "/v1/actors/%s", f->tid[0]);
        http(f, f->cat, "GET", R_ACTOR, path, NULL, 0, NULL, 0, NULL);
        return;
    case 5: {
        if (!want(f, r, 200, "GET /v1/actors/{id}"))
            return flow_fail(f);
        json_t *j = rjson(r);
        const char *s = json_string_value(json_object_get(j, "state"));
        if (!s || strcmp(s, "DEAD") != 0)
            fault(f->cat, "killed actor not DEAD", "%.200s", body_of(r));
        json_decref(j);
        start_free_phase(f);
        return;
    }
    }
}

/* ---- flow: ray.wait on a ready object and two sleeps ----------------------------------- */

static void fl_wait(flow *f, req *r)
{
    switch (f->step++) {
    case 0: {
        size_t size = rand_size(10, 100);
        uint64_t seed = rnd();
        f->val[0] = (long)size;
        memcpy(&f->val[2], &seed, sizeof seed);
        unsigned char *b = xmalloc(size);
        gen(seed, b, size);
        http(f, f->cat, "POST", R_OBJECTS, "/v1/objects", (char *)b, size, CTYPES[0], 0, NULL);
        return;
    }
    case 1: {
        if (!want(f, r, 201, "POST /v1/objects"))
            return flow_fail(f);
        if (!answer_ref(f, r, "POST /v1/objects", f->ref[0], NULL))
            return flow_fail(f);
        obj *o = obj_add(K_BYTES, f->ref[0]);
        o->size = (size_t)f->val[0];
        o->ct = 0;
        memcpy(&o->seed, &f->val[2], sizeof o->seed);
        live_bytes += o->size;
        f->objv[0] = o;
        f->d[1] = 0.05 + 0.35 * rndu();
        submit_task(f, json_pack("{s:s,s:[f]}", "function", "sleep", "args", f->d[1]));
        return;
    }
    case 2:
    case 3: {
        int i = f->step - 2; /* 1 or 2 */
        if (!task_accepted(f, r, E_FINISHED, f->ref[i], f->tid[i]))
            return flow_fail(f);
        obj *o = result_obj(f->ref[i]);
        o->expect = json_real(f->d[i]);
        f->objv[i] = o;
        if (i == 1) {
            f->d[2] = 0.05 + 0.35 * rndu();
            submit_task(f, json_pack("{s:s,s:[f]}", "function", "sleep", "args", f->d[2]));
            return;
        }
        /* shuffle the three refs into val[4..6] (indices), k and a timeout */
        int order[3] = {0, 1, 2};
        for (int a = 2; a > 0; a--) {
            int b = (int)rndi(0, a);
            int t = order[a];
            order[a] = order[b];
            order[b] = t;
        }
        json_t *refs = json_array();
        for (int a = 0; a < 3; a++) {
            f->val[4 + a] = order[a];
            json_array_append_new(refs, json_string(f->ref[order[a]]));
        }
        f->k = (int)rndi(1, 3);
        f->d[3] = 0.05 + 0.45 * rndu();
        f->t0 = now_s();
        http_json(f, f->cat, "POST", R_WAIT, "/v1/wait",
                  json_pack("{s:o,s:i,s:f}", "refs", refs, "num_returns", f->k, "timeout",
                            f->d[3]),
                  NULL);
        return;
    }
    case 4: {
        double elapsed = now_s() - f->t0;
        if (!want(f, r, 200, "POST /v1/wait"))
            return flow_fail(f);
        json_t *j = rjson(r);
        json_t *ready = json_object_get(j, "ready"), *nr = json_object_get(j, "not_ready");
        bool ok = json_is_array(ready) && json_is_array(nr) &&
                  json_array_size(ready) + json_array_size(nr) == 3 &&
                  json_array_size(ready) <= (size_t)f->k;
        /* every input ref exactly once, each list in input order */
        int seen[3] = {0, 0, 0}, last_r = -1, last_n = -1;
        bool obj_ready = false;
        for (int l = 0; ok && l < 2; l++) {
            json_t *arr = l ? nr : ready;
            for (size_t x = 0; ok && x < json_array_size(arr); x++) {
                const char *s = json_string_value(json_array_get(arr, x));
                int pos = -1;
                for (int a = 0; a < 3; a++)
                    if (s && strcmp(s, f->ref[f->val[4 + a]]) == 0)
                        pos = a;
                ok = pos >= 0 && !seen[pos]++;
                int *last = l ? &last_n : &last_r;
                ok = ok && pos > *last;
                *last = pos;
                if (ok && !l && f->val[4 + pos] == 0)
                    obj_ready = true;
            }
        }
        if (!ok) {
            fault(f->cat, "wait: malformed or out of order", "k=%d: %.250s", f->k, body_of(r));
        } else if (json_array_size(ready) < (size_t)f->k) {
            /* fewer than k: only after the timeout, and the ready object must be there */
            if (!obj_ready)
                fault(f->cat, "wait: a ready object reported not ready", "k=%d: %.250s", f->k,
                      body_of(r));
            else if (elapsed < f->d[3] - 0.02)
                fault(f->cat, "wait: returned early with fewer than num_returns",
                      "k=%d timeout %.3f s, answered after %.3f s: %.200s", f->k, f->d[3],
                      elapsed, body_of(r));
        }
        json_decref(j);
        f->i = 1;
        get_ref(f, f->ref[1], 10, 0);
        return;
    }
    case 5:
        if (verify_obj(f->cat, r, f->objv[1], -1, -1) == 0)
            return flow_fail(f);
        get_ref(f, f->ref[2], 10, 0);
        return;
    case 6: {
        if (verify_obj(f->cat, r, f->objv[2], -1, -1) == 0)
            return flow_fail(f);
        hold(f, f->objv[0], chance(0.5));
        hold(f, f->objv[1], true);
        hold(f, f->objv[2], true);
        start_free_phase(f);
        return;
    }
    }
}

/* ---- flow: cancel a sleep (and see its dependent fail) --------------------------------- */

static void fl_cancel(flow *f, req *r)
{
    char path[160];
    switch (f->step++) {
    case 0:
        /* long enough that only a cancel ends it, even across a pause of the machine */
        submit_task(f, json_pack("{s:s,s:[i]}", "function", "sleep", "args", 30));
        return;
    case 1: {
        if (!task_accepted(f, r, E_CANCELLED, f->ref[0], f->tid[0]))
            return flow_fail(f);
        obj *o = obj_add(K_ERROR, f->ref[0]);
        o->title = "TaskCancelled";
        f->objv[0] = o;
        f->n = chance(0.5) ? 2 : 1;
        if (f->n == 2) {
            submit_task(f, json_pack("{s:s,s:[{s:s},i]}", "function", "add", "args", "$ref",
                                     f->ref[0], 1));
            return;
        }
        f->step++;
        timer_add(f, 0.3 * rndu());
        return;
    }
    case 2: {
        if (!task_accepted(f, r, E_FAILED, f->ref[1], f->tid[1]))
            return flow_fail(f);
        obj *o = obj_add(K_ERROR, f->ref[1]);
        o->title = "TaskError";
        o->depth = 1;
        o->leaf = "TaskCancelled";
        f->objv[1] = o;
        timer_add(f, 0.3 * rndu());
        return;
    }
    case 3:
        snprintf(path, sizeof path, "/v1/tasks/%s/cancel", f->tid[0]);
        http(f, f->cat, "POST", R_CANCEL, path, NULL, 0, NULL, 0, NULL);
        return;
    case 4:
        if (!want(f, r, 202, "POST /v1/tasks/{id}/cancel"))
            return flow_fail(f);
        get_ref(f, f->ref[0], 10, 0);
        return;
    case 5:
        if (verify_obj(f->cat, r, f->objv[0], -1, -1) == 0)
            return flow_fail(f);
        if (f->n == 2) {
            get_ref(f, f->ref[1], 10, 0);
            return;
        }
        f->step++;
        /* fall through */
    case 6:
        if (r && f->n == 2 && verify_obj(f->cat, r, f->objv[1], -1, -1) == 0)
            return flow_fail(f);
        for (int i = 0; i < f->n; i++)
            hold(f, f->objv[i], chance(0.7));
        start_free_phase(f);
        return;
    }
}

/* ---- flow: a client that hangs up while parked ----------------------------------------- */

static void fl_parked(flow *f, req *r)
{
    switch (f->step++) {
    case 0:
        f->d[0] = 0.6 + 0.2 * rndu();
        f->t0 = now_s();
        submit_task(f, json_pack("{s:s,s:[f]}", "function", "sleep", "args", f->d[0]));
        return;
    case 1: {
        if (!task_accepted(f, r, E_FINISHED, f->ref[0], f->tid[0]))
            return flow_fail(f);
        obj *o = result_obj(f->ref[0]);
        o->expect = json_real(f->d[0]);
        f->objv[0] = o;
        /* the client gives up after 0.2 s: the server must forget the parked request */
        f->variant = chance(0.5);
        if (f->variant) {
            char *b = xmalloc(200);
            snprintf(b, 200, "{\"refs\":[\"%s\"],\"timeout\":10}", f->ref[0]);
            http(f, f->cat, "POST", R_WAIT, "/v1/wait", b, strlen(b), "application/json", 200,
                 NULL);
        } else {
            get_ref(f, f->ref[0], 10, 200);
        }
        return;
    }
    case 2:
        if (r->cc == CURLE_OK && r->status == 200 && now_s() - f->t0 >= f->d[0]) {
            /* the sleep had ended by then: possible only after a pause of this client */
            event(f->cat, "object ready before the client could hang up (client paused)");
        } else if (r->cc != CURLE_OPERATION_TIMEDOUT) {
            fault(f->cat, "parked request answered before its object was ready",
                  "%s: curl %s, HTTP %ld: %.200s", f->variant ? "wait" : "GET",
                  curl_easy_strerror(r->cc), r->status, body_of(r));
        } else {
            if (f->variant)
                disconnects_wait++;
            else
                disconnects_get++;
            event(f->cat, f->variant ? "client hung up on a parked POST /v1/wait"
                                     : "client hung up on a parked GET ?timeout");
        }
        get_ref(f, f->ref[0], 10, 0);
        return;
    case 3:
        if (verify_obj(f->cat, r, f->objv[0], -1, -1) == 0)
            return flow_fail(f);
        hold(f, f->objv[0], chance(0.7));
        start_free_phase(f);
        return;
    }
}

/* ---- flow: remote function calls through the worker ------------------------------------ */

static double outage_seconds;
static bool worker_down;
static long remote_submitted_down;

static void remote_get(flow *f)
{
    double left = f->deadline - now_s();
    if (left < 1)
        left = 1;
    get_ref(f, f->ref[0], left < 30 ? left : 30, 0);
}

static void fl_remote(flow *f, req *r)
{
    switch (f->step++) {
    case 0: {
        f->deadline = now_s() + outage_seconds + 45;
        double p = rndu();
        if (p < 0.15) { /* byte_length of a binary object passed by ref */
            f->variant = 1;
            size_t size = rand_size(10, 65536);
            uint64_t seed = rnd();
            f->val[0] = (long)size;
            f->val[1] = rndi(0, NCT - 1);
            memcpy(&f->val[2], &seed, sizeof seed);
            unsigned char *b = xmalloc(size);
            gen(seed, b, size);
            http(f, f->cat, "POST", R_OBJECTS, "/v1/objects", (char *)b, size,
                 CTYPES[f->val[1]], 0, NULL);
            return;
        }
        f->step++;
        if (p < 0.3) { /* an endpoint that answers 500 problem+json */
            f->variant = 2;
            snprintf(f->msg, sizeof f->msg, "soak remote failure %" PRIu64, rnd() % 1000000);
            submit_task(f, json_pack("{s:s,s:[s]}", "function", "soak_fail", "args", f->msg));
        } else { /* wordcount */
            f->variant = 0;
            int n = (int)rndi(0, 40);
            char text[400] = "";
            for (int i = 0; i < n; i++)
                strcat(text, i ? " w" : "w");
            f->val[0] = n;
            submit_task(f, json_pack("{s:s,s:[s]}", "function", "soak_wc", "args", text));
        }
        if (worker_down)
            remote_submitted_down++;
        return;
    }
    case 1: {
        if (!want(f, r, 201, "POST /v1/objects"))
            return flow_fail(f);
        if (!answer_ref(f, r, "POST /v1/objects", f->ref[1], NULL))
            return flow_fail(f);
        obj *o = obj_add(K_BYTES, f->ref[1]);
        o->size = (size_t)f->val[0];
        o->ct = (unsigned char)f->val[1];
        memcpy(&o->seed, &f->val[2], sizeof o->seed);
        live_bytes += o->size;
        f->objv[1] = o;
        submit_task(f, json_pack("{s:s,s:[{s:s}]}", "function", "soak_len", "args", "$ref",
                                 f->ref[1]));
        if (worker_down)
            remote_submitted_down++;
        return;
    }
    case 2: {
        int expect = f->variant == 2 ? E_FAILED : E_FINISHED;
        if (!task_accepted(f, r, expect, f->ref[0], f->tid[0]))
            return flow_fail(f);
        obj *o;
        if (f->variant == 2) {
            o = obj_add(K_ERROR, f->ref[0]);
            o->title = "TaskError";
            o->leaf = "TaskError";
            o->depth = 1;
            o->msg = xstrdup(f->msg);
        } else {
            o = result_obj(f->ref[0]);
            o->expect = f->variant == 1 ? json_pack("{s:I,s:s}", "bytes", (json_int_t)f->val[0],
                                                    "content_type", CTYPES[f->val[1]])
                                        : json_integer(f->val[0]);
        }
        f->objv[0] = o;
        remote_get(f);
        return;
    }
    case 3:
        if (r->cc == CURLE_OK && r->status == 202 && now_s() < f->deadline) {
            f->step = 3; /* still pending (worker down, retries): ask again */
            remote_get(f);
            return;
        }
        if (verify_obj(f->cat, r, f->objv[0], -1, -1) == 0)
            return flow_fail(f);
        hold(f, f->objv[0], chance(0.3));
        if (f->variant == 1)
            hold(f, f->objv[1], chance(0.5));
        start_free_phase(f);
        return;
    }
}

/* ---- flow scheduling ---------------------------------------------------------------- */

typedef struct {
    int cat, weight, cap;
    void (*fn)(flow *, req *);
    bool makes_tasks;
} kinddef;

static void fl_actor_any(flow *f, req *r);

static const kinddef KINDS[] = {
    {C_PUTGET, 20, 0, fl_putget, false},   {C_REGET, 14, 0, fl_reget, false},
    {C_FREE, 6, 0, fl_free, false},        {C_CHAIN, 16, 0, fl_chain_entry, true},
    {C_ACTOR, 12, 0, fl_actor_any, false}, {C_WAIT, 8, MAX_WAIT, fl_wait, true},
    {C_CANCEL, 5, MAX_CANCEL, fl_cancel, true}, {C_PARKED, 5, MAX_PARKED, fl_parked, true},
    {C_REMOTE, 14, MAX_REMOTE, fl_remote, true},
};
#define NKINDS (sizeof KINDS / sizeof *KINDS)

static void fl_actor_any(flow *f, req *r)
{
    if (f->step == 0 && f->variant == 0)
        f->variant = chance(0.08) ? 2 : 1;
    if (f->variant == 2)
        fl_actor_life(f, r);
    else
        fl_actor(f, r);
}

static flow *flow_new(int kind, int cat, void (*fn)(flow *, req *))
{
    flow *f = xcalloc(1, sizeof *f);
    f->kind = kind;
    f->cat = cat;
    f->fn = fn;
    active++;
    active_kind[kind]++;
    return f;
}

static void spawn_one(void)
{
    int total = 0;
    for (size_t i = 0; i < NKINDS; i++)
        total += KINDS[i].weight;
    for (int tries = 0; tries < 20; tries++) {
        int p = (int)rndi(0, total - 1);
        size_t i = 0;
        while (p >= KINDS[i].weight)
            p -= KINDS[i++].weight;
        const kinddef *k = &KINDS[i];
        if (k->cap && active_kind[k->cat] >= k->cap)
            continue;
        if (k->makes_tasks && (long)ntasks >= cfg.max_tasks - 16)
            continue;
        if ((k->cat == C_REGET || k->cat == C_FREE) && nlive < 8)
            continue;
        flow *f = flow_new(k->cat, k->cat, k->fn);
        f->fn(f, NULL);
        return;
    }
    flow *f = flow_new(C_PUTGET, C_PUTGET, fl_putget);
    f->fn(f, NULL);
}

/* ---- the event loop ------------------------------------------------------------------ */

static void complete(req *r)
{
    inflight--;
    if (r->cc == CURLE_OK)
        curl_easy_getinfo(r->e, CURLINFO_RESPONSE_CODE, &r->status);
    st[r->cat].reqs++;
    if (r->cc == CURLE_OK && r->route) {
        count_http(r->route, r->method, r->status);
        if (r->status >= 500) {
            if (r->status == 507 && strcmp(r->route, R_OBJECTS) == 0) {
                n507++;
            } else {
                n5xx_bad++;
                char kind[120];
                snprintf(kind, sizeof kind, "HTTP %ld on %s %s", r->status, r->method, r->route);
                fault(r->cat, kind, "%.250s", body_of(r));
            }
        }
    }
    if (r->sync) {
        r->done = true;
        return;
    }
    if (r->f)
        flow_dispatch(r->f, r);
    req_free(r);
}

static void (*loop_hook)(void);
static double loop_last, max_stall, max_stall_at;
static long stalls;

static void loop_once(void)
{
    int running = 0;
    curl_multi_perform(multi, &running);
    CURLMsg *m;
    int q;
    while ((m = curl_multi_info_read(multi, &q))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        req *r = NULL;
        CURL *e = m->easy_handle;
        CURLcode cc = m->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(multi, e);
        r->cc = cc;
        complete(r);
    }
    double t = now_s();
    /* a loop turn takes milliseconds; a long one means this process (or the machine) was
     * paused, which stretches every timing the checks rely on: report it */
    if (loop_last > 0 && t - loop_last > 1.0) {
        stalls++;
        if (t - loop_last > max_stall) {
            max_stall = t - loop_last;
            max_stall_at = t_load0_for_stalls > 0 ? loop_last - t_load0_for_stalls : -1;
        }
        fprintf(stderr, "soak: the client's event loop stood still for %.2f s\n", t - loop_last);
    }
    loop_last = t;
    for (size_t i = 0; i < ntimers;) {
        if (timers[i].at <= t) {
            flow *f = timers[i].f;
            timers[i] = timers[--ntimers];
            flow_dispatch(f, NULL);
        } else {
            i++;
        }
    }
    sample_rss();
    if (loop_hook)
        loop_hook();
    long wait_ms = 20;
    if (ntimers)
        wait_ms = 5;
    curl_multi_poll(multi, NULL, 0, (int)wait_ms, NULL);
}

/* Synchronous request for set-up and checks: runs the loop until it completes. The caller
 * frees it with req_free. */
static req *sync_req(int cat, const char *method, const char *route, const char *path,
                     json_t *body, const char *extra)
{
    req *r = http_json(NULL, cat, method, route, path, body, extra);
    r->sync = true;
    while (!r->done)
        loop_once();
    return r;
}

/* ---- the worker fault ------------------------------------------------------------------ */

static double t_load0, t_killed = -1, t_restarted = -1, t_healthy = -1;
static pid_t killed_pid, restarted_pid;

static pid_t read_pidfile(void)
{
    FILE *f = fopen(cfg.worker_pidfile, "r");
    if (!f)
        return -1;
    long p = -1;
    if (fscanf(f, "%ld", &p) != 1)
        p = -1;
    fclose(f);
    return (pid_t)p;
}

static void restart_worker(void)
{
    char logpath[512];
    snprintf(logpath, sizeof logpath, "%s/worker-restarted.log", cfg.out);
    pid_t p = fork();
    if (p == 0) {
        /* the worker must not inherit this client's connections to rayd */
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execvp(cfg.worker_argv[0], cfg.worker_argv);
        _exit(127);
    }
    restarted_pid = p;
    FILE *f = fopen(cfg.worker_pidfile, "w");
    if (f) {
        fprintf(f, "%d\n", (int)p);
        fclose(f);
    }
}

static bool health_inflight;

static void fl_health(flow *f, req *r)
{
    (void)f;
    if (r && r->cc == CURLE_OK && r->status == 200) {
        t_healthy = now_s();
        health_inflight = false;
        active--;
        active_kind[f->kind]--;
        free(f);
        return;
    }
    if (now_s() - t_load0 - t_restarted > 15) {
        fault(C_REMOTE, "restarted worker never became healthy", "pid %d", (int)restarted_pid);
        health_inflight = false;
        active--;
        active_kind[f->kind]--;
        free(f);
        return;
    }
    if (r) { /* not yet: ask again shortly */
        f->step = 0;
        timer_add(f, 0.05);
        return;
    }
    char url[300];
    snprintf(url, sizeof url, "%s/healthz", cfg.worker_url);
    http(f, C_SETUP, "GET", NULL, url, NULL, 0, NULL, 1000, NULL);
}

static double next_alive_check;
static pid_t worker_pid0;

static void load_hook(void)
{
    double t = now_s() - t_load0;
    /* the worker must be alive until the planned SIGKILL, and after the restart */
    if (t >= next_alive_check) {
        next_alive_check = t + 0.25;
        if (worker_pid0 == 0)
            worker_pid0 = read_pidfile();
        int status = 0;
        if (t_killed < 0 && worker_pid0 > 0 && kill(worker_pid0, 0) != 0 && errno == ESRCH) {
            fault(C_REMOTE, "the worker died before the planned SIGKILL",
                  "pid %d gone at %.1f s: not killed by the soak", (int)worker_pid0, t);
            worker_pid0 = -1;
        }
        if (t_restarted >= 0 && restarted_pid > 0 &&
            waitpid(restarted_pid, &status, WNOHANG) == restarted_pid) {
            fault(C_REMOTE, "the restarted worker died on its own",
                  "pid %d gone at %.1f s (wait status %d)", (int)restarted_pid, t, status);
            restarted_pid = -1;
        }
    }
    if (t_killed < 0 && t >= cfg.seconds / 3) {
        killed_pid = read_pidfile();
        if (killed_pid > 0 && kill(killed_pid, SIGKILL) == 0) {
            t_killed = t;
            worker_down = true;
            fprintf(stderr, "soak: t=%.1fs SIGKILL worker pid %d\n", t, (int)killed_pid);
        } else {
            t_killed = t;
            fault(C_REMOTE, "could not kill the worker", "pid %d: %s", (int)killed_pid,
                  strerror(errno));
        }
    }
    if (t_killed >= 0 && t_restarted < 0 && t >= cfg.seconds / 2) {
        restart_worker();
        t_restarted = t;
        worker_down = false;
        fprintf(stderr, "soak: t=%.1fs restarted worker, pid %d\n", t, (int)restarted_pid);
        flow *f = flow_new(C_SETUP, C_SETUP, fl_health);
        health_inflight = true;
        t_restarted = now_s() - t_load0;
        fl_health(f, NULL);
    }
    if (load_running) {
        if (t >= cfg.seconds) {
            load_running = false;
        } else {
            while (active - (health_inflight ? 1 : 0) < cfg.concurrency)
                spawn_one();
        }
    }
}

/* ---- final verification flows ---------------------------------------------------------- */

static size_t vnext; /* next item for the verifiers */
static long tasks_stuck, tasks_mismatch, tasks_checked, task_states_seen[3];
static double tasks_deadline;

static void fl_vtask(flow *f, req *r)
{
    char path[128];
    if (r) {
        taskrec *t = &tasks[f->vi];
        const char *state = NULL;
        json_t *j = NULL;
        if (r->cc == CURLE_OK && r->status == 200) {
            j = rjson(r);
            state = json_string_value(json_object_get(j, "state"));
        }
        int s = -1;
        for (int i = 0; state && i < 3; i++)
            if (strcmp(state, E_NAME[i]) == 0)
                s = i;
        if (state && s < 0 && now_s() < tasks_deadline) {
            json_decref(j);
            f->step = 1; /* not ended yet: look again */
            timer_add(f, 0.25);
            return;
        }
        tasks_checked++;
        if (!state) {
            fault(C_FINAL, "GET /v1/tasks/{id}: not 200", "%s (%s): HTTP %ld %s: %.150s", t->id,
                  CAT_NAME[t->cat], r->status, curl_easy_strerror(r->cc), body_of(r));
            tasks_mismatch++;
        } else if (s < 0) {
            tasks_stuck++;
            fault(C_FINAL, "task stuck (not FINISHED, FAILED or CANCELLED)", "%s (%s): %.200s",
                  t->id, CAT_NAME[t->cat], body_of(r));
        } else {
            task_states_seen[s]++;
            if (s != t->expect) {
                tasks_mismatch++;
                char kind[120];
                snprintf(kind, sizeof kind, "task ended %s, expected %s", E_NAME[s],
                         E_NAME[t->expect]);
                fault(C_FINAL, kind, "%s (%s): %.200s", t->id, CAT_NAME[t->cat], body_of(r));
            }
        }
        json_decref(j);
    } else if (f->step == 1) { /* timer: re-poll the same task */
        f->step = 0;
        snprintf(path, sizeof path, "/v1/tasks/%s", tasks[f->vi].id);
        http(f, C_FINAL, "GET", R_TASK, path, NULL, 0, NULL, 0, NULL);
        return;
    }
    if (vnext >= ntasks) {
        flow_end(f);
        return;
    }
    f->vi = vnext++;
    snprintf(path, sizeof path, "/v1/tasks/%s", tasks[f->vi].id);
    http(f, C_FINAL, "GET", R_TASK, path, NULL, 0, NULL, 0, NULL);
}

static long refs_ok, refs_bad, refs_checked;

static void fl_vobj(flow *f, req *r)
{
    if (r) {
        int v = verify_obj(C_FINAL, r, objs[f->vi], -1, -1);
        refs_checked++;
        if (v == 0)
            refs_bad++;
        else
            refs_ok++;
    }
    if (vnext >= nobjs) {
        flow_end(f);
        return;
    }
    f->vi = vnext++;
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/%s", objs[f->vi]->ref);
    http(f, C_FINAL, "GET", R_OBJ, path, NULL, 0, NULL, 0, NULL);
}

static long freed_at_end, free_bad;

static void fl_vfree(flow *f, req *r)
{
    if (r) {
        obj *o = objs[f->vi];
        if (r->cc == CURLE_OK && r->status == 204) {
            obj_set_state(o, O_FREED);
            freed_at_end++;
        } else if (note_forgotten(C_FINAL, r, o)) {
            /* evicted, then forgotten: nothing to free */
        } else {
            free_bad++;
            fault(C_FINAL, "DELETE at the end: not 204", "%s -> %ld %s: %.200s", o->ref,
                  r->status, curl_easy_strerror(r->cc), body_of(r));
        }
    }
    while (vnext < nobjs && objs[vnext]->state != O_LIVE)
        vnext++;
    if (vnext >= nobjs) {
        flow_end(f);
        return;
    }
    f->vi = vnext++;
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/%s", objs[f->vi]->ref);
    http(f, C_FINAL, "DELETE", R_OBJ, path, NULL, 0, NULL, 0, NULL);
}

static void run_verifiers(void (*fn)(flow *, req *), int n, double limit)
{
    vnext = 0;
    for (int i = 0; i < n; i++) {
        flow *f = flow_new(C_FINAL, C_FINAL, fn);
        fn(f, NULL);
    }
    double end = now_s() + limit;
    while (active > 0 && now_s() < end)
        loop_once();
}

/* ---- /metrics --------------------------------------------------------------------- */

static char *metrics_text;

static bool scrape(void)
{
    req *r = sync_req(C_FINAL, "GET", R_METRICS, "/metrics", NULL, NULL);
    bool ok = r->cc == CURLE_OK && r->status == 200 && r->resp;
    free(metrics_text);
    metrics_text = ok ? xstrdup(r->resp) : NULL;
    if (!ok)
        fault(C_FINAL, "GET /metrics failed", "HTTP %ld %s", r->status, curl_easy_strerror(r->cc));
    req_free(r);
    return ok;
}

/* The value of one series (name with labels, exactly as exposed), or NAN. */
static double metric(const char *series)
{
    if (!metrics_text)
        return NAN;
    size_t n = strlen(series);
    for (const char *p = metrics_text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NAN;
}

/* Server count of rayd_http_requests_total for a route/method (status NULL: every status). */
static long server_http(const char *route, const char *method, const char *status)
{
    long total = 0;
    char r[160], m[16], s[8];
    for (const char *p = metrics_text; p && *p;) {
        double v;
        if (sscanf(p, "rayd_http_requests_total{route=\"%159[^\"]\",method=\"%15[^\"]\",status=\"%7[^\"]\"} %lf",
                   r, m, s, &v) == 4 &&
            strcmp(r, route) == 0 && strcmp(m, method) == 0 && (!status || strcmp(s, status) == 0))
            total += (long)v;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return total;
}

/* rayd's heap as it reports it in /metrics (jemalloc's figures; NAN when the allocator
 * says nothing), and what it still remembers of finished work, at the last settle_heap. */
static double heap_allocated = NAN, heap_resident = NAN, heap_retained = NAN;
static double kept_tombstones = NAN, kept_forgotten = NAN, kept_tasks = NAN, kept_dead = NAN;

/* Waits until rayd has given its freed heap pages back to the system, as its allocator's
 * figures say (resident - active - metadata: pages freed but still resident; jemalloc
 * purges them after dirty_decay_ms), polling /metrics on a connection of its own, closed
 * afterwards, for at most max_s. Without the figures it waits max_s. Returns the seconds
 * it waited. */
static double settle_heap(double max_s)
{
    double t0 = now_s();
    multi = curl_multi_init();
    for (;;) {
        if (scrape()) {
            heap_allocated = metric("rayd_allocator_allocated_bytes");
            heap_resident = metric("rayd_allocator_resident_bytes");
            heap_retained = metric("rayd_allocator_retained_bytes");
            double in_use = metric("rayd_allocator_active_bytes");
            double meta = metric("rayd_allocator_metadata_bytes");
            kept_tombstones = metric("rayd_store_tombstones");
            kept_forgotten = metric("rayd_store_tombstones_forgotten_total");
            kept_dead = metric("rayd_actors{state=\"DEAD\"}");
            kept_tasks = 0;
            for (int i = 0; i < 6; i++) {
                static const char *const STATES[] = {"PENDING_ARGS_AVAIL",
                                                     "PENDING_NODE_ASSIGNMENT", "RUNNING",
                                                     "FINISHED", "FAILED", "CANCELLED"};
                char series[80];
                snprintf(series, sizeof series, "rayd_tasks{state=\"%s\"}", STATES[i]);
                kept_tasks += metric(series);
            }
            if (!isnan(heap_resident) && heap_resident > 0 &&
                heap_resident - in_use - meta <= 2.0 * 1048576)
                break;
        }
        if (now_s() - t0 >= max_s)
            break;
        usleep(50 * 1000); /* the next look at the server's figures */
    }
    curl_multi_cleanup(multi);
    multi = NULL;
    return now_s() - t0;
}

/* Whether the server has counted, in rayd_http_requests_total, at least every answer the
 * client received (it counts a request just after answering it). */
static bool server_counted_all(void)
{
    for (size_t k = 0; k < nhc; k++) {
        if (strcmp(hc[k].route, R_METRICS) == 0)
            continue;
        char status[8];
        snprintf(status, sizeof status, "%ld", hc[k].status);
        if (server_http(hc[k].route, hc[k].method, status) < hc[k].count)
            return false;
    }
    return true;
}

static long client_http(const char *route, const char *method)
{
    long n = 0;
    for (size_t i = 0; i < nhc; i++)
        if (strcmp(hc[i].route, route) == 0 && strcmp(hc[i].method, method) == 0)
            n += hc[i].count;
    return n;
}

/* ---- the report -------------------------------------------------------------------- */

typedef struct {
    char name[80];
    bool pass;
    char detail[400];
} check;
static check checks[32];
static int nchecks;

static void add_check(const char *name, bool pass, const char *fmt, ...)
{
    check *c = &checks[nchecks++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->pass = pass;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
    fprintf(stderr, "soak: %s: %s (%s)\n", pass ? "PASS" : "FAIL", name, c->detail);
}

static char mismatches[2048];

static void mismatch(const char *fmt, ...)
{
    size_t n = strlen(mismatches);
    if (n > sizeof mismatches - 200)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mismatches + n, sizeof mismatches - n, fmt, ap);
    va_end(ap);
}

static double mib(long kb) { return (double)kb / 1024.0; }

static void usage(void)
{
    fprintf(stderr, "usage: soak --base URL --pid PID --worker-url URL --worker-pidfile FILE "
                    "--out DIR [--seconds N] [--concurrency N] [--hold-mb N] [--max-tasks N] "
                    "[--settle S] [--seed N] -- WORKER COMMAND...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    cfg.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--base") == 0) cfg.base = v;
        else if (strcmp(a, "--pid") == 0) cfg.pid = (pid_t)atol(v);
        else if (strcmp(a, "--worker-url") == 0) cfg.worker_url = v;
        else if (strcmp(a, "--worker-pidfile") == 0) cfg.worker_pidfile = v;
        else if (strcmp(a, "--out") == 0) cfg.out = v;
        else if (strcmp(a, "--seconds") == 0) cfg.seconds = atof(v);
        else if (strcmp(a, "--concurrency") == 0) cfg.concurrency = atoi(v);
        else if (strcmp(a, "--hold-mb") == 0) cfg.hold_bytes = (size_t)atol(v) << 20;
        else if (strcmp(a, "--max-tasks") == 0) cfg.max_tasks = atoi(v);
        else if (strcmp(a, "--settle") == 0) cfg.settle = atof(v);
        else if (strcmp(a, "--seed") == 0) cfg.seed = strtoull(v, NULL, 0);
        else usage();
    }
    if (!cfg.base || cfg.pid <= 0 || !cfg.worker_url || !cfg.worker_pidfile || !cfg.out ||
        i >= argc || cfg.seconds <= 0 || cfg.concurrency < 1)
        usage();
    cfg.worker_argv = argv + i;
    rng = cfg.seed;
    signal(SIGPIPE, SIG_IGN);
    scratch = xmalloc(MAX_OBJECT);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi = curl_multi_init();
    outage_seconds = cfg.seconds / 2 - cfg.seconds / 3;

    /* ---- set-up: remote functions, actors, one call through the worker ---- */
    int retries = (int)(outage_seconds / 2.5) + 12; /* backoff is capped at 5 s, jitter 0.5x */
    if (retries > 1000)
        retries = 1000;
    static const char *const FUNCS[][2] = {{"soak_wc", "wordcount"},
                                           {"soak_len", "byte_length"},
                                           {"soak_fail", "fail"}};
    for (size_t k = 0; k < 3; k++) {
        char path[128], url[300];
        snprintf(path, sizeof path, "/v1/functions/%s", FUNCS[k][0]);
        snprintf(url, sizeof url, "%s/functions/%s", cfg.worker_url, FUNCS[k][1]);
        req *r = sync_req(C_SETUP, "PUT", R_FUNC, path,
                          json_pack("{s:s,s:i,s:i,s:i}", "url", url, "timeout", 10,
                                    "max_concurrency", 8, "max_retries", retries),
                          NULL);
        if (r->cc != CURLE_OK || (r->status != 201 && r->status != 200)) {
            fprintf(stderr, "soak: registering %s failed: %ld %s\n", path, r->status,
                    body_of(r));
            return 2;
        }
        req_free(r);
    }
    for (int k = 0; k < NACTORS; k++) {
        actors[k].expected = rndi(-50, 50);
        req *r = sync_req(C_SETUP, "POST", R_ACTORS, "/v1/actors",
                          json_pack("{s:s,s:[I]}", "class", "Counter", "args",
                                    (json_int_t)actors[k].expected),
                          NULL);
        json_t *j = rjson(r);
        const char *id = json_string_value(json_object_get(j, "actor_id"));
        if (r->status != 201 || !id || strlen(id) >= 72) {
            fprintf(stderr, "soak: creating an actor failed: %ld %s\n", r->status, body_of(r));
            return 2;
        }
        strcpy(actors[k].id, id);
        json_decref(j);
        req_free(r);
        actors_created++;
    }
    {
        req *r = sync_req(C_SETUP, "POST", R_TASKS, "/v1/tasks",
                          json_pack("{s:s,s:[s]}", "function", "soak_wc", "args", "warm up"),
                          "Prefer: wait=10");
        json_t *j = rjson(r);
        if (r->status != 200 || json_integer_value(j) != 2 || !r->xref[0]) {
            fprintf(stderr, "soak: the warm-up remote call failed: %ld %s\n", r->status,
                    body_of(r));
            return 2;
        }
        json_decref(j);
        obj *o = result_obj(r->xref);
        o->expect = json_integer(2);
        o->busy = false;
        /* the task id is not in a Prefer: wait answer; count it as submitted, checked by id
         * through the list below is not needed: the metrics comparison covers it */
        req_free(r);
    }
    long warm_tasks = 1;
    /* the server's bounds on what it remembers, for the checks */
    long max_dead_actors = -1;
    {
        req *r = sync_req(C_SETUP, "GET", "/v1/status", "/v1/status", NULL, NULL);
        json_t *j = rjson(r);
        json_t *v = json_object_get(json_object_get(j, "config"), "max_dead_actors");
        if (json_is_integer(v))
            max_dead_actors = (long)json_integer_value(v);
        json_decref(j);
        req_free(r);
    }

    /* ---- the starting point: client connections closed, then RSS and fds ---- */
    curl_multi_cleanup(multi);
    multi = NULL;
    settle_heap(cfg.settle);
    long rss_before = proc_status_kb("VmRSS");
    char fd_before_s[160], fd_after_s[160];
    int fd_before = proc_fd_count(fd_before_s, sizeof fd_before_s);
    rss_peak_kb = rss_before;
    multi = curl_multi_init();

    /* ---- the load ---- */
    fprintf(stderr, "soak: load for %.0f s, concurrency %d, seed %" PRIu64 "\n", cfg.seconds,
            cfg.concurrency, cfg.seed);
    t_load0 = t_load0_for_stalls = now_s();
    loop_last = 0;
    load_running = true;
    loop_hook = load_hook;
    while (load_running)
        loop_once();
    double t_drain = now_s();
    while (active > 0 && now_s() - t_drain < 120)
        loop_once();
    loop_hook = NULL;
    double load_seconds = now_s() - t_load0;
    bool drained = active == 0;
    if (!drained)
        fault(C_FINAL, "flows did not finish within 120 s after the load", "%ld still active",
              active);
    fprintf(stderr, "soak: load done after %.1f s: %zu tasks, %zu refs, %ld actor calls\n",
            load_seconds, ntasks, nobjs, actor_calls_accepted);

    /* fault counts of the load phase, before the final checks add theirs */
    long load_faults[NCAT];
    for (int c = 0; c < NCAT; c++)
        load_faults[c] = st[c].faults;

    /* ---- every task ended as expected ---- */
    tasks_deadline = now_s() + 15;
    if (drained)
        run_verifiers(fl_vtask, 32, 120);
    /* ---- every ref answers what it should ---- */
    if (drained)
        run_verifiers(fl_vobj, 32, 180);
    size_t nobjs_checked = nobjs;
    long st_live = 0, st_freed = 0, st_evicted = 0;
    for (size_t k = 0; k < nobjs; k++) {
        if (objs[k]->state == O_LIVE)
            st_live++;
        else if (objs[k]->state == O_FREED)
            st_freed++;
        else
            st_evicted++;
    }
    /* ---- actors hold the expected values ---- */
    long actors_ok = 0, actors_tainted = 0;
    for (int k = 0; k < NACTORS && drained; k++) {
        actor *a = &actors[k];
        if (a->tainted) {
            actors_tainted++;
            continue;
        }
        char path[200];
        snprintf(path, sizeof path, "/v1/actors/%.71s/methods/get", a->id);
        req *r = sync_req(C_FINAL, "POST", R_CALL, path, json_object(), "Prefer: wait=10");
        json_t *j = rjson(r);
        if (r->status == 200)
            actor_calls_accepted++;
        if (r->status == 200 && json_is_integer(j) && json_integer_value(j) == a->expected)
            actors_ok++;
        else
            fault(C_FINAL, "actor value differs", "%s: got HTTP %ld %.60s, expected %ld", a->id,
                  r->status, body_of(r), a->expected);
        if (r->xref[0]) {
            obj *o = result_obj(r->xref);
            o->expect = json_integer(a->expected);
            o->busy = false;
        }
        json_decref(j);
        req_free(r);
    }

    /* ---- /metrics against the client's own counts ---- */
    long peak_kb = rss_peak_kb, hwm = proc_status_kb("VmHWM");
    if (hwm > peak_kb)
        peak_kb = hwm;
    /* the server counts a request just after answering it: wait until it has */
    bool metrics_ok = scrape();
    for (double until = now_s() + 10; metrics_ok && !server_counted_all() && now_s() < until;) {
        usleep(20 * 1000);
        metrics_ok = scrape();
    }
    long tasks_total = (long)ntasks + warm_tasks;
    double m_sub = metric("rayd_tasks_submitted_total");
    double m_fin = metric("rayd_tasks_ended_total{outcome=\"finished\"}");
    double m_fail = metric("rayd_tasks_ended_total{outcome=\"failed\"}");
    double m_canc = metric("rayd_tasks_ended_total{outcome=\"cancelled\"}");
    double m_retries = metric("rayd_task_retries_total");
    double m_calls = metric("rayd_actor_calls_total");
    double m_calls_done = metric("rayd_actor_calls_done_total");
    double m_parked = metric("rayd_parked_requests");
    double m_pending = metric("rayd_store_pending_objects");
    double m_evictions = metric("rayd_store_evictions_total");
    double m_alive = metric("rayd_actors{state=\"ALIVE\"}");
    double m_dead = metric("rayd_actors{state=\"DEAD\"}");
    double m_forgotten = metric("rayd_store_tombstones_forgotten_total");
    if (!metrics_ok)
        mismatch("no /metrics; ");
    if (m_sub != (double)tasks_total)
        mismatch("tasks submitted %g vs client %ld; ", m_sub, tasks_total);
    if (m_fin != (double)(task_states_seen[E_FINISHED] + warm_tasks) ||
        m_fail != (double)task_states_seen[E_FAILED] ||
        m_canc != (double)task_states_seen[E_CANCELLED])
        mismatch("tasks ended finished/failed/cancelled %g/%g/%g vs client %ld/%ld/%ld; ", m_fin,
                 m_fail, m_canc, task_states_seen[E_FINISHED] + warm_tasks,
                 task_states_seen[E_FAILED], task_states_seen[E_CANCELLED]);
    if (m_calls != (double)actor_calls_accepted || m_calls_done != (double)actor_calls_accepted)
        mismatch("actor calls %g, done %g vs client %ld; ", m_calls, m_calls_done,
                 actor_calls_accepted);
    if (m_parked != 0)
        mismatch("parked requests %g, expected 0; ", m_parked);
    if (m_pending != 0)
        mismatch("pending objects %g, expected 0; ", m_pending);
    if (m_evictions < (double)evicted_seen)
        mismatch("evictions %g < evictions the client saw %ld; ", m_evictions, evicted_seen);
    if (m_alive != NACTORS)
        mismatch("ALIVE actors %g, expected %d; ", m_alive, NACTORS);
    /* dead actors are remembered up to RAYD_MAX_DEAD_ACTORS */
    long dead_expected = max_dead_actors >= 0 && actors_killed > max_dead_actors
                             ? max_dead_actors
                             : actors_killed;
    if (m_dead != (double)dead_expected)
        mismatch("DEAD actors %g, expected %ld (%ld killed, at most %ld remembered); ", m_dead,
                 dead_expected, actors_killed, max_dead_actors);
    /* HTTP answers by route, method, status: exact, except that a request whose client hung
     * up while parked may or may not be counted by the server. */
    long http_compared = 0;
    for (size_t k = 0; k < nhc; k++) {
        if (strcmp(hc[k].route, R_METRICS) == 0)
            continue;
        char s[8];
        snprintf(s, sizeof s, "%ld", hc[k].status);
        long sv = server_http(hc[k].route, hc[k].method, s);
        bool parked_route = (strcmp(hc[k].route, R_OBJ) == 0 && strcmp(hc[k].method, "GET") == 0) ||
                            strcmp(hc[k].route, R_WAIT) == 0;
        long slack = parked_route ? (strcmp(hc[k].route, R_WAIT) == 0 ? disconnects_wait
                                                                      : disconnects_get)
                                  : 0;
        http_compared += hc[k].count;
        if (sv < hc[k].count || sv > hc[k].count + slack)
            mismatch("%s %s %ld: server %ld, client %ld; ", hc[k].method, hc[k].route,
                     hc[k].status, sv, hc[k].count);
    }
    static const char *const ROUTES[][2] = {
        {R_OBJECTS, "POST"}, {R_OBJ, "GET"},    {R_OBJ, "DELETE"}, {R_WAIT, "POST"},
        {R_TASKS, "POST"},   {R_TASK, "GET"},   {R_CANCEL, "POST"}, {R_ACTORS, "POST"},
        {R_ACTOR, "GET"},    {R_ACTOR, "DELETE"}, {R_CALL, "POST"}, {R_FUNC, "PUT"}};
    for (size_t k = 0; k < sizeof ROUTES / sizeof *ROUTES; k++) {
        long sv = server_http(ROUTES[k][0], ROUTES[k][1], NULL);
        long cv = client_http(ROUTES[k][0], ROUTES[k][1]);
        long slack = strcmp(ROUTES[k][0], R_WAIT) == 0 ? disconnects_wait
                     : (strcmp(ROUTES[k][0], R_OBJ) == 0 && strcmp(ROUTES[k][1], "GET") == 0)
                         ? disconnects_get
                         : 0;
        if (sv < cv || sv > cv + slack)
            mismatch("%s %s all statuses: server %ld, client %ld (+%ld hang-ups); ",
                     ROUTES[k][1], ROUTES[k][0], sv, cv, slack);
    }
    long srv_get_total = server_http(R_OBJ, "GET", NULL), cli_get_total = client_http(R_OBJ, "GET");
    long srv_wait_total = server_http(R_WAIT, "POST", NULL),
         cli_wait_total = client_http(R_WAIT, "POST");

    /* ---- free everything, kill the actors ---- */
    if (drained)
        run_verifiers(fl_vfree, 32, 120);
    for (int k = 0; k < NACTORS; k++) {
        char path[200];
        snprintf(path, sizeof path, "/v1/actors/%.71s", actors[k].id);
        req *r = sync_req(C_FINAL, "DELETE", R_ACTOR, path, NULL, NULL);
        if (r->status != 204)
            fault(C_FINAL, "DELETE actor at the end: not 204", "%s -> %ld", actors[k].id,
                  r->status);
        req_free(r);
    }
    scrape();
    double m_objects = metric("rayd_store_objects"), m_bytes = metric("rayd_store_bytes");
    double m_pending2 = metric("rayd_store_pending_objects");
    double m_alive2 = metric("rayd_actors{state=\"ALIVE\"}");

    /* ---- back to the start: close our connections, settle, RSS and fds ---- */
    curl_multi_cleanup(multi);
    multi = NULL;
    double settled = settle_heap(cfg.settle);
    long rss_after = proc_status_kb("VmRSS");
    int fd_after = proc_fd_count(fd_after_s, sizeof fd_after_s);

    /* ---- checks ---- */
    long unexpected_other = 0, unexpected_remote = load_faults[C_REMOTE];
    for (int c = 0; c < NCAT; c++)
        if (c != C_REMOTE && c != C_FINAL)
            unexpected_other += load_faults[c];
    add_check("no unexpected errors outside remote calls", unexpected_other == 0,
              "%ld unexpected outcomes in the load (see errors by kind)", unexpected_other);
    add_check("worker killed and restarted; remote calls absorbed it by retries",
              t_killed >= 0 && t_restarted >= 0 && t_healthy >= 0 && unexpected_remote == 0 &&
                  m_retries > 0,
              "SIGKILL at %.1f s, restart at %.1f s, healthy after %.2f s; %ld remote tasks "
              "submitted while down; %g retries; %ld unexpected remote outcomes",
              t_killed, t_restarted, t_healthy >= 0 ? t_healthy - t_load0 - t_restarted : -1.0,
              remote_submitted_down, m_retries, unexpected_remote);
    add_check("no 5xx except documented ones", n5xx_bad == 0,
              "%ld undocumented 5xx; %ld 507 ObjectStoreFull on put; 503 never expected before "
              "SIGTERM",
              n5xx_bad, n507);
    add_check("every accepted task ended as expected",
              drained && tasks_checked == (long)ntasks && tasks_stuck == 0 && tasks_mismatch == 0,
              "%ld of %zu checked: %ld FINISHED, %ld FAILED, %ld CANCELLED; %ld stuck, %ld other "
              "mismatches",
              tasks_checked, ntasks, task_states_seen[0], task_states_seen[1],
              task_states_seen[2], tasks_stuck, tasks_mismatch);
    add_check("every ref answers its bytes, or 410 as tracked (404 once forgotten)",
              drained && refs_checked == (long)nobjs_checked && refs_bad == 0 &&
                  (double)forgotten_seen <= m_forgotten + 0.5,
              "%ld of %zu refs checked, %ld wrong; before the final free: %ld live, %ld freed "
              "(410), %ld evicted (410, %g evictions by the server); %ld answered 404 after "
              "their tombstone was forgotten (the server forgot %g)",
              refs_checked, nobjs_checked, refs_bad, st_live, st_freed, st_evicted,
              m_evictions, forgotten_seen, m_forgotten);
    add_check("actor values as tracked", drained && actors_ok == NACTORS - actors_tainted &&
                                             actors_tainted == 0,
              "%ld of %d Counter actors hold the expected value (%ld untrusted after a failed "
              "call); %ld calls accepted",
              actors_ok, NACTORS, actors_tainted, actor_calls_accepted);
    add_check("/metrics consistent with the client", mismatches[0] == '\0',
              "%s%ld answers compared by route/method/status; GET object %ld vs %ld, wait %ld "
              "vs %ld (server vs client; %ld+%ld parked requests abandoned by the client)",
              mismatches, http_compared, srv_get_total, cli_get_total, srv_wait_total,
              cli_wait_total, disconnects_get, disconnects_wait);
    add_check("store empty after freeing everything",
              m_objects == 0 && m_bytes == 0 && m_pending2 == 0 && m_alive2 == 0 && free_bad == 0,
              "rayd_store_objects %g, rayd_store_bytes %g, pending %g, ALIVE actors %g after %ld "
              "frees",
              m_objects, m_bytes, m_pending2, m_alive2, freed_at_end);
    /* What rayd keeps by design once everything is freed: the records of the tasks this
     * soak checks (it runs rayd with RAYD_MAX_TASK_RECORDS above its task count), at the
     * documented cost of at most TASK_RECORD_COST each. Tombstones and dead actors are
     * bounded low by run.sh and fall within the slack. */
    double growth = (double)(peak_kb - rss_before) * 1024;
    double slack = growth * 0.25 > RSS_MIN_SLACK ? growth * 0.25 : RSS_MIN_SLACK;
    double records = isnan(kept_tasks) ? 0 : kept_tasks * TASK_RECORD_COST;
    double allowed = slack + records;
    double back = (double)(rss_after - rss_before) * 1024;
    add_check("RSS back near the start", rss_before > 0 && rss_after > 0 && back <= allowed,
              "before %.1f MiB, peak %.1f MiB, after %.1f MiB (+%.1f MiB; allowed %.1f MiB = "
              "max(64 MiB, 25%% of the %.1f MiB growth) + %.0f task records kept x %.0f B)",
              mib(rss_before), mib(peak_kb), mib(rss_after), back / 1048576.0,
              allowed / 1048576.0, growth / 1048576.0, isnan(kept_tasks) ? 0 : kept_tasks,
              TASK_RECORD_COST);
    add_check("no file descriptors leaked",
              fd_before > 0 && fd_after >= 0 && fd_after - fd_before <= FD_SLACK,
              "before %d (%s), after %d (%s); allowed +%d", fd_before, fd_before_s, fd_after,
              fd_after_s, FD_SLACK);

    /* ---- write the results ---- */
    char path[600];
    snprintf(path, sizeof path, "%s/checks.tsv", cfg.out);
    FILE *cf = fopen(path, "w");
    snprintf(path, sizeof path, "%s/soak.md", cfg.out);
    FILE *md = fopen(path, "w");
    if (!cf || !md) {
        perror("soak: writing results");
        return 2;
    }
    int failed = 0;
    for (int k = 0; k < nchecks; k++) {
        fprintf(cf, "%s\t%s\t%s\n", checks[k].name, checks[k].pass ? "PASS" : "FAIL",
                checks[k].detail);
        failed += !checks[k].pass;
    }
    fprintf(md, "Load: %.0f s (%.1f s with the drain of in-flight work), %d flows in flight, "
                "seed %" PRIu64 ", objects 10 B to 4 MiB with up to %zu MiB held. Worker SIGKILL "
                "at %.1f s, restarted at %.1f s.\n\n",
            cfg.seconds, load_seconds, cfg.concurrency, cfg.seed, cfg.hold_bytes >> 20, t_killed,
            t_restarted);
    fprintf(md, "| category | ops | requests | unexpected |\n|---|---:|---:|---:|\n");
    long tot_ops = 0, tot_reqs = 0, tot_faults = 0;
    for (int c = 0; c < NCAT; c++) {
        fprintf(md, "| %s | %ld | %ld | %ld |\n", CAT_NAME[c], st[c].ops, st[c].reqs,
                st[c].faults);
        tot_ops += st[c].ops;
        tot_reqs += st[c].reqs;
        tot_faults += st[c].faults;
    }
    fprintf(md, "| **total** | %ld | %ld | %ld |\n\n", tot_ops, tot_reqs, tot_faults);
    fprintf(md, "Outcomes by kind (expected ones are documented behaviour, counted):\n\n"
                "| category | kind | count | expected | first sample |\n|---|---|---:|---|---|\n");
    if (!nkinds)
        fprintf(md, "| - | none | 0 | - | - |\n");
    for (size_t k = 0; k < nkinds; k++)
        fprintf(md, "| %s | %s | %ld | %s | %s |\n", CAT_NAME[kinds[k].cat], kinds[k].kind,
                kinds[k].count, kinds[k].unexpected ? "**no**" : "yes",
                kinds[k].sample[0] ? kinds[k].sample : "-");
    fprintf(md, "\n| figure | value |\n|---|---|\n");
    fprintf(md, "| rayd RSS before / peak / after free (+%.1f s for the heap to settle) | %.1f / "
                "%.1f / %.1f MiB |\n",
            settled, mib(rss_before), mib(peak_kb), mib(rss_after));
    if (!isnan(heap_allocated))
        fprintf(md, "| rayd heap after, as its allocator reports it: allocated / resident / "
                    "retained (not resident) | %.1f / %.1f / %.1f MiB |\n",
                heap_allocated / 1048576, heap_resident / 1048576,
                (isnan(heap_retained) ? 0 : heap_retained) / 1048576);
    fprintf(md, "| what rayd still remembers after: tombstones (forgotten) / task records / dead "
                "actors | %.0f (%.0f) / %.0f / %.0f |\n",
            kept_tombstones, kept_forgotten, kept_tasks, kept_dead);
    fprintf(md, "| rayd fds before / after | %d / %d |\n", fd_before, fd_after);
    fprintf(md, "| tasks accepted (+1 warm-up) | %zu: %ld FINISHED, %ld FAILED, %ld CANCELLED "
                "expected |\n",
            ntasks, tasks_by_expect[0], tasks_by_expect[1], tasks_by_expect[2]);
    fprintf(md, "| refs tracked | %zu (%ld evicted seen, %g evictions by the server) |\n", nobjs,
            st_evicted, m_evictions);
    fprintf(md, "| actor calls accepted | %ld (%ld actors created, %ld killed) |\n",
            actor_calls_accepted, actors_created, actors_killed);
    fprintf(md, "| remote: retries by the server / tasks submitted while the worker was down | "
                "%g / %ld |\n",
            m_retries, remote_submitted_down);
    fprintf(md, "| parked requests abandoned by the client (GET / wait) | %ld / %ld |\n",
            disconnects_get, disconnects_wait);
    fprintf(md, "| 507 ObjectStoreFull on put | %ld |\n", n507);
    if (stalls)
        fprintf(md, "| client event loop pauses > 1 s (machine stalls) | %ld, longest %.1f s at "
                    "%.1f s |\n",
                stalls, max_stall, max_stall_at);
    else
        fprintf(md, "| client event loop pauses > 1 s | none |\n");
    fclose(cf);
    fclose(md);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
