"""Memory: the node service idle and holding endpoints, and a plugin process beside Go's.

    python -m bench.memory [--quick] [--out DIR] [--calls N]

Part 1: `spidernet serve` (embedded SQLite store, metrics on a free loopback port) on a
temporary state directory, started and answering, then left alone for 2 s: VmRSS and VmHWM
from /proc/<pid>/status, the service's own and each descendant's (the namespace broker) in a
row of its own.

Part 2: the same service holding N endpoints (default 1000, --quick 200, --calls N): one
SpiderIPPool (a /20, larger when N needs it) applied through `POST /v1/resources`, N
`POST /v1/ipam/allocate` calls for N distinct pods, none released; memory read 2 s later.
Then every endpoint is released, memory read again, and the pool must hold nothing.

Part 3: the peak resident set of each plugin process: `spidernet-ipam` as `spidernet
install-cni` writes it (the compiled and the Python forwarder), forwarding to the running
service, and Go `host-local` on a temporary dataDir; ADD and DEL, 10 calls each (--quick 5).
Each runs under bench/maxrss.c (compiled here with cc), which forks it from its own small
address space and reports wait4's `ru_maxrss`: a wait4 of this process's own children
would include this process's peak (the file says why). Skipped without a C compiler.

Numbers only, never a pass or fail (the run fails, exit 1, only when a call or a check
does): tables beside the goals, every number in DIR/memory.json (default bench/results/).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .ipam_calls import HOST_LOCAL
from .memory_parts import (
    HL,
    SERVE,
    VERBS,
    Config,
    PluginResults,
    make_service,
    part_endpoints,
    part_idle,
    part_plugins,
)
from .runs import (
    RUN_FAILURES,
    OwnStack,
    console,
    guarded,
    machine_facts,
    machine_line,
    missing_plugins,
)
from .timing import ratio

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
ENDPOINTS, QUICK_ENDPOINTS = 1000, 200
PLUGIN_CALLS, QUICK_PLUGIN_CALLS = 10, 5
GOALS = {
    "service_idle_rss_mb": 60,
    "service_endpoints_rss_mb": 100,
    "service_endpoints_for_goal": 1000,
    "plugin_peak_rss": "beside Go host-local's (no number)",
}
TOGETHER = "sum (VmRSS counts shared pages twice, Pss once)"


def kb_to_mb(kb: float) -> float:
    """KiB (what /proc and ru_maxrss call kB) to MB of 2**20 bytes, as the tables print."""
    return kb / 1024.0


def _mb(kb: float, digits: int = 1) -> str:
    return f"{kb_to_mb(kb):.{digits}f}"


def _sum_kb(rows: Sequence[Mapping[str, Any]], key: str) -> int:
    return sum(int(r.get(key, 0)) for r in rows)


def _with_sum(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows, and a summed one, labelled as such, when the service has descendants."""
    if len(rows) < 2:
        return list(rows)
    keys = ("vmrss_kb", "pss_kb", "vmhwm_kb", "rssanon_kb", "rssfile_kb")
    total = {"process": TOGETHER, "depth": 0, "pid": "", **{k: _sum_kb(rows, k) for k in keys}}
    return [*rows, total]


def _name(row: Mapping[str, Any]) -> str:
    depth = int(row["depth"])
    return "  " * depth + str(row["process"]) + (" (child)" if depth == 1 else "")


def _has_goal(row: Mapping[str, Any]) -> bool:
    return row["process"] in (SERVE, TOGETHER)


def idle_table(idle: Mapping[str, Any], settle_s: float) -> Table:
    """Part 1: one row per process, the sum apart, the goal beside the service's rows."""
    table = Table(
        title=f"Part 1: spidernet serve idle ({settle_s:.0f} s after it answered); "
        f"children from {idle['children_from']}",
        title_justify="left",
    )
    cols = ("process", "pid", "VmRSS MB", "Pss MB", "VmHWM MB", "RssAnon MB", "RssFile MB", "goal")
    for col in cols:
        table.add_column(col, justify="left" if col in ("process", "goal") else "right")
    goal = f"<= {GOALS['service_idle_rss_mb']} MB"
    for row in _with_sum(idle["rows"]):
        table.add_row(
            _name(row),
            str(row["pid"]),
            _mb(row["vmrss_kb"]),
            _mb(row.get("pss_kb", 0)),
            _mb(row["vmhwm_kb"]),
            _mb(row.get("rssanon_kb", 0)),
            _mb(row.get("rssfile_kb", 0)),
            goal if _has_goal(row) else "",
        )
    return table


def _idle_kb(idle: Mapping[str, Any], row: Mapping[str, Any]) -> int | None:
    if row["process"] == TOGETHER:
        return _sum_kb(idle["rows"], "vmrss_kb")
    same = [r for r in idle["rows"] if r["pid"] == row["pid"]]
    return int(same[0]["vmrss_kb"]) if same else None


