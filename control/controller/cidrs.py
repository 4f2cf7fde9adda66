"""The cluster's pod and service CIDRs for the SpiderCoordinator status (pure).

What Spiderpool's coordinator informer does (`pkg/coordinatormanager/coordinator_informer.go`,
reference/spiderpool.md §1.5), from facts the controller read (cidrs_sync.py):

- The cluster's own CIDRs: `networking.podSubnet` and `networking.serviceSubnet` of the
  `ClusterConfiguration` in the ConfigMap `kube-system/kubeadm-config`; each one missing there
  comes from the flags `--cluster-cidr` and `--service-cluster-ip-range` of a
  `kube-controller-manager` Pod in kube-system (label `component=kube-controller-manager`).
  Spiderpool reads the Pod only when the ConfigMap is absent, and fails on an empty Pod list.
- `overlayPodCIDR` by `podCIDRType`: `cluster` the cluster's pod CIDRs; `calico` the `spec.cidr`
  of every Calico IPPool (`crd.projectcalico.org/v1`) not `spec.disabled`; `cilium` the
  ConfigMap `kube-system/cilium-config` by its `ipam` mode (`cluster-pool`, Cilium's default
  when the key is absent, and `cluster-pool-v2beta`: the keys `cluster-pool-ipv4-cidr` and
  `cluster-pool-ipv6-cidr`, each a list separated by spaces or commas, as Cilium's chart
  writes it; `kubernetes`: the cluster's pod CIDRs; `multi-pool` and the cloud modes are not
  read); `none` nothing.
- `auto`: Spiderpool looks at the name of the default CNI config in the controller's
  `/etc/cni/net.d`, which a controller that does not run beside the default CNI cannot see;
  here it is the cluster's own objects, in the order calico (an enabled Calico IPPool exists),
  cilium (`cilium-config` exists), cluster (the cluster's pod CIDRs are known), else none.
- `serviceCIDR`: the `spec.cidrs` of the `networking.k8s.io/v1` ServiceCIDR objects not being
  deleted, when the API server serves them and has any; else the cluster's service CIDRs.

`Synced` when the chosen pod CIDR source answered and a service CIDR is known; else
`NotReady`, the reason naming each missing source. A NotReady status still lists what was
found (Spiderpool empties both lists, and its agent then refuses every coordinator call); the
agent uses what the status lists either way.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

SYNCED = "Synced"
NOT_READY = "NotReady"
KUBE_SYSTEM = "kube-system"
KUBEADM_CONFIG = "kubeadm-config"
CILIUM_CONFIG = "cilium-config"
KCM_LABEL = ("component", "kube-controller-manager")
CALICO_POOLS = "Calico IPPools (crd.projectcalico.org/v1)"
SERVICE_CIDRS = "ServiceCIDRs (networking.k8s.io/v1)"
CILIUM_POOL_MODES = ("cluster-pool", "cluster-pool-v2beta")
CILIUM_DEFAULT_IPAM = "cluster-pool"  # Cilium's `ipam.mode` when unset
_SPLIT = re.compile(r"[\s,]+")
_FLAGS = {"pod": "--cluster-cidr", "service": "--service-cluster-ip-range"}
_KUBEADM = {"pod": "podSubnet", "service": "serviceSubnet"}

Doc = Mapping[str, Any]


@dataclass(frozen=True)
class ClusterFacts:
    """What the cluster holds, as read. None: that source is absent (no such ConfigMap, or
    an API the server does not serve), which is normal, never an error.

    `kubeadm_config`, `cilium_config`: the ConfigMaps' `data`. `controller_managers`: the
    kube-system Pods labelled component=kube-controller-manager. `calico_pools`,
    `service_cidrs`: the objects of those APIs.
    """

    kubeadm_config: Mapping[str, str] | None = None
    controller_managers: tuple[Doc, ...] = ()
    calico_pools: tuple[Doc, ...] | None = None
    cilium_config: Mapping[str, str] | None = None
    service_cidrs: tuple[Doc, ...] | None = None


@dataclass(frozen=True)
class Found:
    """CIDRs one source gave (normalised, in order, no repeats), where they came from, and
    what was wrong; `cidrs` empty and `problems` set when the source did not answer."""

    cidrs: tuple[str, ...] = ()
    source: str = ""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class CidrStatus:
    """A SpiderCoordinator's status, and (for the log) the podCIDRType used and the sources."""

    phase: str
    overlay_pod_cidr: tuple[str, ...]
    service_cidr: tuple[str, ...]
    reason: str = ""
    pod_cidr_type: str = ""
    sources: tuple[str, ...] = field(default=(), compare=False)

    def to_status(self) -> dict[str, Any]:
        """The status document (`reason` only when NotReady)."""
        status: dict[str, Any] = {
            "phase": self.phase,
            "overlayPodCIDR": list(self.overlay_pod_cidr),
            "serviceCIDR": list(self.service_cidr),
        }
        if self.reason:
            status["reason"] = self.reason
        return status


