"""Binary upgrade by socket hand-off (`sluice --upgrade`): under steady load, with a WebSocket
and a long TCP stream open, a new process takes over the listening sockets of the running one;
no request fails, the old process drains and exits, the new one serves, and it can be upgraded
again. A hand-off that cannot happen leaves the running process untouched."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

try:
    import test_grpc as grpc_peers  # noqa: E402
    grpc_peers.hello_server_bin()
    grpc_peers.hello_client_bin()
    HAVE_GRPC = True
except (ImportError, RuntimeError):
    HAVE_GRPC = False

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
DRAIN = 6  # seconds: the old process's drain_timeout


class EchoServer:
    """TCP echo on 127.0.0.1:0, a thread per connection."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    @staticmethod
    def _serve(c):
        try:
            c.settimeout(60)
            while True:
                data = c.recv(65536)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self._stop.set()
        self.sock.close()
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)


class Loader:
    """Steady, bounded load on an HTTP listener: threads with keep-alive connections and
    threads opening a fresh connection per request. A keep-alive connection the server closes
    before answering anything (a drain closes idle ones) is retried on a new connection, as
    HTTP clients do for idempotent requests; every other error counts as a failure."""

    def __init__(self, port, keepalive=3, fresh=3):
        self.port = port
        self.lock = threading.Lock()
        self.ok = 0
        self.retried = 0
        self.failures = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._keepalive, daemon=True)
                         for _ in range(keepalive)]
        self._threads += [threading.Thread(target=self._fresh, daemon=True) for _ in range(fresh)]
        for t in self._threads:
            t.start()

    def count(self):
        with self.lock:
            return self.ok

    def _record(self, ok, failure=None):
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.failures.append(failure)

    def _keepalive(self):
        conn = None
        while not self._stop.is_set():
            reused = conn is not None
            try:
                if conn is None:
                    conn = h.Conn(self.port, timeout=h.IO_TIMEOUT)
                conn.send(h.build_request("GET", "/"))
                r = conn.read_response()
            except (h.ConnectionClosed, OSError) as e:
                nothing = conn is not None and not conn.buf
                if conn is not None:
                    conn.close()
                conn = None
                if reused and nothing:
                    with self.lock:
                        self.retried += 1
                    continue
                self._record(False, f"keep-alive: {e!r}")
                continue
            except AssertionError as e:
                self._record(False, f"keep-alive: {e}")
                conn.close()
                conn = None
                continue
            self._record(r.status == 200, f"keep-alive: status {r.status}")
            if r.has_token("Connection", "close"):
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _fresh(self):
        while not self._stop.is_set():
            try:
                r = h.get(self.port, "/")
            except (h.ConnectionClosed, OSError, AssertionError) as e:
                self._record(False, f"fresh connection: {e!r}")
                continue
            self._record(r.status == 200, f"fresh connection: status {r.status}")

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=h.IO_TIMEOUT + 5)


