"""`spidernet serve --kube`: node agents on a real kube-apiserver.

Each agent is a real `spidernet serve --kube` process (a simulated node, `--node`), called on its
unix socket the way spidernet-ipam calls it (`/v1/ipam/allocate`, `/v1/ipam/release`). Pods are
real core/v1 objects (no kubelet runs them, but they exist with their uid, labels, annotations
and owner); pools are SpiderIPPool objects created through the API server. What the agents
record is read back from the cluster directly: the SpiderEndpoint in the pod's namespace and
one IPClaim object per address.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import random
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client

from spidernet.control.client import Client, ServiceError
from spidernet.control.store.kube_names import INTERNAL
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.kubecluster import Cluster
from spidernet.testbed.kubeobjects import claims, endpoint, endpoints, ipam_call, make_pod

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
PODS = 60


def agent_args(cluster: Cluster, node: str) -> tuple[str, ...]:
    return ("--kube", "--kubeconfig", str(cluster.kubeconfig), "--node", node)


@pytest.fixture(scope="module")
def agents(k8s_cluster: Cluster, store_crds: list[str]) -> Iterator[list[ServiceProcess]]:
    """Three agents, nodes node-a, node-b and node-c, for the whole module."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(scratch_service(*agent_args(k8s_cluster, f"node-{n}")))
            for n in "abc"
        ]


@pytest.fixture
def make_pool(custom: client.CustomObjectsApi) -> Iterator[Callable[[int], tuple[str, str]]]:
    """Create a SpiderIPPool of `size` addresses in a /24 of its own: (name, subnet)."""
    made: list[str] = []

    def make(size: int) -> tuple[str, str]:
        name = f"pool-{uuid.uuid4().hex[:8]}"
        net = ipaddress.ip_network(f"10.{random.randrange(256)}.{random.randrange(256)}.0/24")
        first, last = net[10], net[10 + size - 1]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SpiderIPPool",
            "metadata": {"name": name},
            "spec": {"ipVersion": 4, "subnet": str(net), "ips": [f"{first}-{last}"]},
        }
        custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", body)
        made.append(name)
        return name, str(net)

    yield make
    for name in made:
        # What a test left allocated goes first: claims are cluster-scoped objects.
        for claim in claims(custom, name):
            custom.delete_cluster_custom_object(
                INTERNAL.group, INTERNAL.version, INTERNAL.plural, claim["metadata"]["name"]
            )
        custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", name)


def allocate(agent: ServiceProcess, call: dict[str, Any]) -> str:
    """The address (with prefix) the agent answers for eth0."""
    answer = agent.client.request("POST", "/v1/ipam/allocate", call)
    ips = [ip["address"] for ip in answer["ips"] if ip["nic"] == "eth0"]
    assert len(ips) == 1, answer
    return str(ips[0])


def metric(agent: ServiceProcess, name: str) -> float:
    port = agent.metrics_port()
    assert port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_allocation_is_recorded_in_the_cluster_and_release_removes_it(
    agents: list[ServiceProcess],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    make_pool: Callable[[int], tuple[str, str]],
) -> None:
    pool, subnet = make_pool(8)
    uid = make_pod(core, namespace, "web-1", labels={"app": "web"})
    call = ipam_call(namespace, "web-1", uid, pool)

    address = allocate(agents[0], call)
    ip = ipaddress.ip_interface(address)
    assert ip.network == ipaddress.ip_network(subnet)

    ep = endpoint(custom, namespace, "web-1")
    assert ep is not None
    current = ep["status"]["current"]
    assert (current["uid"], current["node"]) == (uid, "node-a")
    assert [(e["interface"], e["ipv4"], e["ipv4Pool"]) for e in current["ips"]] == [
        ("eth0", address, pool)
    ]
    assert ep["status"]["ownerControllerType"] == "Pod"
    found = claims(custom, pool)
    assert len(found) == 1
    spec = found[0]["spec"]
    assert (spec["kind"], spec["name"]) == ("IPClaim", str(ip.ip))
    since = spec["body"].pop("since")
    assert spec["body"] == {
        "pod": f"{namespace}/web-1",
        "podUid": uid,
        "interface": "eth0",
        "node": "node-a",
    }
    assert abs(datetime.fromisoformat(since).timestamp() - time.time()) < 600
    # The same sandbox again (a retried ADD, here through another node's agent): the same
    # address, nothing new written.
    assert allocate(agents[1], call) == address
    assert len(claims(custom, pool)) == 1

    assert agents[0].client.request("POST", "/v1/ipam/release", call) == {"released": True}
    assert endpoint(custom, namespace, "web-1") is None
    assert claims(custom, pool) == []
    # DEL again is a no-op.
    assert agents[0].client.request("POST", "/v1/ipam/release", call) == {"released": True}


