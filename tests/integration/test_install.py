"""`cmake --install` layout: binary, example configuration (never overwritten), systemd unit,
man page and docs land where docs/cli.md says; the installed binary accepts the installed
configuration; the unit passes `systemd-analyze verify` when systemd-analyze is available."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def cmake_cache(build_dir):
    values = {}
    with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9_]+):[A-Z]+=(.*)$", line.rstrip("\n"))
            if m:
                values[m.group(1)] = m.group(2)
    return values


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.build = os.path.dirname(os.path.abspath(harness.sluice_bin()))
        if not os.path.exists(os.path.join(cls.build, "CMakeCache.txt")):
            raise unittest.SkipTest(f"{cls.build} is not a CMake build directory")
        cache = cmake_cache(cls.build)
        cls.cmake = shutil.which(cache.get("CMAKE_COMMAND", "")) or shutil.which("cmake")
        cls.prefix = cache.get("CMAKE_INSTALL_PREFIX", "/usr/local")
        cls.conf_dir = cache.get("SLUICE_CONFIG_DIR", "/etc/sluice")
        unit_dir = cache.get("SLUICE_SYSTEMD_UNIT_DIR", "lib/systemd/system")
        cls.unit_dir = unit_dir if os.path.isabs(unit_dir) else os.path.join(cls.prefix, unit_dir)
        cls.root = tempfile.mkdtemp(prefix="sluice-install-")
        cls.addClassCleanup(shutil.rmtree, cls.root, ignore_errors=True)
        cls.first = cls.install()

    @classmethod
    def install(cls):
        env = dict(os.environ, DESTDIR=cls.root)
        r = subprocess.run([cls.cmake, "--install", cls.build], env=env, capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            raise AssertionError(f"cmake --install failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def staged(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def test_layout(self):
        p = self.prefix
        expected = [
            f"{p}/bin/sluice",
            f"{self.conf_dir}/sluice.yaml",
            f"{p}/share/sluice/sluice.yaml",
            f"{self.unit_dir}/sluice.service",
            f"{p}/share/man/man8/sluice.8",
            f"{p}/share/doc/sluice/README.md",
            f"{p}/share/doc/sluice/LICENSE",
            f"{p}/share/doc/sluice/cli.md",
            f"{p}/share/doc/sluice/configuration.md",
            f"{p}/share/doc/sluice/migrating-from-nginx.md",
        ]
        for path in expected:
            self.assertTrue(os.path.isfile(self.staged(path)), f"{path} not installed:\n{self.first}")
        self.assertTrue(os.access(self.staged(f"{p}/bin/sluice"), os.X_OK))
        # Nothing escaped DESTDIR into the real file system under the staging root's name.
        self.assertFalse(os.path.exists(os.path.join(self.root, self.root.lstrip("/"))))

    def test_unit_points_at_installed_binary(self):
        with open(self.staged(f"{self.unit_dir}/sluice.service")) as f:
            unit = f.read()
        binary = f"{self.prefix}/bin/sluice"
        conf = f"{self.conf_dir}/sluice.yaml"
        self.assertIn(f"ExecStartPre={binary} -t -c {conf}\n", unit)
        self.assertIn(f"ExecStart={binary} -c {conf}\n", unit)
        self.assertIn("Type=notify\n", unit)
        self.assertIn("ExecReload=/bin/kill -HUP $MAINPID\n", unit)

    def test_installed_binary_accepts_installed_config(self):
        binary = self.staged(f"{self.prefix}/bin/sluice")
        conf = self.staged(f"{self.conf_dir}/sluice.yaml")
        r = subprocess.run([binary, "-t", "-c", conf], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("test is successful", r.stderr)
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("sluice "), r.stdout)

    def test_existing_config_is_kept(self):
        conf = self.staged(f"{self.conf_dir}/sluice.yaml")
        with open(conf, "a") as f:
            f.write("# edited by the operator\n")
        out = self.install()
        self.assertIn("Keeping:", out)
        with open(conf) as f:
            self.assertTrue(f.read().endswith("# edited by the operator\n"))

    def test_man_page_renders_cleanly(self):
        man = shutil.which("man")
        if not man:
            self.skipTest("man is not installed")
        page = self.staged(f"{self.prefix}/share/man/man8/sluice.8")
        env = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
        r = subprocess.run([man, "--warnings", "-l", page], capture_output=True, text=True,
                           env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), "", r.stderr)
        for word in ("--diff-admin", "SIGUSR1", "EXIT STATUS", "register"):
            self.assertIn(word, r.stdout)

    def test_systemd_analyze_verify(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed")
        # Verify the installed unit with its paths pointing into the staging root, since
        # verify checks that the executables exist.
        with open(self.staged(f"{self.unit_dir}/sluice.service")) as f:
            unit = f.read()
        unit = unit.replace(f"{self.prefix}/bin/sluice", self.staged(f"{self.prefix}/bin/sluice"))
        unit = unit.replace(f"{self.conf_dir}/sluice.yaml", self.staged(f"{self.conf_dir}/sluice.yaml"))
        d = tempfile.mkdtemp(prefix="sluice-unit-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        path = os.path.join(d, "sluice.service")
        with open(path, "w") as f:
            f.write(unit)
        r = subprocess.run([analyze, "verify", "--man=no", path], capture_output=True, text=True,
                           timeout=120)
        # verify exits 0 on some problems with the unit (it only warns): any line naming the
        # unit file is a problem.
        problems = [l for l in (r.stdout + r.stderr).splitlines() if "sluice.service" in l]
        self.assertEqual(problems, [], r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
