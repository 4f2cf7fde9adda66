"""SpiderCoordinator and SpiderEndpoint documents → records.

The coordinator's unset fields take the defaults of Spiderpool's mutating webhook
(`coordinator_mutate.go`, kept as the record's field defaults); `hijackCIDR` and
`policyRoutes[].dst` accept bare IPs (as /32 or /128). A SpiderEndpoint has no spec: its
`status.current` lists each pod interface's addresses (`spiderendpoint_types.go`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from spidernet.control.model.errors import Collector
from spidernet.control.model.fields import Fields, Meta, need, read_address, read_loose_cidr
from spidernet.control.model.resources import (
    AllocationDetail,
    Coordinator,
    Endpoint,
    IPAddress,
    IPInterface,
)

COORDINATOR_FIELDS = (
    "mode",
    "podCIDRType",
    "hijackCIDR",
    "policyRoutes",
    "podMACPrefix",
    "tunePodRoutes",
    "podDefaultRouteNIC",
    "hostRuleTable",
    "podRPFilter",
    "txQueueLen",
    "vethLinkAddress",
    "vethMTU",
)
# A SpiderEndpoint's status (its content) and its `current` allocation.
ENDPOINT_STATUS_FIELDS = ("current", "ownerControllerType", "ownerControllerName")
CURRENT_FIELDS = ("uid", "node", "ips")
DETAIL_FIELDS = (
    "interface",
    "ipv4",
    "ipv6",
    "ipv4Pool",
    "ipv6Pool",
    "vlan",
    "ipv4Gateway",
    "ipv6Gateway",
    "cleanGateway",
    "routes",
    "mac",
)


def decode_coordinator(name: str, meta: Meta, spec: Fields) -> Coordinator:
    """A SpiderCoordinator spec; absent fields keep the record's (Spiderpool's) defaults."""
    c = spec.c
    # Only the fields present are passed, so the record's defaults are Spiderpool's.
    args: dict[str, Any] = {}
    for key, arg in (
        ("mode", "mode"),
        ("podCIDRType", "pod_cidr_type"),
        ("podMACPrefix", "pod_mac_prefix"),
        ("podDefaultRouteNIC", "pod_default_route_nic"),
    ):
        if (text := spec.string(key)) is not None:
            args[arg] = text
    if args.get("mode") == "disable":
        args["mode"] = "disabled"  # the coordinator plugin's spelling (reference §4.6)
    for key, arg in (
        ("hostRuleTable", "host_rule_table"),
        ("podRPFilter", "pod_rp_filter"),
        ("txQueueLen", "tx_queue_len"),
        ("vethMTU", "veth_mtu"),
    ):
        if (number := spec.integer(key)) is not None:
            args[arg] = number
    if (tune := spec.boolean("tunePodRoutes")) is not None:
        args["tune_pod_routes"] = tune
    hijack = []
    for i, text in enumerate(spec.strings("hijackCIDR") or ()):
        # Bare IPs become /32 or /128, as Spiderpool's mutating webhook does.
        if (net := read_loose_cidr(c, f"{spec.at('hijackCIDR')}[{i}]", text)) is not None:
            hijack.append(net)
    link = spec.string("vethLinkAddress")
    if link:  # "" is Spiderpool's "not set"
        args["veth_link_address"] = read_address(c, spec.at("vethLinkAddress"), link)
    routes = spec.routes("policyRoutes", loose_dst=True)
    c.raise_if_any()
    return Coordinator(
        name=name,
        **args,
        hijack_cidr=tuple(hijack),
        policy_routes=routes,
        labels=meta.labels,
        annotations=meta.annotations,
    )


def _interface(f: Fields, key: str, version: int) -> IPInterface | None:
    """An interface address "ip/prefix" of one family (SpiderEndpoint `ipv4`/`ipv6`)."""
    text = f.string(key)
    if text is None:
        return None
    example = "10.0.0.5/24" if version == 4 else "fd00::5/64"
    try:
        if "/" not in text:
            raise ValueError(text)
        iface = ipaddress.ip_interface(text)
    except ValueError:
        f.c.add(f.at(key), f"'{text}' is not an address with a prefix length, like {example}")
        return None
    if iface.version != version:
        f.c.add(f.at(key), f"{text} is not an IPv{version} address")
        return None
    return iface


def _gateway(f: Fields, key: str, version: int) -> IPAddress | None:
    gw = f.address(key)
    if gw is not None and gw.version != version:
        f.c.add(f.at(key), f"{gw} is not an IPv{version} address")
        return None
    return gw


def _detail(c: Collector, item: object, path: str) -> AllocationDetail | None:
    f = Fields(c, item, path, DETAIL_FIELDS)
    nic = f.string("interface", required=True)
    ipv4, ipv6 = _interface(f, "ipv4", 4), _interface(f, "ipv6", 6)
    gw4, gw6 = _gateway(f, "ipv4Gateway", 4), _gateway(f, "ipv6Gateway", 6)
    vlan = f.integer("vlan")
    pool4, pool6 = f.string("ipv4Pool"), f.string("ipv6Pool")
    clean = f.boolean("cleanGateway")
    routes = f.routes("routes")
    mac = f.string("mac")
    if nic is None or c:
        return None
    # The families were checked above; the isinstance tests only narrow the types.
    return AllocationDetail(
        interface=nic,
        ipv4=ipv4 if isinstance(ipv4, ipaddress.IPv4Interface) else None,
        ipv6=ipv6 if isinstance(ipv6, ipaddress.IPv6Interface) else None,
        ipv4_pool=pool4,
        ipv6_pool=pool6,
        vlan=vlan if vlan is not None else 0,
        ipv4_gateway=gw4 if isinstance(gw4, ipaddress.IPv4Address) else None,
        ipv6_gateway=gw6 if isinstance(gw6, ipaddress.IPv6Address) else None,
        clean_gateway=clean,
        routes=routes,
        mac=mac,
    )


def decode_endpoint(name: str, namespace: str, meta: Meta, status: Fields) -> Endpoint:
    """A SpiderEndpoint status: `current` {uid, node, ips} and the owner controller."""
    c = status.c
    owner_type = status.string("ownerControllerType", required=True)
    owner_name = status.string("ownerControllerName", required=True)
    uid = node = None
    details: list[AllocationDetail | None] = []
    if not status.has("current"):
        c.add(status.at("current"), "is required")
    else:
        current = status.sub("current", CURRENT_FIELDS)
        uid = current.string("uid", required=True)
        node = current.string("node", required=True)
        details = [
            _detail(c, item, f"{current.at('ips')}[{i}]")
            for i, item in enumerate(current.items("ips", required=True))
        ]
    c.raise_if_any()
    return Endpoint(
        namespace=namespace,
        name=name,
        uid=need(uid),
        node=need(node),
        ips=tuple(d for d in details if d is not None),
        owner_controller_type=need(owner_type),
        owner_controller_name=need(owner_name),
        labels=meta.labels,
        annotations=meta.annotations,
    )
