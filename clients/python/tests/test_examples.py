"""examples/python/ run as a user would run them, against a live rayd: the quickstart
script's output, and the decorator worker registered and called through rayd."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import unittest

from support import ROOT, Rayd, free_port

import rayd

EXAMPLES = os.path.join(ROOT, "examples", "python")


class Examples(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.port = free_port()
        cls.srv = Rayd(remote_allow=["http://127.0.0.1:%d" % cls.port])
        cls.env = dict(os.environ, RAYD_ADDRESS=cls.srv.url,
                       PYTHONPATH=os.path.join(ROOT, "clients", "python"))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.srv.stop()

    def test_quickstart(self) -> None:
        out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "quickstart.py")],
                             env=self.env, capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(lines[:3], ["sum of squares: 328350", "ready: 10 not ready: 90",
                                     "counter: 1000"])
        self.assertTrue(lines[3].startswith("error: ") and lines[3].endswith("division by zero"),
                        lines[3])

    def test_wordcount_worker(self) -> None:
        proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "wordcount_worker.py"),
                                 str(self.port)], env=self.env, stdout=subprocess.PIPE,
                                # Ctrl-C is what stops it below: a parent that ignores SIGINT
                                # (a background job without job control) would pass that on
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                                stderr=subprocess.PIPE, text=True)
        try:
            # serving once its start-up line is printed (after it registered with rayd)
            line = proc.stdout.readline()
            self.assertIn("rayd worker serving 1 function(s) and 1 class(es)", line)
            rd = rayd.connect(self.srv.url)
            self.assertEqual(rd.get(rd.function("wordcount").remote("the cat and the hat")), 5)
            acct = rd.actor_class("Account").remote(100)
            acct.deposit.remote(50)
            self.assertEqual(rd.get(acct.withdraw.remote(30)), 120)
            with self.assertRaises(rayd.TaskError) as cm:
                rd.get(acct.withdraw.remote(1000))
            self.assertEqual(cm.exception.cause.remote_title, "ValueError")
            rd.close()
        finally:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: serve() returns
            proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(proc.returncode, 0)


if __name__ == "__main__":
    unittest.main()
