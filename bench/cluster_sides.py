"""The two peers of `bench.cluster` on one real API server, and what they share.

Both get the same world: namespaces, one Node object per simulated node, and the pods, created
through the API with `spec.nodeName` (no kubelet runs them). Then every pod's ADD is one run of
the peer's real CNI IPAM executable, with the CNI environment and config on stdin as a runtime
gives them (an IPAM plugin never enters the netns, so CNI_NETNS is only a path), `concurrency`
calls at once, each call going to its pod's node:

- spidernet: the installed `spidernet-ipam` (`spidernet install-cni`), `$SPIDERNET_SOCKET`
  pointing at that node's `spidernet serve --kube --node <node>` agent;
- Whereabouts: its Go binary (bench/whereabouts.py), `$NODENAME` set to the node, the admin
  kubeconfig in its config.

`tests/k8s/test_scale.py` uses the spidernet side for the issue's acceptance test.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from spidernet.node.lab.runtime import Outcome, invoke
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.conflists import macvlan, plugin_conf, spidernet_ipam
from spidernet.testbed.kubecluster import Cluster

from .kubeapi import KubeApi
from .whereabouts import NAMESPACE, Whereabouts, net_config

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
CRDS = Path(__file__).resolve().parents[1] / "deploy" / "chart" / "crds"
CONFLICT_METRIC = "spidernet_ipam_allocation_conflict_counts_total"
NETWORK = "macvlan-underlay"
CREATE_WORKERS = 4
# Agents start two at a time: ten Python imports at once on two cores miss the start timeout.
START_WORKERS = 2
CALL_TIMEOUT_S = 180.0
# Deleting and recreating: a refused ADD is tried again this soon, for this long.
RETRY_S, RECREATE_DEADLINE_S = 0.05, 600.0
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class PodRef:
    """A Pod created through the API."""

    namespace: str
    name: str
    uid: str
    node: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def container(self) -> str:
        return f"ctr-{self.uid}"


@dataclass(frozen=True)
class Call:
    """One timed CNI call of one pod."""

    pod: PodRef
    seconds: float
    outcome: Outcome

    @property
    def address(self) -> str:
        """The ADD's first address, with its prefix length."""
        result = self.outcome.result
        if not self.outcome.ok or result is None or not result.ips:
            raise CallFailed(self)
        return str(result.ips[0].address)


class CallFailed(Exception):
    def __init__(self, call: Call) -> None:
        out = call.outcome
        super().__init__(
            f"{out.plugin} {out.command} for pod {call.pod.key} on {call.pod.node} failed: "
            f"{out.error} {out.stderr.strip()[-300:]}"
        )


def concurrently(fn: Callable[[T], R], items: Sequence[T], workers: int) -> tuple[list[R], float]:
    """`fn` over `items`, `workers` at a time; the results in order and the wall time."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(fn, items))
    return results, time.perf_counter() - start


def node_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-node-{n:02d}" for n in range(count)]


def make_world(
    api: KubeApi, prefix: str, nodes: Sequence[str], pods: int, namespaces: int
) -> list[PodRef]:
    """Namespaces (with their `default` ServiceAccount), Node objects and `pods` Pods spread
    round-robin over the nodes and the namespaces."""
    for ns in _spaces(prefix, namespaces):
        api.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        api.call(
            "POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "default"}}
        )
    for node in nodes:
        api.call("POST", "/api/v1/nodes", {"metadata": {"name": node}}, ok=(409,))
    return make_pods(api, prefix, nodes, pods, namespaces)


def _spaces(prefix: str, namespaces: int) -> list[str]:
    return [f"{prefix}-ns-{n}" for n in range(namespaces)]


def make_pods(
    api: KubeApi,
    prefix: str,
    nodes: Sequence[str],
    pods: int,
    namespaces: int,
    *,
    generation: int = 0,
) -> list[PodRef]:
    """`pods` Pods spread round-robin over `make_world`'s nodes and namespaces; a later
    `generation` (a Deployment's pods deleted and recreated) gets names of its own."""
    spaces = _spaces(prefix, namespaces)
    stem = "pod-" if generation == 0 else f"pod-g{generation}-"

    def create(n: int) -> PodRef:
        ns, node, name = spaces[n % len(spaces)], nodes[n % len(nodes)], f"{stem}{n:04d}"
        body = {
            "metadata": {"name": name, "labels": {"app": prefix}},
            "spec": {
                "nodeName": node,
                "automountServiceAccountToken": False,
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
            },
        }
        doc = api.call("POST", f"/api/v1/namespaces/{ns}/pods", body)
        return PodRef(ns, name, str(doc["metadata"]["uid"]), node)

    refs, _ = concurrently(create, range(pods), CREATE_WORKERS)
    return refs


def delete_pods(api: KubeApi, pods: Sequence[PodRef]) -> None:
    """Delete the pods at once (grace 0: no kubelet would ever confirm a graceful delete)."""

    def delete(pod: PodRef) -> None:
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}?gracePeriodSeconds=0"
        api.call("DELETE", path, ok=(404,))

    concurrently(delete, pods, CREATE_WORKERS)


