"""SpiderSubnet auto pools on a real kube-apiserver: a real `spidernet controller` makes, sizes
and reclaims them, a real `spidernet serve --kube` agent allocates from them.

No controller-manager runs here, so the test plays its part: it creates the Deployment, then a
ReplicaSet owned by it, then Pods owned by the ReplicaSet (real ownerReferences and uids), and
changes `spec.replicas` itself. Nothing cascades on delete either: the test deletes the
ReplicaSet and the Pods with the Deployment.
"""

from __future__ import annotations

import ipaddress
import json
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.client import ServiceError
from spidernet.control.model.iprange import IntervalSet
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.kubecluster import Cluster
from spidernet.testbed.kubecontroller import start_controller
from spidernet.testbed.kubeobjects import make_pod
from spidernet.testbed.waiting import wait_for

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
WAIT_S = 30.0
LABEL_APP_UID = "ipam.spidernet.io/owner-application-uid"
LABEL_OWNER_SUBNET = "ipam.spidernet.io/owner-spider-subnet"


@pytest.fixture
def apps(k8s_api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(k8s_api)


@pytest.fixture
def subnet(custom: client.CustomObjectsApi, store_crds: list[str]) -> Iterator[tuple[str, str]]:
    """A SpiderSubnet of 31 addresses (.10-.40 of a random /24): its name and CIDR."""
    name = f"sub-{uuid.uuid4().hex[:8]}"
    net = ipaddress.ip_network(f"10.{random.randrange(256)}.{random.randrange(256)}.0/24")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderSubnet",
        "metadata": {"name": name},
        "spec": {
            "ipVersion": 4,
            "subnet": str(net),
            "ips": [f"{net[10]}-{net[40]}"],
            "gateway": str(net[1]),
        },
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "spidersubnets", body)
    yield name, str(net)
    # Whatever auto pools the test left (kept ones, or a failure's), then the subnet.
    left = custom.list_cluster_custom_object(
        GROUP, VERSION, "spiderippools", label_selector=f"{LABEL_OWNER_SUBNET}={name}"
    )
    assert isinstance(left, dict)
    for pool in left["items"]:
        try:
            custom.delete_cluster_custom_object(
                GROUP, VERSION, "spiderippools", pool["metadata"]["name"]
            )
        except ApiException as e:
            if e.status != 404:
                raise
    custom.delete_cluster_custom_object(GROUP, VERSION, "spidersubnets", name)


@pytest.fixture
def agent(k8s_cluster: Cluster, store_crds: list[str]) -> Iterator[ServiceProcess]:
    args = (
        "--kube",
        "--kubeconfig",
        str(k8s_cluster.kubeconfig),
        "--node",
        "auto-node",
        "--auto-pool-retries",
        "60",
        "--auto-pool-interval",
        "0.25",
    )
    with scratch_service(*args) as proc:
        yield proc


@pytest.fixture
def controller(k8s_cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """A running `spidernet controller` (passes every 0.5 s); its log."""
    log = tmp_path / "controller.log"
    ctl = start_controller(k8s_cluster, namespace, "autopool", log, lease="autopool", margin=None)
    proc = ctl.proc
    try:
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def template(app: str, annotations: dict[str, str]) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": app[:63]}, annotations=annotations),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="app", image="registry.k8s.io/pause:3.10")]
        ),
    )


def owner(kind: str, name: str, uid: str) -> list[client.V1OwnerReference]:
    return [
        client.V1OwnerReference(
            api_version="apps/v1", kind=kind, name=name, uid=uid, controller=True
        )
    ]


def call(namespace: str, pod: str, uid: str) -> dict[str, Any]:
    """`/v1/ipam/allocate` as spidernet-ipam sends it (no pool named: the pod's annotation
    decides)."""
    return {
        "containerID": f"ctr-{pod}-{uid[:8]}",
        "ifName": "eth0",
        "netNamespace": f"/var/run/netns/{pod}",
        "network": "macvlan-underlay",
        "podNamespace": namespace,
        "podName": pod,
        "podUID": uid,
    }


