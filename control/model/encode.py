"""Resource records → canonical Spiderpool JSON documents.

The output is what Spiderpool's API server would return after its mutating webhook ran:
`ipVersion` set, `ips`/`excludeIPs` in merged form, the coordinator's defaults written out,
empty optional lists and unset pointers omitted (`omitempty`). Keys are in a fixed order,
so two equal records always give identical JSON.
"""

from __future__ import annotations

from typing import Any

from spidernet.control.model.labels import LabelSelector
from spidernet.control.model.resources import (
    API_VERSION,
    AllocationDetail,
    Coordinator,
    Endpoint,
    IPPool,
    ReservedIP,
    Resource,
    Route,
    Subnet,
)


def _routes(routes: tuple[Route, ...]) -> list[dict[str, str]]:
    return [{"dst": str(r.dst), "gw": str(r.gw)} for r in routes]


def _selector(sel: LabelSelector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if sel.match_labels:
        out["matchLabels"] = dict(sel.match_labels)
    if sel.match_expressions:
        out["matchExpressions"] = [
            {
                "key": r.key,
                "operator": r.operator,
                **({"values": list(r.values)} if r.values else {}),
            }
            for r in sel.match_expressions
        ]
    return out


def _address_spec(res: IPPool | Subnet) -> dict[str, Any]:
    spec: dict[str, Any] = {"ipVersion": res.ip_version, "subnet": str(res.subnet)}
    if not res.ips.is_empty:
        spec["ips"] = res.ips.to_strings(res.ip_version)
    if not res.exclude_ips.is_empty:
        spec["excludeIPs"] = res.exclude_ips.to_strings(res.ip_version)
    if res.gateway is not None:
        spec["gateway"] = str(res.gateway)
    if res.routes:
        spec["routes"] = _routes(res.routes)
    return spec


def _pool_spec(pool: IPPool) -> dict[str, Any]:
    spec = _address_spec(pool)
    for key, sel in (
        ("podAffinity", pool.pod_affinity),
        ("namespaceAffinity", pool.namespace_affinity),
        ("nodeAffinity", pool.node_affinity),
    ):
        if sel is not None:
            spec[key] = _selector(sel)
    for key, names in (
        ("namespaceName", pool.namespace_name),
        ("nodeName", pool.node_name),
        ("multusName", pool.multus_name),
    ):
        if names:
            spec[key] = list(names)
    spec["default"] = pool.default
    spec["disable"] = pool.disable
    return spec


def coordinator_spec(coord: Coordinator) -> dict[str, Any]:
    """A SpiderCoordinator's `spec` as the API server holds it."""
    spec: dict[str, Any] = {"mode": coord.mode, "podCIDRType": coord.pod_cidr_type}
    if coord.hijack_cidr:
        spec["hijackCIDR"] = [str(n) for n in coord.hijack_cidr]
    if coord.policy_routes:
        spec["policyRoutes"] = _routes(coord.policy_routes)
    if coord.pod_mac_prefix:
        spec["podMACPrefix"] = coord.pod_mac_prefix
    spec["tunePodRoutes"] = coord.tune_pod_routes
    if coord.pod_default_route_nic:
        spec["podDefaultRouteNIC"] = coord.pod_default_route_nic
    spec["hostRuleTable"] = coord.host_rule_table
    spec["podRPFilter"] = coord.pod_rp_filter
    spec["txQueueLen"] = coord.tx_queue_len
    spec["vethLinkAddress"] = (
        "" if coord.veth_link_address is None else str(coord.veth_link_address)
    )
    spec["vethMTU"] = coord.veth_mtu
    return spec


def _detail(d: AllocationDetail) -> dict[str, Any]:
    out: dict[str, Any] = {"interface": d.interface}
    optional: tuple[tuple[str, object], ...] = (
        ("ipv4", d.ipv4),
        ("ipv6", d.ipv6),
        ("ipv4Pool", d.ipv4_pool),
        ("ipv6Pool", d.ipv6_pool),
    )
    for key, value in optional:
        if value is not None:
            out[key] = str(value)
    out["vlan"] = d.vlan
    for key, value in (("ipv4Gateway", d.ipv4_gateway), ("ipv6Gateway", d.ipv6_gateway)):
        if value is not None:
            out[key] = str(value)
    if d.clean_gateway is not None:
        out["cleanGateway"] = d.clean_gateway
    if d.routes:
        out["routes"] = _routes(d.routes)
    if d.mac is not None:
        out["mac"] = d.mac
    return out


def encode(resource: Resource) -> dict[str, Any]:
    """The canonical document of a record: apiVersion, kind, metadata and spec (or status)."""
    meta: dict[str, Any] = {"name": resource.name}
    if isinstance(resource, Endpoint):
        meta["namespace"] = resource.namespace
    if resource.labels:
        meta["labels"] = dict(resource.labels)
    if resource.annotations:
        meta["annotations"] = dict(resource.annotations)
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": resource.KIND, "metadata": meta}
    if isinstance(resource, IPPool):
        doc["spec"] = _pool_spec(resource)
    elif isinstance(resource, Subnet):
        doc["spec"] = _address_spec(resource)
    elif isinstance(resource, ReservedIP):
        doc["spec"] = {
            "ipVersion": resource.ip_version,
            "ips": resource.ips.to_strings(resource.ip_version),
        }
    elif isinstance(resource, Coordinator):
        doc["spec"] = coordinator_spec(resource)
    else:
        doc["status"] = {
            "current": {
                "uid": resource.uid,
                "node": resource.node,
                "ips": [_detail(d) for d in resource.ips],
            },
            "ownerControllerType": resource.owner_controller_type,
            "ownerControllerName": resource.owner_controller_name,
        }
    return doc
