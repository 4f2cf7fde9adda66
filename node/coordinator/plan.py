"""The coordinator's ADD as data: config + facts -> operations (pure; reference §4.3).

What it plans, and where it departs from Spiderpool on purpose:
- Underlay, first NIC: a veth pair (`veth0` in the pod, `veth<hash of the container ID>`
  on the host) with fixed MACs and `vethMTU`; permanent neighbours both ways; host addresses and
  the hijacked CIDRs (overlay pod CIDRs, service CIDRs, `hijackCIDR`) routed through the
  host; the pod's addresses routed back on the host in `hostRuleTable` behind a shared
  `from all lookup <table>` rule; connections that arrive through `veth0` answered through
  it (connection mark 1, rule `fwmark 1 lookup 100`, table 100 default via the host).
  The fwmark rule sits *before* the per-NIC source rules (990 < 1000), so a connection
  the host opened to a secondary NIC's address is answered through veth0 too; Spiderpool
  lets the source rule win, and such replies leave by the wrong NIC (issues #3683, #3725).
- Underlay, later NICs, and overlay: the NIC's own table (101 for the pod's second NIC,
  102 for the third, ... by NIC order: `config.policy_table`),
  `from <address> lookup <table>` rules, and route tuning (`tunePodRoutes`): the NIC that
  does not carry the default route has its routes moved out of main into its table.
- Tuning: MAC prefix, `txQueueLen` *inside the pod* (Spiderpool sets it on the host by
  mistake), `podRPFilter`, IPv6 enabled when the pod has IPv6, and an announcement (a
  gratuitous ARP or unsolicited NA) for each address of the NIC.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from spidernet.netconf.coordinator.config import CoordinatorConf, policy_table
from spidernet.node.errors import NodeError
from spidernet.node.plan.ops import (
    MAIN,
    SCOPE_LINK,
    AddAddress,
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    Announce,
    DeleteRoute,
    Op,
    ReplyViaLink,
    SetLinkUp,
    SetMac,
    SetSysctl,
    SetTxQueueLen,
)

from .facts import VETH0, HostState, IPAddress, IPInterface, IPNetwork, NicFacts, PodState

REPLY_MARK = 0x1
REPLY_TABLE = 100
HOST_RULE_PRIORITY = 1000
REPLY_RULE_PRIORITY = 990
SOURCE_RULE_PRIORITY = 1000
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
DEFAULT = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}
LINK_LOCAL6 = ipaddress.ip_network("fe80::/64")


class CoordinatorPlanError(NodeError, ValueError):
    """The pod is not in a state the coordinator can work with; the message says why."""


@dataclass(frozen=True)
class Request:
    """One ADD: the container, its NIC, the NIC's position among the pod's NICs (0 for the
    first), and the MACs to give a new veth pair (random, chosen by the caller)."""

    container_id: str
    ifname: str
    conf: CoordinatorConf
    host_mac: str
    pod_mac: str


def host_veth_name(container_id: str) -> str:
    """The host end of the pod's veth: `veth` + 11 hex digits of the container ID's SHA-256
    (15 in all, IFNAMSIZ - 1). Spiderpool takes the ID's first 11 characters, which only
    works for random IDs: two sandboxes whose IDs share a prefix would collide."""
    return "veth" + hashlib.sha256(container_id.encode()).hexdigest()[:11]


def prefixed_mac(prefix: str, addresses: Iterable[IPInterface]) -> str:
    """`prefix` (two bytes) + four bytes from the first IPv4 address, else the last four
    bytes of the first IPv6 address (reference §4.3 step 9)."""
    ordered = sorted(addresses, key=lambda a: a.version)
    if not ordered:
        raise CoordinatorPlanError(
            "podMACPrefix is set but the interface has no address to derive from"
        )
    tail = ordered[0].ip.packed[-4:]
    return prefix.lower() + ":" + ":".join(f"{b:02x}" for b in tail)


def _host_route(ip: IPAddress) -> IPNetwork:
    return ipaddress.ip_network(ip)


def _v4_source(nic: NicFacts) -> IPAddress | None:
    # IPv6 routes get no preferred source: the kernel refuses some (kernel bug 107071, §4.3).
    v4 = nic.family(4)
    return v4[0].ip if v4 else None


def _tuning(req: Request, nic: NicFacts, pod: PodState) -> list[Op]:
    conf = req.conf
    ops: list[Op] = []
    if conf.pod_mac_prefix:
        mac = prefixed_mac(conf.pod_mac_prefix, nic.addresses)
        if mac != nic.mac.lower():
            ops.append(SetMac("pod", nic.name, mac, nic.mac))
    if conf.tx_queue_len > 0 and conf.tx_queue_len != nic.txqlen:
        ops.append(SetTxQueueLen("pod", nic.name, conf.tx_queue_len, nic.txqlen))
    wanted: dict[str, str] = {}
    if nic.family(6):
        wanted["net.ipv6.conf.all.disable_ipv6"] = "0"
    if conf.pod_rp_filter >= 0:
        wanted["net.ipv4.conf.all.rp_filter"] = str(conf.pod_rp_filter)
        wanted[f"net.ipv4.conf.{nic.name}.rp_filter"] = str(conf.pod_rp_filter)
    for key, value in wanted.items():
        old = pod.sysctls.get(key)
        if old is not None and old != value:
            ops.append(SetSysctl("pod", key, value, old))
    return ops


def sysctl_keys(conf: CoordinatorConf, ifname: str) -> tuple[str, ...]:
    """The pod sysctls the plan may change (the gatherer reads their current values)."""
    keys = ["net.ipv6.conf.all.disable_ipv6"]
    if conf.pod_rp_filter >= 0:
        keys += ["net.ipv4.conf.all.rp_filter", f"net.ipv4.conf.{ifname}.rp_filter"]
    return tuple(keys)


def _hijack(conf: CoordinatorConf) -> list[IPNetwork]:
    seen: list[IPNetwork] = []
    for cidr in (*conf.overlay_pod_cidr, *conf.service_cidr, *conf.hijack_cidr):
        if cidr not in seen:
            seen.append(cidr)
    return seen


def _versions(nic: NicFacts) -> list[int]:
    return sorted({a.version for a in nic.addresses})


def _host_side(
    req: Request, nic: NicFacts, host: HostState, host_dev: str, mac: str | None
) -> list[Op]:
    """Routes (and neighbours) on the host back to the NIC's addresses, in hostRuleTable.

    The routes name the host address the pod routes back to as their source, so what the
    host sends a pod comes from an address the pod answers through the host (a source the
    host would otherwise take from the veth or the overlay link is one the pod's NIC table
    sends elsewhere)."""
    table = req.conf.host_rule_table
    ops: list[Op] = []
    for version in _versions(nic):
        ops.append(AddRule("host", FAMILY[version], HOST_RULE_PRIORITY, table, shared=True))
    for address in nic.addresses:
        if mac:
            ops.append(AddNeighbour("host", host_dev, address.ip, mac))
        route = _host_route(address.ip)
        src = host.first(address.version)
        ops.append(AddRoute("host", route, host_dev, scope=SCOPE_LINK, table=table, src=src))
    return ops


def _via_host(
    req: Request, nic: NicFacts, host: HostState, table: int, src: IPAddress | None
) -> list[Op]:
    """Routes to the host's addresses and to the hijacked CIDRs through veth0."""
    ops: list[Op] = []
    for hip in host.host_ips:
        if hip.version in _versions(nic):
            ops.append(
                AddRoute(
                    "pod",
                    _host_route(hip),
                    VETH0,
                    scope=SCOPE_LINK,
                    table=table,
                    src=src if hip.version == 4 else None,
                )
            )
    for cidr in _hijack(req.conf):
        gw = host.first(cidr.version)
        if gw is None or cidr.version not in _versions(nic):
            continue  # no host address of that family: nothing to route through
        ops.append(
            AddRoute(
                "pod", cidr, VETH0, gateway=gw, table=table, src=src if cidr.version == 4 else None
            )
        )
    return ops


