"""Real servers for live tests: Redis, PostgreSQL, nginx (TLS or plain), OpenSSH, memcached, and a Python
HTTP server, each on a chosen port and bind address, with its own temp dir, stopped on exit.

Every starter is a context manager yielding a :class:`Server` and takes ``bind`` (one address or several:
``"0.0.0.0"``, ``"127.0.0.1"``, ``"::1"``, ``"::"``) and ``port`` (None: a free one). Use them directly::

    with redis_server(bind="127.0.0.1") as srv:
        ... connect to srv.host, srv.port ...

or through the pytest fixtures at the bottom (``redis``, ``postgres``, ``nginx_tls``, ``sshd``, ``memcached``),
which use 127.0.0.1. A missing Debian package makes the starter raise :class:`ServerUnavailable`; the fixtures
turn that into a skip with the package name.

Ports: external servers need a port number before they start, so :func:`free_port` asks the kernel for
an ephemeral port on both families and closes the probe sockets; the server binds it within milliseconds.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from procs import stop_process

__all__ = [
    "Server",
    "ServerUnavailable",
    "free_port",
    "make_self_signed_cert",
    "memcached_server",
    "nginx_server",
    "postgres_server",
    "python_http_server",
    "redis_server",
    "sshd_server",
    "wait_listening",
]

Bind = str | Sequence[str]


class ServerUnavailable(RuntimeError):
    """The server's package is not installed (the message names it)."""


