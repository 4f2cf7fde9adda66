"""The migration plan from Spiderpool's records (control/controller/adopt.py), pure."""

from __future__ import annotations

import json
from typing import Any

from spidernet.control.controller import adopt, gc
from spidernet.control.store.base import CLAIM, Key


def pool(
    name: str, allocated: dict[str, Any] | str | None, finalized: bool = True
) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"metadata": {"name": name}, "spec": {}}
    if finalized:
        body["metadata"]["finalizers"] = [adopt.FINALIZER]
    if allocated is not None:
        text = allocated if isinstance(allocated, str) else json.dumps(allocated)
        body["status"] = {"allocatedIPs": text, "allocatedIPCount": 1}
    return name, body


def endpoint(
    ns: str, name: str, uid: str, *ips: tuple[str, str, str]
) -> tuple[Key, dict[str, Any]]:
    """ips: (interface, ipv4 with prefix, pool)."""
    body = {
        "metadata": {"name": name, "namespace": ns, "finalizers": [adopt.FINALIZER, "other"]},
        "status": {
            "current": {
                "uid": uid,
                "node": "node-1",
                "ips": [{"interface": nic, "ipv4": ip, "ipv4Pool": p} for nic, ip, p in ips],
            },
            "ownerControllerType": "Pod",
            "ownerControllerName": name,
        },
    }
    return Key(gc.ENDPOINT, ns, name), body


def test_every_address_either_record_holds_is_adopted_once_with_what_the_endpoint_knows() -> None:
    pools = [
        pool(
            "v4",
            {
                "10.6.0.10": {"pod": "ns/a", "podUid": "ua"},
                "10.6.0.11": {"pod": "ns/gone", "podUid": "ug"},
            },
        ),
        pool("empty", None, finalized=False),
    ]
    eps = [
        endpoint("ns", "a", "ua", ("net1", "10.6.0.10/16", "v4"), ("net2", "10.7.0.5/16", "side"))
    ]
    plan = adopt.plan(pools, eps, {})
    assert [(h.pool, h.address, h.pod, h.pod_uid, h.interface, h.node) for h in plan.adopt] == [
        ("side", "10.7.0.5", "ns/a", "ua", "net2", "node-1"),
        ("v4", "10.6.0.10", "ns/a", "ua", "net1", "node-1"),
        ("v4", "10.6.0.11", "ns/gone", "ug", "", ""),
    ]
    assert plan.adopt[1].claim() == {
        "pod": "ns/a",
        "podUid": "ua",
        "interface": "net1",
        "node": "node-1",
    }
    assert plan.unfinalize == (Key(adopt.POOL, "", "v4"), Key(gc.ENDPOINT, "ns", "a"))
    assert plan.problems == ()
    # Stripped of Spiderpool's finalizer only.
    assert adopt.without_finalizer(eps[0][1])["metadata"]["finalizers"] == ["other"]
    assert "finalizers" not in adopt.without_finalizer(pools[0][1])["metadata"]


def test_claimed_addresses_are_left_and_another_pods_claim_is_a_conflict() -> None:
    pools = [
        pool(
            "v4",
            {
                "10.6.0.10": {"pod": "ns/a", "podUid": "ua"},
                "10.6.0.12": {"pod": "ns/b", "podUid": "ub"},
            },
        )
    ]
    claims = {
        Key(CLAIM, "v4", "10.6.0.10"): {"pod": "ns/a"},
        Key(CLAIM, "v4", "10.6.0.12"): {"pod": "ns/new"},
    }
    plan = adopt.plan(pools, [], claims)
    assert plan.adopt == ()
    assert [h.address for h in plan.already] == ["10.6.0.10"]
    assert [(c.held.address, c.held.pod, c.owner) for c in plan.conflicts] == [
        ("10.6.0.12", "ns/b", "ns/new")
    ]
    assert adopt.summary(plan)["conflicts"] == [
        {"pool": "v4", "address": "10.6.0.12", "spiderpool": "ns/b", "claimedBy": "ns/new"}
    ]


def test_records_that_cannot_be_read_are_named_and_the_rest_adopted() -> None:
    pools = [
        pool("bad", "{not json"),
        pool("mixed", {"10.6.1.1": {"pod": "ns/a"}, "nonsense": {"pod": "ns/b"}, "10.6.1.2": {}}),
    ]
    plan = adopt.plan(pools, [], {})
    assert [h.address for h in plan.adopt] == ["10.6.1.1"]
    assert len(plan.problems) == 3
    assert "SpiderIPPool bad" in plan.problems[0]
    assert any("'nonsense'" in p and "no address" in p for p in plan.problems)
    assert any("10.6.1.2" in p and "names no pod" in p for p in plan.problems)


def test_when_pool_and_endpoint_disagree_the_endpoint_wins_and_it_is_said() -> None:
    pools = [pool("v4", {"10.6.0.10": {"pod": "ns/old", "podUid": "uo"}})]
    eps = [endpoint("ns", "a", "ua", ("net1", "10.6.0.10/16", "v4"))]
    plan = adopt.plan(pools, eps, {})
    assert [h.pod for h in plan.adopt] == ["ns/a"]
    assert "ns/old" in plan.problems[0]


def test_ipv6_addresses_are_written_canonically() -> None:
    pools = [pool("v6", {"FD00:0::0010": {"pod": "ns/a", "podUid": "u"}})]
    assert [h.address for h in adopt.plan(pools, [], {}).adopt] == ["fd00::10"]
