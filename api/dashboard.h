/* The dashboard's files (the dashboard folder), embedded in the binary at build time by
 * dashboard/embed.py, and the handler that serves them at /dashboard. */
#ifndef RAYD_API_DASHBOARD_H
#define RAYD_API_DASHBOARD_H

typedef struct api_dashboard_file {
    const char *name;         /* "index.html", "app.js", ... */
    const char *content_type;
    const char *data;         /* the bytes (NUL after them, not counted) */
    unsigned long len;
} api_dashboard_file;

extern const api_dashboard_file api_dashboard_files[];
extern const unsigned long api_dashboard_file_count;

#endif
