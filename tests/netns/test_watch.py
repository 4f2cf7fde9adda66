"""The passive conflict watcher on a real segment, with both backends (the eBPF program at
tc ingress, and the packet socket) and both ways of reaching into a namespace: an "owner"
holds 192.0.2.10 and 2001:db8:1::10, a "rogue" announces them from its own MAC, and a
"node" namespace on the same bridge watches its eth0, which hears the broadcasts and the
all-nodes advertisements of both."""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spidernet.node import netns
from spidernet.node.access.base import Namespaces
from spidernet.node.detect import watch
from spidernet.node.detect.announce import announce
from spidernet.node.detect.probe import arp_request, neighbor_solicitation
from spidernet.node.detect.watch import (
    Conflict,
    EbpfUnavailable,
    Watcher,
    WatchError,
    _EbpfWatcher,
    open_watcher,
)
from spidernet.node.lab.topology import Topology, iface
from spidernet.node.netlink.client import netlink
from spidernet.node.netlink.records import IPAddress

v4, v6 = ipaddress.IPv4Address, ipaddress.IPv6Address

OWNED4, OWNED6 = v4("192.0.2.10"), v6("2001:db8:1::10")
ROGUE4, ROGUE6 = v4("192.0.2.66"), v6("fe80::66")
ALL_NODES = v6("ff02::1")
THIRD_MAC = "02:00:00:00:00:99"
BACKENDS = ["ebpf", "scapy"]
# How long a claim may take to be reported, and how long silence is listened for.
REPORT_S = 1.0
# poll() returns as soon as a report arrives; what the test's own thread takes to run again
# after that is not the watcher's.
POLL_SLACK_S = 0.1


