"""Ask a link who holds an address: active ARP / IPv6 Neighbor Discovery probes.

One request per try, sent raw from inside the pod's namespace on one of its links, then a
listening window; every station that claims the address in that window is an answer.

- IPv4: a broadcast ARP request for the address. Without a source address it is an ARP
  Probe (RFC 5227 §2.1.1): sender protocol address 0.0.0.0, so no receiver adds or updates
  a cache entry for us; a holder answers with a reply whose sender protocol address is the
  address (Linux: arp_process, "sip == 0"). With a source it is an ordinary request (RFC
  826). An answer is an ARP reply, or a request, whose sender protocol address is the
  address (RFC 5227 §2.1.1: "any ARP packet ... where the 'sender IP address' is the
  address being probed for"), from a MAC other than the link's own.
- IPv6: a Neighbor Solicitation to the solicited-node multicast address of the target
  (RFC 4861 §7.2.2), hop limit 255. Without a source it is a DAD probe (RFC 4862 §5.4.2):
  IPv6 source ::, no Source Link-Layer Address option (forbidden with ::), and a holder
  answers with a Neighbor Advertisement to all-nodes ff02::1 (RFC 4861 §7.2.4). With a
  source the NS carries that option, and the answer is unicast to us. An answer is a
  valid NA (§7.1.2: hop limit 255, code 0, checksum) for the target; its station is the
  Target Link-Layer Address option, else the Ethernet source.

A probe from another node (sender 0.0.0.0, or an NS from ::) is not an answer: it names no
holder. RFC 5227 §2.1.1 and RFC 4862 §5.4.3 count one as a conflict for an address being
claimed; arping -D does not, and neither does this module.

Timing (`Timing`, `profile`): `tries` requests, a listening window after each; no request
is sent after an answer arrived, and the probe then listens out the last window's length
after the latest request (or stops at once when one answer is enough). The RFC timings (3
probes 1-2 s apart, then 2 s) are for a host that claims an address in an unknown network;
a pod's link answers in microseconds, and RFC 5227 §2.2 allows shorter timeouts on such
links: the `fast` profile is ours (Spiderpool's windows in under half its time), the `rfc`
profile the standards'.

The socket is a packet socket the `Namespaces` opened in the namespace (no thread of ours
enters it, STYLE.md §5). It is opened with protocol 0, which receives nothing, and bound to
the link with the protocol to hear: opened with the protocol, it would hear that protocol
on every link of the namespace until the bind (packet(7)). Packet sockets see every frame
the link receives, the kernel's own ARP and ND processing notwithstanding, but not the ones
it sends.
"""

from __future__ import annotations

import fcntl
import ipaddress
import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from spidernet.node.access.base import Namespaces
from spidernet.node.errors import NodeError

from .announce import ARP_REQUEST, BROADCAST, IPAddress

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ARPHRD_ETHER = 1
ARP_REPLY = 2
ND_NEIGHBOR_ADVERT = 136
ND_OPT_TARGET_LINKADDR = 2
IPPROTO_ICMPV6 = 58
# linux/sockios.h, linux/if.h; struct ifreq is 40 bytes (16 of name, then a union).
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_NOARP = 0x80
PACKET_OUTGOING = 4
ZERO_MAC = "00:00:00:00:00:00"
UNSPECIFIED4 = ipaddress.IPv4Address("0.0.0.0")
UNSPECIFIED6 = ipaddress.IPv6Address("::")
# RFC 4291 §2.7.1: ff02::1:ff00:0/104 plus the low 24 bits of the address.
SOLICITED_NODE = int(ipaddress.IPv6Address("ff02::1:ff00:0"))


class ProbeError(NodeError):
    """Raised when the probe could not be sent or heard: the link is missing, down, not
    Ethernet or NOARP, or the socket failed."""


@dataclass(frozen=True)
class Answer:
    """A station that claims an address."""

    mac: str  # lower-case aa:bb:cc:dd:ee:ff
    address: IPAddress


