/* The settings table and how defaults, RAYD_* variables and flags fill it. */
#include "service/config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/cluster_redis.h"
#include "service/parse.h"

#define RAYD_VERSION "0.1.0"

typedef enum setting_kind {
    KIND_STRING,
    KIND_CHOICE,     /* a string from `choices`, '|'-separated */
    KIND_UINT,       /* unsigned */
    KIND_SIZE_COUNT, /* a count stored as size_t */
    KIND_SIZE,       /* bytes: 512K, 2G */
    KIND_DURATION,   /* seconds: 1.5, 500ms, 2m */
    KIND_LIST,       /* svc_list: each flag adds a value (the first drops the variable's);
                        the variable is a ':'-separated list */
    KIND_PORT        /* int: a TCP port 0..65535, or -1 when unset (an empty value) */
} setting_kind;

typedef struct setting {
    const char *flag;  /* "--port" */
    const char *env;   /* "RAYD_PORT" */
    setting_kind kind;
    size_t offset;     /* into svc_config */
    unsigned long min, max; /* KIND_UINT bounds */
    const char *default_text; /* as shown in --help; NULL: computed (see help) */
    const char *help;
    const char *choices; /* KIND_CHOICE: "json|text" */
} setting;

#define OFF(field) offsetof(svc_config, field)

