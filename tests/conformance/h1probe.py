#!/usr/bin/python3
"""HTTP/1.1 conformance probe: sends the same raw requests to several servers and grades each
answer PASS, WARN or FAIL (standard library only).

The cases follow the catalogue and the scoring rules of the public Http11Probe suite
(categories Compliance, Smuggling, MalformedInput, Normalization, Cookies, Capabilities; each
case scored or unscored), and so does the client timing that decides whether the server closed
the connection: read until the end of the head, wait 100 ms, drain what arrived, wait 50 ms,
peek for EOF. The code is sluice's own.

  h1probe.py --target NAME=PORT --target NAME=PORT [--target NAME=PORT ...]
             [--json FILE] [--fail-if-worse] [--only ID[,ID...]] [--timeout 5] [--host localhost]
  h1probe.py --list

Targets listen on 127.0.0.1. The first is the subject, the second the baseline; others only
add a column. Targets are probed concurrently (one thread each), cases one after the other, each
on a new connection. Prints the per-case table, the counts per target, the cases where the
subject does worse than the baseline and the cases the subject does not PASS.

Normalization, Cookies and Capabilities cases (and a few Compliance ones) are only meaningful
when the upstream behind the proxy follows the suite's conventions: tests/conformance/
echo_upstream.py does. Exit status: 0; 1 with --fail-if-worse when the subject does worse than
the baseline on a scored case; 2 on a usage error or when a target does not accept connections.
"""
import argparse
import json
import re
import select
import socket
import sys
import threading
import time

PASS, WARN, FAIL, ERROR = "PASS", "WARN", "FAIL", "ERROR"
RANK = {PASS: 2, WARN: 1, FAIL: 0, ERROR: 0, None: -1}  # "worse than the baseline" compares these
# What the connection did after the answer (or instead of one).
OPEN, CLOSED, TIMEDOUT, ERR = "open", "closed", "timeout", "error"


# ---------------------------------------------------------------------------------------
# Response parsing (mirrors the suite's lenient parser: first line, headers, body text)

class Resp:
    def __init__(self, status, reason, version, headers, body, raw, rawbytes):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers  # lower-case name -> joined value
        self.body = body        # text after first CRLFCRLF (<= 4096 chars) or None
        self.raw = raw          # text, <= 8192 chars
        self.rawbytes = rawbytes

    def has(self, name):
        return name.lower() in self.headers

    def get(self, name):
        return self.headers.get(name.lower())


def parse_response(data):
    if not data:
        return None
    text = data.decode("latin-1")
    le = text.find("\n")
    if le < 0:
        return None
    status_line = text[:le].rstrip("\r")
    sp = status_line.find(" ")
    if sp < 0:
        return None
    version = status_line[:sp]
    rest = status_line[sp + 1:]
    sp2 = rest.find(" ")
    code_s, reason = (rest[:sp2], rest[sp2 + 1:]) if sp2 >= 0 else (rest, "")
    try:
        code = int(code_s.strip())
    except ValueError:
        return None
    if not re.fullmatch(r"\s*[+-]?\d+\s*", code_s):
        return None
    headers = {}
    pos = le + 1
    while pos < len(text):
        nl = text.find("\n", pos)
        if nl < 0:
            nl = len(text)
        line = text[pos:nl].rstrip("\r")
        if line == "":
            break
        ci = line.find(":")
        if ci > 0:
            n = line[:ci].strip().lower()
            v = line[ci + 1:].strip()
            headers[n] = headers[n] + ", " + v if n in headers else v
        pos = nl + 1
    body = None
    he = text.find("\r\n\r\n")
    if he >= 0 and he + 4 < len(text):
        body = text[he + 4:][:4096]
    return Resp(code, reason, version, headers, body, text[:8192], data)


# ---------------------------------------------------------------------------------------
# Client with the suite's timing

class Client:
    def __init__(self, port, timeout):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def read_response(self):
        """-> (bytes, state). state: open / closed / timeout / error."""
        buf = b""
        end = time.monotonic() + self.timeout
        try:
            while len(buf) < 128 * 1024:
                left = end - time.monotonic()
                if left <= 0:
                    return buf, TIMEDOUT
                self.sock.settimeout(left)
                try:
                    d = self.sock.recv(128 * 1024 - len(buf))
                except socket.timeout:
                    return buf, TIMEDOUT
                if not d:
                    return buf, CLOSED
                buf += d
                if b"\r\n\r\n" in buf:
                    break
            time.sleep(0.1)
            # drain what is already there
            while len(buf) < 128 * 1024:
                r, _, _ = select.select([self.sock], [], [], 0)
                if not r:
                    break
                self.sock.settimeout(self.timeout)
                d = self.sock.recv(128 * 1024 - len(buf))
                if not d:
                    break
                buf += d
            return buf, OPEN
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return buf, CLOSED
        except OSError:
            return buf, ERR

    def check_state(self):
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
            if r:
                d = self.sock.recv(1, socket.MSG_PEEK)
                return CLOSED if not d else OPEN
            return OPEN
        except OSError:
            return CLOSED

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------------------------------
# Validators (same rules as the suite)

def is2xx(r):
    return r is not None and 200 <= r.status < 300


def v_exact(code, allow_close=False):
    def f(r, st):
        if allow_close and st == CLOSED and r is None:
            return PASS
        if r is None:
            return PASS if allow_close else FAIL
        return PASS if r.status == code else FAIL
    return f


V400C = v_exact(400, True)   # "400 or close" (ExpectedStatus=400, AllowConnectionClose)
V400 = v_exact(400, False)   # strict 400, a bare close fails


def v_2xx(allow_close=False):
    def f(r, st):
        if r is None:
            return PASS if allow_close else FAIL
        return PASS if is2xx(r) else FAIL
    return f


def v_400_warn2xx(r, st):
    if r is None:
        return PASS if st == CLOSED else FAIL
    if r.status == 400:
        return PASS
    if is2xx(r):
        return WARN
    return FAIL


def v_codes_close(*codes):
    def f(r, st):
        if r is None:
            return PASS if st == CLOSED else FAIL
        return PASS if r.status in codes else FAIL
    return f


def v_400_or_wait(r, st):
    if r is not None:
        return PASS if r.status == 400 else FAIL
    return PASS if st in (TIMEDOUT, CLOSED) else FAIL


def v_codes_or_wait(*codes):
    def f(r, st):
        if r is None:
            return PASS if st in (CLOSED, TIMEDOUT) else FAIL
        return PASS if r.status in codes else FAIL
    return f


def v_state_first(*codes):
    def f(r, st):
        if st in (TIMEDOUT, CLOSED):
            return PASS
        if r is not None and r.status in codes:
            return PASS
        return FAIL
    return f


def v_not101(r, st):
    if r is None:
        return PASS if st == CLOSED else FAIL
    return FAIL if r.status == 101 else PASS


def v_warn_codes(pass_codes, warn_codes=()):
    """PASS codes or close; WARN codes or 2xx; anything else FAIL."""
    def f(r, st):
        if r is None:
            return PASS if st == CLOSED else FAIL
        if r.status in pass_codes:
            return PASS
        if r.status in warn_codes:
            return WARN
        if is2xx(r):
            return WARN
        return FAIL
    return f


def decode_chunked(raw):
    out = ""
    pos = 0
    while pos < len(raw):
        le = raw.find("\r\n", pos)
        if le < 0:
            return None
        line = raw[pos:le].split(";")[0].strip()
        try:
            n = int(line, 16)
        except ValueError:
            return None
        if n == 0:
            break
        ds = le + 2
        de = ds + n
        if de > len(raw):
            return None
        out += raw[ds:de]
        pos = de
        if raw[pos:pos + 2] == "\r\n":
            pos += 2
        elif pos < len(raw):
            pos += 1
    return out


def eff_body(r):
    raw = r.body or ""
    te = r.get("transfer-encoding")
    if te and "chunked" in te.lower():
        d = decode_chunked(raw)
        if d is not None:
            return d
    return raw.rstrip("\r\n")


def v_echo(expected):
    def f(r, st):
        if r is None or not is2xx(r):
            return FAIL
        b = eff_body(r)
        return PASS if b == expected or b == "OK" else FAIL
    return f


def v_chunk_ext(r, st):
    if r is None:
        return WARN if st == CLOSED else FAIL
    if r.status == 400:
        return WARN
    if is2xx(r):
        b = eff_body(r)
        return PASS if b in ("hello", "OK") else FAIL
    return FAIL


def v_te_close_warn(allow_501):
    def f(r, st):
        if r is None:
            return PASS if st == CLOSED else FAIL
        if r.status == 400 or (allow_501 and r.status == 501):
            return PASS
        if is2xx(r):
            return WARN if st == CLOSED else FAIL
        return FAIL
    return f


def v_pipeline(r, st):
    if r is not None and r.status == 400:
        return PASS
    if st == CLOSED:
        return PASS
    if is2xx(r):
        return WARN
    return FAIL


def v_absolute_form(r, st):
    if r is None:
        return WARN if st == CLOSED else FAIL
    if is2xx(r):
        return PASS
    if r.status == 400:
        return WARN
    return FAIL


def v_get_cl_body(r, st):
    if r is None:
        return PASS if st == CLOSED else FAIL
    return PASS if r.status == 400 else WARN


