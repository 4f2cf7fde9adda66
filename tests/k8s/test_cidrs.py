"""The SpiderCoordinator status on a real kube-apiserver: each CIDR source made as the objects
a cluster has (a kube-controller-manager Pod, the ConfigMaps kubeadm-config and cilium-config,
Calico's IPPool CRD and pools, ServiceCIDRs), the controller's coordinator-status reconciler
run against it after each, and the status of a SpiderCoordinator of each podCIDRType read back.
Then the agent's coordinator config, from the same API server, carries the status CIDRs where
a NAD names none.

The API server serves networking.k8s.io/v1 ServiceCIDRs (GA since 1.33) and makes the default
one, `kubernetes`, from its --service-cluster-ip-range. Everything made in kube-system (and
the Calico CRD, the extra ServiceCIDR) is removed afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import trio
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spidernet.control.controller.cidrs_sync import CoordinatorStatus
from spidernet.control.http import Peer, Request
from spidernet.control.store.kube import KubeStore
from spidernet.netconf.coordinator.config import parse_coordinator
from spidernet.node.agent.app import App
from spidernet.node.agent.ipam import IpamCore
from spidernet.testbed import spidercrds

GROUP, VERSION, PLURAL = "spiderpool.spidernet.io", "v2beta1", "spidercoordinators"
KUBE_SYSTEM = "kube-system"
CALICO_CRD = "ippools.crd.projectcalico.org"
KCM_POD = "kube-controller-manager-cp1"
TYPES = ("auto", "cluster", "calico", "cilium", "none")
NOT_FOUND = 404
CONFLICT = 409
ESTABLISHED_TIMEOUT_S = 30.0
CLUSTER_CONFIGURATION = (
    "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
    "networking:\n  dnsDomain: cluster.local\n"
    "  podSubnet: 10.244.0.0/16,fd00:10:244::/56\n  serviceSubnet: 10.96.0.0/24\n"
)

Doc = dict[str, Any]
Reconcile = Callable[[], dict[str, Doc]]  # a status pass; every coordinator's status after


def _gone(call: Callable[[], object]) -> None:
    """`call()`, a delete; already gone is fine."""
    try:
        call()
    except ApiException as e:
        if e.status != NOT_FOUND:
            raise


@pytest.fixture
def coordinators(
    custom: client.CustomObjectsApi, store_crds: list[str]
) -> Iterator[dict[str, str]]:
    """One SpiderCoordinator per podCIDRType (auto is `default`, the one the agent reads);
    podCIDRType -> name."""
    suffix = uuid.uuid4().hex[:6]
    names = {t: "default" if t == "auto" else f"cidr-{t}-{suffix}" for t in TYPES}
    for kind, name in names.items():
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SpiderCoordinator",
            "metadata": {"name": name},
            "spec": {"podCIDRType": kind},
        }
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    yield names
    for name in names.values():
        _gone(partial(custom.delete_cluster_custom_object, GROUP, VERSION, PLURAL, name))


@pytest.fixture
def kube_system(k8s_api: client.ApiClient) -> Iterator[list[Callable[[], None]]]:
    """Undo steps for what the test makes cluster-wide, run newest first afterwards."""
    undo: list[Callable[[], None]] = []
    yield undo
    for step in reversed(undo):
        step()


def statuses(custom: client.CustomObjectsApi, names: dict[str, str]) -> dict[str, Doc]:
    """podCIDRType -> the coordinator's status as the API server holds it."""
    out = {}
    for kind, name in names.items():
        obj: Any = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        out[kind] = obj.get("status", {})
    return out


def synced(pods: list[str], services: list[str]) -> Doc:
    return {"phase": "Synced", "overlayPodCIDR": pods, "serviceCIDR": services}


def not_ready(pods: list[str], services: list[str], reason: str) -> Doc:
    return {**synced(pods, services), "phase": "NotReady", "reason": reason}


