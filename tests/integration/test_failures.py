"""Upstream failures: refused connects are retried, dead clusters give 502, slow upstreams 504,
resets 502, non-idempotent requests are not retried, closed keep-alive connections recover, and
idle clients are closed."""

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class FailuresTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.g1, cls.g2 = cls.start_backends("g1", "g2")
        cls.dead = [h.free_dead_port() for _ in range(3)]
        cls.resets = [cls.start_scripted(lambda req: ("reset",), f"r{i}") for i in range(3)]
        cls.idler = cls.start_scripted(
            lambda req: ("respond", 200, [("X-Backend", "idler")], b"idle ok\n"),
            "idler", idle_close=0.3)
        routes = [
            {"match": {"host": "mixed.test"}, "cluster": "mixed"},
            {"match": {"host": "dead.test"}, "cluster": "dead"},
            {"match": {"host": "slow.test"}, "cluster": "slow"},
            {"match": {"host": "one.test"}, "cluster": "one"},
            {"match": {"host": "reset.test"}, "cluster": "resets"},
            {"match": {"host": "idle.test"}, "cluster": "idler"},
        ]
        cfg = h.config(
            [h.listener("web", routes=routes, timeouts={"idle": "1s"})],
            [h.cluster("mixed", [cls.g1, f"127.0.0.1:{cls.dead[0]}", cls.g2], max_tries=3,
                       timeouts={"connect": "2s"}),
             h.cluster("dead", [f"127.0.0.1:{cls.dead[1]}", f"127.0.0.1:{cls.dead[2]}"],
                       timeouts={"connect": "2s"}),
             h.cluster("slow", [cls.g1], timeouts={"read": "500ms"}, max_tries=1),
             h.cluster("one", [cls.g1]),
             h.cluster("resets", cls.resets, max_tries=3),
             h.cluster("idler", [cls.idler])],
            workers=2)
        cls.sluice = cls.start_sluice(cfg)
        cls.port = cls.sluice.port

    def test_refused_endpoint_is_retried(self):
        seen = set()
        for i in range(30):
            r = h.get(self.port, "/", host="mixed.test")
            self.assertEqual(r.status, 200, f"request {i}: {r!r}")
            seen.add(r.header("X-Backend"))
        self.assertEqual(seen, {"g1", "g2"})

    def test_all_dead_gives_502(self):
        for _ in range(3):
            r = h.get(self.port, "/", host="dead.test")
            self.assertEqual(r.status, 502)

    def test_read_timeout_gives_504(self):
        start = time.monotonic()
        r = h.get(self.port, "/delay/3000", host="slow.test")
        self.assertEqual(r.status, 504)
        self.assertLess(time.monotonic() - start, 2.9, "answered only after the upstream did")
        self.assertEqual(h.get(self.port, "/", host="slow.test").status, 200)

    def test_upstream_reset_gives_502(self):
        r = h.get(self.port, "/reset", host="one.test")
        self.assertEqual(r.status, 502)
        self.assertEqual(h.get(self.port, "/", host="one.test").status, 200)

    def test_post_not_retried_after_sending(self):
        before = sum(s.stats()[0] for s in self.resets)
        r = h.request(self.port, "POST", "/orders", body=b'{"qty": 1}', host="reset.test")
        self.assertEqual(r.status, 502)
        after = sum(s.stats()[0] for s in self.resets)
        self.assertEqual(after - before, 1, "the POST reached the upstreams more than once")

    def test_get_retries_bounded_by_max_tries(self):
        before = sum(s.stats()[0] for s in self.resets)
        r = h.get(self.port, "/", host="reset.test")
        self.assertEqual(r.status, 502)
        tries = sum(s.stats()[0] for s in self.resets) - before
        self.assertGreaterEqual(tries, 1)
        self.assertLessEqual(tries, 3, "more attempts than max_tries")

    def test_upstream_connection_close_then_more_requests(self):
        with h.Conn(self.port) as c:
            for i in range(10):
                for path in ("/close", "/"):
                    c.send(h.build_request("GET", path, host="one.test"))
                    r = c.read_response()
                    self.assertEqual(r.status, 200, f"round {i} {path}")
                    self.assertEqual(r.header("X-Backend"), "g1")
                    self.assertFalse(r.has_token("Connection", "close"),
                                     "upstream's Connection: close was relayed to the client")

    def test_upstream_closes_idle_pooled_connection(self):
        for i in range(3):
            n_before, _, closed_before = self.idler.stats()
            r = h.get(self.port, "/", host="idle.test")
            self.assertEqual((r.status, r.body), (200, b"idle ok\n"), f"round {i}")
            # Wait until the upstream has silently closed the (now pooled) connection.
            h.wait_until(lambda: self.idler.stats()[2] > closed_before, 10,
                         message="the upstream to close its idle connection")
            self.assertEqual(self.idler.stats()[0] - n_before, 1)
        r = h.get(self.port, "/", host="idle.test")
        self.assertEqual(r.status, 200)

    def test_idle_client_closed(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("GET", "/", host="one.test"))
            self.assertEqual(c.read_response().status, 200)
            start = time.monotonic()
            self.assertEqual(c.wait_closed(timeout=15), b"")
            self.assertGreater(time.monotonic() - start, 0.5, "closed well before the idle timeout")


class ZeroEndpointsTest(h.SluiceTestCase):
    def test_cluster_without_endpoints(self):
        d = self.make_tempdir()
        cfg = h.config([h.listener("web", routes=[{"match": {"path_prefix": "/"}, "cluster": "empty"}])],
                       [{"name": "empty", "policy": "round_robin", "endpoints": []}])
        path = os.path.join(d, "check.yaml")
        with open(path, "w") as f:
            f.write(h.to_yaml(cfg))
        check = subprocess.run([h.sluice_bin(), "-t", "-c", path], capture_output=True, timeout=60)
        if check.returncode != 0:
            self.assertIn(b"endpoints", check.stderr)
            self.skipTest("a cluster without endpoints is rejected by the configuration check")
        s = self.start_sluice(cfg, d)
        r = h.get(s.port, "/")
        self.assertIn(r.status, (502, 503))


if __name__ == "__main__":
    unittest.main()
