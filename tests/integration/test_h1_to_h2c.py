"""HTTP/1.1 clients in front of HTTP/2 upstreams, cleartext (h2c) and TLS (h2): nghttpd as the
upstream."""

import hashlib
import os
import re
import shutil
import socket
import sys
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