def install_calico_crd(ext: client.ApiextensionsV1Api) -> None:
    """A stand-in for Calico's IPPool CRD: its group, kind and scope, any content."""
    body: Any = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CALICO_CRD},
        "spec": {
            "group": "crd.projectcalico.org",
            "scope": "Cluster",
            "names": {
                "kind": "IPPool",
                "plural": "ippools",
                "singular": "ippool",
                "listKind": "IPPoolList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(body)
    spidercrds.wait_established(ext, CALICO_CRD)


def remove_calico_crd(ext: client.ApiextensionsV1Api) -> None:
    _gone(lambda: ext.delete_custom_resource_definition(CALICO_CRD))
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            ext.read_custom_resource_definition(CALICO_CRD)
        except ApiException as e:
            if e.status == NOT_FOUND:
                return
            raise
        time.sleep(0.1)


def drop_service_cidr(net: client.NetworkingV1Api, name: str) -> None:
    """Delete the ServiceCIDR and wait until it is gone (the API server finalizes one no
    Service uses)."""
    _gone(lambda: net.delete_service_cidr(name))
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            net.read_service_cidr(name)
        except ApiException as e:
            if e.status == NOT_FOUND:
                return
            raise
        time.sleep(0.1)
    pytest.fail(f"ServiceCIDR {name} still there after {ESTABLISHED_TIMEOUT_S:.0f}s")


def nothing_but_service_cidrs(reconcile: Reconcile, services: list[str]) -> None:
    """1. Nothing but the ServiceCIDRs: no Calico API, no ConfigMaps, no controller-manager."""
    no_pod_cidr = (
        "no pod CIDR: neither kube-system/kubeadm-config (networking.podSubnet) nor a "
        "kube-controller-manager Pod in kube-system (--cluster-cidr) names one"
    )
    assert reconcile() == {
        "auto": synced([], services),
        "cluster": not_ready([], services, no_pod_cidr),
        "calico": not_ready(
            [],
            services,
            "no Calico IPPools (crd.projectcalico.org/v1): the API server does not serve them",
        ),
        "cilium": not_ready([], services, "no ConfigMap kube-system/cilium-config"),
        "none": synced([], services),
    }


def a_controller_manager_pod(
    core: client.CoreV1Api,
    kube_system: list[Callable[[], None]],
    reconcile: Reconcile,
    services: list[str],
) -> None:
    """2. A kube-controller-manager Pod (as a static pod's mirror looks): its flags."""
    # Pods need their ServiceAccount; no controller-manager makes kube-system's here.
    try:
        core.create_namespaced_service_account(
            KUBE_SYSTEM, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
        )
        kube_system.append(
            lambda: _gone(lambda: core.delete_namespaced_service_account("default", KUBE_SYSTEM))
        )
    except ApiException as e:
        if e.status != CONFLICT:
            raise
    pod: Any = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": KCM_POD,
            "namespace": KUBE_SYSTEM,
            "labels": {"component": "kube-controller-manager", "tier": "control-plane"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "kube-controller-manager",
                    "image": "registry.k8s.io/kube-controller-manager:v1.37.2",
                    "command": [
                        "kube-controller-manager",
                        "--allocate-node-cidrs=true",
                        "--cluster-cidr=10.233.64.0/18",
                        "--service-cluster-ip-range=10.233.0.0/18",
                    ],
                }
            ],
        },
    }
    core.create_namespaced_pod(KUBE_SYSTEM, pod)
    kube_system.append(
        lambda: _gone(
            lambda: core.delete_namespaced_pod(KCM_POD, KUBE_SYSTEM, grace_period_seconds=0)
        )
    )
    got = reconcile()
    assert got["cluster"] == synced(["10.233.64.0/18"], services)
    assert got["auto"] == got["cluster"]
    assert got["calico"]["phase"] == got["cilium"]["phase"] == "NotReady"


