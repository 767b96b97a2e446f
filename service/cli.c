/* rayd's command line for people and scripts, in the spirit of `ray status` and `ray list`:
 * `rayd status|list|get|put|submit|wait|cancel|kill ...` talk to a running rayd over its
 * HTTP API (RAYD_ADDRESS, default http://127.0.0.1:8080; RAYD_API_TOKEN as the bearer
 * token) with libcurl. Tables for people, --json for scripts (the API's own JSON), and exit
 * codes a script can test (see svc_cli.h). */
#include "service/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_MIN_BYTES (1 << 20) /* smaller transfers need no bar */

typedef struct cli {
    const char *address; /* without a trailing slash */
    const char *token;   /* NULL: none */
    bool json;           /* --json */
    bool progress;       /* stderr is a terminal */
} cli;

/* An answer: status (0: no connection), body, and the parsed JSON when it is JSON. */
typedef struct answer {
    long status;
    char *body;
    size_t len;
    json_t *json;
    char error[CURL_ERROR_SIZE];
} answer;

static void answer_free(answer *a)
{
    free(a->body);
    json_decref(a->json);
    memset(a, 0, sizeof(*a));
}

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    answer *a = arg;
    size_t len = size * n;
    char *grown = realloc(a->body, a->len + len + 1);
    if (!grown)
        return 0;
    memcpy(grown + a->len, data, len);
    a->len += len;
    grown[a->len] = '\0';
    a->body = grown;
    return len;
}

/* The progress bar on stderr: "label [#####     ] 42% 12.0/28.5 MiB". */
typedef struct bar {
    const char *label;
    double last; /* when it was last drawn */
    double done, total;
    const char *unit;
    bool drawn;
} bar;

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bar_draw(bar *b, double done, double total, const char *unit, bool force)
{
    double t = now_mono();
    if (!force && t - b->last < 0.1)
        return;
    b->last = t;
    b->drawn = true;
    b->done = done;
    b->total = total;
    b->unit = unit;
    int width = 30, filled = total > 0 ? (int)(width * done / total) : 0;
    if (filled > width)
        filled = width;
    char cells[64];
    for (int i = 0; i < width; i++)
        cells[i] = i < filled ? '#' : ' ';
    cells[width] = '\0';
    double div = strcmp(unit, "MiB") == 0 ? 1048576.0 : 1.0;
    fprintf(stderr, "\r%s [%s] %3d%% %.1f/%.1f %s", b->label, cells,
            total > 0 ? (int)(100 * done / total) : 0, done / div, total / div, unit);
}

static void bar_end(bar *b)
{
    if (b->drawn)
        fputc('\n', stderr);
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    bar *b = arg;
    if (ultotal >= PROGRESS_MIN_BYTES)
        bar_draw(b, (double)ulnow, (double)ultotal, "MiB", false);
    else if (dltotal >= PROGRESS_MIN_BYTES)
        bar_draw(b, (double)dlnow, (double)dltotal, "MiB", false);
    return 0;
}

/* One request. body: sent as is (len bytes) unless upload is given (then streamed from it,
 * upload_size bytes); out: the answer body goes there instead of into a->body when the
 * status is 2xx (the body of an error answer is still collected). */
typedef struct request {
    const char *method;
    const char *path; /* with the query */
    const char *content_type;
    const char *body;
    size_t len;
    FILE *upload;
    long long upload_size;
    FILE *out;
    const char *prefer;
} request;

typedef struct sink {
    answer *a;
    FILE *out;
    CURL *easy;
    bool failed;
} sink;

static size_t write_sink(char *data, size_t size, size_t n, void *arg)
{
    sink *s = arg;
    long status = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    if (s->out && status >= 200 && status < 300) {
        if (fwrite(data, size, n, s->out) != n) {
            s->failed = true;
            return 0;
        }
        return size * n;
    }
    return collect(data, size, n, s->a);
}

