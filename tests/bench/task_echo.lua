-- wrk script: one task per request, answered when done. POST {"function":"echo","args":[1]}
-- with `Prefer: wait=5`: rayd runs the task and answers 200 with the result (`1`) and an
-- X-Ray-Ref header. Used by tests/bench/run.sh, benchmark f, against rayd's /v1/tasks and
-- the bare server alike (which answers {} to it). The URL comes from the wrk command line.
wrk.method = "POST"
wrk.body = '{"function":"echo","args":[1]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "wait=5"
