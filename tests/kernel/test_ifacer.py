"""spidernet-ifacer in Debian's kernel: bonds, VLANs and VLANs on bonds made on a "host"
namespace, macvlan pods on them with addresses from spidernet-ipam, reaching a gateway on
the far side of a "switch"; reuse, refusal, and `spidernet ifacer prune`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.config import parse_conflist
from spidernet.node import netns
from spidernet.node.lab.runtime import Chain, PluginFailed, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface, ping

# A chain refused at the ifacer is not followed by DEL here: Debian's macvlan DEL looks its
# master up first and fails when the ifacer never made it.
from spidernet.node.netlink.client import netlink
from spidernet.testbed.conflists import chain_conf, macvlan, spidernet_ipam
from spidernet.testbed.pools import add_pool

GATEWAY = "192.0.2.1"
SUBNET = "192.0.2.0/24"


def ip(ns: str, *args: str) -> str:
    """`ip ARGS` in namespace `ns`; its output (fails the test when it fails)."""
    done = subprocess.run(
        netns.exec_argv(ns, ["ip", *args]), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"ip {' '.join(args)} in {ns}: {done.stderr}"
    return done.stdout


def details(ns: str, name: str) -> dict[str, Any]:
    """`ip -d -j link show NAME`: the kernel's own account of a link."""
    [link] = json.loads(ip(ns, "-d", "-j", "link", "show", name))
    return dict(link)


def host_links(ns: str) -> set[str]:
    with netlink(netns.path_of(ns)) as nl:
        return {x.name for x in nl.links()}