static void perform(const cli *c, const request *r, answer *a)
{
    memset(a, 0, sizeof(*a));
    CURL *e = curl_easy_init();
    if (!e) {
        snprintf(a->error, sizeof(a->error), "out of memory");
        return;
    }
    char url[4096];
    snprintf(url, sizeof(url), "%s%s", c->address, r->path);
    struct curl_slist *h = NULL;
    char line[512];
    if (c->token) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", c->token);
        h = curl_slist_append(h, line);
    }
    if (r->content_type) {
        snprintf(line, sizeof(line), "Content-Type: %s", r->content_type);
        h = curl_slist_append(h, line);
    }
    if (r->prefer) {
        snprintf(line, sizeof(line), "Prefer: %s", r->prefer);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Expect:");
    sink s = {.a = a, .out = r->out, .easy = e};
    bar b = {.label = r->upload ? "put" : "get"};
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_sink);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->error);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (r->upload) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READDATA, r->upload);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->upload_size);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method); /* UPLOAD means PUT */
    } else if (r->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
    }
    if (c->progress) {
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, &b);
    }
    CURLcode rc = curl_easy_perform(e);
    if (rc == CURLE_OK && b.drawn)
        bar_draw(&b, b.total, b.total, b.unit, true); /* the last moments were not drawn */
    bar_end(&b);
    if (rc == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &a->status);
    else if (s.failed)
        snprintf(a->error, sizeof(a->error), "cannot write the output: %s", strerror(errno));
    else if (!a->error[0])
        snprintf(a->error, sizeof(a->error), "%s", curl_easy_strerror(rc));
    char *ct = NULL;
    curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct);
    if (a->body && ct && (strstr(ct, "json")))
        a->json = json_loadb(a->body, a->len, JSON_DECODE_ANY, NULL);
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    if (rc != CURLE_OK)
        a->status = 0;
}

/* Says why an answer is not what was wanted, and returns the exit code for it. */
static int fail_answer(const cli *c, const answer *a)
{
    if (a->status == 0) {
        fprintf(stderr, "rayd: cannot reach %s: %s\n", c->address, a->error);
        return SVC_CLI_EXIT_UNREACHABLE;
    }
    const char *title = json_string_value(json_object_get(a->json, "title"));
    const char *detail = json_string_value(json_object_get(a->json, "detail"));
    if (c->json && a->json) {
        char *text = json_dumps(a->json, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text)
            puts(text);
        free(text);
    }
    fprintf(stderr, "rayd: %ld %s: %s\n", a->status, title ? title : "error",
            detail ? detail : (a->body ? a->body : ""));
    /* A stored error (the task or object failed): the work ran and failed. */
    if (a->status == 424 || a->status == 410)
        return SVC_CLI_EXIT_FAILED;
    return SVC_CLI_EXIT_ERROR;
}

static void print_json(const json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (text)
        puts(text);
    free(text);
}

/* A member as text for a table cell (numbers, strings, null as "-"). */
static const char *cell(const json_t *obj, const char *key, char *buf, size_t size)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v))
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, size, "%g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
    else
        snprintf(buf, size, "-");
    return buf;
}

/* ---- status --------------------------------------------------------------------------- */

static long long num(const json_t *obj, const char *key)
{
    return (long long)json_number_value(json_object_get(obj, key));
}

/* "STATE n" pairs of a by_state object on one line. */
static void print_by_state(const char *what, const json_t *by_state)
{
    const char *k;
    json_t *v;
    printf("%-9s", what);
    json_object_foreach((json_t *)by_state, k, v) printf(" %s %lld", k, (long long)json_number_value(v));
    putchar('\n');
}

static int cmd_status(const cli *c, int argc, char **argv)
{
    if (argc > 0) {
        fprintf(stderr, "rayd status: unexpected argument '%s'\n", argv[0]);
        return SVC_CLI_EXIT_USAGE;
    }
    answer a;
    perform(c, &(request){.method = "GET", .path = "/v1/status"}, &a);
    if (a.status != 200 || !json_is_object(a.json)) {
        int rc = fail_answer(c, &a);
        answer_free(&a);
        return rc;
    }
    if (c->json) {
        print_json(a.json);
        answer_free(&a);
        return 0;
    }
    json_t *j = a.json, *tasks = json_object_get(j, "tasks");
    json_t *store = json_object_get(j, "object_store"), *actors = json_object_get(j, "actors");
    json_t *sched = json_object_get(j, "scheduler");
    printf("rayd %s at %s, up %.0f s\n", json_string_value(json_object_get(j, "version")),
           c->address, json_number_value(json_object_get(j, "uptime_seconds")));
    printf("store     %lld objects, %lld bytes (limit %lld), %lld pending\n",
           num(store, "objects"), num(store, "bytes"), num(store, "memory_limit"),
           num(store, "pending"));
    printf("tasks     %lld submitted, %lld finished, %lld failed, %lld cancelled, %lld retries\n",
           num(tasks, "submitted"), num(tasks, "finished"), num(tasks, "failed"),
           num(tasks, "cancelled"), num(tasks, "retries"));
    print_by_state("", json_object_get(tasks, "by_state"));
    print_by_state("actors", json_object_get(actors, "by_state"));
    printf("workers   %lld, %lld busy, %lld queued\n", num(sched, "workers"), num(sched, "busy"),
           num(sched, "queued"));
    answer_free(&a);
    return 0;
}

