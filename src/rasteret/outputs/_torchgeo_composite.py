"""Compositing a TorchGeo frame the way ``rasterio.merge.merge(method="first")`` does.

A frame's band starts "empty" (the first record's nodata, else 0, in the first record's
dtype); each record, in order, copies its valid pixels onto the pixels still empty. A
record can therefore change a frame only while one of its pixels is empty, which lets
:func:`rasteret.outputs._torchgeo_merge.read_jobs` leave out the records after those that
fill it (:func:`covering_prefix`, :meth:`Frame.has_empty`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from rasteret.read.grid import Grid
from rasteret.read.options import representable
from rasteret.read.plan import RecordRef

__all__ = ["Frame", "Piece", "Window", "covering_prefix"]

Window = tuple[int, int, int, int]
"""``(col, row, width, height)`` on the output grid."""

Piece = tuple[Window, np.ndarray, np.ndarray]
"""A record's band on the output grid: where it lands, its pixels and their validity."""


def covering_prefix(
    frame: Sequence[int], grid: Grid, outs: Sequence[Sequence[Window | None]]
) -> list[int]:
    """The records of ``frame``, in order, up to the first whose windows, with those of the
    records before it, cover all of ``grid`` in every band (all of them if none does).
    ``outs[i][b]``: where band ``b`` of record ``frame[i]`` lands on the grid (None: nowhere).

    >>> from rasteret.read.grid import Grid
    >>> grid = Grid("EPSG:32633", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), 4, 2)
    >>> left, right, whole = (0, 0, 2, 2), (2, 0, 2, 2), (0, 0, 4, 2)
    >>> covering_prefix([7, 8, 9], grid, [[left], [right], [whole]])
    [7, 8]
    >>> covering_prefix([7, 8], grid, [[left], [None]])
    [7, 8]
    """
    bands = len(outs[0]) if outs else 0
    covered = np.zeros((bands, *grid.shape), dtype=bool)
    for i, record_outs in enumerate(outs):
        for b, out in enumerate(record_outs):
            if out is not None:
                col, row, width, height = out
                covered[b, max(row, 0) : row + height, max(col, 0) : col + width] = True
        if covered.all():
            return list(frame[: i + 1])
    return list(frame)


class Frame:
    """One output frame composited "first", record by record in the frame's order."""

    def __init__(
        self, records: Sequence[RecordRef], names: Sequence[str], frame: Sequence[int], grid: Grid
    ) -> None:
        self.remaining = list(frame)
        """Records not composited yet, in order."""
        self._dests = [_empty_band(records, frame, name, grid) for name in names]

    def composite(
        self,
        job: int,
        pieces: dict[tuple[int, int, int], Piece],
        stop_at: Callable[[int], bool] = lambda ri: False,
    ) -> None:
        """Composite the remaining records in order, up to (not including) the first for
        which ``stop_at`` is true; a record with no piece of a band adds nothing to it."""
        while self.remaining and not stop_at(self.remaining[0]):
            ri = self.remaining.pop(0)
            for b, (dest, marker) in enumerate(self._dests):
                piece = pieces.get((job, ri, b))
                if piece is not None:
                    _paste_first(dest, marker, piece)

    def has_empty(self) -> bool:
        """Whether a pixel of some band is still empty (a later record could fill it)."""
        return any(_empty(dest, marker).any() for dest, marker in self._dests)

    def array(self) -> np.ndarray:
        """``[C, H, W]``: the frame's bands."""
        return np.stack([dest for dest, _ in self._dests])


def _empty_band(
    records: Sequence[RecordRef], frame: Sequence[int], name: str, grid: Grid
) -> tuple[np.ndarray, float]:
    """A band of a frame before any record is composited, and its "empty" marker: the first
    record's nodata (else 0), in the first record's dtype."""
    first = records[frame[0]].bands[name]
    assert first is not None
    dtype = np.dtype(first.dtype)
    nodata = first.nodata
    dest = np.zeros(grid.shape, dtype)
    if nodata is not None and representable(nodata, dtype):
        dest.fill(nodata)
    return dest, 0.0 if nodata is None else nodata


def _empty(region: np.ndarray, marker: float) -> np.ndarray:
    """Pixels ``rasterio.merge`` counts as not yet written: equal to the marker."""
    if math.isnan(marker):
        return np.isnan(region)
    if region.dtype.kind == "f":
        return np.isclose(region, marker)
    return region == marker


def _paste_first(dest: np.ndarray, marker: float, piece: Piece) -> None:
    """Copy a piece's valid pixels onto the empty pixels of ``dest`` (``method="first"``)."""
    out, data, valid = piece
    col, row, width, height = out
    region = dest[row : row + height, col : col + width]
    np.copyto(
        region,
        data[: region.shape[0], : region.shape[1]],
        where=_empty(region, marker) & valid[: region.shape[0], : region.shape[1]],
        casting="unsafe",
    )
