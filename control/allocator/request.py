"""What an allocation is asked for: the pod, its NIC, and the facts its pools are matched on.

These records are built at the edge (the service reads the CNI call, the registered pod,
namespace and node records, or the Kubernetes API) and handed to the pure allocator.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .holders import IPAMCLAIM_KIND, VMI_KIND

# Pod annotations (Spiderpool's keys, reference/spiderpool.md §2.9).
ANNO_IPPOOL = "ipam.spidernet.io/ippool"
ANNO_IPPOOLS = "ipam.spidernet.io/ippools"
ANNO_SUBNET = "ipam.spidernet.io/subnet"
ANNO_SUBNETS = "ipam.spidernet.io/subnets"
ANNO_ROUTES = "ipam.spidernet.io/routes"
# Namespace annotations.
ANNO_NS_DEFAULT_V4 = "ipam.spidernet.io/default-ipv4-ippool"
ANNO_NS_DEFAULT_V6 = "ipam.spidernet.io/default-ipv6-ippool"

# Owner kinds whose pods keep their addresses across restarts (§2.7).
STATEFUL_OWNERS = frozenset({"StatefulSet"})
# What an endpoint's `ownerControllerType` says when its addresses follow a KubeVirt VM or an
# IPAMClaim rather than one pod (docs/kubevirt.md): the kind of what holds them.
VMI_OWNER = VMI_KIND
IPAMCLAIM_OWNER = IPAMCLAIM_KIND


@dataclass(frozen=True)
class AppRef:
    """The pod's top controller (Pod -> ReplicaSet -> Deployment, Pod -> StatefulSet, ...):
    the application a SpiderSubnet auto pool belongs to."""

    api_version: str  # "apps/v1"
    kind: str
    namespace: str
    name: str
    uid: str

    @property
    def describe(self) -> str:
        """`Deployment ns/name`, for messages."""
        return f"{self.kind} {self.namespace}/{self.name}"


def controller_ref(meta: Mapping[str, Any], namespace: str) -> AppRef | None:
    """The `ownerReferences` entry of an object's `metadata` marked `controller: true`, or
    None (a bare pod, a ReplicaSet no Deployment owns)."""
    refs = meta.get("ownerReferences") or []
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("controller"):
            return AppRef(
                api_version=str(ref.get("apiVersion", "")),
                kind=str(ref.get("kind", "")),
                namespace=namespace,
                name=str(ref.get("name", "")),
                uid=str(ref.get("uid", "")),
            )
    return None


@dataclass(frozen=True)
class PodFacts:
    """Who the pod is and where it runs: everything pool affinity looks at."""

    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    owner_kind: str = ""
    owner_name: str = ""
    node: str = ""
    node_labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    namespace_annotations: Mapping[str, str] = field(default_factory=dict)
    # The top controller, when pool selection needs it (SpiderSubnet annotations only).
    app: AppRef | None = None
    # A KubeVirt virt-launcher pod whose addresses follow its VM: the VM's name.
    vm: str = ""
    # A live-migration target launcher pod: the migration's uid (`kubevirt.io/migrationJobUID`).
    migration: str = ""
    # The IPAMClaim the call's interface names (`ipam-claim-reference`): its name.
    ipam_claim: str = ""

    @property
    def holder(self) -> str:
        """The name the addresses are held under (the endpoint's and the claims' name): the
        IPAMClaim's, else the VM's, else the pod's own."""
        return self.ipam_claim or self.vm or self.name

    @property
    def ref(self) -> str:
        """`namespace/holder`, the form Spiderpool records in pool status."""
        return f"{self.namespace}/{self.holder}"

    @property
    def stateful(self) -> bool:
        """True when the addresses are kept by identity, not by sandbox: StatefulSet pods,
        KubeVirt VMs' launcher pods, interfaces tied to an IPAMClaim."""
        return self.owner_kind in STATEFUL_OWNERS or bool(self.vm or self.ipam_claim)


@dataclass(frozen=True)
class Master:
    """The host link a NIC hangs off (its main plugin's `master`, or an SR-IOV VF's PF) and
    the addresses it holds. With `match_master_subnet` (Spiderpool's matchMasterSubnet), a
    pool serves that NIC only when its subnet holds one of them: on a node with one subnet
    per rail NIC, one network config picks each rail's pool (docs/rdma-rails.md)."""

    name: str
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]


@dataclass(frozen=True)
class IpamRequest:
    """One CNI ADD for one interface of one pod.

    `network` is the CNI network name; pools whose `multusName` is set match it. `defaults_v4`
    and `defaults_v6` are the IPAM config's `default_ipv4_ippool` / `default_ipv6_ippool`.
    """

    container_id: str
    ifname: str
    network: str
    pod: PodFacts
    defaults_v4: tuple[str, ...] = ()
    defaults_v6: tuple[str, ...] = ()
    clean_gateway: bool = False
    # Whether SpiderSubnet auto pools are served (Kubernetes mode, with the controller).
    auto_pools: bool = False
    # The call's NIC's master, when its pools must hold one of the master's addresses.
    master: Master | None = None
