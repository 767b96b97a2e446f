"""The worker side: Python functions and classes served over HTTP for rayd to call.

rayd runs no Python; it calls HTTP endpoints registered with it. A ``Worker`` is such an
endpoint (``http.server`` on threads, keep-alive) that knows rayd's calling convention::

    rd = rayd.connect()
    worker = rd.worker(port=9000)

    @worker.function
    def wordcount(text):
        return len(text.split())

    @worker.actor_class
    class Account:                       # state held by rayd, the endpoint stateless
        def __init__(self, balance=0): self.balance = balance
        def deposit(self, n): self.balance += n; return self.balance

    worker.serve()                       # registers with rayd, serves until stopped

What rayd sends and what the worker answers:

- A function gets ``POST /functions/{name}`` ``{"task_id", "function", "attempt", "args",
  "kwargs"}``. Arguments are decoded (``{"$bytes"}`` to ``bytes``, nested ``{"$ref"}`` to
  ``ObjectRef``, ``{"$actor"}`` to ``ActorHandle``); the return value is encoded back
  (``bytes`` answer as ``application/octet-stream``, anything else as JSON).
- An actor class gets ``POST /classes/{name}`` ``{"actor_id", "class", "method", "args",
  "kwargs", "state"}``. The instance is rebuilt from ``state`` (its ``__dict__``, or
  ``__setstate__``), the method runs, and the worker answers ``{"result", "state"}``; rayd
  keeps the state only when the call succeeds. State must be JSON (as arguments are).
- An exception in your code answers ``500`` ``application/problem+json`` with ``title``
  the exception's class, ``detail`` its message, and ``exception`` (qualified class name)
  and ``traceback`` members. rayd stores a ``TaskError`` whose ``cause`` is that problem
  and does not retry it (unless the task has ``retry_exceptions``).
- ``raise rayd.RetryableError(...)`` asks for another attempt instead: the worker answers
  ``503`` ``application/problem+json``, which rayd retries with backoff up to the task's
  ``max_retries``; past them it stores ``WorkerUnavailable`` whose ``cause`` is that
  problem. Actor calls are not retried by rayd: there it fails the call
  (``WorkerUnavailable``) and the actor keeps its state.

Inside a call, ``rayd.current_call()`` tells the task id, attempt and request id, and
requests made through any client carry the call's ``X-Request-Id`` and ``traceparent``.
"""
from __future__ import annotations

import contextvars
import http.server
import json
import logging
import re
import threading
import traceback
import urllib.parse
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from . import _codec
from ._http import _context
from .client import ActorClass, Client, RemoteFunction
from .errors import RetryableError

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger("rayd.worker")

_NAME_OK = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class CallInfo:
    """What a running call knows about itself (``rayd.current_call()``)."""

    __slots__ = ("task_id", "function", "attempt", "actor_id", "method", "request_id",
                 "traceparent")

    def __init__(self, *, task_id: Optional[str] = None, function: Optional[str] = None,
                 attempt: Optional[int] = None, actor_id: Optional[str] = None,
                 method: Optional[str] = None, request_id: Optional[str] = None,
                 traceparent: Optional[str] = None):
        self.task_id, self.function, self.attempt = task_id, function, attempt
        self.actor_id, self.method = actor_id, method
        self.request_id, self.traceparent = request_id, traceparent

    def __repr__(self) -> str:
        return "CallInfo(%s)" % ", ".join("%s=%r" % (k, getattr(self, k))
                                          for k in self.__slots__ if getattr(self, k))


_current: "contextvars.ContextVar[Optional[CallInfo]]" = contextvars.ContextVar(
    "rayd_current_call", default=None)


def current_call() -> Optional[CallInfo]:
    """The call this thread is answering for rayd, or ``None`` outside a worker call."""
    return _current.get()


