"""Ray Core's "Getting Started" examples, as examples/python/getting_started.py has them
(Ray's code with only the import and the connect line changed), run against a live rayd in
a process of their own; their printed results must be Ray's."""
from __future__ import annotations

import os
import subprocess
import sys
import unittest

from support import ROOT, Rayd, free_port

SCRIPT = os.path.join(ROOT, "examples", "python", "getting_started.py")


def have_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


class GettingStarted(unittest.TestCase):
    @unittest.skipUnless(have_numpy(), "the example's last part needs NumPy "
                         "(apt-get install python3-numpy; make clients-test installs it)")
    def test_walkthrough(self) -> None:
        port = free_port()
        srv = Rayd(remote_allow=["http://127.0.0.1:%d" % port])
        try:
            env = dict(os.environ, RAYD_ADDRESS=srv.url, RAYD_WORKER_PORT=str(port),
                       PYTHONPATH=os.path.join(ROOT, "clients", "python"))
            out = subprocess.run([sys.executable, SCRIPT], env=env, capture_output=True,
                                 text=True, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr)
            # Ray's documented output, line for line
            self.assertEqual(out.stdout.splitlines(),
                             ["[0, 1, 4, 9]", "10", "10000.0", "1000000.0"])
            # the program's registrations went with it
            import rayd
            rd = rayd.connect(srv.url)
            self.assertEqual([f for f in rd.functions() if f["kind"] == "remote"], [])
            rd.close()
        finally:
            srv.stop()


if __name__ == "__main__":
    unittest.main()
