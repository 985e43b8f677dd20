"""Byte ranges as values, and coalescing as a pure function.

A read asks for many small ranges of one object (tiles). Each request to an object store
costs a round trip (20-50 ms to the first byte), while a gap between two ranges costs only
its transfer time (1 MiB is ~10 ms at 100 MB/s). So ranges closer than ``max_gap`` are
merged into one request, but merged requests stay below ``max_size`` so a large read is still
spread over several parallel connections.

>>> merged = coalesce([ByteRange(0, 10), ByteRange(20, 30), ByteRange(5_000_000, 5_000_010)])
>>> [(c.range.start, c.range.end, len(c.members)) for c in merged]
[(0, 30, 2), (5000000, 5000010, 1)]
>>> data = bytes(range(30))
>>> [bytes(m) for m in slice_members(merged[0], data)] == [data[0:10], data[20:30]]
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "DEFAULT_MAX_GAP",
    "DEFAULT_MAX_SIZE",
    "ByteRange",
    "CoalescedRange",
    "coalesce",
    "slice_members",
]

DEFAULT_MAX_GAP = 1024 * 1024
"""Merge ranges at most 1 MiB apart: reading the gap (~10 ms at 100 MB/s) is cheaper than a
second request (~20-50 ms to first byte on S3/GCS/Azure). Same as obstore's own default."""

DEFAULT_MAX_SIZE = 8 * 1024 * 1024
"""Stop merging at 8 MiB per request: ~80 ms of transfer on one connection, so a large read
still becomes several parallel requests (AWS advises 8-16 MB parts for throughput)."""


@dataclass(frozen=True, slots=True, order=True)
class ByteRange:
    """A half-open byte range ``[start, end)`` of one object."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(
                f"expected a byte range with 0 <= start <= end, got [{self.start}, {self.end})"
            )

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class CoalescedRange:
    """One request covering several requested ranges."""

    range: ByteRange
    """The span actually requested from the store."""
    members: tuple[ByteRange, ...]
    """The distinct requested ranges inside ``range``, sorted by start."""


def coalesce(
    ranges: Iterable[ByteRange],
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    max_size: int = DEFAULT_MAX_SIZE,
) -> list[CoalescedRange]:
    """Merge nearby ranges into as few requests as the limits allow.

    Ranges are sorted and de-duplicated first. A range joins the current request when the gap
    to it is at most ``max_gap`` (overlapping ranges have a negative gap) and the merged span
    stays within ``max_size``. A single range longer than ``max_size`` is requested alone and
    never split. Empty ranges are kept as members of a request, so every input range has one.

    Args:
        ranges: The byte ranges wanted from one object, in any order, duplicates allowed.
        max_gap: Largest gap in bytes between two ranges that are still merged.
        max_size: Largest merged request in bytes.

    Returns:
        The requests, sorted by start; their members cover every distinct input range.

    >>> [c.range for c in coalesce([ByteRange(10, 20), ByteRange(0, 5)], max_gap=4)]
    [ByteRange(start=0, end=5), ByteRange(start=10, end=20)]
    >>> [c.range for c in coalesce([ByteRange(10, 20), ByteRange(0, 5)], max_gap=5)]
    [ByteRange(start=0, end=20)]
    """
    if max_gap < 0 or max_size < 0:
        raise ValueError(f"expected max_gap >= 0 and max_size >= 0, got {max_gap}, {max_size}")
    out: list[CoalescedRange] = []
    start = end = 0
    members: list[ByteRange] = []
    for rng in sorted(set(ranges)):
        if members and rng.start - end <= max_gap and max(end, rng.end) - start <= max_size:
            end = max(end, rng.end)
            members.append(rng)
            continue
        if members:
            out.append(CoalescedRange(ByteRange(start, end), tuple(members)))
        start, end, members = rng.start, rng.end, [rng]
    if members:
        out.append(CoalescedRange(ByteRange(start, end), tuple(members)))
    return out


def slice_members(coalesced: CoalescedRange, data: Buffer) -> list[memoryview]:
    """Each member's bytes out of the data fetched for ``coalesced.range``, without copies.

    Args:
        coalesced: The request the data answers.
        data: Exactly ``coalesced.range.length`` bytes (anything with the buffer protocol).

    Returns:
        One read-only view per member, in ``coalesced.members`` order.
    """
    view = memoryview(data).cast("B")
    if len(view) != coalesced.range.length:
        raise ValueError(
            f"expected {coalesced.range.length} bytes for range "
            f"[{coalesced.range.start}, {coalesced.range.end}), got {len(view)}"
        )
    base = coalesced.range.start
    return [view[m.start - base : m.end - base].toreadonly() for m in coalesced.members]
