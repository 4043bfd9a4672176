"""HTTP/2 streams in the access log and the metrics: gRPC calls (grpc++ Hello client) and h2c
requests (curl --http2-prior-knowledge) proxied to HTTP/2 and HTTP/1.1 clusters or answered
directly give exact listener, cluster, backend and route counts, one access log line each, and
connections counted once; ring_hash on an h2c cluster hashes each stream by its header.

Needs SLUICE_HELLO_SERVER and SLUICE_HELLO_CLIENT (built from examples/hello when grpc++ is
installed) and curl.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_admin as admin  # noqa: E402
import test_tls as tls  # noqa: E402
from test_grpc import HelloServer, grpc_frame, run_client  # noqa: E402

TIMEOUT = 120
GRPC_CALLS = 20
HASH_HEADER = "X-User-Id"


def curl(port, path, *args):
    """curl over h2c with prior knowledge; returns (status, body bytes)."""
    argv = ["curl", "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "\n@@%{http_code}", *args,
            f"http://127.0.0.1:{port}{path}"]
    p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    tail = p.stdout.rfind(b"\n@@")
    if tail < 0:
        raise AssertionError(f"curl failed ({p.returncode}): {p.stderr.decode()}")
    return int(p.stdout[tail + 3:].decode()), p.stdout[:tail]


@unittest.skipUnless(shutil.which("curl") and tls.OPENSSL, "needs curl and openssl")
class H2ObservabilityTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.hello = []
        for i in ("a", "b", "c"):
            s = HelloServer(f"srv-{i}")
            cls.addClassCleanup(s.stop)
            cls.hello.append(s)
        (cls.web,) = cls.start_backends("d")
        cls.workdir = cls.make_tempdir()
        cls.access_path = os.path.join(cls.workdir, "access.log")
        tls.make_ca(cls.workdir)
        tls.make_cert(cls.workdir, "a.test")
        cls.ca = os.path.join(cls.workdir, "ca.pem")
        routes = [{"name": "direct", "match": {"path_prefix": "/direct"},
                   "direct": {"status": 200, "body": "direct\n"}},
                  {"name": "plain", "match": {"path_prefix": "/status/"}, "cluster": "web"},
                  {"name": "calls", "match": {"path_prefix": "/"}, "cluster": "hello"}]
        cfg = h.config(
            [h.listener("grpc", routes=routes),
             h.listener("hash", routes=[{"name": "hashed", "match": {"path_prefix": "/"},
                                         "cluster": "hashed"}]),
             h.listener("secure", routes=[{"name": "tls", "match": {"path_prefix": "/"},
                                           "direct": {"status": 200, "body": "tls\n"}}],
                        tls={"certificates": [{"cert": "a.test.pem", "key": "a.test.key"}]})],
            [h.cluster("hello", cls.hello[:2], protocol="h2c"),
             h.cluster("web", [cls.web]),
             h.cluster("hashed", cls.hello, protocol="h2c", policy="ring_hash",
                       hash={"on": "header", "name": HASH_HEADER})],
            workers=2)
        cfg["admin"] = {"address": "127.0.0.1:0"}
        cfg["log"]["access"] = {"path": cls.access_path, "format": "json"}
        cls.sluice = cls.start_sluice(cfg, cls.workdir)
        cls.admin = int(cls.sluice.wait_for_line(admin.ADMIN_LINE)[0].group(1))
        cls.port = cls.sluice.ports["grpc"]
        cls.hash_port = cls.sluice.ports["hash"]
        cls.tls_port = cls.sluice.ports["secure"]

    def scrape(self):
        r = admin.admin_get(self.admin, "/metrics")
        self.assertEqual(r.status, 200)
        return r.text()

    def access_lines(self):
        if not os.path.exists(self.access_path):
            return []
        with open(self.access_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def wait_metric(self, name, want, **labels):
        """Polls /metrics until the summed samples of `name` with `labels` equal `want` (a
        stream is counted when it closes, just after its response reached the client)."""
        last = None

        def matches():
            nonlocal last
            last = admin.metric(admin.parse_metrics(self.scrape()), name, **labels)
            return last == want
        try:
            h.wait_until(matches, 30, interval=0.05, message=f"{name} {labels}")
        except AssertionError:
            self.assertEqual(last, want, f"{name} {labels}")

    def test_1_streams_are_logged_and_counted(self):
        # M h2c requests, each on its own connection: HTTP/1.1 cluster, direct answers.
        plan = [("/status/200", 200)] * 4 + [("/status/503", 503)] * 2 + [("/direct", 200)] * 2
        for path, status in plan:
            code, _ = curl(self.port, path, "-A", "obs-test", "-e", "http://referer.example/")
            self.assertEqual(code, status, path)
        m = len(plan)
        # Connections: each counted open once and closed once (the HTTP/1.1 session hands them
        # to the HTTP/2 server after the preface).
        self.wait_metric("sluice_downstream_connections_accepted_total", m, listener="grpc")
        self.wait_metric("sluice_downstream_connections_active", 0, listener="grpc")

        # N gRPC calls on one channel.
        r = run_client(self.port, GRPC_CALLS)
        self.assertEqual(r["failed"], 0, r["raw"])
        self.assertEqual(r["ok"], GRPC_CALLS)
        n = GRPC_CALLS

        self.wait_metric("sluice_downstream_requests_total", n + 6, listener="grpc", code="2xx")
        self.wait_metric("sluice_downstream_requests_total", 2, listener="grpc", code="5xx")
        self.wait_metric("sluice_downstream_connections_active", 0, listener="grpc")
        text = self.scrape()
        s = admin.parse_metrics(text)
        metric = admin.metric
        for code in ("1xx", "3xx", "4xx"):
            self.assertEqual(metric(s, "sluice_downstream_requests_total", listener="grpc",
                                    code=code), 0, code)
        accepted = metric(s, "sluice_downstream_connections_accepted_total", listener="grpc")
        self.assertGreaterEqual(accepted, m + 1)
        # The gRPC channel: one connection (a reconnect or two at most).
        self.assertLessEqual(accepted, m + 3)
        self.assertGreater(metric(s, "sluice_downstream_received_bytes_total", listener="grpc"), 0)
        self.assertGreater(metric(s, "sluice_downstream_sent_bytes_total", listener="grpc"), 0)
        # Clusters.
        self.assertEqual(metric(s, "sluice_cluster_requests_total", cluster="hello", code="2xx"), n)
        self.assertEqual(metric(s, "sluice_cluster_requests_total", cluster="hello"), n)
        self.assertEqual(metric(s, "sluice_cluster_request_duration_seconds_count",
                                cluster="hello"), n)
        self.assertEqual(metric(s, "sluice_cluster_upstream_duration_seconds_count",
                                cluster="hello"), n)
        self.assertEqual(metric(s, "sluice_cluster_requests_total", cluster="web", code="2xx"), 4)
        self.assertEqual(metric(s, "sluice_cluster_requests_total", cluster="web", code="5xx"), 2)
        # Backends: every call answered by one of the two hello backends.
        per_backend = [metric(s, "sluice_backend_requests_total", cluster="hello",
                              backend=b.address, code="2xx") for b in self.hello[:2]]
        self.assertEqual(sum(per_backend), n, per_backend)
        self.assertTrue(all(v > 0 for v in per_backend), per_backend)
        self.assertEqual(metric(s, "sluice_backend_requests_total", cluster="web",
                                backend=self.web.address, code="2xx"), 4)
        self.assertEqual(metric(s, "sluice_backend_requests_total", cluster="web",
                                backend=self.web.address, code="5xx"), 2)
        # Routes.
        self.assertEqual(metric(s, "sluice_route_requests_total", listener="grpc", route="calls",
                                code="2xx"), n)
        self.assertEqual(metric(s, "sluice_route_requests_total", listener="grpc", route="plain",
                                code="2xx"), 4)
        self.assertEqual(metric(s, "sluice_route_requests_total", listener="grpc", route="plain",
                                code="5xx"), 2)
        self.assertEqual(metric(s, "sluice_route_requests_total", listener="grpc", route="direct",
                                code="2xx"), 2)
        self.assertEqual(metric(s, "sluice_route_request_duration_seconds_count", listener="grpc",
                                route="calls"), n)

        # One access log line per stream (flushed by each worker about once a second).
        lines = []

        def all_logged():
            nonlocal lines
            lines = self.access_lines()
            return len(lines) >= n + m
        h.wait_until(all_logged, 30, message="access log lines")
        self.assertEqual(len(lines), n + m, lines)
        self.assertTrue(all(e["protocol"] == "HTTP/2.0" for e in lines), lines)
        calls = [e for e in lines if e["target"] == "/hello.Hello/SayHello"]
        self.assertEqual(len(calls), n, lines)
        hello_addrs = {b.address for b in self.hello[:2]}
        for e in calls:
            self.assertEqual((e["method"], e["status"], e.get("grpc_status")), ("POST", 200, 0), e)
            self.assertIn(e["upstream"], hello_addrs, e)
            self.assertIsNotNone(e["upstream_time"], e)
            self.assertEqual(e["client"], "127.0.0.1", e)
        plain = [e for e in lines if e["target"].startswith("/status/")]
        self.assertEqual(sorted(e["status"] for e in plain), [200] * 4 + [503] * 2, plain)
        for e in plain:
            self.assertEqual((e["method"], e["upstream"]), ("GET", self.web.address), e)
            self.assertEqual((e["user_agent"], e["referer"]),
                             ("obs-test", "http://referer.example/"), e)
            self.assertNotIn("grpc_status", e)
        direct = [e for e in lines if e["target"] == "/direct"]
        self.assertEqual([(e["status"], e["bytes_sent"], e["upstream"]) for e in direct],
                         [(200, 7, None)] * 2, direct)

        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool is not installed (Debian package prometheus)")
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, f"promtool check metrics:\n{p.stdout}{p.stderr}")

    def test_2_ring_hash_by_header(self):
        body = os.path.join(self.workdir, "hello.bin")
        with open(body, "wb") as f:
            f.write(grpc_frame("hash"))
        grpc_args = ["--data-binary", "@" + body, "-H", "content-type: application/grpc",
                     "-H", "te: trailers"]

        def served_by(user):
            code, out = curl(self.hash_port, "/hello.Hello/SayHello", *grpc_args,
                             "-H", f"{HASH_HEADER}: {user}")
            self.assertEqual(code, 200)
            found = re.search(rb"from (srv-[abc])", out)
            self.assertIsNotNone(found, out)
            return found.group(1).decode()

        first = {f"user-{i}": served_by(f"user-{i}") for i in range(12)}
        # The same value goes to the same backend, whatever the connection.
        for _ in range(2):
            for user, server in first.items():
                self.assertEqual(served_by(user), server, user)
        # Different values spread (every stream used to hash alike).
        self.assertGreater(len(set(first.values())), 1, first)
        self.wait_metric("sluice_route_requests_total", 36, listener="hash", route="hashed",
                         code="2xx")
        self.assertAlive(self.sluice)

    def test_3_h2_over_tls_counted_once(self):
        port = self.tls_port
        for _ in range(3):
            p = subprocess.run(
                ["curl", "-sS", "--http2", "--cacert", self.ca, "--resolve",
                 f"a.test:{port}:127.0.0.1", "-o", "/dev/null",
                 "-w", "%{http_version} %{http_code}",
                 f"https://a.test:{port}/tls-check"], capture_output=True, timeout=TIMEOUT)
            self.assertEqual(p.stdout.decode(), "2 200", p.stderr.decode())
        self.wait_metric("sluice_route_requests_total", 3, listener="secure", route="tls",
                         code="2xx")
        self.wait_metric("sluice_downstream_connections_active", 0, listener="secure")
        s = admin.parse_metrics(self.scrape())
        self.assertEqual(admin.metric(s, "sluice_downstream_connections_accepted_total",
                                      listener="secure"), 3)
        self.assertEqual(admin.metric(s, "sluice_downstream_requests_total", listener="secure"), 3)
        self.assertEqual(admin.metric(s, "sluice_downstream_sent_bytes_total",
                                      listener="secure"), 12)  # 3 x "tls\n"
        lines = []

        def logged():
            nonlocal lines
            lines = [e for e in self.access_lines() if e["target"] == "/tls-check"]
            return len(lines) >= 3
        h.wait_until(logged, 30, message="access log lines")
        self.assertEqual([(e["protocol"], e["status"]) for e in lines], [("HTTP/2.0", 200)] * 3)

    def test_4_open_h2c_connection_stays_active(self):
        def active():
            return admin.metric(admin.parse_metrics(self.scrape()),
                                "sluice_downstream_connections_active", listener="hash")
        self.wait_metric("sluice_downstream_connections_active", 0, listener="hash")
        with h.Conn(self.hash_port) as c:
            c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            head = b""  # the server's SETTINGS: the HTTP/2 server has the connection
            while len(head) < 9:
                more = c.sock.recv(9 - len(head))
                self.assertTrue(more, "closed before SETTINGS")
                head += more
            self.assertEqual(head[3], 4, head)
            # Handed over from the HTTP/1.1 session, still open: still counted.
            self.assertEqual(active(), 1)
        self.wait_metric("sluice_downstream_connections_active", 0, listener="hash")


if __name__ == "__main__":
    unittest.main()
