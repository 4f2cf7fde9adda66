"""What to ask the kernel about a pod (pure): its NICs and addresses, the places it should
reach, the route lookups for each request and reply, and the ARP/NDP probes.

Targets, in order:
- each NIC's gateways (from its routes in any table, and the IPAM record);
- the host, through the pod's host link: the host addresses the pod routes to it (/32 or
  /128), and those the coordinator's saved plan routes there even when the route is gone.
  The host link is the coordinator's veth0 (underlay mode), or, beside an overlay
  CNI's eth0 (overlay mode: IPAM holds the pod's other NICs, not eth0), eth0 itself;
- each cluster CIDR routed, or planned to be routed, to the host link (service CIDR, overlay
  pod CIDRs, hijacked CIDRs);
- a neighbour on each NIC's subnet (its gateway when it sits there);
- every `--to ADDR[:PORT]`.

For each target the pod's own request is looked up (outbound); for a target that talks to
the pod (not a cluster CIDR), its requests arriving on the NIC they belong to are looked up
as the kernel looks up a received packet (inbound, rp_filter included), and the reply's
route beside them. `--to` targets are tried as arriving on every NIC.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from spidernet.node.netlink.records import RT_TABLE_LOCAL, RTPROT_KERNEL

from .model import (
    VETH0,
    Answer,
    IPAddress,
    IPNetwork,
    LookupSpec,
    Path,
    PathTarget,
    ProbeSpec,
    Record,
    Side,
)

# The links that are not the pod's NICs.
_NOT_NICS = frozenset({"lo", VETH0})


def nics(pod: Side) -> list[str]:
    """The pod's NICs in creation (index) order: every link but lo and veth0."""
    links = sorted(pod.state.links, key=lambda link: link.index)
    return [link.name for link in links if link.name not in _NOT_NICS]


def pod_ips(pod: Side, record: Record | None, nic: str) -> tuple[IPAddress, ...]:
    """The addresses of `nic`: the IPAM record's when there is one for it (so a stray
    address on the interface is one finding, not a cascade), else the interface's."""
    if record is not None and nic in record.nics:
        return tuple(a.ip for a in record.nics[nic])
    return tuple(a.ip for a in pod.addresses_of(nic))


def all_pod_ips(pod: Side, record: Record | None) -> list[tuple[str, IPAddress]]:
    return [(nic, ip) for nic in nics(pod) for ip in pod_ips(pod, record, nic)]


def gateways(pod: Side, record: Record | None, nic: str) -> tuple[IPAddress, ...]:
    """The gateways `nic` routes through (any table but local), then the record's."""
    link = pod.link(nic)
    found: list[IPAddress] = []
    for route in pod.state.routes:
        if link is None or route.oif != link.index or route.table == RT_TABLE_LOCAL:
            continue
        if route.gateway is not None and route.gateway not in found:
            found.append(route.gateway)
    if record is not None:
        found += [g for g in record.gateways.get(nic, ()) if g not in found]
    return tuple(found)


def host_link(pod: Side, record: Record | None) -> str | None:
    """The pod's link to its host: veth0 when the coordinator made one (underlay mode);
    else the pod's first NIC when it is a veth that the IPAM record does not hold while it
    holds another of the pod's NICs (an overlay CNI's eth0, the coordinator's overlay
    mode); else None."""
    if pod.link(VETH0) is not None:
        return VETH0
    names = nics(pod)
    if not names or record is None:
        return None
    first = pod.link(names[0])
    ours = [n for n in names[1:] if n in record.nics]
    if first is None or first.kind != "veth" or first.name in record.nics or not ours:
        return None
    return first.name


def _host_link_routes(pod: Side, link_name: str | None) -> list[IPNetwork]:
    """What the pod routes to its host link (not the kernel's own subnet routes)."""
    link = pod.link(link_name) if link_name else None
    if link is None:
        return []
    return [
        r.dst
        for r in pod.state.routes
        if r.oif == link.index
        and r.table != RT_TABLE_LOCAL
        and r.proto != RTPROT_KERNEL
        and not r.dst.is_link_local
    ]


def host_addresses(
    pod: Side, link: str | None, planned: Sequence[IPNetwork] = ()
) -> list[IPAddress]:
    """The host's addresses the pod routes to its host link (the coordinator's /32, /128),
    and those the coordinator's saved plan routes there (`planned`), even when gone."""
    out: list[IPAddress] = []
    for dst in [*_host_link_routes(pod, link), *planned]:
        if dst.prefixlen == dst.max_prefixlen and dst.network_address not in out:
            out.append(dst.network_address)
    return out


def cluster_cidrs(
    pod: Side, link: str | None, planned: Sequence[IPNetwork] = ()
) -> list[IPNetwork]:
    """The CIDRs the pod sends to its host (service, overlay pods, hijacked), from its
    routes and from the saved plan (`planned`), even when gone."""
    out: list[IPNetwork] = []
    for dst in [*_host_link_routes(pod, link), *planned]:
        if 0 < dst.prefixlen < dst.max_prefixlen and dst not in out:
            out.append(dst)
    return out


