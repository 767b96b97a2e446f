#!/usr/bin/env python3
"""Benchmark m: the Python client (clients/python) against the same calls made with raw
http.client on one keep-alive connection, both against one running rayd, interleaved.

    tests/bench/clients.py PORT [ROUNDS] [SEQ_CALLS] [BATCH_TASKS]

Two workloads, each measured ROUNDS times per side (default 6) in the order client, raw,
raw, client, ... so that drift in the machine's load hits both sides alike; a side's rate
is all its calls over all its time, the ratio client / raw:

- seq: SEQ_CALLS (default 1,000) sequential ``rd.get(add.remote(1, 2))``: a
  ``POST /v1/tasks`` then a ``GET /v1/objects/{ref}?timeout=...`` each. The raw side sends
  the same two requests and parses the same JSON; the client also sends an
  ``Idempotency-Key`` with each POST (its default), checks every answer is rayd's, and
  builds its ObjectRef and exception objects.
- batch: BATCH_TASKS (default 10,000) ``add`` tasks in one ``POST /v1/tasks/batch``
  (``rd.submit([add.bind(i, 1) ...])``), then one ``POST /v1/objects/get`` for all of them
  (``rd.get(refs)``). The raw side sends the same two requests.

Every result is checked (add(1, 2) == 3; task i gives i + 1) on both sides. Prints
key=value lines (as build/bench/taskbatch does): rates per side, each run's rate, ratios.
"""
from __future__ import annotations

import http.client
import json
import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import rayd  # noqa: E402


def raw_seq(port: int, n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = b'{"function":"add","args":[1,2]}'
    hdrs = {"Content-Type": "application/json"}
    t0 = time.perf_counter()
    for _ in range(n):
        conn.request("POST", "/v1/tasks", body, hdrs)
        r = conn.getresponse()
        receipt = json.loads(r.read())
        if r.status != 202:
            raise SystemExit("raw seq: POST /v1/tasks answered %d" % r.status)
        conn.request("GET", "/v1/objects/%s?timeout=60" % receipt["ref"])
        r = conn.getresponse()
        value = json.loads(r.read())
        if r.status != 200 or value != 3:
            raise SystemExit("raw seq: GET answered %d %r" % (r.status, value))
    dt = time.perf_counter() - t0
    conn.close()
    return n / dt


def client_seq(port: int, n: int) -> float:
    rd = rayd.connect("http://127.0.0.1:%d" % port)
    add = rd.function("add")
    t0 = time.perf_counter()
    for _ in range(n):
        if rd.get(add.remote(1, 2)) != 3:
            raise SystemExit("client seq: add(1, 2) != 3")
    dt = time.perf_counter() - t0
    rd.close()
    return n / dt


def raw_batch(port: int, n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    hdrs = {"Content-Type": "application/json"}
    t0 = time.perf_counter()
    body = json.dumps({"tasks": [{"function": "add", "args": [i, 1]} for i in range(n)]},
                      separators=(",", ":")).encode()
    conn.request("POST", "/v1/tasks/batch", body, hdrs)
    r = conn.getresponse()
    receipt = json.loads(r.read())
    if r.status != 202:
        raise SystemExit("raw batch: POST /v1/tasks/batch answered %d" % r.status)
    refs = [t["ref"] for t in receipt["tasks"]]
    conn.request("POST", "/v1/objects/get", json.dumps({"refs": refs, "timeout": 60}).encode(),
                 hdrs)
    r = conn.getresponse()
    doc = json.loads(r.read())
    values = [e["value"] for e in doc["objects"]]
    dt = time.perf_counter() - t0
    if values != [i + 1 for i in range(n)]:
        raise SystemExit("raw batch: wrong values")
    conn.close()
    return n / dt


def client_batch(port: int, n: int) -> float:
    rd = rayd.connect("http://127.0.0.1:%d" % port)
    add = rd.function("add")
    t0 = time.perf_counter()
    refs = rd.submit([add.bind(i, 1) for i in range(n)])
    values = rd.get(refs, timeout=60)
    dt = time.perf_counter() - t0
    if values != [i + 1 for i in range(n)]:
        raise SystemExit("client batch: wrong values")
    rd.close()
    return n / dt


def main() -> None:
    port = int(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    seq_n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    batch_n = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
    # warm-up, not counted: the server's tables and both sides' code paths
    client_seq(port, 100)
    raw_seq(port, 100)
    client_batch(port, batch_n)
    raw_batch(port, batch_n)
    out = {}
    for name, client, raw, n in (("seq", client_seq, raw_seq, seq_n),
                                 ("batch", client_batch, raw_batch, batch_n)):
        c_runs, r_runs = [], []
        for i in range(rounds):
            # client, raw, raw, client, ...
            order = ((client, c_runs), (raw, r_runs)) if i % 2 == 0 else \
                ((raw, r_runs), (client, c_runs))
            for fn, runs in order:
                runs.append(fn(port, n))
        c = len(c_runs) / sum(1 / x for x in c_runs)  # all calls / all time
        r = len(r_runs) / sum(1 / x for x in r_runs)
        out[name + "_client_rate"] = "%.0f" % c
        out[name + "_raw_rate"] = "%.0f" % r
        out[name + "_ratio"] = "%.3f" % (c / r)
        out[name + "_client_runs"] = " ".join("%.0f" % x for x in c_runs)
        out[name + "_raw_runs"] = " ".join("%.0f" % x for x in r_runs)
        out[name + "_calls"] = str(n)
    out["rounds"] = str(rounds)
    out["python"] = sys.version.split()[0]
    for k, v in out.items():
        print("%s=%s" % (k, v))


if __name__ == "__main__":
    main()
