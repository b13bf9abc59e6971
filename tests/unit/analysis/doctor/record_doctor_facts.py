"""Record real doctor facts into tests/unit/analysis/doctor/fixtures/doctor_*.json (run as root; needs `ip`).

1. ``doctor_lo_down.json``: a fresh `ip netns add` namespace (lo DOWN), rungs 1-2.
2. ``doctor_netns_ok.json``: the same namespace after `ip link set lo up`, with a veth pair
   (10.213.9.1/24, default via 10.213.9.2) and a listener on 127.0.0.1:8080, rungs 1-2.

Written with loopscope.render.jsonable.to_jsonable; read back by tests/unit/analysis/doctor/conftest.py.
Processes are not attributed (pids would not mean anything later). Usage:
``sudo python tests/unit/analysis/doctor/record_doctor_facts.py``
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from loopscope.backends.linux.netns import resolve_netns, run_in_netns
from loopscope.doctor.gather import DoctorOptions, gather
from loopscope.render.jsonable import to_jsonable

OUT = Path(__file__).parent / "fixtures"
NAME = "ls-record-doctor"


def _write(name: str) -> None:
    facts = gather([NAME], DoctorOptions(max_rung=2, attribute=False))[0]
    (OUT / name).write_text(json.dumps(to_jsonable(facts), indent=1) + "\n")


def main() -> None:
    subprocess.run(["ip", "netns", "add", NAME], check=True)
    try:
        _write("doctor_lo_down.json")
        ip = ["ip", "-n", NAME]
        subprocess.run([*ip, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [*ip, "link", "add", "rec0", "type", "veth", "peer", "name", "rec1"], check=True
        )
        subprocess.run([*ip, "addr", "add", "10.213.9.1/24", "dev", "rec0"], check=True)
        subprocess.run([*ip, "link", "set", "rec1", "up"], check=True)
        subprocess.run([*ip, "link", "set", "rec0", "up"], check=True)
        subprocess.run([*ip, "route", "add", "default", "via", "10.213.9.2"], check=True)

        def listen() -> socket.socket:
            s = socket.socket()
            s.bind(("127.0.0.1", 8080))
            s.listen(16)
            return s

        srv = run_in_netns(resolve_netns(NAME), listen)
        try:
            _write("doctor_netns_ok.json")
        finally:
            srv.close()
    finally:
        subprocess.run(["ip", "netns", "del", NAME], check=False)


if __name__ == "__main__":
    main()