def v_upgrade_invalid_ver(r, st):
    if r is None:
        return PASS if st == CLOSED else FAIL
    if r.status == 101:
        return FAIL
    if r.status == 426:
        return PASS
    if is2xx(r):
        return WARN
    return PASS


def v_conn_close(r, st):
    if r is None or not is2xx(r):
        return FAIL
    return PASS if st == CLOSED else FAIL


def v_http10_close(r, st):
    if r is None or not is2xx(r):
        return FAIL
    return PASS if st == CLOSED else WARN


def v_http10_nohost(r, st):
    if r is None:
        return PASS if st == CLOSED else FAIL
    if is2xx(r):
        return WARN
    return PASS if r.status == 400 else FAIL


def v_http12(r, st):
    if r is None:
        return PASS if st == CLOSED else FAIL
    return WARN if (is2xx(r) or r.status == 505) else FAIL


def v_range_post(r, st):
    if r is None or r.status == 206:
        return FAIL
    return PASS if is2xx(r) else FAIL


def v_head_no_body(r, st):
    if r is None or not is2xx(r):
        return FAIL
    return PASS if not r.body else FAIL


def v_405_allow(r, st):
    if r is None:
        return FAIL
    if r.status == 405:
        return PASS if r.has("allow") else FAIL
    return WARN


def v_date(r, st):
    if r is None or not is2xx(r):
        return FAIL
    return PASS if r.has("date") else FAIL


def v_date_format(r, st):
    if r is None or not is2xx(r):
        return FAIL
    d = r.get("date")
    if d is None:
        return WARN
    try:
        time.strptime(d.strip(), "%a, %d %b %Y %H:%M:%S GMT")
        return PASS
    except ValueError:
        return WARN


def v_no1xx(r, st):
    if r is None:
        return PASS if st in (CLOSED, TIMEDOUT) else FAIL
    return FAIL if 100 <= r.status < 200 else PASS


def v_no_cl_204(r, st):
    if r is None:
        return FAIL
    if r.status == 204:
        return FAIL if r.has("content-length") else PASS
    return WARN


def v_hdr_present(name):
    def f(r, st):
        if r is None or not is2xx(r):
            return FAIL
        return PASS if r.has(name) else WARN
    return f


def v_long_url_ok(r, st):
    if r is None:
        return WARN if st == CLOSED else FAIL
    return FAIL if r.status == 414 else PASS


def v_trace_sensitive(r, st):
    if r is None:
        return PASS if st == CLOSED else FAIL
    if r.status in (405, 501):
        return PASS
    if is2xx(r):
        return WARN if "secret-token-123" in (r.body or "").lower() else PASS
    return FAIL


def v_range_invalid(r, st):
    if r is None:
        return WARN if st == CLOSED else FAIL
    if is2xx(r) and r.status != 206:
        return PASS
    if r.status == 416:
        return PASS
    return WARN


def v_accept_nonsense(r, st):
    if r is None:
        return WARN if st == CLOSED else FAIL
    if r.status == 406:
        return PASS
    return WARN if is2xx(r) else FAIL


def v_unsupported_ct(r, st):
    if r is None:
        return WARN if st == CLOSED else FAIL
    if r.status == 415 or is2xx(r):
        return PASS
    return WARN


def v_any_warn(r, st):
    return WARN


# Cookies
def v_cook_echo(r, st):
    if r is None:
        return WARN if st == CLOSED else FAIL
    if not is2xx(r):
        return FAIL
    return PASS if "cookie:" in (r.body or "").lower() else FAIL


def v_cook_codes(*codes):
    def f(r, st):
        if r is None:
            return PASS if st == CLOSED else FAIL
        if r.status in codes or is2xx(r):
            return PASS
        return FAIL
    return f


def v_cook_nochar(chars):
    def f(r, st):
        if r is None:
            return PASS if st == CLOSED else FAIL
        if r.status == 400:
            return PASS
        if is2xx(r):
            return FAIL if any(c in (r.body or "") for c in chars) else PASS
        return FAIL
    return f


def v_cook_multi(r, st):
    if r is None:
        return WARN if st == CLOSED else FAIL
    if is2xx(r):
        b = r.body or ""
        return PASS if ("a=1" in b and "b=2" in b) else WARN
    if r.status == 400:
        return WARN
    return FAIL


def v_cook_parsed(*pairs):
    def f(r, st):
        if r is None:
            return WARN if st == CLOSED else FAIL
        if r.status == 404:
            return WARN
        if is2xx(r):
            b = r.body or ""
            return PASS if all(p in b for p in pairs) else FAIL
        if r.status == 400:
            return WARN
        return FAIL
    return f


def v_cook_parsed_nocrash(r, st):
    if r is None:
        return WARN if st == CLOSED else FAIL
    if r.status == 404:
        return WARN
    if is2xx(r) or r.status == 400:
        return PASS
    return FAIL


# Normalization: the upstream's /echo lists the headers it received. A malformed header name
# that the proxy rejected or dropped passes; renamed to the standard name (normalized), it fails;
# forwarded as it came, it warns.
def parse_echo_headers(body):
    res = {}
    for line in body.split("\n"):
        if not line:
            continue
        ci = line.find(":")
        if ci <= 0:
            continue
        res.setdefault(line[:ci], []).append(line[ci + 1:].lstrip().rstrip("\r"))
    return res


def v_norm(std, bad, val):
    def f(r, st):
        if r is None:
            return PASS if st == CLOSED else FAIL
        if r.status >= 400:
            return PASS
        if is2xx(r):
            body = r.body or ""
            if not body.strip() or ":" not in body:
                return PASS
            hs = parse_echo_headers(body)
            for n, vs in hs.items():
                if not any(v.lower() == val.lower() for v in vs):
                    continue
                if n.lower() == std.lower() and n.lower() != bad.lower():
                    return FAIL
            for n, vs in hs.items():
                if any(v.lower() == val.lower() for v in vs) and n.lower() == bad.lower():
                    return WARN
            return PASS
        return FAIL
    return f


def v_norm_case(std, orig, val):
    def f(r, st):
        if r is None:
            return PASS if st == CLOSED else FAIL
        if r.status >= 400:
            return PASS
        if is2xx(r):
            body = r.body or ""
            if not body.strip() or ":" not in body:
                return PASS
            for n, vs in parse_echo_headers(body).items():
                if not any(v.lower() == val.lower() for v in vs):
                    continue
                if n == orig:
                    return WARN
                if n.lower() == std.lower():
                    return FAIL
            return PASS
        return FAIL
    return f


# ---------------------------------------------------------------------------------------
# Sequence validators

def count_status_lines(raw):
    return len(re.findall(r"HTTP/\d\.\d \d\d\d", raw or ""))


def sv_must_close(steps):
    s1, s2 = steps[0], steps[1]
    if s1["resp"] is not None and s1["resp"].status == 400:
        return PASS
    if not s1["executed"] or s1["state"] == CLOSED:
        return PASS
    if is2xx(s1["resp"]):
        return PASS if not s2["executed"] else FAIL
    return FAIL


def sv_smuggled(steps):
    s1 = steps[0]
    raw = s1["resp"].raw if s1["resp"] is not None else ""
    if count_status_lines(raw) >= 2:
        return FAIL
    if s1["resp"] is not None and s1["resp"].status == 400:
        return PASS
    if not s1["executed"] or s1["state"] == CLOSED:
        return PASS
    return FAIL


def sv_prefix_desync(steps):
    s1, s2 = steps[0], steps[1]
    if s1["resp"] is not None and s1["resp"].status == 400:
        return PASS
    if not s1["executed"] or s1["state"] == CLOSED:
        return PASS
    if is2xx(s1["resp"]):
        if not s2["executed"]:
            return PASS
        if count_status_lines(s2["resp"].raw if s2["resp"] else "") >= 2:
            return WARN
        if s2["resp"] is not None and (s2["resp"].status == 400 or is2xx(s2["resp"])):
            return PASS
        return WARN
    return WARN


def sv_poison(ok2=False, first_pass=(400,), tail=FAIL):
    def f(steps):
        s1, s2 = steps[0], steps[1]
        if s1["resp"] is not None and s1["resp"].status in first_pass:
            return PASS
        if not s1["executed"] or s1["state"] == CLOSED:
            return PASS
        if is2xx(s1["resp"]):
            if not s2["executed"]:
                return PASS
            if s2["resp"] is not None and s2["resp"].status == 400:
                return WARN
            if ok2 and is2xx(s2["resp"]):
                return PASS
            return WARN
        return tail
    return f


def sv_pipeline_safe(steps):
    s1, s2 = steps[0], steps[1]
    if not is2xx(s1["resp"]):
        return FAIL
    if not s2["executed"]:
        return WARN
    return PASS if is2xx(s2["resp"]) else WARN


def cap_get_hdr(step, name):
    r = step["resp"]
    return r.get(name) if r is not None else None


