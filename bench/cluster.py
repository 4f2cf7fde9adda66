"""spidernet against Whereabouts on one real kube-apiserver: N pods on M simulated nodes.

    python -m bench.cluster [--quick] [--pods N] [--nodes M] [--concurrency C] [--out DIR]
                            [--peers spidernet,whereabouts]

It starts its own throw-away kube-apiserver + etcd (`spidernet.testbed.kubecluster`, the k8s
lane's binaries) and runs the peers one after the other on it, each on a world of its own:
namespaces, one Node object per node, and N Pods bound round-robin to the nodes. Each peer's
ADDs are runs of its real CNI IPAM executable (bench/cluster_sides.py), C at a time, each on its
pod's node: spidernet-ipam through that node's `spidernet serve --kube` agent, Whereabouts'
Go binary with the admin kubeconfig. Then every pod's DEL, timed the same way.

Write conflicts are counted the same way for both: the API server's own
`apiserver_request_total` for code 409 (and 422, which is how Whereabouts' pool patch loses a
race: its JSON-patch test of resourceVersion fails), by resource, read from /metrics before
and after the ADDs; plus spidernet's own `spidernet_ipam_allocation_conflict_counts`. After
the ADDs each peer's record in the cluster is checked (N distinct addresses, one per pod).

Nothing is asserted on a number. The numbers go to DIR/cluster.json and a plot to
DIR/cluster.png (default bench/results/).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from spidernet.control.store.kube_names import INTERNAL, LABEL_KIND, LABEL_NAMESPACE, label_value
from spidernet.node.lab.service import ServiceStartFailed
from spidernet.testbed.kubecluster import (
    BuildFailed,
    Cluster,
    ClusterStartFailed,
    ensure_binaries,
    running_cluster,
)

from .cluster_sides import (
    Call,
    CallFailed,
    agent_metric,
    concurrently,
    install_spidernet_ipam,
    install_store_crds,
    install_whereabouts_crds,
    make_spiderippool,
    make_world,
    node_names,
    remove_world,
    running_agents,
    spidernet_calls,
    whereabouts_allocations,
    whereabouts_calls,
)
from .kubeapi import KubeApi, KubeApiError, request_codes
from .runs import machine_facts, machine_line, sigterm_as_exit
from .whereabouts import ensure_whereabouts, flat_config

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PODS, QUICK_PODS = 1000, 100
NODES, CONCURRENCY, NAMESPACES = 10, 10, 4
PEERS = ("spidernet", "whereabouts")
CODES = ("409", "422")
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
    """What one peer did: its ADD and DEL calls, the API server's error codes, its own count."""

    peer: str
    version: str
    add_s: float = 0.0
    del_s: float = 0.0
    add_ms: list[float] = field(default_factory=list)
    del_ms: list[float] = field(default_factory=list)
    codes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    del_codes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    own_conflicts: int | None = None
    recorded: int = 0  # allocations found in the cluster after the ADDs
    distinct: int = 0

    def code_total(self, code: str, *, release: bool = False) -> int:
        counts = self.del_codes if release else self.codes
        return sum(v for (_, _, c), v in counts.items() if c == code)

    def by_resource(self, code: str) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (resource, verb, c), v in self.codes.items():
            if c == code:
                out[f"{resource} {verb}"] += v
        return dict(out)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _ms(calls: Sequence[Call]) -> list[float]:
    return [round(c.seconds * 1e3, 2) for c in calls]


def _checked(calls: Sequence[Call]) -> list[Call]:
    for call in calls:
        if not call.outcome.ok:
            raise CallFailed(call)
    return list(calls)


def _range(index: int, pods: int) -> tuple[str, str, str]:
    """A subnet per peer with a range of exactly `pods` addresses (both peers alike)."""
    net = ipaddress.IPv4Network(f"10.{90 + index}.0.0/16")
    return str(net), str(net[10]), str(net[10 + pods - 1])


