"""etcd discovery over TLS with client certificates (etcd --client-cert-auth).

A CA, a server certificate (SAN IP:127.0.0.1) and a client certificate are made with `openssl`
in a temporary directory; a second, unrelated CA plays the wrong one. `sluice register` and
sluice's `discovery.etcd.tls` both talk https to etcd. Skipped without etcd or openssl.
"""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import etcd_util as eu  # noqa: E402

DEADLINE = 40.0  # lease expiry + reconnect backoff, on a busy machine


def run_register(etcd, backend_address, *extra):
    """Runs `sluice register` expected to give up; returns (exit code, stderr text)."""
    argv = [h.sluice_bin(), "register", "--etcd", etcd.endpoint, "--address", backend_address,
            "--ttl", "5", *extra]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=h.STOP_TIMEOUT)
    return r.returncode, r.stderr


@unittest.skipUnless(eu.HAVE_ETCD and eu.HAVE_OPENSSL, "etcd/etcdctl/openssl not installed")
class EtcdTlsTest(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = cls.make_tempdir()
        cls.pki = eu.Pki(cls.workdir, "good")
        cls.other = eu.Pki(cls.workdir, "other")  # a CA that signed nothing etcd presents
        cls.etcd = eu.Etcd(cls.workdir, pki=cls.pki)
        cls.etcd.start()
        cls.addClassCleanup(lambda: cls.etcd.stop())
        cls.backends = {b.id: b for b in cls.start_backends("a", "b", "c", "s")}
        discovery = {"etcd": {"endpoints": [cls.etcd.endpoint], "prefix": "/nodes/",
                              "tls": cls.etcd.tls_config()}}
        cls.config = h.config([h.listener("web")],
                              [{"name": "main", "policy": "round_robin", "discovery": discovery}])
        cls.sluice = cls.start_sluice(cls.config)
        cls.registrants = {}

    @classmethod
    def register(cls, backend_id, **kw):
        r = eu.Registrant(cls.etcd, cls.backends[backend_id], **kw)
        cls.addClassCleanup(r.stop)
        cls.registrants[backend_id] = r
        return r

    def served_by(self, port=None):
        return eu.served_by(port or self.sluice.ports["web"])

    def wait_served_by(self, expected, sluice=None):
        s = sluice or self.sluice
        expected = set(expected)
        h.wait_until(lambda: self.served_by(s.ports["web"]) == expected, DEADLINE, interval=0.1,
                     message=f"traffic spread over exactly {sorted(expected)}; last seen "
                             f"{sorted(self.served_by(s.ports['web']))}; sluice:\n{s.tail(15)}")

    def test_1_register_over_tls_and_route(self):
        self.sluice.wait_for_line(r"cluster main: watching etcd", timeout=DEADLINE)
        self.register("a")
        value = self.etcd.ctl("get", "/nodes/a", "--print-value-only").strip()
        self.assertEqual(json.loads(value), {"address": self.backends["a"].address, "weight": 1})
        self.wait_served_by({"a"})
        self.register("b")
        self.wait_served_by({"a", "b"})

    def test_2_clean_exit_deregisters_over_tls(self):
        r = self.registrants["b"]
        self.assertEqual(r.stop(), 0, r.tail())
        self.assertTrue(any(l.startswith("unregistered ") for l in r.lines("stdout")))
        self.wait_served_by({"a"})
        self.assertEqual(self.etcd.ctl("get", "/nodes/b").strip(), "")

    def test_3_register_with_wrong_ca_fails_clearly(self):
        code, err = run_register(self.etcd, self.backends["c"].address, "--ca", self.other.ca,
                                 "--cert", self.pki.client_cert, "--key", self.pki.client_key)
        self.assertEqual(code, 1, err)
        self.assertIn("cannot use etcd", err)
        self.assertIn("TLS handshake", err)
        self.assertIn("certificate verify failed", err)

    def test_4_register_without_client_certificate_fails_clearly(self):
        code, err = run_register(self.etcd, self.backends["c"].address, "--ca", self.pki.ca)
        self.assertEqual(code, 1, err)
        self.assertIn("sluice register:", err)
        self.assertRegex(err, r"certificate required|handshake failure|alert")

    def test_5_register_with_plain_http_against_tls_fails(self):
        code, err = run_register(self.etcd, self.backends["c"].address)
        self.assertEqual(code, 1, err)
        self.assertIn("sluice register:", err)

    def test_6_register_bad_tls_files(self):
        missing = os.path.join(self.workdir, "missing.pem")
        code, err = run_register(self.etcd, self.backends["c"].address, "--ca", missing)
        self.assertEqual(code, 2, err)
        self.assertIn(missing, err)
        code, err = run_register(self.etcd, self.backends["c"].address, "--ca", self.pki.ca,
                                 "--cert", self.pki.client_cert)
        self.assertEqual(code, 2, err)
        self.assertIn("--cert and --key go together", err)

    def test_7_sluice_with_wrong_ca_logs_tls_error_and_serves_static(self):
        discovery = {"etcd": {"endpoints": [self.etcd.endpoint], "prefix": "/nodes/",
                              "tls": {"ca": self.other.ca, "cert": self.pki.client_cert,
                                      "key": self.pki.client_key}}}
        cfg = h.config([h.listener("web")],
                       [{"name": "main", "policy": "round_robin",
                         "endpoints": [self.backends["s"].address], "discovery": discovery}])
        second = h.Sluice(cfg, self.make_tempdir())
        try:
            second.wait_for_line(r"cluster main: etcd 127\.0\.0\.1:\d+: TLS handshake with .*"
                                 r"certificate verify failed.*keeping the last known 1 endpoint",
                                 timeout=DEADLINE)
            self.assertEqual(self.served_by(second.ports["web"]), {"s"})
            second.wait_for_line(r"cluster main: etcd .*\(attempt 2\)", timeout=DEADLINE)
            self.assertEqual(self.served_by(second.ports["web"]), {"s"})
        finally:
            self.assertEqual(second.stop(), 0, second.tail())

    def test_8_sluice_refuses_unreadable_tls_file(self):
        missing = os.path.join(self.workdir, "nope.pem")
        discovery = {"etcd": {"endpoints": [self.etcd.endpoint], "tls": {"ca": missing}}}
        cfg = h.config([h.listener("web")],
                       [{"name": "main", "policy": "round_robin", "discovery": discovery}])
        path = os.path.join(self.make_tempdir(), "bad.yaml")
        with open(path, "w") as f:
            f.write(h.to_yaml(cfg))
        r = subprocess.run([h.sluice_bin(), "-c", path], capture_output=True, text=True,
                           timeout=h.STOP_TIMEOUT)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(missing, r.stderr)
        self.assertNotIn("Segmentation", r.stderr)

    def test_9_server_certificate_from_another_ca_keeps_last_set(self):
        # etcd comes back presenting a certificate sluice's CA did not sign (a botched
        # certificate rotation): sluice must say so, keep routing to the last known set, and
        # follow etcd again once the right certificate is back.
        self.wait_served_by({"a"})
        self.etcd.stop()
        self.etcd.pki = self.other
        before = len(self.sluice.lines())
        self.etcd.start()
        try:
            h.wait_until(lambda: any("certificate verify failed" in l and "keeping the last known 1"
                                     in l for l in self.sluice.lines()[before:]),
                         DEADLINE, interval=0.1,
                         message=f"a TLS verification error; sluice:\n{self.sluice.tail(15)}")
            # The lease of `a` cannot be renewed while etcd refuses its registrant's certificate
            # either; whatever happens in etcd, sluice keeps the last set it could verify.
            for _ in range(3):
                self.assertEqual(self.served_by(), {"a"})
        finally:
            self.etcd.stop()
            self.etcd.pki = self.pki
            self.etcd.start()
        self.sluice.wait_for_line(r"cluster main: watching etcd", count=2, timeout=DEADLINE)
        self.etcd.ctl("put", "/nodes/manual-c", self.backends["c"].address)
        self.wait_served_by({"a", "c"})
        self.etcd.ctl("del", "/nodes/manual-c")
        self.wait_served_by({"a"})
        self.assertAlive(self.sluice)


if __name__ == "__main__":
    unittest.main(verbosity=2)
