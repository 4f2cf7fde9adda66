"""Saved plans read back exactly."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from spidernet.node.plan.codec import CodecError, dumps, loads
from spidernet.node.plan.ops import (
    AddAddress,
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    Announce,
    DeleteRoute,
    ReplyViaLink,
    SetMac,
    SetSysctl,
    SetTxQueueLen,
)

PLAN = (
    AddVeth("veth0123", "veth0", 1500, "02:00:00:00:00:01", "02:00:00:00:00:02"),
    AddAddress("pod", "veth0", ipaddress.ip_interface("169.254.100.1/32")),
    AddRoute(
        "pod", ipaddress.ip_network("10.96.0.0/12"), "veth0", ipaddress.ip_address("192.0.2.2")
    ),
    DeleteRoute("pod", ipaddress.ip_network("::/0"), "net1", ipaddress.ip_address("2001:db8::1")),
    AddRule("host", socket.AF_INET6, 1000, 500, shared=True),
    AddRule("pod", socket.AF_INET, 1000, 101, src=ipaddress.ip_network("198.51.100.10/32")),
    AddNeighbour("host", "veth0123", ipaddress.ip_address("192.0.2.10"), "02:00:00:00:00:02"),
    SetSysctl("pod", "net.ipv4.conf.all.rp_filter", "0", "1"),
    SetMac("pod", "eth0", "0a:1b:c0:00:02:0a", "aa:bb:cc:00:00:01"),
    SetTxQueueLen("pod", "eth0", 2000, 1000),
    ReplyViaLink("pod", "veth0", 1, 100),
    Announce("pod", "eth0", ipaddress.ip_address("2001:db8::10")),
)


def test_round_trip() -> None:
    assert loads(dumps(PLAN)) == PLAN


@pytest.mark.parametrize(
    "text", ["{", '{"plan": [{"op": "Nope"}]}', '{"plan": [{"op": "AddVeth"}]}']
)
def test_unreadable_plans_are_refused(text: str) -> None:
    with pytest.raises(CodecError, match="unreadable saved plan"):
        loads(text)
