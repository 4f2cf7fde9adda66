"""KubeVirt VMs and IPAMClaims on a real kube-apiserver (docs/kubevirt.md).

KubeVirt cannot run here, so its objects are made as KubeVirt makes them (testbed/kubevirt.py):
a VirtualMachine, the VirtualMachineInstance it owns, a virt-launcher pod the VMI owns with
KubeVirt's labels, and for a live migration a VirtualMachineInstanceMigration and a target
launcher pod labelled with its uid. The IPAMClaim CRD is k8snetworkplumbingwg's own file.
Real `spidernet serve --kube` agents on two simulated nodes are called as spidernet-ipam calls
them, one call per NIC, in the order the kubelet's runtime and Multus make them; a real
`spidernet controller` runs its GC throughout. What is held is read back from the cluster:
the SpiderEndpoint named after the VM (or the claim) and one IPClaim per address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from spidernet.control.client import ServiceError
from spidernet.control.store.kube_names import INTERNAL
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.kubecluster import Cluster
from spidernet.testbed.kubecontroller import Controller, start_controller
from spidernet.testbed.kubeobjects import claims, endpoint, ipam_call, make_pod
from spidernet.testbed.kubevirt import (
    CLAIM_GROUP,
    CLAIM_VERSION,
    delete_kubevirt,
    ipamclaim_crd,
    kubevirt_crds,
    launcher_pod,
    make_ipamclaim,
    make_migration,
    make_vm,
    make_vmi,
)
from spidernet.testbed.waiting import wait_for

from .conftest import install_crd

GROUP, VERSION = "spiderpool.spidernet.io", "v2beta1"
NICS = ("eth0", "net1")
ANNO_CONTAINER = "spidernet.io/container-id"
ANNO_POD = "spidernet.io/pod"
ANNO_MIGRATION = "spidernet.io/migration-source"


@pytest.fixture(scope="module")
def foreign_crds(
    k8s_api: client.ApiClient, store_crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    """KubeVirt's VM, VMI and migration CRDs and the IPAMClaim CRD, installed."""
    ext = client.ApiextensionsV1Api(k8s_api)
    where = tmp_path_factory.mktemp("crds")
    paths = [ipamclaim_crd()]
    for doc in kubevirt_crds():
        path = where / f"{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        paths.append(path)
    return [install_crd(ext, path) for path in paths]


@pytest.fixture(scope="module")
def agents(k8s_cluster: Cluster, foreign_crds: list[str]) -> Iterator[dict[str, ServiceProcess]]:
    """Agents of node-a and node-b for the whole module."""
    with ExitStack() as stack:
        yield {
            node: stack.enter_context(
                scratch_service(
                    "--kube", "--kubeconfig", str(k8s_cluster.kubeconfig), "--node", node
                )
            )
            for node in ("node-a", "node-b")
        }


@pytest.fixture
def pools(custom: client.CustomObjectsApi, foreign_crds: list[str]) -> Iterator[dict[str, str]]:
    """A SpiderIPPool of four addresses per NIC (the VM, the canary or the step's unrelated
    pod, and the churning pod: an unrelated pod can only get what the VM does not hold);
    claims and pools removed afterwards."""
    made: dict[str, str] = {}
    for nic in NICS:
        name = f"kv-{nic}-{uuid.uuid4().hex[:6]}"
        net = ipaddress.ip_network(f"10.{random.randrange(256)}.{random.randrange(256)}.0/24")
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SpiderIPPool",
            "metadata": {"name": name},
            "spec": {"ipVersion": 4, "subnet": str(net), "ips": [f"{net[10]}-{net[13]}"]},
        }
        custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", body)
        made[nic] = name
    yield made
    for name in made.values():
        for claim in claims(custom, name):
            custom.delete_cluster_custom_object(
                INTERNAL.group, INTERNAL.version, INTERNAL.plural, claim["metadata"]["name"]
            )
        custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", name)


@pytest.fixture
def controller(k8s_cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Controller]:
    ctl = start_controller(k8s_cluster, namespace, "kubevirt", tmp_path / "controller.log")
    yield ctl
    ctl.stop()


def nic_call(
    namespace: str, pod: str, uid: str, container: str, nic: str, pool: str
) -> dict[str, Any]:
    call = ipam_call(namespace, pod, uid, pool, container)
    call["ifName"] = nic
    call["network"] = f"underlay-{nic}"
    return call


