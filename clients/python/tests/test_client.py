"""The Python client against a live rayd: objects, tasks, actors, errors, and the wire
(keep-alive, threads, Idempotency-Key retries, X-Request-Id and traceparent, bad input)."""
from __future__ import annotations

import http.server
import pickle
import threading
import time
import unittest

from support import Proxy, Rayd

import rayd


def setUpModule() -> None:
    global SRV, rd
    SRV = Rayd("--workers", "4")
    rd = rayd.connect(SRV.url)


def tearDownModule() -> None:
    rd.close()
    SRV.stop()


def tasks_submitted() -> int:
    return rd.status()["tasks"]["submitted"]


class Objects(unittest.TestCase):
    def test_put_get_json(self) -> None:
        value = {"a": 1, "b": [1.5, "x", None, True], "c": {"d": "é"}}
        ref = rd.put(value)
        self.assertIsInstance(ref, rayd.ObjectRef)
        self.assertEqual(rd.get(ref), value)

    def test_bytes_stay_bytes(self) -> None:
        data = bytes(range(256))
        ref = rd.put(data)
        got = rd.get(ref)
        self.assertIsInstance(got, bytes)
        self.assertEqual(got, data)
        typed = rd.put(b"<p>hi</p>", content_type="text/html")
        self.assertEqual(rd.get(typed), b"<p>hi</p>")
        # bytes inside a value travel as $bytes and come back as bytes
        self.assertEqual(rd.get(rd.put({"blob": b"\x00\xff"})), {"blob": b"\x00\xff"})

    def test_get_list_in_order_with_duplicates(self) -> None:
        a, b = rd.put(1), rd.put(b"two")
        self.assertEqual(rd.get([a, b, a]), [1, b"two", 1])
        self.assertEqual(rd.get([]), [])

    def test_nested_ref_comes_back_as_ref(self) -> None:
        inner = rd.put("inner")
        outer = rd.put({"r": inner, "l": [inner]})
        got = rd.get(outer)
        self.assertEqual(got["r"], inner)
        self.assertIsInstance(got["l"][0], rayd.ObjectRef)
        self.assertEqual(rd.get(got["r"]), "inner")

    def test_pending_object_raises_get_timeout(self) -> None:
        ref = rd.function("sleep").remote(30)
        t0 = time.monotonic()
        with self.assertRaises(rayd.GetTimeoutError) as cm:
            rd.get(ref, timeout=0.2)
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)
        self.assertIsInstance(cm.exception, TimeoutError)
        self.assertEqual(cm.exception.ref, ref.id)
        with self.assertRaises(rayd.GetTimeoutError):
            rd.get(ref, timeout=0)
        with self.assertRaises(rayd.GetTimeoutError):
            rd.get([rd.put(1), ref], timeout=0.1)
        rd.cancel(ref)

    def test_lost_object(self) -> None:
        ref = rd.put("x")
        rd.free(ref)
        with self.assertRaises(rayd.ObjectLostError) as cm:
            rd.get(ref)
        self.assertEqual(cm.exception.status, 410)
        with self.assertRaises(rayd.ObjectLostError):
            rd.get([ref])
        rd.free(ref)  # already gone: no error

    def test_unknown_ref(self) -> None:
        with self.assertRaises(rayd.NotFoundError):
            rd.get(rd.ref("o_no_such_object"))

    def test_wait(self) -> None:
        fast = [rd.put(i) for i in range(3)]
        slow = rd.function("sleep").remote(30)
        ready, not_ready = rd.wait([slow] + fast, num_returns=2, timeout=5)
        self.assertEqual(ready, fast[:2])
        self.assertEqual(not_ready, [slow, fast[2]])
        t0 = time.monotonic()
        ready, not_ready = rd.wait([slow, fast[0]], num_returns=2, timeout=0.2)
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)
        self.assertEqual((ready, not_ready), ([fast[0]], [slow]))
        with self.assertRaises(ValueError):
            rd.wait([fast[0], fast[0]])
        rd.cancel(slow)


