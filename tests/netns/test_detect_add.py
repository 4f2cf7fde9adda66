"""ADD with detection on (Debian's macvlan + spidernet-ipam through a service): an address
another station holds is skipped, every address held fails the ADD naming them and their
MACs, a silent gateway fails it; nothing stays allocated either way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from spidernet.cni.config import parse_conflist
from spidernet.cni.errors import Code
from spidernet.node import netns
from spidernet.node.lab.addresses import GATEWAY4, GATEWAY6
from spidernet.node.lab.runtime import Chain, PluginFailed, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface
from spidernet.node.netlink.client import netlink
from spidernet.testbed.conflists import chain_conf, macvlan, spidernet_ipam
from spidernet.testbed.harness import World
from spidernet.testbed.pools import add_pool, allocated

ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=p"


def _chain(world: World, cni_path: tuple[str, ...], service: ServiceProcess, **ipam: Any) -> Chain:
    conflist = chain_conf(macvlan(spidernet_ipam(service.socket, **ipam)))
    return Chain(parse_conflist(json.dumps(conflist).encode()), cni_path, host_netns=world.host)


def _rogue(topo: Topology, world: World, *addresses: str) -> tuple[str, str]:
    """A namespace on the segment that holds `addresses`; (its name, its MAC)."""
    ns = topo.namespace(f"rogue{len(topo.created)}")
    topo.attach(world.segment, ns, "eth0", tuple(iface(a) for a in addresses))
    with netlink(netns.path_of(ns)) as nl:
        return ns, nl.link("eth0").mac


def _leave(ns: str) -> None:
    with netlink(netns.path_of(ns)) as nl:
        nl.delete_link("eth0")  # its peer leaves the switch with it
    netns.remove(ns)


def _pod_links(world: World) -> list[str]:
    with netlink(netns.path_of(world.pods[0])) as nl:
        return sorted(link.name for link in nl.links())


def test_a_held_address_is_skipped_and_the_pod_gets_the_free_one(
    world: World, topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    add_pool(service.client, "v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.51"], gateway=GATEWAY4)
    rogue, _ = _rogue(topo, world, "192.0.2.50/24")
    chain = _chain(
        world, cni_path, service, default_ipv4_ippool=["v4"], enableIPConflictDetection=True
    )
    target = Target("ctr-d1", netns.path_of(world.pods[0]), "eth0", ARGS)
    try:
        # The allocator picks at random: whichever it tries first, the pod ends on .51.
        for _ in range(4):
            [ip] = chain.add(target).ips
            assert str(ip.address) == "192.0.2.51/24"
            assert allocated(service.client, "v4") == 1
            chain.delete(target)
            assert allocated(service.client, "v4") == 0
    finally:
        chain.delete(target)
        _leave(rogue)


def test_every_address_held_fails_the_add_naming_them_and_leaves_nothing(
    world: World, topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    add_pool(service.client, "v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.51"], gateway=GATEWAY4)
    add_pool(service.client, "v6", "2001:db8:1::/64", ["2001:db8:1::50"], gateway=GATEWAY6)
    one, mac_one = _rogue(topo, world, "192.0.2.50/24")
    two, mac_two = _rogue(topo, world, "192.0.2.51/24", "2001:db8:1::50/64")
    target = Target("ctr-d2", netns.path_of(world.pods[0]), "eth0", ARGS)
    try:
        for pools, held in (
            ({"default_ipv4_ippool": ["v4"]}, {"192.0.2.50": mac_one, "192.0.2.51": mac_two}),
            ({"default_ipv6_ippool": ["v6"]}, {"2001:db8:1::50": mac_two}),
        ):
            chain = _chain(
                world,
                cni_path,
                service,
                **pools,
                enableIPConflictDetection=True,
                detectionProfile="fast",
            )
            with pytest.raises(PluginFailed) as failed:
                chain.add(target)
            error = failed.value.outcome.error
            assert error is not None
            assert error.code == Code.IP_CONFLICT
            for address, mac in held.items():
                assert f"{address} on eth0 is held by {mac}" in error.msg
            chain.delete(target)  # what the runtime does after a failed ADD
            assert allocated(service.client, "v4") == 0
            assert allocated(service.client, "v6") == 0
            assert _pod_links(world) == ["lo"]  # macvlan removed its link
    finally:
        _leave(one)
        _leave(two)


def test_a_silent_gateway_fails_the_add_and_nothing_stays_allocated(
    world: World, cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    add_pool(service.client, "v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.59"], gateway="192.0.2.254")
    chain = _chain(
        world, cni_path, service, default_ipv4_ippool=["v4"], enableGatewayDetection=True
    )
    target = Target("ctr-d3", netns.path_of(world.pods[0]), "eth0", ARGS)
    with pytest.raises(PluginFailed) as failed:
        chain.add(target)
    chain.delete(target)
    error = failed.value.outcome.error
    assert error is not None
    assert (error.code, error.msg) == (
        Code.GATEWAY_UNREACHABLE,
        "gateway 192.0.2.254 does not answer on eth0: its addresses were released",
    )
    assert allocated(service.client, "v4") == 0
    assert _pod_links(world) == ["lo"]
    # With the gateway there, the same ADD succeeds.
    add_pool(service.client, "ok", "192.0.2.0/24", ["192.0.2.60-192.0.2.69"], gateway=GATEWAY4)
    good = _chain(world, cni_path, service, default_ipv4_ippool=["ok"], enableGatewayDetection=True)
    [ip] = good.add(target).ips
    assert str(ip.gateway) == GATEWAY4
    good.delete(target)
    assert allocated(service.client, "ok") == 0


def test_detection_is_off_unless_asked_for(
    world: World, topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    add_pool(service.client, "v4", "192.0.2.0/24", ["192.0.2.50"], gateway=GATEWAY4)
    rogue, _ = _rogue(topo, world, "192.0.2.50/24")
    chain = _chain(world, cni_path, service, default_ipv4_ippool=["v4"])
    target = Target("ctr-d4", netns.path_of(world.pods[0]), "eth0", ARGS)
    try:
        [ip] = chain.add(target).ips  # nobody checks: the pod gets the held address
        assert str(ip.address) == "192.0.2.50/24"
    finally:
        chain.delete(target)
        _leave(rogue)


def test_a_bad_detection_key_is_a_config_error(
    world: World, cni_path: tuple[str, ...], service: ServiceProcess
) -> None:
    chain = _chain(world, cni_path, service, detectionProfile="slow")
    target = Target("ctr-d5", netns.path_of(world.pods[0]), "eth0", ARGS)
    with pytest.raises(PluginFailed) as failed:
        chain.add(target)
    error = failed.value.outcome.error
    assert error is not None
    assert (error.code, error.msg) == (
        Code.INVALID_NETWORK_CONFIG,
        "invalid ipam config key 'detectionProfile': expected one of fast, rfc",
    )
    # Debian's macvlan leaves its link behind when IPAM's ADD fails (its cleanup checks
    # an `err` the IPAM call shadows), and DEL refuses this config as ADD did: only the
    # sandbox's teardown removes the link. Nothing was allocated.
    with netlink(netns.path_of(world.pods[0])) as nl:
        nl.delete_link("eth0")
