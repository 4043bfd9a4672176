"""least_conn with real concurrent slow requests: new requests avoid busy backends."""

import collections
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def established_remote_ports():
    """Counter of remote ports of ESTABLISHED IPv4 TCP connections on this machine."""
    out = collections.Counter()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "01":
                out[int(parts[2].split(":")[1], 16)] += 1
    return out


class LeastConnTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backends = cls.start_backends("a", "b", "c")
        cfg = h.config([h.listener("web")],
                       [h.cluster("main", cls.backends, policy="least_conn")], workers=2)
        cls.sluice = cls.start_sluice(cfg)
        cls.by_port = {b.port: b.id for b in cls.backends}

    def upstream_connections(self):
        """{backend id: number of ESTABLISHED connections towards it}."""
        ports = established_remote_ports()
        return {self.by_port[p]: ports[p] for p in self.by_port if ports.get(p)}

    def test_new_requests_go_to_least_loaded(self):
        self.assertEqual(self.upstream_connections(), {}, "upstream connections before any request")
        results = {}

        def long_request(i):
            try:
                results[i] = h.get(self.sluice.port, "/delay/10000", timeout=60)
            except Exception as e:  # noqa: BLE001 - checked below
                results[i] = e

        # 10 s: ample for six quick requests on a loaded machine (sanitizer build, parallel tests).
        threads = [threading.Thread(target=long_request, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        conns = h.wait_until(
            lambda: sum(self.upstream_connections().values()) >= 2 and self.upstream_connections(),
            20, message="two upstream connections for the slow requests")
        busy = set(conns)
        self.assertEqual(len(busy), 2, f"both slow requests went to the same backend: {conns}")
        (idle,) = {"a", "b", "c"} - busy
        quick = [h.get(self.sluice.port, "/").header("X-Backend") for _ in range(6)]
        still_running = [t.is_alive() for t in threads]
        for t in threads:
            t.join(timeout=60)
        self.assertTrue(all(still_running), "slow requests finished before the quick ones")
        self.assertEqual(quick, [idle] * 6, f"busy: {busy}")
        for i in range(2):
            self.assertIsInstance(results[i], h.Response, results[i])
            self.assertEqual(results[i].status, 200)
        self.assertEqual({results[0].header("X-Backend"), results[1].header("X-Backend")}, busy)

        # Once they are done, every backend takes requests again (active counts released).
        seen = collections.Counter(h.get(self.sluice.port, "/").header("X-Backend")
                                   for _ in range(30))
        self.assertEqual(set(seen), {"a", "b", "c"}, seen)


if __name__ == "__main__":
    unittest.main()