def spidernet(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The `spidernet` CLI run inside namespace `ns` (as an operator on the node runs it)."""
    argv = netns.exec_argv(ns, [sys.executable, "-m", "spidernet", *args])
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def wire(topo: Topology, host: str, switch: str, pairs: list[tuple[str, str]]) -> None:
    """veth pairs: NIC names in `host`, ports in `switch`; both ends up."""
    with netlink(netns.path_of(host)) as nl:
        for nic, port in pairs:
            nl.add_veth(nic, port, peer_netns=netns.path_of(switch))
            nl.set_link(nic, state="up")
    with netlink(netns.path_of(switch)) as nl:
        for _, port in pairs:
            nl.set_link(port, state="up")


def chain(
    service: ServiceProcess,
    cni_path: tuple[str, ...],
    host: str,
    state: Path,
    ifacer: dict[str, Any],
    master: str,
    pool: str = "none",
) -> Chain:
    conflist = chain_conf(
        {"type": "spidernet-ifacer", "stateDir": str(state), **ifacer},
        macvlan(spidernet_ipam(service.socket, default_ipv4_ippool=[pool]), master),
        name="vlan-underlay",
    )
    return Chain(parse_conflist(json.dumps(conflist).encode()), cni_path, host_netns=host)


def pods_reach_the_gateway(topo: Topology, c: Chain, count: int, deadline_s: int = 5) -> None:
    for i in range(count):
        pod = topo.namespace(f"pod{i}")
        result = c.add(Target(f"ctr-{i}", netns.path_of(pod), "net1"))
        [address] = result.ips
        assert address.address.ip in iface(SUBNET).network
        assert ping(pod, GATEWAY, deadline_s=deadline_s), f"pod{i} cannot reach {GATEWAY}"


def delete_pods(topo: Topology, c: Chain, count: int) -> None:
    for i in range(count):
        c.delete(Target(f"ctr-{i}", netns.path_of(f"{topo.prefix}-pod{i}"), "net1"))


def far_side(switch: str, mode: int) -> None:
    """The far side, in `switch`: an active-backup bond meets a plain bridge; an 802.3ad bond
    meets an 802.3ad bond (LACP on both ends). VLAN 100 carries the gateway."""
    if mode == 4:
        ip(switch, "link", "add", "agg", "type", "bond", "mode", "802.3ad", "lacp_rate", "fast")
        ip(switch, "link", "set", "agg", "type", "bond", "miimon", "100")
    else:
        ip(switch, "link", "add", "agg", "type", "bridge")
    for port in ("p1", "p2"):
        ip(switch, "link", "set", port, "down")
        ip(switch, "link", "set", port, "master", "agg")
        ip(switch, "link", "set", port, "up")
    ip(switch, "link", "set", "agg", "up")
    ip(switch, "link", "add", "link", "agg", "name", "agg.100", "type", "vlan", "id", "100")
    ip(switch, "addr", "add", f"{GATEWAY}/24", "dev", "agg.100")
    ip(switch, "link", "set", "agg.100", "up")


def check_bond_and_vlan(host: str, mode: int) -> None:
    """bond0 in `host` as the ifacer made it (its mode's options; with 802.3ad, LACP
    negotiated), marked as the ifacer's, both NICs its slaves, and bond0.100 on it."""
    bond, vlan = details(host, "bond0"), details(host, "bond0.100")
    assert bond["linkinfo"]["info_kind"] == "bond"
    data = bond["linkinfo"]["info_data"]
    assert data["mode"] == ("802.3ad" if mode == 4 else "active-backup")
    assert data["miimon"] == 100
    if mode == 4:
        assert data["ad_lacp_rate"] == "fast"
        assert data["xmit_hash_policy"] == "layer3+4"
        assert data["ad_actor_sys_prio"] == 100
        # LACP negotiated with the far side: both ports in one aggregator with a partner.
        status = subprocess.run(
            netns.exec_argv(host, ["cat", "/proc/net/bonding/bond0"]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "Partner Mac Address: 00:00:00:00:00:00" not in status
    else:
        assert data["primary"] == "eth1"
    assert bond["ifalias"] == "spidernet-ifacer"
    assert vlan["linkinfo"]["info_data"]["id"] == 100
    assert vlan["link"] == "bond0"
    for nic in ("eth1", "eth2"):
        assert details(host, nic)["master"] == "bond0"


@pytest.mark.parametrize(
    ("mode", "options", "ips"),
    [
        (1, "miimon=100;primary=eth1", "192.0.2.50-192.0.2.54"),
        (
            4,
            "miimon=100;lacp_rate=fast;xmit_hash_policy=layer3+4;ad_actor_sys_prio=100",
            "192.0.2.55-192.0.2.59",
        ),
    ],
    ids=["active-backup", "802.3ad"],
)
def test_bond_with_vlan_100_carries_macvlan_pods_to_the_gateway(
    topo: Topology,
    cni_path: tuple[str, ...],
    service: ServiceProcess,
    tmp_path: Path,
    mode: int,
    options: str,
    ips: str,
) -> None:
    host, switch = topo.namespace("host"), topo.namespace("switch")
    wire(topo, host, switch, [("eth1", "p1"), ("eth2", "p2")])
    far_side(switch, mode)
    pool = f"bond-mode{mode}"  # the lane's one service: every test has its own pool
    add_pool(service.client, pool, SUBNET, [ips], gateway=GATEWAY)
    base = host_links(host)

    ifacer = {
        "interfaces": ["eth1", "eth2"],
        "vlanID": 100,
        "bond": {"name": "bond0", "mode": mode, "options": options},
    }
    c = chain(service, cni_path, host, tmp_path, ifacer, "bond0.100", pool)
    pods_reach_the_gateway(topo, c, 2, deadline_s=15)  # LACP settles in a few seconds
    check_bond_and_vlan(host, mode)

    # DEL leaves the shared bond and VLAN; prune removes them once no pod uses them.
    env = ["--state-dir", str(tmp_path)]
    if mode == 1:
        # What list and an early prune say does not depend on the bond's mode, and each
        # `spidernet` process costs about 20 s of Python start-up under emulation: once.
        delete_pods(topo, c, 1)
        assert spidernet(host, "ifacer", "prune", *env).stdout == "nothing to prune\n"
        delete_pods(topo, c, 2)
        listed = json.loads(spidernet(host, "ifacer", "list", "-o", "json", *env).stdout)
        # the VLAN is unused; the bond is used by the VLAN only: prune takes both, VLAN first
        unused = {(m["name"], m["unused"]) for m in listed}
        assert unused == {("bond0", False), ("bond0.100", True)}
        assert [m["uppers"] for m in listed if m["name"] == "bond0"] == [["bond0.100"]]
    else:
        delete_pods(topo, c, 2)
    pruned = spidernet(host, "ifacer", "prune", *env)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines() == ["removed bond0.100", "removed bond0"]
    assert host_links(host) == base
    assert all(details(host, nic).get("master") is None for nic in ("eth1", "eth2"))
    assert all("UP" in details(host, nic)["flags"] for nic in ("eth1", "eth2"))


def test_vlan_of_one_nic_is_made_once_reused_and_a_second_name_refused(
    topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    host, gw = topo.namespace("host"), topo.namespace("gw")
    wire(topo, host, gw, [("eth1", "up1"), ("eth2", "up2")])
    ip(gw, "link", "add", "link", "up1", "name", "up1.200", "type", "vlan", "id", "200")
    ip(gw, "addr", "add", f"{GATEWAY}/24", "dev", "up1.200")
    ip(gw, "link", "set", "up1.200", "up")
    add_pool(service.client, "vlan200", SUBNET, ["192.0.2.60-192.0.2.64"], gateway=GATEWAY)
    base = host_links(host)
    ifacer = {"interfaces": ["eth1"], "vlanID": 200}
    c = chain(service, cni_path, host, tmp_path, ifacer, "eth1.200", "vlan200")

    pods_reach_the_gateway(topo, c, 1)
    first = details(host, "eth1.200")
    assert first["linkinfo"]["info_data"]["id"] == 200
    assert first["link"] == "eth1"
    second = Target("ctr-9", netns.path_of(topo.namespace("pod9")), "net1")
    c.add(second)
    assert ping(f"{topo.prefix}-pod9", GATEWAY)
    assert details(host, "eth1.200")["ifindex"] == first["ifindex"]  # reused, not remade

    # The same VLAN ID on another NIC under another name: refused, nothing made.
    before = host_links(host)
    other = chain(service, cni_path, host, tmp_path, {"interfaces": ["eth2"], "vlanID": 200}, "x")
    pod = topo.namespace("podx")
    with pytest.raises(PluginFailed) as info:
        other.add(Target("ctr-x", netns.path_of(pod), "net1"))
    error = info.value.outcome.error
    assert error is not None
    assert error.code == 7
    assert "VLAN 200 already exists on this host as 'eth1.200'" in error.msg
    assert host_links(host) == before

    c.delete(second)
    delete_pods(topo, c, 1)
    assert "eth1.200" in host_links(host)  # DEL leaves it for other pods
    pruned = spidernet(host, "ifacer", "prune", "--state-dir", str(tmp_path))
    assert pruned.stdout == "removed eth1.200\n"
    assert host_links(host) == base


def test_a_bond_add_failing_half_way_restores_the_nics(
    topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    host, switch = topo.namespace("host"), topo.namespace("switch")
    wire(topo, host, switch, [("eth1", "p1")])
    # The second "NIC" is an IPIP tunnel: the kernel refuses it as a slave of a bond whose
    # first slave is Ethernet, after the bond was made and eth1 enslaved.
    ip(
        host,
        "link",
        "add",
        "tnl2",
        "type",
        "ipip",
        "local",
        "198.51.100.1",
        "remote",
        "198.51.100.2",
    )
    ip(host, "link", "set", "tnl2", "up")
    before = {n: details(host, n)["flags"] for n in ("eth1", "tnl2")}
    ifacer = {"interfaces": ["eth1", "tnl2"], "bond": {"name": "bond0", "mode": 1}}
    c = chain(service, cni_path, host, tmp_path, ifacer, "bond0")
    pod = topo.namespace("pod")
    with pytest.raises(PluginFailed) as info:
        c.add(Target("ctr-1", netns.path_of(pod), "net1"))
    error = info.value.outcome.error
    assert error is not None
    assert "failed to enslave 'tnl2' to 'bond0'" in error.msg
    # the bond is gone, eth1 released and up again, tnl2 as it was, no record kept
    assert "bond0" not in host_links(host)
    assert {n: details(host, n)["flags"] for n in ("eth1", "tnl2")} == before
    assert details(host, "eth1").get("master") is None
    assert list((tmp_path / "users").glob("*.json")) == []


def test_a_link_in_the_way_is_refused_before_anything_changes(
    topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    host, switch = topo.namespace("host"), topo.namespace("switch")
    wire(topo, host, switch, [("eth1", "p1"), ("eth2", "p2")])
    ip(host, "link", "set", "eth2", "down")
    ip(host, "link", "add", "bond0.300", "type", "dummy")  # an administrator's, in the way
    before = {n: details(host, n)["flags"] for n in ("eth1", "eth2")}
    base = host_links(host)
    ifacer = {"interfaces": ["eth1", "eth2"], "vlanID": 300, "bond": {"name": "bond0", "mode": 1}}
    c = chain(service, cni_path, host, tmp_path, ifacer, "bond0.300")
    pod = topo.namespace("pod")
    with pytest.raises(PluginFailed) as info:
        c.add(Target("ctr-1", netns.path_of(pod), "net1"))
    error = info.value.outcome.error
    assert error is not None
    assert error.code == 7
    assert "'bond0.300' exists on the host and is a dummy" in error.msg
    assert host_links(host) == base
    assert {n: details(host, n)["flags"] for n in ("eth1", "eth2")} == before
