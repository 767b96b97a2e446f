"""The worker side end to end: Python functions and classes served by rayd.Worker,
registered with a real rayd that is allowed to call them, and called through rayd."""
from __future__ import annotations

import logging
import threading
import unittest

from support import Rayd, free_port

import rayd

CALLS: dict = {}
CALLS_LOCK = threading.Lock()


def count(name: str) -> None:
    with CALLS_LOCK:
        CALLS[name] = CALLS.get(name, 0) + 1


def setUpModule() -> None:
    global SRV, rd, worker, EMBED_PORT
    logging.getLogger("rayd.worker").setLevel(logging.ERROR)  # RetryableError's warnings
    port = free_port()
    EMBED_PORT = free_port()
    SRV = Rayd("--workers", "2", remote_allow=["http://127.0.0.1:%d" % port,
                                               "http://127.0.0.1:%d" % EMBED_PORT])
    rd = rayd.connect(SRV.url)
    worker = rd.worker(port=port)

    @worker.function
    def wordcount(text):
        count("wordcount")
        return len(text.split())

    @worker.function
    def describe(*args, **kwargs):
        """What the function received, types included."""
        count("describe")
        return {"args": [[type(a).__name__, a if not isinstance(a, bytes) else len(a)]
                         for a in args],
                "kwargs": sorted(kwargs)}

    @worker.function
    def reverse_bytes(data):
        return bytes(reversed(data))

    @worker.function
    def deref(box):
        # a ref nested in a list reaches the function as a ref; get it through rayd
        return rd.get(box[0]) * 2

    @worker.function
    def bump(counter, n):
        # an actor handle passed as an argument, called from inside a task
        return rd.get(counter.incr.remote(n))

    @worker.function
    def divide(a, b):
        count("divide")
        return a / b

    @worker.function
    def flaky(succeed_at):
        count("flaky")
        call = rayd.current_call()
        if call.attempt < succeed_at:
            raise rayd.RetryableError("attempt %d is too early" % call.attempt)
        return call.attempt

    @worker.function
    def whoami():
        call = rayd.current_call()
        # a call made from inside carries the same X-Request-Id
        rd.get(rd.function("add").remote(1, 1))
        return {"request_id": call.request_id, "task_id": call.task_id}

    @worker.function(name="not_json")
    def not_json():
        return {1, 2}

    @worker.actor_class
    class Account:
        def __init__(self, balance=0):
            self.balance = balance
            self.history = []

        def deposit(self, n):
            self.balance += n
            self.history.append(n)
            return self.balance

        def withdraw(self, n):
            if n > self.balance:
                raise ValueError("cannot withdraw %s: the balance is %s" % (n, self.balance))
            self.balance -= n
            self.history.append(-n)
            return self.balance

        def state(self):
            return {"balance": self.balance, "history": self.history}

        def _secret(self):
            return "private"

        def later(self):
            raise rayd.RetryableError("not now")

    globals().update(wordcount=wordcount, describe=describe, reverse_bytes=reverse_bytes,
                     deref=deref, bump=bump, divide=divide, flaky=flaky, whoami=whoami,
                     not_json=not_json, Account=Account)
    worker.start()


def tearDownModule() -> None:
    worker.stop(unregister=True)
    rd.close()
    SRV.stop()


