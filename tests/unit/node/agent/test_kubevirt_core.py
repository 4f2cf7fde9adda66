"""The IPAM core's VM- and claim-held addresses (docs/kubevirt.md) over a real SQLite store
file: KubeVirt's objects and IPAMClaims are records in the store, as the Kubernetes store
reads them from the API server (tests/k8s/test_kubevirt.py runs the same on one)."""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from spidernet.control.allocator.errors import AllocationError
from spidernet.control.store.base import Key, NotFound
from spidernet.control.store.embedded import EmbeddedStore
from spidernet.node.agent import resources
from spidernet.node.agent.detection import Conflict, Detector, Settings
from spidernet.node.agent.ipam import IpamCore
from spidernet.node.ipam.conf import IpamConf, PodMeta, parse_ipam
from spidernet.node.ipam.errors import AddressesHeld, cni_error
from spidernet.node.ipam.plugin import Address, IpamCall

NS = "vms"


@pytest.fixture
def core(tmp_path: Path) -> Iterator[IpamCore]:
    store = EmbeddedStore(tmp_path / "db", synchronous="NORMAL")
    c = IpamCore(store, node="node1", rng=random.Random(5))
    for name, subnet in (("p0", "10.1.0.0/24"), ("p1", "10.2.0.0/24")):
        base = subnet.removesuffix("0/24")
        spec = {"subnet": subnet, "ips": [f"{base}10-{base}12"]}
        resources.apply(
            store,
            {
                "apiVersion": "spiderpool.spidernet.io/v2beta1",
                "kind": "SpiderIPPool",
                "metadata": {"name": name},
                "spec": spec,
            },
        )
    yield c
    store.close()


API = {
    "Pod": "v1",
    "VirtualMachine": "kubevirt.io/v1",
    "VirtualMachineInstance": "kubevirt.io/v1",
    "IPAMClaim": "k8s.cni.cncf.io/v1alpha1",
}


def record(core: IpamCore, kind: str, name: str, meta: dict[str, Any] | None = None) -> None:
    """A KubeVirt object, IPAMClaim or Pod record, registered as `spidernet apply` does."""
    body = {"kind": kind, "metadata": {"name": name, "namespace": NS, **(meta or {})}}
    resources.apply(core.store, {"apiVersion": API[kind], **body})


def launcher(core: IpamCore, name: str, vm: str, migration: str = "") -> None:
    labels = {"kubevirt.io": "virt-launcher", "vm.kubevirt.io/name": vm}
    if migration:
        labels["kubevirt.io/migrationJobUID"] = migration
    owner = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": vm}
    record(core, "Pod", name, {"labels": labels, "ownerReferences": [owner | {"controller": True}]})


def call(pod: str, container: str, nic: str) -> IpamCall:
    pool = {"eth0": "p0", "net1": "p1"}[nic]
    return IpamCall(
        container_id=container,
        ifname=nic,
        netns=f"/run/netns/{container}",
        network=f"net-{nic}",
        conf=parse_ipam({"type": "spidernet-ipam", "default_ipv4_ippool": [pool]}),
        pod=PodMeta(namespace=NS, name=pod),
    )


def add(
    core: IpamCore, pod: str, container: str, nics: Sequence[str] = ("eth0", "net1")
) -> dict[str, str]:
    return {
        nic: next(a.address for a in core.allocate(call(pod, container, nic)) if a.interface == nic)
        for nic in nics
    }


def delete(core: IpamCore, pod: str, container: str) -> None:
    for nic in ("net1", "eth0"):
        core.release(call(pod, container, nic))


def claims(core: IpamCore) -> dict[str, str]:
    return {
        c.key.name: c.body["pod"]
        for pool in ("p0", "p1")
        for c in core.store.list("IPClaim", namespace=pool).items
    }


def endpoint_annotations(core: IpamCore, name: str) -> dict[str, str]:
    anno: dict[str, str] = core.store.get(Key("SpiderEndpoint", NS, name)).body["metadata"][
        "annotations"
    ]
    return anno