def _parse(texts: Iterable[str], where: str) -> tuple[list[str], list[str]]:
    cidrs: list[str] = []
    problems: list[str] = []
    for text in texts:
        for item in _SPLIT.split(text.strip()):
            if not item:
                continue
            try:
                # strict=False: a CIDR written with host bits (fd00::1:0000/112) is its network.
                net = str(ipaddress.ip_network(item, strict=False))
            except ValueError:
                problems.append(f"{where}: '{item}' is not a CIDR")
                continue
            if net not in cidrs:
                cidrs.append(net)
    return cidrs, problems


def _found(texts: Iterable[str], where: str) -> Found:
    cidrs, problems = _parse(texts, where)
    return Found(tuple(cidrs), where if cidrs else "", tuple(problems))


def _kubeadm(data: Mapping[str, str] | None, which: str) -> Found:
    where = f"{KUBE_SYSTEM}/{KUBEADM_CONFIG}"
    if data is None or "ClusterConfiguration" not in data:
        return Found()
    try:
        conf = yaml.safe_load(data["ClusterConfiguration"])
    except yaml.YAMLError as e:
        return Found(problems=(f"{where}: ClusterConfiguration is not YAML: {e}",))
    networking = conf.get("networking") if isinstance(conf, dict) else None
    value = networking.get(_KUBEADM[which]) if isinstance(networking, dict) else None
    if not isinstance(value, str) or not value.strip():
        return Found()
    return _found([value], f"{where} networking.{_KUBEADM[which]}")