def _problem(e: BaseException, status: int = 500) -> Dict[str, Any]:
    cls = type(e)
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # the worker's own frames say nothing about the user's error
    qual = cls.__qualname__ if cls.__module__ == "builtins" else \
        "%s.%s" % (cls.__module__, cls.__qualname__)
    return {"type": "urn:python:exception:" + qual, "title": cls.__name__, "status": status,
            "detail": str(e) or cls.__name__, "exception": qual,
            "traceback": "".join(traceback.format_exception(cls, e, tb))}


class Worker:
    """Serves functions and actor classes for rayd (see the module's docstring).

    ``port`` 0 picks a free one. ``host`` is the address to listen on; ``url`` the address
    rayd reaches the worker by (default ``http://{host}:{port}``; set it when rayd sees the
    worker under another name, e.g. in containers). The URL must be allowed by rayd's
    ``RAYD_REMOTE_ALLOW``.
    """

    def __init__(self, client: Client, *, port: int = 0, host: str = "127.0.0.1",
                 url: Optional[str] = None, embedded: bool = False):
        self.client = client
        self._host, self._port, self._url = host, port, url
        self._embedded = embedded
        self._suffix = uuid.uuid4().hex[:8]
        self._functions: Dict[str, Tuple[Callable[..., Any], Dict[str, Any]]] = {}
        self._classes: Dict[str, Tuple[type, Dict[str, Any]]] = {}
        self._server: Optional[http.server.ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._hook = _codec.object_hook(client._ref, client._actor_ref)
        self._encode = client._encode

    # ---- declaring -------------------------------------------------------------------

    def function(self, fn: Optional[F] = None, *, name: Optional[str] = None,
                 timeout: float = 60, max_concurrency: int = 0,
                 max_retries: int = 3) -> Any:
        """Decorator: serve ``fn`` as the remote function ``name`` (default its
        ``__name__``). ``timeout``, ``max_concurrency`` and ``max_retries`` are the
        registration's (see ``PUT /v1/functions/{name}``). Returns ``fn`` unchanged, with
        ``fn.remote``/``fn.options`` added for submitting tasks."""

        def wrap(f: F) -> F:
            n = self._name(name or f.__name__)
            reg = {"timeout": timeout, "max_concurrency": max_concurrency,
                   "max_retries": max_retries}
            with self._lock:
                self._functions[n] = (f, reg)
                running = self._server is not None
            if running:
                self._register_function(n, reg)
            rf = RemoteFunction(self.client, n)
            try:
                f.remote = rf.remote  # type: ignore[attr-defined]
                f.options = rf.options  # type: ignore[attr-defined]
                f.bind = rf.bind  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return f

        return wrap(fn) if fn is not None else wrap

    def actor_class(self, cls: Optional[type] = None, *, name: Optional[str] = None,
                    timeout: float = 60) -> Any:
        """Decorator: serve ``cls`` as the remote actor class ``name`` (default its
        ``__name__``). Its state (``__dict__``, or ``__getstate__``/``__setstate__``)
        lives in rayd between calls. Returns ``cls``, with ``cls.remote``/``cls.options``
        added for creating actors."""

        def wrap(c: type) -> type:
            n = self._name(name or c.__name__)
            reg = {"timeout": timeout}
            with self._lock:
                self._classes[n] = (c, reg)
                running = self._server is not None
            if running:
                self._register_class(n, reg)
            ac = ActorClass(self.client, n)
            c.remote = ac.remote  # type: ignore[attr-defined]
            c.options = ac.options  # type: ignore[attr-defined]
            return c

        return wrap(cls) if cls is not None else wrap

    def remote(self, target: Any, **options: Any) -> Any:
        """``Client.remote``'s work: a ``RemoteFunction`` or ``ActorClass`` for a function
        or class of this program, registered under a name unique to this worker."""
        name = self._unique(target.__name__)
        if isinstance(target, type):
            self.actor_class(target, name=name)
            ac = ActorClass(self.client, name)
            return ac.options(**options) if options else ac
        self.function(target, name=name)
        rf = RemoteFunction(self.client, name)
        return rf.options(**options) if options else rf

    def _unique(self, name: str) -> str:
        base = "%s-%s" % (re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100], self._suffix)
        n, i = base, 1
        with self._lock:
            while n in self._functions or n in self._classes:
                i += 1
                n = "%s-%d" % (base, i)
        return n

    @staticmethod
    def _name(n: str) -> str:
        if not _NAME_OK.match(n):
            raise ValueError("rayd names are 1 to 128 characters of [A-Za-z0-9_.-], got %r"
                             % n)
        return n

    # ---- life --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The address rayd calls this worker at (known once started)."""
        if self._url:
            return self._url.rstrip("/")
        if self._server is None:
            raise RuntimeError("the worker is not started")
        host = self._host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = "[%s]" % host
        return "http://%s:%d" % (host, self._server.server_address[1])

    def start(self) -> "Worker":
        """Listens (on a thread), then registers every function and class with rayd."""
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self._host, self._port), _Handler)
            server.worker = self
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever,
                                            name="rayd-worker", daemon=True)
            self._thread.start()
            functions = dict(self._functions)
            classes = dict(self._classes)
        try:
            for n, (_, reg) in functions.items():
                self._register_function(n, reg)
            for n, (_, reg) in classes.items():
                self._register_class(n, reg)
        except BaseException:
            self.stop()
            raise
        return self

    def serve(self) -> None:
        """``start()``, then serve until ``stop()`` or Ctrl-C."""
        self.start()
        print("rayd worker serving %d function(s) and %d class(es) at %s" % (
            len(self._functions), len(self._classes), self.url), flush=True)
        try:
            assert self._thread is not None
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self, *, unregister: bool = False) -> None:
        """Stops serving; with ``unregister``, also removes the registrations from rayd."""
        with self._lock:
            server, self._server = self._server, None
            functions, classes = list(self._functions), list(self._classes)
        if server is None:
            return
        if unregister:
            for n in functions:
                self._unregister("/v1/functions/", n)
            for n in classes:
                self._unregister("/v1/actor-classes/", n)
        server.shutdown()
        server.server_close()

    def __enter__(self) -> "Worker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop(unregister=self._embedded)

    def _register_function(self, name: str, reg: Dict[str, Any]) -> None:
        body = dict(reg, url="%s/functions/%s" % (self.url, name))
        self.client._json("PUT", "/v1/functions/" + name, body, ok=(200, 201))

    def _register_class(self, name: str, reg: Dict[str, Any]) -> None:
        body = dict(reg, url="%s/classes/%s" % (self.url, name))
        self.client._json("PUT", "/v1/actor-classes/" + name, body, ok=(200, 201))

    def _unregister(self, prefix: str, name: str) -> None:
        try:
            self.client._request("DELETE", prefix + name)
        except Exception:  # best effort: rayd may be gone already
            pass

    # ---- calls ---------------------------------------------------------------------------

    def _run_function(self, name: str, body: Dict[str, Any]) -> Any:
        entry = self._functions.get(name)
        if entry is None:
            raise LookupError("this worker has no function %r" % name)
        args, kwargs = _args(body)
        return entry[0](*args, **kwargs)

    def _run_method(self, name: str, body: Dict[str, Any]) -> Dict[str, Any]:
        entry = self._classes.get(name)
        if entry is None:
            raise LookupError("this worker has no class %r" % name)
        cls: Any = entry[0]
        method = body.get("method")
        args, kwargs = _args(body)
        inst = cls.__new__(cls)
        if method == "__init__":
            inst.__init__(*args, **kwargs)
            result = None
        else:
            if not isinstance(method, str) or method.startswith("_") or \
                    not callable(getattr(cls, method, None)):
                raise AttributeError("%s has no method %r" % (cls.__name__, method))
            _set_state(inst, body.get("state"))
            result = getattr(inst, method)(*args, **kwargs)
        return {"result": result, "state": _get_state(inst)}


