"""The agent side of SpiderSubnet auto pools: a pod with `ipam.spidernet.io/subnet(s)` draws
from its application's auto pool; clear errors for embedded mode, bare pods, a pool not made or
not grown yet (those two are `waiting`), and malformed annotations."""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Mapping

import pytest

from spidernet.control.allocator.allocate import PoolUse, allocate
from spidernet.control.allocator.autopools import subnet_wants
from spidernet.control.allocator.errors import AllocationError, Reason
from spidernet.control.allocator.request import AppRef, IpamRequest, PodFacts
from spidernet.control.controller.autopool import pool_document
from spidernet.control.controller.autopool_wants import Application, Want
from spidernet.control.model.documents import parse
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.resources import IPPool, Subnet

WEB = AppRef("apps/v1", "Deployment", "prod", "web", "1111-2222-333344445555")
ANNO = {"ipam.spidernet.io/subnet": '{"ipv4": ["sub-a"]}'}


def auto_pool(app: AppRef, ips: list[str], nic: str = "eth0", subnet: str = "sub-a") -> IPPool:
    sub = parse(
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderSubnet",
            "metadata": {"name": subnet},
            "spec": {"subnet": "10.2.0.0/24", "ips": ["10.2.0.1-10.2.0.200"]},
        }
    )
    assert isinstance(sub, Subnet)
    want = Want(Application(app, 1, ANNO), nic, 4, subnet, len(ips), True)
    rec = parse(pool_document(want, sub, IntervalSet.parse(ips, 4)))
    assert isinstance(rec, IPPool)
    return rec


def request(
    annotations: Mapping[str, str] = ANNO,
    *,
    app: AppRef | None = WEB,
    auto_pools: bool = True,
    ifname: str = "eth0",
) -> IpamRequest:
    pod = PodFacts(namespace="prod", name="web-x", annotations=dict(annotations), app=app)
    return IpamRequest("c1", ifname, "net", pod, auto_pools=auto_pools)


def run(req: IpamRequest, pools: list[IPPool], taken: frozenset[int] = frozenset()) -> list[str]:
    leases = allocate(
        req,
        {p.name: p for p in pools},
        {},
        lambda _p: PoolUse(taken, len(taken)),
        rng=random.Random(1),
    )
    return [f"{lease.interface} {lease.pool} {lease.address.ip}" for lease in leases]


def test_allocates_from_the_applications_auto_pool() -> None:
    mine = auto_pool(WEB, ["10.2.0.5"])
    other = auto_pool(AppRef("apps/v1", "Deployment", "prod", "db", "9-9-999999999"), ["10.2.0.6"])
    assert run(request(), [other, mine]) == [f"eth0 {mine.name} 10.2.0.5"]


def test_the_subnet_annotation_serves_the_calls_nic() -> None:
    pool = auto_pool(WEB, ["10.2.0.5"])
    assert run(request(ifname="net1"), [pool]) == [f"net1 {pool.name} 10.2.0.5"]


def test_subnets_annotation_allocates_every_nic() -> None:
    anno = {
        "ipam.spidernet.io/subnets": json.dumps(
            [{"interface": "eth0", "ipv4": ["sub-a"]}, {"interface": "net1", "ipv4": ["sub-b"]}]
        )
    }
    p0 = auto_pool(WEB, ["10.2.0.5"])
    p1 = auto_pool(WEB, ["10.2.0.9"], nic="net1", subnet="sub-b")
    assert run(request(anno), [p0, p1]) == [f"eth0 {p0.name} 10.2.0.5", f"net1 {p1.name} 10.2.0.9"]
    with pytest.raises(AllocationError, match="no entry for interface 'net2'"):
        run(request(anno, ifname="net2"), [p0, p1])


def test_embedded_mode_refuses_with_what_it_needs() -> None:
    with pytest.raises(AllocationError) as err:
        run(request(auto_pools=False), [])
    assert err.value.reason is Reason.INVALID
    assert "spidernet serve --kube" in err.value.message
    assert "spidernet controller" in err.value.message
    assert not err.value.waiting


