"""`spidernet controller`: IP garbage collection and pool status on a real kube-apiserver.

Addresses are allocated by real `spidernet serve --kube` agents (called as spidernet-ipam calls
them); pods are then deleted, terminated or scaled away through the API server while no agent
releases anything, and a real `spidernet controller` process (one or two, on a Lease) must
reclaim exactly what is no longer in use. No kubelet or controller-manager runs: a pod bound to
a node stays Terminating after its delete, and a StatefulSet makes no pods of its own.
"""

from __future__ import annotations

import ipaddress
import json
import random
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.store.kube_names import INTERNAL
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.kubecluster import Cluster
from spidernet.testbed.kubecontroller import Controller, start_controller
from spidernet.testbed.kubeobjects import claims, make_pod
from spidernet.testbed.waiting import wait_for

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
WAIT_S = 30.0


@pytest.fixture
def apps(k8s_api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(k8s_api)


@pytest.fixture
def pool(custom: client.CustomObjectsApi, store_crds: list[str]) -> Iterator[str]:
    """A SpiderIPPool of 16 addresses; its claims and itself removed afterwards."""
    name = f"pool-{uuid.uuid4().hex[:8]}"
    net = ipaddress.ip_network(f"10.{random.randrange(256)}.{random.randrange(256)}.0/24")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"ipVersion": 4, "subnet": str(net), "ips": [f"{net[10]}-{net[25]}"]},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", body)
    yield name
    for claim in claims(custom, name):
        custom.delete_cluster_custom_object(
            INTERNAL.group, INTERNAL.version, INTERNAL.plural, claim["metadata"]["name"]
        )
    custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", name)


@pytest.fixture
def agent(k8s_cluster: Cluster, store_crds: list[str]) -> Iterator[ServiceProcess]:
    args = ("--kube", "--kubeconfig", str(k8s_cluster.kubeconfig), "--node", "gc-node")
    with scratch_service(*args) as proc:
        yield proc


@pytest.fixture(name="start_controller")
def start_controllers(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[Callable[[str], Controller]]:
    """Start `spidernet controller` processes on the Lease `gc` in the test's namespace."""
    started: list[Controller] = []

    def start(identity: str) -> Controller:
        ctl = start_controller(
            k8s_cluster, namespace, identity, tmp_path / f"controller-{identity}.log"
        )
        started.append(ctl)
        return ctl

    yield start
    for ctl in started:
        ctl.stop()


def allocate(agent: ServiceProcess, namespace: str, pod: str, uid: str, pool: str) -> str:
    """The address the agent gives the pod's eth0 (without prefix)."""
    call = {
        "containerID": f"ctr-{pod}-{uid[:8]}",
        "ifName": "eth0",
        "netNamespace": f"/var/run/netns/{pod}",
        "network": "macvlan-underlay",
        "podNamespace": namespace,
        "podName": pod,
        "podUID": uid,
        "defaultIPv4IPPool": [pool],
    }
    answer = agent.client.request("POST", "/v1/ipam/allocate", call)
    ips = [ip["address"] for ip in answer["ips"] if ip["nic"] == "eth0"]
    assert len(ips) == 1, answer
    return str(ips[0]).split("/", maxsplit=1)[0]


def claimed(custom: client.CustomObjectsApi, pool: str) -> set[str]:
    return {c["spec"]["name"] for c in claims(custom, pool)}


def has_endpoint(custom: client.CustomObjectsApi, namespace: str, pod: str) -> bool:
    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "spiderendpoints", pod)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def allocated_count(custom: client.CustomObjectsApi, pool: str) -> int | None:
    doc = custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", pool)
    assert isinstance(doc, dict)
    count = doc.get("status", {}).get("allocatedIPCount")
    return None if count is None else int(count)


