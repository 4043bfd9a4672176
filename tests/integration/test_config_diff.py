"""`sluice -t -c FILE --diff OTHER` and `--diff-admin URL`: what a new configuration would
change, against another file and against a running instance's admin /status."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import cluster, config, listener  # noqa: E402

TOKEN = "0123456789abcdef-test-token"


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("SLUICE_ADMIN_TOKEN", None)
    e.update(env or {})
    return subprocess.run([harness.sluice_bin(), *args], capture_output=True, text=True,
                          timeout=60, env=e)


class ConfigDiffTest(harness.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = cls.make_tempdir()
        # Upstreams are never contacted: --diff only reads configurations.
        cls.a, cls.b, cls.c = (f"127.0.0.1:{harness.free_dead_port()}" for _ in range(3))
        cls.running = config(
            [listener("web", routes=[{"match": {"path_prefix": "/ping"}, "direct": {"status": 200}},
                                     {"match": {"path_prefix": "/"}, "cluster": "main"}])],
            [cluster("main", [cls.a, (cls.b, 2)])],
            admin={"address": "127.0.0.1:0", "token": TOKEN})
        cls.sluice = cls.start_sluice(cls.running, cls.dir)
        m = cls.sluice.wait_for_line(r"admin listening address=127\.0\.0\.1:(\d+)")[0]
        cls.admin_url = f"http://127.0.0.1:{m.group(1)}"

        nxt = config(
            [listener("web", routes=[{"match": {"path_prefix": "/"}, "cluster": "main"}]),
             listener("api", routes=[{"match": {"path_prefix": "/"}, "cluster": "main"}])],
            [cluster("main", [(cls.b, 3), cls.c], policy="least_conn")],
            admin={"address": "127.0.0.1:0", "token": TOKEN})
        nxt["drain_timeout"] = "20s"
        cls.next_path = os.path.join(cls.dir, "next.yaml")
        with open(cls.next_path, "w") as f:
            f.write(harness.to_yaml(nxt))

    def expected_lines(self):
        return [
            "- listener web: route /ping removed (was -> direct 200)",
            "+ listener api: http on 127.0.0.1:0, 1 route",
            "~ cluster main: policy: round_robin -> least_conn",
            f"~ cluster main: endpoint {self.b}: weight 2 -> 3",
            f"+ cluster main: endpoint {self.c} added (weight 1)",
            f"- cluster main: endpoint {self.a} removed",
        ]

    def test_diff_against_file(self):
        r = run("-t", "-c", self.next_path, "--diff", self.sluice.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("test is successful", r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[:2], [f"--- {self.sluice.config_path}", f"+++ {self.next_path}"])
        self.assertEqual(lines[2:], ["~ drain_timeout: 5s -> 20s"] + self.expected_lines())

    def test_same_file_has_no_changes(self):
        r = run("-t", "-c", self.sluice.config_path, "--diff", self.sluice.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[-1], "no changes")

    def test_diff_against_running_instance(self):
        # The token comes from the new file's admin.token.
        r = run("-t", "-c", self.next_path, "--diff-admin", self.admin_url)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [l for l in r.stdout.splitlines() if not l.startswith("#")]
        self.assertEqual(lines[0], f"--- running instance at {self.admin_url} ({self.sluice.config_path})")
        self.assertEqual(lines[1], f"+++ {self.next_path}")
        # drain_timeout is not in /status, so it is not compared.
        self.assertEqual(lines[2:], self.expected_lines())
        r = run("-t", "-c", self.sluice.config_path, "--diff-admin", self.admin_url)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[-1], "no changes")

    def test_wrong_token_is_reported(self):
        r = run("-t", "-c", self.next_path, "--diff-admin", self.admin_url,
                "--admin-token", "wrong-token-wrong-token")
        self.assertEqual(r.returncode, 1)
        self.assertIn("refused", r.stderr)
        r = run("-t", "-c", self.next_path, "--diff-admin", self.admin_url,
                env={"SLUICE_ADMIN_TOKEN": "another-wrong-token-here"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("token", r.stderr)

    def test_unreachable_admin_and_bad_other(self):
        r = run("-t", "-c", self.next_path, "--diff-admin", f"127.0.0.1:{harness.free_dead_port()}")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot connect", r.stderr)
        bad = os.path.join(self.dir, "bad.yaml")
        with open(bad, "w") as f:
            f.write("listeners: 3\n")
        r = run("-t", "-c", self.next_path, "--diff", bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.yaml:1:", r.stderr)
        self.assertIn("cannot compare", r.stderr)
        r = run("-t", "-c", bad, "--diff", self.next_path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("test failed", r.stderr)

    def test_usage_errors(self):
        self.assertEqual(run("--diff").returncode, 2)
        self.assertEqual(run("--diff", "a", "--diff-admin", "b").returncode, 2)
        self.assertEqual(run("-t", "--admin-token", "x").returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