static const setting SETTINGS[] = {
    {"--bind", "RAYD_BIND", KIND_STRING, OFF(api.bind), 0, 0, "0.0.0.0",
     "address to listen on (IPv4 or IPv6)", NULL},
    {"--port", "RAYD_PORT", KIND_UINT, OFF(api.port), 0, 65535, "8080",
     "TCP port; 0 lets the kernel pick one (printed in the 'listening' log line)", NULL},
    {"--http-threads", "RAYD_HTTP_THREADS", KIND_UINT, OFF(api.http_threads), 2, 256,
     "number of cores, at least 2",
     "HTTP event-loop threads (at least 2: a single libmicrohttpd epoll thread stalls)", NULL},
    {"--memory-limit", "RAYD_MEMORY_LIMIT", KIND_SIZE, OFF(api.memory_limit), 0, 0,
     "30% of memory", "object store memory limit (512M, 2G); beyond it see --on-full", NULL},
    {"--on-full", "RAYD_ON_FULL", KIND_CHOICE, OFF(on_full), 0, 0, "spill",
     "what a full store does: spill cold objects to --spill-dir (nothing lost), evict the "
     "least recently used (they are lost: 410), or refuse the put (507)",
     "spill|evict|refuse"},
    {"--spill-dir", "RAYD_SPILL_DIR", KIND_STRING, OFF(spill_dir), 0, 0,
     "$TMPDIR/rayd-spill",
     "directory for spill files (in a subdirectory per process; what a previous process "
     "left is removed at start)", NULL},
    {"--spill-limit", "RAYD_SPILL_LIMIT", KIND_SIZE, OFF(spill_limit), 0, 0, "0",
     "disk space spill files may take; beyond it and the memory limit a put is 507 "
     "(0: no limit but the disk's)", NULL},
    {"--max-body", "RAYD_MAX_BODY", KIND_SIZE, OFF(api.max_body), 0, 0, "256M",
     "largest request body accepted (413 beyond it)", NULL},
    {"--linger-max", "RAYD_LINGER_MAX", KIND_SIZE, OFF(api.linger_max), 0, 0, "64M",
     "after answering a request before reading its body (413, 507...), read and discard up "
     "to this much of it so the client gets the answer; 0: close at once", NULL},
    {"--body-budget", "RAYD_BODY_BUDGET", KIND_SIZE, OFF(api.body_budget), 0, 0,
     "larger of max-body, limit/4",
     "memory for request bodies in flight and for what parked requests keep, all requests "
     "together; beyond it 503 with Retry-After (0: the default)", NULL},
    {"--max-wait", "RAYD_MAX_WAIT", KIND_DURATION, OFF(api.max_wait), 0, 0, "60s",
     "longest any request waits for objects (timeouts are capped at this)", NULL},
    {"--connection-limit", "RAYD_CONNECTION_LIMIT", KIND_UINT, OFF(api.connection_limit), 1,
     1000000, "10000", "most simultaneous client connections", NULL},
    {"--workers", "RAYD_WORKERS", KIND_UINT, OFF(api.workers), 1, 1024, "number of cores",
     "worker threads that run tasks and actor calls", NULL},
    {"--max-pending-tasks", "RAYD_MAX_PENDING_TASKS", KIND_SIZE_COUNT, OFF(api.max_pending_tasks),
     1, 100000000, "1000000", "tasks accepted but not ended; beyond it 429 TooManyRequests", NULL},
    {"--max-tombstones", "RAYD_MAX_TOMBSTONES", KIND_SIZE_COUNT, OFF(api.max_tombstones), 1,
     100000000, "100000", "freed, evicted or expired objects remembered, so their refs answer "
     "410 (older ones 404); about 120 bytes each", NULL},
    {"--max-task-records", "RAYD_MAX_TASK_RECORDS", KIND_SIZE_COUNT, OFF(api.max_task_records),
     1, 100000000, "100000", "ended tasks remembered for GET /v1/tasks/{id} (older ones 404); "
     "about 0.5 to 1 KiB each, more with long error messages", NULL},
    {"--max-dead-actors", "RAYD_MAX_DEAD_ACTORS", KIND_SIZE_COUNT, OFF(api.max_dead_actors), 1,
     100000000, "10000", "dead actors remembered for GET /v1/actors/{id} (older ones 404); "
     "about 1.3 KiB each", NULL},
    {"--max-sessions", "RAYD_MAX_SESSIONS", KIND_SIZE_COUNT, OFF(api.max_sessions), 1,
     10000000, "10000", "sessions open at once (POST /v1/sessions beyond it: 429 "
     "TooManyRequests)", NULL},
    {"--session-max-ttl", "RAYD_SESSION_MAX_TTL", KIND_DURATION, OFF(api.session_max_ttl), 0, 0,
     "24h", "longest lease a session may ask for (a longer ttl is 400); each request naming "
     "the session renews it", NULL},
    {"--result-ttl", "RAYD_RESULT_TTL", KIND_DURATION, OFF(result_ttl), 0, 0, "0",
     "how long task and actor call results are kept once stored, unless options.result_ttl "
     "says otherwise (0: until freed)", NULL},
    {"--connection-timeout", "RAYD_CONNECTION_TIMEOUT", KIND_DURATION,
     OFF(api.connection_timeout), 0, 0, "30s",
     "idle connections are closed after this (parked requests are not idle)", NULL},
    {"--max-parked", "RAYD_MAX_PARKED", KIND_SIZE_COUNT, OFF(api.max_parked), 1, 10000000,
     "90% of the connection limit",
     "requests waiting for objects at most; beyond it 429 TooManyRequests (kept below the "
     "connection limit, so that parked requests never take every connection)", NULL},
    {"--admin-port", "RAYD_ADMIN_PORT", KIND_PORT, OFF(api.admin_port), 0, 65535, "(none)",
     "second TCP port serving only /healthz, /readyz and /metrics, with its own few "
     "connections that parked work cannot fill (for probes); 0 lets the kernel pick one",
     NULL},
    {"--idempotency-ttl", "RAYD_IDEMPOTENCY_TTL", KIND_DURATION, OFF(api.idempotency_ttl), 0, 0,
     "24h", "how long an Idempotency-Key and its answer are remembered", NULL},
    {"--idempotency-max-bytes", "RAYD_IDEMPOTENCY_MAX_BYTES", KIND_SIZE,
     OFF(api.idempotency_max_bytes), 0, 0, "64M",
     "memory for remembered Idempotency-Key answers; beyond it the oldest are forgotten "
     "(0: no limit)", NULL},
    {"--remote-allow", "RAYD_REMOTE_ALLOW", KIND_STRING, OFF(remote_allow), 0, 0,
     "(none)", "comma-separated scheme://host:port prefixes remote functions may call; "
     "empty: registering remote functions is refused (SIGHUP reloads)", NULL},
    {"--module", "RAYD_MODULES", KIND_LIST, OFF(modules), 0, 0, "(none)",
     "C module (.so) to load at start-up; repeatable; the variable is ':'-separated", NULL},
    {"--drain-timeout", "RAYD_DRAIN_TIMEOUT", KIND_DURATION, OFF(drain_timeout), 0, 0, "25s",
     "after SIGTERM, how long running work may finish before the process exits", NULL},
    {"--log-format", "RAYD_LOG_FORMAT", KIND_CHOICE, OFF(log_format), 0, 0, "json",
     "json: one JSON object per line; text: for humans", "json|text"},
    {"--log-level", "RAYD_LOG_LEVEL", KIND_CHOICE, OFF(log_level), 0, 0, "info",
     "info logs every request; warn and error only problems (SIGHUP reloads)",
     "debug|info|warn|error"},
    {"--api-token", "RAYD_API_TOKEN", KIND_STRING, OFF(api_token), 0, 0, "(none)",
     "bearer token every /v1/ route needs (prefer the file or the variable)", NULL},
    {"--api-token-file", "RAYD_API_TOKEN_FILE", KIND_STRING, OFF(api_token_file), 0, 0,
     "(none)", "file holding the API token (trailing newline ignored; SIGHUP reloads)", NULL},
    {"--admin-token", "RAYD_ADMIN_TOKEN", KIND_STRING, OFF(admin_token), 0, 0, "(none)",
     "bearer token for admin routes (registering code); default: the API token", NULL},
    {"--admin-token-file", "RAYD_ADMIN_TOKEN_FILE", KIND_STRING, OFF(admin_token_file), 0, 0,
     "(none)", "file holding the admin token (SIGHUP reloads)", NULL},
    {"--cluster", "RAYD_CLUSTER", KIND_STRING, OFF(cluster), 0, 0, "(none)",
     "cluster mode: redis://[:password@]host:port[/db] of the Redis the nodes share", NULL},
    {"--cluster-password-file", "RAYD_CLUSTER_PASSWORD_FILE", KIND_STRING,
     OFF(cluster_password_file), 0, 0, "(none)",
     "file holding the Redis password (wins over the URL's)", NULL},
    {"--advertise-url", "RAYD_ADVERTISE_URL", KIND_STRING, OFF(advertise_url), 0, 0, "(none)",
     "cluster mode: how other nodes reach this one; default http://<bind address, or "
     "hostname when binding all>:<port>", NULL},
    {"--cluster-token", "RAYD_CLUSTER_TOKEN", KIND_STRING, OFF(api.cluster_token), 0, 0,
     "(none)", "cluster mode: bearer token between nodes; default: the API token", NULL},
    {"--spillback-queued", "RAYD_SPILLBACK_QUEUED", KIND_SIZE_COUNT, OFF(api.spillback_queued),
     0, 100000000, "1000",
     "cluster mode: with more jobs than this waiting for a worker, a task submitted here "
     "runs on the least loaded live node (spillback); 0: never", NULL},
    {"--config-file", "RAYD_CONFIG_FILE", KIND_STRING, OFF(config_file), 0, 0, "(none)",
     "file of RAYD_NAME=value lines, read before the variables and flags (which win); "
     "SIGHUP reads it again", NULL},

};