@dataclass(frozen=True)
class Timing:
    """How many requests to send and how long to listen: before the first (a random
    0..`initial_wait_s`, listening already), after each (`wait_s` plus a random
    0..`jitter_s`), and after the last (`last_wait_s` when set)."""

    tries: int = 3
    wait_s: float = 0.2
    jitter_s: float = 0.0
    initial_wait_s: float = 0.0
    last_wait_s: float | None = None

    def __post_init__(self) -> None:
        if self.tries < 1 or self.wait_s <= 0:
            raise ValueError(f"a probe needs tries >= 1 and wait_s > 0, not {self}")
        if self.jitter_s < 0 or self.initial_wait_s < 0 or (self.last_wait_s or 0) < 0:
            raise ValueError(f"a probe's waits cannot be negative: {self}")

    @property
    def answer_s(self) -> float:
        """How long an answer to the last request is awaited (the last window)."""
        return self.wait_s if self.last_wait_s is None else self.last_wait_s

    def windows(self, rng: random.Random) -> tuple[float, list[float]]:
        """The listening time before the first request, and after each request."""
        first = rng.uniform(0, self.initial_wait_s) if self.initial_wait_s else 0.0
        after = [
            self.wait_s + (rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0)
            for _ in range(self.tries)
        ]
        if self.last_wait_s is not None:
            after[-1] = self.last_wait_s
        return first, after


DEFAULT_TIMING = Timing()

# The `fast` profile: requests this far apart, and this long for the last one's answers.
FAST_SPACING_S = 0.02
FAST_ANSWER_S = 0.1

PROFILES = ("fast", "rfc")


def profile(name: str, version: int) -> Timing:
    """The timing of profile `name` for IP version `version`.

    - `fast` (the default): three requests 20 ms apart, then 100 ms of listening after the
      last, stopping at the first answer; at most 140 ms when nobody answers. Each request
      still has at least 100 ms to be answered (an answer to any request counts until the
      end), which is the window Spiderpool gives each of its three (reference/spiderpool.md
      §4.5: 3 x 100 ms, at most 300 ms). RFC 5227 §2.2 allows shorter timeouts on links
      where answers are fast, and a pod's segment is one. docs/detect.md weighs it.
    - `rfc`, the standards' constants (reference/peers.md §8). IPv4, RFC 5227 §2.1.1: a
      random wait of up to PROBE_WAIT (1 s), PROBE_NUM (3) probes PROBE_MIN..PROBE_MAX (1-2
      s) apart, then ANNOUNCE_WAIT (2 s) after the last: 4-7 s. IPv6, RFC 4862 §5.4:
      DupAddrDetectTransmits (1) Neighbor Solicitation after a random delay of up to
      MAX_RTR_SOLICITATION_DELAY (1 s), then RetransTimer (1 s).
    """
    if name == "fast":
        return Timing(tries=3, wait_s=FAST_SPACING_S, last_wait_s=FAST_ANSWER_S)
    if name == "rfc":
        if version == 4:
            return Timing(tries=3, wait_s=1.0, jitter_s=1.0, initial_wait_s=1.0, last_wait_s=2.0)
        return Timing(tries=1, wait_s=1.0, initial_wait_s=1.0)
    raise ValueError(f"unknown probe profile '{name}' (known: {', '.join(PROFILES)})")


def load_frames() -> None:
    """Import what builds the frames now rather than at the first probe (a node service
    whose every ADD probes pays the import at start, not in its first pod's ADD)."""
    import scapy.layers.inet6
    import scapy.layers.l2  # noqa: F401


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def solicited_node(target: ipaddress.IPv6Address) -> tuple[ipaddress.IPv6Address, str]:
    """The solicited-node multicast address of `target` and its Ethernet address (RFC 2464
    §7: 33:33 and the address's last four bytes)."""
    group = ipaddress.IPv6Address(SOLICITED_NODE | (int(target) & 0xFFFFFF))
    return group, _mac(b"\x33\x33" + group.packed[12:])


