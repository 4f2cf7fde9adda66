"""Watch a link for stations that claim addresses belonging to someone else: the passive
half of IP conflict detection (probe.py is the active half).

The caller names each watched address and the MAC that owns it; a watcher reports every
ARP packet (request or reply, sender = the address) and every IPv6 Neighbor
Advertisement (target = the address) the link receives from another MAC, as a `Conflict`.
What counts as a claim is in sniff.py's doc; the two backends apply the same rules:
- "ebpf": bpf/conflict_watch.c, compiled by bcc, runs at the link's tc ingress hook (a
  clsact qdisc, a direct-action filter that always passes the frame). The kernel looks
  each claim up in the program's `watched` map and wakes us only for a conflict, through
  a BPF ring buffer (a perf buffer on kernels without one, before 5.8).
- "scapy": a packet socket reads the link's ARP and NA frames (sniff.py), and the owner
  check runs here. The fallback wherever bcc, kernel headers or the attachment fail;
  `open_watcher` says why through `log`.
The program is attached through a netlink socket opened in the link's namespace
(`Namespaces.netlink`), and removed by `close` together with the clsact qdisc when the
watcher added it; no thread of ours enters a namespace (STYLE.md §5).
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import ipaddress
import itertools
import math
import os
import re
import struct
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from spidernet.node.access.base import Namespaces
from spidernet.node.errors import NodeError
from spidernet.node.netlink.errors import NetlinkMissing
from spidernet.node.netns import NetnsGone

from .announce import IPAddress
from .kheaders import HeadersMissing, machine_headers
from .sniff import Claim, Sniffer

PROGRAM = Path(__file__).resolve().parents[2] / "bpf" / "conflict_watch.c"
FUNCTION = b"conflict_watch"
PREFERENCES = ("auto", "ebpf", "scapy")
# Compiles the program with a perf buffer instead of a ring buffer (bpf/conflict_watch.c).
PERF_OUTPUT_FLAG = "-DCW_PERF_OUTPUT"
_labels = itertools.count(1)
# The configuration a configured kernel tree carries (bcc includes it through kconfig.h).
MAC = re.compile(r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}")


class WatchError(NodeError):
    """Raised when a link cannot be watched: it is missing, its socket failed, or (with
    prefer="ebpf") the eBPF program cannot run there."""


class EbpfUnavailable(WatchError):
    """Raised when the eBPF backend cannot run; `reason` says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(f"{message}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Conflict:
    """A claim to a watched address by a MAC other than its owner's."""

    address: IPAddress
    rogue_mac: str  # lower-case aa:bb:cc:dd:ee:ff, as owner_mac
    owner_mac: str
    seen_at: float  # when the link received the claim (time.time())
    link: str


class Watcher(Protocol):
    """A link watched for conflicting claims; `backend` is "ebpf" or "scapy". Use from one
    thread at a time."""

    backend: str

    def watch(self, address: IPAddress, owner_mac: str) -> None:
        """Report claims to `address` from any MAC but `owner_mac` (replaces its owner)."""
        ...

    def unwatch(self, address: IPAddress) -> None:
        """Stop reporting claims to `address` (not watched: nothing to do)."""
        ...

    def poll(self, timeout_s: float) -> list[Conflict]:
        """Wait up to `timeout_s` for conflicts; return every one reported by the time the
        first arrived, or [] when none came in time."""
        ...

    def close(self) -> None:
        """Stop watching and remove what the watcher added to the link (idempotent)."""
        ...


def _where(netns: str | None) -> str:
    return f"netns '{netns}'" if netns else "this process's netns"


def normal_mac(mac: str) -> str:
    """`mac` as lower-case aa:bb:cc:dd:ee:ff; raises ValueError for anything else."""
    if not MAC.fullmatch(mac):
        raise ValueError(f"not a MAC address: '{mac}'")
    return mac.replace("-", ":").lower()


class _Owners:
    """The watched addresses and their owners. Both backends check a claim against them
    once more as it is read: an address unwatched, or given to a new owner, since the frame
    arrived is no conflict."""

    def __init__(self, link: str) -> None:
        self.link = link
        self.owners: dict[IPAddress, str] = {}

    def conflict(self, claim: Claim, seen_at: float) -> Conflict | None:
        owner = self.owners.get(claim.address)
        if owner is None or owner == claim.mac:
            return None  # not (any more) watched, or the owner itself
        return Conflict(claim.address, claim.mac, owner, seen_at, self.link)


# -- the packet-socket backend ---------------------------------------------------------


class _SniffWatcher(_Owners):
    backend = "scapy"

    def __init__(self, sniffer: Sniffer, link: str) -> None:
        super().__init__(link)
        self._sniffer: Sniffer | None = sniffer

    def watch(self, address: IPAddress, owner_mac: str) -> None:
        self.owners[address] = normal_mac(owner_mac)

    def unwatch(self, address: IPAddress) -> None:
        self.owners.pop(address, None)

    def poll(self, timeout_s: float) -> list[Conflict]:
        if self._sniffer is None:
            raise WatchError(f"the watcher of '{self.link}' is closed")
        deadline = time.monotonic() + timeout_s
        while True:
            claims = self._sniffer.read(max(0.0, deadline - time.monotonic()))
            found = [c for c in (self.conflict(*seen) for seen in claims) if c is not None]
            if found or time.monotonic() >= deadline:
                return found

    def close(self) -> None:
        if self._sniffer is not None:
            self._sniffer.close()
            self._sniffer = None


def _open_sniff(access: Namespaces, netns: str | None, link: str) -> _SniffWatcher:
    try:
        return _SniffWatcher(Sniffer(access, netns, link), link)
    except OSError as e:
        raise WatchError(f"failed to watch '{link}' in {_where(netns)}: {e.strerror or e}") from e


# -- the eBPF backend --------------------------------------------------------------------


# struct conflict_event of bpf/conflict_watch.c, no implicit padding: ktime_ns u64,
# ifindex u32, family u8, 3 pad, addr[16], mac[6], 2 pad (bcc's own decoding does not know
# the kernel's u32-style types, DESIGN.md).
EVENT = struct.Struct("=QIB3x16s6s2x")


def map_key(address: IPAddress) -> bytes:
    """The program's map key for `address`: IPv4 as IPv4-mapped IPv6 (RFC 4291 §2.5.5.2)."""
    if isinstance(address, ipaddress.IPv4Address):
        return bytes(10) + b"\xff\xff" + address.packed
    return address.packed


def decode_event(raw: bytes, now_wall: float, now_mono_ns: int) -> tuple[Claim, float]:
    """The claim in one event of the program and when it was seen on the wall clock,
    given both clocks read together now: bpf_ktime_get_ns is CLOCK_MONOTONIC, as
    time.monotonic_ns."""
    ktime_ns, _, family, addr, mac = EVENT.unpack_from(raw)
    address: IPAddress = (
        ipaddress.IPv4Address(addr[12:]) if family == 4 else ipaddress.IPv6Address(addr)
    )
    text = ":".join(f"{b:02x}" for b in mac)
    return Claim(address, text), now_wall - (now_mono_ns - int(ktime_ns)) / 1e9


class _Function(Protocol):
    fd: int


class _Table(Protocol):
    """A bcc table: the `watched` hash map, or the `events` ring or perf buffer."""

    Key: type[ctypes.Structure]
    Leaf: type[ctypes.Structure]

    def __setitem__(self, key: ctypes.Structure, value: ctypes.Structure) -> None: ...
    def __delitem__(self, key: ctypes.Structure) -> None: ...
    def open_ring_buffer(self, callback: Callable[[object, int, int], int]) -> None: ...
    def open_perf_buffer(self, callback: Callable[[object, int, int], int]) -> None: ...


class _Module(Protocol):
    """What the watcher uses of a compiled bcc module (bcc.BPF; bcc has no types)."""

    SCHED_CLS: int

    def __getitem__(self, name: bytes) -> _Table: ...
    def load_func(self, name: bytes, prog_type: int) -> _Function: ...
    def ring_buffer_poll(self, timeout: int) -> None: ...
    def perf_buffer_poll(self, timeout: int) -> None: ...
    def cleanup(self) -> None: ...


@dataclass(frozen=True)
class _Attachment:
    """What the watcher added to a link, to remove on close."""

    netns: str | None
    link: str
    ifindex: int
    label: str  # the filter's name (TCA_BPF_NAME)
    created_qdisc: bool


def _detach(access: Namespaces, at: _Attachment) -> None:
    """Remove the filter, and the qdisc if the watcher added it. A link or namespace gone
    (or a link replaced by another of the same name) took them with it."""
    try:
        with access.netlink(at.netns) as nl:
            if nl.index(at.link) != at.ifindex:
                return
            nl.detach_bpf_ingress(at.link, at.label)
            if at.created_qdisc:
                nl.delete_clsact(at.link)
    except (NetlinkMissing, NetnsGone):
        return


class _EbpfWatcher(_Owners):
    backend = "ebpf"

    def __init__(self, access: Namespaces, bpf: _Module, at: _Attachment, *, perf: bool) -> None:
        super().__init__(at.link)
        self._access = access
        self._bpf: _Module | None = bpf
        self._attachment = at
        self._perf = perf
        self._table = bpf[b"watched"]
        self._events = bpf[b"events"]
        self._raw: list[bytes] = []
        # Events the program sent: claims by a MAC other than the owner's when the kernel
        # saw them (poll drops the ones whose address or owner changed since).
        self.kernel_events = 0

    def _on_event(self, _ctx: object, data: int, size: int) -> int:
        # bcc calls this from inside poll(); the decoding waits until the poll returns.
        self._raw.append(ctypes.string_at(data, size))
        return 0

    def open_events(self) -> None:
        if self._perf:
            self._events.open_perf_buffer(self._on_event)
        else:
            self._events.open_ring_buffer(self._on_event)

    def _module(self) -> _Module:
        if self._bpf is None:
            raise WatchError(f"the watcher of '{self.link}' is closed")
        return self._bpf

    def watch(self, address: IPAddress, owner_mac: str) -> None:
        self._module()
        mac = normal_mac(owner_mac)
        key = self._table.Key.from_buffer_copy(map_key(address))
        value = self._table.Leaf.from_buffer_copy(bytes.fromhex(mac.replace(":", "")))
        try:
            self._table[key] = value
        except Exception as e:  # bcc: Exception("Could not update table: ...")
            raise WatchError(f"failed to watch {address} on '{self.link}': {e}") from e
        self.owners[address] = mac

    def unwatch(self, address: IPAddress) -> None:
        self._module()
        self.owners.pop(address, None)
        with suppress(KeyError):
            del self._table[self._table.Key.from_buffer_copy(map_key(address))]

    def poll(self, timeout_s: float) -> list[Conflict]:
        bpf = self._module()
        wait = bpf.perf_buffer_poll if self._perf else bpf.ring_buffer_poll
        deadline = time.monotonic() + timeout_s
        timeout_ms = 0
        while True:
            wait(timeout_ms)
            raw, self._raw = self._raw, []
            self.kernel_events += len(raw)
            wall, mono = time.time(), time.monotonic_ns()
            seen = (self.conflict(*decode_event(event, wall, mono)) for event in raw)
            found = [c for c in seen if c is not None]
            left = deadline - time.monotonic()
            if found or left <= 0:
                return found
            timeout_ms = max(1, math.ceil(left * 1000))

    def close(self) -> None:
        if self._bpf is None:
            return
        try:
            _detach(self._access, self._attachment)
        finally:
            # bcc closes a perf buffer's readers when its table object goes (on cleanup);
            # one still held here would try again, on a closed map, whenever it went.
            del self._table, self._events
            _release(self._bpf)
            self._bpf = None


def _release(bpf: _Module) -> None:
    """Close the module's descriptors; bcc registered its cleanup to run at exit, which
    would keep the module alive until then."""
    bpf.cleanup()
    atexit.unregister(bpf.cleanup)


def _compile(
    bpf_class: Callable[..., _Module], text: bytes, cflags: list[str]
) -> tuple[_Module, bool]:
    """The compiled module, and whether it reports through a perf buffer: a ring buffer
    first, then (a kernel before 5.8 refuses the ring buffer map) a perf buffer."""
    try:
        return bpf_class(text=text, cflags=cflags), False
    except Exception:
        try:
            return bpf_class(text=text, cflags=[*cflags, PERF_OUTPUT_FLAG]), True
        except Exception:
            pass
        raise


def _attach(
    access: Namespaces, bpf: _Module, netns: str | None, link: str, ifindex: int, *, perf: bool
) -> _EbpfWatcher:
    """Load the program and attach it to `link`'s ingress; raises bcc's Exception,
    NetlinkFailure or NetnsGone, having removed what it added."""
    fn = bpf.load_func(FUNCTION, bpf.SCHED_CLS)  # the verifier runs here
    label = f"spidernet-watch-{os.getpid()}-{next(_labels)}"
    with access.netlink(netns) as nl:
        if nl.index(link) != ifindex:
            raise NetlinkMissing("find", f"link '{link}' in {_where(netns)}", errno.ENODEV)
        created = nl.add_clsact(link)
        try:
            nl.attach_bpf_ingress(link, fn.fd, label)
        except BaseException:
            if created:
                nl.delete_clsact(link)
            raise
    attachment = _Attachment(netns, link, ifindex, label, created)
    try:
        watcher = _EbpfWatcher(access, bpf, attachment, perf=perf)
        watcher.open_events()
    except BaseException:
        _detach(access, attachment)
        raise
    return watcher


def _open_ebpf(
    access: Namespaces, netns: str | None, link: str, program: Path, log: Callable[[str], object]
) -> _EbpfWatcher:
    where = _where(netns)
    failed = f"failed to watch '{link}' in {where} with eBPF"
    start = time.monotonic()
    with access.netlink(netns) as nl:
        try:
            ifindex = nl.index(link)
        except NetlinkMissing as e:
            raise WatchError(f"failed to watch '{link}' in {where}: no such link") from e
    try:
        from bcc import BPF  # Debian's python3-bpfcc (pyproject: no type information)
    except ImportError as e:
        raise EbpfUnavailable(failed, f"bcc is not importable ({e})") from e
    try:
        headers = machine_headers()
        text = program.read_bytes()
    except HeadersMissing as e:
        raise EbpfUnavailable(failed, str(e)) from e
    except OSError as e:
        raise EbpfUnavailable(failed, f"cannot read {program}: {e.strerror or e}") from e
    try:
        bpf, perf = _compile(BPF, text, list(headers.cflags))
    except Exception as e:
        reason = f"bcc could not compile {program.name} against {headers.where}: {e}"
        raise EbpfUnavailable(failed, f"{reason} (the compiler's messages are on stderr)") from e
    try:
        watcher = _attach(access, bpf, netns, link, ifindex, perf=perf)
    except NetnsGone:
        _release(bpf)
        raise
    except Exception as e:  # bcc's load errors are plain Exceptions; NetlinkFailure
        _release(bpf)
        raise EbpfUnavailable(failed, str(e)) from e
    output = "a perf buffer (the kernel has no BPF ring buffer)" if perf else "a ring buffer"
    log(
        f"watching '{link}' in {where} with eBPF at tc ingress, reporting through {output} "
        f"(kernel headers: {headers.where}); compiled and attached in "
        f"{time.monotonic() - start:.2f} s"
    )
    return watcher


# -- kernel headers for bcc --------------------------------------------------------------


def open_watcher(
    access: Namespaces,
    netns: str | None,
    link: str,
    *,
    prefer: str = "auto",
    log: Callable[[str], object],
    program: Path = PROGRAM,
) -> Watcher:
    """A watcher of link `link` in namespace `netns` (None: this process's), with no
    address watched yet. `prefer`: "auto" tries eBPF and falls back to the packet socket,
    saying why through `log`; "ebpf" raises EbpfUnavailable instead of falling back;
    "scapy" uses the packet socket. `program` is the eBPF source to compile.

    Raises WatchError when the link cannot be watched (missing link, socket failure) and
    NetnsGone when the namespace does not exist."""
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {', '.join(PREFERENCES)}, not '{prefer}'")
    if prefer != "scapy":
        try:
            return _open_ebpf(access, netns, link, program, log)
        except EbpfUnavailable as e:
            if prefer == "ebpf":
                raise
            log(
                f"the eBPF conflict watcher cannot run on '{link}' in {_where(netns)}: "
                f"{e.reason}; watching through a packet socket instead"
            )
    return _open_sniff(access, netns, link)
