"""bench.cluster's records and report: what each peer did, the table, the ratios, the JSON
and the plot (pure, apart from the plot's file)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from .cluster_sides import Recreated

PEERS = ("spidernet", "whereabouts")
CODES = ("409", "422")
NAMESPACES = 4
# Spiderpool's own report (docs/reference spiderpool.md §7.2): 1000 pods on 10 nodes.
SPIDERPOOL_REPORT = "Spiderpool's report: 1000 pods on 10 nodes, see spiderpool.md §7.2"


@dataclass(frozen=True)
class Config:
    quick: bool
    pods: int
    nodes: int
    concurrency: int
    peers: tuple[str, ...]
    out: Path


@dataclass
class PeerResult:
    """What one peer did: its ADD and DEL calls, the delete-and-recreate phase, the API
    server's error codes in each phase, its own conflict count."""

    peer: str
    version: str
    add_s: float = 0.0
    del_s: float = 0.0
    add_ms: list[float] = field(default_factory=list)
    del_ms: list[float] = field(default_factory=list)
    # phase ("add", "recreate", "del") -> apiserver_request_total by (resource, verb, code)
    codes: dict[str, Counter[tuple[str, str, str]]] = field(default_factory=dict)
    own_conflicts: int | None = None
    recorded: int = 0  # allocations found in the cluster after the ADDs
    distinct: int = 0
    recreate: Recreated | None = None
    recreate_recorded: int = 0  # allocations found after the recreated pods' ADDs
    recreate_distinct: int = 0

    def code_total(self, phase: str, *codes: str) -> int:
        """The phase's requests answered with any of `codes` (default: 409 and 422)."""
        wanted = codes or CODES
        return sum(v for (_, _, c), v in self.codes.get(phase, Counter()).items() if c in wanted)

    def by_resource(self, code: str, phase: str = "add") -> dict[str, int]:
        out: Counter[str] = Counter()
        for (resource, verb, c), v in self.codes.get(phase, Counter()).items():
            if c == code:
                out[f"{resource} {verb}"] += v
        return dict(out)

    @property
    def recreated(self) -> Recreated:
        if self.recreate is None:
            raise ValueError(f"{self.peer}: no delete-and-recreate phase ran")
        return self.recreate


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def results_table(results: Sequence[PeerResult], cfg: Config) -> Table:
    table = Table(
        title=f"{cfg.pods} pods on {cfg.nodes} nodes, {cfg.concurrency} CNI ADDs at a time"
    )
    table.add_column("")
    for r in results:
        table.add_column(f"{r.peer} ({r.version})", justify="right")
    rows: list[tuple[str, Callable[[PeerResult], str]]] = [
        ("ADD wall time (s)", lambda r: f"{r.add_s:.1f}"),
        ("allocations / s", lambda r: f"{len(r.add_ms) / r.add_s:.1f}"),
        (
            "ADD p50 / p99 (ms)",
            lambda r: f"{percentile(r.add_ms, 0.5):.0f} / {percentile(r.add_ms, 0.99):.0f}",
        ),
        ("409 during ADDs", lambda r: str(r.code_total("add", "409"))),
        ("422 during ADDs", lambda r: str(r.code_total("add", "422"))),
        ("own conflict count", lambda r: "-" if r.own_conflicts is None else str(r.own_conflicts)),
        ("recorded / matching", lambda r: f"{r.recorded} / {r.distinct}"),
        ("delete all + recreate (s)", lambda r: f"{r.recreated.wall_s:.1f}"),
        (
            "  recreated ADD p50 / p99 (ms)",
            lambda r: (
                f"{percentile(r.recreated.add_ms, 0.5):.0f} / "
                f"{percentile(r.recreated.add_ms, 0.99):.0f}"
            ),
        ),
        ("  ADDs refused, tried again", lambda r: str(r.recreated.retries)),
        ("  409 + 422", lambda r: str(r.code_total("recreate"))),
        ("  recorded / matching", lambda r: f"{r.recreate_recorded} / {r.recreate_distinct}"),
        ("DEL wall time (s)", lambda r: f"{r.del_s:.1f}"),
        (
            "DEL p50 / p99 (ms)",
            lambda r: f"{percentile(r.del_ms, 0.5):.0f} / {percentile(r.del_ms, 0.99):.0f}",
        ),
        ("409 + 422 during DELs", lambda r: str(r.code_total("del"))),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in results))
    return table


