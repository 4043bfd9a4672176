"""Forwarding rules: X-Forwarded-*, Forwarded, Host, hop-by-hop headers (seen via /headers)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def upstream_view(resp):
    """Parses the demo backend's /headers body: (request line, [(name, value)])."""
    lines = resp.text().splitlines()
    fields = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.append((name.strip(), value.strip()))
    return lines[0], fields


def values(fields, name):
    return [v for n, v in fields if n.lower() == name.lower()]


class ForwardingTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        (cls.backend,) = cls.start_backends("f")
        # An upstream that sets its own Date, on the /dated route.
        cls.dated = cls.start_scripted(
            lambda req: ("respond", 200, [("Date", "Sun, 06 Nov 1994 08:49:37 GMT")], b"ok"),
            "dated")
        routes = [{"match": {"path_prefix": "/dated"}, "cluster": "dated"},
                  {"match": {"path_prefix": "/"}, "cluster": "main"}]
        cfg = h.config([h.listener("plain", routes=routes), h.listener("fwd", forwarded=True),
                        h.listener("underscores", headers_with_underscores="allow"),
                        h.listener("strict", headers_with_underscores="reject")],
                       [h.cluster("main", [cls.backend]), h.cluster("dated", [cls.dated])],
                       workers=2)
        cls.sluice = cls.start_sluice(cfg)

    def fetch(self, headers=None, host="app.example:8080", listener="plain", path="/headers"):
        r = h.request(self.sluice.ports[listener], "GET", path, headers=headers, host=host)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Backend"), "f")
        return upstream_view(r)

    def test_request_line_and_host_kept(self):
        line, fields = self.fetch(path="/headers?q=1&r=%2F")
        self.assertEqual(line, "GET /headers?q=1&r=%2F HTTP/1.1")
        self.assertEqual(values(fields, "Host"), ["app.example:8080"])

    def test_x_forwarded_for_added(self):
        _, fields = self.fetch()
        self.assertEqual(values(fields, "X-Forwarded-For"), ["127.0.0.1"])

    def test_x_forwarded_for_appended(self):
        _, fields = self.fetch([("X-Forwarded-For", "203.0.113.7")])
        self.assertEqual(", ".join(values(fields, "X-Forwarded-For")), "203.0.113.7, 127.0.0.1")

    def test_x_forwarded_for_multiple_lines_appended(self):
        _, fields = self.fetch([("X-Forwarded-For", "198.51.100.1"),
                                ("X-Forwarded-For", "198.51.100.2, 198.51.100.3")])
        self.assertEqual(", ".join(values(fields, "X-Forwarded-For")),
                         "198.51.100.1, 198.51.100.2, 198.51.100.3, 127.0.0.1")

    def test_x_forwarded_proto_and_host(self):
        _, fields = self.fetch()
        self.assertEqual(values(fields, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(values(fields, "X-Forwarded-Host"), ["app.example:8080"])

    def test_end_to_end_headers_kept(self):
        _, fields = self.fetch([("X-Custom", "one"), ("X-Custom", "two"), ("Accept", "*/*"),
                                ("User-Agent", "itest/1.0")])
        self.assertEqual(values(fields, "X-Custom"), ["one", "two"])
        self.assertEqual(values(fields, "Accept"), ["*/*"])
        self.assertEqual(values(fields, "User-Agent"), ["itest/1.0"])

    def test_hop_by_hop_removed(self):
        _, fields = self.fetch([
            ("Connection", "keep-alive, X-Foo"),
            ("X-Foo", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "h2c"),
            ("X-Keep", "yes"),
        ])
        names = {n.lower() for n, _ in fields}
        for hop in ("x-foo", "keep-alive", "te", "trailer", "proxy-connection", "upgrade"):
            self.assertNotIn(hop, names, f"{hop} reached the upstream: {fields}")
        for v in values(fields, "Connection"):
            self.assertNotIn("x-foo", v.lower())
            self.assertNotIn("upgrade", v.lower())
        self.assertEqual(values(fields, "X-Keep"), ["yes"])

    def test_connection_close_not_forwarded(self):
        port = self.sluice.ports["plain"]
        with h.Conn(port) as c:
            c.send(h.build_request("GET", "/headers", [("Connection", "close")]))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            _, fields = upstream_view(r)
            for v in values(fields, "Connection"):
                self.assertNotIn("close", v.lower(), f"client's Connection: close leaked: {fields}")
            # The client asked to close: sluice says so and closes.
            self.assertTrue(r.has_token("Connection", "close"), r.headers)
            self.assertEqual(c.wait_closed(), b"")
        # The upstream connection was kept: the backend is still fine for the next request.
        self.assertEqual(h.get(port, "/").status, 200)

    def test_no_forwarded_header_unless_enabled(self):
        _, fields = self.fetch()
        self.assertEqual(values(fields, "Forwarded"), [])

    def test_forwarded_header(self):
        _, fields = self.fetch(listener="fwd", host="app.example")
        fwd = values(fields, "Forwarded")
        self.assertEqual(len(fwd), 1, fields)
        params = {}
        for part in fwd[0].split(";"):
            k, _, v = part.strip().partition("=")
            params[k.lower()] = v.strip('"')
        self.assertEqual(params.get("for"), "127.0.0.1")
        self.assertEqual(params.get("proto"), "http")
        self.assertEqual(params.get("host"), "app.example")
        # X-Forwarded-* stay as well.
        self.assertEqual(values(fields, "X-Forwarded-For"), ["127.0.0.1"])

    def test_forwarded_header_appended(self):
        _, fields = self.fetch([("Forwarded", "for=192.0.2.60;proto=https")], listener="fwd")
        joined = ", ".join(values(fields, "Forwarded"))
        elements = [e.strip() for e in joined.split(",")]
        self.assertEqual(len(elements), 2, joined)
        self.assertEqual(elements[0], "for=192.0.2.60;proto=https")
        self.assertIn("for=", elements[1])
        self.assertIn("127.0.0.1", elements[1])


    # ---- fields the proxy adds or drops on its own account (nginx's defaults) ----------------

    def test_headers_with_underscores_dropped_by_default(self):
        # A CGI-style upstream maps "Content_Length" and "Content-Length" to one variable.
        _, fields = self.fetch([("X_Secret", "1"), ("Content_Length", "99"), ("X-Kept", "2")])
        self.assertEqual(values(fields, "X_Secret"), [])
        self.assertEqual(values(fields, "Content_Length"), [])
        self.assertEqual(values(fields, "X-Kept"), ["2"])

    def test_headers_with_underscores_allowed(self):
        _, fields = self.fetch([("X_Secret", "1"), ("X-Kept", "2")], listener="underscores")
        self.assertEqual(values(fields, "X_Secret"), ["1"])
        self.assertEqual(values(fields, "X-Kept"), ["2"])

    def test_headers_with_underscores_rejected(self):
        c1 = self.backend.count()
        step = self.backend.count() - c1  # what one /count call adds by itself
        before = self.backend.count()
        r = h.request(self.sluice.ports["strict"], "GET", "/headers", headers=[("X_Secret", "1")])
        self.assertEqual(r.status, 400)
        r = h.request(self.sluice.ports["strict"], "GET", "/headers", headers=[("X-Ok", "1")])
        self.assertEqual(r.status, 200)
        # Only the second request reached the upstream (workers=2 share it: no other traffic).
        self.assertEqual(self.backend.count() - before - step, 1)

    def test_date_added_when_the_upstream_sends_none(self):
        r = h.request(self.sluice.ports["plain"], "GET", "/")
        self.assertEqual(r.status, 200)
        dates = r.all("Date")
        self.assertEqual(len(dates), 1)
        self.assertRegex(dates[0], r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} "
                                   r"\d\d:\d\d:\d\d GMT$")

    def test_upstream_date_kept(self):
        r = h.request(self.sluice.ports["plain"], "GET", "/dated")
        self.assertEqual((r.status, r.body), (200, b"ok"))
        self.assertEqual(r.all("Date"), ["Sun, 06 Nov 1994 08:49:37 GMT"])

    def test_own_answers_carry_date(self):
        r = h.request(self.sluice.ports["plain"], "TRACE", "/")
        self.assertEqual(r.status, 405)
        self.assertEqual(len(r.all("Date")), 1)
        self.assertIn("GET", r.header("Allow", ""))

    def test_options_asterisk_goes_where_slash_goes(self):
        r = h.request(self.sluice.ports["plain"], "OPTIONS", "*")
        self.assertEqual((r.status, r.header("X-Backend")), (200, "f"))


if __name__ == "__main__":
    unittest.main()
