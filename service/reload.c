/* SIGHUP: load the configuration again and apply the part that may change while running. */
#include "service/reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/log.h"

/* Hands config's changeable values to live (which copies them). */
static int set_live(api_live *live, const svc_config *config)
{
    api_live_values v = {.remote_allow = config->remote_allow,
                         .api_token = config->api_token,
                         .admin_token = config->admin_token};
    return api_live_set(live, &v);
}

int svc_reloader_init(svc_reloader *r, int argc, char **argv, const svc_config *config,
                      api_live *live)
{
    memset(r, 0, sizeof(*r));
    r->argc = argc;
    r->argv = argv;
    r->live = live;
    r->boot = config;
    return set_live(live, config);
}

/* A JSON array of the names (new reference). */
static json_t *name_array(const char **names, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(names[i]));
    return a;
}

void svc_reload(svc_reloader *r)
{
    /* Errors are printed one per line; they go into the log line. */
    char *why = NULL;
    size_t why_len = 0;
    FILE *err = open_memstream(&why, &why_len);
    svc_config fresh;
    svc_config_result result =
        err ? svc_config_load(&fresh, r->argc, r->argv, err, err) : SVC_CONFIG_ERROR;
    if (err)
        fclose(err);
    if (result != SVC_CONFIG_OK) { /* (svc_config_load kept nothing) */
        size_t n = why ? strlen(why) : 0;
        while (n && why[n - 1] == '\n')
            why[--n] = '\0';
        svc_log_event("error", "reload failed",
                      json_pack("{s:s,s:s}", "error", why && *why ? why : "out of memory",
                                "kept", "the running configuration"));
        free(why);
        return;
    }
    free(why);
    const svc_config *before = r->has_current ? &r->current : r->boot;
    const char *changed[64], *restart[64];
    size_t n_changed = svc_config_diff(before, &fresh, 1, changed, 64);
    size_t n_restart = svc_config_diff(before, &fresh, 0, restart, 64);
    if (n_changed > 64)
        n_changed = 64;
    if (n_restart > 64)
        n_restart = 64;
    if (set_live(r->live, &fresh) != 0) {
        svc_log_event("error", "reload failed",
                      json_pack("{s:s,s:s}", "error", "out of memory", "kept",
                                "the running configuration"));
        svc_config_release(&fresh);
        return;
    }
    svc_log_set_level(fresh.log_level);
    /* The names point into the static settings table, so they outlive both configs. */
    svc_log_event("info", "reloaded",
                  json_pack("{s:o,s:o}", "changed", name_array(changed, n_changed),
                            "restart_needed", name_array(restart, n_restart)));
    if (r->has_current)
        svc_config_release(&r->current);
    r->current = fresh;
    r->has_current = 1;
}

void svc_reloader_release(svc_reloader *r)
{
    if (r->has_current)
        svc_config_release(&r->current);
    r->has_current = 0;
}