def kubeadm_config(
    core: client.CoreV1Api,
    kube_system: list[Callable[[], None]],
    reconcile: Reconcile,
    services: list[str],
) -> list[str]:
    """3. kubeadm-config: its ClusterConfiguration wins over the flags. Its pod CIDRs."""
    core.create_namespaced_config_map(
        KUBE_SYSTEM,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="kubeadm-config"),
            data={"ClusterConfiguration": CLUSTER_CONFIGURATION},
        ),
    )
    kube_system.append(
        lambda: _gone(lambda: core.delete_namespaced_config_map("kubeadm-config", KUBE_SYSTEM))
    )
    kubeadm_pods = ["10.244.0.0/16", "fd00:10:244::/56"]
    got = reconcile()
    assert got["cluster"] == synced(kubeadm_pods, services)
    assert got["auto"] == got["cluster"]
    return kubeadm_pods


def cilium_config(
    core: client.CoreV1Api,
    kube_system: list[Callable[[], None]],
    reconcile: Reconcile,
    services: list[str],
) -> list[str]:
    """4. cilium-config (cluster-pool, lists as Cilium's chart writes them): auto is cilium.
    Its pod CIDRs."""
    core.create_namespaced_config_map(
        KUBE_SYSTEM,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="cilium-config"),
            data={
                "ipam": "cluster-pool",
                "cluster-pool-ipv4-cidr": "10.0.0.0/16 10.1.0.0/16",
                "cluster-pool-ipv6-cidr": "fd00:cc::/104",
            },
        ),
    )
    kube_system.append(
        lambda: _gone(lambda: core.delete_namespaced_config_map("cilium-config", KUBE_SYSTEM))
    )
    cilium_pods = ["10.0.0.0/16", "10.1.0.0/16", "fd00:cc::/104"]
    got = reconcile()
    assert got["cilium"] == synced(cilium_pods, services)
    assert got["auto"] == got["cilium"]
    return cilium_pods


def calico_pools(
    ext: client.ApiextensionsV1Api,
    custom: client.CustomObjectsApi,
    kube_system: list[Callable[[], None]],
    reconcile: Reconcile,
    services: list[str],
    kubeadm_pods: list[str],
    cilium_pods: list[str],
) -> list[str]:
    """5. Calico's IPPool CRD and pools (one disabled): auto is calico. The enabled pools'
    CIDRs."""
    install_calico_crd(ext)
    kube_system.append(lambda: remove_calico_crd(ext))
    got = reconcile()
    assert got["calico"] == not_ready(
        [], services, "no enabled Calico IPPools (crd.projectcalico.org/v1)"
    )
    assert got["auto"] == got["cilium"]  # Calico served, but no pool of its own yet
    for name, cidr, disabled in (
        ("default-ipv4-ippool", "10.233.64.0/18", False),
        ("retired", "10.9.0.0/16", True),
        ("default-ipv6-ippool", "fd85:ee78:d8a6:8607::1:0000/112", False),
    ):
        pool = {
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": 26, "disabled": disabled},
        }
        custom.create_cluster_custom_object("crd.projectcalico.org", "v1", "ippools", pool)
    calico_pods = ["10.233.64.0/18", "fd85:ee78:d8a6:8607::1:0/112"]
    got = reconcile()
    assert got == {
        "auto": synced(calico_pods, services),
        "cluster": synced(kubeadm_pods, services),
        "calico": synced(calico_pods, services),
        "cilium": synced(cilium_pods, services),
        "none": synced([], services),
    }
    return calico_pods


