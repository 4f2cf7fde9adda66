"""`spidernet diag` output: a JSON document (schema: docs/diag.schema.json, version
SCHEMA_VERSION) and readable tables built from it, so both say the same thing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spidernet.node.netlink.records import (
    NUD_NOARP,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    Neighbour,
    Route,
    Rule,
)

from .analyze import route_get_args
from .model import Answer, LookupSpec, Side
from .run import Report

SCHEMA_VERSION = 1
_NUD = {
    0x01: "INCOMPLETE",
    0x02: "REACHABLE",
    0x04: "STALE",
    0x08: "DELAY",
    0x10: "PROBE",
    0x20: "FAILED",
    0x40: "NOARP",
    0x80: "PERMANENT",
}
_TABLES = {RT_TABLE_MAIN: "main", RT_TABLE_LOCAL: "local", 253: "default"}


def _table(table: int) -> str:
    return _TABLES.get(table, str(table))


def _route(side: Side, r: Route) -> dict[str, Any]:
    return {
        "table": _table(r.table),
        "dst": "default" if r.dst.prefixlen == 0 else str(r.dst),
        "family": r.dst.version,
        "gateway": str(r.gateway) if r.gateway else None,
        "dev": side.name_of(r.oif) or None,
        "src": str(r.prefsrc) if r.prefsrc else None,
        "metric": r.priority,
    }


def _rule(rule: Rule) -> dict[str, Any]:
    selector = []
    selector.append(f"from {rule.src}" if rule.src else "from all")
    if rule.dst:
        selector.append(f"to {rule.dst}")
    if rule.iifname:
        selector.append(f"iif {rule.iifname}")
    if rule.oifname:
        selector.append(f"oif {rule.oifname}")
    if rule.fwmark:
        selector.append(f"fwmark {rule.fwmark:#x}/{rule.fwmask:#x}")
    return {
        "priority": rule.priority,
        "family": 4 if rule.family == 2 else 6,
        "selector": " ".join(selector),
        "table": _table(rule.table),
    }


def _neighbour(side: Side, n: Neighbour) -> dict[str, Any]:
    states = [name for bit, name in _NUD.items() if n.state & bit] or ["NONE"]
    return {
        "dev": side.name_of(n.ifindex),
        "address": str(n.dst),
        "mac": n.lladdr or None,
        "state": "|".join(states),
    }


def _tables_in_use(side: Side) -> set[int]:
    return {RT_TABLE_MAIN} | {r.table for r in side.state.rules if r.table != RT_TABLE_LOCAL}


def side_document(side: Side) -> dict[str, Any]:
    tables = _tables_in_use(side) if side.label == "pod" else {r.table for r in side.state.routes}
    return {
        "netns": side.netns,
        "interfaces": [
            {
                "name": link.name,
                "kind": link.kind or None,
                "mac": link.mac or None,
                "mtu": link.mtu,
                "up": link.up,
                "addresses": [
                    str(a.address) for a in side.state.addresses if a.index == link.index
                ],
            }
            for link in sorted(side.state.links, key=lambda link: link.index)
        ],
        "rules": [_rule(r) for r in side.state.rules],
        "routes": [
            _route(side, r)
            for r in side.state.routes
            if r.table in tables and not r.dst.is_multicast
        ],
        "neighbours": [
            _neighbour(side, n) for n in side.state.neighbours if not n.state & NUD_NOARP
        ],
        "sysctls": dict(sorted(side.sysctls.items())),
    }


def _lookup(spec: LookupSpec | None, answer: Answer | None) -> dict[str, Any] | None:
    if spec is None or answer is None:
        return None
    out: dict[str, Any] = {
        "query": route_get_args(spec),
        "dev": answer.dev or None,
        "src": None,
        "gateway": None,
        "table": None,
        "type": None,
        "error": answer.error or None,
        "message": answer.message or None,
    }
    if answer.route is not None:
        r = answer.route
        out.update(
            src=str(r.prefsrc) if r.prefsrc else None,
            gateway=str(r.gateway) if r.gateway else None,
            table=_table(r.table),
            type="local" if r.type == 2 else "unicast" if r.type == 1 else str(r.type),
        )
    return out


def document(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (docs/diag.schema.json)."""
    record = report.record
    return {
        "schemaVersion": SCHEMA_VERSION,
        "target": {
            "netns": report.netns,
            "pod": f"{record.namespace}/{record.name}" if record else None,
            "containerID": (record.container_id or None) if record else None,
        },
        "pod": side_document(report.pod),
        "host": side_document(report.host) if report.host else None,
        "ipam": None
        if record is None
        else {
            "interfaces": {nic: [str(a) for a in v] for nic, v in sorted(record.nics.items())},
            "gateways": {nic: [str(g) for g in v] for nic, v in sorted(record.gateways.items())},
        },
        "defaultRouteNic": report.expected_default_nic or None,
        "paths": [
            {
                "target": r.path.target.name,
                "address": str(r.path.target.address),
                "direction": r.path.direction,
                "nic": r.path.nic or None,
                "local": str(r.path.local) if r.path.local else None,
                "request": _lookup(r.path.request, r.request),
                "reply": _lookup(r.reply_spec, r.reply),
            }
            for r in report.paths
        ],
        "hostRoutes": [
            {"address": str(spec.dst), "route": _lookup(spec, answer)}
            for spec, answer in report.host_lookups
        ],
        "probes": [
            {
                "kind": p.spec.kind,
                "nic": p.spec.nic,
                "address": str(p.spec.address),
                "answeredBy": list(p.macs),
                "error": p.error or None,
            }
            for p in report.probes
        ],
        "findings": [
            {"kind": f.kind, "message": f.message, "confirm": f.confirm} for f in report.findings
        ],
        "unchecked": list(report.unchecked),
    }