def arp_request(
    own_mac: str, src: ipaddress.IPv4Address | None, target: ipaddress.IPv4Address
) -> bytes:
    """The Ethernet frame of a broadcast ARP request for `target` from `own_mac`: from
    `src`, or an RFC 5227 probe (sender 0.0.0.0) when `src` is None."""
    from scapy.layers.l2 import ARP, Ether  # at the first frame: announce.py says why

    frame = Ether(dst=BROADCAST, src=own_mac) / ARP(
        op=ARP_REQUEST,
        hwsrc=own_mac,
        psrc=str(src or UNSPECIFIED4),
        hwdst=ZERO_MAC,
        pdst=str(target),
    )
    return bytes(frame)


def neighbor_solicitation(
    own_mac: str, src: ipaddress.IPv6Address | None, target: ipaddress.IPv6Address
) -> bytes:
    """The Ethernet frame of a Neighbor Solicitation for `target` to its solicited-node
    group: from `src` with the Source Link-Layer Address option, or an RFC 4862 DAD probe
    (from ::, no option) when `src` is None."""
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import Ether

    group, group_mac = solicited_node(target)
    frame = (
        Ether(dst=group_mac, src=own_mac)
        / IPv6(src=str(src or UNSPECIFIED6), dst=str(group), hlim=255)
        / ICMPv6ND_NS(tgt=str(target))
    )
    if src is not None:
        frame = frame / ICMPv6NDOptSrcLLAddr(lladdr=own_mac)
    return bytes(frame)


def _parse_arp(frame: bytes, target: ipaddress.IPv4Address) -> str | None:
    if len(frame) < 42:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if (htype, ptype, hlen, plen) != (ARPHRD_ETHER, 0x0800, 6, 4):
        return None
    if op not in (ARP_REQUEST, ARP_REPLY) or frame[28:32] != target.packed:
        return None
    return _mac(frame[22:28])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _options(data: bytes) -> list[tuple[int, bytes]] | None:
    """The (type, body) of each ND option (RFC 4861 §4.6), or None when one is malformed."""
    found: list[tuple[int, bytes]] = []
    at = 0
    while at + 2 <= len(data):
        kind, units = data[at], data[at + 1]
        if units == 0 or at + units * 8 > len(data):
            return None  # §7.1.2: an option of length zero invalidates the message
        found.append((kind, data[at + 2 : at + units * 8]))
        at += units * 8
    return found


def _parse_na(frame: bytes, target: ipaddress.IPv6Address) -> str | None:
    if len(frame) < 14 + 40 + 24:
        return None
    header, body = frame[14:54], frame[54:]
    length, next_header, hop_limit = struct.unpack_from("!HBB", header, 4)
    if next_header != IPPROTO_ICMPV6 or hop_limit != 255 or length > len(body):
        return None
    icmp = body[:length]  # an Ethernet frame may be padded
    if len(icmp) < 24 or (icmp[0], icmp[1]) != (ND_NEIGHBOR_ADVERT, 0):
        return None
    if icmp[8:24] != target.packed:
        return None
    pseudo = header[8:40] + struct.pack("!IxxxB", length, IPPROTO_ICMPV6)
    if _checksum(pseudo + icmp) != 0xFFFF:
        return None
    options = _options(icmp[24:])
    if options is None:
        return None
    for kind, value in options:
        if kind == ND_OPT_TARGET_LINKADDR and len(value) >= 6:
            return _mac(value[:6])
    return _mac(frame[6:12])


def parse_answer(frame: bytes, target: IPAddress, own_mac: str) -> Answer | None:
    """The station that `frame` (an Ethernet frame) shows holding `target`, or None when it
    is no answer: not an ARP packet with sender `target` (IPv4) or a valid Neighbor
    Advertisement for `target` (IPv6), or sent by `own_mac`."""
    if len(frame) < 14 or _mac(frame[6:12]) == own_mac:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    if isinstance(target, ipaddress.IPv4Address):
        mac = _parse_arp(frame, target) if ethertype == ETH_P_ARP else None
    else:
        mac = _parse_na(frame, target) if ethertype == ETH_P_IPV6 else None
    if mac is None or mac in (own_mac, ZERO_MAC):
        return None
    return Answer(mac, target)


def _where(netns: str | None) -> str:
    return f"netns '{netns}'" if netns else "this process's netns"


class _Unusable(NodeError):
    """A link that exists but cannot be probed (the cause of a ProbeError)."""


