"""spidernet-ifacer's config, read and checked before anything is touched (pure).

Spiderpool's fields (`interfaces`, `vlanID`, `bond` {`name`, `mode`, `options`}) with its
defaults, but every value is checked: a malformed or unknown bond option, a value out of the
kernel's range, or an option the bond's mode does not take is an error naming the option,
where Spiderpool drops it silently and the bond comes up without it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spidernet.cni.config import SOCKET_KEY, socket_path
from spidernet.cni.errors import CNIError, Code

# A bond option's value: a number, an interface or MAC text, or arp_ip_target's IPv4 texts
# (node/netlink/records.py takes it from here).
BondValue = int | str | tuple[str, ...]

DEFAULT_BOND = "sp_bond0"
IFNAMSIZ = 16  # a link name is at most 15 bytes
MAX_VLAN_ID = 4094
MAX_ARP_TARGETS = 16  # BOND_MAX_ARP_TARGETS

# The kernel's mode names, by number (bonding.rst).
MODES = (
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
)
ACTIVE_BACKUP, LACP, TLB, ALB = 1, 4, 5, 6

_INT_MAX = 2**31 - 1
# Options whose values the kernel also takes by name (sysfs); netlink takes the number.
_ENUMS: dict[str, tuple[str, ...]] = {
    "arp_validate": (
        "none",
        "active",
        "backup",
        "all",
        "filter",
        "filter_active",
        "filter_backup",
    ),
    "arp_all_targets": ("any", "all"),
    "primary_reselect": ("always", "better", "failure"),
    "fail_over_mac": ("none", "active", "follow"),
    "xmit_hash_policy": (
        "layer2",
        "layer3+4",
        "layer2+3",
        "encap2+3",
        "encap3+4",
        "vlan+srcmac",
    ),
    "lacp_rate": ("slow", "fast"),
    "ad_select": ("stable", "bandwidth", "count"),
}
# Integer options and their ranges (drivers/net/bonding/bond_options.c).
_RANGES: dict[str, tuple[int, int]] = {
    "miimon": (0, _INT_MAX),
    "updelay": (0, _INT_MAX),
    "downdelay": (0, _INT_MAX),
    "use_carrier": (0, 1),
    "arp_interval": (0, _INT_MAX),
    "resend_igmp": (0, 255),
    "num_peer_notif": (0, 255),
    "all_slaves_active": (0, 1),
    "min_links": (0, _INT_MAX),
    "lp_interval": (1, _INT_MAX),
    "packets_per_slave": (0, 65535),
    "ad_actor_sys_prio": (1, 65535),
    "ad_user_port_key": (0, 1023),
    "tlb_dynamic_lb": (0, 1),
    "peer_notif_delay": (0, 300000),
}
# Options that name one of the bond's interfaces.
_SLAVE_OPTIONS = ("primary",)
# Spiderpool's spellings of the kernel's names.
_ALIASES = {"up_delay": "updelay", "down_delay": "downdelay", "num_grat_arp": "num_peer_notif"}
# Options a mode does not take: the kernel refuses them (bond_opt_check_deps).
_ONLY_IN: dict[str, tuple[int, ...]] = {
    "lacp_rate": (LACP,),
    "ad_select": (LACP,),
    "ad_actor_sys_prio": (LACP,),
    "ad_user_port_key": (LACP,),
    "ad_actor_system": (LACP,),
    "primary": (ACTIVE_BACKUP, TLB, ALB),
    "packets_per_slave": (0,),
    "tlb_dynamic_lb": (TLB, ALB),
    "arp_interval": (0, ACTIVE_BACKUP, 2, 3),
    "arp_validate": (0, ACTIVE_BACKUP, 2, 3),
}
KNOWN_OPTIONS = tuple(
    sorted({*_ENUMS, *_RANGES, *_SLAVE_OPTIONS, "arp_ip_target", "ad_actor_system"})
)
_ZERONET = ipaddress.IPv4Network("0.0.0.0/8")
_NAME_RE = re.compile(r"^[^\s/:]+$")
_MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


@dataclass(frozen=True)
class BondConf:
    """The bond to make or reuse: its name, mode (0-6) and options by kernel name, in the
    order given."""

    name: str
    mode: int
    options: tuple[tuple[str, BondValue], ...] = ()


@dataclass(frozen=True)
class IfacerConf:
    """What the plugin is asked for: the NICs, a VLAN ID (0: none) and maybe a bond."""

    interfaces: tuple[str, ...]
    vlan_id: int = 0
    bond: BondConf | None = None
    state_dir: str = ""

    @property
    def parent(self) -> str:
        """The link a VLAN goes on: the bond, or the single NIC."""
        return self.bond.name if self.bond else self.interfaces[0]

    @property
    def master(self) -> str:
        """The link pods hang from (the main plugin's `master`)."""
        return vlan_name(self.parent, self.vlan_id) if self.vlan_id else self.parent


def vlan_name(parent: str, vlan_id: int) -> str:
    """The VLAN sub-interface's name, as Spiderpool names it."""
    return f"{parent}.{vlan_id}"


def _fail(msg: str) -> CNIError:
    return CNIError(Code.INVALID_NETWORK_CONFIG, msg)


def check_ifname(what: str, name: object) -> str:
    """`name` if it is a valid link name, else an error naming `what`."""
    if not isinstance(name, str) or not name:
        raise _fail(f"{what} must be a non-empty string")
    if len(name.encode()) >= IFNAMSIZ or name in (".", "..") or not _NAME_RE.match(name):
        raise _fail(
            f"{what} '{name}' is not a valid interface name"
            f" (at most {IFNAMSIZ - 1} bytes, no '/', ':' or spaces)"
        )
    return name


def _int(what: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{what} must be an integer from {low} to {high}, not {value!r}")
    return value


def _mode(value: object) -> int:
    if isinstance(value, str) and value in MODES:
        return MODES.index(value)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(MODES):
        raise _fail(f"bond.mode must be 0-6 or one of {', '.join(MODES)}, not {value!r}")
    return value


def _option_value(key: str, text: str, interfaces: tuple[str, ...]) -> BondValue:
    bad = f"bond option '{key}': "
    if key in _ENUMS:
        names = _ENUMS[key]
        if text in names:
            return names.index(text)
        if text.isdigit() and int(text) < len(names):
            return int(text)
        raise _fail(bad + f"'{text}' is not one of {', '.join(names)}")
    if key in _RANGES:
        low, high = _RANGES[key]
        if not re.fullmatch(r"\d+", text) or not low <= int(text) <= high:
            raise _fail(bad + f"'{text}' is not an integer from {low} to {high}")
        return int(text)
    if key in _SLAVE_OPTIONS:
        if text not in interfaces:
            raise _fail(bad + f"'{text}' is not one of the bond's interfaces")
        return text
    if key == "ad_actor_system":
        if not _MAC_RE.match(text) or int(text[:2], 16) & 1 or text == "00:00:00:00:00:00":
            raise _fail(bad + f"'{text}' is not a unicast MAC address")
        return text.lower()
    # arp_ip_target: one IPv4 address, or several as [a,b] (Spiderpool's array form)
    items = text[1:-1].split(",") if text.startswith("[") and text.endswith("]") else [text]
    targets = tuple(i.strip() for i in items if i.strip())
    if not 1 <= len(targets) <= MAX_ARP_TARGETS:
        raise _fail(bad + f"give 1 to {MAX_ARP_TARGETS} IPv4 addresses, not '{text}'")
    for t in targets:
        try:
            address = ipaddress.IPv4Address(t)
        except ValueError:
            raise _fail(bad + f"'{t}' is not an IPv4 address") from None
        if address in _ZERONET or address == ipaddress.IPv4Address("255.255.255.255"):
            raise _fail(bad + f"'{t}' is not a usable ARP target (0.0.0.0/8 or broadcast)")
    return targets


def parse_options(
    text: object, mode: int, interfaces: tuple[str, ...]
) -> tuple[tuple[str, BondValue], ...]:
    """Bond options from Spiderpool's "k1=v1;k2=v2" text, checked one by one."""
    if text is None or text == "":
        return ()
    if not isinstance(text, str):
        raise _fail(f"bond.options must be a string like 'miimon=100;updelay=200', not {text!r}")
    out: dict[str, BondValue] = {}
    for pair in text.split(";"):
        if not pair.strip():
            continue  # "a=1;" and ";;" are fine
        key, sep, value = (p.strip() for p in pair.partition("="))
        if not sep or not key or not value:
            raise _fail(f"bond option '{pair.strip()}' is not key=value")
        key = _ALIASES.get(key, key)
        if key == "mode":
            raise _fail("bond option 'mode': set bond.mode instead")
        if key == "active_slave":
            # The kernel takes it only from a running bond whose named slave has link,
            # and forgets it at the next failover: a command, not a setting.
            raise _fail(
                "bond option 'active_slave' switches a running bond once and is not kept;"
                " use primary=<interface>, which the bond keeps choosing"
            )
        if key not in KNOWN_OPTIONS:
            raise _fail(f"bond option '{key}' is unknown; known: {', '.join(KNOWN_OPTIONS)}")
        if key in out:
            raise _fail(f"bond option '{key}' is given twice")
        allowed = _ONLY_IN.get(key)
        if allowed is not None and mode not in allowed:
            modes = ", ".join(MODES[m] for m in allowed)
            raise _fail(f"bond option '{key}' does not apply to mode {MODES[mode]} (only {modes})")
        out[key] = _option_value(key, value, interfaces)
    if out.get("miimon") and out.get("arp_interval"):
        raise _fail("bond options 'miimon' and 'arp_interval' exclude each other: set one")
    return tuple(out.items())


def _bond(raw: object, interfaces: tuple[str, ...]) -> BondConf | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _fail("bond must be an object with name, mode and options")
    unknown = sorted(set(raw) - {"name", "mode", "options"})
    if unknown:
        raise _fail(f"bond has unknown field(s): {', '.join(unknown)}")
    name = check_ifname("bond.name", raw.get("name") or DEFAULT_BOND)
    if name in interfaces:
        raise _fail(f"bond.name '{name}' is also one of the interfaces")
    mode = _mode(raw.get("mode", 0))
    return BondConf(name, mode, parse_options(raw.get("options"), mode, interfaces))


def parse_ifacer(raw: Mapping[str, Any]) -> IfacerConf:
    """The plugin config `raw`, checked; raises CNIError 7 naming the first bad field."""
    given = raw.get("interfaces")
    if not isinstance(given, list) or not given:
        raise _fail("interfaces must be a non-empty list of the host's NIC names")
    interfaces = tuple(check_ifname(f"interfaces[{i}]", n) for i, n in enumerate(given))
    dup = sorted({n for n in interfaces if interfaces.count(n) > 1})
    if dup:
        raise _fail(f"interfaces lists {', '.join(dup)} more than once")
    vlan_id = _int("vlanID", raw.get("vlanID", 0), 0, MAX_VLAN_ID)
    bond = _bond(raw.get("bond"), interfaces)
    if len(interfaces) > 1 and bond is None and vlan_id:
        # Spiderpool does nothing here; a VLAN asked for and silently not made is a pod on
        # the wrong network.
        raise _fail("vlanID with several interfaces needs a bond to put the VLAN on")
    state_dir = raw.get("stateDir", "")
    if not isinstance(state_dir, str):
        raise _fail("stateDir must be a path")
    try:
        # The node service's socket, for the forwarder (cni/forward.py): only checked.
        socket_path(raw.get(SOCKET_KEY))
    except ValueError as e:
        raise _fail(f"{SOCKET_KEY}: {e}") from None
    conf = IfacerConf(interfaces, vlan_id, bond, state_dir)
    if vlan_id:
        check_ifname("the VLAN interface name", conf.master)
    return conf
