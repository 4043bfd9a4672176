"""Hostile and malformed clients: every one gets a clear error and a closed connection, nothing
is smuggled to the upstream, and sluice keeps serving everyone else."""

import os
import random
import select
import re
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

LIMITS = {"max_request_line": 1024, "max_header_bytes": 4096, "max_headers": 20,
          "max_body": 1024}


class HostileTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        (cls.backend,) = cls.start_backends("h")
        cfg = h.config([h.listener("web", limits=LIMITS, timeouts={"header": "2s", "body": "2s"})],
                       [h.cluster("main", [cls.backend])], workers=2)
        cls.sluice = cls.start_sluice(cfg)
        cls.port = cls.sluice.port
        c1 = cls.backend.count()
        c2 = cls.backend.count()
        cls.count_step = c2 - c1  # what one /count call adds by itself

    def backend_requests_since(self, before):
        return self.backend.count() - before - self.count_step

    def assertRejected(self, raw, statuses=(400,), upstream_may_see=False):
        """Sends raw bytes on a fresh connection: expects one response with a status in
        `statuses`, then the connection closed with nothing more, and (unless upstream_may_see)
        no request at the backend."""
        before = self.backend.count()
        with h.Conn(self.port, timeout=10) as c:
            try:
                c.send(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                r = c.read_response()
            except h.ConnectionClosed as e:
                self.fail(f"connection closed without an error response ({e})")
            self.assertIn(r.status, statuses, f"for {raw[:200]!r}: {r!r} {r.body!r}")
            self.assertEqual(c.wait_closed(timeout=10), b"", "data after the error response")
        if not upstream_may_see:
            self.assertEqual(self.backend_requests_since(before), 0,
                             f"request reached the backend: {raw[:200]!r}")
        self.assertServing()
        return r

    def assertServing(self):
        self.assertAlive(self.sluice)
        r = h.get(self.port, "/")
        self.assertEqual((r.status, r.header("X-Backend")), (200, "h"))

    # ---- framing / smuggling --------------------------------------------------------------

    def test_content_length_and_transfer_encoding(self):
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        body = b"0\r\n\r\n" + smuggled
        raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" % len(body)) + body
        self.assertRejected(raw)
        # TE.CL ordering of the same attack.
        raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Length: 4\r\n\r\n5c\r\n" + smuggled + b"\r\n0\r\n\r\n")
        self.assertRejected(raw)

    def test_two_different_content_lengths(self):
        raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\n"
               b"helloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertRejected(raw)

    def test_bad_content_length_values(self):
        for value in (b"5, 6", b"5, 5", b"05", b"-1", b"+5", b"0x10", b"5 5", b"abc", b"\t5",
                      b"99999999999999999999999"):
            with self.subTest(value=value):
                raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\nhello"
                # An overflowing length may also be refused as larger than max_body.
                self.assertRejected(raw, statuses=(400, 413) if len(value) > 10 else (400,))

    def test_transfer_encoding_not_plain_chunked(self):
        for te in (b"gzip, chunked", b"chunked, gzip", b"xchunked", b"chunked, chunked"):
            with self.subTest(te=te):
                raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te +
                       b"\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertRejected(raw, statuses=(400, 501))

    def test_invalid_chunk_size(self):
        raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"zz\r\nhello\r\n0\r\n\r\n")
        self.assertRejected(raw, upstream_may_see=True)

    def test_chunked_trailer_ended_by_bare_lf(self):
        # The last chunk's trailer section ended by a bare LF: refused at once (it used to wait
        # for a CRLF CRLF until the body timeout), and nothing smuggled behind it is served.
        for tail in (b"0\r\n\n", b"0\r\nX: a\nb\r\n\r\n",
                     b"0\r\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"):
            with self.subTest(tail=tail):
                raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n" + tail)
                started = time.monotonic()
                self.assertRejected(raw, upstream_may_see=True)
                self.assertLess(time.monotonic() - started, 1.9, "answered only at the body timeout")

    def test_chunk_line_too_long(self):
        raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=" + b"A" * 100000 + b"\r\nhello\r\n0\r\n\r\n")
        self.assertRejected(raw, upstream_may_see=True)

    def test_chunk_syntax(self):
        for body in (b"5 \r\nhello\r\n0\r\n\r\n", b"5;\r\nhello\r\n0\r\n\r\n",
                     b"5\nhello\r\n0\r\n\r\n", b"5\r\nhello\n0\r\n\r\n",
                     b"5\r\nhello\r\n0\r\nA : b\r\n\r\n"):
            with self.subTest(body=body):
                raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + body)
                self.assertRejected(raw, upstream_may_see=True)

    def test_chunked_body_with_extensions_and_trailers_relayed(self):
        raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;a=b;c=\"d e\"\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
        with h.Conn(self.port) as c:
            c.send(raw)
            r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello world"))

    # ---- request line and target ------------------------------------------------------------

    def test_methods_refused(self):
        for line, status in ((b"get / HTTP/1.1", 400), (b"Get / HTTP/1.1", 400),
                             (b"TRACE / HTTP/1.1", 405), (b"CONNECT x:443 HTTP/1.1", 405),
                             (b"CONNECT x: HTTP/1.1", 400), (b"CONNECT /path HTTP/1.1", 400),
                             (b"A" * 100 + b" / HTTP/1.1", 400)):
            with self.subTest(line=line):
                self.assertRejected(line + b"\r\nHost: x\r\n\r\n", statuses=(status,))
        # A method that never ends: 400 as soon as it is too long to be one.
        self.assertRejected(b"A" * 100000, statuses=(400,))

    def test_targets_refused(self):
        for target in (b"/caf\xc3\xa9", b"/\xc0\xaf", b"/p#frag", b"/p\\f", b"/p%00.html",
                       b"/p%0d%0aX-Injected:%20true", b"/p%0A"):
            with self.subTest(target=target):
                self.assertRejected(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")

    def test_unknown_expectation(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",
                            statuses=(417,))

    # ---- header syntax --------------------------------------------------------------------

    def test_obs_fold(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n")

    def test_nul_in_header_value(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n")

    def test_bare_cr_in_header_value(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n")

    def test_bare_lf_in_header_value(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nX-B: b\r\n\r\n")

    def test_space_before_colon(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n")

    def test_malformed_request_lines(self):
        for line in (b"GET  / HTTP/1.1", b"GET / HTTP/1.1 extra", b"G@T / HTTP/1.1",
                     b"GET / HTTX/1.1", b"GET / HTTP/1.x", b" GET / HTTP/1.1", b"GET\t/ HTTP/1.1"):
            with self.subTest(line=line):
                self.assertRejected(line + b"\r\nHost: x\r\n\r\n")

    def test_missing_host(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n")

    def test_two_hosts(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")

    # ---- limits ---------------------------------------------------------------------------

    def test_request_line_too_long(self):
        self.assertRejected(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", statuses=(414,))

    def test_head_too_large(self):
        fields = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 300) for i in range(15))
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n", statuses=(431,))

    def test_too_many_headers(self):
        fields = b"".join(b"X-N-%d: 1\r\n" % i for i in range(30))
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n", statuses=(431,))

    def test_limits_not_hit_just_below(self):
        r = h.request(self.port, "GET", "/" + "a" * 900,
                      headers=[(f"X-N-{i}", "1") for i in range(15)])
        self.assertEqual(r.status, 200)
        r = h.request(self.port, "POST", "/echo", body=b"x" * 1024)
        self.assertEqual((r.status, r.body), (200, b"x" * 1024))

    def test_body_too_large_content_length(self):
        raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
        self.assertRejected(raw, statuses=(413,))

    def test_body_too_large_chunked(self):
        body = b"".join(b"100\r\n" + b"y" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
        raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
        self.assertRejected(raw, statuses=(413,), upstream_may_see=True)

    # ---- garbage and slow clients ---------------------------------------------------------

    def test_garbage(self):
        rng = random.Random(20240601)
        payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
                    for _ in range(20)]
        payloads += [b"GET / HTTP/1.1\r\nHost: x\r\n" + p for p in payloads[:5]]
        payloads += [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # TLS hello
                     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 64]
        for i, p in enumerate(payloads):
            with self.subTest(payload=i):
                with h.Conn(self.port) as c:
                    try:
                        c.send(p + b"\r\n\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    data = c.wait_closed()
                    if data and p.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
                        # Served as HTTP/2 (prior knowledge): a bad frame after the preface
                        # gets SETTINGS, then GOAWAY (frame type 7), then the close.
                        self.assertEqual(data[3], 0x04, data[:100])
                        self.assertIn(b"\x07\x00\x00\x00\x00\x00", data, data[:100])
                    elif data:
                        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
                        self.assertTrue(m, f"payload {i}: unexpected answer {data[:100]!r}")
                        self.assertIn(int(m.group(1)), (400, 405, 414, 431, 501, 505), data[:100])
                self.assertServing()

    def test_stalled_body_times_out(self):
        """A client that stops sending in the middle of a body is cut off by timeouts.body."""
        for framing in ("length", "chunked"):
            with self.subTest(framing=framing):
                with h.Conn(self.port) as c:
                    if framing == "length":
                        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                               + b"z" * 10)
                    else:
                        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                               b"\r\n\r\na\r\n" + b"z" * 10 + b"\r\n")
                    start = time.monotonic()
                    data = c.wait_closed(timeout=15)
                    elapsed = time.monotonic() - start
                # Either a 408, or (when the upstream had already started its answer) a cut.
                if data.startswith(b"HTTP/1.1 "):
                    self.assertIn(data[9:12], (b"408", b"200"), data[:100])
                else:
                    self.assertEqual(data, b"")
                self.assertGreater(elapsed, 1.5, "cut off before the 2s body timeout")
                self.assertServing()

    def test_slowloris_cut_off_others_served(self):
        served = []
        failures = []
        stop = threading.Event()

        def others():
            while not stop.is_set():
                try:
                    r = h.get(self.port, "/", timeout=10)
                    served.append(r.status)
                except Exception as e:  # noqa: BLE001 - reported below
                    failures.append(repr(e))

        t = threading.Thread(target=others, daemon=True)
        t.start()
        try:
            slow = socket.create_connection(("127.0.0.1", self.port), timeout=h.IO_TIMEOUT)
            start = time.monotonic()
            head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
            answer = b""
            closed = False
            for byte in head:  # bounded: 130 bytes, 0.5 s each at most
                try:
                    slow.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                r, _, _ = select.select([slow], [], [], 0.5)
                if r:
                    try:
                        chunk = slow.recv(4096)
                    except ConnectionResetError:
                        chunk = b""
                    answer += chunk
                    if not chunk:
                        closed = True
                        break
                if time.monotonic() - start > 30:
                    break
            elapsed = time.monotonic() - start
            slow.close()
        finally:
            stop.set()
            t.join(timeout=30)
        self.assertTrue(closed or answer.startswith(b"HTTP/1.1 408"),
                        f"slow client not cut off after {elapsed:.1f}s (got {answer[:80]!r})")
        if answer:
            self.assertTrue(answer.startswith(b"HTTP/1.1 408"), answer[:80])
        self.assertLess(elapsed, 15, "header timeout of 2s took far too long")
        self.assertGreater(elapsed, 1.5, "slow client cut off before the 2s header timeout")
        self.assertEqual(failures, [])
        self.assertGreater(len(served), 0)
        self.assertEqual(set(served), {200})


if __name__ == "__main__":
    unittest.main()
