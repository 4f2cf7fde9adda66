"""SpiderIPPool, SpiderSubnet and SpiderReservedIP documents → records, with defaulting.

Spiderpool's mutating webhooks (`ippool_mutate.go`, `subnet_mutate.go`,
`reservedip_mutate.go`) set `ipVersion` from `subnet` (for a SpiderReservedIP, from the
first entry of `ips`) and merge, sort and deduplicate `ips` and `excludeIPs`; the records
hold `IntervalSet`s, so the merged form is what `to_document` writes back.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from spidernet.control.model.fields import Fields, Meta, need, need_network
from spidernet.control.model.iprange import EMPTY, IntervalSet, parse_entry
from spidernet.control.model.resources import (
    IPAddress,
    IPNetwork,
    IPPool,
    ReservedIP,
    Route,
    Subnet,
)

ADDRESS_FIELDS = ("ipVersion", "subnet", "ips", "excludeIPs", "gateway", "routes")
POOL_FIELDS = (
    *ADDRESS_FIELDS,
    "podAffinity",
    "namespaceAffinity",
    "namespaceName",
    "nodeAffinity",
    "nodeName",
    "multusName",
    "default",
    "disable",
)
RESERVED_FIELDS = ("ipVersion", "ips")


def read_version(spec: Fields) -> int | None:
    """`spec.ipVersion`: the number 4 or 6, or None (absent, or reported as wrong)."""
    raw = spec.raw("ipVersion")
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in (4, 6):
        return raw
    spec.c.add(spec.at("ipVersion"), f"must be the number 4 or 6, not {raw!r}")
    return None


def _ranges(spec: Fields, key: str, version: int) -> IntervalSet:
    """`ips`-style entries, each checked so that every bad entry is reported."""
    entries = spec.strings(key)
    intervals = []
    for i, entry in enumerate(entries or ()):
        try:
            intervals.append(parse_entry(entry, version))
        except ValueError as exc:
            spec.c.add(f"{spec.at(key)}[{i}]", str(exc))
    return IntervalSet.from_intervals(intervals)


@dataclass(frozen=True)
class _Space:
    """The fields SpiderIPPool and SpiderSubnet share, as read (None where unreadable)."""

    ip_version: int | None
    subnet: IPNetwork | None
    ips: IntervalSet
    exclude_ips: IntervalSet
    gateway: IPAddress | None
    routes: tuple[Route, ...]


def _address_space(spec: Fields) -> _Space:
    c = spec.c
    version = read_version(spec)
    subnet = spec.network("subnet", required=True)
    if subnet is not None and version is None:
        version = subnet.version
    elif subnet is not None and version in (4, 6) and version != subnet.version:
        c.add(
            spec.at("ipVersion"),
            f"{version} disagrees with spec.subnet {subnet}, which is IPv{subnet.version}",
        )
    ips = exclude = EMPTY
    if version in (4, 6) and subnet is not None:
        ips = _ranges(spec, "ips", version)
        exclude = _ranges(spec, "excludeIPs", version)
    gateway = spec.address("gateway")
    return _Space(version, subnet, ips, exclude, gateway, spec.routes("routes"))


def decode_pool(name: str, meta: Meta, spec: Fields) -> IPPool:
    """A SpiderIPPool spec; raises the collected problems before building the record."""
    space = _address_space(spec)
    pod = spec.selector("podAffinity")
    namespace = spec.selector("namespaceAffinity")
    node = spec.selector("nodeAffinity")
    namespaces = spec.strings("namespaceName") or ()
    nodes = spec.strings("nodeName") or ()
    multus = spec.strings("multusName") or ()
    default = bool(spec.boolean("default"))
    disable = bool(spec.boolean("disable"))
    spec.c.raise_if_any()
    return IPPool(
        name=name,
        ip_version=need(space.ip_version),
        subnet=need_network(space.subnet),
        ips=space.ips,
        exclude_ips=space.exclude_ips,
        gateway=space.gateway,
        routes=space.routes,
        pod_affinity=pod,
        namespace_affinity=namespace,
        namespace_name=tuple(namespaces),
        node_affinity=node,
        node_name=tuple(nodes),
        multus_name=tuple(multus),
        default=default,
        disable=disable,
        labels=meta.labels,
        annotations=meta.annotations,
    )


def decode_subnet(name: str, meta: Meta, spec: Fields) -> Subnet:
    """A SpiderSubnet spec (the address fields a pool has, nothing else)."""
    space = _address_space(spec)
    spec.c.raise_if_any()
    return Subnet(
        name=name,
        ip_version=need(space.ip_version),
        subnet=need_network(space.subnet),
        ips=space.ips,
        exclude_ips=space.exclude_ips,
        gateway=space.gateway,
        routes=space.routes,
        labels=meta.labels,
        annotations=meta.annotations,
    )


def decode_reserved(name: str, meta: Meta, spec: Fields) -> ReservedIP:
    """A SpiderReservedIP spec; `ipVersion` defaults to the family of `ips[0]`."""
    c = spec.c
    version = read_version(spec)
    entries = spec.strings("ips") or []
    if version is None and spec.has("ipVersion"):
        pass  # already reported
    elif version is None and entries:
        # Spiderpool derives it from `ips[0]` (`reservedip_mutate.go`).
        first = entries[0].split("-")[0].split("/")[0]
        try:
            version = ipaddress.ip_address(first).version
        except ValueError:
            c.add(
                f"{spec.at('ips')}[0]",
                f"'{entries[0]}' is not an IP address or an a-b "
                "range, so spec.ipVersion cannot be derived from it",
            )
    elif version is None and not c:
        c.add(spec.at("ips"), "must list at least one IP or range")
    ips = _ranges(spec, "ips", version) if version in (4, 6) else EMPTY
    c.raise_if_any()
    return ReservedIP(
        name=name,
        ip_version=need(version),
        ips=ips,
        labels=meta.labels,
        annotations=meta.annotations,
    )