#define SETTING_COUNT (sizeof(SETTINGS) / sizeof(SETTINGS[0]))

/* The settings SIGHUP applies while rayd runs (service/reload.c); a change to any other
 * is logged as needing a restart. */
static const char *const RELOADABLE[] = {"RAYD_REMOTE_ALLOW",   "RAYD_API_TOKEN",
                                         "RAYD_API_TOKEN_FILE", "RAYD_ADMIN_TOKEN",
                                         "RAYD_ADMIN_TOKEN_FILE", "RAYD_LOG_LEVEL"};

static int is_reloadable(const setting *s)
{
    for (size_t i = 0; i < sizeof(RELOADABLE) / sizeof(RELOADABLE[0]); i++)
        if (strcmp(s->env, RELOADABLE[i]) == 0)
            return 1;
    return 0;
}

const char *svc_version(void)
{
    return RAYD_VERSION;
}

/* Physical memory, or the cgroup limit when the process runs in a smaller container. */
static size_t memory_available(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t total = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : (size_t)4 << 30;
    const char *files[] = {"/sys/fs/cgroup/memory.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (size_t i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "r");
        if (!f)
            continue;
        unsigned long long limit = 0;
        if (fscanf(f, "%llu", &limit) == 1 && limit > 0 && limit < total)
            total = (size_t)limit;
        fclose(f);
    }
    return total;
}