class Functions(unittest.TestCase):
    def test_registered_and_called(self) -> None:
        fns = {f["name"]: f for f in rd.functions()}
        self.assertEqual(fns["wordcount"]["kind"], "remote")
        self.assertEqual(fns["wordcount"]["url"], worker.url + "/functions/wordcount")
        self.assertEqual(rd.get(wordcount.remote("the cat and the hat")), 5)
        self.assertEqual(rd.get(rd.function("wordcount").remote("a b")), 2)
        self.assertEqual(wordcount("still a plain function"), 4)

    def test_arguments_decoded(self) -> None:
        blob = rd.put(b"\x00\x01\x02")
        got = rd.get(describe.remote(1, "s", b"raw", blob, [1], k=2))
        self.assertEqual(got["args"], [["int", 1], ["str", "s"], ["bytes", 3], ["bytes", 3],
                                       ["list", [1]]])
        self.assertEqual(got["kwargs"], ["k"])
        self.assertEqual(rd.get(reverse_bytes.remote(b"abc")), b"cba")
        self.assertEqual(rd.get(deref.remote([rd.put(21)])), 42)

    def test_actor_handle_passed_to_a_task(self) -> None:
        c = rd.actor_class("Counter").remote(1)
        self.assertEqual(rd.get(bump.remote(c, 4)), 5)
        self.assertEqual(rd.get(c.get.remote()), 5)

    def test_exception_is_a_task_error_not_retried(self) -> None:
        before = CALLS.get("divide", 0)
        ref = divide.remote(1, 0)
        with self.assertRaises(rayd.TaskError) as cm:
            rd.get(ref)
        e = cm.exception
        self.assertEqual(e.remote_status, 500)
        cause = e.cause
        self.assertIsInstance(cause, rayd.TaskError)
        self.assertEqual(cause.remote_title, "ZeroDivisionError")
        self.assertEqual(cause.exception, "ZeroDivisionError")
        self.assertEqual(cause.detail, "division by zero")
        self.assertIn("in divide", e.traceback)
        self.assertIn("ZeroDivisionError: division by zero", e.traceback)
        self.assertNotIn("rayd/worker.py", e.traceback)  # only the user's frames
        self.assertIn("caused by ZeroDivisionError: division by zero", str(e))
        info = rd.task(ref)
        self.assertEqual((info["state"], info["attempts"]), ("FAILED", 1))
        self.assertEqual(CALLS["divide"], before + 1)

    def test_result_that_is_not_json(self) -> None:
        with self.assertRaises(rayd.TaskError) as cm:
            rd.get(not_json.remote())
        self.assertEqual(cm.exception.cause.remote_title, "SerializationError")

    def test_retryable_error_is_retried(self) -> None:
        ref = flaky.remote(3)
        self.assertEqual(rd.get(ref, timeout=30), 3)
        info = rd.task(ref)
        self.assertEqual((info["state"], info["attempts"]), ("FINISHED", 3))

    def test_retryable_error_past_max_retries(self) -> None:
        ref = flaky.options(max_retries=1).remote(10)
        with self.assertRaises(rayd.WorkerUnavailableError):
            rd.get(ref, timeout=30)
        info = rd.task(ref)
        self.assertEqual((info["state"], info["attempts"]), ("FAILED", 2))

    def test_request_id_reaches_the_worker_and_nested_calls(self) -> None:
        with rayd.request_context(request_id="req-worker-1"):
            ref = whoami.remote()
        got = rd.get(ref)
        self.assertEqual(got, {"request_id": "req-worker-1", "task_id": ref.task_id})
        SRV.wait_log(lambda d: d.get("request_id") == "req-worker-1" and
                     d.get("route") == "/v1/objects/{ref}")


class ActorClasses(unittest.TestCase):
    def test_state_lives_in_rayd(self) -> None:
        a = Account.remote(100)
        a.deposit.remote(50)
        self.assertEqual(rd.get(a.withdraw.remote(30)), 120)
        with self.assertRaises(rayd.TaskError) as cm:
            rd.get(a.withdraw.remote(1000))
        self.assertEqual(cm.exception.cause.remote_title, "ValueError")
        # the failed call left the state as it was
        self.assertEqual(rd.get(a.state.remote()), {"balance": 120, "history": [50, -30]})
        named = Account.options(name="acct", get_if_exists=True).remote(1)
        self.assertEqual(rd.get_actor("acct"), named)
        rd.kill(named)

    def test_retryable_error_in_a_method(self) -> None:
        # rayd retries no actor call: the call fails as unanswered, the actor lives on
        a = Account.remote(7)
        with self.assertRaises(rayd.WorkerUnavailableError):
            rd.get(a.later.remote(), timeout=30)
        self.assertEqual(a.info()["state"], "ALIVE")
        self.assertEqual(rd.get(a.state.remote())["balance"], 7)

    def test_unknown_method(self) -> None:
        a = Account.remote()
        with self.assertRaises(rayd.TaskError) as cm:
            rd.get(a.nope.remote())
        self.assertEqual(cm.exception.cause.remote_title, "AttributeError")
        # names starting with "_" are not methods callers may reach
        with self.assertRaises(rayd.TaskError) as cm:
            rd.get(rd._call_method(a.actor_id, "_secret", (), {}))
        self.assertEqual(cm.exception.cause.remote_title, "AttributeError")


class Embedded(unittest.TestCase):
    """rd.remote: functions and classes of this program, served from a worker thread."""

    def test_remote_decorator(self) -> None:
        import os
        os.environ["RAYD_WORKER_PORT"] = str(EMBED_PORT)
        c = rayd.connect(SRV.url)
        try:
            @c.remote
            def square(x):
                return x * x

            @c.remote
            class Counter:  # the same name as rayd's built-in class: no clash
                def __init__(self):
                    self.i = 0

                def incr(self, v):
                    self.i += v

                def get(self):
                    return self.i

            self.assertEqual(c.get([square.remote(i) for i in range(4)]), [0, 1, 4, 9])
            k = Counter.remote()
            for _ in range(10):
                k.incr.remote(1)
            self.assertEqual(c.get(k.get.remote()), 10)
            self.assertTrue(square.name.startswith("square-"))
            names = {f["name"] for f in c.functions()}
            self.assertIn(square.name, names)
        finally:
            c.close()
            del os.environ["RAYD_WORKER_PORT"]
        # closing the client removed its registrations
        self.assertNotIn(square.name, {f["name"] for f in rd.functions()})


if __name__ == "__main__":
    unittest.main()