@dataclass(frozen=True)
class Lan:
    access: Namespaces
    owner: str  # namespace paths
    rogue: str
    node: str
    owner_mac: str
    rogue_mac: str
    node_mac: str

    def announce(self, ns: str, address: IPAddress) -> float:
        """One gratuitous ARP / unsolicited NA of `address` from `ns`'s eth0 MAC; when it was
        sent (time.monotonic), once the socket in `ns` was open."""
        sock = self.access.open_socket(ns, socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sent = time.monotonic()
            announce(sock, "eth0", address)
        finally:
            self.access.discard(sock)
        return sent

    def send(self, ns: str, frame: bytes) -> None:
        """One raw Ethernet frame out of `ns`'s eth0."""
        sock = self.access.open_socket(ns, socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sock.bind(("eth0", 0))
            sock.send(frame)
        finally:
            self.access.discard(sock)

    def open(self, backend: str, logs: list[str] | None = None) -> Watcher:
        log = (logs if logs is not None else []).append
        return open_watcher(self.access, self.node, "eth0", prefer=backend, log=log)


def mac_of(path: str) -> str:
    with netlink(path) as nl:
        return nl.link("eth0").mac


def tc(ns: str, *argv: str) -> str:
    done = subprocess.run(
        netns.exec_argv(ns, ["tc", *argv]), capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def lan(topo: Topology, access: Namespaces) -> Lan:
    seg = topo.segment()
    owner, rogue, node = (topo.namespace(role) for role in ("owner", "rogue", "node"))
    topo.attach(seg, owner, "eth0", (iface(f"{OWNED4}/24"), iface(f"{OWNED6}/64")))
    topo.attach(seg, rogue, "eth0")
    topo.attach(seg, node, "eth0")
    owner, rogue, node = (netns.path_of(ns) for ns in (owner, rogue, node))
    return Lan(access, owner, rogue, node, mac_of(owner), mac_of(rogue), mac_of(node))


@pytest.fixture(params=BACKENDS)
def watcher(request: pytest.FixtureRequest, lan: Lan) -> Iterator[Watcher]:
    w = lan.open(request.param)
    try:
        assert w.backend == request.param
        for address in (OWNED4, OWNED6):
            w.watch(address, lan.owner_mac)
        yield w
    finally:
        w.close()


def claimed(conflicts: list[Conflict]) -> list[tuple[IPAddress, str, str, str]]:
    return [(c.address, c.rogue_mac, c.owner_mac, c.link) for c in conflicts]


def kernel_events(w: Watcher) -> int:
    """How many events the eBPF program sent (the packet socket has no kernel side)."""
    return w.kernel_events if isinstance(w, _EbpfWatcher) else 0


def raw_mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def arp_reply(sender_mac: str, to_mac: str, sender: IPAddress, target: IPAddress) -> bytes:
    """A unicast ARP reply (RFC 826): `sender` is at `sender_mac`."""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
    arp += raw_mac(sender_mac) + sender.packed + raw_mac(to_mac) + target.packed
    return raw_mac(to_mac) + raw_mac(sender_mac) + b"\x08\x06" + arp


def _checksum(data: bytes) -> int:
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def neighbor_advert(
    eth_src: str,
    eth_dst: str,
    src: IPAddress,
    dst: IPAddress,
    target: IPAddress,
    *,
    solicited: bool,
    tlla: str | None,
) -> bytes:
    """A Neighbor Advertisement (RFC 4861 §4.4), Override set, with a Target Link-Layer
    Address option when `tlla` is given."""
    flags = (0x40 if solicited else 0) | 0x20
    icmp = struct.pack("!BBHB3x", 136, 0, 0, flags) + target.packed
    if tlla is not None:
        icmp += b"\x02\x01" + raw_mac(tlla)
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", _checksum(pseudo + icmp)) + icmp[4:]
    header = struct.pack("!IHBB", 0x60000000, len(icmp), 58, 255) + src.packed + dst.packed
    return raw_mac(eth_dst) + raw_mac(eth_src) + b"\x86\xdd" + header + icmp


def test_the_owners_own_announcements_are_no_conflict(lan: Lan, watcher: Watcher) -> None:
    for address in (OWNED4, OWNED6):
        lan.announce(lan.owner, address)
    assert watcher.poll(REPORT_S) == []
    # The eBPF program itself kept quiet: the owner check runs in the kernel.
    assert kernel_events(watcher) == 0


def test_probes_and_questions_are_no_claims(lan: Lan, watcher: Watcher) -> None:
    frames = [
        arp_request(lan.rogue_mac, None, OWNED4),  # RFC 5227 probe: sender 0.0.0.0
        arp_request(lan.rogue_mac, ROGUE4, OWNED4),  # who has OWNED4? (the owner answers)
        neighbor_solicitation(lan.rogue_mac, None, OWNED6),  # DAD (the owner answers)
        neighbor_solicitation(lan.rogue_mac, ROGUE6, OWNED6),
    ]
    for frame in frames:
        lan.send(lan.rogue, frame)
    assert watcher.poll(REPORT_S) == []
    assert kernel_events(watcher) == 0


def test_replies_and_solicited_advertisements_are_claims(lan: Lan, watcher: Watcher) -> None:
    lan.send(lan.rogue, arp_reply(lan.rogue_mac, lan.node_mac, OWNED4, ROGUE4))
    assert claimed(watcher.poll(REPORT_S)) == [(OWNED4, lan.rogue_mac, lan.owner_mac, "eth0")]
    # Solicited, unicast, no option: the Ethernet source claims it.
    na = neighbor_advert(
        lan.rogue_mac, lan.node_mac, OWNED6, ROGUE6, OWNED6, solicited=True, tlla=None
    )
    lan.send(lan.rogue, na)
    assert claimed(watcher.poll(REPORT_S)) == [(OWNED6, lan.rogue_mac, lan.owner_mac, "eth0")]
    # The option names the station, whoever put the frame on the wire.
    na = neighbor_advert(
        lan.rogue_mac,
        "33:33:00:00:00:01",
        OWNED6,
        ALL_NODES,
        OWNED6,
        solicited=False,
        tlla=THIRD_MAC,
    )
    lan.send(lan.rogue, na)
    assert claimed(watcher.poll(REPORT_S)) == [(OWNED6, THIRD_MAC, lan.owner_mac, "eth0")]
    # ... and naming the owner, it is the owner's claim.
    na = neighbor_advert(
        lan.rogue_mac,
        "33:33:00:00:00:01",
        OWNED6,
        ALL_NODES,
        OWNED6,
        solicited=False,
        tlla=lan.owner_mac,
    )
    lan.send(lan.rogue, na)
    assert watcher.poll(0.5) == []


@pytest.mark.parametrize("address", [OWNED4, OWNED6], ids=["arp", "na"])
def test_a_rogue_claim_is_reported_within_a_second(
    lan: Lan, watcher: Watcher, address: IPAddress
) -> None:
    before = time.time()
    sent = lan.announce(lan.rogue, address)
    conflicts = watcher.poll(REPORT_S)
    assert conflicts, "no conflict reported"
    assert time.monotonic() - sent < REPORT_S + POLL_SLACK_S
    assert claimed(conflicts) == [(address, lan.rogue_mac, lan.owner_mac, "eth0")]
    assert before <= conflicts[0].seen_at <= time.time()
    # Reported once: nothing further is pending.
    assert watcher.poll(0.2) == []


@pytest.mark.parametrize("address", [OWNED4, OWNED6], ids=["arp", "na"])
def test_an_unwatched_address_is_no_longer_reported(
    lan: Lan, watcher: Watcher, address: IPAddress
) -> None:
    lan.announce(lan.rogue, address)
    assert claimed(watcher.poll(REPORT_S)) == [(address, lan.rogue_mac, lan.owner_mac, "eth0")]
    watcher.unwatch(address)
    lan.announce(lan.rogue, address)
    assert watcher.poll(REPORT_S) == []
    # The other family is still watched.
    other = OWNED6 if address == OWNED4 else OWNED4
    lan.announce(lan.rogue, other)
    assert claimed(watcher.poll(REPORT_S)) == [(other, lan.rogue_mac, lan.owner_mac, "eth0")]


def test_the_rogue_is_the_owner_after_a_new_watch(lan: Lan, watcher: Watcher) -> None:
    watcher.watch(OWNED4, lan.rogue_mac.upper())
    lan.announce(lan.rogue, OWNED4)
    assert watcher.poll(0.5) == []
    lan.announce(lan.owner, OWNED4)
    assert claimed(watcher.poll(REPORT_S)) == [(OWNED4, lan.owner_mac, lan.rogue_mac, "eth0")]


def test_close_removes_the_ebpf_filter_and_qdisc(lan: Lan) -> None:
    w = lan.open("ebpf")
    try:
        assert "clsact" in tc(lan.node, "qdisc", "show", "dev", "eth0")
        assert "spidernet-watch-" in tc(lan.node, "filter", "show", "dev", "eth0", "ingress")
    finally:
        w.close()
    w.close()  # idempotent
    assert "clsact" not in tc(lan.node, "qdisc", "show", "dev", "eth0")
    assert tc(lan.node, "filter", "show", "dev", "eth0", "ingress") == ""


def test_close_leaves_a_qdisc_the_watcher_did_not_add(lan: Lan) -> None:
    tc(lan.node, "qdisc", "add", "dev", "eth0", "clsact")
    w = lan.open("ebpf")
    w.watch(OWNED4, lan.owner_mac)
    lan.announce(lan.rogue, OWNED4)
    assert len(w.poll(REPORT_S)) == 1
    w.close()
    assert "clsact" in tc(lan.node, "qdisc", "show", "dev", "eth0")
    assert tc(lan.node, "filter", "show", "dev", "eth0", "ingress") == ""


def test_the_packet_socket_backend_adds_nothing_to_the_link(lan: Lan) -> None:
    w = lan.open("scapy")
    try:
        assert "clsact" not in tc(lan.node, "qdisc", "show", "dev", "eth0")
    finally:
        w.close()
    w.close()
    with pytest.raises(WatchError, match="closed"):
        w.poll(0.1)


def test_auto_falls_back_to_the_packet_socket_and_says_why(lan: Lan, tmp_path: Path) -> None:
    missing = tmp_path / "missing.c"
    logs: list[str] = []
    w = open_watcher(lan.access, lan.node, "eth0", log=logs.append, program=missing)
    try:
        assert w.backend == "scapy"
        assert logs == [
            f"the eBPF conflict watcher cannot run on 'eth0' in netns '{lan.node}': cannot "
            f"read {missing}: No such file or directory; watching through a packet socket "
            "instead"
        ]
        w.watch(OWNED4, lan.owner_mac)
        lan.announce(lan.rogue, OWNED4)
        assert claimed(w.poll(REPORT_S)) == [(OWNED4, lan.rogue_mac, lan.owner_mac, "eth0")]
    finally:
        w.close()

    with pytest.raises(EbpfUnavailable) as failed:
        open_watcher(lan.access, lan.node, "eth0", prefer="ebpf", log=logs.append, program=missing)
    assert str(failed.value) == (
        f"failed to watch 'eth0' in netns '{lan.node}' with eBPF: cannot read {missing}: "
        "No such file or directory"
    )
    assert len(logs) == 1


def test_the_perf_buffer_variant_reports_too(lan: Lan, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a kernel without BPF ring buffers (before 5.8) gets: the program built with a
    # perf buffer, read with bcc's perf reader.
    def perf_only(bpf_class: Callable[..., Any], text: bytes, cflags: list[str]) -> object:
        return bpf_class(text=text, cflags=[*cflags, watch.PERF_OUTPUT_FLAG]), True

    monkeypatch.setattr(watch, "_compile", perf_only)
    logs: list[str] = []
    w = lan.open("ebpf", logs)
    try:
        assert "reporting through a perf buffer" in logs[0]
        w.watch(OWNED6, lan.owner_mac)
        lan.announce(lan.owner, OWNED6)
        lan.announce(lan.rogue, OWNED6)
        assert claimed(w.poll(REPORT_S)) == [(OWNED6, lan.rogue_mac, lan.owner_mac, "eth0")]
        assert kernel_events(w) == 1
    finally:
        w.close()
    assert tc(lan.node, "filter", "show", "dev", "eth0", "ingress") == ""


def test_auto_says_which_backend_it_chose(lan: Lan) -> None:
    logs: list[str] = []
    lan.open("auto", logs).close()
    [line] = logs
    assert line.startswith(f"watching 'eth0' in netns '{lan.node}' with eBPF at tc ingress")


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_a_missing_link_fails_without_fallback(lan: Lan, backend: str) -> None:
    logs: list[str] = []
    with pytest.raises(WatchError, match="eth9") as failed:
        open_watcher(lan.access, lan.node, "eth9", prefer=backend, log=logs.append)
    assert not isinstance(failed.value, EbpfUnavailable)
    assert logs == []


def test_a_missing_namespace_is_netns_gone(access: Namespaces) -> None:
    with pytest.raises(netns.NetnsGone):
        open_watcher(access, "/run/netns/spidernet-no-such-netns", "eth0", log=print)