def test_a_vm_keeps_its_addresses_across_launcher_pods_until_vm_and_vmi_are_gone(
    core: IpamCore,
) -> None:
    record(core, "VirtualMachine", "vm1")
    record(core, "VirtualMachineInstance", "vm1")
    launcher(core, "virt-launcher-vm1-aaaaa", "vm1")
    first = add(core, "virt-launcher-vm1-aaaaa", "c1")
    assert set(claims(core).values()) == {f"{NS}/vm1"}
    delete(core, "virt-launcher-vm1-aaaaa", "c1")
    core.store.delete(Key("VirtualMachineInstance", NS, "vm1"))  # stopped: the VM stays
    assert len(claims(core)) == 2
    record(core, "VirtualMachineInstance", "vm1")  # started again
    launcher(core, "virt-launcher-vm1-bbbbb", "vm1")
    assert add(core, "virt-launcher-vm1-bbbbb", "c2") == first
    assert endpoint_annotations(core, "vm1")["spidernet.io/pod"] == "virt-launcher-vm1-bbbbb"
    core.store.delete(Key("VirtualMachine", NS, "vm1"))  # the VMI alone still holds them
    delete(core, "virt-launcher-vm1-bbbbb", "c2")
    assert len(claims(core)) == 2
    launcher(core, "virt-launcher-vm1-ccccc", "vm1")
    add(core, "virt-launcher-vm1-ccccc", "c3")
    core.store.delete(Key("VirtualMachineInstance", NS, "vm1"))
    delete(core, "virt-launcher-vm1-ccccc", "c3")
    assert claims(core) == {}
    with pytest.raises(NotFound):
        core.store.get(Key("SpiderEndpoint", NS, "vm1"))


def test_with_the_switch_off_each_launcher_pod_has_addresses_of_its_own(core: IpamCore) -> None:
    core = IpamCore(core.store, node="node1", kubevirt=False)
    record(core, "VirtualMachine", "vm1")
    launcher(core, "virt-launcher-vm1-aaaaa", "vm1")
    add(core, "virt-launcher-vm1-aaaaa", "c1")
    assert set(claims(core).values()) == {f"{NS}/virt-launcher-vm1-aaaaa"}
    delete(core, "virt-launcher-vm1-aaaaa", "c1")
    assert claims(core) == {}


def _migrating(core: IpamCore) -> dict[str, str]:
    record(core, "VirtualMachine", "vm1")
    launcher(core, "virt-launcher-vm1-src", "vm1")
    launcher(core, "virt-launcher-vm1-dst", "vm1", migration="job-1")
    first = add(core, "virt-launcher-vm1-src", "src")
    assert add(core, "virt-launcher-vm1-dst", "dst") == first
    anno = endpoint_annotations(core, "vm1")
    assert anno["spidernet.io/container-id"] == "dst"
    source = json.loads(anno["spidernet.io/migration-source"])
    assert (source["containerID"], source["pod"]) == ("src", "virt-launcher-vm1-src")
    assert source["attached"] == ["eth0", "net1"]
    return first


def test_a_migration_that_succeeds_leaves_the_target_holding(core: IpamCore) -> None:
    first = _migrating(core)
    delete(core, "virt-launcher-vm1-src", "src")
    anno = endpoint_annotations(core, "vm1")
    assert anno["spidernet.io/container-id"] == "dst"
    assert "spidernet.io/migration-source" not in anno
    assert anno["spidernet.io/attached"] == "eth0,net1"
    assert sorted(claims(core)) == sorted(a.split("/")[0] for a in first.values())


def test_a_migration_that_fails_gives_the_endpoint_back_to_the_source(core: IpamCore) -> None:
    first = _migrating(core)
    delete(core, "virt-launcher-vm1-dst", "dst")
    anno = endpoint_annotations(core, "vm1")
    assert anno["spidernet.io/container-id"] == "src"
    assert anno["spidernet.io/pod"] == "virt-launcher-vm1-src"
    assert "spidernet.io/migration-source" not in anno
    assert anno["spidernet.io/attached"] == "eth0,net1"
    assert len(claims(core)) == 2
    # The source's own ADD again (a CHECK-less retry) answers the same addresses.
    assert add(core, "virt-launcher-vm1-src", "src") == first