def allocate(agent: ServiceProcess, namespace: str, pod: str, uid: str) -> tuple[str, str]:
    """(pool, address) the agent gives the pod's eth0."""
    answer = agent.client.request("POST", "/v1/ipam/allocate", call(namespace, pod, uid))
    ips = [ip["address"] for ip in answer["ips"] if ip["nic"] == "eth0"]
    assert len(ips) == 1, answer
    address = str(ips[0]).split("/", maxsplit=1)[0]
    return address, answer["ips"][0]["gateway"]


def release(agent: ServiceProcess, namespace: str, pod: str, uid: str) -> None:
    agent.client.request("POST", "/v1/ipam/release", call(namespace, pod, uid))


def auto_pools(custom: client.CustomObjectsApi, app_uid: str) -> list[dict[str, Any]]:
    doc = custom.list_cluster_custom_object(
        GROUP, VERSION, "spiderippools", label_selector=f"{LABEL_APP_UID}={app_uid}"
    )
    assert isinstance(doc, dict)
    items: list[dict[str, Any]] = doc["items"]
    return items


def pool_ips(pool: dict[str, Any]) -> set[str]:
    ips = IntervalSet.parse(pool["spec"]["ips"], 4)
    return {str(ipaddress.ip_address(ip)) for lo, hi in ips for ip in range(lo, hi + 1)}


def sized(
    custom: client.CustomObjectsApi, app_uid: str, n: int
) -> Callable[[], dict[str, Any] | None]:
    """A check: the application's one auto pool, once it holds `n` addresses."""

    def check() -> dict[str, Any] | None:
        pools = auto_pools(custom, app_uid)
        return pools[0] if len(pools) == 1 and len(pool_ips(pools[0])) == n else None

    return check


def uid_of(obj: Any) -> str:
    assert obj.metadata is not None
    assert obj.metadata.uid
    return str(obj.metadata.uid)


def pod_names(core: client.CoreV1Api, namespace: str) -> set[str]:
    return {str(p.metadata.name) for p in core.list_namespaced_pod(namespace).items if p.metadata}


def subnet_status(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    doc = custom.get_cluster_custom_object(GROUP, VERSION, "spidersubnets", name)
    assert isinstance(doc, dict)
    status: dict[str, Any] = doc.get("status") or {}
    return status


def make_deployment(
    apps: client.AppsV1Api,
    namespace: str,
    name: str,
    replicas: int,
    annotations: dict[str, str],
) -> tuple[str, str]:
    """A Deployment and the ReplicaSet it owns (as a controller-manager would make it);
    their uids."""
    deploy = apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1DeploymentSpec(
                replicas=replicas,
                selector=client.V1LabelSelector(match_labels={"app": name[:63]}),
                template=template(name, annotations),
            ),
        ),
    )
    rs = apps.create_namespaced_replica_set(
        namespace,
        client.V1ReplicaSet(
            metadata=client.V1ObjectMeta(
                name=f"{name}-rs",
                owner_references=owner("Deployment", name, uid_of(deploy)),
            ),
            spec=client.V1ReplicaSetSpec(
                replicas=replicas,
                selector=client.V1LabelSelector(match_labels={"app": name[:63]}),
                template=template(name, annotations),
            ),
        ),
    )
    return uid_of(deploy), uid_of(rs)


def scale(apps: client.AppsV1Api, namespace: str, name: str, replicas: int) -> None:
    body = {"spec": {"replicas": replicas}}
    apps.patch_namespaced_deployment(name, namespace, body)
    apps.patch_namespaced_replica_set(f"{name}-rs", namespace, body)


def refuse_bare_pod(
    agent: ServiceProcess, core: client.CoreV1Api, namespace: str, anno: dict[str, str]
) -> None:
    """A bare pod cannot use an auto pool (nor in Spiderpool): a config error, at once."""
    bare = core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="bare", annotations=anno),
            spec=client.V1PodSpec(containers=[client.V1Container(name="a", image="pause")]),
        ),
    )
    with pytest.raises(ServiceError) as refused:
        allocate(agent, namespace, "bare", uid_of(bare))
    assert "bare pod cannot use an auto pool" in refused.value.message


