"""spidernet-ifacer's config: Spiderpool's fields and defaults, every bad value named."""

from __future__ import annotations

from typing import Any

import pytest

from spidernet.cni.errors import CNIError, Code
from spidernet.netconf.ifacer.config import (
    DEFAULT_BOND,
    KNOWN_OPTIONS,
    BondConf,
    IfacerConf,
    parse_ifacer,
    parse_options,
)


def bad(raw: dict[str, Any]) -> str:
    with pytest.raises(CNIError) as info:
        parse_ifacer(raw)
    assert info.value.code == Code.INVALID_NETWORK_CONFIG
    return info.value.msg


def test_single_nic_with_a_vlan() -> None:
    conf = parse_ifacer({"interfaces": ["eth1"], "vlanID": 100})
    assert conf == IfacerConf(("eth1",), 100, None)
    assert (conf.parent, conf.master) == ("eth1", "eth1.100")


def test_single_nic_without_vlan_is_the_master_itself() -> None:
    conf = parse_ifacer({"interfaces": ["eth1"]})
    assert (conf.vlan_id, conf.master) == (0, "eth1")


def test_bond_defaults_to_spiderpools_name_and_mode_0() -> None:
    conf = parse_ifacer({"interfaces": ["eth1", "eth2"], "bond": {}})
    assert conf.bond == BondConf(DEFAULT_BOND, 0, ())
    assert conf.master == DEFAULT_BOND


def test_bond_with_lacp_options_and_a_vlan() -> None:
    conf = parse_ifacer(
        {
            "interfaces": ["eth1", "eth2"],
            "vlanID": 100,
            "bond": {
                "name": "bond0",
                "mode": 4,
                "options": "miimon=100;lacp_rate=fast;xmit_hash_policy=layer3+4;"
                "ad_actor_system=02:AA:00:00:00:01;up_delay=200",
            },
        }
    )
    assert conf.bond == BondConf(
        "bond0",
        4,
        (
            ("miimon", 100),
            ("lacp_rate", 1),
            ("xmit_hash_policy", 1),
            ("ad_actor_system", "02:aa:00:00:00:01"),
            ("updelay", 200),
        ),
    )
    assert conf.master == "bond0.100"


def test_mode_by_name_and_by_digit_string() -> None:
    assert parse_ifacer({"interfaces": ["a"], "bond": {"mode": "active-backup"}}).bond
    for given, mode in (("802.3ad", 4), ("6", 6), (3, 3)):
        conf = parse_ifacer({"interfaces": ["a"], "bond": {"mode": given}})
        assert conf.bond is not None
        assert conf.bond.mode == mode


def test_options_keep_zero_values_and_accept_enum_numbers() -> None:
    # Spiderpool applies integers only when > 0; use_carrier=0 means something.
    opts = parse_options("use_carrier=0;arp_validate=3;arp_ip_target=[10.0.0.1, 10.0.0.2]", 1, ())
    assert opts == (
        ("use_carrier", 0),
        ("arp_validate", 3),
        ("arp_ip_target", ("10.0.0.1", "10.0.0.2")),
    )
    assert parse_options("arp_ip_target=10.0.0.9;", 1, ()) == (("arp_ip_target", ("10.0.0.9",)),)
    assert parse_options(" ; miimon = 50 ;", 0, ()) == (("miimon", 50),)
    assert parse_options("", 0, ()) == ()
    assert parse_options(None, 0, ()) == ()


def test_slave_options_name_one_of_the_interfaces() -> None:
    opts = parse_options("primary=eth2", 1, ("eth1", "eth2"))
    assert opts == (("primary", "eth2"),)


