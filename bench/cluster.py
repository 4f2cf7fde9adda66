"""spidernet against Whereabouts on one real kube-apiserver: N pods on M simulated nodes.

    python -m bench.cluster [--quick] [--pods N] [--nodes M] [--concurrency C] [--out DIR]
                            [--peers spidernet,whereabouts]

It starts its own throw-away kube-apiserver + etcd (`spidernet.testbed.kubecluster`, the k8s
lane's binaries) and runs the peers one after the other on it, each on a world of its own:
namespaces, one Node object per node, and N Pods bound round-robin to the nodes. Each peer's
ADDs are runs of its real CNI IPAM executable (bench/cluster_sides.py), C at a time, each on its
pod's node: spidernet-ipam through that node's `spidernet serve --kube` agent, Whereabouts'
Go binary with the admin kubeconfig. Each peer's range holds exactly N addresses (IPs = pods).
Then all N pods are deleted and N new ones created at once, as when a Deployment is deleted
and recreated: each old pod's DEL and a new pod's ADD interleaved, C at a time, an ADD that
finds no address free yet tried again after 50 ms (as a kubelet retries), timed until every
new pod has its address. Then every new pod's DEL, timed the same way.

Write conflicts are counted the same way for both: the API server's own
`apiserver_request_total` for code 409 (and 422, which is how Whereabouts' pool patch loses a
race: its JSON-patch test of resourceVersion fails), by resource, read from /metrics before
and after the ADDs; plus spidernet's own `spidernet_ipam_allocation_conflict_counts`. After
the ADDs and after the recreation each peer's record in the cluster is checked (N distinct
addresses, one per pod).

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from spidernet.control.store.kube_names import INTERNAL, LABEL_KIND, LABEL_NAMESPACE, label_value
from spidernet.node.lab.service import ServiceStartFailed
from spidernet.testbed.kubecluster import (
    BuildFailed,
    Cluster,
    ClusterStartFailed,
    ensure_binaries,
    running_cluster,
)

from .cluster_report import (
    CODES,
    NAMESPACES,
    PEERS,
    SPIDERPOOL_REPORT,
    Config,
    PeerResult,
    plot,
    ratios,
    report_json,
    results_table,
)
from .cluster_sides import (
    Call,
    CallFailed,
    PodRef,
    agent_metric,
    concurrently,
    delete_and_recreate,
    delete_pods,
    install_spidernet_ipam,
    install_store_crds,
    install_whereabouts_crds,
    make_pods,
    make_spiderippool,
    make_world,
    ms,
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
NODES, CONCURRENCY = 10, 10


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
        side = Side(
            add=spidernet_calls(ipam, agents, pool, "ADD"),
            delete=spidernet_calls(ipam, agents, pool, "DEL"),
            held=lambda: ipclaims(api, pool),
            own_conflicts=lambda: sum(agent_metric(a) for a in agents.values()),
        )
        _phases(cfg, api, result, side, world=(prefix, nodes), pods=pods, say=say)
    remove_world(api, prefix, nodes, NAMESPACES)
    api.call("DELETE", f"/apis/spiderpool.spidernet.io/v2beta1/spiderippools/{pool}", ok=(404,))
    return result


@dataclass(frozen=True)
class Side:
    """One peer's calls and records, for the phases both peers go through alike."""

    add: Callable[[PodRef], Call]
    delete: Callable[[PodRef], Call]
    held: Callable[[], dict[str, str]]  # address -> "namespace/pod", as recorded in the cluster
    own_conflicts: Callable[[], float] | None = None


def _phases(
    cfg: Config,
    api: KubeApi,
    result: PeerResult,
    side: Side,
    *,
    world: tuple[str, Sequence[str]],
    pods: Sequence[PodRef],
    say: Callable[[str], None],
) -> None:
    """Every pod's ADD; then every pod deleted and recreated at once (the DELs and the new
    pods' ADDs racing for a pool exactly as large); then the new pods' DELs. Each phase
    timed, with the API server's 409 and 422 counted and the cluster's record checked."""
    own_before = side.own_conflicts() if side.own_conflicts else 0.0
    with _counting(api, result, "add"):
        calls, result.add_s = concurrently(side.add, pods, cfg.concurrency)
    if side.own_conflicts:
        result.own_conflicts = int(side.own_conflicts() - own_before)
    result.add_ms = ms(_checked(calls))
    result.recorded, result.distinct = _matching(side.held(), calls)

    prefix, nodes = world
    say(f"{result.peer}: {cfg.pods} pods deleted and recreated at once ...")
    new = make_pods(api, prefix, nodes, cfg.pods, NAMESPACES, generation=1)
    delete_pods(api, pods)
    with _counting(api, result, "recreate"):
        added, result.recreate = delete_and_recreate(
            side.add, side.delete, pods, new, cfg.concurrency
        )
    result.recreate_recorded, result.recreate_distinct = _matching(side.held(), added)

    say(f"{result.peer}: {cfg.pods} DELs ...")
    with _counting(api, result, "del"):
        released, result.del_s = concurrently(side.delete, new, cfg.concurrency)
    result.del_ms = ms(_checked(released))


@contextmanager
def _counting(api: KubeApi, result: PeerResult, phase: str) -> Iterator[None]:
    """The API server's 409 and 422 answered while the block runs, as `result.codes[phase]`."""
    before = request_codes(api.metrics(), CODES)
    yield
    result.codes[phase] = request_codes(api.metrics(), CODES) - before


def _matching(held: Mapping[str, str], calls: Sequence[Call]) -> tuple[int, int]:
    """How many allocations the cluster records, and how many of them match the address
    their pod's ADD answered."""
    answers = {c.address.split("/")[0]: c.pod.key for c in calls}
    return len(held), len({a for a, pod in held.items() if answers.get(a) == pod})


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

    def calls(command: str) -> Callable[[PodRef], Call]:
        return whereabouts_calls(
            built, flat_file=flat_file, subnet=subnet, first=first, last=last, command=command
        )

    side = Side(calls("ADD"), calls("DEL"), lambda: whereabouts_allocations(api, subnet))
    _phases(cfg, api, result, side, world=(prefix, nodes), pods=pods, say=say)
    remove_world(api, prefix, nodes, NAMESPACES)
    return result


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
        console.print(
            f"{r.peer}, recreating: 409 by resource {r.by_resource('409', 'recreate')}, "
            f"422 {r.by_resource('422', 'recreate')}; ADDs refused {r.recreated.refusals}"
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
