"""`kubectl get`-style columns for each kind, and the CLI's names for the kinds.

The columns are those the CRDs of deploy/chart/crds declare (`additionalPrinterColumns`,
Spiderpool's `+kubebuilder:printcolumn` markers, `pkg/k8s/apis/spiderpool.spidernet.io/
v2beta1/*_types.go`):
a `Printer` is made from the CRD documents (control/crds.py reads the packaged files), so the
API server's `kubectl get` and `spidernet get` print the same columns from one source. Columns
with a priority above 0 show only with `-o wide`. A `date` column (AGE) needs the time now: a
printer asked without one leaves it out (the node socket's records carry no creation time).

Cells follow the API server's table convertor (k8s.io/apiextensions-apiserver
pkg/registry/customresource/tableconvertor): a missing value is empty, booleans print as
true/false, lists and maps as JSON, a date as kubectl's human duration since it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spidernet.control.model.resources import Coordinator, Endpoint, IPPool, ReservedIP, Subnet

Cell = Callable[[Mapping[str, Any]], str]
MULTUS_KIND = "SpiderMultusConfig"

# CLI name → kind; kubectl's plural, singular and short names (`+kubebuilder:resource`), and
# spidernet's own short plurals first (`pools`, ...).
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
    MULTUS_KIND: (
        "multusconfigs",
        "multusconfig",
        "smc",
        "spidermultusconfigs",
        "spidermultusconfig",
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


# One step of the JSONPath subset printer columns use: `.field`, `[0]`, `['escaped\.key']`.
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]")
_ESCAPE = re.compile(r"\\(.)")


def parse_json_path(text: str) -> tuple[str | int, ...]:
    """The steps of a printer column's JSONPath (`.status.current.ips[0].ipv4`); ValueError
    for syntax beyond the subset (filters, wildcards, unions)."""
    body = text[1:-1] if text.startswith("{") and text.endswith("}") else text
    steps: list[str | int] = []
    pos = 0
    while pos < len(body):
        m = _STEP.match(body, pos)
        if m is None:
            raise ValueError(f"JSONPath {text!r}: cannot read at character {pos}")
        name, index, quoted = m.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(name if quoted is None else _ESCAPE.sub(r"\1", quoted))
        pos = m.end()
    if not steps:
        raise ValueError(f"JSONPath {text!r}: no field")
    return tuple(steps)


def value_at(doc: Mapping[str, Any], steps: Sequence[str | int]) -> object:
    """The value at `steps` in `doc`, or None when any step is missing."""
    value: Any = doc
    for key in steps:
        if isinstance(key, int):
            if not isinstance(value, list) or len(value) <= key:
                return None
            value = value[key]
        elif isinstance(value, Mapping) and key in value:
            value = value[key]
        else:
            return None
    return value


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


def human_duration(seconds: float) -> str:
    """kubectl's age of a thing `seconds` old (apimachinery pkg/util/duration HumanDuration):
    5s, 2m30s, 15m, 3h20m, 10h, 3d4h, 30d, 2y10d, 9y."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"  # (a clock more than a second behind the API server's)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, hours // 24 % 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def format_age(timestamp: object, now: datetime) -> str:
    """An RFC 3339 time (`metadata.creationTimestamp`) as kubectl's age at `now` (aware);
    `<unknown>` when missing or unreadable, as kubectl prints it."""
    if not isinstance(timestamp, str):
        return "<unknown>"
    try:
        when = datetime.fromisoformat(timestamp)
    except ValueError:
        return "<unknown>"
    if when.tzinfo is None:
        return "<unknown>"
    return human_duration((now - when).total_seconds())


@dataclass(frozen=True)
class Column:
    """One printer column of a CRD: its header, type, path and priority (0: always shown)."""

    header: str
    type: str
    path: tuple[str | int, ...]
    priority: int = 0

    def cell(self, doc: Mapping[str, Any], now: datetime | None) -> str:
        """The column's text for `doc`."""
        value = value_at(doc, self.path)
        if self.type == "date" and now is not None:
            return format_age(value, now)
        return format_cell(value)


@dataclass(frozen=True)
class KindColumns:
    """What a CRD says about printing its kind: scope, names and columns."""

    kind: str
    namespaced: bool
    plural: str
    group: str
    columns: tuple[Column, ...]


def kind_columns(crd: Mapping[str, Any]) -> KindColumns:
    """The printing facts of one CustomResourceDefinition document (its first served
    version's columns); ValueError when a column's JSONPath is beyond the subset."""
    spec = crd["spec"]
    version = next(v for v in spec["versions"] if v.get("served", True))
    cols = tuple(
        Column(c["name"], c["type"], parse_json_path(c["jsonPath"]), int(c.get("priority", 0)))
        for c in version.get("additionalPrinterColumns", [])
    )
    return KindColumns(
        spec["names"]["kind"], spec["scope"] == "Namespaced", spec["names"]["plural"],
        spec["group"], cols,
    )  # fmt: skip


_NAME = Column("NAME", "string", ("metadata", "name"))
_NAMESPACE = Column("NAMESPACE", "string", ("metadata", "namespace"))


class Printer:
    """Tables of Spider* objects, with the columns the CRD documents `crds` declare."""

    def __init__(self, crds: Iterable[Mapping[str, Any]]) -> None:
        self.kinds: dict[str, KindColumns] = {}
        for crd in crds:
            info = kind_columns(crd)
            self.kinds[info.kind] = info

    def columns(
        self, kind: str, wide: bool = False, *, namespaces: bool = False, ages: bool = False
    ) -> list[Column]:
        """NAME, then the kind's columns (priority 0 only, unless `wide`); `namespaces` adds
        NAMESPACE first for a namespaced kind (`kubectl get -A`); `ages` keeps date columns."""
        if kind not in self.kinds:
            raise ValueError(f"unknown kind '{kind}'; expected one of {', '.join(self.kinds)}")
        info = self.kinds[kind]
        out = [_NAME] + [
            c for c in info.columns if (wide or c.priority == 0) and (ages or c.type != "date")
        ]
        if namespaces and info.namespaced:
            out.insert(0, _NAMESPACE)
        return out

    def headers(
        self, kind: str, wide: bool = False, *, namespaces: bool = False, ages: bool = False
    ) -> list[str]:
        """The column headers of `columns`."""
        return [c.header for c in self.columns(kind, wide, namespaces=namespaces, ages=ages)]

    def table(
        self,
        kind: str,
        docs: Sequence[Mapping[str, Any]],
        wide: bool = False,
        *,
        namespaces: bool = False,
        now: datetime | None = None,
    ) -> tuple[list[str], list[list[str]]]:
        """Headers and rows of cells for documents of one kind; AGE (any date column) shows
        only when `now` is given."""
        cols = self.columns(kind, wide, namespaces=namespaces, ages=now is not None)
        return [c.header for c in cols], [[c.cell(d, now) for c in cols] for d in docs]


def widths(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[int]:
    """Each column's width: its longest cell or header (later rows of a watch keep them)."""
    out = [len(h) for h in headers]
    for row in rows:
        out = [max(w, len(cell)) for w, cell in zip(out, row, strict=True)]
    return out