def _policy_routes(req: Request, nic: NicFacts, table: int) -> list[Op]:
    return [
        AddRoute("pod", r.dst, nic.name, gateway=r.gw, table=table)
        for r in req.conf.policy_routes
        if r.gw.version in _versions(nic)
    ]


def _default_nic(pod: PodState, ifname: str) -> str:
    """The NIC (other than `ifname`) that owns a default route in main, or ''."""
    owners = {r.dev for r in pod.main_routes if r.dst.prefixlen == 0}
    return next((n.name for n in pod.nics if n.name != ifname and n.name in owners), "")


def _move_routes(pod: PodState, dev: str, table: int) -> list[Op]:
    """Copy `dev`'s main routes into `table`; the default route moves (leaves main)."""
    ops: list[Op] = []
    for r in pod.main_routes:
        if r.dev != dev or r.dst == LINK_LOCAL6:
            continue
        ops.append(AddRoute("pod", r.dst, dev, r.gateway, table, r.scope, r.src))
        if r.dst.prefixlen == 0:
            ops.append(DeleteRoute("pod", r.dst, dev, r.gateway, MAIN, r.scope, r.src))
    return ops


def _source_rules(nic: NicFacts, table: int) -> list[Op]:
    return [
        AddRule(
            "pod",
            FAMILY[a.version],
            SOURCE_RULE_PRIORITY,
            table,
            src=ipaddress.ip_network(a.ip),
        )
        for a in nic.addresses
    ]