static void set_defaults(svc_config *c)
{
    memset(c, 0, sizeof(*c));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->api.bind = "0.0.0.0";
    c->api.port = 8080;
    c->api.http_threads = cores > 2 ? (unsigned)cores : 2;
    c->api.memory_limit = memory_available() / 10 * 3;
    c->api.max_body = (size_t)256 << 20;
    c->api.linger_max = (size_t)64 << 20;
    c->api.max_wait = 60;
    c->api.connection_limit = 10000;
    c->api.connection_timeout = 30;
    c->api.workers = cores > 0 ? (unsigned)cores : 1;
    c->drain_timeout = 25;
    c->api.max_parked = 0; /* 0: 90% of the connection limit, set after loading */
    c->api.spillback_queued = 1000;
    c->api.admin_port = -1;
    c->api.idempotency_ttl = 24 * 3600;
    c->api.idempotency_max_bytes = (size_t)64 << 20;
    c->log_format = "json";
    c->log_level = "info";
    c->on_full = "spill";
    c->api.max_pending_tasks = 1000000;
    c->api.max_tombstones = 100000;
    c->api.max_task_records = 100000;
    c->api.max_dead_actors = 10000;
    c->api.max_sessions = 10000;
    c->api.session_max_ttl = 24 * 3600;
}

/* Appends item (borrowed) to a list. 0, or -1 when out of memory. */
static int list_add(svc_list *list, const char *item)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 4;
        const char **grown = realloc(list->items, cap * sizeof(*grown));
        if (!grown)
            return -1;
        list->items = grown;
        list->cap = cap;
    }
    list->items[list->count++] = item;
    return 0;
}

/* A list setting's value: the variable's (from_env) replaces the list with its non-empty
 * ':'-separated parts; a flag's value is added, after dropping the variable's values the
 * first time. 0, or -1 when out of memory. */
static int list_apply(svc_list *list, const char *value, int from_env)
{
    if (!from_env) {
        if (!list->from_flags)
            list->count = 0;
        list->from_flags = 1;
        return list_add(list, value);
    }
    free(list->text);
    list->count = 0;
    if (!(list->text = strdup(value)))
        return -1;
    for (char *part = list->text, *end; part; part = end) {
        end = strchr(part, ':');
        if (end)
            *end++ = '\0';
        if (*part && list_add(list, part) != 0)
            return -1;
    }
    return 0;
}

/* Applies one value from a flag (from_flag) or from a variable or the config file; on
 * error prints one line naming the source and returns -1. value must outlive c. */
static int apply(svc_config *c, const setting *s, const char *source, const char *value,
                 int from_flag, FILE *err)
{
    char *field = (char *)c + s->offset;
    unsigned long u;
    size_t size;
    double secs;
    switch (s->kind) {
    case KIND_STRING:
        if (!*value && strcmp(s->default_text, "(none)") == 0) {
            *(const char **)field = NULL; /* an optional setting given empty: unset */
            return 0;
        }
        if (!*value)
            break;
        *(const char **)field = value;
        return 0;
    case KIND_CHOICE: {
        size_t n = strlen(value);
        for (const char *opt = s->choices; n && *opt;) {
            size_t len = strcspn(opt, "|");
            if (len == n && strncmp(opt, value, n) == 0) {
                *(const char **)field = value;
                return 0;
            }
            opt += len + (opt[len] == '|');
        }
        fprintf(err, "rayd: %s: '%s' is not one of %s\n", source, value, s->choices);
        return -1;
    }
    case KIND_UINT:
    case KIND_SIZE_COUNT:
        if (svc_parse_uint(value, s->min, s->max, &u) != 0) {
            fprintf(err, "rayd: %s: '%s' is not an integer from %lu to %lu\n", source, value,
                    s->min, s->max);
            return -1;
        }
        if (s->kind == KIND_SIZE_COUNT)
            *(size_t *)field = (size_t)u;
        else
            *(unsigned *)field = (unsigned)u;
        return 0;
    case KIND_SIZE:
        if (svc_parse_size(value, &size) != 0) {
            fprintf(err, "rayd: %s: '%s' is not a size (for example 512K, 256M, 2G)\n", source,
                    value);
            return -1;
        }
        *(size_t *)field = size;
        return 0;
    case KIND_DURATION:
        if (svc_parse_duration(value, &secs) != 0) {
            fprintf(err,
                    "rayd: %s: '%s' is not a duration (seconds, or with a unit: 500ms, 30s, "
                    "2m)\n",
                    source, value);
            return -1;
        }
        *(double *)field = secs;
        return 0;
    case KIND_PORT:
        if (!*value) {
            *(int *)field = -1; /* given empty: no such listener */
            return 0;
        }
        if (svc_parse_uint(value, s->min, s->max, &u) != 0) {
            fprintf(err, "rayd: %s: '%s' is not a port (0 to 65535)\n", source, value);
            return -1;
        }
        *(int *)field = (int)u;
        return 0;
    case KIND_LIST: {
        if (!*value && from_flag)
            break;
        if (list_apply((svc_list *)field, value, !from_flag) != 0) {
            fprintf(err, "rayd: %s: out of memory\n", source);
            return -1;
        }
        return 0;
    }
    }
    fprintf(err, "rayd: %s: must not be empty\n", source);
    return -1;
}

