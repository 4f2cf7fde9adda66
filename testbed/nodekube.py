"""Talking to the real node's cluster the way a user does: kubectl, with JSON to read back.

The node lane and `bench.node` share these: install spidernet with `helm install` of
deploy/chart and the image built here (as deploy/README.md tells users), upgrade it, apply
documents, read objects, wait for rollouts and pods, and run commands in pods with
`kubectl exec`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from spidernet.testbed import chart
from spidernet.testbed.node import NodeCommandFailed, RealNode
from spidernet.testbed.nodespec import json_text
from spidernet.testbed.waiting import seconds_until

AGENT = ("kube-system", "spidernet-agent")
CONTROLLER = ("kube-system", "spidernet-controller")
GROUP = "spiderpool.spidernet.io"


def apply(node: RealNode, docs: Iterable[Mapping[str, Any]]) -> None:
    """Server-side apply of `docs` (as `kubectl apply --server-side -f -`)."""
    text = "\n---\n".join(json_text(d) for d in docs)
    node.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=text)


def get(node: RealNode, *args: str) -> dict[str, Any]:
    """`kubectl get ARGS -o json`, decoded."""
    out: dict[str, Any] = json.loads(node.kubectl("get", *args, "-o", "json").stdout)
    return out


def items(node: RealNode, *args: str) -> list[dict[str, Any]]:
    """The items of a `kubectl get` list."""
    found: list[dict[str, Any]] = get(node, *args).get("items", [])
    return found


def helm(node: RealNode, binary: Path, *args: str, values: Mapping[str, Any] | None = None) -> str:
    """`helm ARGS` against the node's API server as its admin; helm's output. Raises
    NodeCommandFailed with helm's message when it fails."""
    done = chart.helm(binary, args, values=values, kubeconfig=node.kubeconfig, timeout=360)
    if done.returncode != 0:
        raise NodeCommandFailed(f"helm {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def image_values(image: str) -> dict[str, Any]:
    """The chart values that name `image` (`repository:tag`)."""
    repository, _, tag = image.rpartition(":")
    return {"image": {"repository": repository, "tag": tag}}


def install_spidernet(node: RealNode, image: str, binary: Path, timeout_s: float = 300) -> float:
    """`helm install spidernet deploy/chart -n kube-system` with `image`; waits until the agent
    DaemonSet and the controller Deployment are ready. Returns the seconds it took."""
    started = time.monotonic()
    helm(
        node,
        binary,
        "install",
        chart.RELEASE,
        str(chart.CHART),
        "-n",
        AGENT[0],
        values=image_values(image),
    )
    waited(node, "spidernet agent and controller ready", lambda: installed(node), timeout_s)
    return time.monotonic() - started


def waited(node: RealNode, what: str, probe: Callable[[], bool], timeout_s: float) -> float:
    """seconds_until, whose timeout says what the cluster looked like: every pod, and the last
    events (why a pod does not start is there)."""
    try:
        return seconds_until(what, probe, timeout_s, 1.0)
    except TimeoutError as e:
        raise TimeoutError(f"{e}\n{situation(node)}") from e


def situation(node: RealNode) -> str:
    """`kubectl get pods -A -o wide` and the last 20 events, for a failure's message."""
    pods_ = node.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
    events = node.kubectl(
        "get", "events", "-A", "--sort-by=.lastTimestamp", check=False
    ).stdout.splitlines()
    return pods_ + "\n" + "\n".join(line[:400] for line in events[-20:])


def installed(node: RealNode) -> bool:
    """True when every agent pod and both controller replicas are ready."""
    ds = get(node, "daemonset", "-n", AGENT[0], AGENT[1]).get("status", {})
    dep = get(node, "deployment", "-n", CONTROLLER[0], CONTROLLER[1]).get("status", {})
    agents = ds.get("desiredNumberScheduled", 0) > 0 and ds.get("numberReady") == ds.get(
        "desiredNumberScheduled"
    )
    return bool(agents and dep.get("readyReplicas", 0) >= 2)


def pods(node: RealNode, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    """Pods of `namespace` (matching label `selector`)."""
    args = ["pods", "-n", namespace]
    if selector:
        args += ["-l", selector]
    return items(node, *args)


def running(pod: Mapping[str, Any]) -> bool:
    """True when the pod is Running and every container ready."""
    status = pod.get("status", {})
    ready = [c.get("ready") for c in status.get("containerStatuses", [])]
    return status.get("phase") == "Running" and bool(ready) and all(ready)


def wait_pods(
    node: RealNode, namespace: str, selector: str, count: int, timeout_s: float
) -> list[dict[str, Any]]:
    """Wait until exactly `count` pods match and all run; returns them."""
    found: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal found
        found = [
            p for p in pods(node, namespace, selector) if not p["metadata"].get("deletionTimestamp")
        ]
        return len(found) == count and all(running(p) for p in found)

    waited(node, f"{count} running pods '{selector}' in {namespace}", done, timeout_s)
    return found


def exec_in(
    node: RealNode, namespace: str, pod: str, *argv: str, check: bool = True, container: str = ""
) -> str:
    """`kubectl exec` of `argv` in the pod; its stdout."""
    args = ["exec", "-n", namespace, pod]
    if container:
        args += ["-c", container]
    return node.kubectl(*args, "--", *argv, check=check, timeout=180).stdout


def network_status(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pod's `k8s.v1.cni.cncf.io/network-status` annotation (written by Multus)."""
    raw = pod["metadata"].get("annotations", {}).get("k8s.v1.cni.cncf.io/network-status", "[]")
    found: list[dict[str, Any]] = json.loads(raw)
    return found


def underlay_network(pool: str, ips: str, network: str, namespace: str) -> list[dict[str, Any]]:
    """A SpiderIPPool `pool` of `ips` on the node's underlay segment and a SpiderMultusConfig
    `namespace/network` (macvlan on the node's uplink, that pool, the coordinator in auto
    mode, no CIDRs), from which the controller writes the NAD."""
    from spidernet.testbed.nodespec import GATEWAY4, UPLINK

    return [
        {
            "apiVersion": f"{GROUP}/v2beta1",
            "kind": "SpiderIPPool",
            "metadata": {"name": pool},
            "spec": {"subnet": "192.0.2.0/24", "ips": [ips], "gateway": GATEWAY4},
        },
        {
            "apiVersion": f"{GROUP}/v2beta1",
            "kind": "SpiderMultusConfig",
            "metadata": {"name": network, "namespace": namespace},
            "spec": {
                "cniType": "macvlan",
                "macvlan": {"master": [UPLINK], "ippools": {"ipv4": [pool]}},
                "coordinator": {"mode": "auto"},
            },
        },
    ]
