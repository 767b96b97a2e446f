-- wrk script: POST a 100-byte body (application/octet-stream) on every request.
-- Used by tests/bench/run.sh, benchmark b, against rayd's /v1/objects and the bare
-- server alike. The URL (path included) comes from the wrk command line.
wrk.method = "POST"
wrk.body = string.rep("x", 99) .. "\n"
wrk.headers["Content-Type"] = "application/octet-stream"
