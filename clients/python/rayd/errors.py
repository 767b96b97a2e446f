"""rayd's errors as Python exceptions, named as Ray's.

Every error rayd answers is an RFC 9457 problem (``application/problem+json``). The client
turns it into an exception of the class its ``title`` names, carrying the problem's members
(``status``, ``detail``, ``instance``, ``ref``, ``task_id``, ...) and its whole ``cause``
chain, each cause an exception of its own, also set as ``__cause__`` so that Python's
traceback shows the chain.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Type

__all__ = [
    "RaydError", "RayError", "TaskError", "RayTaskError", "ObjectLostError", "GetTimeoutError",
    "ActorDiedError", "RayActorError", "TaskCancelledError", "WorkerUnavailableError",
    "WorkerCrashedError", "ObjectStoreFullError", "APIError", "BadRequestError",
    "UnauthorizedError", "ForbiddenError", "NotFoundError", "SessionNotFoundError",
    "ConflictError", "ModuleNotLoadedError",
    "PayloadTooLargeError", "TooManyRequestsError", "UnavailableError",
    "RaydConnectionError", "ProtocolError", "SerializationError", "RetryableError",
]


class RaydError(Exception):
    """The base class of every error this client raises (Ray's ``RayError``).

    Attributes mirror the problem+json body: ``title`` (the error kind, e.g. ``TaskError``),
    ``status`` (its HTTP status), ``detail`` (the message), ``type``, ``instance``,
    ``problem`` (the whole body as a dict, extensions included), ``cause`` (the error that
    caused this one, a ``RaydError``, or ``None``) and ``request_id`` (the ``X-Request-Id``
    of the answer that carried it, when there was one).
    """

    title: str = "RaydError"

    def __init__(self, detail: str = "", *, problem: Optional[Mapping[str, Any]] = None,
                 cause: Optional["RaydError"] = None, request_id: Optional[str] = None):
        self.problem: Dict[str, Any] = dict(problem or {})
        self.detail: str = detail or str(self.problem.get("detail") or "")
        self.title = str(self.problem.get("title") or type(self).title)
        self.status: Optional[int] = self.problem.get("status")
        self.type: Optional[str] = self.problem.get("type")
        self.instance: Optional[str] = self.problem.get("instance")
        self.cause: Optional[RaydError] = cause
        self.request_id = request_id
        if cause is not None:
            self.__cause__ = cause
        super().__init__(self.detail)

    def __getattr__(self, name: str) -> Any:
        # Extension members (ref, task_id, actor_id, function, method, remote_status, ...)
        # read as attributes; absent ones are None.
        if name.startswith("_") or name == "problem":
            raise AttributeError(name)
        return self.__dict__.get("problem", {}).get(name)

    @property
    def traceback(self) -> Optional[str]:
        """The remote traceback a worker sent with this error or one of its causes."""
        e: Optional[RaydError] = self
        while e is not None:
            tb = e.problem.get("traceback")
            if isinstance(tb, str):
                return tb
            e = e.cause
        return None

    def chain(self) -> "list[RaydError]":
        """This error followed by its causes, outermost first."""
        out: "list[RaydError]" = []
        e: Optional[RaydError] = self
        while e is not None:
            out.append(e)
            e = e.cause
        return out

    def __str__(self) -> str:
        parts = []
        for i, e in enumerate(self.chain()):
            # A worker's own error keeps its title (the exception's class) as remote_title.
            title = e.problem.get("remote_title") or e.title
            line = "%s: %s" % (title, e.detail) if e.detail else title
            parts.append(line if i == 0 else "caused by " + line)
        tb = self.traceback
        if tb:
            parts.append("remote traceback:\n" + tb.rstrip())
        return "\n  ".join(parts)

    def __reduce__(self) -> Tuple[Any, ...]:  # picklable, for multiprocessing and the like
        return (_rebuild, (self.problem, self.request_id))

    @classmethod
    def from_problem(cls, problem: Mapping[str, Any],
                     request_id: Optional[str] = None) -> "RaydError":
        """The exception for a problem+json body, of the class its title names; causes
        become exceptions too, recursively."""
        cause_doc = problem.get("cause")
        cause = None
        if isinstance(cause_doc, Mapping):
            cause = RaydError.from_problem(cause_doc, request_id)
        title = problem.get("title")
        klass = _BY_TITLE.get(title) if isinstance(title, str) else None
        if klass is None:
            status = problem.get("status")
            klass = APIError if isinstance(status, int) and status < 500 else RaydError
            if status == 503:
                klass = UnavailableError
        detail = problem.get("detail")
        return klass(str(detail) if detail is not None else str(title or ""), problem=problem,
                     cause=cause, request_id=request_id)


def _rebuild(problem: Mapping[str, Any], request_id: Optional[str]) -> RaydError:
    return RaydError.from_problem(problem, request_id)


class TaskError(RaydError):
    """A task or actor call failed (Ray's ``RayTaskError``): the function raised, or an
    argument held an error (then ``cause`` is that error). A worker's exception arrives as
    the cause, with its ``remote_title`` (the exception's class), ``exception`` and
    ``traceback``."""
    title = "TaskError"


class ObjectLostError(RaydError):
    """The object was freed, evicted or expired (HTTP 410)."""
    title = "ObjectLost"


class GetTimeoutError(RaydError, TimeoutError):
    """``get`` reached its timeout while an object was still pending. Never a placeholder:
    a pending object always raises this."""
    title = "GetTimeout"


class ActorDiedError(RaydError):
    """The actor is dead: killed, its constructor failed, or out of restarts."""
    title = "ActorDied"


class TaskCancelledError(RaydError):
    """The task was cancelled before it finished."""
    title = "TaskCancelled"


class WorkerUnavailableError(RaydError):
    """A remote function's endpoint could not be reached, after rayd's retries (Ray's
    ``WorkerCrashedError`` is the nearest)."""
    title = "WorkerUnavailable"


class ObjectStoreFullError(RaydError):
    """The object store is full (HTTP 507)."""
    title = "ObjectStoreFull"


class APIError(RaydError):
    """A request rayd refused (a 4xx problem not listed above)."""
    title = "APIError"


class BadRequestError(APIError, ValueError):
    """400: the request was malformed (a bad argument, an unknown ref...)."""
    title = "BadRequest"


class UnauthorizedError(APIError):
    """401: no token or a wrong one (``token=`` or ``RAYD_API_TOKEN``)."""
    title = "Unauthorized"


class ForbiddenError(APIError):
    """403: not allowed (a remote URL outside ``RAYD_REMOTE_ALLOW``, an admin route)."""
    title = "Forbidden"


class NotFoundError(APIError, ValueError):
    """404: no such object, task, function, class or actor (a ``ValueError``, as Ray's
    ``get_actor`` raises for an unknown name)."""
    title = "NotFound"


class SessionNotFoundError(NotFoundError):
    """404: the client's session is not open any more (closed, or its lease ran out: what
    was made under it is gone)."""
    title = "SessionNotFound"


class ConflictError(APIError):
    """409: a name taken, a task already ended, an idempotency key in use."""
    title = "Conflict"


class ModuleNotLoadedError(ConflictError):
    """409 in cluster mode: the function or actor class comes from a C module that the node
    which answered has not loaded; ``nodes`` lists the live nodes that have it (``tag``,
    ``url``, ``module``). Send the call to one of them, or load the module on every node."""
    title = "ModuleNotLoaded"


class PayloadTooLargeError(APIError, ValueError):
    """413: the body is over the server's ``RAYD_MAX_BODY``."""
    title = "PayloadTooLarge"


class TooManyRequestsError(APIError):
    """429: the server or the actor is at its limit and did nothing; retry later."""
    title = "TooManyRequests"


class UnavailableError(RaydError):
    """503: the server is draining (``ShuttingDown``) or out of memory."""
    title = "ShuttingDown"


class RaydConnectionError(RaydError, ConnectionError):
    """The server could not be reached (after the client's retries). Names the URL."""
    title = "ConnectionError"


class ProtocolError(RaydError):
    """The server answered something rayd never answers: probably not a rayd at that URL
    (a proxy's HTML error page, another service). Names the URL."""
    title = "ProtocolError"


class SerializationError(RaydError, TypeError):
    """A value cannot be sent as JSON (raised before anything is sent)."""
    title = "SerializationError"


class RetryableError(Exception):
    """Raise it in worker code to ask rayd to run the attempt again (see ``Worker``):
    the worker answers ``503`` with a problem body, which rayd retries with backoff up to
    the task's ``max_retries`` (then ``WorkerUnavailable`` with that problem as cause)."""


_BY_TITLE: Dict[str, Type[RaydError]] = {
    "TaskError": TaskError, "ObjectLost": ObjectLostError, "ActorDied": ActorDiedError,
    "TaskCancelled": TaskCancelledError, "WorkerUnavailable": WorkerUnavailableError,
    "ObjectStoreFull": ObjectStoreFullError, "BadRequest": BadRequestError,
    "Unauthorized": UnauthorizedError, "Forbidden": ForbiddenError, "NotFound": NotFoundError,
    "SessionNotFound": SessionNotFoundError, "Conflict": ConflictError,
    "ModuleNotLoaded": ModuleNotLoadedError, "PayloadTooLarge": PayloadTooLargeError,
    "TooManyRequests": TooManyRequestsError, "ShuttingDown": UnavailableError,
    "ServiceUnavailable": UnavailableError,
}

# Ray's names for the same errors.
RayError = RaydError
RayTaskError = TaskError
RayActorError = ActorDiedError
WorkerCrashedError = WorkerUnavailableError
