"""The pure claim planner: whole write lists for a new endpoint, a new incarnation, the same
sandbox (claims dropped, re-created, a NIC added or renamed onto an unnamed entry), and
releases. The core's use of it against a store is test_ipam_core.py."""

from __future__ import annotations

import ipaddress

from spidernet.control.allocator.allocate import Lease
from spidernet.control.allocator.request import PodFacts
from spidernet.control.store.base import Create, Delete, Key, Stored, Update
from spidernet.node.agent import claimplan
from spidernet.node.agent import endpoints as ep

POD = PodFacts(namespace="t", name="p", uid="u1", node="n1")
ADD = claimplan.Add(
    container_id="ctr",
    ifname="eth0",
    network="net",
    netns="/run/netns/x",
    netns_id="ns:1",
    node="n1",
    since="2024-01-01T00:00:00Z",
)
BODY = {"pod": "t/p", "podUid": "u1", "node": "n1", "since": "2024-01-01T00:00:00Z"}
ENDPOINT = ep.key_of("t", "p")


def lease(nic: str, address: str, pool: str = "v4") -> Lease:
    return Lease(nic, pool, ipaddress.ip_interface(address), None, False, ())


def entry(nic: str, address: str, pool: str = "v4") -> dict[str, object]:
    return {"interface": nic, "vlan": 0, "cleanGateway": False, "ipv4": address,
            "ipv4Pool": pool, "routes": []}  # fmt: skip


def recorded(container: str, entries: list[dict[str, object]], attached: list[str]) -> Stored:
    nets = {str(e["interface"]): "net" for e in entries}
    doc = ep.build(POD, container, entries, nets, attached, netns="/run/netns/x")
    return Stored(ENDPOINT, doc, "7")


def test_a_new_pod_claims_each_lease_then_creates_its_endpoint() -> None:
    leases = [lease("eth0", "10.1.0.5/24")]
    writes, entries = claimplan.fresh(ADD, POD, None, claimplan.Holdings(), leases)
    assert entries == [entry("eth0", "10.1.0.5/24")]
    doc = ep.build(POD, "ctr", entries, {"eth0": "net"}, ["eth0"], netns="/run/netns/x",
                   netns_id="ns:1")  # fmt: skip
    assert writes == [
        Create(ep.claim_key("v4", "10.1.0.5"), {**BODY, "interface": "eth0"}),
        Create(ENDPOINT, doc),
    ]


def test_a_new_incarnation_frees_what_it_holds_and_starts_afresh() -> None:
    current = recorded("old", [entry("eth0", "10.1.0.4/24")], ["eth0"])
    assert claimplan.renewed(PodFacts(namespace="t", name="p", uid="u2"), current, "ctr")
    held = claimplan.Holdings(mine={ep.claim_key("v4", "10.1.0.4"): "3"})
    writes, _ = claimplan.fresh(ADD, POD, current, held, [lease("eth0", "10.1.0.5/24")])
    assert [type(w).__name__ for w in writes] == ["Delete", "Delete", "Create", "Create"]
    assert writes[:3] == [
        Delete(ep.claim_key("v4", "10.1.0.4"), "3"),
        Delete(ENDPOINT, "7"),
        Create(ep.claim_key("v4", "10.1.0.5"), {**BODY, "interface": "eth0"}),
    ]


def test_the_same_sandbox_or_uid_or_a_stateful_pod_is_not_renewed() -> None:
    current = recorded("ctr", [entry("eth0", "10.1.0.4/24")], ["eth0"])
    assert not claimplan.renewed(POD, current, "ctr")
    assert not claimplan.renewed(POD, current, "other")  # same uid (u1)
    stateful = PodFacts(namespace="t", name="p", uid="u9", owner_kind="StatefulSet")
    assert not claimplan.renewed(stateful, current, "other")


