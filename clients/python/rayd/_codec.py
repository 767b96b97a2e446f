"""Values to and from rayd's JSON, with the conventions rayd reads and writes.

- An ``ObjectRef`` travels as ``{"$ref": id}``: at the top level of a task's arguments rayd
  waits for it and passes its value; nested deeper it is passed as a ref, as in Ray.
- ``bytes`` (and ``bytearray``, ``memoryview``) travel as ``{"$bytes": base64}``; rayd
  hands binary objects to functions the same way (with a ``content_type``).
- An ``ActorHandle`` travels as ``{"$actor": id, "class": name}`` (rayd passes it through;
  a worker turns it back into a handle).
- Objects with a ``tolist()`` method (NumPy arrays and scalars) travel as lists or numbers.
- Anything else JSON cannot hold (sets, arbitrary objects, NaN) raises
  ``SerializationError`` before anything is sent.
"""
from __future__ import annotations

import base64
import json
from typing import Any, Callable, Dict, Optional

from .errors import SerializationError


def encoder(ref_type: Any, actor_type: Any) -> Callable[..., bytes]:
    """A function value -> compact UTF-8 JSON bytes, for these ref and handle classes."""

    def default(o: Any) -> Any:
        if isinstance(o, ref_type):
            return {"$ref": o.id}
        if isinstance(o, (bytes, bytearray, memoryview)):
            return {"$bytes": base64.b64encode(bytes(o)).decode("ascii")}
        if isinstance(o, actor_type):
            return {"$actor": o.actor_id, "class": o.class_name}
        tolist = getattr(o, "tolist", None)
        if callable(tolist):
            return tolist()
        raise TypeError("%s is not JSON serialisable" % type(o).__name__)

    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                             default=default).encode

    def encode(value: Any, what: Optional[str] = None) -> bytes:
        try:
            return dumps(value).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as e:
            raise SerializationError("cannot send %s to rayd as JSON: %s" % (
                what or _describe(value), e)) from None

    return encode


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def object_hook(make_ref: Callable[[str], Any],
                make_actor: Optional[Callable[[str, Optional[str]], Any]] = None
                ) -> Callable[[Dict[str, Any]], Any]:
    """A json.loads object_hook turning rayd's conventions back into Python values."""

    def hook(d: Dict[str, Any]) -> Any:
        if len(d) <= 2:
            if "$ref" in d and len(d) == 1 and isinstance(d["$ref"], str):
                return make_ref(d["$ref"])
            if "$bytes" in d and isinstance(d["$bytes"], str) and \
                    (len(d) == 1 or "content_type" in d):
                try:
                    return base64.b64decode(d["$bytes"], validate=True)
                except ValueError:
                    return d
            if make_actor is not None and "$actor" in d and isinstance(d["$actor"], str) and \
                    (len(d) == 1 or "class" in d):
                return make_actor(d["$actor"], d.get("class"))
        return d

    return hook
