"""Per-route request metrics: sluice_route_requests_total and
sluice_route_request_duration_seconds, labelled by each route's `name` or, without one, by its
match; exact counts per route, promtool on the scrape, and counters that continue over a
configuration reload while removed routes disappear from the exposition."""

import os
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_admin as admin  # noqa: E402

ROUTE_FAMILIES = ("sluice_route_requests_total", "sluice_route_request_duration_seconds_count")


def web_routes(with_health=True, extra=None):
    routes = [{"name": "api", "match": {"host": "api.example.com"}, "cluster": "main"}]
    if with_health:
        routes.append({"name": "health", "match": {"path_prefix": "/healthz"},
                       "direct": {"status": 200, "body": "ok\n"}})
    routes.append({"match": {"path_prefix": "/status/"}, "cluster": "main"})  # label "/status/"
    routes.extend(extra or [])
    return routes


def make_config(backend, with_health=True, extra=None):
    cfg = h.config(
        [h.listener("web", web_routes(with_health, extra)),
         h.listener("other", [{"name": "api", "match": {"path_prefix": "/"}, "cluster": "main"}])],
        [h.cluster("main", [backend])], workers=2)
    cfg["admin"] = {"address": "127.0.0.1:0"}
    return cfg


def route_series(samples):
    """{(family, listener, route, code or None): value} of every per-route sample."""
    out = {}
    for (name, labels), value in samples.items():
        if name not in ROUTE_FAMILIES:
            continue
        d = dict(labels)
        out[(name, d["listener"], d["route"], d.get("code"))] = value
    return out


def expected_series(counts):
    """The full per-route sample set for {(listener, route): {code: n}}."""
    out = {}
    for (listener, route), by_code in counts.items():
        for code in ("1xx", "2xx", "3xx", "4xx", "5xx"):
            out[("sluice_route_requests_total", listener, route, code)] = float(by_code.get(code, 0))
        out[("sluice_route_request_duration_seconds_count", listener, route, None)] = float(
            sum(by_code.values()))
    return out


class MetricsRoutesTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        (cls.backend,) = cls.start_backends("a")
        cls.workdir = cls.make_tempdir()
        cls.sluice = cls.start_sluice(make_config(cls.backend), cls.workdir)
        cls.admin = int(cls.sluice.wait_for_line(admin.ADMIN_LINE)[0].group(1))
        cls.web = cls.sluice.ports["web"]
        cls.other = cls.sluice.ports["other"]

    def scrape(self):
        r = admin.admin_get(self.admin, "/metrics")
        self.assertEqual(r.status, 200)
        return r.text()

    def wait_for_series(self, want):
        """Polls /metrics until the per-route samples are exactly `want` (the last request of a
        burst may be counted just after its response reached the client)."""
        last = {}

        def matches():
            nonlocal last
            last = route_series(admin.parse_metrics(self.scrape()))
            return last == want
        try:
            h.wait_until(matches, 30, interval=0.05, message="per-route counts")
        except AssertionError:
            self.assertEqual(last, want)  # shows the difference
        return last

    def send(self, port, path, host, status, n):
        for _ in range(n):
            r = h.get(port, path, host=host)
            self.assertEqual(r.status, status, f"{host}{path}: {r.body!r}")

    def test_1_counts_per_route_and_promtool(self):
        self.send(self.web, "/", "api.example.com", 200, 5)
        self.send(self.web, "/healthz", "test", 200, 3)
        self.send(self.web, "/status/200", "test", 200, 2)
        self.send(self.web, "/status/503", "test", 503, 2)
        self.send(self.web, "/status/404", "test", 404, 1)
        self.send(self.web, "/nothing", "test", 404, 2)  # no route: no route series
        self.send(self.other, "/", "test", 200, 1)
        want = expected_series({
            ("web", "api"): {"2xx": 5},
            ("web", "health"): {"2xx": 3},
            ("web", "/status/"): {"2xx": 2, "5xx": 2, "4xx": 1},
            ("other", "api"): {"2xx": 1},
        })
        self.wait_for_series(want)

        text = self.scrape()
        samples = admin.parse_metrics(text)
        # The listener totals still count every request, routed or not.
        self.assertEqual(admin.metric(samples, "sluice_downstream_requests_total", listener="web",
                                      code="4xx"), 3)
        self.assertIn("# TYPE sluice_route_requests_total counter", text)
        self.assertIn("# TYPE sluice_route_request_duration_seconds histogram", text)
        self.assertIn('sluice_route_request_duration_seconds_bucket{listener="web",route="api",'
                      'le="+Inf"} 5', text)
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool is not installed (Debian package prometheus)")
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, f"promtool check metrics:\n{r.stdout}{r.stderr}")

    def test_2_reload_keeps_counters_and_drops_removed_routes(self):
        before = route_series(admin.parse_metrics(self.scrape()))
        api_before = before.get(("sluice_route_requests_total", "web", "api", "2xx"), 0)
        status_before = {code: before.get(("sluice_route_requests_total", "web", "/status/", code), 0)
                         for code in ("2xx", "4xx", "5xx")}
        other_before = before.get(("sluice_route_requests_total", "other", "api", "2xx"), 0)

        # The health route goes away; an unnamed host route arrives.
        extra = [{"match": {"host": "v2.example.com", "path_prefix": "/v2/"}, "cluster": "main"}]
        with open(self.sluice.config_path, "w") as f:
            f.write(h.to_yaml(make_config(self.backend, with_health=False, extra=extra)))
        self.sluice.signal(signal.SIGHUP)
        h.wait_until(lambda: admin.metric(admin.parse_metrics(self.scrape()),
                                          "sluice_config_reloads_total", result="success") >= 1,
                     30, message="the reload")

        self.send(self.web, "/", "api.example.com", 200, 2)
        self.send(self.web, "/v2/x", "v2.example.com", 200, 1)
        self.send(self.web, "/healthz", "test", 404, 1)  # no route any more
        want = expected_series({
            ("web", "api"): {"2xx": api_before + 2},
            ("web", "/status/"): status_before,
            ("web", "v2.example.com/v2/"): {"2xx": 1},
            ("other", "api"): {"2xx": other_before},
        })
        got = self.wait_for_series(want)
        self.assertNotIn(("sluice_route_requests_total", "web", "health", "2xx"), got)
        self.assertAlive(self.sluice)


if __name__ == "__main__":
    unittest.main()
