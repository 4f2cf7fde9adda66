"""IntervalSet: Spiderpool's `ips` syntax, and set algebra checked against a brute-force model."""

from __future__ import annotations

import copy
import ipaddress
import itertools
import pickle
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spidernet.control.model.iprange import (
    IntervalSet,
    RangeSyntaxError,
    format_address,
    parse_entry,
)


def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


# -- parsing ------------------------------------------------------------------------------------


def test_parse_single_ips_and_ranges_merges_sorts_and_dedups() -> None:
    s = IntervalSet.parse(
        ["10.0.0.20-10.0.0.30", "10.0.0.5", "10.0.0.6-10.0.0.7", "10.0.0.25", "10.0.0.31"], 4
    )
    assert s.intervals == ((v4("10.0.0.5"), v4("10.0.0.7")), (v4("10.0.0.20"), v4("10.0.0.31")))
    assert s.to_strings(4) == ["10.0.0.5-10.0.0.7", "10.0.0.20-10.0.0.31"]
    assert s.count == 3 + 12


def test_parse_ipv6_range() -> None:
    s = IntervalSet.parse(["fd00::1-fd00::ff", "fd00::1:0"], 6)
    assert s.count == 255 + 1
    assert s.to_strings(6) == ["fd00::1-fd00::ff", "fd00::1:0"]


def test_single_address_range_prints_as_one_address() -> None:
    assert IntervalSet.parse(["10.0.0.1-10.0.0.1"], 4).to_strings(4) == ["10.0.0.1"]


