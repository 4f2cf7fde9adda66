"""The issue's cluster-scale acceptance: ten node agents allocate for 1000 pods at once.

Ten real `spidernet serve --kube` agents (one simulated node each, with its Node object) and
1000 real Pods in four namespaces, bound round-robin to the nodes with `spec.nodeName`. Every
pod's ADD is one run of the installed `spidernet-ipam` executable (the compiled forwarder of
`spidernet install-cni`), with the CNI environment and config a runtime gives it and
`$SPIDERNET_SOCKET` naming its node's agent, 20 at a time. The pool has exactly 1000 addresses
on purpose: the last choices of the ten agents collide, and all must still succeed.

What the agents recorded is read back with the official client, independently of spidernet:
one IPClaim and one SpiderEndpoint per pod, with the pod's uid, node and address. Then two
agents are SIGKILLed, their pods deleted through the API, and a real `spidernet controller`
must reclaim exactly those 200 addresses and none of the 800 still in use; finally the DELs of
the 800 (through their agents) and the pods' deletion leave nothing behind.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from spidernet.bench.cluster_sides import (
    Call,
    PodRef,
    agent_metric,
    concurrently,
    delete_pods,
    install_spidernet_ipam,
    make_spiderippool,
    make_world,
    node_names,
    remove_world,
    running_agents,
    spidernet_calls,
)
from spidernet.bench.kubeapi import KubeApi, request_codes
from spidernet.control.store.kube_names import INTERNAL, LABEL_KIND, LABEL_NAMESPACE, label_value
from spidernet.node.lab.service import ServiceProcess
from spidernet.testbed import kubeobjects
from spidernet.testbed.kubecluster import Cluster
from spidernet.testbed.kubecontroller import start_controller as start_gc
from spidernet.testbed.waiting import wait_for

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
NODES, PODS, NAMESPACES, CONCURRENCY = 10, 1000, 4, 20
KILLED = 2  # agents SIGKILLed before their pods are deleted
WAIT_S = 120.0


def claims_by_address(custom: client.CustomObjectsApi, pool: str) -> dict[str, dict[str, Any]]:
    """address -> IPClaim body, of `pool`, read from the API server itself."""
    found = [c["spec"] for c in kubeobjects.claims(custom, pool)]
    by_address = {spec["name"]: spec["body"] for spec in found}
    assert len(by_address) == len(found)  # one object per address, whatever the lists say
    return by_address


def endpoints(custom: client.CustomObjectsApi, spaces: list[str]) -> dict[str, dict[str, Any]]:
    """'namespace/pod' -> SpiderEndpoint status.current, over the namespaces."""
    out: dict[str, dict[str, Any]] = {}
    for ns in spaces:
        doc = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "spiderendpoints")
        assert isinstance(doc, dict)
        for item in doc["items"]:
            out[f"{ns}/{item['metadata']['name']}"] = item["status"]["current"]
    return out


def allocated_count(custom: client.CustomObjectsApi, pool: str) -> int | None:
    doc = custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", pool)
    assert isinstance(doc, dict)
    count = doc.get("status", {}).get("allocatedIPCount")
    return None if count is None else int(count)


def conflicts_409(api: KubeApi) -> int:
    return sum(request_codes(api.metrics(), ["409"]).values())


@pytest.fixture
def prefix(k8s_cluster: Cluster, custom: client.CustomObjectsApi) -> Iterator[str]:
    """This test's name prefix; its namespaces, nodes, pool and leftover claims removed after."""
    name = f"scale-{uuid.uuid4().hex[:6]}"
    yield name
    with KubeApi(k8s_cluster) as api:
        cleanup(api, custom, name)


def cleanup(api: KubeApi, custom: client.CustomObjectsApi, name: str) -> None:
    remove_world(api, name, node_names(name, NODES), NAMESPACES)
    # What the test left allocated (it failed half-way) goes by label: claims are cluster-scoped.
    selector = (
        f"{LABEL_KIND}={label_value('IPClaim')},{LABEL_NAMESPACE}={label_value(name + '-pool')}"
    )
    custom.delete_collection_cluster_custom_object(
        INTERNAL.group, INTERNAL.version, INTERNAL.plural, label_selector=selector
    )
    api.call("DELETE", f"/apis/{GROUP}/{VERSION}/spiderippools/{name}-pool", ok=(404,))


