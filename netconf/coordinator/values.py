"""Checks for single coordinator config values, shared by the NAD and SpiderCoordinator sides.

Each check takes a decoded JSON value and returns it typed, or raises `ValueError` with the
reason only; `config` adds the key and where the value came from.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from spidernet.cni.env import MAX_IFNAME

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# "xx:xx"; Spiderpool's plugin regex also takes '-' as the separator (cni_types.go).
_MAC_PREFIX_RE = re.compile(r"([0-9A-Fa-f]{2})[:-]([0-9A-Fa-f]{2})")
# Routing tables the kernel owns: 253 default, 254 main, 255 local (rtnetlink.h RT_TABLE_*).
RESERVED_TABLES = frozenset({253, 254, 255})
MAX_U32 = 2**32 - 1
MAX_MTU = 65535
LOG_INT_KEYS = ("logMaxSize", "logMaxAge", "logMaxCount")
LOG_STR_KEYS = ("logLevel", "logFile")


@dataclass(frozen=True)
class PolicyRoute:
    """One `policyRoutes` entry: `dst via gw dev <ifName>` in the interface's policy table."""

    dst: IPNetwork
    gw: IPAddress


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _expect_str(value: object, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what}, got {json_type(value)}")
    return value


def integer(value: object, low: int, high: int) -> int:
    """An integer in [low, high]; booleans and floats are refused (JSON `true` is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {json_type(value)}")
    if not low <= value <= high:
        raise ValueError(f"{value} is out of range {low}..{high}")
    return value


def boolean(value: object) -> bool:
    """JSON true or false; the strings "true"/"false" are refused."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {json_type(value)}")
    return value


def ifname(value: object) -> str:
    """An interface name the kernel accepts (IFNAMSIZ 16 with the NUL; no '/', ':' or spaces)."""
    name = _expect_str(value, "an interface name")
    if not name or len(name) > MAX_IFNAME:
        raise ValueError(f"'{name}' is not an interface name: use 1-{MAX_IFNAME} characters")
    if name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        raise ValueError(f"'{name}' is not an interface name: no '/', ':' or whitespace")
    return name


def address(value: object) -> IPAddress:
    """A unicast IPv4 or IPv6 address written alone (no prefix, no zone)."""
    text = _expect_str(value, "an IP address")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        raise ValueError(f"'{text}' is not an IP address: zones ('%') are not allowed")
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"'{text}' is not a unicast address")
    return addr


def network(value: object) -> IPNetwork:
    """A CIDR with no host bits set; a bare IP is the host route /32 or /128.

    Only "address/length" is taken: Python's netmask and hostmask spellings
    ("10.0.0.0/255.0.0.0") are not CIDRs and Go's `net.ParseCIDR`, which Spiderpool uses,
    refuses them too.
    """
    text = _expect_str(value, "a CIDR")
    addr, slash, length = text.partition("/")
    if slash and not (length.isascii() and length.isdigit()):
        raise ValueError(f"'{text}' is not a CIDR: the prefix length must be a number")
    if "%" in addr:
        raise ValueError(f"'{text}' is not a CIDR: zones ('%') are not allowed")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        if "has host bits set" in str(e):
            net = ipaddress.ip_network(text, strict=False)
            raise ValueError(f"'{text}' has host bits set: write {net}") from None
        raise ValueError(f"'{text}' is not a CIDR") from None


def networks(value: object) -> tuple[IPNetwork, ...]:
    """A list of CIDRs (see `network`)."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of CIDRs, got {json_type(value)}")
    return tuple(network(v) for v in value)


def mac_prefix(value: object) -> str:
    """Two hex bytes "xx:xx" of a unicast MAC, returned lowercase with ':'.

    The first byte's lowest bit is the I/G bit (IEEE 802, 1 = group address): a pod MAC with
    it set would be multicast, which the kernel refuses for an interface.
    """
    text = _expect_str(value, "a MAC prefix string")
    match = _MAC_PREFIX_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"'{text}' is not a MAC prefix: write two hex bytes such as 0a:1b")
    first, second = match.group(1).lower(), match.group(2).lower()
    if int(first, 16) & 1:
        raise ValueError(f"'{text}' is not unicast: the lowest bit of the first byte must be 0")
    return f"{first}:{second}"


def policy_routes(value: object) -> tuple[PolicyRoute, ...]:
    """`[{dst, gw}]`: dst an IP or CIDR, gw an address of the same family."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {{dst, gw}} objects, got {json_type(value)}")
    out: list[PolicyRoute] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"entry {i}: expected a {{dst, gw}} object, got {json_type(item)}")
        unknown = sorted(set(item) - {"dst", "gw"})
        if unknown:
            raise ValueError(f"entry {i}: unknown key '{unknown[0]}' (known: dst, gw)")
        for key in ("dst", "gw"):
            if key not in item:
                raise ValueError(f"entry {i}: missing '{key}'")
        try:
            dst = network(item["dst"])
            gw = address(item["gw"])
        except ValueError as e:
            raise ValueError(f"entry {i}: {e}") from None
        if dst.version != gw.version:
            raise ValueError(f"entry {i}: dst {dst} and gw {gw} are not of the same IP family")
        out.append(PolicyRoute(dst, gw))
    return tuple(out)


def log_options(value: object) -> None:
    """`{logLevel, logFile, logMaxSize, logMaxAge, logMaxCount}`, checked for type only."""
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {json_type(value)}")
    for key, item in value.items():
        if key in LOG_STR_KEYS:
            if not isinstance(item, str):
                raise ValueError(f"'{key}': expected a string, got {json_type(item)}")
        elif key in LOG_INT_KEYS:
            try:
                integer(item, 0, MAX_U32)
            except ValueError as e:
                raise ValueError(f"'{key}': {e}") from None
        else:
            known = ", ".join((*LOG_STR_KEYS, *LOG_INT_KEYS))
            raise ValueError(f"unknown key '{key}' (known: {known})")