@pytest.mark.parametrize(
    ("entry", "version", "reason"),
    [
        ("10.0.0.0/30", 4, "CIDR notation; list single IPs or a range such as 10.0.0.0-10.0.0.3"),
        ("10.0.0.7/32", 4, "CIDR notation; list single IPs or a range such as 10.0.0.7"),
        ("fd00::/126", 6, "range such as fd00::-fd00::3"),
        ("10.0.0.9-10.0.0.1", 4, "range '10.0.0.9-10.0.0.1' is reversed"),
        ("10.0.0.1-fd00::1", 4, "fd00::1 is IPv6, but this resource is IPv4"),
        ("fd00::1", 4, "fd00::1 is IPv6, but this resource is IPv4"),
        ("10.0.0.1", 6, "10.0.0.1 is IPv4, but this resource is IPv6"),
        ("10.0.0.1 - 10.0.0.5", 4, "no spaces allowed"),
        ("10.0.0.1-10.0.0.2-10.0.0.3", 4, "not an IP address or an a-b range"),
        ("10.0.0.256", 4, "'10.0.0.256' is not an IP address"),
        ("", 4, "an address is missing"),
        ("10.0.0.1-", 4, "an address is missing"),
        ("fe80::1%eth0", 6, "carries an IPv6 zone"),
        ("garbage/24", 4, "not an IP address or an a-b range"),
    ],
)
def test_parse_entry_rejects_with_reason(entry: str, version: int, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_entry(entry, version)


def test_parse_reports_the_index_of_the_bad_entry() -> None:
    with pytest.raises(RangeSyntaxError) as info:
        IntervalSet.parse(["10.0.0.1", "10.0.0.2", "10.0.0.9-10.0.0.3"], 4)
    assert info.value.index == 2
    assert "reversed" in info.value.reason


def test_parse_rejects_non_strings_and_bad_versions() -> None:
    with pytest.raises(RangeSyntaxError, match="is not a string") as info:
        IntervalSet.parse(["10.0.0.1", 42], 4)  # type: ignore[list-item]
    assert info.value.index == 1
    with pytest.raises(ValueError, match="must be 4 or 6"):
        IntervalSet.parse([], 5)


def test_constructor_rejects_reversed_and_negative_intervals() -> None:
    with pytest.raises(ValueError, match="reversed"):
        IntervalSet([(5, 4)])
    with pytest.raises(ValueError, match="negative"):
        IntervalSet([(-1, 4)])


# -- huge sets: nothing is enumerated ----------------------------------------------------------


def test_ipv6_slash_64_counts_without_enumeration() -> None:
    net = ipaddress.ip_network("fd00:1:2:3::/64")
    whole = IntervalSet.of_network(net)
    assert whole.count == 2**64
    minus = whole - IntervalSet.parse(["fd00:1:2:3::", "fd00:1:2:3::1"], 6)
    assert minus.count == 2**64 - 2
    assert minus.nth(0) == v6("fd00:1:2:3::2")
    assert minus.nth(minus.count - 1) == int(net.broadcast_address)
    assert minus.rank(int(net.broadcast_address)) == minus.count - 1
    assert v6("fd00:1:2:3::1") not in minus
    assert v6("fd00:1:2:3:8000::") in minus
    assert minus.to_strings(6) == ["fd00:1:2:3::2-fd00:1:2:3:ffff:ffff:ffff:ffff"]


def test_whole_ipv6_space() -> None:
    s = IntervalSet.of_network(ipaddress.ip_network("::/0"))
    assert s.count == 2**128
    assert s.nth(2**128 - 1) == 2**128 - 1


def test_nth_out_of_range() -> None:
    s = IntervalSet([(10, 12)])
    with pytest.raises(IndexError):
        s.nth(3)
    with pytest.raises(IndexError):
        s.nth(-1)


def test_first_last_and_empty() -> None:
    s = IntervalSet([(30, 40), (1, 2)])
    assert (s.first, s.last) == (1, 40)
    empty = IntervalSet()
    assert empty.is_empty
    assert not empty
    assert empty.count == 0
    with pytest.raises(ValueError, match="no first"):
        _ = empty.first
    with pytest.raises(ValueError, match="no last"):
        _ = empty.last


def test_value_semantics_immutability_copy_and_pickle() -> None:
    a = IntervalSet([(1, 3), (4, 9)])
    b = IntervalSet.from_intervals([(1, 9)])
    assert a == b
    assert hash(a) == hash(b)
    assert a != IntervalSet([(1, 8)])
    assert a != "1-9"
    with pytest.raises(AttributeError, match="immutable"):
        a._starts = ()
    assert copy.deepcopy(a) == a
    assert pickle.loads(pickle.dumps(a)) == a
    assert repr(a) == "IntervalSet([(1, 9)])"
    assert "x" not in a


def test_describe_truncates_long_lists() -> None:
    s = IntervalSet([(i * 10, i * 10) for i in range(5)])
    assert s.describe(4) == "0.0.0.0, 0.0.0.10, 0.0.0.20 and 2 more range(s)"


def test_format_address() -> None:
    assert format_address(v4("192.0.2.1"), 4) == "192.0.2.1"
    assert format_address(1, 6) == "::1"


# -- algebra against a brute-force model -----------------------------------------------------

SMALL = 64
intervals = st.lists(
    st.tuples(st.integers(0, SMALL), st.integers(0, 8)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=6,
)


def members(iv: list[tuple[int, int]]) -> set[int]:
    return {x for s, e in iv for x in range(s, e + 1)}


def check_canonical(s: IntervalSet) -> None:
    pairs = s.intervals
    for (_, e1), (s2, _) in itertools.pairwise(pairs):
        assert s2 > e1 + 1, "intervals must be sorted, disjoint and not adjacent"
    assert list(s) == list(pairs)


@given(intervals, intervals)
def test_algebra_matches_python_sets(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    sa, sb = IntervalSet(a), IntervalSet(b)
    ma, mb = members(a), members(b)
    for result, expected in (
        (sa | sb, ma | mb),
        (sa & sb, ma & mb),
        (sa - sb, ma - mb),
        (sb - sa, mb - ma),
    ):
        check_canonical(result)
        assert members(list(result)) == expected
        assert result.count == len(expected)
    assert sa.overlaps(sb) == bool(ma & mb)
    assert sa.issubset(sb) == (ma <= mb)
    assert all((x in sa) == (x in ma) for x in range(-1, SMALL + 10))


@given(intervals)
def test_nth_and_rank_follow_sorted_order(a: list[tuple[int, int]]) -> None:
    s = IntervalSet(a)
    ordered = sorted(members(a))
    assert [s.nth(k) for k in range(s.count)] == ordered
    for x in range(SMALL + 10):
        assert s.rank(x) == sum(1 for y in ordered if y < x)


@given(intervals, st.sampled_from([4, 6]))
def test_strings_round_trip(a: list[tuple[int, int]], version: int) -> None:
    s = IntervalSet(a)
    assert IntervalSet.parse(s.to_strings(version), version) == s