void svc_config_print_help(FILE *out)
{
    fprintf(out, "rayd %s: Ray's objects, tasks and actors over HTTP\n\n", RAYD_VERSION);
    fprintf(out, "usage: rayd [--flag value | --flag=value]...\n\n");
    fprintf(out, "Every flag has an environment variable; flags win over variables, which win\n"
                 "over the config file (RAYD_NAME=value lines). SIGHUP reloads the settings\n"
                 "marked so, from the same sources.\n\n");
    fprintf(out, "  %-22s %-24s %-28s %s\n", "flag", "variable", "default", "meaning");
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &SETTINGS[i];
        fprintf(out, "  %-22s %-24s %-28s %s\n", s->flag, s->env, s->default_text, s->help);
    }
    fprintf(out, "  %-22s %-24s %-28s %s\n", "--help", "", "", "print this and exit");
    fprintf(out, "  %-22s %-24s %-28s %s\n", "--version", "", "", "print the version and exit");
}

void svc_config_print_markdown(FILE *out)
{
    fprintf(out, "| flag | variable | default | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &SETTINGS[i];
        fprintf(out, "| `%s` | `%s` | %s | %s |\n", s->flag, s->env, s->default_text, s->help);
    }
}

/* Reads a token file: its first line, without the newline. NULL (with a message) on
 * error. */
static char *read_token_file(const char *path, const char *source, FILE *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "rayd: %s: cannot read '%s'\n", source, path);
        return NULL;
    }
    char line[4096];
    char *token = NULL;
    if (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (*line)
            token = strdup(line);
    }
    fclose(f);
    if (!token)
        fprintf(err, "rayd: %s: '%s' holds no token\n", source, path);
    return token;
}

void svc_config_release(svc_config *c)
{
    free(c->tokens_read[0]);
    free(c->tokens_read[1]);
    c->tokens_read[0] = c->tokens_read[1] = NULL;
    free(c->modules.items);
    free(c->modules.text);
    memset(&c->modules, 0, sizeof(c->modules));
    free(c->cluster_password);
    c->cluster_password = NULL;
    free(c->file_text);
    c->file_text = NULL;
}

/* Cluster mode's settings: the Redis URL must parse, the password file must read, the
 * advertised URL must be http(s), and the cluster token defaults to the API token. Without
 * RAYD_CLUSTER they are ignored. */
static int check_cluster(svc_config *c, FILE *err)
{
    if (!c->cluster) {
        c->api.cluster_token = NULL;
        return 0;
    }
    rt_redis_url url;
    char why[256];
    if (rt_redis_url_parse(c->cluster, &url, why, sizeof(why)) != 0) {
        fprintf(err, "rayd: RAYD_CLUSTER: %s\n", why);
        return -1;
    }
    if (c->cluster_password_file &&
        !(c->cluster_password = read_token_file(c->cluster_password_file,
                                                "RAYD_CLUSTER_PASSWORD_FILE", err)))
        return -1;
    if (c->advertise_url && strncmp(c->advertise_url, "http://", 7) != 0 &&
        strncmp(c->advertise_url, "https://", 8) != 0) {
        fprintf(err, "rayd: RAYD_ADVERTISE_URL: '%s' is not an http:// or https:// URL\n",
                c->advertise_url);
        return -1;
    }
    if (c->advertise_url && strlen(c->advertise_url) > 200) {
        fprintf(err, "rayd: RAYD_ADVERTISE_URL: longer than 200 characters\n");
        return -1;
    }
    if (!c->api.cluster_token)
        c->api.cluster_token = c->api_token;
    return 0;
}