def open_websocket(port):
    c = h.Conn(port)
    c.send(h.build_request("GET", "/ws", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Version", "13")]))
    r = c.read_response()
    if r.status != 101:
        raise AssertionError(f"WebSocket upgrade answered {r}")
    return c


def echo(sock, data, leftover=b""):
    """Sends data, reads the same number of bytes back; returns them."""
    sock.sendall(data)
    got = bytearray(leftover)
    deadline = time.monotonic() + h.IO_TIMEOUT
    while len(got) < len(data) and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def closed_within(sock, timeout):
    """True when the peer closes (EOF or reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class UpgradeTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backends = cls.start_backends("a", "b")
        cls.echo_server = EchoServer()
        cls.addClassCleanup(cls.echo_server.stop)
        cls.dir = cls.make_tempdir()
        cls.upgrade_path = os.path.join(cls.dir, "upgrade.sock")
        cls.env = dict(os.environ)
        cls.hello = []
        if HAVE_GRPC:
            for i in ("g1", "g2"):
                srv = grpc_peers.HelloServer(i)
                cls.addClassCleanup(srv.stop)
                cls.hello.append(srv)
        cls.listeners = ["web", "stream"] + (["grpc"] if cls.hello else [])

    def make_config(self, workers, upgrade_socket=None):
        listeners = [h.listener("web"),
                     {"name": "stream", "address": "127.0.0.1:0", "protocol": "tcp",
                      "cluster": "echo"}]
        clusters = [h.cluster("main", self.backends),
                    {"name": "echo", "endpoints": [self.echo_server.address]}]
        if self.hello:
            listeners.append(h.listener("grpc", routes=[
                {"match": {"path_prefix": "/"}, "cluster": "hello"}]))
            clusters.append(h.cluster("hello", self.hello, protocol="h2c"))
        return h.config(
            listeners, clusters,
            workers=workers, drain_timeout=f"{DRAIN}s",
            upgrade_socket=upgrade_socket or self.upgrade_path,
            admin={"address": "127.0.0.1:0"})

    def write_config(self, name, cfg):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(h.to_yaml(cfg))
        return path

    def start_upgrade(self, config_path, name, env=None):
        p = h.Process([h.sluice_bin(), "-c", config_path, "--upgrade"], name,
                      stdout_path=os.path.join(self.dir, name + ".stdout"), env=env or self.env)
        self.addCleanup(self.kill, p)
        return p

    @staticmethod
    def kill(p):
        if p.alive():
            p.signal(signal.SIGKILL)
        p.stop()

    def upgrade(self, old, config_path, name, ports, env=None):
        """Starts `name` with --upgrade; returns it once it serves. Checks it took the same
        ports and that the old process handed over and began to drain."""
        new = self.start_upgrade(config_path, name, env)
        m = new.wait_for_line(r"upgrade: took over from pid (\d+); serving as pid (\d+)")[0]
        self.assertEqual(int(m.group(1)), old.pid)
        self.assertEqual(int(m.group(2)), new.pid)
        for listener in self.listeners:
            port = ports[listener]
            new.wait_for_line(rf"listening name={listener} address=127\.0\.0\.1:{port} ")
        new.wait_for_line(rf"admin listening address=127\.0\.0\.1:{ports['admin']}$")
        old.wait_for_line(rf"upgrade: pid {new.pid} took over the listening sockets; draining")
        return new

    def test_upgrade_twice_under_load(self):
        cfg_path = self.write_config("old.yaml", self.make_config(workers=2))
        old = h.Sluice(h.to_yaml(self.make_config(workers=2)), self.dir, config_name="old.yaml")
        self.addCleanup(self.kill, old)
        # A string config is not parsed for names by the harness: read the ports from the log.
        ports = {m.group(1): int(m.group(2)) for m in old.wait_for_line(
            r"listening name=(\S+) address=127\.0\.0\.1:(\d+)", count=len(self.listeners))}
        ports["admin"] = int(old.wait_for_line(
            r"admin listening address=127\.0\.0\.1:(\d+)")[0].group(1))
        web = ports["web"]

        loader = Loader(web)
        grpc_proc = None
        if self.hello:
            # gRPC calls on one channel across both upgrades (about 15 s: 4 in flight, each
            # held 20 ms by the server): the old process's GOAWAY moves the channel over.
            grpc_proc = subprocess.Popen(
                [grpc_peers.hello_client_bin(), "--target", f"127.0.0.1:{ports['grpc']}",
                 "--calls", "3000", "--concurrency", "4", "--delay-ms", "20"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.addCleanup(lambda: grpc_proc.poll() is None and grpc_proc.kill())
        try:
            h.wait_until(lambda: loader.count() >= 50, h.START_TIMEOUT, message="load to start")

            # Long-lived tunnels opened on the old process.
            ws = open_websocket(web)
            self.addCleanup(ws.close)
            self.assertEqual(echo(ws.sock, b"before", bytes(ws.buf)), b"before")
            stream = socket.create_connection(("127.0.0.1", ports["stream"]), timeout=h.IO_TIMEOUT)
            self.addCleanup(stream.close)
            self.assertEqual(echo(stream, b"before"), b"before")

            # 1. old -> new, same configuration and worker count. The new process tells systemd
            #    it is the service's main process now.
            notify_path = os.path.join(self.dir, "notify.sock")
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.addCleanup(notify.close)
            notify.bind(notify_path)
            new = self.upgrade(old, cfg_path, "sluice-new", ports,
                               env=dict(self.env, NOTIFY_SOCKET=notify_path))
            notify.settimeout(h.IO_TIMEOUT)
            messages = []
            while not any("READY=1" in m for m in messages):
                messages.append(notify.recv(4096).decode())
            ready = next(m for m in messages if "READY=1" in m)
            self.assertIn(f"MAINPID={new.pid}\n", ready)
            served_at_handoff = loader.count()

            # The tunnels opened before keep working on the old process while it drains.
            upgraded_at = time.monotonic()
            while time.monotonic() - upgraded_at < DRAIN / 3:
                self.assertEqual(echo(ws.sock, b"during"), b"during")
                self.assertEqual(echo(stream, b"during"), b"during")
                time.sleep(0.2)
            self.assertTrue(old.alive(), "the old process exited before its drain timeout")
            # Then the drain timeout closes them and the old process exits cleanly.
            old.proc.wait(timeout=DRAIN + h.STOP_TIMEOUT)
            self.assertEqual(old.proc.returncode, 0, old.tail())
            self.assertTrue(closed_within(ws.sock, h.IO_TIMEOUT))
            self.assertTrue(closed_within(stream, h.IO_TIMEOUT))
            old.wait_for_line(r"drain timeout: closing \d+ connection\(s\) still open")

            # Only the new process is left: it serves HTTP, TCP and the admin listener.
            h.wait_until(lambda: loader.count() >= served_at_handoff + 100, h.START_TIMEOUT,
                         message="load served by the new process")
            self.assertEqual(h.get(ports["admin"], "/ready").status, 200)
            with socket.create_connection(("127.0.0.1", ports["stream"]), timeout=h.IO_TIMEOUT) as s:
                self.assertEqual(echo(s, b"new"), b"new")
            ws2 = open_websocket(web)
            self.addCleanup(ws2.close)
            self.assertEqual(echo(ws2.sock, b"new", bytes(ws2.buf)), b"new")
            self.assertTrue(os.path.exists(self.upgrade_path))

            # 2. new -> newer, with one more worker: it binds an extra SO_REUSEPORT socket.
            newer_path = self.write_config("newer.yaml", self.make_config(workers=3))
            newer = self.upgrade(new, newer_path, "sluice-newer", ports)
            newer.wait_for_line(r"upgrade: listener web: took over 2 socket\(s\)")
            served_at_second = loader.count()
            self.assertEqual(echo(ws2.sock, b"still"), b"still")
            new.proc.wait(timeout=DRAIN + h.STOP_TIMEOUT)
            self.assertEqual(new.proc.returncode, 0, new.tail())
            h.wait_until(lambda: loader.count() >= served_at_second + 100, h.START_TIMEOUT,
                         message="load served by the newer process")
            self.assertEqual(h.get(ports["admin"], "/ready").status, 200)
        finally:
            loader.stop()
        print(f"\nload: {loader.ok} requests ok, {len(loader.failures)} failed, {loader.retried} "
              f"retried after a drain closed their idle keep-alive connection", file=sys.stderr)
        if grpc_proc:
            out, err = grpc_proc.communicate(timeout=300)
            text = out.decode()
            print("gRPC client: " + " ".join(text.split()), file=sys.stderr)
            self.assertEqual(grpc_proc.returncode, 0, text + err.decode()[-2000:])
            self.assertIn("failed 0", text.splitlines(), text)
        self.assertEqual(loader.failures, [], f"{len(loader.failures)} failed request(s); "
                                              f"{loader.ok} ok, {loader.retried} retried")
        # A drain closes a keep-alive connection only after it stayed idle for two seconds, and a
        # busy one gets `Connection: close` on its next answer: no request meets a closed one.
        self.assertEqual(loader.retried, 0, "keep-alive requests met a connection being closed")
        self.assertGreater(loader.ok, 250)

        # 3. A hand-off that cannot happen: the new process says why and exits 1; the running
        #    one is untouched. First a successor that received the sockets but cannot bind one
        #    of its own listeners (the port is taken).
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        broken = self.make_config(workers=1)
        broken["listeners"].append(h.listener("extra", address="127.0.0.1:%d" % taken.getsockname()[1]))
        r = subprocess.run([h.sluice_bin(), "-c", self.write_config("broken.yaml", broken),
                            "--upgrade"], capture_output=True, text=True, timeout=60, env=self.env)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("listener extra", r.stderr)
        self.assertIn("upgrade: listener web: took over", r.stderr)
        newer.wait_for_line(r"upgrade: pid \d+ gave up .*; still serving")
        self.assertTrue(newer.alive())
        self.assertEqual(h.get(web, "/").status, 200)
        self.assertEqual(h.get(ports["admin"], "/ready").status, 200)

        # No socket at the path.
        missing = self.write_config("missing.yaml", self.make_config(
            workers=1, upgrade_socket=os.path.join(self.dir, "nowhere.sock")))
        r = subprocess.run([h.sluice_bin(), "-c", missing, "--upgrade"], capture_output=True,
                           text=True, timeout=60, env=self.env)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("nowhere.sock does not exist", r.stderr)
        self.assertTrue(newer.alive())
        self.assertEqual(h.get(web, "/").status, 200)

        # Without upgrade_socket, --upgrade is refused before anything starts.
        plain = self.make_config(workers=1)
        del plain["upgrade_socket"]
        r = subprocess.run([h.sluice_bin(), "-c", self.write_config("plain.yaml", plain),
                            "--upgrade"], capture_output=True, text=True, timeout=60, env=self.env)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("upgrade_socket", r.stderr)

        # A normal start on a path where a process accepts is refused too.
        r = subprocess.run([h.sluice_bin(), "-c", newer_path], capture_output=True, text=True,
                           timeout=60, env=self.env)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("--upgrade", r.stderr)
        self.assertEqual(h.get(web, "/").status, 200)

        self.assertEqual(newer.stop(), 0, newer.tail())
        self.assertFalse(os.path.exists(self.upgrade_path), "socket path left behind")


if __name__ == "__main__":
    unittest.main()
