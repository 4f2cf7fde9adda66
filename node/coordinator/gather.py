"""Facts for the planner, read from the kernel (the effect side of the coordinator).

The node service calls this with netlink clients opened in the pod's namespace and in the
caller's (the host's); without a service, the plugin opens them itself.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from spidernet.node.netlink.errors import NetlinkFailure, NetlinkMissing
from spidernet.node.netlink.protocol import Rtnetlink
from spidernet.node.netlink.records import RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, Link

from .facts import VETH0, HostState, IPAddress, NicFacts, PodState, RouteFact

# Host interfaces whose addresses are never a way to the host for a pod: container, bridge
# and tunnel devices of other networking stacks (the list Spiderpool skips, §4.3 step 6).
_NOT_HOST = re.compile(
    r"^(docker|cbr|dummy|virbr|lxcbr|veth|cali|flannel|kube-ipvs|cni|vx-submariner|cilium)"
    r"|^lo$"
)


def _addresses(nl: Rtnetlink) -> dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]]:
    """Global addresses by interface index."""
    by_index: dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = {}
    for a in nl.addresses():
        if a.scope == RT_SCOPE_UNIVERSE and not a.address.ip.is_link_local:
            by_index.setdefault(a.index, []).append(a.address)
    return by_index


def _nics(
    nl: Rtnetlink,
) -> tuple[list[Link], dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]]]:
    links = [link for link in nl.links() if link.name != "lo"]
    return sorted(links, key=lambda link: link.index), _addresses(nl)


def gather_pod(nl: Rtnetlink, sysctls: dict[str, str]) -> PodState:
    """The pod's NICs in creation order, veth0, its main table, and `sysctls` (the current
    values of the keys the plan may change, read by the caller)."""
    links, addresses = _nics(nl)
    names = {link.index: link.name for link in links}
    facts = {
        link.name: NicFacts(
            name=link.name,
            mac=link.mac,
            up=link.up,
            addresses=tuple(addresses.get(link.index, ())),
            peer_index=link.link if link.kind == "veth" else None,
            noarp=link.noarp,
        )
        for link in links
    }
    routes = tuple(
        RouteFact(r.dst, names[r.oif], r.gateway, r.scope, r.prefsrc)
        for r in nl.routes(RT_TABLE_MAIN)
        if r.table == RT_TABLE_MAIN and r.oif in names
    )
    return PodState(
        nics=tuple(f for name, f in facts.items() if name != VETH0),
        veth0=facts.get(VETH0),
        main_routes=routes,
        sysctls=sysctls,
    )


def host_ips(
    links: Sequence[Link],
    addresses: dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]],
    pod: Sequence[IPAddress],
) -> tuple[IPAddress, ...]:
    """Host addresses a pod can route to through veth0: those on the pod's subnets first,
    then the others of physical-looking interfaces."""
    candidates = [
        a for link in links if not _NOT_HOST.match(link.name) for a in addresses.get(link.index, [])
    ]
    near = [a.ip for a in candidates if any(p in a.network for p in pod)]
    rest = [a.ip for a in candidates if a.ip not in near]
    return tuple(near + rest)


def gather_host(nl: Rtnetlink, pod: PodState, overlay_nic: str) -> HostState:
    """The host side: its addresses for the pod, and the host end of the pod's overlay NIC
    (a veth whose peer index the pod's link names).

    Only the links that matter are read, one by one: the addresses' links and the overlay
    peer. A node's host namespace holds a veth per pod, and a dump of every link on every
    ADD would grow with the pods."""
    addresses = _addresses(nl)
    overlay = pod.nic(overlay_nic)
    wanted = sorted(addresses)
    if overlay is not None and overlay.peer_index is not None:
        wanted.append(overlay.peer_index)
    links: list[Link] = []
    for index in dict.fromkeys(wanted):
        try:
            links.append(nl.link_at(index))
        except NetlinkMissing:
            continue  # gone since the address dump
    links = [link for link in links if link.name != "lo"]
    pod_ips = [a.ip for nic in pod.nics for a in nic.addresses]
    # First the source address the host itself would use towards each pod address (the
    # kernel's route lookup, as Spiderpool's `ip route get <podIP>`), then the others.
    facing: list[IPAddress] = []
    for ip in pod_ips:
        try:
            src = nl.route_get(ip).prefsrc
        except NetlinkFailure:
            continue  # no route to it from the host: nothing to learn
        if src is not None and src not in facing and not src.is_link_local:
            facing.append(src)
    ordered = [*facing, *(ip for ip in host_ips(links, addresses, pod_ips) if ip not in facing)]
    peer = next(
        (
            link.name
            for link in links
            if overlay is not None and overlay.peer_index == link.index and link.kind == "veth"
        ),
        "",
    )
    return HostState(host_ips=tuple(ordered), overlay_peer=peer)
