"""systemd readiness without libsystemd: with $NOTIFY_SOCKET set, sluice sends READY=1 once its
listeners are bound and STOPPING=1 when a drain starts (as Type=notify in sluice.service expects)."""

import os
import shutil
import signal
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import cluster, config, listener  # noqa: E402


class SdNotifyTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-notify-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.sock.close)
        self.path = os.path.join(self.dir, "notify")
        self.sock.bind(self.path)
        self.sock.settimeout(harness.START_TIMEOUT)

    def messages_until(self, wanted):
        seen = []
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                raise AssertionError(f"no {wanted!r} from sluice; got {seen}")
            seen.append(data)
            if wanted in data.split("\n"):
                return seen

    def test_ready_then_stopping(self):
        cfg = config([listener("web")], [cluster("main", [f"127.0.0.1:{harness.free_dead_port()}"])])
        s = harness.Sluice(cfg, self.dir, extra_env={"NOTIFY_SOCKET": self.path})
        self.addCleanup(s.stop)
        seen = self.messages_until("READY=1")
        # READY=1 comes after the listener is bound: it accepts now.
        with socket.create_connection(("127.0.0.1", s.port), timeout=harness.IO_TIMEOUT):
            pass
        s.signal(signal.SIGTERM)
        seen += self.messages_until("STOPPING=1")
        self.assertEqual(s.stop(), 0)
        self.assertFalse(any("STOPPING=1" in m for m in seen[:1]), seen)

    def test_abstract_socket_and_no_socket(self):
        # Without NOTIFY_SOCKET nothing changes (covered by every other test); with an abstract
        # name ('@...') the datagram reaches it too.
        name = f"sluice-notify-test-{os.getpid()}"
        self.sock.close()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.sock.close)
        self.sock.bind("\0" + name)
        self.sock.settimeout(harness.START_TIMEOUT)
        cfg = config([listener("web")], [cluster("main", [f"127.0.0.1:{harness.free_dead_port()}"])])
        s = harness.Sluice(cfg, self.dir, extra_env={"NOTIFY_SOCKET": "@" + name})
        self.addCleanup(s.stop)
        self.messages_until("READY=1")
        self.assertEqual(s.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
