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
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from spidernet.control.client import ServiceError
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.kubecluster import Cluster
from spidernet.testbed.kubecontroller import Controller, start_controller
from spidernet.testbed.kubeobjects import (
    claims,
    endpoint,
    ipam_call,
    make_pod,
    remove_pool,
    small_pool,
)
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

from .conftest import install_crd, install_crd_doc

NICS = ("eth0", "net1")
ANNO_CONTAINER = "spidernet.io/container-id"
ANNO_POD = "spidernet.io/pod"
ANNO_MIGRATION = "spidernet.io/migration-source"


@pytest.fixture(scope="module")
def foreign_crds(k8s_api: client.ApiClient, store_crds: list[str]) -> list[str]:
    """KubeVirt's VM, VMI and migration CRDs and the IPAMClaim CRD, installed."""
    ext = client.ApiextensionsV1Api(k8s_api)
    crds = [install_crd(ext, ipamclaim_crd())]
    return crds + [install_crd_doc(ext, doc) for doc in kubevirt_crds()]


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
    made = {nic: small_pool(custom, f"kv-{nic}", 4) for nic in NICS}
    yield made
    for name in made.values():
        remove_pool(custom, name)


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


@dataclass
class Kv:
    """The module's agents, the test's namespace and pools, and the API clients: what every
    step below makes, calls and reads."""

    agents: dict[str, ServiceProcess]
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    namespace: str
    pools: dict[str, str]

    def pod(self, name: str, node: str, annotations: dict[str, str] | None = None) -> Launcher:
        """A plain pod of that name, with its sandbox on `node`."""
        uid = make_pod(self.core, self.namespace, name, annotations=annotations)
        return Launcher(self.agents[node], self.namespace, name, uid, self.pools)

    def launcher(self, vm: str, vmi_uid: str, node: str, migration: str = "") -> Launcher:
        """A virt-launcher pod of VM `vm` on `node` (a migration's target with `migration`)."""
        name, uid = launcher_pod(
            self.core, self.namespace, vm, vmi_uid, node=node, migration=migration
        )
        return Launcher(self.agents[node], self.namespace, name, uid, self.pools)

    def gone(self, pod: Launcher) -> None:
        """The pod deleted at once (no kubelet here keeps it Terminating)."""
        self.core.delete_namespaced_pod(pod.name, self.namespace, grace_period_seconds=0)

    def held(self) -> dict[str, set[str]]:
        """Address -> the holders its IPClaim names, per NIC's pool."""
        out: dict[str, set[str]] = {}
        for nic, pool in self.pools.items():
            for claim in claims(self.custom, pool):
                body = claim["spec"]["body"]
                out.setdefault(nic, set()).add(f"{claim['spec']['name']}={body['pod']}")
        return out

    def holder(self, name: str) -> dict[str, str]:
        """Who holds the endpoint `name` now: its sandbox, its pod, the migration's source."""
        ep = endpoint(self.custom, self.namespace, name)
        assert ep is not None, f"no SpiderEndpoint {self.namespace}/{name}"
        anno = ep["metadata"].get("annotations", {})
        source = json.loads(anno.get(ANNO_MIGRATION, "{}"))
        return {
            "container": anno.get(ANNO_CONTAINER, ""),
            "pod": anno.get(ANNO_POD, ""),
            "source": source.get("containerID", ""),
            "uid": ep["status"]["current"]["uid"],
        }

    def expected(self, addresses: dict[str, str], holder: str) -> dict[str, set[str]]:
        """The claims `addresses` (per NIC) make under `holder`."""
        return {
            nic: {f"{address.split('/')[0]}={self.namespace}/{holder}"}
            for nic, address in addresses.items()
        }

    def gc_pass_seen(self, canary: str) -> None:
        """Wait until the GC has judged the cluster as it is now: a plain pod allocated for
        and deleted now is reclaimed only by a pass whose snapshot was read after this."""
        self.pod(canary, "node-a").add("eth0")
        self.core.delete_namespaced_pod(canary, self.namespace, grace_period_seconds=0)
        wait_for(
            f"the GC's reclaim of {canary}",
            lambda: (
                endpoint(self.custom, self.namespace, canary) is None
                and not any(h.endswith(f"={self.namespace}/{canary}") for h in self._all_held())
            ),
        )

    def _all_held(self) -> set[str]:
        """Every `address=holder` any NIC's pool holds (the GC deletes an endpoint, then its
        claims: a reclaim is over when both are gone)."""
        return {entry for entries in self.held().values() for entry in entries}