def start_controller(cluster: Cluster, lease_namespace: str, log: Path) -> subprocess.Popen[bytes]:
    ctl = start_gc(cluster, lease_namespace, "scale", log, lease="scale-gc", interval=1)
    return ctl.proc


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=15)


def allocate_for_every_pod(
    api: KubeApi,
    agents: dict[str, ServiceProcess],
    ipam: Path,
    pool: str,
    pods: list[PodRef],
    record_testsuite_property: Callable[[str, object], None],
) -> list[Call]:
    """Every pod's ADD through the spidernet-ipam executable, CONCURRENCY at a time; none
    fails. Its rate, latencies, write conflicts and HTTP 409s recorded; the calls."""
    conflicts_before = sum(agent_metric(a) for a in agents.values())
    http409_before = conflicts_409(api)
    add = spidernet_calls(ipam, agents, pool, "ADD")
    calls, seconds = concurrently(add, pods, CONCURRENCY)
    failed = [c for c in calls if not c.outcome.ok]
    assert not failed, [str(c.outcome.error) for c in failed[:5]]
    conflicts = sum(agent_metric(a) for a in agents.values()) - conflicts_before
    http409 = conflicts_409(api) - http409_before
    latencies = sorted(c.seconds for c in calls)
    record_testsuite_property("scale_allocations", PODS)
    record_testsuite_property("scale_allocation_seconds", f"{seconds:.1f}")
    record_testsuite_property("scale_allocations_per_second", f"{PODS / seconds:.1f}")
    record_testsuite_property("scale_call_p50_ms", f"{latencies[len(latencies) // 2] * 1000:.0f}")
    record_testsuite_property(
        "scale_call_p99_ms", f"{latencies[int(len(latencies) * 0.99)] * 1000:.0f}"
    )
    record_testsuite_property("scale_write_conflicts", int(conflicts))
    record_testsuite_property("scale_http_409", http409)
    return calls


