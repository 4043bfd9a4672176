#!/usr/bin/python3
"""Helpers for tests/bench/http1.sh (standard library only).

  bench_util.py free-port
  bench_util.py wrk-median FILE...            -> "RPS P50_MS P99_MS ERRORS REQ_PER_CPU_S" (medians;
                                                 errors summed; the last from FILE.cpu, "-" if absent)
  bench_util.py cpu-seconds PID [--children]  -> user + system CPU seconds used so far by PID (or by
                                                 its children: nginx's workers)
  bench_util.py rss PID [--children]          -> resident KiB of PID (or of its children)
  bench_util.py idle-mem PORT CONNS PID [--children]
                                              -> "BYTES_PER_CONN RSS_BEFORE_KIB RSS_AFTER_KIB"
  bench_util.py report RESULTS_FILE           -> aligned table + markdown table

RESULTS_FILE lines: proxy workers rps p50_ms p99_ms errors bytes_per_idle_conn req_per_cpu_s
("-" = not measured)
"""
import os
import re
import resource
import socket
import statistics
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_latency(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise ValueError("bad latency %r" % text)
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(path):
    rps = p50 = p99 = None
    requests = None
    errors = 0
    with open(path) as f:
        for line in f:
            line = line.strip()
            m = re.match(r"Requests/sec:\s+([\d.]+)", line)
            if m:
                rps = float(m.group(1))
            m = re.match(r"(\d+) requests in ", line)
            if m:
                requests = int(m.group(1))
            m = re.match(r"50(?:\.000)?%\s+(\S+)", line)
            if m:
                p50 = parse_latency(m.group(1))
            m = re.match(r"99(?:\.000)?%\s+(\S+)", line)
            if m:
                p99 = parse_latency(m.group(1))
            m = re.match(r"Non-2xx or 3xx responses:\s+(\d+)", line)
            if m:
                errors += int(m.group(1))
            m = re.match(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", line)
            if m:
                errors += sum(int(x) for x in m.groups())
    if rps is None or p50 is None or p99 is None or requests is None:
        raise ValueError("%s: not a wrk --latency report" % path)
    return rps, p50, p99, errors, requests


def req_per_cpu(path, requests):
    """Requests per CPU-second of the proxy in one run: FILE.cpu holds its CPU seconds."""
    try:
        with open(path + ".cpu") as f:
            cpu = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return requests / cpu if cpu > 0 else None


def wrk_median(paths):
    runs = [parse_wrk(p) for p in paths]
    rps = statistics.median(r[0] for r in runs)
    p50 = statistics.median(r[1] for r in runs)
    p99 = statistics.median(r[2] for r in runs)
    errors = sum(r[3] for r in runs)
    per_cpu = [v for v in (req_per_cpu(p, r[4]) for p, r in zip(paths, runs)) if v is not None]
    rpc = "%.0f" % statistics.median(per_cpu) if len(per_cpu) == len(runs) else "-"
    print("%.0f %.3f %.3f %d %s" % (rps, p50, p99, errors, rpc))


def cpu_seconds(pids):
    ticks = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (all threads)
    return ticks / float(os.sysconf("SC_CLK_TCK"))


def children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def measured_pids(pid, children):
    if not children:
        return [pid]
    kids = children_of(pid)
    if not kids:
        raise SystemExit("bench_util: process %d has no children to measure" % pid)
    return kids


def read_response(sock):
    """Reads one response with Content-Length (what the proxies relay for GET /)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise ConnectionError("unexpected status %r" % status)
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        body += chunk


def idle_mem(port, conns, pid, children):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < conns + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, conns + 1024), hard))
    pids = measured_pids(pid, children)
    time.sleep(0.5)
    before = rss_kib(pids)
    socks = []
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench-idle\r\n\r\n"
    try:
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(request)
            read_response(s)
            socks.append(s)
        time.sleep(1.0)  # let every worker settle
        alive = 0
        for s in socks:
            # A connection the proxy already closed would read EOF; count live ones.
            s.setblocking(False)
            try:
                alive += 0 if s.recv(1) == b"" else 1
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        if alive != conns:
            raise SystemExit("bench_util: only %d of %d idle connections stayed open" % (alive, conns))
        after = rss_kib(measured_pids(pid, children))
    finally:
        for s in socks:
            s.close()
    print("%.0f %d %d" % (max(0, after - before) * 1024.0 / conns, before, after))


def fmt(value, kind):
    if value == "-":
        return "-"
    v = float(value)
    if kind == "rps":
        return "{:,.0f}".format(v)
    if kind == "ms":
        return "%.2f ms" % v
    if kind == "bytes":
        return "%.1f KiB" % (v / 1024.0)
    return value


def report(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 7:
                parts.append("-")
            if len(parts) == 8:
                rows.append(parts)
    if not rows:
        print("no results")
        return
    by = {(r[0], r[1]): r for r in rows}
    workers = sorted({r[1] for r in rows}, key=int)

    header = ["proxy", "workers", "req/s (median)", "p50", "p99", "errors", "memory / idle conn",
              "req/CPU-s"]
    table = [[r[0], r[1], fmt(r[2], "rps"), fmt(r[3], "ms"), fmt(r[4], "ms"), r[5],
              fmt(r[6], "bytes"), fmt(r[7], "rps")] for r in rows]

    ratio_header = ["workers", "sluice/nginx req/s", "sluice/haproxy req/s",
                    "sluice/nginx p99", "sluice/haproxy p99",
                    "sluice/nginx per CPU", "sluice/haproxy per CPU"]
    ratios = []
    for w in workers:
        s = by.get(("sluice", w))
        row = [w]
        for col in (2, 4, 7):
            for other in ("nginx", "haproxy"):
                o = by.get((other, w))
                if s and o and s[col] != "-" and o[col] != "-" and float(o[col]) > 0:
                    row.append("%.2f" % (float(s[col]) / float(o[col])))
                else:
                    row.append("-")
        ratios.append(row)

    def aligned(h, body):
        widths = [max(len(str(x)) for x in col) for col in zip(h, *body)]
        def just(row):
            return "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)
                             for i, (x, w) in enumerate(zip(row, widths)))
        lines = [just(h)]
        lines += [just(r) for r in body]
        return "\n".join(lines)

    def markdown(h, body):
        lines = ["| " + " | ".join(h) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(h))) + "|"]
        lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in body]
        return "\n".join(lines)

    print(aligned(header, table))
    print()
    print(aligned(ratio_header, ratios))
    print()
    print("Markdown (for docs/performance.md):")
    print()
    print(markdown(header, table))
    print()
    print(markdown(ratio_header, ratios))


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd = argv[1]
    if cmd == "free-port":
        print(free_port())
    elif cmd == "wrk-median":
        wrk_median(argv[2:])
    elif cmd == "cpu-seconds":
        print("%.2f" % cpu_seconds(measured_pids(int(argv[2]), "--children" in argv)))
    elif cmd == "rss":
        print(rss_kib(measured_pids(int(argv[2]), "--children" in argv)))
    elif cmd == "idle-mem":
        idle_mem(int(argv[2]), int(argv[3]), int(argv[4]), "--children" in argv)
    elif cmd == "report":
        report(argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