def test_the_same_pod_drops_taken_claims_remakes_missing_ones_and_adds_its_nic() -> None:
    entries = [entry("net1", "10.1.0.4/24"), entry("net2", "10.1.0.6/24")]
    current = recorded("ctr", entries, ["net1", "net2"])
    taken, missing = ep.claim_key("v4", "10.1.0.4"), ep.claim_key("v4", "10.1.0.6")
    held = claimplan.Holdings(taken=frozenset({taken}), missing=frozenset({missing}))
    kept = claimplan.keep(ADD, POD, current, held)
    assert kept == claimplan.Kept(
        entries=[entry("net2", "10.1.0.6/24")],
        nets={"net2": "net"},
        attached={"net2"},
        writes=[Create(missing, {**BODY, "interface": "net2"})],
        dropped=("net1",),
        needs_lease=True,
    )
    writes, out = claimplan.extend(ADD, POD, current, kept, [lease("eth0", "10.1.0.7/24")])
    assert out == [entry("net2", "10.1.0.6/24"), entry("eth0", "10.1.0.7/24")]
    new = ep.build(POD, "ctr", out, {"net2": "net", "eth0": "net"}, ["net2", "eth0"],
                   netns="/run/netns/x", netns_id="ns:1", previous=current.body)  # fmt: skip
    assert writes == [
        Create(missing, {**BODY, "interface": "net2"}),
        Create(ep.claim_key("v4", "10.1.0.7"), {**BODY, "interface": "eth0"}),
        Update(ENDPOINT, new, "7"),
    ]


def test_a_later_nic_takes_the_next_unnamed_entry() -> None:
    entries = [entry("#1", "10.1.0.9/24"), entry("#0", "10.1.0.8/24")]
    current = recorded("ctr", entries, [])
    kept = claimplan.keep(ADD, POD, current, claimplan.Holdings())
    assert not kept.needs_lease
    assert [e["interface"] for e in kept.entries] == ["#1", "eth0"]
    assert kept.nets == {"#1": "net", "eth0": "net"}
    writes, _ = claimplan.extend(ADD, POD, current, kept, [])
    assert [(type(w).__name__, w.key) for w in writes] == [("Update", ENDPOINT)]


def test_an_unchanged_endpoint_is_not_written() -> None:
    add = claimplan.Add("ctr", "eth0", "net", "/run/netns/x", "", "n1", "t0")
    current = recorded("ctr", [entry("eth0", "10.1.0.4/24")], ["eth0"])
    kept = claimplan.keep(add, POD, current, claimplan.Holdings())
    assert claimplan.extend(add, POD, current, kept, []) == ([], [entry("eth0", "10.1.0.4/24")])


def test_a_release_updates_the_endpoint_or_deletes_it_with_the_last_nic() -> None:
    entries = [entry("eth0", "10.1.0.4/24"), entry("net1", "10.1.0.5/24")]
    current = recorded("ctr", entries, ["eth0", "net1"])
    mine = {ep.claim_key("v4", "10.1.0.4"): "2"}
    assert claimplan.gone(current.body, ["eth0"]) == [entries[0]]
    new = ep.build(POD, "ctr", [entries[1]], {"net1": "net"}, ["net1"], netns="/run/netns/x",
                   previous=current.body)  # fmt: skip
    assert claimplan.drop(current, ["eth0"], mine) == [
        Delete(ep.claim_key("v4", "10.1.0.4"), "2"),
        Update(ENDPOINT, new, "7"),
    ]
    assert claimplan.gone(current.body, ["eth0", "net1"]) == entries
    assert claimplan.drop(current, ["eth0", "net1"], {}) == [Delete(ENDPOINT, "7")]


def test_what_an_endpoint_holds_is_read_from_its_entries() -> None:
    entries = [{**entry("eth0", "10.1.0.4/24"), "ipv6": "fd01::4/64", "ipv6Pool": "v6"}]
    doc = recorded("ctr", entries, ["eth0"]).body
    assert claimplan.held(doc) == {
        ipaddress.ip_address("10.1.0.4"),
        ipaddress.ip_address("fd01::4"),
    }
    assert claimplan.pools_of(doc, "eth0") == {"10.1.0.4": "v4", "fd01::4": "v6"}
    assert claimplan.pools_of(doc, "net1") == {}
    detached = claimplan.detach(POD, "ctr", doc, "eth0")
    assert ep.attached_of(detached) == []
    assert ep.entries_of(detached) == entries
    assert Key("SpiderEndpoint", "t", "p") == ENDPOINT
