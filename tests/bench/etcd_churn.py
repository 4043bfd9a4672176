#!/usr/bin/python3
"""etcd discovery under churn: how fast sluice follows etcd, and what churn costs requests.

  tests/bench/etcd_churn.py [--events 50] [--churn-seconds 30] [--rate 800] [--clients 4]
                            [--workers 1] [--ttl 2] [--only propagation|graceful|kill]

Starts a real etcd (/usr/bin/etcd), demo backends and sluice (SLUICE_BIN, SLUICE_DEMO_BACKEND,
or the first build*/ directory holding them) on free loopback ports, and drives GET / through
sluice for the whole run: `--clients` keep-alive connections, paced to `--rate` requests/s in
total. Every response is recorded with the time it completed and its `X-Backend` id.

(a) propagation: `--events` etcd events, alternately a put of a new registration and a delete
    of an old one, written straight to etcd's JSON gateway. For a put: time from sending the put
    to the first response from the new backend. For a delete: time from sending the delete to
    the last response from the deleted backend (0 when none came after it). Both are upper
    bounds: they include the etcd commit and one request round trip; the resolution is about
    (backends in the set) / (rate) (a backend gets every n-th request).
(b) churn: for `--churn-seconds`, once a second a new instance (demo backend + `sluice register
    --ttl TTL`) joins and the oldest leaves, either `graceful` (SIGTERM to the registrant, which
    deletes its key, then SIGTERM to the backend) or `kill` (SIGKILL to both: the key stays until
    its lease expires, and sluice meanwhile meets a dead backend). Reports requests sent, failed
    (not 200, or no answer) and why.

Standard library only. Everything started is stopped by PID; the temporary directory is removed.
"""

import argparse
import base64
import json
import os
import signal
import statistics
import sys
import tempfile
import shutil
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness as h  # noqa: E402
import etcd_util as eu  # noqa: E402


def b64(s):
    return base64.b64encode(s.encode()).decode()


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


class Load:
    """`clients` threads, each one keep-alive connection, paced to rate/clients requests/s."""

    def __init__(self, port, rate, clients):
        self.port = port
        self.interval = clients / float(rate)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.records = []  # (t_done, status, backend or error text)
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self):
        conn = None
        req = h.build_request("GET", "/")
        next_at = time.monotonic()
        local = []
        while not self.stop_event.is_set():
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            next_at = max(next_at + self.interval, time.monotonic() - 1.0)
            try:
                if conn is None:
                    conn = h.Conn(self.port, timeout=10)
                conn.send(req)
                r = conn.read_response("GET")
                rec = (time.monotonic(), r.status, r.header("X-Backend") or "")
                if r.has_token("Connection", "close"):
                    conn.close()
                    conn = None
            except (OSError, AssertionError, h.ConnectionClosed) as e:
                rec = (time.monotonic(), 0, f"{type(e).__name__}: {e}")
                if conn:
                    conn.close()
                conn = None
            local.append(rec)
            if len(local) >= 64:
                with self.lock:
                    self.records.extend(local)
                local = []
        with self.lock:
            self.records.extend(local)
        if conn:
            conn.close()

    def snapshot(self):
        with self.lock:
            return list(self.records)

    def first_from(self, backend, after):
        with self.lock:
            times = [t for (t, s, b) in self.records if t > after and s == 200 and b == backend]
        return min(times) if times else None

    def last_from(self, backend, after):
        with self.lock:
            times = [t for (t, s, b) in self.records if t > after and s == 200 and b == backend]
        return max(times) if times else None

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=15)