class Launcher:
    """One launcher pod (or any pod) and its sandbox: ADD and DEL of each NIC on its node."""

    def __init__(
        self, agent: ServiceProcess, namespace: str, name: str, uid: str, pools: dict[str, str]
    ) -> None:
        self.agent, self.namespace, self.name, self.uid = agent, namespace, name, uid
        self.container = f"ctr-{uuid.uuid4().hex[:12]}"
        self.pools = pools

    def add(self, nic: str) -> str:
        call = nic_call(self.namespace, self.name, self.uid, self.container, nic, self.pools[nic])
        answer = self.agent.client.request("POST", "/v1/ipam/allocate", call)
        (address,) = [ip["address"] for ip in answer["ips"] if ip["nic"] == nic]
        return str(address)

    def add_all(self) -> dict[str, str]:
        return {nic: self.add(nic) for nic in NICS}

    def delete(self, nics: tuple[str, ...] = tuple(reversed(NICS))) -> None:
        for nic in nics:
            call = nic_call(
                self.namespace, self.name, self.uid, self.container, nic, self.pools[nic]
            )
            self.agent.client.request("POST", "/v1/ipam/release", call)


def held(custom: client.CustomObjectsApi, pools: dict[str, str]) -> dict[str, set[str]]:
    """Address -> the holders its IPClaim names, per pool."""
    out: dict[str, set[str]] = {}
    for nic, pool in pools.items():
        for claim in claims(custom, pool):
            body = claim["spec"]["body"]
            out.setdefault(nic, set()).add(f"{claim['spec']['name']}={body['pod']}")
    return out


def holder(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, str]:
    """Who holds the endpoint `name` now: its sandbox, its pod and the migration's source."""
    ep = endpoint(custom, namespace, name)
    assert ep is not None, f"no SpiderEndpoint {namespace}/{name}"
    anno = ep["metadata"].get("annotations", {})
    source = json.loads(anno.get(ANNO_MIGRATION, "{}"))
    return {
        "container": anno.get(ANNO_CONTAINER, ""),
        "pod": anno.get(ANNO_POD, ""),
        "source": source.get("containerID", ""),
        "uid": ep["status"]["current"]["uid"],
    }


def test_a_vm_keeps_its_addresses_across_three_restarts_and_loses_them_when_deleted(
    agents: dict[str, ServiceProcess],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pools: dict[str, str],
    controller: Controller,
) -> None:
    vm = _running_vm(agents, core, custom, namespace, pools, "vm1")
    pod, first, expected, vm_uid = vm.launcher, vm.addresses, vm.expected, vm.vm_uid
    assert held(custom, pools) == expected
    assert holder(custom, namespace, "vm1")["pod"] == pod.name
    for restart, node in enumerate(("node-b", "node-a", "node-b")):
        # Stopped: the launcher's DELs, its pod and the VMI deleted (the VM stays).
        pod.delete()
        core.delete_namespaced_pod(pod.name, namespace, grace_period_seconds=0)
        delete_kubevirt(custom, namespace, "virtualmachineinstances", "vm1")
        _gc_pass_seen(pod.agent, core, custom, pools, namespace, f"canary-{restart}")
        assert held(custom, pools) == expected, f"restart {restart}: the stopped VM lost them"
        # Started again, on another node: a new VMI and launcher pod, the same addresses.
        vmi_uid = make_vmi(custom, namespace, "vm1", vm_uid)
        name, uid = launcher_pod(core, namespace, "vm1", vmi_uid, node=node)
        pod = Launcher(agents[node], namespace, name, uid, pools)
        assert pod.add_all() == first, f"restart {restart}"
        assert holder(custom, namespace, "vm1") | {"source": ""} == {
            "container": pod.container,
            "pod": name,
            "source": "",
            "uid": uid,
        }
    assert held(custom, pools) == expected
    # Deleted: the VM goes first; the launcher's DEL comes while the VMI still exists (it
    # waits for its pod), so the addresses stay until the VMI is gone, then the GC frees them.
    delete_kubevirt(custom, namespace, "virtualmachines", "vm1")
    pod.delete()
    core.delete_namespaced_pod(pod.name, namespace, grace_period_seconds=0)
    assert held(custom, pools) == expected
    delete_kubevirt(custom, namespace, "virtualmachineinstances", "vm1")
    wait_for("the deleted VM's reclaim", lambda: held(custom, pools) == {})
    assert endpoint(custom, namespace, "vm1") is None
    (line,) = [r for r in controller.reclaims() if f"'{namespace}/vm1'" in r]
    assert "virtual machine and its instance gone" in line


@dataclass(frozen=True)
class _Vm:
    """A running VM: its and its VMI's uids, its launcher pod, the addresses that pod's ADDs
    answered, and the claims they make (per NIC: `address=namespace/vm`)."""

    vm_uid: str
    vmi_uid: str
    launcher: Launcher
    addresses: dict[str, str]
    expected: dict[str, set[str]]