/* ---- list ------------------------------------------------------------------------------ */

typedef struct column {
    const char *key, *title;
    int width;
} column;

static const column TASK_COLUMNS[] = {{"task_id", "TASK", 24},       {"function", "FUNCTION", 16},
                                      {"state", "STATE", 23},        {"attempts", "ATTEMPTS", 8},
                                      {"submitted_at", "SUBMITTED", 24}, {NULL, NULL, 0}};
static const column ACTOR_COLUMNS[] = {{"actor_id", "ACTOR", 24},   {"class", "CLASS", 16},
                                       {"state", "STATE", 16},      {"calls_pending", "PENDING", 8},
                                       {"calls_done", "DONE", 8},   {"restarts", "RESTARTS", 8},
                                       {NULL, NULL, 0}};
static const column OBJECT_COLUMNS[] = {{"ref", "REF", 24},        {"state", "STATE", 8},
                                        {"size", "SIZE", 12},      {"content_type", "TYPE", 24},
                                        {"created_at", "CREATED", 24}, {NULL, NULL, 0}};

/* Appends key=value (URL-escaped) to a query. */
static void query_add(CURL *e, char *q, size_t size, const char *key, const char *value)
{
    char *v = curl_easy_escape(e, value, 0);
    size_t n = strlen(q);
    snprintf(q + n, size - n, "%s%s=%s", n ? "&" : "?", key, v ? v : "");
    curl_free(v);
}

static int cmd_list(const cli *c, int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "usage: rayd list tasks|actors|objects [--state S] [--function F] "
                        "[--limit N]\n");
        return SVC_CLI_EXIT_USAGE;
    }
    const char *what = argv[0], *member = NULL, *path = NULL;
    const column *cols = NULL;
    if (strcmp(what, "tasks") == 0) {
        path = "/v1/tasks", member = "tasks", cols = TASK_COLUMNS;
    } else if (strcmp(what, "actors") == 0) {
        path = "/v1/actors", member = "actors", cols = ACTOR_COLUMNS;
    } else if (strcmp(what, "objects") == 0) {
        path = "/v1/objects", member = "objects", cols = OBJECT_COLUMNS;
    } else {
        fprintf(stderr, "rayd list: tasks, actors or objects, not '%s'\n", what);
        return SVC_CLI_EXIT_USAGE;
    }
    const char *state = NULL, *function = NULL;
    long long limit = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--state") == 0 && i + 1 < argc)
            state = argv[++i];
        else if (strcmp(argv[i], "--function") == 0 && i + 1 < argc)
            function = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
            limit = atoll(argv[++i]);
        else {
            fprintf(stderr, "rayd list: unknown or incomplete option '%s'\n", argv[i]);
            return SVC_CLI_EXIT_USAGE;
        }
    }
    if (function && strcmp(what, "tasks") != 0) {
        fprintf(stderr, "rayd list: --function applies to tasks only\n");
        return SVC_CLI_EXIT_USAGE;
    }
    CURL *esc = curl_easy_init();
    json_t *all = json_array();
    char cursor[64] = "";
    int rc = 0;
    for (;;) {
        char q[1024] = "", full[1200];
        if (state)
            query_add(esc, q, sizeof(q), "state", state);
        if (function)
            query_add(esc, q, sizeof(q), "function", function);
        if (cursor[0])
            query_add(esc, q, sizeof(q), "cursor", cursor);
        query_add(esc, q, sizeof(q), "limit", "1000");
        snprintf(full, sizeof(full), "%s%s", path, q);
        answer a;
        perform(c, &(request){.method = "GET", .path = full}, &a);
        json_t *items = json_object_get(a.json, member);
        if (a.status != 200 || !json_is_array(items)) {
            rc = fail_answer(c, &a);
            answer_free(&a);
            break;
        }
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            if (limit >= 0 && (long long)json_array_size(all) >= limit)
                break;
            json_array_append(all, it);
        }
        json_t *next = json_object_get(a.json, "next_cursor");
        cursor[0] = '\0';
        if (json_is_string(next))
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        else if (json_is_integer(next))
            snprintf(cursor, sizeof(cursor), "%lld", (long long)json_integer_value(next));
        answer_free(&a);
        if (!cursor[0] || (limit >= 0 && (long long)json_array_size(all) >= limit))
            break;
    }
    curl_easy_cleanup(esc);
    if (rc == 0) {
        if (c->json) {
            json_t *out = json_pack("{s:O}", member, all);
            print_json(out);
            json_decref(out);
        } else {
            for (const column *col = cols; col->key; col++)
                printf("%-*s ", col->width, col->title);
            putchar('\n');
            size_t i;
            json_t *it;
            json_array_foreach(all, i, it)
            {
                for (const column *col = cols; col->key; col++) {
                    char buf[64];
                    printf("%-*s ", col->width, cell(it, col->key, buf, sizeof(buf)));
                }
                putchar('\n');
            }
            printf("(%zu %s)\n", json_array_size(all), what);
        }
    }
    json_decref(all);
    return rc;
}