def _reclaim_logged(controller: Controller, key: str) -> str:
    """The controller's one log line of the reclaim of `key` (written after its deletes)."""
    wait_for(f"the log of {key}'s reclaim", lambda: any(key in r for r in controller.reclaims()))
    (line,) = [r for r in controller.reclaims() if key in r]
    return line


@pytest.fixture
def kv(
    agents: dict[str, ServiceProcess],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    pools: dict[str, str],
) -> Kv:
    return Kv(agents, core, custom, namespace, pools)


@dataclass(frozen=True)
class _Vm:
    """A running VM: its and its VMI's uids, its launcher pod, the addresses that pod's ADDs
    answered, and the claims they make."""

    vm_uid: str
    vmi_uid: str
    launcher: Launcher
    addresses: dict[str, str]
    expected: dict[str, set[str]]


def _running_vm(kv: Kv, name: str) -> _Vm:
    """A VM, its VMI and its first launcher pod on node-a, with both NICs added."""
    vm_uid = make_vm(kv.custom, kv.namespace, name)
    vmi_uid = make_vmi(kv.custom, kv.namespace, name, vm_uid)
    launcher = kv.launcher(name, vmi_uid, "node-a")
    addresses = launcher.add_all()
    return _Vm(vm_uid, vmi_uid, launcher, addresses, kv.expected(addresses, name))


def test_a_vm_keeps_its_addresses_across_three_restarts_and_loses_them_when_deleted(
    kv: Kv, controller: Controller
) -> None:
    vm = _running_vm(kv, "vm1")
    pod, expected = vm.launcher, vm.expected
    assert kv.held() == expected
    assert kv.holder("vm1")["pod"] == pod.name
    for restart, node in enumerate(("node-b", "node-a", "node-b")):
        # Stopped: the launcher's DELs, its pod and the VMI deleted (the VM stays).
        pod.delete()
        kv.gone(pod)
        delete_kubevirt(kv.custom, kv.namespace, "virtualmachineinstances", "vm1")
        kv.gc_pass_seen(f"canary-{restart}")
        assert kv.held() == expected, f"restart {restart}: the stopped VM lost them"
        # Started again, on another node: a new VMI and launcher pod, the same addresses.
        pod = kv.launcher("vm1", make_vmi(kv.custom, kv.namespace, "vm1", vm.vm_uid), node)
        assert pod.add_all() == vm.addresses, f"restart {restart}"
        assert kv.holder("vm1") == {
            "container": pod.container,
            "pod": pod.name,
            "source": "",
            "uid": pod.uid,
        }
    assert kv.held() == expected
    # Deleted: the VM goes first; the launcher's DEL comes while the VMI still exists (it
    # waits for its pod), so the addresses stay until the VMI is gone, then the GC frees them.
    delete_kubevirt(kv.custom, kv.namespace, "virtualmachines", "vm1")
    pod.delete()
    kv.gone(pod)
    assert kv.held() == expected
    delete_kubevirt(kv.custom, kv.namespace, "virtualmachineinstances", "vm1")
    wait_for("the deleted VM's reclaim", lambda: kv.held() == {})
    assert endpoint(kv.custom, kv.namespace, "vm1") is None
    line = _reclaim_logged(controller, f"'{kv.namespace}/vm1'")
    assert "virtual machine and its instance gone" in line


def test_live_migration_hands_the_addresses_over_and_back_as_it_succeeds_fails_or_aborts(
    kv: Kv, controller: Controller
) -> None:
    vm = _running_vm(kv, "vm2")
    mine = {a.split("/")[0] for a in vm.addresses.values()}
    migrate = _Migration(kv, vm, mine)
    with _churn(kv) as given:
        _fail_abort_succeed(migrate, vm.launcher, vm.addresses)
    assert given, "the churning pod never got an address"
    assert not given & mine, f"an unrelated pod was given the VM's {given & mine}"
    assert [r for r in controller.reclaims() if f"'{kv.namespace}/vm2'" in r] == []


@contextlib.contextmanager
def _churn(kv: Kv) -> Iterator[set[str]]:
    """An unrelated pod's sandboxes come and go (ADD both NICs, DEL) on node-a, on another
    thread, for the duration; the addresses it was given."""
    churn = kv.pod("churn", "node-a")
    given: set[str] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while not stop.is_set():
                pod = Launcher(churn.agent, kv.namespace, "churn", churn.uid, kv.pools)
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


