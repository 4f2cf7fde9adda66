"""The conflict watcher's pure parts: which frames are claims (the rules bpf/conflict_watch.c
applies too), the eBPF program's map keys and events, and where bcc finds kernel headers."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address as v4
from ipaddress import IPv6Address as v6
from pathlib import Path

import pytest

from spidernet.node.detect.kheaders import Headers, HeadersMissing, kernel_headers
from spidernet.node.detect.sniff import Claim, parse_claim
from spidernet.node.detect.watch import EVENT, decode_event, map_key, normal_mac

ROGUE, THIRD = "02:00:00:00:00:02", "02:00:00:00:00:03"
OWNED4, OTHER4 = v4("192.0.2.10"), v4("192.0.2.66")
OWNED6, SOURCE6, ALL_NODES = v6("2001:db8:1::10"), v6("fe80::2"), v6("ff02::1")


def raw(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def arp(op: int, sha: str, spa: v4, tpa: v4, *, htype: int = 1) -> bytes:
    ether = raw("ff:ff:ff:ff:ff:ff") + raw(ROGUE) + b"\x08\x06"
    body = struct.pack("!HHBBH", htype, 0x0800, 6, 4, op) + raw(sha) + spa.packed
    return ether + body + bytes(6) + tpa.packed + bytes(18)  # padded to 60 bytes


def na(
    target: v6,
    options: bytes = b"",
    *,
    hlim: int = 255,
    code: int = 0,
    kind: int = 136,
    pad: int = 0,
    length: int | None = None,
) -> bytes:
    """A Neighbor Advertisement from ROGUE (checksum zero: the watcher does not check it)."""
    message = bytes([kind, code, 0, 0, 0x20, 0, 0, 0]) + target.packed + options
    size = len(message) if length is None else length
    header = struct.pack("!IHBB", 0x60000000, size, 58, hlim) + SOURCE6.packed + ALL_NODES.packed
    ether = raw("33:33:00:00:00:01") + raw(ROGUE) + b"\x86\xdd"
    return ether + header + message + bytes(pad)


def tlla(mac: str) -> bytes:
    return b"\x02\x01" + raw(mac)


@pytest.mark.parametrize("op", [1, 2], ids=["request", "reply"])
def test_an_arp_packet_claims_its_sender_address(op: int) -> None:
    assert parse_claim(arp(op, THIRD, OWNED4, OWNED4)) == Claim(OWNED4, THIRD)
    assert parse_claim(arp(op, THIRD, OWNED4, OTHER4)) == Claim(OWNED4, THIRD)


@pytest.mark.parametrize(
    "frame",
    [
        arp(1, ROGUE, v4("0.0.0.0"), OWNED4),  # an RFC 5227 probe
        arp(1, "00:00:00:00:00:00", OWNED4, OWNED4),  # no station
        arp(3, ROGUE, OWNED4, OWNED4),  # RARP request, not ARP's
        arp(1, ROGUE, OWNED4, OWNED4, htype=6),  # not Ethernet
        arp(1, ROGUE, OWNED4, OWNED4)[:41],  # short
        b"",
    ],
    ids=["probe", "zero-mac", "rarp", "htype", "short", "empty"],
)
def test_frames_that_claim_no_ipv4_address(frame: bytes) -> None:
    assert parse_claim(frame) is None


def test_an_advertisement_claims_its_target() -> None:
    assert parse_claim(na(OWNED6)) == Claim(OWNED6, ROGUE)  # no option: the Ethernet source
    assert parse_claim(na(OWNED6, tlla(THIRD))) == Claim(OWNED6, THIRD)
    assert parse_claim(na(OWNED6, tlla(THIRD), pad=8)) == Claim(OWNED6, THIRD)  # padded
    # Another option first (a nonce, RFC 3971 type 14, two units), then the address.
    nonce = b"\x0e\x02" + bytes(14)
    assert parse_claim(na(OWNED6, nonce + tlla(THIRD))) == Claim(OWNED6, THIRD)
    # A source link-layer option (type 1) is not the target's.
    assert parse_claim(na(OWNED6, b"\x01\x01" + raw(THIRD))) == Claim(OWNED6, ROGUE)


@pytest.mark.parametrize(
    "frame",
    [
        na(OWNED6, hlim=64),  # RFC 4861 §7.1.2: hop limit 255
        na(OWNED6, code=1),
        na(OWNED6, kind=135),  # a solicitation names no holder
        na(OWNED6, b"\x02\x00" + bytes(6)),  # an option of length zero
        na(OWNED6, b"\x02\x02" + raw(THIRD)),  # an option past the message's end
        na(OWNED6, length=20),  # shorter than an advertisement
        na(OWNED6, length=40),  # longer than the frame
        na(OWNED6, tlla("00:00:00:00:00:00")),
        na(OWNED6)[:60],
    ],
    ids=["hlim", "code", "ns", "zero-option", "long-option", "short", "long", "zero-mac", "cut"],
)
def test_frames_that_claim_no_ipv6_address(frame: bytes) -> None:
    assert parse_claim(frame) is None


def test_options_past_the_eighth_are_not_read() -> None:
    filler = b"\x0e\x01" + bytes(6)
    assert parse_claim(na(OWNED6, filler * 7 + tlla(THIRD))) == Claim(OWNED6, THIRD)
    assert parse_claim(na(OWNED6, filler * 8 + tlla(THIRD))) == Claim(OWNED6, ROGUE)


def test_map_keys_hold_ipv4_as_mapped_ipv6() -> None:
    assert map_key(OWNED4) == v6(f"::ffff:{OWNED4}").packed
    assert map_key(OWNED6) == OWNED6.packed


@pytest.mark.parametrize(("address", "family"), [(OWNED4, 4), (OWNED6, 6)])
def test_an_event_decodes_to_its_claim_and_wall_time(address: v4 | v6, family: int) -> None:
    event = EVENT.pack(5_000_000_000, 3, family, map_key(address), raw(THIRD))
    assert EVENT.size == 40
    claim, seen_at = decode_event(event, now_wall=1000.0, now_mono_ns=7_000_000_000)
    assert claim == Claim(address, THIRD)
    assert seen_at == pytest.approx(998.0)


def test_macs_are_normalised() -> None:
    assert normal_mac("02:AB:00:00:00:0F") == "02:ab:00:00:00:0f"
    assert normal_mac("02-ab-00-00-00-0f") == "02:ab:00:00:00:0f"
    for bad in ("02:ab:00:00:00", "02:ab:00:00:00:0f:00", "2:ab:0:0:0:f", "zz:ab:00:00:00:0f"):
        with pytest.raises(ValueError, match="MAC"):
            normal_mac(bad)


# -- kernel headers ----------------------------------------------------------------------


def debian_headers(src: Path, release: str) -> tuple[Path, Path]:
    """linux-headers-RELEASE-amd64 (generated) naming linux-headers-RELEASE-common."""
    base = release.removesuffix("-amd64")
    build, common = src / f"linux-headers-{release}", src / f"linux-headers-{base}-common"
    (build / "include" / "generated").mkdir(parents=True)
    (build / "include" / "generated" / "autoconf.h").touch()
    (build / "arch" / "x86" / "include" / "generated").mkdir(parents=True)
    (build / "Makefile").write_text(f"include {common}/Makefile\n")
    (common / "include" / "linux").mkdir(parents=True)
    return build, common


def find(tmp_path: Path, release: str = "6.18.0-test", **environ: str) -> Headers:
    return kernel_headers(
        release,
        environ,
        modules=tmp_path / "modules",
        sources=tmp_path / "src",
        kheaders=tmp_path / "kheaders.tar.xz",
    )


def test_debian_split_headers_point_bcc_at_the_source_with_the_generated_half(
    tmp_path: Path,
) -> None:
    build, common = debian_headers(tmp_path / "src", "6.1.0-9-amd64")
    newer, newer_common = debian_headers(tmp_path / "src", "6.1.0-56-amd64")
    arch = newer / "arch" / "x86" / "include" / "generated"
    assert find(tmp_path) == Headers(
        {"BCC_KERNEL_SOURCE": str(newer_common)},
        (
            f"-I{arch}/uapi",
            f"-I{arch}",
            f"-I{newer}/include",
            f"-I{newer}/include/generated/uapi",
        ),
        f"{newer_common} and {newer}",
    )
    # The running kernel's own headers win over newer ones.
    assert find(tmp_path, "6.1.0-9-amd64").env == {"BCC_KERNEL_SOURCE": str(common)}
    assert f"-I{build}/include" in find(tmp_path, "6.1.0-9-amd64").cflags


def test_bccs_own_places_and_the_environment_come_first(tmp_path: Path) -> None:
    debian_headers(tmp_path / "src", "6.1.0-56-amd64")
    assert find(tmp_path, BCC_KERNEL_SOURCE="/opt/linux") == Headers(
        {}, (), "/opt/linux (BCC_KERNEL_SOURCE)"
    )
    (tmp_path / "kheaders.tar.xz").touch()
    assert find(tmp_path) == Headers({}, (), str(tmp_path / "kheaders.tar.xz"))
    build = tmp_path / "modules" / "6.18.0-test" / "build"
    build.mkdir(parents=True)
    assert find(tmp_path) == Headers({}, (), str(build))


def test_no_headers_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "src" / "linux-headers-6.1.0-56-common").mkdir(parents=True)  # no build dir
    with pytest.raises(HeadersMissing, match="apt-get install linux-headers-amd64"):
        find(tmp_path)