def _check_link(sock: socket.socket, dev: str) -> None:
    """Raise OSError or _Unusable unless `dev` is an up link that resolves
    neighbours (the ioctl runs in the socket's namespace: sock_do_ioctl -> dev_ioctl)."""
    request = struct.pack("16s24x", dev.encode())
    flags = struct.unpack_from("16xH", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[0]
    if not flags & IFF_UP:
        raise _Unusable("link is down")
    if flags & IFF_NOARP:
        raise _Unusable("link does not resolve neighbours (NOARP)")


def _listen(
    sock: socket.socket, deadline: float, target: IPAddress, own_mac: str
) -> Iterator[Answer]:
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            frame, address = sock.recvfrom(65535)
        except TimeoutError:
            return
        if address[2] == PACKET_OUTGOING:
            continue
        answer = parse_answer(frame, target, own_mac)
        if answer is not None:
            yield answer


def _request(own_mac: str, src: IPAddress | None, target: IPAddress) -> bytes:
    if isinstance(target, ipaddress.IPv4Address):
        if src is None or isinstance(src, ipaddress.IPv4Address):
            return arp_request(own_mac, src, target)
    elif src is None or isinstance(src, ipaddress.IPv6Address):
        return neighbor_solicitation(own_mac, src, target)
    raise ValueError(f"source {src} and target {target} are of different families")


def resolve(
    access: Namespaces,
    netns: str | None,
    dev: str,
    target: IPAddress,
    *,
    src: IPAddress | None = None,
    timing: Timing = DEFAULT_TIMING,
    rng: random.Random | None = None,
    until_first: bool = False,
) -> tuple[Answer, ...]:
    """Ask who has `target` on link `dev` in `netns` (None: this process's namespace) and
    return every distinct station that answered, in arrival order, `dev`'s own MAC
    excluded. `src` None sends an RFC 5227 / RFC 4862 probe, which disturbs no one's
    neighbour cache; with `src` (of `target`'s family) the request is an ordinary one.
    Sends up to `timing.tries` requests, none after an answer arrived, and then listens
    until `timing.answer_s` after the latest request, or stops at the first answer with
    `until_first` (when one station is enough to know: a gateway that answers, an address
    that is held): with no answer, it takes every window of `timing`.

    Raises ProbeError when the link is missing, down, not Ethernet or NOARP, and NetnsGone
    when the namespace does not exist."""
    if src is not None and src.version != target.version:
        raise ValueError(f"source {src} and target {target} are of different families")
    proto = ETH_P_ARP if target.version == 4 else ETH_P_IPV6
    failed = f"failed to probe for {target} on '{dev}' in {_where(netns)}"
    try:
        sock = access.open_socket(netns, socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as e:
        raise ProbeError(f"{failed}: {e.strerror or e}") from e
    found: dict[Answer, None] = {}
    try:
        _check_link(sock, dev)
        sock.bind((dev, proto))
        # The bound address of a packet socket carries the link's hardware type and address
        # (packet(7), sockaddr_ll): no netlink lookup needed.
        _, _, _, hatype, raw_mac = sock.getsockname()
        if hatype != ARPHRD_ETHER or len(raw_mac) != 6:
            raise _Unusable(f"not an Ethernet link (hardware type {hatype})")
        own_mac = _mac(raw_mac)
        request = _request(own_mac, src, target)
        first, windows = timing.windows(rng or random.Random())

        def hear(deadline: float) -> None:
            for answer in _listen(sock, deadline, target, own_mac):
                found[answer] = None
                if until_first:
                    return

        if first:
            hear(time.monotonic() + first)
        sent = 0.0
        for window in windows:
            if found:
                break
            sock.send(request)
            sent = time.monotonic()
            hear(sent + window)
        if found and not until_first:
            # Every station gets the whole answer window after the latest request, however
            # short the gap after it was (the `fast` profile's requests are 20 ms apart).
            hear(sent + timing.answer_s)
    except _Unusable as e:
        raise ProbeError(f"{failed}: {e}") from None
    except OSError as e:
        raise ProbeError(f"{failed}: {e.strerror or e}") from e
    finally:
        access.discard(sock)
    return tuple(found)
