"""HTTP/2 downstream to HTTP/1.1 upstreams, and HTTP/2 over TLS (protocol: h2) upstreams.

Real peers: curl (--http2-prior-knowledge) and h2load against demo backends; the grpc++ Hello
servers over TLS (certificates made with the openssl CLI) with the Hello client through sluice.
"""

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

TIMEOUT = 120


def curl(port, path, *args, timeout=TIMEOUT):
    """curl over h2c with prior knowledge; returns (status, headers list, body bytes, version)."""
    argv = ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "-",
            "-w", "\n@@%{http_version} %{http_code}", *args, f"http://127.0.0.1:{port}{path}"]
    p = subprocess.run(argv, capture_output=True, timeout=timeout)
    out = p.stdout
    tail = out.rfind(b"\n@@")
    if tail < 0:
        raise AssertionError(f"curl failed ({p.returncode}): {p.stderr.decode()}")
    version, code = out[tail + 3:].decode().split()
    out = out[:tail]
    head, _, body = out.partition(b"\r\n\r\n")
    headers = []
    for line in head.decode("latin-1").split("\r\n")[1:]:
        n, _, v = line.partition(":")
        headers.append((n.strip().lower(), v.strip()))
    return int(code), headers, body, version


def values(headers, name):
    return [v for n, v in headers if n == name]