def sv_cap(kind):
    def f(steps):
        s1, s2 = steps[0], steps[1]
        if not s1["executed"] or s1["resp"] is None or not is2xx(s1["resp"]):
            return ERROR
        if kind in ("etag", "inm-prec", "etag-weak", "inm-unquoted", "etag-in-304"):
            if cap_get_hdr(s1, "etag") is None:
                return WARN
        if kind == "lm" and cap_get_hdr(s1, "last-modified") is None:
            return WARN
        if not s2["executed"] or s2["resp"] is None:
            return WARN
        c = s2["resp"].status
        if kind in ("etag", "lm", "inm-prec", "inm-wild", "etag-weak"):
            if c == 304:
                return PASS
            return WARN if is2xx(s2["resp"]) else FAIL
        if kind == "etag-in-304":
            if c != 304:
                return WARN
            return PASS if cap_get_hdr(s2, "etag") is not None else WARN
        if kind in ("ims-future", "ims-invalid", "inm-unquoted"):
            if is2xx(s2["resp"]):
                return PASS
            return WARN if c == 304 else FAIL
        return FAIL
    return f


# ---------------------------------------------------------------------------------------
# MAL-BINARY-GARBAGE sends the 256 bytes of .NET's new Random(42).NextBytes(buffer): the
# legacy subtractive generator, reproduced here so that the bytes are the same.

def dotnet_random_bytes(seed, n):
    MBIG, MSEED = 2147483647, 161803398
    sa = [0] * 56
    sub = MBIG if seed == -2147483648 else abs(seed)
    mj = MSEED - sub
    sa[55] = mj
    mk = 1
    for i in range(1, 55):
        ii = (21 * i) % 55
        sa[ii] = mk
        mk = mj - mk
        if mk < 0:
            mk += MBIG
        mj = sa[ii]
    for _ in range(1, 5):
        for i in range(1, 56):
            sa[i] -= sa[1 + (i + 30) % 55]
            if sa[i] < 0:
                sa[i] += MBIG
    inext, inextp = 0, 21
    out = bytearray()
    for _ in range(n):
        inext = 1 if inext + 1 >= 56 else inext + 1
        inextp = 1 if inextp + 1 >= 56 else inextp + 1
        rv = sa[inext] - sa[inextp]
        if rv == MBIG:
            rv -= 1
        if rv < 0:
            rv += MBIG
        sa[inext] = rv
        out.append(rv & 0xFF)
    return bytes(out)


# ---------------------------------------------------------------------------------------
# Case catalogue

CASES = []


def case(cid, cat, payload, validator, expect, scored=True, upstream=False):
    """One request on a new connection. payload(host) -> bytes; validator(resp, state)."""
    CASES.append(dict(id=cid, cat=cat, kind="single", payload=payload, validator=validator,
                      expect=expect, scored=scored, upstream=upstream))


def seq(cid, cat, steps, validator, expect, scored=True, upstream=False):
    """Requests one after the other on one connection, while it stays open. A step is
    payload(host), or ("dyn", f) with f(host, previous_steps); validator(steps)."""
    CASES.append(dict(id=cid, cat=cat, kind="seq", steps=steps, validator=validator,
                      expect=expect, scored=scored, upstream=upstream))


def B(s):
    return s.encode("latin-1")


def req(fmt):
    """Payload from a template: {h} is replaced by the Host header value."""
    return lambda h: B(fmt.replace("{h}", h))