def lease_holder(k8s_api: client.ApiClient, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(k8s_api).read_namespaced_lease("gc", namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    assert lease.spec is not None
    return lease.spec.holder_identity


def test_deleted_and_terminating_pods_are_reclaimed_and_live_ones_kept(
    agent: ServiceProcess,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pool: str,
    start_controller: Callable[[str], Controller],
) -> None:
    node = f"gc-{uuid.uuid4().hex[:8]}"
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=node)))
    try:
        pods = {
            "gone-1": make_pod(core, namespace, "gone-1"),
            "gone-2": make_pod(core, namespace, "gone-2"),
            "live": make_pod(core, namespace, "live"),
            "term-short": make_pod(core, namespace, "term-short", node=node),
            "term-long": make_pod(core, namespace, "term-long", node=node),
        }
        ips = {name: allocate(agent, namespace, name, uid, pool) for name, uid in pods.items()}
        assert claimed(custom, pool) == set(ips.values())
        agent.stop()  # nothing on the node releases anything from here on

        core.delete_namespaced_pod("gone-1", namespace)
        core.delete_namespaced_pod("gone-2", namespace)
        # Bound to a node with no kubelet: they stay Terminating.
        core.delete_namespaced_pod("term-short", namespace, grace_period_seconds=1)
        core.delete_namespaced_pod("term-long", namespace, grace_period_seconds=3600)
        short = core.read_namespaced_pod("term-short", namespace)
        assert short.metadata is not None
        assert short.metadata.deletion_timestamp is not None

        ctl = start_controller("solo")
        kept = {ips["live"], ips["term-long"]}
        wait_for("the reclaims", lambda: claimed(custom, pool) == kept)
        for name in ("gone-1", "gone-2", "term-short"):
            assert not has_endpoint(custom, namespace, name)
        for name in ("live", "term-long"):
            assert has_endpoint(custom, namespace, name)
        wait_for("allocatedIPCount 2", lambda: allocated_count(custom, pool) == 2)
        # (The log line follows the deletes.)
        wait_for("three reclaim lines", lambda: len(ctl.reclaims()) >= 3)
        lines = ctl.reclaims()
        assert len(lines) == 3, lines
        assert any(f"'{namespace}/gone-1'" in ln and "pod gone" in ln for ln in lines)
        assert any(
            f"'{namespace}/term-short'" in ln and "terminating past its grace" in ln for ln in lines
        )
        assert ctl.stop() == 0
        # The live pod goes too: the next controller reclaims it and the count follows.
        core.delete_namespaced_pod("live", namespace)
        start_controller("solo-2")
        wait_for("the live pod's reclaim", lambda: claimed(custom, pool) == {ips["term-long"]})
        wait_for("allocatedIPCount 1", lambda: allocated_count(custom, pool) == 1)
    finally:
        for name in ("term-short", "term-long"):
            try:
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            except ApiException as e:
                if e.status != 404:
                    raise
        core.delete_node(node)


def test_statefulset_pods_keep_their_addresses_while_wanted(
    agent: ServiceProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pool: str,
    start_controller: Callable[[str], Controller],
) -> None:
    labels = {"app": "db"}
    sts = apps.create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="db"),
            spec=client.V1StatefulSetSpec(
                replicas=2,
                service_name="db",
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[
                            client.V1Container(name="app", image="registry.k8s.io/pause:3.10")
                        ]
                    ),
                ),
            ),
        ),
    )
    assert sts.metadata is not None
    owner = ("StatefulSet", "db", str(sts.metadata.uid))
    ips = {
        name: allocate(agent, namespace, name, make_pod(core, namespace, name, owner=owner), pool)
        for name in ("db-0", "db-1")
    }
    for name in ips:
        core.delete_namespaced_pod(name, namespace)
    ctl = start_controller("sts")
    # The first pass writes the pool's count after its GC has seen both pods gone.
    wait_for("a full pass", lambda: allocated_count(custom, pool) == 2)
    assert claimed(custom, pool) == set(ips.values())
    assert has_endpoint(custom, namespace, "db-0")
    assert has_endpoint(custom, namespace, "db-1")
    assert ctl.reclaims() == []
    # Recreated with the same name (a new uid): the agent gives the same address back.
    uid = make_pod(core, namespace, "db-0", owner=owner)
    assert allocate(agent, namespace, "db-0", uid, pool) == ips["db-0"]
    # Scaled down to one replica: ordinal 1 is no longer wanted.
    apps.patch_namespaced_stateful_set("db", namespace, {"spec": {"replicas": 1}})
    wait_for("db-1's reclaim", lambda: claimed(custom, pool) == {ips["db-0"]})
    assert not has_endpoint(custom, namespace, "db-1")
    assert has_endpoint(custom, namespace, "db-0")
    wait_for("db-1's reclaim line", lambda: len(ctl.reclaims()) >= 1)
    (line,) = ctl.reclaims()
    assert f"'{namespace}/db-1'" in line
    assert "scaled below" in line
    wait_for("allocatedIPCount 1", lambda: allocated_count(custom, pool) == 1)


