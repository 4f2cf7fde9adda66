"""Claims to addresses in received frames, read from a packet socket: the conflict
watcher's fallback where its eBPF program (bpf/conflict_watch.c) cannot run.

`parse_claim` reads a frame exactly as the eBPF program does, so both backends report the
same claims:
- ARP (RFC 826), request or reply, Ethernet/IPv4: the sender protocol address is claimed
  by the sender hardware address (RFC 5227 §2.1.1 counts "any ARP packet" with that
  sender address). A probe, sender 0.0.0.0, claims nothing.
- IPv6 Neighbor Advertisement (RFC 4861 §4.4) straight after the IPv6 header: the target
  address is claimed by the Target Link-Layer Address option when present, else by the
  Ethernet source. Checked as the program checks (RFC 4861 §7.1.2): hop limit 255, code
  0, at least 24 bytes, options of non-zero length within the message, at most
  MAX_ND_OPTIONS of them read. The checksum is not verified (the program cannot afford
  it); a watcher reports, it does not act.
A claim by the all-zero MAC names no station and is no claim.

`Sniffer` reads a link's received frames from an AF_PACKET socket opened in its namespace
(node/access/, STYLE.md §5): opened with protocol 0, which hears nothing, then given a
classic BPF filter that passes ARP and ICMPv6 type 136 only (so a busy link does not copy
every frame to us), then bound to the link with ETH_P_ALL (packet(7): opened with a
protocol it would hear every link until the bind). The kernel stamps each frame on
arrival (SO_TIMESTAMPNS), so a claim carries when it was seen, not when it was read.
"""

from __future__ import annotations

import ctypes
import ipaddress
import math
import select
import socket
import struct
import time
from dataclasses import dataclass

from spidernet.node.access.base import Namespaces

from .announce import ARP_REQUEST, IPAddress
from .probe import (
    ARP_REPLY,
    ARPHRD_ETHER,
    ETH_P_ARP,
    ETH_P_IPV6,
    IPPROTO_ICMPV6,
    ND_NEIGHBOR_ADVERT,
    ND_OPT_TARGET_LINKADDR,
    PACKET_OUTGOING,
)

ETH_P_ALL = 0x0003  # linux/if_ether.h
ETH_P_IP = 0x0800
ZERO_MAC = bytes(6)
MAX_ND_OPTIONS = 8  # as bpf/conflict_watch.c
NA_LEN = 24  # ICMPv6 header, flags and target (RFC 4861 §4.4)
# asm-generic/socket.h (x86, arm64): SO_ATTACH_FILTER, SO_TIMESTAMPNS (== SCM_TIMESTAMPNS)
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@qq")
FRAME_MAX = 65535


@dataclass(frozen=True)
class Claim:
    """A station claiming an address in one frame."""

    address: IPAddress
    mac: str  # lower-case aa:bb:cc:dd:ee:ff


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _claim_arp(frame: bytes) -> Claim | None:
    if len(frame) < 14 + 28:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if (htype, ptype, hlen, plen) != (ARPHRD_ETHER, ETH_P_IP, 6, 4):
        return None
    if op not in (ARP_REQUEST, ARP_REPLY):
        return None
    sender, sha = frame[28:32], frame[22:28]
    if sender == bytes(4) or sha == ZERO_MAC:
        return None  # an RFC 5227 probe; no station
    return Claim(ipaddress.IPv4Address(sender), _mac(sha))


