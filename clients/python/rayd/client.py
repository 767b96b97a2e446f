"""The client: Ray's API (put, get, wait, remote functions, actors) over rayd's REST API.

``rayd.connect()`` gives a ``Client``; everything else hangs off it. A client is safe to
share between threads.
"""
from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import threading
import time
import urllib.parse
import uuid
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, Union, overload)

from . import _codec
from ._http import Response, Transport, _context
from .errors import GetTimeoutError, ProtocolError, RaydError, SerializationError

# Longest wait asked of the server in one request; it caps waits at its RAYD_MAX_WAIT
# anyway, and the client asks again until its own deadline.
_MAX_WAIT = 60.0
# Tasks per POST /v1/tasks/batch (the server's limit).
_BATCH_MAX = 10000


class ObjectRef:
    """A reference to an object in rayd's store (Ray's ``ObjectRef``).

    ``id`` is rayd's ref; ``task_id`` the task that produces it, when this client submitted
    that task (``cancel`` needs it). Refs compare and hash by id.
    """

    __slots__ = ("id", "task_id", "_client")

    def __init__(self, id: str, client: Optional["Client"] = None,
                 task_id: Optional[str] = None):
        self.id, self._client, self.task_id = id, client, task_id

    def hex(self) -> str:
        """The ref as a string (Ray's ``ObjectRef.hex``)."""
        return self.id

    def __repr__(self) -> str:
        return "ObjectRef(%s)" % self.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (ObjectRef, (self.id, None, self.task_id))


class TaskCall:
    """A task described but not submitted (``fn.bind(...)``), for ``Client.submit``."""

    __slots__ = ("function", "args", "kwargs", "options")

    def __init__(self, function: "RemoteFunction", args: Tuple[Any, ...],
                 kwargs: Dict[str, Any]):
        self.function, self.args, self.kwargs = function, args, kwargs
        self.options = function._options

    def spec(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"function": self.function.name, "args": list(self.args)}
        if self.kwargs:
            d["kwargs"] = self.kwargs
        if self.options:
            d["options"] = self.options
        return d