class Bench:
    def __init__(self, args):
        self.args = args
        self.workdir = tempfile.mkdtemp(prefix="sluice-etcd-churn-")
        self.procs = []  # everything started, stopped in reverse order at the end
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    def start(self):
        args = self.args
        self.etcd = eu.Etcd(self.workdir)
        self.procs.append(self.etcd)
        self.etcd.start()
        cfg = h.config([h.listener("web")],
                       [dict({"name": "main", "policy": "round_robin",
                              "discovery": {"etcd": {"endpoints": [self.etcd.endpoint],
                                                     "prefix": "/nodes/"}}},
                             **json.loads(args.cluster))],
                       workers=args.workers)
        self.sluice = self.spawn(h.Sluice, cfg, self.workdir)
        self.port = self.sluice.ports["web"]

    def close(self):
        for p in reversed(self.procs):
            try:
                if getattr(p, "proc", None) is not None or isinstance(p, eu.Etcd):
                    p.stop()
            except Exception as e:  # keep cleaning up
                print(f"cleanup: {e}", file=sys.stderr)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def spawn(self, cls, *args):
        # Listed before __init__ runs: a process that starts but never reports ready (its
        # constructor raises) is still stopped by close().
        p = cls.__new__(cls)
        self.procs.append(p)
        p.__init__(*args)
        return p

    def backend(self, name):
        return self.spawn(h.DemoBackend, name)

    def forget(self, proc):
        # Stopped for good: no need to keep it for the final cleanup (keeps that list short).
        proc.stop()
        self.procs.remove(proc)

    def gateway(self, path, body):
        req = urllib.request.Request(f"http://{self.etcd.endpoint}{path}", method="POST",
                                     data=json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def put(self, key, value):
        self.gateway("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def delete(self, key):
        self.gateway("/v3/kv/deleterange", {"key": b64(key)})

    def wait_set(self, load, expected, timeout=30.0):
        """Waits until a full second of responses came from exactly `expected`."""
        def ok():
            t = time.monotonic()
            recent = {b for (tt, s, b) in load.snapshot() if tt > t - 1.0 and s == 200}
            return recent == set(expected)
        time.sleep(1.0)
        h.wait_until(ok, timeout, interval=0.2, message=f"traffic on exactly {sorted(expected)}")

    # ---- (a) -------------------------------------------------------------------------------
    def propagation(self):
        a = self.args
        base = [self.backend(f"base{i}") for i in range(2)]
        spare = [self.backend(f"new{i}") for i in range(3)]
        for b in base:
            self.put(f"/nodes/{b.id}", json.dumps({"address": b.address}))
        load = Load(self.port, a.rate, a.clients)
        try:
            self.wait_set(load, {b.id for b in base})
            put_ms, del_ms, present = [], [], []
            put_ack_ms, del_ack_ms, commit_ms = [], [], []
            free = list(spare)
            for i in range(a.events):
                if i % 2 == 0:
                    b = free.pop(0)
                    t0 = time.monotonic()
                    self.put(f"/nodes/{b.id}", json.dumps({"address": b.address}))
                    ta = time.monotonic()
                    t1 = h.wait_until(lambda: load.first_from(b.id, t0), 10.0, interval=0.005,
                                      message=f"first response from {b.id}")
                    put_ms.append((t1 - t0) * 1000)
                    put_ack_ms.append(max(0.0, (t1 - ta) * 1000))
                    present.append(b)
                    time.sleep(0.3)
                else:
                    b = present.pop(0)
                    t0 = time.monotonic()
                    self.delete(f"/nodes/{b.id}")
                    ta = time.monotonic()
                    # Long past any plausible propagation delay; then look at what arrived.
                    time.sleep(1.0)
                    last = load.last_from(b.id, t0)
                    del_ms.append(max(0.0, (last - t0) * 1000) if last else 0.0)
                    del_ack_ms.append(max(0.0, (last - ta) * 1000) if last else 0.0)
                    commit_ms.append((ta - t0) * 1000)
                    free.append(b)
                    time.sleep(0.2)
            recs = load.snapshot()
        finally:
            load.stop()
        failed = [r for r in recs if r[1] != 200]
        return {"put_ms": put_ms, "del_ms": del_ms, "put_ack_ms": put_ack_ms,
                "del_ack_ms": del_ack_ms, "commit_ms": commit_ms,
                "requests": len(recs), "failed": len(failed),
                "duration": (recs[-1][0] - recs[0][0]) if recs else 0}

    # ---- (b) -------------------------------------------------------------------------------
    def churn(self, mode):
        a = self.args
        instances = []  # (backend, registrant), oldest first
        serial = [0]

        def join():
            b = self.backend(f"{mode[0]}{serial[0]:03d}")
            serial[0] += 1
            # Default key: a random UUID, as real instances do (keys are not in start order).
            argv = [h.sluice_bin(), "register", "--etcd", self.etcd.endpoint, "--prefix",
                    "/nodes/", "--address", b.address, "--ttl", str(a.ttl)]
            r = self.spawn(h.Process, argv, f"register {b.id}")
            r.wait_for_line(r"^registered ", which="stdout")
            instances.append((b, r))

        for _ in range(4):
            join()
        load = Load(self.port, a.rate, a.clients)
        try:
            self.wait_set(load, {b.id for b, _ in instances})
            t_start = time.monotonic()
            for sec in range(a.churn_seconds):
                tick = t_start + sec
                now = time.monotonic()
                if tick > now:
                    time.sleep(tick - now)
                join()
                b, r = instances.pop(0)
                if mode == "graceful":
                    self.forget(r)  # SIGTERM: deletes the key and revokes the lease, then exits
                    self.forget(b)
                else:
                    r.signal(signal.SIGKILL)
                    b.signal(signal.SIGKILL)
                    self.forget(r)
                    self.forget(b)
            t_end = time.monotonic()
            time.sleep(a.ttl + 1.0)  # let the last killed keys expire under load too
            recs = load.snapshot()
        finally:
            load.stop()
        window = [r for r in recs if t_start <= r[0]]
        failed = [r for r in window if r[1] != 200]
        reasons = {}
        for r in failed:
            key = f"HTTP {r[1]}" if r[1] else r[2].split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        return {"requests": len(window), "failed": len(failed), "reasons": reasons,
                "duration": (window[-1][0] - t_start) if window else 0,
                "churn_duration": t_end - t_start, "first_failures": failed[:5]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--churn-seconds", type=int, default=30)
    p.add_argument("--rate", type=int, default=800, help="requests/s, all clients together")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ttl", type=int, default=2, help="lease TTL of churned registrants")
    p.add_argument("--cluster", default="{}",
                   help='more keys for the cluster, as JSON, e.g. \'{"outlier": {}}\'')
    p.add_argument("--verbose", action="store_true", help="print the end of sluice's log")
    p.add_argument("--only", choices=["propagation", "graceful", "kill"], action="append")
    a = p.parse_args()
    parts = a.only or ["propagation", "graceful", "kill"]
    print(f"# sluice {h.sluice_bin()}, workers {a.workers}, load {a.rate} req/s over "
          f"{a.clients} keep-alive connections")
    for part in parts:
        bench = Bench(a)
        try:
            if part == "propagation":
                r = bench.propagation()
                put, dele = r["put_ms"], r["del_ms"]
                print(f"propagation: {len(put)} puts, {len(dele)} deletes; "
                      f"{r['requests']} requests in {r['duration']:.1f}s, {r['failed']} failed")
                for name, v in (("put sent -> first response from the new backend", put),
                                ("put acknowledged -> first response from the new backend",
                                 r["put_ack_ms"]),
                                ("delete sent -> last response from the old backend", dele),
                                ("delete acknowledged -> last response from the old backend",
                                 r["del_ack_ms"]),
                                ("(etcd: delete sent -> acknowledged)", r["commit_ms"])):
                    print(f"  {name}: p50 {pct(v, 50):.1f} ms, p99 {pct(v, 99):.1f} ms, "
                          f"max {max(v):.1f} ms, mean {statistics.mean(v):.1f} ms")
            else:
                r = bench.churn(part)
                print(f"churn {part}: {a.churn_seconds} joins + {a.churn_seconds} leaves in "
                      f"{r['churn_duration']:.1f}s (ttl {a.ttl}s); {r['requests']} requests in "
                      f"{r['duration']:.1f}s, {r['failed']} failed {r['reasons'] or ''}")
                for f in r["first_failures"]:
                    print(f"  failure: {f}")
            if a.verbose:
                lines = bench.sluice.lines()
                refused = [l for l in lines if "connect failed" in l]
                other = [l for l in lines if "connect failed" not in l]
                print(f"  sluice log: {len(refused)} 'connect failed' lines; the others:")
                print("\n".join("    " + l for l in other[-60:]))
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