/* ---- get and put ----------------------------------------------------------------------- */

static int cmd_get(const cli *c, int argc, char **argv)
{
    const char *ref = NULL, *file = NULL, *timeout = "60";
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout = argv[++i];
        else if (!ref && argv[i][0] != '-')
            ref = argv[i];
        else {
            fprintf(stderr, "rayd get: unexpected argument '%s'\n", argv[i]);
            return SVC_CLI_EXIT_USAGE;
        }
    }
    if (!ref) {
        fprintf(stderr, "usage: rayd get REF [-o FILE] [--timeout SECONDS]\n");
        return SVC_CLI_EXIT_USAGE;
    }
    FILE *out = file ? fopen(file, "wb") : stdout;
    if (!out) {
        fprintf(stderr, "rayd get: cannot write %s: %s\n", file, strerror(errno));
        return SVC_CLI_EXIT_USAGE;
    }
    char path[512];
    snprintf(path, sizeof(path), "/v1/objects/%.128s?timeout=%.32s", ref, timeout);
    answer a;
    perform(c, &(request){.method = "GET", .path = path, .out = out}, &a);
    int rc = 0;
    if (file && fclose(out) != 0 && a.status == 200) {
        fprintf(stderr, "rayd get: cannot write %s: %s\n", file, strerror(errno));
        rc = SVC_CLI_EXIT_ERROR;
    }
    if (a.status == 202 || a.status == 204) {
        fprintf(stderr, "rayd get: %s is not ready yet\n", ref);
        rc = SVC_CLI_EXIT_TIMEOUT;
    } else if (a.status != 200) {
        rc = fail_answer(c, &a);
    }
    if (rc && file)
        unlink(file); /* no half or wrong file left behind */
    answer_free(&a);
    return rc;
}

static int cmd_put(const cli *c, int argc, char **argv)
{
    const char *file = NULL, *type = "application/octet-stream";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--content-type") == 0 && i + 1 < argc)
            type = argv[++i];
        else if (!file)
            file = argv[i];
        else {
            fprintf(stderr, "rayd put: unexpected argument '%s'\n", argv[i]);
            return SVC_CLI_EXIT_USAGE;
        }
    }
    if (!file) {
        fprintf(stderr, "usage: rayd put FILE [--content-type TYPE]\n");
        return SVC_CLI_EXIT_USAGE;
    }
    FILE *in = fopen(file, "rb");
    struct stat st;
    if (!in || fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "rayd put: cannot read %s: %s\n", file,
                in ? "not a regular file" : strerror(errno));
        if (in)
            fclose(in);
        return SVC_CLI_EXIT_USAGE;
    }
    answer a;
    perform(c,
            &(request){.method = "POST", .path = "/v1/objects", .content_type = type,
                       .upload = in, .upload_size = (long long)st.st_size},
            &a);
    fclose(in);
    int rc = 0;
    if (a.status != 201 || !a.json) {
        rc = fail_answer(c, &a);
    } else if (c->json) {
        print_json(a.json);
    } else {
        puts(json_string_value(json_object_get(a.json, "ref")));
    }
    answer_free(&a);
    return rc;
}