class RemoteFunction:
    """A function tasks can run: built-in, from a module, or a registered endpoint (Ray's
    remote function). ``.remote(*args, **kwargs)`` submits a task and returns its
    ``ObjectRef`` (a list of them with ``num_returns`` > 1)."""

    _OPTIONS = ("num_returns", "max_retries", "retry_exceptions", "timeout", "name",
                "result_ttl")

    def __init__(self, client: "Client", name: str,
                 options: Optional[Mapping[str, Any]] = None):
        self._client, self.name = client, name
        self._options: Dict[str, Any] = dict(options or {})

    def options(self, **options: Any) -> "RemoteFunction":
        """The same function with task options: ``num_returns``, ``max_retries``,
        ``retry_exceptions``, ``timeout`` (seconds), ``name``, ``result_ttl`` (seconds
        the results are kept once stored; 0: no TTL)."""
        unknown = set(options) - set(self._OPTIONS)
        if unknown:
            raise TypeError("unknown task option(s) %s; rayd knows %s" % (
                ", ".join(sorted(unknown)), ", ".join(self._OPTIONS)))
        merged = dict(self._options)
        merged.update({k: v for k, v in options.items() if v is not None})
        return RemoteFunction(self._client, self.name, merged)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submits a task; returns its ref at once (refs with ``num_returns`` > 1)."""
        return self._client._submit_one(TaskCall(self, args, kwargs))

    def bind(self, *args: Any, **kwargs: Any) -> TaskCall:
        """The call, not submitted: pass many to ``Client.submit`` for one batch request."""
        return TaskCall(self, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("remote functions cannot be called directly: use %s.remote(...)"
                        % self.name)

    def __repr__(self) -> str:
        return "RemoteFunction(%s)" % self.name


class ActorMethod:
    """A method of an actor; ``.remote(*args, **kwargs)`` queues a call, returns its ref."""

    __slots__ = ("_handle", "name")

    def __init__(self, handle: "ActorHandle", name: str):
        self._handle, self.name = handle, name

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef:
        h = self._handle
        return h._client._call_method(h.actor_id, self.name, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("actor methods cannot be called directly: use .%s.remote(...)"
                        % self.name)


class ActorHandle:
    """A handle to an actor (Ray's ``ActorHandle``): ``handle.method.remote(...)``.

    Handles can be passed to tasks and returned by them (they travel as
    ``{"$actor": id}``)."""

    def __init__(self, client: "Client", actor_id: str, class_name: Optional[str] = None,
                 name: Optional[str] = None):
        self._client, self.actor_id = client, actor_id
        self.class_name, self.name = class_name, name

    def __getattr__(self, method: str) -> ActorMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return ActorMethod(self, method)

    def info(self) -> Dict[str, Any]:
        """The actor's state as rayd reports it (``GET /v1/actors/{id}``)."""
        info: Dict[str, Any] = self._client._json("GET", "/v1/actors/" + _q(self.actor_id))
        return info

    def __repr__(self) -> str:
        return "ActorHandle(%s%s)" % (self.class_name + ", " if self.class_name else "",
                                      self.actor_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other.actor_id == self.actor_id

    def __hash__(self) -> int:
        return hash(self.actor_id)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (ActorHandle, (None, self.actor_id, self.class_name, self.name))


class ActorClass:
    """An actor class (Ray's ``ActorClass``): ``.remote(*args)`` creates an actor;
    ``.options(name=, get_if_exists=, max_restarts=, max_pending_calls=, lifetime=)``
    first (``lifetime="detached"``: the actor outlives this client's session)."""

    _OPTIONS = ("name", "get_if_exists", "max_restarts", "max_pending_calls", "lifetime")

    def __init__(self, client: "Client", name: str,
                 options: Optional[Mapping[str, Any]] = None):
        self._client, self.name = client, name
        self._options: Dict[str, Any] = dict(options or {})

    def options(self, **options: Any) -> "ActorClass":
        unknown = set(options) - set(self._OPTIONS)
        if unknown:
            raise TypeError("unknown actor option(s) %s; rayd knows %s" % (
                ", ".join(sorted(unknown)), ", ".join(self._OPTIONS)))
        merged = dict(self._options)
        merged.update({k: v for k, v in options.items() if v is not None})
        return ActorClass(self._client, self.name, merged)

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Creates the actor (or, with ``name`` and ``get_if_exists``, finds it)."""
        return self._client._create_actor(self.name, args, kwargs, self._options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("actor classes cannot be instantiated directly: use %s.remote(...)"
                        % self.name)

    def __repr__(self) -> str:
        return "ActorClass(%s)" % self.name


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _ids(refs: Sequence[ObjectRef], what: str) -> List[str]:
    out = []
    for r in refs:
        if not isinstance(r, ObjectRef):
            raise TypeError("%s takes ObjectRefs, got %s" % (what, type(r).__name__))
        out.append(r.id)
    return out


@contextlib.contextmanager
def request_context(request_id: Optional[str] = None,
                    traceparent: Optional[str] = None) -> Iterator[None]:
    """Every request made inside carries these ``X-Request-Id`` and ``traceparent``
    headers (any client, any thread that copies the context). A worker sets them from the
    call it is answering, so calls made from a task keep its request id."""
    ctx = dict(_context.get() or {})
    if request_id is not None:
        ctx["X-Request-Id"] = request_id
    if traceparent is not None:
        ctx["traceparent"] = traceparent
    token = _context.set(ctx)
    try:
        yield
    finally:
        _context.reset(token)


class Client:
    """A connection to one rayd (see ``rayd.connect``). Thread-safe."""

    def __init__(self, address: Optional[str] = None, *, token: Optional[str] = None,
                 timeout: float = 30.0, retries: int = 3, check: bool = True,
                 idempotency_keys: bool = True, headers: Optional[Mapping[str, str]] = None,
                 session: Union[None, bool, float] = None):
        address = address or os.environ.get("RAYD_ADDRESS") or "http://localhost:8080"
        if "://" not in address:
            address = "http://" + address
        token = token if token is not None else os.environ.get("RAYD_API_TOKEN") or None
        self._t = Transport(address, token=token, timeout=timeout, retries=retries,
                            headers=headers)
        self.address = self._t.address
        self._idempotency_keys = idempotency_keys
        self._encode = _codec.encoder(ObjectRef, ActorHandle)
        self._hook = _codec.object_hook(self._ref, self._actor_ref)
        self._lock = threading.Lock()
        self._embedded: Any = None  # the Worker behind Client.remote, made on first use
        self.session_id: Optional[str] = None
        self._session_stop = threading.Event()
        self._session_thread: Optional[threading.Thread] = None
        if check:
            self._check()
        ttl = _session_ttl(session)
        if ttl:
            self._open_session(ttl)

    # ---- plumbing -------------------------------------------------------------------

    def _ref(self, id: str) -> ObjectRef:
        return ObjectRef(id, self)

    def _actor_ref(self, actor_id: str, class_name: Optional[str]) -> ActorHandle:
        return ActorHandle(self, actor_id, class_name)

    def _headers(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        h: Dict[str, str] = {}
        if self.session_id:
            h["Rayd-Session"] = self.session_id
        if extra:
            h.update(extra)
        return h

    def _request(self, method: str, path: str, body: Optional[bytes] = None, *,
                 content_type: str = "application/json", idempotent: bool = False,
                 safe: Optional[bool] = None, wait: float = 0.0,
                 headers: Optional[Mapping[str, str]] = None) -> Response:
        h = self._headers(headers)
        if body is not None:
            h["Content-Type"] = content_type
        if idempotent and self._idempotency_keys:
            h["Idempotency-Key"] = uuid.uuid4().hex
        res = self._t.request(method, path, body, headers=h, safe=safe, wait=wait)
        if "x-request-id" not in res.headers:
            raise res.not_rayd("no X-Request-Id header, which rayd sets on every answer")
        return res

    def _json(self, method: str, path: str, payload: Any = None, *, ok: Tuple[int, ...] = (
            200, 201, 202), hook: bool = False, **kw: Any) -> Any:
        body = self._encode(payload) if payload is not None else None
        res = self._request(method, path, body, **kw)
        if res.status not in ok:
            raise res.error()
        if not res.body:
            return None
        if not res.is_json():
            raise res.not_rayd("a JSON body was expected")
        return self._loads(res) if hook else res.json()

    def _revive(self, v: Any) -> Any:
        """rayd's conventions ($ref, $bytes, $actor) turned back into Python values, in a
        value parsed without them."""
        if isinstance(v, list):
            return [self._revive(x) if isinstance(x, (dict, list)) else x for x in v]
        if isinstance(v, dict):
            return self._hook({k: self._revive(x) if isinstance(x, (dict, list)) else x
                               for k, x in v.items()})
        return v

    def _loads(self, res: Response) -> Any:
        if not res.is_json():
            return res.body
        try:
            return json.loads(res.body, object_hook=self._hook)
        except ValueError:
            raise res.not_rayd("the JSON body does not parse") from None

    def _check(self) -> None:
        """GET /healthz: rayd answers 200 {"status":"ok"} with an X-Request-Id."""
        res = self._t.request("GET", "/healthz")
        if res.status != 200 or "x-request-id" not in res.headers:
            raise res.not_rayd("GET /healthz did not answer 200 with an X-Request-Id")
        try:
            doc = json.loads(res.body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("status") != "ok":
            raise res.not_rayd('GET /healthz did not answer {"status": "ok"}')

    # ---- objects ----------------------------------------------------------------------

    def put(self, value: Any, *, content_type: Optional[str] = None,
            ttl: Optional[float] = None) -> ObjectRef:
        """Stores a value (Ray's ``ray.put``): ``bytes`` as they are (``content_type``, by
        default ``application/octet-stream``), anything else as JSON. Refs inside the value
        are stored as refs."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            body = bytes(value)
            ct = content_type or "application/octet-stream"
        else:
            body = self._encode(value)
            ct = content_type or "application/json"
        path = "/v1/objects" + ("?ttl=%s" % ttl if ttl is not None else "")
        res = self._request("POST", path, body, content_type=ct, idempotent=True)
        if res.status != 201:
            raise res.error()
        return ObjectRef(res.json()["ref"], self)

    @overload
    def get(self, refs: ObjectRef, *, timeout: Optional[float] = None) -> Any: ...

    @overload
    def get(self, refs: Sequence[ObjectRef], *, timeout: Optional[float] = None
            ) -> List[Any]: ...

    def get(self, refs: Union[ObjectRef, Sequence[ObjectRef]], *,
            timeout: Optional[float] = None) -> Any:
        """The value of a ref, or the values of a list of refs in order (Ray's ``ray.get``).

        Waits up to ``timeout`` seconds (``None``: as long as it takes). An object still
        pending then raises ``GetTimeoutError``; a stored error raises its exception
        (``TaskError``, ``ActorDiedError``, ...), a lost object ``ObjectLostError``. JSON
        objects come back parsed, others as ``bytes``.
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        if isinstance(refs, ObjectRef):
            return self._get_one(refs, deadline, timeout)
        if not isinstance(refs, (list, tuple)):
            raise TypeError("get takes an ObjectRef or a list of them, got %s"
                            % type(refs).__name__)
        ids = _ids(refs, "get")
        if not ids:
            return []
        values: List[Any] = [None] * len(ids)
        todo = list(range(len(ids)))
        while True:
            wait = _remaining(deadline)
            doc = self._json("POST", "/v1/objects/get",
                             {"refs": [ids[i] for i in todo], "timeout": wait}, ok=(200,),
                             safe=True, wait=wait)
            entries = doc.get("objects") if isinstance(doc, dict) else None
            if not isinstance(entries, list) or len(entries) != len(todo):
                raise ProtocolError("%s answered POST /v1/objects/get with %d entries for %d "
                                    "refs" % (self.address, len(entries or []), len(todo)))
            pending = []
            revive = self._revive
            for i, e in zip(todo, entries):
                state = e.get("state")
                if state == "ready":
                    if "value" in e:
                        v = e["value"]
                        # only containers can hold $ref, $bytes or $actor
                        values[i] = revive(v) if isinstance(v, (dict, list)) else v
                    else:
                        values[i] = base64.b64decode(e.get("$bytes", ""))
                elif state in ("error", "lost"):
                    raise RaydError.from_problem(e.get("error") or {"title": "ObjectLost"})
                else:
                    pending.append(i)
            if not pending:
                return values
            todo = pending
            if deadline is not None and time.monotonic() >= deadline:
                raise GetTimeoutError(
                    "%d of %d objects still pending after %ss (first: %s)" % (
                        len(pending), len(ids), timeout, ids[pending[0]]),
                    problem={"title": "GetTimeout", "ref": ids[pending[0]]})

    def _get_one(self, ref: ObjectRef, deadline: Optional[float],
                 timeout: Optional[float]) -> Any:
        path = "/v1/objects/" + _q(ref.id)
        while True:
            wait = _remaining(deadline)
            res = self._request("GET", "%s?timeout=%s" % (path, _num(wait)), wait=wait)
            if res.status == 200:
                return self._loads(res)
            if res.status != 202:
                raise res.error()
            if deadline is not None and time.monotonic() >= deadline:
                raise GetTimeoutError("object %s still pending after %ss" % (ref.id, timeout),
                                      problem={"title": "GetTimeout", "ref": ref.id},
                                      request_id=res.request_id)

    def wait(self, refs: Sequence[ObjectRef], *, num_returns: int = 1,
             timeout: Optional[float] = None, fetch_local: bool = True
             ) -> Tuple[List[ObjectRef], List[ObjectRef]]:
        """Ray's ``ray.wait``: ``(ready, not_ready)`` once ``num_returns`` refs are resolved
        (a stored error counts as resolved) or ``timeout`` seconds passed (``None``: no
        limit). Both lists keep the input order."""
        ids = _ids(refs, "wait")
        if len(set(ids)) != len(ids):
            raise ValueError("wait requires a list of unique refs")
        if not ids:
            return [], []
        if not 1 <= num_returns <= len(ids):
            raise ValueError("num_returns must be between 1 and the number of refs (%d)"
                             % len(ids))
        by_id = {r.id: r for r in refs}
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            wait = _remaining(deadline)
            doc = self._json("POST", "/v1/wait", {"refs": ids, "num_returns": num_returns,
                                                  "timeout": wait}, ok=(200,), safe=True,
                             wait=wait)
            ready = [by_id[i] for i in doc["ready"]]
            if len(ready) >= num_returns or (deadline is not None and
                                             time.monotonic() >= deadline):
                return ready, [by_id[i] for i in doc["not_ready"]]

    def free(self, refs: Union[ObjectRef, Sequence[ObjectRef]]) -> None:
        """Frees objects now (later gets raise ``ObjectLostError``). Already gone: no-op."""
        for r in [refs] if isinstance(refs, ObjectRef) else refs:
            res = self._request("DELETE", "/v1/objects/" + _q(r.id))
            if res.status not in (204, 410):
                raise res.error()

    # ---- tasks ------------------------------------------------------------------------

    def function(self, name: str) -> RemoteFunction:
        """The function ``name`` (built-in, module or registered); nothing is checked until
        a task is submitted (an unknown name then raises ``NotFoundError``)."""
        return RemoteFunction(self, name)

    def functions(self) -> List[Dict[str, Any]]:
        """Every function tasks can call, as rayd describes them."""
        fns: List[Dict[str, Any]] = self._json("GET", "/v1/functions")["functions"]
        return fns

    def _receipt_refs(self, receipt: Mapping[str, Any]) -> Any:
        task_id = receipt.get("task_id")
        if "refs" in receipt:
            return [ObjectRef(r, self, task_id) for r in receipt["refs"]]
        return ObjectRef(receipt["ref"], self, task_id)

    def _encode_call(self, what: str, spec: Mapping[str, Any], args: Sequence[Any],
                     kwargs: Mapping[str, Any]) -> bytes:
        """The JSON of a call; a SerializationError names the argument that failed."""
        try:
            return self._encode(spec)
        except SerializationError:
            for i, a in enumerate(args):
                self._encode(a, "argument %d of %s (%s)" % (i, what, type(a).__name__))
            for k, a in kwargs.items():
                self._encode(a, "argument %s= of %s (%s)" % (k, what, type(a).__name__))
            raise

    def _submit_one(self, call: TaskCall) -> Any:
        body = self._encode_call(call.function.name, call.spec(), call.args, call.kwargs)
        res = self._request("POST", "/v1/tasks", body, idempotent=True)
        if res.status != 202:
            raise res.error()
        return self._receipt_refs(res.json())

    def submit(self, calls: Iterable[TaskCall]) -> List[Any]:
        """Submits many tasks in as few requests as possible (``POST /v1/tasks/batch``,
        10,000 at a time, each batch all or nothing); returns their refs in order.
        ``refs = rd.submit(add.bind(i, 1) for i in range(10000))``."""
        calls = list(calls)
        for c in calls:
            if not isinstance(c, TaskCall):
                raise TypeError("submit takes calls made with fn.bind(...), got %s"
                                % type(c).__name__)
        out: List[Any] = []
        for i in range(0, len(calls), _BATCH_MAX):
            chunk = calls[i:i + _BATCH_MAX]
            try:
                body = self._encode({"tasks": [c.spec() for c in chunk]})
            except SerializationError:
                for j, c in enumerate(chunk):
                    self._encode_call("call %d (%s)" % (i + j, c.function.name), c.spec(),
                                      c.args, c.kwargs)
                raise
            res = self._request("POST", "/v1/tasks/batch", body, idempotent=True)
            if res.status != 202:
                raise res.error()
            receipts = res.json()["tasks"]
            if all("ref" in r for r in receipts):
                out.extend([ObjectRef(r["ref"], self, r["task_id"]) for r in receipts])
            else:
                out.extend(self._receipt_refs(r) for r in receipts)
        return out

    def cancel(self, ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
        """Cancels the task that produces ``ref`` (Ray's ``ray.cancel``): one that has not
        started never runs; a running one is asked to stop. A task that already ended is
        left as it is. ``force`` and ``recursive`` are accepted for Ray's signature."""
        if not isinstance(ref, ObjectRef):
            raise TypeError("cancel takes an ObjectRef, got %s" % type(ref).__name__)
        if ref.task_id is None:
            raise ValueError("%r was not returned by a task this client submitted" % ref)
        res = self._request("POST", "/v1/tasks/%s/cancel" % _q(ref.task_id), safe=True)
        if res.status == 202 or (res.status == 409 and _title(res) == "Conflict"):
            return
        raise res.error()

    def task(self, ref_or_task_id: Union[ObjectRef, str]) -> Dict[str, Any]:
        """The state of a task (``GET /v1/tasks/{id}``), by id or by one of its refs."""
        tid = ref_or_task_id.task_id if isinstance(ref_or_task_id, ObjectRef) \
            else ref_or_task_id
        if tid is None:
            raise ValueError("%r was not returned by a task this client submitted"
                             % ref_or_task_id)
        info: Dict[str, Any] = self._json("GET", "/v1/tasks/" + _q(tid))
        return info

    # ---- actors -----------------------------------------------------------------------

    def actor_class(self, name: str) -> ActorClass:
        """The actor class ``name`` (built-in, module or registered)."""
        return ActorClass(self, name)

    def _create_actor(self, cls: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                      options: Mapping[str, Any]) -> ActorHandle:
        spec: Dict[str, Any] = {"class": cls, "args": list(args)}
        if kwargs:
            spec["kwargs"] = dict(kwargs)
        opts = dict(options)
        if "name" in opts:
            spec["name"] = opts.pop("name")
        if opts.pop("get_if_exists", False):
            spec["get_if_exists"] = True
        if opts:
            spec["options"] = opts
        # Creating an actor is not idempotent (no key); with a name and get_if_exists a
        # retry finds the same actor, so it is safe to repeat.
        body = self._encode_call(cls, spec, args, kwargs)
        res = self._request("POST", "/v1/actors", body, safe=bool(spec.get("get_if_exists")))
        if res.status not in (200, 201):
            raise res.error()
        info = res.json()
        return ActorHandle(self, info["actor_id"], info.get("class"), info.get("name"))

    def _call_method(self, actor_id: str, method: str, args: Sequence[Any],
                     kwargs: Mapping[str, Any]) -> ObjectRef:
        spec: Dict[str, Any] = {"args": list(args)}
        if kwargs:
            spec["kwargs"] = dict(kwargs)
        body = self._encode_call(method, spec, args, kwargs)
        res = self._request("POST", "/v1/actors/%s/methods/%s" % (_q(actor_id), _q(method)),
                            body, idempotent=True)
        if res.status != 202:
            raise res.error()
        return ObjectRef(res.json()["ref"], self)

    def get_actor(self, name: str) -> ActorHandle:
        """The live actor named ``name`` (Ray's ``ray.get_actor``); ``NotFoundError`` (a
        ``ValueError``) if there is none."""
        info = self._json("GET", "/v1/actors/by-name/" + _q(name), ok=(200,))
        return ActorHandle(self, info["actor_id"], info.get("class"), info.get("name"))

    def kill(self, actor: ActorHandle, *, no_restart: bool = True) -> None:
        """Kills an actor (Ray's ``ray.kill``): queued calls fail with ``ActorDiedError``,
        its name is freed. Killing a dead actor is fine."""
        if not isinstance(actor, ActorHandle):
            raise TypeError("kill takes an ActorHandle, got %s" % type(actor).__name__)
        res = self._request("DELETE", "/v1/actors/" + _q(actor.actor_id))
        if res.status != 204:
            raise res.error()

    # ---- your own code ----------------------------------------------------------------

    def worker(self, port: int = 0, *, host: str = "127.0.0.1", url: Optional[str] = None
               ) -> "Any":
        """A ``rayd.Worker`` serving your functions and actor classes over HTTP and
        registering them with this rayd (see ``rayd.worker``)."""
        from .worker import Worker
        return Worker(self, port=port, host=host, url=url)

    def remote(self, *args: Any, **options: Any) -> Any:
        """Ray's ``@ray.remote`` for a function or a class defined in this program.

        The first use starts a worker in this process (an HTTP server on a thread, on
        ``RAYD_WORKER_HOST``:``RAYD_WORKER_PORT``, default 127.0.0.1 and a free port;
        ``RAYD_WORKER_URL`` if rayd reaches it by another address) and registers the
        function or class with rayd under a name unique to this process. rayd must be
        allowed to call it (``RAYD_REMOTE_ALLOW``). Options as ``.options()`` takes them.
        """
        if len(args) == 1 and not options and callable(args[0]):
            return self._embedded_worker().remote(args[0])
        if args:
            raise TypeError("remote takes a function or a class, or only keyword options")
        return lambda target: self._embedded_worker().remote(target, **options)

    def _embedded_worker(self) -> Any:
        with self._lock:
            if self._embedded is None:
                from .worker import Worker
                port = int(os.environ.get("RAYD_WORKER_PORT") or 0)
                host = os.environ.get("RAYD_WORKER_HOST") or "127.0.0.1"
                w = Worker(self, port=port, host=host,
                           url=os.environ.get("RAYD_WORKER_URL") or None, embedded=True)
                w.start()
                self._embedded = w
                # A program that never closes its client still takes its registrations
                # away when it exits.
                atexit.register(self.close)
            return self._embedded

    # ---- the session -----------------------------------------------------------------

    def _open_session(self, ttl: float) -> None:
        """Opens a session (every request then names it, so what this client makes goes
        when it closes or stops renewing), and a thread that renews it while the client
        is idle."""
        answer = self._json("POST", "/v1/sessions", {"ttl": ttl}, ok=(201,))
        self.session_id = answer["session_id"]
        self._session_thread = threading.Thread(
            target=self._renew_session, args=(ttl / 3.0,), name="rayd-session", daemon=True)
        self._session_thread.start()
        atexit.register(self.close)

    def _renew_session(self, every: float) -> None:
        # Any request naming the session renews it; a GET of it is the cheapest.
        while not self._session_stop.wait(every):
            sid = self.session_id
            if not sid:
                return
            try:
                self._request("GET", "/v1/sessions/" + _q(sid), safe=True)
            except RaydError:
                pass  # the next request says what is wrong, to the code that made it

    def _close_session(self) -> None:
        self._session_stop.set()
        t, self._session_thread = self._session_thread, None
        if t is not None and t is not threading.current_thread():
            t.join()
        sid, self.session_id = self.session_id, None
        if sid:
            try:
                self._request("DELETE", "/v1/sessions/" + _q(sid))
            except RaydError:
                pass  # gone already (its lease ran out): nothing left to free

    # ---- the rest ---------------------------------------------------------------------

    def status(self) -> Dict[str, Any]:
        """rayd's ``/v1/status``: version, configuration, store, task and actor figures."""
        status: Dict[str, Any] = self._json("GET", "/v1/status")
        return status

    def ref(self, id: str) -> ObjectRef:
        """An ``ObjectRef`` for a ref id obtained elsewhere (curl, another program)."""
        return ObjectRef(id, self)

    def close(self) -> None:
        """Stops the in-process worker, if any, closes the session, if any (freeing what
        was made under it), and closes the connections."""
        with self._lock:
            w, self._embedded = self._embedded, None
        if w is not None:
            w.stop(unregister=True)
        self._close_session()
        self._t.close()

    def shutdown(self) -> None:
        """Ray's name for ``close``."""
        self.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "rayd.Client(%s)" % self.address


def _remaining(deadline: Optional[float]) -> float:
    if deadline is None:
        return _MAX_WAIT
    return round(min(_MAX_WAIT, max(0.0, deadline - time.monotonic())), 3)


def _session_ttl(session: Union[None, bool, float]) -> float:
    """The lease a client asks for: ``session`` given, else ``$RAYD_SESSION_TTL``; 0:
    no session."""
    if session is None:
        env = os.environ.get("RAYD_SESSION_TTL")
        try:
            session = float(env) if env else False
        except ValueError:
            raise ValueError("RAYD_SESSION_TTL is not a number of seconds: %r" % env)
    if session is True:
        return 30.0
    if session is False:
        return 0.0
    if not isinstance(session, (int, float)) or session < 0:
        raise ValueError("session must be True, False or a lease in seconds, got %r"
                         % (session,))
    return float(session)


def _num(x: float) -> str:
    return ("%.3f" % x).rstrip("0").rstrip(".") or "0"


def _title(res: Response) -> Optional[str]:
    try:
        title = json.loads(res.body).get("title")
    except (ValueError, AttributeError):
        return None
    return title if isinstance(title, str) else None


def connect(address: Optional[str] = None, *, token: Optional[str] = None,
            timeout: float = 30.0, retries: int = 3, check: bool = True,
            idempotency_keys: bool = True,
            headers: Optional[Mapping[str, str]] = None,
            session: Union[None, bool, float] = None) -> Client:
    """Connects to a rayd: ``address`` (default ``$RAYD_ADDRESS``, else
    ``http://localhost:8080``), ``token`` (default ``$RAYD_API_TOKEN``).

    ``timeout``: seconds a request may take beyond the wait it asks for. ``retries``: how
    many times a failed request is tried again when that is safe. ``check``: ask
    ``/healthz`` now, so that a wrong address fails here with a clear error.
    ``idempotency_keys``: send an ``Idempotency-Key`` with each ``POST`` that creates
    something, so that retrying it is safe. ``headers``: extra headers on every request.
    ``session``: open a rayd session for this client (``True``: a 30 s lease, or the
    lease in seconds; default ``$RAYD_SESSION_TTL``, unset: none). Objects, tasks and
    actors made through the client then belong to it and are freed, cancelled and killed
    when the client closes, or when its process dies and the lease runs out (a thread
    renews it meanwhile); actors created with ``lifetime="detached"`` stay.
    """
    return Client(address, token=token, timeout=timeout, retries=retries, check=check,
                  idempotency_keys=idempotency_keys, headers=headers, session=session)
