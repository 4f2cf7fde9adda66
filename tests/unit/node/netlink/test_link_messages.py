"""The RTM_NEWLINK messages that make VLANs and bonds, decoded back as the kernel reads them,
and link records read from the kernel's answers (pure: no socket)."""

from __future__ import annotations

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from spidernet.node.netlink.messages import alias_msg, bond_msg, link_of, vlan_msg


def roundtrip(msg: ifinfmsg) -> ifinfmsg:
    msg["header"]["type"] = 16  # RTM_NEWLINK
    msg.encode()
    back = ifinfmsg(msg.data)
    back.decode()
    return back


def test_vlan_message() -> None:
    back = roundtrip(vlan_msg("eth1.100", 7, 100))
    assert back.get("ifname") == "eth1.100"
    assert back.get("link") == 7
    assert back.get(("linkinfo", "kind")) == "vlan"
    assert back.get(("linkinfo", "data")).get("vlan_id") == 100


def test_bond_message_carries_every_kind_of_value() -> None:
    options = (
        ("mode", 4),
        ("miimon", 100),
        ("lacp_rate", 1),
        ("arp_ip_target", ("10.0.0.1", "10.0.0.2")),
        ("ad_actor_system", "02:aa:00:00:00:01"),
        ("peer_notif_delay", 300),  # not in pyroute2's own table
    )
    back = roundtrip(bond_msg("bond0", options))
    assert back.get("ifname") == "bond0"
    data = back.get(("linkinfo", "data"))
    assert data.get("bond_mode") == 4
    assert data.get("bond_miimon") == 100
    assert data.get("bond_ad_lacp_rate") == 1
    assert data.get("bond_arp_ip_target") == ["10.0.0.1", "10.0.0.2"]
    assert data.get("bond_peer_notif_delay") == 300
    # six bytes on the wire (the kernel wants exactly ETH_ALEN), not the text
    raw = bytes(back.data)
    assert bytes.fromhex("02aa00000001") in raw
    assert b"02:aa" not in raw


def test_alias_message() -> None:
    back = roundtrip(alias_msg(5, "spidernet-ifacer"))
    assert (back["index"], back.get("ifalias")) == (5, "spidernet-ifacer")


def test_link_records_read_vlan_id_bond_mode_and_alias() -> None:
    vlan = roundtrip(vlan_msg("eth1.100", 7, 100))
    vlan["index"], vlan["flags"] = 9, 1
    record = link_of(vlan)
    assert (record.kind, record.vlan_id, record.bond_mode, record.link) == ("vlan", 100, None, 7)
    bond = roundtrip(bond_msg("bond0", (("mode", 1),)))
    bond["index"] = 5
    assert link_of(bond).bond_mode == 1
    assert link_of(roundtrip(alias_msg(5, "x"))).alias == "x"
