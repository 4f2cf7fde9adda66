"""Who holds a pod's addresses when it is not the pod itself (pure): the KubeVirt VM a
virt-launcher pod runs, and the IPAMClaim an interface's network selection element names
(docs/kubevirt.md).

KubeVirt runs each VirtualMachineInstance in a virt-launcher pod that it owns (controller
`ownerReference` of kind VirtualMachineInstance, `kubevirt.io/v1`) and labels with the VM's
name (`vm.kubevirt.io/name`); a live migration's target pod also carries the migration's uid
(`kubevirt.io/migrationJobUID`). Multus's network selection elements (the JSON form of the
`k8s.v1.cni.cncf.io/networks` annotation) may name an IPAMClaim (`ipam-claim-reference`,
k8snetworkplumbingwg's IPAMClaim CRD, `k8s.cni.cncf.io/v1alpha1`) for their interface.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spidernet.control.allocator.errors import AllocationError, Reason

LABEL_VM_NAME = "vm.kubevirt.io/name"
LABEL_MIGRATION = "kubevirt.io/migrationJobUID"
KUBEVIRT_API = "kubevirt.io/v1"
IPAMCLAIM_API = "k8s.cni.cncf.io/v1alpha1"
VM_KIND = "VirtualMachine"
VMI_KIND = "VirtualMachineInstance"
IPAMCLAIM_KIND = "IPAMClaim"
ANNO_NETWORKS = "k8s.v1.cni.cncf.io/networks"
CLAIM_REFERENCE = "ipam-claim-reference"


@dataclass(frozen=True)
class VmRef:
    """The VM whose addresses a launcher pod uses: its name, its VMI's name, and the live
    migration the pod is the target of ("" when none)."""

    vm: str
    vmi: str
    migration: str = ""


def vm_of(meta: Mapping[str, Any]) -> VmRef | None:
    """The VM of a pod's `metadata` when the pod is a virt-launcher pod (its controller is a
    VirtualMachineInstance), else None. A VMI that no VM made names its own addresses."""
    refs = meta.get("ownerReferences") or []
    for ref in refs if isinstance(refs, list) else []:
        if not isinstance(ref, dict) or not ref.get("controller"):
            continue
        if ref.get("kind") != VMI_KIND or not str(ref.get("apiVersion", "")).startswith(
            "kubevirt.io/"
        ):
            return None
        vmi = str(ref.get("name", ""))
        labels = meta.get("labels") or {}
        labels = labels if isinstance(labels, dict) else {}
        vm = str(labels.get(LABEL_VM_NAME) or vmi)
        return VmRef(vm=vm, vmi=vmi, migration=str(labels.get(LABEL_MIGRATION, "")))
    return None


class SelectionError(AllocationError):
    """The `k8s.v1.cni.cncf.io/networks` annotation names an IPAMClaim in a form that cannot
    be read (a config error: CNI code 7)."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.INVALID, message)


def claim_for(annotations: Mapping[str, str], ifname: str) -> str:
    """The IPAMClaim the network selection element of interface `ifname` names, or "".

    An element matches by its `interface`, or, when it names none, by the name Multus gives
    it (`net1` for the first element, `net2` for the second, ...). The comma-separated form
    of the annotation names no claim. Raises SelectionError for a claim reference that is
    not a non-empty string."""
    raw = annotations.get(ANNO_NETWORKS, "").strip()
    if not raw.startswith("["):
        return ""
    try:
        elements = json.loads(raw)
    except ValueError:
        return ""  # Multus refuses the pod; pool selection is not the place to say so
    if not isinstance(elements, list):
        return ""
    for index, element in enumerate(elements, start=1):
        if not isinstance(element, dict):
            continue
        name = element.get("interface") or f"net{index}"
        if name != ifname or CLAIM_REFERENCE not in element:
            continue
        claim = element[CLAIM_REFERENCE]
        if not isinstance(claim, str) or not claim:
            raise SelectionError(
                f"{ANNO_NETWORKS}: element {index} ({ifname}): {CLAIM_REFERENCE} must be "
                f"the name of an IPAMClaim, got {claim!r}"
            )
        return claim
    return ""
