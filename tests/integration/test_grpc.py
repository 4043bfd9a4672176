"""gRPC and h2c through sluice: real grpc++ Hello servers and clients, h2load, nghttp, curl.

Needs SLUICE_HELLO_SERVER and SLUICE_HELLO_CLIENT (built from examples/hello when grpc++ is
installed), and nghttp2-client / curl for the h2load, nghttp and curl cases.
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CLIENT_TIMEOUT = 300


def hello_server_bin():
    return h._find_binary("SLUICE_HELLO_SERVER", os.path.join("tests", "sluice-hello-server"))


def hello_client_bin():
    return h._find_binary("SLUICE_HELLO_CLIENT", os.path.join("tests", "sluice-hello-client"))


class HelloServer(h.Process):
    def __init__(self, server_id):
        super().__init__([hello_server_bin(), "--listen", "127.0.0.1:0", "--id", server_id],
                         f"hello {server_id}")
        self.id = server_id
        m = self.wait_for_line(r"^listening 127\.0\.0\.1:(\d+)$", which="stdout")[0]
        self.port = int(m.group(1))
        self.address = f"127.0.0.1:{self.port}"


def run_client(port, calls, kind="unary", **opts):
    """Runs sluice-hello-client; returns {'servers': {id: n}, 'status': {code: n}, 'ok', 'failed'}."""
    argv = [hello_client_bin(), "--target", f"127.0.0.1:{port}", "--calls", str(calls),
            "--streaming", kind]
    for k, v in opts.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    p = subprocess.run(argv, capture_output=True, timeout=CLIENT_TIMEOUT)
    out = {"servers": {}, "status": {}, "ok": 0, "failed": 0, "raw": p.stdout.decode()}
    for line in p.stdout.decode().splitlines():
        parts = line.split()
        if parts[0] == "server":
            out["servers"][parts[1]] = int(parts[2])
        elif parts[0] == "status":
            out["status"][int(parts[1])] = int(parts[2])
        elif parts[0] in ("ok", "failed"):
            out[parts[0]] = int(parts[1])
    return out


def grpc_frame(name, delay_ms=0):
    """A length-prefixed gRPC message carrying hello.HelloRequest{name, delay_ms}."""
    raw = name.encode()
    msg = b"\x0a" + bytes([len(raw)]) + raw
    if delay_ms:
        v, varint = delay_ms, b""
        while True:
            b = v & 0x7F
            v >>= 7
            varint += bytes([b | (0x80 if v else 0)])
            if not v:
                break
        msg += b"\x18" + varint
    return b"\x00" + struct.pack(">I", len(msg)) + msg


class GrpcTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.servers = []
        for i in ("a", "b", "c"):
            s = HelloServer(i)
            cls.addClassCleanup(s.stop)
            cls.servers.append(s)
        cls.dead_port = h.free_dead_port()
        routes = [{"match": {"path_prefix": "/direct"}, "direct": {"status": 200, "body": "direct\n"}},
                  {"match": {"path_prefix": "/plain"}, "cluster": "plain"},
                  {"match": {"path_prefix": "/"}, "cluster": "hello"}]
        cfg = h.config(
            [h.listener("grpc", routes=routes),
             h.listener("strict", routes=[{"match": {"path_prefix": "/"}, "cluster": "hello"}],
                        http2={"reset_burst": 50, "reset_rate": 1, "max_concurrent_streams": 10}),
             h.listener("dead", routes=[{"match": {"path_prefix": "/"}, "cluster": "dead"}]),
             h.listener("reject", routes=[{"match": {"path_prefix": "/"}, "cluster": "hello"}],
                        headers_with_underscores="reject")],
            [h.cluster("hello", cls.servers, protocol="h2c"),
             h.cluster("dead", [f"127.0.0.1:{cls.dead_port}"], protocol="h2c", max_tries=2),
             h.cluster("plain", [f"127.0.0.1:{cls.dead_port}"])],
            workers=2)
        cls.sluice = cls.start_sluice(cfg)
        cls.port = cls.sluice.ports["grpc"]
        cls.dead = cls.sluice.ports["dead"]
        cls.strict = cls.sluice.ports["strict"]
        cls.tmp = cls.make_tempdir()

    def test_1_unary_calls_on_one_channel_spread_evenly(self):
        r = run_client(self.port, 1000)
        self.assertEqual(r["failed"], 0, r["raw"])
        self.assertEqual(r["ok"], 1000)
        self.assertEqual(set(r["servers"]), {"a", "b", "c"}, r["raw"])
        for sid, n in r["servers"].items():
            self.assertLessEqual(abs(n - 1000 / 3), 1000 / 3 * 0.2, f"{sid}: {n} of 1000\n{r['raw']}")

    def test_2_streaming_kinds(self):
        for kind in ("unary", "server", "client", "bidi"):
            with self.subTest(kind=kind):
                r = run_client(self.port, 30, kind, messages=5, concurrency=3)
                self.assertEqual(r["failed"], 0, r["raw"])
                self.assertEqual(r["ok"], 30)
        # A long server stream crosses many flow-control windows.
        r = run_client(self.port, 2, "server", messages=20000)
        self.assertEqual(r["failed"], 0, r["raw"])

    def test_3_no_backend_is_unavailable(self):
        r = run_client(self.dead, 5)
        self.assertEqual(r["status"], {14: 5}, r["raw"])
        self.assertAlive(self.sluice)

    @unittest.skipUnless(shutil.which("nghttp"), "nghttp (nghttp2-client) not installed")
    def test_4_deadline_exceeded_from_grpc_timeout(self):
        body = os.path.join(self.tmp, "slow.bin")
        with open(body, "wb") as f:
            f.write(grpc_frame("slow", delay_ms=5000))
        p = subprocess.run(
            ["nghttp", "-nv", "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers",
             "-H", "grpc-timeout: 300m", f"http://127.0.0.1:{self.port}/hello.Hello/SayHello"],
            capture_output=True, timeout=60)
        out = p.stdout.decode()
        self.assertRegex(out, r"grpc-status: 4\b", out)
        # And through a real client: DEADLINE_EXCEEDED.
        r = run_client(self.port, 3, deadline_ms=300, delay_ms=5000)
        self.assertEqual(r["status"], {4: 3}, r["raw"])

    def nghttp_call(self, port, *fields):
        """A unary SayHello over h2c with nghttp; returns (response fields, output)."""
        body = os.path.join(self.tmp, "hello.bin")
        with open(body, "wb") as f:
            f.write(grpc_frame("nghttp"))
        argv = ["nghttp", "-nv", "-d", body, "-H", "content-type: application/grpc",
                "-H", "te: trailers"]
        for f in fields:
            argv += ["-H", f]
        p = subprocess.run(argv + [f"http://127.0.0.1:{port}/hello.Hello/SayHello"],
                           capture_output=True, timeout=60)
        out = p.stdout.decode("latin-1") + p.stderr.decode("latin-1")
        got = {}
        for m in re.finditer(r"(?m)^\[[ 0-9.]+\] recv \(stream_id=\d+\) ([^:\s][^:]*): (.*)$", out):
            got.setdefault(m.group(1), m.group(2))
        return got, out

    @unittest.skipUnless(shutil.which("nghttp"), "nghttp (nghttp2-client) not installed")
    def test_4b_fields_with_underscores_and_date(self):
        # HTTP/2 to HTTP/2: fields with `_` dropped by default (as towards HTTP/1.1 upstreams),
        # and a Date added to the response (the grpc++ server sends none).
        got, out = self.nghttp_call(self.port, "x_secret: 1", "x-kept: 2")
        self.assertEqual(got.get("grpc-status"), "0", out)
        seen = got.get("x-seen-fields", "").split(",")
        self.assertIn("x-kept", seen, out)
        self.assertNotIn("x_secret", seen, out)
        self.assertRegex(got.get("date", ""),
                         r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$", out)
        # headers_with_underscores: reject answers the call itself (INTERNAL, as for a 400) ...
        reject = self.sluice.ports["reject"]
        got, out = self.nghttp_call(reject, "x_secret: 1")
        self.assertEqual(got.get("grpc-status"), "13", out)
        self.assertNotIn("x-seen-fields", got, out)
        self.assertIn("date", got, out)
        # ... and lets a call without such fields through.
        got, out = self.nghttp_call(reject, "x-kept: 2")
        self.assertEqual(got.get("grpc-status"), "0", out)
        self.assertIn("x-kept", got.get("x-seen-fields", "").split(","), out)

    def test_4c_answer_before_the_request_body_ends_the_stream(self):
        # A complete answer (here sluice's own) while the client is still sending its body is
        # followed by RST_STREAM(NO_ERROR) (RFC 9113 section 8.1): the client may stop sending,
        # and the stream does not stay half open on both sides.
        # HPACK: :method POST, :scheme http, :path /direct, :authority x.
        block = b"\x83\x86\x04\x07/direct\x41\x01x"
        hello = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b"") +
                 _frame(1, 0x4, 1, block) + _frame(0, 0, 1, b"part of a body"))
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
            s.sendall(hello)
            s.settimeout(1)
            data, seen = b"", []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                data += chunk
                seen = [(t, flags, sid, payload) for (t, flags, sid, payload) in _frames_full(data)
                        if sid == 1]
                if any(t == 3 for (t, _, _, _) in seen):
                    break
        kinds = [(t, flags & 0x1) for (t, flags, _, _) in seen]
        self.assertIn((1, 0), kinds, f"response HEADERS on stream 1: {kinds}")
        self.assertIn((0, 1), kinds, f"DATA with END_STREAM on stream 1: {kinds}")
        resets = [struct.unpack(">I", payload[:4])[0] for (t, _, _, payload) in seen if t == 3]
        self.assertEqual(resets, [0], f"RST_STREAM(NO_ERROR) after the answer: {kinds}")
        self.assertAlive(self.sluice)

    @unittest.skipUnless(shutil.which("h2load"), "h2load (nghttp2-client) not installed")
    def test_5_h2load_grpc_unary(self):
        body = os.path.join(self.tmp, "hello.bin")
        with open(body, "wb") as f:
            f.write(grpc_frame("h2load"))
        p = subprocess.run(
            ["h2load", "-n", "2000", "-c", "4", "-m", "10", "-d", body,
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             f"http://127.0.0.1:{self.port}/hello.Hello/SayHello"],
            capture_output=True, timeout=120)
        out = p.stdout.decode()
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored", out)
        self.assertIsNotNone(m, out + p.stderr.decode())
        self.assertEqual(int(m.group(4)), 2000, out)
        self.assertEqual(int(m.group(5)) + int(m.group(6)), 0, out)

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_6_curl_prior_knowledge_and_http1_on_the_same_port(self):
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "%{http_version} %{http_code}",
                            f"http://127.0.0.1:{self.port}/direct"], capture_output=True, timeout=30)
        self.assertEqual(p.stdout.decode(), "direct\n2 200", p.stderr.decode())
        r = h.get(self.port, "/direct")
        self.assertEqual((r.version, r.status, r.body), ("HTTP/1.1", 200, b"direct\n"))
        # HTTP/2 to an http1 cluster whose only backend is down: a clear 502.
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://127.0.0.1:{self.port}/plain"], capture_output=True, timeout=30)
        self.assertEqual(p.stdout.decode(), "502", p.stderr.decode())
        # ... and HTTP/1.1 to the h2c cluster reaches a gRPC server as HTTP/2 (which refuses a
        # GET that is no gRPC call, in its own words); the connection stays usable.
        with h.Conn(self.port) as c:
            c.send(h.build_request("GET", "/hello.Hello/SayHello"))
            r = c.read_response()
            self.assertEqual((r.status, r.header("grpc-status"), r.header("Content-Length")),
                             (200, "2", "0"))
            c.send(h.build_request("GET", "/direct"))
            self.assertEqual(c.read_response().status, 200)

    def test_7_backend_killed_mid_load(self):
        victim = self.servers[2]
        result = {}

        def load():
            result["r"] = run_client(self.port, 600, concurrency=8, delay_ms=10)

        t = threading.Thread(target=load)
        t.start()
        # Kill once the victim has calls in flight through sluice (its port has connections).
        h.wait_until(lambda: _established_to(victim.port), 60, message="sluice connected to victim")
        victim.signal(signal.SIGKILL)
        t.join(CLIENT_TIMEOUT)
        r = result["r"]
        # Only calls in flight on the killed backend fail (at most the client's concurrency).
        self.assertLessEqual(r["failed"], 8, r["raw"])
        self.assertEqual(set(r["status"]) - {0, 14}, set(), r["raw"])
        self.assertEqual(r["ok"] + r["failed"], 600)
        # Afterwards, nothing fails: connects to the dead backend are retried elsewhere.
        r = run_client(self.port, 300, concurrency=4)
        self.assertEqual(r["failed"], 0, r["raw"])
        self.assertEqual(set(r["servers"]), {"a", "b"}, r["raw"])
        self.assertAlive(self.sluice)

    def test_8_backend_stopped_gracefully_mid_load(self):
        # GOAWAY from the upstream drains its connection: calls in flight finish, new ones go
        # elsewhere (a refused, unprocessed stream is replayed), nothing fails.
        victim = self.servers[1]
        result = {}

        def load():
            result["r"] = run_client(self.port, 600, concurrency=8, delay_ms=10)

        t = threading.Thread(target=load)
        t.start()
        h.wait_until(lambda: _established_to(victim.port), 60, message="sluice connected to victim")
        victim.signal(signal.SIGTERM)
        t.join(CLIENT_TIMEOUT)
        r = result["r"]
        self.assertEqual(r["failed"], 0, r["raw"])
        r = run_client(self.port, 50)
        self.assertEqual(r["servers"], {"a": 50}, r["raw"])
        self.assertAlive(self.sluice)

    def test_9_rapid_reset_gets_enhance_your_calm(self):
        # CVE-2023-44487: open a stream and cancel it at once, over and over.
        frames = bytearray(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b""))
        # HPACK: :method POST, :scheme http, :path /, :authority x (static-table names).
        block = b"\x83\x86\x84\x41\x01x"
        for i in range(500):
            sid = 1 + 2 * i
            frames += _frame(1, 0x4, sid, block) + _frame(3, 0, sid, struct.pack(">I", 8))
        with h.Conn(self.strict) as c:
            try:
                c.send(bytes(frames))
            except (BrokenPipeError, ConnectionResetError):
                pass
            data = c.wait_closed()
        codes = [struct.unpack(">I", payload[4:8])[0] for (t, payload) in _frames(data) if t == 7]
        self.assertIn(0xB, codes, f"GOAWAY codes {codes}")
        # The listener still serves well-behaved clients.
        r = run_client(self.strict, 20, concurrency=4)
        self.assertEqual(r["failed"], 0, r["raw"])
        self.assertAlive(self.sluice)


def _frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def _frames(data):
    out, i = [], 0
    while i + 9 <= len(data):
        n = int.from_bytes(data[i:i + 3], "big")
        out.append((data[i + 3], data[i + 9:i + 9 + n]))
        i += 9 + n
    return out


def _frames_full(data):
    """(type, flags, stream id, payload) of every complete frame in data."""
    out, i = [], 0
    while i + 9 <= len(data):
        n = int.from_bytes(data[i:i + 3], "big")
        if i + 9 + n > len(data):
            break
        sid = int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF
        out.append((data[i + 3], data[i + 4], sid, data[i + 9:i + 9 + n]))
        i += 9 + n
    return out


def _established_to(port):
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "01" and int(parts[2].split(":")[1], 16) == port:
                return True
    return False


if __name__ == "__main__":
    unittest.main(verbosity=2)
