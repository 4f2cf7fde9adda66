"""The GC's decisions (control/controller/gc.py) and leader election's (lease.py), pure."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from spidernet.control.controller import gc
from spidernet.control.controller.gc import Reason
from spidernet.control.controller.lease import LeaseState, Step, spec_for, state_of, step
from spidernet.control.controller.run import Elector, GarbageCollector, Log, PoolStatus, run
from spidernet.control.store.base import CLAIM, Key, Listing, NotFound, Store, Stored
from spidernet.control.store.embedded import EmbeddedStore

NOW = 1_800_000_000.0


def claim(pool: str, ip: str, pod: str = "ns/web", uid: str = "u1") -> gc.Claim:
    return gc.Claim(Key(CLAIM, pool, ip), "1", pod, uid)


def endpoint(
    name: str = "web",
    uid: str = "u1",
    claims: tuple[gc.Claim, ...] = (),
    owner: tuple[str, str] = ("Pod", "web"),
) -> gc.Endpoint:
    return gc.Endpoint(
        Key(gc.ENDPOINT, "ns", name), "7", uid, owner[0], owner[1], tuple(c.key for c in claims)
    )


def pod(
    name: str = "web",
    uid: str = "u1",
    node: str = "",
    phase: str = "Pending",
    deleted_at: float | None = None,
    grace: float = 30.0,
) -> gc.Pod:
    return gc.Pod("ns", name, uid, node, phase, deleted_at, grace)


def snap(
    endpoints: tuple[gc.Endpoint, ...],
    claims: tuple[gc.Claim, ...],
    pods: tuple[gc.Pod, ...] = (),
    nodes: tuple[str, ...] = (),
    sets: tuple[gc.StatefulSet, ...] = (),
) -> gc.Snapshot:
    return gc.Snapshot(
        claims=claims,
        endpoints=endpoints,
        pods={(p.namespace, p.name): p for p in pods},
        nodes=frozenset(nodes),
        statefulsets={(s.namespace, s.name): s for s in sets},
    )


def reasons(s: gc.Snapshot, since: Mapping[Key, float] | None = None) -> dict[Key, Reason]:
    return {r.key: r.reason for r in gc.decide(s, NOW, since or {}, gc.Policy(30.0, 60.0))}


C = claim("pool-a", "10.0.0.5")
EP = endpoint(claims=(C,))


@pytest.mark.parametrize(
    ("pods", "nodes", "reason"),
    [
        ((), (), Reason.POD_GONE),
        ((pod(uid="u2"),), (), Reason.POD_RECREATED),
        ((pod(deleted_at=NOW - 61, grace=30),), (), Reason.TERMINATING),
        ((pod(node="node-x"),), ("node-y",), Reason.NODE_GONE),
        ((pod(phase="Succeeded"),), (), Reason.POD_FINISHED),
        ((pod(phase="Failed", node="n"),), ("n",), Reason.POD_FINISHED),
    ],
)
def test_an_endpoint_is_reclaimed_with_its_claims_and_the_reason(
    pods: tuple[gc.Pod, ...], nodes: tuple[str, ...], reason: Reason
) -> None:
    out = gc.decide(snap((EP,), (C,), pods, nodes), NOW, {}, gc.Policy(30.0, 60.0))
    assert len(out) == 1
    assert (out[0].key, out[0].version, out[0].reason) == (EP.key, "7", reason)
    assert out[0].claims == (C,)
    assert out[0].pod == "ns/web"


@pytest.mark.parametrize(
    "live",
    [
        pod(),
        pod(node="n1"),
        pod(phase="Running", node="n1"),
        pod(deleted_at=NOW - 59, grace=30),  # within grace + margin
        pod(deleted_at=NOW - 5, grace=0),
    ],
)
def test_an_endpoint_in_use_is_never_reclaimed(live: gc.Pod) -> None:
    assert reasons(snap((EP,), (C,), (live,), ("n1",))) == {}


def test_a_reclaimed_endpoint_gives_back_only_the_claims_that_name_its_pod() -> None:
    # It lists an address whose claim another pod holds (its own was lost): that claim stays.
    theirs = claim("pool-a", "10.0.0.8", pod="ns/other", uid="o1")
    ep = endpoint(claims=(C, theirs))
    out = gc.decide(snap((ep,), (C, theirs), ()), NOW, {}, gc.Policy(30.0, 60.0))
    assert [(r.key, r.claims) for r in out] == [(ep.key, (C,))]


def test_an_unscheduled_pod_is_not_on_a_missing_node() -> None:
    assert reasons(snap((EP,), (C,), (pod(node=""),), ())) == {}


def sts_ep(name: str) -> gc.Endpoint:
    c = claim("pool-a", "10.0.0.9", pod=f"ns/{name}")
    return endpoint(name=name, claims=(c,), owner=("StatefulSet", "db"))


@pytest.mark.parametrize("present", [(), (pod("db-1", uid="u2"),)])
def test_a_statefulset_pod_is_kept_while_its_statefulset_wants_its_ordinal(
    present: tuple[gc.Pod, ...],
) -> None:
    ep = sts_ep("db-1")
    sets = (gc.StatefulSet("ns", "db", 2),)
    assert reasons(snap((ep,), (), present, (), sets)) == {}


def test_a_statefulset_pod_beyond_replicas_or_without_its_statefulset_is_reclaimed() -> None:
    ep = sts_ep("db-2")
    assert reasons(snap((ep,), (), (), (), (gc.StatefulSet("ns", "db", 2),))) == {
        ep.key: Reason.ORDINAL_UNWANTED
    }
    assert reasons(snap((ep,), (), (), (), ())) == {ep.key: Reason.STATEFULSET_GONE}
    # ... but never while it still runs with its uid.
    live = pod("db-2", uid="u1")
    assert reasons(snap((ep,), (), (live,), (), ())) == {}


def test_a_finished_statefulset_pod_is_kept_while_wanted_and_reclaimed_once_not() -> None:
    ep = sts_ep("db-0")
    done = pod("db-0", phase="Succeeded")
    assert reasons(snap((ep,), (), (done,), (), (gc.StatefulSet("ns", "db", 3),))) == {}
    assert reasons(snap((ep,), (), (done,), (), (gc.StatefulSet("ns", "db", 0),))) == {
        ep.key: Reason.POD_FINISHED
    }


def test_a_vms_addresses_are_kept_while_the_vm_or_its_vmi_exists() -> None:
    held = claim("pool-a", "10.0.0.9", pod="ns/vm1", uid="launcher-1")
    ep = endpoint("vm1", "launcher-1", (held,), ("VirtualMachineInstance", "vm1"))
    running = gc.Snapshot((held,), (ep,), {}, frozenset(), {}, vms=frozenset({("ns", "vm1")}))
    assert reasons(running) == {}  # no launcher pod at all: a stopped VM
    vmi_only = gc.Snapshot((held,), (ep,), {}, frozenset(), {}, vmis=frozenset({("ns", "vm1")}))
    assert reasons(vmi_only) == {}
    other = gc.Snapshot((held,), (ep,), {}, frozenset(), {}, vms=frozenset({("other", "vm1")}))
    assert reasons(other) == {ep.key: Reason.VM_GONE}
    (verdict,) = gc.decide(other, NOW, {})
    assert verdict.claims == (held,)


def test_an_ipamclaims_address_is_kept_while_the_claim_exists_whatever_its_pods_do() -> None:
    held = claim("pool-a", "10.0.0.8", pod="ns/db.net", uid="pod-1")
    ep = endpoint("db.net", "pod-1", (held,), ("IPAMClaim", "db.net"))
    alive = frozenset({("ns", "db.net")})
    assert reasons(gc.Snapshot((held,), (ep,), {}, frozenset(), {}, ipam_claims=alive)) == {}
    gone = gc.Snapshot((held,), (ep,), {}, frozenset(), {})
    assert reasons(gone) == {ep.key: Reason.IPAMCLAIM_GONE}


def test_ordinal() -> None:
    assert gc.ordinal("db-12") == 12
    assert gc.ordinal("db") is None
    assert gc.ordinal("db-x") is None


def test_an_orphan_claim_goes_after_the_grace_window_unless_its_pod_lives() -> None:
    orphan = claim("pool-a", "10.0.0.6", pod="ns/gone", uid="g1")
    # A live pod with no endpoint yet: its ADD may still be writing.
    kept = claim("pool-a", "10.0.0.7", pod="ns/new", uid="n1")
    s = snap((EP,), (C, orphan, kept), (pod(), pod("new", "n1")))
    assert gc.orphans(s) == (orphan,)
    assert reasons(s, {}) == {}  # first seen now
    assert reasons(s, {orphan.key: NOW - 30}) == {}
    assert reasons(s, {orphan.key: NOW - 60, kept.key: NOW - 600}) == {
        orphan.key: Reason.ORPHAN_CLAIM
    }


def test_a_live_pods_claim_its_own_endpoint_does_not_list_is_left_behind() -> None:
    # An agent killed between writing a claim and the endpoint; the retried ADD allocated
    # afresh (C) and wrote the endpoint: the first claim is nobody's.
    behind = claim("pool-a", "10.0.0.9", pod="ns/web", uid="u1")
    # The pod's endpoint is of an older uid (recreated pod, ADD not done): not this one's.
    other = claim("pool-a", "10.0.0.10", pod="ns/web", uid="u2")
    s = snap((EP,), (C, behind), (pod(),))
    assert gc.orphans(s) == (behind,)
    assert reasons(s, {behind.key: NOW - 59}) == {}
    assert reasons(s, {behind.key: NOW - 60}) == {behind.key: Reason.ORPHAN_CLAIM}
    assert gc.orphans(snap((EP,), (C, other), (pod(uid="u2"),))) == ()


def test_allocated_counts() -> None:
    cs = (claim("a", "1"), claim("a", "2"), claim("b", "3"))
    assert gc.allocated_counts(cs) == {"a": 2, "b": 1}


def test_records_from_documents() -> None:
    body = {
        "metadata": {
            "namespace": "ns",
            "name": "web",
            "uid": "u1",
            "deletionTimestamp": "2027-01-15T08:00:00Z",
            "deletionGracePeriodSeconds": 5,
        },
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    p = gc.pod_of(body)
    assert (p.uid, p.node, p.phase, p.grace_s) == ("u1", "n1", "Running", 5.0)
    assert p.deleted_at == NOW  # 2027-01-15T08:00:00Z
    assert gc.pod_of({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 7}}).grace_s == 7
    doc = {
        "status": {
            "current": {
                "uid": "u1",
                "ips": [{"interface": "eth0", "ipv4": "10.0.0.5/24", "ipv4Pool": "pool-a"}],
            },
            "ownerControllerType": "StatefulSet",
            "ownerControllerName": "db",
        }
    }
    ep = gc.endpoint_of(Key(gc.ENDPOINT, "ns", "db-0"), "3", doc)
    assert ep.claims == (Key(CLAIM, "pool-a", "10.0.0.5"),)
    assert (ep.uid, ep.owner_kind, ep.owner_name) == ("u1", "StatefulSet", "db")
    assert gc.statefulset_of({"metadata": {"name": "db"}, "spec": {}}).replicas == 1


# -- leader election ----------------------------------------------------------------------


def test_lease_steps() -> None:
    mine = LeaseState("me", NOW - 1, 15, 2)
    theirs = LeaseState("other", NOW - 1, 15, 2)
    assert step(None, "me", NOW) is Step.CREATE
    assert step(mine, "me", NOW) is Step.RENEW
    assert step(theirs, "me", NOW) is Step.STAND_BY
    assert step(LeaseState("other", NOW - 16, 15, 2), "me", NOW) is Step.TAKE_OVER
    assert step(LeaseState("", NOW - 1, 15, 2), "me", NOW) is Step.TAKE_OVER
    spec = spec_for(Step.TAKE_OVER, theirs, "me", NOW, 15)
    assert spec["leaseTransitions"] == 3
    back = state_of(spec)
    assert (back.holder, back.duration_s, back.transitions) == ("me", 15, 3)
    assert back.renewed_at == pytest.approx(NOW)


# -- the effects on the embedded store ------------------------------------------------------


class Leases(EmbeddedStore):
    """The embedded store with Leases as ordinary documents (KubeStore has them natively)."""

    def read_lease(self, namespace: str, name: str) -> Stored:
        return self.get(Key("Lease", namespace, name))

    def write_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any], expected: str | None
    ) -> Stored:
        key = Key("Lease", namespace, name)
        if expected is None:
            return self.create(key, spec)
        return self.update(key, spec, expected)


@pytest.fixture
def store(tmp_path: Path) -> Leases:
    return Leases(tmp_path / "state.db")


def test_a_pass_deletes_what_the_decision_names_and_counts_the_pool(store: Leases) -> None:
    store.create(
        Key("SpiderIPPool", "", "pool-a"),
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderIPPool",
            "metadata": {"name": "pool-a"},
            "spec": {"ipVersion": 4, "subnet": "10.0.0.0/24", "ips": ["10.0.0.5-10.0.0.9"]},
        },
    )
    for ip, who in (("10.0.0.5", "gone"), ("10.0.0.6", "live")):
        store.create(Key(CLAIM, "pool-a", ip), {"pod": f"ns/{who}", "podUid": who})
        entry = {"interface": "eth0", "ipv4": f"{ip}/24", "ipv4Pool": "pool-a"}
        store.create(
            Key(gc.ENDPOINT, "ns", who),
            {"status": {"current": {"uid": who, "ips": [entry]}}},
        )
    store.create(
        Key("Pod", "ns", "live"), {"metadata": {"namespace": "ns", "name": "live", "uid": "live"}}
    )
    lines: list[str] = []
    collector = GarbageCollector(gc.Policy(30.0, 60.0))
    collector.reconcile(store, NOW, lines.append)
    assert collector.reclaimed == 1
    assert [k.name for k in (s.key for s in store.list(CLAIM).items)] == ["10.0.0.6"]
    with pytest.raises(NotFound):
        store.get(Key(gc.ENDPOINT, "ns", "gone"))
    assert lines == [
        "reclaimed SpiderEndpoint 'ns/gone' of pod ns/gone (addresses pool-a/10.0.0.5): pod gone"
    ]
    PoolStatus().reconcile(store, NOW, lines.append)
    status = store.get(Key("SpiderIPPool", "", "pool-a")).body["status"]
    assert (status["allocatedIPCount"], status["totalIPCount"]) == (1, 5)
    version = store.get(Key("SpiderIPPool", "", "pool-a")).version
    PoolStatus().reconcile(store, NOW, lines.append)  # unchanged: not written again
    assert store.get(Key("SpiderIPPool", "", "pool-a")).version == version


class AddBetweenLists(Leases):
    """A store on which one pod's whole ADD (its claim, then its endpoint) and the deletion
    of that pod land between the GC's first and second list of claims and endpoints."""

    listed: tuple[str, ...] = ()

    def list(self, kind: str, namespace: str | None = None) -> Listing:
        if kind in (CLAIM, gc.ENDPOINT):
            self.listed += (kind,)
            if len(self.listed) == 2:
                entry = {"interface": "eth0", "ipv4": "10.0.0.7/24", "ipv4Pool": "pool-a"}
                self.create(Key(CLAIM, "pool-a", "10.0.0.7"), {"pod": "ns/late", "podUid": "l"})
                self.create(
                    Key(gc.ENDPOINT, "ns", "late"),
                    {"status": {"current": {"uid": "l", "ips": [entry]}}},
                )
        return super().list(kind, namespace)