class Tasks(unittest.TestCase):
    def test_remote_and_options(self) -> None:
        add = rd.function("add")
        self.assertEqual(rd.get(add.remote(1, 2)), 3)
        self.assertEqual(rd.get(add.options(max_retries=0, name="x").remote(2, 5)), 7)
        self.assertEqual(rd.get(rd.function("sort").remote([3, 1, 2], reverse=True)), [3, 2, 1])
        a, b = rd.function("echo").options(num_returns=2).remote([1, 2])
        self.assertEqual(rd.get([a, b]), [1, 2])
        with self.assertRaises(TypeError):
            add.options(num_cpus=1)
        with self.assertRaises(TypeError):
            add(1, 2)

    def test_refs_as_arguments(self) -> None:
        add, mul = rd.function("add"), rd.function("mul")
        r = mul.remote(add.remote(1, 2), 10)
        self.assertEqual(rd.get(r), 30)
        self.assertEqual(rd.get(rd.function("len").remote(rd.put(b"abcd"))), 4)

    def test_error_chain_of_three_tasks(self) -> None:
        div, add = rd.function("div"), rd.function("add")
        r1 = div.remote(1, 0)
        r3 = add.remote(add.remote(r1, 1), 1)
        with self.assertRaises(rayd.TaskError) as cm:
            rd.get(r3)
        e = cm.exception
        self.assertIsInstance(e, rayd.RayTaskError)
        chain = e.chain()
        self.assertEqual([type(x) for x in chain], [rayd.TaskError] * 3)
        self.assertEqual(chain[-1].detail, "division by zero")
        self.assertEqual(chain[-1].function, "div")
        self.assertEqual(chain[-1].task_id, r1.task_id)
        self.assertIs(e.__cause__, chain[1])
        self.assertEqual(e.status, 424)
        self.assertEqual(e.ref, r3.id)
        self.assertIn("caused by TaskError: division by zero", str(e))
        with self.assertRaises(rayd.TaskError):  # the same through a batch get
            rd.get([rd.put(1), r3])
        copy = pickle.loads(pickle.dumps(e))
        self.assertEqual(copy.chain()[-1].detail, "division by zero")

    def test_cancel(self) -> None:
        ref = rd.function("sleep").remote(30)
        rd.cancel(ref)
        with self.assertRaises(rayd.TaskCancelledError):
            rd.get(ref, timeout=10)
        done = rd.function("add").remote(1, 1)
        rd.get(done)
        rd.cancel(done)  # ended already: nothing to do, no error
        with self.assertRaises(ValueError):
            rd.cancel(rd.put(1))

    def test_unknown_function(self) -> None:
        with self.assertRaises(rayd.NotFoundError):
            rd.function("no_such_function").remote()

    def test_batch_submit(self) -> None:
        add = rd.function("add")
        refs = rd.submit(add.bind(i, 1) for i in range(10001))  # two batch requests
        self.assertEqual(len(refs), 10001)
        values = rd.get(refs, timeout=60)
        self.assertEqual(values, [i + 1 for i in range(10001)])


class Actors(unittest.TestCase):
    def test_counter_named_get_if_exists(self) -> None:
        Counter = rd.actor_class("Counter")
        c = Counter.options(name="hits", get_if_exists=True).remote(10)
        again = Counter.options(name="hits", get_if_exists=True).remote(99)
        self.assertEqual(c, again)
        c.incr.remote(5)
        self.assertEqual(rd.get(c.get.remote()), 15)
        self.assertEqual(rd.get_actor("hits"), c)
        self.assertEqual(c.info()["state"], "ALIVE")
        with self.assertRaises(rayd.ConflictError):
            Counter.options(name="hits").remote()
        rd.kill(c)
        with self.assertRaises(rayd.ActorDiedError):
            c.get.remote()
        with self.assertRaises(ValueError):
            rd.get_actor("hits")
        rd.kill(c)  # dead already: fine

    def test_queued_calls_die_with_the_actor(self) -> None:
        kv = rd.actor_class("Queue").remote()
        nap = rd.function("sleep").remote(30)
        blocker = kv.put.remote(nap)  # waits for its argument
        queued = kv.size.remote()
        rd.kill(kv)
        for r in (blocker, queued):
            with self.assertRaises(rayd.ActorDiedError):
                rd.get(r, timeout=10)
        rd.cancel(nap)

    def test_method_error_and_unknown_method(self) -> None:
        q = rd.actor_class("Queue").remote()
        with self.assertRaises(rayd.TaskError) as cm:
            rd.get(q.get.remote())
        self.assertEqual(cm.exception.actor_id, q.actor_id)
        with self.assertRaises(rayd.NotFoundError):
            q.no_such_method.remote()

    def test_handle_as_argument_round_trips(self) -> None:
        c = rd.actor_class("Counter").remote()
        got = rd.get(rd.function("identity").remote([c]))
        self.assertEqual(got, [c])
        self.assertEqual(rd.get(got[0].incr.remote(2)), 2)


