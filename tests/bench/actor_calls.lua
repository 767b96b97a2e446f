-- wrk script: one actor call per request, answered when done:
-- POST /v1/actors/{id}/methods/incr {"args":[1]} with `Prefer: wait=5` (rayd answers 200
-- with the counter's new value). Used by tests/bench/run.sh, benchmark h, against rayd
-- and the bare server alike (the same requests, so the client does the same work).
--
-- The actor ids come from the file named by BENCH_ACTORS_FILE, one a line (run.sh creates
-- 32 Counter actors). wrk's request() does not know which connection it is filling, so
-- each thread walks the whole list in turn, the threads starting at different offsets:
-- consecutive requests of a thread go to different actors and every actor gets an even
-- share. Only the path comes from the list; scheme, host and port come from the wrk URL.
-- BENCH_ACTOR_METHOD names another method (its args are still [1]); with
-- BENCH_ACTORS_BY_PATH set, the file is BENCH_ACTORS_FILE followed by the wrk URL's path
-- without its slashes, so one run of wrk_abba calls two sets of actors (benchmark n).
local path = os.getenv("BENCH_ACTORS_FILE")
local method = os.getenv("BENCH_ACTOR_METHOD") or "incr"
local requests = {}
local n = 0
local next_thread = 0

function setup(thread)
    thread:set("thread_index", next_thread)
    next_thread = next_thread + 1
end

function init(args)
    if os.getenv("BENCH_ACTORS_BY_PATH") then
        path = path .. wrk.path:gsub("/", "")
    end
    local f = assert(io.open(path, "r"), "BENCH_ACTORS_FILE unreadable")
    local headers = { ["Content-Type"] = "application/json", ["Prefer"] = "wait=5" }
    for id in f:lines() do
        if #id > 0 then
            requests[#requests + 1] = wrk.format("POST", "/v1/actors/" .. id .. "/methods/" .. method,
                headers, '{"args":[1]}')
        end
    end
    f:close()
    assert(#requests > 0, "no actor ids in BENCH_ACTORS_FILE")
    -- spread the threads' starting points over the list
    n = (thread_index or 0) * 7919
end

function request()
    n = n + 1
    return requests[n % #requests + 1]
end
