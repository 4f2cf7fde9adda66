"""Rules one resource must satisfy on its own (Spiderpool's validating webhooks).

Sources: `pkg/ippoolmanager/ippool_validate.go`, `pkg/subnetmanager/subnet_validate.go`,
`pkg/reservedipmanager/reservedip_validate.go`, `pkg/coordinatormanager/coordinator_validate.go`.
Rules that need other resources live in `validate.py`. `check` raises a ValidationError
(or ValidationErrors) naming the resource, the field and the reason; `problems` returns
the same findings as (field, reason) pairs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from spidernet.control.model.encode import coordinator_spec
from spidernet.control.model.errors import Collector
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.labels import (
    LabelSelector,
    annotations_problems,
    dns_label_problem,
    dns_subdomain_problem,
    labels_problems,
)
from spidernet.control.model.resources import (
    POD_CIDR_TYPES,
    Coordinator,
    Endpoint,
    IPNetwork,
    IPPool,
    ReservedIP,
    Resource,
    Route,
    Subnet,
)
from spidernet.netconf.coordinator.config import spec_problems

Problems = list[tuple[str, str]]

_MAC_PREFIX_RE = re.compile(r"[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
# Linux interface names: IFNAMSIZ is 16 with the NUL, and dev_valid_name() refuses
# "/", ":" and whitespace (net/core/dev.c).
_IFNAME_RE = re.compile(r"[^/:\s]{1,15}")
# ip-rule tables 253-255 are the kernel's default/main/local (include/uapi/linux/rtnetlink.h).
_RESERVED_TABLES = frozenset({0, 253, 254, 255})


def _family(version: int) -> str:
    return f"IPv{version}"


def _meta(resource: Resource) -> Problems:
    out: Problems = []
    if (reason := dns_subdomain_problem(resource.name)) is not None:
        out.append(("metadata.name", reason))
    out += labels_problems(resource.labels, "metadata.labels")
    out += annotations_problems(resource.annotations, "metadata.annotations")
    return out


def _outside(what: IntervalSet, subnet: IPNetwork, version: int, path: str) -> Problems:
    outside = what.difference(IntervalSet.of_network(subnet))
    if outside.is_empty:
        return []
    verb = "lies" if outside.count == 1 else "lie"
    return [(path, f"{outside.describe(version)} {verb} outside spec.subnet {subnet}")]


def _routes(routes: Sequence[Route], version: int, subnet: IPNetwork | None, path: str) -> Problems:
    """Pool/subnet routes (`validateIPPoolRoutes`); `subnet` None skips the gw-in-subnet rule."""
    out: Problems = []
    seen: dict[IPNetwork, int] = {}
    for i, route in enumerate(routes):
        at = f"{path}[{i}]"
        if route.dst.version != version:
            out.append(
                (
                    f"{at}.dst",
                    f"{route.dst} is {_family(route.dst.version)}, "
                    f"but this resource is {_family(version)}",
                )
            )
            continue
        if route.dst.prefixlen == 0:
            out.append((f"{at}.dst", f"{route.dst} is the default route; set spec.gateway instead"))
        if route.dst in seen:
            out.append((f"{at}.dst", f"{route.dst} duplicates {path}[{seen[route.dst]}].dst"))
        seen.setdefault(route.dst, i)
        if route.gw.version != version:
            out.append(
                (
                    f"{at}.gw",
                    f"{route.gw} is {_family(route.gw.version)}, "
                    f"but this resource is {_family(version)}",
                )
            )
        elif subnet is not None and route.gw not in subnet:
            out.append((f"{at}.gw", f"{route.gw} lies outside spec.subnet {subnet}"))
    return out


def _address_spec(res: IPPool | Subnet) -> Problems:
    """The rules SpiderIPPool and SpiderSubnet share: family, ranges, gateway, routes."""
    version = res.ip_version
    if version not in (4, 6):
        return [("spec.ipVersion", f"must be 4 or 6, not {version!r}")]
    if res.subnet.version != version:
        return [
            (
                "spec.subnet",
                f"{res.subnet} is {_family(res.subnet.version)}, but spec.ipVersion is {version}",
            )
        ]
    out = _outside(res.ips, res.subnet, version, "spec.ips")
    out += _outside(res.exclude_ips, res.subnet, version, "spec.excludeIPs")
    gw = res.gateway
    if gw is not None:
        if gw.version != version:
            out.append(
                ("spec.gateway", f"{gw} is {_family(gw.version)}, but spec.ipVersion is {version}")
            )
        elif gw not in res.subnet:
            out.append(("spec.gateway", f"{gw} lies outside spec.subnet {res.subnet}"))
        elif int(gw) in res.usable:
            out.append(("spec.gateway", f"{gw} lies inside spec.ips; add it to spec.excludeIPs"))
    out += _routes(res.routes, version, res.subnet, "spec.routes")
    return out


def _selector(sel: LabelSelector | None, path: str) -> Problems:
    return [] if sel is None else sel.problems(path)


def _names(values: Sequence[str], path: str, namespaced: bool = False) -> Problems:
    """Object names; with `namespaced`, "name" or "namespace/name" (multusName)."""
    out: Problems = []
    for i, value in enumerate(values):
        if namespaced and "/" in value:
            ns, _, name = value.partition("/")
            reason = dns_label_problem(ns) or dns_subdomain_problem(name)
        else:
            reason = dns_subdomain_problem(value)
        if reason is not None:
            out.append((f"{path}[{i}]", reason))
    return out


def pool_problems(pool: IPPool) -> Problems:
    """Everything wrong with a SpiderIPPool on its own."""
    out = _meta(pool) + _address_spec(pool)
    if pool.pod_affinity is not None and pool.pod_affinity.is_empty:
        out.append(
            (
                "spec.podAffinity",
                "an empty selector is not allowed (Spiderpool refuses "
                "it); add matchLabels or matchExpressions, or remove podAffinity",
            )
        )
    out += _selector(pool.pod_affinity, "spec.podAffinity")
    out += _selector(pool.namespace_affinity, "spec.namespaceAffinity")
    out += _selector(pool.node_affinity, "spec.nodeAffinity")
    for i, ns in enumerate(pool.namespace_name):
        if (reason := dns_label_problem(ns)) is not None:
            out.append((f"spec.namespaceName[{i}]", reason))
    out += _names(pool.node_name, "spec.nodeName")
    out += _names(pool.multus_name, "spec.multusName", namespaced=True)
    return out


def subnet_problems(subnet: Subnet) -> Problems:
    """Everything wrong with a SpiderSubnet on its own."""
    return _meta(subnet) + _address_spec(subnet)


def reserved_problems(reserved: ReservedIP) -> Problems:
    """Everything wrong with a SpiderReservedIP on its own."""
    out = _meta(reserved)
    if reserved.ip_version not in (4, 6):
        out.append(("spec.ipVersion", f"must be 4 or 6, not {reserved.ip_version!r}"))
    if reserved.ips.is_empty:
        # Spiderpool's mutating webhook refuses it: "empty 'spec.ips', noting to mutate".
        out.append(("spec.ips", "must list at least one IP or range"))
    return out


def coordinator_problems(coord: Coordinator) -> Problems:
    """Everything wrong with a SpiderCoordinator on its own. Its settings are checked by the
    coordinator plugin's own value checks (netconf), so what the webhook admits the plugin
    takes, and the other way round; podCIDRType is the controller's alone."""
    out = _meta(coord)
    if coord.pod_cidr_type not in POD_CIDR_TYPES:
        out.append(
            (
                "spec.podCIDRType",
                f"'{coord.pod_cidr_type}' is not one of {', '.join(POD_CIDR_TYPES)}",
            )
        )
    out += [(f"spec.{key}", why) for key, why in spec_problems(coordinator_spec(coord))]
    return out