def _claim_na(frame: bytes) -> Claim | None:
    at = 14 + 40
    if len(frame) < at:
        return None
    payload, next_header, hop_limit = struct.unpack_from("!HBB", frame, 18)
    if next_header != IPPROTO_ICMPV6 or hop_limit != 255 or payload < NA_LEN:
        return None
    end = at + payload
    if end > len(frame):  # an Ethernet frame may be padded, never short
        return None
    if (frame[at], frame[at + 1]) != (ND_NEIGHBOR_ADVERT, 0):
        return None
    target = ipaddress.IPv6Address(frame[at + 8 : at + 24])
    mac = frame[6:12]
    opt = at + NA_LEN
    for _ in range(MAX_ND_OPTIONS):
        if opt + 2 > end:
            break
        kind, units = frame[opt], frame[opt + 1]
        if units == 0 or opt + units * 8 > end:
            return None  # RFC 4861 §7.1.2: an option of length zero invalidates it
        if kind == ND_OPT_TARGET_LINKADDR:
            mac = frame[opt + 2 : opt + 8]
            break
        opt += units * 8
    if mac == ZERO_MAC:
        return None
    return Claim(target, _mac(mac))


def parse_claim(frame: bytes) -> Claim | None:
    """The claim `frame` (an Ethernet frame) makes, or None (see the module's doc)."""
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == ETH_P_ARP:
        return _claim_arp(frame)
    if ethertype == ETH_P_IPV6:
        return _claim_na(frame)
    return None


# Classic BPF (linux/filter.h): pass ARP, and IPv6 whose next header is ICMPv6 of type
# 136 at fixed offsets (no extension headers, as parse_claim); drop the rest.
_BPF_LD_H_ABS, _BPF_LD_B_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x28, 0x30, 0x15, 0x06
_FILTER = (
    (_BPF_LD_H_ABS, 0, 0, 12),  # ethertype
    (_BPF_JEQ_K, 5, 0, ETH_P_ARP),  # -> accept
    (_BPF_JEQ_K, 0, 5, ETH_P_IPV6),  # else -> drop
    (_BPF_LD_B_ABS, 0, 0, 14 + 6),  # IPv6 next header
    (_BPF_JEQ_K, 0, 3, IPPROTO_ICMPV6),
    (_BPF_LD_B_ABS, 0, 0, 14 + 40),  # ICMPv6 type
    (_BPF_JEQ_K, 0, 1, ND_NEIGHBOR_ADVERT),
    (_BPF_RET_K, 0, 0, FRAME_MAX),  # accept
    (_BPF_RET_K, 0, 0, 0),  # drop
)


def _attach_filter(sock: socket.socket) -> None:
    program = b"".join(struct.pack("=HBBI", *insn) for insn in _FILTER)
    buf = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}: the kernel copies
    # the program during the call.
    fprog = struct.pack("@HP", len(_FILTER), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class Sniffer:
    """Claims in the frames link `link` of namespace `netns` receives. Raises OSError
    (a missing link is ENODEV) and NetnsGone."""

    def __init__(self, access: Namespaces, netns: str | None, link: str) -> None:
        self._access = access
        self._sock = access.open_socket(netns, socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            _attach_filter(self._sock)
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._sock.bind((link, ETH_P_ALL))
            self._sock.setblocking(False)
            self._poller = select.poll()
            self._poller.register(self._sock, select.POLLIN)
        except BaseException:
            access.discard(self._sock)
            raise

    def read(self, timeout_s: float) -> list[tuple[Claim, float]]:
        """Wait up to `timeout_s` for a frame, then return the claims in every frame that
        has arrived, each with the wall-clock time (time.time()) the kernel received it."""
        found: list[tuple[Claim, float]] = []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                frame, ancdata, _, address = self._sock.recvmsg(
                    FRAME_MAX, socket.CMSG_SPACE(TIMESPEC.size)
                )
            except BlockingIOError:
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                self._wait(left)
                continue
            # packet(7): a link's own frames come back tagged PACKET_OUTGOING.
            if address[2] == PACKET_OUTGOING:
                continue
            claim = parse_claim(frame)
            if claim is not None:
                found.append((claim, _stamp(ancdata)))

    def _wait(self, timeout_s: float) -> None:
        self._poller.poll(max(1, math.ceil(timeout_s * 1000)))

    def close(self) -> None:
        self._access.discard(self._sock)


def _stamp(ancdata: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return int(seconds) + int(nanoseconds) / 1e9
    return time.time()