class _Crowded(Detector):
    """Every address is held by another station (a fake of the probes: pure logic only)."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    def settings(self, conf: IpamConf) -> Settings:
        return Settings(conflict=True)

    def check(
        self, netns: str, ifname: str, addresses: Sequence[Address], settings: Settings
    ) -> Conflict | None:
        self.checked.append(netns)
        ips = [ipaddress.ip_interface(a.address).ip for a in addresses if a.interface == ifname]
        return Conflict(tuple((ip, ("02:00:00:00:00:01",)) for ip in ips))


def test_a_migration_target_is_not_probed_the_source_answers_for_its_addresses(
    core: IpamCore,
) -> None:
    record(core, "VirtualMachine", "vm1")
    launcher(core, "virt-launcher-vm1-src", "vm1")
    launcher(core, "virt-launcher-vm1-dst", "vm1", migration="job-1")
    first = add(core, "virt-launcher-vm1-src", "src")
    core.detector = detector = _Crowded()
    assert add(core, "virt-launcher-vm1-dst", "dst") == first
    assert detector.checked == []
    launcher(core, "plain", "vm2")  # (any other ADD is probed, and refused here)
    with pytest.raises(AddressesHeld) as e:
        add(core, "plain", "c9", ("eth0",))
    assert cni_error(e.value).code == 112  # an IP conflict: every address tried was held
    assert detector.checked


def test_an_ipamclaim_holds_its_interface_and_status_is_written(core: IpamCore) -> None:
    written: list[tuple[str, str, list[str]]] = []
    core.claim_status = lambda ns, name, ips: written.append((ns, name, ips))
    record(core, "IPAMClaim", "db.net")
    networks = [{"name": "net-net1", "interface": "net1", "ipam-claim-reference": "db.net"}]
    anno = {"k8s.v1.cni.cncf.io/networks": json.dumps(networks)}
    kept = ""
    for n in range(3):
        record(core, "Pod", f"db-{n}", {"annotations": anno})
        got = add(core, f"db-{n}", f"c{n}")
        kept = kept or got["net1"]
        assert got["net1"] == kept
        assert written[-1] == (NS, "db.net", [kept])
        delete(core, f"db-{n}", f"c{n}")
        assert claims(core) == {kept.split("/")[0]: f"{NS}/db.net"}
    core.store.delete(Key("IPAMClaim", NS, "db.net"))
    record(core, "Pod", "db-9", {"annotations": anno})
    add(core, "db-9", "c9", ("net1",))
    delete(core, "db-9", "c9")
    assert claims(core) == {}


def test_a_malformed_claim_reference_is_a_config_error_and_holds_nothing(core: IpamCore) -> None:
    networks = [{"name": "net-net1", "interface": "net1", "ipam-claim-reference": ""}]
    record(
        core, "Pod", "bad", {"annotations": {"k8s.v1.cni.cncf.io/networks": json.dumps(networks)}}
    )
    with pytest.raises(AllocationError) as e:
        add(core, "bad", "c1", ("net1",))
    assert cni_error(e.value).code == 7
    assert claims(core) == {}
    core.release(call("bad", "c1", "net1"))  # DEL of what never was: fine


class _Watched:
    """Records what the conflict watch is told (the watch's own tests cover the watching)."""

    def __init__(self) -> None:
        self.ips: set[str] = set()

    def track(self, namespace: str, name: str, netns: str, ifname: str, ips: Sequence[Any]) -> None:
        self.ips |= {str(ip) for ip in ips}

    def untrack(self, ips: set[Any]) -> None:
        self.ips -= {str(ip) for ip in ips}


def test_the_side_of_a_migration_that_leaves_stops_watching_the_vms_addresses(
    core: IpamCore,
) -> None:
    watched = _Watched()
    core.watch = watched  # type: ignore[assignment]  # (only track and untrack are called)
    first = _migrating(core)
    mine = {a.split("/")[0] for a in first.values()}
    assert watched.ips == mine
    delete(core, "virt-launcher-vm1-src", "src")  # this node hosted the source
    assert watched.ips == set()
    assert len(claims(core)) == 2  # (the target, on another node, holds them)
