// Loads sluice's admin status page in headless Debian chromium (playwright-core, no browser
// download), checks that every backend is shown with its state, and saves a screenshot.
//   node check_page.js URL SCREENSHOT.png EXPECT_JSON
// EXPECT_JSON: {"cluster": "main", "backends": {"127.0.0.1:1234": "healthy", ...}}
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

async function main() {
  const [url, screenshot, expectJson] = process.argv.slice(2);
  if (!url || !screenshot || !expectJson) throw new Error("usage: check_page.js URL SCREENSHOT EXPECT_JSON");
  const expect = JSON.parse(expectJson);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-e2e-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      viewport: { width: 1400, height: 800 },
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      timeout: 60000,
    });
    const page = context.pages()[0] || await context.newPage();
    const errors = [];
    page.on("pageerror", e => errors.push(String(e)));
    await page.goto(url, { waitUntil: "load", timeout: 30000 });
    const sel = `section[data-cluster="${expect.cluster}"] tr[data-backend]`;
    // Two refreshes at least, so the rates (computed from deltas) are filled in.
    await page.waitForFunction(({ sel, want }) => {
      const rows = [...document.querySelectorAll(sel)];
      const got = Object.fromEntries(rows.map(r => [r.dataset.backend, r.dataset.state]));
      return Object.entries(want).every(([a, s]) => got[a] === s) &&
             rows.every(r => !r.textContent.includes("…"));
    }, { sel, want: expect.backends }, { timeout: 30000, polling: 200 });
    const rows = await page.$$eval(sel, rs => rs.map(r => ({ address: r.dataset.backend, state: r.dataset.state })));
    if (rows.length !== Object.keys(expect.backends).length)
      throw new Error(`expected ${Object.keys(expect.backends).length} backends, page shows ${rows.length}`);
    const problem = await page.$eval("#problem", e => e.style.display === "block" ? e.textContent : "");
    if (problem) throw new Error("page shows a problem: " + problem);
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log("status page OK:", JSON.stringify(rows), "screenshot:", screenshot);
  } finally {
    if (context) await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), e => { console.error("FAIL:", e && e.stack || e); process.exit(1); });
