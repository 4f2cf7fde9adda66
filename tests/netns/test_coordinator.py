"""spidernet-coordinator in the real chain: macvlan + spidernet-ipam + spidernet-coordinator,
run as a runtime runs it, with the plugin doing its work in-process (no node service
forwarding yet)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spidernet.node import netns, nft
from spidernet.node.cni.config import parse_conflist
from spidernet.node.lab.harness import World
from spidernet.node.lab.runtime import Chain, PluginFailed, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface, ping
from spidernet.node.netlink.client import netlink
from spidernet.node.netlink.records import Route

GW4, GW6 = "192.0.2.1", "2001:db8:1::1"
HOST4, HOST6 = "192.0.2.2", "2001:db8:1::2"
SERVICE_IP = "10.96.0.10"  # on the host's lo: the "service" a pod reaches through its host


@pytest.fixture
def service() -> Iterator[ServiceProcess]:
    base = Path(tempfile.mkdtemp(prefix="snt-crd-"))
    svc = ServiceProcess(socket=base / "s.sock", state_dir=base / "state", log=base / "log")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(base)


@pytest.fixture
def lab(topo: Topology) -> Iterator[World]:
    """Switch + gateway + host (eth0 192.0.2.2 / 2001:db8:1::2, a service address on lo)
    + one pod namespace; every namespace must be back to this state at the end."""
    seg = topo.segment()
    gw = topo.gateway(seg, (iface(f"{GW4}/24"), iface(f"{GW6}/64")))
    host = topo.namespace("host")
    topo.attach(seg, host, "eth0", (iface(f"{HOST4}/24"), iface(f"{HOST6}/64")))
    with netlink(netns.path_of(host)) as nl:
        nl.add_address("lo", iface(f"{SERVICE_IP}/32"))
    world = World(topo, seg, host, gw, [topo.namespace("pod")])
    world.seal()
    yield world
    changes = world.changes()
    assert not changes, changes


def pools(service: ServiceProcess, *docs: tuple[str, str, list[str], str]) -> None:
    for name, subnet, ips, gateway in docs:
        service.client.request(
            "POST",
            "/v1/resources",
            {
                "apiVersion": "spiderpool.spidernet.io/v2beta1",
                "kind": "SpiderIPPool",
                "metadata": {"name": name},
                "spec": {"subnet": subnet, "ips": ips, "gateway": gateway},
            },
        )


def chain(
    service: ServiceProcess,
    world: World,
    cni_path: tuple[str, ...],
    state: Path,
    *,
    v4: list[str],
    v6: list[str],
) -> Chain:
    conflist: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "underlay",
        "plugins": [
            {
                "type": "macvlan",
                "master": "eth0",
                "mode": "bridge",
                "ipam": {
                    "type": "spidernet-ipam",
                    "ipam_unix_socket_path": str(service.socket),
                    "default_ipv4_ippool": v4,
                    "default_ipv6_ippool": v6,
                },
            },
            {"type": "spidernet-coordinator", "serviceCIDR": ["10.96.0.0/12"]},
        ],
    }
    env = {"SPIDERNET_STATE_DIR": str(state), "SPIDERNET_SOCKET": str(service.socket)}
    return Chain(
        parse_conflist(json.dumps(conflist).encode()),
        cni_path,
        host_netns=world.host,
        extra_env=env,
    )


TARGET = "IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=p"


@pytest.mark.parametrize("families", ["v4", "dual"])
def test_underlay_pod_reaches_gateway_host_and_services_and_del_leaves_nothing(
    lab: World, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path, families: str
) -> None:
    pools(service, ("v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.60"], GW4))
    v6 = []
    if families == "dual":
        pools(service, ("v6", "2001:db8:1::/64", ["2001:db8:1::50-2001:db8:1::60"], GW6))
        v6 = ["v6"]
    c = chain(service, lab, cni_path, tmp_path, v4=["v4"], v6=v6)
    pod = lab.pods[0]
    target = Target("ctr-1", netns.path_of(pod), "eth0", TARGET)
    result = c.add(target)
    addrs = [str(ip.address.ip) for ip in result.ips]
    assert ping(pod, GW4)
    assert ping(pod, SERVICE_IP)  # through veth0 and the host
    assert ping(lab.host, addrs[0])  # the host reaches the pod through the veth
    if families == "dual":
        assert ping(pod, GW6)
        assert ping(lab.host, addrs[1])
    with netlink(netns.path_of(pod)) as nl:
        assert nl.link("veth0").kind == "veth"
    assert nft.list_reply_via_link(netns.path_of(pod)) is not None
    c.check(target)
    # A route removed by hand is named by CHECK.
    with netlink(netns.path_of(pod)) as nl:
        [svc_route] = [r for r in nl.routes() if str(r.dst) == "10.96.0.0/12"]
        nl.delete_route(svc_route)
    with pytest.raises(PluginFailed) as info:
        c.check(target)
    assert "10.96.0.0/12" in info.value.outcome.stdout
    c.delete(target)
    c.delete(target)  # DEL twice
    assert not list((tmp_path / "coordinator").glob("*.json"))


def test_a_failure_half_way_leaves_nothing(
    lab: World, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    pools(service, ("one", "192.0.2.0/24", ["192.0.2.77"], GW4))
    # The host already routes the pod's future address in table 500: the coordinator's own
    # route there fails after the veth pair, neighbours and sysctls were made.
    blocker = Route(dst=iface("192.0.2.77/32").network, table=500, oif=None)
    with netlink(netns.path_of(lab.host)) as nl:
        nl.add_route(Route(dst=blocker.dst, table=500, oif=nl.index("eth0"), scope=253))
    c = chain(service, lab, cni_path, tmp_path, v4=["one"], v6=[])
    pod = lab.pods[0]
    target = Target("ctr-2", netns.path_of(pod), "eth0", TARGET)
    with pytest.raises(PluginFailed) as info:
        c.add(target)
    assert info.value.outcome.plugin == "spidernet-coordinator"
    assert "192.0.2.77/32" in info.value.outcome.stdout
    with netlink(netns.path_of(pod)) as nl:
        assert sorted(link.name for link in nl.links()) == ["eth0", "lo"]  # no veth0 left
    with netlink(netns.path_of(lab.host)) as nl:
        assert not any(link.name.startswith("vethctr") for link in nl.links())
        nl.delete_route(Route(dst=blocker.dst, table=500, oif=nl.index("eth0"), scope=253))
    c.delete(target)  # what the runtime does after a failed ADD
