"""The SpiderCoordinator status reconciler's effects: read the cluster's CIDR sources, let
cidrs.discover decide each SpiderCoordinator's status, write it through /status at the
version read.

The sources are read once a pass, and only when there is a SpiderCoordinator. A status that
already says the same is not written. An object changed or deleted in between is skipped
until the next pass (Conflict, NotFound); an API server that is unavailable ends the pass.
Only a store on a cluster has these sources: with the embedded store the reconciler does
nothing (the status there is whatever was applied).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from spidernet.control.model.resources import Coordinator
from spidernet.control.store.base import Conflict, NotFound, Store
from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_gateways import KubeCidrApi

from . import cidrs

Log = Callable[[str], None]
Doc = dict[str, Any]


class CidrSources(Protocol):
    """The cluster reads and the status write (KubeCidrApi on a cluster)."""

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None: ...

    def pods(self, namespace: str, label_selector: str) -> list[Doc]: ...

    def calico_pools(self) -> list[Doc] | None: ...

    def service_cidrs(self) -> list[Doc] | None: ...

    def write_coordinator_status(
        self, name: str, body: Mapping[str, Any], version: str, status: Mapping[str, Any]
    ) -> None: ...


def read_facts(api: CidrSources) -> cidrs.ClusterFacts:
    """Every source, as the cluster holds it now."""
    key, value = cidrs.KCM_LABEL
    pools = api.calico_pools()
    services = api.service_cidrs()
    return cidrs.ClusterFacts(
        kubeadm_config=api.config_map(cidrs.KUBE_SYSTEM, cidrs.KUBEADM_CONFIG),
        controller_managers=tuple(api.pods(cidrs.KUBE_SYSTEM, f"{key}={value}")),
        calico_pools=None if pools is None else tuple(pools),
        cilium_config=api.config_map(cidrs.KUBE_SYSTEM, cidrs.CILIUM_CONFIG),
        service_cidrs=None if services is None else tuple(services),
    )


def _kube_sources(store: Store) -> CidrSources | None:
    return KubeCidrApi(store) if isinstance(store, KubeStore) else None


@dataclass
class CoordinatorStatus:
    """Keeps every SpiderCoordinator's status (phase, reason, overlayPodCIDR, serviceCIDR)
    current with the cluster's CIDR sources."""

    name: str = "coordinator-status"
    sources_of: Callable[[Store], CidrSources | None] = _kube_sources

    def reconcile(self, store: Store, now: float, log: Log) -> None:
        api = self.sources_of(store)
        if api is None:
            return
        coordinators = store.list(Coordinator.KIND).items
        if not coordinators:
            return
        facts = read_facts(api)
        for obj in coordinators:
            spec = obj.body.get("spec") or {}
            asked = str(spec.get("podCIDRType") or "auto")
            found = cidrs.discover(asked, facts)
            wanted = found.to_status()
            if obj.body.get("status") == wanted:
                continue
            what = f"status of SpiderCoordinator {obj.key.name}"
            try:
                api.write_coordinator_status(obj.key.name, obj.body, obj.version, wanted)
            except (Conflict, NotFound) as e:
                log(f"{what}: skipped until the next pass: {e}")
                continue
            used = asked if asked == found.pod_cidr_type else f"{asked} -> {found.pod_cidr_type}"
            why = f": {found.reason}" if found.reason else ""
            log(
                f"{what}: {found.phase}{why} (podCIDRType {used}; overlayPodCIDR "
                f"{list(found.overlay_pod_cidr)}, serviceCIDR {list(found.service_cidr)}; from "
                f"{', '.join(found.sources) or 'nothing'})"
            )
