"""The ifacer's planner: create what is missing, reuse what is there, refuse what is in the
way (pure: made-up host links)."""

from __future__ import annotations

from typing import Any

import pytest

from spidernet.netconf.ifacer.config import parse_ifacer
from spidernet.node.ifacer.plan import IFACER_ALIAS, IfacerPlanError, plan_add
from spidernet.node.netlink.records import Link
from spidernet.node.plan.ops import (
    AddBond,
    AddVlan,
    Enslave,
    SetLinkUp,
    undo_all,
)


def nic(index: int, name: str, up: bool = True, **kw: Any) -> Link:
    return Link(index, name, kw.pop("kind", ""), f"02:00:00:00:00:{index:02x}", 1500, up, **kw)


LO = Link(1, "lo", "", "00:00:00:00:00:00", 65536, True)
HOST = [LO, nic(2, "eth1"), nic(3, "eth2", up=False)]


def test_vlan_on_a_nic_is_created_and_brought_up() -> None:
    plan = plan_add(parse_ifacer({"interfaces": ["eth1"], "vlanID": 100}), HOST)
    assert plan.ops == (
        AddVlan("host", "eth1.100", "eth1", 100, IFACER_ALIAS),
        SetLinkUp("host", "eth1.100"),
    )
    assert plan.uses == ("eth1", "eth1.100")


def test_a_down_parent_is_brought_up_first_and_down_again_on_undo() -> None:
    plan = plan_add(parse_ifacer({"interfaces": ["eth2"], "vlanID": 200}), HOST)
    assert plan.ops[0] == SetLinkUp("host", "eth2")
    assert undo_all(plan.ops)[-1] == SetLinkUp("host", "eth2").undo()[0]


def test_an_existing_vlan_is_reused_and_only_brought_up() -> None:
    host = [*HOST, nic(9, "eth1.100", up=False, kind="vlan", link=2, vlan_id=100)]
    plan = plan_add(parse_ifacer({"interfaces": ["eth1"], "vlanID": 100}), host)
    assert plan.ops == (SetLinkUp("host", "eth1.100"),)
    host[-1] = nic(9, "eth1.100", kind="vlan", link=2, vlan_id=100)
    assert plan_add(parse_ifacer({"interfaces": ["eth1"], "vlanID": 100}), host).ops == ()


def test_the_same_vlan_id_under_another_name_is_refused() -> None:
    host = [*HOST, nic(9, "vlan100", kind="vlan", link=3, vlan_id=100)]
    with pytest.raises(IfacerPlanError) as info:
        plan_add(parse_ifacer({"interfaces": ["eth1"], "vlanID": 100}), host)
    assert "VLAN 100 already exists on this host as 'vlan100' (vlan 100 on 'eth2')" in str(
        info.value
    )


@pytest.mark.parametrize(
    ("existing", "words"),
    [
        (nic(9, "eth1.100", kind="macvlan", link=2), "is a macvlan, not vlan 100 on 'eth1'"),
        (nic(9, "eth1.100", kind="vlan", link=3, vlan_id=100), "is a vlan 100 on 'eth2'"),
    ],
)
def test_a_link_in_the_way_of_the_vlan_name_is_refused(existing: Link, words: str) -> None:
    with pytest.raises(IfacerPlanError) as info:
        plan_add(parse_ifacer({"interfaces": ["eth1"], "vlanID": 100}), [*HOST, existing])
    assert words in str(info.value)


def test_missing_nics_are_named() -> None:
    with pytest.raises(IfacerPlanError) as info:
        plan_add(parse_ifacer({"interfaces": ["eth1", "eth7", "eth8"], "bond": {}}), HOST)
    assert "interface(s) eth7, eth8 not found on the host" in str(info.value)


def test_single_nic_without_vlan_needs_nothing() -> None:
    plan = plan_add(parse_ifacer({"interfaces": ["eth2"]}), HOST)
    assert (plan.ops, plan.uses) == ((), ("eth2",))


def test_new_bond_with_a_vlan_on_top() -> None:
    conf = parse_ifacer(
        {
            "interfaces": ["eth1", "eth2"],
            "vlanID": 100,
            "bond": {"name": "bond0", "mode": 1, "options": "miimon=100;primary=eth2"},
        }
    )
    plan = plan_add(conf, HOST)
    assert plan.ops == (
        AddBond("host", "bond0", (("mode", 1), ("miimon", 100), ("primary", "eth2")), IFACER_ALIAS),
        Enslave("host", "eth1", "bond0", was_up=True),
        Enslave("host", "eth2", "bond0", was_up=False),
        SetLinkUp("host", "bond0"),
        AddVlan("host", "bond0.100", "bond0", 100, IFACER_ALIAS),
        SetLinkUp("host", "bond0.100"),
    )
    assert plan.uses == ("eth1", "eth2", "bond0", "bond0.100")


def test_an_existing_bond_is_reused_and_a_free_nic_joins_it() -> None:
    host = [
        LO,
        nic(2, "eth1", master=5),
        nic(3, "eth2"),
        nic(5, "bond0", up=False, kind="bond", bond_mode=4),
    ]
    conf = parse_ifacer({"interfaces": ["eth1", "eth2"], "bond": {"name": "bond0", "mode": 4}})
    assert plan_add(conf, host).ops == (
        Enslave("host", "eth2", "bond0", was_up=True),
        SetLinkUp("host", "bond0"),
    )


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ([*HOST, nic(5, "bond0", kind="bridge")], "'bond0' exists on the host and is a bridge"),
        ([*HOST, nic(5, "bond0", kind="bond", bond_mode=0)], "exists in mode balance-rr"),
        (
            [LO, nic(2, "eth1", master=7), nic(3, "eth2"), nic(7, "br0", kind="bridge")],
            "interface 'eth1' is already enslaved to 'br0'",
        ),
    ],
)
def test_a_bond_in_the_way_is_refused(host: list[Link], words: str) -> None:
    conf = parse_ifacer({"interfaces": ["eth1", "eth2"], "bond": {"name": "bond0", "mode": 4}})
    with pytest.raises(IfacerPlanError) as info:
        plan_add(conf, host)
    assert words in str(info.value)


def test_a_failed_bond_plan_undoes_in_reverse() -> None:
    conf = parse_ifacer({"interfaces": ["eth1", "eth2"], "bond": {"name": "b0", "mode": 1}})
    ops = plan_add(conf, HOST).ops
    undo = undo_all(ops)
    assert [type(op).__name__ for op in undo] == [
        "SetLinkDown",
        "Release",
        "Release",
        "DeleteLink",
    ]
    assert [getattr(op, "up", None) for op in undo[1:3]] == [False, True]  # eth2 was down
