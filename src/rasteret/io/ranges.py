"""Byte ranges as values, and coalescing as a pure function.

(Contract written first; the body is filled in by the io work.)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ByteRange"]


@dataclass(frozen=True, slots=True, order=True)
class ByteRange:
    """A half-open byte range ``[start, end)`` of one object."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start