def _tune_routes(req: Request, nic: NicFacts, pod: PodState, table: int) -> list[Op]:
    """Keep one NIC's default route in main; the other answers from its own table.

    The NIC that already has the default route keeps it, unless `podDefaultRouteNic` names
    this NIC: then the old one moves into this NIC's table instead."""
    detected = _default_nic(pod, nic.name)
    if not detected:
        return []
    wanted = req.conf.pod_default_route_nic
    if wanted and wanted != nic.name and pod.nic(wanted) is None:
        raise CoordinatorPlanError(f"podDefaultRouteNic '{wanted}' is not an interface of the pod")
    mover = pod.nic(detected) if wanted == nic.name else nic
    assert mover is not None
    return [*_source_rules(mover, table), *_move_routes(pod, mover.name, table)]


def plan_add(
    req: Request, pod: PodState, host: HostState, *, mode: str, first: bool, nic_index: int
) -> tuple[Op, ...]:
    """The ADD plan for `req.ifname`; `mode` and `first` come from `config.resolve_mode`."""
    nic = pod.nic(req.ifname)
    if nic is None:
        raise CoordinatorPlanError(f"interface '{req.ifname}' is not in the pod")
    if not nic.addresses:
        raise CoordinatorPlanError(f"interface '{req.ifname}' has no address to coordinate")
    conf = req.conf
    ops: list[Op] = [] if nic.up else [SetLinkUp("pod", nic.name)]
    src = _v4_source(nic)
    if mode == "underlay" and first:
        hv = host_veth_name(req.container_id)
        ops += [
            AddVeth(hv, VETH0, conf.veth_mtu, req.host_mac, req.pod_mac),
            SetLinkUp("host", hv),
            SetLinkUp("pod", VETH0),
        ]
        link = conf.veth_link_address
        if link is not None and link.version in _versions(nic):
            ops.append(AddAddress("pod", VETH0, ipaddress.ip_interface(link)))
        ops += _tuning(req, nic, pod)
        ops += [AddNeighbour("pod", VETH0, hip, req.host_mac) for hip in host.host_ips]
        ops += _host_side(req, nic, host, hv, req.pod_mac)
        ops += _via_host(req, nic, host, MAIN, src)
        ops.append(ReplyViaLink("pod", VETH0, REPLY_MARK, REPLY_TABLE))
        for version in _versions(nic):
            gw = host.first(version)
            if gw is None:
                continue
            ops.append(
                AddRule("pod", FAMILY[version], REPLY_RULE_PRIORITY, REPLY_TABLE, fwmark=REPLY_MARK)
            )
            ops.append(AddRoute("pod", DEFAULT[version], VETH0, gateway=gw, table=REPLY_TABLE))
        ops += _policy_routes(req, nic, MAIN)
    elif mode == "underlay":
        table = policy_table(nic_index)
        if pod.veth0 is None:
            raise CoordinatorPlanError(
                f"underlay NIC '{nic.name}' needs veth0: enable the coordinator on the pod's "
                f"first NIC '{conf.pod_default_cni_nic}' too"
            )
        ops += _tuning(req, nic, pod)
        ops += _host_side(req, nic, host, host_veth_name(req.container_id), pod.veth0.mac)
        ops += _via_host(req, nic, host, table, src)
        if conf.tune_pod_routes:
            ops += _tune_routes(req, nic, pod, table)
        ops += _policy_routes(req, nic, table)
    else:  # overlay: eth0 belongs to the overlay CNI; this NIC gets its own table
        ops += _overlay(req, nic, pod, host, first=first, table=policy_table(nic_index))
    return (*ops, *_announcements(nic))