def _running_vm(
    agents: dict[str, ServiceProcess],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pools: dict[str, str],
    name: str,
) -> _Vm:
    """A VM, its VMI and its first launcher pod on node-a, with both NICs added."""
    vm_uid = make_vm(custom, namespace, name)
    vmi_uid = make_vmi(custom, namespace, name, vm_uid)
    pod, uid = launcher_pod(core, namespace, name, vmi_uid, node="node-a")
    launcher = Launcher(agents["node-a"], namespace, pod, uid, pools)
    addresses = launcher.add_all()
    expected = {nic: {f"{addresses[nic].split('/')[0]}={namespace}/{name}"} for nic in NICS}
    return _Vm(vm_uid, vmi_uid, launcher, addresses, expected)


def _gc_pass_seen(
    agent: ServiceProcess,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    pools: dict[str, str],
    namespace: str,
    canary: str,
) -> None:
    """Wait until the GC has judged the cluster as it is now: a plain pod allocated for and
    deleted now is reclaimed only by a pass whose snapshot was read after this moment."""
    uid = make_pod(core, namespace, canary)
    Launcher(agent, namespace, canary, uid, pools).add("eth0")
    core.delete_namespaced_pod(canary, namespace, grace_period_seconds=0)
    wait_for(f"the GC's reclaim of {canary}", lambda: endpoint(custom, namespace, canary) is None)


def test_live_migration_hands_the_addresses_over_and_back_as_it_succeeds_fails_or_aborts(
    agents: dict[str, ServiceProcess],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pools: dict[str, str],
    controller: Controller,
) -> None:
    vm = _running_vm(agents, core, custom, namespace, pools, "vm2")
    source, addresses, expected = vm.launcher, vm.addresses, vm.expected
    mine = {a.split("/")[0] for a in addresses.values()}
    migrate = _Migration(agents, core, custom, namespace, pools, vm.vmi_uid)
    with _churn(agents["node-a"], core, namespace, pools) as given:
        _fail_abort_succeed(migrate, source, addresses, expected, mine)
    assert given, "the churning pod never got an address"
    assert not given & mine, f"an unrelated pod was given the VM's {given & mine}"
    assert [r for r in controller.reclaims() if f"'{namespace}/vm2'" in r] == []


@contextlib.contextmanager
def _churn(
    agent: ServiceProcess, core: client.CoreV1Api, namespace: str, pools: dict[str, str]
) -> Iterator[set[str]]:
    """An unrelated pod's sandboxes come and go (ADD both NICs, DEL) on another thread for
    the duration; the addresses it was given."""
    uid = make_pod(core, namespace, "churn")
    given: set[str] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while not stop.is_set():
                pod = Launcher(agent, namespace, "churn", uid, pools)
                given.update(a.split("/")[0] for a in pod.add_all().values())
                pod.delete()
        except BaseException as e:  # reported on the test's thread
            errors.append(e)

    thread = threading.Thread(target=run, name="churn")
    thread.start()
    try:
        yield given
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors


def _fail_abort_succeed(
    migrate: _Migration,
    source: Launcher,
    addresses: dict[str, str],
    expected: dict[str, set[str]],
    mine: set[str],
) -> None:
    """Three migrations of the VM `source` runs: failed, aborted half-way, succeeded."""
    # Failed: the target got its addresses, then KubeVirt deletes it; the source holds again.
    target = migrate.start(source)
    assert target.add_all() == addresses
    migrate.check(target, source=source.container, expected=expected, avoid=mine)
    target.delete()
    migrate.end(target)
    migrate.check(source, source="", expected=expected, avoid=mine)
    # Aborted half-way: the target's second NIC was never added; both its DELs still come.
    target = migrate.start(source)
    assert target.add("eth0") == addresses["eth0"]
    migrate.check(target, source=source.container, expected=expected, avoid=mine)
    target.delete()
    migrate.end(target)
    migrate.check(source, source="", expected=expected, avoid=mine)
    # Succeeded: the source's DELs come after the target took over; the target holds.
    target = migrate.start(source)
    assert target.add_all() == addresses
    source.delete()
    migrate.end(source)
    migrate.check(target, source="", expected=expected, avoid=mine)
    # A late DEL of the source sandbox (a retried one) takes nothing from the target.
    source.delete()
    migrate.check(target, source="", expected=expected, avoid=mine)


