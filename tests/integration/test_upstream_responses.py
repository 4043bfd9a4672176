"""Upstream response heads as an upstream may really send them, byte for byte: what reaches the
client (fields, framing, interim responses, reasons), and the malformed heads that must end in a
502 instead of being relayed."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# path -> (bytes the upstream sends, whether it closes afterwards)
RAW = {
    "/fields": (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: x-secret\r\nX-Secret: s\r\n"
                b"Keep-Alive: timeout=5\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\n"
                b"X-Spaced:   v  \r\nContent-Length: 5\r\n\r\nhello", False),
    "/interim": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                 b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", False),
    "/eof": (b"HTTP/1.0 200 OK\r\nX-B: 1\r\n\r\nuntil the close", True),
    "/chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", False),
    "/not-modified": (b"HTTP/1.1 304 Not Modified\r\nETag: \"e1\"\r\nContent-Length: 10\r\n\r\n",
                      False),
    "/head": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", False),
    "/no-reason": (b"HTTP/1.1 503\r\nContent-Length: 4\r\n\r\nbusy", False),
    "/no-reason-chunked": (b"HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                           False),
    "/http10-keep-alive": (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n"
                           b"\r\nka", False),
    # A malformed chunked body (after the head went out): the client's connection is cut
    # short, at once. The upstream keeps its connection open.
    "/bad-body/trailer-bare-lf": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"5\r\nhello\r\n0\r\n\n", False),
    "/bad-body/size": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\nzz\r\n", False),
    # Malformed: each must give the client a 502.
    "/bad/bare-lf": (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", True),
    "/bad/bare-lf-field": (b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok", True),
    "/bad/obs-fold": (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
                      True),
    "/bad/te-gzip": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", True),
    "/bad/te-and-cl": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n"
                       b"\r\n2\r\nok\r\n0\r\n\r\n", True),
    "/bad/two-lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
                         True),
    "/bad/nul": (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok", True),
    "/bad/space-before-colon": (b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2\r\n\r\nok", True),
    "/bad/status": (b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok", True),
    "/bad/not-http": (b"SSH-2.0-OpenSSH_9.2\r\n", True),
    "/bad/huge": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * (70 * 1024) + b"\r\n\r\n", True),
}


def respond(req):
    raw, close = RAW.get(req["target"], (b"HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n", False))
    return ("raw", raw, close)


class UpstreamResponsesTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = cls.start_scripted(respond, "raw")
        cfg = h.config([h.listener("web")], [h.cluster("main", [cls.upstream], max_tries=1)])
        cls.sluice = cls.start_sluice(cfg)
        cls.port = cls.sluice.port

    def get(self, path, method="GET"):
        return h.request(self.port, method, path)

    def test_end_to_end_fields_relayed_hop_by_hop_dropped(self):
        r = self.get("/fields")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.reason, "OK")
        self.assertEqual(r.body, b"hello")
        self.assertEqual(r.all("X-A"), ["1"])
        self.assertEqual(r.all("Set-Cookie"), ["a=1; Path=/", "b=2"])
        self.assertEqual(r.all("X-Spaced"), ["v"])
        self.assertEqual(r.all("Content-Length"), ["5"])
        for name in ("X-Secret", "Keep-Alive"):
            self.assertIsNone(r.header(name), f"{name} was relayed: {r.headers}")
        for v in r.all("Connection"):
            self.assertNotIn("x-secret", v.lower())

    def test_interim_responses_skipped(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("GET", "/interim"))
            r = c.read_response(interim=True)  # the first response the client sees
            self.assertEqual(r.status, 201)
            self.assertEqual(r.body, b"ok")

    def test_close_delimited_body_is_rechunked(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("GET", "/eof"))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"until the close")
            self.assertTrue(r.has_token("Transfer-Encoding", "chunked"), r.headers)
            self.assertEqual(r.all("X-B"), ["1"])
            # The client's connection stays usable.
            c.send(h.build_request("GET", "/fields"))
            self.assertEqual(c.read_response().body, b"hello")

    def test_chunked_body_decoded_and_reframed(self):
        r = self.get("/chunked")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"hello world")

    def test_not_modified_keeps_its_content_length(self):
        with h.Conn(self.port) as c:
            for _ in range(2):  # and the connection goes on
                c.send(h.build_request("GET", "/not-modified"))
                r = c.read_response()
                self.assertEqual(r.status, 304)
                self.assertEqual(r.all("Content-Length"), ["10"])
                self.assertEqual(r.all("ETag"), ['"e1"'])

    def test_head_response_keeps_its_content_length(self):
        with h.Conn(self.port) as c:
            c.send(h.build_request("HEAD", "/head"))
            r = c.read_response(method="HEAD")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.all("Content-Length"), ["10"])
            c.send(h.build_request("GET", "/fields"))
            self.assertEqual(c.read_response().body, b"hello")

    def test_missing_reason_gets_the_standard_one(self):
        r = self.get("/no-reason")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.reason, "Service Unavailable")
        self.assertEqual(r.body, b"busy")
        r = self.get("/no-reason-chunked")
        self.assertEqual((r.status, r.reason, r.body), (200, "OK", b"ok"))

    def test_http10_keep_alive_upstream(self):
        for _ in range(3):
            r = self.get("/http10-keep-alive")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.version, "HTTP/1.1")
            self.assertEqual(r.body, b"ka")

    def test_malformed_heads_give_502(self):
        for path in sorted(p for p in RAW if p.startswith("/bad/")):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 502, f"{path}: {r!r}")
        self.assertTrue(self.sluice.alive())
        # And the proxy goes on serving.
        self.assertEqual(self.get("/fields").status, 200)

    def test_malformed_chunked_body_cuts_the_response_short(self):
        for path in sorted(p for p in RAW if p.startswith("/bad-body/")):
            with self.subTest(path=path), h.Conn(self.port, timeout=10) as c:
                started = time.monotonic()
                c.send(h.build_request("GET", path))
                with self.assertRaises(h.ConnectionClosed):
                    c.read_response()  # the head and "hello" arrive, the last chunk never
                # Closed well before the cluster's read timeout (60 s by default) would fire.
                self.assertLess(time.monotonic() - started, 8)
        self.assertEqual(self.get("/fields").status, 200)


if __name__ == "__main__":
    unittest.main()
