"""SpiderCoordinator and SpiderEndpoint: defaults, normalisation and every rule."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from spidernet.control.model import rules
from spidernet.control.model.documents import parse, to_document
from spidernet.control.model.errors import ValidationError, ValidationErrors
from spidernet.control.model.resources import AllocationDetail, Coordinator, Endpoint, Route

API = "spiderpool.spidernet.io/v2beta1"


def refused(document: dict[str, Any], field: str, reason: str) -> ValidationError:
    """Parse must fail, with one error naming `field` and containing `reason`."""
    with pytest.raises(ValidationError) as info:
        parse(document)
    err = info.value
    errors = list(err.errors) if isinstance(err, ValidationErrors) else [err]
    matching = [e for e in errors if e.field == field and reason in e.reason]
    assert matching, [str(e) for e in errors]
    assert f": {field}: " in str(matching[0])
    return matching[0]


def coord(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "SpiderCoordinator",
        "metadata": {"name": "default"},
        "spec": spec,
    }


def parse_coord(**spec: Any) -> Coordinator:
    res = parse(coord(**spec))
    assert isinstance(res, Coordinator)
    return res


# -- SpiderCoordinator ----------------------------------------------------------------------------


def test_coordinator_defaults_are_spiderpools() -> None:
    c = parse_coord()
    assert c == Coordinator("default")
    assert to_document(c)["spec"] == {
        "mode": "auto",
        "podCIDRType": "auto",  # Spiderpool requires it; embedded mode defaults it
        "tunePodRoutes": True,
        "hostRuleTable": 500,
        "podRPFilter": 0,
        "txQueueLen": 0,
        "vethLinkAddress": "",
        "vethMTU": 1500,
    }


def test_a_document_without_spec_is_a_default_coordinator() -> None:
    document = coord()
    del document["spec"]
    assert parse(document) == Coordinator("default")


@pytest.mark.parametrize("mode", ["auto", "underlay", "overlay", "disabled"])
def test_modes(mode: str) -> None:
    assert parse_coord(mode=mode).mode == mode


def test_mode_disable_is_read_as_disabled() -> None:
    assert parse_coord(mode="disable").mode == "disabled"


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"mode": "bridge"}, "spec.mode", "'bridge' is not one of auto, underlay, overlay"),
        ({"podCIDRType": "flannel"}, "spec.podCIDRType", "'flannel' is not one of auto"),
        ({"hijackCIDR": ["10.0.0.0/40"]}, "spec.hijackCIDR[0]", "is not an IP address or a CIDR"),
        ({"hijackCIDR": ["10.0.0.0/255.0.0.0"]}, "spec.hijackCIDR[0]", "not an IP address"),
        (
            {"policyRoutes": [{"dst": "10.0.0.0/8", "gw": "fd00::1"}]},
            "spec.policyRoutes",
            "entry 0: dst 10.0.0.0/8 and gw fd00::1 are not of the same IP family",
        ),
        (
            {"policyRoutes": [{"dst": "10.0.0.0/8", "gw": "x"}]},
            "spec.policyRoutes[0].gw",
            "'x' is not an IP address",
        ),
        (
            {"policyRoutes": [{"dst": "nope", "gw": "10.0.0.1"}]},
            "spec.policyRoutes[0].dst",
            "'nope' is not an IP address or a CIDR",
        ),
        ({"podMACPrefix": "0a:1b:2c"}, "spec.podMACPrefix", "is not a MAC prefix"),
        ({"podMACPrefix": "zz:1b"}, "spec.podMACPrefix", "is not a MAC prefix"),
        ({"podMACPrefix": "0b:1b"}, "spec.podMACPrefix", "is not unicast"),
        ({"txQueueLen": -1}, "spec.txQueueLen", "-1 is out of range 0..4294967295"),
        ({"podRPFilter": 3}, "spec.podRPFilter", "3 is not a rp_filter value: use 0, 1, 2, or -1"),
        ({"vethMTU": 0}, "spec.vethMTU", "0 is out of range 1..65535"),
        ({"vethMTU": 70000}, "spec.vethMTU", "70000 is out of range 1..65535"),
        ({"vethLinkAddress": "169.254.100"}, "spec.vethLinkAddress", "is not an IP address"),
        ({"hostRuleTable": 254}, "spec.hostRuleTable", "254 is a table the kernel owns"),
        ({"hostRuleTable": 0}, "spec.hostRuleTable", "0 is out of range 1..4294967295"),
        ({"podMACPrefix": "0a-1b-2c"}, "spec.podMACPrefix", "is not a MAC prefix"),
        (
            {"policyRoutes": [{"dst": "10.0.0.0/8", "gw": "0.0.0.0"}]},
            "spec.policyRoutes",
            "unicast",
        ),
        ({"hostRuleTable": "500"}, "spec.hostRuleTable", "must be an integer, not a string"),
        ({"tunePodRoutes": "yes"}, "spec.tunePodRoutes", "must be true or false"),
        ({"podDefaultRouteNIC": "net/1"}, "spec.podDefaultRouteNIC", "is not an interface name"),
        ({"podDefaultRouteNIC": "a" * 16}, "spec.podDefaultRouteNIC", "1-15 characters"),
        ({"hijackCIDRs": []}, "spec.hijackCIDRs", "did you mean 'hijackCIDR'"),
        ({"hostRPFilter": 0}, "spec.hostRPFilter", "removed in Spiderpool v1.0"),
    ],
)
def test_coordinator_rules(spec: dict[str, Any], field: str, reason: str) -> None:
    refused(coord(**spec), field, reason)


def test_coordinator_normalisation_and_accepted_values() -> None:
    c = parse_coord(
        hijackCIDR=["169.254.0.0/16", "10.96.0.10", "fd00::a", "10.1.2.3/16"],
        policyRoutes=[
            {"dst": "10.10.0.0/16", "gw": "172.18.0.1"},
            {"dst": "fd00:9::1", "gw": "fd00::1"},
        ],
        podMACPrefix="0a:1B",
        podRPFilter=-1,
        txQueueLen=1000,
        vethLinkAddress="169.254.100.1",
        vethMTU=9000,
        hostRuleTable=100,
        podDefaultRouteNIC="net1",
        tunePodRoutes=False,
        podCIDRType="calico",
    )
    # Bare IPs become /32 and /128 (Spiderpool's mutating webhook); host bits are cleared.
    assert [str(n) for n in c.hijack_cidr] == [
        "169.254.0.0/16",
        "10.96.0.10/32",
        "fd00::a/128",
        "10.1.0.0/16",
    ]
    assert c.policy_routes[1] == Route(
        ipaddress.ip_network("fd00:9::1/128"), ipaddress.ip_address("fd00::1")
    )
    assert c.pod_mac_prefix == "0a:1B"
    assert c.pod_rp_filter == -1
    assert c.veth_link_address == ipaddress.ip_address("169.254.100.1")
    assert (c.veth_mtu, c.host_rule_table, c.tx_queue_len) == (9000, 100, 1000)
    assert (c.pod_default_route_nic, c.tune_pod_routes, c.pod_cidr_type) == (
        "net1",
        False,
        "calico",
    )
    assert parse(to_document(c)) == c


def test_empty_strings_mean_unset() -> None:
    c = parse_coord(podMACPrefix="", vethLinkAddress="", podDefaultRouteNIC="")
    assert (c.pod_mac_prefix, c.veth_link_address, c.pod_default_route_nic) == ("", None, "")


def test_status_is_ignored_on_input() -> None:
    document = coord()
    document["status"] = {"phase": "Synced", "overlayPodCIDR": ["10.233.64.0/18"]}
    assert parse(document) == Coordinator("default")
    document["status"] = "Synced"
    refused(document, "status", "must be a mapping")


# -- SpiderEndpoint -------------------------------------------------------------------------------


def detail(**fields: Any) -> dict[str, Any]:
    return {"interface": "eth0", **fields}


def endpoint(*ips: dict[str, Any], namespace: str | None = "apps") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-0"}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": API,
        "kind": "SpiderEndpoint",
        "metadata": meta,
        "status": {
            "current": {"uid": "0c6e-41", "node": "node-1", "ips": list(ips)},
            "ownerControllerType": "StatefulSet",
            "ownerControllerName": "web",
        },
    }


def test_endpoint_dual_stack_round_trip() -> None:
    document = endpoint(
        detail(
            ipv4="10.6.0.5/16",
            ipv6="fd00::5/64",
            ipv4Pool="v4",
            ipv6Pool="v6",
            vlan=0,
            ipv4Gateway="10.6.0.1",
            ipv6Gateway="fd00::1",
            cleanGateway=False,
            routes=[{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}],
        ),
        detail(interface="net1", ipv4="10.8.0.5/24", mac="02:00:0a:08:00:05", vlan=30),
    )
    ep = parse(document)
    assert isinstance(ep, Endpoint)
    assert ep.namespace == "apps"
    assert ep.ips[0].ipv4 == ipaddress.ip_interface("10.6.0.5/16")
    assert ep.ips[0].ipv6 == ipaddress.ip_interface("fd00::5/64")
    assert ep.ips[1].vlan == 30
    assert ep.ips[1].clean_gateway is None
    assert to_document(ep) == document
    assert parse(to_document(ep)) == ep


def test_endpoint_namespace_defaults_to_default() -> None:
    ep = parse(endpoint(detail(ipv4="10.6.0.5/16"), namespace=None))
    assert isinstance(ep, Endpoint)
    assert ep.namespace == "default"


def test_endpoint_errors_name_the_namespace() -> None:
    err = refused(
        endpoint(detail(vlan=5000)), "status.current.ips[0].vlan", "5000 is not a VLAN ID"
    )
    assert str(err).startswith("SpiderEndpoint 'apps/web-0': status.current.ips[0].vlan: ")


@pytest.mark.parametrize(
    ("ips", "field", "reason"),
    [
        (
            [detail(ipv4="10.6.0.5")],
            "status.current.ips[0].ipv4",
            "is not an address with a prefix length, like 10.0.0.5/24",
        ),
        ([detail(ipv4="fd00::5/64")], "status.current.ips[0].ipv4", "is not an IPv4 address"),
        ([detail(ipv6="10.6.0.5/16")], "status.current.ips[0].ipv6", "is not an IPv6 address"),
        (
            [detail(ipv4Gateway="fd00::1")],
            "status.current.ips[0].ipv4Gateway",
            "fd00::1 is not an IPv4 address",
        ),
        (
            [detail(ipv6Gateway="10.0.0.1")],
            "status.current.ips[0].ipv6Gateway",
            "is not an IPv6 address",
        ),
        (
            [detail(), detail()],
            "status.current.ips[1].interface",
            "'eth0' is already listed at status.current.ips[0]",
        ),
        ([detail(interface="")], "status.current.ips[0].interface", "is not an interface name"),
        ([{"ipv4": "10.6.0.5/16"}], "status.current.ips[0].interface", "is required"),
        ([detail(mac="02:00:0a")], "status.current.ips[0].mac", "is not a MAC address"),
        (
            [detail(routes=[{"dst": "10.7.0.0/16", "gw": "fd00::1"}])],
            "status.current.ips[0].routes[0]",
            "must use the same IP family",
        ),
        (
            [detail(cleanGateway="false")],
            "status.current.ips[0].cleanGateway",
            "must be true or false",
        ),
        ([detail(ipv4pool="x")], "status.current.ips[0].ipv4pool", "did you mean 'ipv4Pool'"),
    ],
)
def test_endpoint_detail_rules(ips: list[dict[str, Any]], field: str, reason: str) -> None:
    refused(endpoint(*ips), field, reason)


def test_endpoint_structure_rules() -> None:
    document = endpoint(detail())
    del document["status"]["current"]
    refused(document, "status.current", "is required")
    document = endpoint(detail())
    del document["status"]["ownerControllerType"]
    refused(document, "status.ownerControllerType", "is required")
    document = endpoint(detail())
    document["status"]["current"]["uid"] = ""
    refused(document, "status.current.uid", "must not be empty")
    document = endpoint(detail())
    document["spec"] = {}
    refused(document, "spec", "unknown field")
    document = endpoint(detail())
    del document["status"]
    refused(document, "status", "is required")
    refused(endpoint(detail(), namespace="Apps"), "metadata.namespace", "is not a valid label")


def test_endpoint_built_in_code_is_checked() -> None:
    ep = Endpoint(
        "apps",
        "web-0",
        "uid",
        "node-1",
        (AllocationDetail("eth0", ipv4=ipaddress.IPv4Interface("10.0.0.5/24"), vlan=4095),),
    )
    with pytest.raises(ValidationError, match=r"status.current.ips\[0\].vlan: 4095"):
        rules.check(ep)
    good = Endpoint("apps", "web-0", "uid", "node-1", (AllocationDetail("eth0"),))
    rules.check(good)
    assert to_document(good)["status"]["current"]["ips"] == [{"interface": "eth0", "vlan": 0}]