def another_service_cidr(
    net: client.NetworkingV1Api,
    kube_system: list[Callable[[], None]],
    reconcile: Reconcile,
    services: list[str],
) -> None:
    """6. Another ServiceCIDR joins the service CIDRs, and leaves them when deleted."""
    extra = f"extra-{uuid.uuid4().hex[:6]}"
    extra_cidr: Any = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": extra},
        "spec": {"cidrs": ["10.97.0.0/24"]},
    }
    net.create_service_cidr(extra_cidr)
    kube_system.append(lambda: drop_service_cidr(net, extra))
    got = reconcile()
    both = ["10.97.0.0/24", "10.96.0.0/24"]  # listed by name: extra-... before kubernetes
    assert {k: v["serviceCIDR"] for k, v in got.items()} == dict.fromkeys(TYPES, both)
    drop_service_cidr(net, extra)
    got = reconcile()
    assert {k: v["serviceCIDR"] for k, v in got.items()} == dict.fromkeys(TYPES, services)


def the_agent_uses_the_status(
    store: KubeStore, calico_pods: list[str], services: list[str]
) -> None:
    """7. The agent (its App on the same API server) hands the `default` status's CIDRs to
    the coordinator; a NAD that names none gets them, a NAD's own list wins."""
    settings = agent_settings(store)
    assert (settings["overlayPodCIDR"], settings["serviceCIDR"]) == (calico_pods, services)
    conf = parse_coordinator({"type": "spidernet-coordinator", "mode": "underlay"}, settings)
    assert [str(n) for n in conf.overlay_pod_cidr] == calico_pods
    assert [str(n) for n in conf.service_cidr] == services
    nad = {"type": "spidernet-coordinator", "serviceCIDR": ["10.43.0.0/16"]}
    assert [str(n) for n in parse_coordinator(nad, settings).service_cidr] == ["10.43.0.0/16"]


def test_each_pod_cidr_type_on_its_source_and_the_agent_uses_the_status(
    k8s_api: client.ApiClient,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    coordinators: dict[str, str],
    kube_system: list[Callable[[], None]],
) -> None:
    ext = client.ApiextensionsV1Api(k8s_api)
    net = client.NetworkingV1Api(k8s_api)
    store = KubeStore(k8s_api)
    lines: list[str] = []

    def reconcile() -> dict[str, Doc]:
        CoordinatorStatus().reconcile(store, time.time(), lines.append)
        return statuses(custom, coordinators)

    # The API server serves ServiceCIDRs and made the default one from its flag.
    served = {c.metadata.name: c.spec.cidrs for c in net.list_service_cidr().items}  # type: ignore[union-attr]  # (metadata and spec are always there in an answer)
    assert served == {"kubernetes": ["10.96.0.0/24"]}
    services = ["10.96.0.0/24"]
    crds = {c.metadata.name for c in ext.list_custom_resource_definition().items}  # type: ignore[union-attr]  # (as above)
    assert CALICO_CRD not in crds

    nothing_but_service_cidrs(reconcile, services)
    a_controller_manager_pod(core, kube_system, reconcile, services)
    kubeadm_pods = kubeadm_config(core, kube_system, reconcile, services)
    cilium_pods = cilium_config(core, kube_system, reconcile, services)
    calico_pods = calico_pools(
        ext, custom, kube_system, reconcile, services, kubeadm_pods, cilium_pods
    )
    another_service_cidr(net, kube_system, reconcile, services)

    # A pass that finds nothing new writes nothing.
    before = len(lines)
    reconcile()
    assert len(lines) == before
    assert all("status of SpiderCoordinator" in line for line in lines)

    the_agent_uses_the_status(store, calico_pods, services)


def agent_settings(store: KubeStore) -> Doc:
    """GET /v1/coordinator/config of an agent's App on `store`, as a plugin asks it."""
    app = App(store, IpamCore(store, node="n1"), allowed_uids=frozenset({0}))
    request = Request("GET", "/v1/coordinator/config", {}, [], b"", Peer(pid=1, uid=0, gid=0))

    async def ask() -> Any:
        return await app(request)

    answer = trio.run(ask)
    assert answer.status == 200, answer.body
    settings: Doc = json.loads(answer.body)
    return settings
