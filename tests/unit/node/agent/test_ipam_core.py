"""spidernet-ipam's verbs in-process over the IPAM core and a real SQLite store file:
idempotent ADD, pod re-creation, several NICs, StatefulSet addresses, GC and CHECK."""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from spidernet.cni.skel import plugin_main
from spidernet.control.store.base import Create, Key, Stored, Write
from spidernet.control.store.embedded import EmbeddedStore
from spidernet.node.agent import resources
from spidernet.node.agent.ipam import IpamCore
from spidernet.node.ipam.conf import PodMeta
from spidernet.node.ipam.errors import Failure, cni_error
from spidernet.node.ipam.plugin import make_plugin


@pytest.fixture
def core(tmp_path: Path) -> Iterator[IpamCore]:
    store = EmbeddedStore(tmp_path / "db", synchronous="NORMAL")
    c = IpamCore(store, node="node1", rng=random.Random(3))
    for doc in (
        pool("v4", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"], gateway="10.1.0.1", default=True),
        pool("v6", "fd01::/64", ["fd01::10-fd01::19"], gateway="fd01::1"),
        pool("side", "10.2.0.0/24", ["10.2.0.10-10.2.0.19"], gateway="10.2.0.1"),
    ):
        resources.apply(store, doc)
    yield c
    store.close()


def pool(name: str, subnet: str, ips: list[str], **spec: object) -> dict[str, Any]:
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"subnet": subnet, "ips": ips, **spec},
    }


def cni(
    core: IpamCore,
    verb: str,
    cid: str,
    *,
    ifname: str = "eth0",
    pod: str = "",
    ipam: Mapping[str, object] | None = None,
    extra: Mapping[str, object] | None = None,
    version: str = "1.0.0",
) -> tuple[int, dict[str, Any]]:
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": "net",
        "type": "macvlan",
        "ipam": {"type": "spidernet-ipam", **(ipam or {})},
        **(extra or {}),
    }
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_IFNAME": ifname, "CNI_PATH": "/x"}
    if verb in ("ADD", "CHECK"):
        env["CNI_NETNS"] = "/run/netns/x"
    if pod:
        ns, _, name = pod.partition("/")
        env["CNI_ARGS"] = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}"
    out, err = io.StringIO(), io.StringIO()
    status = plugin_main(
        make_plugin(core),
        environ=env,
        stdin=io.BytesIO(json.dumps(conf).encode()),
        stdout=out,
        stderr=err,
    )
    text = out.getvalue()
    return status, json.loads(text) if text.strip() else {}


def ips(result: Mapping[str, Any]) -> list[str]:
    return [ip["address"] for ip in result["ips"]]


def held(core: IpamCore, name: str) -> int:
    return len(core.store.list("IPClaim", namespace=name).items)


def test_add_is_idempotent_for_the_same_sandbox(core: IpamCore) -> None:
    status, first = cni(core, "ADD", "c1", pod="ns/a")
    assert status == 0
    assert first["ips"][0]["gateway"] == "10.1.0.1"
    assert first["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]
    _, again = cni(core, "ADD", "c1", pod="ns/a")
    assert ips(again) == ips(first)
    assert held(core, "v4") == 1


def test_a_recreated_pod_gets_fresh_addresses_and_the_old_ones_are_freed(core: IpamCore) -> None:
    _, first = cni(core, "ADD", "c1", pod="ns/a")
    _, second = cni(core, "ADD", "c2", pod="ns/a")
    assert held(core, "v4") == 1
    # A late DEL of the old sandbox must not free the new one's address.
    assert cni(core, "DEL", "c1", pod="ns/a")[0] == 0
    assert held(core, "v4") == 1
    assert cni(core, "DEL", "c2", pod="ns/a")[0] == 0
    assert held(core, "v4") == 0
    assert ips(first) != []
    assert ips(second) != []


def test_dual_stack_from_the_ippool_annotation(core: IpamCore) -> None:
    anno = {"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["v4"], "ipv6": ["v6"]})}
    _, result = cni(
        core, "ADD", "c1", pod="ns/a", extra={"args": {"spidernet.io": {"annotations": anno}}}
    )
    got = ips(result)
    assert got[0].startswith("10.1.0.")
    assert got[1].startswith("fd01::")
    assert {"dst": "::/0", "gw": "fd01::1"} in result["routes"]


def test_registered_pod_annotations_pick_pools_for_several_nics(core: IpamCore) -> None:
    anno = {
        "ipam.spidernet.io/ippools": json.dumps(
            [
                {"interface": "eth0", "ipv4": ["v4"]},
                {"interface": "net1", "ipv4": ["side"], "cleangateway": True},
            ]
        )
    }
    resources.apply(
        core.store,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "m", "namespace": "ns", "annotations": anno},
        },
    )
    _, eth0 = cni(core, "ADD", "c1", pod="ns/m")
    assert held(core, "v4") == 1  # both NICs at the first ADD
    assert held(core, "side") == 1
    _, net1 = cni(core, "ADD", "c1", ifname="net1", pod="ns/m")
    assert ips(net1)[0].startswith("10.2.0.")
    assert net1.get("routes", []) == []  # cleangateway: no default route on net1
    assert cni(core, "DEL", "c1", pod="ns/m")[0] == 0
    assert held(core, "v4") == 0
    assert held(core, "side") == 1
    assert cni(core, "DEL", "c1", ifname="net1", pod="ns/m")[0] == 0
    assert held(core, "side") == 0
    assert core.store.list("SpiderEndpoint").items == ()
    assert ips(eth0)[0].startswith("10.1.0.")