def test_bare_pod_refused() -> None:
    with pytest.raises(AllocationError, match="bare pod cannot use an auto pool") as err:
        run(request(app=None), [])
    assert not err.value.waiting


def test_unsupported_owner_refused() -> None:
    job = AppRef("batch/v1", "Job", "prod", "once", "u")
    with pytest.raises(AllocationError, match="belongs to Job prod/once"):
        run(request(app=job), [])


def test_missing_pool_is_waiting_and_names_subnet_and_app() -> None:
    with pytest.raises(AllocationError) as err:
        run(request(), [])
    assert err.value.waiting
    assert err.value.reason is Reason.NO_POOL
    assert "SpiderSubnet 'sub-a'" in err.value.message
    assert "Deployment prod/web" in err.value.message


def test_full_pool_is_waiting() -> None:
    pool = auto_pool(WEB, ["10.2.0.5"])
    taken = frozenset({int(ipaddress.ip_address("10.2.0.5"))})
    with pytest.raises(AllocationError) as err:
        run(request(), [pool], taken)
    assert err.value.waiting
    assert err.value.reason is Reason.EXHAUSTED
    assert "auto pool of SpiderSubnet 'sub-a' of Deployment prod/web" in err.value.message


def test_a_full_ordinary_pool_is_not_waiting() -> None:
    pool = auto_pool(WEB, ["10.2.0.5"])
    taken = frozenset({int(ipaddress.ip_address("10.2.0.5"))})
    req = request({"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool.name]})})
    with pytest.raises(AllocationError) as err:
        run(req, [pool], taken)
    assert not err.value.waiting


def test_pod_affinity_keeps_other_applications_out_of_a_named_auto_pool() -> None:
    pool = auto_pool(WEB, ["10.2.0.5"])
    other = AppRef("apps/v1", "Deployment", "prod", "db", "9-9-999999999")
    req = request({"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool.name]})}, app=other)
    with pytest.raises(AllocationError, match=r"pod labels do not match spec\.podAffinity"):
        run(req, [pool])


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"ipam.spidernet.io/subnet": "{"}, "ipam.spidernet.io/subnet: not JSON"),
        ({"ipam.spidernet.io/subnet": "[]"}, "ipam.spidernet.io/subnet: expected an object"),
        ({"ipam.spidernet.io/subnet": "{}"}, "ipam.spidernet.io/subnet: names no subnet"),
        ({"ipam.spidernet.io/subnet": '{"ipv4": [1]}'}, r"subnet\.ipv4: expected a list"),
        ({"ipam.spidernet.io/subnets": "{}"}, "subnets: expected a non-empty list"),
        ({"ipam.spidernet.io/subnets": '[{"ipv4": ["a"]}]'}, r"subnets\[0\]\.interface"),
        (
            {
                "ipam.spidernet.io/subnets": '[{"interface": "eth0", "ipv4": ["a"]}, '
                '{"interface": "eth0", "ipv4": ["b"]}]'
            },
            "an interface is listed twice",
        ),
    ],
)
def test_malformed_annotations_name_the_field(annotations: Mapping[str, str], message: str) -> None:
    with pytest.raises(AllocationError, match=message) as err:
        subnet_wants(annotations)
    assert err.value.reason is Reason.INVALID


def test_subnets_beats_subnet_and_first_element_is_used() -> None:
    anno = {
        "ipam.spidernet.io/subnet": '{"ipv4": ["x"]}',
        "ipam.spidernet.io/subnets": '[{"interface": "net1", "ipv4": ["a", "b"], "ipv6": ["c"]}]',
    }
    got = subnet_wants(anno)
    assert got is not None
    key, wants = got
    assert key == "ipam.spidernet.io/subnets"
    assert [(w.interface, w.v4, w.v6) for w in wants] == [("net1", "a", "c")]
