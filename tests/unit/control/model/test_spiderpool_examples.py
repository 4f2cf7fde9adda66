"""Spiderpool's own documentation examples: the valid ones parse unchanged, with the values
Spiderpool's webhook would give them; the broken ones are refused with the right reason."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from spidernet.control.model.documents import load_documents, parse, to_document
from spidernet.control.model.errors import ValidationError, ValidationErrors
from spidernet.control.model.labels import Requirement
from spidernet.control.model.resources import (
    Coordinator,
    Endpoint,
    IPPool,
    ReservedIP,
    Resource,
    Route,
    Subnet,
)

DATA = Path(__file__).parent / "data"


def examples(name: str) -> list[dict[str, object]]:
    return load_documents((DATA / name).read_text())


def by_name() -> dict[tuple[str, str], Resource]:
    out = {}
    for doc in examples("spiderpool_examples.yaml"):
        res = parse(doc)
        out[(res.KIND, res.name)] = res
    return out


def test_every_valid_example_parses_and_round_trips() -> None:
    docs = examples("spiderpool_examples.yaml")
    assert len(docs) >= 8
    kinds = set()
    for doc in docs:
        res = parse(doc)
        kinds.add(res.KIND)
        assert parse(to_document(res)) == res
    assert kinds == {
        "SpiderIPPool",
        "SpiderSubnet",
        "SpiderReservedIP",
        "SpiderCoordinator",
        "SpiderEndpoint",
    }


def test_ranges_exclusions_and_gateway() -> None:
    pool = by_name()[("SpiderIPPool", "master-172")]
    assert isinstance(pool, IPPool)
    assert pool.ip_version == 4
    assert pool.subnet == ipaddress.ip_network("172.31.192.0/20")
    # 10 + 5 listed, 3 + 1 excluded.
    assert pool.total == 11
    assert pool.usable.to_strings(4) == [
        "172.31.199.180-172.31.199.185",
        "172.31.199.189",
        "172.31.199.205-172.31.199.206",
        "172.31.199.208-172.31.199.209",
    ]
    assert pool.gateway == ipaddress.ip_address("172.31.207.253")
    assert pool.default is True
    assert pool.disable is False


def test_dual_stack_pair_with_node_and_multus_names() -> None:
    found = by_name()
    v4, v6 = found[("SpiderIPPool", "master-v4")], found[("SpiderIPPool", "master-v6")]
    assert isinstance(v4, IPPool)
    assert isinstance(v6, IPPool)
    assert (v4.ip_version, v6.ip_version) == (4, 6)
    assert v6.total == 16
    assert v6.ips.to_strings(6) == ["2406:da1e:c4:ed01:c57d::-2406:da1e:c4:ed01:c57d::f"]
    assert v4.node_name == v6.node_name == ("master",)
    assert v4.multus_name == ("kube-system/ipvlan-ens5",)


def test_affinities() -> None:
    found = by_name()
    pod = found[("SpiderIPPool", "test-pod-ippool")]
    node = found[("SpiderIPPool", "test-node1-ippool")]
    ns = found[("SpiderIPPool", "test-ns-ipv4-ippool")]
    exists = found[("SpiderIPPool", "master-ipv4-ippool")]
    names = found[("SpiderIPPool", "test-ns1-ippool")]
    assert isinstance(pod, IPPool)
    assert pod.pod_affinity is not None
    assert pod.pod_affinity.matches({"app": "test-app-3"})
    assert not pod.pod_affinity.matches({"app": "other"})
    assert isinstance(node, IPPool)
    assert node.node_affinity is not None
    assert node.node_affinity.match_expressions == (
        Requirement("kubernetes.io/hostname", "In", ("node1",)),
    )
    assert isinstance(ns, IPPool)
    assert ns.namespace_affinity is not None
    assert ns.namespace_affinity.matches({"kubernetes.io/metadata.name": "test-ns"})
    assert isinstance(exists, IPPool)
    assert exists.node_affinity is not None
    assert exists.node_affinity.matches({"node-role.kubernetes.io/master": ""})
    assert exists.ips.to_strings(4) == ["172.18.41.40"]
    assert isinstance(names, IPPool)
    assert names.namespace_name == ("test-ns1",)


def test_multus_names_and_labels() -> None:
    found = by_name()
    eth1 = found[("SpiderIPPool", "test-ippool-eth1")]
    labelled = found[("SpiderIPPool", "backup-ipv4-ippool")]
    assert isinstance(eth1, IPPool)
    assert eth1.multus_name == ("kube-system/macvlan-vlan0-eth1",)
    assert eth1.default
    assert dict(labelled.labels) == {"case": "backup"}


def test_subnets_and_routes() -> None:
    found = by_name()
    s6 = found[("SpiderSubnet", "subnet-6")]
    assert isinstance(s6, Subnet)
    assert s6.routes == (
        Route(ipaddress.ip_network("10.7.0.0/16"), ipaddress.ip_address("10.6.0.1")),
    )
    assert s6.total == 10
    v6 = found[("SpiderSubnet", "subnet-demo-v6")]
    assert isinstance(v6, Subnet)
    assert (v6.ip_version, v6.total) == (6, 200)
    default = found[("SpiderSubnet", "default-v4-subnet")]
    assert isinstance(default, Subnet)
    assert default.total == 253 - 11
    route_pool = found[("SpiderIPPool", "ipv4-ippool-route")]
    assert isinstance(route_pool, IPPool)
    assert str(route_pool.gateway) == "172.18.41.0"
    assert [str(r.dst) for r in route_pool.routes] == ["172.18.42.0/24"]


def test_reserved_ips_get_their_version_from_the_first_entry() -> None:
    reserved = by_name()[("SpiderReservedIP", "test-ipv4-reservedip")]
    assert isinstance(reserved, ReservedIP)
    assert reserved.ip_version == 4
    assert reserved.ips.count == 9


def test_coordinator_example_gets_spiderpool_defaults() -> None:
    coord = by_name()[("SpiderCoordinator", "default")]
    assert isinstance(coord, Coordinator)
    assert coord.policy_routes == (
        Route(ipaddress.ip_network("10.10.0.0/16"), ipaddress.ip_address("172.18.0.1")),
    )
    assert (coord.mode, coord.pod_cidr_type, coord.host_rule_table) == ("auto", "auto", 500)
    assert (coord.tune_pod_routes, coord.pod_rp_filter, coord.veth_mtu) == (True, 0, 1500)


def test_endpoint_example() -> None:
    ep = by_name()[("SpiderEndpoint", "test-app-1-9dc78fb9-rs99d")]
    assert isinstance(ep, Endpoint)
    assert ep.namespace == "default"
    assert (ep.node, ep.owner_controller_type, ep.owner_controller_name) == (
        "dc-test02",
        "Deployment",
        "test-app-1",
    )
    (detail,) = ep.ips
    assert detail.interface == "eth0"
    assert str(detail.ipv4) == "172.31.199.193/20"
    assert detail.ipv4_pool == "worker-172"
    assert detail.clean_gateway is False


# The broken examples: (name, field, part of the reason).
BROKEN = {
    "eno3np1-rail1-node1": [
        ("spec.ipVersion", "must be the number 4 or 6, not 'ipv4'"),
        ("spec.routes[0].to", "unknown field; known fields are dst, gw"),
        ("spec.routes[0].dst", "is required"),
    ],
    "ippool-test-ens192": [("spec.subnet", "not a canonical CIDR, did you mean 10.6.0.0/16")],
    "gpu1-net11": [("spec.subnet", "not a canonical CIDR, did you mean 172.16.0.0/16")],
    "cluster-a": [("spec.gateway", "172.110.0.1 lies outside spec.subnet 172.110.1.0/24")],
}
BROKEN_COORDINATORS = [
    [("spec.enableVethLinkLocalAddress", "use spec.vethLinkAddress")],
    [
        ("spec.detectGateway", "removed in Spiderpool v1.0"),
        ("spec.detectIPConflict", "removed in Spiderpool v1.0"),
        ("spec.hostRPFilter", "removed in Spiderpool v1.0"),
    ],
]


def refusals(doc: dict[str, object]) -> list[ValidationError]:
    with pytest.raises(ValidationError) as info:
        parse(doc)
    err = info.value
    return list(err.errors) if isinstance(err, ValidationErrors) else [err]


def test_broken_examples_are_refused_with_field_and_reason() -> None:
    coordinators = iter(BROKEN_COORDINATORS)
    docs = examples("spiderpool_invalid_examples.yaml")
    assert len(docs) == len(BROKEN) + len(BROKEN_COORDINATORS)
    for doc in docs:
        meta = doc["metadata"]
        assert isinstance(meta, dict)
        expected = BROKEN[meta["name"]] if doc["kind"] == "SpiderIPPool" else next(coordinators)
        errors = refusals(doc)
        for field, reason in expected:
            assert any(e.field == field and reason in e.reason for e in errors), (
                field,
                reason,
                [str(e) for e in errors],
            )
            assert any(f": {field}: " in str(e) for e in errors)
