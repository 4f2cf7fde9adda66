"""Every operation's undo is its inverse; a plan's undos run last first; ops in words."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

import pytest

from spidernet.node.plan import ops
from spidernet.node.plan.describe import describe
from spidernet.node.plan.ops import (
    MAIN,
    SCOPE_LINK,
    AddAddress,
    AddBond,
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    AddVlan,
    Announce,
    DeleteAddress,
    DeleteLink,
    DeleteNeighbour,
    DeleteRoute,
    DeleteRule,
    DropReplyViaLink,
    Enslave,
    Op,
    Release,
    ReplyViaLink,
    SetLinkDown,
    SetLinkUp,
    SetMac,
    SetSysctl,
    SetTxQueueLen,
    undo_all,
)

NET = ipaddress.ip_network("10.96.0.0/12")
GW = ipaddress.ip_address("192.0.2.2")
SRC = ipaddress.ip_address("192.0.2.10")
ADDR = ipaddress.ip_interface("169.254.100.1/32")
POD_NET = ipaddress.ip_network("192.0.2.10/32")
GATEWAY = ipaddress.ip_address("192.0.2.1")

# (operation, its undo): one row per kind of operation and per variant that changes it.
UNDOS: list[tuple[Op, tuple[Op, ...]]] = [
    (AddVeth("vethx", "veth0", 1400, "02:00:00:00:00:01", "02:00:00:00:00:02"),
     (DeleteLink("host", "vethx"),)),
    (DeleteLink("pod", "veth0"), ()),
    (SetLinkUp("pod", "veth0"), (SetLinkDown("pod", "veth0"),)),
    (SetLinkUp("pod", "eth0", was_up=True), ()),
    (SetLinkDown("pod", "veth0"), ()),
    (SetMac("pod", "eth0", "0a:0b:0c:00:00:01", "02:00:00:00:00:09"),
     (SetMac("pod", "eth0", "02:00:00:00:00:09", "0a:0b:0c:00:00:01"),)),
    (SetTxQueueLen("pod", "eth0", 2000, 1000), (SetTxQueueLen("pod", "eth0", 1000, 2000),)),
    (AddAddress("pod", "veth0", ADDR), (DeleteAddress("pod", "veth0", ADDR),)),
    (DeleteAddress("pod", "veth0", ADDR), ()),
    (AddRoute("pod", NET, "veth0", GW, 100, SCOPE_LINK),
     (DeleteRoute("pod", NET, "veth0", GW, 100, SCOPE_LINK),)),
    (AddRoute("pod", NET, "veth0", GW, MAIN, 0, SRC),
     (DeleteRoute("pod", NET, "veth0", GW, MAIN, 0, SRC),)),
    (DeleteRoute("pod", NET, "eth0", GW, MAIN, 0, SRC),
     (AddRoute("pod", NET, "eth0", GW, MAIN, 0, SRC),)),
    (AddRule("host", socket.AF_INET, 1000, 500, shared=True),
     (DeleteRule("host", socket.AF_INET, 1000, 500, shared=True),)),
    (AddRule("pod", socket.AF_INET6, 990, 100, fwmark=1),
     (DeleteRule("pod", socket.AF_INET6, 990, 100, fwmark=1),)),
    (AddRule("pod", socket.AF_INET, 1000, 101, src=POD_NET, dst=NET, iifname="eth0"),
     (DeleteRule("pod", socket.AF_INET, 1000, 101, src=POD_NET, dst=NET, iifname="eth0"),)),
    (DeleteRule("pod", socket.AF_INET, 1000, 101), ()),
    (AddNeighbour("host", "vethx", SRC, "02:00:00:00:00:02"),
     (DeleteNeighbour("host", "vethx", SRC),)),
    (DeleteNeighbour("host", "eth0", SRC), ()),
    (SetSysctl("pod", "net.ipv4.conf.all.rp_filter", "0", "1"),
     (SetSysctl("pod", "net.ipv4.conf.all.rp_filter", "1", "0"),)),
    (ReplyViaLink("pod", "veth0", 1, 100), (DropReplyViaLink("pod", "veth0", 1, 100),)),
    (DropReplyViaLink("pod", "veth0", 1, 100), ()),
    (Announce("pod", "eth0", SRC), ()),
    (AddVlan("host", "eth1.100", "eth1", 100, "spidernet-ifacer"),
     (DeleteLink("host", "eth1.100"),)),
    (AddBond("host", "bond0", (("mode", 1), ("miimon", 100))), (DeleteLink("host", "bond0"),)),
    (Enslave("host", "eth1", "bond0", was_up=False), (Release("host", "eth1", up=False),)),
    (Release("host", "eth1"), ()),
]  # fmt: skip


def test_every_kind_of_operation_has_an_undo_row() -> None:
    kinds = {
        cls
        for cls in vars(ops).values()
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and hasattr(cls, "undo")
    }
    assert kinds == {type(op) for op, _ in UNDOS}


@pytest.mark.parametrize(("op", "undo"), UNDOS, ids=lambda x: type(x).__name__)
def test_undo_is_the_inverse(op: Op, undo: tuple[Op, ...]) -> None:
    assert op.undo() == undo


@pytest.mark.parametrize(
    "op",
    [
        *[op for op, _ in UNDOS if isinstance(op, SetMac | SetTxQueueLen | SetSysctl)],
        DeleteRoute("pod", NET, "eth0", GW, MAIN, 0, SRC),
        DeleteRoute("pod", NET, "eth0", GW, MAIN, SCOPE_LINK),
    ],
    ids=lambda x: type(x).__name__,
)
def test_undoing_an_undo_gives_the_operation_back(op: Op) -> None:
    (undo,) = op.undo()
    assert undo.undo() == (op,)


def test_undo_all_reverses_the_plan_and_skips_what_has_no_undo() -> None:
    plan: tuple[Op, ...] = (
        AddVeth("vethx", "veth0", 1500, "02:00:00:00:00:01", "02:00:00:00:00:02"),
        SetLinkUp("pod", "veth0"),
        Announce("pod", "veth0", SRC),
        AddRoute("pod", NET, "veth0", GW),
        AddRule("host", socket.AF_INET, 1000, 500, shared=True),
    )
    assert undo_all(plan) == (
        DeleteRule("host", socket.AF_INET, 1000, 500, shared=True),
        DeleteRoute("pod", NET, "veth0", GW),
        SetLinkDown("pod", "veth0"),
        DeleteLink("host", "vethx"),
    )
    assert undo_all(()) == ()


def test_undo_all_of_undos_is_empty_for_removals() -> None:
    plan: tuple[Op, ...] = (
        AddAddress("pod", "veth0", ADDR),
        AddNeighbour("pod", "veth0", GW, "02:00:00:00:00:01"),
    )
    assert undo_all(undo_all(plan)) == ()


@pytest.mark.parametrize(
    ("op", "words"),
    [
        (AddRoute("pod", ipaddress.ip_network("10.0.0.0/8"), "veth0", GATEWAY, 100),
         "add route 10.0.0.0/8 via 192.0.2.1 dev veth0 table 100 in the pod"),
        (DeleteRoute("host", POD_NET, "vethx", scope=SCOPE_LINK, src=SRC),
         "delete route 192.0.2.10/32 dev vethx scope link src 192.0.2.10 in the host"),
        (AddRule("host", socket.AF_INET, 1000, 500, shared=True),
         "add IPv4 rule 1000 from all lookup 500 in the host"),
        (DeleteRule("pod", socket.AF_INET6, 990, 100, fwmark=1),
         "delete IPv6 rule 990 from all fwmark 0x1 lookup 100 in the pod"),
        (AddRule("pod", socket.AF_INET, 1000, 101, src=POD_NET, dst=NET, iifname="eth0"),
         "add IPv4 rule 1000 from 192.0.2.10/32 to 10.96.0.0/12 iif eth0 lookup 101 in the pod"),
        (AddVeth("vethx", "veth0", 1400, "02:00:00:00:00:01", "02:00:00:00:00:02"),
         "add veth 'vethx' in the host with peer 'veth0' in the pod (mtu 1400)"),
        (SetSysctl("pod", "net.ipv4.conf.all.rp_filter", "0", "1"),
         "set sysctl net.ipv4.conf.all.rp_filter=0 in the pod"),
        (AddNeighbour("host", "vethx", SRC, "02:00:00:00:00:02"),
         "add neighbour 192.0.2.10 lladdr 02:00:00:00:00:02 dev vethx in the host"),
        (SetTxQueueLen("pod", "eth0", 2000, 1000),
         "set the transmit queue length of 'eth0' to 2000 in the pod"),
        (ReplyViaLink("pod", "veth0", 1, 100),
         "mark connections arriving on 'veth0' for replies through it (mark 0x1, table 100)"
         " in the pod"),
        (AddVlan("host", "eth1.100", "eth1", 100), "add vlan 100 'eth1.100' on 'eth1' in the host"),
        (AddBond("host", "b0", (("mode", 4), ("arp_ip_target", ("10.0.0.1", "10.0.0.2")))),
         "add bond 'b0' (mode 4 arp_ip_target 10.0.0.1,10.0.0.2) in the host"),
        (Enslave("host", "eth1", "b0"), "enslave 'eth1' to 'b0' in the host"),
        (Release("host", "eth1"), "release 'eth1' from its master in the host"),
    ],
)  # fmt: skip
def test_describe_names_the_operation_and_its_side(op: Op, words: str) -> None:
    assert describe(op) == words


@pytest.mark.parametrize("op", [op for op, _ in UNDOS], ids=lambda x: type(x).__name__)
def test_every_operation_can_be_described(op: Op) -> None:
    words = describe(op)
    verbs = {"add", "delete", "set", "mark", "remove", "announce", "enslave", "release"}
    assert words.split()[0] in verbs
    assert words.endswith(("in the pod", "in the host", ")"))