class BadInput(unittest.TestCase):
    def test_problem_titles_become_their_classes(self) -> None:
        # A cluster node without the module answers this body (tests/cluster/test_cluster_modules.c).
        nodes = [{"tag": "b", "url": "http://10.0.0.2:8080", "module": "text"}]
        e = rayd.RaydError.from_problem({
            "type": "/problems/ModuleNotLoaded", "title": "ModuleNotLoaded", "status": 409,
            "detail": "upper is provided by module text, not loaded on this node",
            "function": "upper", "module": "text", "node": "a", "nodes": nodes})
        self.assertIsInstance(e, rayd.ModuleNotLoadedError)
        self.assertIsInstance(e, rayd.ConflictError)
        self.assertEqual((e.status, e.function, e.nodes), (409, "upper", nodes))
        other = rayd.RaydError.from_problem({"title": "SomethingNew", "status": 409})
        self.assertIs(type(other), rayd.APIError)

    def test_not_serialisable_raises_before_sending(self) -> None:
        before = tasks_submitted()
        add = rd.function("add")
        for bad in ({1, 2}, object(), float("nan"), lambda: 1):
            with self.assertRaises(rayd.SerializationError) as cm:
                add.remote(1, bad)
            self.assertIsInstance(cm.exception, TypeError)
            self.assertIn("argument 1 of add", str(cm.exception))
        with self.assertRaises(rayd.SerializationError):
            rd.put({"x": object()})
        with self.assertRaises(rayd.SerializationError):
            rd.submit([add.bind(1, 2), add.bind(object(), 2)])
        self.assertEqual(tasks_submitted(), before)

    def test_a_server_that_is_not_rayd(self) -> None:
        class Html(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                body = b"<html><body>Welcome to nginx!</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = "http://127.0.0.1:%d" % srv.server_address[1]
        try:
            with self.assertRaises(rayd.ProtocolError) as cm:
                rayd.connect(url)
            self.assertIn(url, str(cm.exception))
            self.assertIn("text/html", str(cm.exception))
            unchecked = rayd.connect(url, check=False)
            with self.assertRaises(rayd.ProtocolError) as cm:
                unchecked.get(unchecked.ref("abc"))
            self.assertIn(url + "/v1/objects/abc", str(cm.exception))
            with self.assertRaises(rayd.ProtocolError):
                unchecked.put(1)
        finally:
            srv.shutdown()
            srv.server_close()

    def test_nobody_listening(self) -> None:
        from support import free_port
        url = "http://127.0.0.1:%d" % free_port()
        with self.assertRaises(rayd.RaydConnectionError) as cm:
            rayd.connect(url, retries=1)
        self.assertIn(url, str(cm.exception))
        self.assertIsInstance(cm.exception, ConnectionError)

    def test_bad_address(self) -> None:
        with self.assertRaises(ValueError):
            rayd.connect("ftp://example.com")


class Wire(unittest.TestCase):
    def test_keep_alive(self) -> None:
        proxy = Proxy(SRV.port)
        try:
            c = rayd.connect(proxy.url)
            add = c.function("add")
            for i in range(50):
                self.assertEqual(c.get(add.remote(i, 1)), i + 1)
            self.assertEqual(len(proxy.requests), 101)  # healthz + 50 x (POST, GET)
            self.assertEqual(proxy.connections, 1)
            c.close()
        finally:
            proxy.close()

    def test_threads_share_a_client(self) -> None:
        proxy = Proxy(SRV.port)
        try:
            c = rayd.connect(proxy.url)
            add = c.function("add")
            errors = []

            def run(k: int) -> None:
                try:
                    for i in range(100):
                        r = add.remote(k, i)
                        if c.get(r) != k + i:
                            errors.append((k, i))
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(e)

            threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertLessEqual(proxy.connections, 9)
            c.close()
        finally:
            proxy.close()

    def test_idempotency_key_on_retried_post(self) -> None:
        proxy = Proxy(SRV.port)
        try:
            c = rayd.connect(proxy.url)
            before = tasks_submitted()
            proxy.drop_answer(lambda r: r["method"] == "POST" and r["path"] == "/v1/tasks")
            ref = c.function("add").remote(20, 22)
            self.assertEqual(c.get(ref), 42)
            posts = [r for r in proxy.requests if r["path"] == "/v1/tasks"]
            self.assertEqual(len(posts), 2)  # the first answer was lost, then the retry
            keys = {p["headers"].get("idempotency-key") for p in posts}
            self.assertEqual(len(keys), 1)
            self.assertTrue(keys.pop())
            self.assertEqual(tasks_submitted(), before + 1)  # the retry ran nothing twice
            # without keys, a POST whose answer was lost is not repeated
            c2 = rayd.connect(proxy.url, idempotency_keys=False)
            proxy.drop_answer(lambda r: r["method"] == "POST" and r["path"] == "/v1/tasks")
            with self.assertRaises(rayd.RaydConnectionError):
                c2.function("add").remote(1, 1)
            c.close()
            c2.close()
        finally:
            proxy.close()

    def test_request_id_and_traceparent_passed_through(self) -> None:
        proxy = Proxy(SRV.port)
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        try:
            c = rayd.connect(proxy.url)
            with rayd.request_context(request_id="req-client-1", traceparent=tp):
                c.get(c.function("add").remote(1, 1))
            sent = [r for r in proxy.requests if r["path"] == "/v1/tasks"]
            self.assertEqual(sent[-1]["headers"].get("x-request-id"), "req-client-1")
            self.assertEqual(sent[-1]["headers"].get("traceparent"), tp)
            SRV.wait_log(lambda d: d.get("request_id") == "req-client-1" and
                         d.get("method") == "POST")
            c.get(c.function("add").remote(1, 1))  # outside the context: none
            self.assertNotIn("traceparent", proxy.requests[-1]["headers"])
            c.close()
        finally:
            proxy.close()


class Transport(unittest.TestCase):
    """The client's own HTTP/1.1 reading, on answers rayd may send through proxies:
    chunked bodies, interim 1xx answers, bodies that end with the connection, garbage."""

    def serve(self, answer: bytes) -> str:
        import socket
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)

        def run() -> None:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                data += c.recv(65536)
            c.sendall(answer)
            c.close()
            srv.close()

        threading.Thread(target=run, daemon=True).start()
        self.addCleanup(srv.close)
        return "http://127.0.0.1:%d" % srv.getsockname()[1]

    def test_chunked_and_interim_answers(self) -> None:
        url = self.serve(b"HTTP/1.1 100 Continue\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nX-Request-Id: r1\r\n"
                         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"4\r\n{\"a\"\r\n4;ext=1\r\n: 1}\r\n0\r\nTrailer: x\r\n\r\n")
        c = rayd.connect(url, check=False)
        self.assertEqual(c.get(c.ref("abc")), {"a": 1})

    def test_body_to_the_end_of_the_connection(self) -> None:
        url = self.serve(b"HTTP/1.0 200 OK\r\nX-Request-Id: r1\r\n"
                         b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 100000)
        c = rayd.connect(url, check=False)
        self.assertEqual(c.get(c.ref("abc")), b"x" * 100000)

    def test_not_http(self) -> None:
        url = self.serve(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        c = rayd.connect(url, check=False, retries=0)
        with self.assertRaises(rayd.ProtocolError) as cm:
            c.get(c.ref("abc"))
        self.assertIn(url, str(cm.exception))


class Sessions(unittest.TestCase):
    def test_client_session_frees_on_close(self) -> None:
        c = rayd.connect(SRV.url, session=60)
        sid = c.session_id
        self.assertTrue(sid)
        obj = c.put({"a": 1})
        res = c.function("add").options(result_ttl=0).remote(1, 2)
        self.assertEqual(c.get(res), 3)
        mine = c.actor_class("Counter").remote()
        kept = c.actor_class("Counter").options(lifetime="detached").remote()
        self.assertEqual(c.get(mine.incr.remote()), 1)
        self.assertEqual(c.get(kept.incr.remote()), 1)
        session = rd._json("GET", "/v1/sessions/" + sid)
        self.assertEqual(session["actors"], 1)
        c.close()
        with self.assertRaises(rayd.SessionNotFoundError):
            rd._json("GET", "/v1/sessions/" + sid)
        for ref in (obj, res):
            with self.assertRaises(rayd.ObjectLostError):
                rd.get(rd.ref(ref.id), timeout=5)
        self.assertEqual(rd._json("GET", "/v1/actors/" + mine.actor_id)["state"], "DEAD")
        self.assertEqual(rd._json("GET", "/v1/actors/" + kept.actor_id)["state"], "ALIVE")

    def test_idle_client_keeps_its_session(self) -> None:
        c = rayd.connect(SRV.url, session=1.5)  # renewed every 0.5 s by the client
        try:
            first = rd._json("GET", "/v1/sessions/" + c.session_id)["renewals"]
            deadline = time.monotonic() + 30
            while rd._json("GET", "/v1/sessions/" + c.session_id)["renewals"] < first + 4:
                self.assertLess(time.monotonic(), deadline, "the session was not renewed")
                time.sleep(0.05)
            obj = c.put(7)  # four renewals later (past the 1.5 s lease): still open
            self.assertEqual(c.get(obj), 7)
        finally:
            c.close()

    def test_no_session_by_default(self) -> None:
        self.assertIsNone(rd.session_id)
        with self.assertRaises(ValueError):
            rayd.connect(SRV.url, session=-1)


class Auth(unittest.TestCase):
    def test_token(self) -> None:
        srv = Rayd(env={"RAYD_API_TOKEN": "s3cret"})
        try:
            with self.assertRaises(rayd.UnauthorizedError):
                rayd.connect(srv.url).put(1)
            c = rayd.connect(srv.url, token="s3cret")
            self.assertEqual(c.get(c.put(5)), 5)
            c.close()
        finally:
            srv.stop()


if __name__ == "__main__":
    unittest.main()
