"""Shared helpers for sluice's integration tests (Python standard library only).

Starts real processes (sluice, sluice-demo-backend) on loopback, writes YAML configurations,
speaks HTTP/1.1 over raw sockets and cleans everything up, even when a test fails. Every wait
is a poll on a condition with a deadline; nothing sleeps to let something happen.
"""

import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Generous: the suite may run under AddressSanitizer on a busy two-core machine.
START_TIMEOUT = 30.0
IO_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def _find_binary(env_name, file_name):
    path = os.environ.get(env_name)
    if path:
        return path
    for build in sorted(os.listdir(REPO)):
        candidate = os.path.join(REPO, build, file_name)
        if build.startswith("build") and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"{env_name} is not set and no {file_name} was found under {REPO}/build*")


def sluice_bin():
    return _find_binary("SLUICE_BIN", "sluice")


def demo_backend_bin():
    return _find_binary("SLUICE_DEMO_BACKEND", "sluice-demo-backend")


def wait_until(condition, timeout, interval=0.02, message="condition"):
    """Polls condition() until it returns a truthy value; returns it or raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# YAML


def _yaml_scalar(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    # JSON string escapes are a subset of YAML double-quoted escapes.
    return json.dumps(str(value))


def to_yaml(value, indent=0):
    """Block-style YAML for dicts, lists and scalars (enough for sluice configurations)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 2)}")
            elif isinstance(item, dict):
                lines.append(f"{pad}{key}: {{}}\n")
            elif isinstance(item, list):
                lines.append(f"{pad}{key}: []\n")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}\n")
        return "".join(lines)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2)
                # Put the first line of the nested block right after the dash.
                lines.append(f"{pad}- {body[indent + 2:]}")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item) if not isinstance(item, (dict, list)) else ('{}' if isinstance(item, dict) else '[]')}\n")
        return "".join(lines)
    return pad + _yaml_scalar(value) + "\n"


# --------------------------------------------------------------------------------------------
# Processes


class Process:
    """A child process whose stderr (and optionally stdout) is collected by reader threads."""

    def __init__(self, argv, name, stdout_path=None, env=None):
        self.name = name
        self.argv = argv
        self.stdout_lines = []
        self.stderr_lines = []
        self._lock = threading.Lock()
        self._stdout_file = open(stdout_path, "wb") if stdout_path else None
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout_file if self._stdout_file else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.pid = self.proc.pid
        self._threads = []
        if not self._stdout_file:
            self._threads.append(self._reader(self.proc.stdout, self.stdout_lines))
        self._threads.append(self._reader(self.proc.stderr, self.stderr_lines))

    def _reader(self, stream, sink):
        def run():
            for raw in iter(stream.readline, b""):
                with self._lock:
                    sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
            stream.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def lines(self, which="stderr"):
        with self._lock:
            return list(self.stderr_lines if which == "stderr" else self.stdout_lines)

    def alive(self):
        return self.proc.poll() is None

    def wait_for_line(self, pattern, which="stderr", timeout=START_TIMEOUT, count=1):
        """Waits for `count` lines matching regex `pattern`; returns the list of matches."""
        regex = re.compile(pattern)

        def found():
            matches = [m for m in (regex.search(l) for l in self.lines(which)) if m]
            if len(matches) >= count:
                return matches
            if not self.alive():
                # Let the reader threads drain what is left before giving up.
                for t in self._threads:
                    t.join(timeout=2)
                matches = [m for m in (regex.search(l) for l in self.lines(which)) if m]
                if len(matches) >= count:
                    return matches
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode} before printing "
                    f"{pattern!r}; stderr:\n{self.tail()}")
            return None

        return wait_until(found, timeout, message=f"{self.name} to print {pattern!r}")

    def tail(self, n=40):
        return "\n".join(self.lines("stderr")[-n:])

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        if self._stdout_file:
            self._stdout_file.close()
        return self.proc.returncode

    def rss_kib(self):
        """Resident set size from /proc/PID/status, in KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def uses_asan(self):
        try:
            with open(f"/proc/{self.pid}/maps") as f:
                return "libasan" in f.read()
        except OSError:
            return False


class DemoBackend(Process):
    def __init__(self, backend_id, threads=None):
        argv = [demo_backend_bin(), "--listen", "127.0.0.1:0", "--id", backend_id]
        if threads:
            argv += ["--threads", str(threads)]
        super().__init__(argv, f"backend {backend_id}")
        self.id = backend_id
        m = self.wait_for_line(r"^listening 127\.0\.0\.1:(\d+)$", which="stdout")[0]
        self.port = int(m.group(1))
        self.address = f"127.0.0.1:{self.port}"

    def count(self):
        """Requests this backend has served so far (asked directly, not through sluice)."""
        r = request(self.port, "GET", "/count")
        if r.status != 200:
            raise AssertionError(f"/count on {self.id} answered {r.status}")
        return int(r.body.strip())


class Sluice(Process):
    """sluice started on a configuration written to `workdir`; `ports` maps listener names."""

    def __init__(self, config, workdir, config_name="sluice.yaml", extra_env=None):
        self.workdir = workdir
        self.config_path = os.path.join(workdir, config_name)
        with open(self.config_path, "w") as f:
            f.write(config if isinstance(config, str) else to_yaml(config))
        env = dict(os.environ)
        # Keep AddressSanitizer's quarantine small so memory bounds stay meaningful.
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16").lstrip(":")
        if extra_env:
            env.update(extra_env)
        self.stdout_path = os.path.join(workdir, "sluice.stdout")
        super().__init__([sluice_bin(), "-c", self.config_path], "sluice",
                         stdout_path=self.stdout_path, env=env)
        names = [l["name"] for l in config.get("listeners", [])] if isinstance(config, dict) else []
        self.ports = {}
        matches = self.wait_for_line(
            r"listening name=(\S+) address=127\.0\.0\.1:(\d+)", count=max(1, len(names)))
        for m in matches:
            self.ports[m.group(1)] = int(m.group(2))
        for n in names:
            if n not in self.ports:
                raise AssertionError(f"sluice did not report listener {n!r}; stderr:\n{self.tail()}")
        self.port = self.ports[names[0]] if names else next(iter(self.ports.values()))


def free_dead_port():
    """A loopback port with nothing listening on it (bound, then closed without listen())."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------------------------
