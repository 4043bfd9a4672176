"""A real etcd member for discovery tests and benchmarks: plain or TLS (with client
certificates), with optional authentication; certificates made with `openssl`.

Standard library only. Used by test_etcd_tls.py, test_etcd_auth.py and tests/bench/etcd_churn.py.
"""

import json
import os
import shutil
import ssl
import subprocess
import urllib.request

import harness as h

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
HAVE_ETCD = os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)
HAVE_OPENSSL = os.access(OPENSSL, os.X_OK)


def _openssl(*args, cwd):
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{r.stderr}")


class Pki:
    """A CA and certificates signed by it, as PEM files in `workdir/name-*`.

    The server certificate carries SAN IP:127.0.0.1 and extendedKeyUsage serverAuth AND
    clientAuth: with --client-cert-auth, etcd 3.4's JSON gateway connects to its own gRPC server
    with that certificate, and every /v3 call then fails ("connection closed", code 14) if the
    certificate may not authenticate a client."""

    def __init__(self, workdir, name="pki"):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.ca = self._path("ca.pem")
        self.ca_key = self._path("ca.key")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", self.ca_key, "-out", self.ca, "-subj", f"/CN={name} test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        self.server_cert, self.server_key = self.issue(
            "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
        self.client_cert, self.client_key = self.issue("client", "extendedKeyUsage=clientAuth\n")

    def _path(self, f):
        return os.path.join(self.dir, f)

    def issue(self, cn, extensions):
        key, csr, cert, ext = (self._path(f"{cn}.{x}") for x in ("key", "csr", "pem", "ext"))
        with open(ext, "w") as f:
            f.write(extensions)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                 "-subj", f"/CN={cn}", cwd=self.dir)
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                 "-CAcreateserial", "-days", "2", "-out", cert, "-extfile", ext, cwd=self.dir)
        return cert, key


class Etcd:
    """One etcd member on loopback. `pki`: serve https with --client-cert-auth. `extra`: more
    etcd flags (e.g. --auth-token-ttl). start() may be called again after stop() (same data).
    `user`/`password` are passed to etcdctl once set (after auth was enabled)."""

    def __init__(self, workdir, pki=None, extra=()):
        self.data = os.path.join(workdir, "etcd-data")
        self.pki = pki
        self.extra = list(extra)
        self.client_port = h.free_dead_port()
        self.peer_port = h.free_dead_port()
        self.proc = None
        self.user = None
        self.password = None

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.client_port}"

    @property
    def scheme(self):
        return "https" if self.pki else "http"

    def start(self):
        url = f"{self.scheme}://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [ETCD, "--name", "default", "--data-dir", self.data,
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}", "--log-level", "warn", *self.extra]
        if self.pki:
            argv += ["--cert-file", self.pki.server_cert, "--key-file", self.pki.server_key,
                     "--trusted-ca-file", self.pki.ca, "--client-cert-auth"]
        self.proc = h.Process(argv, "etcd")
        try:
            h.wait_until(self._healthy, h.START_TIMEOUT, interval=0.1,
                         message=f"etcd healthy on {self.client_port}")
        except BaseException:
            self.stop()
            raise

    def _healthy(self):
        if not self.proc.alive():
            raise AssertionError(f"etcd exited:\n{self.proc.tail()}")
        ctx = None
        if self.pki:
            ctx = ssl.create_default_context(cafile=self.pki.ca)
            ctx.load_cert_chain(self.pki.client_cert, self.pki.client_key)
        try:
            with urllib.request.urlopen(f"{self.scheme}://{self.endpoint}/health", timeout=2,
                                        context=ctx) as r:
                return json.loads(r.read()).get("health") == "true"
        except OSError:
            return False

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None

    def ctl_argv(self, *args):
        argv = [ETCDCTL, "--endpoints", f"{self.scheme}://{self.endpoint}"]
        if self.pki:
            argv += ["--cacert", self.pki.ca, "--cert", self.pki.client_cert,
                     "--key", self.pki.client_key]
        if self.user:
            argv += ["--user", f"{self.user}:{self.password}"]
        return argv + list(args)

    def ctl(self, *args, check=True):
        r = subprocess.run(self.ctl_argv(*args), capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, ETCDCTL_API="3"))
        if check and r.returncode != 0:
            raise AssertionError(f"etcdctl {args} failed: {r.stderr}")
        return r.stdout

    def tls_options(self):
        """`sluice register` options for this member's certificates."""
        if not self.pki:
            return []
        return ["--ca", self.pki.ca, "--cert", self.pki.client_cert, "--key", self.pki.client_key]

    def tls_config(self):
        """`discovery.etcd.tls` for this member's certificates (None without TLS)."""
        if not self.pki:
            return None
        return {"ca": self.pki.ca, "cert": self.pki.client_cert, "key": self.pki.client_key}


class Registrant(h.Process):
    """`sluice register` for one backend; waits until it printed `registered`."""

    def __init__(self, etcd, backend, prefix="/nodes/", ttl=2, extra=(), wait=True):
        argv = [h.sluice_bin(), "register", "--etcd", etcd.endpoint, "--prefix", prefix,
                "--address", backend.address, "--ttl", str(ttl), "--id", backend.id,
                *etcd.tls_options(), *extra]
        super().__init__(argv, f"register {backend.id}")
        if wait:
            self.wait_for_line(r"^registered ", which="stdout")


def served_by(port, n=12):
    seen = set()
    for _ in range(n):
        r = h.get(port, "/")
        if r.status == 200:
            seen.add(r.header("X-Backend"))
    return seen


def wait_served_by(sluice, expected, listener="web", timeout=40.0, strict=False):
    """Polls until requests through `sluice` are answered by exactly the backends `expected`
    (their X-Backend ids). strict: also fail at once on any answer other than 200."""
    expected = set(expected)
    port = sluice.ports[listener]
    last = set()

    def check():
        nonlocal last
        seen = set()
        for _ in range(12):
            r = h.get(port, "/")
            if r.status == 200:
                seen.add(r.header("X-Backend"))
            elif strict:
                raise AssertionError(f"answered {r.status} while waiting for {sorted(expected)}; "
                                     f"sluice:\n{sluice.tail(15)}")
        last = seen
        return seen == expected

    h.wait_until(check, timeout, interval=0.1,
                 message=f"traffic spread over exactly {sorted(expected)}; last seen {sorted(last)}; "
                         f"sluice:\n{sluice.tail(15)}")
