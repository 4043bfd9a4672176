"""The L4 (protocol: tcp) proxy against real TCP peers: bulk transfer both ways in splice and
buffer modes, half-close, backend death, connect failover, PROXY protocol sent and accepted,
TLS passthrough routed by SNI (openssl s_server / s_client), connection limits, idle timeout."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

GIB = 1 << 30
CHUNK = 1 << 20
TRANSFER_TIMEOUT = 300.0


# --------------------------------------------------------------------------------------------
# Raw TCP peers (threads in this process)


class TcpServer:
    """Accepts on 127.0.0.1:0 and runs handler(conn, server) on a thread per connection.
    Records every connection's first bytes in `received` (handler decides what to record)."""

    def __init__(self, handler, name="tcp"):
        self.handler = handler
        self.name = name
        self.lock = threading.Lock()
        self.received = []      # whatever handlers append
        self.accepted = 0
        self.event = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._conns = []
        self._threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(h.IO_TIMEOUT)
            with self.lock:
                self.accepted += 1
                self._conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c):
        try:
            self.handler(c, self)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def record(self, value):
        with self.lock:
            self.received.append(value)
        self.event.set()

    def stop(self):
        self._stop.set()
        self.sock.close()
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)


def echo_handler(c, server):
    """Echoes until EOF, hashing what it received; records (bytes, sha256)."""
    hsh = hashlib.sha256()
    n = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    c.settimeout(TRANSFER_TIMEOUT)
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        hsh.update(view[:k])
        n += k
        c.sendall(view[:k])
    c.shutdown(socket.SHUT_WR)
    server.record((n, hsh.hexdigest()))


def short_reply_handler(c, server):
    """Reads until the client's FIN, answers with one short line (the length read), closes."""
    n = 0
    while True:
        data = c.recv(65536)
        if not data:
            break
        n += len(data)
    c.sendall(b"got %d\n" % n)
    server.record(n)


def reply_after_eof_handler(c, server):
    """Reads until the client's FIN, then answers with a digest and 4 MiB, then closes."""
    hsh = hashlib.sha256()
    while True:
        data = c.recv(65536)
        if not data:
            break
        hsh.update(data)
    c.sendall(b"digest " + hsh.hexdigest().encode() + b"\n")
    c.sendall(b"z" * (4 << 20))
    server.record("done")


def capture_handler(c, server):
    """Records the first bytes until `\\n\\n` ends the payload (or EOF), then answers 'ok'."""
    data = b""
    while not data.endswith(b"END\n"):
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    server.record(data)
    c.sendall(b"ok\n")


def hold_handler(c, server):
    """Echoes small messages until EOF (keeps connections open as long as the client does)."""
    server.record("open")
    while True:
        data = c.recv(65536)
        if not data:
            return
        c.sendall(data)


# --------------------------------------------------------------------------------------------
# Clients


def connect(port, timeout=h.IO_TIMEOUT):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def recv_all(s, timeout=h.IO_TIMEOUT):
    """Reads until EOF; a reset counts as EOF. Returns (bytes, reset?)."""
    s.settimeout(timeout)
    out = bytearray()
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(out), True
        if not chunk:
            return bytes(out), False
        out += chunk


