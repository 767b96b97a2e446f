"""rayd: Ray's API (put, get, wait, remote functions, actors) for a rayd server.

Standard library only::

    import rayd
    rd = rayd.connect("http://localhost:8080")   # or $RAYD_ADDRESS; token= or $RAYD_API_TOKEN
    ref = rd.put({"a": 1})
    add = rd.function("add")
    rd.get(add.remote(1, 2))                      # 3

See ``rayd.Client`` for the calls, ``rayd.Worker`` for serving your own functions and
classes, and ``rayd.errors`` for the exceptions.
"""
from ._http import __version__
from .client import (ActorClass, ActorHandle, ActorMethod, Client, ObjectRef, RemoteFunction,
                     TaskCall, connect, request_context)
from .errors import (APIError, ActorDiedError, BadRequestError, ConflictError,
                     ForbiddenError, GetTimeoutError, ModuleNotLoadedError, NotFoundError, ObjectLostError,
                     ObjectStoreFullError, PayloadTooLargeError, ProtocolError, RayActorError,
                     RayError, RayTaskError, RaydConnectionError, RaydError, RetryableError,
                     SerializationError, SessionNotFoundError, TaskCancelledError, TaskError,
                     TooManyRequestsError,
                     UnauthorizedError, UnavailableError, WorkerCrashedError,
                     WorkerUnavailableError)
from .worker import CallInfo, Worker, current_call, worker

__all__ = [
    "__version__", "connect", "Client", "ObjectRef", "RemoteFunction", "TaskCall",
    "ActorClass", "ActorHandle", "ActorMethod", "request_context", "Worker", "worker",
    "current_call", "CallInfo", "RaydError", "RayError", "TaskError", "RayTaskError",
    "ObjectLostError", "GetTimeoutError", "ActorDiedError", "RayActorError",
    "TaskCancelledError", "WorkerUnavailableError", "WorkerCrashedError",
    "ObjectStoreFullError", "APIError", "BadRequestError", "UnauthorizedError",
    "ForbiddenError", "NotFoundError", "SessionNotFoundError", "ConflictError", "ModuleNotLoadedError",
    "PayloadTooLargeError",
    "TooManyRequestsError", "UnavailableError", "RaydConnectionError", "ProtocolError",
    "SerializationError", "RetryableError",
]