def test_a_second_network_on_the_same_pod_allocates_for_its_own_interface(core: IpamCore) -> None:
    _, eth0 = cni(core, "ADD", "c1", pod="ns/a")
    _, net1 = cni(
        core, "ADD", "c1", ifname="net1", pod="ns/a", ipam={"default_ipv4_ippool": ["side"]}
    )
    assert ips(net1)[0].startswith("10.2.0.")
    assert held(core, "v4") == 1
    assert held(core, "side") == 1
    cni(core, "DEL", "c1", ifname="net1", pod="ns/a")
    assert held(core, "side") == 0
    assert held(core, "v4") == 1
    assert ips(eth0)


def test_statefulset_pods_keep_their_addresses_until_scaled_down(core: IpamCore) -> None:
    owner = {"owner": {"kind": "StatefulSet", "name": "db"}}
    extra = {"args": {"spidernet.io": owner}}
    _, first = cni(core, "ADD", "c1", pod="ns/db-1", extra=extra)
    assert cni(core, "DEL", "c1", pod="ns/db-1", extra=extra)[0] == 0
    assert held(core, "v4") == 1  # kept across the restart
    _, second = cni(core, "ADD", "c2", pod="ns/db-1", extra=extra)
    assert ips(second) == ips(first)
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "ns"},
    }
    resources.apply(core.store, {**sts, "spec": {"replicas": 1}})  # ordinal 1 is now invalid
    assert cni(core, "DEL", "c2", pod="ns/db-1", extra=extra)[0] == 0
    assert held(core, "v4") == 0


def test_gc_frees_what_no_valid_attachment_holds(core: IpamCore) -> None:
    for cid in ("c1", "c2", "c3"):
        cni(core, "ADD", cid)
    keep = {"cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]}
    assert cni(core, "GC", "", extra=keep, version="1.1.0")[0] == 0
    claims = core.store.list("IPClaim", namespace="v4").items
    assert [c.body["pod"] for c in claims] == ["cni/c2"]


def test_check_compares_the_record_with_prev_result(core: IpamCore) -> None:
    _, result = cni(core, "ADD", "c1")
    prev = {"prevResult": {"cniVersion": "1.0.0", "ips": result["ips"]}}
    assert cni(core, "CHECK", "c1", extra=prev)[0] == 0
    wrong = {"prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.9.9.9/24"}]}}
    status, err = cni(core, "CHECK", "c1", extra=wrong)
    assert status == 1
    assert "lacks the recorded address" in err["msg"]
    status, err = cni(core, "CHECK", "nobody")
    assert (status, err["code"]) == (1, 3)


