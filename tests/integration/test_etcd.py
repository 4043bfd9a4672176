"""etcd discovery end to end: a real etcd, `sluice register` instances, demo backends, sluice.

Needs /usr/bin/etcd and /usr/bin/etcdctl (Debian packages etcd-server, etcd-client); skipped
when they are missing. Every wait is a poll with a generous deadline.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from test_admin import ADMIN_LINE, admin_get, admin_json, parse_metrics  # noqa: E402

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
HAVE_ETCD = os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)

DEADLINE = 40.0  # lease expiry + reconnect backoff, on a busy machine


def free_port():
    return h.free_dead_port()


class Etcd:
    """One etcd member on loopback. start() may be called again after stop() (same data)."""

    def __init__(self, workdir):
        self.data = os.path.join(workdir, "etcd-data")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc = None

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.client_port}"

    def start(self, client_port=None):
        port = client_port or self.client_port
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [ETCD, "--name", "default", "--data-dir", self.data,
                "--listen-client-urls", f"http://127.0.0.1:{port}",
                "--advertise-client-urls", f"http://127.0.0.1:{port}",
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}", "--log-level", "warn"]
        self.proc = h.Process(argv, "etcd")
        h.wait_until(lambda: self._healthy(port), h.START_TIMEOUT, interval=0.1,
                     message=f"etcd healthy on {port}")

    def _healthy(self, port):
        if not self.proc.alive():
            raise AssertionError(f"etcd exited:\n{self.proc.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"
        except OSError:
            return False

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None

    def ctl(self, *args, port=None):
        r = subprocess.run([ETCDCTL, "--endpoints", f"127.0.0.1:{port or self.client_port}", *args],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"etcdctl {args} failed: {r.stderr}")
        return r.stdout

    def revision(self, port=None):
        out = self.ctl("endpoint", "status", "-w", "json", port=port)
        return int(json.loads(out)[0]["Status"]["header"]["revision"])


class Registrant(h.Process):
    def __init__(self, etcd, backend, prefix="/nodes/", ttl=2, extra=()):
        argv = [h.sluice_bin(), "register", "--etcd", etcd.endpoint, "--prefix", prefix,
                "--address", backend.address, "--ttl", str(ttl), "--id", backend.id, *extra]
        super().__init__(argv, f"register {backend.id}")
        self.wait_for_line(r"^registered ", which="stdout")


@unittest.skipUnless(HAVE_ETCD, "etcd/etcdctl not installed")
class EtcdDiscoveryTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = cls.make_tempdir()
        cls.etcd = Etcd(cls.workdir)
        cls.etcd.start()
        cls.addClassCleanup(lambda: cls.etcd.stop())
        cls.backends = {b.id: b for b in cls.start_backends("a", "b", "c", "d", "x", "y", "z")}
        cls.persist = os.path.join(cls.workdir, "web.json")
        discovery = {"etcd": {"endpoints": [cls.etcd.endpoint], "prefix": "/nodes/",
                              "persist": cls.persist}}
        clusters = [
            {"name": "main", "policy": "round_robin", "discovery": discovery},
            {"name": "cmp", "policy": "round_robin",
             "discovery": {"etcd": {"endpoints": [cls.etcd.endpoint], "prefix": "/cmp/"}}},
        ]
        listeners = [h.listener("web"),
                     h.listener("cmp", routes=[{"match": {"path_prefix": "/"}, "cluster": "cmp"}])]
        cls.config = h.config(listeners, clusters, admin={"address": "127.0.0.1:0"})
        cls.sluice = cls.start_sluice(cls.config)
        cls.admin = int(cls.sluice.wait_for_line(ADMIN_LINE)[0].group(1))
        cls.registrants = {}

    @classmethod
    def register(cls, backend_id, **kw):
        r = Registrant(cls.etcd, cls.backends[backend_id], **kw)
        cls.addClassCleanup(r.stop)
        cls.registrants[backend_id] = r
        return r

    def served_by(self, listener="web", n=12):
        seen = set()
        for _ in range(n):
            r = h.get(self.sluice.ports[listener], "/")
            if r.status == 200:
                seen.add(r.header("X-Backend"))
        return seen

    def wait_served_by(self, expected, listener="web", timeout=DEADLINE):
        expected = set(expected)
        h.wait_until(lambda: self.served_by(listener) == expected, timeout, interval=0.1,
                     message=f"traffic on {listener} spread over exactly {sorted(expected)}; "
                             f"last seen {sorted(self.served_by(listener))}; sluice:\n{self.sluice.tail(15)}")

    def discovery_metrics(self, cluster="main"):
        """{metric name without the sluice_discovery_ prefix: value} of one cluster."""
        r = admin_get(self.admin, "/metrics")
        self.assertEqual(r.status, 200)
        samples = parse_metrics(r.text())
        out = {}
        for (name, labels), value in samples.items():
            if name.startswith("sluice_discovery_") and ("cluster", cluster) in labels:
                key = name[len("sluice_discovery_"):]
                state = dict(labels).get("state")
                out[f"{key}:{state}" if state else key] = value
        return out

    def wait_discovery(self, predicate, what, cluster="main"):
        last = {}

        def check():
            last.clear()
            last.update(self.discovery_metrics(cluster))
            return predicate(last)
        h.wait_until(check, DEADLINE, interval=0.1,
                     message=f"{what}; last discovery metrics {last}")
        return dict(last)

    def test_1_three_registrants_share_traffic(self):
        for b in ("a", "b", "c"):
            self.register(b)
        value = self.etcd.ctl("get", "/nodes/a", "--print-value-only").strip()
        self.assertEqual(json.loads(value), {"address": self.backends["a"].address, "weight": 1})
        self.wait_served_by({"a", "b", "c"})
        m = self.wait_discovery(lambda m: m.get("connected") == 1 and m.get("endpoints") == 3,
                                "main connected with 3 endpoints")
        self.assertEqual(m["state:watching"], 1)
        self.assertEqual(m["state:error"], 0)
        self.assertGreaterEqual(m["updates_total"], 1)
        self.assertGreaterEqual(m["full_reads_total"], 1)
        self.assertGreater(m["revision"], 0)
        self.assertGreaterEqual(m["last_event_age_seconds"], 0)
        disc = {c["name"]: c["discovery"] for c in admin_json(self.admin)["clusters"]}
        self.assertEqual(disc["main"]["source"], "etcd")
        self.assertEqual(disc["main"]["state"], "watching")
        self.assertIs(disc["main"]["connected"], True)
        self.assertEqual(disc["main"]["endpoints"], 3)
        self.assertGreater(disc["main"]["revision"], 0)
        promtool = shutil.which("promtool")
        if promtool:
            r = subprocess.run([promtool, "check", "metrics"],
                               input=admin_get(self.admin, "/metrics").text(),
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, f"promtool check metrics:\n{r.stdout}{r.stderr}")

    def test_2_killed_registrant_expires(self):
        self.registrants["b"].signal(signal.SIGKILL)  # no keep-alive, no clean delete
        self.wait_served_by({"a", "c"})
        self.assertEqual(self.etcd.ctl("get", "/nodes/b").strip(), "")

    def test_3_new_registrant_receives_traffic(self):
        self.register("d")
        self.wait_served_by({"a", "c", "d"})

    def test_4_clean_exit_deregisters(self):
        r = self.registrants["d"]
        self.assertEqual(r.stop(), 0)
        self.assertTrue(any(l.startswith("unregistered ") for l in r.lines("stdout")))
        self.wait_served_by({"a", "c"})

    def test_5_bad_values_are_skipped(self):
        self.etcd.ctl("put", "/nodes/empty", "")
        self.etcd.ctl("put", "/nodes/garbage", "{not json")
        self.etcd.ctl("put", "/nodes/badport", "127.0.0.1:99999")
        self.etcd.ctl("put", "/nodes/heavy", json.dumps({"address": "127.0.0.1:1", "weight": 5000}))
        self.sluice.wait_for_line(r"etcd key /nodes/heavy skipped", timeout=DEADLINE)
        for key in ("empty", "garbage", "badport"):
            self.sluice.wait_for_line(rf"etcd key /nodes/{key} skipped", timeout=DEADLINE)
        self.assertAlive(self.sluice)
        self.assertEqual(self.served_by(), {"a", "c"})
        self.wait_discovery(lambda m: m.get("invalid_entries_total", 0) >= 4, "4 skipped values")
        for key in ("empty", "garbage", "badport", "heavy"):
            self.etcd.ctl("del", f"/nodes/{key}")

    def test_6_etcd_down_keeps_last_known_set(self):
        self.wait_discovery(lambda m: m.get("connected") == 1, "main connected before the stop")
        self.etcd.stop()
        self.sluice.wait_for_line(r"cluster main: etcd .*keeping the last known 2 endpoint", timeout=DEADLINE)
        m = self.wait_discovery(lambda m: m.get("connected") == 0 and m.get("state:error") == 1,
                                "main disconnected once etcd stopped")
        self.assertGreaterEqual(m["disconnects_total"], 1)
        self.assertEqual(m["endpoints"], 2)  # the last delivered set stays
        self.assertIs(admin_json(self.admin)["clusters"][0]["discovery"]["connected"], False)
        # Longer than the registrations' TTL: without etcd nothing can expire.
        for _ in range(3):
            self.assertEqual(self.served_by(), {"a", "c"})
        self.sluice.wait_for_line(r"cluster main: etcd .*\(attempt 2\)", timeout=DEADLINE)
        self.assertEqual(self.served_by(), {"a", "c"})

    def test_7_etcd_restarted_changes_are_picked_up(self):
        self.etcd.start()
        self.sluice.wait_for_line(r"cluster main: watching etcd", count=2, timeout=DEADLINE)
        self.wait_discovery(lambda m: m.get("connected") == 1 and m.get("state:watching") == 1,
                            "main connected again after the restart")
        self.etcd.ctl("put", "/nodes/manual-x", self.backends["x"].address)
        self.wait_served_by({"a", "c", "x"})
        self.etcd.ctl("del", "/nodes/manual-x")
        self.wait_served_by({"a", "c"})

    def test_8_compacted_revision_is_reconciled(self):
        self.etcd.ctl("put", "/cmp/x", self.backends["x"].address)
        self.etcd.ctl("put", "/cmp/y", self.backends["y"].address)
        self.wait_served_by({"x", "y"}, listener="cmp")
        # Take etcd away from sluice (same data, another client port), change the prefix and
        # compact past sluice's resume revision, then bring it back where sluice looks.
        self.etcd.stop()
        other = free_port()
        self.etcd.start(client_port=other)
        self.etcd.ctl("del", "/cmp/x", port=other)
        self.etcd.ctl("put", "/cmp/z", self.backends["z"].address, port=other)
        self.etcd.ctl("compact", str(self.etcd.revision(port=other)), port=other)
        self.etcd.stop()
        self.etcd.start()
        self.sluice.wait_for_line(r"cluster cmp: etcd .*was compacted", timeout=DEADLINE)
        self.wait_served_by({"y", "z"}, listener="cmp")

    def test_9_persisted_set_used_when_etcd_is_down_at_start(self):
        self.wait_served_by({"a", "c"})
        with open(self.persist) as f:
            saved = {e["address"] for e in json.load(f)}
        self.assertEqual(saved, {self.backends["a"].address, self.backends["c"].address})
        self.etcd.stop()
        try:
            second = h.Sluice(self.config, self.make_tempdir())
            try:
                second.wait_for_line(r"using the last known set from", timeout=DEADLINE)
                seen = set()
                h.wait_until(lambda: seen.update(
                    {h.get(second.ports["web"], "/").header("X-Backend") for _ in range(6)}) or seen >= {"a", "c"},
                    DEADLINE, message="the second sluice to serve from the persisted set")
                self.assertEqual(seen, {"a", "c"})
            finally:
                self.assertEqual(second.stop(), 0, second.tail())
        finally:
            self.etcd.start()

    def test_register_against_dead_etcd_fails(self):
        p = h.Process([h.sluice_bin(), "register", "--etcd", f"127.0.0.1:{free_port()}",
                       "--address", "127.0.0.1:8001"], "register dead")
        code = p.proc.wait(timeout=h.STOP_TIMEOUT)
        p.stop()
        self.assertNotEqual(code, 0)
        self.assertIn("cannot use etcd", "\n".join(p.lines()))

    def test_register_bad_arguments(self):
        p = h.Process([h.sluice_bin(), "register", "--etcd", "127.0.0.1:2379", "--address", "nope"],
                      "register bad")
        code = p.proc.wait(timeout=h.STOP_TIMEOUT)
        p.stop()
        self.assertEqual(code, 2)
        self.assertIn("--address", "\n".join(p.lines()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