def closed_soon(s, timeout=h.IO_TIMEOUT):
    """True when the peer closes or resets `s` within `timeout` (data before that is dropped)."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if not chunk:
            return True
    return False


def echo_roundtrip(port, payload=b"ping\n"):
    with connect(port) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data, _ = recv_all(s)
        return data


def stream_through(port, total):
    """Sends `total` pseudo-random bytes and reads the echo concurrently. Returns
    (sent sha256, received byte count, received sha256)."""
    block = hashlib.sha256(b"seed").digest() * (CHUNK // 32)
    blocks = [bytes(block[i:] + block[:i]) for i in (0, 7, 13, 101)]
    sent = hashlib.sha256()
    got = hashlib.sha256()
    got_n = [0]
    errors = []
    s = connect(port, timeout=TRANSFER_TIMEOUT)

    def reader():
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while True:
                k = s.recv_into(buf)
                if not k:
                    return
                got.update(view[:k])
                got_n[0] += k
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        n = 0
        i = 0
        while n < total:
            b = blocks[i % len(blocks)]
            s.sendall(b)
            sent.update(b)
            n += len(b)
            i += 1
        s.shutdown(socket.SHUT_WR)
        t.join(TRANSFER_TIMEOUT)
        if t.is_alive():
            raise AssertionError(f"echo did not finish: {got_n[0]} of {total} bytes back")
    finally:
        s.close()
    if errors:
        raise AssertionError(f"reading the echo failed after {got_n[0]} bytes: {errors[0]!r}")
    return sent.hexdigest(), got_n[0], got.hexdigest()


def tcp_listener(name, cluster, **tcp):
    d = {"name": name, "address": "127.0.0.1:0", "protocol": "tcp"}
    if cluster:
        d["cluster"] = cluster
    if tcp:
        d["tcp"] = tcp
    return d


def tcp_cluster(name, addresses, **extra):
    d = {"name": name, "policy": "round_robin", "endpoints": list(addresses),
         "timeouts": {"connect": "2s"}}
    d.update(extra)
    return d


class L4Case(h.SluiceTestCase):
    @classmethod
    def start_tcp(cls, handler, name="tcp"):
        s = TcpServer(handler, name)
        cls.addClassCleanup(s.stop)
        return s


# --------------------------------------------------------------------------------------------


class BulkTransferTest(L4Case):
    """One GiB each way through each relay mode, checksummed at both ends."""

    @classmethod
    def setUpClass(cls):
        cls.echo = cls.start_tcp(echo_handler, "echo")
        cls.sluice = cls.start_sluice(h.config(
            [tcp_listener("splice", "echo", relay="splice"),
             tcp_listener("buffer", "echo", relay="buffer", buffer_size="64k"),
             tcp_listener("auto", "echo", relay="auto")],
            [tcp_cluster("echo", [cls.echo.address])], workers=2))

    def check_mode(self, name):
        before = len(self.echo.received)
        sent, n, got = stream_through(self.sluice.ports[name], GIB)
        self.assertEqual(n, GIB)
        self.assertEqual(got, sent, "bytes echoed back differ from bytes sent")
        h.wait_until(lambda: len(self.echo.received) > before, h.IO_TIMEOUT, message="echo done")
        up_n, up_hash = self.echo.received[-1]
        self.assertEqual(up_n, GIB)
        self.assertEqual(up_hash, sent, "bytes at the upstream differ from bytes sent")

    def test_splice_1gib_both_ways(self):
        self.check_mode("splice")
        self.assertAlive(self.sluice)

    def test_buffer_1gib_both_ways(self):
        self.check_mode("buffer")
        self.assertAlive(self.sluice)

    def test_auto_1gib_both_ways(self):
        # Starts buffered, switches each direction to splice after 64 KiB.
        self.check_mode("auto")
        self.assertAlive(self.sluice)


class SemanticsTest(L4Case):
    @classmethod
    def setUpClass(cls):
        cls.replier = cls.start_tcp(reply_after_eof_handler, "replier")
        cls.echo = cls.start_tcp(echo_handler, "echo")
        cls.holder = cls.start_tcp(hold_handler, "holder")
        cls.short = cls.start_tcp(short_reply_handler, "short")
        dead = f"127.0.0.1:{h.free_dead_port()}"
        cls.sluice = cls.start_sluice(h.config(
            [tcp_listener("half", "replier"),
             tcp_listener("half_buffer", "replier", relay="buffer"),
             tcp_listener("short", "short"),
             tcp_listener("short_buffer", "short", relay="buffer"),
             tcp_listener("failover", "failover"),
             tcp_listener("idle", "holder", idle_timeout="500ms"),
             tcp_listener("limited", "holder", max_connections=2),
             tcp_listener("queued", "holder", max_connections=1, on_limit="queue",
                          queue_timeout="20s"),
             tcp_listener("perbackend", "small")],
            [tcp_cluster("replier", [cls.replier.address]),
             tcp_cluster("failover", [dead, cls.echo.address], max_tries=2),
             tcp_cluster("holder", [cls.holder.address]),
             tcp_cluster("short", [cls.short.address]),
             tcp_cluster("small", [cls.holder.address], max_connections_per_backend=1)],
            workers=2))

    def half_close(self, listener):
        with connect(self.sluice.ports[listener]) as s:
            payload = b"x" * 300000
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)  # the upstream answers only after this FIN
            data, reset = recv_all(s)
        self.assertFalse(reset)
        head, _, rest = data.partition(b"\n")
        self.assertEqual(head, b"digest " + hashlib.sha256(payload).hexdigest().encode())
        self.assertEqual(rest, b"z" * (4 << 20))

    def test_short_request_and_fin_together(self):
        # A few bytes and the FIN in the same instant, both ways: the relay must report the
        # end-of-file that arrives with (and is consumed by the read of) the last bytes.
        for listener in ("short", "short_buffer"):
            for i in range(40):
                with connect(self.sluice.ports[listener]) as s:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    payload = b"q" * (1 + i % 7)
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                    data, reset = recv_all(s)
                self.assertFalse(reset, listener)
                self.assertEqual(data, b"got %d\n" % len(payload), listener)

    def test_half_close_splice(self):
        self.half_close("half")

    def test_half_close_buffer(self):
        self.half_close("half_buffer")

    def test_connect_failover(self):
        # Round-robin alternates: every second connection first meets the dead backend.
        for i in range(10):
            self.assertEqual(echo_roundtrip(self.sluice.ports["failover"], b"n%d\n" % i), b"n%d\n" % i)

    def test_idle_timeout_closes(self):
        with connect(self.sluice.ports["idle"]) as s:
            s.sendall(b"hi")
            self.assertEqual(s.recv(10), b"hi")
            t0 = time.monotonic()
            self.assertTrue(closed_soon(s, timeout=h.IO_TIMEOUT))
            self.assertGreaterEqual(time.monotonic() - t0, 0.4)

    def test_max_connections_refused(self):
        port = self.sluice.ports["limited"]
        a, b = connect(port), connect(port)
        try:
            for s in (a, b):
                s.sendall(b"x")
                self.assertEqual(s.recv(1), b"x")
            c = connect(port)
            with c:
                self.assertTrue(closed_soon(c), "third connection was not refused")
            a.close()
            # The slot is freed once sluice sees the close; a new connection then works.
            def works():
                try:
                    return echo_roundtrip(port, b"again") == b"again"
                except OSError:
                    return False
            h.wait_until(works, h.IO_TIMEOUT, interval=0.05, message="a slot after closing one")
        finally:
            a.close()
            b.close()

    def test_max_connections_queue(self):
        port = self.sluice.ports["queued"]
        a = connect(port)
        a.sendall(b"1")
        self.assertEqual(a.recv(1), b"1")
        result = []

        def second():
            result.append(echo_roundtrip(port, b"queued"))

        t = threading.Thread(target=second, daemon=True)
        t.start()
        time.sleep(0.3)  # not needed for correctness: lets the second one queue
        self.assertTrue(t.is_alive(), "second connection finished while the first held the slot")
        a.close()
        t.join(h.IO_TIMEOUT)
        self.assertEqual(result, [b"queued"])

    def test_max_connections_per_backend(self):
        port = self.sluice.ports["perbackend"]
        a = connect(port)
        try:
            a.sendall(b"1")
            self.assertEqual(a.recv(1), b"1")
            with connect(port) as c:
                self.assertTrue(closed_soon(c), "backend over its limit still got a connection")
        finally:
            a.close()


class BackendDeathTest(L4Case):
    """The upstream process dies mid-connection: the client sees a close or reset, not a hang."""

    SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
    c.sendall(c.recv(100))
"""

    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen([sys.executable, "-c", cls.SERVER], stdout=subprocess.PIPE)
        cls.addClassCleanup(cls._kill)
        port = int(cls.proc.stdout.readline())
        cls.sluice = cls.start_sluice(h.config(
            [tcp_listener("l4", "b"), tcp_listener("l4b", "b", relay="buffer")],
            [tcp_cluster("b", [f"127.0.0.1:{port}"])]))

    @classmethod
    def _kill(cls):
        if cls.proc.poll() is None:
            cls.proc.kill()
        cls.proc.wait(timeout=10)
        cls.proc.stdout.close()

    def test_client_sees_close_when_backend_dies(self):
        clients = []
        for name in ("l4", "l4b"):
            s = connect(self.sluice.ports[name])
            s.sendall(b"hello")
            self.assertEqual(s.recv(5), b"hello")
            clients.append(s)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for s in clients:
            with s:
                self.assertTrue(closed_soon(s), "client not told about the dead backend")
        self.assertAlive(self.sluice)


