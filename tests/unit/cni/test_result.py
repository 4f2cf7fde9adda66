"""Results: parsing every supported version and printing to every other one."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spidernet.cni import version
from spidernet.cni.errors import CNIError, Code
from spidernet.cni.result import (
    DNS,
    Interface,
    IPConfig,
    Result,
    Route,
    parse_result,
    to_dict,
)

LEGACY_040 = {
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:02", "sandbox": "/run/netns/p"}],
    "ips": [
        {"version": "4", "interface": 0, "address": "198.51.100.7/24", "gateway": "198.51.100.1"},
        {"version": "6", "interface": 0, "address": "2001:db8::7/64"},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "198.51.100.1"}],
    "dns": {"nameservers": ["198.51.100.53"], "search": ["svc.cluster.local"]},
}


def test_040_to_100_drops_ip_version() -> None:
    out = to_dict(parse_result(LEGACY_040), "1.0.0")
    assert out["cniVersion"] == "1.0.0"
    assert all("version" not in ip for ip in out["ips"])
    assert out["ips"][0] == {
        "interface": 0,
        "address": "198.51.100.7/24",
        "gateway": "198.51.100.1",
    }
    assert out["dns"] == {"nameservers": ["198.51.100.53"], "search": ["svc.cluster.local"]}


def test_110_to_031_adds_ip_version_and_drops_new_interface_fields() -> None:
    res = Result(
        interfaces=(
            Interface(
                "eth0", mac="02:00:00:00:00:03", mtu=9000, socket_path="/s", pci_id="0000:01:00.0"
            ),
        ),
        ips=(IPConfig(ipaddress.ip_interface("2001:db8::3/64"), interface=0),),
        routes=(
            Route(
                ipaddress.ip_network("::/0"),
                ipaddress.ip_address("2001:db8::1"),
                mtu=1400,
                table=100,
                scope=0,
            ),
        ),
    )
    out = to_dict(res, "0.3.1")
    assert out["interfaces"] == [{"name": "eth0", "mac": "02:00:00:00:00:03"}]
    assert out["ips"] == [{"version": "6", "interface": 0, "address": "2001:db8::3/64"}]
    # Route fields are kept for every version, as the reference library keeps them.
    assert out["routes"] == [
        {"dst": "::/0", "gw": "2001:db8::1", "mtu": 1400, "table": 100, "scope": 0}
    ]


def test_empty_dns_is_left_out() -> None:
    assert "dns" not in to_dict(Result(), "1.1.0")


@pytest.mark.parametrize(
    "bad",
    [
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "gateway": "x"}]},
        {"cniVersion": "1.0.0", "routes": [{"dst": "10.0.0.0/8", "gw": "2001:db8::1"}]},
        {"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]},
        {"cniVersion": "1.0.0", "interfaces": [{"mac": "x"}]},
        {"cniVersion": "1.0.0", "interfaces": "eth0"},
        {"cniVersion": "1.0.0", "dns": {"nameservers": "1.1.1.1"}},
        {"cniVersion": "1.0.0", "routes": [{"dst": "10.0.0.0/8", "mtu": "big"}]},
        [],
    ],
    ids=repr,
)
def test_malformed_results_are_decoding_failures(bad: Any) -> None:
    with pytest.raises(CNIError) as info:
        parse_result(bad)
    assert info.value.code == Code.DECODING_FAILURE


def test_unsupported_result_version() -> None:
    with pytest.raises(CNIError) as info:
        parse_result({"cniVersion": "0.2.0"})
    assert info.value.code == Code.INCOMPATIBLE_VERSION


v4 = st.builds(
    lambda a, p: ipaddress.ip_interface(f"{ipaddress.IPv4Address(a)}/{p}"),
    st.integers(0, 2**32 - 1),
    st.integers(1, 32),
)
v6 = st.builds(
    lambda a, p: ipaddress.ip_interface(f"{ipaddress.IPv6Address(a)}/{p}"),
    st.integers(0, 2**128 - 1),
    st.integers(1, 128),
)
results = st.builds(
    Result,
    cni_version=st.sampled_from(version.SUPPORTED),
    interfaces=st.lists(
        st.builds(Interface, name=st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True)), max_size=2
    ).map(tuple),
    ips=st.lists(st.builds(IPConfig, address=v4 | v6), max_size=3).map(tuple),
    routes=st.lists(
        st.builds(Route, dst=(v4 | v6).map(lambda i: i.network), priority=st.integers(0, 1000)),
        max_size=3,
    ).map(tuple),
    dns=st.builds(
        DNS, nameservers=st.lists(st.sampled_from(["192.0.2.53", "2001:db8::53"])).map(tuple)
    ),
)


@given(results, st.sampled_from(version.SUPPORTED))
def test_round_trip_through_any_version_keeps_addresses_and_routes(res: Result, ver: str) -> None:
    printed = to_dict(res, ver)
    back = parse_result(printed)
    assert back.cni_version == ver
    assert back.ips == res.ips
    assert back.routes == res.routes
    assert back.dns == res.dns
    assert [i.name for i in back.interfaces] == [i.name for i in res.interfaces]
