"""ARP and Neighbor Discovery probes sent from a "pod" namespace on a real segment, through
both ways of reaching into a namespace: answers from a gateway, silence for a free address,
a second holder of the pod's own address, and the errors."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
from dataclasses import dataclass

import pytest

from spidernet.node import netns
from spidernet.node.access.base import Namespaces
from spidernet.node.detect.probe import (
    DEFAULT_TIMING,
    FAST_ANSWER_S,
    FAST_SPACING_S,
    Answer,
    ProbeError,
    Timing,
    profile,
    resolve,
)
from spidernet.node.lab.addresses import GATEWAY4, GATEWAY6
from spidernet.node.lab.topology import Segment, Topology, iface
from spidernet.node.netlink.client import netlink
from spidernet.node.netlink.records import IPAddress

ip = ipaddress.ip_address

POD4, POD6 = ip("192.0.2.10"), ip("2001:db8:1::10")
GW4, GW6 = ip(GATEWAY4), ip(GATEWAY6)
FREE4, FREE6 = ip("192.0.2.99"), ip("2001:db8:1::99")
ETH_P_ALL = 0x0003
ND_SOLICIT = 135
# A probe that hears nothing takes every try's wait; one that hears an answer, one wait.
SILENCE_S = DEFAULT_TIMING.tries * DEFAULT_TIMING.wait_s


@dataclass(frozen=True)
class Lab:
    topo: Topology
    segment: Segment
    pod: str  # the pod namespace's path
    gateway: str
    access: Namespaces

    def join(self, role: str, *addresses: str) -> str:
        """A new namespace on the segment through eth0 with `addresses`; its eth0 MAC."""
        ns = self.topo.namespace(role)
        self.topo.attach(self.segment, ns, "eth0", tuple(iface(a) for a in addresses))
        return mac_of(netns.path_of(ns))


def mac_of(path: str, dev: str = "eth0") -> str:
    with netlink(path) as nl:
        return nl.link(dev).mac


@pytest.fixture
def lab(topo: Topology, access: Namespaces) -> Lab:
    seg = topo.segment()
    pod = topo.namespace("pod")
    topo.attach(seg, pod, "eth0", (iface(f"{POD4}/24"), iface(f"{POD6}/64")))
    gw = topo.gateway(seg, (iface(f"{GW4}/24"), iface(f"{GW6}/64")))
    return Lab(topo, seg, netns.path_of(pod), netns.path_of(gw), access)


@pytest.mark.parametrize(("src", "target"), [(POD4, GW4), (POD6, GW6)], ids=["arp", "nd"])
def test_the_gateway_answers_with_its_mac(lab: Lab, src: IPAddress, target: IPAddress) -> None:
    gateway = (Answer(mac_of(lab.gateway), target),)
    start = time.monotonic()
    assert resolve(lab.access, lab.pod, "eth0", target, src=src) == gateway
    # One try was enough: the probe stopped after its first wait.
    assert time.monotonic() - start < SILENCE_S - DEFAULT_TIMING.wait_s / 2
    # A probe (no source) is answered as well.
    assert resolve(lab.access, lab.pod, "eth0", target) == gateway


@pytest.mark.parametrize(("src", "target"), [(POD4, FREE4), (POD6, FREE6)], ids=["arp", "nd"])
def test_an_address_nobody_holds_has_no_answer(lab: Lab, src: IPAddress, target: IPAddress) -> None:
    start = time.monotonic()
    assert resolve(lab.access, lab.pod, "eth0", target, src=src) == ()
    assert SILENCE_S <= time.monotonic() - start < SILENCE_S + 0.5
    assert resolve(lab.access, lab.pod, "eth0", target, timing=Timing(1, 0.1)) == ()


@pytest.mark.parametrize("address", [POD4, POD6], ids=["arp", "nd"])
def test_a_second_holder_of_the_pods_address_is_found(lab: Lab, address: IPAddress) -> None:
    # The pod's own address is not an answer: alone on the segment with it, it is free.
    assert resolve(lab.access, lab.pod, "eth0", address) == ()
    # IPv6 addresses are added without DAD (IFA_F_NODAD), so the twin holds it at once.
    twin = lab.join("twin", f"{POD4}/24", f"{POD6}/64")
    assert resolve(lab.access, lab.pod, "eth0", address) == (Answer(twin, address),)


def test_every_holder_is_reported_once(lab: Lab) -> None:
    twins = sorted(lab.join(f"twin{i}", f"{POD4}/24", f"{POD6}/64") for i in range(2))
    for address in (POD4, POD6):
        # The fast profile's requests are 20 ms apart; after the first answer it still
        # listens its 100 ms, so the second holder is heard too.
        for timing in (DEFAULT_TIMING, profile("fast", address.version)):
            answers = resolve(lab.access, lab.pod, "eth0", address, timing=timing)
            assert sorted(answers, key=lambda a: a.mac) == [Answer(m, address) for m in twins]


@pytest.mark.parametrize("target", [FREE4, FREE6], ids=["arp", "nd"])
def test_a_silent_fast_probe_sends_three_requests_and_waits_out_the_last_window(
    lab: Lab, target: IPAddress
) -> None:
    timing = profile("fast", target.version)
    ear = lab.topo.namespace("ear")
    lab.topo.attach(lab.segment, ear, "eth0", ())
    with netns.open_socket_in(
        netns.path_of(ear), socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)
    ) as listener:
        listener.bind(("eth0", 0))  # 0: keep the socket's protocol, ETH_P_ALL
        start = time.monotonic()
        assert resolve(lab.access, lab.pod, "eth0", target, timing=timing) == ()
        took = time.monotonic() - start
        asked = _requests_for(listener, target)
    assert asked == timing.tries
    assert 2 * FAST_SPACING_S + FAST_ANSWER_S <= took < 2 * FAST_SPACING_S + FAST_ANSWER_S + 0.5


def test_a_missing_or_unusable_link_fails(lab: Lab) -> None:
    where = f"in netns '{lab.pod}'"
    with pytest.raises(ProbeError) as failed:
        resolve(lab.access, lab.pod, "eth9", GW4)
    assert str(failed.value) == f"failed to probe for {GW4} on 'eth9' {where}: No such device"

    with pytest.raises(ProbeError) as failed:
        resolve(lab.access, lab.pod, "lo", GW4)
    assert str(failed.value) == (
        f"failed to probe for {GW4} on 'lo' {where}: not an Ethernet link (hardware type 772)"
    )

    set_noarp = ["ip", "link", "set", "eth0", "arp", "off"]
    subprocess.run(netns.exec_argv(lab.pod, set_noarp), check=True)
    with pytest.raises(ProbeError) as failed:
        resolve(lab.access, lab.pod, "eth0", GW4)
    assert str(failed.value) == (
        f"failed to probe for {GW4} on 'eth0' {where}: link does not resolve neighbours (NOARP)"
    )

    with netlink(lab.pod) as nl:
        nl.set_link("eth0", state="down")
    with pytest.raises(ProbeError) as failed:
        resolve(lab.access, lab.pod, "eth0", GW6)
    assert str(failed.value) == f"failed to probe for {GW6} on 'eth0' {where}: link is down"


def test_a_missing_namespace_is_netns_gone(access: Namespaces) -> None:
    with pytest.raises(netns.NetnsGone):
        resolve(access, "/run/netns/spidernet-no-such-netns", "eth0", GW4)


def _requests_for(listener: socket.socket, target: IPAddress) -> int:
    """How many ARP requests or Neighbor Solicitations for `target` `listener` has queued."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            frame = listener.recv(65535)
        except BlockingIOError:
            return count
        if target.version == 4:
            count += (
                frame[12:14] == b"\x08\x06"
                and frame[20:22] == b"\x00\x01"
                and (frame[38:42] == target.packed)
            )
        else:
            count += (
                frame[12:14] == b"\x86\xdd"
                and frame[54] == ND_SOLICIT
                and (frame[62:78] == target.packed)
            )
