"""The admin listener: /metrics (checked by promtool and scraped by a real Prometheus),
/ready and /live, /status, and draining a backend through the admin API."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ADMIN_LINE = r"admin listening address=127\.0\.0\.1:(\d+)"


def start_with_admin(case, cfg, token=None):
    """Starts sluice with an admin listener on 127.0.0.1:0; returns (sluice, admin port)."""
    cfg = dict(cfg)
    cfg["admin"] = {"address": "127.0.0.1:0"}
    if token:
        cfg["admin"]["token"] = token
    s = case.start_sluice(cfg)
    port = int(s.wait_for_line(ADMIN_LINE)[0].group(1))
    return s, port


def admin_get(port, path, headers=None):
    return h.request(port, "GET", path, headers=headers, host=f"127.0.0.1:{port}")


def admin_post(port, path, headers=None):
    return h.request(port, "POST", path, headers=headers, body=b"", host=f"127.0.0.1:{port}")


def admin_json(port, path="/status"):
    r = admin_get(port, path)
    if r.status != 200:
        raise AssertionError(f"{path} answered {r.status}: {r.body!r}")
    return json.loads(r.body)


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} from the text exposition format."""
    out = {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            raise AssertionError(f"unparsable metrics line {line!r}")
        labels = frozenset(label_re.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def downstream_active(port, listener):
    """sluice_downstream_connections_active of `listener`, scraped from admin `port`."""
    text = admin_get(port, "/metrics").body.decode()
    return metric(parse_metrics(text), "sluice_downstream_connections_active", listener=listener)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class AdminTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backends = cls.start_backends("a", "b", "c")
        cfg = h.config([h.listener("web")], [h.cluster("main", cls.backends)], workers=2)
        cls.sluice, cls.admin = start_with_admin(cls, cfg)

    def scrape(self):
        r = admin_get(self.admin, "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type", "").startswith("text/plain; version=0.0.4"))
        return r.text()

    def test_live_and_ready(self):
        self.assertEqual(admin_get(self.admin, "/live").status, 200)
        self.assertEqual(admin_get(self.admin, "/ready").status, 200)

    def test_status_document(self):
        doc = admin_json(self.admin)
        self.assertFalse(doc["draining"])
        self.assertEqual([l["name"] for l in doc["listeners"]], ["web"])
        (c,) = doc["clusters"]
        self.assertEqual(c["name"], "main")
        self.assertEqual(sorted(b["address"] for b in c["backends"]),
                         sorted(b.address for b in self.backends))
        for b in c["backends"]:
            self.assertIn(b["state"], ("healthy", "unhealthy", "ejected", "draining"))
            self.assertIsInstance(b["active_requests"], int)

    def test_counters_move_with_requests(self):
        before = parse_metrics(self.scrape())
        for _ in range(30):
            self.assertEqual(h.get(self.sluice.port, "/").status, 200)
        for _ in range(3):
            self.assertEqual(h.get(self.sluice.port, "/status/503").status, 503)
        after = parse_metrics(self.scrape())

        def delta(name, **labels):
            return metric(after, name, **labels) - metric(before, name, **labels)

        self.assertEqual(delta("sluice_downstream_requests_total", listener="web", code="2xx"), 30)
        self.assertEqual(delta("sluice_downstream_requests_total", listener="web", code="5xx"), 3)
        self.assertEqual(delta("sluice_cluster_requests_total", cluster="main", code="2xx"), 30)
        self.assertEqual(delta("sluice_cluster_request_duration_seconds_count", cluster="main"), 33)
        self.assertEqual(delta("sluice_backend_requests_total", cluster="main", code="2xx"), 30)
        for b in self.backends:
            self.assertGreater(delta("sluice_backend_requests_total", cluster="main",
                                     backend=b.address), 0, b.address)
        self.assertGreater(delta("sluice_downstream_received_bytes_total", listener="web"), 0)
        self.assertGreater(delta("sluice_downstream_sent_bytes_total", listener="web"), 0)
        self.assertGreaterEqual(delta("sluice_downstream_connections_accepted_total", listener="web"), 33)

    def test_promtool_accepts_a_scrape_under_load(self):
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool is not installed (Debian package prometheus)")
        # Bounded load from a few threads while scraping.
        import threading
        stop = threading.Event()
        sent = [0]

        def load():
            while not stop.is_set() and sent[0] < 2000:
                h.get(self.sluice.port, "/")
                sent[0] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            h.wait_until(lambda: sent[0] >= 50, 30, message="some load")
            text = self.scrape()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, f"promtool check metrics:\n{r.stdout}{r.stderr}")

    def test_drain_and_undrain_move_traffic(self):
        target = self.backends[1]
        path = f"/backends/main/{urllib.parse.quote(target.address, safe='')}"
        r = admin_post(self.admin, path + "/drain")
        self.assertEqual(r.status, 200, r.body)
        try:
            seen = {h.get(self.sluice.port, "/").header("X-Backend") for _ in range(30)}
            self.assertNotIn(target.id, seen)
            self.assertEqual(seen, {b.id for b in self.backends} - {target.id})
            states = {b["address"]: b["state"] for b in admin_json(self.admin)["clusters"][0]["backends"]}
            self.assertEqual(states[target.address], "draining")
            samples = parse_metrics(self.scrape())
            self.assertEqual(metric(samples, "sluice_backend_ready", cluster="main",
                                    backend=target.address), 0)
        finally:
            r = admin_post(self.admin, path + "/undrain")
            self.assertEqual(r.status, 200, r.body)
        seen = {h.get(self.sluice.port, "/").header("X-Backend") for _ in range(30)}
        self.assertIn(target.id, seen)
        self.assertEqual(admin_post(self.admin, "/backends/main/127.0.0.1:1/drain").status, 404)
        self.assertEqual(admin_post(self.admin, "/backends/nope/127.0.0.1:1/drain").status, 404)

    def test_reload_of_the_same_file(self):
        r = admin_post(self.admin, "/reload")
        self.assertEqual(r.status, 200, r.body)
        body = json.loads(r.body)
        self.assertTrue(body["ok"], body)
        self.assertEqual(body["changes"], [], body)
        self.assertEqual(body["errors"], [], body)
        self.assertEqual(h.get(self.sluice.port, "/").status, 200)

    def test_real_prometheus_scrapes_sluice(self):
        prometheus = shutil.which("prometheus")
        if not prometheus:
            self.skipTest("prometheus is not installed (Debian package prometheus)")
        for _ in range(10):
            h.get(self.sluice.port, "/")
        tmp = tempfile.mkdtemp(prefix="sluice-prom-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write("global: { scrape_interval: 1s, evaluation_interval: 1s }\n"
                    "scrape_configs:\n"
                    "  - job_name: sluice\n"
                    f"    static_configs: [ {{ targets: [ '127.0.0.1:{self.admin}' ] }} ]\n")
        port = free_port()
        prom = h.Process([prometheus, f"--config.file={tmp}/prometheus.yml",
                          f"--storage.tsdb.path={tmp}/data", f"--web.listen-address=127.0.0.1:{port}",
                          "--log.level=warn"], "prometheus")
        self.addCleanup(prom.stop)
        query = urllib.parse.quote('sum(sluice_downstream_requests_total{job="sluice",listener="web"})')

        def value():
            try:
                r = h.get(port, f"/api/v1/query?query={query}", host=f"127.0.0.1:{port}", timeout=5)
            except (OSError, h.ConnectionClosed, AssertionError):
                if not prom.alive():
                    raise AssertionError(f"prometheus exited:\n{prom.tail()}")
                return None
            if r.status != 200:
                return None
            result = json.loads(r.body)["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        first = h.wait_until(lambda: value() is not None and value(), 60,
                             interval=0.5, message="prometheus to scrape sluice")
        self.assertGreaterEqual(first, 10)
        for _ in range(5):
            h.get(self.sluice.port, "/")
        h.wait_until(lambda: (value() or 0) >= first + 5, 60, interval=0.5,
                     message="prometheus to see the new requests")