def pattern(n):
    """The body of the demo backend's /bytes/N: byte i = 'a' + i % 26."""
    alphabet = bytes(range(ord("a"), ord("a") + 26))
    return (alphabet * (n // 26 + 1))[:n]


@unittest.skipUnless(shutil.which("curl"), "curl not installed")
class H2ToHttp1Test(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backends = cls.start_backends("a", "b", "c")
        cls.victim = h.DemoBackend("victim")
        cls.addClassCleanup(cls.victim.stop)
        cls.dead_port = h.free_dead_port()
        routes = [
            {"match": {"path_prefix": "/delay"}, "cluster": "slow"},
            {"match": {"path_prefix": "/"}, "cluster": "web"},
        ]
        cfg = h.config(
            [h.listener("web", routes=routes),
             h.listener("dead", routes=[{"match": {"path_prefix": "/"}, "cluster": "dead"}]),
             h.listener("half", routes=[{"match": {"path_prefix": "/"}, "cluster": "half"}]),
             h.listener("kill", routes=[{"match": {"path_prefix": "/"}, "cluster": "kill"}])],
            [h.cluster("web", cls.backends),
             h.cluster("slow", cls.backends, max_tries=1, timeouts={"read": "1s"}),
             h.cluster("dead", [f"127.0.0.1:{cls.dead_port}"], max_tries=2),
             h.cluster("half", [f"127.0.0.1:{cls.dead_port}", cls.backends[0]], max_tries=2),
             h.cluster("kill", [cls.victim, cls.backends[1]], max_tries=2)],
            workers=2)
        cls.sluice = cls.start_sluice(cfg)
        cls.port = cls.sluice.ports["web"]
        cls.tmp = cls.make_tempdir()

    def test_1_get(self):
        code, headers, body, version = curl(self.port, "/")
        self.assertEqual((version, code), ("2", 200))
        self.assertRegex(body.decode(), r"^hello from [abc]\n$")
        self.assertTrue(values(headers, "x-backend"))
        for hop in ("connection", "keep-alive", "transfer-encoding"):
            self.assertEqual(values(headers, hop), [], headers)

    def test_2_post_5mb_content_length(self):
        data = os.urandom(5 * 1024 * 1024)
        src = os.path.join(self.tmp, "upload.bin")
        with open(src, "wb") as f:
            f.write(data)
        code, headers, body, _ = curl(self.port, "/echo", "--data-binary", f"@{src}",
                                      "-H", "Content-Type: application/octet-stream")
        self.assertEqual(code, 200)
        self.assertEqual(len(body), len(data))
        self.assertEqual(hashlib.sha256(body).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_3_put_unknown_length_goes_chunked(self):
        data = os.urandom(300 * 1024)
        argv = ["curl", "-sS", "--http2-prior-knowledge", "-T", "-", "-o", "-",
                f"http://127.0.0.1:{self.port}/echo"]
        p = subprocess.run(argv, input=data, capture_output=True, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(hashlib.sha256(p.stdout).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_4_head_and_204(self):
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-I",
                            f"http://127.0.0.1:{self.port}/bytes/1000"],
                           capture_output=True, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode("latin-1")
        self.assertTrue(out.startswith("HTTP/2 200"), out)
        self.assertIn("\r\ncontent-length: 1000\r\n", out)
        self.assertTrue(out.endswith("\r\n\r\n"), out)  # no body
        code, headers, body, _ = curl(self.port, "/status/204")
        self.assertEqual(code, 204)
        self.assertEqual(body, b"")

    def test_5_chunked_response(self):
        code, headers, body, _ = curl(self.port, "/bytes/200000?chunked=1")
        self.assertEqual(code, 200)
        self.assertEqual(values(headers, "transfer-encoding"), [])
        self.assertEqual(body, pattern(200000))

    def test_5b_large_and_slow_downloads(self):
        n = 20 * 1024 * 1024
        code, _, body, _ = curl(self.port, f"/bytes/{n}")
        self.assertEqual(code, 200)
        self.assertEqual(hashlib.sha256(body).hexdigest(), hashlib.sha256(pattern(n)).hexdigest())
        # A client reading slowly holds the upstream back: sluice buffers a bounded amount,
        # not the 200 MB the backend would write at once.
        base = self.sluice.rss_kib()
        slow = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "--limit-rate", "2M",
                                 "-o", "/dev/null", f"http://127.0.0.1:{self.port}/bytes/209715200"])
        try:
            peak = base
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                peak = max(peak, self.sluice.rss_kib())
                time.sleep(0.1)
        finally:
            slow.kill()
            slow.wait()
        self.assertLess(peak - base, 32 * 1024, f"RSS grew from {base} to {peak} KiB")
        code, _, body, _ = curl(self.port, "/")
        self.assertEqual(code, 200)

    def test_6_set_cookies_stay_separate(self):
        code, headers, body, _ = curl(self.port, "/cookies")
        self.assertEqual(code, 200)
        self.assertEqual(sorted(values(headers, "set-cookie")), ["a=1; Path=/", "b=2; Path=/"])

    def test_7_forwarding_headers(self):
        code, headers, body, _ = curl(self.port, "/headers", "-H", "X-Forwarded-For: 10.9.8.7",
                                      "-H", "Cookie: a=1", "-H", "Cookie: b=2")
        self.assertEqual(code, 200)
        text = body.decode()
        self.assertTrue(text.startswith("GET /headers HTTP/1.1\n"), text)
        self.assertRegex(text, r"(?mi)^x-forwarded-for: 10\.9\.8\.7, 127\.0\.0\.1$")
        self.assertRegex(text, r"(?mi)^x-forwarded-proto: http$")
        self.assertRegex(text, rf"(?mi)^host: 127\.0\.0\.1:{self.port}$")
        self.assertRegex(text, r"(?mi)^cookie: a=1; b=2$")

    def test_7a_date_added(self):
        # The demo backend sends no Date; the HTTP/2 response gets one, as HTTP/1.1 ones do.
        code, headers, body, _ = curl(self.port, "/")
        self.assertEqual(code, 200)
        dates = values(headers, "date")
        self.assertEqual(len(dates), 1, headers)
        self.assertRegex(dates[0], r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")

    def test_7b_fields_with_underscores_dropped(self):
        # As for HTTP/1.1 clients (headers_with_underscores: drop, the default).
        code, headers, body, _ = curl(self.port, "/headers", "-H", "X_Secret: 1",
                                      "-H", "X-Kept: 2")
        self.assertEqual(code, 200)
        text = body.decode()
        self.assertRegex(text, r"(?mi)^x-kept: 2$")
        self.assertNotRegex(text, r"(?mi)^x_secret:")

    def test_8_spread_and_h2load(self):
        if not shutil.which("h2load"):
            self.skipTest("h2load (nghttp2-client) not installed")
        before = [b.count() for b in self.backends]
        p = subprocess.run(["h2load", "-n", "5000", "-c", "8", "-m", "10",
                            f"http://127.0.0.1:{self.port}/"],
                           capture_output=True, timeout=300)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        self.assertRegex(out, r"status codes: 5000 2xx, 0 3xx, 0 4xx, 0 5xx", out)
        self.assertRegex(out, r"requests: 5000 total, 5000 started, 5000 done, 5000 succeeded", out)
        # /count itself is served once per backend between the two readings.
        served = [b.count() - n - 1 for b, n in zip(self.backends, before)]
        self.assertEqual(sum(served), 5000, served)
        for n in served:
            self.assertGreater(n, 5000 / 3 * 0.7, served)
        # Request bodies through many windows on few connections: acknowledged as relayed.
        body = os.path.join(self.tmp, "h2load-body.bin")
        with open(body, "wb") as f:
            f.write(os.urandom(20000))
        p = subprocess.run(["h2load", "-n", "1000", "-c", "2", "-m", "10", "-d", body,
                            f"http://127.0.0.1:{self.port}/echo"],
                           capture_output=True, timeout=300)
        out = p.stdout.decode()
        self.assertRegex(out, r"status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx", out)

    def test_9a_dead_backends(self):
        code, _, body, _ = curl(self.sluice.ports["dead"], "/")
        self.assertEqual(code, 502, body)
        # One dead backend of two: every request is retried onto the live one.
        for _ in range(6):
            code, _, body, _ = curl(self.sluice.ports["half"], "/")
            self.assertEqual(code, 200, body)
            self.assertEqual(body, b"hello from a\n")

    def test_9b_backend_killed(self):
        port = self.sluice.ports["kill"]
        seen = set()
        for _ in range(6):  # pooled keep-alive connections to both backends
            code, _, body, _ = curl(port, "/")
            self.assertEqual(code, 200)
            seen.add(body)
        self.assertEqual(seen, {b"hello from victim\n", b"hello from b\n"})
        self.victim.stop()
        for _ in range(8):
            code, _, body, _ = curl(port, "/", timeout=60)
            self.assertEqual(code, 200, body)
            self.assertEqual(body, b"hello from b\n")
        self.assertAlive(self.sluice)

    def test_9c_slow_upstream_times_out(self):
        code, _, body, _ = curl(self.port, "/delay/5000")
        self.assertEqual(code, 504, body)
        self.sluice.wait_for_line(r"timed out reading the response head")

    def test_9d_client_gives_up(self):
        # The client resets its stream (curl's timeout): the upstream exchange is abandoned.
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "0.5",
                            "-o", "/dev/null", f"http://127.0.0.1:{self.port}/delay/800"],
                           capture_output=True, timeout=TIMEOUT)
        self.assertNotEqual(p.returncode, 0)
        code, _, body, _ = curl(self.port, "/")
        self.assertEqual(code, 200)
        self.assertAlive(self.sluice)


class TrailerBackend:
    """Answers every request with a 103, then a chunked 200 with an X-Sum trailer, and closes;
    a request for /bad-trailer gets a trailer section ended by a bare LF, and the connection
    stays open."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(h.IO_TIMEOUT)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                if buf.startswith(b"GET /bad-trailer "):
                    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"5\r\nhello\r\n0\r\n\n")
                    # Held open until sluice gives up on it (or the test ends).
                    c.settimeout(0.2)
                    while not self.stopping.is_set():
                        try:
                            if not c.recv(65536):
                                break
                        except socket.timeout:
                            continue
                        except OSError:
                            break
                    continue
                c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                          b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n"
                          b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: abc\r\n\r\n")

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


@unittest.skipUnless(shutil.which("nghttp"), "nghttp (nghttp2-client) not installed")
class H2TrailersTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = TrailerBackend()
        cls.addClassCleanup(cls.backend.stop)
        cls.sluice = cls.start_sluice(h.config([h.listener("web")], [h.cluster("main", [cls.backend])]))

    def test_chunked_trailers_become_http2_trailers(self):
        p = subprocess.run(["nghttp", "-v", f"http://127.0.0.1:{self.sluice.port}/"],
                           capture_output=True, timeout=TIMEOUT)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out)
        self.assertIn(":status: 200", out)
        self.assertNotIn(":status: 103", out)
        self.assertNotIn("connection: close", out)
        body_at = out.index("hello")
        trailer_at = out.index("x-sum: abc")
        self.assertLess(body_at, trailer_at, out)
        # The trailers close the stream.
        self.assertRegex(out[trailer_at:], r"recv HEADERS frame[^\n]*\n\s*; END_STREAM")

    def test_malformed_trailer_resets_the_stream_at_once(self):
        # The cluster's read timeout is 60 s by default: the stream must end long before.
        started = time.monotonic()
        p = subprocess.run(["nghttp", "-v", f"http://127.0.0.1:{self.sluice.port}/bad-trailer"],
                           capture_output=True, timeout=TIMEOUT)
        out = p.stdout.decode()
        self.assertLess(time.monotonic() - started, 10, out)
        # Reset (the head and "hello" may or may not have gone out before it).
        self.assertIn("recv RST_STREAM", out)
        self.assertTrue(self.sluice.alive())


# --------------------------------------------------------------------------------------------
# HTTP/2 over TLS to gRPC backends.

def hello_server_bin():
    return h._find_binary("SLUICE_HELLO_SERVER", os.path.join("tests", "sluice-hello-server"))


def hello_client_bin():
    return h._find_binary("SLUICE_HELLO_CLIENT", os.path.join("tests", "sluice-hello-client"))


class TlsHelloServer(h.Process):
    def __init__(self, server_id, cert, key):
        super().__init__([hello_server_bin(), "--listen", "127.0.0.1:0", "--id", server_id,
                          "--tls-cert", cert, "--tls-key", key], f"hello {server_id}")
        m = self.wait_for_line(r"^listening 127\.0\.0\.1:(\d+)$", which="stdout")[0]
        self.port = int(m.group(1))
        self.address = f"127.0.0.1:{self.port}"


def start_tls_hello_servers(case, ids):
    """A test CA ("ca", and "other-ca" that signed nothing), a server certificate, and a TLS
    Hello server per id, stopped with `case`'s class. Returns (directory, servers)."""
    d = case.make_tempdir()
    h.make_ca(d, "ca")
    h.make_ca(d, "other-ca")
    h.make_server_cert(d, "ca", "server")
    servers = []
    for i in ids:
        s = TlsHelloServer(i, os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
        case.addClassCleanup(s.stop)
        servers.append(s)
    return d, servers


def run_client(port, calls):
    argv = [hello_client_bin(), "--target", f"127.0.0.1:{port}", "--calls", str(calls)]
    p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    out = {"servers": {}, "status": {}, "ok": 0, "failed": 0, "raw": p.stdout.decode()}
    for line in p.stdout.decode().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "server":
            out["servers"][parts[1]] = int(parts[2])
        elif parts[0] == "status":
            out["status"][int(parts[1])] = int(parts[2])
        elif parts[0] in ("ok", "failed"):
            out[parts[0]] = int(parts[1])
    return out


@unittest.skipUnless(shutil.which("openssl"), "openssl CLI not installed")
class H2TlsUpstreamTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        try:
            hello_server_bin()
            hello_client_bin()
        except RuntimeError as e:
            raise unittest.SkipTest(str(e))
        d, cls.servers = start_tls_hello_servers(cls, ("x", "y"))
        cfg = h.config(
            [h.listener("grpc", routes=[{"match": {"path_prefix": "/"}, "cluster": "tls"}]),
             h.listener("named", routes=[{"match": {"path_prefix": "/"}, "cluster": "named"}]),
             h.listener("wrong", routes=[{"match": {"path_prefix": "/"}, "cluster": "wrong"}])],
            [h.cluster("tls", cls.servers, protocol="h2", tls={"ca": os.path.join(d, "ca.pem")}),
             h.cluster("named", cls.servers, protocol="h2",
                       tls={"ca": os.path.join(d, "ca.pem"), "server_name": "localhost"}),
             h.cluster("wrong", cls.servers, protocol="h2",
                       tls={"ca": os.path.join(d, "other-ca.pem")})],
            workers=2)
        cls.sluice = cls.start_sluice(cfg)

    def test_1_calls_over_tls(self):
        r = run_client(self.sluice.ports["grpc"], 200)
        self.assertEqual(r["failed"], 0, r["raw"])
        self.assertEqual(r["ok"], 200)
        self.assertEqual(set(r["servers"]), {"x", "y"}, r["raw"])

    def test_2_server_name(self):
        r = run_client(self.sluice.ports["named"], 20)
        self.assertEqual(r["ok"], 20, r["raw"])

    def test_3_wrong_ca_fails_cleanly(self):
        r = run_client(self.sluice.ports["wrong"], 5)
        self.assertEqual(r["ok"], 0, r["raw"])
        self.assertEqual(r["status"].get(14), 5, r["raw"])  # UNAVAILABLE
        self.sluice.wait_for_line(r"TLS handshake failed: certificate verify failed")
        self.assertAlive(self.sluice)
        # The good cluster is unaffected.
        r = run_client(self.sluice.ports["grpc"], 10)
        self.assertEqual(r["ok"], 10, r["raw"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