def _overlay(
    req: Request, nic: NicFacts, pod: PodState, host: HostState, *, first: bool, table: int
) -> list[Op]:
    """Overlay mode: eth0 belongs to the overlay CNI, this NIC answers from its own table."""
    conf = req.conf
    if not host.overlay_peer:
        raise CoordinatorPlanError(
            f"overlay mode: the host end of '{conf.pod_default_cni_nic}' was not found"
        )
    ops = _tuning(req, nic, pod)
    ops += _host_side(req, nic, host, host.overlay_peer, None)
    # The host's addresses through eth0, in this NIC's table: replies from this NIC's
    # addresses to the host go back the way the host reached them.
    eth0 = conf.pod_default_cni_nic
    ops += [
        AddRoute("pod", _host_route(hip), eth0, scope=SCOPE_LINK, table=table)
        for hip in host.host_ips
        if hip.version in _versions(nic)
    ]
    if first:
        # The first underlay NIC beside an overlay eth0 also gives main the way to the
        # host and the hijacked CIDRs through eth0, from eth0's own address: otherwise
        # the NIC's subnet route sends the pod's packets for the host's underlay address
        # out of the NIC (a macvlan never reaches its own master) and they are lost.
        ops += _via_overlay(req, nic, host, pod)
    if conf.tune_pod_routes:
        ops += _tune_routes(req, nic, pod, table)
    if first:
        ops += _overlay_symmetry(pod, eth0)
    return [*ops, *_policy_routes(req, nic, table)]


def _via_overlay(req: Request, nic: NicFacts, host: HostState, pod: PodState) -> list[Op]:
    """In main: the host's addresses and the hijacked CIDRs through the overlay NIC, from
    its IPv4 address (Spiderpool's overlay mode does the same on its first call). A host
    address the overlay CNI already routes (ptp's host end) keeps its route."""
    overlay = pod.nic(req.conf.pod_default_cni_nic)
    if overlay is None:
        return []
    src = _v4_source(overlay)
    routed = {r.dst for r in pod.main_routes}
    ops: list[Op] = []
    for hip in host.host_ips:
        route = _host_route(hip)
        if hip.version in _versions(nic) and route not in routed:
            src_v = src if hip.version == 4 else None
            ops.append(
                AddRoute("pod", route, overlay.name, scope=SCOPE_LINK, table=MAIN, src=src_v)
            )
    for cidr in _hijack(req.conf):
        gw = host.first(cidr.version)
        if gw is None or cidr.version not in _versions(nic) or cidr in routed:
            continue
        src_v = src if cidr.version == 4 else None
        ops.append(AddRoute("pod", cidr, overlay.name, gateway=gw, table=MAIN, src=src_v))
    return ops


def _announcements(nic: NicFacts) -> list[Op]:
    """Tell the neighbours about the NIC's addresses, unless it does no ARP/ND (IFF_NOARP:
    ipvlan in L3 mode, where sending fails with ENOBUFS and no neighbour asks)."""
    return [] if nic.noarp else [Announce("pod", nic.name, a.ip) for a in nic.addresses]


def _overlay_symmetry(pod: PodState, eth0: str) -> list[Op]:
    """Replies from eth0's addresses leave by eth0 (Spiderpool issue #3683): a source rule
    to table 100 holding a copy of eth0's default route."""
    overlay = pod.nic(eth0)
    if overlay is None:
        return []
    ops: list[Op] = []
    for r in pod.main_routes:
        if r.dev == eth0 and r.dst.prefixlen == 0:
            ops.append(AddRoute("pod", r.dst, eth0, r.gateway, REPLY_TABLE, r.scope, r.src))
    ops += [
        AddRule(
            "pod",
            FAMILY[a.version],
            SOURCE_RULE_PRIORITY,
            REPLY_TABLE,
            src=ipaddress.ip_network(a.ip),
        )
        for a in overlay.addresses
    ]
    return ops
