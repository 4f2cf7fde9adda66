"""The SpiderCoordinator status from the cluster's CIDR sources: the pure decision, whole
statuses compared, and the reconciler against an in-memory source (tests/k8s/test_cidrs.py
runs both on a real API server)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from spidernet.control.controller.cidrs import (
    NOT_READY,
    SYNCED,
    CidrStatus,
    ClusterFacts,
    discover,
    resolve_type,
)
from spidernet.control.controller.cidrs_sync import CidrSources, CoordinatorStatus, read_facts
from spidernet.control.store.base import Conflict, Key
from spidernet.control.store.embedded import EmbeddedStore

Doc = dict[str, Any]

KUBEADM = {
    "ClusterConfiguration": (
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
        "networking:\n  dnsDomain: cluster.local\n"
        "  podSubnet: 10.244.0.0/16,fd00:10:244::/56\n"
        "  serviceSubnet: 10.96.0.0/12,fd00:10:96::/112\n"
    )
}


def kcm(name: str, args: list[str], command: list[str] | None = None) -> Doc:
    container: Doc = {"name": "kube-controller-manager", "args": args}
    if command is not None:
        container["command"] = command
    return {
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {"component": "kube-controller-manager"},
        },
        "spec": {"containers": [container]},
    }


KCM = kcm(
    "kube-controller-manager-cp1",
    ["--cluster-cidr=10.233.64.0/18", "--service-cluster-ip-range", "10.233.0.0/18"],
    ["kube-controller-manager", "--allocate-node-cidrs=true"],
)


def calico(name: str, cidr: str, disabled: bool | None = None) -> Doc:
    spec: Doc = {"cidr": cidr, "blockSize": 26}
    if disabled is not None:
        spec["disabled"] = disabled
    return {"apiVersion": "crd.projectcalico.org/v1", "metadata": {"name": name}, "spec": spec}


def service_cidr(name: str, *cidrs: str, deleting: bool = False) -> Doc:
    meta: Doc = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T10:00:00Z"
    return {"metadata": meta, "spec": {"cidrs": list(cidrs)}}


SERVICES = (service_cidr("kubernetes", "10.96.0.0/16"), service_cidr("extra", "10.97.0.0/24"))


def synced(pods: tuple[str, ...], services: tuple[str, ...], kind: str) -> CidrStatus:
    return CidrStatus(SYNCED, pods, services, "", kind)


def test_cluster_reads_kubeadm_config_and_prefers_service_cidr_objects() -> None:
    facts = ClusterFacts(kubeadm_config=KUBEADM, controller_managers=(KCM,))
    assert discover("cluster", facts) == synced(
        ("10.244.0.0/16", "fd00:10:244::/56"), ("10.96.0.0/12", "fd00:10:96::/112"), "cluster"
    )
    with_api = ClusterFacts(kubeadm_config=KUBEADM, service_cidrs=SERVICES)
    assert discover("cluster", with_api) == synced(
        ("10.244.0.0/16", "fd00:10:244::/56"), ("10.96.0.0/16", "10.97.0.0/24"), "cluster"
    )


def test_cluster_falls_back_to_the_controller_manager_flags_one_value_at_a_time() -> None:
    facts = ClusterFacts(controller_managers=(KCM,), service_cidrs=())
    assert discover("cluster", facts) == synced(("10.233.64.0/18",), ("10.233.0.0/18",), "cluster")
    # kubeadm-config names only the service subnet: the pod CIDR comes from the flag.
    partial = {"ClusterConfiguration": "networking:\n  serviceSubnet: 10.96.0.0/12\n"}
    facts = ClusterFacts(kubeadm_config=partial, controller_managers=(KCM,))
    assert discover("cluster", facts) == synced(("10.233.64.0/18",), ("10.96.0.0/12",), "cluster")


def test_cluster_without_any_source_is_not_ready_and_says_what_was_looked_at() -> None:
    status = discover("cluster", ClusterFacts(service_cidrs=()))
    assert status == CidrStatus(
        NOT_READY,
        (),
        (),
        "no pod CIDR: neither kube-system/kubeadm-config (networking.podSubnet) nor a "
        "kube-controller-manager Pod in kube-system (--cluster-cidr) names one; no service "
        "CIDR: neither kube-system/kubeadm-config (networking.serviceSubnet) nor a "
        "kube-controller-manager Pod in kube-system (--service-cluster-ip-range) names one, "
        "and ServiceCIDRs (networking.k8s.io/v1): none exist",
        "cluster",
    )
    assert status.to_status() == {
        "phase": "NotReady",
        "overlayPodCIDR": [],
        "serviceCIDR": [],
        "reason": status.reason,
    }


def test_calico_takes_the_enabled_pools_and_needs_one() -> None:
    pools = (
        calico("default-ipv4-ippool", "10.233.64.0/18"),
        calico("old", "10.1.0.0/16", disabled=True),
        calico("v6", "fd85:ee78:d8a6:8607::1:0000/112", disabled=False),
    )
    facts = ClusterFacts(calico_pools=pools, service_cidrs=SERVICES)
    assert discover("calico", facts) == synced(
        ("10.233.64.0/18", "fd85:ee78:d8a6:8607::1:0/112"),
        ("10.96.0.0/16", "10.97.0.0/24"),
        "calico",
    )
    no_api = discover("calico", ClusterFacts(service_cidrs=SERVICES))
    assert no_api == CidrStatus(
        NOT_READY,
        (),
        ("10.96.0.0/16", "10.97.0.0/24"),
        "no Calico IPPools (crd.projectcalico.org/v1): the API server does not serve them",
        "calico",
    )
    all_off = ClusterFacts(calico_pools=(pools[1],), service_cidrs=SERVICES)
    assert discover("calico", all_off).reason == (
        "no enabled Calico IPPools (crd.projectcalico.org/v1)"
    )


def test_cilium_by_ipam_mode() -> None:
    pool = {
        "ipam": "cluster-pool",
        "cluster-pool-ipv4-cidr": "10.0.0.0/16 10.1.0.0/16",
        "cluster-pool-ipv6-cidr": "fd00:cc::/104",
    }
    facts = ClusterFacts(cilium_config=pool, kubeadm_config=KUBEADM)
    assert discover("cilium", facts) == synced(
        ("10.0.0.0/16", "10.1.0.0/16", "fd00:cc::/104"),
        ("10.96.0.0/12", "fd00:10:96::/112"),
        "cilium",
    )
    # No ipam key: Cilium's default mode, cluster-pool.
    default = {"cluster-pool-ipv4-cidr": "10.0.0.0/8"}
    facts = ClusterFacts(cilium_config=default, kubeadm_config=KUBEADM)
    assert discover("cilium", facts).overlay_pod_cidr == ("10.0.0.0/8",)
    # ipam kubernetes: the nodes' podCIDRs come from the cluster CIDR.
    facts = ClusterFacts(cilium_config={"ipam": "kubernetes"}, kubeadm_config=KUBEADM)
    assert discover("cilium", facts) == synced(
        ("10.244.0.0/16", "fd00:10:244::/56"), ("10.96.0.0/12", "fd00:10:96::/112"), "cilium"
    )
    facts = ClusterFacts(cilium_config={"ipam": "multi-pool"}, kubeadm_config=KUBEADM)
    assert discover("cilium", facts) == CidrStatus(
        NOT_READY,
        (),
        ("10.96.0.0/12", "fd00:10:96::/112"),
        "kube-system/cilium-config: ipam mode 'multi-pool' is not read "
        "(only cluster-pool or kubernetes)",
        "cilium",
    )
    facts = ClusterFacts(kubeadm_config=KUBEADM)
    assert discover("cilium", facts).reason == "no ConfigMap kube-system/cilium-config"
    bad = {"cluster-pool-ipv4-cidr": "10.0.0.0/8,nonsense"}
    status = discover("cilium", ClusterFacts(cilium_config=bad, kubeadm_config=KUBEADM))
    assert (status.phase, status.overlay_pod_cidr, status.reason) == (
        NOT_READY,
        ("10.0.0.0/8",),
        "kube-system/cilium-config cluster-pool-ipv4-cidr/cluster-pool-ipv6-cidr: "
        "'nonsense' is not a CIDR",
    )


def test_none_lists_no_pod_cidr_but_still_the_services() -> None:
    facts = ClusterFacts(kubeadm_config=KUBEADM, calico_pools=(calico("p", "10.9.0.0/16"),))
    assert discover("none", facts) == synced((), ("10.96.0.0/12", "fd00:10:96::/112"), "none")


@pytest.mark.parametrize(
    ("facts", "kind"),
    [
        (
            ClusterFacts(
                calico_pools=(calico("p", "10.9.0.0/16"),),
                cilium_config={},
                kubeadm_config=KUBEADM,
            ),
            "calico",
        ),
        # Calico served but every pool disabled: not Calico's network.
        (
            ClusterFacts(
                calico_pools=(calico("p", "10.9.0.0/16", True),),
                cilium_config={},
                kubeadm_config=KUBEADM,
            ),
            "cilium",
        ),
        (ClusterFacts(calico_pools=(), kubeadm_config=KUBEADM), "cluster"),
        (ClusterFacts(controller_managers=(KCM,)), "cluster"),
        (ClusterFacts(calico_pools=(), service_cidrs=SERVICES), "none"),
    ],
)
def test_auto_picks_calico_then_cilium_then_cluster_then_none(
    facts: ClusterFacts, kind: str
) -> None:
    assert resolve_type("auto", facts) == kind
    assert discover("auto", facts).pod_cidr_type == kind


def test_auto_with_nothing_but_service_cidrs_is_synced_as_none() -> None:
    assert discover("auto", ClusterFacts(service_cidrs=SERVICES)) == synced(
        (), ("10.96.0.0/16", "10.97.0.0/24"), "none"
    )


def test_service_cidr_objects_being_deleted_are_left_out_and_empty_ones_fall_back() -> None:
    services = (
        service_cidr("kubernetes", "10.96.0.0/16"),
        service_cidr("old", "10.98.0.0/24", deleting=True),
    )
    facts = ClusterFacts(service_cidrs=services, kubeadm_config=KUBEADM)
    assert discover("none", facts).service_cidr == ("10.96.0.0/16",)
    gone = ClusterFacts(service_cidrs=(services[1],), kubeadm_config=KUBEADM)
    assert discover("none", gone).service_cidr == ("10.96.0.0/12", "fd00:10:96::/112")


def test_a_broken_kubeadm_config_matters_only_when_nothing_else_answers() -> None:
    broken = {"ClusterConfiguration": "networking: [unclosed"}
    facts = ClusterFacts(kubeadm_config=broken, controller_managers=(KCM,))
    assert discover("cluster", facts) == synced(("10.233.64.0/18",), ("10.233.0.0/18",), "cluster")
    alone = discover("cluster", ClusterFacts(kubeadm_config=broken, service_cidrs=SERVICES))
    assert alone.phase == NOT_READY
    assert alone.reason.startswith("kube-system/kubeadm-config: ClusterConfiguration is not YAML")


# -- the reconciler -------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "db", synchronous="NORMAL")
    try:
        yield s
    finally:
        s.close()


class Sources:
    """An in-memory cluster: ConfigMaps, Pods, Calico pools, ServiceCIDRs; status writes."""

    def __init__(self, facts: ClusterFacts, conflict: bool = False) -> None:
        self.facts = facts
        self.conflict = conflict
        self.written: list[tuple[str, str, Mapping[str, Any]]] = []
        self.selectors: list[str] = []

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        assert namespace == "kube-system"
        data = {
            "kubeadm-config": self.facts.kubeadm_config,
            "cilium-config": self.facts.cilium_config,
        }
        found = data[name]
        return None if found is None else dict(found)

    def pods(self, namespace: str, label_selector: str) -> list[Doc]:
        self.selectors.append(f"{namespace}:{label_selector}")
        return [dict(p) for p in self.facts.controller_managers]

    def calico_pools(self) -> list[Doc] | None:
        pools = self.facts.calico_pools
        return None if pools is None else [dict(p) for p in pools]

    def service_cidrs(self) -> list[Doc] | None:
        cidrs = self.facts.service_cidrs
        return None if cidrs is None else [dict(c) for c in cidrs]

    def write_coordinator_status(
        self, name: str, body: Mapping[str, Any], version: str, status: Mapping[str, Any]
    ) -> None:
        if self.conflict:
            raise Conflict(Key("SpiderCoordinator", "", name), "changed")
        self.written.append((name, version, dict(status)))


def coordinator(name: str, kind: str | None, status: Mapping[str, Any] | None = None) -> Doc:
    doc: Doc = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderCoordinator",
        "metadata": {"name": name},
        "spec": {} if kind is None else {"podCIDRType": kind},
    }
    if status is not None:
        doc["status"] = dict(status)
    return doc


def test_read_facts_asks_each_source_once() -> None:
    facts = ClusterFacts(
        kubeadm_config=KUBEADM,
        controller_managers=(KCM,),
        calico_pools=(calico("p", "10.9.0.0/16"),),
        cilium_config={"ipam": "kubernetes"},
        service_cidrs=SERVICES,
    )
    source = Sources(facts)
    assert read_facts(source) == facts
    assert source.selectors == ["kube-system:component=kube-controller-manager"]


def test_the_reconciler_writes_each_coordinator_status_that_differs(store: EmbeddedStore) -> None:
    facts = ClusterFacts(
        kubeadm_config=KUBEADM, calico_pools=(calico("p", "10.9.0.0/16"),), service_cidrs=SERVICES
    )
    source = Sources(facts)
    lines: list[str] = []
    current = discover("none", facts).to_status()
    for doc in (
        coordinator("default", None),
        coordinator("c2", "cluster"),
        coordinator("c3", "none", current),
    ):
        store.create(Key("SpiderCoordinator", "", doc["metadata"]["name"]), doc)
    CoordinatorStatus(sources_of=lambda _s: source).reconcile(store, 0.0, lines.append)
    versions = {s.key.name: s.version for s in store.list("SpiderCoordinator").items}
    assert source.written == [
        ("c2", versions["c2"], discover("cluster", facts).to_status()),
        ("default", versions["default"], discover("calico", facts).to_status()),
    ]
    assert lines == [
        "status of SpiderCoordinator c2: Synced (podCIDRType cluster; overlayPodCIDR "
        "['10.244.0.0/16', 'fd00:10:244::/56'], serviceCIDR ['10.96.0.0/16', '10.97.0.0/24']; "
        "from kube-system/kubeadm-config networking.podSubnet, "
        "ServiceCIDRs (networking.k8s.io/v1))",
        "status of SpiderCoordinator default: Synced (podCIDRType auto -> calico; overlayPodCIDR "
        "['10.9.0.0/16'], serviceCIDR ['10.96.0.0/16', '10.97.0.0/24']; from Calico IPPools "
        "(crd.projectcalico.org/v1), ServiceCIDRs (networking.k8s.io/v1))",
    ]


def test_the_reconciler_skips_a_conflict_and_does_nothing_without_a_cluster(
    store: EmbeddedStore,
) -> None:
    source = Sources(ClusterFacts(kubeadm_config=KUBEADM), conflict=True)
    lines: list[str] = []
    store.create(Key("SpiderCoordinator", "", "default"), coordinator("default", "cluster"))
    CoordinatorStatus(sources_of=lambda _s: source).reconcile(store, 0.0, lines.append)
    assert len(lines) == 1
    assert lines[0].startswith("status of SpiderCoordinator default: skipped until the next")
    # The embedded store: no cluster to read, nothing written.
    CoordinatorStatus().reconcile(store, 0.0, lines.append)
    assert len(lines) == 1


def _typed(source: Sources) -> CidrSources:
    return source  # Sources keeps to the protocol (mypy checks this line)
