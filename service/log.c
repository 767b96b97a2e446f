/* JSON log lines. */
#include "service/log.h"

#include <stdio.h>
#include <stdlib.h>

#include "runtime/clock.h"

void svc_log_event(const char *level, const char *event, json_t *fields)
{
    char now[40];
    json_t *line = json_pack("{s:s,s:s,s:s}", "time",
                             rt_clock_format(rt_clock_wall(), now, sizeof(now)), "level", level,
                             "event", event);
    if (fields) {
        json_object_update_missing(line, fields);
        json_decref(fields);
    }
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (text) {
        fprintf(stdout, "%s\n", text);
        fflush(stdout);
        free(text);
    }
}
