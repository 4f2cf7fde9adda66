"""The coordinator config: every key checked by name, NAD > SpiderCoordinator > default
precedence, the default-route-nic annotation (the mode/table rules of reference §4.2:
test_mode.py)."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest

from spidernet.cni.errors import CNIError, Code
from spidernet.netconf.coordinator.config import (
    CoordinatorConf,
    PolicyRoute,
    cluster_settings,
    parse_coordinator,
)

BASE: dict[str, Any] = {"cniVersion": "1.0.0", "name": "macvlan-underlay", "type": "x"}

# A SpiderCoordinator as the control service returns it (CR camelCase, defaults written out).
CLUSTER: dict[str, Any] = {
    "mode": "underlay",
    "podCIDRType": "cluster",
    "hijackCIDR": ["169.254.0.0/16"],
    "policyRoutes": [{"dst": "198.51.100.0/24", "gw": "192.0.2.1"}],
    "podMACPrefix": "0a:1b",
    "tunePodRoutes": False,
    "podDefaultRouteNIC": "net1",
    "hostRuleTable": 600,
    "podRPFilter": 2,
    "txQueueLen": 5000,
    "vethLinkAddress": "169.254.100.1",
    "vethMTU": 9000,
    "overlayPodCIDR": ["10.244.0.0/16"],
    "serviceCIDR": ["10.96.0.0/12", "fd00:96::/108"],
}


def parse(cluster: dict[str, Any] | None = None, anno: str = "", /, **keys: Any) -> CoordinatorConf:
    return parse_coordinator({**BASE, **keys}, cluster, anno)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def rejects(key: str, cluster: dict[str, Any] | None = None, /, **keys: Any) -> CNIError:
    with pytest.raises(CNIError) as info:
        parse(cluster, **keys)
    err = info.value
    assert err.code == Code.INVALID_NETWORK_CONFIG
    assert err.msg.startswith(f"invalid coordinator config key '{key}': ")
    return err


def test_defaults() -> None:
    conf = parse()
    assert conf == CoordinatorConf()
    assert conf.mode == "auto"
    assert conf.pod_default_cni_nic == "eth0"
    assert conf.tune_pod_routes is True
    assert conf.host_rule_table == 500
    assert conf.pod_rp_filter == 0
    assert conf.tx_queue_len == 0
    assert conf.veth_mtu == 1500
    assert conf.veth_link_address is None
    assert conf.pod_mac_prefix == ""
    assert conf.ignored_keys == ()
    assert set(conf.sources.values()) == {"default"}
    assert set(conf.sources) == {f.name for f in dataclasses.fields(CoordinatorConf)} - {
        "ignored_keys",
        "sources",
    }


def test_cni_standard_keys_are_not_coordinator_keys() -> None:
    conf = parse(
        cniVersions=["1.0.0"],
        prevResult={"ips": []},
        runtimeConfig={},
        args={"cni": {}},
        capabilities={},
        ipam={},
        dns={},
        **{"cni.dev/valid-attachments": [], "cni.dev/attachments": []},
    )
    assert conf == CoordinatorConf()


# (NAD key, NAD value, CoordinatorConf field, expected typed value)
ACCEPTED: list[tuple[str, Any, str, Any]] = [
    ("mode", "auto", "mode", "auto"),
    ("mode", "underlay", "mode", "underlay"),
    ("mode", "overlay", "mode", "overlay"),
    ("mode", "disabled", "mode", "disabled"),
    ("mode", "disable", "mode", "disabled"),
    ("podDefaultCniNic", "net0", "pod_default_cni_nic", "net0"),
    ("overlayPodCIDR", ["10.244.0.0/16"], "overlay_pod_cidr", (net("10.244.0.0/16"),)),
    ("serviceCIDR", ["fd00::/108"], "service_cidr", (net("fd00::/108"),)),
    (
        "hijackCIDR",
        ["10.0.0.0/8", "192.0.2.7", "2001:db8::1"],
        "hijack_cidr",
        (net("10.0.0.0/8"), net("192.0.2.7/32"), net("2001:db8::1/128")),
    ),
    (
        "policyRoutes",
        [{"dst": "198.51.100.0/24", "gw": "192.0.2.1"}, {"dst": "2001:db8::5", "gw": "fe80::1"}],
        "policy_routes",
        (
            PolicyRoute(net("198.51.100.0/24"), ipaddress.ip_address("192.0.2.1")),
            PolicyRoute(net("2001:db8::5/128"), ipaddress.ip_address("fe80::1")),
        ),
    ),
    ("podMACPrefix", "0A:1b", "pod_mac_prefix", "0a:1b"),
    ("podMACPrefix", "0a-1b", "pod_mac_prefix", "0a:1b"),
    ("tunePodRoutes", False, "tune_pod_routes", False),
    ("podDefaultRouteNic", "net2", "pod_default_route_nic", "net2"),
    ("hostRuleTable", 1, "host_rule_table", 1),
    ("hostRuleTable", 2**32 - 1, "host_rule_table", 2**32 - 1),
    ("podRPFilter", 2, "pod_rp_filter", 2),
    ("podRPFilter", -1, "pod_rp_filter", -1),
    ("podRPFilter", -5, "pod_rp_filter", -1),
    ("txQueueLen", 10000, "tx_queue_len", 10000),
    (
        "vethLinkAddress",
        "169.254.100.1",
        "veth_link_address",
        ipaddress.ip_address("169.254.100.1"),
    ),
    ("vethLinkAddress", "fd00::1", "veth_link_address", ipaddress.ip_address("fd00::1")),
    ("vethMTU", 65535, "veth_mtu", 65535),
    ("vethMTU", 1, "veth_mtu", 1),
]


@pytest.mark.parametrize(("key", "value", "attr", "expected"), ACCEPTED)
def test_key_accepted(key: str, value: Any, attr: str, expected: Any) -> None:
    conf = parse(**{key: value})
    assert getattr(conf, attr) == expected
    assert conf.sources[attr] == "config"


# (NAD key, bad value, a fragment of the reason)
REJECTED: list[tuple[str, Any, str]] = [
    ("mode", "bridge", "not one of auto, underlay, overlay, disabled"),
    ("mode", 1, "expected a string"),
    ("podDefaultCniNic", "a" * 16, "interface name"),
    ("podDefaultCniNic", "eth/0", "interface name"),
    ("podDefaultCniNic", ["eth0"], "expected an interface name, got a list"),
    ("overlayPodCIDR", "10.244.0.0/16", "expected a list of CIDRs, got a string"),
    ("overlayPodCIDR", ["10.244.0.1/16"], "host bits set: write 10.244.0.0/16"),
    ("serviceCIDR", ["10.96.0.0/255.240.0.0"], "prefix length must be a number"),
    ("serviceCIDR", ["not-a-cidr"], "is not a CIDR"),
    ("hijackCIDR", ["10.0.0.0/33"], "is not a CIDR"),
    ("hijackCIDR", [" 10.0.0.0/8"], "is not a CIDR"),
    ("hijackCIDR", [8], "expected a CIDR, got a number"),
    ("policyRoutes", {"dst": "10.0.0.0/8", "gw": "192.0.2.1"}, "expected a list"),
    ("policyRoutes", [{"dst": "10.0.0.0/8"}], "entry 0: missing 'gw'"),
    ("policyRoutes", [{"dst": "10.0.0.0/8", "gw": "192.0.2.1", "dev": "x"}], "unknown key 'dev'"),
    ("policyRoutes", [{"dst": "10.0.0.0/8", "gw": "2001:db8::1"}], "same IP family"),
    ("policyRoutes", [{"dst": "10.0.0.1/8", "gw": "192.0.2.1"}], "host bits set"),
    ("policyRoutes", [{"dst": "10.0.0.0/8", "gw": "192.0.2.0/24"}], "not an IP address"),
    ("policyRoutes", [{"dst": "10.0.0.0/8", "gw": "0.0.0.0"}], "not a unicast address"),
    ("policyRoutes", ["10.0.0.0/8"], "entry 0: expected a {dst, gw} object"),
    ("podMACPrefix", "0b:1c", "not unicast"),
    ("podMACPrefix", "0a:1b:2c", "not a MAC prefix"),
    ("podMACPrefix", "zz:00", "not a MAC prefix"),
    ("tunePodRoutes", "true", "expected true or false, got a string"),
    ("tunePodRoutes", 1, "expected true or false, got a number"),
    ("podDefaultRouteNic", "bad name", "interface name"),
    ("hostRuleTable", 0, "out of range 1..4294967295"),
    ("hostRuleTable", 2**32, "out of range"),
    ("hostRuleTable", 253, "table the kernel owns"),
    ("hostRuleTable", 254, "table the kernel owns"),
    ("hostRuleTable", 255, "table the kernel owns"),
    ("hostRuleTable", "500", "expected an integer, got a string"),
    ("hostRuleTable", True, "expected an integer, got a boolean"),
    ("hostRuleTable", 500.0, "expected an integer, got a number"),
    ("podRPFilter", 3, "not a rp_filter value"),
    ("podRPFilter", "1", "expected an integer"),
    ("txQueueLen", -1, "out of range 0.."),
    ("txQueueLen", 1.5, "expected an integer"),
    ("vethLinkAddress", "169.254.100.1/32", "not an IP address"),
    ("vethLinkAddress", "224.0.0.1", "not a unicast address"),
    ("vethLinkAddress", 1, "expected an IP address, got a number"),
    ("vethMTU", 0, "out of range 1..65535"),
    ("vethMTU", -1500, "out of range"),
    ("vethMTU", 65536, "out of range"),
    ("logOptions", "debug", "expected an object, got a string"),
    ("logOptions", {"logLevel": 1}, "'logLevel': expected a string"),
    ("logOptions", {"logFile": None}, "'logFile': expected a string"),
    ("logOptions", {"logMaxSize": "10"}, "'logMaxSize': expected an integer"),
    ("logOptions", {"logMaxAge": -1}, "'logMaxAge': -1 is out of range"),
    ("logOptions", {"logMaxCount": 1.0}, "'logMaxCount': expected an integer"),
    ("logOptions", {"logPath": "/tmp/x"}, "unknown key 'logPath'"),
]


@pytest.mark.parametrize(("key", "value", "reason"), REJECTED)
def test_key_rejected_by_name(key: str, value: Any, reason: str) -> None:
    err = rejects(key, **{key: value})
    assert reason in err.msg
    assert "SpiderCoordinator" not in err.msg


def test_log_options_accepted_and_unused() -> None:
    logs = {
        "logLevel": "info",
        "logFile": "/var/log/spidernet/coordinator.log",
        "logMaxSize": 100,
        "logMaxAge": 30,
        "logMaxCount": 10,
    }
    assert parse(logOptions=logs) == CoordinatorConf()


@pytest.mark.parametrize("value", ["/run/spidernet/other.sock", "", None])
def test_the_service_socket_key_is_accepted_and_unused(value: Any) -> None:
    # The forwarder reads it (cni/forward.py); the coordinator only checks it, and the
    # in-process fallback, which runs without a service, does not use it either.
    assert parse(ipam_unix_socket_path=value) == CoordinatorConf()


@pytest.mark.parametrize(
    ("value", "reason"),
    [("run/spidernet.sock", "is not an absolute path"), (5, "expected a string")],
)
def test_the_service_socket_key_must_be_an_absolute_path(value: Any, reason: str) -> None:
    assert reason in rejects("ipam_unix_socket_path", ipam_unix_socket_path=value).msg


@pytest.mark.parametrize("key", ["mode", "podMACPrefix", "vethLinkAddress", "podDefaultCniNic"])
@pytest.mark.parametrize("unset", [None, ""])
def test_empty_or_null_string_means_unset(key: str, unset: Any) -> None:
    conf = parse(**{key: unset})
    assert conf == CoordinatorConf()


@pytest.mark.parametrize("key", ["hijackCIDR", "overlayPodCIDR", "serviceCIDR", "policyRoutes"])
def test_empty_list_lets_the_spider_coordinator_through(key: str) -> None:
    # Spiderpool takes the CR's list when the NAD's is empty (cni_types.go, len(...) == 0).
    assert parse(CLUSTER, **{key: []}) == parse(CLUSTER)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hostRPFilter", 0),
        ("multusNicPrefix", "net"),
        ("detectIPConflict", True),
        ("detectGateway", False),
        ("detectOptions", {"retries": 3, "interval": "1s", "timeout": "1s"}),
    ],
)
def test_legacy_key_ignored_and_recorded(key: str, value: Any) -> None:
    conf = parse(**{key: value})
    assert conf.ignored_keys == (key,)
    assert dataclasses.replace(conf, ignored_keys=()) == CoordinatorConf()


def test_all_legacy_keys_recorded_in_order() -> None:
    conf = parse(detectGateway=True, mode="underlay", hostRPFilter=1, detectIPConflict=False)
    assert conf.ignored_keys == ("detectGateway", "hostRPFilter", "detectIPConflict")
    assert conf.mode == "underlay"


@pytest.mark.parametrize(
    "key", ["podDefaultRouteNIC", "tuneMode", "podCIDRType", "hijackCidr", "vethMtu"]
)
def test_unknown_key_rejected(key: str) -> None:
    err = rejects(key, **{key: "x"})
    assert "unknown key" in err.msg
    assert "podDefaultRouteNic" in err.msg  # the message lists the known keys


def test_spider_coordinator_beats_default() -> None:
    conf = parse(CLUSTER)
    assert conf.mode == "underlay"
    assert conf.hijack_cidr == (net("169.254.0.0/16"),)
    assert conf.overlay_pod_cidr == (net("10.244.0.0/16"),)
    assert conf.service_cidr == (net("10.96.0.0/12"), net("fd00:96::/108"))
    assert conf.policy_routes == (
        PolicyRoute(net("198.51.100.0/24"), ipaddress.ip_address("192.0.2.1")),
    )
    assert conf.pod_mac_prefix == "0a:1b"
    assert conf.tune_pod_routes is False
    assert conf.pod_default_route_nic == "net1"
    assert conf.host_rule_table == 600
    assert conf.pod_rp_filter == 2
    assert conf.tx_queue_len == 5000
    assert conf.veth_link_address == ipaddress.ip_address("169.254.100.1")
    assert conf.veth_mtu == 9000
    # The SpiderCoordinator has no podDefaultCniNic: that one stays the default.
    assert conf.pod_default_cni_nic == "eth0"
    assert conf.sources["pod_default_cni_nic"] == "default"
    assert {v for k, v in conf.sources.items() if k != "pod_default_cni_nic"} == {
        "SpiderCoordinator"
    }


NAD_OVERRIDES: dict[str, Any] = {
    "mode": "overlay",
    "hijackCIDR": ["172.16.0.0/12"],
    "overlayPodCIDR": ["10.42.0.0/16"],
    "serviceCIDR": ["10.43.0.0/16"],
    "policyRoutes": [{"dst": "203.0.113.0/24", "gw": "192.0.2.254"}],
    "podMACPrefix": "02:00",
    "tunePodRoutes": True,
    "podDefaultRouteNic": "net3",
    "hostRuleTable": 700,
    "podRPFilter": 0,
    "txQueueLen": 0,
    "vethLinkAddress": "169.254.200.1",
    "vethMTU": 1400,
}


def test_nad_beats_spider_coordinator() -> None:
    conf = parse(CLUSTER, **NAD_OVERRIDES)
    assert conf.mode == "overlay"
    assert conf.hijack_cidr == (net("172.16.0.0/12"),)
    assert conf.overlay_pod_cidr == (net("10.42.0.0/16"),)
    assert conf.service_cidr == (net("10.43.0.0/16"),)
    assert conf.policy_routes[0].dst == net("203.0.113.0/24")
    assert conf.pod_mac_prefix == "02:00"
    assert conf.tune_pod_routes is True
    assert conf.pod_default_route_nic == "net3"
    assert conf.host_rule_table == 700
    # Zero is a value, not "unset": it beats the SpiderCoordinator's 2 and 5000.
    assert conf.pod_rp_filter == 0
    assert conf.tx_queue_len == 0
    assert conf.veth_link_address == ipaddress.ip_address("169.254.200.1")
    assert conf.veth_mtu == 1400
    assert {v for k, v in conf.sources.items() if k != "pod_default_cni_nic"} == {"config"}


@pytest.mark.parametrize("key", sorted(NAD_OVERRIDES))
def test_precedence_per_field(key: str) -> None:
    # Only this key in the NAD: it comes from the config, every other from the CR.
    conf = parse(CLUSTER, **{key: NAD_OVERRIDES[key]})
    from_config = {k for k, v in conf.sources.items() if v == "config"}
    assert len(from_config) == 1
    assert conf.sources["pod_default_cni_nic"] == "default"
    assert sum(v == "SpiderCoordinator" for v in conf.sources.values()) == 12


def test_default_route_nic_spellings_differ_between_nad_and_cr() -> None:
    assert parse({"podDefaultRouteNIC": "net1"}).pod_default_route_nic == "net1"
    assert parse(podDefaultRouteNic="net2").pod_default_route_nic == "net2"
    # The NAD spelling in a CR is not the CR's key: skipped like any unknown setting.
    assert parse({"podDefaultRouteNic": "net1"}).pod_default_route_nic == ""


@pytest.mark.parametrize(
    ("cluster", "nad", "expected", "source"),
    [
        (None, {}, "net5", "pod annotation"),
        (CLUSTER, {}, "net5", "pod annotation"),
        (CLUSTER, {"podDefaultRouteNic": "net3"}, "net5", "pod annotation"),
    ],
)
def test_annotation_beats_nad_and_cr(
    cluster: dict[str, Any] | None, nad: dict[str, Any], expected: str, source: str
) -> None:
    conf = parse(cluster, "net5", **nad)
    assert conf.pod_default_route_nic == expected
    assert conf.sources["pod_default_route_nic"] == source


def test_empty_annotation_changes_nothing() -> None:
    conf = parse(CLUSTER, "", podDefaultRouteNic="net3")
    assert conf.pod_default_route_nic == "net3"
    assert conf.sources["pod_default_route_nic"] == "config"


def test_bad_annotation_names_it() -> None:
    with pytest.raises(CNIError) as info:
        parse(None, "no/slash")
    assert info.value.code == Code.INVALID_NETWORK_CONFIG
    assert "'podDefaultRouteNic'" in info.value.msg
    assert "ipam.spidernet.io/default-route-nic" in info.value.msg


@pytest.mark.parametrize("value", ["disabled", "disable"])
def test_disable_alias_from_either_side(value: str) -> None:
    assert parse(mode=value).mode == "disabled"
    assert parse({"mode": value}).mode == "disabled"


# (CR key, bad value, a fragment of the reason)
CLUSTER_REJECTED: list[tuple[str, Any, str]] = [
    ("mode", "bridge", "not one of"),
    ("hijackCIDR", ["10.0.0.1/8"], "host bits set"),
    ("overlayPodCIDR", "10.244.0.0/16", "expected a list"),
    ("serviceCIDR", ["x"], "not a CIDR"),
    ("policyRoutes", [{"dst": "10.0.0.0/8", "gw": "fd00::1"}], "same IP family"),
    ("podMACPrefix", "01:00", "not unicast"),
    ("tunePodRoutes", "yes", "expected true or false"),
    ("podDefaultRouteNIC", "x" * 20, "interface name"),
    ("hostRuleTable", 254, "table the kernel owns"),
    ("hostRuleTable", 0, "out of range"),
    ("podRPFilter", 7, "not a rp_filter value"),
    ("txQueueLen", -3, "out of range"),
    ("vethLinkAddress", "link-local", "not an IP address"),
    ("vethMTU", 0, "out of range"),
]


@pytest.mark.parametrize(("key", "value", "reason"), CLUSTER_REJECTED)
def test_bad_spider_coordinator_value_names_key_and_source(
    key: str, value: Any, reason: str
) -> None:
    err = rejects(key, {**CLUSTER, key: value})
    assert reason in err.msg
    assert err.msg.endswith("(set in the SpiderCoordinator)")


def test_bad_spider_coordinator_value_is_not_read_when_the_nad_sets_the_field() -> None:
    conf = parse({**CLUSTER, "hostRuleTable": 254}, hostRuleTable=501)
    assert conf.host_rule_table == 501


def test_spider_coordinator_settings_unknown_here_are_skipped() -> None:
    assert parse({"podCIDRType": "calico", "somethingNew": 1}) == CoordinatorConf()


def test_conf_is_frozen_and_hashable() -> None:
    conf = parse(CLUSTER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        conf.mode = "overlay"  # type: ignore[misc]
    with pytest.raises(TypeError):
        conf.sources["mode"] = "config"  # type: ignore[index]
    assert hash(conf) == hash(parse(CLUSTER))


def test_the_cluster_settings_are_checked_once_into_a_typed_record() -> None:
    settings = cluster_settings(
        {"hostRuleTable": 254, "vethMTU": 9000, "podMACPrefix": "0A-1b", "future": 1}, "net1"
    )
    assert dict(settings.settled) == {"veth_mtu": 9000, "pod_mac_prefix": "0a:1b"}
    assert dict(settings.refused) == {
        "host_rule_table": (
            "hostRuleTable",
            "254 is a table the kernel owns (253 default, 254 main, 255 local)",
        )
    }
    # The refused setting fails a call only where the NAD leaves it to the cluster.
    conf = parse_coordinator({"type": "spidernet-coordinator", "hostRuleTable": 300}, settings)
    assert (conf.host_rule_table, conf.veth_mtu, conf.pod_default_route_nic) == (300, 9000, "net1")
    assert conf.sources["veth_mtu"] == "SpiderCoordinator"
    with pytest.raises(CNIError) as caught:
        parse_coordinator({"type": "spidernet-coordinator"}, settings)
    assert "hostRuleTable" in caught.value.msg
    assert "SpiderCoordinator" in caught.value.msg
    # A document gives the same record as the one made from it.
    assert (
        parse_coordinator(
            {"type": "spidernet-coordinator", "hostRuleTable": 300},
            {"vethMTU": 9000, "podMACPrefix": "0A-1b"},
            "net1",
        )
        == conf
    )