# Test certificates (openssl)


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}: {p.stderr.decode()}")


def make_ca(d, name):
    """A self-signed CA: d/NAME.pem and d/NAME.key."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_server_cert(d, ca, name):
    """d/NAME.pem and d/NAME.key for localhost and 127.0.0.1, signed by CA (see make_ca)."""
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", "/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)


# --------------------------------------------------------------------------------------------
# HTTP/1.1 over raw sockets


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in wire order
        self.body = body        # bytes, or None when streamed to a sink

    def header(self, name, default=None):
        values = self.all(name)
        return values[0] if values else default

    def all(self, name):
        name = name.lower()
        return [v for (n, v) in self.headers if n.lower() == name]

    def has_token(self, name, token):
        token = token.lower()
        return any(t.strip().lower() == token for v in self.all(name) for t in v.split(","))

    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} {self.headers!r}>"


class ConnectionClosed(Exception):
    pass


class Conn:
    """One client connection with a read buffer. All reads have a timeout."""

    def __init__(self, port, timeout=IO_TIMEOUT, host="127.0.0.1"):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, size=262144):
        """Reads more bytes into the buffer; False on EOF or reset."""
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(size)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        except socket.timeout:
            raise AssertionError(f"no data from peer within {self.sock.gettimeout()}s")
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_line(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                if not line.endswith(b"\r\n"):
                    raise AssertionError(f"line without CRLF from peer: {line!r}")
                return line[:-2]
            if len(self.buf) > limit:
                raise AssertionError("line too long from peer")
            if not self._fill():
                raise ConnectionClosed(f"connection closed mid-line (buffered {bytes(self.buf)!r})")

    def _read_exact(self, n, sink):
        while n > 0:
            if not self.buf and not self._fill():
                raise ConnectionClosed(f"connection closed with {n} body bytes missing")
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take

    def read_head(self):
        """Reads a status line and header fields; raises ConnectionClosed on a clean EOF first."""
        if not self.buf and not self._fill():
            raise ConnectionClosed("connection closed before a response")
        line = self._read_line()
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", line)
        if not m:
            raise AssertionError(f"bad status line {line!r}")
        headers = []
        for _ in range(1000):
            h = self._read_line()
            if not h:
                break
            name, sep, value = h.partition(b":")
            if not sep or not name or name != name.strip():
                raise AssertionError(f"bad header line {h!r}")
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        else:
            raise AssertionError("too many response header lines")
        return Response(m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1"),
                        headers, None)

    def read_response(self, method="GET", sink=None, interim=False):
        """Reads one full response. 1xx responses are skipped unless interim=True (101 is always
        returned). With `sink`, body bytes are passed to sink(bytes) instead of being kept."""
        for _ in range(100):
            resp = self.read_head()
            if 100 <= resp.status < 200 and resp.status != 101 and not interim:
                continue
            break
        else:
            raise AssertionError("too many interim responses")
        parts = []
        out = sink if sink else parts.append
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            pass
        elif resp.has_token("Transfer-Encoding", "chunked"):
            self._read_chunked(out)
        elif resp.header("Content-Length") is not None:
            lengths = set(resp.all("Content-Length"))
            if len(lengths) != 1 or not re.fullmatch(r"\d+", next(iter(lengths))):
                raise AssertionError(f"bad Content-Length in response: {lengths}")
            self._read_exact(int(next(iter(lengths))), out)
        else:
            while self.buf or self._fill():
                out(bytes(self.buf))
                self.buf.clear()
        resp.body = None if sink else b"".join(parts)
        return resp

    def _read_chunked(self, out):
        for _ in range(1 << 30):
            line = self._read_line()
            size_text = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]+", size_text):
                raise AssertionError(f"bad chunk size line {line!r}")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(1000):  # trailers
                    if not self._read_line():
                        return
                raise AssertionError("too many trailer lines")
            self._read_exact(size, out)
            if self._read_line() != b"":
                raise AssertionError("chunk not followed by CRLF")

    def wait_closed(self, timeout=IO_TIMEOUT):
        """Waits for EOF (or reset) from the peer. Returns any bytes that arrived first (a peer
        that closes cleanly returns b""). Raises AssertionError if it stays open."""
        extra = bytes(self.buf)
        self.buf.clear()
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection still open after {timeout}s")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.eof = True
            extra += chunk
        return extra

    def is_open_now(self):
        """True when nothing is readable (no EOF, no data) right now."""
        if self.eof or self.buf:
            return False
        r, _, _ = select.select([self.sock], [], [], 0)
        return not r


def build_request(method, path, headers=None, body=None, host="test", version="HTTP/1.1"):
    """Request bytes. `headers` is a list of (name, value); Host comes first unless given."""
    headers = list(headers or [])
    names = {n.lower() for n, _ in headers}
    lines = [f"{method} {path} {version}"]
    if host is not None and "host" not in names:
        lines.append(f"Host: {host}")
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    lines += [f"{n}: {v}" for n, v in headers]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return raw + (body or b"")


def request(port, method="GET", path="/", headers=None, body=None, host="test", timeout=IO_TIMEOUT):
    """One request on a fresh connection."""
    with Conn(port, timeout=timeout) as c:
        c.send(build_request(method, path, headers, body, host))
        return c.read_response(method)


def get(port, path="/", host="test", headers=None, timeout=IO_TIMEOUT):
    return request(port, "GET", path, headers=headers, host=host, timeout=timeout)


def chunk_encode(pieces):
    """Generator of chunked-encoding bytes from an iterable of byte strings."""
    for p in pieces:
        if p:
            yield b"%x\r\n" % len(p) + p + b"\r\n"
    yield b"0\r\n\r\n"


def exchange_streaming(conn, head, body_iter, method="POST", sink=None):
    """Sends `head` then every piece of body_iter from a thread while reading the response on
    this thread (so echoing peers never deadlock). Returns the Response."""
    errors = []

    def sender():
        try:
            conn.send(head)
            for piece in body_iter:
                conn.send(piece)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        resp = conn.read_response(method, sink=sink)
    finally:
        t.join(timeout=IO_TIMEOUT)
    if t.is_alive():
        raise AssertionError("sender thread did not finish")
    if errors:
        raise AssertionError(f"sending the body failed: {errors[0]!r}")
    return resp


class Hasher:
    """Sink that hashes and counts bytes."""

    def __init__(self):
        self.h = hashlib.sha256()
        self.n = 0

    def __call__(self, data):
        self.h.update(data)
        self.n += len(data)

    def hexdigest(self):
        return self.h.hexdigest()


# --------------------------------------------------------------------------------------------
# Scripted upstream: a tiny HTTP/1.1 server in Python for behaviour the demo backend lacks
# (counting received requests exactly, resetting after a request arrived, closing idle
# keep-alive connections, signalling when a request arrived).


class ScriptedBackend:
    """handler(req) -> ("respond", status, headers, body) | ("reset",) | ("close",) |
    ("delay", seconds, status, headers, body) | ("raw", bytes, close_after) (with close_after,
    the bytes and the FIN leave in one segment).
    req is a dict: method, target, headers, body."""

    def __init__(self, handler, name="scripted", idle_close=None):
        self.handler = handler
        self.name = name
        self.idle_close = idle_close
        self.lock = threading.Lock()
        self.requests = []        # every request received (dicts)
        self.connections = 0      # accepted
        self.closed = 0           # connections this server closed or saw closed
        self.request_event = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._conns = []
        self._threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def stats(self):
        with self.lock:
            return len(self.requests), self.connections, self.closed

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self._conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c):
        buf = bytearray()
        try:
            c.settimeout(self.idle_close if self.idle_close else 0.2)
            while not self._stop.is_set():
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    try:
                        chunk = c.recv(65536)
                    except socket.timeout:
                        if self.idle_close and not buf:
                            return  # idle keep-alive connection: close without notice
                        continue
                    if not chunk:
                        return
                    buf += chunk
                    continue
                head = bytes(buf[:i]).decode("latin-1").split("\r\n")
                del buf[: i + 4]
                method, target, _ = head[0].split(" ", 2)
                headers = []
                for line in head[1:]:
                    n, _, v = line.partition(":")
                    headers.append((n.strip(), v.strip()))
                length = 0
                for n, v in headers:
                    if n.lower() == "content-length":
                        length = int(v)
                c.settimeout(IO_TIMEOUT)
                while len(buf) < length:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                body = bytes(buf[:length])
                del buf[:length]
                req = {"method": method, "target": target, "headers": headers, "body": body}
                with self.lock:
                    self.requests.append(req)
                self.request_event.set()
                action = self.handler(req)
                if action[0] == "reset":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                if action[0] == "close":
                    return
                if action[0] == "raw":  # exactly these bytes, then close or keep serving
                    if action[2]:
                        # The bytes and the FIN in one segment: MSG_MORE holds the last
                        # piece back until the shutdown sends it with the FIN.
                        c.sendall(action[1], socket.MSG_MORE)
                        c.shutdown(socket.SHUT_WR)
                        return
                    c.sendall(action[1])
                    c.settimeout(self.idle_close if self.idle_close else 0.2)
                    continue
                if action[0] == "delay":
                    if self._stop.wait(action[1]):
                        return
                    action = ("respond",) + tuple(action[2:])
                _, status, rheaders, rbody = action
                lines = [f"HTTP/1.1 {status} X"] + [f"{n}: {v}" for n, v in rheaders]
                lines.append(f"Content-Length: {len(rbody)}")
                c.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + rbody)
                c.settimeout(self.idle_close if self.idle_close else 0.2)
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:  # counted once the close has happened
                self.closed += 1

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


# --------------------------------------------------------------------------------------------
# Test case base


class SluiceTestCase(unittest.TestCase):
    """Class-level helpers: temp dir, backends and sluice, all torn down by class cleanups.
    A sluice that exits non-zero on SIGTERM (crash, sanitizer report) fails the class."""

    @classmethod
    def make_tempdir(cls):
        d = tempfile.mkdtemp(prefix="sluice-itest-")
        cls.addClassCleanup(shutil.rmtree, d, ignore_errors=True)
        return d

    @classmethod
    def start_backends(cls, *ids):
        out = []
        for i in ids:
            b = DemoBackend(i)
            cls.addClassCleanup(b.stop)
            out.append(b)
        return out

    @classmethod
    def start_scripted(cls, handler, name="scripted", idle_close=None):
        s = ScriptedBackend(handler, name, idle_close)
        cls.addClassCleanup(s.stop)
        return s

    @classmethod
    def start_sluice(cls, config, workdir=None):
        workdir = workdir or cls.make_tempdir()
        s = Sluice(config, workdir)
        cls.addClassCleanup(cls._stop_sluice, s)
        return s

    @staticmethod
    def _stop_sluice(s):
        code = s.stop()
        if code != 0:
            raise AssertionError(f"sluice exited with {code} on SIGTERM; stderr:\n{s.tail()}")

    def assertAlive(self, s):
        self.assertTrue(s.alive(), f"sluice exited ({s.proc.returncode}); stderr:\n{s.tail()}")


def listener(name="web", routes=None, **extra):
    d = {"name": name, "address": "127.0.0.1:0", "protocol": "http",
         "routes": routes or [{"match": {"path_prefix": "/"}, "cluster": "main"}]}
    d.update(extra)
    return d


def cluster(name, backends, **extra):
    eps = []
    for b in backends:
        if isinstance(b, tuple):
            eps.append({"address": b[0].address if hasattr(b[0], "address") else b[0], "weight": b[1]})
        else:
            eps.append(b.address if hasattr(b, "address") else b)
    d = {"name": name, "policy": "round_robin", "endpoints": eps}
    d.update(extra)
    return d


def config(listeners, clusters, workers=1, **extra):
    # A short drain keeps teardown quick even when a failed test left a connection stuck.
    d = {"workers": workers, "drain_timeout": "5s",
         "log": {"level": "info", "access": {"path": "off"}},
         "listeners": listeners, "clusters": clusters}
    d.update(extra)
    return d
