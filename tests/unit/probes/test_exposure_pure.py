"""Pure parts of probes/exposure: the /30 picker avoids addresses in use."""

from __future__ import annotations

import ipaddress

from loopscope.probes.exposure import pick_link_net


def test_pick_link_net_is_a_link_local_slash30_avoiding_used() -> None:
    used = [ipaddress.ip_network(f"169.254.{i}.0/24") for i in range(256)]
    used.remove(ipaddress.ip_network("169.254.77.0/24"))
    for _ in range(20):
        net = pick_link_net(used)
        assert net.prefixlen == 30 and net.subnet_of(ipaddress.ip_network("169.254.77.0/24"))
    assert pick_link_net([]).subnet_of(ipaddress.ip_network("169.254.0.0/16"))