def endpoints_table(idle: Mapping[str, Any], ends: Mapping[str, Any]) -> Table:
    """Part 2: holding N endpoints, then after releasing them, each row against idle."""
    n = ends["n"]
    table = Table(
        title=f"Part 2: spidernet serve holding {n} endpoints (pool {ends['pool']['subnet']}), "
        "then after releasing them all",
        title_justify="left",
    )
    cols = ("moment", "process", "VmRSS MB", "Pss MB", "RssAnon MB", "VmRSS over idle", "goal")
    for col in cols:
        table.add_column(col, justify="left" if col in ("moment", "process", "goal") else "right")
    goal = f"<= {GOALS['service_endpoints_rss_mb']} MB at {GOALS['service_endpoints_for_goal']}"
    for moment, snap in ((f"{n} held", ends["holding"]), ("released", ends["released"])):
        for i, row in enumerate(_with_sum(snap["rows"])):
            before = _idle_kb(idle, row)
            over = "" if before is None else f"{kb_to_mb(row['vmrss_kb'] - before):+.1f} MB"
            table.add_row(
                moment if i == 0 else "",
                _name(row),
                _mb(row["vmrss_kb"]),
                _mb(row.get("pss_kb", 0)),
                _mb(row.get("rssanon_kb", 0)),
                over,
                goal if _has_goal(row) and moment != "released" else "",
            )
        table.add_section()
    return table


def plugin_ratios(res: PluginResults) -> dict[str, float]:
    """Each spidernet-ipam row's median peak over host-local's, per verb."""
    if HL not in res.maxrss_kb:
        return {}
    return {
        f"{key.replace('-', '_')}_over_host_local_{verb.lower()}": ratio(
            res.median_kb(key, verb), res.median_kb(HL, verb)
        )
        for key in res.maxrss_kb
        if key != HL
        for verb in VERBS
    }


def plugins_table(res: PluginResults, calls: int) -> Table:
    """Part 3: median and max peak RSS per executable and verb, and the ratio to Go's."""
    table = Table(
        title=f"Part 3: plugin process peak RSS (wait4 ru_maxrss, through bench/maxrss.c), "
        f"{calls} calls per verb; goal: beside Go host-local's",
        title_justify="left",
    )
    for col in ("executable", "verb", "calls", "median MB", "max MB", "median / host-local"):
        table.add_column(col, justify="left" if col in ("executable", "verb") else "right")
    for key, by_verb in res.maxrss_kb.items():
        for verb in VERBS:
            samples = by_verb[verb]
            x = ratio(res.median_kb(key, verb), res.median_kb(HL, verb))
            table.add_row(
                res.labels[key] if verb == VERBS[0] else "",
                verb,
                str(len(samples)),
                _mb(res.median_kb(key, verb), 2),
                _mb(max(samples), 2),
                f"{x:.2f}x",
            )
    if res.floor_kb:
        table.add_section()
        floor = float(statistics.median(res.floor_kb))
        table.add_row(
            f"[dim]{res.floor_label}[/]",
            "run",
            str(len(res.floor_kb)),
            _mb(floor, 2),
            _mb(max(res.floor_kb), 2),
            "",
        )
    for why in res.skipped.values():
        table.add_row("(not measured)", "", "", "", "", why)
    return table


def plugins_json(res: PluginResults) -> dict[str, Any]:
    """Part 3's numbers: per side and verb the peaks (KiB) and their median and max."""
    return {
        key: {
            "label": res.labels[key],
            "executable": res.executables[key],
            **{
                verb: {
                    "n": len(by_verb[verb]),
                    "median_kb": res.median_kb(key, verb),
                    "max_kb": max(by_verb[verb]),
                    "maxrss_kb": by_verb[verb],
                }
                for verb in VERBS
            },
        }
        for key, by_verb in res.maxrss_kb.items()
    }


def report_json(
    cfg: Config,
    machine: Mapping[str, Any],
    parts: Mapping[str, Any],
    plugins: PluginResults,
    checks: Mapping[str, Any],
    *,
    runtime_s: float,
) -> dict[str, Any]:
    """Every number of the run."""
    idle, ends = parts["idle"], parts["endpoints"]
    serve_idle = idle["rows"][0]["vmrss_kb"]
    serve_held = ends["holding"]["rows"][0]["vmrss_kb"]
    return {
        "machine": dict(machine),
        "config": {
            "quick": cfg.quick,
            "endpoints": cfg.endpoints,
            "plugin_calls": cfg.plugin_calls,
            "settle_s": cfg.settle_s,
            "metrics": parts["metrics"],
        },
        "goals": GOALS,
        "service": {
            "idle": idle,
            "endpoints": ends,
            "per_endpoint_kb": round((serve_held - serve_idle) / cfg.endpoints, 3),
        },
        "plugins": plugins_json(plugins),
        "plugins_floor": {"label": plugins.floor_label, "maxrss_kb": plugins.floor_kb},
        # What a wait4 of the launcher (this process's own child) read: this process's peak.
        "plugins_direct_wait4_kb": plugins.direct_kb,
        "plugins_skipped": plugins.skipped,
        "ratios": plugin_ratios(plugins),
        "checks": dict(checks),
        "runtime_s": round(runtime_s, 3),
    }


