"""End-to-end check of the admin status page in a real browser.

Starts three demo backends and sluice with an admin listener, sends some traffic, drains one
backend through the admin API and (when active health checks are running) makes another fail
its health check, then runs check_page.js (headless chromium via playwright-core), which
asserts that the page shows every backend with its state and saves a screenshot into
$SLUICE_SCREENSHOT_DIR (default: the current directory).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
import harness as h  # noqa: E402
from test_admin import admin_get, admin_json, admin_post, start_with_admin  # noqa: E402

E2E = os.path.dirname(HERE)


class StatusPageTest(h.SluiceTestCase):
    def test_status_page_shows_backends(self):
        if not shutil.which("node"):
            self.skipTest("node is not installed (scripts/install-deps.sh)")
        if not os.path.isdir(os.path.join(E2E, "node_modules", "playwright-core")):
            self.skipTest("run `npm install` in tests/e2e (scripts/install-deps.sh does)")
        chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        if not os.access(chromium, os.X_OK):
            self.skipTest(f"{chromium} is missing (Debian package chromium)")

        a, b, c = self.start_backends("a", "b", "c")
        cluster = h.cluster("main", [a, b, c],
                            health={"type": "http", "path": "/healthz", "interval": "200ms",
                                    "timeout": "1s", "healthy": 1, "unhealthy": 1})
        sluice, admin = start_with_admin(self, h.config([h.listener("web")], [cluster], workers=2))
        for _ in range(30):
            h.get(sluice.port, "/")
        self.assertEqual(admin_post(admin, f"/backends/main/{b.address}/drain").status, 200)
        expect = {a.address: "healthy", b.address: "draining", c.address: "healthy"}

        # Make c fail its health check. Only asserted when active checks are running in this
        # build (some backend shows a check result); otherwise the drained backend is the
        # non-healthy one the page must show.
        h.request(c.port, "POST", "/admin/health?status=503")
        checks_run = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not checks_run:
            checks_run = any(x["health_check"]["last"] != "none"
                             for x in admin_json(admin, "/status")["clusters"][0]["backends"])
            time.sleep(0.1)
        if checks_run:
            h.wait_until(lambda: {x["address"]: x["state"] for x in
                                  admin_json(admin, "/status")["clusters"][0]["backends"]}
                         .get(c.address) == "unhealthy", 30, message="backend c unhealthy")
            expect[c.address] = "unhealthy"
        else:
            print("note: active health checks are not running in this build; "
                  "checking the drained backend only", file=sys.stderr)

        # Light, bounded traffic while the page is open, so its rates show something.
        import threading
        stop = threading.Event()

        def traffic():
            for _ in range(3000):
                if stop.wait(0.01):
                    return
                h.get(sluice.port, "/")

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        self.addCleanup(t.join, 30)
        self.addCleanup(stop.set)

        out_dir = os.environ.get("SLUICE_SCREENSHOT_DIR", os.getcwd())
        shot = os.path.join(out_dir, "status_page.png")
        r = subprocess.run(
            ["node", os.path.join(HERE, "check_page.js"), f"http://127.0.0.1:{admin}/", shot,
             json.dumps({"cluster": "main", "backends": expect})],
            cwd=E2E, capture_output=True, text=True, timeout=180)
        sys.stderr.write(r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, f"check_page.js failed:\n{r.stdout}\n{r.stderr}")
        self.assertTrue(os.path.getsize(shot) > 1000)


if __name__ == "__main__":
    unittest.main(verbosity=2)