def build_cases():
    W = v_400_warn2xx
    C = "Compliance"
    # ---- Compliance
    case("COMP-BASELINE", C, req("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n"), v_2xx(), "2xx")
    case("RFC9112-2.2-BARE-LF-REQUEST-LINE", C, req("GET / HTTP/1.1\nHost: {h}\r\n\r\n"), W,
         "400/close pass, 2xx warn")
    case("RFC9112-2.2-BARE-LF-HEADER", C, req("GET / HTTP/1.1\r\nHost: {h}\nX-Test: value\r\n\r\n"),
         W, "400/close pass, 2xx warn")
    case("RFC9112-5.1-OBS-FOLD", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nX-Test: value\r\n continued\r\n\r\n"), V400,
         "400 (close alone fails)")
    case("RFC9110-5.6.2-SP-BEFORE-COLON", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nX-Test : value\r\n\r\n"), V400,
         "400 (close alone fails)")
    case("RFC9112-3-MULTI-SP-REQUEST-LINE", C, req("GET  / HTTP/1.1\r\nHost: {h}\r\n\r\n"), W,
         "400/close pass, 2xx warn")
    case("RFC9112-7.1-MISSING-HOST", C, req("GET / HTTP/1.1\r\n\r\n"), V400,
         "400 (close alone fails)")
    case("RFC9112-2.3-INVALID-VERSION", C, req("GET / HTTP/9.9\r\nHost: {h}\r\n\r\n"),
         v_codes_close(400, 505), "400/505/close")
    case("RFC9112-5-EMPTY-HEADER-NAME", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\n: empty-name\r\n\r\n"), V400C, "400 or close")
    case("RFC9112-3-CR-ONLY-LINE-ENDING", C, req("GET / HTTP/1.1\rHost: {h}\r\n\r\n"), V400,
         "400 (close alone fails)")
    case("RFC9112-3-MISSING-TARGET", C, req("GET HTTP/1.1\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("RFC9112-3.2-FRAGMENT-IN-TARGET", C, req("GET /path#frag HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         W, "400/close pass, 2xx warn")
    case("RFC9112-2.3-HTTP09-REQUEST", C, req("GET /\r\n"), v_400_or_wait, "400/close/timeout")
    case("RFC9112-5-INVALID-HEADER-NAME", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nBad[Name: value\r\n\r\n"), V400C, "400 or close")
    case("RFC9112-5-HEADER-NO-COLON", C, req("GET / HTTP/1.1\r\nHost: {h}\r\nNoColonHere\r\n\r\n"),
         V400C, "400 or close")
    case("RFC9110-5.4-DUPLICATE-HOST", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nHost: other.example.com\r\n\r\n"), V400,
         "400 (close alone fails)")
    case("RFC9112-6.1-CL-NON-NUMERIC", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: abc\r\n\r\n"), V400C, "400 or close")
    case("RFC9112-6.1-CL-PLUS-SIGN", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: +5\r\n\r\nhello"), V400C,
         "400 or close")
    case("COMP-WHITESPACE-BEFORE-HEADERS", C, req("GET / HTTP/1.1\r\n \r\nHost: {h}\r\n\r\n"),
         V400C, "400 or close")
    case("COMP-DUPLICATE-HOST-SAME", C, req("GET / HTTP/1.1\r\nHost: {h}\r\nHost: {h}\r\n\r\n"),
         V400, "400 (close alone fails)")
    case("COMP-HOST-WITH-USERINFO", C, req("GET / HTTP/1.1\r\nHost: user@{h}\r\n\r\n"), V400C,
         "400 or close")
    case("COMP-HOST-WITH-PATH", C, req("GET / HTTP/1.1\r\nHost: {h}/path\r\n\r\n"), V400C,
         "400 or close")
    case("COMP-ASTERISK-WITH-GET", C, req("GET * HTTP/1.1\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("COMP-OPTIONS-STAR", C, req("OPTIONS * HTTP/1.1\r\nHost: {h}\r\n\r\n"), v_2xx(), "2xx",
         upstream=True)
    case("COMP-UNKNOWN-TE-501", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: gzip\r\n\r\n"),
         v_codes_close(400, 501), "400/501/close")
    case("COMP-LEADING-CRLF", C, req("\r\n\r\nGET / HTTP/1.1\r\nHost: {h}\r\n\r\n"), W,
         "400/close pass, 2xx warn")
    case("COMP-ABSOLUTE-FORM", C, req("GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         v_absolute_form, "2xx pass, 400/close warn", scored=False)
    case("COMP-METHOD-CASE", C, req("get / HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         v_warn_codes((400, 405, 501)), "400/405/501/close pass, 2xx warn")
    case("COMP-POST-CL-BODY", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\r\nhello"), v_echo("hello"),
         "2xx + body 'hello' or 'OK'", upstream=True)
    case("COMP-POST-CL-ZERO", C, req("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\n\r\n"),
         v_2xx(True), "2xx or close")
    case("COMP-POST-NO-CL-NO-TE", C, req("POST / HTTP/1.1\r\nHost: {h}\r\n\r\n"), v_2xx(True),
         "2xx or close")
    case("COMP-POST-CL-UNDERSEND", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 10\r\n\r\nhello"), v_400_or_wait,
         "400/close/timeout")
    case("COMP-CHUNKED-BODY", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
             "0\r\n\r\n"), v_echo("hello"), "2xx + echo/'OK'", upstream=True)
    case("COMP-CHUNKED-MULTI", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
             "6\r\n world\r\n0\r\n\r\n"), v_echo("hello world"), "2xx + echo/'OK'", upstream=True)
    case("COMP-CHUNKED-EMPTY", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
         v_2xx(True), "2xx or close")
    case("COMP-CHUNKED-NO-FINAL", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
         v_400_or_wait, "400/close/timeout")
    ws = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    case("COMP-UPGRADE-POST", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" + ws +
             "Sec-WebSocket-Version: 13\r\n\r\n"), v_not101, "not 101")
    case("COMP-UPGRADE-MISSING-CONN", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nUpgrade: websocket\r\n" + ws +
             "Sec-WebSocket-Version: 13\r\n\r\n"), v_not101, "not 101")
    case("COMP-UPGRADE-UNKNOWN", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nConnection: Upgrade\r\n"
             "Upgrade: totally-made-up/1.0\r\n\r\n"), v_not101, "not 101")
    case("COMP-METHOD-CONNECT", C,
         req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
         v_codes_close(400, 405, 501), "400/405/501/close")
    case("COMP-EXPECT-UNKNOWN", C, req("GET / HTTP/1.1\r\nHost: {h}\r\nExpect: 200-ok\r\n\r\n"),
         v_warn_codes((417,)), "417/close pass, 2xx warn")
    case("COMP-GET-WITH-CL-BODY", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\r\nhello"), v_get_cl_body,
         "400 pass, other warn", scored=False)
    case("COMP-CHUNKED-EXTENSION", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=value\r\n"
             "hello\r\n0\r\n\r\n"), v_chunk_ext, "2xx+echo/'OK' pass; 400/close warn",
         upstream=True)
    case("COMP-UPGRADE-INVALID-VER", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" + ws +
             "Sec-WebSocket-Version: 99\r\n\r\n"), v_upgrade_invalid_ver,
         "non-101 (426 pass, 2xx warn)")
    case("COMP-METHOD-TRACE", C, req("TRACE / HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         v_warn_codes((405, 501)), "405/501 pass, 2xx warn", scored=False)
    case("COMP-HOST-EMPTY-VALUE", C, req("GET / HTTP/1.1\r\nHost: \r\n\r\n"), V400C, "400 or close")
    case("COMP-REQUEST-LINE-TAB", C, req("GET\t/ HTTP/1.1\r\nHost: {h}\r\n\r\n"), W,
         "400/close pass, 2xx warn")
    case("COMP-VERSION-MISSING-MINOR", C, req("GET / HTTP/1\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("COMP-VERSION-LEADING-ZEROS", C, req("GET / HTTP/01.01\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("COMP-VERSION-WHITESPACE", C, req("GET / HTTP/ 1.1\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("COMP-CONNECTION-CLOSE", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"), v_conn_close,
         "2xx + close")
    case("COMP-HTTP10-DEFAULT-CLOSE", C, req("GET / HTTP/1.0\r\nHost: {h}\r\n\r\n"), v_http10_close,
         "2xx + close (open = warn)")
    case("COMP-HTTP10-NO-HOST", C, req("GET / HTTP/1.0\r\n\r\n"), v_http10_nohost,
         "400/close pass, 2xx warn", scored=False)
    case("COMP-HTTP12-VERSION", C, req("GET / HTTP/1.2\r\nHost: {h}\r\n\r\n"), v_http12,
         "2xx/505 warn, close pass", scored=False)
    case("COMP-TRACE-WITH-BODY", C,
         req("TRACE / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\r\nhello"),
         v_warn_codes((400, 405, 501)), "400/405/501 pass, 2xx warn", scored=False)
    case("COMP-CHUNKED-TRAILER-VALID", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
             "0\r\nX-Checksum: abc\r\n\r\n"), v_echo("hello"), "2xx + echo/'OK'", upstream=True)
    case("COMP-CHUNKED-HEX-UPPERCASE", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n"
             "helloworld\r\n0\r\n\r\n"), v_echo("helloworld"), "2xx + echo/'OK'", upstream=True)
    case("COMP-RANGE-POST", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nRange: bytes=0-10\r\n\r\nhello"),
         v_range_post, "2xx not 206")
    case("COMP-UPGRADE-HTTP10", C,
         req("GET / HTTP/1.0\r\nHost: {h}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" + ws +
             "Sec-WebSocket-Version: 13\r\n\r\n"), v_not101, "not 101")
    case("COMP-HEAD-NO-BODY", C, req("HEAD / HTTP/1.1\r\nHost: {h}\r\n\r\n"), v_head_no_body,
         "2xx, no body")
    case("COMP-UNKNOWN-METHOD", C, req("FOOBAR / HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         v_warn_codes((501, 405, 400)), "501/405/400/close pass, 2xx warn", upstream=True)
    case("COMP-405-ALLOW", C, req("DELETE / HTTP/1.1\r\nHost: {h}\r\n\r\n"), v_405_allow,
         "405+Allow pass; non-405 warn", upstream=True)
    case("COMP-DATE-HEADER", C, req("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n"), v_date, "2xx with Date")
    case("COMP-DATE-FORMAT", C, req("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n"), v_date_format,
         "IMF-fixdate (missing = warn)", scored=False)
    case("COMP-NO-1XX-HTTP10", C,
         req("POST / HTTP/1.0\r\nHost: {h}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
             "hello"), v_no1xx, "no 1xx")
    case("COMP-NO-CL-IN-204", C, req("OPTIONS / HTTP/1.1\r\nHost: {h}\r\n\r\n"), v_no_cl_204,
         "204 w/o CL pass; non-204 warn", upstream=True)
    case("COMP-OPTIONS-ALLOW", C, req("OPTIONS / HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         v_hdr_present("allow"), "2xx+Allow pass; no Allow warn", upstream=True)
    case("COMP-CONTENT-TYPE", C, req("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         v_hdr_present("content-type"), "2xx+Content-Type", upstream=True)
    case("COMP-VERSION-CASE", C, req("GET / http/1.1\r\nHost: {h}\r\n\r\n"), V400C, "400 or close")
    case("COMP-LONG-URL-OK", C,
         lambda h: B("GET /" + "a" * 7900 + " HTTP/1.1\r\nHost: " + h + "\r\n\r\n"), v_long_url_ok,
         "not 414 (close = warn)")
    case("COMP-SPACE-IN-TARGET", C, req("GET /pa th HTTP/1.1\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("COMP-DUPLICATE-CT", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n"
             "Content-Type: text/html\r\n\r\nhello"), W, "400/close pass, 2xx warn")
    case("COMP-TRACE-SENSITIVE", C,
         req("TRACE / HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer secret-token-123\r\n\r\n"),
         v_trace_sensitive, "405/501 or 2xx w/o token", scored=False)
    case("COMP-RANGE-INVALID", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nRange: bytes=abc-xyz\r\n\r\n"), v_range_invalid,
         "200/416", scored=False)
    case("COMP-ACCEPT-NONSENSE", C,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nAccept: application/x-nonsense\r\n\r\n"),
         v_accept_nonsense, "406 pass, 2xx warn", scored=False, upstream=True)
    case("COMP-POST-UNSUPPORTED-CT", C,
         req("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n"
             "Content-Type: application/x-nonsense\r\n\r\nhello"), v_unsupported_ct, "415/2xx",
         scored=False)
    case("COMP-CONNECT-EMPTY-PORT", C,
         req("CONNECT localhost: HTTP/1.1\r\nHost: localhost:\r\n\r\n"), V400C, "400 or close")
    case("COMP-CONNECT-ORIGIN-FORM", C, req("CONNECT /path HTTP/1.1\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("COMP-METHOD-CONNECT-NO-PORT", C,
         req("CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"), V400C, "400 or close")

    # ---- Smuggling (single)
    S = "Smuggling"
    P = "POST / HTTP/1.1\r\nHost: {h}\r\n"
    chunked_body = "D\r\nhello-bananas\r\n0\r\n\r\n"
    case("SMUG-CL-TE-BOTH", S,
         req(P + "Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(chunked_body) +
             chunked_body), W, "400/close pass, 2xx warn")
    case("SMUG-DUPLICATE-CL", S,
         req(P + "Content-Length: 5\r\nContent-Length: 10\r\n\r\nhelloworld"), V400C,
         "400 or close")
    case("SMUG-CL-LEADING-ZEROS", S, req(P + "Content-Length: 005\r\n\r\nhello"), W,
         "400/close pass, 2xx warn")
    case("SMUG-TE-XCHUNKED", S,
         req(P + "Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello"),
         v_codes_close(400, 501), "400/501/close")
    case("SMUG-TE-TRAILING-SPACE", S,
         req(P + "Transfer-Encoding: chunked \r\nContent-Length: 5\r\n\r\nhello"),
         v_te_close_warn(True), "400/501/close pass; 2xx+close warn; 2xx open fail")
    case("SMUG-TE-SP-BEFORE-COLON", S,
         req(P + "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello"), V400C,
         "400 or close")
    case("SMUG-CL-NEGATIVE", S, req(P + "Content-Length: -1\r\n\r\n"), V400C, "400 or close")
    case("SMUG-CLTE-PIPELINE", S,
         req(P + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), v_pipeline,
         "400/close pass, 2xx warn")
    case("SMUG-TECL-PIPELINE", S,
         req(P + "Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\n"), v_pipeline,
         "400/close pass, 2xx warn")
    case("SMUG-CL-TRAILING-SPACE", S, req(P + "Content-Length: 5 \r\n\r\nhello"), W,
         "400/close pass, 2xx warn")
    case("SMUG-TE-DOUBLE-CHUNKED", S,
         req(P + "Transfer-Encoding: chunked, chunked\r\nContent-Length: 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn")
    case("SMUG-CL-EXTRA-LEADING-SP", S, req(P + "Content-Length:  5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn")
    case("SMUG-TE-CASE-MISMATCH", S,
         req(P + "Transfer-Encoding: Chunked\r\nContent-Length: 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn")
    case("SMUG-CL-COMMA-DIFFERENT", S, req(P + "Content-Length: 5, 10\r\n\r\nhello"), V400C,
         "400 or close")
    case("SMUG-TE-NOT-FINAL-CHUNKED", S,
         req(P + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"), V400C, "400 or close")
    case("SMUG-TE-HTTP10", S,
         req("POST / HTTP/1.0\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
             "\r\nhello"), V400C, "400 or close")
    TEC = P + "Transfer-Encoding: chunked\r\n\r\n"
    case("SMUG-CHUNK-BARE-SEMICOLON", S, req(TEC + "5;\r\nhello\r\n0\r\n\r\n"), V400C,
         "400 or close")
    case("SMUG-CHUNK-EXT-INVALID-TOKEN", S, req(TEC + "5;bad[=x\r\nhello\r\n0\r\n\r\n"), V400C,
         "400 or close")
    case("SMUG-BARE-CR-HEADER-VALUE", S,
         req(P + "Content-Length: 5\r\nX-Test: val\rue\r\n\r\nhello"), V400C, "400 or close")
    case("SMUG-CL-OCTAL", S, req(P + "Content-Length: 0o5\r\n\r\nhello"), V400C, "400 or close")
    case("SMUG-CHUNK-UNDERSCORE", S, req(TEC + "1_0\r\nhello world!!!!!\r\n0\r\n\r\n"), V400C,
         "400 or close")
    case("SMUG-TE-EMPTY-VALUE", S, req(P + "Transfer-Encoding: \r\nContent-Length: 5\r\n\r\nhello"),
         V400C, "400 or close")
    case("SMUG-TE-LEADING-COMMA", S,
         req(P + "Transfer-Encoding: , chunked\r\nContent-Length: 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn")
    case("SMUG-TE-DUPLICATE-HEADERS", S,
         req(P + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"
             "Content-Length: 5\r\n\r\nhello"), V400C, "400 or close")
    case("SMUG-CHUNK-HEX-PREFIX", S, req(TEC + "0x5\r\nhello\r\n0\r\n\r\n"), V400C, "400 or close")
    case("SMUG-CHUNK-SIZE-PLUS", S, req(TEC + "+5\r\nhello\r\n0\r\n\r\n"), V400C, "400 or close")
    case("SMUG-CHUNK-SIZE-TRAILING-OWS", S, req(TEC + "5 \r\nhello\r\n0\r\n\r\n"), V400C,
         "400 or close")
    case("SMUG-CL-HEX-PREFIX", S, req(P + "Content-Length: 0x5\r\n\r\nhello"), V400C,
         "400 or close")
    case("SMUG-CL-INTERNAL-SPACE", S, req(P + "Content-Length: 1 0\r\n\r\nhello12345"), V400C,
         "400 or close")
    case("SMUG-CHUNK-LEADING-SP", S, req(TEC + " 5\r\nhello\r\n0\r\n\r\n"), V400C, "400 or close")
    case("SMUG-CHUNK-MISSING-TRAILING-CRLF", S, req(TEC + "5\r\nhello0\r\n\r\n"), V400C,
         "400 or close")
    case("SMUG-CHUNK-EXT-LF", S, req(TEC + "5;\nhello\r\n0\r\n\r\n"), W, "400/close pass, 2xx warn")
    case("SMUG-CHUNK-SPILL", S, req(TEC + "5\r\nhello!!\r\n0\r\n\r\n"), V400C, "400 or close")
    case("SMUG-CHUNK-LF-TERM", S, req(TEC + "5\r\nhello\n0\r\n\r\n"), W, "400/close pass, 2xx warn")
    case("SMUG-CHUNK-EXT-CTRL", S, req(TEC + "5;\x00ext\r\nhello\r\n0\r\n\r\n"), V400C,
         "400 or close")
    case("SMUG-CHUNK-EXT-CR", S, req(TEC + "5;a\rX\r\nhello\r\n0\r\n\r\n"), V400C, "400 or close")
    case("SMUG-TE-VTAB", S,
         req(P + "Transfer-Encoding: \x0bchunked\r\nContent-Length: 5\r\n\r\nhello"), V400C,
         "400 or close")
    case("SMUG-TE-FORMFEED", S,
         req(P + "Transfer-Encoding: \x0cchunked\r\nContent-Length: 5\r\n\r\nhello"), V400C,
         "400 or close")
    case("SMUG-TE-NULL", S,
         req(P + "Transfer-Encoding: chunked\x00\r\nContent-Length: 5\r\n\r\nhello"), V400C,
         "400 or close")
    case("SMUG-CHUNK-LF-TRAILER", S, req(TEC + "5\r\nhello\r\n0\r\n\n"), W,
         "400/close pass, 2xx warn")
    case("SMUG-TE-IDENTITY", S,
         req(P + "Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"),
         v_codes_close(400, 501), "400/501/close")
    case("SMUG-CHUNK-NEGATIVE", S, req(TEC + "-1\r\nhello\r\n0\r\n\r\n"), V400C, "400 or close")
    case("SMUG-TRANSFER_ENCODING", S,
         req(P + "Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-CL-COMMA-SAME", S, req(P + "Content-Length: 5, 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-CL-COMMA-TRIPLE", S, req(P + "Content-Length: 5, 5, 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-CHUNKED-WITH-PARAMS", S,
         req(P + "Transfer-Encoding: chunked;ext=val\r\nContent-Length: 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-EXPECT-100-CL", S, req(P + "Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"),
         W, "400/close pass, 2xx warn (a 100 first = fail)", scored=False)
    case("SMUG-TRAILER-CL", S, req(TEC + "5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-TRAILER-TE", S, req(TEC + "5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
         W, "400/close pass, 2xx warn", scored=False)
    case("SMUG-TRAILER-HOST", S, req(TEC + "5\r\nhello\r\n0\r\nHost: evil.example.com\r\n\r\n"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-TRAILER-AUTH", S, req(TEC + "5\r\nhello\r\n0\r\nAuthorization: Bearer evil\r\n\r\n"),
         W, "400/close pass, 2xx warn", scored=False)
    case("SMUG-HEAD-CL-BODY", S,
         req("HEAD / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-OPTIONS-CL-BODY", S,
         req("OPTIONS / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-CL-UNDERSCORE", S, req(P + "Content-Length: 1_0\r\n\r\nhelloworld"), V400C,
         "400 or close")
    case("SMUG-CL-NEGATIVE-ZERO", S, req(P + "Content-Length: -0\r\n\r\n"), V400C, "400 or close")
    case("SMUG-CL-DOUBLE-ZERO", S, req(P + "Content-Length: 00\r\n\r\n"), W,
         "400/close pass, 2xx warn")
    case("SMUG-CL-LEADING-ZEROS-OCTAL", S, req(P + "Content-Length: 0200\r\n\r\n" + "A" * 200), W,
         "400/close pass, 2xx warn")
    case("SMUG-TE-OBS-FOLD", S,
         req(P + "Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nhello"),
         v_te_close_warn(False), "400/close pass; 2xx+close warn; 2xx open fail")
    case("SMUG-TE-TRAILING-COMMA", S,
         req(P + "Transfer-Encoding: chunked,\r\nContent-Length: 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn")
    case("SMUG-TE-TAB-BEFORE-VALUE", S,
         req(P + "Transfer-Encoding:\tchunked\r\nContent-Length: 5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-ABSOLUTE-URI-HOST-MISMATCH", S,
         req("GET http://other.example.com/ HTTP/1.1\r\nHost: {h}\r\n\r\n"), W,
         "400/close pass, 2xx warn", scored=False)
    case("SMUG-MULTIPLE-HOST-COMMA", S,
         req("GET / HTTP/1.1\r\nHost: {h}, other.example.com\r\n\r\n"), V400C, "400 or close")
    case("SMUG-CHUNK-BARE-CR-TERM", S, req(TEC + "5\rhello\r\n0\r\n\r\n"), V400C, "400 or close")
    case("SMUG-TRAILER-CONTENT-TYPE", S,
         req(TEC + "5\r\nhello\r\n0\r\nContent-Type: text/evil\r\n\r\n"), W,
         "400/close pass, 2xx warn", scored=False)

    # ---- Smuggling (sequences)
    GET = req("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n")
    seq("SMUG-CLTE-CONN-CLOSE", S,
        [req(P + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), GET],
        sv_must_close, "400, or 2xx + close")
    seq("SMUG-TECL-CONN-CLOSE", S,
        [req(P + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"), GET],
        sv_must_close, "400, or 2xx + close")
    seq("SMUG-CLTE-DESYNC", S,
        [req(P + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"), GET],
        sv_must_close, "400, or close")

    def smuggled(te_line_first, cl_fmt, te_line, inner="GET"):
        def f(h):
            sm = "%s / HTTP/1.1\r\nHost: %s\r\n\r\n" % (inner, h)
            body = "0\r\n\r\n" + sm
            cl = cl_fmt % len(body)
            if te_line_first:
                hdrs = te_line + "Content-Length: %s\r\n" % cl
            else:
                hdrs = "Content-Length: %s\r\n" % cl + te_line
            return B("POST / HTTP/1.1\r\nHost: %s\r\n%s\r\n%s" % (h, hdrs, body))
        return f

    seq("SMUG-CLTE-SMUGGLED-GET", S, [smuggled(False, "%d", "Transfer-Encoding: chunked\r\n")],
        sv_smuggled, "400, or close (no 2nd response)")
    seq("SMUG-CLTE-SMUGGLED-GET-CL-PLUS", S,
        [smuggled(False, "+%d", "Transfer-Encoding: chunked\r\n")], sv_smuggled,
        "400, or close (no 2nd response)")
    seq("SMUG-CLTE-SMUGGLED-GET-CL-NON-NUMERIC", S,
        [smuggled(False, "%dx", "Transfer-Encoding: chunked\r\n")], sv_smuggled,
        "400, or close (no 2nd response)")
    seq("SMUG-CLTE-SMUGGLED-GET-TE-OBS-FOLD", S,
        [smuggled(True, "%d", "Transfer-Encoding:\r\n chunked\r\n")], sv_smuggled,
        "400, or close (no 2nd response)")
    seq("SMUG-CLTE-SMUGGLED-HEAD", S,
        [smuggled(False, "%d", "Transfer-Encoding: chunked\r\n", "HEAD")], sv_smuggled,
        "400, or close (no 2nd response)")
    seq("SMUG-CLTE-SMUGGLED-GET-TE-TRAILING-SPACE", S,
        [smuggled(False, "%d", "Transfer-Encoding: chunked \r\n")], sv_smuggled,
        "400, or close (no 2nd response)")
    seq("SMUG-CLTE-SMUGGLED-GET-TE-LEADING-COMMA", S,
        [smuggled(False, "%d", "Transfer-Encoding: , chunked\r\n")], sv_smuggled,
        "400, or close (no 2nd response)")
    seq("SMUG-CLTE-SMUGGLED-GET-TE-CASE-MISMATCH", S,
        [smuggled(False, "%d", "Transfer-Encoding: Chunked\r\n")], sv_smuggled,
        "400, or close (no 2nd response)")
    seq("SMUG-TE-DUPLICATE-HEADERS-SMUGGLED-GET", S,
        [smuggled(True, "%d", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n")],
        sv_smuggled, "400, or close (no 2nd response)")

    def tecl_smuggled(h):
        sm = "GET / HTTP/1.1\r\nHost: %s\r\nContent-Length: 7\r\n\r\n" % h
        hx = "%x" % len(sm)
        body = "%s\r\n%s\r\n0\r\n\r\n" % (hx, sm)
        return B("POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Length: %d\r\n\r\n%s" % (h, len(hx) + 2, body))
    seq("SMUG-TECL-SMUGGLED-GET", S, [tecl_smuggled], sv_smuggled,
        "400, or close (no 2nd response)")

    def dup_cl_smuggled(h):
        sm = "GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % h
        body = "PING" + sm
        return B("POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 4\r\nContent-Length: %d\r\n\r\n%s"
                 % (h, len(body), body))
    seq("SMUG-DUPLICATE-CL-SMUGGLED-GET", S, [dup_cl_smuggled], sv_smuggled,
        "400, or close (no 2nd response)")

    def prefix_desync(h):
        prefix = "GET / HTTP/1.1\r\nHost: %s\r\n" % h
        return B("GET / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s"
                 % (h, len(prefix), prefix))
    seq("SMUG-GET-CL-PREFIX-DESYNC", S,
        [prefix_desync, req("\r\nGET / HTTP/1.1\r\nHost: {h}\r\n\r\n")], sv_prefix_desync,
        "400/close/2xx+2xx pass; 2 responses on step 2 warn", scored=False)
    seq("SMUG-TECL-DESYNC", S,
        [req(P + "Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\nX"), GET],
        sv_must_close, "400, or close")
    seq("SMUG-CL0-BODY-POISON", S, [req(P + "Content-Length: 0\r\n\r\nX"), GET],
        sv_poison(tail=FAIL), "400/close pass; poisoned follow-up warn", scored=False)
    seq("SMUG-GET-CL-BODY-DESYNC", S,
        [req("GET / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\r\nhello"), GET],
        sv_poison(ok2=True), "400/close/2xx+2xx pass; 400 on step 2 warn", scored=False)
    seq("SMUG-OPTIONS-CL-BODY-DESYNC", S,
        [req("OPTIONS / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\r\nhello"), GET],
        sv_poison(ok2=True), "400/close/2xx+2xx pass; 400 on step 2 warn", scored=False)
    seq("SMUG-EXPECT-100-CL-DESYNC", S,
        [req(P + "Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"), GET],
        sv_poison(ok2=True, first_pass=(400, 417), tail=WARN),
        "400/417/close/2xx+2xx pass; else warn", scored=False)
    seq("SMUG-OPTIONS-TE-OBS-FOLD", S,
        [req("OPTIONS / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding:\r\n chunked\r\n"
             "Content-Length: 5\r\n\r\nhello"), GET],
        sv_must_close, "400, or 2xx + close")
    seq("SMUG-CHUNK-INVALID-SIZE-DESYNC", S, [req(TEC + "+0\r\n\r\nX"), GET], sv_must_close,
        "400, or close")
    seq("SMUG-PIPELINE-SAFE", S, [GET, GET], sv_pipeline_safe, "2xx + 2xx", scored=False)

    # ---- Malformed input
    M = "MalformedInput"
    case("MAL-BINARY-GARBAGE", M, lambda h: dotnet_random_bytes(42, 256), v_state_first(400),
         "400/close/timeout")
    case("MAL-LONG-URL", M,
         lambda h: B("GET /" + "A" * 100000 + " HTTP/1.1\r\nHost: " + h + "\r\n\r\n"),
         v_codes_close(400, 414, 431), "400/414/431/close")
    case("MAL-LONG-HEADER-VALUE", M,
         lambda h: B("GET / HTTP/1.1\r\nHost: " + h + "\r\nX-Big: " + "B" * 100000 + "\r\n\r\n"),
         v_codes_close(400, 431), "400/431/close")
    case("MAL-MANY-HEADERS", M,
         lambda h: B("GET / HTTP/1.1\r\nHost: " + h + "\r\n" +
                     "".join("X-H-%d: value\r\n" % i for i in range(10000)) + "\r\n"),
         v_codes_close(400, 431), "400/431/close")
    case("MAL-NUL-IN-URL", M, req("GET /\x00test HTTP/1.1\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("MAL-CONTROL-CHARS-HEADER", M,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nX-Test: abc\x07\x08\x0bdef\r\n\r\n"), V400C,
         "400 or close")
    case("MAL-INCOMPLETE-REQUEST", M, req("GET / HTTP/1.1\r\nHost: {h}\r\nX-Test: value"),
         v_state_first(400), "400/close/timeout")
    case("MAL-EMPTY-REQUEST", M, lambda h: b"", v_state_first(400), "400/close/timeout")
    case("MAL-LONG-HEADER-NAME", M,
         lambda h: B("GET / HTTP/1.1\r\nHost: " + h + "\r\n" + "A" * 100000 + ": val\r\n\r\n"),
         v_codes_close(400, 431), "400/431/close")
    case("MAL-LONG-METHOD", M, lambda h: B("A" * 100000 + " / HTTP/1.1\r\nHost: " + h + "\r\n\r\n"),
         v_codes_close(400), "400/close")
    case("MAL-NON-ASCII-HEADER-NAME", M,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nX-T\xc3\xabst: value\r\n\r\n"), V400C, "400 or close")
    case("MAL-NON-ASCII-URL", M, req("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("MAL-CL-OVERFLOW", M, req(P + "Content-Length: 99999999999999999999\r\n\r\n"), V400C,
         "400 or close")
    case("MAL-WHITESPACE-ONLY-LINE", M, req("   \r\n\r\n"), v_state_first(400), "400/close/timeout")
    case("MAL-NUL-IN-HEADER-VALUE", M,
         req("GET / HTTP/1.1\r\nHost: {h}\r\nX-Test: val\x00ue\r\n\r\n"), V400C, "400 or close")
    case("MAL-CHUNK-SIZE-OVERFLOW", M, req(TEC + "FFFFFFFFFFFFFFFF0\r\nhello\r\n0\r\n\r\n"), V400C,
         "400 or close")
    case("MAL-H2-PREFACE", M, lambda h: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
         v_state_first(400, 505), "400/505/close/timeout")
    case("MAL-CHUNK-EXTENSION-LONG", M,
         lambda h: B("POST / HTTP/1.1\r\nHost: " + h + "\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5;ext=" + "A" * 100000 + "\r\nhello\r\n0\r\n\r\n"),
         v_codes_close(400, 431), "400/431/close")
    case("MAL-CL-EMPTY", M, req(P + "Content-Length: \r\n\r\n"), V400C, "400 or close")
    case("MAL-CL-TAB-BEFORE-VALUE", M, req(P + "Content-Length:\t5\r\n\r\nhello"), W,
         "400/close pass, 2xx warn")
    case("MAL-URL-BACKSLASH", M, req("GET /path\\file HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         v_warn_codes((400,), warn_codes=(404,)), "400 pass, 2xx/404 warn")
    case("MAL-URL-OVERLONG-UTF8", M, req("GET /\xc0\xaf HTTP/1.1\r\nHost: {h}\r\n\r\n"), V400C,
         "400 or close")
    case("MAL-URL-PERCENT-NULL", M, req("GET /path%00.html HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         v_warn_codes((400,), warn_codes=(404,)), "400 pass, 2xx/404 warn")
    case("MAL-URL-PERCENT-CRLF", M,
         req("GET /path%0d%0aX-Injected:%20true HTTP/1.1\r\nHost: {h}\r\n\r\n"),
         v_warn_codes((400,), warn_codes=(404,)), "400 pass, 2xx/404 warn")
    case("MAL-RANGE-OVERLAPPING", M,
         lambda h: B("GET / HTTP/1.1\r\nHost: " + h + "\r\nRange: bytes=" +
                     ",".join(["0-"] * 1000) + "\r\n\r\n"),
         v_any_warn, "any = warn", scored=False)
    case("MAL-POST-CL-HUGE-NO-BODY", M, req(P + "Content-Length: 999999999\r\n\r\n"),
         v_codes_or_wait(400, 413), "400/413/close/timeout")

    # ---- Normalization (echo upstream needed to be meaningful)
    N = "Normalization"
    case("NORM-UNDERSCORE-CL", N,
         req("POST /echo HTTP/1.1\r\nHost: {h}\r\nContent-Length: 11\r\nContent_Length: 99\r\n"
             "\r\nhello world"), v_norm("Content-Length", "Content_Length", "99"),
         "reject/drop pass, normalize fail, preserve warn", upstream=True)
    case("NORM-SP-BEFORE-COLON-CL", N,
         req("POST /echo HTTP/1.1\r\nHost: {h}\r\nContent-Length: 11\r\nContent-Length : 5\r\n"
             "\r\nhello world"), v_norm("Content-Length", "Content-Length ", "5"),
         "reject/drop pass, normalize fail, preserve warn", upstream=True)
    case("NORM-TAB-IN-NAME", N,
         req("POST /echo HTTP/1.1\r\nHost: {h}\r\nContent-Length: 11\r\nContent\tLength: 99\r\n"
             "\r\nhello world"), v_norm("Content-Length", "Content\tLength", "99"),
         "reject/drop pass, normalize fail, preserve warn", upstream=True)
    case("NORM-CASE-TE", N,
         req("POST /echo HTTP/1.1\r\nHost: {h}\r\nTRANSFER-ENCODING: chunked\r\n\r\nB\r\n"
             "hello world\r\n0\r\n\r\n"),
         v_norm_case("Transfer-Encoding", "TRANSFER-ENCODING", "chunked"),
         "reject/drop pass, normalize fail, preserve warn", scored=False, upstream=True)
    case("NORM-UNDERSCORE-TE", N,
         req("POST /echo HTTP/1.1\r\nHost: {h}\r\nTransfer_Encoding: chunked\r\n\r\nB\r\n"
             "hello world\r\n0\r\n\r\n"),
         v_norm("Transfer-Encoding", "Transfer_Encoding", "chunked"),
         "reject/drop pass, normalize fail, preserve warn", upstream=True)

    # ---- Cookies (all unscored; depend on the upstream's /echo and /cookie)
    K = "Cookies"
    E = "GET /echo HTTP/1.1\r\nHost: {h}\r\n"
    case("COOK-ECHO", K, req(E + "Cookie: foo=bar\r\n\r\n"), v_cook_echo,
         "2xx with 'Cookie:' in body", scored=False, upstream=True)
    case("COOK-OVERSIZED", K,
         lambda h: B("GET /echo HTTP/1.1\r\nHost: " + h + "\r\nCookie: big=" + "A" * 65536 +
                     "\r\n\r\n"),
         v_cook_codes(400, 431), "400/431/2xx/close", scored=False)
    case("COOK-EMPTY", K, req(E + "Cookie: \r\n\r\n"), v_cook_codes(400), "2xx/400/close",
         scored=False)
    case("COOK-NUL", K, req(E + "Cookie: foo=\x00bar\r\n\r\n"), v_cook_nochar("\x00"),
         "400, or 2xx without NUL", scored=False)
    case("COOK-CONTROL-CHARS", K, req(E + "Cookie: foo=\x01\x02\x03\r\n\r\n"),
         v_cook_nochar("\x01\x02\x03"), "400, or 2xx without ctl chars", scored=False)
    case("COOK-MANY-PAIRS", K,
         lambda h: B("GET /echo HTTP/1.1\r\nHost: " + h + "\r\nCookie: " +
                     "; ".join("k%d=v%d" % (i, i) for i in range(1000)) + "\r\n\r\n"),
         v_cook_codes(400, 431), "2xx/400/431/close", scored=False)
    case("COOK-MALFORMED", K, req(E + "Cookie: ===;;;\r\n\r\n"), v_cook_codes(400), "2xx/400/close",
         scored=False)
    case("COOK-MULTI-HEADER", K, req(E + "Cookie: a=1\r\nCookie: b=2\r\n\r\n"), v_cook_multi,
         "2xx with a=1 and b=2", scored=False, upstream=True)
    CK = "GET /cookie HTTP/1.1\r\nHost: {h}\r\n"
    case("COOK-PARSED-BASIC", K, req(CK + "Cookie: foo=bar\r\n\r\n"), v_cook_parsed("foo=bar"),
         "2xx with foo=bar", scored=False, upstream=True)
    case("COOK-PARSED-MULTI", K, req(CK + "Cookie: a=1; b=2; c=3\r\n\r\n"),
         v_cook_parsed("a=1", "b=2", "c=3"), "2xx with a=1,b=2,c=3", scored=False, upstream=True)
    case("COOK-PARSED-EMPTY-VAL", K, req(CK + "Cookie: foo=\r\n\r\n"), v_cook_parsed_nocrash,
         "2xx/400", scored=False, upstream=True)
    case("COOK-PARSED-SPECIAL", K, req(CK + "Cookie: a=hello world; b=x=y\r\n\r\n"),
         v_cook_parsed_nocrash, "2xx/400", scored=False, upstream=True)

    # ---- Capabilities / caching (all unscored; depend on the upstream)
    A = "Capabilities"
    KA = req("GET / HTTP/1.1\r\nHost: {h}\r\nConnection: keep-alive\r\n\r\n")

    def dyn(fn):
        return ("dyn", fn)

    def etag_of(prev):
        return cap_get_hdr(prev[0], "etag")

    def inm(h, p):
        return B("GET / HTTP/1.1\r\nHost: %s\r\nIf-None-Match: %s\r\n\r\n"
                 % (h, etag_of(p) or '"no-etag"'))

    def ims(h, p):
        return B("GET / HTTP/1.1\r\nHost: %s\r\nIf-Modified-Since: %s\r\n\r\n"
                 % (h, cap_get_hdr(p[0], "last-modified") or "Thu, 01 Jan 2099 00:00:00 GMT"))

    def inm_and_ims(h, p):
        return B("GET / HTTP/1.1\r\nHost: %s\r\nIf-None-Match: %s\r\n"
                 "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n"
                 % (h, etag_of(p) or '"no-etag"'))

    seq("CAP-ETAG-304", A, [KA, dyn(inm)], sv_cap("etag"), "304", scored=False, upstream=True)
    seq("CAP-LAST-MODIFIED-304", A, [KA, dyn(ims)], sv_cap("lm"), "304", scored=False,
        upstream=True)
    seq("CAP-ETAG-IN-304", A, [KA, dyn(inm)], sv_cap("etag-in-304"), "304 with ETag",
        scored=False, upstream=True)
    seq("CAP-INM-PRECEDENCE", A, [KA, dyn(inm_and_ims)], sv_cap("inm-prec"), "304",
        scored=False, upstream=True)
    seq("CAP-INM-WILDCARD", A, [KA, req("GET / HTTP/1.1\r\nHost: {h}\r\nIf-None-Match: *\r\n\r\n")],
        sv_cap("inm-wild"), "304", scored=False, upstream=True)
    seq("CAP-IMS-FUTURE", A,
        [KA, req("GET / HTTP/1.1\r\nHost: {h}\r\n"
                 "If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT\r\n\r\n")],
        sv_cap("ims-future"), "200", scored=False, upstream=True)
    seq("CAP-IMS-INVALID", A,
        [KA, req("GET / HTTP/1.1\r\nHost: {h}\r\nIf-Modified-Since: not-a-date\r\n\r\n")],
        sv_cap("ims-invalid"), "200", scored=False, upstream=True)

    def unq(h, p):
        e = etag_of(p)
        if e is None:
            v = "no-etag"
        else:
            v = e[2:] if e.startswith("W/") else e
            if v.startswith('"') and v.endswith('"') and len(v) >= 2:
                v = v[1:-1]
        return B("GET / HTTP/1.1\r\nHost: %s\r\nIf-None-Match: %s\r\n\r\n" % (h, v))
    seq("CAP-INM-UNQUOTED", A, [KA, dyn(unq)], sv_cap("inm-unquoted"), "200", scored=False,
        upstream=True)

    def weak(h, p):
        e = etag_of(p)
        v = 'W/"no-etag"' if e is None else (e if e.startswith("W/") else "W/" + e)
        return B("GET / HTTP/1.1\r\nHost: %s\r\nIf-None-Match: %s\r\n\r\n" % (h, v))
    seq("CAP-ETAG-WEAK", A, [KA, dyn(weak)], sv_cap("etag-weak"), "304", scored=False,
        upstream=True)


# ---------------------------------------------------------------------------------------
# Runner

def run_single(c, port, host, timeout):
    hh = "%s:%d" % (host, port)
    payload = c["payload"](hh)
    out = dict(sent=payload)
    try:
        cl = Client(port, timeout)
    except OSError as e:
        out.update(verdict=ERROR, state=ERR, resp=None, error="connect: %s" % e)
        return out
    try:
        if payload:
            try:
                cl.send(payload)
            except OSError as e:
                out.update(verdict=ERROR, state=ERR, resp=None, error="send: %s" % e)
                # still try to see what came back, for the record
                data, st = cl.read_response()
                out["resp"] = parse_response(data)
                out["raw"] = data
                return out
        data, st = cl.read_response()
        if st == OPEN:
            time.sleep(0.05)
            st = cl.check_state()
        r = parse_response(data)
        out.update(resp=r, state=st, raw=data, verdict=c["validator"](r, st))
        return out
    finally:
        cl.close()


def run_seq(c, port, host, timeout):
    hh = "%s:%d" % (host, port)
    steps = []
    try:
        cl = Client(port, timeout)
    except OSError as e:
        return dict(verdict=ERROR, state=ERR, resp=None, error="connect: %s" % e, steps=[])
    st = OPEN
    sent_all = []
    try:
        for s in c["steps"]:
            if st != OPEN:
                steps.append(dict(executed=False, resp=None, state=st, sent=b"", raw=b""))
                continue
            payload = s[1](hh, steps) if isinstance(s, tuple) else s(hh)
            sent_all.append(payload)
            try:
                cl.send(payload)
            except OSError:
                st = CLOSED
            data, st = cl.read_response()
            if st == OPEN:
                time.sleep(0.05)
                st = cl.check_state()
            steps.append(dict(executed=True, resp=parse_response(data), state=st, sent=payload,
                              raw=data))
    finally:
        cl.close()
    v = c["validator"](steps)
    last = None
    for s in steps:
        if s["resp"] is not None:
            last = s["resp"]
    return dict(verdict=v, state=st, resp=last, steps=steps, sent=b"".join(sent_all),
                raw=b"\n--step--\n".join(s["raw"] for s in steps))


def run_case(c, port, host, timeout):
    try:
        if c["kind"] == "single":
            return run_single(c, port, host, timeout)
        return run_seq(c, port, host, timeout)
    except Exception as e:  # a bug in one case must not end the run
        return dict(verdict=ERROR, state=ERR, resp=None, error="probe exception: %r" % e)


def first_line(raw):
    if not raw:
        return ""
    i = raw.find(b"\r\n")
    return raw[: i if i >= 0 else 120].decode("latin-1")[:120]


def step_summary(status, state, raw):
    """-> 'STATUS/STATE', plus '*N' when N responses came back at once (a desync shows so)."""
    n = count_status_lines(raw) if raw else 0
    return "%s/%s%s" % (status if status is not None else "-", state, "*%d" % n if n >= 2 else "")


def summarize(res):
    """One result in a table cell: '200/open', or the steps of a sequence joined by ' | '."""
    if res.get("steps"):
        parts = []
        for s in res["steps"]:
            r = s["resp"]
            if not s["executed"]:
                parts.append("(not sent)")
            else:
                parts.append(step_summary(r and r.status, s["state"], r and r.raw))
        return " | ".join(parts)
    r = res.get("resp")
    error = " ERR" if res.get("error") else ""
    return "%s/%s%s" % (r.status if r else "-", res.get("state"), error)


def first_lines(res):
    raw = res.get("raw") or b""
    return [first_line(x) for x in raw.split(b"\n--step--\n")] if raw else []


def parse_target(text):
    name, sep, port = text.partition("=")
    if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("expected NAME=PORT, got %r" % text)
    return name, int(port)


def select_cases(only):
    if not only:
        return CASES
    want = [w.strip() for w in only.split(",") if w.strip()]

    def wanted(cid):
        return any(cid == w or (w.endswith("*") and cid.startswith(w[:-1])) for w in want)
    return [c for c in CASES if wanted(c["id"])]


def run_all(targets, cases, host, timeout):
    """-> {name: {case id: result}}; one thread per target, cases in order."""
    results = {n: {} for n, _ in targets}

    def worker(name, port):
        for c in cases:
            results[name][c["id"]] = run_case(c, port, host, timeout)

    threads = [threading.Thread(target=worker, args=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def detail(c, names, results, subject):
    scored = "scored" if c["scored"] else "unscored"
    upstream = ", upstream-dependent" if c["upstream"] else ""
    lines = ["  %s [%s, %s%s] expects: %s" % (c["id"], c["cat"], scored, upstream, c["expect"])]
    sent = results[subject][c["id"]].get("sent", b"")
    if len(sent) > 300:
        sent = sent[:200] + b"...(%d bytes)" % len(sent)
    lines.append("     sent: %r" % sent)
    for n in names:
        r = results[n][c["id"]]
        error = ("  error: " + r["error"]) if r.get("error") else ""
        lines.append("     %-8s %-5s %s  first line(s): %s%s"
                     % (n, r["verdict"], summarize(r), first_lines(r), error))
    return "\n".join(lines)


def report(targets, cases, results):
    """Prints the table, the counts and the details; -> the scored cases where the subject
    does worse than the baseline."""
    names = [n for n, _ in targets]
    subject = names[0]
    baseline = names[1] if len(names) > 1 else None
    w = max(len(c["id"]) for c in cases) + 1
    head = "%-*s %-3s %-34s" % (w, "case", "sc", "expected") + "".join(" %-28s" % n for n in names)
    print(head.rstrip())
    print("-" * len(head.rstrip()))
    counts = {n: {} for n in names}
    worse, not_pass = [], []
    for c in cases:
        row = "%-*s %-3s %-34s" % (w, c["id"], "S" if c["scored"] else "u", c["expect"][:34])
        for n in names:
            r = results[n][c["id"]]
            key = (c["scored"], r["verdict"])
            counts[n][key] = counts[n].get(key, 0) + 1
            row += " %-28s" % ("%s %s" % (r["verdict"], summarize(r)))[:28]
        print(row.rstrip())
        mine = results[subject][c["id"]]["verdict"]
        if baseline and RANK[mine] < RANK[results[baseline][c["id"]]["verdict"]]:
            worse.append(c)
        if mine != PASS:
            not_pass.append(c)

    print()
    print("Counts (scored / unscored):")
    def tally(name, scored):
        return " ".join("%s=%d" % (v, counts[name].get((scored, v), 0))
                        for v in (PASS, WARN, FAIL, ERROR))
    for n in names:
        print("  %-10s scored: %s | unscored: %s" % (n, tally(n, True), tally(n, False)))
    if baseline:
        print()
        print("Cases where %s is WORSE than %s (%d):" % (subject, baseline, len(worse)))
        for c in worse:
            print(detail(c, names, results, subject))
    print()
    print("Cases where %s does not PASS (%d):" % (subject, len(not_pass)))
    for c in not_pass:
        print(detail(c, names, results, subject))
    return [c for c in worse if c["scored"]]


def write_json(path, targets, cases, results):
    names = [n for n, _ in targets]
    dump = {"targets": dict(targets), "subject": names[0],
            "baseline": names[1] if len(names) > 1 else None, "cases": []}
    for c in cases:
        e = {"id": c["id"], "category": c["cat"], "scored": c["scored"], "expect": c["expect"],
             "upstream_dependent": c["upstream"], "results": {}}
        for n in names:
            r = results[n][c["id"]]
            raw = r.get("raw") or b""
            e["sent"] = (r.get("sent") or b"")[:2000].decode("latin-1")
            e["results"][n] = {
                "verdict": r["verdict"], "summary": summarize(r), "state": r.get("state"),
                "first_lines": first_lines(r), "raw_head": raw[:1500].decode("latin-1"),
                "error": r.get("error")}
        dump["cases"].append(e)
    with open(path, "w") as f:
        json.dump(dump, f, indent=1)


def main():
    ap = argparse.ArgumentParser(
        description="HTTP/1.1 conformance probe. The first --target is the subject, the second "
                    "the baseline.")
    ap.add_argument("--target", action="append", type=parse_target, default=[],
                    metavar="NAME=PORT", help="a server on 127.0.0.1 (repeat; at least one)")
    ap.add_argument("--json", metavar="FILE", help="also write every result there")
    ap.add_argument("--fail-if-worse", action="store_true",
                    help="exit 1 when the subject does worse than the baseline on a scored case")
    ap.add_argument("--only", metavar="ID[,ID...]",
                    help="run only these cases (a trailing * matches a prefix)")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="seconds to wait for an answer (default 5)")
    ap.add_argument("--host", default="localhost",
                    help="name sent in Host headers, with the port (default localhost)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    a = ap.parse_args()

    build_cases()
    if a.list:
        for c in CASES:
            print(c["id"], c["cat"], "scored" if c["scored"] else "unscored", c["expect"])
        print(len(CASES), "cases")
        return 0
    if not a.target:
        ap.error("at least one --target NAME=PORT is needed")
    names = [n for n, _ in a.target]
    if len(set(names)) != len(names):
        ap.error("target names must differ")
    cases = select_cases(a.only)
    if not cases:
        ap.error("--only matches no case")
    for name, port in a.target:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=a.timeout).close()
        except OSError as e:
            print("h1probe: %s (127.0.0.1:%d) does not accept connections: %s" % (name, port, e),
                  file=sys.stderr)
            return 2

    results = run_all(a.target, cases, a.host, a.timeout)
    worse = report(a.target, cases, results)
    if a.json:
        write_json(a.json, a.target, cases, results)
        print("\nJSON written to", a.json)
    if a.fail_if_worse and worse:
        print("\nh1probe: %s is worse than %s on %d scored case(s)"
              % (names[0], names[1], len(worse)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
