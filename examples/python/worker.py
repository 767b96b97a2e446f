#!/usr/bin/env python3
"""An example rayd worker: remote functions and a remote actor class over plain HTTP.

rayd does not run your code; it calls it. Register an endpoint of this worker with rayd
and every task (or actor call) becomes one HTTP POST from rayd to here. Standard library
only: copy this file anywhere with Python 3.8+ and run it.

Run:
    python3 examples/python/worker.py 9000        # port from argv, else $PORT, else 9000
    rayd --remote-allow http://127.0.0.1:9000     # rayd may call this worker

Register and call (examples/drive.sh does all of this for you):
    curl -X PUT localhost:8080/v1/functions/wordcount \
         -d '{"url":"http://127.0.0.1:9000/functions/wordcount","timeout":10}'
    curl -H 'Prefer: wait=5' localhost:8080/v1/tasks \
         -d '{"function":"wordcount","args":["the cat and the hat"]}'          # -> 5
    curl -X PUT localhost:8080/v1/actor-classes/Account \
         -d '{"url":"http://127.0.0.1:9000/classes/Account"}'
    curl localhost:8080/v1/actors -d '{"class":"Account","args":[100]}'        # actor_id
    curl -H 'Prefer: wait=5' localhost:8080/v1/actors/ID/methods/deposit -d '{"args":[5]}'

The calling convention (see rayd's openapi/openapi.yaml):
  - A function receives POST {"task_id", "function", "attempt", "args", "kwargs"} with the
    submitting request's X-Request-Id. A 2xx answer's body, with its Content-Type, is the
    task's result; any other status is a TaskError (an application/problem+json body
    becomes its "cause"). rayd retries only when it cannot reach the worker, it does
    not answer in time, or it answers 503 ("not now, retry me"); "attempt" counts from 1.
    A W3C traceparent header is passed on when the submitting request had one.
  - An actor class receives POST {"actor_id", "class", "method", "args", "kwargs",
    "state"} and answers {"result": value, "state": new_state}. rayd keeps the state:
    "__init__" gets state null and returns the first state; every later call gets the
    state the previous successful call returned. A failed call (non-2xx) changes nothing.
    The worker keeps nothing between calls, so you can run many copies behind a balancer.
  - Binary objects passed as {"$ref": ...} arrive as {"$bytes": base64, "content_type"}.

Endpoints (all POST unless said otherwise):
  /functions/wordcount     args [text] -> number of whitespace-separated words
  /functions/slow          kwargs {"seconds": s} (or args [s]) -> sleeps, {"slept": s};
                           stops early when rayd hangs up (a cancelled task)
  /functions/fail          args [message] -> 500 problem+json (title "FailedOnPurpose")
  /functions/byte_length   args [{"$bytes": b64, "content_type"} or a string] -> byte count
  /functions/request_info  -> {"request_id", "task_id", "function", "attempt", "traceparent"}
                           as received
  /functions/overloaded    -> 503 problem+json (title "Overloaded"), every time
  /functions/big           kwargs {"size": n} -> n bytes of application/octet-stream
  /classes/Account         __init__(balance=0), deposit(n), withdraw(n) (409 problem+json
                           when the balance is short), balance(); and, as for any class,
                           request_info() -> {"request_id", "traceparent"} as received
  GET /stats               per registered function name: calls, in_flight, max_in_flight,
                           disconnects (calls rayd abandoned); DELETE /stats resets them
  GET /healthz             200 "ok"
"""
import base64
import json
import os
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Problem(Exception):
    """An RFC 9457 problem answer; rayd keeps it as the TaskError's cause."""

    def __init__(self, status, title, detail, **extensions):
        super().__init__(detail)
        self.status, self.title, self.detail, self.extensions = status, title, detail, extensions

    def body(self):
        doc = {"type": "https://example.com/problems/" + self.title, "title": self.title,
               "status": self.status, "detail": self.detail}
        doc.update(self.extensions)
        return doc


