"""Sets of IP addresses as sorted, disjoint, inclusive integer intervals.

Spiderpool writes the addresses of a pool as a list of single IPs and `a-b` ranges
(`spec.ips`, `spec.excludeIPs`, `pkg/ip/iprange.go`). An IPv6 pool can hold a whole /64, so
nothing here ever enumerates addresses: every operation costs O(number of intervals), and
counts are plain (possibly huge) Python ints. One set holds one IP family; the caller knows
which, and passes the version where text is read or written.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Iterator, Sequence

from spidernet.control.errors import ControlError

_BITS = {4: 32, 6: 128}


class RangeSyntaxError(ControlError, ValueError):
    """An entry of an `ips`-style list that cannot be read; `index` is its position."""

    def __init__(self, index: int, entry: object, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.entry = entry
        self.reason = reason


def _address(text: str, version: int) -> int:
    """One address of the given family as an int, or ValueError saying why not."""
    if not text:
        raise ValueError("an address is missing (write 'a' or 'a-b')")
    if text != text.strip():
        raise ValueError(f"'{text}' is not an IP address (no spaces allowed)")
    if "%" in text:
        raise ValueError(f"'{text}' carries an IPv6 zone; pool addresses have none")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address") from None
    if addr.version != version:
        raise ValueError(f"{text} is IPv{addr.version}, but this resource is IPv{version}")
    return int(addr)


def parse_entry(entry: str, version: int) -> tuple[int, int]:
    """Read one `ips` entry, "10.0.0.5" or "10.0.0.10-10.0.0.20", as an inclusive interval.

    Raises ValueError naming the problem: CIDR notation (Spiderpool's `ips` take no prefix
    length), a reversed range, a mixed-family range or a malformed address.
    """
    if "/" in entry:
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"'{entry}' is not an IP address or an a-b range") from None
        hint = f"{net[0]}-{net[-1]}" if net.num_addresses > 1 else str(net[0])
        raise ValueError(f"'{entry}' is CIDR notation; list single IPs or a range such as {hint}")
    parts = entry.split("-")
    if len(parts) > 2:
        raise ValueError(f"'{entry}' is not an IP address or an a-b range")
    start = _address(parts[0], version)
    end = _address(parts[-1], version)
    if start > end:
        raise ValueError(f"range '{entry}' is reversed: its start comes after its end")
    return start, end


def format_address(value: int, version: int) -> str:
    """The text form of an address int of the given family."""
    if version == 4:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


class IntervalSet:
    """An immutable set of integers stored as sorted, disjoint, non-adjacent intervals.

    Construct with `from_intervals` (any order, overlaps allowed), `parse` or `of_network`.
    There is no `__len__`: sizes can exceed what `len()` may return; use `count`.
    """

    __slots__ = ("_cum", "_ends", "_starts")

    _starts: tuple[int, ...]
    _ends: tuple[int, ...]
    _cum: tuple[int, ...]

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(intervals):
            if start > end:
                raise ValueError(f"interval ({start}, {end}) is reversed")
            if start < 0:
                raise ValueError(f"interval ({start}, {end}) is negative")
            if merged and start <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        object.__setattr__(self, "_starts", tuple(s for s, _ in merged))
        object.__setattr__(self, "_ends", tuple(e for _, e in merged))
        cum = [0]
        for s, e in merged:
            cum.append(cum[-1] + e - s + 1)
        object.__setattr__(self, "_cum", tuple(cum))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("IntervalSet is immutable")

    @classmethod
    def from_intervals(cls, intervals: Iterable[tuple[int, int]]) -> IntervalSet:
        """Build a set from inclusive (start, end) pairs in any order, merging overlaps."""
        return cls(intervals)

    @classmethod
    def of_network(cls, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> IntervalSet:
        """Every address of a network, network and broadcast addresses included."""
        return cls([(int(network.network_address), int(network.broadcast_address))])

    @classmethod
    def parse(cls, entries: Sequence[str], version: int) -> IntervalSet:
        """Read Spiderpool's `ips` format: single IPs and `a-b` ranges of one family.

        Raises RangeSyntaxError (a ValueError) whose `index` names the bad entry.
        """
        if version not in _BITS:
            raise ValueError(f"IP version must be 4 or 6, not {version!r}")
        intervals = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, str):
                raise RangeSyntaxError(index, entry, f"{entry!r} is not a string")
            try:
                intervals.append(parse_entry(entry, version))
            except ValueError as exc:
                raise RangeSyntaxError(index, entry, str(exc)) from None
        return cls(intervals)

    # -- inspection ---------------------------------------------------------------------

    @property
    def intervals(self) -> tuple[tuple[int, int], ...]:
        """The merged intervals, ascending."""
        return tuple(zip(self._starts, self._ends, strict=True))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._ends, strict=True)

    @property
    def count(self) -> int:
        """How many integers the set holds (may be far beyond 2**63 for IPv6)."""
        return self._cum[-1]

    @property
    def is_empty(self) -> bool:
        """True when the set holds nothing."""
        return not self._starts

    def __bool__(self) -> bool:
        return bool(self._starts)

    @property
    def first(self) -> int:
        """The smallest member; ValueError when empty."""
        if not self._starts:
            raise ValueError("empty IntervalSet has no first member")
        return self._starts[0]

    @property
    def last(self) -> int:
        """The largest member; ValueError when empty."""
        if not self._ends:
            raise ValueError("empty IntervalSet has no last member")
        return self._ends[-1]

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        i = bisect.bisect_right(self._starts, value) - 1
        return i >= 0 and value <= self._ends[i]

    def nth(self, k: int) -> int:
        """The k-th member in ascending order (0-based), in O(log n)."""
        if not 0 <= k < self.count:
            raise IndexError(f"index {k} out of range for a set of {self.count}")
        i = bisect.bisect_right(self._cum, k) - 1
        return self._starts[i] + (k - self._cum[i])

    def rank(self, value: int) -> int:
        """How many members are smaller than `value` (the inverse of `nth`)."""
        i = bisect.bisect_right(self._starts, value) - 1
        if i < 0:
            return 0
        return self._cum[i] + min(value, self._ends[i] + 1) - self._starts[i]

    # -- algebra (each a linear sweep over both interval lists) ---------------------------

    def union(self, other: IntervalSet) -> IntervalSet:
        """Members of either set."""
        return IntervalSet([*self, *other])

    def intersection(self, other: IntervalSet) -> IntervalSet:
        """Members of both sets."""
        out: list[tuple[int, int]] = []
        a, b = self.intervals, other.intervals
        i = j = 0
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return IntervalSet(out)

    def difference(self, other: IntervalSet) -> IntervalSet:
        """Members of this set that are not in `other`."""
        out: list[tuple[int, int]] = []
        b = other.intervals
        j = 0
        for start, end in self:
            cur = start
            while j < len(b) and b[j][1] < cur:
                j += 1
            k = j
            while k < len(b) and b[k][0] <= end:
                if b[k][0] > cur:
                    out.append((cur, b[k][0] - 1))
                cur = max(cur, b[k][1] + 1)
                if cur > end:
                    break
                k += 1
            if cur <= end:
                out.append((cur, end))
        return IntervalSet(out)

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    def overlaps(self, other: IntervalSet) -> bool:
        """True when the sets share at least one member."""
        return not self.intersection(other).is_empty

    def issubset(self, other: IntervalSet) -> bool:
        """True when every member of this set is in `other`."""
        return self.difference(other).is_empty

    # -- text -------------------------------------------------------------------------------

    def to_strings(self, version: int) -> list[str]:
        """Spiderpool's merged form: "a" for a single address, "a-b" for a range."""
        out = []
        for start, end in self:
            first = format_address(start, version)
            out.append(first if start == end else f"{first}-{format_address(end, version)}")
        return out

    def describe(self, version: int, limit: int = 3) -> str:
        """A short human list of the first `limit` intervals, for error messages."""
        parts = self.to_strings(version)
        text = ", ".join(parts[:limit])
        if len(parts) > limit:
            text += f" and {len(parts) - limit} more range(s)"
        return text

    # -- value semantics --------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntervalSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    def __hash__(self) -> int:
        return hash((self._starts, self._ends))

    def __reduce__(self) -> tuple[type[IntervalSet], tuple[tuple[tuple[int, int], ...]]]:
        # Slots plus a refusing __setattr__ defeat the default copy/pickle protocol.
        return (IntervalSet, (self.intervals,))

    def __repr__(self) -> str:
        return f"IntervalSet({list(self.intervals)!r})"


EMPTY = IntervalSet()
