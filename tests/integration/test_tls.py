"""TLS termination on an http listener: SNI picks the certificate, ALPN picks HTTP/2 or
HTTP/1.1, old protocol versions and non-TLS clients are turned away, WebSocket tunnels work,
and certificate problems are configuration errors. Certificates come from the openssl CLI."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")
H2LOAD = shutil.which("h2load")


def run(argv, input_bytes=b"", timeout=60):
    return subprocess.run(argv, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)


def make_ca(d):
    run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", os.path.join(d, "ca.key"), "-out", os.path.join(d, "ca.pem"),
         "-days", "2", "-subj", "/CN=sluice test CA"]).check_returncode()


def make_cert(d, name, cert=None, key=None):
    """A certificate for `name` and *.name signed by the test CA; returns (cert, key) paths."""
    cert = cert or os.path.join(d, f"{name}.pem")
    key = key or os.path.join(d, f"{name}.key")
    csr = os.path.join(d, f"{name}.csr")
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{name},DNS:*.{name}\n")
    run([OPENSSL, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", f"/CN={name}"]).check_returncode()
    run([OPENSSL, "x509", "-req", "-in", csr, "-CA", os.path.join(d, "ca.pem"), "-CAkey",
         os.path.join(d, "ca.key"), "-CAcreateserial", "-out", cert, "-days", "2", "-extfile",
         ext]).check_returncode()
    return cert, key


def served_certificate(port, server_name=None, extra=()):
    """(returncode, subject line, SHA-256 fingerprint, output) of what `openssl s_client` sees."""
    argv = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}"]
    if server_name:
        argv += ["-servername", server_name]
    else:
        argv += ["-noservername"]
    argv += list(extra)
    r = run(argv, b"", timeout=h.IO_TIMEOUT)
    out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    m = re.search(r"^subject=(.*)$", out, re.M)
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    fp = None
    if pem:
        f = run([OPENSSL, "x509", "-noout", "-fingerprint", "-sha256"], pem.group(0).encode())
        fp = f.stdout.decode().strip()
    return r.returncode, (m.group(1).strip() if m else None), fp, out


class TlsConn(h.Conn):
    """A harness connection with TLS on top (verified against the test CA)."""

    def __init__(self, port, cafile, server_name="a.test", alpn=None):
        super().__init__(port)
        ctx = ssl.create_default_context(cafile=cafile)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_name)

    def _fill(self, size=262144):
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(size)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
            chunk = b""
        except socket.timeout:
            raise AssertionError(f"no data from peer within {self.sock.gettimeout()}s")
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True


@unittest.skipUnless(OPENSSL and CURL, "needs the openssl and curl command-line tools")
class TlsTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = cls.make_tempdir()
        make_ca(cls.dir)
        cls.ca = os.path.join(cls.dir, "ca.pem")
        make_cert(cls.dir, "a.test")
        make_cert(cls.dir, "b.test")
        (cls.backend,) = cls.start_backends("tls")
        routes = [
            {"match": {"path_prefix": "/direct"}, "direct": {"status": 200, "body": "direct\n"}},
            {"match": {"path_prefix": "/"}, "cluster": "main"},
        ]
        tls = {
            # Relative paths: next to the configuration file.
            "certificates": [{"cert": "a.test.pem", "key": "a.test.key"},
                             {"cert": "b.test.pem", "key": "b.test.key"}],
            "handshake_timeout": "1s",
        }
        cfg = h.config(
            [h.listener("web", routes, tls=tls, forwarded=True),
             h.listener("h1only", routes, tls=dict(tls, alpn=["http/1.1"])),
             h.listener("short", routes, tls=tls, timeouts={"idle": "1s"})],
            [h.cluster("main", [cls.backend])], workers=2)
        cls.sluice = cls.start_sluice(cfg, workdir=cls.dir)
        cls.port = cls.sluice.ports["web"]
        cls.h1_port = cls.sluice.ports["h1only"]
        cls.short_port = cls.sluice.ports["short"]

    def curl(self, name, path, *args, port=None):
        port = port or self.port
        r = run([CURL, "-sS", "--max-time", str(h.IO_TIMEOUT), "--cacert", self.ca, "--resolve",
                 f"{name}:{port}:127.0.0.1", "-w", "\n%{http_code} %{http_version}", *args,
                 f"https://{name}:{port}{path}"], timeout=h.IO_TIMEOUT + 10)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        body, _, status = r.stdout.decode().rpartition("\n")
        code, version = status.split()
        return int(code), version, body

    def test_sni_selects_the_certificate(self):
        for name, cn in (("a.test", "a.test"), ("b.test", "b.test"), ("x.b.test", "b.test"),
                         ("unknown.test", "a.test"), (None, "a.test")):
            rc, subject, _, out = served_certificate(self.port, name)
            self.assertIsNotNone(subject, out)
            self.assertIn(f"CN = {cn}", subject, f"server name {name}")

    def test_http11_over_tls_reaches_the_backend_as_https(self):
        code, version, body = self.curl("a.test", "/headers", "--http1.1")
        self.assertEqual((code, version), (200, "1.1"), body)
        self.assertIn("X-Forwarded-Proto: https", body)
        self.assertIn('host="a.test:%d";proto=https' % self.port, body)
        self.assertIn("X-Forwarded-For: 127.0.0.1", body)

    def test_alpn_negotiates_h2(self):
        code, version, body = self.curl("b.test", "/direct", "--http2")
        self.assertEqual((code, version, body), (200, "2", "direct\n"))
        # An HTTP/2 request for an HTTP/1.1 cluster, over TLS: the backend sees https.
        code, version, body = self.curl("b.test", "/headers", "--http2")
        self.assertEqual((code, version), (200, "2"), body)
        self.assertIn("X-Forwarded-Proto: https", body)

    def test_alpn_can_refuse_h2(self):
        code, version, body = self.curl("a.test", "/direct", "--http2", port=self.h1_port)
        self.assertEqual((code, version, body), (200, "1.1", "direct\n"))

    def test_tls11_is_refused(self):
        rc, subject, _, out = served_certificate(
            self.port, "a.test", ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
        self.assertNotEqual(rc, 0, out)
        self.assertIsNone(subject, out)
        code, _, _ = self.curl("a.test", "/direct", "--http1.1")  # and the listener still serves
        self.assertEqual(code, 200)
        self.assertAlive(self.sluice)

    def test_keep_alive_and_close_notify(self):
        c = TlsConn(self.port, self.ca)
        self.addCleanup(c.close)
        for _ in range(3):
            c.send(h.build_request("GET", "/direct", host="a.test"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"direct\n"))
        c.send(h.build_request("GET", "/direct", [("Connection", "close")], host="a.test"))
        self.assertEqual(c.read_response().status, 200)
        # sluice ends with close_notify: a clean TLS end of stream, not a truncation.
        self.assertEqual(c.sock.recv(100), b"")

    def test_h2_connection_ends_with_goaway_and_close_notify(self):
        c = TlsConn(self.short_port, self.ca, alpn=["h2"])
        self.addCleanup(c.close)
        self.assertEqual(c.sock.selected_alpn_protocol(), "h2")
        c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        data = bytearray()
        while True:  # the idle timeout (1s) sends GOAWAY, then the TLS stream ends cleanly
            chunk = c.sock.recv(65536)  # an SSLEOFError here would be a truncated TLS stream
            if not chunk:
                break
            data += chunk
        frames, i = [], 0
        while i + 9 <= len(data):
            length = int.from_bytes(data[i:i + 3], "big")
            frames.append(data[i + 3])
            i += 9 + length
        self.assertIn(0x7, frames, "no GOAWAY frame")

    def test_non_tls_clients_are_closed_without_harm(self):
        good = TlsConn(self.port, self.ca)
        self.addCleanup(good.close)
        good.send(h.build_request("GET", "/direct", host="a.test"))
        self.assertEqual(good.read_response().status, 200)
        # Plain HTTP on the TLS port, random bytes, and a client that says nothing at all (the
        # 1s handshake timeout closes it).
        for payload in (h.build_request("GET", "/", host="a.test"), os.urandom(3000), b""):
            bad = h.Conn(self.port)
            self.addCleanup(bad.close)
            if payload:
                bad.send(payload)
            bad.wait_closed()
        good.send(h.build_request("GET", "/direct", host="a.test"))
        self.assertEqual(good.read_response().status, 200)
        self.assertAlive(self.sluice)

    def test_websocket_over_tls(self):
        c = TlsConn(self.port, self.ca)
        self.addCleanup(c.close)
        c.send(h.build_request("GET", "/ws", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")],
            host="a.test"))
        r = c.read_response()
        self.assertEqual(r.status, 101, r)
        self.assertEqual(r.header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        # Echoed through the tunnel (TLS toward the client, TCP toward the backend), in 64 KiB
        # steps: a Python TLS socket must not send and receive from two threads at once.
        got = bytearray(c.buf)
        c.buf.clear()
        for _ in range(16):
            data = os.urandom(65536)
            c.sock.sendall(data)
            got.clear()
            while len(got) < len(data):
                chunk = c.sock.recv(65536)
                self.assertTrue(chunk, "tunnel closed early")
                got += chunk
            self.assertEqual(bytes(got), data)

    @unittest.skipUnless(H2LOAD, "needs h2load")
    def test_h2load_over_tls(self):
        r = run([H2LOAD, "-n", "2000", "-c", "4", f"https://127.0.0.1:{self.port}/direct"],
                timeout=120)
        out = r.stdout.decode()
        self.assertIn("status codes: 2000 2xx", out, out)
        self.assertIn("TLS Protocol: TLSv1.3", out)

    def test_zz_reload_reads_renewed_certificates(self):
        # Runs last (name order): it replaces a.test's certificate on disk.
        _, _, before, out = served_certificate(self.port, "a.test")
        self.assertIsNotNone(before, out)
        new_cert, new_key = make_cert(self.dir, "a.test", os.path.join(self.dir, "new.pem"),
                                      os.path.join(self.dir, "new.key"))
        os.replace(new_key, os.path.join(self.dir, "a.test.key"))
        os.replace(new_cert, os.path.join(self.dir, "a.test.pem"))
        reloads = len([l for l in self.sluice.lines() if "configuration reloaded" in l])
        self.sluice.signal(signal.SIGHUP)
        self.sluice.wait_for_line(r"configuration reloaded", count=reloads + 1)
        _, _, after, out = served_certificate(self.port, "a.test")
        self.assertIsNotNone(after, out)
        self.assertNotEqual(before, after)
        code, _, _ = self.curl("a.test", "/direct", "--http1.1")
        self.assertEqual(code, 200)


@unittest.skipUnless(OPENSSL, "needs the openssl command-line tool")
class TlsConfigErrorTest(h.SluiceTestCase):
    """`sluice -t` reports certificate problems as FILE:LINE:COL: key.path: message."""

    def check(self, tls, pattern):
        d = self.make_tempdir()
        make_ca(d)
        make_cert(d, "a.test")
        make_cert(d, "b.test")
        with open(os.path.join(d, "junk.pem"), "w") as f:
            f.write("not a certificate\n")
        cfg = h.config([h.listener("web", tls=tls)], [h.cluster("main", ["127.0.0.1:1"])])
        path = os.path.join(d, "sluice.yaml")
        with open(path, "w") as f:
            f.write(h.to_yaml(cfg))
        r = run([h.sluice_bin(), "-t", "-c", path])
        err = r.stderr.decode()
        self.assertNotEqual(r.returncode, 0, err)
        self.assertRegex(err, re.escape(path) + r":\d+:\d+: " + pattern)

    def test_missing_file(self):
        self.check({"certificates": [{"cert": "missing.pem", "key": "a.test.key"}]},
                   r"listeners\[0\]\.tls\.certificates\[0\]\.cert: cannot read '.*missing\.pem': "
                   r"No such file")

    def test_bad_pem(self):
        self.check({"certificates": [{"cert": "junk.pem", "key": "a.test.key"}]},
                   r"listeners\[0\]\.tls\.certificates\[0\]\.cert: '.*junk\.pem' holds no PEM "
                   r"certificate")

    def test_mismatched_key(self):
        self.check({"certificates": [{"cert": "a.test.pem", "key": "b.test.key"}]},
                   r"listeners\[0\]\.tls\.certificates\[0\]\.key: the private key in '.*b\.test\.key' "
                   r"does not match the certificate")

    def test_unknown_alpn(self):
        self.check({"certificates": [{"cert": "a.test.pem", "key": "a.test.key"}],
                    "alpn": ["h3"]},
                   r"listeners\[0\]\.tls\.alpn\[0\]: expected one of h2 or http/1\.1, got 'h3'")


if __name__ == "__main__":
    unittest.main(verbosity=2)
