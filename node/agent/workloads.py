"""Pod facts: the CNI call's own facts over the store's v1 Pod, Namespace and Node documents
and apps/v1 StatefulSets. In embedded mode these are records registered with `spidernet apply`;
in Kubernetes mode (`serve --kube`) the store reads them from the cluster's own objects.

A pod that asks for SpiderSubnet auto pools (`ipam.spidernet.io/subnet(s)`) also gets its
application: its top controller, Pod -> ReplicaSet -> Deployment, or Pod -> StatefulSet /
DaemonSet / ReplicaSet.

A runtime tells a CNI plugin only the pod's namespace, name and UID (CNI_ARGS K8S_POD_*).
Labels, annotations and the owner, which pool selection needs, come from a registered Pod
record, or from the config's `args["spidernet.io"]`, which wins key by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spidernet.control.allocator.holders import (
    IPAMCLAIM_KIND,
    VM_KIND,
    VMI_KIND,
    SelectionError,
    claim_for,
    vm_of,
)
from spidernet.control.allocator.request import (
    ANNO_SUBNET,
    ANNO_SUBNETS,
    IPAMCLAIM_OWNER,
    VMI_OWNER,
    AppRef,
    PodFacts,
    controller_ref,
)
from spidernet.control.store.base import Key, NotFound, Store
from spidernet.node.ipam.plugin import IpamCall

# Endpoints of calls that name no pod (plain CNI runtimes) live in this namespace, named
# after the container ID.
ANONYMOUS_NAMESPACE = "cni"
# (With the kinds whose life a VM's or an IPAMClaim's addresses follow: holders.py.)
WORKLOAD_KINDS = ("Pod", "Namespace", "Node", "StatefulSet", VM_KIND, VMI_KIND, IPAMCLAIM_KIND)


def _meta(store: Store, key: Key) -> Mapping[str, Any]:
    try:
        return store.get(key).body
    except NotFound:
        return {}


def _strs(obj: object) -> dict[str, str]:
    if not isinstance(obj, dict):
        return {}
    return {str(k): str(v) for k, v in obj.items()}


def _owner(meta: Mapping[str, Any]) -> tuple[str, str]:
    ref = controller_ref(meta, "")
    return (ref.kind, ref.name) if ref is not None else ("", "")


def application(store: Store, pod_meta: Mapping[str, Any], namespace: str) -> AppRef | None:
    """The pod's top controller (Spiderpool's `GetPodTopController`): a ReplicaSet's own
    controller (its Deployment) when it has one, else the pod's controller; None for a bare
    pod. Only a ReplicaSet costs a read."""
    ref = controller_ref(pod_meta, namespace)
    if ref is None or ref.kind != "ReplicaSet":
        return ref
    rs = _meta(store, Key("ReplicaSet", namespace, ref.name)).get("metadata", {})
    if rs.get("uid") not in (None, ref.uid):
        return ref  # (a new ReplicaSet of that name: the pod's own reference stands)
    return controller_ref(rs, namespace) or ref


def facts(
    store: Store, call: IpamCall, node: str, *, kubevirt: bool = True, strict: bool = False
) -> PodFacts:
    """Everything pool selection looks at for this call's pod, and who holds its addresses
    (holders.py): the IPAMClaim its interface names, else, with `kubevirt`, the VM of a
    virt-launcher pod. `strict` (an ADD): a malformed claim reference raises SelectionError;
    otherwise (DEL, CHECK) the pod's own name stands in."""
    namespace = call.pod.namespace or ANONYMOUS_NAMESPACE
    name = call.pod.name or call.container_id
    pod = _meta(store, Key("Pod", namespace, name)).get("metadata", {})
    ns = _meta(store, Key("Namespace", "", namespace)).get("metadata", {})
    node_meta = _meta(store, Key("Node", "", node)).get("metadata", {})
    owner_kind, owner_name = _owner(pod)
    owner_kind, owner_name = call.pod.owner_kind or owner_kind, call.pod.owner_name or owner_name
    annotations = {**_strs(pod.get("annotations")), **call.pod.annotations}
    # The application is read only for pods that ask for its SpiderSubnet auto pool.
    wants_app = ANNO_SUBNET in annotations or ANNO_SUBNETS in annotations
    try:
        claim = claim_for(annotations, call.ifname)
    except SelectionError:
        if strict:
            raise
        claim = ""
    vm = vm_of(pod) if kubevirt and not claim else None
    if claim:
        owner_kind, owner_name = IPAMCLAIM_OWNER, claim
    elif vm is not None:
        owner_kind, owner_name = VMI_OWNER, vm.vmi
    return PodFacts(
        namespace=namespace,
        name=name,
        uid=call.pod.uid or str(pod.get("uid", "")),
        labels={**_strs(pod.get("labels")), **call.pod.labels},
        annotations=annotations,
        owner_kind=owner_kind,
        owner_name=owner_name,
        node=node,
        node_labels=_strs(node_meta.get("labels")),
        namespace_labels=_strs(ns.get("labels")),
        namespace_annotations=_strs(ns.get("annotations")),
        app=application(store, pod, namespace) if wants_app else None,
        vm=vm.vm if vm is not None else "",
        migration=vm.migration if vm is not None else "",
        ipam_claim=claim,
    )


def ordinal(pod_name: str, owner_name: str) -> int | None:
    """A StatefulSet pod's ordinal (`web-3` of `web` is 3), or None."""
    prefix = owner_name + "-"
    tail = pod_name[len(prefix) :] if pod_name.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def _exists(store: Store, key: Key) -> bool:
    try:
        store.get(key)
    except NotFound:
        return False
    return True


def stateful_valid(store: Store, endpoint: Mapping[str, Any]) -> bool:
    """True while the endpoint's addresses outlive a DEL: a StatefulSet pod's (reference
    §2.7) while its StatefulSet, when registered, wants the ordinal (below `spec.replicas`);
    a KubeVirt VM's while the VM (named like the endpoint) or its VMI exists; an IPAMClaim's
    while the claim exists. A deleted endpoint (`spidernet delete endpoint`) ends it."""
    status = endpoint.get("status", {})
    meta = endpoint.get("metadata", {})
    namespace = str(meta.get("namespace", ""))
    owner = str(status.get("ownerControllerName", ""))
    kind = status.get("ownerControllerType")
    if kind == VMI_OWNER:
        return _exists(store, Key(VM_KIND, namespace, str(meta.get("name", "")))) or _exists(
            store, Key(VMI_KIND, namespace, owner)
        )
    if kind == IPAMCLAIM_OWNER:
        return _exists(store, Key(IPAMCLAIM_KIND, namespace, owner))
    if kind != "StatefulSet":
        return False
    sts = _meta(store, Key("StatefulSet", namespace, owner))
    if not sts:
        return True
    replicas = sts.get("spec", {}).get("replicas", 1)
    n = ordinal(str(meta.get("name", "")), owner)
    return n is not None and isinstance(replicas, int) and n < replicas