def _neighbour_in(net: IPNetwork, own: Sequence[IPAddress], gws: Sequence[IPAddress]) -> IPAddress:
    """An address on `net` to stand for its neighbours: its gateway, else the first host
    address that is not the pod's own."""
    for gw in gws:
        if gw in net:
            return gw
    for candidate in (net.network_address + 1, net.network_address + 2):
        if candidate not in own:
            return candidate
    return net.network_address + 3  # pragma: no cover - a /30 holding both own addresses


def targets(
    pod: Side,
    record: Record | None,
    extra: Sequence[tuple[IPAddress, int]] = (),
    planned: Sequence[IPNetwork] = (),
) -> list[PathTarget]:
    """Where the pod should reach (see the module's doc), without repeats. `planned`: what
    the coordinator's saved plan routes to the host link, asked even when the route is
    gone (a vanished route must not remove its own question)."""
    out: list[PathTarget] = []

    def add(target: PathTarget) -> None:
        if all(
            (t.address, t.nic, t.port) != (target.address, target.nic, target.port) for t in out
        ):
            out.append(target)

    for nic in nics(pod):
        for gw in gateways(pod, record, nic):
            add(PathTarget(f"gateway of {nic}", gw, nic))
    link = host_link(pod, record)
    for host in host_addresses(pod, link, planned):
        add(PathTarget("host", host, link, via_host_link=True))
    for cidr in cluster_cidrs(pod, link, planned):
        address = cidr.network_address + 1
        add(PathTarget(f"cluster {cidr}", address, link, inbound=False, via_host_link=True))
    for nic in nics(pod):
        own = pod_ips(pod, record, nic)
        gws = gateways(pod, record, nic)
        for iface in pod.addresses_of(nic):
            if iface.ip in own and iface.network.num_addresses > 2:
                add(PathTarget(f"{nic} subnet", _neighbour_in(iface.network, own, gws), nic))
    for address, port in extra:
        add(PathTarget(f"--to {address}" + (f":{port}" if port else ""), address, None, port))
    return out


def paths(pod: Side, record: Record | None, goals: Sequence[PathTarget]) -> list[Path]:
    """The lookups of every target: outbound always, inbound for targets that talk to the
    pod (one per NIC address of the target's family that its requests may come to).

    An outbound path's reply lookup depends on the request's answer (its link and source):
    `outbound_reply` makes it once that is known."""
    out: list[Path] = []
    link = host_link(pod, record)
    for target in goals:
        out.append(
            Path(
                target,
                "outbound",
                target.nic or "",
                None,
                LookupSpec("pod", target.address, port=target.port),
                None,
            )
        )
        if not target.inbound:
            continue
        arrive_on = [target.nic] if target.nic else nics(pod)
        for nic in arrive_on:
            # Through its host link the host reaches every address of the pod;
            # elsewhere only the NIC's own.
            locals_ = (
                [ip for _, ip in all_pod_ips(pod, record)]
                if nic == link
                else list(pod_ips(pod, record, nic))
            )
            for local in locals_:
                if local.version != target.address.version:
                    continue
                out.append(
                    Path(
                        target,
                        "inbound",
                        nic,
                        local,
                        LookupSpec("pod", local, src=target.address, iif=nic, port=target.port),
                        LookupSpec("pod", target.address, src=local, port=target.port),
                    )
                )
    return out


def outbound_reply(path: Path, request: Answer) -> LookupSpec | None:
    """The input lookup of the answer to an outbound request: to the source the request
    left with, from the target, arriving on the request's link."""
    route = request.route
    if route is None or route.prefsrc is None or not request.dev:
        return None
    return LookupSpec("pod", route.prefsrc, src=path.target.address, iif=request.dev)


def host_lookups(pod: Side, record: Record | None) -> list[LookupSpec]:
    """The host's route to each of the pod's addresses."""
    return [LookupSpec("host", ip) for _, ip in all_pod_ips(pod, record)]


def probes(pod: Side, record: Record | None) -> list[ProbeSpec]:
    """Each NIC's gateways (asked from the NIC's own address of their family), and each of
    the pod's addresses (DAD-style: is anyone else holding it?)."""
    out: list[ProbeSpec] = []
    for nic in nics(pod):
        own = pod_ips(pod, record, nic)
        for gw in gateways(pod, record, nic):
            src = next((ip for ip in own if ip.version == gw.version), None)
            on_link = any(gw in a.network for a in pod.addresses_of(nic))
            if src is not None and on_link:
                out.append(ProbeSpec("gateway", nic, gw, src))
        out += [ProbeSpec("conflict", nic, ip, None) for ip in own]
    return out


def default_nic(pod: Side, configured: str) -> str:
    """The NIC that should hold the default route: the configured one (the pod annotation
    or SpiderCoordinator's podDefaultRouteNIC) when the pod has it, else the first NIC."""
    names = nics(pod)
    if configured and configured in names:
        return configured
    return names[0] if names else ""


def parse_to(text: str) -> tuple[IPAddress, int]:
    """`ADDR`, `ADDR:PORT`, `[V6ADDR]:PORT` or a bare IPv6 address; raises ValueError."""
    port = 0
    host = text
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"'{text}' is not ADDR[:PORT]")
        port = int(rest[1:]) if rest else 0
    elif text.count(":") == 1:
        host, _, tail = text.partition(":")
        port = int(tail)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} of '{text}' is not 0-65535")
    return ipaddress.ip_address(host), port
