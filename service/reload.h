/* svc_reloader: what SIGHUP does. It loads the configuration again from the same sources
 * (flags, RAYD_* variables, RAYD_CONFIG_FILE and the token files as they are now), applies
 * what can change without a restart (the remote allow-list, the tokens, the log level),
 * and logs one line saying what changed and what would need a restart. A configuration
 * that does not load (a bad value, an unreadable token file) changes nothing: the running
 * one stays and the line says why. The store, tasks and actors are never touched.
 * Used by the main thread only. */
#ifndef RAYD_SERVICE_RELOAD_H
#define RAYD_SERVICE_RELOAD_H

#include "api/live.h"
#include "service/config.h"

typedef struct svc_reloader {
    int argc;
    char **argv;              /* borrowed: the process's */
    api_live *live;           /* borrowed: where the new values go */
    const svc_config *boot;   /* borrowed: the start-up configuration */
    svc_config current;       /* owned once has_current: the last one reloaded */
    int has_current;
} svc_reloader;

/* Sets live from config (the one rayd started with, borrowed: it must outlive r) and
 * remembers argc and argv for the reloads. 0, or -1 when out of memory. */
int svc_reloader_init(svc_reloader *r, int argc, char **argv, const svc_config *config,
                      api_live *live);

/* Reloads, as the header says. */
void svc_reload(svc_reloader *r);

/* Frees what the reloads kept. */
void svc_reloader_release(svc_reloader *r);

#endif