def _flag(argv: Sequence[object], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if not isinstance(arg, str):
            continue
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(argv) and isinstance(argv[i + 1], str):
            return str(argv[i + 1])
    return None


def _controller_manager(pods: Sequence[Doc], which: str) -> Found:
    flag = _FLAGS[which]
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name", ""))):
        for container in pod.get("spec", {}).get("containers") or ():
            argv = [*(container.get("command") or ()), *(container.get("args") or ())]
            value = _flag(argv, flag)
            if value:
                name = pod.get("metadata", {}).get("name", "")
                return _found([value], f"Pod {KUBE_SYSTEM}/{name} {flag}")
    return Found()


def cluster_cidrs(facts: ClusterFacts, which: str) -> Found:
    """The cluster's own pod (`which` "pod") or service ("service") CIDRs: kubeadm-config's,
    else a kube-controller-manager's flag."""
    kubeadm = _kubeadm(facts.kubeadm_config, which)
    if kubeadm.cidrs:
        return kubeadm
    kcm = _controller_manager(facts.controller_managers, which)
    # A kubeadm-config that could not be read matters only when nothing else answered.
    problems = kcm.problems if kcm.cidrs else kubeadm.problems + kcm.problems
    return Found(kcm.cidrs, kcm.source, problems)


def _no_cluster(which: str) -> str:
    return (
        f"no {which} CIDR: neither {KUBE_SYSTEM}/{KUBEADM_CONFIG} (networking."
        f"{_KUBEADM[which]}) nor a kube-controller-manager Pod in {KUBE_SYSTEM} "
        f"({_FLAGS[which]}) names one"
    )


def _enabled_calico(pools: Sequence[Doc]) -> list[str]:
    return [
        str(p["spec"]["cidr"])
        for p in sorted(pools, key=lambda p: str(p.get("metadata", {}).get("name", "")))
        if isinstance(p.get("spec"), dict)
        and isinstance(p["spec"].get("cidr"), str)
        and p["spec"].get("disabled") is not True
    ]


def _calico(facts: ClusterFacts) -> Found:
    if facts.calico_pools is None:
        return Found(problems=(f"no {CALICO_POOLS}: the API server does not serve them",))
    found = _found(_enabled_calico(facts.calico_pools), CALICO_POOLS)
    if not found.cidrs and not found.problems:
        return Found(problems=(f"no enabled {CALICO_POOLS}",))
    return found


def _cilium(facts: ClusterFacts) -> Found:
    where = f"{KUBE_SYSTEM}/{CILIUM_CONFIG}"
    data = facts.cilium_config
    if data is None:
        return Found(problems=(f"no ConfigMap {where}",))
    mode = data.get("ipam") or CILIUM_DEFAULT_IPAM
    if mode == "kubernetes":
        found = cluster_cidrs(facts, "pod")
        if not found.cidrs:
            why = f"{where} ipam kubernetes: {_no_cluster('pod')}"
            return Found(problems=(*found.problems, why))
        return found
    if mode not in CILIUM_POOL_MODES:
        why = f"{where}: ipam mode '{mode}' is not read (only cluster-pool or kubernetes)"
        return Found(problems=(why,))
    keys = ("cluster-pool-ipv4-cidr", "cluster-pool-ipv6-cidr")
    found = _found([data[k] for k in keys if data.get(k)], f"{where} {'/'.join(keys)}")
    if not found.cidrs and not found.problems:
        return Found(problems=(f"{where} names no {' or '.join(keys)}",))
    return found


def resolve_type(pod_cidr_type: str, facts: ClusterFacts) -> str:
    """The podCIDRType to use: `pod_cidr_type` itself, or for "auto" the first of calico,
    cilium and cluster whose source has something, else "none"."""
    if pod_cidr_type != "auto":
        return pod_cidr_type
    if facts.calico_pools and _enabled_calico(facts.calico_pools):
        return "calico"
    if facts.cilium_config is not None:
        return "cilium"
    if cluster_cidrs(facts, "pod").cidrs:
        return "cluster"
    return "none"


def _pods(kind: str, facts: ClusterFacts) -> Found:
    if kind == "cluster":
        found = cluster_cidrs(facts, "pod")
        return found if found.cidrs else Found(problems=(*found.problems, _no_cluster("pod")))
    if kind == "calico":
        return _calico(facts)
    if kind == "cilium":
        return _cilium(facts)
    return Found()  # none


def _live(obj: Doc) -> bool:
    return not obj.get("metadata", {}).get("deletionTimestamp")


def service_cidrs(facts: ClusterFacts) -> Found:
    """The ServiceCIDR objects' CIDRs when there are any, else the cluster's."""
    if facts.service_cidrs:
        texts = [
            str(c)
            for obj in facts.service_cidrs
            if _live(obj)
            for c in obj.get("spec", {}).get("cidrs") or ()
        ]
        found = _found(texts, SERVICE_CIDRS)
        if found.cidrs:
            return found
    found = cluster_cidrs(facts, "service")
    if not found.cidrs:
        served = "none exist" if facts.service_cidrs is not None else "not served"
        why = f"{_no_cluster('service')}, and {SERVICE_CIDRS}: {served}"
        return Found(problems=(*found.problems, why))
    return found


def discover(pod_cidr_type: str, facts: ClusterFacts) -> CidrStatus:
    """The status of a SpiderCoordinator whose spec.podCIDRType is `pod_cidr_type`."""
    kind = resolve_type(pod_cidr_type, facts)
    pods = _pods(kind, facts)
    services = service_cidrs(facts)
    problems = [*pods.problems, *services.problems]
    return CidrStatus(
        phase=NOT_READY if problems else SYNCED,
        overlay_pod_cidr=pods.cidrs,
        service_cidr=services.cidrs,
        reason="; ".join(problems),
        pod_cidr_type=kind,
        sources=tuple(s for s in (pods.source, services.source) if s),
    )


def is_controller_manager(pod: Doc) -> bool:
    """A kube-system Pod labelled component=kube-controller-manager."""
    meta = pod.get("metadata", {})
    key, value = KCM_LABEL
    return meta.get("namespace") == KUBE_SYSTEM and (meta.get("labels") or {}).get(key) == value
