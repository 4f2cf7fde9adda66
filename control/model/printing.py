"""`kubectl get`-style columns for each kind, and the CLI's names for the kinds.

The columns are Spiderpool's `+kubebuilder:printcolumn` markers
(`pkg/k8s/apis/spiderpool.spidernet.io/v2beta1/*_types.go`); those with `priority=10` show
only with `-o wide`. SpiderCoordinator declares none, so it shows its name only. kubectl's
AGE column is left out: the model knows no clock. Cells follow the API server's table
convertor: a missing value is empty, booleans print as true/false, lists and maps as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from spidernet.control.model.resources import Coordinator, Endpoint, IPPool, ReservedIP, Subnet

Cell = Callable[[Mapping[str, Any]], str]

# CLI name → kind; kubectl's plural, singular and short names (`+kubebuilder:resource`).
CLI_NAMES: dict[str, tuple[str, ...]] = {
    IPPool.KIND: ("pools", "ippools", "ippool", "pool", "sp", "spiderippools", "spiderippool"),
    Subnet.KIND: ("subnets", "subnet", "ss", "spidersubnets", "spidersubnet"),
    ReservedIP.KIND: ("reservedips", "reservedip", "sr", "spiderreservedips", "spiderreservedip"),
    Endpoint.KIND: ("endpoints", "endpoint", "se", "spiderendpoints", "spiderendpoint"),
    Coordinator.KIND: (
        "coordinators",
        "coordinator",
        "scc",
        "spidercoordinators",
        "spidercoordinator",
    ),
}
_BY_NAME = {name: kind for kind, names in CLI_NAMES.items() for name in names}


def resolve_kind(cli_name: str) -> str:
    """The kind a CLI name means ("sp" → "SpiderIPPool"); ValueError listing valid names.

    Names are case-insensitive; the kind itself and `<plural>.spiderpool.spidernet.io`
    are accepted too.
    """
    name = cli_name.strip().lower().removesuffix(".spiderpool.spidernet.io")
    if name in _BY_NAME:
        return _BY_NAME[name]
    valid = "; ".join(
        f"{names[0]} ({', '.join(n for n in names[1:] if not n.startswith('spider'))})"
        for names in CLI_NAMES.values()
    )
    raise ValueError(f"unknown resource type '{cli_name}'; use one of: {valid}")


def _path(*keys: str | int) -> Cell:
    """A cell that prints the value at a JSON path, as the API server's table convertor does."""

    def cell(doc: Mapping[str, Any]) -> str:
        """The formatted value at the path, or "" when any step is missing."""
        value: Any = doc
        for key in keys:
            if isinstance(key, int):
                if not isinstance(value, list) or len(value) <= key:
                    return ""
                value = value[key]
            elif isinstance(value, Mapping) and key in value:
                value = value[key]
            else:
                return ""
        return format_cell(value)

    return cell


def format_cell(value: object) -> str:
    """One value as kubectl prints it in a table."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


_NAME: tuple[str, Cell] = ("NAME", _path("metadata", "name"))
_COUNTS: list[tuple[str, Cell]] = [
    ("VERSION", _path("spec", "ipVersion")),
    ("SUBNET", _path("spec", "subnet")),
    ("ALLOCATED-IP-COUNT", _path("status", "allocatedIPCount")),
    ("TOTAL-IP-COUNT", _path("status", "totalIPCount")),
]
_IPS = ("status", "current", "ips", 0)

# (header, cell, wide only)
_COLUMNS: dict[str, list[tuple[str, Cell, bool]]] = {
    IPPool.KIND: [
        *((h, c, False) for h, c in _COUNTS),
        ("DEFAULT", _path("spec", "default"), False),
        ("DISABLE", _path("spec", "disable"), True),
        ("NodeName", _path("spec", "nodeName"), True),
        ("MultusName", _path("spec", "multusName"), True),
        (
            "APP-NAMESPACE",
            _path("spec", "podAffinity", "matchLabels", "ipam.spidernet.io/app-namespace"),
            True,
        ),
    ],
    Subnet.KIND: [(h, c, False) for h, c in _COUNTS],
    ReservedIP.KIND: [("VERSION", _path("spec", "ipVersion"), False)],
    Endpoint.KIND: [
        ("INTERFACE", _path(*_IPS, "interface"), False),
        ("IPV4POOL", _path(*_IPS, "ipv4Pool"), False),
        ("IPV4", _path(*_IPS, "ipv4"), False),
        ("IPV6POOL", _path(*_IPS, "ipv6Pool"), False),
        ("IPV6", _path(*_IPS, "ipv6"), False),
        ("NODE", _path("status", "current", "node"), False),
    ],
    Coordinator.KIND: [],
}


def columns(kind: str, wide: bool = False, *, namespaces: bool = False) -> list[tuple[str, Cell]]:
    """The (header, cell function) columns of a kind; `namespaces` adds NAMESPACE first
    (as `kubectl get -A` does for namespaced kinds)."""
    if kind not in _COLUMNS:
        raise ValueError(f"unknown kind '{kind}'; expected one of {', '.join(_COLUMNS)}")
    out = [_NAME] + [(h, c) for h, c, wide_only in _COLUMNS[kind] if wide or not wide_only]
    if namespaces and kind == Endpoint.KIND:
        out.insert(0, ("NAMESPACE", _path("metadata", "namespace")))
    return out


def table(
    kind: str, docs: Sequence[Mapping[str, Any]], wide: bool = False, *, namespaces: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of cells for documents of one kind."""
    cols = columns(kind, wide, namespaces=namespaces)
    return [h for h, _ in cols], [[cell(doc) for _, cell in cols] for doc in docs]
