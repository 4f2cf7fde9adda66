"""The chaos run, on the real API server: 10 agents (`spidernet serve --kube`, one per
simulated node) and 2 controllers (`spidernet controller`, one holding the GC's lease), 2000
pods created and deleted while agents and the lease holder are SIGKILLed at random and
started again. A pod's life is what a kubelet makes of it: its Pod object, an ADD retried
until answered, then one of three ends: it lives to the end, it is deleted after its DEL, or
it is deleted without a DEL (the kubelet lost it). Bounded in time.

At the end every live pod's SpiderEndpoint holds the address it was answered, no address is
held twice, and, once the controllers' GC has run, the pool's claims are exactly the live
pods' addresses: every orphan reclaimed, nothing live taken."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.client import ServiceError, ServiceUnreachable
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.kubecluster import Cluster
from spidernet.testbed.kubeobjects import (
    claims,
    endpoints,
    ipam_call,
    make_pod,
)

AGENTS = 10
PODS = 2000
WORKERS = 16
DEADLINE_S = 900.0
GC_WAIT_S = 120.0
KEEP, DELETE, LOSE = "keep", "delete", "lose"  # a pod's end


@dataclass
class Run:
    """What happened: answers, ends, kills."""

    answered: dict[str, str] = field(default_factory=dict)  # pod -> address
    live: set[str] = field(default_factory=set)
    kills: dict[str, int] = field(default_factory=lambda: {"agent": 0, "controller": 0})
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Controller:
    """A `spidernet controller` process on the test's Lease; started again after a kill."""

    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def until_answered(
    agents: list[ServiceProcess],
    n: int,
    method: str,
    url: str,
    call: dict[str, object],
    run: Run,
    deadline: float,
) -> object:
    """Ask agent `n` until it answers, as a kubelet retries (its agent may be restarting)."""
    while time.monotonic() < deadline:
        try:
            return agents[n].client.request(method, url, call)
        except (ServiceUnreachable, ServiceError):
            with run.lock:
                run.retries += 1
            time.sleep(0.2)
    raise AssertionError(f"{url} for {call['podName']} not answered in time")


def start_agents(stack: ExitStack, k8s_cluster: Cluster) -> list[ServiceProcess]:
    """The AGENTS agents, one per simulated node `chaos-<n>`, stopped as `stack` closes."""
    return [
        stack.enter_context(
            scratch_service(
                "--kube", "--kubeconfig", str(k8s_cluster.kubeconfig), "--node", f"chaos-{n}"
            )
        )
        for n in range(AGENTS)
    ]


def start_controllers(
    stack: ExitStack, k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> list[Controller]:
    """The two controllers `one` and `two` on the Lease `chaos` (a GC pass every second,
    orphans reclaimed after 5 s), stopped as `stack` closes."""
    controllers: list[Controller] = []
    for identity in ("one", "two"):
        argv = [
            sys.executable, "-m", "spidernet", "controller",
            "--kubeconfig", str(k8s_cluster.kubeconfig),
            "--gc-interval", "1", "--gc-margin", "0", "--orphan-grace", "5",
            "--lease-namespace", namespace, "--lease-name", "chaos",
            "--lease-duration", "3", "--identity", identity,
        ]  # fmt: skip
        ctl = Controller(argv, tmp_path / f"controller-{identity}.log")
        ctl.start()
        stack.callback(ctl.stop)
        controllers.append(ctl)
    return controllers


def live_under_chaos(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    big_pool: str,
    agents: list[ServiceProcess],
    controllers: list[Controller],
    ends: list[str],
    run: Run,
    deadline: float,
) -> None:
    """The PODS pods' lives, on WORKERS threads, each ending as `ends` says, while a chaos
    thread kills an agent or the lease holder at random and starts it again; the chaos stops
    when the lives are over (or one failed)."""

    def life(i: int) -> None:
        pod = f"c{i}"
        uid = make_pod(core, namespace, pod)
        n = i % AGENTS
        call: dict[str, object] = ipam_call(namespace, pod, uid, big_pool)
        answer = until_answered(agents, n, "POST", "/v1/ipam/allocate", call, run, deadline)
        assert isinstance(answer, dict)
        with run.lock:
            run.answered[pod] = str(answer["ips"][0]["address"])
        if ends[i] == KEEP:
            with run.lock:
                run.live.add(pod)
            return
        if ends[i] == DELETE:
            until_answered(agents, n, "POST", "/v1/ipam/release", call, run, deadline)
        core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)

    stop = threading.Event()

    def chaos() -> None:
        kill = random.Random(7)
        while not stop.wait(kill.uniform(0.5, 1.5)):
            if kill.random() < 0.75:
                victim = kill.choice(agents)
                victim.kill()
                run.kills["agent"] += 1
                victim.start()
            else:
                holder = lease_holder(custom, namespace)
                for ctl in controllers:
                    if ctl.argv[-1] == holder:
                        ctl.stop(signal.SIGKILL)
                        run.kills["controller"] += 1
                        ctl.start()

    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    try:
        with ThreadPoolExecutor(WORKERS) as ex:
            list(ex.map(life, range(PODS)))
    finally:
        stop.set()
        chaos_thread.join()