class AdminDrainingTest(h.SluiceTestCase):
    """/ready turns 503 once sluice drains (a slow request keeps the drain going)."""

    def test_ready_turns_503_while_draining(self):
        (a,) = self.start_backends("a")
        cfg = h.config([h.listener("web")], [h.cluster("main", [a])], workers=1, drain_timeout="20s")
        s, admin = start_with_admin(self, cfg)
        self.assertEqual(admin_get(admin, "/ready").status, 200)
        import threading
        done = threading.Event()

        def slow():
            try:
                h.get(s.port, "/delay/3000", timeout=30)
            finally:
                done.set()

        t = threading.Thread(target=slow)
        t.start()
        h.wait_until(lambda: admin_json(admin)["active_requests"] >= 1, 20, message="request in flight")
        s.signal(15)
        h.wait_until(lambda: admin_get(admin, "/ready").status == 503, 20, message="/ready 503")
        self.assertEqual(admin_get(admin, "/live").status, 200)
        t.join(timeout=30)
        self.assertTrue(done.is_set())


class AdminTokenTest(h.SluiceTestCase):
    def test_token_required(self):
        (a,) = self.start_backends("a")
        token = "0123456789abcdef0123"
        s, admin = start_with_admin(self, h.config([h.listener("web")], [h.cluster("main", [a])]),
                                    token=token)
        self.assertEqual(admin_get(admin, "/metrics").status, 401)
        self.assertEqual(admin_get(admin, "/metrics", headers=[("Authorization", f"Bearer {token}")]).status, 200)
        self.assertEqual(admin_get(admin, "/ready").status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
