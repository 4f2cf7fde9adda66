"""The probes' frames, byte by byte, and which frames count as answers."""

from __future__ import annotations

import ipaddress
import struct
from ipaddress import IPv4Address as v4
from ipaddress import IPv6Address as v6

import pytest

from spidernet.node.detect.probe import (
    Answer,
    Timing,
    arp_request,
    neighbor_solicitation,
    parse_answer,
    resolve,
    solicited_node,
)

ip = ipaddress.ip_address

OWN, OTHER, THIRD = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
POD4, TARGET4 = v4("192.0.2.10"), v4("192.0.2.1")
POD6, TARGET6 = v6("2001:db8:1::10"), v6("2001:db8:1::1a:2b3c")
ALL_NODES = v6("ff02::1")


def mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def raw(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def checksum(src: v6, dst: v6, message: bytes) -> int:
    """RFC 4443 §2.3 over the pseudo-header (RFC 8200 §8.1): 0 for a correct message."""
    data = src.packed + dst.packed + struct.pack("!I3xB", len(message), 58) + message
    data += b"\0" * (len(data) % 2)
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total ^ 0xFFFF


def arp(op: int, sha: str, spa: v4, tpa: v4, *, eth_src: str | None = None) -> bytes:
    ether = raw("ff:ff:ff:ff:ff:ff") + raw(eth_src or sha) + b"\x08\x06"
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + raw(sha) + spa.packed
    return ether + body + bytes(6) + tpa.packed + bytes(18)  # padded to 60 bytes


def icmpv6(
    eth_src: str, src: v6, dst: v6, kind: int, body: bytes, *, hlim: int = 255, good: bool = True
) -> bytes:
    message = bytes([kind, 0, 0, 0]) + body
    total = checksum(src, dst, message) ^ (0 if good else 1)
    message = message[:2] + struct.pack("!H", total) + message[4:]
    header = struct.pack("!IHBB", 0x60000000, len(message), 58, hlim) + src.packed + dst.packed
    return raw("33:33:00:00:00:01") + raw(eth_src) + b"\x86\xdd" + header + message


def na(eth_src: str, target: v6, *options: bytes, hlim: int = 255, good: bool = True) -> bytes:
    body = struct.pack("!I", 0x60000000) + target.packed + b"".join(options)  # S and O set
    return icmpv6(eth_src, target, ALL_NODES, 136, body, hlim=hlim, good=good)


def tlla(lladdr: str) -> bytes:
    return bytes([2, 1]) + raw(lladdr)


def test_an_arp_probe_has_sender_address_zero() -> None:
    frame = arp_request(OWN, None, TARGET4)
    assert (mac(frame[0:6]), mac(frame[6:12]), frame[12:14]) == (
        "ff:ff:ff:ff:ff:ff",
        OWN,
        b"\x08\x06",
    )
    assert struct.unpack("!HHBBH", frame[14:22]) == (1, 0x0800, 6, 4, 1)
    sha, spa, tha, tpa = frame[22:28], frame[28:32], frame[32:38], frame[38:42]
    assert (mac(sha), ip(spa), tha, ip(tpa)) == (OWN, v4("0.0.0.0"), bytes(6), TARGET4)


def test_an_arp_request_from_a_source_names_it() -> None:
    frame = arp_request(OWN, POD4, TARGET4)
    assert (mac(frame[22:28]), ip(frame[28:32]), ip(frame[38:42])) == (OWN, POD4, TARGET4)


def test_the_solicited_node_group_takes_the_low_24_bits() -> None:
    assert solicited_node(TARGET6) == (v6("ff02::1:ff1a:2b3c"), "33:33:ff:1a:2b:3c")


@pytest.mark.parametrize("src", [None, POD6], ids=["dad", "from-source"])
def test_a_neighbor_solicitation_goes_to_the_solicited_node_group(src: v6 | None) -> None:
    frame = neighbor_solicitation(OWN, src, TARGET6)
    assert (mac(frame[0:6]), mac(frame[6:12]), frame[12:14]) == (
        "33:33:ff:1a:2b:3c",
        OWN,
        b"\x86\xdd",
    )
    header, icmp = frame[14:54], frame[54:]
    length, next_header, hop_limit = struct.unpack("!HBB", header[4:8])
    assert (length, next_header, hop_limit) == (len(icmp), 58, 255)
    source, destination = v6(header[8:24]), v6(header[24:40])
    assert (source, destination) == (src or v6("::"), v6("ff02::1:ff1a:2b3c"))
    assert (icmp[0], icmp[1], icmp[4:8], ip(icmp[8:24])) == (135, 0, bytes(4), TARGET6)
    assert checksum(source, destination, icmp) == 0
    # RFC 4862 §5.4.2: no Source Link-Layer Address option from ::; RFC 4861 §7.2.2: one
    # otherwise.
    assert icmp[24:] == (b"" if src is None else bytes([1, 1]) + raw(OWN))


def test_an_arp_reply_or_request_from_the_address_is_an_answer() -> None:
    assert parse_answer(arp(2, OTHER, TARGET4, POD4), TARGET4, OWN) == Answer(OTHER, TARGET4)
    # The holder announcing its address, or resolving someone else's.
    assert parse_answer(arp(1, OTHER, TARGET4, TARGET4), TARGET4, OWN) == Answer(OTHER, TARGET4)
    assert parse_answer(arp(1, OTHER, TARGET4, POD4), TARGET4, OWN) == Answer(OTHER, TARGET4)
    # The station is the ARP sender, not the Ethernet source (a proxy, a bridge).
    frame = arp(2, OTHER, TARGET4, POD4, eth_src=THIRD)
    assert parse_answer(frame, TARGET4, OWN) == Answer(OTHER, TARGET4)
    # Our own request, built by the module, read back from another station.
    assert parse_answer(arp_request(OTHER, TARGET4, POD4), TARGET4, OWN) == Answer(OTHER, TARGET4)


@pytest.mark.parametrize(
    "frame",
    [
        arp(1, OTHER, v4("0.0.0.0"), TARGET4),  # another node's probe: it holds nothing yet
        arp(2, OTHER, POD4, TARGET4),  # an answer about another address
        arp(2, OWN, TARGET4, POD4),  # our own frame
        arp(2, OWN, TARGET4, POD4, eth_src=OTHER),  # our own MAC claimed
        arp(2, "00:00:00:00:00:00", TARGET4, POD4, eth_src=OTHER),
        arp(3, OTHER, TARGET4, POD4),  # RARP request
        arp(2, OTHER, TARGET4, POD4)[:40],  # truncated
        na(OTHER, TARGET6, tlla(OTHER)),  # IPv6, for an IPv4 target
    ],
    ids=["probe", "other-address", "own", "own-mac", "zero-mac", "rarp", "short", "na"],
)
def test_other_arp_frames_are_no_answer(frame: bytes) -> None:
    assert parse_answer(frame, TARGET4, OWN) is None


def test_a_neighbor_advertisement_for_the_target_is_an_answer() -> None:
    # The station is the Target Link-Layer Address option, else the Ethernet source.
    assert parse_answer(na(THIRD, TARGET6, tlla(OTHER)), TARGET6, OWN) == Answer(OTHER, TARGET6)
    assert parse_answer(na(OTHER, TARGET6), TARGET6, OWN) == Answer(OTHER, TARGET6)
    # Other options before it; a frame padded past the IPv6 payload.
    nonce = bytes([14, 1]) + bytes(6)
    frame = na(THIRD, TARGET6, nonce, tlla(OTHER)) + bytes(8)
    assert parse_answer(frame, TARGET6, OWN) == Answer(OTHER, TARGET6)


@pytest.mark.parametrize(
    "frame",
    [
        na(OTHER, POD6, tlla(OTHER)),  # about another address
        na(OTHER, TARGET6, tlla(OTHER), hlim=64),  # RFC 4861 §7.1.2: hop limit 255 only
        na(OTHER, TARGET6, tlla(OTHER), good=False),  # bad checksum
        na(OTHER, TARGET6, bytes([2, 0]) + raw(OTHER)),  # an option of length zero
        na(OWN, TARGET6),  # our own frame
        na(THIRD, TARGET6, tlla(OWN)),  # our own MAC claimed
        icmpv6(OTHER, v6("::"), ALL_NODES, 135, bytes(4) + TARGET6.packed),  # a DAD probe
        na(OTHER, TARGET6, tlla(OTHER))[:70],  # truncated
        arp(2, OTHER, TARGET4, POD4),  # ARP, for an IPv6 target
    ],
    ids=[
        "other-address",
        "hop-limit",
        "checksum",
        "zero-option",
        "own",
        "own-mac",
        "ns",
        "short",
        "arp",
    ],
)
def test_other_ipv6_frames_are_no_answer(frame: bytes) -> None:
    assert parse_answer(frame, TARGET6, OWN) is None


def test_timing_needs_a_try_and_a_wait() -> None:
    assert Timing() == Timing(3, 0.2)
    for tries, wait_s in ((0, 0.2), (3, 0.0)):
        with pytest.raises(ValueError, match="tries >= 1 and wait_s > 0"):
            Timing(tries, wait_s)


class NoAccess:
    """A `Namespaces` that must not be used."""

    def open_socket(self, *args: object) -> None:
        raise AssertionError("a socket was opened")


def test_a_source_of_the_other_family_fails_before_any_socket() -> None:
    with pytest.raises(ValueError, match="different families"):
        resolve(NoAccess(), None, "eth0", TARGET4, src=POD6)  # type: ignore[arg-type]


# -- timing profiles -------------------------------------------------------------------------


def test_the_fast_profile_gives_each_of_three_requests_100_ms_in_140() -> None:
    import random

    from spidernet.node.detect.probe import profile

    for version in (4, 6):
        timing = profile("fast", version)
        first, windows = timing.windows(random.Random(1))
        assert (first, windows) == (0.0, [0.02, 0.02, 0.1])
        assert timing.answer_s == 0.1
        # The first request's answers count until the end: 140 ms; the last's for 100 ms.
        assert sum(windows) - sum(windows[:2]) >= 0.1
        assert abs(sum(windows) - 0.14) < 1e-9


def test_the_rfc_profiles_follow_rfc_5227_and_rfc_4862() -> None:
    import random

    from spidernet.node.detect.probe import profile

    rng = random.Random(7)
    for _ in range(50):
        first, windows = profile("rfc", 4).windows(rng)
        # PROBE_WAIT, then PROBE_NUM probes PROBE_MIN..PROBE_MAX apart, ANNOUNCE_WAIT last.
        assert 0 <= first <= 1.0
        assert len(windows) == 3
        assert all(1.0 <= w <= 2.0 for w in windows[:2])
        assert windows[2] == 2.0
        first6, windows6 = profile("rfc", 6).windows(rng)
        # MAX_RTR_SOLICITATION_DELAY, then DupAddrDetectTransmits NS and RetransTimer.
        assert 0 <= first6 <= 1.0
        assert windows6 == [1.0]


def test_an_unknown_profile_is_refused_by_name() -> None:
    import pytest

    from spidernet.node.detect.probe import profile

    with pytest.raises(ValueError, match="unknown probe profile 'slow' \\(known: fast, rfc\\)"):
        profile("slow", 4)
