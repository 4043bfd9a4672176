"""In-process configuration reload under load (SIGHUP and POST /reload).

Twenty reloads alternate between two valid configurations, with an invalid one in between,
while keep-alive and fresh HTTP/1.1 clients, an open WebSocket, a long TCP stream and (when the
grpc++ test peers are built) gRPC calls run through sluice. Nothing may fail, the WebSocket and
the TCP stream stay open, the invalid file is rejected with the old configuration still
serving, and each configuration's routes take effect for new requests on old connections.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_l4 as l4  # noqa: E402

try:
    import test_grpc as grpc_peers  # noqa: E402
    grpc_peers.hello_server_bin()
    grpc_peers.hello_client_bin()
    HAVE_GRPC = True
except (ImportError, RuntimeError):
    HAVE_GRPC = False

RELOADS = 20
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class Load:
    """Bounded HTTP/1.1 load: keep-alive clients and a fresh-connection client, counting every
    answer per backend and every failure, until stop() (or a hard cap on requests)."""

    def __init__(self, port, keepalive_clients=3, cap=200000):
        self.port = port
        self.cap = cap
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.by_backend = {}
        self.threads = [threading.Thread(target=self.keepalive, daemon=True)
                        for _ in range(keepalive_clients)]
        self.threads.append(threading.Thread(target=self.fresh, daemon=True))

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=60)

    def count(self, r):
        with self.lock:
            if r.status != 200:
                self.failures.append(f"status {r.status}: {r.text()[:200]}")
                return
            self.ok += 1
            b = r.header("X-Backend", "?")
            self.by_backend[b] = self.by_backend.get(b, 0) + 1

    def done(self):
        return self.stop_flag.is_set() or self.ok + len(self.failures) >= self.cap

    def keepalive(self):
        conn = None
        while not self.done():
            try:
                if conn is None:
                    conn = h.Conn(self.port)
                conn.send(h.build_request("GET", "/"))
                r = conn.read_response()
                self.count(r)
                if r.has_token("Connection", "close"):
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                with self.lock:
                    self.failures.append(f"keep-alive: {e!r}")
                if conn:
                    conn.close()
                conn = None
        if conn:
            conn.close()

    def fresh(self):
        while not self.done():
            try:
                self.count(h.request(self.port, "GET", "/", headers=[("Connection", "close")]))
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    self.failures.append(f"fresh: {e!r}")

    def snapshot(self):
        with self.lock:
            return self.ok, list(self.failures), dict(self.by_backend)


class ReloadTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = cls.make_tempdir()
        cls.a1, cls.a2, cls.b1 = cls.start_backends("a1", "a2", "b1")
        cls.echo = l4.TcpServer(l4.echo_handler, "echo")
        cls.addClassCleanup(cls.echo.stop)
        cls.hello = []
        if HAVE_GRPC:
            for i in ("g1", "g2"):
                s = grpc_peers.HelloServer(i)
                cls.addClassCleanup(s.stop)
                cls.hello.append(s)
        cls.config_a = cls.make_config("a")
        cls.config_b = cls.make_config("b")
        cls.sluice = h.Sluice(cls.config_a, cls.tmp)
        cls.addClassCleanup(cls.stop_sluice)
        m = cls.sluice.wait_for_line(r"admin listening address=127\.0\.0\.1:(\d+)")[0]
        cls.admin = int(m.group(1))

    @classmethod
    def stop_sluice(cls):
        rc = cls.sluice.stop()
        if rc != 0:
            raise AssertionError(f"sluice exited with {rc}:\n{cls.sluice.tail(80)}")

    @classmethod
    def make_config(cls, which):
        listeners = [
            h.listener("web", routes=[{"match": {"path_prefix": "/"}, "cluster": which}]),
            l4.tcp_listener("stream", "echo"),
        ]
        clusters = [
            h.cluster("a", [cls.a1, cls.a2]),
            h.cluster("b", [cls.b1]),
            l4.tcp_cluster("echo", [f"127.0.0.1:{cls.echo.port}"]),
        ]
        if cls.hello:
            listeners.append(h.listener("grpc", routes=[
                {"match": {"path_prefix": "/"}, "cluster": "hello"}]))
            # The policy flips between the two files: the cluster is rebuilt on every reload
            # and must take its backends (and their upstream connections) over.
            clusters.append(h.cluster("hello", cls.hello, protocol="h2c",
                                      policy="round_robin" if which == "a" else "least_conn"))
        if which == "b":
            listeners.append(h.listener("extra", routes=[
                {"match": {"path_prefix": "/"}, "direct": {"status": 200, "body": "extra\n"}}]))
        return h.config(listeners, clusters, workers=2, admin={"address": "127.0.0.1:0"})

    def write_config(self, cfg):
        text = cfg if isinstance(cfg, str) else h.to_yaml(cfg)
        tmp = self.sluice.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.sluice.config_path)

    def post_reload(self):
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/reload", data=b"",
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=h.IO_TIMEOUT) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def status(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/status",
                                    timeout=h.IO_TIMEOUT) as r:
            return json.loads(r.read())

    def reload_count(self, kind):
        pattern = "configuration reloaded" if kind == "ok" else "configuration reload rejected"
        return sum(1 for line in self.sluice.lines() if pattern in line)

    def reload(self, cfg, use_signal, expect_ok=True):
        self.write_config(cfg)
        if use_signal:
            kind = "ok" if expect_ok else "rejected"
            before = self.reload_count(kind)
            self.sluice.signal(__import__("signal").SIGHUP)
            h.wait_until(lambda: self.reload_count(kind) > before, h.START_TIMEOUT,
                         message=f"reload ({kind}) after SIGHUP")
        else:
            code, body = self.post_reload()
            self.assertEqual(code, 200 if expect_ok else 422, body)
            self.assertEqual(body["ok"], expect_ok, body)
            if not expect_ok:
                self.assertTrue(body["errors"], body)

    def websocket(self):
        c = h.Conn(self.sluice.ports["web"])
        c.send(h.build_request("GET", "/ws", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Version", "13")]))
        r = c.read_response()
        self.assertEqual(r.status, 101, r)
        return c

    def ws_echo(self, c, data):
        c.send(data)
        got = bytearray(c.buf)
        c.buf.clear()
        deadline = time.monotonic() + h.IO_TIMEOUT
        while len(got) < len(data) and time.monotonic() < deadline:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return bytes(got)

    def tcp_echo(self, s, data):
        s.sendall(data)
        got = b""
        deadline = time.monotonic() + h.IO_TIMEOUT
        while len(got) < len(data) and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got

    def test_reloads_under_load(self):
        web = self.sluice.ports["web"]
        ws = self.websocket()
        self.addCleanup(ws.close)
        stream = l4.connect(self.sluice.ports["stream"])
        self.addCleanup(stream.close)
        self.assertEqual(self.tcp_echo(stream, b"before\n"), b"before\n")

        grpc_proc = None
        if self.hello:
            grpc_proc = subprocess.Popen(
                [grpc_peers.hello_client_bin(), "--target", f"127.0.0.1:{self.sluice.ports['grpc']}",
                 "--calls", "4000", "--concurrency", "4"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.addCleanup(lambda: grpc_proc.poll() is None and grpc_proc.kill())

        load = Load(web)
        load.start()
        self.addCleanup(load.stop)
        h.wait_until(lambda: load.snapshot()[0] >= 50, h.START_TIMEOUT, message="load running")

        invalid = "workers: 2\nlisteners: []\nclusters: []\nbogus_key: 1\n"
        version = self.status()["config"]["version"]
        for i in range(RELOADS):
            target = self.config_b if i % 2 == 0 else self.config_a
            self.reload(target, use_signal=(i % 2 == 0))
            name = "b" if target is self.config_b else "a"
            # New requests, on new and on kept-alive connections, follow the new routes.
            expect = {"b1"} if name == "b" else {"a1", "a2"}
            r = h.get(web, "/")
            self.assertEqual(r.status, 200)
            self.assertIn(r.header("X-Backend"), expect, f"after reload {i + 1} to {name}")
            if name == "b":
                h.wait_until(lambda: "extra" in self.status_listeners(), h.START_TIMEOUT,
                             message="listener extra in /status")
            if i == 9:  # the invalid file, half-way: rejected, the running config stays
                self.reload(invalid, use_signal=False, expect_ok=False)
                self.reload(invalid, use_signal=True, expect_ok=False)
                r = h.get(web, "/")
                self.assertIn(r.header("X-Backend"), expect)
            self.assertEqual(self.ws_echo(ws, b"ws-%d" % i), b"ws-%d" % i)
            self.assertEqual(self.tcp_echo(stream, b"tcp-%d\n" % i), b"tcp-%d\n" % i)
            # Some traffic between reloads, so every reload happens under load.
            ok_before = load.snapshot()[0]
            h.wait_until(lambda: load.snapshot()[0] >= ok_before + 20, h.START_TIMEOUT,
                         message="load continuing")

        load.stop()
        ok, failures, by_backend = load.snapshot()
        print(f"\n{RELOADS} reloads + 2 rejected: {ok} HTTP/1.1 requests answered, "
              f"{len(failures)} failed, by backend {by_backend}", file=sys.stderr)
        self.assertEqual(failures, [], f"{len(failures)} failed of {ok + len(failures)}")
        self.assertGreater(by_backend.get("b1", 0), 0, by_backend)
        self.assertGreater(by_backend.get("a1", 0) + by_backend.get("a2", 0), 0, by_backend)

        st = self.status()
        self.assertEqual(st["config"]["version"], version + RELOADS, st["config"])
        # Ended on config a: the extra listener is gone and its port refuses connections.
        self.assertNotIn("extra", self.status_listeners())

        if grpc_proc:
            out, err = grpc_proc.communicate(timeout=300)
            text = out.decode()
            failed = [l for l in text.splitlines() if l.startswith("failed")]
            print("gRPC client: " + " ".join(text.split()), file=sys.stderr)
            self.assertEqual(grpc_proc.returncode, 0, text + err.decode()[-2000:])
            self.assertEqual(failed, ["failed 0"], text)

        self.assertEqual(self.ws_echo(ws, b"after"), b"after")
        self.assertEqual(self.tcp_echo(stream, b"after\n"), b"after\n")

        # Metrics say so too.
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics",
                                    timeout=h.IO_TIMEOUT) as r:
            text = r.read().decode()
        self.assertRegex(text, r'sluice_config_reloads_total\{result="success"\} %d' % RELOADS)
        self.assertRegex(text, r'sluice_config_reloads_total\{result="failure"\} 2')

    def status_listeners(self):
        return {l["name"] for l in self.status().get("listeners", [])}


if __name__ == "__main__":
    unittest.main()
