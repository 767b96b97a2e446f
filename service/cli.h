/* rayd's command line client (service/cli.c): `rayd status`, `rayd list`, `rayd get`,
 * `rayd put`, `rayd submit`, `rayd wait`, `rayd cancel`, `rayd kill`, talking to
 * RAYD_ADDRESS with RAYD_API_TOKEN.
 *
 * Exit codes, for scripts: */
#ifndef RAYD_SERVICE_CLI_H
#define RAYD_SERVICE_CLI_H

#include <stdbool.h>

enum {
    SVC_CLI_EXIT_OK = 0,
    SVC_CLI_EXIT_FAILED = 1,      /* the work failed: a stored error (a task's, an object's) */
    SVC_CLI_EXIT_USAGE = 2,       /* bad arguments, or a local file that cannot be used */
    SVC_CLI_EXIT_UNREACHABLE = 3, /* rayd could not be reached */
    SVC_CLI_EXIT_ERROR = 4,       /* rayd refused the request (404, 400, 401, 507, ...) */
    SVC_CLI_EXIT_TIMEOUT = 5      /* not ready within the wait */
};

/* Whether argv[1] names a command (then main hands over to svc_cli_main). */
bool svc_cli_is_command(const char *arg);

/* Runs the command argv[1] with its arguments; returns the exit code. */
int svc_cli_main(int argc, char **argv);

#endif
