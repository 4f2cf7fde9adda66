"""`spidernet diag` on pods wired by the real chain (Debian's macvlan + spidernet-ipam +
spidernet-coordinator, through a running service): healthy pods have no findings; each
broken set-up yields its finding and no other; the JSON output holds to its schema."""

from __future__ import annotations

import io
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from spidernet.cni.config import parse_conflist
from spidernet.node import netns
from spidernet.node.diag import command
from spidernet.node.diag.analyze import KINDS
from spidernet.node.lab.addresses import GATEWAY4, GATEWAY6, HOST4, HOST6, SERVICE_IP
from spidernet.node.lab.runtime import Chain, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface
from spidernet.node.netlink.client import netlink
from spidernet.node.netlink.records import AF_INET, Route
from spidernet.testbed.conflists import chain_conf, macvlan, spidernet_coordinator, spidernet_ipam
from spidernet.testbed.harness import World
from spidernet.testbed.pools import add_pool

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "diag.schema.json").read_text())
ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=p"
GW2 = "198.51.100.1"
FAR = "203.0.113.9"  # beyond both gateways: only --to reaches it
ip = ipaddress.ip_address


def _pool(service: ServiceProcess, name: str, subnet: str, ips: str, gateway: str) -> None:
    add_pool(service.client, name, subnet, [ips], gateway=gateway)


def _chain(
    service: ServiceProcess,
    world: World,
    cni_path: tuple[str, ...],
    state: Path,
    pools: tuple[list[str], list[str]],
    master: str = "eth0",
    **coordinator: Any,
) -> Chain:
    conflist = chain_conf(
        macvlan(spidernet_ipam(default_ipv4_ippool=pools[0], default_ipv6_ippool=pools[1]), master),
        spidernet_coordinator(serviceCIDR=["10.96.0.0/12"], **coordinator),
        name=f"underlay-{master}",
    )
    env = {"SPIDERNET_STATE_DIR": str(state), "SPIDERNET_SOCKET": str(service.socket)}
    return Chain(
        parse_conflist(json.dumps(conflist).encode()),
        cni_path,
        host_netns=world.host,
        extra_env=env,
    )


