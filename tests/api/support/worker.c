/* The example remote worker as a child process; see worker.h. */
#include "tests/api/support/worker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/api/support/harness.h"

int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

bool port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* Starts `python3 <worker.py> port` (or node for a .js worker; its output to stderr when RAYD_TEST_VERBOSE is set,
 * else discarded). With wait, returns once the port accepts (up to 10 s). -1 on failure. */
pid_t worker_start(int port, bool wait)
{
    const char *script = getenv("RAYD_TEST_WORKER");
    if (!script || !*script)
        script = "examples/python/worker.py";
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        const char *v = getenv("RAYD_TEST_VERBOSE");
        if (!v || !*v || strcmp(v, "0") == 0) {
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) {
                dup2(devnull, STDOUT_FILENO);
                dup2(devnull, STDERR_FILENO);
            }
        } else {
            dup2(STDERR_FILENO, STDOUT_FILENO);
        }
        size_t n = strlen(script);
        if (n > 3 && strcmp(script + n - 3, ".js") == 0)
            execlp("node", "node", script, port_s, (char *)NULL);
        else
            execlp("python3", "python3", script, port_s, (char *)NULL);
        _exit(127);
    }
    if (!wait)
        return pid;
    double deadline = now_s() + 10;
    while (now_s() < deadline) {
        if (port_accepts(port))
            return pid;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "worker: the worker (%s) exited at start\n", script);
            return -1;
        }
        sleep_s(0.02);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fprintf(stderr, "worker: the worker did not listen on %d within 10 s\n", port);
    return -1;
}

void worker_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    double deadline = now_s() + 5;
    while (waitpid(pid, NULL, WNOHANG) != pid) {
        if (now_s() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return;
        }
        sleep_s(0.01);
    }
}
