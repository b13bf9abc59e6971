"""Pure classifiers of fingerprint replies, on replies recorded from real servers
(record_fingerprint_replies.py) and on protocol-spec golden packets."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from loopscope.probes.fingerprint import (
    PG_SSL_REQUEST,
    classify_banner,
    classify_http,
    classify_memcached,
    classify_postgres_ssl,
    classify_redis,
)

REPLIES = {
    k: bytes.fromhex(v)
    for k, v in json.loads(
        (Path(__file__).parent / "fixtures" / "replies.json").read_text()
    ).items()
}


def test_pg_ssl_request_golden() -> None:
    assert PG_SSL_REQUEST == bytes.fromhex("0000000804d2162f")  # 8, 1234 << 16 | 5679


def test_ssh_banner() -> None:
    fp = classify_banner(REPLIES["ssh_banner"])
    assert fp is not None and (fp.service, fp.product, fp.version) == ("ssh", "OpenSSH", "9.2p1")
    assert fp.label == "ssh OpenSSH/9.2p1"
    dropbear = classify_banner(b"SSH-2.0-dropbear_2022.83\r\n")
    assert dropbear is not None and (dropbear.product, dropbear.version) == ("dropbear", "2022.83")


def _mysql_greeting(version: bytes) -> bytes:
    payload = (
        b"\x0a"
        + version
        + b"\x00"
        + struct.pack("<I", 42)
        + b"abcdefgh\x00"
        + b"\xff\xf7\x08\x02\x00"
    )
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def test_mysql_and_mariadb_greetings() -> None:
    maria = classify_banner(_mysql_greeting(b"5.5.5-10.11.6-MariaDB-0+deb12u1"))
    assert maria is not None and (maria.service, maria.product, maria.version) == (
        "mysql",
        "MariaDB",
        "10.11.6",
    )
    mysql = classify_banner(_mysql_greeting(b"8.0.36"))
    assert mysql is not None and (mysql.product, mysql.version) == ("MySQL", "8.0.36")
    denied = classify_banner(b"\x45\x00\x00\x00\xffj\x04Host '1.2.3.4' is not allowed")
    assert denied is not None and denied.service == "mysql"


@pytest.mark.parametrize(
    ("banner", "port", "service"),
    [
        (b"220 mail.example ESMTP Postfix (Debian/GNU)\r\n", 25, "smtp"),
        (b"220 (vsFTPd 3.0.3)\r\n", 21, "ftp"),
        (b"220 ProFTPD Server ready.\r\n", 2121, "ftp"),
        (b"220 something\r\n", 9999, "smtp-or-ftp"),
        (b"+OK Dovecot ready.\r\n", 110, "pop3"),
        (b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n", 143, "imap"),
        (b"RFB 003.008\n", 5900, "vnc"),
    ],
)
def test_text_banners(banner: bytes, port: int, service: str) -> None:
    fp = classify_banner(banner, port)
    assert fp is not None and fp.service == service


def test_not_a_banner() -> None:
    assert classify_banner(b"") is None
    assert classify_banner(b"\x00\x01garbage\xff") is None
    assert classify_banner(REPLIES["redis_ping"]) is None


def test_http_and_tls_port() -> None:
    fp = classify_http(REPLIES["nginx_http_get"])
    assert fp is not None and (fp.service, fp.product, fp.version) == ("http", "nginx", "1.22.1")
    tls = classify_http(REPLIES["nginx_tls_port_http_get"])
    assert tls is not None and tls.service == "tls" and tls.tls
    assert classify_http(REPLIES["redis_http_get"]) is None


def test_redis() -> None:
    fp = classify_redis(REPLIES["redis_ping"], REPLIES["redis_info"])
    assert fp is not None and (fp.service, fp.product, fp.version) == ("redis", "Redis", "7.0.15")
    auth = classify_redis(b"-NOAUTH Authentication required.\r\n")
    assert auth is not None and auth.service == "redis" and auth.version is None
    assert classify_redis(REPLIES["redis_http_get"]) is None
    assert classify_redis(b"HTTP/1.1 400 Bad Request\r\n") is None


def test_postgres_and_memcached() -> None:
    fp = classify_postgres_ssl(REPLIES["postgres_sslrequest"])
    assert fp is not None and fp.service == "postgresql" and "no TLS" in (fp.detail or "")
    assert classify_postgres_ssl(b"S") is not None
    assert classify_postgres_ssl(b"") is None and classify_postgres_ssl(b"HTTP/1.1 400") is None
    mc = classify_memcached(REPLIES["memcached_version"])
    assert mc is not None and mc.version == "1.6.18"
    assert classify_memcached(b"ERROR\r\n") is None