def wait_for_the_gc(
    custom: client.CustomObjectsApi, big_pool: str, live_addresses: set[str]
) -> None:
    """Until the pool's claims are exactly the live pods' addresses (the GC reclaimed what
    the deleted pods left), GC_WAIT_S at most."""

    def settled() -> bool:
        return {c["spec"]["name"] for c in claims(custom, big_pool)} == live_addresses

    gc_deadline = time.monotonic() + GC_WAIT_S
    while not settled():
        if time.monotonic() >= gc_deadline:
            claimed = {c["spec"]["name"] for c in claims(custom, big_pool)}
            pytest.fail(
                "the GC did not reclaim every orphan in time: claimed without a live pod "
                f"{sorted(claimed - live_addresses)[:20]} ({len(claimed - live_addresses)}), "
                f"live pods without a claim {sorted(live_addresses - claimed)[:20]} "
                f"({len(live_addresses - claimed)})"
            )
        time.sleep(1)


def check_the_end(
    custom: client.CustomObjectsApi,
    namespace: str,
    big_pool: str,
    run: Run,
    live_addresses: set[str],
) -> None:
    """Every live pod holds what it was answered; no address twice; nothing else is
    claimed."""
    recorded = {
        ep["metadata"]["name"]: ep["status"]["current"]["ips"][0]["ipv4"]
        for ep in endpoints(custom, namespace)
    }
    assert recorded == {p: run.answered[p] for p in run.live}
    owners = {c["spec"]["name"]: c for c in claims(custom, big_pool)}
    by_address: dict[str, list[str]] = {}
    for p in sorted(run.live):
        by_address.setdefault(run.answered[p].split("/")[0], []).append(p)
    doubled = {a: ps for a, ps in by_address.items() if len(ps) > 1}
    # Which pod each doubled address's claim names, so a failure says who lost it.
    assert not doubled, {
        a: (ps, owners[a]["spec"]["body"].get("pod", "?") if a in owners else "no claim")
        for a, ps in doubled.items()
    }
    assert len(live_addresses) == len(run.live)
    assert set(owners) == live_addresses


def test_2000_pods_come_and_go_while_agents_and_the_gc_leader_are_killed_at_random(
    k8s_cluster: Cluster,
    store_crds: list[str],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    big_pool: str,
    tmp_path: Path,
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    rng = random.Random(20261207)
    ends = [rng.choice((KEEP, DELETE, DELETE, LOSE)) for _ in range(PODS)]
    run = Run()
    started = time.monotonic()
    deadline = started + DEADLINE_S
    with ExitStack() as stack:
        agents = start_agents(stack, k8s_cluster)
        controllers = start_controllers(stack, k8s_cluster, namespace, tmp_path)
        live_under_chaos(
            core, custom, namespace, big_pool, agents, controllers, ends, run, deadline
        )
        lifetimes = time.monotonic() - started
        # Every process up again: the GC reclaims what the deleted pods left.
        live_addresses = {run.answered[p].split("/")[0] for p in run.live}
        wait_for_the_gc(custom, big_pool, live_addresses)
        record_testsuite_property("chaos_pods", PODS)
        record_testsuite_property("chaos_pods_seconds", round(lifetimes, 1))
        record_testsuite_property(
            "chaos_gc_settled_after_s", round(time.monotonic() - started - lifetimes, 1)
        )
        record_testsuite_property("chaos_agent_kills", run.kills["agent"])
        record_testsuite_property("chaos_controller_kills", run.kills["controller"])
        record_testsuite_property("chaos_retries", run.retries)
        record_testsuite_property("chaos_lost_without_del", ends.count(LOSE))

    assert run.kills["agent"] > 0
    assert run.kills["controller"] > 0
    check_the_end(custom, namespace, big_pool, run, live_addresses)


def lease_holder(custom: client.CustomObjectsApi, namespace: str) -> str:
    coordination = client.CoordinationV1Api(custom.api_client)
    try:
        lease = coordination.read_namespaced_lease("chaos", namespace)
    except ApiException:
        return ""
    return str(lease.spec.holder_identity or "") if lease.spec else ""
