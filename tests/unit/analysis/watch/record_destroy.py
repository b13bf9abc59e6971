"""Record destroy-event datagrams for tests: one normal close and one client RST, on 127.0.0.1.

Run as any user: ``python tests/unit/analysis/watch/record_destroy.py`` writes ``fixtures/destroy.json``
(hex datagrams plus the ports used, which the tests check against).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

from loopscope.backends.linux.sock_diag_destroy import (
    NETLINK_ADD_MEMBERSHIP,
    SKNLGRP_INET_TCP_DESTROY,
    SOL_NETLINK,
)


def main() -> None:
    sub = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
    sub.bind((0, 0))
    sub.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, SKNLGRP_INET_TCP_DESTROY)
    sub.settimeout(0.5)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    cases = []
    for rst in (False, True):
        c = socket.create_connection(("127.0.0.1", port))
        a, _ = srv.accept()
        c.sendall(b"ping")
        a.recv(4)
        a.sendall(b"pong!")
        c.recv(5)
        if rst:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cases.append({"client_port": c.getsockname()[1], "rst": rst})
        c.close()
        time.sleep(0.05)
        a.close()
    time.sleep(0.2)
    grams = []
    while True:
        try:
            data = sub.recv(65536)
        except TimeoutError:
            break
        if port in _ports(data) or {case["client_port"] for case in cases} & set(_ports(data)):
            grams.append(data.hex())
    out = {"server_port": port, "cases": cases, "datagrams": grams}
    Path(__file__).with_name("fixtures").joinpath("destroy.json").write_text(
        json.dumps(out, indent=1)
    )


def _ports(data: bytes) -> tuple[int, int]:
    return struct.unpack_from("!HH", data, 16 + 4)


if __name__ == "__main__":
    main()
