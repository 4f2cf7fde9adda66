"""What diag reads (effects): both namespaces, the kernel's route lookups, ARP/NDP probes,
and the control service's records. Each reader returns model records; a failure to read
something optional is returned as a sentence for the report's "not checked" list."""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from spidernet.control.client import Client, ServiceError, ServiceUnreachable
from spidernet.control.model.endpoint_doc import (
    attached_of,
    container_of,
    entries_of,
    interfaces_of,
    netns_of,
)
from spidernet.node.access.base import Namespaces
from spidernet.node.detect import probe as arp
from spidernet.node.netlink.client import Netlink
from spidernet.node.netlink.errors import NetlinkFailure
from spidernet.node.netlink.records import State

from .model import (
    Answer,
    LookupSpec,
    ProbeResult,
    ProbeSpec,
    Record,
    Side,
    sysctl_key,
)
from .plan import nics

ENDPOINT_KIND = "SpiderEndpoint"


def pod_sysctl_keys(links: Sequence[str]) -> list[str]:
    """The pod's sysctls that decide paths: reverse-path filtering and ARP behaviour per
    link, forwarding, and whether IPv6 is on."""
    keys = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
    for name in ["all", "default", *links]:
        for k in ("rp_filter", "arp_ignore", "arp_announce"):
            keys.append(sysctl_key("net", "ipv4", "conf", name, k))
        keys.append(sysctl_key("net", "ipv6", "conf", name, "disable_ipv6"))
    return keys


def host_sysctl_keys(links: Sequence[str]) -> list[str]:
    keys = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.rp_filter"]
    return keys + [sysctl_key("net", "ipv4", "conf", name, "rp_filter") for name in links]


def read_side(
    access: Namespaces, netns: str | None, label: Literal["pod", "host"], nl: Netlink
) -> Side:
    """The whole netlink state of a namespace, and its path sysctls."""
    state = nl.state()
    names = [link.name for link in state.links if link.name != "lo"]
    keys = pod_sysctl_keys(names) if label == "pod" else host_sysctl_keys(names)
    return Side(label, netns, state, access.read_sysctls(netns, keys))