@pytest.mark.parametrize(
    ("ipam", "message"),
    [
        ({"default_ipv4_ipool": ["v4"]}, "unknown key"),
        ({"clean_gateway": "yes"}, "expected true or false"),
        ({"default_ipv4_ippool": "v4"}, "expected a list of pool names"),
    ],
)
def test_bad_ipam_config_is_error_7_and_allocates_nothing(
    core: IpamCore, ipam: dict[str, object], message: str
) -> None:
    status, err = cni(core, "ADD", "c1", ipam=ipam)
    assert (status, err["code"]) == (1, 7)
    assert message in err["msg"]
    assert held(core, "v4") == 0


def test_no_pool_and_exhausted_have_their_own_codes(core: IpamCore) -> None:
    status, err = cni(core, "ADD", "c1", ipam={"default_ipv4_ippool": ["nope"]})
    assert (status, err["code"]) == (1, 110)
    assert "nope: no such pool" in err["msg"]
    for i in range(10):
        assert cni(core, "ADD", f"f{i}")[0] == 0
    status, err = cni(core, "ADD", "one-too-many")
    assert (status, err["code"]) == (1, 111)
    assert "v4 (10 usable, 10 allocated)" in err["msg"]
    assert held(core, "v4") == 10
    assert len(core.store.list("SpiderEndpoint").items) == 10


def test_reserved_ips_are_skipped_by_allocation(core: IpamCore) -> None:
    reserved = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderReservedIP",
        "metadata": {"name": "r"},
        "spec": {"ips": ["10.1.0.10-10.1.0.18"]},
    }
    resources.apply(core.store, reserved)
    _, result = cni(core, "ADD", "c1")
    assert ips(result) == ["10.1.0.19/24"]
    _, err = cni(core, "ADD", "c2")
    assert err["code"] == 111


def test_parallel_mirror_sync_sees_what_another_core_wrote(core: IpamCore) -> None:
    """`parallel_sync` (Kubernetes mode) syncs pools, reserved IPs and claims in threads of
    their own: the same view as one after the other."""
    other = IpamCore(core.store, node="node2", rng=random.Random(3), parallel_sync=True)
    assert other.view.parallel
    for i in range(9):
        assert cni(core if i % 2 else other, "ADD", f"c{i}")[0] == 0
    reserved = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderReservedIP",
        "metadata": {"name": "r"},
        "spec": {"ips": ["10.1.0.10-10.1.0.19"]},
    }
    resources.apply(core.store, reserved)
    # One address left, and it is reserved: both views know.
    for c in (core, other):
        status, err = cni(c, "ADD", "last")
        assert (status, err["code"]) == (1, 111)
    assert held(core, "v4") == 9
    core.view.sync()
    other.view.sync()
    assert other.view.claims.taken("v4") == core.view.claims.taken("v4")
    assert set(other.view.pools) == set(core.view.pools) == {"v4", "v6", "side"}
    assert other.view.reserved[4] == core.view.reserved[4]


def test_status_needs_an_enabled_pool(core: IpamCore, tmp_path: Path) -> None:
    assert cni(core, "STATUS", "", version="1.1.0")[0] == 0
    empty = IpamCore(EmbeddedStore(tmp_path / "empty"), node="n")
    status, err = cni(empty, "STATUS", "", version="1.1.0")
    assert (status, err["code"]) == (1, 50)
    empty.store.close()


def test_deleting_an_endpoint_frees_its_addresses(core: IpamCore) -> None:
    cni(core, "ADD", "c1", pod="ns/a")
    resources.delete(core.store, Key("SpiderEndpoint", "ns", "a"))
    assert held(core, "v4") == 0


def test_a_failed_add_is_told_to_the_events_hook_with_its_pod_and_code(core: IpamCore) -> None:
    told: list[tuple[str, str, str, int, str, bool]] = []

    def hook(pod: PodMeta, error: Failure, *, waiting: bool) -> None:
        # What the runtime got is what the Event is named after (PodEvents.add_failed).
        cni = cni_error(error)
        told.append((pod.namespace, pod.name, pod.uid, cni.code, cni.msg, waiting))

    core.events = hook
    status, out = cni(core, "ADD", "c-none", pod="ns/web", ipam={"default_ipv4_ippool": ["gone"]})
    assert status == 1
    [(namespace, name, _, code, message, waiting)] = told
    assert (namespace, name, waiting) == ("ns", "web", False)
    assert (code, message) == (out["code"], out["msg"])
    # A successful ADD tells nothing.
    assert cni(core, "ADD", "c-ok", pod="ns/ok")[0] == 0
    assert len(told) == 1