class Raw:
    """A result that is not JSON: bytes with their own Content-Type."""

    def __init__(self, data, content_type="application/octet-stream"):
        self.data, self.content_type = data, content_type


class ClientGone(Exception):
    """rayd closed the connection (the task was cancelled or timed out)."""


# ---- statistics, per registered function name (for tests and curiosity) -------------------

_stats_lock = threading.Lock()
_stats = {}


def _stat(name):
    return _stats.setdefault(name, {"calls": 0, "in_flight": 0, "max_in_flight": 0,
                                    "disconnects": 0})


# ---- functions: each takes (args, kwargs, call) and returns a JSON value or Raw --------------

def _arg(args, kwargs, index, key, default=None):
    if key in kwargs:
        return kwargs[key]
    if len(args) > index:
        return args[index]
    return default


def wordcount(args, kwargs, call):
    text = _arg(args, kwargs, 0, "text")
    if not isinstance(text, str):
        raise Problem(400, "BadArgument", "wordcount takes one string: [text]")
    return len(text.split())


def slow(args, kwargs, call):
    seconds = _arg(args, kwargs, 0, "seconds", 1)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise Problem(400, "BadArgument", "slow takes a number of seconds")
    call.sleep(seconds)
    return {"slept": seconds}


def fail(args, kwargs, call):
    message = _arg(args, kwargs, 0, "message", "failing as asked")
    raise Problem(500, "FailedOnPurpose", str(message), function=call.body.get("function"))


def byte_length(args, kwargs, call):
    value = _arg(args, kwargs, 0, "data")
    if isinstance(value, dict) and "$bytes" in value:
        try:
            data = base64.b64decode(value["$bytes"], validate=True)
        except ValueError:
            raise Problem(400, "BadArgument", "$bytes is not valid base64")
        return {"bytes": len(data), "content_type": value.get("content_type")}
    if isinstance(value, str):
        return {"bytes": len(value.encode("utf-8")), "content_type": None}
    raise Problem(400, "BadArgument", "byte_length takes a $bytes value or a string")


def request_info(args, kwargs, call):
    return {"request_id": call.headers.get("X-Request-Id"), "task_id": call.body.get("task_id"),
            "function": call.body.get("function"), "attempt": call.body.get("attempt"),
            "traceparent": call.headers.get("traceparent")}


def overloaded(args, kwargs, call):
    raise Problem(503, "Overloaded", "the worker is overloaded, retry later",
                  attempt=call.body.get("attempt"))


def big(args, kwargs, call):
    size = _arg(args, kwargs, 0, "size", 2 << 20)
    if not isinstance(size, int) or size < 0 or size > (1 << 30):
        raise Problem(400, "BadArgument", "big takes a size in bytes, at most 1 GiB")
    return Raw(b"x" * size)


FUNCTIONS = {"wordcount": wordcount, "slow": slow, "fail": fail, "byte_length": byte_length,
             "request_info": request_info, "big": big, "overloaded": overloaded}


# ---- an actor class: (state, args, kwargs) -> (result, new_state) ---------------------------

def _amount(args, kwargs):
    n = _arg(args, kwargs, 0, "n")
    if not isinstance(n, (int, float)) or isinstance(n, bool) or n <= 0:
        raise Problem(400, "BadArgument", "the amount must be a positive number")
    return n


def account(method, state, args, kwargs):
    if method == "__init__":
        balance = _arg(args, kwargs, 0, "balance", 0)
        if not isinstance(balance, (int, float)) or isinstance(balance, bool) or balance < 0:
            raise Problem(400, "BadArgument", "the opening balance must be a number >= 0")
        return None, {"balance": balance}
    if not isinstance(state, dict) or "balance" not in state:
        raise Problem(400, "BadState", "no state: was the actor created?")
    balance = state["balance"]
    if method == "deposit":
        balance += _amount(args, kwargs)
        return balance, {"balance": balance}
    if method == "withdraw":
        n = _amount(args, kwargs)
        if n > balance:
            raise Problem(409, "InsufficientFunds",
                          "cannot withdraw %s: the balance is %s" % (n, balance),
                          balance=balance, requested=n)
        balance -= n
        return balance, {"balance": balance}
    if method == "balance":
        return balance, state
    raise Problem(404, "NoSuchMethod", "Account has no method %r" % method,
                  methods=["deposit", "withdraw", "balance"])