def host_view(
    host: Side,
    pod: Side,
    link: str | None,
    pod_ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> Side:
    """The part of the host that concerns the pod: the peer of the pod's host link (veth0,
    or an overlay eth0) and the links that hold the host's addresses; every rule; routes to
    the pod's addresses; neighbour entries for them. A node holds a veth per pod, and diag
    shows one pod."""
    veth = pod.link(link) if link else None
    peer_index = veth.link if veth is not None else None
    with_addresses = {a.index for a in host.state.addresses if not a.address.ip.is_link_local}
    links = tuple(
        link
        for link in host.state.links
        if link.index == peer_index or (link.index in with_addresses and link.name != "lo")
    )
    routes = tuple(
        r for r in host.state.routes if any(ip in r.dst for ip in pod_ips) and r.dst.prefixlen
    )
    neighbours = tuple(n for n in host.state.neighbours if n.dst in pod_ips)
    indexes = {link.index for link in links}
    addresses = tuple(a for a in host.state.addresses if a.index in indexes)
    kept = [sysctl_key("net", "ipv4", "conf", link.name, "rp_filter") for link in links]
    sysctls = {
        k: v for k, v in host.sysctls.items() if ".conf." not in k or k in kept or ".all." in k
    }
    state = State(links, addresses, routes, host.state.rules, neighbours)
    return Side("host", host.netns, state, sysctls)


def lookup(nl: Netlink, spec: LookupSpec) -> Answer:
    """The kernel's answer to one route lookup, or the error it gave."""
    try:
        route = nl.route_get(spec.dst, src=spec.src, iif=spec.iif, dport=spec.port)
    except NetlinkFailure as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        return Answer(error=name, message=os.strerror(e.errno))
    dev = ""
    if route.oif is not None:
        try:
            dev = nl.link_at(route.oif).name
        except NetlinkFailure:
            dev = f"index {route.oif}"
    return Answer(route=route, dev=dev)


def run_probe(access: Namespaces, netns: str, spec: ProbeSpec, timing: arp.Timing) -> ProbeResult:
    try:
        # A gateway needs one answer; for an address, every station that holds it is named.
        answers = arp.resolve(
            access,
            netns,
            spec.nic,
            spec.address,
            src=spec.src,
            timing=timing,
            until_first=spec.kind == "gateway",
        )
    except (arp.ProbeError, OSError) as e:
        return ProbeResult(spec, (), str(e))
    return ProbeResult(spec, tuple(sorted({a.mac for a in answers})))


# -- the control service -----------------------------------------------------------------


def record_from(doc: Mapping[str, Any]) -> Record:
    """A SpiderEndpoint document as a Record: only the interfaces an ADD configured."""
    meta = doc.get("metadata", {})
    attached = attached_of(doc)
    wanted = [e for e in entries_of(doc) if not attached or e.get("interface") in attached]
    return Record(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        container_id=container_of(doc),
        netns=netns_of(doc),
        nics={str(e["interface"]): tuple(interfaces_of(e)) for e in wanted},
        gateways={
            str(e["interface"]): tuple(
                ipaddress.ip_address(str(e[f"{fam}Gateway"]))
                for fam in ("ipv4", "ipv6")
                if e.get(f"{fam}Gateway")
            )
            for e in wanted
        },
    )


class Service:
    """The control service's records, or why they are not available."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.problem = ""
        self._endpoints: list[Record] | None = None

    def endpoints(self) -> list[Record]:
        if self._endpoints is None:
            try:
                found = self._client.request("GET", f"/v1/resources/{ENDPOINT_KIND}")
            except ServiceUnreachable as e:
                self.problem = f"no control service answered ({e})"
                self._endpoints = []
                return []
            except ServiceError as e:
                self.problem = f"the control service refused: {e}"
                self._endpoints = []
                return []
            items = found.get("items", []) if isinstance(found, dict) else []
            self._endpoints = [record_from(doc) for doc in items if isinstance(doc, dict)]
        return self._endpoints

    def state_dir(self) -> str | None:
        """The service's state directory (its coordinator's saved plans), None when it
        does not answer or does not say."""
        try:
            health = self._client.request("GET", "/v1/healthz")
        except (ServiceUnreachable, ServiceError):
            return None
        found = health.get("stateDir") if isinstance(health, dict) else None
        return found if isinstance(found, str) and found else None

    def by_pod(self, namespace: str, name: str) -> Record | None:
        return next(
            (r for r in self.endpoints() if (r.namespace, r.name) == (namespace, name)), None
        )

    def by_container(self, container_id: str) -> list[Record]:
        """Records whose container ID is `container_id` or starts with it (12+ characters,
        as runtimes print them)."""
        exact = [r for r in self.endpoints() if r.container_id == container_id]
        if exact or len(container_id) < 12:
            return exact
        return [r for r in self.endpoints() if r.container_id.startswith(container_id)]

    def by_addresses(self, pod: Side) -> Record | None:
        """The record that holds one of the addresses on the pod's NICs."""
        held = {a.ip for nic in nics(pod) for a in pod.addresses_of(nic)}
        return next(
            (r for r in self.endpoints() if any(a.ip in held for v in r.nics.values() for a in v)),
            None,
        )

    def default_route_nic(self, record: Record | None) -> str:
        """podDefaultRouteNIC for the pod (its annotation over SpiderCoordinator), or ""."""
        if record is None or self.problem:
            return ""
        query = f"/v1/coordinator/config?podNamespace={record.namespace}&podName={record.name}"
        try:
            found = self._client.request("GET", query)
        except (ServiceUnreachable, ServiceError):
            return ""
        if not isinstance(found, dict):
            return ""
        annotations = found.get("podAnnotations", {}) or {}
        return str(
            annotations.get("ipam.spidernet.io/default-route-nic")
            or found.get("podDefaultRouteNIC")
            or ""
        )