@dataclass
class Server:
    """A running server."""

    name: str
    binds: tuple[str, ...]
    port: int
    tmpdir: str
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def host(self) -> str:
        """An address to connect to: the first bind, wildcards mapped to loopback."""
        b = self.binds[0]
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(b, b)

    def log(self) -> str:
        """The server's log file contents (for assertion messages)."""
        path = os.path.join(self.tmpdir, "server.log")
        try:
            with open(path, errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""


def _binds(bind: Bind) -> tuple[str, ...]:
    return (bind,) if isinstance(bind, str) else tuple(bind)


def free_port() -> int:
    """A TCP port free on 0.0.0.0 and [::] right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
            s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s6.bind(("::", 0))
            port = int(s6.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
                s4.bind(("0.0.0.0", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def wait_listening(
    host: str,
    port: int,
    timeout_s: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
    log: str = "",
) -> None:
    """Poll-connect until the port accepts (or the process died / time ran out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{host}:{port} not listening after {timeout_s} s")


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if path is None:
        raise ServerUnavailable(f"{binary} not found: apt-get install {package}")
    return path


@contextmanager
def _process(
    name: str,
    argv: list[str],
    binds: tuple[str, ...],
    port: int,
    tmpdir: str,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> Iterator[Server]:
    logf = open(os.path.join(tmpdir, "server.log"), "ab")
    if user is not None and os.geteuid() == 0:
        argv = ["runuser", "-u", user, "--", *argv]
    proc = subprocess.Popen(
        argv,
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    srv = Server(name=name, binds=binds, port=port, tmpdir=tmpdir, proc=proc)
    try:
        wait_listening(srv.host, port, proc=proc, log=srv.log())
        yield srv
    finally:
        stop_process(proc)
        logf.close()


@contextmanager
def _tmpdir(prefix: str, owner: str | None = None) -> Iterator[str]:
    path = tempfile.mkdtemp(prefix=f"loopscope-{prefix}-")
    if owner is not None and os.geteuid() == 0:
        shutil.chown(path, owner, owner)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_self_signed_cert(
    directory: str, common_name: str = "localhost", days: int = 30
) -> tuple[str, str]:
    """A self-signed EC certificate and key made with the openssl CLI; returns (cert path, key path)."""
    openssl = _need("openssl", "openssl")
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            str(days),
            "-subj",
            f"/CN={common_name}",
            "-addext",
            f"subjectAltName=DNS:{common_name},IP:127.0.0.1,IP:::1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@contextmanager
def redis_server(bind: Bind = "127.0.0.1", port: int | None = None) -> Iterator[Server]:
    """redis-server without persistence, protected mode off."""
    exe = _need("redis-server", "redis-server")
    binds, port = _binds(bind), port or free_port()
    with _tmpdir("redis") as d:
        argv = [
            exe,
            "--port",
            str(port),
            "--bind",
            *binds,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            d,
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ]
        with _process("redis", argv, binds, port, d) as srv:
            yield srv


@contextmanager
def postgres_server(bind: Bind = "127.0.0.1", port: int | None = None) -> Iterator[Server]:
    """A throwaway PostgreSQL cluster (initdb as the postgres user, trust auth) in a temp dir."""
    bindir = next(
        (
            f"/usr/lib/postgresql/{v}/bin"
            for v in ("17", "16", "15", "14", "13")
            if os.path.isdir(f"/usr/lib/postgresql/{v}/bin")
        ),
        None,
    )
    if bindir is None:
        raise ServerUnavailable("PostgreSQL binaries not found: apt-get install postgresql")
    binds, port = _binds(bind), port or free_port()
    user = "postgres" if os.geteuid() == 0 else None
    with _tmpdir("pg", owner=user) as d:
        data = os.path.join(d, "data")
        init = [
            f"{bindir}/initdb",
            "-D",
            data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]
        if user:
            init = ["runuser", "-u", user, "--", *init]
        subprocess.run(init, check=True, capture_output=True, timeout=120)
        argv = [
            f"{bindir}/postgres",
            "-D",
            data,
            "-p",
            str(port),
            "-c",
            f"listen_addresses={','.join(binds)}",
            "-c",
            f"unix_socket_directories={d}",
            "-c",
            "fsync=off",
            "-c",
            "shared_buffers=16MB",
        ]
        with _process("postgresql", argv, binds, port, d, user=user) as srv:
            yield srv


@contextmanager
def nginx_server(
    bind: Bind = "127.0.0.1",
    port: int | None = None,
    *,
    tls: bool = True,
    body: str = "hello from nginx\n",
    cert_days: int = 30,
) -> Iterator[Server]:
    """nginx serving ``body`` on every path (``/json`` returns ``{"status": "ok", "n": 3}``), with a
    self-signed certificate for CN=localhost valid ``cert_days`` days when ``tls``."""
    exe = _need("nginx", "nginx")
    binds, port = _binds(bind), port or free_port()
    with _tmpdir("nginx") as d:
        os.chmod(d, 0o755)
        ssl_conf = ""
        if tls:
            cert, key = make_self_signed_cert(d, days=cert_days)
            ssl_conf = f"ssl_certificate {cert}; ssl_certificate_key {key};"
        listens = "\n".join(
            f"listen {'[' + b + ']' if ':' in b else b}:{port}{' ssl' if tls else ''}{' ipv6only=on' if b == '::' else ''};"
            for b in binds
        )
        temps = " ".join(
            f"{k}_temp_path {d}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf = f"""daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{ access_log off; {temps}
  server {{ {listens} {ssl_conf} server_name localhost;
    location = /json {{ default_type application/json; add_header X-Probe yes; return 200 '{{"status": "ok", "n": 3}}'; }}
    location / {{ default_type text/plain; add_header X-Probe yes; return 200 '{body}'; }} }} }}
"""
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as fh:
            fh.write(conf)
        with _process(
            "nginx", [exe, "-c", path, "-p", d, "-e", f"{d}/error.log"], binds, port, d
        ) as srv:
            srv.extra["tls"] = tls
            yield srv


@contextmanager
def sshd_server(bind: Bind = "127.0.0.1", port: int | None = None) -> Iterator[Server]:
    """OpenSSH sshd -D with a temp ed25519 host key and config (no logins are attempted)."""
    exe = _need("/usr/sbin/sshd", "openssh-server")
    keygen = _need("ssh-keygen", "openssh-client")
    binds, port = _binds(bind), port or free_port()
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir sshd insists on
    with _tmpdir("sshd") as d:
        key = os.path.join(d, "host_ed25519")
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-f", key], check=True, capture_output=True
        )
        lines = [
            f"Port {port}",
            *(f"ListenAddress {b}" for b in binds),
            f"HostKey {key}",
            f"PidFile {d}/sshd.pid",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
        ]
        cfg = os.path.join(d, "sshd_config")
        with open(cfg, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        with _process("sshd", [exe, "-D", "-e", "-f", cfg], binds, port, d) as srv:
            yield srv


@contextmanager
def memcached_server(bind: Bind = "127.0.0.1", port: int | None = None) -> Iterator[Server]:
    """memcached, TCP only, 16 MB."""
    exe = _need("memcached", "memcached")
    binds, port = _binds(bind), port or free_port()
    with _tmpdir("memcached") as d:
        argv = [exe, "-p", str(port), "-U", "0", "-m", "16", "-l", ",".join(binds)]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        with _process("memcached", argv, binds, port, d) as srv:
            yield srv


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    split_sends = False
    body = b'{"status": "ok", "n": 3}'

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("X-Probe", "yes")
        self.end_headers()
        if self.split_sends:
            self.wfile.flush()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def python_http_server(
    bind: str = "127.0.0.1",
    port: int = 0,
    *,
    nodelay: bool = True,
    split_sends: bool = False,
    body: bytes | None = None,
) -> Iterator[Server]:
    """A keep-alive HTTP/1.1 server in a thread of this process (stdlib http.server).

    ``nodelay=False, split_sends=True`` reproduces the Nagle + delayed-ACK stall: headers and body leave
    in two sends on a socket without TCP_NODELAY, so each response after the first few waits ~40 ms.
    The socket is bound before the context is entered (port 0 gives a kernel-chosen port, kept open).
    """
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    attrs: dict[str, object] = {"split_sends": split_sends, "disable_nagle_algorithm": nodelay}
    if body is not None:
        attrs["body"] = body
    handler = type("Handler", (_Handler,), attrs)
    server_cls = type(
        "Srv",
        (http.server.ThreadingHTTPServer,),
        {"address_family": family, "daemon_threads": True},
    )
    httpd = server_cls((bind, port), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield Server(
            name="python-http", binds=(bind,), port=int(httpd.server_address[1]), tmpdir=""
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


def _fixture(starter: object, **kwargs: object) -> Iterator[Server]:
    try:
        cm = starter(**kwargs)  # type: ignore[operator]
        srv = cm.__enter__()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield srv
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def redis() -> Iterator[Server]:
    """Redis on 127.0.0.1."""
    yield from _fixture(redis_server)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    """PostgreSQL on 127.0.0.1."""
    yield from _fixture(postgres_server)


@pytest.fixture(scope="module")
def nginx_tls() -> Iterator[Server]:
    """nginx with a self-signed certificate on 127.0.0.1."""
    yield from _fixture(nginx_server, tls=True)


@pytest.fixture(scope="module")
def sshd() -> Iterator[Server]:
    """OpenSSH on 127.0.0.1."""
    yield from _fixture(sshd_server)


@pytest.fixture(scope="module")
def memcached() -> Iterator[Server]:
    """memcached on 127.0.0.1."""
    yield from _fixture(memcached_server)
