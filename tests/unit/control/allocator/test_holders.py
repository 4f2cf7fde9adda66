"""Who holds a pod's addresses (control/allocator/holders.py): a virt-launcher pod's VM and an
interface's IPAMClaim, read from the pod's metadata and Multus's network selection elements."""

from __future__ import annotations

import json

import pytest

from spidernet.control.allocator.errors import Reason
from spidernet.control.allocator.holders import SelectionError, VmRef, claim_for, vm_of

VMI = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": "vmi-x"}


def test_a_launcher_pod_names_its_vm_by_label_else_by_its_vmi() -> None:
    labels = {"vm.kubevirt.io/name": "vm-a", "kubevirt.io/migrationJobUID": "job-1"}
    meta = {"labels": labels, "ownerReferences": [VMI | {"controller": True}]}
    assert vm_of(meta) == VmRef(vm="vm-a", vmi="vmi-x", migration="job-1")
    assert vm_of({"ownerReferences": [VMI | {"controller": True}]}) == VmRef("vmi-x", "vmi-x")


@pytest.mark.parametrize(
    "refs",
    [
        [],
        [VMI],  # not the controller
        [VMI | {"controller": True, "apiVersion": "example.com/v1"}],  # another group's kind
        [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "controller": True}],
    ],
)
def test_other_pods_are_not_launcher_pods(refs: list[dict[str, object]]) -> None:
    assert vm_of({"ownerReferences": refs, "labels": {"vm.kubevirt.io/name": "vm-a"}}) is None


def networks(*elements: object) -> dict[str, str]:
    return {"k8s.v1.cni.cncf.io/networks": json.dumps(list(elements))}


def test_a_claim_is_found_by_interface_or_by_the_name_multus_gives() -> None:
    anno = networks(
        {"name": "a", "ipam-claim-reference": "first"},  # net1
        {"name": "b", "interface": "fast0", "ipam-claim-reference": "second"},
        {"name": "c"},  # net3, no claim
    )
    assert claim_for(anno, "net1") == "first"
    assert claim_for(anno, "fast0") == "second"
    assert claim_for(anno, "net2") == ""  # the second element is called fast0
    assert claim_for(anno, "net3") == ""
    assert claim_for(anno, "eth0") == ""


@pytest.mark.parametrize(
    "anno",
    [{}, {"k8s.v1.cni.cncf.io/networks": "a,b@net9"}, {"k8s.v1.cni.cncf.io/networks": "[oops"}],
)
def test_the_comma_form_and_unreadable_annotations_name_no_claim(anno: dict[str, str]) -> None:
    assert claim_for(anno, "net1") == ""


@pytest.mark.parametrize("ref", ["", 7, None, ["x"]])
def test_a_claim_reference_that_is_not_a_name_is_a_config_error(ref: object) -> None:
    with pytest.raises(SelectionError) as e:
        claim_for(networks({"name": "a", "ipam-claim-reference": ref}), "net1")
    assert e.value.reason is Reason.INVALID
    assert "element 1 (net1): ipam-claim-reference" in str(e.value)
