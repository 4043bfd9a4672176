"""HTTP/1.1 clients in front of HTTP/2 upstreams, cleartext (h2c) and TLS (h2): nghttpd as the
upstream."""

import hashlib
import os
import re
import shutil
import socket
import struct
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

NGHTTPD = shutil.which("nghttpd") or "/usr/sbin/nghttpd"
BIG = bytes((i * 7 + (i >> 10)) & 0xFF for i in range(1 << 20))  # 1 MiB, over every window


class Nghttpd:
    """nghttpd serving `docroot` over h2c on a free loopback port, echoing POST/PUT bodies,
    printing the frames it receives (-v) to stdout."""

    def __init__(self, docroot, name, port=None, tls=None):
        self.docroot, self.name = docroot, name
        self.port = port or h.free_dead_port()
        self.address = f"127.0.0.1:{self.port}"
        argv = [NGHTTPD, "--echo-upload", "-v", "-a", "127.0.0.1", "-d", docroot, str(self.port)]
        argv += list(tls) if tls else ["--no-tls"]  # tls: (key file, certificate file)
        self.proc = h.Process(argv, name)
        h.wait_until(self._accepts, h.START_TIMEOUT, message=f"{name} to listen")

    def _accepts(self):
        if not self.proc.alive():
            raise AssertionError(f"nghttpd exited: {self.proc.tail()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stdout(self):
        return "\n".join(self.proc.lines("stdout"))

    def stop(self):
        self.proc.stop()


class H1ToH2cTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(NGHTTPD):
            raise unittest.SkipTest("nghttpd not installed (scripts/install-deps.sh)")
        cls.upstreams = []
        for name in ("a", "b", "c"):
            docroot = os.path.join(cls.make_tempdir(), "htdocs")
            os.makedirs(docroot)
            with open(os.path.join(docroot, "who"), "w") as f:
                f.write(name)
            with open(os.path.join(docroot, "index.html"), "w") as f:
                f.write("hello h2c\n")
            with open(os.path.join(docroot, "big.bin"), "wb") as f:
                f.write(BIG)
            u = Nghttpd(docroot, f"nghttpd-{name}")
            cls.addClassCleanup(u.stop)
            cls.upstreams.append(u)
        a, b, c = cls.upstreams
        dead = f"127.0.0.1:{h.free_dead_port()}"
        routes = [
            {"match": {"host": "h2.test"}, "cluster": "h2"},
            {"match": {"host": "retry.test"}, "cluster": "retry"},
            {"match": {"host": "dead.test"}, "cluster": "dead"},
            {"match": {"host": "restart.test"}, "cluster": "restart"},
        ]
        cfg = h.config(
            [h.listener("web", routes=routes)],
            [h.cluster("h2", [a, b], protocol="h2c"),
             h.cluster("retry", [dead, a.address], protocol="h2c"),
             h.cluster("dead", [dead], protocol="h2c"),
             h.cluster("restart", [c], protocol="h2c")],
            workers=1)
        cls.sluice = cls.start_sluice(cfg)
        cls.port = cls.sluice.ports["web"]

    def req(self, method="GET", path="/index.html", host="h2.test", **kw):
        return h.request(self.port, method, path, host=host, **kw)

    def test_get_a_file(self):
        r = self.req()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"hello h2c\n")
        self.assertEqual(r.all("Content-Length"), ["10"])
        self.assertIsNone(r.header("Transfer-Encoding"))
        self.assertEqual(len(r.all("Date")), 1)
        self.assertTrue(r.header("Server", "").startswith("nghttpd"))

    def test_keep_alive_and_round_robin_per_request(self):
        with h.Conn(self.port) as c:
            seen = []
            for _ in range(6):
                c.send(h.build_request("GET", "/who", host="h2.test"))
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertIsNone(r.header("Connection"))
                seen.append(r.text())
        self.assertEqual(sorted(set(seen)), ["a", "b"])
        self.assertTrue(all(seen[i] != seen[i + 1] for i in range(5)), seen)

    def test_head_and_404(self):
        r = self.req("HEAD")
        self.assertEqual((r.status, r.body), (200, b""))
        self.assertEqual(r.header("Content-Length"), "10")
        self.assertEqual(self.req(path="/missing").status, 404)

    def test_download_larger_than_the_windows(self):
        r = self.req(path="/big.bin")
        self.assertEqual(r.status, 200)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(BIG).hexdigest())

    def test_upload_with_content_length_is_echoed(self):
        body = BIG[: 600 * 1024]
        r = self.req("POST", "/echo", body=body)
        self.assertEqual(r.status, 200)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(body).hexdigest())

    def test_chunked_upload_is_echoed(self):
        pieces = [BIG[i:i + 7000] for i in range(0, 300 * 1024, 7000)]
        with h.Conn(self.port) as c:
            c.send(h.build_request("PUT", "/echo", host="h2.test",
                                   headers=[("Transfer-Encoding", "chunked")]))
            for part in h.chunk_encode(pieces):
                c.send(part)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"".join(pieces))
            # The connection carries another request.
            c.send(h.build_request("GET", "/index.html", host="h2.test"))
            self.assertEqual(c.read_response().body, b"hello h2c\n")

    def test_expect_100_continue(self):
        body = BIG[:100 * 1024]
        with h.Conn(self.port) as c:
            c.send(h.build_request("POST", "/echo", host="h2.test",
                                   headers=[("Content-Length", str(len(body))),
                                            ("Expect", "100-continue")]))
            interim = c.read_response(interim=True)
            self.assertEqual(interim.status, 100)
            c.send(body)
            r = c.read_response()
            self.assertEqual((r.status, r.body == body), (200, True))

    def test_http10_client(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("POST", "/echo", host="h2.test", body=b"ten bytes!",
                                   version="HTTP/1.0"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"ten bytes!"))
            if r.header("Content-Length") is None:
                self.assertTrue(r.has_token("Connection", "close"))
                self.assertEqual(c.wait_closed(), b"")

    def test_request_fields_reach_the_upstream(self):
        r = self.req(path="/index.html?fields",
                     headers=[("X-Forwarded-For", "10.0.0.1"), ("X-Custom", "yes"),
                              ("Connection", "keep-alive, X-Hop"), ("X-Hop", "no"),
                              ("Cookie", "a=1"), ("Cookie", "b=2")])
        self.assertEqual(r.status, 200)

        def stream_fields():
            for u in self.upstreams:
                out = u.stdout()
                m = re.search(r"recv \(stream_id=(\d+)[^\n]*\) :path: /index\.html\?fields", out)
                if m:
                    sid = m.group(1)
                    return [f.groups() for f in re.finditer(
                        r"recv \(stream_id=" + sid + r"[^\n]*\) ([^:\s][^:]*|:[a-z]+): (.*)", out)]
            return None

        fields = h.wait_until(stream_fields, h.IO_TIMEOUT, message="nghttpd to log the request")
        got = {}
        for name, value in fields:
            got.setdefault(name, []).append(value)
        self.assertEqual(got[":method"], ["GET"])
        self.assertEqual(got[":scheme"], ["http"])
        self.assertEqual(got[":authority"], ["h2.test"])
        self.assertEqual(got["x-forwarded-for"], ["10.0.0.1, 127.0.0.1"])
        self.assertEqual(got["x-forwarded-proto"], ["http"])
        self.assertEqual(got["x-forwarded-host"], ["h2.test"])
        self.assertEqual(got["x-custom"], ["yes"])
        self.assertEqual(got["cookie"], ["a=1", "b=2"])
        for hop in ("connection", "x-hop", "host", "keep-alive"):
            self.assertNotIn(hop, got)

    def test_connect_failure_goes_to_the_next_backend(self):
        for _ in range(4):
            r = self.req(path="/who", host="retry.test")
            self.assertEqual((r.status, r.text()), (200, "a"))

    def test_pooled_connection_closed_by_a_restarted_upstream(self):
        # The first request leaves its HTTP/2 connection in the pool; the upstream restarts
        # (closing it); the next request finds it dead and goes on a fresh connection.
        c = self.upstreams[2]
        self.assertEqual(self.req(path="/who", host="restart.test").text(), "c")
        c.stop()
        restarted = Nghttpd(c.docroot, c.name + "-2", port=c.port)
        self.addCleanup(restarted.stop)
        # A POST is never sent twice: it must not go out on the dead pooled connection at all.
        for method in ("POST", "GET"):
            r = self.req(method, "/who", host="restart.test",
                         body=b"c" if method == "POST" else None)
            self.assertEqual((r.status, r.text()), (200, "c"))

    def test_no_reachable_backend(self):
        self.assertEqual(self.req(host="dead.test").status, 502)
        self.assertTrue(self.sluice.alive())