def test_an_add_between_the_gcs_lists_never_leaves_its_claim_behind(tmp_path: Path) -> None:
    store = AddBetweenLists(tmp_path / "state.db")
    lines: list[str] = []
    collector = GarbageCollector(gc.Policy(30.0, 60.0))
    collector.reconcile(store, NOW, lines.append)
    # The endpoint is never reclaimed without the claims it names: here the snapshot did
    # not see it, and its claim waits out the orphan grace instead.
    assert not any("'ns/late'" in line and "addresses" not in line for line in lines), lines
    collector.reconcile(store, NOW + 1, lines.append)  # the next pass sees both
    assert lines == [
        "reclaimed SpiderEndpoint 'ns/late' of pod ns/late (addresses pool-a/10.0.0.7): pod gone"
    ]
    assert store.list(CLAIM).items == ()


def test_only_the_lease_holder_leads_and_a_release_hands_over(store: Leases) -> None:
    a = Elector(store, "kube-system", "ctl", "a", duration_s=15)
    b = Elector(store, "kube-system", "ctl", "b", duration_s=15)
    assert a.tick(NOW)
    assert not b.tick(NOW + 1)
    assert a.tick(NOW + 5)
    assert b.tick(NOW + 21)  # a did not renew within 15 s
    assert not a.tick(NOW + 22)
    b.release(NOW + 23)
    assert a.tick(NOW + 24)


def test_run_stops_and_releases_the_lease(store: Leases) -> None:
    stop = threading.Event()
    seen: list[float] = []

    class Once:
        name = "once"

        def reconcile(self, _store: Store, now: float, _log: Log) -> None:
            seen.append(now)
            stop.set()

    elector = Elector(store, "kube-system", "ctl", "a", duration_s=15)
    run(elector, [Once()], interval_s=1.0, stop=stop, log=lambda _l: None)
    assert len(seen) == 1
    assert state_of(store.read_lease("kube-system", "ctl").body).holder == ""