def test_pod_facts_come_from_the_api_server(
    agents: list[ServiceProcess],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    make_pool: Callable[[int], tuple[str, str]],
) -> None:
    default_pool, _ = make_pool(4)
    chosen, subnet = make_pool(4)
    # The pod's own annotation picks its pool over the call's default (reference §2.3), and its
    # controller owner is recorded: both only exist on the real Pod object.
    pool_annotation = {"ipam.spidernet.io/ippool": json.dumps({"ipv4": [chosen]})}
    uid = make_pod(
        core, namespace, "db-0", annotations=pool_annotation, owner=("StatefulSet", "db")
    )
    # The call names the pod only; its uid comes from the Pod object too.
    call = ipam_call(namespace, "db-0", "", default_pool)

    address = allocate(agents[2], call)

    assert ipaddress.ip_interface(address).network == ipaddress.ip_network(subnet)
    assert claims(custom, default_pool) == []
    ep = endpoint(custom, namespace, "db-0")
    assert ep is not None
    assert ep["status"]["current"]["uid"] == uid
    assert (ep["status"]["ownerControllerType"], ep["status"]["ownerControllerName"]) == (
        "StatefulSet",
        "db",
    )
    [claim] = claims(custom, chosen)
    assert claim["spec"]["body"]["podUid"] == uid
    # The agent reads the cluster's pods but never writes them.
    pod_doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": namespace, "labels": {"x": "y"}},
    }
    with pytest.raises(ServiceError, match="read-only") as refused:
        agents[2].client.request("POST", "/v1/resources", pod_doc)
    assert refused.value.status == 409
    stored = core.read_namespaced_pod("db-0", namespace).metadata
    assert stored is not None
    assert stored.labels is None
    listed = agents[2].client.request("GET", "/v1/resources/Pod")["items"]
    assert {"uid": uid, "namespace": namespace} in [
        {"uid": p["metadata"].get("uid"), "namespace": p["metadata"].get("namespace")}
        for p in listed
    ]


def test_three_agents_allocate_for_sixty_pods_concurrently(
    agents: list[ServiceProcess],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    make_pool: Callable[[int], tuple[str, str]],
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    pool, subnet = make_pool(PODS)
    pods = [(f"pod-{n}", make_pod(core, namespace, f"pod-{n}")) for n in range(PODS)]
    conflicts_before = sum(
        metric(a, "spidernet_ipam_allocation_conflict_counts_total") for a in agents
    )

    def run(n: int) -> tuple[str, str]:
        name, uid = pods[n]
        return name, allocate(agents[n % len(agents)], ipam_call(namespace, name, uid, pool))

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(agents) * 4) as workers:
        answers = dict(workers.map(run, range(PODS)))
    seconds = time.perf_counter() - start

    assert len(answers) == PODS
    assert len(set(answers.values())) == PODS
    assert all(
        ipaddress.ip_interface(a).network == ipaddress.ip_network(subnet) for a in answers.values()
    )
    found = claims(custom, pool)
    assert len(found) == PODS
    assert {c["spec"]["name"] for c in found} == {
        str(ipaddress.ip_interface(a).ip) for a in answers.values()
    }
    by_pod = {c["spec"]["body"]["pod"]: c["spec"]["name"] for c in found}
    assert by_pod == {
        f"{namespace}/{name}": str(ipaddress.ip_interface(a).ip) for name, a in answers.items()
    }
    recorded = endpoints(custom, namespace)
    assert len(recorded) == PODS
    nodes = {e["status"]["current"]["node"] for e in recorded}
    assert nodes == {"node-a", "node-b", "node-c"}
    conflicts = (
        sum(metric(a, "spidernet_ipam_allocation_conflict_counts_total") for a in agents)
        - conflicts_before
    )
    record_testsuite_property("agent_allocations", PODS)
    record_testsuite_property("agent_allocation_seconds", f"{seconds:.2f}")
    record_testsuite_property("agent_allocations_per_second", f"{PODS / seconds:.1f}")
    record_testsuite_property("agent_write_conflicts", int(conflicts))

    # Release all of them, again through the three agents.
    def release(n: int) -> None:
        name, uid = pods[n]
        agents[n % len(agents)].client.request(
            "POST", "/v1/ipam/release", ipam_call(namespace, name, uid, pool)
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(agents) * 4) as workers:
        list(workers.map(release, range(PODS)))
    assert claims(custom, pool) == []
    assert endpoints(custom, namespace) == []


def test_a_restarted_agent_answers_from_the_cluster_state(
    k8s_cluster: Cluster,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    make_pool: Callable[[int], tuple[str, str]],
) -> None:
    pool, _ = make_pool(4)
    first_uid = make_pod(core, namespace, "api-0")
    second_uid = make_pod(core, namespace, "api-1")
    first = ipam_call(namespace, "api-0", first_uid, pool)
    second = ipam_call(namespace, "api-1", second_uid, pool)

    with scratch_service(*agent_args(k8s_cluster, "node-r")) as agent:
        address = allocate(agent, first)
        socket = agent.socket
        agent.stop()
        assert not agent.alive()
        agent.start()  # the same node, a new process: nothing kept but the cluster's state
        assert agent.socket == socket
        health = Client(socket).request("GET", "/v1/healthz")
        assert health == {"ok": True, "node": "node-r", "stateDir": str(agent.state_dir)}
        # The same sandbox: the same address, from the SpiderEndpoint in the cluster.
        assert allocate(agent, first) == address
        # Another pod: not the address the cluster says is taken.
        other = allocate(agent, second)
        assert other != address
        assert {c["spec"]["name"] for c in claims(custom, pool)} == {
            str(ipaddress.ip_interface(a).ip) for a in (address, other)
        }
        shown = agent.client.request("GET", f"/v1/endpoints/{namespace}/api-0")
        assert shown["status"]["current"]["uid"] == first_uid
        for call in (first, second):
            agent.client.request("POST", "/v1/ipam/release", call)
    assert claims(custom, pool) == []
