"""Pods to Running on a real node: spidernet's network against host-local's, in one run.

    python -m bench.node [--quick] [--pods N] [--rounds R] [--out DIR]

It brings up the node lane's real node (`spidernet.testbed.node`: kubelet, containerd, Multus
over the cluster network; the programs and images built first where the cache lacks them),
installs spidernet from deploy/ with the image built here, and then, for each side in turn,
creates one Deployment of N pods at once and watches them until every one runs:

- `cluster`: eth0 only (Multus and the cluster network): the floor of a pod start here;
- `host-local`: eth0 plus net1 from Go macvlan + host-local, a NetworkAttachmentDefinition;
- `spidernet`: eth0 plus net1 from a SpiderMultusConfig: macvlan + spidernet-ipam +
  spidernet-coordinator, addresses from a SpiderIPPool through the agent.

Per pod: the time from its creation (as the watch saw it) to Running with every container
ready; per side: P50, P99 and pods/s (N over the time from the first creation to the last
pod running). For spidernet, the service's own time for the pods' ADDs, from the agent's
`spidernet_cni_request_duration_seconds` (ipam and coordinator), as a share of the mean pod
start. The sides alternate over R rounds, each Deployment deleted (and waited for) before
the next, so machine noise hits all alike. Nothing is asserted on a number: a table on
stdout, DIR/node.json and DIR/node.png (default bench/results/).

It runs as root, in network and mount namespaces of its own, like the node lane: started
from this machine's namespaces, it builds what is missing, then runs itself again under
`unshare --net --mount --propagation slave`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from spidernet.testbed import nodehost, nodekube, nodelane
from spidernet.testbed.conflists import chain_conf, macvlan
from spidernet.testbed.kubecluster import BuildFailed
from spidernet.testbed.node import RealNode, running_node
from spidernet.testbed.nodespec import GATEWAY4, UPLINK
from spidernet.testbed.waiting import wait_for

from .runs import machine_facts, machine_line, sigterm_as_exit

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PODS, QUICK_PODS = 100, 20
ROUNDS, QUICK_ROUNDS = 2, 1
SIDES = ("cluster", "host-local", "spidernet")
NS = "bench"
INSIDE = "SPIDERNET_BENCH_NODE_INSIDE"
WAIT_S = 900.0
# Spiderpool's report: 1000 pods on 10 nodes in 207 s to Running, about 4.8 pods/s.
SPIDERPOOL = "Spiderpool's report: 1000 pods on 10 real nodes to Running in 207 s (4.8 pods/s)"
METRIC = "spidernet_cni_request_duration_seconds"
AGENT_METRICS = 5711  # the DaemonSet's --metrics-address, on the node's loopback


@dataclass
class Round:
    """One side's Deployment of N pods: per-pod start latencies and the wall time."""

    side: str
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    service_add_s: float = 0.0  # spidernet: the agent's time for the pods' ADDs
    sandbox_failures: list[str] = field(default_factory=list)  # the kubelet's retries, why

    @property
    def pods_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def network_docs() -> list[dict[str, Any]]:
    """The spidernet side's pool and SpiderMultusConfig, and host-local's NAD (their own
    ranges of the segment; one side runs at a time)."""
    group = "spiderpool.spidernet.io/v2beta1"
    rng = {
        "subnet": "192.0.2.0/24",
        "rangeStart": "192.0.2.10",
        "rangeEnd": "192.0.2.127",
        "gateway": GATEWAY4,
    }
    ipam = {"type": "host-local", "ranges": [[rng]]}
    hostlocal = chain_conf(macvlan(ipam, UPLINK), name="bench-hostlocal")
    return [
        {
            "apiVersion": group,
            "kind": "SpiderIPPool",
            "metadata": {"name": "bench-v4"},
            "spec": {
                "subnet": "192.0.2.0/24",
                "ips": ["192.0.2.128-192.0.2.250"],
                "gateway": GATEWAY4,
            },
        },
        {
            "apiVersion": group,
            "kind": "SpiderMultusConfig",
            "metadata": {"name": "bench-spidernet", "namespace": NS},
            "spec": {
                "cniType": "macvlan",
                "macvlan": {"master": [UPLINK], "ippools": {"ipv4": ["bench-v4"]}},
            },
        },
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "bench-hostlocal", "namespace": NS},
            "spec": {"config": json.dumps(hostlocal)},
        },
    ]