def endpoint_problems(ep: Endpoint) -> Problems:
    """Everything wrong with a SpiderEndpoint on its own."""
    out = _meta(ep)
    if (reason := dns_label_problem(ep.namespace)) is not None:
        out.append(("metadata.namespace", reason))
    if not ep.uid:
        out.append(("status.current.uid", "must not be empty"))
    seen: dict[str, int] = {}
    for i, detail in enumerate(ep.ips):
        at = f"status.current.ips[{i}]"
        if not _IFNAME_RE.fullmatch(detail.interface):
            out.append((f"{at}.interface", f"'{detail.interface}' is not an interface name"))
        elif detail.interface in seen:
            out.append(
                (
                    f"{at}.interface",
                    f"'{detail.interface}' is already listed at "
                    f"status.current.ips[{seen[detail.interface]}]",
                )
            )
        seen.setdefault(detail.interface, i)
        if not 0 <= detail.vlan <= 4094:
            out.append((f"{at}.vlan", f"{detail.vlan} is not a VLAN ID: it must be 0-4094"))
        if detail.mac is not None and not _MAC_RE.fullmatch(detail.mac):
            out.append((f"{at}.mac", f"'{detail.mac}' is not a MAC address like aa:bb:cc:dd:ee:ff"))
        for j, route in enumerate(detail.routes):
            if route.dst.version != route.gw.version:
                out.append(
                    (
                        f"{at}.routes[{j}]",
                        f"dst {route.dst} and gw {route.gw} must use the same IP family",
                    )
                )
    return out


def problems(resource: Resource) -> Problems:
    """(field, reason) pairs for everything wrong with `resource` on its own."""
    if isinstance(resource, IPPool):
        return pool_problems(resource)
    if isinstance(resource, Subnet):
        return subnet_problems(resource)
    if isinstance(resource, ReservedIP):
        return reserved_problems(resource)
    if isinstance(resource, Coordinator):
        return coordinator_problems(resource)
    return endpoint_problems(resource)


def check(resource: Resource) -> None:
    """Raise ValidationError (or ValidationErrors) if `resource` breaks any rule on its own."""
    namespace = resource.namespace if isinstance(resource, Endpoint) else ""
    collector = Collector(resource.KIND, resource.name, namespace)
    for path, reason in problems(resource):
        collector.add(path, reason)
    collector.raise_if_any()
