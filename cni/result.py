"""Typed CNI results and their conversion between spec versions.

One internal shape (the 1.1.0 result, a superset of the others) is parsed from and printed to
every supported version, as the reference library does: 0.3.x/0.4.0 results carry
`ips[].version`, which 1.0.0 removed; 1.1.0 added interface `mtu`, `socketPath` and `pciID`
(dropped when printing for 0.x) and the route fields `mtu`, `advmss`, `priority`, `table` and
`scope` (kept for every version, as the reference library keeps them).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from . import version as cni_version
from .errors import CNIError, Code

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Interface:
    """An interface a plugin created or configured (`sandbox` is set for pod-side ones)."""

    name: str
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""
    socket_path: str = ""
    pci_id: str = ""


@dataclass(frozen=True)
class IPConfig:
    """An address with its gateway; `interface` indexes `Result.interfaces`."""

    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None


@dataclass(frozen=True)
class Route:
    """A route to install in the pod; zero and None mean "not given"."""

    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


@dataclass(frozen=True)
class DNS:
    """Resolver settings a plugin suggests."""

    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        """True when nothing is set (it is then left out of printed results)."""
        return not (self.nameservers or self.domain or self.search or self.options)


@dataclass(frozen=True)
class Result:
    """An ADD result (also the `prevResult` handed down a chain)."""

    cni_version: str = cni_version.CURRENT
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)


def _fail(what: str, cause: object) -> CNIError:
    return CNIError(Code.DECODING_FAILURE, f"failed to decode {what}: {cause}")


def _str(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise _fail(what, f"'{key}' must be a string")
    return value


def _int(obj: dict[str, Any], key: str, what: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(what, f"'{key}' must be an integer")
    return value


def _strs(obj: dict[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(what, f"'{key}' must be a list of strings")
    return tuple(value)


def _dict_list(obj: dict[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _fail(what, f"'{key}' must be a list of objects")
    return value


def parse_route(obj: dict[str, Any], what: str = "route") -> Route:
    """A route object as the spec writes it ({"dst": CIDR, "gw": IP, ...})."""
    try:
        dst = ipaddress.ip_network(_str(obj, "dst", what), strict=False)
        gw_text = _str(obj, "gw", what)
        gw = ipaddress.ip_address(gw_text) if gw_text else None
    except ValueError as e:
        raise _fail(what, e) from e
    if gw is not None and gw.version != dst.version:
        raise _fail(what, f"gateway {gw} is not in the family of {dst}")
    return Route(
        dst=dst,
        gw=gw,
        mtu=_int(obj, "mtu", what) or 0,
        advmss=_int(obj, "advmss", what) or 0,
        priority=_int(obj, "priority", what) or 0,
        table=_int(obj, "table", what),
        scope=_int(obj, "scope", what),
    )


def parse_dns(obj: object, what: str = "dns") -> DNS:
    """The spec's DNS object; absent or empty gives an empty DNS."""
    if obj is None:
        return DNS()
    if not isinstance(obj, dict):
        raise _fail(what, "must be an object")
    return DNS(
        nameservers=_strs(obj, "nameservers", what),
        domain=_str(obj, "domain", what),
        search=_strs(obj, "search", what),
        options=_strs(obj, "options", what),
    )


def parse_result(obj: object, what: str = "result") -> Result:
    """Parse a result of any supported version into the internal shape.

    Raises CNIError(DECODING_FAILURE) on malformed content and INCOMPATIBLE_VERSION on a
    version we do not speak.
    """
    if not isinstance(obj, dict):
        raise _fail(what, "must be a JSON object")
    version = _str(obj, "cniVersion", what)
    cni_version.check_supported(version)
    interfaces = []
    for item in _dict_list(obj, "interfaces", what):
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise _fail(what, "interface without a name")
        interfaces.append(
            Interface(
                name=item["name"],
                mac=_str(item, "mac", what),
                mtu=_int(item, "mtu", what) or 0,
                sandbox=_str(item, "sandbox", what),
                socket_path=_str(item, "socketPath", what),
                pci_id=_str(item, "pciID", what),
            )
        )
    ips = []
    for item in _dict_list(obj, "ips", what):
        try:
            address = ipaddress.ip_interface(_str(item, "address", what))
            gw_text = _str(item, "gateway", what)
            gateway = ipaddress.ip_address(gw_text) if gw_text else None
        except ValueError as e:
            raise _fail(what, e) from e
        if "/" not in str(item.get("address")):
            raise _fail(what, f"address '{item.get('address')}' needs a prefix length")
        index = _int(item, "interface", what)
        if index is not None and not 0 <= index < len(interfaces):
            raise _fail(what, f"ips[].interface {index} is not an index into interfaces")
        ips.append(IPConfig(address=address, gateway=gateway, interface=index))
    routes = [parse_route(r, what) for r in _dict_list(obj, "routes", what)]
    return Result(
        cni_version=version,
        interfaces=tuple(interfaces),
        ips=tuple(ips),
        routes=tuple(routes),
        dns=parse_dns(obj.get("dns"), what),
    )


def route_to_dict(route: Route) -> dict[str, Any]:
    """A route as the spec writes it (zero-valued optional fields left out)."""
    out: dict[str, Any] = {"dst": str(route.dst)}
    if route.gw is not None:
        out["gw"] = str(route.gw)
    for key, value in (("mtu", route.mtu), ("advmss", route.advmss), ("priority", route.priority)):
        if value:
            out[key] = value
    if route.table is not None:
        out["table"] = route.table
    if route.scope is not None:
        out["scope"] = route.scope
    return out


def dns_to_dict(dns: DNS) -> dict[str, Any]:
    """The DNS object with empty fields left out."""
    out: dict[str, Any] = {}
    if dns.nameservers:
        out["nameservers"] = list(dns.nameservers)
    if dns.domain:
        out["domain"] = dns.domain
    if dns.search:
        out["search"] = list(dns.search)
    if dns.options:
        out["options"] = list(dns.options)
    return out


def to_dict(result: Result, version: str) -> dict[str, Any]:
    """Print `result` as a `version` result (raises INCOMPATIBLE_VERSION if unsupported)."""
    cni_version.check_supported(version)
    legacy = not cni_version.at_least(version, "1.0.0")
    out: dict[str, Any] = {"cniVersion": version}
    if result.interfaces:
        items = []
        for intf in result.interfaces:
            item: dict[str, Any] = {"name": intf.name}
            if intf.mac:
                item["mac"] = intf.mac
            if not legacy and intf.mtu:
                item["mtu"] = intf.mtu
            if intf.sandbox:
                item["sandbox"] = intf.sandbox
            if not legacy and intf.socket_path:
                item["socketPath"] = intf.socket_path
            if not legacy and intf.pci_id:
                item["pciID"] = intf.pci_id
            items.append(item)
        out["interfaces"] = items
    if result.ips:
        ips = []
        for ip in result.ips:
            entry: dict[str, Any] = {}
            if legacy:
                entry["version"] = str(ip.address.version)
            if ip.interface is not None:
                entry["interface"] = ip.interface
            entry["address"] = str(ip.address)
            if ip.gateway is not None:
                entry["gateway"] = str(ip.gateway)
            ips.append(entry)
        out["ips"] = ips
    if result.routes:
        out["routes"] = [route_to_dict(r) for r in result.routes]
    if not result.dns.is_empty():
        out["dns"] = dns_to_dict(result.dns)
    return out
