"""When a probe sends its requests and how long it listens, on a virtual clock: stations
that answer each request after a latency of their own, on a socket that is not a kernel's.
(The real socket and segment are the netns lane's, tests/netns/test_probe.py.)"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest

from spidernet.node.detect import probe
from spidernet.node.detect.probe import Answer, Timing, profile, resolve

OWN = "02:00:00:00:00:01"
NEAR, FAR = "02:00:00:00:00:02", "02:00:00:00:00:03"
TARGET = IPv4Address("192.0.2.1")


def reply(mac: str) -> bytes:
    """An ARP reply (RFC 826) from `mac` for TARGET, in its Ethernet frame."""
    own, station = bytes.fromhex(OWN.replace(":", "")), bytes.fromhex(mac.replace(":", ""))
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + station + TARGET.packed + own + bytes(4)
    return own + station + b"\x08\x06" + arp


@dataclass
class Segment:
    """A virtual clock, and a socket on it: each request sent is answered by every station
    after that station's latency (seconds)."""

    latency: dict[str, float]
    now: float = 0.0
    sent: list[float] = field(default_factory=list)
    due: list[tuple[float, bytes]] = field(default_factory=list)
    timeout: float = 0.0

    def monotonic(self) -> float:
        return self.now

    # -- the socket --
    def bind(self, address: object) -> None:
        pass

    def getsockname(self) -> tuple[str, int, int, int, bytes]:
        return ("eth0", 0x0806, 0, 1, bytes.fromhex(OWN.replace(":", "")))

    def settimeout(self, seconds: float) -> None:
        self.timeout = seconds

    def send(self, frame: bytes) -> None:
        self.sent.append(self.now)
        self.due += [(self.now + after, reply(mac)) for mac, after in self.latency.items()]
        self.due.sort()

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int, int, int, bytes]]:
        if not self.due or self.due[0][0] > self.now + self.timeout:
            self.now += self.timeout
            raise TimeoutError
        at, frame = self.due.pop(0)
        self.now = max(self.now, at)
        return frame, ("eth0", 0x0806, 0, 1, b"")

    # -- the Namespaces --
    def open_socket(self, *args: object) -> Segment:
        return self

    def discard(self, sock: object) -> None:
        pass


def run(
    monkeypatch: pytest.MonkeyPatch, latency: dict[str, float], timing: Timing, **kw: bool
) -> tuple[Segment, tuple[Answer, ...]]:
    seg = Segment(latency)
    monkeypatch.setattr(probe, "time", seg)
    monkeypatch.setattr(probe, "_check_link", lambda sock, dev: None)
    access: socket.socket = seg  # type: ignore[assignment]
    answers = resolve(access, None, "eth0", TARGET, timing=timing, **kw)  # type: ignore[arg-type]
    return seg, answers


FAST = profile("fast", 4)


def test_a_silent_address_gets_three_requests_20_ms_apart_and_140_ms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seg, answers = run(monkeypatch, {}, FAST)
    assert answers == ()
    assert seg.sent == pytest.approx([0.0, 0.02, 0.04])
    assert seg.now == pytest.approx(0.14)


def test_a_holder_that_answers_later_than_the_gap_is_still_heard_and_named_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # NEAR answers at once; FAR 50 ms after each request, after the first gap of 20 ms:
    # no request follows NEAR's answer, and the probe listens 100 ms after its one request.
    seg, answers = run(monkeypatch, {NEAR: 0.001, FAR: 0.05}, FAST)
    assert answers == (Answer(NEAR, TARGET), Answer(FAR, TARGET))
    assert seg.sent == [0.0]
    assert seg.now == pytest.approx(0.1)


def test_one_answer_is_enough_when_asked_to_stop_at_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seg, answers = run(monkeypatch, {NEAR: 0.001, FAR: 0.05}, FAST, until_first=True)
    assert answers == (Answer(NEAR, TARGET),)
    assert seg.now == pytest.approx(0.001)


@pytest.mark.parametrize("latency", [0.03, 0.099, 0.139])
def test_every_request_has_at_least_100_ms_and_the_first_140(
    monkeypatch: pytest.MonkeyPatch, latency: float
) -> None:
    # A slow holder's answer to the first request is heard up to 140 ms after it.
    seg, answers = run(monkeypatch, {FAR: latency}, FAST, until_first=True)
    assert answers == (Answer(FAR, TARGET),)
    assert seg.now == pytest.approx(latency)


def test_a_holder_slower_than_every_window_is_not_heard(monkeypatch: pytest.MonkeyPatch) -> None:
    seg, answers = run(monkeypatch, {FAR: 0.141}, FAST)
    assert answers == ()
    assert len(seg.sent) == 3
