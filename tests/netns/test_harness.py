"""The harness itself: the underlay world carries traffic, the reference plugins run as a
container runtime runs them, and the leak checker catches what it is there to catch."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.config import parse_conflist
from spidernet.node import netns
from spidernet.node.lab.addresses import GATEWAY4, GATEWAY6, SUBNET4
from spidernet.node.lab.runtime import Chain, PluginFailed, Target
from spidernet.node.lab.topology import iface, ping
from spidernet.node.netlink.client import netlink
from spidernet.node.netlink.records import AF_INET, Rule
from spidernet.testbed.harness import ProcessSnapshot, World


def test_a_pod_on_the_segment_reaches_the_gateway(world: World) -> None:
    pod = world.pods[0]
    world.topo.attach(
        world.segment, pod, "eth0", (iface("192.0.2.50/24"), iface("2001:db8:1::50/64"))
    )
    assert ping(pod, GATEWAY4)
    assert ping(pod, GATEWAY6)
    assert not ping(pod, "192.0.2.99", deadline_s=1)  # nobody holds it: the check can fail
    with netlink(netns.path_of(pod)) as nl:
        nl.delete_link("eth0")  # the switch port goes with its peer


def macvlan_host_local(data_dir: Path, version: str = "1.0.0") -> dict[str, Any]:
    return {
        "cniVersion": version,
        "name": "underlay",
        "plugins": [
            {
                "type": "macvlan",
                "master": "eth0",
                "mode": "bridge",
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(data_dir),
                    "ranges": [
                        [{"subnet": SUBNET4, "rangeStart": "192.0.2.100", "gateway": GATEWAY4}]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }


# Debian 12's reference plugins (containernetworking-plugins 1.1.1) speak up to 1.0.0.
@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_reference_chain_add_check_del(
    world: World, cni_path: tuple[str, ...], tmp_path: Path, version: str
) -> None:
    chain = Chain(
        parse_conflist(json.dumps(macvlan_host_local(tmp_path, version)).encode()),
        cni_path,
        host_netns=world.host,
    )
    pod = netns.path_of(world.pods[0])
    result = chain.add(Target("ctr-1", pod, "net1"))
    assert result.cni_version == version
    address = result.ips[0].address
    assert address in ipaddress.ip_network(SUBNET4)
    assert str(result.ips[0].gateway) == GATEWAY4
    with netlink(pod) as nl:
        link = nl.link("net1")
        assert link.kind == "macvlan"
        assert address in {a.address for a in nl.addresses() if a.index == link.index}
    assert ping(world.pods[0], GATEWAY4)
    if version != "0.3.1":
        chain.check(Target("ctr-1", pod, "net1"))
    chain.delete(Target("ctr-1", pod, "net1"))
    chain.delete(Target("ctr-1", pod, "net1"))  # DEL is idempotent in the reference plugins too
    with netlink(pod) as nl:
        assert [x.name for x in nl.links()] == ["lo"]


def test_leak_checker_names_a_leaked_veth_and_rule(world: World) -> None:
    with netlink(netns.path_of(world.host)) as nl:
        nl.add_veth("leak0", "leak1")
        rule = Rule(AF_INET, 4242, 500, src=ipaddress.ip_network("192.0.2.77/32"))
        nl.add_rule(rule)
    changes = world.changes()
    assert changes == {
        world.host: [
            "left behind: link 'leak0' (veth)",
            "left behind: link 'leak1' (veth)",
            "left behind: rule 4242 (family 2) from 192.0.2.77/32 table 500 action 1",
        ]
    }
    with netlink(netns.path_of(world.host)) as nl:
        nl.delete_rule(rule)
        nl.delete_link("leak0")
    assert world.changes() == {}


def test_leak_checker_names_a_leaked_namespace_and_socket(world: World) -> None:
    before = ProcessSnapshot.take()
    name = f"{world.topo.prefix}-stray"
    netns.create(name)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        leaks = before.leaks(ProcessSnapshot.take())
        assert f"namespace left behind: {name}" in leaks
        assert any(
            line.startswith(f"file descriptor left open: {sock.fileno()} -> socket:")
            for line in leaks
        )
    finally:
        sock.close()
        netns.remove(name)
    assert before.leaks(ProcessSnapshot.take()) == []


def test_reference_plugin_refuses_a_version_it_lacks(
    world: World, cni_path: tuple[str, ...], tmp_path: Path
) -> None:
    conflist = parse_conflist(json.dumps(macvlan_host_local(tmp_path, "1.1.0")).encode())
    chain = Chain(conflist, cni_path, host_netns=world.host)
    with pytest.raises(PluginFailed) as info:
        chain.add(Target("ctr-1", netns.path_of(world.pods[0]), "net1"))
    assert info.value.outcome.plugin == "macvlan"
    assert info.value.outcome.error is not None
    assert info.value.outcome.error.code == 1  # incompatible CNI version
