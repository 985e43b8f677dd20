"""coalesce() and slice_members(): merging rules, limits, and the zero-copy slicing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rasteret.io.ranges import (
    DEFAULT_MAX_GAP,
    DEFAULT_MAX_SIZE,
    ByteRange,
    CoalescedRange,
    coalesce,
    slice_members,
)

OBJECT_SIZE = 4096
DATA = bytes((i * 7 + i // 256) % 256 for i in range(OBJECT_SIZE))


def test_defaults_are_a_reasonable_trade() -> None:
    assert 64 * 1024 <= DEFAULT_MAX_GAP <= 2 * 1024 * 1024
    assert 8 * 1024 * 1024 <= DEFAULT_MAX_SIZE <= 16 * 1024 * 1024


def test_byte_range_rejects_inverted_or_negative() -> None:
    with pytest.raises(ValueError, match="0 <= start <= end"):
        ByteRange(10, 5)
    with pytest.raises(ValueError, match="0 <= start <= end"):
        ByteRange(-1, 5)
    assert ByteRange(3, 3).length == 0


def test_gap_limit_is_inclusive() -> None:
    ranges = [ByteRange(0, 10), ByteRange(20, 30)]
    assert [c.range for c in coalesce(ranges, max_gap=10)] == [ByteRange(0, 30)]
    assert [c.range for c in coalesce(ranges, max_gap=9)] == ranges


def test_size_limit_starts_a_new_request() -> None:
    ranges = [ByteRange(0, 40), ByteRange(40, 80), ByteRange(80, 120)]
    merged = coalesce(ranges, max_gap=0, max_size=80)
    assert [c.range for c in merged] == [ByteRange(0, 80), ByteRange(80, 120)]
    assert merged[0].members == (ByteRange(0, 40), ByteRange(40, 80))


def test_oversized_range_stays_alone_and_whole() -> None:
    ranges = [ByteRange(0, 10), ByteRange(10, 500), ByteRange(500, 510)]
    merged = coalesce(ranges, max_gap=100, max_size=100)
    assert [c.range for c in merged] == ranges


def test_duplicates_and_overlaps_and_order() -> None:
    ranges = [ByteRange(50, 60), ByteRange(0, 30), ByteRange(10, 20), ByteRange(0, 30)]
    merged = coalesce(ranges, max_gap=5, max_size=1000)
    assert merged == [
        CoalescedRange(ByteRange(0, 30), (ByteRange(0, 30), ByteRange(10, 20))),
        CoalescedRange(ByteRange(50, 60), (ByteRange(50, 60),)),
    ]


def test_empty_input_and_bad_limits() -> None:
    assert coalesce([]) == []
    with pytest.raises(ValueError, match="max_gap"):
        coalesce([ByteRange(0, 1)], max_gap=-1)


def test_slice_members_is_zero_copy_and_checks_length() -> None:
    merged = coalesce([ByteRange(100, 110), ByteRange(120, 125)], max_gap=100)[0]
    buf = bytearray(DATA[merged.range.start : merged.range.end])
    views = slice_members(merged, buf)
    assert [bytes(v) for v in views] == [DATA[100:110], DATA[120:125]]
    buf[0] = (buf[0] + 1) % 256  # the views share memory with the fetched buffer
    assert views[0][0] == buf[0]
    assert views[0].readonly
    with pytest.raises(ValueError, match="expected 25 bytes for range \\[100, 125\\), got 24"):
        slice_members(merged, buf[:-1])


ranges_strategy = st.lists(
    st.tuples(st.integers(0, OBJECT_SIZE), st.integers(0, 600)).map(
        lambda t: ByteRange(t[0], min(t[0] + t[1], OBJECT_SIZE))
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ranges=ranges_strategy, max_gap=st.integers(0, 1500), max_size=st.integers(0, 3000))
def test_coalesced_fetch_equals_direct_slices(
    ranges: list[ByteRange], max_gap: int, max_size: int
) -> None:
    merged = coalesce(ranges, max_gap=max_gap, max_size=max_size)
    got: dict[ByteRange, bytes] = {}
    for request in merged:
        fetched = DATA[request.range.start : request.range.end]  # what the store sends back
        for member, view in zip(request.members, slice_members(request, fetched), strict=True):
            got[member] = bytes(view)
    assert got == {r: DATA[r.start : r.end] for r in ranges}
    # requests are sorted, split only where a limit says so, each member inside its request
    for a, b in itertools.pairwise(merged):
        assert a.range.start <= b.range.start
        assert b.range.start - a.range.end > max_gap or (
            max(a.range.end, b.members[0].end) - a.range.start > max_size
        )
    for request in merged:
        assert request.range.length <= max_size or len(request.members) == 1
        assert all(
            request.range.start <= m.start <= m.end <= request.range.end for m in request.members
        )
        assert request.range.start == request.members[0].start
        assert request.range.end == max(m.end for m in request.members)
