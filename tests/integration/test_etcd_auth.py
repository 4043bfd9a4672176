"""etcd discovery with authentication, and tokens that expire every 2 seconds.

etcd runs with `--auth-token simple --auth-token-ttl 2`; users: root, `reg` (read-write on
/nodes/, for `sluice register`), `sluice` (read-only on /nodes/), `nobody` (no role). sluice
must keep routing while tokens expire and registrations change, and a wrong password must be
a clear error that never empties a cluster. Skipped without etcd.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import etcd_util as eu  # noqa: E402

DEADLINE = 40.0
TOKEN_TTL = 2
# Keep-alive every TTL/3 = 3 s: longer than the token TTL, so every keep-alive of a registrant
# meets an expired token and must authenticate again.
REGISTRANT_TTL = 9


def b64(s):
    return base64.b64encode(s.encode()).decode()


@unittest.skipUnless(eu.HAVE_ETCD, "etcd/etcdctl not installed")
class EtcdAuthTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = cls.make_tempdir()
        cls.etcd = eu.Etcd(cls.workdir, extra=["--auth-token", "simple",
                                               "--auth-token-ttl", str(TOKEN_TTL)])
        cls.etcd.start()
        cls.addClassCleanup(lambda: cls.etcd.stop())
        ctl = cls.etcd.ctl
        ctl("user", "add", "root:rootpw")
        ctl("role", "add", "root", check=False)  # exists already in some etcd versions
        ctl("user", "grant-role", "root", "root")
        ctl("auth", "enable")
        cls.etcd.user, cls.etcd.password = "root", "rootpw"
        for user, role, perm in (("reg", "nodes-rw", "readwrite"), ("sluice", "nodes-ro", "read")):
            ctl("role", "add", role)
            ctl("role", "grant-permission", role, "--prefix=true", perm, "/nodes/")
            ctl("user", "add", f"{user}:{user}-pw")
            ctl("user", "grant-role", user, role)
        ctl("user", "add", "nobody:nobody-pw")
        cls.backends = {b.id: b for b in cls.start_backends("a", "b", "c", "d", "e", "s")}
        cls.persist = os.path.join(cls.workdir, "main.json")
        cls.config = cls.make_config("sluice-pw", persist=cls.persist)
        cls.sluice = cls.start_sluice(cls.config)
        cls.registrants = {}

    @classmethod
    def make_config(cls, password, user="sluice", static=(), persist=None):
        etcd = {"endpoints": [cls.etcd.endpoint], "prefix": "/nodes/"}
        if user:
            etcd.update(username=user, password=password)
        if persist:
            etcd["persist"] = persist
        cl = {"name": "main", "policy": "round_robin", "discovery": {"etcd": etcd}}
        if static:
            cl["endpoints"] = [cls.backends[s].address for s in static]
        return h.config([h.listener("web")], [cl])

    @classmethod
    def register(cls, backend_id, password="reg-pw"):
        r = eu.Registrant(cls.etcd, cls.backends[backend_id], ttl=REGISTRANT_TTL,
                          extra=["--user", "reg", "--password", password])
        cls.addClassCleanup(r.stop)
        cls.registrants[backend_id] = r
        return r

    # A token of `sluice`, then wait until etcd refuses it: proves tokens really expire.
    def wait_token_expiry(self):
        base = f"http://{self.etcd.endpoint}"
        req = urllib.request.Request(f"{base}/v3/auth/authenticate", method="POST",
                                     data=json.dumps({"name": "sluice", "password": "sluice-pw"}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            token = json.loads(r.read())["token"]

        def refused():
            body = json.dumps({"key": b64("/nodes/"), "range_end": b64("/nodes0"),
                               "count_only": True}).encode()
            q = urllib.request.Request(f"{base}/v3/kv/range", data=body, method="POST",
                                       headers={"Authorization": token})
            try:
                urllib.request.urlopen(q, timeout=10).close()
                return False
            except urllib.error.HTTPError as e:
                return e.code == 401 and "invalid auth token" in e.read().decode()

        # Polling keeps renewing a simple token (each use resets its TTL): look rarely.
        h.wait_until(refused, DEADLINE, interval=TOKEN_TTL + 0.5, message="the token to expire")

    def test_1_registrants_and_sluice_authenticate(self):
        self.sluice.wait_for_line(r"cluster main: watching etcd", timeout=DEADLINE)
        self.register("a")
        self.register("b")
        eu.wait_served_by(self.sluice, {"a", "b"}, timeout=DEADLINE)

    def test_2_routing_across_token_expiries(self):
        # Each round: tokens expire, then the set changes (a registrant leaves cleanly, another
        # joins, a key is written by hand); every request through sluice must succeed.
        current = {"a", "b"}
        plan = [("leave", "a"), ("join", "c"), ("join", "d"), ("leave", "b"), ("join", "e")]
        for action, who in plan:
            self.wait_token_expiry()
            if action == "leave":
                r = self.registrants.pop(who)
                self.assertEqual(r.stop(), 0, r.tail())
                current.discard(who)
            else:
                self.register(who)
                current.add(who)
            eu.wait_served_by(self.sluice, current, timeout=DEADLINE, strict=True)
        # The registrants still running renewed their leases through many token expiries
        # without a single failed keep-alive (a re-authentication is not a failure).
        for who, r in self.registrants.items():
            self.assertEqual([l for l in r.lines() if "fail" in l], [], f"registrant {who}")
            self.assertTrue(r.alive(), r.tail())
        self.assertEqual(self.etcd.ctl("get", "/nodes/a").strip(), "")

    def test_3_etcd_restart_authenticates_again(self):
        current = set(self.registrants)
        watching = len([l for l in self.sluice.lines() if "cluster main: watching etcd" in l])
        self.etcd.stop()
        self.sluice.wait_for_line(r"cluster main: etcd .*keeping the last known", timeout=DEADLINE)
        self.etcd.start()  # simple tokens live in memory: every token is gone now
        self.sluice.wait_for_line(r"cluster main: watching etcd", count=watching + 1, timeout=DEADLINE)
        self.etcd.ctl("put", "/nodes/manual-a", self.backends["a"].address)
        eu.wait_served_by(self.sluice, current | {"a"}, timeout=DEADLINE, strict=True)
        self.etcd.ctl("del", "/nodes/manual-a")
        eu.wait_served_by(self.sluice, current, timeout=DEADLINE, strict=True)

    def test_4_wrong_password_is_clear_and_keeps_static_endpoints(self):
        second = h.Sluice(self.make_config("wrong", static=("s",)), self.make_tempdir())
        try:
            second.wait_for_line(r"cluster main: etcd 127\.0\.0\.1:\d+: authentication as 'sluice' "
                                 r".*invalid user ID or password.*keeping the last known 1 endpoint",
                                 timeout=DEADLINE)
            self.assertEqual(eu.served_by(second.ports["web"]), {"s"})
            second.wait_for_line(r"cluster main: etcd .*\(attempt 2\)", timeout=DEADLINE)
            self.assertEqual(eu.served_by(second.ports["web"]), {"s"})
        finally:
            self.assertEqual(second.stop(), 0, second.tail())

    def test_5_wrong_password_falls_back_to_persisted_set(self):
        # A restart with a wrong password (a botched secret rotation) must not empty the cluster
        # either: the set persisted by the running sluice is used.
        expected = set(self.registrants)
        eu.wait_served_by(self.sluice, expected, timeout=DEADLINE)
        tmp = self.make_tempdir()
        persist = os.path.join(tmp, "copy.json")
        shutil.copy(self.persist, persist)
        second = h.Sluice(self.make_config("wrong", persist=persist), tmp)
        try:
            second.wait_for_line(r"using the last known set from", timeout=DEADLINE)
            eu.wait_served_by(second, expected, timeout=DEADLINE)
            self.assertTrue(any("invalid user ID or password" in l for l in second.lines()))
        finally:
            self.assertEqual(second.stop(), 0, second.tail())

    def test_6_missing_credentials_and_missing_permission_are_clear(self):
        for user, password, message in ((None, None, "user name is empty"),
                                         ("nobody", "nobody-pw", "permission denied")):
            second = h.Sluice(self.make_config(password, user=user, static=("s",)), self.make_tempdir())
            try:
                second.wait_for_line(rf"cluster main: etcd .*{message}.*keeping the last known 1",
                                     timeout=DEADLINE)
                second.wait_for_line(r"cluster main: etcd .*\(attempt 2\)", timeout=DEADLINE)
                self.assertEqual(eu.served_by(second.ports["web"]), {"s"})
            finally:
                self.assertEqual(second.stop(), 0, second.tail())

    def test_7_register_with_wrong_password_fails_clearly(self):
        argv = [h.sluice_bin(), "register", "--etcd", self.etcd.endpoint, "--address",
                self.backends["s"].address, "--user", "reg", "--password", "wrong"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=h.STOP_TIMEOUT)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("authentication as 'reg'", r.stderr)
        self.assertIn("invalid user ID or password", r.stderr)
        argv[-3:] = ["nobody", "--password", "nobody-pw"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=h.STOP_TIMEOUT)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("permission denied", r.stderr)
        self.assertEqual(self.etcd.ctl("get", "--prefix", "/nodes/", "--keys-only").split(),
                         [f"/nodes/{k}" for k in sorted(self.registrants)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