def measure(cfg: Config, console: Console) -> tuple[dict[str, Any], PluginResults, dict[str, Any]]:
    """The three parts against one service; everything started is removed on the way out."""
    base = Path(tempfile.mkdtemp(prefix="snt-bmem-"))
    with OwnStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        svc = make_service(base)
        stack.callback(svc.stop)
        with console.status("starting spidernet serve"):
            svc.start()
        with console.status(f"spidernet serve idle for {cfg.settle_s:.0f} s"):
            idle = part_idle(svc, cfg)
        ends = part_endpoints(svc, cfg, console)
        plugins, checks = part_plugins(base, svc, cfg, stack, console)
        port = svc.metrics_port()
    checks = {"pool_allocated_after_release": ends["allocated_after_release"], **checks}
    parts = {"idle": idle, "endpoints": ends, "metrics": {"address": svc.metrics, "port": port}}
    return parts, plugins, checks


def run(cfg: Config, console: Console) -> None:
    """Measure, print the tables, write the JSON."""
    began = time.monotonic()
    machine = machine_facts()
    console.rule("spidernet memory benchmark" + (" (--quick)" if cfg.quick else ""))
    console.print(machine_line(machine))
    console.print(
        f"service: idle, then {cfg.endpoints} endpoints held; plugins: {cfg.plugin_calls} ADD + "
        f"{cfg.plugin_calls} DEL each; MB = 2^20 bytes (/proc's kB are KiB)"
    )
    parts, plugins, checks = measure(cfg, console)
    idle, ends = parts["idle"], parts["endpoints"]
    console.print(idle_table(idle, cfg.settle_s))
    console.print(endpoints_table(idle, ends))
    per = (ends["holding"]["rows"][0]["vmrss_kb"] - idle["rows"][0]["vmrss_kb"]) / cfg.endpoints
    console.print(
        f"{ends['n']} allocations took {ends['allocate_s']:.1f} s, the releases "
        f"{ends['release_s']:.1f} s; spidernet serve's VmRSS grew {per:.1f} KiB per endpoint; "
        f"pool allocatedIPCount after the releases: {ends['allocated_after_release']}"
    )
    console.print(plugins_table(plugins, cfg.plugin_calls))
    if plugins.direct_kb:
        console.print(
            f"a wait4 of the launcher itself, this benchmark's child, read "
            f"{_mb(min(plugins.direct_kb))}-{_mb(max(plugins.direct_kb))} MB: this process's "
            "own peak, which is why each plugin runs under bench/maxrss.c"
        )
    console.print(f"checked: {json.dumps(checks)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    out_json = cfg.out / "memory.json"
    runtime = time.monotonic() - began
    doc = report_json(cfg, machine, parts, plugins, checks, runtime_s=runtime)
    out_json.write_text(json.dumps(doc, indent=1) + "\n")
    console.print(f"wrote {out_json}; total runtime {runtime:.1f} s")


def parse_args(argv: Sequence[str] | None) -> Config:
    """The command line: the options every bench module takes (make bench's BENCH_ARGS)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description="spidernet serve's memory idle and with N endpoints; a plugin process's "
        "peak RSS beside Go host-local's",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ENDPOINTS} endpoints, {QUICK_PLUGIN_CALLS} plugin calls per verb",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write results")
    parser.add_argument("--calls", type=int, help=f"endpoints to hold (default {ENDPOINTS})")
    args = parser.parse_args(argv)
    endpoints = (
        args.calls if args.calls is not None else (QUICK_ENDPOINTS if args.quick else ENDPOINTS)
    )
    if endpoints < 1:
        parser.error("--calls must be at least 1")
    return Config(
        quick=args.quick,
        endpoints=endpoints,
        plugin_calls=QUICK_PLUGIN_CALLS if args.quick else PLUGIN_CALLS,
        out=args.out,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when the run finished, 1 when a call or a check failed, 130 on Ctrl-C."""
    cfg = parse_args(argv)
    out = console()
    if missing_plugins(out, [HOST_LOCAL]):
        return 1
    failures = (*RUN_FAILURES, OSError)  # (OSError: /proc of a service that is gone)
    return guarded(out, lambda: run(cfg, out), failures)


if __name__ == "__main__":
    sys.exit(main())