def _args(body: Dict[str, Any]) -> Tuple[List[Any], Dict[str, Any]]:
    args = body.get("args") or []
    kwargs = body.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise TypeError("args must be a list and kwargs an object")
    return args, kwargs


def _get_state(inst: Any) -> Any:
    getstate = getattr(type(inst), "__getstate__", None)
    if getstate is not None and getstate is not getattr(object, "__getstate__", None):
        return inst.__getstate__()
    return dict(inst.__dict__) if hasattr(inst, "__dict__") else None


def _set_state(inst: Any, state: Any) -> None:
    if hasattr(type(inst), "__setstate__"):
        inst.__setstate__(state)
    elif isinstance(state, dict):
        inst.__dict__.update(state)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # rayd may open many connections at once
    worker: Worker


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: rayd reuses its connections
    server_version = "rayd-python-worker/0.1"
    # Headers and body go out as separate writes: without this, Nagle's algorithm holds the
    # body back until the peer's delayed ACK, ~40 ms per call.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet; errors go to stderr
        pass

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, doc: Any, content_type: str = "application/json"
                   ) -> None:
        self._send(status, json.dumps(doc).encode(), content_type)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            return self._send(200, b'{"status":"ok"}', "application/json")
        self._send_json(404, {"type": "about:blank", "title": "NotFound", "status": 404,
                              "detail": "no such endpoint: GET " + self.path},
                        "application/problem+json")

    def do_POST(self) -> None:
        worker = self.server.worker
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind, _, name = self.path.strip("/").partition("/")
        name = urllib.parse.unquote(name)
        try:
            body = json.loads(raw or b"null", object_hook=worker._hook)
        except ValueError:
            return self._send_json(400, {"type": "about:blank", "title": "BadRequest",
                                         "status": 400, "detail": "the body is not JSON"},
                                   "application/problem+json")
        if not isinstance(body, dict) or kind not in ("functions", "classes"):
            return self._send_json(404, {"type": "about:blank", "title": "NotFound",
                                         "status": 404,
                                         "detail": "no such endpoint: POST " + self.path},
                                   "application/problem+json")
        info = CallInfo(task_id=body.get("task_id"), function=body.get("function"),
                        attempt=body.get("attempt"), actor_id=body.get("actor_id"),
                        method=body.get("method"),
                        request_id=self.headers.get("X-Request-Id"),
                        traceparent=self.headers.get("traceparent"))
        ctx: Dict[str, str] = {}
        if info.request_id:
            ctx["X-Request-Id"] = info.request_id
        if info.traceparent:
            ctx["traceparent"] = info.traceparent
        t1, t2 = _current.set(info), _context.set(ctx or None)
        try:
            if kind == "functions":
                result = worker._run_function(name, body)
            else:
                result = worker._run_method(name, body)
            if isinstance(result, (bytes, bytearray, memoryview)):
                return self._send(200, bytes(result), "application/octet-stream")
            data = worker._encode(result)
        except RetryableError as e:
            _log.warning("%s %s attempt %s asks for a retry: %s", kind, name, info.attempt, e)
            # rayd retries an attempt answered 503 (within max_retries) and keeps this
            # problem as the cause when none is left.
            return self._send_json(503, _problem(e, 503), "application/problem+json")
        except LookupError as e:
            if "this worker has no" in str(e):
                return self._send_json(404, dict(_problem(e, 404), title="NotFound"),
                                       "application/problem+json")
            return self._send_json(500, _problem(e), "application/problem+json")
        except Exception as e:
            return self._send_json(500, _problem(e), "application/problem+json")
        finally:
            _current.reset(t1)
            _context.reset(t2)
        self._send(200, data, "application/json")


def worker(client: Optional[Client] = None, port: int = 0, *, host: str = "127.0.0.1",
           url: Optional[str] = None) -> Worker:
    """A ``Worker`` for ``client`` (default: ``rayd.connect()``)."""
    return Worker(client or Client(), port=port, host=host, url=url)
