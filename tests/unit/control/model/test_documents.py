"""Documents: YAML/JSON loading, the strict envelope, and parse/to_document round trips."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from spidernet.control.model.documents import (
    DocumentError,
    load_documents,
    parse,
    parse_all,
    to_document,
)
from spidernet.control.model.errors import ValidationError, ValidationErrors
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.labels import LabelSelector, Requirement, frozen_map
from spidernet.control.model.resources import (
    COORDINATOR_MODES,
    POD_CIDR_TYPES,
    AllocationDetail,
    Coordinator,
    Endpoint,
    IPPool,
    ReservedIP,
    Resource,
    Route,
    Subnet,
)

API = "spiderpool.spidernet.io/v2beta1"
POOL = f"""
apiVersion: {API}
kind: SpiderIPPool
metadata: {{name: a}}
spec: {{subnet: 10.0.0.0/24, ips: [10.0.0.1-10.0.0.9]}}
"""


def refused(document: dict[str, Any], field: str, reason: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse(document)
    err = info.value
    errors = list(err.errors) if isinstance(err, ValidationErrors) else [err]
    matching = [e for e in errors if e.field == field and reason in e.reason]
    assert matching, [str(e) for e in errors]
    return matching[0]


# -- load_documents ------------------------------------------------------------------------------


def test_multi_document_yaml_skips_empty_documents() -> None:
    docs = load_documents(f"---\n{POOL}\n---\n---\n# only a comment\n---\n{POOL}")
    assert [d["metadata"]["name"] for d in docs] == ["a", "a"]
    assert load_documents("") == []


def test_json_is_yaml() -> None:
    text = json.dumps(
        {
            "apiVersion": API,
            "kind": "SpiderIPPool",
            "metadata": {"name": "j"},
            "spec": {"subnet": "10.0.0.0/24"},
        }
    )
    (doc,) = load_documents(text)
    assert parse(doc).name == "j"


def test_kind_list_items_are_spliced_in() -> None:
    pool = yaml.safe_load(POOL)
    for kind in ("List", "SpiderIPPoolList"):
        text = json.dumps({"apiVersion": "v1", "kind": kind, "items": [pool, pool]})
        assert load_documents(text) == [pool, pool]
    with pytest.raises(DocumentError, match=r"document 1 \(List\): items must be a list"):
        load_documents(json.dumps({"kind": "List", "items": {}}))
    with pytest.raises(DocumentError, match=r"items\[1\] is a str, not a mapping"):
        load_documents(json.dumps({"kind": "List", "items": [pool, "x"]}))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("- a\n- b\n", "document 1 is a list, not a mapping"),
        (f"{POOL}\n---\njust text\n", "document 2 is a str, not a mapping"),
        ("a: [1, 2\n", "not valid YAML or JSON"),
        ("a: 1\na: 2\n", "found duplicate key 'a'"),
        ("!!python/object:os.system {}\n", "not valid YAML or JSON"),
    ],
)
def test_load_errors(text: str, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        load_documents(text)


def test_yaml_reads_like_kubernetes() -> None:
    (doc,) = load_documents(
        "a: 12:34\nb: 2024-10-30T08:31:09Z\nc: 010\nd: 1.5\ne: 0x1f\nf: yes\ng: 1:2:3:4:5:6:7:8\n"
    )
    # No base-60 numbers and no timestamps: those stay strings, as in sigs.k8s.io/yaml.
    assert doc == {
        "a": "12:34",
        "b": "2024-10-30T08:31:09Z",
        "c": 8,
        "d": 1.5,
        "e": 31,
        "f": True,
        "g": "1:2:3:4:5:6:7:8",
    }


def test_unquoted_mac_prefix_stays_a_string() -> None:
    text = (
        f"apiVersion: {API}\nkind: SpiderCoordinator\nmetadata: {{name: default}}\n"
        "spec: {podMACPrefix: 12:34}\n"
    )
    (coord,) = parse_all(text)
    assert isinstance(coord, Coordinator)
    assert coord.pod_mac_prefix == "12:34"


# -- the envelope ----------------------------------------------------------------------------------


def pool_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(POOL)
    return doc


def test_api_version_must_be_v2beta1() -> None:
    doc = pool_doc()
    doc["apiVersion"] = "spiderpool.spidernet.io/v2beta2"
    refused(doc, "apiVersion", f"is not served; use {API}")
    del doc["apiVersion"]
    refused(doc, "apiVersion", "is required")


def test_unknown_or_missing_kind_is_named() -> None:
    doc = pool_doc()
    doc["kind"] = "SpiderMultusConfigX"
    err = refused(doc, "kind", "unknown kind 'SpiderMultusConfigX'; expected one of SpiderIPPool")
    assert str(err).startswith("SpiderMultusConfigX 'a': kind: ")
    del doc["kind"]
    err = refused(doc, "kind", "is required")
    assert str(err).startswith("document 'a': kind: ")


def test_unknown_top_level_and_metadata_fields() -> None:
    doc = pool_doc()
    doc["sepc"] = {}
    refused(doc, "sepc", "unknown field; did you mean 'spec'?")
    doc = pool_doc()
    doc["metadata"]["labelz"] = {}
    refused(doc, "metadata.labelz", "did you mean 'labels'")


def test_server_owned_metadata_is_ignored() -> None:
    doc = pool_doc()
    doc["metadata"].update(
        uid="8bdceced",
        resourceVersion="195405",
        generation=7,
        finalizers=["spiderpool.spidernet.io"],
        creationTimestamp="2024-10-30T08:31:09Z",
        namespace="ignored-for-cluster-scope",
    )
    doc["status"] = {"allocatedIPCount": 3, "totalIPCount": 9}
    assert parse(doc) == parse(pool_doc())


@pytest.mark.parametrize(
    ("meta", "field", "reason"),
    [
        ({}, "metadata.name", "is required"),
        ({"generateName": "pool-"}, "metadata.name", "is required"),
        ({"name": "Pool_A"}, "metadata.name", "'Pool_A' is not a valid name"),
        ({"name": "a" * 254}, "metadata.name", "no more than 253 characters"),
        ({"name": 7}, "metadata.name", "must be a string, not a number"),
        ({"name": "a", "labels": {"app": 1}}, "metadata.labels", "keys and values must be strings"),
        ({"name": "a", "labels": {"app": "a b"}}, "metadata.labels", "value 'a b' is invalid"),
        (
            {"name": "a", "annotations": {"bad key": "x"}},
            "metadata.annotations",
            "key 'bad key' is invalid",
        ),
        ({"name": "a", "labels": ["x"]}, "metadata.labels", "must be a mapping, not a list"),
    ],
)
def test_metadata_rules(meta: dict[str, Any], field: str, reason: str) -> None:
    doc = pool_doc()
    doc["metadata"] = meta
    refused(doc, field, reason)


def test_missing_or_wrong_sections() -> None:
    doc = pool_doc()
    del doc["metadata"]
    refused(doc, "metadata", "is required")
    doc = pool_doc()
    doc["spec"] = ["x"]
    refused(doc, "spec", "must be a mapping, not a list")
    odd: dict[Any, Any] = {**pool_doc(), 1: "x"}
    refused(odd, "(top level)", "key 1 is not a string")
    doc = pool_doc()
    doc["status"] = {"anything": "goes"}
    parse(doc)
    reserved = {
        "apiVersion": API,
        "kind": "SpiderReservedIP",
        "metadata": {"name": "r"},
        "spec": {"ips": ["10.0.0.1"]},
        "status": {},
    }
    refused(reserved, "status", "unknown field")


def test_labels_and_annotations_are_kept() -> None:
    doc = pool_doc()
    doc["metadata"]["labels"] = {"b": "2", "a": "1"}
    doc["metadata"]["annotations"] = {"note": "free text, even spaces"}
    pool = parse(doc)
    assert dict(pool.labels) == {"a": "1", "b": "2"}
    out = to_document(pool)
    assert out["metadata"] == {
        "name": "a",
        "labels": {"a": "1", "b": "2"},
        "annotations": {"note": "free text, even spaces"},
    }


def test_several_errors_come_together_one_per_line() -> None:
    doc = pool_doc()
    doc["spec"] = {"subnet": "10.0.0.1/24", "gateway": "x", "bogus": 1}
    with pytest.raises(ValidationErrors) as info:
        parse(doc)
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith("SpiderIPPool 'a': spec.") for line in lines)
    assert info.value.field == info.value.errors[0].field


def test_canonical_document_shape() -> None:
    doc = pool_doc()
    doc["spec"].update(
        gateway="10.0.0.254",
        podAffinity={"matchExpressions": [{"key": "app", "operator": "Exists"}]},
        nodeName=["n1"],
    )
    assert to_document(parse(doc)) == {
        "apiVersion": API,
        "kind": "SpiderIPPool",
        "metadata": {"name": "a"},
        "spec": {
            "ipVersion": 4,
            "subnet": "10.0.0.0/24",
            "ips": ["10.0.0.1-10.0.0.9"],
            "gateway": "10.0.0.254",
            "podAffinity": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            "nodeName": ["n1"],
            "default": False,
            "disable": False,
        },
    }


# -- round trips with generated records --------------------------------------------------------

names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
label_maps = st.dictionaries(
    st.from_regex(r"[a-z]{1,5}(\.io/[a-z]{1,4})?", fullmatch=True),
    st.from_regex(r"([a-z0-9]{0,6})", fullmatch=True),
    max_size=3,
)
requirements = st.one_of(
    st.builds(
        Requirement,
        names,
        st.sampled_from(["In", "NotIn"]),
        st.lists(names, min_size=1, max_size=3).map(tuple),
    ),
    st.builds(Requirement, names, st.sampled_from(["Exists", "DoesNotExist"])),
)
selectors = st.builds(
    LabelSelector, label_maps.map(frozen_map), st.lists(requirements, max_size=2).map(tuple)
)


@st.composite
def networks(draw: st.DrawFn, version: int, min_prefix: int = 0) -> Any:
    bits = 32 if version == 4 else 128
    prefix = draw(st.integers(min_prefix, bits))
    base = draw(st.integers(0, 2**bits - 1))
    start = base >> (bits - prefix) << (bits - prefix)
    if version == 4:
        return ipaddress.IPv4Network((start, prefix))
    return ipaddress.IPv6Network((start, prefix))


def address(version: int, value: int) -> Any:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


@st.composite
def address_spaces(draw: st.DrawFn) -> dict[str, Any]:
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    net = draw(networks(version, min_prefix=bits - 24))
    lo, hi = int(net.network_address), int(net.broadcast_address)
    point = st.integers(lo, hi)
    spans = st.lists(
        st.tuples(point, st.integers(0, 300)).map(lambda t: (t[0], min(hi, t[0] + t[1]))),
        max_size=4,
    )
    ips, exclude = IntervalSet(draw(spans)), IntervalSet(draw(spans))
    gateway = None
    if draw(st.booleans()):
        gw = draw(point)
        if gw in ips.difference(exclude):
            exclude = exclude.union(IntervalSet([(gw, gw)]))
        gateway = address(version, gw)
    dsts = draw(st.lists(networks(version, min_prefix=1), max_size=3, unique=True))
    routes = tuple(Route(d, address(version, draw(point))) for d in dsts)
    return {
        "ip_version": version,
        "subnet": net,
        "ips": ips,
        "exclude_ips": exclude,
        "gateway": gateway,
        "routes": routes,
    }


@st.composite
def pools(draw: st.DrawFn) -> IPPool:
    space = draw(address_spaces())
    return IPPool(
        name=draw(names),
        **space,
        pod_affinity=draw(st.none() | selectors.filter(lambda s: not s.is_empty)),
        namespace_affinity=draw(st.none() | selectors),
        namespace_name=tuple(draw(st.lists(names, max_size=2))),
        node_affinity=draw(st.none() | selectors),
        node_name=tuple(draw(st.lists(names, max_size=2))),
        multus_name=tuple(
            draw(st.lists(st.one_of(names, st.tuples(names, names).map("/".join)), max_size=2))
        ),
        default=draw(st.booleans()),
        disable=draw(st.booleans()),
        labels=frozen_map(draw(label_maps)),
        annotations=frozen_map(draw(label_maps)),
    )


@st.composite
def subnets(draw: st.DrawFn) -> Subnet:
    return Subnet(name=draw(names), **draw(address_spaces()), labels=frozen_map(draw(label_maps)))


@st.composite
def reserved_ips(draw: st.DrawFn) -> ReservedIP:
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    spans = st.lists(
        st.tuples(st.integers(0, 2**bits - 1000), st.integers(0, 999)).map(
            lambda t: (t[0], t[0] + t[1])
        ),
        min_size=1,
        max_size=4,
    )
    return ReservedIP(draw(names), version, IntervalSet(draw(spans)))


@st.composite
def routes_any(draw: st.DrawFn) -> Route:
    """A policy route: any destination, a unicast gateway (the coordinator's check)."""
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    gw = draw(
        st.integers(0, 2**bits - 1)
        .map(lambda n: address(version, n))
        .filter(lambda a: not (a.is_unspecified or a.is_multicast))
    )
    return Route(draw(networks(version)), gw)


@st.composite
def coordinators(draw: st.DrawFn) -> Coordinator:
    first = draw(st.integers(0, 127)) * 2  # unicast: lowest bit of the first byte is 0
    mac = draw(st.just("") | st.integers(0, 255).map(lambda b: f"{first:02x}:{b:02X}"))
    return Coordinator(
        name=draw(names),
        mode=draw(st.sampled_from(COORDINATOR_MODES)),
        pod_cidr_type=draw(st.sampled_from(POD_CIDR_TYPES)),
        hijack_cidr=tuple(draw(st.lists(st.sampled_from([4, 6]).flatmap(networks), max_size=3))),
        policy_routes=tuple(draw(st.lists(routes_any(), max_size=3))),
        pod_mac_prefix=mac,
        tune_pod_routes=draw(st.booleans()),
        pod_default_route_nic=draw(st.sampled_from(["", "eth0", "net1"])),
        host_rule_table=draw(st.integers(1, 252) | st.integers(256, 2**32 - 1)),
        pod_rp_filter=draw(st.integers(-5, 2)),
        tx_queue_len=draw(st.integers(0, 10000)),
        veth_link_address=draw(st.none() | st.just(ipaddress.ip_address("169.254.100.1"))),
        veth_mtu=draw(st.integers(1, 65535)),
    )


@st.composite
def details(draw: st.DrawFn, nic: str) -> AllocationDetail:
    v4 = draw(
        st.none()
        | st.builds(
            lambda a, p: ipaddress.IPv4Interface((a, p)),
            st.integers(0, 2**32 - 1),
            st.integers(0, 32),
        )
    )
    v6 = draw(
        st.none()
        | st.builds(
            lambda a, p: ipaddress.IPv6Interface((a, p)),
            st.integers(0, 2**128 - 1),
            st.integers(0, 128),
        )
    )
    return AllocationDetail(
        interface=nic,
        ipv4=v4,
        ipv6=v6,
        ipv4_pool=draw(st.none() | names),
        ipv6_pool=draw(st.none() | names),
        vlan=draw(st.integers(0, 4094)),
        ipv4_gateway=draw(st.none() | st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)),
        ipv6_gateway=draw(st.none() | st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)),
        clean_gateway=draw(st.none() | st.booleans()),
        routes=tuple(draw(st.lists(routes_any(), max_size=2))),
        mac=draw(st.none() | st.just("02:00:0a:00:00:05")),
    )


@st.composite
def endpoints(draw: st.DrawFn) -> Endpoint:
    nics = draw(st.lists(st.sampled_from(["eth0", "net1", "net2"]), unique=True, max_size=3))
    return Endpoint(
        namespace=draw(names),
        name=draw(names),
        uid=draw(names),
        node=draw(names),
        ips=tuple(draw(details(n)) for n in nics),
        owner_controller_type=draw(st.sampled_from(["Deployment", "StatefulSet", "Pod"])),
        owner_controller_name=draw(names),
    )


resources = st.one_of(pools(), subnets(), reserved_ips(), coordinators(), endpoints())


@settings(max_examples=100, deadline=None)
@given(resources)
def test_round_trip(resource: Resource) -> None:
    doc = to_document(resource)
    assert parse(doc) == resource
    # The document is plain JSON data, and survives YAML and JSON as text.
    assert parse(json.loads(json.dumps(doc))) == resource
    (again,) = load_documents(yaml.safe_dump(doc))
    assert parse(again) == resource
    assert to_document(parse(doc)) == doc
