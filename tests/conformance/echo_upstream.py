#!/usr/bin/python3
"""An HTTP/1.1 upstream for tests/conformance/h1probe.py (standard library only). It answers
the way the probe's upstream-dependent cases expect a server behind the proxy to answer:

  GET, HEAD (any path)      200 "OK" (text/plain)
  POST, PUT, PATCH          200 with the request body (Content-Length or chunked, decoded)
  any method on /echo       200 with the request headers it received, one "Name: value" a line
  any method on /cookie     200 with the cookies it received, one "name=value" a line
  OPTIONS                   200 with Allow
  anything else             200 "OK"

Every answer carries Date and Content-Length; HTTP/1.1 connections stay open unless the request
says "Connection: close". It is lenient on purpose: the proxy in front of it is under test.

  echo_upstream.py [PORT]   (default 0: any free port)

Listens on 127.0.0.1 and prints "listening 127.0.0.1:PORT" on stdout when ready. Exits on
SIGTERM or SIGINT, and by itself when the process that started it exits (it checks once a
second), so a killed test run does not leave it behind.
"""
import os
import signal
import socket
import sys
import threading
import time
from email.utils import formatdate


def read_until(conn, buf, sep):
    while sep not in buf:
        d = conn.recv(65536)
        if not d:
            return None, buf
        buf += d
    i = buf.index(sep)
    return buf[:i], buf[i + len(sep):]


def read_n(conn, buf, n):
    while len(buf) < n:
        d = conn.recv(65536)
        if not d:
            return None, buf
        buf += d
    return buf[:n], buf[n:]


def read_chunked(conn, buf):
    """-> (body, rest) or (None, rest) when the connection ends first."""
    body = b""
    while True:
        line, buf = read_until(conn, buf, b"\r\n")
        if line is None:
            return None, buf
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailer section
                tl, buf = read_until(conn, buf, b"\r\n")
                if tl is None or tl == b"":
                    return body, buf
        data, buf = read_n(conn, buf, size + 2)
        if data is None:
            return None, buf
        body += data[:size]


def answer(method, path, headers, hmap, body):
    """-> (body, extra header lines)."""
    if path == b"/echo":
        return b"".join(n + b": " + v + b"\n" for n, v in headers), b""
    if path == b"/cookie":
        out = b""
        for c in hmap.get(b"cookie", []):
            for p in c.split(b";"):
                p = p.strip()
                if p:
                    out += p + b"\n"
        return out, b""
    if method in (b"POST", b"PUT", b"PATCH"):
        return body, b""
    if method == b"OPTIONS":
        return b"", b"Allow: GET, HEAD, POST, OPTIONS\r\n"
    return b"OK", b""


def handle(conn):
    buf = b""
    try:
        while True:
            head, buf = read_until(conn, buf, b"\r\n\r\n")
            if head is None:
                return
            lines = head.split(b"\r\n")
            while lines and lines[0] == b"":
                lines.pop(0)
            if not lines:
                continue
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                return
            method, target, version = parts
            headers = []
            for line in lines[1:]:
                if b":" in line:
                    n, v = line.split(b":", 1)
                    headers.append((n, v.strip()))
            hmap = {}
            for n, v in headers:
                hmap.setdefault(n.lower(), []).append(v)
            body = b""
            te = b",".join(hmap.get(b"transfer-encoding", []))
            if te and b"chunked" in te.lower():
                body, buf = read_chunked(conn, buf)
                if body is None:
                    return
            elif b"content-length" in hmap:
                body, buf = read_n(conn, buf, int(hmap[b"content-length"][0]))
                if body is None:
                    return
            keep = version == b"HTTP/1.1"
            conn_hdr = b",".join(hmap.get(b"connection", [])).lower()
            if b"close" in conn_hdr:
                keep = False
            if version == b"HTTP/1.0" and b"keep-alive" in conn_hdr:
                keep = True
            out, extra = answer(method, target.split(b"?")[0], headers, hmap, body)
            resp = (b"HTTP/1.1 200 OK\r\nDate: " + formatdate(usegmt=True).encode() +
                    b"\r\nContent-Type: text/plain\r\nContent-Length: " + str(len(out)).encode() +
                    b"\r\n" + extra + (b"" if keep else b"Connection: close\r\n") + b"\r\n")
            if method != b"HEAD":
                resp += out
            conn.sendall(resp)
            if not keep:
                return
    except (OSError, ValueError):  # a reset connection, or a malformed length: drop it
        return
    finally:
        conn.close()


def exit_with_parent():
    parent = os.getppid()
    while True:
        time.sleep(1)
        if os.getppid() != parent:  # reparented: the parent has exited
            os._exit(0)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    threading.Thread(target=exit_with_parent, daemon=True).start()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(256)
    print("listening 127.0.0.1:%d" % s.getsockname()[1], flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