# -- tables ------------------------------------------------------------------------------


def _leg(leg: Mapping[str, Any] | None) -> str:
    if leg is None:
        return "-"
    if leg["error"]:
        return f"{leg['error']} ({leg['message']})"
    if leg["type"] == "local":
        return f"accepted ({leg['dev']})" if leg["dev"] else "accepted"
    via = f" via {leg['gateway']}" if leg["gateway"] else ""
    src = f" src {leg['src']}" if leg["src"] else ""
    return f"{leg['dev']}{via}{src} [table {leg['table']}]"


def tables(doc: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, columns, rows) for each table the report prints, from its JSON document."""
    return _kernel_tables(doc) + _check_tables(doc)


def _kernel_tables(doc: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """What the kernel holds on each side: interfaces, rules, routes, neighbours, sysctls."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    sides = [("pod", doc["pod"])] + ([("host", doc["host"])] if doc["host"] else [])
    out.append(
        (
            "Interfaces",
            ["side", "name", "kind", "state", "mtu", "mac", "addresses"],
            [
                [
                    s,
                    i["name"],
                    i["kind"] or "",
                    "up" if i["up"] else "down",
                    str(i["mtu"]),
                    i["mac"] or "",
                    " ".join(i["addresses"]),
                ]
                for s, d in sides
                for i in d["interfaces"]
            ],
        )
    )
    out.append(
        (
            "Rules",
            ["side", "priority", "family", "selector", "table"],
            [
                [s, str(r["priority"]), f"IPv{r['family']}", r["selector"], r["table"]]
                for s, d in sides
                for r in d["rules"]
            ],
        )
    )
    out.append(
        (
            "Routes",
            ["side", "table", "destination", "via", "dev", "src"],
            [
                [s, r["table"], r["dst"], r["gateway"] or "", r["dev"] or "", r["src"] or ""]
                for s, d in sides
                for r in d["routes"]
            ],
        )
    )
    out.append(
        (
            "Neighbours",
            ["side", "dev", "address", "mac", "state"],
            [
                [s, n["dev"], n["address"], n["mac"] or "", n["state"]]
                for s, d in sides
                for n in d["neighbours"]
            ],
        )
    )
    out.append(
        (
            "Sysctls",
            ["side", "key", "value"],
            [[s, k, v] for s, d in sides for k, v in d["sysctls"].items()],
        )
    )
    return out


def _check_tables(doc: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """What diag compared and asked: the IPAM record, the paths, the host's routes to the
    pod, the probes."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    if doc["ipam"] is not None:
        actual = {i["name"]: i["addresses"] for i in doc["pod"]["interfaces"]}
        out.append(
            (
                f"IPAM record of {doc['target']['pod']}",
                ["nic", "recorded", "on the interface"],
                [
                    [nic, " ".join(v), " ".join(actual.get(nic, []))]
                    for nic, v in doc["ipam"]["interfaces"].items()
                ],
            )
        )
    out.append(
        (
            "Paths (the kernel's route lookups: request and reply)",
            ["target", "address", "direction", "nic", "pod address", "request", "reply"],
            [
                [
                    p["target"],
                    p["address"],
                    p["direction"],
                    p["nic"] or "",
                    p["local"] or "",
                    _leg(p["request"]),
                    _leg(p["reply"]),
                ]
                for p in doc["paths"]
            ],
        )
    )
    if doc["hostRoutes"]:
        out.append(
            (
                "Host to pod",
                ["pod address", "host route"],
                [[h["address"], _leg(h["route"])] for h in doc["hostRoutes"]],
            )
        )
    if doc["probes"]:
        out.append(
            (
                "ARP/NDP probes",
                ["kind", "nic", "address", "answered by"],
                [
                    [
                        p["kind"],
                        p["nic"],
                        p["address"],
                        p["error"] or " ".join(p["answeredBy"]) or "nobody",
                    ]
                    for p in doc["probes"]
                ],
            )
        )
    return out


__all__: Sequence[str] = ["SCHEMA_VERSION", "document", "tables"]