/* Reads the token files, if given; they win over tokens given directly. */
static int load_tokens(svc_config *c, FILE *err)
{
    if (c->api_token_file) {
        if (!(c->tokens_read[0] = read_token_file(c->api_token_file, "RAYD_API_TOKEN_FILE", err)))
            return -1;
        c->api_token = c->tokens_read[0];
    }
    if (c->admin_token_file) {
        if (!(c->tokens_read[1] =
                  read_token_file(c->admin_token_file, "RAYD_ADMIN_TOKEN_FILE", err)))
            return -1;
        c->admin_token = c->tokens_read[1];
    }
    return 0;
}

/* ---- the config file ------------------------------------------------------------------ */

#define CONFIG_FILE_MAX (1 << 20) /* bytes; a settings file is a few hundred */

/* The config file named by the flags (the last --config-file) or else the variable; NULL
 * when none. Borrowed from argv or the environment. */
static const char *config_file_path(int argc, char **argv)
{
    const char *path = getenv("RAYD_CONFIG_FILE");
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--config-file") == 0 && a + 1 < argc)
            path = argv[++a];
        else if (strncmp(argv[a], "--config-file=", 14) == 0)
            path = argv[a] + 14;
    }
    return path && *path ? path : NULL;
}

/* Reads the whole file into c->file_text (owned) and applies each RAYD_NAME=value line, in
 * order. Blank lines and lines starting with '#' are skipped; spaces around the name and at
 * the end of the value are dropped, and one pair of matching quotes around the value. An
 * unknown name is an error, so that a typo does not pass silently. Returns 0 or -1 after
 * printing why (one line, naming the file and line). */
static int load_config_file(svc_config *c, const char *path, FILE *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "rayd: RAYD_CONFIG_FILE: cannot read '%s'\n", path);
        return -1;
    }
    char *text = malloc(CONFIG_FILE_MAX + 1);
    size_t n = text ? fread(text, 1, CONFIG_FILE_MAX + 1, f) : 0;
    int read_error = ferror(f);
    fclose(f);
    if (!text || read_error || n > CONFIG_FILE_MAX) {
        fprintf(err, "rayd: RAYD_CONFIG_FILE: '%s' %s\n", path,
                !text ? "cannot be read: out of memory"
                      : read_error ? "cannot be read" : "is over 1 MiB");
        free(text);
        return -1;
    }
    text[n] = '\0';
    free(c->file_text);
    c->file_text = text;
    unsigned line_no = 0;
    for (char *line = text, *next; line; line = next) {
        line_no++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        line += strspn(line, " \t");
        size_t len = strlen(line);
        while (len && strchr(" \t\r", line[len - 1]))
            line[--len] = '\0';
        if (!*line || *line == '#')
            continue;
        char source[256];
        char *eq = strchr(line, '=');
        if (!eq) {
            fprintf(err, "rayd: %s:%u: not a RAYD_NAME=value line\n", path, line_no);
            return -1;
        }
        char *name_end = eq;
        while (name_end > line && strchr(" \t", name_end[-1]))
            name_end--;
        *name_end = '\0';
        char *value = eq + 1 + strspn(eq + 1, " \t");
        size_t vlen = strlen(value);
        if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
            value[vlen - 1] = '\0';
            value++;
        }
        snprintf(source, sizeof(source), "%s:%u: %s", path, line_no, line);
        const setting *s = NULL;
        for (size_t i = 0; i < SETTING_COUNT; i++)
            if (strcmp(SETTINGS[i].env, line) == 0)
                s = &SETTINGS[i];
        if (!s || strcmp(line, "RAYD_CONFIG_FILE") == 0) {
            fprintf(err, "rayd: %s: %s\n", source,
                    s ? "a config file cannot name another" : "unknown setting (see rayd --help)");
            return -1;
        }
        if (apply(c, s, source, value, 0, err) != 0)
            return -1;
    }
    return 0;
}

static svc_config_result config_load(svc_config *c, int argc, char **argv, FILE *out,
                                     FILE *err);

svc_config_result svc_config_load(svc_config *c, int argc, char **argv, FILE *out, FILE *err)
{
    svc_config_result result = config_load(c, argc, argv, out, err);
    if (result != SVC_CONFIG_OK)
        svc_config_release(c);
    return result;
}

