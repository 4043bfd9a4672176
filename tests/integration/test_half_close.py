"""A peer's FIN that arrives together with its last bytes is seen at once, on either side.

sluice's reads skip the recv(2) that would fail after a read that emptied the socket, and
wait for epoll instead; a read that returns bytes also leaves a FIN queued behind them
unconsumed, with no epoll event to come for it. These tests send the last bytes and the FIN
in one segment and check that the end is noticed well before any timeout would close the
connection (the listener's idle and header timeouts are a minute)."""

import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_admin as admin  # noqa: E402

# Far below the listener's timeouts (1m): a close seen within this came from the FIN.
PROMPT = 20


def send_with_fin(conn, data):
    """Sends `data` and the FIN in one segment (MSG_MORE holds the bytes until shutdown)."""
    conn.sock.send(data, socket.MSG_MORE)
    conn.sock.shutdown(socket.SHUT_WR)


class HalfCloseTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        (cls.a,) = cls.start_backends("a")

        # Answers every request as HTTP/1.1 keep-alive (no Connection: close) and closes the
        # connection with it: the answer and the FIN leave in one segment.
        def answer_and_close(req):
            body = b"closing"
            raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            return ("raw", raw, True)

        cls.closer = cls.start_scripted(answer_and_close, name="closer")

        # Answers keep-alive and keeps the connection (the test closes it from this side).
        def answer(req):
            return ("respond", 200, [], b"idle")

        cls.idler = cls.start_scripted(answer, name="idler")
        timeouts = {"idle": "1m", "header": "1m"}
        cfg = h.config(
            [h.listener("web", timeouts=timeouts, routes=[
                {"match": {"path_prefix": "/closer"}, "cluster": "closer"},
                {"match": {"path_prefix": "/idler"}, "cluster": "idler"},
                {"match": {"path_prefix": "/"}, "cluster": "main"}])],
            [h.cluster("main", [cls.a]), h.cluster("closer", [cls.closer.address]),
             h.cluster("idler", [cls.idler.address])], workers=1)
        cls.sluice, cls.admin = admin.start_with_admin(cls, cfg)
        cls.port = cls.sluice.ports["web"]

    def active_connections(self):
        return admin.downstream_active(self.admin, "web")

    def test_1_request_and_fin_together(self):
        cases = {
            "GET": h.build_request("GET", "/", host="p"),
            "POST with a body": h.build_request("POST", "/echo", host="p", body=b"x" * 3000),
            "two pipelined": h.build_request("GET", "/", host="p") * 2,
        }
        for name, req in cases.items():
            with self.subTest(name), h.Conn(self.port, timeout=PROMPT) as c:
                send_with_fin(c, req)
                for _ in range(req.count(b" HTTP/1.1\r\n")):
                    self.assertEqual(c.read_response().status, 200)
                self.assertEqual(c.wait_closed(PROMPT), b"")

    def test_2_fin_after_a_keepalive_answer(self):
        for _ in range(10):
            with h.Conn(self.port, timeout=PROMPT) as c:
                c.send(h.build_request("GET", "/", host="p"))
                self.assertEqual(c.read_response().status, 200)
                c.sock.shutdown(socket.SHUT_WR)
                self.assertEqual(c.wait_closed(PROMPT), b"")

    def test_3_head_split_with_fin_on_the_last_piece(self):
        req = h.build_request("GET", "/", host="p")
        with h.Conn(self.port, timeout=PROMPT) as c:
            c.send(req[:10])
            h.wait_until(lambda: self.active_connections() >= 1, PROMPT)
            send_with_fin(c, req[10:])
            self.assertEqual(c.read_response().status, 200)
            self.assertEqual(c.wait_closed(PROMPT), b"")

    def test_4_upstream_answer_and_fin_together(self):
        # The upstream closes each connection right after an answer that says keep-alive.
        # sluice must see that FIN while the connection waits in its pool, so that a request
        # that may not be retried (POST) never goes to the closed connection: every request
        # gets the upstream's answer.
        before_requests, before_conns, _ = self.closer.stats()
        with h.Conn(self.port, timeout=PROMPT) as c:
            for i in range(20):
                method = "GET" if i % 2 == 0 else "POST"
                body = None if method == "GET" else b"payload"
                c.send(h.build_request(method, "/closer", host="p", body=body))
                r = c.read_response(method=method)
                self.assertEqual(r.status, 200, f"request {i} ({method})")
                self.assertEqual(r.body, b"closing")
        requests, conns, _ = self.closer.stats()
        self.assertEqual(requests - before_requests, 20)
        self.assertEqual(conns - before_conns, 20)

    def close_idler_connections(self):
        """Closes every connection of the idler upstream from its side (a FIN to sluice) and
        waits until its serving threads have seen them end."""
        with self.idler.lock:
            conns = list(self.idler._conns)
            closed = self.idler.closed
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
        h.wait_until(lambda: self.idler.stats()[2] >= closed + 1, PROMPT,
                     message="the upstream closing its connection")

    def test_5_upstream_fin_while_pooled(self):
        # The upstream closes the pooled connection before the next request comes: its FIN
        # reached sluice first, so a POST, which may not be retried, never goes there.
        with h.Conn(self.port, timeout=PROMPT) as c:
            for i in range(5):
                c.send(h.build_request("GET", "/idler", host="p"))
                self.assertEqual(c.read_response().status, 200)
                self.close_idler_connections()
                c.send(h.build_request("POST", "/idler", host="p", body=b"payload"))
                r = c.read_response(method="POST")
                self.assertEqual(r.status, 200, f"round {i}")
                self.assertEqual(r.body, b"idle")
                self.close_idler_connections()

    def test_6_every_connection_is_gone(self):
        h.wait_until(lambda: self.active_connections() == 0, PROMPT,
                     message="no downstream connection left")
        self.assertAlive(self.sluice)


if __name__ == "__main__":
    unittest.main()
