#include "admin/status_page.hpp"

namespace sluice::admin {

namespace {

// Kept free of external resources (no CDN, no fonts): the page must work on an isolated host.
// Data is inserted with textContent only, never as HTML: backend addresses can come from etcd.
constexpr std::string_view page = R"sluicehtml(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice status</title>
<style>
  :root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --mute:#687087; --line:#e2e5ec;
          --ok:#1f9d55; --bad:#d64545; --warn:#d9822b; --idle:#8a93a6; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
         background:var(--bg); color:var(--ink); }
  header { display:flex; flex-wrap:wrap; align-items:center; gap:12px 24px; padding:14px 24px;
           background:#1d2330; color:#fff; }
  header h1 { margin:0; font-size:20px; letter-spacing:.5px; }
  header .kv { color:#c9cfdb; }
  header .kv b { color:#fff; font-weight:600; }
  main { padding:18px 24px; display:grid; gap:18px; }
  section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; }
  section h2 { margin:0 0 8px; font-size:16px; display:flex; gap:10px; align-items:center; flex-wrap:wrap; }
  .meta { color:var(--mute); font-weight:400; font-size:13px; }
  table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
  th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
  th { color:var(--mute); font-weight:600; font-size:12px; text-transform:uppercase; letter-spacing:.4px; }
  td.num, th.num { text-align:right; }
  tr:last-child td { border-bottom:none; }
  .badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; color:#fff; }
  .healthy { background:var(--ok); } .unhealthy { background:var(--bad); }
  .ejected { background:var(--warn); } .draining { background:var(--idle); }
  .serving { background:var(--ok); } .panic { background:var(--bad); }
  .err { color:var(--bad); font-weight:600; }
  button { font:inherit; font-size:12px; padding:2px 10px; border:1px solid var(--line); border-radius:4px;
           background:#fff; cursor:pointer; }
  button:hover { background:#eef1f6; }
  #problem { display:none; background:#fdecec; color:var(--bad); border:1px solid #f3c2c2; padding:8px 12px; border-radius:6px; }
  .bar { height:6px; background:#e9ecf2; border-radius:3px; min-width:60px; }
  .bar > div { height:6px; border-radius:3px; background:#4a78d0; }
</style>
</head>
<body>
<header>
  <h1>sluice</h1>
  <span class="kv">version <b id="version">-</b></span>
  <span class="kv">state <b id="state">-</b></span>
  <span class="kv">uptime <b id="uptime">-</b></span>
  <span class="kv">config v<b id="config">-</b></span>
  <span class="kv">workers <b id="workers">-</b></span>
  <span class="kv">active requests <b id="active">-</b></span>
  <span class="kv">updated <b id="updated">-</b></span>
</header>
<main>
  <div id="problem"></div>
  <section>
    <h2>Listeners</h2>
    <table id="listeners"><thead><tr>
      <th>name</th><th>protocol</th><th>address</th><th class="num">connections</th>
      <th class="num">req/s</th><th class="num">5xx/s</th><th>routes</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <div id="clusters" style="display:grid; gap:18px"></div>
</main>
<script>
"use strict";
(function () {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) sessionStorage.setItem("sluice-token", hash.get("token"));
  const token = sessionStorage.getItem("sluice-token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const previous = new Map();  // key -> {t, requests, errors}

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  function sum(o) { return Object.values(o || {}).reduce((a, b) => a + b, 0); }
  function rate(key, t, requests, errors) {
    const p = previous.get(key);
    previous.set(key, { t, requests, errors });
    if (!p || t <= p.t) return null;
    const dt = (t - p.t) / 1000;
    const dr = Math.max(0, requests - p.requests), de = Math.max(0, errors - p.errors);
    return { rps: dr / dt, eps: de / dt, pct: dr + de > 0 ? 100 * de / Math.max(dr, de) : 0 };
  }
  function fmt(x, digits) { return x === null || x === undefined ? "…" : x.toFixed(digits); }
  function duration(s) {
    s = Math.floor(s); const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
      m = Math.floor(s % 3600 / 60), r = s % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + r + "s";
  }
  function num(x, cls) { return el("td", { class: "num" + (cls ? " " + cls : "") }, x); }

  async function post(path) {
    try {
      const r = await fetch(path, { method: "POST", headers });
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      refresh();
    } catch (e) { problem(String(e)); }
  }
  function problem(text) {
    const p = document.getElementById("problem");
    p.textContent = text || ""; p.style.display = text ? "block" : "none";
  }

  function render(s, t) {
    document.getElementById("version").textContent = s.version;
    document.getElementById("state").textContent = s.draining ? "draining" : "serving";
    document.getElementById("uptime").textContent = duration(s.uptime_seconds);
    document.getElementById("config").textContent = s.config.version;
    document.getElementById("workers").textContent = s.workers ?? "-";
    document.getElementById("active").textContent = s.active_requests;
    document.getElementById("updated").textContent = new Date(t).toLocaleTimeString();

    const lbody = document.querySelector("#listeners tbody");
    lbody.replaceChildren(...s.listeners.map(l => {
      const r = rate("l/" + l.name, t, sum(l.requests), (l.requests || {})["5xx"] || 0);
      const routes = l.protocol === "tcp" ? "→ " + l.cluster :
        (l.routes || []).map(x => (x.host || "*") + x.path_prefix + " → " +
          (x.cluster !== undefined ? x.cluster : "direct " + x.direct)).join(", ");
      return el("tr", {}, el("td", {}, l.name), el("td", {}, l.protocol),
        el("td", {}, l.address + (l.port ? " (port " + l.port + ")" : "")),
        num(l.connections_active ?? "-"), num(fmt(r && r.rps, 1)), num(fmt(r && r.eps, 1)),
        el("td", { class: "meta" }, routes));
    }));

    const box = document.getElementById("clusters");
    box.replaceChildren(...s.clusters.map(c => {
      const maxActive = Math.max(1, ...c.backends.map(b => b.active_requests));
      const rows = c.backends.map(b => {
        const key = "b/" + c.name + "/" + b.address;
        const r = rate(key, t, b.requests_total, b.errors_total);
        const action = b.draining ? "undrain" : "drain";
        const path = "/backends/" + encodeURIComponent(c.name) + "/" + encodeURIComponent(b.address) + "/" + action;
        const check = b.health_check.last === "none" ? "" : b.health_check.last +
          (b.health_check.status ? " (" + b.health_check.status + ")" : "");
        return el("tr", { "data-backend": b.address, "data-state": b.state },
          el("td", {}, b.address),
          el("td", {}, el("span", { class: "badge " + b.state }, b.state)),
          num(b.weight), num(b.ready ? "yes" : "no"),
          num(b.active_requests),
          el("td", {}, el("div", { class: "bar" }, el("div", { style: "width:" + (100 * b.active_requests / maxActive) + "%" }))),
          num(fmt(r && r.rps, 1)), num(fmt(r && r.eps, 1), r && r.eps > 0 ? "err" : ""),
          num(r ? fmt(r.pct, 1) + "%" : "…"),
          num(b.requests_total), num(b.errors_total),
          el("td", { class: "meta" }, check),
          el("td", {}, el("button", { onclick: () => post(path) }, action)));
      });
      const d = c.discovery || {};
      const age = d.last_event_age_seconds == null ? "" : ", last event " + fmt(d.last_event_age_seconds, 0) + "s ago";
      return el("section", { "data-cluster": c.name },
        el("h2", {}, c.name,
          c.panic ? el("span", { class: "badge panic" }, "panic") : "",
          el("span", { class: "meta" }, c.policy + " · " + c.protocol + " · " + c.ready_count + "/" +
             c.backends.length + " ready · health " + c.health_check + " · discovery " + d.source +
             (d.state ? " (" + d.state + age + ")" : "") + " · active " + c.active_requests)),
        el("table", {}, el("thead", {}, el("tr", {},
            el("th", {}, "backend"), el("th", {}, "state"), el("th", { class: "num" }, "weight"),
            el("th", { class: "num" }, "ready"), el("th", { class: "num" }, "active"), el("th", {}, ""),
            el("th", { class: "num" }, "req/s"), el("th", { class: "num" }, "err/s"),
            el("th", { class: "num" }, "err %"), el("th", { class: "num" }, "requests"),
            el("th", { class: "num" }, "errors"), el("th", {}, "last check"), el("th", {}, ""))),
          el("tbody", {}, ...rows)));
    }));
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const r = await fetch("/status", { headers, cache: "no-store" });
      if (r.status === 401) throw new Error("this admin listener needs a token: open the page as /#token=YOUR_TOKEN");
      if (!r.ok) throw new Error("/status: HTTP " + r.status);
      render(await r.json(), Date.now());
      problem("");
      document.body.setAttribute("data-loaded", "1");
    } catch (e) { problem(String(e.message || e)); }
    finally { busy = false; }
  }
  refresh();
  setInterval(refresh, 1000);
})();
</script>
</body>
</html>
)sluicehtml";

}  // namespace

std::string_view status_page_html() noexcept { return page; }

}  // namespace sluice::admin