static svc_config_result config_load(svc_config *c, int argc, char **argv, FILE *out,
                                     FILE *err)
{
    set_defaults(c);
    int only_print = 0; /* --help and the like print without reading the file */
    for (int a = 1; a < argc; a++)
        only_print |= strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0 ||
                      strcmp(argv[a], "--config-markdown") == 0 ||
                      strcmp(argv[a], "--version") == 0;
    const char *file = only_print ? NULL : config_file_path(argc, argv);
    if (file && load_config_file(c, file, err) != 0)
        return SVC_CONFIG_ERROR;
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const char *v = getenv(SETTINGS[i].env);
        if (v && apply(c, &SETTINGS[i], SETTINGS[i].env, v, 0, err) != 0)
            return SVC_CONFIG_ERROR;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            svc_config_print_help(out);
            return SVC_CONFIG_EXIT_OK;
        }
        if (strcmp(arg, "--config-markdown") == 0) {
            svc_config_print_markdown(out); /* the README's table is this output */
            return SVC_CONFIG_EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            fprintf(out, "rayd %s\n", RAYD_VERSION);
            return SVC_CONFIG_EXIT_OK;
        }
        const setting *s = NULL;
        size_t name_len = strcspn(arg, "=");
        for (size_t i = 0; i < SETTING_COUNT; i++)
            if (strlen(SETTINGS[i].flag) == name_len &&
                strncmp(SETTINGS[i].flag, arg, name_len) == 0)
                s = &SETTINGS[i];
        if (!s) {
            fprintf(err, "rayd: %.*s: unknown flag (see rayd --help)\n", (int)name_len, arg);
            return SVC_CONFIG_ERROR;
        }
        const char *value;
        if (arg[name_len] == '=') {
            value = arg + name_len + 1;
        } else if (a + 1 < argc) {
            value = argv[++a];
        } else {
            fprintf(err, "rayd: %s: needs a value\n", s->flag);
            return SVC_CONFIG_ERROR;
        }
        if (apply(c, s, s->flag, value, 1, err) != 0)
            return SVC_CONFIG_ERROR;
    }
    if (load_tokens(c, err) != 0 || check_cluster(c, err) != 0)
        return SVC_CONFIG_ERROR;
    if (c->api.max_parked == 0) {
        /* Parked requests keep their connections: leave a tenth of them (at least one) to
         * requests that do not wait, such as probes and the answers that wake the others. */
        unsigned limit = c->api.connection_limit;
        c->api.max_parked = limit > 1 ? limit - (limit / 10 ? limit / 10 : 1) : 1;
    }
    if (!c->api.body_budget) {
        /* One body of the largest size always fits; a big store gets room in proportion. */
        size_t quarter = c->api.memory_limit / 4;
        c->api.body_budget = quarter > c->api.max_body ? quarter : c->api.max_body;
    }
    return SVC_CONFIG_OK;
}

/* Whether one setting holds the same value in a and b. */
static int same_value(const svc_config *a, const svc_config *b, const setting *s)
{
    const char *fa = (const char *)a + s->offset, *fb = (const char *)b + s->offset;
    switch (s->kind) {
    case KIND_STRING:
    case KIND_CHOICE: {
        const char *x = *(const char *const *)fa, *y = *(const char *const *)fb;
        return x == y || (x && y && strcmp(x, y) == 0);
    }
    case KIND_UINT: return *(const unsigned *)fa == *(const unsigned *)fb;
    case KIND_PORT: return *(const int *)fa == *(const int *)fb;
    case KIND_SIZE_COUNT:
    case KIND_SIZE: return *(const size_t *)fa == *(const size_t *)fb;
    case KIND_DURATION: return *(const double *)fa == *(const double *)fb;
    case KIND_LIST: {
        const svc_list *x = (const svc_list *)fa, *y = (const svc_list *)fb;
        if (x->count != y->count)
            return 0;
        for (size_t i = 0; i < x->count; i++)
            if (strcmp(x->items[i], y->items[i]) != 0)
                return 0;
        return 1;
    }
    }
    return 0;
}

size_t svc_config_diff(const svc_config *a, const svc_config *b, int reloadable,
                       const char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &SETTINGS[i];
        if (is_reloadable(s) != reloadable || same_value(a, b, s))
            continue;
        if (n < max)
            names[n] = s->env;
        n++;
    }
    return n;
}
