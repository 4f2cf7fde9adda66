"""SpiderSubnet auto pools: the controller's pure decisions (sizes, names, labels, address
choice, shrink, reclaim, subnet status, invalid annotations)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

import pytest

from spidernet.control.allocator.autopools import (
    AFFINITY_KIND,
    AFFINITY_NAME,
    LABEL_APP_UID,
    LABEL_INTERFACE,
    LABEL_IP_VERSION,
    LABEL_OWNER_SUBNET,
    LABEL_RECLAIM,
)
from spidernet.control.allocator.request import AppRef
from spidernet.control.controller.autopool import Plan, PoolState, SubnetState, plan
from spidernet.control.controller.autopool_wants import (
    Application,
    BadAnnotation,
    application_of,
    pool_name,
    pool_size,
    reclaim_of,
    wants_of,
)
from spidernet.control.model.documents import parse
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.resources import IPPool, Subnet

UID = "6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c"
SUBNET_ANNO = {"ipam.spidernet.io/subnet": '{"ipv4": ["sub-a"]}'}


def app(
    annotations: Mapping[str, str] | None = None,
    *,
    replicas: int = 3,
    name: str = "web",
    uid: str = UID,
    kind: str = "Deployment",
) -> Application:
    ref = AppRef("apps/v1", kind, "prod", name, uid)
    anno = SUBNET_ANNO if annotations is None else annotations
    return Application(ref, replicas, dict(anno))


def subnet(name: str = "sub-a", ips: str = "10.1.0.10-10.1.0.40") -> SubnetState:
    body = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderSubnet",
        "metadata": {"name": name},
        "spec": {"subnet": "10.1.0.0/24", "ips": [ips], "gateway": "10.1.0.1"},
    }
    rec = parse(body)
    assert isinstance(rec, Subnet)
    return SubnetState(rec, body, "1")


def v4(text: str) -> int:
    return int(ipaddress.ip_address(text))


def ips_of(doc: Mapping[str, Any]) -> IntervalSet:
    return IntervalSet.parse(doc["spec"]["ips"], 4)


def state_of(doc: dict[str, Any], in_use: tuple[str, ...] = (), version: str = "7") -> PoolState:
    rec = parse(doc)
    assert isinstance(rec, IPPool)
    return PoolState(rec, doc, version, frozenset(v4(ip) for ip in in_use))


def run(apps: list[Application], pools: dict[str, PoolState] | None = None, **kw: Any) -> Plan:
    subnets = kw.pop("subnets", {"sub-a": subnet()})
    reserved = kw.pop("reserved", {})
    return plan(apps, subnets, pools or {}, reserved)


def created(apps: list[Application], **kw: Any) -> PoolState:
    """The pool a first pass creates for the one application, as if stored."""
    p = run(apps, **kw)
    assert len(p.creates) == 1, p
    return state_of(p.creates[0].body)


# -- sizes, names, annotations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "replicas", "size"),
    [(None, 3, 4), ("+2", 3, 5), ("+0", 3, 3), ("5", 3, 5), ("1", 4, 1), ("+1", 0, 1)],
)
def test_pool_size_flexible_fixed_and_default(number: str | None, replicas: int, size: int) -> None:
    anno = dict(SUBNET_ANNO)
    if number is not None:
        anno["ipam.spidernet.io/ippool-ip-number"] = number
    assert pool_size(app(anno, replicas=replicas)) == size


@pytest.mark.parametrize("bad", ["", "-1", "two", "0", "+", "1.5", "++1"])
def test_invalid_ip_number_names_the_annotation(bad: str) -> None:
    anno = {**SUBNET_ANNO, "ipam.spidernet.io/ippool-ip-number": bad}
    with pytest.raises(
        BadAnnotation, match=r"ipam\.spidernet\.io/ippool-ip-number.*Deployment prod/web"
    ):
        pool_size(app(anno))
    wants, problems = wants_of([app(anno)])
    assert wants == []
    assert len(problems) == 1
    assert "ippool-ip-number" in problems[0]


def test_reclaim_annotation() -> None:
    assert reclaim_of(app()) is True
    assert reclaim_of(app({**SUBNET_ANNO, "ipam.spidernet.io/ippool-reclaim": "false"})) is False
    with pytest.raises(BadAnnotation, match="ippool-reclaim"):
        reclaim_of(app({**SUBNET_ANNO, "ipam.spidernet.io/ippool-reclaim": "maybe"}))


def test_invalid_subnet_annotation_is_a_problem_naming_it() -> None:
    bad = app({"ipam.spidernet.io/subnet": '{"ipv4": "not-a-list", "x": 1}'})
    wants, problems = wants_of([bad])
    assert wants == []
    assert problems == [
        "Deployment prod/web: invalid annotation ipam.spidernet.io/subnet: unknown field 'x'"
    ]


def test_pool_name_is_spiderpools() -> None:
    ref = AppRef("apps/v1", "Deployment", "prod", "Web", UID)
    assert pool_name(ref, "eth0", 4) == "auto4-web-eth0-7d6e5"
    assert pool_name(ref, "net1", 6) == "auto6-web-net1-7d6e5"
    long = AppRef("apps/v1", "Deployment", "prod", "a" * 260, UID)
    assert len(pool_name(long, "eth0", 4)) == 253


def test_application_of_documents() -> None:
    deploy = {
        "apiVersion": "apps/v1",
        "metadata": {"namespace": "prod", "name": "web", "uid": UID},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": SUBNET_ANNO}}},
    }
    a = application_of("Deployment", deploy)
    assert a is not None
    assert (a.ref.kind, a.ref.name, a.replicas, dict(a.annotations)) == (
        "Deployment",
        "web",
        2,
        SUBNET_ANNO,
    )
    owned = {"metadata": {"ownerReferences": [{"controller": True, "kind": "Deployment"}]}}
    assert application_of("ReplicaSet", owned) is None  # its Deployment is the application
    assert application_of("ReplicaSet", {"metadata": {"name": "rs"}}) is not None
    ds = {"metadata": {"name": "d"}, "status": {"desiredNumberScheduled": 7}}
    d = application_of("DaemonSet", ds)
    assert d is not None
    assert d.replicas == 7
    assert application_of("Pod", deploy) is None


# -- creating ---------------------------------------------------------------------------------


def test_new_pool_takes_lowest_free_skipping_reserved_and_other_pools() -> None:
    other = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": "manual"},
        "spec": {"subnet": "10.1.0.0/24", "ips": ["10.1.0.10", "10.1.0.12"]},
    }
    reserved = {4: IntervalSet.parse(["10.1.0.11", "10.1.0.14"], 4)}
    p = run([app()], {"manual": state_of(other)}, reserved=reserved)
    assert len(p.creates) == 1
    doc = p.creates[0].body
    assert doc["spec"]["ips"] == ["10.1.0.13", "10.1.0.15-10.1.0.17"]  # 4 = 3 replicas + 1
    assert doc["metadata"]["name"] == "auto4-web-eth0-7d6e5"
    assert doc["spec"]["gateway"] == "10.1.0.1"  # from the subnet
    labels = doc["metadata"]["labels"]
    assert labels[LABEL_OWNER_SUBNET] == "sub-a"
    assert labels[LABEL_APP_UID] == UID
    assert labels[LABEL_INTERFACE] == "eth0"
    assert labels[LABEL_IP_VERSION] == "IPv4"
    assert labels[LABEL_RECLAIM] == "true"
    assert labels["ipam.spidernet.io/owner-application-gv"] == "apps_v1"
    affinity = doc["spec"]["podAffinity"]["matchLabels"]
    assert affinity[AFFINITY_KIND] == "Deployment"
    assert affinity[AFFINITY_NAME] == "web"
    rec = parse(doc)  # a valid SpiderIPPool
    assert isinstance(rec, IPPool)
    status = json.loads(p.statuses[0].body["status"]["controlledIPPools"])
    assert status == {
        "auto4-web-eth0-7d6e5": {
            "application": "apps_v1_Deployment_prod_web",
            "ips": ["10.1.0.13", "10.1.0.15-10.1.0.17"],
        }
    }
    assert p.statuses[0].body["status"]["allocatedIPCount"] == 4
    assert p.statuses[0].body["status"]["totalIPCount"] == 31


def test_two_applications_never_share_an_address() -> None:
    a, b = app(name="a", uid="u-aaaaa"), app(name="b", uid="u-bbbbb", replicas=5)
    p = run([a, b])
    sets = [ips_of(c.body) for c in p.creates]
    assert [s.count for s in sets] == [4, 6]
    assert not sets[0].overlaps(sets[1])


def test_subnets_annotation_makes_a_pool_per_nic_and_family() -> None:
    anno = {
        "ipam.spidernet.io/subnets": json.dumps(
            [{"interface": "eth0", "ipv4": ["sub-a"]}, {"interface": "net1", "ipv4": ["sub-b"]}]
        )
    }
    sub_b = subnet("sub-b", "10.1.0.100-10.1.0.120")
    p = run([app(anno)], subnets={"sub-a": subnet(), "sub-b": sub_b})
    names = sorted(c.name for c in p.creates)
    assert names == ["auto4-web-eth0-7d6e5", "auto4-web-net1-7d6e5"]


def test_missing_or_small_subnet_is_a_problem_and_no_pool() -> None:
    p = run([app()], subnets={})
    assert p.creates == []
    assert p.problems == ["Deployment prod/web: SpiderSubnet 'sub-a' (eth0 IPv4) is missing"]
    p = run([app(replicas=40)])
    assert p.creates == []
    assert "has 31 free addresses, pool auto4-web-eth0-7d6e5 needs 41" in p.problems[0]


# -- growing and shrinking ------------------------------------------------------------------


def test_scale_up_grows_with_the_lowest_free_addresses() -> None:
    pool = created([app()])
    p = run([app(replicas=5)], {pool.record.name: pool})
    assert p.creates == []
    assert len(p.resizes) == 1
    assert p.resizes[0].version == "7"
    assert ips_of(p.resizes[0].body) == IntervalSet.parse(["10.1.0.10-10.1.0.15"], 4)


def test_scale_down_drops_free_addresses_only() -> None:
    pool = created([app(replicas=5)])  # .10-.15
    in_use = state_of(dict(pool.body), in_use=("10.1.0.10", "10.1.0.13"))
    p = run([app(replicas=2)], {pool.record.name: in_use})
    kept = ips_of(p.resizes[0].body)
    assert kept.count == 3
    assert v4("10.1.0.10") in kept
    assert v4("10.1.0.13") in kept


def test_shrink_refused_when_in_use_does_not_fit() -> None:
    pool = created([app(replicas=5)])
    busy = state_of(dict(pool.body), in_use=("10.1.0.10", "10.1.0.11", "10.1.0.12", "10.1.0.13"))
    p = run([app(replicas=1)], {pool.record.name: busy})
    assert p.resizes == []
    assert p.problems == [
        "Deployment prod/web: pool auto4-web-eth0-7d6e5 cannot shrink to 2: 4 of its "
        "addresses are in use"
    ]


def test_a_claimed_address_outside_the_pool_goes_back_in() -> None:
    pool = created([app()])  # .10-.13
    raced = state_of(dict(pool.body), in_use=("10.1.0.20",))
    p = run([app()], {pool.record.name: raced})
    assert v4("10.1.0.20") in ips_of(p.resizes[0].body)


def test_no_change_no_write() -> None:
    pool = created([app()])
    p = run([app()], {pool.record.name: pool})
    assert (p.creates, p.resizes, p.removes) == ([], [], [])


def test_fixed_size_ignores_replicas() -> None:
    anno = {**SUBNET_ANNO, "ipam.spidernet.io/ippool-ip-number": "2"}
    pool = created([app(anno)])
    assert pool.record.ips.count == 2
    p = run([app(anno, replicas=9)], {pool.record.name: pool})
    assert p.resizes == []


# -- reclaim ------------------------------------------------------------------------------------


def test_pool_of_a_gone_application_is_deleted_once_unused() -> None:
    pool = created([app()])
    busy = state_of(dict(pool.body), in_use=("10.1.0.10",))
    p = run([], {pool.record.name: busy})
    assert p.removes == []
    assert "kept while 1 of its addresses are in use" in p.problems[0]
    p = run([], {pool.record.name: pool})
    assert [(r.name, r.version) for r in p.removes] == [("auto4-web-eth0-7d6e5", "7")]
    assert "controlledIPPools" not in p.statuses[0].body["status"]
    assert p.statuses[0].body["status"]["allocatedIPCount"] == 0


def test_recreated_application_with_another_uid_reclaims_the_old_pool() -> None:
    old = created([app()])
    p = run([app(uid="9999-aaaa-bbbbbbbb")], {old.record.name: old})
    assert [r.name for r in p.removes] == [old.record.name]
    assert [c.name for c in p.creates] == ["auto4-web-eth0-bbbbb"]
    # The new pool does not take the old pool's addresses in the same pass.
    assert not ips_of(p.creates[0].body).overlaps(old.record.ips)


def test_reclaim_false_keeps_the_pool() -> None:
    anno = {**SUBNET_ANNO, "ipam.spidernet.io/ippool-reclaim": "false"}
    pool = created([app(anno)])
    assert pool.record.labels[LABEL_RECLAIM] == "false"
    p = run([], {pool.record.name: pool})
    assert p.removes == []
    assert p.problems == []


def test_manual_pools_are_never_reclaimed() -> None:
    doc = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": "manual"},
        "spec": {"subnet": "10.1.0.0/24", "ips": ["10.1.0.50"]},
    }
    p = run([], {"manual": state_of(doc)})
    assert p.removes == []


def test_addresses_a_shrink_gives_back_go_to_no_other_pool_in_the_same_pass() -> None:
    a = app(name="a", uid="u-aaaaa", replicas=5)
    pool = created([a])  # .10-.15
    b = app(name="b", uid="u-bbbbb", replicas=1)
    p = run([app(name="a", uid="u-aaaaa", replicas=1), b], {pool.record.name: pool})
    dropped = pool.record.ips.difference(ips_of(p.resizes[0].body))
    assert dropped.count == 4
    assert not ips_of(p.creates[0].body).overlaps(dropped)
    # The next pass may hand them out.
    shrunk = state_of(p.resizes[0].body)
    p2 = run([app(name="c", uid="u-ccccc", replicas=1)], {shrunk.record.name: shrunk})
    assert ips_of(p2.creates[0].body).overlaps(dropped)
