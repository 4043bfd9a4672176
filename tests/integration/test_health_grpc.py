"""gRPC active health checks: three Hello servers behind an h2c cluster checked with
grpc.health.v1.Health/Check. A server that reports NOT_SERVING (SIGUSR1) gets no more calls
and comes back when it reports SERVING again (SIGUSR2); a killed server is taken out too. A
protocol h2 cluster is probed over TLS with its own tls settings.

Needs SLUICE_HELLO_SERVER and SLUICE_HELLO_CLIENT (built from examples/hello when grpc++ is
installed); looked up next to SLUICE_BIN when unset."""

import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# The Hello peers built with the sluice under test, when the environment does not name them.
if os.environ.get("SLUICE_BIN"):
    for env, name in (("SLUICE_HELLO_SERVER", "sluice-hello-server"),
                      ("SLUICE_HELLO_CLIENT", "sluice-hello-client")):
        candidate = os.path.join(os.path.dirname(os.environ["SLUICE_BIN"]), "tests", name)
        if not os.environ.get(env) and os.access(candidate, os.X_OK):
            os.environ[env] = candidate

import test_grpc as g  # noqa: E402
import test_admin as adm  # noqa: E402
import test_h2_translate as t2  # noqa: E402  (TLS Hello servers)

INTERVAL_MS = 200
HEALTHY = 1
UNHEALTHY = 2
# Generous: probes run every 200 ms, but the machine may be busy (or under a sanitizer).
DEADLINE = 30


class GrpcHealthCheckTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.servers = []
        for i in ("a", "b", "c"):
            s = g.HelloServer(i)
            cls.addClassCleanup(s.stop)
            cls.servers.append(s)
        health = {"type": "grpc", "interval": f"{INTERVAL_MS}ms", "timeout": "1s",
                  "healthy": HEALTHY, "unhealthy": UNHEALTHY}
        cfg = h.config([h.listener("grpc", routes=[{"match": {"path_prefix": "/"}, "cluster": "hello"}])],
                       [h.cluster("hello", cls.servers, protocol="h2c", health=health)],
                       workers=2)
        cls.sluice, cls.admin = adm.start_with_admin(cls, cfg)
        cls.port = cls.sluice.ports["grpc"]

    def seen(self, calls=30):
        r = g.run_client(self.port, calls)
        return set(r["servers"]), r

    def last_check(self, server):
        """The admin /status view of `server`'s last health check."""
        (c,) = adm.admin_json(self.admin)["clusters"]
        (b,) = [b for b in c["backends"] if b["address"] == server.address]
        return b["health_check"]["last"]

    def wait_seen(self, expected, message):
        h.wait_until(lambda: self.seen()[0] == expected, DEADLINE, interval=0.1, message=message)

    def test_1_not_serving_is_taken_out_and_comes_back(self):
        self.wait_seen({"a", "b", "c"}, "all three servers get calls")
        b = self.servers[1]
        os.kill(b.pid, signal.SIGUSR1)
        try:
            self.sluice.wait_for_line(r"cluster hello: backend 127\.0\.0\.1:%d is unhealthy: not_serving \(not_serving\)" % b.port,
                                      timeout=DEADLINE)
            self.wait_seen({"a", "c"}, "b out of the cluster")
            self.assertEqual(self.last_check(b), "not_serving")
            servers, r = self.seen(60)
            self.assertEqual(servers, {"a", "c"}, r["raw"])
            self.assertEqual(r["failed"], 0, r["raw"])
        finally:
            os.kill(b.pid, signal.SIGUSR2)
        self.sluice.wait_for_line(r"cluster hello: backend 127\.0\.0\.1:%d is healthy again" % b.port,
                                  timeout=DEADLINE)
        self.wait_seen({"a", "b", "c"}, "b back in the cluster")
        self.assertEqual(self.last_check(b), "ok")
        self.assertAlive(self.sluice)

    def test_2_killed_server_is_taken_out(self):
        self.wait_seen({"a", "b", "c"}, "all three servers get calls")
        c = self.servers[2]
        c.proc.kill()
        c.proc.wait()
        self.sluice.wait_for_line(r"cluster hello: backend 127\.0\.0\.1:%d is unhealthy: connect_failed" % c.port,
                                  timeout=DEADLINE)
        self.wait_seen({"a", "b"}, "c out of the cluster")
        self.assertEqual(self.last_check(c), "connect_failed")
        servers, r = self.seen(60)
        self.assertEqual(servers, {"a", "b"}, r["raw"])
        self.assertEqual(r["failed"], 0, r["raw"])
        self.assertAlive(self.sluice)


class GrpcHealthCheckTlsTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        d, cls.servers = t2.start_tls_hello_servers(cls, ("x", "y"))
        health = {"type": "grpc", "interval": f"{INTERVAL_MS}ms", "timeout": "1s",
                  "healthy": HEALTHY, "unhealthy": UNHEALTHY}
        routes = [{"match": {"path_prefix": "/"}, "cluster": "tls"}]
        cfg = h.config([h.listener("grpc", routes=routes)],
                       [h.cluster("tls", cls.servers, protocol="h2", health=health,
                                  tls={"ca": os.path.join(d, "ca.pem")}),
                        h.cluster("wrong", cls.servers, protocol="h2", health=health,
                                  tls={"ca": os.path.join(d, "other-ca.pem")})],
                       workers=1)
        cls.sluice, cls.admin = adm.start_with_admin(cls, cfg)
        cls.port = cls.sluice.ports["grpc"]

    def last_check(self, cluster, server):
        (c,) = [c for c in adm.admin_json(self.admin)["clusters"] if c["name"] == cluster]
        (b,) = [b for b in c["backends"] if b["address"] == server.address]
        return b["health_check"]["last"]

    def test_probes_speak_tls_with_the_cluster_settings(self):
        x, y = self.servers
        for s in (x, y):
            h.wait_until(lambda: self.last_check("tls", s) == "ok", DEADLINE,
                         message=f"an ok probe of {s.address} over TLS")
            h.wait_until(lambda: self.last_check("wrong", s) == "connect_failed", DEADLINE,
                         message=f"{s.address} refused with the wrong CA")
        self.sluice.wait_for_line(r"cluster wrong: backend 127\.0\.0\.1:%d is unhealthy: "
                                  r"connect_failed .*certificate verify failed" % x.port,
                                  timeout=DEADLINE)
        os.kill(x.pid, signal.SIGUSR1)
        try:
            self.sluice.wait_for_line(r"cluster tls: backend 127\.0\.0\.1:%d is unhealthy: "
                                      r"not_serving" % x.port, timeout=DEADLINE)
            h.wait_until(lambda: set(g.run_client(self.port, 20)["servers"]) == {"y"}, DEADLINE,
                         interval=0.1, message="x out of the cluster")
        finally:
            os.kill(x.pid, signal.SIGUSR2)
        self.sluice.wait_for_line(r"cluster tls: backend 127\.0\.0\.1:%d is healthy again"
                                  % x.port, timeout=DEADLINE)
        self.assertAlive(self.sluice)


if __name__ == "__main__":
    unittest.main()
