"""SpiderIPPool, SpiderSubnet and SpiderReservedIP: defaulting and every single-resource rule.

Each rule has a refused case (the message must name the field and the reason) and an
accepted case next to it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from spidernet.control.model import rules
from spidernet.control.model.documents import parse, to_document
from spidernet.control.model.errors import ValidationError, ValidationErrors
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.labels import LabelSelector
from spidernet.control.model.resources import IPPool, ReservedIP, Route, Subnet

API = "spiderpool.spidernet.io/v2beta1"


def doc(kind: str = "SpiderIPPool", /, **spec: Any) -> dict[str, Any]:
    spec.setdefault("subnet", "10.0.0.0/24")
    return {"apiVersion": API, "kind": kind, "metadata": {"name": "pool-a"}, "spec": spec}


def refused(document: dict[str, Any], field: str, reason: str) -> ValidationError:
    """Parse must fail, with one error naming `field` and containing `reason`."""
    with pytest.raises(ValidationError) as info:
        parse(document)
    err = info.value
    errors = list(err.errors) if isinstance(err, ValidationErrors) else [err]
    matching = [e for e in errors if e.field == field and reason in e.reason]
    assert matching, [str(e) for e in errors]
    text = str(matching[0])
    assert text.startswith(f"{document['kind']} '")
    assert f": {field}: " in text
    return matching[0]


BOTH = pytest.mark.parametrize("kind", ["SpiderIPPool", "SpiderSubnet"])


# -- defaulting ----------------------------------------------------------------------------------


@BOTH
def test_ip_version_comes_from_the_subnet(kind: str) -> None:
    res = parse(doc(kind, subnet="fd00:1::/64", ips=["fd00:1::10-fd00:1::1f"]))
    assert isinstance(res, IPPool | Subnet)
    assert res.ip_version == 6
    assert to_document(res)["spec"]["ipVersion"] == 6


@BOTH
def test_ips_and_exclude_ips_are_merged_sorted_and_deduplicated(kind: str) -> None:
    res = parse(
        doc(
            kind,
            ips=["10.0.0.20-10.0.0.29", "10.0.0.2", "10.0.0.3", "10.0.0.25"],
            excludeIPs=["10.0.0.22", "10.0.0.21", "10.0.0.21"],
        )
    )
    spec = to_document(res)["spec"]
    assert spec["ips"] == ["10.0.0.2-10.0.0.3", "10.0.0.20-10.0.0.29"]
    assert spec["excludeIPs"] == ["10.0.0.21-10.0.0.22"]
    assert isinstance(res, IPPool | Subnet)
    assert res.total == 10


def test_pool_defaults_and_empty_ips() -> None:
    pool = parse(doc())
    assert isinstance(pool, IPPool)
    assert pool.total == 0  # as in Spiderpool, a pool without ips has no addresses
    assert (pool.default, pool.disable, pool.gateway, pool.routes) == (False, False, None, ())
    assert to_document(pool)["spec"] == {
        "ipVersion": 4,
        "subnet": "10.0.0.0/24",
        "default": False,
        "disable": False,
    }


# -- subnet and version ----------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("subnet", "reason"),
    [
        ("10.0.0.1/24", "'10.0.0.1/24' is not a canonical CIDR, did you mean 10.0.0.0/24"),
        ("FD00::/64", "did you mean fd00::/64"),
        ("10.0.0.0/255.255.255.0", "did you mean 10.0.0.0/24"),
        ("10.0.0.0", "is not a CIDR: add the prefix length"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a CIDR"),
    ],
)
def test_subnet_must_be_a_canonical_cidr(kind: str, subnet: str, reason: str) -> None:
    refused(doc(kind, subnet=subnet), "spec.subnet", reason)


@BOTH
def test_subnet_is_required(kind: str) -> None:
    document = doc(kind)
    del document["spec"]["subnet"]
    refused(document, "spec.subnet", "is required")


@BOTH
def test_ip_version_must_agree_with_the_subnet(kind: str) -> None:
    refused(
        doc(kind, ipVersion=6),
        "spec.ipVersion",
        "6 disagrees with spec.subnet 10.0.0.0/24, which is IPv4",
    )
    assert parse(doc(kind, ipVersion=4)).ip_version == 4  # type: ignore[union-attr]


@BOTH
@pytest.mark.parametrize("version", [5, "4", "ipv4", True])
def test_ip_version_must_be_4_or_6(kind: str, version: object) -> None:
    refused(doc(kind, ipVersion=version), "spec.ipVersion", "must be the number 4 or 6")


# -- ips and excludeIPs ----------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("key", "entries", "field", "reason"),
    [
        ("ips", ["10.0.0.1", "10.0.0.0/28"], "spec.ips[1]", "is CIDR notation"),
        ("ips", ["10.0.0.9-10.0.0.2"], "spec.ips[0]", "is reversed"),
        ("ips", ["fd00::1"], "spec.ips[0]", "fd00::1 is IPv6, but this resource is IPv4"),
        ("excludeIPs", ["10.0.0.x"], "spec.excludeIPs[0]", "'10.0.0.x' is not an IP address"),
        ("ips", "10.0.0.1", "spec.ips", "must be a list, not a string"),
        ("ips", [10], "spec.ips[0]", "must be a string, not a number"),
    ],
)
def test_range_syntax(kind: str, key: str, entries: object, field: str, reason: str) -> None:
    refused(doc(kind, **{key: entries}), field, reason)


@BOTH
def test_every_bad_entry_is_reported(kind: str) -> None:
    with pytest.raises(ValidationErrors) as info:
        parse(doc(kind, ips=["bad", "10.0.0.1", "10.0.0.5-10.0.0.4"]))
    assert [e.field for e in info.value] == ["spec.ips[0]", "spec.ips[2]"]
    assert str(info.value).count("\n") == 1


@BOTH
def test_ips_must_lie_inside_the_subnet(kind: str) -> None:
    refused(
        doc(kind, ips=["10.0.0.250-10.0.1.5"]),
        "spec.ips",
        "10.0.1.0-10.0.1.5 lie outside spec.subnet 10.0.0.0/24",
    )
    refused(doc(kind, ips=["10.0.1.9"]), "spec.ips", "10.0.1.9 lies outside spec.subnet")
    parse(doc(kind, ips=["10.0.0.0-10.0.0.255"]))


@BOTH
def test_exclude_ips_must_lie_inside_the_subnet(kind: str) -> None:
    refused(doc(kind, excludeIPs=["10.9.0.1"]), "spec.excludeIPs", "10.9.0.1 lies outside")
    parse(doc(kind, ips=["10.0.0.1-10.0.0.9"], excludeIPs=["10.0.0.100"]))


# -- gateway --------------------------------------------------------------------------------------


@BOTH
def test_gateway_must_not_be_a_usable_address(kind: str) -> None:
    err = refused(
        doc(kind, ips=["10.0.0.1-10.0.0.9"], gateway="10.0.0.1"),
        "spec.gateway",
        "10.0.0.1 lies inside spec.ips; add it to spec.excludeIPs",
    )
    assert str(err) == (
        f"{kind} 'pool-a': spec.gateway: 10.0.0.1 lies inside spec.ips; add it to spec.excludeIPs"
    )
    res = parse(doc(kind, ips=["10.0.0.1-10.0.0.9"], excludeIPs=["10.0.0.1"], gateway="10.0.0.1"))
    assert str(res.gateway) == "10.0.0.1"  # type: ignore[union-attr]
    parse(doc(kind, ips=["10.0.0.2-10.0.0.9"], gateway="10.0.0.1"))


@BOTH
@pytest.mark.parametrize(
    ("gateway", "reason"),
    [
        ("10.0.1.1", "10.0.1.1 lies outside spec.subnet 10.0.0.0/24"),
        ("fd00::1", "fd00::1 is IPv6, but spec.ipVersion is 4"),
        ("10.0.0.1/24", "'10.0.0.1/24' is not an IP address"),
    ],
)
def test_gateway_must_be_an_address_in_the_subnet(kind: str, gateway: str, reason: str) -> None:
    refused(doc(kind, gateway=gateway), "spec.gateway", reason)


# -- routes ---------------------------------------------------------------------------------------


def route(dst: str, gw: str = "10.0.0.1") -> dict[str, str]:
    return {"dst": dst, "gw": gw}


@BOTH
@pytest.mark.parametrize(
    ("routes", "field", "reason"),
    [
        ([route("0.0.0.0/0")], "spec.routes[0].dst", "is the default route; set spec.gateway"),
        (
            [route("10.1.0.0/16"), route("10.1.0.0/16", "10.0.0.2")],
            "spec.routes[1].dst",
            "10.1.0.0/16 duplicates spec.routes[0].dst",
        ),
        ([route("10.1.0.1/16")], "spec.routes[0].dst", "not a canonical CIDR, did you mean"),
        ([route("10.1.0.0")], "spec.routes[0].dst", "is not a CIDR"),
        ([route("fd00:9::/64")], "spec.routes[0].dst", "is IPv6, but this resource is IPv4"),
        ([route("10.1.0.0/16", "10.9.0.1")], "spec.routes[0].gw", "10.9.0.1 lies outside"),
        ([route("10.1.0.0/16", "fd00::1")], "spec.routes[0].gw", "fd00::1 is IPv6"),
        ([{"dst": "10.1.0.0/16"}], "spec.routes[0].gw", "is required"),
        (
            [{"dst": "10.1.0.0/16", "gw": "10.0.0.1", "via": "x"}],
            "spec.routes[0].via",
            "unknown field",
        ),
        (["10.1.0.0/16"], "spec.routes[0]", "must be a mapping, not a string"),
    ],
)
def test_route_rules(kind: str, routes: list[Any], field: str, reason: str) -> None:
    refused(doc(kind, routes=routes), field, reason)


@BOTH
def test_valid_routes(kind: str) -> None:
    res = parse(doc(kind, routes=[route("10.1.0.0/16"), route("192.168.0.0/24", "10.0.0.254")]))
    assert res.routes == (  # type: ignore[union-attr]
        Route(ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_address("10.0.0.1")),
        Route(ipaddress.ip_network("192.168.0.0/24"), ipaddress.ip_address("10.0.0.254")),
    )
    v6 = parse(doc(kind, subnet="fd00::/64", routes=[route("fd01::/48", "fd00::1")]))
    assert str(v6.routes[0].dst) == "fd01::/48"  # type: ignore[union-attr]


# -- pool-only fields ----------------------------------------------------------------------------


def test_empty_pod_affinity_is_refused() -> None:
    refused(doc(podAffinity={}), "spec.podAffinity", "an empty selector is not allowed")
    refused(doc(podAffinity={"matchLabels": {}}), "spec.podAffinity", "empty selector")
    pool = parse(doc(podAffinity={"matchLabels": {"app": "web"}}))
    assert isinstance(pool, IPPool)
    assert pool.pod_affinity is not None
    assert pool.pod_affinity.matches({"app": "web"})


def test_empty_namespace_and_node_affinity_are_allowed() -> None:
    pool = parse(doc(namespaceAffinity={}, nodeAffinity={}))
    assert isinstance(pool, IPPool)
    assert pool.namespace_affinity == LabelSelector()
    assert pool.node_affinity == LabelSelector()


@pytest.mark.parametrize("key", ["podAffinity", "namespaceAffinity", "nodeAffinity"])
@pytest.mark.parametrize(
    ("selector", "field", "reason"),
    [
        (
            {"matchExpressions": [{"key": "app", "operator": "Is", "values": ["x"]}]},
            ".matchExpressions[0].operator",
            "'Is' is not one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "In"}]},
            ".matchExpressions[0].values",
            "must be given when the operator is In",
        ),
        ({"matchExpressions": [{"operator": "Exists"}]}, ".matchExpressions[0].key", "is required"),
        ({"matchLabels": {"app": "a b"}}, ".matchLabels", "value 'a b' is invalid"),
        ({"matchLabels": {"app": 3}}, ".matchLabels", "keys and values must be strings"),
        ({"matchLabel": {"app": "x"}}, ".matchLabel", "did you mean 'matchLabels'"),
    ],
)
def test_selector_syntax(key: str, selector: dict[str, Any], field: str, reason: str) -> None:
    refused(doc(**{key: selector}), f"spec.{key}{field}", reason)


@pytest.mark.parametrize(
    ("key", "values", "reason"),
    [
        ("namespaceName", ["Kube-System"], "is not a valid label"),
        ("nodeName", ["node_1"], "is not a valid name"),
        ("multusName", ["kube-system/Macvlan"], "is not a valid name"),
        ("multusName", ["kube.system/macvlan"], "is not a valid label"),
    ],
)
def test_name_lists(key: str, values: list[str], reason: str) -> None:
    refused(doc(**{key: values}), f"spec.{key}[0]", reason)


def test_valid_name_lists() -> None:
    pool = parse(
        doc(
            namespaceName=["default"],
            nodeName=["node-1.example.com"],
            multusName=["macvlan", "kube-system/macvlan-ens192"],
        )
    )
    assert isinstance(pool, IPPool)
    assert pool.multus_name == ("macvlan", "kube-system/macvlan-ens192")


@pytest.mark.parametrize("key", ["default", "disable"])
def test_flags_must_be_booleans(key: str) -> None:
    refused(doc(**{key: "true"}), f"spec.{key}", "must be true or false, not a string")
    assert getattr(parse(doc(**{key: True})), key) is True


def test_retired_vlan_field_is_explained() -> None:
    refused(
        doc(vlan=100),
        "spec.vlan",
        "removed in Spiderpool v1.0; set the VLAN in the SpiderMultusConfig",
    )
    refused(doc("SpiderSubnet", vlan=100), "spec.vlan", "removed in Spiderpool v1.0")


def test_subnet_refuses_pool_only_fields() -> None:
    refused(doc("SpiderSubnet", default=True), "spec.default", "unknown field")


# -- SpiderReservedIP ------------------------------------------------------------------------------


def reserved(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "SpiderReservedIP", "metadata": {"name": "r"}, "spec": spec}


def test_reserved_ip_version_from_first_entry() -> None:
    res = parse(reserved(ips=["fd00::5-fd00::9", "fd00::1"]))
    assert isinstance(res, ReservedIP)
    assert (res.ip_version, res.ips.count) == (6, 6)
    assert to_document(res)["spec"] == {"ipVersion": 6, "ips": ["fd00::1", "fd00::5-fd00::9"]}


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({}, "spec.ips", "must list at least one IP or range"),
        ({"ipVersion": 4, "ips": []}, "spec.ips", "must list at least one IP or range"),
        ({"ips": ["10.0.0.1", "fd00::1"]}, "spec.ips[1]", "fd00::1 is IPv6, but this resource"),
        ({"ipVersion": 6, "ips": ["10.0.0.1"]}, "spec.ips[0]", "10.0.0.1 is IPv4"),
        ({"ips": ["nonsense"]}, "spec.ips[0]", "'nonsense' is not an IP address"),
        ({"ipVersion": 7, "ips": ["10.0.0.1"]}, "spec.ipVersion", "must be the number 4 or 6"),
        ({"ips": ["10.0.0.0/24"]}, "spec.ips[0]", "is CIDR notation"),
        ({"ips": ["10.0.0.1"], "subnet": "10.0.0.0/24"}, "spec.subnet", "unknown field"),
    ],
)
def test_reserved_rules(spec: dict[str, Any], field: str, reason: str) -> None:
    document = reserved(**spec)
    refused(document, field, reason)


# -- records built in code -----------------------------------------------------------------------


def test_rules_check_records_built_in_code() -> None:
    net = ipaddress.ip_network("10.0.0.0/24")
    good = IPPool("p", 4, net, IntervalSet.parse(["10.0.0.10-10.0.0.20"], 4))
    rules.check(good)
    bad = IPPool("p", 6, net, IntervalSet.parse(["10.0.1.1"], 4))
    with pytest.raises(ValidationError, match=r"spec.subnet: 10.0.0.0/24 is IPv4, but "):
        rules.check(bad)
    with pytest.raises(ValidationError, match="must be 4 or 6"):
        rules.check(IPPool("p", 5, net))
    with pytest.raises(ValidationError, match="must be 4 or 6"):
        rules.check(ReservedIP("r", 5, IntervalSet([(1, 1)])))
    weird = IPPool(
        "p",
        4,
        net,
        routes=(Route(ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_address("fd00::1")),),
        gateway=ipaddress.ip_address("fd00::1"),
    )
    with pytest.raises(ValidationErrors) as info:
        rules.check(weird)
    assert {e.field for e in info.value} == {"spec.gateway", "spec.routes[0].gw"}


def test_usable_and_total() -> None:
    pool = IPPool(
        "p",
        6,
        ipaddress.ip_network("fd00::/64"),
        IntervalSet.of_network(ipaddress.ip_network("fd00::/64")),
        IntervalSet.parse(["fd00::", "fd00::1"], 6),
    )
    assert pool.total == 2**64 - 2
    assert pool.usable.first == int(ipaddress.ip_address("fd00::2"))
    rules.check(pool)