class RawH2Server:
    """A scripted h2c server speaking raw frames, for the failures nghttpd will not produce.
    For every request stream (once its END_STREAM arrived) it runs `action`: "refuse"
    (RST_STREAM REFUSED_STREAM), "truncate" (a head announcing 100 bytes, 10 of them, then
    RST_STREAM INTERNAL_ERROR) or "goaway" (GOAWAY with last stream 0: nothing processed)."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, action):
        self.action = action
        self.streams = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @staticmethod
    def frame(ftype, flags, sid, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
            struct.pack(">I", sid) + payload

    @staticmethod
    def literal(name, value):  # HPACK literal without indexing, new name, no Huffman
        n, v = name.encode(), value.encode()
        return bytes([0, len(n)]) + n + bytes([len(v)]) + v

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _read(self, c, n):
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _serve(self, c):
        try:
            c.settimeout(h.IO_TIMEOUT)
            if self._read(c, len(self.PREFACE)) != self.PREFACE:
                return
            c.sendall(self.frame(4, 0, 0))
            while True:
                head = self._read(c, 9)
                length = int.from_bytes(head[:3], "big")
                ftype, flags = head[3], head[4]
                sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                self._read(c, length)
                if ftype == 4 and not flags & 1:
                    c.sendall(self.frame(4, 1, 0))  # SETTINGS ACK
                if ftype in (0, 1) and flags & 1:  # END_STREAM: the request is complete
                    with self.lock:
                        self.streams += 1
                    if not self._answer(c, sid):
                        return
        except (OSError, EOFError):
            return
        finally:
            c.close()

    def _answer(self, c, sid):
        if self.action == "refuse":
            c.sendall(self.frame(3, 0, sid, struct.pack(">I", 7)))
            return True
        if self.action == "truncate":
            block = self.literal(":status", "200") + self.literal("content-length", "100")
            c.sendall(self.frame(1, 4, sid, block) + self.frame(0, 0, sid, b"0123456789") +
                      self.frame(3, 0, sid, struct.pack(">I", 2)))
            return True
        # GOAWAY, last stream 0, and the connection stays open until the client closes it.
        c.sendall(self.frame(7, 0, 0, struct.pack(">II", 0, 0)))
        return True

    def stop(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


class H1ToH2FailuresTest(h.SluiceTestCase):
    """Streams an upstream refuses, cuts short or leaves unprocessed behind a GOAWAY."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(NGHTTPD):
            raise unittest.SkipTest("nghttpd not installed (scripts/install-deps.sh)")
        docroot = os.path.join(cls.make_tempdir(), "htdocs")
        os.makedirs(docroot)
        with open(os.path.join(docroot, "who"), "w") as f:
            f.write("good")
        cls.good = Nghttpd(docroot, "nghttpd-good")
        cls.addClassCleanup(cls.good.stop)
        cls.raw = {}
        for action in ("refuse", "truncate", "goaway"):
            s = RawH2Server(action)
            cls.addClassCleanup(s.stop)
            cls.raw[action] = s
        routes = [{"match": {"host": f"{a}.test"}, "cluster": a} for a in cls.raw]
        routes.append({"match": {"host": "alone.test"}, "cluster": "alone"})
        clusters = [h.cluster(a, [s, cls.good], protocol="h2c") for a, s in cls.raw.items()]
        clusters.append(h.cluster("alone", [cls.raw["refuse"]], protocol="h2c"))
        cls.sluice = cls.start_sluice(h.config([h.listener("web", routes=routes)], clusters))
        cls.port = cls.sluice.ports["web"]

    def test_refused_streams_are_retried_elsewhere_whatever_the_method(self):
        before = self.raw["refuse"].streams
        for i in range(4):
            r = h.request(self.port, "POST", "/who", host="refuse.test", body=b"x" * 10)
            self.assertEqual((r.status, r.body), (200, b"x" * 10), i)  # echoed by nghttpd
        self.assertGreaterEqual(self.raw["refuse"].streams - before, 1)
        # With nowhere else to go: 502.
        self.assertEqual(h.request(self.port, "GET", "/", host="alone.test").status, 502)

    def test_streams_beyond_a_goaway_are_retried(self):
        before = self.raw["goaway"].streams
        for i in range(4):
            r = h.request(self.port, "POST", "/who", host="goaway.test", body=b"y" * 10)
            self.assertEqual((r.status, r.body), (200, b"y" * 10), i)
        self.assertGreaterEqual(self.raw["goaway"].streams - before, 1)

    def test_a_response_reset_midway_closes_the_client_connection(self):
        got_truncated = False
        for _ in range(4):  # round robin: at least one lands on the truncating upstream
            with h.Conn(self.port) as c:
                c.send(h.build_request("GET", "/who", host="truncate.test"))
                r = c.read_head()
                if r.header("Content-Length") == "4":
                    continue  # the good upstream
                self.assertEqual((r.status, r.header("Content-Length")), (200, "100"))
                rest = c.wait_closed()
                self.assertEqual(rest, b"0123456789")
                got_truncated = True
        self.assertTrue(got_truncated)
        self.assertAlive(self.sluice)