class ProxyProtocolTest(L4Case):
    @classmethod
    def setUpClass(cls):
        cls.cap = cls.start_tcp(capture_handler, "capture")
        cls.sluice = cls.start_sluice(h.config(
            [tcp_listener("v1", "cap", proxy_protocol={"send": "v1"}),
             tcp_listener("v2", "cap", proxy_protocol={"send": "v2"}),
             tcp_listener("accept", "cap",
                          proxy_protocol={"send": "v1", "accept": True,
                                          "trusted": ["127.0.0.0/8"]}),
             tcp_listener("accept_v2_in", "cap",
                          proxy_protocol={"send": "v2", "accept": True, "trusted": ["127.0.0.1"]}),
             tcp_listener("untrusted", "cap",
                          proxy_protocol={"accept": True, "trusted": ["10.0.0.0/8"]})],
            [tcp_cluster("cap", [cls.cap.address])]))

    def exchange(self, listener, payload):
        before = len(self.cap.received)
        s = connect(self.sluice.ports[listener])
        with s:
            local_port = s.getsockname()[1]
            s.sendall(payload)
            self.assertEqual(s.recv(3), b"ok\n")
        h.wait_until(lambda: len(self.cap.received) > before, h.IO_TIMEOUT, message="capture")
        return local_port, self.cap.received[-1]

    def test_v1_bytes_exact(self):
        port = self.sluice.ports["v1"]
        cport, got = self.exchange("v1", b"hello END\n")
        self.assertEqual(got, f"PROXY TCP4 127.0.0.1 127.0.0.1 {cport} {port}\r\n".encode() + b"hello END\n")

    def test_v2_bytes_exact(self):
        port = self.sluice.ports["v2"]
        cport, got = self.exchange("v2", b"hello END\n")
        want = (b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11\x00\x0c" + bytes([127, 0, 0, 1, 127, 0, 0, 1])
                + cport.to_bytes(2, "big") + port.to_bytes(2, "big") + b"hello END\n")
        self.assertEqual(got, want)

    def test_v1_accepted_from_trusted(self):
        _, got = self.exchange("accept", b"PROXY TCP4 203.0.113.9 198.51.100.1 40000 5432\r\nhi END\n")
        self.assertEqual(got, b"PROXY TCP4 203.0.113.9 198.51.100.1 40000 5432\r\nhi END\n")

    def test_v2_accepted_and_reencoded(self):
        hdr = (b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11\x00\x0c" + bytes([198, 51, 100, 7, 192, 0, 2, 1])
               + (1234).to_bytes(2, "big") + (443).to_bytes(2, "big"))
        _, got = self.exchange("accept_v2_in", hdr + b"data END\n")
        self.assertEqual(got, hdr + b"data END\n")

    def test_v1_header_split_over_writes(self):
        # A header split over two writes still parses.
        before = len(self.cap.received)
        with connect(self.sluice.ports["accept"]) as s:
            s.sendall(b"PROXY TCP6 2001:db8::1 2001:db8::2 ")
            time.sleep(0.05)
            s.sendall(b"1 2\r\nsplit END\n")
            self.assertEqual(s.recv(3), b"ok\n")
        h.wait_until(lambda: len(self.cap.received) > before, h.IO_TIMEOUT, message="capture")
        self.assertEqual(self.cap.received[-1], b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\nsplit END\n")

    def test_malformed_header_from_trusted_closes(self):
        before = self.cap.accepted
        for bad in (b"GET / HTTP/1.1\r\n\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
                    b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12):
            with connect(self.sluice.ports["accept"]) as s:
                s.sendall(bad)
                self.assertTrue(closed_soon(s), f"not closed after {bad!r}")
        self.assertEqual(self.cap.accepted, before, "a bad header still reached the upstream")

    def test_untrusted_source_is_not_parsed(self):
        _, got = self.exchange("untrusted", b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\nEND\n")
        self.assertEqual(got, b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\nEND\n")


def have_openssl():
    return shutil.which("openssl") is not None


@unittest.skipUnless(have_openssl(), "openssl command not installed")
class SniPassthroughTest(L4Case):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sluice-l4-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
        cls.servers = {}
        for name in ("alpha.example.test", "beta.example.test", "default.example.test"):
            key = os.path.join(cls.dir, name + ".key")
            crt = os.path.join(cls.dir, name + ".crt")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                            "-out", crt, "-days", "2", "-subj", f"/CN={name}"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            port = h.free_dead_port()
            p = h.Process(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", crt,
                           "-key", key, "-www", "-quiet"], f"s_server {name}")
            cls.addClassCleanup(p.stop)
            cls.servers[name] = (p, port)
        for name, (p, port) in cls.servers.items():
            h.wait_until(lambda: cls._listening(port), h.START_TIMEOUT, message=f"s_server {name}")
        a = cls.servers["alpha.example.test"][1]
        b = cls.servers["beta.example.test"][1]
        d = cls.servers["default.example.test"][1]
        cls.cap = TcpServer(capture_handler, "capture")
        cls.addClassCleanup(cls.cap.stop)
        cls.sluice = cls.start_sluice(h.config(
            [tcp_listener("tls", "dflt", sni_routes=[
                {"server_name": "alpha.example.test", "cluster": "alpha"},
                {"server_name": "*.beta.example.test", "cluster": "beta"},
                {"server_name": "beta.example.test", "cluster": "beta"}], header_timeout="1s"),
             tcp_listener("nodefault", None, sni_routes=[
                 {"server_name": "alpha.example.test", "cluster": "alpha"}]),
             tcp_listener("tocapture", "cap", sni_routes=[
                 {"server_name": "alpha.example.test", "cluster": "alpha"}])],
            [tcp_cluster("alpha", [f"127.0.0.1:{a}"]), tcp_cluster("beta", [f"127.0.0.1:{b}"]),
             tcp_cluster("dflt", [f"127.0.0.1:{d}"]), tcp_cluster("cap", [cls.cap.address])]))

    @staticmethod
    def _listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def subject_via(self, listener, servername):
        argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{self.sluice.ports[listener]}"]
        if servername:
            argv += ["-servername", servername]
        r = subprocess.run(argv, input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=h.IO_TIMEOUT)
        out = r.stdout.decode("utf-8", "replace")
        for line in out.splitlines():
            if line.startswith("subject="):
                return line.split("CN", 1)[1].strip(" =")
        return None

    def test_routes_by_server_name(self):
        self.assertEqual(self.subject_via("tls", "alpha.example.test"), "alpha.example.test")
        self.assertEqual(self.subject_via("tls", "beta.example.test"), "beta.example.test")
        self.assertEqual(self.subject_via("tls", "x.beta.example.test"), "beta.example.test")
        self.assertEqual(self.subject_via("tls", "ALPHA.example.test"), "alpha.example.test")

    def test_unknown_name_goes_to_default(self):
        self.assertEqual(self.subject_via("tls", "other.example.test"), "default.example.test")
        self.assertEqual(self.subject_via("tls", None), "default.example.test")

    def test_garbage_goes_to_default_or_closes(self):
        # An HTTP request is no ClientHello: replayed, byte for byte, to the default cluster.
        with connect(self.sluice.ports["tocapture"]) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\nEND\n")
            self.assertEqual(s.recv(3), b"ok\n")
        h.wait_until(lambda: self.cap.received, h.IO_TIMEOUT, message="capture")
        self.assertEqual(self.cap.received[-1], b"GET / HTTP/1.0\r\n\r\nEND\n")
        with connect(self.sluice.ports["nodefault"]) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            self.assertTrue(closed_soon(s))
        self.assertEqual(self.subject_via("nodefault", "alpha.example.test"), "alpha.example.test")
        self.assertIsNone(self.subject_via("nodefault", "beta.example.test"))

    def test_silent_client_goes_to_default_after_header_timeout(self):
        with connect(self.sluice.ports["tls"]) as s:
            # Says nothing: after header_timeout the connection goes to the default cluster,
            # whose s_server waits for a ClientHello too; nothing must crash or hang.
            s.settimeout(5)
            time.sleep(1.5)
            s.sendall(b"\x16\x03\x01\x00\x01\x01")  # truncated hello straight to the upstream
        self.assertAlive(self.sluice)



class MetricsTest(L4Case):
    """TCP listeners in /metrics and /status: connections, bytes each way per listener and per
    backend, connect failures and early closes by reason; the scrape passes promtool."""

    MIB = 1 << 20

    @classmethod
    def setUpClass(cls):
        from test_admin import start_with_admin
        cls.echo = cls.start_tcp(echo_handler, "echo")
        cls.holder = cls.start_tcp(hold_handler, "holder")
        cls.dead = f"127.0.0.1:{h.free_dead_port()}"
        cls.sluice, cls.admin = start_with_admin(cls, h.config(
            [tcp_listener("splice", "echo", relay="splice"),
             tcp_listener("buffer", "echo", relay="buffer", buffer_size="64k"),
             tcp_listener("auto", "echo", relay="auto"),
             tcp_listener("dead", "dead"),
             tcp_listener("limited", "holder", max_connections=1)],
            [tcp_cluster("echo", [cls.echo.address]),
             tcp_cluster("dead", [cls.dead], max_tries=1),
             tcp_cluster("holder", [cls.holder.address])],
            workers=2))

    def samples(self):
        from test_admin import admin_get, parse_metrics
        r = admin_get(self.admin, "/metrics")
        self.assertEqual(r.status, 200)
        return parse_metrics(r.text())

    def value(self, samples, name, **labels):
        from test_admin import metric
        return metric(samples, name, **labels)

    def wait_idle(self, *listeners):
        def idle():
            s = self.samples()
            return all(self.value(s, "sluice_downstream_connections_active", listener=l) == 0
                       for l in listeners)
        h.wait_until(idle, h.IO_TIMEOUT, message="TCP sessions closed")

    def test_bytes_and_connections_after_transfer(self):
        from test_admin import admin_json
        self.wait_idle("splice", "buffer", "auto")
        before = self.samples()
        sizes = {"splice": 5 * self.MIB, "buffer": 3 * self.MIB, "auto": 2 * self.MIB}
        for name, size in sizes.items():
            sent, n, got = stream_through(self.sluice.ports[name], size)
            self.assertEqual((n, got), (size, sent))
        self.wait_idle("splice", "buffer", "auto")
        after = self.samples()

        def delta(name, **labels):
            return self.value(after, name, **labels) - self.value(before, name, **labels)

        for name, size in sizes.items():
            self.assertEqual(delta("sluice_downstream_connections_accepted_total", listener=name), 1)
            self.assertEqual(delta("sluice_downstream_received_bytes_total", listener=name), size, name)
            self.assertEqual(delta("sluice_downstream_sent_bytes_total", listener=name), size, name)
            self.assertEqual(self.value(after, "sluice_downstream_connections_active", listener=name), 0)
            self.assertEqual(delta("sluice_tcp_connections_closed_total", listener=name), 0, name)
        total = sum(sizes.values())
        echo = {"cluster": "echo", "backend": self.echo.address}
        self.assertEqual(delta("sluice_backend_sent_bytes_total", **echo), total)
        self.assertEqual(delta("sluice_backend_received_bytes_total", **echo), total)
        self.assertEqual(delta("sluice_backend_upstream_requests_total", **echo), 3)
        # TCP listeners answer no HTTP requests: no request series for them.
        self.assertFalse([k for k in after
                          if k[0] == "sluice_downstream_requests_total" and ("listener", "splice") in k[1]])

        listeners = {l["name"]: l for l in admin_json(self.admin)["listeners"]}
        self.assertEqual(listeners["splice"]["protocol"], "tcp")
        self.assertGreaterEqual(listeners["splice"]["received_bytes"], sizes["splice"])
        self.assertGreaterEqual(listeners["buffer"]["sent_bytes"], sizes["buffer"])
        self.assertEqual(listeners["splice"]["connections_active"], 0)
        self.assertIn("refused", listeners["splice"]["closed"])

        promtool = shutil.which("promtool")
        if promtool:
            from test_admin import admin_get
            r = subprocess.run([promtool, "check", "metrics"],
                               input=admin_get(self.admin, "/metrics").text(),
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, f"promtool check metrics:\n{r.stdout}{r.stderr}")

    def test_connect_failures_and_no_backend(self):
        before = self.samples()
        for _ in range(3):
            with connect(self.sluice.ports["dead"]) as s:
                self.assertTrue(closed_soon(s))
        self.wait_idle("dead")
        after = self.samples()

        def delta(name, **labels):
            return self.value(after, name, **labels) - self.value(before, name, **labels)

        self.assertEqual(delta("sluice_downstream_connections_accepted_total", listener="dead"), 3)
        self.assertEqual(delta("sluice_tcp_connections_closed_total", listener="dead",
                               reason="no_backend"), 3)
        # Passive health may eject the dead backend after a failure; then no connect is tried.
        failures = delta("sluice_tcp_upstream_connect_failures_total", listener="dead")
        self.assertGreaterEqual(failures, 1)
        self.assertEqual(delta("sluice_cluster_upstream_connect_failures_total", cluster="dead"), failures)
        self.assertEqual(delta("sluice_backend_connect_failures_total", cluster="dead",
                               backend=self.dead), failures)

    def test_refused_by_limit(self):
        self.wait_idle("limited")
        before = self.samples()
        port = self.sluice.ports["limited"]
        with connect(port) as a:
            a.sendall(b"x")
            self.assertEqual(a.recv(1), b"x")
            with connect(port) as b:
                self.assertTrue(closed_soon(b))
            after = self.samples()
            self.assertEqual(self.value(after, "sluice_downstream_connections_active",
                                        listener="limited"), 1)
        self.assertEqual(
            self.value(after, "sluice_tcp_connections_closed_total", listener="limited", reason="refused")
            - self.value(before, "sluice_tcp_connections_closed_total", listener="limited", reason="refused"),
            1)
        self.wait_idle("limited")


if __name__ == "__main__":
    unittest.main(verbosity=2)