@dataclass
class Pod:
    world: World
    service: ServiceProcess
    ns: str
    addresses: dict[str, list[str]]  # NIC -> its addresses (no prefix)

    @property
    def path(self) -> str:
        return netns.path_of(self.ns)

    def diag(
        self, *to: str, target: str = "", probe: bool = True, find_host: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """Run diag (JSON) on this pod, check the document against the schema. The host
        side is named, unless `find_host`: then diag finds it by veth0's peer."""
        out, err = io.StringIO(), io.StringIO()
        status = command.main(
            target or self.ns,
            host_netns=None if find_host else self.world.host,
            to=to,
            output="json",
            probe=probe,
            socket=str(self.service.socket),
            state=str(self.service.state_dir),  # the coordinator runs in the service
            out=out,
            err=err,
        )
        assert err.getvalue() == "", err.getvalue()
        doc = json.loads(out.getvalue())
        jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
        return status, doc


def kinds(doc: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in doc["findings"]}


def _world(topo: Topology) -> World:
    seg = topo.segment()
    gw = topo.gateway(seg, (iface(f"{GATEWAY4}/24"), iface(f"{GATEWAY6}/64")))
    host = topo.namespace("host")
    topo.attach(seg, host, "eth0", (iface(f"{HOST4}/24"), iface(f"{HOST6}/64")))
    with netlink(netns.path_of(host)) as nl:
        nl.add_address("lo", iface(f"{SERVICE_IP}/32"))
    world = World(topo, seg, host, gw, [topo.namespace("pod")])
    world.seal()
    return world


@pytest.fixture
def underlay(
    topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> Iterator[Pod]:
    """A dual-stack underlay pod: eth0 (macvlan) + veth0 to the host."""
    world = _world(topo)
    _pool(service, "v4", "192.0.2.0/24", "192.0.2.50-192.0.2.60", str(GATEWAY4))
    _pool(service, "v6", "2001:db8:1::/64", "2001:db8:1::50-2001:db8:1::60", str(GATEWAY6))
    chain = _chain(service, world, cni_path, tmp_path, (["v4"], ["v6"]))
    target = Target("ctr-diag-1", netns.path_of(world.pods[0]), "eth0", ARGS)
    result = chain.add(target)
    addresses = {"eth0": [str(a.address.ip) for a in result.ips]}
    pod = Pod(world, service, world.pods[0], addresses)
    try:
        yield pod
    finally:
        chain.delete(target)
        changes = world.changes()
        assert not changes, changes


@pytest.fixture
def multi(
    topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> Iterator[Pod]:
    """An IPv4 pod with two underlay NICs: eth0 on the first segment, net1 on a second one
    whose gateway alone routes to 203.0.113.0/24 (tunePodRoutes on)."""
    world = _world(topo)
    seg2 = topo.segment("switch2")
    gw2 = topo.gateway(seg2, (iface(f"{GW2}/24"),), role="gw2")
    with netlink(netns.path_of(gw2)) as nl:
        nl.add_address("lo", iface("203.0.113.1/32"))
    topo.attach(seg2, world.host, "eth1")
    _pool(service, "v4", "192.0.2.0/24", "192.0.2.50-192.0.2.60", str(GATEWAY4))
    _pool(service, "side", "198.51.100.0/24", "198.51.100.50-198.51.100.60", GW2)
    first = _chain(service, world, cni_path, tmp_path, (["v4"], []))
    second = _chain(service, world, cni_path, tmp_path, (["side"], []), "eth1", tunePodRoutes=True)
    path = netns.path_of(world.pods[0])
    t0, t1 = Target("ctr-diag-2", path, "eth0", ARGS), Target("ctr-diag-2", path, "net1", ARGS)
    eth0 = first.add(t0)
    net1 = second.add(t1)
    addresses = {
        "eth0": [str(a.address.ip) for a in eth0.ips],
        "net1": [str(a.address.ip) for a in net1.ips],
    }
    try:
        yield Pod(world, service, world.pods[0], addresses)
    finally:
        second.delete(t1)
        first.delete(t0)
        with netlink(netns.path_of(world.host)) as nl:
            nl.delete_link("eth1")
        changes = world.changes()
        assert not changes, changes


# -- healthy pods --------------------------------------------------------------------------


def test_a_healthy_underlay_pod_has_no_findings(underlay: Pod) -> None:
    status, doc = underlay.diag()
    assert (status, doc["findings"]) == (0, []), json.dumps(doc["findings"], indent=1)
    assert doc["target"]["pod"] == "t/p"
    assert doc["ipam"]["interfaces"]["eth0"] == [
        f"{a}/{24 if ':' not in a else 64}" for a in underlay.addresses["eth0"]
    ]
    assert doc["defaultRouteNic"] == "eth0"
    targets = {(p["target"], p["direction"]) for p in doc["paths"]}
    assert {("gateway of eth0", "outbound"), ("gateway of eth0", "inbound")} <= targets
    assert {("host", "inbound"), ("cluster 10.96.0.0/12", "outbound")} <= targets
    # The host reaches the pod through its veth, the pod answers through veth0.
    host = [p for p in doc["paths"] if p["target"] == "host" and p["direction"] == "inbound"]
    assert host
    assert {p["reply"]["dev"] for p in host} == {"veth0"}
    assert {p["request"]["type"] for p in host} == {"local"}
    [peer] = [i for i in doc["host"]["interfaces"] if i["name"].startswith("veth")]
    assert {h["route"]["dev"] for h in doc["hostRoutes"]} == {peer["name"]}
    # Both gateways answered their probes, and nobody else holds the pod's addresses.
    probes = {(p["kind"], p["address"]): p["answeredBy"] for p in doc["probes"]}
    with netlink(netns.path_of(underlay.world.gateway)) as nl:
        gw_mac = nl.link("eth0").mac
    assert probes[("gateway", str(GATEWAY4))] == [gw_mac]
    assert probes[("gateway", str(GATEWAY6))] == [gw_mac]
    assert all(probes[("conflict", a)] == [] for a in underlay.addresses["eth0"])
    assert doc["unchecked"] == []


def test_the_target_can_be_a_path_a_pod_or_a_container_id(underlay: Pod) -> None:
    for target in (underlay.path, "t/p", "ctr-diag-1"):
        status, doc = underlay.diag(target=target, probe=False)
        assert (status, doc["target"]["netns"], doc["target"]["pod"]) == (0, underlay.path, "t/p")
        assert doc["target"]["containerID"] == "ctr-diag-1"
        assert doc["unchecked"] == ["ARP/NDP probes of gateways and addresses (--no-probe)"]


def test_the_host_side_is_where_veth0s_peer_is(underlay: Pod) -> None:
    status, doc = underlay.diag(probe=False, find_host=True)
    assert (status, doc["findings"]) == (0, [])
    assert doc["host"]["netns"] == netns.path_of(underlay.world.host)


def test_a_healthy_pod_with_two_nics_has_no_findings(multi: Pod) -> None:
    status, doc = multi.diag(FAR)
    assert (status, doc["findings"]) == (0, [])
    inbound = {
        (p["nic"], p["reply"]["dev"])
        for p in doc["paths"]
        if p["direction"] == "inbound" and p["target"] == f"--to {FAR}"
    }
    assert inbound == {("eth0", "eth0"), ("net1", "net1")}  # answered where it came in


# -- one broken thing each ---------------------------------------------------------------


def _pod_nl(pod: Pod) -> Any:
    return netlink(pod.path)


def test_a_reply_leaving_by_another_nic(multi: Pod) -> None:
    net1 = ipaddress.ip_network(f"{multi.addresses['net1'][0]}/32")
    with _pod_nl(multi) as nl:
        [rule] = [r for r in nl.rules() if r.family == AF_INET and r.src == net1]
        nl.delete_rule(rule)  # no more "from <net1 address> lookup <net1's table>"
    try:
        status, doc = multi.diag(FAR)
    finally:
        with _pod_nl(multi) as nl:
            nl.add_rule(rule)
    assert (status, kinds(doc)) == (1, {"asymmetric-reply", "plan-drift"})
    messages = [f["message"] for f in doc["findings"]]
    want = f"arriving on net1 for {net1.network_address} is answered through eth0"
    assert f"a request from {FAR} (--to {FAR}) {want}" in messages
    assert doc["findings"][0]["confirm"].startswith(f"ip -n {multi.ns} route get ")
    # The rule was the coordinator's: its saved plan for net1 names it.
    drifted = doc["findings"][-1]
    assert drifted["message"] == (
        f"the coordinator's ADD for net1: add IPv4 rule {rule.priority} from {net1} "
        f"lookup {rule.table} in the pod: is missing"
    )
    assert drifted["confirm"] == f"ip -n {multi.ns} -4 rule show"


def test_rp_filter_dropping_the_reply(multi: Pod) -> None:
    net1 = multi.addresses["net1"][0]
    far = ipaddress.ip_network("203.0.113.0/24")
    key = "net.ipv4.conf.eth0.rp_filter"
    before = netns.get_sysctl(multi.ns, key)
    with _pod_nl(multi) as nl:
        # Out by eth0 but from net1's address: the answer comes back on eth0, while the
        # reverse path of net1's address is net1 (its source rule and table).
        route = Route(far, gateway=ip(GATEWAY4), oif=nl.index("eth0"), prefsrc=ip(net1))
        nl.add_route(route)
    netns.set_sysctl(multi.ns, key, "1")
    try:
        status, doc = multi.diag(FAR)
    finally:
        netns.set_sysctl(multi.ns, key, before)
        with _pod_nl(multi) as nl:
            nl.delete_route(route)
    assert (status, kinds(doc)) == (1, {"rp-filter-drop"})
    [finding] = doc["findings"]
    assert f"the reply from {FAR} (--to {FAR}) to {net1}, arriving on eth0" in finding["message"]
    assert finding["confirm"] == f"ip -n {multi.ns} route get {net1} from {FAR} iif eth0"


def test_no_host_route_back_to_the_pod(underlay: Pod) -> None:
    v4 = next(a for a in underlay.addresses["eth0"] if ":" not in a)
    with netlink(netns.path_of(underlay.world.host)) as nl:
        [route] = [r for r in nl.routes() if r.table == 500 and str(r.dst) == f"{v4}/32"]
        nl.delete_route(route)
    try:
        status, doc = underlay.diag()
    finally:
        with netlink(netns.path_of(underlay.world.host)) as nl:
            nl.add_route(route)
    assert (status, kinds(doc)) == (1, {"no-host-route", "plan-drift"})
    [finding, drifted] = doc["findings"]
    assert finding["message"].startswith(
        f"the host routes the pod's {v4} through eth0, not its veth"
    )
    assert finding["confirm"] == f"ip -n {underlay.world.host} route get {v4}"
    # The route was the coordinator's: its saved plan names it.
    assert drifted["message"].startswith("the coordinator's ADD for eth0: ")
    assert f"{v4}/32" in drifted["message"]
    assert drifted["message"].endswith("is missing")
    assert drifted["confirm"] == f"ip -n {underlay.world.host} -4 route show table 500"


def test_a_gateway_that_does_not_answer(underlay: Pod) -> None:
    gw = netns.path_of(underlay.world.gateway)
    with netlink(gw) as nl:
        nl.delete_address("eth0", iface(f"{GATEWAY4}/24"))
    try:
        status, doc = underlay.diag()
    finally:
        with netlink(gw) as nl:
            nl.add_address("eth0", iface(f"{GATEWAY4}/24"))
    assert (status, kinds(doc)) == (1, {"gateway-silent"})
    [finding] = doc["findings"]
    assert finding["message"] == f"gateway {GATEWAY4} of eth0 does not answer ARP"
    assert finding["confirm"] == f"ip netns exec {underlay.ns} arping -c 3 -I eth0 {GATEWAY4}"


def test_an_address_held_by_another_mac(underlay: Pod, topo: Topology) -> None:
    v4 = next(a for a in underlay.addresses["eth0"] if ":" not in a)
    rogue = topo.namespace("rogue")
    topo.attach(underlay.world.segment, rogue, "eth0", (iface(f"{v4}/24"),))
    with netlink(netns.path_of(rogue)) as nl:
        rogue_mac = nl.link("eth0").mac
    try:
        status, doc = underlay.diag()
    finally:
        with netlink(netns.path_of(rogue)) as nl:
            nl.delete_link("eth0")  # its peer leaves the switch with it
        netns.remove(rogue)
    assert (status, kinds(doc)) == (1, {"address-conflict"})
    [finding] = doc["findings"]
    assert finding["message"] == f"{v4} of eth0 is also held by {rogue_mac}"


def test_an_ipam_record_that_differs_from_the_interface(underlay: Pod) -> None:
    stray = iface("192.0.2.99/24")
    with _pod_nl(underlay) as nl:
        nl.add_address("eth0", stray)
    try:
        status, doc = underlay.diag()
    finally:
        with _pod_nl(underlay) as nl:
            nl.delete_address("eth0", stray)
    assert (status, kinds(doc)) == (1, {"ipam-mismatch"})
    [finding] = doc["findings"]
    assert "192.0.2.99" in finding["message"]
    assert finding["message"].startswith("IPAM records ")
    assert finding["confirm"].startswith("spidernet get spiderendpoint p -n t -o yaml; ")


def test_veth_ends_with_different_mtus(underlay: Pod) -> None:
    with netlink(netns.path_of(underlay.world.host)) as nl:
        [peer] = [link for link in nl.links() if link.name.startswith("veth")]
        nl.set_link(peer.name, mtu=1400)
    try:
        status, doc = underlay.diag()
    finally:
        with netlink(netns.path_of(underlay.world.host)) as nl:
            nl.set_link(peer.name, mtu=peer.mtu)
    assert (status, kinds(doc)) == (1, {"veth-mtu-mismatch"})
    [finding] = doc["findings"]
    assert (
        finding["message"] == f"the pod's veth0 has MTU {peer.mtu}, its host end {peer.name} 1400"
    )


def test_the_default_route_on_the_wrong_nic(multi: Pod) -> None:
    default = ipaddress.ip_network("0.0.0.0/0")
    with _pod_nl(multi) as nl:
        old = Route(default, gateway=ip(GATEWAY4), oif=nl.index("eth0"))
        new = Route(default, gateway=ip(GW2), oif=nl.index("net1"))
        nl.delete_route(old)
        nl.add_route(new)
    try:
        status, doc = multi.diag()
    finally:
        with _pod_nl(multi) as nl:
            nl.delete_route(new)
            nl.add_route(old)
    assert (status, kinds(doc)) == (1, {"default-route-nic", "plan-drift"})
    [finding, drifted] = doc["findings"]
    assert finding["message"] == "the IPv4 default route leaves by net1, not eth0"
    assert finding["confirm"] == f"ip -n {multi.ns} -4 route show default"
    # The coordinator moved net1's default route out of main: it is back.
    assert drifted["message"] == (
        f"the coordinator's ADD for net1: delete route 0.0.0.0/0 via {GW2} dev net1 "
        "in the pod: is back"
    )


# -- without the service, and bad input ----------------------------------------------------


def test_with_the_service_down_it_says_what_it_could_not_check(underlay: Pod) -> None:
    out, err = io.StringIO(), io.StringIO()
    status = command.main(
        underlay.ns,
        host_netns=underlay.world.host,
        output="json",
        socket="/tmp/snt-no-such-service.sock",
        out=out,
        err=err,
    )
    doc = json.loads(out.getvalue())
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert (status, doc["findings"], doc["ipam"]) == (0, [], None)
    [line, plans] = doc["unchecked"]
    assert line.startswith("IPAM records and SpiderCoordinator settings: no control service")
    assert plans == "the coordinator's saved plan: no IPAM record names the container"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spidernet", "diag", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_usage_errors_exit_2_without_a_traceback(underlay: Pod) -> None:
    sock = str(underlay.service.socket)
    for args, words in (
        (["no-such-pod-or-netns", "--socket", sock], "no network namespace, container or pod"),
        (["t/nobody", "--socket", sock], "pod 't/nobody' not found"),
        ([underlay.ns, "--to", "10.0.0.1:99999", "--socket", sock], "port 99999"),
        ([underlay.ns, "--to", "not-an-address", "--socket", sock], "--to"),
        (["/proc/self/ns/uts", "--socket", sock], "is not a network namespace"),
    ):
        done = _cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""


def test_the_table_output_names_the_findings(underlay: Pod) -> None:
    with netlink(netns.path_of(underlay.world.host)) as nl:
        [peer] = [link for link in nl.links() if link.name.startswith("veth")]
        nl.set_link(peer.name, mtu=1400)
    try:
        done = _cli(
            underlay.ns,
            "--host-netns",
            underlay.world.host,
            "--no-probe",
            "--socket",
            str(underlay.service.socket),
        )
    finally:
        with netlink(netns.path_of(underlay.world.host)) as nl:
            nl.set_link(peer.name, mtu=peer.mtu)
    assert done.returncode == 1, done.stderr
    for heading in ("Interfaces", "Rules", "Routes", "Neighbours", "Sysctls", "Paths"):
        assert heading in done.stdout
    assert "1 finding" in done.stdout
    # Without --state-dir the service said where its coordinator saved the plans.
    assert "saved plan" not in done.stdout
    assert "- veth-mtu-mismatch: the pod's veth0 has MTU" in done.stdout


def test_an_address_removed_and_added_back_is_not_called_healthy(underlay: Pod) -> None:
    # The kernel drops every route that named the address as its source: the coordinator's
    # routes through veth0 to the host and the service CIDR. Nothing in the pod asks for
    # them any more; only the saved plan does.
    v4 = iface(f"{next(a for a in underlay.addresses['eth0'] if ':' not in a)}/24")
    with _pod_nl(underlay) as nl:
        before = nl.routes()
        nl.delete_address("eth0", v4)
        nl.add_address("eth0", v4)
        lost = [r for r in before if r not in nl.routes()]
    assert any(r.prefsrc == v4.ip for r in lost), "no route that named the address went"
    try:
        status, doc = underlay.diag(probe=False)
    finally:
        with _pod_nl(underlay) as nl:
            for route in sorted(lost, key=lambda r: r.gateway is not None):  # on-link first
                nl.add_route(route)
    assert status == 1
    # The host's requests to the pod arrive on veth0 and are answered through eth0 now.
    assert kinds(doc) == {"asymmetric-reply", "misrouted", "plan-drift"}
    messages = [f["message"] for f in doc["findings"] if f["kind"] == "misrouted"]
    assert any("(cluster 10.96.0.0/12)" in m for m in messages), messages
    assert any("(host)" in m for m in messages), messages
    drifted = [f["message"] for f in doc["findings"] if f["kind"] == "plan-drift"]
    assert any("10.96.0.0/12" in m and m.endswith("is missing") for m in drifted), drifted
    # Put back, the pod is healthy again.
    status, doc = underlay.diag(probe=False)
    assert (status, doc["findings"]) == (0, []), doc["findings"]


def test_the_schema_knows_every_finding_kind() -> None:
    item = SCHEMA["properties"]["findings"]["items"]["properties"]["kind"]
    assert item["enum"] == list(KINDS)