def claim_owner(core: IpamCore, address: str) -> str | None:
    found = [c for c in core.store.list("IPClaim", namespace="v4").items if c.key.name == address]
    return str(found[0].body["pod"]) if found else None


def test_an_endpoint_listing_an_address_its_pod_no_longer_holds_is_mended_not_answered_twice(
    core: IpamCore,
) -> None:
    # A lost answer (a commit that undid its claims under an endpoint the server kept), or
    # a claim deleted by hand: the endpoint lists an address the pod does not hold.
    _, first = cni(core, "ADD", "c1", pod="ns/a")
    address = ips(first)[0].split("/")[0]
    core.store.delete(Key("IPClaim", "v4", address))
    # The same sandbox asks again: the claim is made again, the answer is the same.
    _, again = cni(core, "ADD", "c1", pod="ns/a")
    assert ips(again) == ips(first)
    assert claim_owner(core, address) == "ns/a"
    # Lost again, and taken by another pod meanwhile: pod a gets another address.
    core.store.delete(Key("IPClaim", "v4", address))
    core.store.create(Key("IPClaim", "v4", address), {"pod": "ns/b", "podUid": "", "node": "n"})
    status, third = cni(core, "ADD", "c1", pod="ns/a")
    assert status == 0
    assert ips(third) != ips(first)
    assert claim_owner(core, ips(third)[0].split("/")[0]) == "ns/a"
    # Its DEL gives back its own address, never pod b's.
    assert cni(core, "DEL", "c1", pod="ns/a")[0] == 0
    assert claim_owner(core, address) == "ns/b"
    assert held(core, "v4") == 1


def test_a_del_whose_claim_is_gone_or_anothers_succeeds_and_leaves_the_other_pods_claim(
    core: IpamCore,
) -> None:
    _, a = cni(core, "ADD", "c1", pod="ns/a")
    _, b = cni(core, "ADD", "c2", pod="ns/b")
    core.store.delete(Key("IPClaim", "v4", ips(a)[0].split("/")[0]))
    assert cni(core, "DEL", "c1", pod="ns/a") == (0, {})
    assert core.store.list("SpiderEndpoint", namespace="ns").items[0].key.name == "b"
    assert claim_owner(core, ips(b)[0].split("/")[0]) == "ns/b"


class RacedStore(EmbeddedStore):
    """An embedded store where another agent claims the address of this core's first claim
    just before its commit, as an agent whose mirror is a moment behind meets it; it counts
    the reads of each kind."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, synchronous="NORMAL")
        self.reads: Counter[str] = Counter()
        self.raced: list[str] = []

    def get(self, key: Key) -> Stored:
        self.reads[key.kind] += 1
        return super().get(key)

    def commit(self, writes: Sequence[Write]) -> tuple[Stored | None, ...]:
        claims = [w.key for w in writes if isinstance(w, Create) and w.key.kind == "IPClaim"]
        if claims and not self.raced:
            self.raced.append(claims[0].name)  # first: create() commits too
            super().create(claims[0], {"pod": "other/pod", "uid": "u-other"})
        return super().commit(writes)


def test_a_claim_lost_to_another_agent_is_chosen_again_without_reading_the_pod_again(
    tmp_path: Path,
) -> None:
    store = RacedStore(tmp_path / "db")
    try:
        resources.apply(store, pool("v4", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"], default=True))
        core = IpamCore(store, node="node1", rng=random.Random(3))
        status, result = cni(core, "ADD", "c1", pod="ns/web-0")
        assert status == 0, result
        [lost] = store.raced
        [got] = ips(result)
        assert got != f"{lost}/24"
        assert got in {f"10.1.0.{n}/24" for n in range(10, 20)}
        conflicts = "spidernet_ipam_allocation_conflict_counts_total"
        assert core.metrics.registry.get_sample_value(conflicts) == 1
        # The second try chose again from what the first one read.
        assert {k: store.reads[k] for k in ("Pod", "Namespace", "Node", "SpiderEndpoint")} == {
            "Pod": 1,
            "Namespace": 1,
            "Node": 1,
            "SpiderEndpoint": 1,
        }
        assert held(core, "v4") == 2
    finally:
        store.close()