CLASSES = {"Account": account}


# ---- HTTP --------------------------------------------------------------------------------

class Call:
    """What a function sees of its request."""

    def __init__(self, handler, body):
        self.handler, self.body, self.headers = handler, body, handler.headers

    def sleep(self, seconds):
        """Sleeps, but raises ClientGone as soon as rayd closes the connection."""
        sock = self.handler.connection
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select([sock], [], [], min(left, 0.05))
            if readable:
                try:
                    peek = sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    peek = b""
                if not peek:  # rayd sends nothing while it waits, so this is a hang-up
                    raise ClientGone()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: rayd reuses connections
    server_version = "rayd-example-worker/1"
    # Headers and body go out as separate writes; without this, Nagle's algorithm holds the
    # body back for the peer's delayed ACK, about 40 ms per call.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if os.environ.get("WORKER_VERBOSE"):
            sys.stderr.write("worker: " + (fmt % args) + "\n")

    def _send(self, status, data, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status, value, content_type="application/json"):
        self._send(status, json.dumps(value).encode(), content_type)

    def _problem(self, p):
        self._json(p.status, p.body(), "application/problem+json")

    def do_GET(self):
        if self.path == "/healthz":
            return self._send(200, b"ok\n", "text/plain")
        if self.path == "/stats":
            with _stats_lock:
                return self._json(200, _stats)
        self._problem(Problem(404, "NotFound", "no such endpoint: GET " + self.path))

    def do_DELETE(self):
        if self.path == "/stats":
            with _stats_lock:
                _stats.clear()
            return self._send(204, b"", "text/plain")
        self._problem(Problem(404, "NotFound", "no such endpoint: DELETE " + self.path))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return self._problem(Problem(400, "BadRequest", "the body is not JSON"))
        if not isinstance(body, dict):
            return self._problem(Problem(400, "BadRequest", "the body must be a JSON object"))
        args = body.get("args") or []
        kwargs = body.get("kwargs") or {}
        kind, _, name = self.path.strip("/").partition("/")
        if kind == "functions" and name in FUNCTIONS:
            return self._run_function(FUNCTIONS[name], body, args, kwargs)
        if kind == "classes" and name in CLASSES:
            if body.get("method") == "request_info":  # any class: what arrived with the call
                return self._json(200, {"result": {
                    "request_id": self.headers.get("X-Request-Id"),
                    "traceparent": self.headers.get("traceparent")}, "state": body.get("state")})
            try:
                result, state = CLASSES[name](body.get("method"), body.get("state"), args,
                                              kwargs)
            except Problem as p:
                return self._problem(p)
            return self._json(200, {"result": result, "state": state})
        self._problem(Problem(404, "NotFound", "no such endpoint: POST " + self.path))

    def _run_function(self, fn, body, args, kwargs):
        key = body.get("function") or self.path
        with _stats_lock:
            st = _stat(key)
            st["calls"] += 1
            st["in_flight"] += 1
            st["max_in_flight"] = max(st["max_in_flight"], st["in_flight"])
        try:
            result = fn(args, kwargs, Call(self, body))
        except ClientGone:
            with _stats_lock:
                st["disconnects"] += 1
            self.close_connection = True
            return
        except Problem as p:
            return self._problem(p)
        finally:
            with _stats_lock:
                st["in_flight"] -= 1
        if isinstance(result, Raw):
            return self._send(200, result.data, result.content_type)
        self._json(200, result)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # rayd may open hundreds of connections at once


def main():
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "9000"))
    host = os.environ.get("HOST", "127.0.0.1")
    server = Server((host, port), Handler)
    print("worker listening on http://%s:%d" % (host, server.server_address[1]), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()


if __name__ == "__main__":
    main()