class H1ToH2TlsTest(h.SluiceTestCase):
    """protocol: h2, HTTP/2 over TLS with ALPN h2, certificates verified against a test CA."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(NGHTTPD):
            raise unittest.SkipTest("nghttpd not installed (scripts/install-deps.sh)")
        d = cls.make_tempdir()
        h.make_ca(d, "ca")
        h.make_ca(d, "other-ca")
        h.make_server_cert(d, "ca", "server")
        docroot = os.path.join(d, "htdocs")
        os.makedirs(docroot)
        with open(os.path.join(docroot, "big.bin"), "wb") as f:
            f.write(BIG)
        cls.upstream = Nghttpd(docroot, "nghttpd-tls", tls=(os.path.join(d, "server.key"),
                                                             os.path.join(d, "server.pem")))
        cls.addClassCleanup(cls.upstream.stop)
        ca, other = os.path.join(d, "ca.pem"), os.path.join(d, "other-ca.pem")
        routes = [{"match": {"host": "tls.test"}, "cluster": "tls"},
                  {"match": {"host": "named.test"}, "cluster": "named"},
                  {"match": {"host": "wrong.test"}, "cluster": "wrong"}]
        cfg = h.config(
            [h.listener("web", routes=routes)],
            [h.cluster("tls", [cls.upstream], protocol="h2", tls={"ca": ca}),
             h.cluster("named", [cls.upstream], protocol="h2",
                       tls={"ca": ca, "server_name": "localhost"}),
             h.cluster("wrong", [cls.upstream], protocol="h2", tls={"ca": other})],
            workers=1)
        cls.sluice = cls.start_sluice(cfg)
        cls.port = cls.sluice.ports["web"]

    def test_download_and_upload_over_tls(self):
        with h.Conn(self.port) as c:
            for host in ("tls.test", "named.test", "tls.test"):
                c.send(h.build_request("GET", "/big.bin", host=host))
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(hashlib.sha256(r.body).digest(), hashlib.sha256(BIG).digest())
            body = BIG[:200 * 1024]
            c.send(h.build_request("POST", "/echo", host="tls.test", body=body))
            r = c.read_response()
            self.assertEqual((r.status, r.body == body), (200, True))
        out = self.upstream.stdout()
        self.assertRegex(out, r":scheme: https")

    def test_certificate_from_another_ca_is_refused(self):
        r = h.request(self.port, "GET", "/big.bin", host="wrong.test")
        self.assertEqual(r.status, 502)
        self.sluice.wait_for_line(r"TLS handshake failed: certificate verify failed")
        self.assertAlive(self.sluice)


if __name__ == "__main__":
    unittest.main()