def check_the_records(
    custom: client.CustomObjectsApi,
    pool: str,
    net: ipaddress.IPv4Network,
    spaces: list[str],
    nodes: list[str],
    pods: list[PodRef],
    calls: list[Call],
) -> dict[str, ipaddress.IPv4Interface]:
    """PODS distinct addresses, all in the pool's range, each one's IPClaim and the pod's
    SpiderEndpoint naming the pod, its uid and its node. 'namespace/pod' -> its address."""
    first, last = net[10], net[10 + PODS - 1]
    # 1000 distinct addresses, all in the pool's range.
    answers = {c.pod.key: ipaddress.IPv4Interface(c.address) for c in calls}
    assert len(set(answers.values())) == PODS
    assert all(first <= a.ip <= last and a.network == net for a in answers.values())
    # Each one visible in the cluster: its IPClaim names the pod, its uid and its node ...
    by_pod = {p.key: p for p in pods}
    held = claims_by_address(custom, pool)
    assert {addr: body["pod"] for addr, body in held.items()} == {
        str(a.ip): key for key, a in answers.items()
    }
    assert all(
        (body["podUid"], body["node"], body["interface"])
        == (by_pod[body["pod"]].uid, by_pod[body["pod"]].node, "eth0")
        for body in held.values()
    )
    # ... and the pod's SpiderEndpoint says the same.
    recorded = endpoints(custom, spaces)
    assert set(recorded) == set(by_pod)
    for key, current in recorded.items():
        pod = by_pod[key]
        assert (current["uid"], current["node"]) == (pod.uid, pod.node)
        assert [(e["interface"], e["ipv4"], e["ipv4Pool"]) for e in current["ips"]] == [
            ("eth0", str(answers[key]), pool)
        ]
    assert Counter(c["node"] for c in recorded.values()) == dict.fromkeys(nodes, PODS // NODES)
    return answers


def the_gc_takes_the_orphans_only(
    custom: client.CustomObjectsApi,
    pool: str,
    spaces: list[str],
    prefix: str,
    log: Path,
    orphans: list[PodRef],
    live: list[PodRef],
    live_addresses: set[str],
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    """With the controller running (its log `log`): the GC reclaims the dead nodes' pods'
    addresses, and in two more passes nothing in use."""
    gc_began = time.perf_counter()
    wait_for(
        "the GC of the dead nodes' pods",
        lambda: set(claims_by_address(custom, pool)) == live_addresses,
        WAIT_S,
        0.5,
    )
    record_testsuite_property("scale_gc_seconds", f"{time.perf_counter() - gc_began:.1f}")
    wait_for(
        "allocatedIPCount of the live pods",
        lambda: allocated_count(custom, pool) == len(live),
        WAIT_S,
        0.5,
    )
    # Two more full passes: nothing in use is taken.
    time.sleep(2.5)
    assert set(claims_by_address(custom, pool)) == live_addresses
    assert set(endpoints(custom, spaces)) == {p.key for p in live}
    mine = [ln for ln in log.read_text().splitlines() if "reclaimed" in ln and prefix in ln]
    assert len(mine) == len(orphans), mine[:5]
    assert all("pod gone" in ln for ln in mine)


def the_live_pods_go(
    api: KubeApi,
    custom: client.CustomObjectsApi,
    ipam: Path,
    agents: dict[str, ServiceProcess],
    pool: str,
    spaces: list[str],
    live: list[PodRef],
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    """The live pods go the normal way: the runtime's DEL through their agents, then the
    pod's deletion; nothing is left."""
    delete = spidernet_calls(ipam, agents, pool, "DEL")
    released, del_seconds = concurrently(delete, live, CONCURRENCY)
    bad: list[Call] = [c for c in released if not c.outcome.ok]
    assert not bad, [str(c.outcome.error) for c in bad[:5]]
    record_testsuite_property("scale_release_seconds", f"{del_seconds:.1f}")
    assert claims_by_address(custom, pool) == {}
    assert endpoints(custom, spaces) == {}
    delete_pods(api, live)
    wait_for("allocatedIPCount 0", lambda: allocated_count(custom, pool) == 0, WAIT_S, 0.5)


def test_ten_agents_allocate_for_a_thousand_pods_and_every_address_comes_back(
    k8s_cluster: Cluster,
    store_crds: list[str],
    custom: client.CustomObjectsApi,
    prefix: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    began = time.perf_counter()
    api = KubeApi(k8s_cluster)
    request.addfinalizer(api.close)
    nodes = node_names(prefix, NODES)
    spaces = [f"{prefix}-ns-{n}" for n in range(NAMESPACES)]
    pool = f"{prefix}-pool"
    net = ipaddress.IPv4Network("10.77.0.0/22")
    first, last = net[10], net[10 + PODS - 1]  # exactly PODS addresses: tight on purpose
    make_spiderippool(api, pool, str(net), str(first), str(last))
    pods = make_world(api, prefix, nodes, PODS, NAMESPACES)
    record_testsuite_property("scale_pod_create_seconds", f"{time.perf_counter() - began:.1f}")
    ipam = install_spidernet_ipam(tmp_path / "bin")

    with running_agents(k8s_cluster, nodes) as agents:
        calls = allocate_for_every_pod(api, agents, ipam, pool, pods, record_testsuite_property)
        answers = check_the_records(custom, pool, net, spaces, nodes, pods, calls)

        # Two nodes' agents die; their pods are deleted while no agent can run their DEL.
        dead_nodes = nodes[:KILLED]
        for node in dead_nodes:
            agents[node].kill()
        orphans = [p for p in pods if p.node in dead_nodes]
        live = [p for p in pods if p.node not in dead_nodes]
        delete_pods(api, orphans)
        live_addresses = {str(answers[p.key].ip) for p in live}

        lease_ns = spaces[0]
        log = tmp_path / "controller.log"
        controller = start_controller(k8s_cluster, lease_ns, log)
        try:
            the_gc_takes_the_orphans_only(
                custom,
                pool,
                spaces,
                prefix,
                log,
                orphans,
                live,
                live_addresses,
                record_testsuite_property,
            )
            the_live_pods_go(
                api, custom, ipam, agents, pool, spaces, live, record_testsuite_property
            )
        finally:
            assert stop(controller) == 0
    record_testsuite_property("scale_test_seconds", f"{time.perf_counter() - began:.1f}")