@dataclass
class Web:
    """The test's Deployment `web`: the agent and API clients it runs with, its pods'
    annotations, its uid and its ReplicaSet's, its pods' uids and what the agent gave each pod
    (address, gateway)."""

    agent: ServiceProcess
    apps: client.AppsV1Api
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    namespace: str
    anno: dict[str, str]
    deploy_uid: str
    rs_uid: str
    pods: dict[str, str]
    got: dict[str, tuple[str, str]]

    def check_first_pool(
        self, subnet: tuple[str, str]
    ) -> tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The 3 replicas' pool of 4: named after the Deployment, the lowest four of the
        subnet with its gateway, counted in the subnet's status. Its name, and the subnet."""
        sub, cidr = subnet
        pool = wait_for(
            "an auto pool of 4 (3 replicas + 1)", sized(self.custom, self.deploy_uid, 4)
        )
        name: str = pool["metadata"]["name"]
        assert name == f"auto4-web-eth0-{self.deploy_uid.rsplit('-', 1)[-1][:5]}"
        labels = pool["metadata"]["labels"]
        assert labels["ipam.spidernet.io/owner-spider-subnet"] == sub
        assert labels["ipam.spidernet.io/owner-application-kind"] == "Deployment"
        assert pool["spec"]["subnet"] == cidr
        net = ipaddress.ip_network(cidr)
        # The lowest four of the subnet, its gateway inherited.
        assert pool_ips(pool) == {str(net[i]) for i in range(10, 14)}
        addresses = {a for a, _ in self.got.values()}
        assert len(addresses) == 3
        assert addresses <= pool_ips(pool)
        assert {gw for _, gw in self.got.values()} == {str(net[1])}
        status = wait_for(
            "the subnet's status",
            lambda: (
                s if (s := subnet_status(self.custom, sub)).get("allocatedIPCount") == 4 else None
            ),
        )
        assert set(json.loads(status["controlledIPPools"])) == {name}
        return name, net

    def scale_up_to_five(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        """Scale to 5: the pool grows to 6; the new pods allocate (the last may wait for
        it)."""
        scale(self.apps, self.namespace, "web", 5)
        for i in (3, 4):
            self.pods[f"web-rs-{i}"] = make_pod(
                self.core,
                self.namespace,
                f"web-rs-{i}",
                annotations=self.anno,
                owner=("ReplicaSet", "web-rs", self.rs_uid),
            )
            self.got[f"web-rs-{i}"] = allocate(
                self.agent, self.namespace, f"web-rs-{i}", self.pods[f"web-rs-{i}"]
            )
        pool = wait_for("the pool to grow to 6", sized(self.custom, self.deploy_uid, 6))
        assert pool_ips(pool) == {str(net[i]) for i in range(10, 16)}
        addresses = {a for a, _ in self.got.values()}
        assert len(addresses) == 5
        assert addresses <= pool_ips(pool)

    def scale_down_to_two(self) -> None:
        """Scale to 2: three pods released and gone; the pool shrinks to 3, keeping the two
        in use."""
        for i in (2, 3, 4):
            release(self.agent, self.namespace, f"web-rs-{i}", self.pods[f"web-rs-{i}"])
            self.core.delete_namespaced_pod(f"web-rs-{i}", self.namespace)
        scale(self.apps, self.namespace, "web", 2)
        pool = wait_for("the pool to shrink to 3", sized(self.custom, self.deploy_uid, 3))
        kept = {self.got["web-rs-0"][0], self.got["web-rs-1"][0]}
        assert kept <= pool_ips(pool)

    def delete(self) -> None:
        """The Deployment goes (with its ReplicaSet and pods, released): so does its pool."""
        for i in (0, 1):
            release(self.agent, self.namespace, f"web-rs-{i}", self.pods[f"web-rs-{i}"])
            self.core.delete_namespaced_pod(f"web-rs-{i}", self.namespace)
        self.apps.delete_namespaced_replica_set("web-rs", self.namespace)
        self.apps.delete_namespaced_deployment("web", self.namespace)
        wait_for("the pool to be deleted", lambda: not auto_pools(self.custom, self.deploy_uid))


def test_deployment_auto_pool_follows_scale_and_disappears_with_it(
    agent: ServiceProcess,
    controller: Path,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    subnet: tuple[str, str],
) -> None:
    sub, _ = subnet
    anno = {"ipam.spidernet.io/subnet": json.dumps({"ipv4": [sub]})}
    refuse_bare_pod(agent, core, namespace, anno)

    deploy_uid, rs_uid = make_deployment(apps, namespace, "web", 3, anno)
    pods = {
        f"web-rs-{i}": make_pod(
            core, namespace, f"web-rs-{i}", annotations=anno, owner=("ReplicaSet", "web-rs", rs_uid)
        )
        for i in range(3)
    }
    # At once: the agent waits for the controller to make the pool (--auto-pool-*).
    started = time.monotonic()
    got = {p: allocate(agent, namespace, p, uid) for p, uid in pods.items()}
    first_wait = time.monotonic() - started
    web = Web(agent, apps, core, custom, namespace, anno, deploy_uid, rs_uid, pods, got)
    name, net = web.check_first_pool(subnet)
    web.scale_up_to_five(net)
    web.scale_down_to_two()
    web.delete()
    status = wait_for(
        "the subnet's status to drop it",
        lambda: s if (s := subnet_status(custom, sub)).get("allocatedIPCount") == 0 else None,
    )
    assert "controlledIPPools" not in status
    log = controller.read_text()
    assert f"created auto pool {name}" in log
    assert f"deleted auto pool {name}: its application Deployment {namespace}/web is gone" in log
    print(f"first allocation waited {first_wait:.1f}s for the pool")


def test_statefulset_pod_gets_its_address_back_and_reclaim_false_keeps_the_pool(
    agent: ServiceProcess,
    controller: Path,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    subnet: tuple[str, str],
) -> None:
    sub, _ = subnet
    anno = {"ipam.spidernet.io/subnet": json.dumps({"ipv4": [sub]})}
    sts = apps.create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="db"),
            spec=client.V1StatefulSetSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels={"app": "db"}),
                service_name="db",
                template=template("db", anno),
            ),
        ),
    )
    sts_uid = uid_of(sts)
    kept_anno = {
        **anno,
        "ipam.spidernet.io/ippool-reclaim": "false",
        "ipam.spidernet.io/ippool-ip-number": "2",
    }
    keep_uid, _ = make_deployment(apps, namespace, "keep", 1, kept_anno)
    # A name too long for a label value (63): the API server refuses that pool; the
    # controller logs it and serves the others.
    long_name = "l" * 70
    make_deployment(apps, namespace, long_name, 1, anno)

    uid = make_pod(core, namespace, "db-0", annotations=anno, owner=("StatefulSet", "db", sts_uid))
    address, _ = allocate(agent, namespace, "db-0", uid)
    pool = wait_for("the StatefulSet's pool of 2", sized(custom, sts_uid, 2))
    assert address in pool_ips(pool)
    kept = wait_for("the fixed pool of 2", sized(custom, keep_uid, 2))
    assert kept["metadata"]["labels"]["ipam.spidernet.io/ippool-reclaim"] == "false"
    refused = wait_for(
        "the refusal of the long name's pool",
        lambda: [line for line in controller.read_text().splitlines() if long_name in line],
    )
    assert "skipped until the next pass" in refused[0]
    assert "metadata.labels" in refused[0]
    apps.delete_namespaced_replica_set(f"{long_name}-rs", namespace)
    apps.delete_namespaced_deployment(long_name, namespace)

    # The pod is deleted (DEL first, as a kubelet does) and made again with a new uid.
    release(agent, namespace, "db-0", uid)
    core.delete_namespaced_pod("db-0", namespace)
    wait_for("db-0 gone", lambda: "db-0" not in pod_names(core, namespace))
    new_uid = make_pod(
        core, namespace, "db-0", annotations=anno, owner=("StatefulSet", "db", sts_uid)
    )
    assert new_uid != uid
    again, _ = allocate(agent, namespace, "db-0", new_uid)
    assert again == address

    # Both applications go. The StatefulSet's pool goes once the GC has reclaimed db-0's
    # address; the pool marked ippool-reclaim=false stays.
    release(agent, namespace, "db-0", new_uid)
    core.delete_namespaced_pod("db-0", namespace)
    apps.delete_namespaced_stateful_set("db", namespace)
    apps.delete_namespaced_replica_set("keep-rs", namespace)
    apps.delete_namespaced_deployment("keep", namespace)
    wait_for("the StatefulSet's pool to be deleted", lambda: not auto_pools(custom, sts_uid))
    # The pass that deleted it saw the kept Deployment gone too, and kept its pool.
    assert len(auto_pools(custom, keep_uid)) == 1
    assert f"deleted auto pool {kept['metadata']['name']}" not in controller.read_text()
