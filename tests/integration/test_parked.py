"""Idle keep-alive connections, and fresh ones that have not sent anything yet, wait without a
session ("parked", with a small read of their own): requests of every size and split at every
awkward place still arrive whole, timeouts and drain still apply, and the connection gauge
counts parked connections."""

import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_admin as admin  # noqa: E402

# The size of a parked connection's own read (src/http/worker.hpp, parked_bytes).
PARKED_READ = 48


def padded_request(total, path="/headers"):
    """A GET whose head is exactly `total` bytes (at least the bare minimum), padded with an
    X-Pad field when there is room for one."""
    bare = h.build_request("GET", path, host="p")
    if total <= len(bare):
        return bare
    pad = total - len(bare) - len("X-Pad: \r\n")
    if pad < 1:  # no room for a field: lengthen the path instead
        return h.build_request("GET", path + "?" + "q" * (total - len(bare) - 1), host="p")
    req = h.build_request("GET", path, headers=[("Host", "p"), ("X-Pad", "x" * pad)])
    assert len(req) == total, (len(req), total)
    return req


class ParkedConnectionTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        (cls.a,) = cls.start_backends("a")
        cfg = h.config(
            [h.listener("web", timeouts={"idle": "1s", "header": "1s"})],
            [h.cluster("main", [cls.a])], workers=1)
        cls.sluice, cls.admin = admin.start_with_admin(cls, cfg)
        cls.port = cls.sluice.ports["web"]

    def active_connections(self):
        return admin.downstream_active(self.admin, "web")

    def check_echo(self, r, req):
        self.assertEqual(r.status, 200)
        first = req.split(b"\r\n", 1)[0].decode()
        self.assertEqual(r.text().splitlines()[0], first)
        for line in req.decode().split("\r\n")[1:]:
            if line.startswith("X-Pad: "):
                self.assertIn(line, r.text())

    def test_every_head_size_around_the_parked_read(self):
        sizes = [30, PARKED_READ - 1, PARKED_READ, PARKED_READ + 1, 2 * PARKED_READ, 1000,
                 8000, 15000, 20000]
        with h.Conn(self.port) as c:
            for size in sizes:
                time.sleep(0.05)  # idle between requests: the connection parks
                req = padded_request(size)
                c.send(req)
                self.check_echo(c.read_response(), req)
            self.assertTrue(c.is_open_now())

    def test_head_split_at_every_awkward_place(self):
        req = padded_request(300)
        for cut in [1, 10, PARKED_READ - 1, PARKED_READ, PARKED_READ + 1, 299]:
            with h.Conn(self.port) as c:
                for _ in range(2):  # fresh connection, then kept alive and parked
                    c.send(req[:cut])
                    time.sleep(0.1)
                    c.send(req[cut:])
                    self.check_echo(c.read_response(), req)
                    time.sleep(0.05)

    def test_body_after_idle(self):
        with h.Conn(self.port) as c:
            for body in [b"abc", b"x" * PARKED_READ, os.urandom(100_000)]:
                time.sleep(0.05)
                c.send(h.build_request("POST", "/echo", host="p", body=body))
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, body)

    def test_pipelined_after_idle(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("GET", "/", host="p"))
            self.assertEqual(c.read_response().status, 200)
            time.sleep(0.05)
            c.send(b"".join(h.build_request("GET", f"/headers?n={i}", host="p") for i in range(4)))
            for i in range(4):
                r = c.read_response()
                self.assertEqual(r.text().splitlines()[0], f"GET /headers?n={i} HTTP/1.1")

    def test_many_parked_connections_take_turns(self):
        conns = [h.Conn(self.port) for _ in range(200)]
        try:
            for rnd in range(3):
                for i, c in enumerate(conns):
                    c.send(h.build_request("GET", f"/headers?c={i}&r={rnd}", host="p"))
                for i, c in enumerate(conns):
                    r = c.read_response()
                    self.assertEqual(r.text().splitlines()[0],
                                     f"GET /headers?c={i}&r={rnd} HTTP/1.1")
        finally:
            for c in conns:
                c.close()

    def test_idle_timeout_closes_a_parked_connection(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("GET", "/", host="p"))
            self.assertEqual(c.read_response().status, 200)
            start = time.monotonic()
            self.assertEqual(c.wait_closed(timeout=20), b"")
            self.assertGreaterEqual(time.monotonic() - start, 0.9)

    # A busy connection (its requests come soon after each other) waits for the next one in its
    # session and is parked only after a pause (250 ms, src/http/session_impl.hpp park_grace).
    def quick_requests(self, c, n=5, tag="q"):
        for i in range(n):
            c.send(h.build_request("GET", f"/headers?{tag}={i}", host="p"))
            self.assertEqual(c.read_response().text().splitlines()[0],
                             f"GET /headers?{tag}={i} HTTP/1.1")

    def test_busy_connection_pauses_then_goes_on(self):
        with h.Conn(self.port) as c:
            # Pauses around the grace, so that some requests arrive just as the wait ends;
            # each pause stays under the 1 s idle timeout.
            for k, pause in enumerate([0.1, 0.2, 0.25, 0.3, 0.4, 0.6]):
                self.quick_requests(c, tag=f"p{k}")
                time.sleep(pause)
                req = padded_request(200, f"/headers?after={k}")
                c.send(req)
                self.check_echo(c.read_response(), req)

    def test_idle_timeout_closes_a_busy_connection_once(self):
        with h.Conn(self.port) as c:
            self.quick_requests(c)
            start = time.monotonic()
            # The idle timeout counts from the last response, the wait in the session included.
            self.assertEqual(c.wait_closed(timeout=20), b"")
            self.assertGreaterEqual(time.monotonic() - start, 0.9)

    def test_header_timeout_closes_a_silent_connection(self):
        with h.Conn(self.port) as c:
            start = time.monotonic()
            self.assertEqual(c.wait_closed(timeout=20), b"")
            self.assertGreaterEqual(time.monotonic() - start, 0.9)

    def test_client_closing_a_parked_connection(self):
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", self.port))
            s.close()
            with h.Conn(self.port) as c:
                c.send(h.build_request("GET", "/", host="p"))
                self.assertEqual(c.read_response().status, 200)
        # A reset instead of a FIN.
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        self.assertEqual(h.get(self.port, "/", host="p").status, 200)

    def test_parked_connections_are_counted(self):
        h.wait_until(lambda: self.active_connections() == 0, 20,
                     message="no connections from earlier tests")
        conns = []
        try:
            for _ in range(10):
                c = h.Conn(self.port)
                conns.append(c)
                c.send(h.build_request("GET", "/", host="p"))
                self.assertEqual(c.read_response().status, 200)
            for _ in range(5):
                conns.append(h.Conn(self.port))  # silent
            h.wait_until(lambda: self.active_connections() == 15, 20,
                         message="15 open connections in the gauge")
        finally:
            for c in conns:
                c.close()
        h.wait_until(lambda: self.active_connections() == 0, 20,
                     message="the gauge back at 0")


class ParkedDrainTest(h.SluiceTestCase):
    def test_drain_answers_a_silent_connection_and_closes_an_idle_one(self):
        (b,) = self.start_backends("d")
        s = self.start_sluice(h.config([h.listener("web")], [h.cluster("main", [b])],
                                       drain_timeout="30s", workers=1))
        idle = h.Conn(s.port)
        self.addCleanup(idle.close)
        idle.send(h.build_request("GET", "/", host="p"))
        self.assertEqual(idle.read_response().status, 200)
        silent = h.Conn(s.port)
        self.addCleanup(silent.close)
        # The connection is accepted (and parked) before the drain starts.
        h.wait_until(lambda: h.get(s.port, "/", host="p").status == 200, 20,
                     message="sluice serving")
        s.signal(signal.SIGTERM)
        time.sleep(0.3)
        silent.send(h.build_request("GET", "/", host="p"))
        r = silent.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.has_token("Connection", "close"), r.headers)
        self.assertEqual(silent.wait_closed(timeout=20), b"")
        self.assertEqual(idle.wait_closed(timeout=20), b"")
        self.assertEqual(s.proc.wait(timeout=20), 0, s.tail())


if __name__ == "__main__":
    unittest.main()
