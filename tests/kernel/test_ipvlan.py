"""The ipvlan chains in Debian's kernel (this machine's has no ipvlan): Debian's ipvlan plugin
in L2 and L3 mode + spidernet-ipam + spidernet-coordinator, run as a runtime runs them.

ipvlan children share their master's MAC and, in L2 mode, cannot talk to the master itself;
the coordinator's veth pair is what gives the pod its host and the cluster's services.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.config import parse_conflist
from spidernet.node import netns
from spidernet.node.lab.addresses import GATEWAY4, GATEWAY6, HOST4, HOST6, SERVICE_IP
from spidernet.node.lab.runtime import Chain, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface, ping
from spidernet.node.netlink.client import netlink
from spidernet.testbed.harness import World
from spidernet.testbed.pools import add_pool

SERVICE_CIDR = "10.96.0.0/12"


@pytest.fixture
def lab(topo: Topology) -> Iterator[World]:
    """Switch + gateway + host (eth0 192.0.2.2 / 2001:db8:1::2, a service address on lo) +
    one pod; every namespace must be back to this state at the end."""
    seg = topo.segment()
    gw = topo.gateway(seg, (iface(f"{GATEWAY4}/24"), iface(f"{GATEWAY6}/64")))
    host = topo.namespace("host")
    topo.attach(seg, host, "eth0", (iface(f"{HOST4}/24"), iface(f"{HOST6}/64")))
    with netlink(netns.path_of(host)) as nl:
        nl.add_address("lo", iface(f"{SERVICE_IP}/32"))
    world = World(topo, seg, host, gw, [topo.namespace("pod")])
    world.seal()
    yield world
    changes = world.changes()
    assert not changes, changes


def chain(
    service: ServiceProcess, world: World, cni_path: tuple[str, ...], state: Path, mode: str
) -> Chain:
    """ipvlan + spidernet-ipam + spidernet-coordinator, with this mode's own pools."""
    conflist: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "ipvlan-underlay",
        "plugins": [
            {
                "type": "ipvlan",
                "master": "eth0",
                "mode": mode,
                "ipam": {
                    "type": "spidernet-ipam",
                    "ipam_unix_socket_path": str(service.socket),
                    "default_ipv4_ippool": [f"ipvlan-{mode}-v4"],
                    "default_ipv6_ippool": [f"ipvlan-{mode}-v6"],
                },
            },
            {"type": "spidernet-coordinator", "serviceCIDR": [SERVICE_CIDR]},
        ],
    }
    env = {"SPIDERNET_STATE_DIR": str(state), "SPIDERNET_SOCKET": str(service.socket)}
    return Chain(
        parse_conflist(json.dumps(conflist).encode()),
        cni_path,
        host_netns=world.host,
        extra_env=env,
    )


@pytest.mark.parametrize(("mode", "first"), [("l2", 65), ("l3", 70)])
def test_ipvlan_pod_through_the_full_chain(
    lab: World,
    cni_path: tuple[str, ...],
    service: ServiceProcess,
    tmp_path: Path,
    mode: str,
    first: int,
) -> None:
    # the lane's one service: pools of this test's own, in ranges no other test uses
    v4 = [f"192.0.2.{first}-192.0.2.{first + 4}"]
    v6 = [f"2001:db8:1::{first}-2001:db8:1::{first + 4}"]
    add_pool(service.client, f"ipvlan-{mode}-v4", "192.0.2.0/24", v4, gateway=GATEWAY4)
    add_pool(service.client, f"ipvlan-{mode}-v6", "2001:db8:1::/64", v6, gateway=GATEWAY6)
    c = chain(service, lab, cni_path, tmp_path, mode)
    pod = lab.pods[0]
    target = Target("ctr-1", netns.path_of(pod), "eth0", "K8S_POD_NAMESPACE=t;K8S_POD_NAME=p")
    result = c.add(target)
    assert sorted(ip.address.version for ip in result.ips) == [4, 6]
    with netlink(netns.path_of(pod)) as nl:
        eth0, veth0 = nl.link("eth0"), nl.link("veth0")
    assert (eth0.kind, veth0.kind) == ("ipvlan", "veth")
    with netlink(netns.path_of(lab.host)) as nl:
        assert eth0.mac == nl.link("eth0").mac  # ipvlan children share the master's MAC

    # The host and its services through the coordinator's veth, both families.
    assert ping(pod, HOST4)
    assert ping(pod, HOST6)
    assert ping(pod, SERVICE_IP)
    for ip in result.ips:
        assert ping(lab.host, str(ip.address.ip))
    if mode == "l2":
        # L2: the pod is a station on the segment and reaches its gateway directly.
        assert ping(pod, GATEWAY4)
        assert ping(pod, GATEWAY6)
    c.check(target)
    c.delete(target)
    c.delete(target)  # DEL twice
    with netlink(netns.path_of(pod)) as nl:
        assert [x.name for x in nl.links()] == ["lo"]