/* ---- submit, wait, cancel, kill ---------------------------------------------------------- */

static int cmd_submit(const cli *c, int argc, char **argv)
{
    const char *function = NULL, *wait = NULL;
    json_t *args = json_array();
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc && !function) {
            wait = argv[++i];
        } else if (!function) {
            function = argv[i];
        } else {
            /* An argument that parses as JSON is that value; anything else is a string. */
            json_t *v = json_loads(argv[i], JSON_DECODE_ANY, NULL);
            json_array_append_new(args, v ? v : json_string(argv[i]));
        }
    }
    if (!function) {
        json_decref(args);
        fprintf(stderr, "usage: rayd submit [--wait SECONDS] FUNCTION [ARGS...]\n"
                        "  each ARG is JSON when it parses as JSON, else a string\n");
        return SVC_CLI_EXIT_USAGE;
    }
    json_t *body = json_pack("{s:s,s:o}", "function", function, "args", args);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char prefer[64];
    if (wait)
        snprintf(prefer, sizeof(prefer), "wait=%.30s", wait);
    answer a;
    perform(c,
            &(request){.method = "POST", .path = "/v1/tasks", .content_type = "application/json",
                       .body = text, .len = text ? strlen(text) : 0, .prefer = wait ? prefer : NULL},
            &a);
    free(text);
    int rc = 0;
    if (a.status == 200) { /* waited: the value */
        if (a.json)
            print_json(a.json);
        else
            fwrite(a.body, 1, a.len, stdout);
    } else if (a.status == 202 && a.json) {
        if (c->json)
            print_json(a.json);
        else
            printf("%s %s\n", json_string_value(json_object_get(a.json, "task_id")),
                   json_string_value(json_object_get(a.json, "ref")));
        if (wait)
            rc = SVC_CLI_EXIT_TIMEOUT; /* not done within the wait */
    } else {
        rc = fail_answer(c, &a);
    }
    answer_free(&a);
    return rc;
}

/* Waits for every ref (POST /v1/wait, a second at a time so a bar can move), then checks
 * whether any holds an error. */
static int cmd_wait(const cli *c, int argc, char **argv)
{
    double timeout = 60;
    json_t *refs = json_array();
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout = atof(argv[++i]);
        else
            json_array_append_new(refs, json_string(argv[i]));
    }
    size_t total = json_array_size(refs);
    if (total == 0) {
        json_decref(refs);
        fprintf(stderr, "usage: rayd wait [--timeout SECONDS] REF...\n");
        return SVC_CLI_EXIT_USAGE;
    }
    double deadline = now_mono() + timeout;
    bar b = {.label = "wait"};
    json_t *pending = json_deep_copy(refs), *ready = json_array();
    int rc = 0;
    while (json_array_size(pending) > 0) {
        double left = deadline - now_mono();
        if (left < 0)
            left = 0;
        json_t *body = json_pack("{s:O,s:I,s:f}", "refs", pending, "num_returns",
                                 (json_int_t)json_array_size(pending), "timeout",
                                 left < 1 ? left : 1.0);
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        answer a;
        perform(c,
                &(request){.method = "POST", .path = "/v1/wait",
                           .content_type = "application/json", .body = text,
                           .len = text ? strlen(text) : 0},
                &a);
        free(text);
        json_t *now_ready = json_object_get(a.json, "ready");
        if (a.status != 200 || !json_is_array(now_ready)) {
            rc = fail_answer(c, &a);
            answer_free(&a);
            break;
        }
        json_array_extend(ready, now_ready);
        json_decref(pending);
        pending = json_incref(json_object_get(a.json, "not_ready"));
        answer_free(&a);
        if (c->progress && total > 1)
            bar_draw(&b, (double)json_array_size(ready), (double)total, "refs", true);
        if (json_array_size(pending) > 0 && now_mono() >= deadline) {
            rc = SVC_CLI_EXIT_TIMEOUT;
            break;
        }
    }
    bar_end(&b);
    /* Which ready refs hold an error: a stored error is not success. */
    json_t *failed = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(ready, i, r)
    {
        char path[256];
        snprintf(path, sizeof(path), "/v1/objects/%.128s/meta", json_string_value(r));
        answer a;
        perform(c, &(request){.method = "GET", .path = path}, &a);
        const char *state = json_string_value(json_object_get(a.json, "state"));
        if (a.status != 200 || !state || strcmp(state, "ready") != 0)
            json_array_append(failed, r);
        answer_free(&a);
    }
    if (c->json) {
        json_t *out = json_pack("{s:O,s:O,s:O}", "ready", ready, "not_ready",
                                pending ? pending : json_array(), "failed", failed);
        print_json(out);
        json_decref(out);
    } else if (rc != SVC_CLI_EXIT_UNREACHABLE && rc != SVC_CLI_EXIT_ERROR) {
        printf("%zu of %zu ready, %zu failed\n", json_array_size(ready), total,
               json_array_size(failed));
        json_array_foreach(failed, i, r) printf("failed %s\n", json_string_value(r));
        json_array_foreach(pending, i, r) printf("not ready %s\n", json_string_value(r));
    }
    if (rc == 0 && json_array_size(failed) > 0)
        rc = SVC_CLI_EXIT_FAILED;
    json_decref(failed);
    json_decref(ready);
    json_decref(pending);
    json_decref(refs);
    return rc;
}