@dataclass
class Recreated:
    """A generation of pods deleted and the next one created at once: every old pod's DEL
    and every new pod's ADD interleaved, the ADDs retried (as a kubelet retries a sandbox)
    while the pool, exactly as large as the pods, has no address free yet."""

    wall_s: float
    add_ms: list[float]  # per new pod: from its first try to its address
    tries: int  # ADD calls made, counted as they were made
    refusals: dict[str, int]  # each refused try's error, first line, counted

    @property
    def retries(self) -> int:
        return sum(self.refusals.values())


def delete_and_recreate(
    add: Callable[[PodRef], Call],
    delete: Callable[[PodRef], Call],
    old: Sequence[PodRef],
    new: Sequence[PodRef],
    workers: int,
) -> tuple[list[Call], Recreated]:
    """Old pod i's DEL, then new pod i's ADD, for every i, `workers` calls at a time; an ADD
    refused is tried again after RETRY_S, for up to RECREATE_DEADLINE_S after its first try.
    The new pods' ADDs (in order) and what the phase took. Raises CallFailed for a DEL that
    fails or an ADD that never gets an address."""
    lock = threading.Lock()
    refusals: Counter[str] = Counter()
    tries = 0

    def step(job: tuple[str, PodRef]) -> Call | None:
        nonlocal tries
        verb, pod = job
        if verb == "DEL":
            done = delete(pod)
            if not done.outcome.ok:
                raise CallFailed(done)
            return None
        start = time.perf_counter()
        while True:
            call = add(pod)
            with lock:
                tries += 1
            if call.outcome.ok:
                # The call that got the address, timed from the pod's first try.
                return dataclasses.replace(call, seconds=time.perf_counter() - start)
            if time.perf_counter() - start > RECREATE_DEADLINE_S:
                raise CallFailed(call)
            with lock:
                refusals[refusal(call.outcome)] += 1
            time.sleep(RETRY_S)

    jobs = [
        job for pair in zip(old, new, strict=True) for job in (("DEL", pair[0]), ("ADD", pair[1]))
    ]
    done, wall = concurrently(step, jobs, workers)
    added = [call for call in done if call is not None]
    phase = Recreated(wall, ms(added), tries, dict(refusals.most_common()))
    return added, phase


def ms(calls: Sequence[Call]) -> list[float]:
    """Each call's time in milliseconds."""
    return [round(c.seconds * 1e3, 2) for c in calls]


def refusal(outcome: Outcome) -> str:
    """What a refused call said, with its numbers (addresses, names) blanked, so alike
    refusals count as one."""
    err = outcome.error
    if err is None:
        return f"exit {outcome.returncode}"
    blanked = re.sub(r"\d+", "#", err.msg)
    return f"code {err.code}: {blanked[:160]}"


def remove_world(api: KubeApi, prefix: str, nodes: Sequence[str], namespaces: int) -> None:
    """Namespaces (pods included: no controller-manager, so their pods first) and Nodes."""
    for n in range(namespaces):
        ns = f"{prefix}-ns-{n}"
        api.call("DELETE", f"/api/v1/namespaces/{ns}/pods?gracePeriodSeconds=0", ok=(404,))
        api.call("DELETE", f"/api/v1/namespaces/{ns}", ok=(404, 409))
    for node in nodes:
        api.call("DELETE", f"/api/v1/nodes/{node}", ok=(404,))


def timed(
    pod: PodRef, executable: str, command: str, conf: dict[str, Any], env: dict[str, str]
) -> Call:
    """One CNI call of the executable for `pod`, as a runtime makes it; its duration."""
    args = (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod.namespace};K8S_POD_NAME={pod.name};"
        f"K8S_POD_INFRA_CONTAINER_ID={pod.container};K8S_POD_UID={pod.uid}"
    )
    start = time.perf_counter()
    outcome = invoke(
        executable,
        command,
        conf,
        container_id=pod.container,
        netns_path=f"/var/run/netns/{pod.container}",
        ifname="eth0",
        cni_args=args,
        cni_path=(str(Path(executable).parent),),  # a runtime always sets it (skel checks)
        extra_env=env,
        timeout=CALL_TIMEOUT_S,
    )
    return Call(pod, time.perf_counter() - start, outcome)