def _fail_abort_succeed(migrate: _Migration, source: Launcher, addresses: dict[str, str]) -> None:
    """Three migrations of the VM `source` runs: failed, aborted half-way, succeeded."""
    # Failed: the target got its addresses, then KubeVirt deletes it; the source holds again.
    target = migrate.start(source)
    assert target.add_all() == addresses
    migrate.check(target, source=source.container)
    target.delete()
    migrate.kv.gone(target)
    migrate.check(source, source="")
    # Aborted half-way: the target's second NIC was never added; both its DELs still come.
    target = migrate.start(source)
    assert target.add("eth0") == addresses["eth0"]
    migrate.check(target, source=source.container)
    target.delete()
    migrate.kv.gone(target)
    migrate.check(source, source="")
    # Succeeded: the source's DELs come after the target took over; the target holds.
    target = migrate.start(source)
    assert target.add_all() == addresses
    source.delete()
    migrate.kv.gone(source)
    migrate.check(target, source="")
    # A late DEL of the source sandbox (a retried one) takes nothing from the target.
    source.delete()
    migrate.check(target, source="")


class _Migration:
    """KubeVirt's side of a live migration of VM `vm` (vm2) between node-a and node-b, and
    what every step must leave: the VM's claims as they were, none of `mine` given away."""

    def __init__(self, kv: Kv, vm: _Vm, mine: set[str]) -> None:
        self.kv, self.vm, self.mine = kv, vm, mine
        self.others = 0

    def start(self, source: Launcher) -> Launcher:
        """A migration object, and its target launcher pod on the other node."""
        node = "node-b" if source.agent is self.kv.agents["node-a"] else "node-a"
        job = make_migration(self.kv.custom, self.kv.namespace, "vm2")
        return self.kv.launcher("vm2", self.vm.vmi_uid, node, migration=job)

    def check(self, holds: Launcher, *, source: str) -> None:
        """The VM's endpoint is held by `holds` (with `source` recorded as the migration's
        source); the claims are the VM's, unchanged; an unrelated pod allocated now gets
        other addresses, and gives them back."""
        kv = self.kv
        assert kv.holder("vm2") == {
            "container": holds.container,
            "pod": holds.name,
            "source": source,
            "uid": holds.uid,
        }
        self.others += 1
        pod = kv.pod(f"other-{self.others}", "node-b")
        got = {a.split("/")[0] for a in pod.add_all().values()}
        assert not got & self.mine, f"{pod.name} was given the VM's {got & self.mine}"
        pod.delete()
        kv.gone(pod)
        vm = f"={kv.namespace}/vm2"
        now = kv.held()  # (the churning pod's come and go meanwhile)
        mine = {nic: {h for h in now.get(nic, set()) if h.endswith(vm)} for nic in NICS}
        assert mine == self.vm.expected


def test_an_ipamclaim_outlives_three_pods_and_its_deletion_frees_the_address(
    kv: Kv, controller: Controller
) -> None:
    make_ipamclaim(kv.custom, kv.namespace, "db.underlay", "underlay-net1", "net1")
    networks = [
        {"name": "underlay-net1", "interface": "net1", "ipam-claim-reference": "db.underlay"}
    ]
    anno = {"k8s.v1.cni.cncf.io/networks": json.dumps(networks)}
    kept = ""
    for n, node in enumerate(("node-a", "node-b", "node-a")):
        pod = kv.pod(f"db-{n}", node, annotations=anno)
        got = pod.add_all()
        kept = kept or got["net1"]
        assert got["net1"] == kept, f"pod {n}"
        claim = kv.custom.get_namespaced_custom_object(
            CLAIM_GROUP, CLAIM_VERSION, kv.namespace, "ipamclaims", "db.underlay"
        )
        assert isinstance(claim, dict)
        assert claim["status"]["ips"] == [kept]
        assert kv.holder("db.underlay")["pod"] == pod.name
        pod.delete()
        kv.gone(pod)
        # eth0's address was the pod's: freed with it; net1's is the claim's.
        assert kv.held() == kv.expected({"net1": kept}, "db.underlay")
    kv.custom.delete_namespaced_custom_object(
        CLAIM_GROUP, CLAIM_VERSION, kv.namespace, "ipamclaims", "db.underlay"
    )
    wait_for("the deleted claim's reclaim", lambda: kv.held() == {})
    line = _reclaim_logged(controller, f"'{kv.namespace}/db.underlay'")
    assert "ipamclaim gone" in line


def test_a_malformed_claim_reference_is_refused_and_allocates_nothing(kv: Kv) -> None:
    networks = [{"name": "underlay-net1", "interface": "net1", "ipam-claim-reference": 7}]
    anno = {"k8s.v1.cni.cncf.io/networks": json.dumps(networks)}
    pod = kv.pod("bad", "node-a", annotations=anno)
    with pytest.raises(ServiceError) as e:
        pod.add("net1")
    assert e.value.code == 7
    assert "ipam-claim-reference" in str(e.value)
    assert kv.held() == {}
    assert endpoint(kv.custom, kv.namespace, "bad") is None
