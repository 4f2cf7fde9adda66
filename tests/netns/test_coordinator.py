"""spidernet-coordinator in the real chain: macvlan + spidernet-ipam + spidernet-coordinator,
run as a runtime runs it, with the plugin doing its work in-process (no node service
forwarding yet)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.config import parse_conflist, plugin_config
from spidernet.node import netns, nft
from spidernet.node.lab.addresses import GATEWAY4, GATEWAY6, HOST4, HOST6, SERVICE_CIDR, SERVICE_IP
from spidernet.node.lab.runtime import Chain, PluginFailed, Target, find_plugin, invoke
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface, ping
from spidernet.node.netlink.client import netlink
from spidernet.node.netlink.records import Route
from spidernet.testbed.conflists import chain_conf, macvlan, spidernet_coordinator, spidernet_ipam
from spidernet.testbed.harness import World
from spidernet.testbed.pools import add_pool

GW4, GW6 = GATEWAY4, GATEWAY6
SERVICE_IP6 = "fd00:96::10"
SERVICE_CIDRS = [SERVICE_CIDR, "fd00:96::/108"]


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
        nl.add_address("lo", iface(f"{SERVICE_IP6}/128"))
    world = World(topo, seg, host, gw, [topo.namespace("pod")])
    world.seal()
    yield world
    changes = world.changes()
    assert not changes, changes


def pools(service: ServiceProcess, *docs: tuple[str, str, list[str], str]) -> None:
    for name, subnet, ips, gateway in docs:
        add_pool(service.client, name, subnet, ips, gateway=gateway)


def chain(
    service: ServiceProcess,
    world: World,
    cni_path: tuple[str, ...],
    state: Path,
    *,
    v4: list[str],
    v6: list[str],
    master: str = "eth0",
    coordinator: dict[str, Any] | None = None,
) -> Chain:
    conflist: dict[str, Any] = chain_conf(
        macvlan(
            spidernet_ipam(service.socket, default_ipv4_ippool=v4, default_ipv6_ippool=v6),
            master,
        ),
        spidernet_coordinator(serviceCIDR=SERVICE_CIDRS, **(coordinator or {})),
    )
    env = {"SPIDERNET_STATE_DIR": str(state), "SPIDERNET_SOCKET": str(service.socket)}
    return Chain(
        parse_conflist(json.dumps(conflist).encode()),
        cni_path,
        host_netns=world.host,
        extra_env=env,
    )


TARGET = "IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=p"


@pytest.mark.parametrize("families", ["v4", "v6", "dual"])
def test_underlay_pod_reaches_gateway_host_and_services_and_del_leaves_nothing(
    lab: World, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path, families: str
) -> None:
    v4 = [] if families == "v6" else ["v4"]
    v6 = [] if families == "v4" else ["v6"]
    if v4:
        pools(service, ("v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.60"], GW4))
    if v6:
        pools(service, ("v6", "2001:db8:1::/64", ["2001:db8:1::50-2001:db8:1::60"], GW6))
    c = chain(service, lab, cni_path, tmp_path, v4=v4, v6=v6)
    pod = lab.pods[0]
    target = Target("ctr-1", netns.path_of(pod), "eth0", TARGET)
    result = c.add(target)
    reach = {4: (GW4, SERVICE_IP, "10.96.0.0/12"), 6: (GW6, SERVICE_IP6, "fd00:96::/108")}
    for ip in result.ips:
        gateway, service_ip, _ = reach[ip.address.version]
        assert ping(pod, gateway)  # over macvlan
        assert ping(pod, service_ip)  # through veth0 and the host
        assert ping(lab.host, str(ip.address.ip))  # the host reaches the pod through the veth
    with netlink(netns.path_of(pod)) as nl:
        assert nl.link("veth0").kind == "veth"
    assert nft.list_reply_via_link(netns.path_of(pod)) is not None
    c.check(target)
    # A route removed by hand is named by CHECK.
    cidr = reach[result.ips[0].address.version][2]
    with netlink(netns.path_of(pod)) as nl:
        [svc_route] = [r for r in nl.routes() if str(r.dst) == cidr]
        nl.delete_route(svc_route)
    with pytest.raises(PluginFailed) as info:
        c.check(target)
    assert cidr in info.value.outcome.stdout
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
        assert sorted(link.name for link in nl.links()) == ["eth0", "lo"]
        nl.delete_route(Route(dst=blocker.dst, table=500, oif=nl.index("eth0"), scope=253))
    c.delete(target)  # what the runtime does after a failed ADD


@pytest.mark.parametrize("tune", [True, False])
def test_two_underlay_nics_answer_from_the_nic_the_request_came_in_on(
    lab: World,
    topo: Topology,
    cni_path: tuple[str, ...],
    service: ServiceProcess,
    tmp_path: Path,
    tune: bool,
) -> None:
    # A second segment: its gateway also holds 203.0.113.1, which only it can route to; a
    # reply to that address sent by eth0 (the pod's default route) would be lost.
    seg2 = topo.segment("switch2")
    gw2 = topo.gateway(seg2, (iface("198.51.100.1/24"),), role="gw2")
    with netlink(netns.path_of(gw2)) as nl:
        nl.add_address("lo", iface("203.0.113.1/32"))
    topo.attach(seg2, lab.host, "eth1")
    pools(service, ("v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.60"], GW4))
    pools(service, ("side", "198.51.100.0/24", ["198.51.100.50-198.51.100.60"], "198.51.100.1"))
    first = chain(service, lab, cni_path, tmp_path, v4=["v4"], v6=[])
    second = chain(
        service,
        lab,
        cni_path,
        tmp_path,
        v4=["side"],
        v6=[],
        master="eth1",
        coordinator={"tunePodRoutes": tune},
    )
    pod = lab.pods[0]
    t0 = Target("ctr-3", netns.path_of(pod), "eth0", TARGET)
    t1 = Target("ctr-3", netns.path_of(pod), "net1", TARGET)
    first.add(t0)
    [net1] = second.add(t1).ips
    reply = subprocess.run(
        netns.exec_argv(
            gw2,
            ["ping", "-n", "-q", "-c", "1", "-w", "3", "-I", "203.0.113.1", str(net1.address.ip)],
        ),
        capture_output=True,
        check=False,
    )
    # The request came in on net1 and is answered from it.
    assert reply.returncode == 0, reply.stdout
    # Which NIC the pod's own traffic leaves by: with tuning eth0 keeps the default route;
    # without it (the control case) net1's later default route takes over, what
    # tunePodRoutes is there to prevent.
    get = subprocess.run(
        netns.exec_argv(pod, ["ip", "route", "get", "203.0.113.9"]),
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"dev {'eth0' if tune else 'net1'} " in get.stdout
    assert ping(pod, GW4)  # eth0 keeps the default route
    second.delete(t1)
    first.delete(t0)
    with netlink(netns.path_of(lab.host)) as nl:
        nl.delete_link("eth1")  # back to the host's sealed baseline


@pytest.mark.parametrize("with_service", [True, False])
def test_the_node_service_does_the_work_and_without_it_the_plugin_does(
    lab: World,
    cni_path: tuple[str, ...],
    service: ServiceProcess,
    tmp_path: Path,
    with_service: bool,
) -> None:
    # host-local for addresses, so only the coordinator depends on the service here.
    conflist = {
        "cniVersion": "1.0.0",
        "name": "underlay",
        "plugins": [
            {
                "type": "macvlan",
                "master": "eth0",
                "mode": "bridge",
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(tmp_path / "hl"),
                    "ranges": [
                        [{"subnet": "192.0.2.0/24", "rangeStart": "192.0.2.80", "gateway": GW4}]
                    ],
                },
            },
            {"type": "spidernet-coordinator", "serviceCIDR": ["10.96.0.0/12"]},
        ],
    }
    parsed = parse_conflist(json.dumps(conflist).encode())
    socket = str(service.socket) if with_service else str(tmp_path / "no.sock")
    env = {"SPIDERNET_STATE_DIR": str(tmp_path / "state"), "SPIDERNET_SOCKET": socket}
    pod = lab.pods[0]
    call = partial(
        invoke,
        container_id="ctr-5",
        netns_path=netns.path_of(pod),
        ifname="eth0",
        cni_args=TARGET,
        cni_path=cni_path,
        host_netns=lab.host,
        extra_env=env,
    )
    macvlan = call(find_plugin("macvlan", cni_path), "ADD", plugin_config(parsed, 0))
    assert macvlan.ok, macvlan.stdout
    coordinator = call(
        find_plugin("spidernet-coordinator", cni_path),
        "ADD",
        plugin_config(parsed, 1, prev_result=macvlan.result),
    )
    assert coordinator.ok, coordinator.stdout
    assert ("running in-process" in coordinator.stderr) is not with_service
    assert ping(pod, SERVICE_IP)
    chain_ = Chain(parsed, cni_path, host_netns=lab.host, extra_env=env)
    chain_.cache[("ctr-5", "eth0")] = coordinator.result  # type: ignore[assignment]
    chain_.delete(Target("ctr-5", netns.path_of(pod), "eth0", TARGET))


def test_overlay_eth0_keeps_cluster_traffic_and_net1_gets_the_underlay(
    lab: World, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    # eth0 from Debian's ptp plugin (the "overlay"), net1 from macvlan + spidernet-ipam.
    overlay = {
        "cniVersion": "1.0.0",
        "name": "overlay",
        "plugins": [
            {
                "type": "ptp",
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(tmp_path / "hl"),
                    "ranges": [[{"subnet": "10.244.1.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }
    pools(service, ("v4", "192.0.2.0/24", ["192.0.2.50-192.0.2.60"], GW4))
    env = {"SPIDERNET_STATE_DIR": str(tmp_path / "state"), "SPIDERNET_SOCKET": str(service.socket)}
    first = Chain(
        parse_conflist(json.dumps(overlay).encode()), cni_path, host_netns=lab.host, extra_env=env
    )
    second = chain(service, lab, cni_path, tmp_path, v4=["v4"], v6=[])
    pod = lab.pods[0]
    t0 = Target("ctr-6", netns.path_of(pod), "eth0", TARGET)
    t1 = Target("ctr-6", netns.path_of(pod), "net1", TARGET)
    first.add(t0)
    [net1] = second.add(t1).ips

    def leaves_by(dst: str) -> str:
        out = subprocess.run(
            netns.exec_argv(pod, ["ip", "route", "get", dst]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split(" dev ")[1].split()[0]

    assert leaves_by(SERVICE_IP) == "eth0"  # cluster traffic stays on the overlay
    assert leaves_by("192.0.2.1") == "net1"  # the underlay subnet by net1
    assert leaves_by("203.0.113.9") == "eth0"  # eth0 keeps the default route
    # The host's own underlay address lies in net1's subnet, but a macvlan never reaches its
    # master: the pod reaches its host through eth0 (found on the node lane's real node).
    assert leaves_by(HOST4) == "eth0"
    assert ping(pod, HOST4)
    assert ping(pod, GW4)
    # The host reaches net1's address through the overlay link, and the reply comes back.
    assert ping(lab.host, str(net1.address.ip))
    with netlink(netns.path_of(pod)) as nl:
        assert "veth0" not in {link.name for link in nl.links()}  # no veth in overlay mode
        tables = {r.table for r in nl.routes()}
    assert {100, 101} <= tables  # eth0's reply copy and net1's own table
    second.check(t1)
    second.delete(t1)
    first.delete(t0)


def test_pod_tuning_happens_inside_the_pod_and_check_sees_it_drift(
    lab: World, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    pools(service, ("v4", "192.0.2.0/24", ["192.0.2.70"], GW4))
    tuning = {"txQueueLen": 2000, "podMACPrefix": "0a:1b"}
    c = chain(service, lab, cni_path, tmp_path, v4=["v4"], v6=[], coordinator=tuning)
    pod = lab.pods[0]
    target = Target("ctr-7", netns.path_of(pod), "eth0", TARGET)
    c.add(target)
    with netlink(netns.path_of(pod)) as nl:
        assert nl.txqlen("eth0") == 2000  # inside the pod (Spiderpool sets it on the host)
        assert nl.link("eth0").mac == "0a:1b:c0:00:02:46"  # prefix + 192.0.2.70
    with netlink(netns.path_of(lab.host)) as nl:
        assert nl.txqlen("eth0") != 2000
    c.check(target)
    with netlink(netns.path_of(pod)) as nl:
        nl.set_link("eth0", txqlen=500)
    with pytest.raises(PluginFailed) as info:
        c.check(target)
    assert "queue length is 500" in info.value.outcome.stdout
    c.delete(target)
