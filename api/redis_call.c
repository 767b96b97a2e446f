/* Redis commands for request handlers without holding a thread. See redis_call.h.
 *
 * DESIGN
 * - The connection is suspended before the command is queued, and resumed by the command's
 *   callback as its very last act, so nothing touches the state after the resume: the
 *   request (which owns the state) cannot end while suspended. */
#include "api/redis_call.h"

#include <stdlib.h>
#include <string.h>

#include "api/problem.h"
#include "runtime/cluster.h"

struct api_redis_call {
    api_request *req;
    api_redis_then_fn then;
    bool done;
    rt_redis_answer answer; /* str points at text, owned */
    char *text;
};

static void command_done(const rt_redis_answer *answer, void *arg)
{
    struct api_redis_call *call = arg;
    call->answer = *answer;
    call->answer.str = NULL;
    if (answer->str) {
        call->text = strndup(answer->str, answer->len);
        if (call->text) {
            call->answer.str = call->text;
        } else {
            call->answer.type = RT_REDIS_FAILED;
            strcpy(call->answer.why, "out of memory");
        }
    }
    if (call->then)
        call->then(call->req, &call->answer);
    call->done = true;
    MHD_resume_connection(call->req->conn); /* last: the request may end from here on */
}

enum MHD_Result api_redis_call(api_request *req, api_redis_queue_fn queue, void *queue_arg,
                               api_redis_then_fn then)
{
    api_redis_release(req);
    struct api_redis_call *call = calloc(1, sizeof(*call));
    if (!call)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    call->req = req;
    call->then = then;
    req->redis_call = call;
    MHD_suspend_connection(req->conn); /* before the callback can resume it */
    if (queue(req->ctx->cluster, command_done, call, queue_arg) != 0) {
        MHD_resume_connection(req->conn);
        api_redis_release(req);
        return api_redis_unavailable(req, "too many commands waiting, or stopping");
    }
    return MHD_YES;
}

const rt_redis_answer *api_redis_answer(const api_request *req)
{
    const struct api_redis_call *call = req->redis_call;
    return call && call->done ? &call->answer : NULL;
}

void api_redis_release(api_request *req)
{
    struct api_redis_call *call = req->redis_call;
    if (!call)
        return;
    req->redis_call = NULL;
    free(call->text);
    free(call);
}

enum MHD_Result api_redis_unavailable(api_request *req, const char *why)
{
    req->retry_after = 1;
    return api_problemf(req, 503, "ClusterUnavailable",
                        "Redis, which decides actor names across the cluster, did not answer "
                        "(%s); retry",
                        why);
}
