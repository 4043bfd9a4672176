"""Command line: config check (-t) with precise diagnostics, --version, --help, graceful drain on
SIGTERM, and the access log."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

VALID = """\
workers: 1
log:
  level: info
listeners:
  - name: web
    address: 127.0.0.1:0
    protocol: http
    timeouts: { header: 10s, idle: 30s }
    routes:
      - match: { path_prefix: / }
        cluster: app
clusters:
  - name: app
    policy: round_robin
    endpoints: [ "127.0.0.1:9", { address: "127.0.0.1:10", weight: 2 } ]
    timeouts: { connect: 500ms, read: 2s }
"""

# Line numbers below are 1-based and refer to these texts.
UNKNOWN_KEY = """\
workers: 1
listeners:
  - name: web
    address: 127.0.0.1:0
    bogus_key: 1
    routes:
      - match: { path_prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [ "127.0.0.1:9" ]
"""

BAD_DURATION = """\
workers: 1
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - match: { path_prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [ "127.0.0.1:9" ]
    timeouts:
      connect: 5 parsecs
"""

UNKNOWN_CLUSTER = """\
workers: 1
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - match: { path_prefix: / }
        cluster: app
      - match: { path_prefix: /api/ }
        cluster: nope
clusters:
  - name: app
    endpoints: [ "127.0.0.1:9" ]
"""

ALL_THREE = """\
workers: 1
listeners:
  - name: web
    address: 127.0.0.1:0
    bogus_key: 1
    routes:
      - match: { path_prefix: / }
        cluster: nope
clusters:
  - name: app
    endpoints: [ "127.0.0.1:9" ]
    timeouts: { read: 10 }
"""

SYNTAX_ERROR = """\
workers: 1
listeners:
  - name: web
    address: [127.0.0.1:0
"""

DIAG = r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<key>[A-Za-z0-9_.\[\]]+): (?P<msg>.+)$"


class ConfigCheckTest(unittest.TestCase):
    def setUp(self):
        import tempfile
        import shutil
        self.dir = tempfile.mkdtemp(prefix="sluice-itest-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def check(self, text, name="sluice.yaml"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([h.sluice_bin(), "-t", "-c", path], capture_output=True, timeout=60)
        return p, path

    def diagnostics(self, p, path):
        out = []
        for line in p.stderr.decode("utf-8", "replace").splitlines():
            m = re.match(DIAG, line)
            if m and m.group("file") == path:
                out.append((int(m.group("line")), int(m.group("col")), m.group("key"), m.group("msg")))
        return out

    def assertDiagnostic(self, text, line, key):
        p, path = self.check(text)
        self.assertNotEqual(p.returncode, 0)
        diags = self.diagnostics(p, path)
        self.assertTrue(diags, f"no FILE:LINE:COL: key: message line in stderr:\n{p.stderr.decode()}")
        self.assertIn((line, key), [(d[0], d[2]) for d in diags], f"stderr:\n{p.stderr.decode()}")
        for d in diags:
            self.assertGreaterEqual(d[1], 1, "column is 1-based")
        return diags

    def test_valid(self):
        p, _ = self.check(VALID)
        self.assertEqual(p.returncode, 0, p.stderr.decode())

    def test_unknown_key(self):
        d = self.assertDiagnostic(UNKNOWN_KEY, 5, "listeners[0].bogus_key")
        self.assertIn((5, 5), [(x[0], x[1]) for x in d], "column of the key")

    def test_bad_duration(self):
        self.assertDiagnostic(BAD_DURATION, 12, "clusters[0].timeouts.connect")

    def test_unknown_cluster_in_route(self):
        self.assertDiagnostic(UNKNOWN_CLUSTER, 9, "listeners[0].routes[1].cluster")

    def test_every_error_reported_in_order(self):
        p, path = self.check(ALL_THREE)
        self.assertNotEqual(p.returncode, 0)
        diags = self.diagnostics(p, path)
        got = [(d[0], d[2]) for d in diags]
        for expected in [(5, "listeners[0].bogus_key"), (8, "listeners[0].routes[0].cluster"),
                         (12, "clusters[0].timeouts.read")]:
            self.assertIn(expected, got, f"stderr:\n{p.stderr.decode()}")
        self.assertEqual([d[0] for d in diags], sorted(d[0] for d in diags), "not in file order")

    def test_yaml_syntax_error(self):
        p, path = self.check(SYNTAX_ERROR)
        self.assertNotEqual(p.returncode, 0)
        err = p.stderr.decode()
        self.assertRegex(err, re.escape(path) + r":\d+:\d+: ")

    def test_missing_file(self):
        path = os.path.join(self.dir, "does-not-exist.yaml")
        p = subprocess.run([h.sluice_bin(), "-t", "-c", path], capture_output=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(path, p.stderr.decode())

    def test_version(self):
        p = subprocess.run([h.sluice_bin(), "--version"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0)
        out = (p.stdout + p.stderr).decode()
        self.assertRegex(out, r"sluice.*\d+\.\d+\.\d+")

    def test_help(self):
        p = subprocess.run([h.sluice_bin(), "--help"], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0)
        out = (p.stdout + p.stderr).decode()
        self.assertIn("-c", out)
        self.assertIn("-t", out)

    def test_bad_option(self):
        p = subprocess.run([h.sluice_bin(), "--no-such-option"], capture_output=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr, "no message for an unknown option")


class DrainTest(h.SluiceTestCase):
    def test_sigterm_lets_in_flight_request_finish(self):
        slow = self.start_scripted(
            lambda req: ("delay", 1.5, 200, [("X-Backend", "slow")], b"finished\n"), "slow")
        s = self.start_sluice(h.config([h.listener("web")], [h.cluster("main", [slow])], workers=2))
        c = h.Conn(s.port)
        self.addCleanup(c.close)
        c.send(h.build_request("GET", "/delay/1500"))
        h.wait_until(slow.request_event.is_set, 20, message="the request to reach the upstream")
        s.signal(signal.SIGTERM)
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"finished\n"))
        self.assertTrue(r.has_token("Connection", "close"),
                        f"a draining sluice should announce the close: {r.headers}")
        self.assertEqual(c.wait_closed(), b"")
        try:
            code = s.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.fail("sluice did not exit after draining")
        self.assertEqual(code, 0, s.tail())
        with self.assertRaises(OSError):
            h.Conn(s.port, timeout=5).close()

    def test_sigterm_when_idle_exits_quickly(self):
        (b,) = self.start_backends("idle")
        s = self.start_sluice(h.config([h.listener("web")], [h.cluster("main", [b])],
                                       drain_timeout="30s"))
        keepalive = h.Conn(s.port)
        self.addCleanup(keepalive.close)
        keepalive.send(h.build_request("GET", "/"))
        self.assertEqual(keepalive.read_response().status, 200)
        s.signal(signal.SIGTERM)
        # An idle keep-alive connection must not hold the drain up to drain_timeout (30s).
        self.assertEqual(keepalive.wait_closed(timeout=10), b"")
        self.assertEqual(s.proc.wait(timeout=10), 0, s.tail())

    def test_more_stop_signals_while_exiting_still_exit_0(self):
        # A supervisor may repeat SIGTERM; one that lands while sluice tears down after the
        # drain must not turn a clean exit into death by signal.
        (b,) = self.start_backends("again")
        s = self.start_sluice(h.config([h.listener("web")], [h.cluster("main", [b])]))
        self.assertEqual(h.get(s.port, "/").status, 200)
        s.signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while s.proc.poll() is None and time.monotonic() < deadline:
            try:
                os.kill(s.pid, signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.002)
        self.assertEqual(s.proc.wait(timeout=30), 0, s.tail())


class AccessLogTest(h.SluiceTestCase):
    def test_combined_line_per_request(self):
        (b,) = self.start_backends("log")
        d = self.make_tempdir()
        log_path = os.path.join(d, "access.log")
        cfg = h.config(
            [h.listener("web", routes=[
                {"match": {"path_prefix": "/direct"}, "direct": {"status": 204, "body": ""}},
                {"match": {"path_prefix": "/"}, "cluster": "main"}])],
            [h.cluster("main", [b])], workers=2,
            log={"level": "info", "access": {"path": log_path, "format": "combined"}})
        s = self.start_sluice(cfg, d)
        hdrs = [("User-Agent", "itest-agent/1.0"), ("Referer", "http://ref.example/")]
        for _ in range(3):
            self.assertEqual(h.get(s.port, "/", headers=hdrs).status, 200)
        self.assertEqual(h.get(s.port, "/status/404").status, 404)
        self.assertEqual(h.get(s.port, "/direct").status, 204)

        def lines():
            if not os.path.exists(log_path):
                return None
            with open(log_path) as f:
                got = f.read().splitlines()
            return got if len(got) >= 5 else None

        got = h.wait_until(lines, 20, interval=0.1, message="5 access log lines")
        self.assertEqual(len(got), 5, got)
        ts = r"\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"
        ok = (r'^127\.0\.0\.1 - - ' + ts + r' "GET / HTTP/1\.1" 200 ' + str(len(f"hello from {b.id}\n")) + r' "http://ref\.example/" '
              r'"itest-agent/1\.0" "' + re.escape(b.address) + r'" \d+\.\d{3} \d+\.\d{3}$')
        self.assertEqual(sum(1 for l in got if re.match(ok, l)), 3, "\n".join(got))
        self.assertEqual(sum(1 for l in got if '"GET /status/404 HTTP/1.1" 404 ' in l), 1, got)
        direct = [l for l in got if '"GET /direct HTTP/1.1" 204 ' in l]
        self.assertEqual(len(direct), 1, got)
        self.assertRegex(direct[0], r'"-" - \d+\.\d{3}$')

    def test_json_lines_and_reopen_on_sigusr1(self):
        (b,) = self.start_backends("rot")
        d = self.make_tempdir()
        log_path = os.path.join(d, "access.json")
        cfg = h.config([h.listener("web")], [h.cluster("main", [b])],
                       log={"level": "info", "access": {"path": log_path, "format": "json"}})
        s = self.start_sluice(cfg, d)

        def read_lines(path, n):
            def check():
                if not os.path.exists(path):
                    return None
                with open(path) as f:
                    got = f.read().splitlines()
                return got if len(got) >= n else None
            return check

        self.assertEqual(h.get(s.port, "/first").status, 200)
        got = h.wait_until(read_lines(log_path, 1), 20, interval=0.1, message="first json line")
        entry = json.loads(got[0])
        self.assertEqual((entry["method"], entry["target"], entry["status"]), ("GET", "/first", 200))
        self.assertEqual(entry["upstream"], b.address)

        # logrotate's way: move the file away, then SIGUSR1 makes sluice write a new one.
        rotated = log_path + ".1"
        os.rename(log_path, rotated)
        s.signal(signal.SIGUSR1)
        s.wait_for_line(r"SIGUSR1: reopening log files")
        self.assertEqual(h.get(s.port, "/second").status, 200)
        got = h.wait_until(read_lines(log_path, 1), 20, interval=0.1, message="line in the new file")
        self.assertEqual(json.loads(got[0])["target"], "/second")
        with open(rotated) as f:
            self.assertEqual([json.loads(l)["target"] for l in f.read().splitlines()], ["/first"])


if __name__ == "__main__":
    unittest.main()