def test_only_the_lease_holder_reclaims_and_a_standby_takes_over(
    agent: ServiceProcess,
    k8s_api: client.ApiClient,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pool: str,
    start_controller: Callable[[str], Controller],
) -> None:
    ips = {
        name: allocate(agent, namespace, name, make_pod(core, namespace, name), pool)
        for name in ("first", "second")
    }
    one = start_controller("one")
    wait_for("one to hold the lease", lambda: lease_holder(k8s_api, namespace) == "one")
    two = start_controller("two")
    wait_for("two to start", lambda: any("standing by" in ln for ln in two.lines()))

    core.delete_namespaced_pod("first", namespace)
    wait_for("first's reclaim", lambda: claimed(custom, pool) == {ips["second"]})
    wait_for("one's reclaim line", lambda: len(one.reclaims()) >= 1)
    assert len(one.reclaims()) == 1
    assert two.reclaims() == []
    assert lease_holder(k8s_api, namespace) == "one"

    one.stop(signal.SIGKILL)  # no release: two waits for the lease to expire (3 s)
    wait_for("two to take over", lambda: lease_holder(k8s_api, namespace) == "two")
    core.delete_namespaced_pod("second", namespace)
    wait_for("second's reclaim", lambda: claimed(custom, pool) == set())
    wait_for("two's reclaim line", lambda: len(two.reclaims()) >= 1)
    assert len(two.reclaims()) == 1
    assert f"'{namespace}/second'" in two.reclaims()[0]

    assert two.stop() == 0  # SIGTERM: a clean stop clears the holder
    assert not lease_holder(k8s_api, namespace)


def test_the_controller_generates_the_nad_of_a_spidermultusconfig(
    store_crds: list[str],
    custom: client.CustomObjectsApi,
    namespace: str,
    start_controller: Callable[[str], Controller],
) -> None:
    smc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderMultusConfig",
        "metadata": {"name": "vlan100", "namespace": namespace},
        "spec": {
            "cniType": "macvlan",
            "macvlan": {"master": ["eth1"], "vlanID": 100, "ippools": {"ipv4": ["v4"]}},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "spidermultusconfigs", smc)
    start_controller("multus")
    nad_api = ("k8s.cni.cncf.io", "v1", namespace, "network-attachment-definitions")

    def nad() -> dict[str, Any] | None:
        try:
            got = custom.get_namespaced_custom_object(*nad_api, "vlan100")
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        assert isinstance(got, dict)
        return got

    wait_for("the NAD", lambda: nad() is not None)
    found = nad()
    assert found is not None
    plugins = [p["type"] for p in json.loads(found["spec"]["config"])["plugins"]]
    assert plugins == ["spidernet-ifacer", "macvlan", "spidernet-coordinator"]
    # the controller also removes it once its SpiderMultusConfig is gone
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "spidermultusconfigs", "vlan100"
    )
    wait_for("the NAD's removal", lambda: nad() is None)