def deployment(side: str, pods: int, image: str) -> dict[str, Any]:
    annotations = {}
    if side != "cluster":
        nad = "bench-spidernet" if side == "spidernet" else "bench-hostlocal"
        annotations["k8s.v1.cni.cncf.io/networks"] = nad
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"bench-{side}", "namespace": NS},
        "spec": {
            "replicas": pods,
            "selector": {"matchLabels": {"bench": side}},
            "template": {
                "metadata": {"labels": {"bench": side}, "annotations": annotations},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": image, "command": ["sleep", "36000"]}],
                },
            },
        },
    }


class PodWatch:
    """`kubectl get pods --watch` of one side's pods: when each was first seen and when it
    first ran with every container ready, on this process's clock."""

    def __init__(self, node: RealNode, side: str) -> None:
        argv = [str(node.tools.kubectl), f"--kubeconfig={node.kubeconfig}", "get", "pods"]
        argv += ["-n", NS, "-l", f"bench={side}", "--watch", "-o", "json"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.created: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    pod, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                now = time.monotonic()
                name = pod["metadata"]["name"]
                self.created.setdefault(name, now)
                if nodekube.running(pod):
                    self.running.setdefault(name, now)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def service_add_seconds(text: str) -> float:
    """The sum of the agent's ADD times, ipam and coordinator, from its metrics text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"{METRIC}_sum{{") and 'command="ADD"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape_agent() -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{AGENT_METRICS}/metrics", timeout=10) as r:
        return str(r.read().decode())


def sandbox_failures(node: RealNode, side: str) -> list[str]:
    """The messages of the kubelet's FailedCreatePodSandBox events for this side's pods:
    each is a pod start the kubelet had to retry (after a back-off of about 10 s)."""
    events = nodekube.items(
        node, "events", "-n", NS, "--field-selector=reason=FailedCreatePodSandBox"
    )
    prefix = f"bench-{side}-"
    return [
        str(e.get("message", ""))
        for e in events
        if str(e.get("involvedObject", {}).get("name", "")).startswith(prefix)
        for _ in range(int(e.get("count") or 1))
    ]


def run_round(node: RealNode, side: str, pods: int, image: str) -> Round:
    result = Round(side)
    before = service_add_seconds(scrape_agent())
    watch = PodWatch(node, side)
    try:
        time.sleep(1.0)  # the watch is listening before anything is created
        nodekube.apply(node, [deployment(side, pods, image)])
        wait_for(f"{pods} {side} pods running", lambda: len(watch.running) >= pods, WAIT_S, 0.5)
    finally:
        watch.stop()
    result.latencies_s = [watch.running[n] - watch.created[n] for n in watch.running]
    result.wall_s = max(watch.running.values()) - min(watch.created.values())
    result.service_add_s = service_add_seconds(scrape_agent()) - before
    result.sandbox_failures = sandbox_failures(node, side)
    node.kubectl("delete", "deployment", "-n", NS, f"bench-{side}", "--wait=true", timeout=600)
    wait_for(f"{side} pods gone", lambda: not nodekube.pods(node, NS, f"bench={side}"), WAIT_S, 1.0)
    return result


@dataclass(frozen=True)
class Config:
    quick: bool
    pods: int
    rounds: int
    out: Path


def parse(argv: list[str]) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.node", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_PODS} pods, {QUICK_ROUNDS} round")
    p.add_argument("--pods", type=int, help=f"pods per Deployment (default {PODS})")
    p.add_argument("--rounds", type=int, help=f"rounds of the three sides (default {ROUNDS})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where node.json/png go")
    p.add_argument("--calls", type=int, help=argparse.SUPPRESS)  # make bench's shared options
    a = p.parse_args(argv)
    pods = a.pods or (QUICK_PODS if a.quick else PODS)
    rounds = a.rounds or (QUICK_ROUNDS if a.quick else ROUNDS)
    return Config(a.quick, pods, rounds, a.out)


def summary(rounds: list[Round]) -> dict[str, dict[str, float]]:
    out = {}
    for side in SIDES:
        mine = [r for r in rounds if r.side == side]
        lat = [x for r in mine for x in r.latencies_s]
        if not lat:
            continue
        row = {
            "pods": len(lat),
            "p50_s": percentile(lat, 0.5),
            "p99_s": percentile(lat, 0.99),
            "mean_s": sum(lat) / len(lat),
            "pods_per_s": sum(r.pods_per_s for r in mine) / len(mine),
            "sandbox_retries": sum(len(r.sandbox_failures) for r in mine),
        }
        if side == "spidernet":
            row["service_add_s_per_pod"] = sum(r.service_add_s for r in mine) / len(lat)
            row["service_share"] = row["service_add_s_per_pod"] / row["mean_s"]
        out[side] = row
    return out


def report(
    cfg: Config,
    rows: Mapping[str, Mapping[str, float]],
    machine: Mapping[str, Any],
    rounds: list[Round],
) -> None:
    console = Console()
    console.print(machine_line(machine))
    table = Table(title=f"{cfg.pods} pods at once on one real node, {cfg.rounds} round(s) per side")
    for col in ("side", "P50", "P99", "pods/s", "P50 vs host-local", "sandbox retries"):
        table.add_column(col, justify="right" if col != "side" else "left")
    ref = rows.get("host-local", {}).get("p50_s")
    for side, row in rows.items():
        ratio = f"{row['p50_s'] / ref:.2f}x" if ref else "-"
        table.add_row(
            side,
            f"{row['p50_s']:.2f} s",
            f"{row['p99_s']:.2f} s",
            f"{row['pods_per_s']:.1f}",
            ratio,
        )
    console.print(table)
    snt = rows.get("spidernet")
    if snt:
        console.print(
            f"spidernet's agent spent {snt['service_add_s_per_pod'] * 1e3:.0f} ms per pod on ADD "
            f"(ipam + coordinator): {snt['service_share'] * 100:.1f}% of the mean pod start"
        )
    for side in SIDES:
        failed = [m for r in rounds if r.side == side for m in r.sandbox_failures]
        if failed:
            first = failed[0].split("failed to setup network for sandbox")[-1][:300]
            console.print(f"{side}: {len(failed)} sandbox retries, the first: {first}")
    console.print(SPIDERPOOL)


def plot(rounds: list[Round], path: Path, machine: Mapping[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for side in SIDES:
        lat = sorted(x for r in rounds if r.side == side for x in r.latencies_s)
        if lat:
            ax.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], label=side)
    ax.set_xlabel("pod creation to Running (s)")
    ax.set_ylabel("fraction of pods")
    ax.set_title(machine_line(machine), fontsize=7)
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def inside(cfg: Config) -> int:
    """The benchmark itself, in the node's namespaces."""
    lane = nodelane.prepare()
    machine = machine_facts()
    rounds: list[Round] = []
    with sigterm_as_exit(), running_node(lane.tools, lane.images) as node:
        print(f"node Ready in {node.timings['total']:.0f}s; installing spidernet ...", flush=True)
        nodekube.install_spidernet(node, lane.spidernet_image, lane.helm)
        node.kubectl("create", "namespace", NS)
        nodekube.apply(node, network_docs())
        wait_for(
            "the SpiderMultusConfig's NAD",
            lambda: (
                node.kubectl(
                    "get", "net-attach-def", "-n", NS, "bench-spidernet", check=False
                ).returncode
                == 0
            ),
            120,
            0.5,
        )
        for i in range(cfg.rounds):
            for side in SIDES:
                print(f"round {i + 1}/{cfg.rounds}: {cfg.pods} {side} pods ...", flush=True)
                rounds.append(run_round(node, side, cfg.pods, lane.workload_image))
    rows = summary(rounds)
    report(cfg, rows, machine, rounds)
    cfg.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": machine,
        "pods": cfg.pods,
        "rounds": cfg.rounds,
        "summary": rows,
        "raw": [
            {
                "side": r.side,
                "wall_s": r.wall_s,
                "latencies_s": r.latencies_s,
                "sandbox_failures": r.sandbox_failures,
            }
            for r in rounds
        ],
        "reference": SPIDERPOOL,
    }
    (cfg.out / "node.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(rounds, cfg.out / "node.png", machine)
    return 0


@contextmanager
def _restored_host_state() -> Iterator[None]:
    """What the node changes outside its namespaces, put back even if the inner run died."""
    record = nodehost.settings_record()
    nodehost.restore_recorded(record)
    try:
        yield
    finally:
        nodehost.restore_recorded(record)
        nodehost.remove_leftover_cgroups()


def main(argv: list[str]) -> int:
    cfg = parse(argv)
    if os.geteuid() != 0:
        print("bench.node needs root (namespaces, mounts, cgroups)", file=sys.stderr)
        return 2
    if os.environ.get(INSIDE):
        return inside(cfg)
    try:
        nodelane.prepare()  # on this machine's network: the builds download
    except BuildFailed as e:
        print(e, file=sys.stderr)
        return 1
    argv_inside = ["unshare", "--net", "--mount", "--propagation", "slave", "--"]
    argv_inside += [sys.executable, "-m", "bench.node", *argv]
    with _restored_host_state():
        return subprocess.run(argv_inside, env={**os.environ, INSIDE: "1"}, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