class _Migration:
    """KubeVirt's side of a live migration of one VMI between node-a and node-b."""

    def __init__(
        self,
        agents: dict[str, ServiceProcess],
        core: client.CoreV1Api,
        custom: client.CustomObjectsApi,
        namespace: str,
        pools: dict[str, str],
        vmi_uid: str,
    ) -> None:
        self.agents, self.core, self.custom = agents, core, custom
        self.namespace, self.pools, self.vmi_uid = namespace, pools, vmi_uid
        self.others = 0

    def start(self, source: Launcher) -> Launcher:
        """A migration object, and its target launcher pod on the other node."""
        node = "node-b" if source.agent is self.agents["node-a"] else "node-a"
        job = make_migration(self.custom, self.namespace, "vm2")
        name, uid = launcher_pod(
            self.core, self.namespace, "vm2", self.vmi_uid, node=node, migration=job
        )
        return Launcher(self.agents[node], self.namespace, name, uid, self.pools)

    def end(self, gone: Launcher) -> None:
        """The pod of the side that lost, deleted (its DELs came first)."""
        self.core.delete_namespaced_pod(gone.name, self.namespace, grace_period_seconds=0)

    def check(
        self,
        holds: Launcher,
        *,
        source: str,
        expected: dict[str, set[str]],
        avoid: set[str],
    ) -> None:
        """The VM's endpoint is held by `holds` (with `source` recorded as the migration's
        source); the claims are the VM's, unchanged; an unrelated pod allocated now gets
        other addresses, and gives them back."""
        assert holder(self.custom, self.namespace, "vm2") == {
            "container": holds.container,
            "pod": holds.name,
            "source": source,
            "uid": holds.uid,
        }
        self.others += 1
        other = f"other-{self.others}"
        uid = make_pod(self.core, self.namespace, other)
        pod = Launcher(self.agents["node-b"], self.namespace, other, uid, self.pools)
        got = {a.split("/")[0] for a in pod.add_all().values()}
        assert not got & avoid, f"{other} was given the VM's {got & avoid}"
        pod.delete()
        self.core.delete_namespaced_pod(other, self.namespace, grace_period_seconds=0)
        vm = f"={self.namespace}/vm2"
        now = held(self.custom, self.pools)  # (the churning pod's come and go meanwhile)
        assert {nic: {h for h in now.get(nic, set()) if h.endswith(vm)} for nic in NICS} == expected


def test_an_ipamclaim_outlives_three_pods_and_its_deletion_frees_the_address(
    agents: dict[str, ServiceProcess],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pools: dict[str, str],
    controller: Controller,
) -> None:
    make_ipamclaim(custom, namespace, "db.underlay", "underlay-net1", "net1")
    networks = [
        {"name": "underlay-net1", "interface": "net1", "ipam-claim-reference": "db.underlay"}
    ]
    anno = {"k8s.v1.cni.cncf.io/networks": json.dumps(networks)}
    kept = ""
    for n, node in enumerate(("node-a", "node-b", "node-a")):
        name = f"db-{n}"
        uid = make_pod(core, namespace, name, annotations=anno)
        pod = Launcher(agents[node], namespace, name, uid, pools)
        got = pod.add_all()
        kept = kept or got["net1"]
        assert got["net1"] == kept, f"pod {n}"
        claim = custom.get_namespaced_custom_object(
            CLAIM_GROUP, CLAIM_VERSION, namespace, "ipamclaims", "db.underlay"
        )
        assert isinstance(claim, dict)
        assert claim["status"]["ips"] == [kept]
        assert holder(custom, namespace, "db.underlay")["pod"] == name
        pod.delete()
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        # eth0's address was the pod's: freed with it; net1's is the claim's.
        assert held(custom, pools) == {"net1": {f"{kept.split('/')[0]}={namespace}/db.underlay"}}
    custom.delete_namespaced_custom_object(
        CLAIM_GROUP, CLAIM_VERSION, namespace, "ipamclaims", "db.underlay"
    )
    wait_for("the deleted claim's reclaim", lambda: held(custom, pools) == {})
    (line,) = [r for r in controller.reclaims() if f"'{namespace}/db.underlay'" in r]
    assert "ipamclaim gone" in line


def test_a_malformed_claim_reference_is_refused_and_allocates_nothing(
    agents: dict[str, ServiceProcess],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pools: dict[str, str],
) -> None:
    networks = [{"name": "underlay-net1", "interface": "net1", "ipam-claim-reference": 7}]
    uid = make_pod(
        core, namespace, "bad", annotations={"k8s.v1.cni.cncf.io/networks": json.dumps(networks)}
    )
    pod = Launcher(agents["node-a"], namespace, "bad", uid, pools)
    with pytest.raises(ServiceError) as e:
        pod.add("net1")
    assert e.value.code == 7
    assert "ipam-claim-reference" in str(e.value)
    assert held(custom, pools) == {}
    assert endpoint(custom, namespace, "bad") is None