# ---- spidernet ----------------------------------------------------------------------------


def install_store_crds(api: KubeApi) -> list[str]:
    """deploy/chart/crds/: Spiderpool's six and the Kubernetes store's internal one."""
    return [api.apply_crd(yaml.safe_load(p.read_text())) for p in sorted(CRDS.glob("*.yaml"))]


def make_spiderippool(api: KubeApi, name: str, subnet: str, first: str, last: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"ipVersion": 4, "subnet": subnet, "ips": [f"{first}-{last}"]},
    }
    api.call("POST", f"/apis/{GROUP}/{VERSION}/spiderippools", body)


def install_spidernet_ipam(bin_dir: Path) -> Path:
    """`spidernet install-cni --bin-dir`: the spidernet-ipam executable a runtime runs."""
    subprocess.run(
        [sys.executable, "-m", "spidernet", "install-cni", "--bin-dir", str(bin_dir)],
        check=True,
        capture_output=True,
    )
    return bin_dir / "spidernet-ipam"


def spidernet_conf(pool: str) -> dict[str, Any]:
    return plugin_conf(macvlan(spidernet_ipam(default_ipv4_ippool=[pool])), name=NETWORK)


@contextmanager
def running_agents(cluster: Cluster, nodes: Sequence[str]) -> Iterator[dict[str, ServiceProcess]]:
    """One `spidernet serve --kube --node <node>` (scratch_service) per node, started
    START_WORKERS at a time; each stopped by its pid on exit."""
    lock = threading.Lock()
    with ExitStack() as stack:

        def start(node: str) -> ServiceProcess:
            argv = ("--kube", "--kubeconfig", str(cluster.kubeconfig), "--node", node)
            manager = scratch_service(*argv)
            agent = manager.__enter__()
            with lock:
                stack.push(manager)
            return agent

        agents, _ = concurrently(start, nodes, START_WORKERS)
        yield dict(zip(nodes, agents, strict=True))


def agent_metric(agent: ServiceProcess, name: str = CONFLICT_METRIC) -> float:
    """One counter of an agent's /metrics (0 when the agent has not counted any yet)."""
    port = agent.metrics_port()
    if port is None:
        raise RuntimeError(f"agent {agent.socket} has no metrics port")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def spidernet_calls(
    executable: Path, agents: dict[str, ServiceProcess], pool: str, command: str
) -> Callable[[PodRef], Call]:
    """A function making `command` (ADD, DEL) for a pod through its node's agent."""
    conf = spidernet_conf(pool)

    def call(pod: PodRef) -> Call:
        env = {"SPIDERNET_SOCKET": str(agents[pod.node].socket)}
        return timed(pod, str(executable), command, conf, env)

    return call


# ---- Whereabouts --------------------------------------------------------------------------


def install_whereabouts_crds(api: KubeApi, built: Whereabouts) -> list[str]:
    """Its IPPool and OverlappingRangeIPReservation CRDs, from the module's own files."""
    return [api.apply_crd(yaml.safe_load(path.read_text())) for path in built.crd_paths()]


def whereabouts_calls(
    built: Whereabouts, *, flat_file: Path, subnet: str, first: str, last: str, command: str
) -> Callable[[PodRef], Call]:
    """A function making `command` (ADD, DEL) for a pod with Whereabouts' binary."""
    conf = net_config(flat_file, subnet, first, last, NETWORK)

    def call(pod: PodRef) -> Call:
        return timed(pod, str(built.binary), command, conf, {"NODENAME": pod.node})

    return call


def whereabouts_allocations(api: KubeApi, subnet: str) -> dict[str, str]:
    """address -> podRef, from the range's one IPPool object."""
    name = subnet.replace("/", "-")
    doc = api.call(
        "GET", f"/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/{NAMESPACE}/ippools/{name}"
    )
    net = ipaddress.ip_network(subnet)
    first = int(net.network_address)
    allocations: dict[str, Any] = doc["spec"].get("allocations") or {}
    return {
        str(ipaddress.ip_address(first + int(offset))): str(entry["podref"])
        for offset, entry in allocations.items()
    }