def ratios(results: Sequence[PeerResult]) -> dict[str, float]:
    by = {r.peer: r for r in results}
    if set(by) != set(PEERS):
        return {}
    s, w = by["spidernet"], by["whereabouts"]
    return {
        "whereabouts_over_spidernet_add_wall": round(w.add_s / s.add_s, 2),
        "whereabouts_over_spidernet_add_p50": round(
            percentile(w.add_ms, 0.5) / percentile(s.add_ms, 0.5), 2
        ),
        "whereabouts_over_spidernet_del_wall": round(w.del_s / s.del_s, 2),
        "whereabouts_over_spidernet_recreate_wall": round(
            w.recreated.wall_s / s.recreated.wall_s, 2
        ),
    }


def report_json(
    cfg: Config,
    machine: Mapping[str, Any],
    cluster: Mapping[str, Any],
    results: Sequence[PeerResult],
    runtime_s: float,
) -> dict[str, Any]:
    def peer(r: PeerResult) -> dict[str, Any]:
        return {
            "version": r.version,
            "add": {
                "wall_s": round(r.add_s, 3),
                "per_s": round(len(r.add_ms) / r.add_s, 2),
                "p50_ms": percentile(r.add_ms, 0.5),
                "p90_ms": percentile(r.add_ms, 0.9),
                "p99_ms": percentile(r.add_ms, 0.99),
                "samples_ms": r.add_ms,
            },
            "del": {
                "wall_s": round(r.del_s, 3),
                "p50_ms": percentile(r.del_ms, 0.5),
                "p99_ms": percentile(r.del_ms, 0.99),
                "samples_ms": r.del_ms,
            },
            "apiserver_409": r.code_total("add", "409"),
            "apiserver_422": r.code_total("add", "422"),
            "apiserver_409_by_resource": r.by_resource("409"),
            "apiserver_422_by_resource": r.by_resource("422"),
            "apiserver_409_422_during_del": r.code_total("del"),
            "own_conflict_count": r.own_conflicts,
            "recorded": r.recorded,
            "recorded_matching_answers": r.distinct,
            "recreate": {
                "wall_s": round(r.recreated.wall_s, 3),
                "add_p50_ms": percentile(r.recreated.add_ms, 0.5),
                "add_p99_ms": percentile(r.recreated.add_ms, 0.99),
                "add_samples_ms": r.recreated.add_ms,
                "tries": r.recreated.tries,
                "retries": r.recreated.retries,
                "refusals": r.recreated.refusals,
                "apiserver_409_422": r.code_total("recreate"),
                "apiserver_409_by_resource": r.by_resource("409", "recreate"),
                "apiserver_422_by_resource": r.by_resource("422", "recreate"),
                "recorded": r.recreate_recorded,
                "recorded_matching_answers": r.recreate_distinct,
            },
        }

    return {
        "schema": 1,
        "machine": dict(machine),
        "cluster": dict(cluster),
        "config": {
            "quick": cfg.quick,
            "pods": cfg.pods,
            "nodes": cfg.nodes,
            "concurrency": cfg.concurrency,
            "namespaces": NAMESPACES,
        },
        "peers": {r.peer: peer(r) for r in results},
        "ratios": ratios(results),
        "reference": SPIDERPOOL_REPORT,
        "runtime_s": round(runtime_s, 1),
    }


def plot(path: Path, results: Sequence[PeerResult], cfg: Config, title: str) -> None:
    """Per-call ADD latency, sorted (a CDF), one line per peer."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    for r in results:
        ordered = sorted(r.add_ms)
        ys = [(i + 1) / len(ordered) * 100 for i in range(len(ordered))]
        ax.plot(ordered, ys, label=f"{r.peer}: {r.add_s:.1f} s for {len(ordered)} ADDs")
    ax.set_xscale("log")
    ax.set_xlabel("ms per CNI ADD (process start to exit)")
    ax.set_ylabel("% of calls")
    ax.set_title(f"{cfg.pods} pods, {cfg.nodes} nodes, {cfg.concurrency} at a time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