/* cancel and kill: one id, one request, 2xx is success. */
static int simple(const cli *c, int argc, char **argv, const char *usage, const char *method,
                  const char *prefix, const char *suffix)
{
    if (argc != 1) {
        fprintf(stderr, "usage: %s\n", usage);
        return SVC_CLI_EXIT_USAGE;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s%.128s%s", prefix, argv[0], suffix);
    answer a;
    perform(c, &(request){.method = method, .path = path}, &a);
    int rc = 0;
    if (a.status < 200 || a.status >= 300) {
        rc = fail_answer(c, &a);
    } else if (c->json) {
        if (a.json)
            print_json(a.json);
        else
            puts("{}");
    } else {
        printf("%s %s\n", strcmp(method, "DELETE") == 0 ? "killed" : "cancel requested", argv[0]);
    }
    answer_free(&a);
    return rc;
}

static int cmd_cancel(const cli *c, int argc, char **argv)
{
    return simple(c, argc, argv, "rayd cancel TASK_ID", "POST", "/v1/tasks/", "/cancel");
}

static int cmd_kill(const cli *c, int argc, char **argv)
{
    return simple(c, argc, argv, "rayd kill ACTOR_ID", "DELETE", "/v1/actors/", "");
}

/* ---- dispatch ---------------------------------------------------------------------------- */

typedef struct command {
    const char *name;
    int (*run)(const cli *c, int argc, char **argv);
} command;

static const command COMMANDS[] = {
    {"status", cmd_status}, {"list", cmd_list},     {"get", cmd_get},   {"put", cmd_put},
    {"submit", cmd_submit}, {"wait", cmd_wait},     {"cancel", cmd_cancel}, {"kill", cmd_kill},
    {NULL, NULL}};

bool svc_cli_is_command(const char *arg)
{
    for (const command *cmd = COMMANDS; arg && cmd->name; cmd++)
        if (strcmp(arg, cmd->name) == 0)
            return true;
    return false;
}

int svc_cli_main(int argc, char **argv)
{
    const command *cmd = COMMANDS;
    while (cmd->name && strcmp(argv[1], cmd->name) != 0)
        cmd++;
    if (!cmd->name)
        return SVC_CLI_EXIT_USAGE;
    cli c = {.address = getenv("RAYD_ADDRESS"), .token = getenv("RAYD_API_TOKEN"),
             .progress = isatty(STDERR_FILENO)};
    if (!c.address || !*c.address)
        c.address = "http://127.0.0.1:8080";
    if (c.token && !*c.token)
        c.token = NULL;
    char address[2048];
    snprintf(address, sizeof(address), "%s", c.address);
    size_t n = strlen(address);
    while (n > 0 && address[n - 1] == '/')
        address[--n] = '\0';
    c.address = address;
    /* --json and --no-progress anywhere; the rest is the command's. */
    char **rest = calloc((size_t)argc, sizeof(*rest));
    if (!rest)
        return SVC_CLI_EXIT_ERROR;
    int nrest = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            c.json = true;
        else if (strcmp(argv[i], "--no-progress") == 0)
            c.progress = false;
        else
            rest[nrest++] = argv[i];
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmd->run(&c, nrest, rest);
    curl_global_cleanup();
    free(rest);
    fflush(stdout);
    return rc;
}