@pytest.mark.parametrize(
    ("options", "mode", "named"),
    [
        ("miimon", 1, "'miimon' is not key=value"),
        ("=5", 1, "'=5' is not key=value"),
        ("miimon=", 1, "'miimon=' is not key=value"),
        ("miimon=fast", 1, "bond option 'miimon': 'fast' is not an integer from 0"),
        ("miimon=-1", 1, "bond option 'miimon'"),
        ("bogus=1", 1, "bond option 'bogus' is unknown"),
        ("miimon=1;miimon=2", 1, "'miimon' is given twice"),
        ("lacp_rate=fast", 1, "'lacp_rate' does not apply to mode active-backup"),
        ("lacp_rate=medium", 4, "'lacp_rate': 'medium' is not one of slow, fast"),
        ("primary=eth1", 4, "'primary' does not apply to mode 802.3ad"),
        ("primary=eth9", 1, "'primary': 'eth9' is not one of the bond's interfaces"),
        ("ad_actor_system=01:00:5e:00:00:01", 4, "'ad_actor_system': '01:00:5e"),
        ("ad_actor_system=00:00:00:00:00:00", 4, "is not a unicast MAC"),
        ("ad_actor_sys_prio=0", 4, "'ad_actor_sys_prio': '0' is not an integer from 1"),
        ("ad_user_port_key=1024", 4, "'ad_user_port_key'"),
        ("arp_ip_target=[]", 1, "give 1 to 16 IPv4 addresses"),
        ("arp_ip_target=[10.0.0.1,fe80::1]", 1, "'fe80::1' is not an IPv4 address"),
        ("arp_interval=100", 4, "'arp_interval' does not apply to mode 802.3ad"),
        ("miimon=100;arp_interval=100", 1, "'miimon' and 'arp_interval' exclude each other"),
        ("mode=1", 1, "set bond.mode instead"),
        ("packets_per_slave=2", 1, "'packets_per_slave' does not apply"),
        ("tlb_dynamic_lb=2", 5, "'tlb_dynamic_lb': '2' is not an integer from 0 to 1"),
        ("active_slave=eth1", 1, "use primary=<interface>, which the bond keeps"),
        ("arp_ip_target=0.0.0.0", 1, "'0.0.0.0' is not a usable ARP target"),
        ("arp_ip_target=[10.0.0.1,255.255.255.255]", 1, "'255.255.255.255' is not a usable ARP"),
    ],
)
def test_malformed_options_are_errors_naming_the_option(
    options: str, mode: int, named: str
) -> None:
    msg = bad({"interfaces": ["eth1", "eth2"], "bond": {"mode": mode, "options": options}})
    assert named in msg


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({}, "interfaces must be a non-empty list"),
        ({"interfaces": []}, "interfaces must be a non-empty list"),
        ({"interfaces": "eth1"}, "interfaces must be a non-empty list"),
        ({"interfaces": ["eth1", 3]}, "interfaces[1] must be a non-empty string"),
        ({"interfaces": ["a/b"]}, "interfaces[0] 'a/b' is not a valid interface name"),
        ({"interfaces": ["sixteen-chars-xx"]}, "is not a valid interface name"),
        ({"interfaces": ["eth1", "eth1"]}, "interfaces lists eth1 more than once"),
        ({"interfaces": ["eth1"], "vlanID": 4095}, "vlanID must be an integer from 0 to 4094"),
        ({"interfaces": ["eth1"], "vlanID": "100"}, "vlanID must be an integer"),
        ({"interfaces": ["eth1"], "vlanID": True}, "vlanID must be an integer"),
        ({"interfaces": ["a", "b"], "vlanID": 7}, "vlanID with several interfaces needs a bond"),
        ({"interfaces": ["a"], "bond": "bond0"}, "bond must be an object"),
        ({"interfaces": ["a"], "bond": {"mode": 7}}, "bond.mode must be 0-6"),
        ({"interfaces": ["a"], "bond": {"mode": "lacp"}}, "bond.mode must be 0-6"),
        ({"interfaces": ["a"], "bond": {"nmae": "x"}}, "bond has unknown field(s): nmae"),
        ({"interfaces": ["a"], "bond": {"name": "a"}}, "bond.name 'a' is also one of"),
        ({"interfaces": ["a"], "bond": {"options": 5}}, "bond.options must be a string"),
        ({"interfaces": ["eth-long-name"], "vlanID": 100}, "the VLAN interface name"),
        ({"interfaces": ["a"], "stateDir": 1}, "stateDir must be a path"),
        (
            {"interfaces": ["a"], "ipam_unix_socket_path": "s.sock"},
            "ipam_unix_socket_path: 's.sock' is not an absolute path",
        ),
        ({"interfaces": ["a"], "ipam_unix_socket_path": ["/s"]}, "expected a string"),
    ],
)
def test_bad_configs_are_errors_naming_the_field(raw: dict[str, Any], named: str) -> None:
    assert named in bad(raw)


@pytest.mark.parametrize("value", ["/run/spidernet/other.sock", ""])
def test_the_service_socket_key_is_accepted_and_unused(value: str) -> None:
    # The forwarder reads it (cni/forward.py); the ifacer only checks it.
    conf = parse_ifacer({"interfaces": ["eth1"], "ipam_unix_socket_path": value})
    assert conf == IfacerConf(("eth1",))


def test_the_known_options_cover_spiderpools_list() -> None:
    spiderpool = {
        *("active_slave", "ad_actor_sys_prio", "ad_actor_system", "ad_select"),
        *("ad_user_port_key", "all_slaves_active", "arp_interval", "arp_ip_target"),
        *("arp_validate", "arp_all_targets", "downdelay", "fail_over_mac", "lacp_rate"),
        *("miimon", "min_links", "packets_per_slave", "primary", "primary_reselect"),
        *("tlb_dynamic_lb", "use_carrier", "xmit_hash_policy", "lp_interval"),
        *("resend_igmp", "peer_notif_delay"),
    }
    # every one is known; active_slave is refused with a reason (see above)
    assert spiderpool - set(KNOWN_OPTIONS) == {"active_slave"}
    assert parse_options("up_delay=5", 1, ()) == (("updelay", 5),)  # Spiderpool's spelling
