"""WebSocket upgrade through sluice: 101, then a raw byte tunnel in both directions."""

import base64
import hashlib
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(
    hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()


class WebSocketTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        (cls.backend,) = cls.start_backends("ws")
        cfg = h.config([h.listener("web")], [h.cluster("main", [cls.backend])], workers=2)
        cls.sluice = cls.start_sluice(cfg)

    def upgrade(self):
        c = h.Conn(self.sluice.port)
        self.addCleanup(c.close)
        c.send(h.build_request("GET", "/ws", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")]))
        r = c.read_response()
        self.assertEqual(r.status, 101, r)
        self.assertTrue(r.has_token("Upgrade", "websocket"), r.headers)
        self.assertTrue(r.has_token("Connection", "upgrade"), r.headers)
        self.assertEqual(r.header("Sec-WebSocket-Accept"), ACCEPT)
        return c

    def echo(self, c, data):
        c.send(data)
        got = bytearray(c.buf)
        c.buf.clear()
        deadline = time.monotonic() + h.IO_TIMEOUT
        while len(got) < len(data) and time.monotonic() < deadline:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return bytes(got)

    def test_upgrade_and_echo(self):
        c = self.upgrade()
        for msg in (b"\x81\x05hello", b"ping", bytes(range(256)) * 4):
            self.assertEqual(self.echo(c, msg), msg)

    def test_large_echo_both_ways(self):
        c = self.upgrade()
        data = os.urandom(4 << 20)
        got = bytearray()

        def send():
            for i in range(0, len(data), 65536):
                c.sock.sendall(data[i:i + 65536])

        t = threading.Thread(target=send, daemon=True)
        t.start()
        deadline = time.monotonic() + 60
        while len(got) < len(data) and time.monotonic() < deadline:
            chunk = c.sock.recv(262144)
            if not chunk:
                break
            got += chunk
        t.join(timeout=30)
        self.assertEqual(len(got), len(data))
        self.assertTrue(got == data, "echoed bytes differ")

    def test_tunnel_stays_open(self):
        c = self.upgrade()
        self.assertEqual(self.echo(c, b"first"), b"first")
        # Nothing should arrive (and no close) during a quiet period.
        self.assertRaises(AssertionError, c.wait_closed, 2.0)
        self.assertEqual(self.echo(c, b"second"), b"second")

    def test_client_half_close_ends_tunnel(self):
        c = self.upgrade()
        self.assertEqual(self.echo(c, b"bye"), b"bye")
        c.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(c.wait_closed(), b"")

    def test_plain_requests_still_work_after_tunnels(self):
        self.upgrade().close()
        r = h.get(self.sluice.port, "/")
        self.assertEqual((r.status, r.header("X-Backend")), (200, "ws"))


if __name__ == "__main__":
    unittest.main()
