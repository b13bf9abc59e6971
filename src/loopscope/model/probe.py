"""Records of probes: the target, one attempt on one address, TLS and HTTP details, fingerprints,
exposure results (stdlib only, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AddressResult",
    "Attempt",
    "Candidate",
    "ExposureResult",
    "Fingerprint",
    "HttpInfo",
    "ProbeTarget",
    "TlsInfo",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeTarget:
    """What to probe: ``[SCHEME://][HOST][:PORT][/PATH]``."""

    host: str | None
    """Host name or address; None means every address a local client might use."""
    port: int
    """TCP port."""
    path: str | None
    """HTTP path; None when not given."""
    scheme: str
    """``auto``, ``http``, ``https`` or ``tcp``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One address to try, and why it is on the list."""

    address: str
    """IP address literal (``127.0.0.1``, ``::1``...)."""
    label: str
    """``127.0.0.1``, ``::1``, ``host eth0``, ``localhost #1``, or the host name asked for."""
    family: int
    """4 or 6."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsInfo:
    """A completed TLS handshake."""

    version: str
    """``TLSv1.3``..."""
    cipher: str
    """Cipher suite name."""
    handshake_s: float
    """Handshake time, seconds (after the TCP connect)."""
    subject: str | None = None
    """Certificate subject, ``CN=localhost``; None when the certificate could not be decoded."""
    issuer: str | None = None
    """Certificate issuer."""
    not_after: str | None = None
    """Expiry, ISO 8601 UTC."""
    expires_in_s: float | None = None
    """Seconds until expiry (negative: expired), from the local clock at probe time."""
    self_signed: bool | None = None
    """Subject equals issuer."""
    alpn: str | None = None
    """Negotiated ALPN protocol."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpInfo:
    """One HTTP/1.1 exchange."""

    status: int
    """Status code."""
    reason: str
    """Reason phrase."""
    headers: tuple[tuple[str, str], ...]
    """Every response header, in order (names lower-cased)."""
    body_bytes: int
    """Decoded body length, bytes."""
    ttfb_s: float
    """Request sent to first response byte, seconds."""
    total_s: float
    """Request sent to last body byte, seconds."""
    body: bytes = b""
    """The body, at most 1 MiB (for --expect-body / --expect-json)."""

    def header(self, name: str) -> str | None:
        """First header ``name`` (case-insensitive), None if absent."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try of one address: connect, maybe TLS, maybe HTTP."""

    address: str
    """Address tried."""
    port: int
    """Port tried."""
    ok: bool
    """Every phase asked for succeeded."""
    connect_s: float | None = None
    """TCP connect time, seconds; None when it failed."""
    tls: TlsInfo | None = None
    """TLS details when TLS was used and the handshake completed."""
    http: HttpInfo | None = None
    """HTTP details when HTTP was spoken and a response came."""
    banner: bytes | None = None
    """First bytes the server sent when it did not speak HTTP (SSH, SMTP...)."""
    error: str | None = None
    """``ECONNREFUSED``, ``ETIMEDOUT``, ``EHOSTUNREACH``, ``TLS: ...``; None when ok."""
    phase: str | None = None
    """Phase that failed: connect, tls, request, read."""
    reused_connection: bool = False
    """The request went over a kept-alive connection (no connect, no handshake)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressResult:
    """All attempts on one candidate address."""

    candidate: Candidate
    """The address."""
    attempts: tuple[Attempt, ...]
    """In order."""

    @property
    def ok(self) -> bool:
        """Every attempt succeeded."""
        return bool(self.attempts) and all(a.ok for a in self.attempts)

    @property
    def first(self) -> Attempt:
        """The first attempt (details shown in tables)."""
        return self.attempts[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fingerprint:
    """What answers on a port, from a safe read-only exchange."""

    service: str
    """``http``, ``https``, ``tls``, ``ssh``, ``redis``, ``postgresql``, ``mysql``, ``memcached``, ``smtp``,
    ``ftp``, ``pop3``, ``imap``, ``vnc``, ``mongodb``, ``amqp``... or ``unknown`` / ``closed``."""
    product: str | None = None
    """``nginx``, ``OpenSSH``, ``Redis``, ``MariaDB``... when the exchange names it."""
    version: str | None = None
    """Version string when the exchange gives it."""
    detail: str | None = None
    """One line of evidence: the banner, the status line, the TLS version."""
    tls: bool = False
    """The service speaks TLS on connect."""
    elapsed_s: float | None = None
    """Time the identification took, seconds."""

    @property
    def label(self) -> str:
        """``https nginx/1.22.1``, ``ssh OpenSSH_9.2p1``, ``redis 7.0.15``."""
        parts = [self.service]
        if self.product:
            parts.append(
                self.product
                + (f"/{self.version}" if self.version and "/" not in self.product else "")
            )
        elif self.version:
            parts.append(self.version)
        return " ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExposureResult:
    """Whether a listener is reachable from another host (a throwaway netns behind a veth pair)."""

    proto: str
    """``tcp``."""
    bind: str
    """Bind address and port as listed, ``0.0.0.0:6379``."""
    port: int
    """Port."""
    target: str
    """Address connected to from outside: the host's veth address."""
    reachable: bool | None
    """True: the connection completed; False: refused/timed out; None: not tested (family unsupported...)."""
    outcome: str
    """``connected``, ``refused``, ``timeout``, ``unreachable``, ``not tested: ...``."""
    connect_s: float | None = None
    """Connect time when it connected, seconds."""
    firewall: str | None = None
    """The rule that explains a timeout, when one matches."""
