/* svc_config: rayd's configuration from built-in defaults, RAYD_* environment variables and
 * command-line flags (in that order of precedence, flags last). One table describes every
 * setting; --help and the README's reference are printed from it. */
#ifndef RAYD_SERVICE_CONFIG_H
#define RAYD_SERVICE_CONFIG_H

#include <stdio.h>

#include "api/context.h"

/* A setting that takes several values: a repeatable flag, or a ':'-separated variable. */
typedef struct svc_list {
    const char **items; /* owned array; the strings point into argv or text */
    size_t count, cap;
    char *text;         /* owned: the variable's value, split in place at ':' */
    int from_flags;     /* the flags replaced the variable's values */
} svc_list;

typedef struct svc_config {
    api_config api;      /* bind, port, threads, limits the HTTP layer enforces */
    double drain_timeout; /* seconds running work gets to finish after SIGTERM */
    const char *log_format; /* "json" or "text" */
    const char *log_level;  /* "debug", "info", "warn", "error" */
    /* What SIGHUP may change (service/reload.c hands them to api_live): */
    const char *remote_allow; /* comma-separated scheme://host:port prefixes, or NULL */
    const char *api_token;    /* NULL: no auth */
    const char *admin_token;  /* NULL: the API token guards admin routes too */
    const char *api_token_file;
    const char *admin_token_file;
    char *tokens_read[2];   /* owned: tokens read from the files above */
    svc_list modules;       /* C modules (.so paths) to load at start-up, in order */
    /* Cluster mode (NULL cluster: a node alone; the others are then ignored). */
    const char *cluster;    /* redis://[[user]:password@]host[:port][/db] */
    const char *cluster_password_file;
    char *cluster_password; /* owned: read from the file above, or NULL */
    const char *advertise_url; /* NULL: http://<bind address or hostname>:<port> */
    const char *config_file; /* RAYD_CONFIG_FILE, or NULL */
    char *file_text;        /* owned: the config file's text; its values point into it */
    /* The store when full (issue 13). */
    const char *on_full;    /* "spill", "evict" or "refuse" */
    const char *spill_dir;  /* NULL: rt_spill_default_dir() */
    size_t spill_limit;     /* bytes of spill files at most; 0: no limit */
    double result_ttl;      /* seconds results are kept once stored by default; 0: no TTL */
} svc_config;

/* Frees what svc_config_load allocated. */
void svc_config_release(svc_config *config);

typedef enum svc_config_result {
    SVC_CONFIG_OK = 0,
    SVC_CONFIG_EXIT_OK, /* --help or --version was printed: exit 0 */
    SVC_CONFIG_ERROR    /* a bad value: a one-line message was printed, exit 2 */
} svc_config_result;

/* Fills config from defaults, the config file (RAYD_CONFIG_FILE or --config-file: lines
 * of RAYD_NAME=value), the environment and argv, each winning over the ones before. Token
 * files are read last. Messages go to out (help) and err (one line per error). Strings in
 * config point into argv, the environment, static storage or config's own copies (freed
 * by svc_config_release). Unless it returns SVC_CONFIG_OK, nothing stays allocated. Called
 * again with the same argv on SIGHUP, it reads the files as they are then. */
svc_config_result svc_config_load(svc_config *config, int argc, char **argv, FILE *out,
                                  FILE *err);

/* Prints the settings table (flag, variable, default, meaning) as --help shows it. */
void svc_config_print_help(FILE *out);

/* Prints the same table as a Markdown table (the README's configuration reference). */
void svc_config_print_markdown(FILE *out);

/* The settings whose value differs between a and b, as variable names ("RAYD_PORT"),
 * written to names (at most max; returns how many differ). Token files count as their
 * tokens: RAYD_API_TOKEN differs when the file now holds another token. reloadable: 1 for
 * only the settings SIGHUP applies, 0 for only the others. */
size_t svc_config_diff(const svc_config *a, const svc_config *b, int reloadable,
                       const char **names, size_t max);

/* The version string. */
const char *svc_version(void);

#endif
