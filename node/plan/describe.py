"""Operations in words, for errors and logs: "add route 10.0.0.0/8 via 192.0.2.1 dev veth0
table 100 in the pod" (pure).

Each phrase is a verb and its object, so a message reads "failed to <phrase>: <cause>"
(STYLE.md §6); the main table and the universe scope, the defaults, are left out.
"""

from __future__ import annotations

import socket
from typing import assert_never

from .ops import (
    MAIN,
    SCOPE_LINK,
    SCOPE_UNIVERSE,
    AddAddress,
    AddBond,
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    AddVlan,
    Announce,
    DeleteAddress,
    DeleteLink,
    DeleteNeighbour,
    DeleteRoute,
    DeleteRule,
    DropReplyViaLink,
    Enslave,
    Op,
    Release,
    ReplyViaLink,
    SetLinkDown,
    SetLinkUp,
    SetMac,
    SetSysctl,
    SetTxQueueLen,
)

_SCOPES = {SCOPE_LINK: "link", 254: "host"}
_FAMILIES: dict[int, str] = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


def _route(op: AddRoute | DeleteRoute) -> str:
    words = [f"route {op.dst}"]
    if op.gateway is not None:
        words.append(f"via {op.gateway}")
    words.append(f"dev {op.dev}")
    if op.table != MAIN:
        words.append(f"table {op.table}")
    if op.scope != SCOPE_UNIVERSE:
        words.append(f"scope {_SCOPES.get(op.scope, str(op.scope))}")
    if op.src is not None:
        words.append(f"src {op.src}")
    return " ".join(words)


def _rule(op: AddRule | DeleteRule) -> str:
    family = _FAMILIES.get(op.family, f"family {op.family}")
    words = [f"{family} rule {op.priority} from {op.src or 'all'}"]
    if op.dst is not None:
        words.append(f"to {op.dst}")
    if op.fwmark:
        words.append(f"fwmark {op.fwmark:#x}")
    if op.iifname:
        words.append(f"iif {op.iifname}")
    words.append(f"lookup {op.table}")
    return " ".join(words)


def _options(options: tuple[tuple[str, object], ...]) -> str:
    def text(value: object) -> str:
        return ",".join(value) if isinstance(value, tuple) else str(value)

    return " ".join(f"{k} {text(v)}" for k, v in options)


def _phrase(op: Op) -> str:
    match op:
        case AddVeth():
            return (
                f"add veth '{op.host_name}' in the host with peer '{op.pod_name}' in the pod"
                f" (mtu {op.mtu})"
            )
        case DeleteLink():
            return f"delete link '{op.name}'"
        case AddVlan():
            return f"add vlan {op.vlan_id} '{op.name}' on '{op.parent}'"
        case AddBond():
            return f"add bond '{op.name}' ({_options(op.options)})"
        case Enslave():
            return f"enslave '{op.name}' to '{op.master}'"
        case Release():
            return f"release '{op.name}' from its master"
        case SetLinkUp():
            return f"set link '{op.name}' up"
        case SetLinkDown():
            return f"set link '{op.name}' down"
        case SetMac():
            return f"set the MAC address of '{op.name}' to {op.mac}"
        case SetTxQueueLen():
            return f"set the transmit queue length of '{op.name}' to {op.qlen}"
        case AddAddress():
            return f"add address {op.address} to '{op.name}'"
        case DeleteAddress():
            return f"delete address {op.address} from '{op.name}'"
        case AddRoute():
            return f"add {_route(op)}"
        case DeleteRoute():
            return f"delete {_route(op)}"
        case AddRule():
            return f"add {_rule(op)}"
        case DeleteRule():
            return f"delete {_rule(op)}"
        case AddNeighbour():
            return f"add neighbour {op.ip} lladdr {op.mac} dev {op.dev}"
        case DeleteNeighbour():
            return f"delete neighbour {op.ip} dev {op.dev}"
        case SetSysctl():
            return f"set sysctl {op.key}={op.value}"
        case ReplyViaLink():
            return (
                f"mark connections arriving on '{op.iifname}' for replies through it"
                f" (mark {op.mark:#x}, table {op.table})"
            )
        case DropReplyViaLink():
            return f"remove the reply marking of '{op.iifname}' (mark {op.mark:#x})"
        case Announce():
            return f"announce {op.address} on '{op.dev}'"
        case _:  # pragma: no cover - mypy checks that every op has a case
            assert_never(op)


def describe(op: Op) -> str:
    """`op` as a verb phrase naming its object and namespace ("... in the pod")."""
    phrase = _phrase(op)
    if isinstance(op, AddVeth):
        return phrase  # it names both namespaces itself
    return f"{phrase} in the {op.side}"
