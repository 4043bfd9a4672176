"""HTTP/1.1 proxying basics: balancing, keep-alive, pipelining, bodies, routing."""

import collections
import hashlib
import os
import sys
import socket
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ALPHABET = bytes(range(ord("a"), ord("a") + 26))


class ProxyBasicTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.a, cls.b, cls.c = cls.start_backends("a", "b", "c")
        routes = [
            {"match": {"host": "rr.test"}, "cluster": "rr"},
            {"match": {"host": "weighted.test"}, "cluster": "weighted"},
            {"match": {"host": "direct.test", "path_prefix": "/"},
             "direct": {"status": 200, "body": "pong\n", "content_type": "text/plain"}},
            {"match": {"host": "direct.test", "path_prefix": "/down"},
             "direct": {"status": 503, "body": "{\"down\":true}", "content_type": "application/json"}},
            {"match": {"host": "exact.example.com"}, "cluster": "only_a"},
            {"match": {"host": "*.example.com"}, "cluster": "only_b"},
            # Listed shortest first: the longest matching prefix must win, not the first.
            {"match": {"host": "paths.test", "path_prefix": "/"}, "cluster": "only_c"},
            {"match": {"host": "paths.test", "path_prefix": "/api/"}, "cluster": "only_a"},
            {"match": {"host": "paths.test", "path_prefix": "/api/v2/"}, "cluster": "only_b"},
            {"match": {"path_prefix": "/"}, "cluster": "only_c"},
        ]
        cfg = h.config(
            [h.listener("web", routes=routes),
             h.listener("ka5", routes=[{"match": {"path_prefix": "/"}, "cluster": "only_a"}],
                        limits={"max_keepalive_requests": 5})],
            [h.cluster("rr", [cls.a, cls.b, cls.c]),
             h.cluster("weighted", [(cls.a, 3), (cls.b, 1)]),
             h.cluster("only_a", [cls.a]),
             h.cluster("only_b", [cls.b]),
             h.cluster("only_c", [cls.c])],
            workers=1)
        cls.sluice = cls.start_sluice(cfg)
        cls.port = cls.sluice.ports["web"]

    def get(self, path="/", host="rr.test", **kw):
        return h.get(self.port, path, host=host, **kw)

    # ---- balancing ------------------------------------------------------------------------

    def test_get_reaches_backend(self):
        r = self.get("/", host="exact.example.com")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Backend"), "a")
        self.assertEqual(r.body, b"hello from a\n")

    def test_round_robin_spreads_evenly(self):
        counts = collections.Counter()
        with h.Conn(self.port) as c:
            for _ in range(30):
                c.send(h.build_request("GET", "/", host="rr.test"))
                r = c.read_response()
                self.assertEqual(r.status, 200)
                counts[r.header("X-Backend")] += 1
        self.assertEqual(dict(counts), {"a": 10, "b": 10, "c": 10})

    def test_round_robin_across_connections(self):
        counts = collections.Counter(self.get("/").header("X-Backend") for _ in range(30))
        self.assertEqual(dict(counts), {"a": 10, "b": 10, "c": 10})

    def test_weights(self):
        counts = collections.Counter()
        with h.Conn(self.port) as c:
            for _ in range(40):
                c.send(h.build_request("GET", "/", host="weighted.test"))
                counts[c.read_response().header("X-Backend")] += 1
        self.assertEqual(dict(counts), {"a": 30, "b": 10})

    # ---- connection handling --------------------------------------------------------------

    def test_keepalive_100_requests_one_connection(self):
        with h.Conn(self.port) as c:
            for i in range(100):
                c.send(h.build_request("GET", f"/headers?i={i}", host="rr.test"))
                r = c.read_response()
                self.assertEqual(r.status, 200, f"request {i}")
                self.assertFalse(r.has_token("Connection", "close"), f"request {i}: {r.headers}")
                self.assertIn(f"GET /headers?i={i} HTTP/1.1", r.text())
            self.assertTrue(c.is_open_now(), "sluice closed the keep-alive connection")

    def test_max_keepalive_requests(self):
        with h.Conn(self.sluice.ports["ka5"]) as c:
            for i in range(5):
                c.send(h.build_request("GET", "/"))
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.has_token("Connection", "close"), i == 4, f"request {i + 1}")
            self.assertEqual(c.wait_closed(), b"")

    def test_pipelining_in_order(self):
        with h.Conn(self.port) as c:
            c.send(b"".join(h.build_request("GET", f"/headers?n={i}", host="rr.test")
                            for i in range(1, 6)))
            for i in range(1, 6):
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.text().splitlines()[0], f"GET /headers?n={i} HTTP/1.1")

    def test_pipelined_statuses(self):
        with h.Conn(self.port) as c:
            paths = ["/status/201", "/status/204", "/status/202", "/status/304", "/status/404"]
            c.send(b"".join(h.build_request("GET", p, host="exact.example.com") for p in paths))
            self.assertEqual([c.read_response().status for _ in paths], [201, 204, 202, 304, 404])

    def test_pipelined_answers_to_a_client_that_reads_late(self):
        # 900 pipelined requests whose answers (3-4 KB each, written with their head in one
        # send) far exceed what the client's small receive buffer and the kernel hold: sluice's
        # sends come up short and must carry on later, without losing, reordering or
        # duplicating a byte.
        n = 900
        sizes = [3000 + (i * 37) % 1000 for i in range(n)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(h.IO_TIMEOUT)
        sock.connect(("127.0.0.1", self.port))
        c = h.Conn.__new__(h.Conn)
        c.timeout, c.sock, c.buf, c.eof = h.IO_TIMEOUT, sock, bytearray(), False
        with c:
            c.send(b"".join(h.build_request("GET", f"/bytes/{k}", host="exact.example.com")
                            for k in sizes))
            time.sleep(0.5)  # let the answers pile up before reading any
            for i, k in enumerate(sizes):
                r = c.read_response()
                self.assertEqual((i, r.status, len(r.body)), (i, 200, k))
                self.assertEqual(r.body, (ALPHABET * (k // 26 + 1))[:k])

    def test_head_has_no_body(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("HEAD", "/bytes/1000", host="exact.example.com"))
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Length"), "1000")
            # A body leaking after the HEAD response would be parsed as the next status line.
            c.send(h.build_request("GET", "/", host="exact.example.com"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"hello from a\n"))

    def test_204_and_304_have_no_body(self):
        with h.Conn(self.port) as c:
            for status in (204, 304):
                c.send(h.build_request("GET", f"/status/{status}", host="exact.example.com"))
                r = c.read_response()
                self.assertEqual(r.status, status)
                self.assertIsNone(r.header("Transfer-Encoding"))
                c.send(h.build_request("GET", "/", host="exact.example.com"))
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, b"hello from a\n"))

    def test_set_cookie_preserved(self):
        r = self.get("/cookies", host="exact.example.com")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.all("Set-Cookie"), ["a=1; Path=/", "b=2; Path=/"])

    # ---- bodies ---------------------------------------------------------------------------

    @staticmethod
    def blocks(total, block=65536):
        """Deterministic, position-dependent data: a reordered or dropped block changes the hash."""
        sent = 0
        i = 0
        while sent < total:
            n = min(block, total - sent)
            seed = hashlib.sha256(i.to_bytes(8, "little")).digest()
            yield (seed * (n // 32 + 1))[:n]
            sent += n
            i += 1

    def expected_hash(self, total):
        d = hashlib.sha256()
        for b in self.blocks(total):
            d.update(b)
        return d.hexdigest()

    def test_post_64mib_content_length(self):
        total = 64 << 20
        sink = h.Hasher()
        with h.Conn(self.port, timeout=60) as c:
            head = h.build_request("POST", "/echo", [("Content-Length", str(total))],
                                   host="exact.example.com")
            r = h.exchange_streaming(c, head, self.blocks(total), sink=sink)
        self.assertEqual(r.status, 200)
        self.assertEqual(sink.n, total)
        self.assertEqual(sink.hexdigest(), self.expected_hash(total))

    def test_post_64mib_chunked(self):
        total = 64 << 20
        sink = h.Hasher()
        with h.Conn(self.port, timeout=60) as c:
            head = h.build_request("POST", "/echo", [("Transfer-Encoding", "chunked")],
                                   host="exact.example.com")
            r = h.exchange_streaming(c, head, h.chunk_encode(self.blocks(total, 50000)), sink=sink)
            self.assertEqual(r.status, 200)
            # The connection is still usable afterwards.
            c.send(h.build_request("GET", "/", host="exact.example.com"))
            self.assertEqual(c.read_response().status, 200)
        self.assertEqual(sink.n, total)
        d = hashlib.sha256()
        for b in self.blocks(total, 50000):
            d.update(b)
        self.assertEqual(sink.hexdigest(), d.hexdigest())

    def test_get_200mb_streamed_with_bounded_memory(self):
        total = 200_000_000
        pattern = ALPHABET * ((1 << 19) // 26 + 2)
        state = {"offset": 0, "bad": None, "max_rss": 0, "next_sample": 0}
        proc = self.sluice

        def sink(data):
            o = state["offset"]
            if state["bad"] is None and data != pattern[o % 26: o % 26 + len(data)]:
                state["bad"] = o
            state["offset"] = o + len(data)
            if state["offset"] >= state["next_sample"]:
                state["next_sample"] += 4 << 20
                state["max_rss"] = max(state["max_rss"], proc.rss_kib())

        with h.Conn(self.port, timeout=60) as c:
            c.send(h.build_request("GET", f"/bytes/{total}", host="exact.example.com"))
            r = c.read_response(sink=sink)
        self.assertEqual(r.status, 200)
        self.assertEqual(state["offset"], total)
        self.assertIsNone(state["bad"], f"wrong bytes at offset {state['bad']}")
        limit_mib = 400 if proc.uses_asan() else 150
        self.assertLess(state["max_rss"] // 1024, limit_mib,
                        f"sluice RSS reached {state['max_rss'] // 1024} MiB while streaming")

    def test_get_chunked_upstream_body(self):
        total = 3_000_000
        sink = h.Hasher()
        with h.Conn(self.port) as c:
            c.send(h.build_request("GET", f"/bytes/{total}?chunked=1", host="exact.example.com"))
            r = c.read_response(sink=sink)
        self.assertEqual(r.status, 200)
        expected = (ALPHABET * (total // 26 + 1))[:total]
        self.assertEqual(sink.n, total)
        self.assertEqual(sink.hexdigest(), hashlib.sha256(expected).hexdigest())

    def test_expect_100_continue(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("POST", "/echo",
                                   [("Content-Length", "11"), ("Expect", "100-continue")],
                                   host="exact.example.com"))
            # The body is held back until 100 Continue arrives; no 100 means a timeout here.
            interim = c.read_response(interim=True)
            self.assertEqual(interim.status, 100)
            c.send(b"hello world")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"hello world")

    # ---- routing --------------------------------------------------------------------------

    def test_direct_response(self):
        r = self.get("/anything", host="direct.test")
        self.assertEqual((r.status, r.body), (200, b"pong\n"))
        self.assertTrue(r.header("Content-Type", "").startswith("text/plain"), r.headers)
        self.assertIsNone(r.header("X-Backend"))
        r = self.get("/down/x", host="direct.test")
        self.assertEqual((r.status, r.body), (503, b'{"down":true}'))
        self.assertEqual(r.header("Content-Type"), "application/json")

    def test_direct_response_head(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("HEAD", "/", host="direct.test"))
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 200)
            c.send(h.build_request("GET", "/", host="direct.test"))
            self.assertEqual(c.read_response().body, b"pong\n")

    def test_host_routing(self):
        cases = {
            "exact.example.com": "a",
            "exact.example.com:8080": "a",
            "EXACT.Example.COM": "a",
            "foo.example.com": "b",
            "bar.example.com:81": "b",
            "example.com": "c",
            "other.test": "c",
        }
        for host, backend in cases.items():
            with self.subTest(host=host):
                r = self.get("/", host=host)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("X-Backend"), backend)

    def test_longest_path_prefix(self):
        cases = {"/api/v2/users": "b", "/api/v2/": "b", "/api/v1/x": "a", "/api/": "a",
                 "/apix": "c", "/": "c", "/other": "c"}
        for path, backend in cases.items():
            with self.subTest(path=path):
                r = self.get(path, host="paths.test")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("X-Backend"), backend)

    def test_concurrent_clients(self):
        results = []
        lock = threading.Lock()

        def client():
            with h.Conn(self.port) as c:
                for _ in range(20):
                    c.send(h.build_request("GET", "/", host="rr.test"))
                    r = c.read_response()
                    with lock:
                        results.append(r.status)

        threads = [threading.Thread(target=client) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=h.IO_TIMEOUT * 2)
        self.assertEqual(results, [200] * 200)
        self.assertAlive(self.sluice)


if __name__ == "__main__":
    unittest.main()