def run_spidernet(
    cfg: Config, cluster: Cluster, api: KubeApi, base: Path, say: Callable[[str], None]
) -> PeerResult:
    result = PeerResult("spidernet", "this checkout")
    prefix, nodes = "bench-snt", node_names("bench-snt", cfg.nodes)
    subnet, first, last = _range(0, cfg.pods)
    pool = "bench-snt-pool"
    make_spiderippool(api, pool, subnet, first, last)
    pods = make_world(api, prefix, nodes, cfg.pods, NAMESPACES)
    ipam = install_spidernet_ipam(base / "bin")
    say(f"spidernet: {cfg.nodes} agents, {cfg.pods} ADDs ...")
    with running_agents(cluster, nodes) as agents:
        own_before = sum(agent_metric(a) for a in agents.values())
        before = request_codes(api.metrics(), CODES)
        calls, result.add_s = concurrently(
            spidernet_calls(ipam, agents, pool, "ADD"), pods, cfg.concurrency
        )
        result.codes = request_codes(api.metrics(), CODES) - before
        result.own_conflicts = int(sum(agent_metric(a) for a in agents.values()) - own_before)
        result.add_ms = _ms(_checked(calls))
        held = ipclaims(api, pool)
        result.recorded = len(held)
        answers = {c.address.split("/")[0]: c.pod.key for c in calls}
        result.distinct = len({a for a, pod in held.items() if answers.get(a) == pod})
        say(f"spidernet: {cfg.pods} DELs ...")
        before = request_codes(api.metrics(), CODES)
        released, result.del_s = concurrently(
            spidernet_calls(ipam, agents, pool, "DEL"), pods, cfg.concurrency
        )
        result.del_codes = request_codes(api.metrics(), CODES) - before
        result.del_ms = _ms(_checked(released))
    remove_world(api, prefix, nodes, NAMESPACES)
    api.call("DELETE", f"/apis/spiderpool.spidernet.io/v2beta1/spiderippools/{pool}", ok=(404,))
    return result


def ipclaims(api: KubeApi, pool: str) -> dict[str, str]:
    """address -> 'namespace/pod', from the pool's IPClaim objects in the cluster."""
    selector = f"{LABEL_KIND}={label_value('IPClaim')},{LABEL_NAMESPACE}={label_value(pool)}"
    path = f"/apis/{INTERNAL.group}/{INTERNAL.version}/{INTERNAL.plural}?labelSelector={selector}"
    found = [c["spec"] for c in api.items(path) if c["spec"]["namespace"] == pool]
    return {str(spec["name"]): str(spec["body"]["pod"]) for spec in found}


def run_whereabouts(
    cfg: Config, cluster: Cluster, api: KubeApi, base: Path, say: Callable[[str], None]
) -> PeerResult:
    built = ensure_whereabouts(progress=say)
    result = PeerResult("whereabouts", built.version)
    install_whereabouts_crds(api, built)
    prefix, nodes = "bench-wa", node_names("bench-wa", cfg.nodes)
    subnet, first, last = _range(1, cfg.pods)
    pods = make_world(api, prefix, nodes, cfg.pods, NAMESPACES)
    flat_file = base / "whereabouts.d" / "whereabouts.conf"
    flat_file.parent.mkdir(parents=True, exist_ok=True)
    flat_file.write_text(json.dumps(flat_config(cluster.kubeconfig)))
    say(f"whereabouts: {cfg.pods} ADDs over {cfg.nodes} nodes ...")
    add = whereabouts_calls(
        built, flat_file=flat_file, subnet=subnet, first=first, last=last, command="ADD"
    )
    before = request_codes(api.metrics(), CODES)
    calls, result.add_s = concurrently(add, pods, cfg.concurrency)
    result.codes = request_codes(api.metrics(), CODES) - before
    result.add_ms = _ms(_checked(calls))
    held = whereabouts_allocations(api, subnet)
    result.recorded = len(held)
    answers = {c.address.split("/")[0]: c.pod.key for c in calls}
    result.distinct = len({a for a, pod in held.items() if answers.get(a) == pod})
    say(f"whereabouts: {cfg.pods} DELs ...")
    delete = whereabouts_calls(
        built, flat_file=flat_file, subnet=subnet, first=first, last=last, command="DEL"
    )
    before = request_codes(api.metrics(), CODES)
    released, result.del_s = concurrently(delete, pods, cfg.concurrency)
    result.del_codes = request_codes(api.metrics(), CODES) - before
    result.del_ms = _ms(_checked(released))
    remove_world(api, prefix, nodes, NAMESPACES)
    return result


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
        ("409 during ADDs", lambda r: str(r.code_total("409"))),
        ("422 during ADDs", lambda r: str(r.code_total("422"))),
        ("own conflict count", lambda r: "-" if r.own_conflicts is None else str(r.own_conflicts)),
        ("recorded / matching", lambda r: f"{r.recorded} / {r.distinct}"),
        ("DEL wall time (s)", lambda r: f"{r.del_s:.1f}"),
        (
            "DEL p50 / p99 (ms)",
            lambda r: f"{percentile(r.del_ms, 0.5):.0f} / {percentile(r.del_ms, 0.99):.0f}",
        ),
        (
            "409 + 422 during DELs",
            lambda r: str(r.code_total("409", release=True) + r.code_total("422", release=True)),
        ),
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
            "apiserver_409": r.code_total("409"),
            "apiserver_422": r.code_total("422"),
            "apiserver_409_by_resource": r.by_resource("409"),
            "apiserver_422_by_resource": r.by_resource("422"),
            "apiserver_409_422_during_del": r.code_total("409", release=True)
            + r.code_total("422", release=True),
            "own_conflict_count": r.own_conflicts,
            "recorded": r.recorded,
            "recorded_matching_answers": r.distinct,
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


