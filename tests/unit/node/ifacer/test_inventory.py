"""Which ifacer-made links are in use, and the order prune removes the rest (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spidernet.node.ifacer.inventory import Made, prune_order, survey
from spidernet.node.ifacer.plan import IFACER_ALIAS
from spidernet.node.ifacer.users import User
from spidernet.node.netlink.records import Link


def link(index: int, name: str, kind: str = "", **kw: Any) -> Link:
    return Link(index, name, kind, "02:00:00:00:00:01", 1500, True, **kw)


def user(cid: str, uses: tuple[str, ...], netns: str) -> User:
    return User("net", cid, "net1", netns, 1, uses)


def test_survey_counts_live_users_and_uppers(tmp_path: Path) -> None:
    live = tmp_path / "pod-a"
    live.touch()
    links = [
        link(2, "eth1", master=5),
        link(3, "eth2", master=5),
        link(5, "bond0", "bond", alias=IFACER_ALIAS, bond_mode=4),
        link(6, "bond0.100", "vlan", alias=IFACER_ALIAS, link=5, vlan_id=100),
        link(7, "eth3.200", "vlan", alias=IFACER_ALIAS, link=4, vlan_id=200),
        link(4, "eth3"),
        link(8, "admin.300", "vlan", link=4, vlan_id=300),  # not ours: not listed
    ]
    records = [
        user("a" * 64, ("eth1", "eth2", "bond0", "bond0.100"), str(live)),
        user("b" * 64, ("eth3", "eth3.200"), str(tmp_path / "gone")),  # its DEL never came
    ]
    made = {m.name: m for m in survey(links, records)}
    assert set(made) == {"bond0", "bond0.100", "eth3.200"}
    assert made["bond0.100"].users == ("a" * 12 + "/net1",)
    assert made["bond0.100"].detail == "vlan 100 on bond0"
    assert made["bond0"].uppers == ("bond0.100",)
    assert made["bond0"].slaves == ("eth1", "eth2")
    assert made["bond0"].detail == "mode 802.3ad"
    assert made["eth3.200"].unused  # a dead record does not count
    assert not made["bond0"].unused


def m(name: str, users: tuple[str, ...] = (), uppers: tuple[str, ...] = ()) -> Made:
    return Made(name, "vlan", "", True, users, uppers)


def test_prune_removes_uppers_first_and_keeps_what_is_used() -> None:
    made = [
        m("bond0", uppers=("bond0.100", "bond0.200")),
        m("bond0.100"),
        m("bond0.200"),
        m("bond1", uppers=("bond1.7",)),
        m("bond1.7", users=("pod/net1",)),
        m("bond2", uppers=("admin-macvlan",)),  # an administrator's link stands on it
    ]
    names = [x.name for x in prune_order(made)]
    assert names == ["bond0.100", "bond0.200", "bond0"]


def test_prune_of_nothing_is_nothing() -> None:
    assert prune_order([]) == []
    assert prune_order([m("eth1.5", users=("x/net1",))]) == []
