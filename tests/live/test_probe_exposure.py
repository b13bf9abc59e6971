"""Live (root): verify_exposure connects from a throwaway netns behind a veth pair; a wildcard listener is
reachable, a loopback one is not, a host firewall drop (a dedicated nft table removed in teardown) turns
a reachable listener into a timeout explained by the rule, and nothing is left behind."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from servers import python_http_server

from loopscope.analysis.listeners import Listener, find_listeners
from loopscope.collect import take_snapshot
from loopscope.probes.exposure import outside_netns, verify_exposure

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns]


def _listeners(*ports: int) -> list[Listener]:
    return [li for li in find_listeners(take_snapshot(attribute=False)) if li.local.port in ports]


def _leftovers() -> tuple[str, str]:
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    return "\n".join(x for x in ns.splitlines() if x.startswith("lsx-")), "\n".join(
        x for x in links.splitlines() if x.startswith("lsx")
    )


@pytest.fixture
def drop_table() -> Iterator[str]:
    name = f"lsx_t{uuid.uuid4().hex[:6]}"
    yield name
    subprocess.run(["nft", "delete", "table", "inet", name], capture_output=True, check=False)


def test_wildcard_reachable_loopback_not_and_cleanup() -> None:
    before = _leftovers()
    with (
        python_http_server("0.0.0.0") as wild,
        python_http_server("127.0.0.1") as loop,
        python_http_server("::1") as loop6,
    ):
        results = verify_exposure(_listeners(wild.port, loop.port, loop6.port), timeout_s=0.5)
    by_port = {r.port: r for r in results}
    assert by_port[wild.port].reachable is True and by_port[wild.port].outcome == "connected"
    assert by_port[loop.port].reachable is False and by_port[loop.port].outcome == "refused"
    assert by_port[loop6.port].reachable in (False, None)
    assert _leftovers() == before


def test_host_firewall_drop_is_seen_from_outside(drop_table: str) -> None:
    with python_http_server("0.0.0.0") as blocked, python_http_server("0.0.0.0") as open_:
        rules = (
            f"table inet {drop_table} {{\n chain input {{\n type filter hook input priority 0; policy accept;\n"
            f' iifname "lsxh*" tcp dport {blocked.port} drop\n }}\n}}\n'
        )
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
        results = verify_exposure(_listeners(blocked.port, open_.port), timeout_s=0.5)
    by_port = {r.port: r for r in results}
    assert by_port[open_.port].reachable is True
    assert by_port[blocked.port].reachable is False and by_port[blocked.port].outcome == "timeout"
    assert (
        by_port[blocked.port].firewall is not None
        and f"dport {blocked.port} drop" in by_port[blocked.port].firewall
    )


def test_cleanup_on_interrupt() -> None:
    before = _leftovers()
    with pytest.raises(KeyboardInterrupt):
        with outside_netns() as view:
            assert (
                view.netns
                in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            )
            raise KeyboardInterrupt
    assert _leftovers() == before


def test_cleanup_on_real_signals() -> None:
    """A real SIGINT / SIGTERM to a process sitting inside the throwaway netns setup removes it all."""
    import signal
    import sys
    import time

    code = (
        "import sys, time\n"
        "from loopscope.probes.exposure import _interrupts_raise, outside_netns\n"
        "with _interrupts_raise(), outside_netns() as v:\n"
        "    print(v.netns, flush=True)\n"
        "    time.sleep(30)\n"
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        before = _leftovers()
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            name = proc.stdout.readline().strip()
            assert name.startswith("lsx-")
            assert (
                name
                in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            )
            time.sleep(0.1)
            proc.send_signal(sig)
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        assert _leftovers() == before, sig


def test_stale_outside_namespaces_of_dead_creators_are_removed() -> None:
    """A SIGKILLed --verify-exposure leaves lsx-<pid>-<tag>; a later run deletes it, never one whose
    creator is alive (issue #15, item 9)."""
    import os
    import subprocess
    import sys

    from loopscope.probes.exposure import remove_stale_outside_netns

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live = f"lsx-{dead.pid}-deadbeef", f"lsx-{os.getpid()}-cafebabe"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        removed = remove_stale_outside_netns()
        assert stale in removed
        assert live not in removed
        assert not os.path.exists(f"/run/netns/{stale}")
        assert os.path.exists(f"/run/netns/{live}")
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
