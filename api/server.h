/* api_server: the libmicrohttpd daemon that serves rayd's REST API.
 *
 * It runs MHD's internal epoll thread pool (never a single epoll thread: it stalls, see
 * docs/architecture.md) with suspend/resume for parked requests, explicit connection limit,
 * timeout and per-connection memory, and routes every request through api/router.c.
 * Thread-safety: start and stop from one thread; everything else happens on MHD's threads. */
#ifndef RAYD_API_SERVER_H
#define RAYD_API_SERVER_H

#include "api/context.h"

typedef struct api_server api_server;

/* Starts serving. ctx is borrowed and must outlive the server; its parking field is set
 * here. On failure returns NULL and writes a one-line reason into err (err_size bytes). */
api_server *api_server_start(api_context *ctx, char *err, size_t err_size);

/* The port actually bound (useful with port 0). */
unsigned api_server_port(const api_server *server);

/* The admin listener's port actually bound (config.admin_port), or 0 when there is none.
 * It serves /healthz, /readyz and /metrics only, on connections of its own. */
unsigned api_server_admin_port(const api_server *server);

/* Stops accepting, answers parked requests, waits for in-flight requests, frees the
 * server. NULL accepted. */
void api_server_stop(api_server *server);

#endif