def run(cfg: Config, console: Console) -> None:
    began = time.monotonic()
    machine = machine_facts()
    line = machine_line(machine)
    console.rule(
        "spidernet vs Whereabouts on one kube-apiserver" + (" (--quick)" if cfg.quick else "")
    )
    console.print(line)

    def say(msg: str) -> None:
        console.print(f"[dim]{msg}[/]")

    binaries = ensure_binaries(progress=say)
    if "whereabouts" in cfg.peers:
        ensure_whereabouts(progress=say)  # built before the clock of anything starts
    base = Path(tempfile.mkdtemp(prefix="snt-cluster-"))
    results: list[PeerResult] = []
    facts: dict[str, str] = {}
    try:
        with running_cluster(binaries) as cluster, KubeApi(cluster) as api:
            install_store_crds(api)
            facts = {"kubernetes": cluster.versions.kubernetes, "etcd": cluster.versions.etcd}
            for peer in cfg.peers:
                if peer == "spidernet":
                    results.append(run_spidernet(cfg, cluster, api, base, say))
                else:
                    results.append(run_whereabouts(cfg, cluster, api, base, say))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    console.print(results_table(results, cfg))
    for r in results:
        console.print(
            f"{r.peer}: 409 by resource {r.by_resource('409')}, 422 {r.by_resource('422')}"
        )
    found = ratios(results)
    if found:
        console.print(found)
    console.print(SPIDERPOOL_REPORT)
    cfg.out.mkdir(parents=True, exist_ok=True)
    out_json, png = cfg.out / "cluster.json", cfg.out / "cluster.png"
    runtime = time.monotonic() - began
    out_json.write_text(
        json.dumps(report_json(cfg, machine, facts, results, runtime), indent=1) + "\n"
    )
    plot(png, results, cfg, line)
    console.print(f"wrote {out_json} and {png}; total runtime {runtime:.1f} s")


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster",
        description="spidernet vs Whereabouts: N pods on M simulated nodes, one real API server",
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PODS} pods instead of {PODS}")
    parser.add_argument("--pods", type=int, help=f"pods per peer (default {PODS})")
    parser.add_argument("--calls", type=int, help="the same as --pods (make bench's BENCH_ARGS)")
    parser.add_argument(
        "--nodes", type=int, default=NODES, help=f"simulated nodes (default {NODES})"
    )
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="CNI calls at once")
    parser.add_argument("--peers", default=",".join(PEERS), help="which peers, in order")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write results")
    args = parser.parse_args(argv)
    pods = args.pods or args.calls or (QUICK_PODS if args.quick else PODS)
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    if unknown := [p for p in peers if p not in PEERS]:
        parser.error(f"--peers: unknown peer {unknown[0]!r} (known: {', '.join(PEERS)})")
    if pods < 1 or pods > 60000:
        parser.error("--pods must be between 1 and 60000")
    if args.nodes < 1 or args.concurrency < 1:
        parser.error("--nodes and --concurrency must be at least 1")
    return Config(args.quick, pods, args.nodes, args.concurrency, peers, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        with sigterm_as_exit():
            run(cfg, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; every process and temporary directory removed[/]")
        return 130
    except (
        BuildFailed,
        ClusterStartFailed,
        ServiceStartFailed,
        KubeApiError,
        CallFailed,
    ) as e:
        console.print(f"[red]benchmark failed: {e}[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
