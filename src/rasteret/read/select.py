"""Turn gathered window pixels into output rows: match, nearest valid pixel, neighbourhoods.

Pure NumPy over whole arrays: :func:`select_samples` takes a plan and its
:class:`RawSamples` (every window pixel of every pair and band, with its validity) and
returns :class:`PointSamples`, the rows of the output table as arrays;
:func:`concat_samples` joins batches and orders rows point-major (point, then record).

>>> import numpy as np
>>> rows = PointSamples(np.array([3, 1]), np.array([0, 0]), ("B1",), (np.array([5, 6]),),
...                     (np.array([True, False]),), np.array([0, 1]), np.array([0, 1]))
>>> concat_samples([rows]).point_index.tolist()
[1, 3]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rasteret.read.plan import SkippedRecord
from rasteret.read.points import PointOptions, PointPlan, whole_pixels

__all__ = [
    "PointSamples",
    "RawSamples",
    "concat_samples",
    "merge_latest",
    "remap_records",
    "select_samples",
    "stack_samples",
    "widen_bands",
]


@dataclass(frozen=True, slots=True, eq=False)
class RawSamples:
    """Every window pixel of a plan: per band ``(pairs, window)`` values and validity."""

    values: tuple[np.ndarray, ...]
    valid: tuple[np.ndarray, ...]
    """Inside the raster, not nodata, not masked by the file's internal mask or alpha."""


@dataclass(frozen=True, slots=True, eq=False)
class PointSamples:
    """The output rows of a point read, as arrays (one element per row)."""

    point_index: np.ndarray
    """Point of each row (int64, positions in the points passed)."""
    record_index: np.ndarray
    """Record of each row (int64; with ``match="latest"`` the record of the first band that
    has a value)."""
    bands: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    """Per band: the value (band dtype; meaningless where not valid)."""
    valid: tuple[np.ndarray, ...]
    row: np.ndarray
    """Pixel row of the point in the row's record, first band's grid (-1: outside it)."""
    col: np.ndarray
    band_record: tuple[np.ndarray, ...] | None = None
    """``match="latest"``: per band, the record its value came from (-1: none)."""
    source_row: tuple[np.ndarray, ...] | None = None
    """``max_distance_pixels > 0``: per band, the pixel its value came from (-1: none)."""
    source_col: tuple[np.ndarray, ...] | None = None
    neighbourhood: tuple[np.ndarray, ...] | None = None
    """``return_neighbourhood``: per band, ``(rows, (2r+1)²)`` window values, row-major."""
    neighbourhood_valid: tuple[np.ndarray, ...] | None = None
    neighbourhood_present: tuple[np.ndarray, ...] | None = None
    """Per band, rows that carry a window (``if_center_nodata``: centre invalid)."""
    skipped: tuple[SkippedRecord, ...] = ()

    def __len__(self) -> int:
        return len(self.point_index)

    def take(self, order: np.ndarray) -> PointSamples:
        """These rows reordered (or subset) by ``order``."""

        def each(arrays: tuple[np.ndarray, ...] | None) -> tuple[np.ndarray, ...] | None:
            return None if arrays is None else tuple(a[order] for a in arrays)

        return PointSamples(
            point_index=self.point_index[order],
            record_index=self.record_index[order],
            bands=self.bands,
            values=tuple(v[order] for v in self.values),
            valid=tuple(v[order] for v in self.valid),
            row=self.row[order],
            col=self.col[order],
            band_record=each(self.band_record),
            source_row=each(self.source_row),
            source_col=each(self.source_col),
            neighbourhood=each(self.neighbourhood),
            neighbourhood_valid=each(self.neighbourhood_valid),
            neighbourhood_present=each(self.neighbourhood_present),
            skipped=self.skipped,
        )


def select_samples(
    plan: PointPlan, raw: RawSamples, options: PointOptions, point_ids: np.ndarray | None = None
) -> PointSamples:
    """Output rows of one plan: the centre pixel (or the nearest valid one within
    ``max_distance_pixels``), one row per pair (``match="all"``) or per point (``"latest"``).

    ``point_ids`` maps the plan's point positions to the caller's (batches).
    """
    centre = plan.window // 2
    values = [v[:, centre] for v in raw.values]
    valid = [v[:, centre] for v in raw.valid]
    src_rows: list[np.ndarray] = []
    src_cols: list[np.ndarray] = []
    if options.max_distance_pixels:
        values = [v.copy() for v in values]
        valid = [v.copy() for v in valid]
        src_rows = [whole_pixels(r) for r in plan.frac_row]
        src_cols = [whole_pixels(c) for c in plan.frac_col]
        for b in range(len(plan.bands)):
            _nearest_valid(
                plan, raw, b, options.max_distance_pixels, values, valid, src_rows, src_cols
            )
        src_rows = [np.where(v, r, -1) for v, r in zip(valid, src_rows, strict=True)]
        src_cols = [np.where(v, c, -1) for v, c in zip(valid, src_cols, strict=True)]
    chosen: list[np.ndarray] | None = None  # per band, the pair of each row (None: row = pair)
    row_pair: np.ndarray | None = None
    points = plan.point_index
    if options.match == "latest":
        points, chosen = _latest(plan, valid)
        row_pair = _first_present(chosen)

    def per_band(arrays: list[np.ndarray], fill: Any) -> tuple[np.ndarray, ...]:
        if chosen is None:
            return tuple(arrays)
        return tuple(
            np.where(c >= 0, a[np.maximum(c, 0)], fill) for a, c in zip(arrays, chosen, strict=True)
        )

    def per_row(array: np.ndarray) -> np.ndarray:
        if row_pair is None:
            return array
        return np.where(row_pair >= 0, array[np.maximum(row_pair, 0)], -1)

    neighbourhood = _neighbourhood(plan, raw, options, chosen)
    return PointSamples(
        point_index=(points if point_ids is None else point_ids[points]).astype(
            np.int64, copy=False
        ),
        record_index=per_row(plan.record_index),
        bands=plan.bands,
        values=per_band(values, 0),
        valid=per_band(valid, False),
        row=per_row(plan.pixel_row),
        col=per_row(plan.pixel_col),
        band_record=None if chosen is None else per_band([plan.record_index] * len(chosen), -1),
        source_row=per_band(src_rows, -1) if options.max_distance_pixels else None,
        source_col=per_band(src_cols, -1) if options.max_distance_pixels else None,
        neighbourhood=None if neighbourhood is None else neighbourhood[0],
        neighbourhood_valid=None if neighbourhood is None else neighbourhood[1],
        neighbourhood_present=None if neighbourhood is None else neighbourhood[2],
        skipped=plan.skipped,
    )


def _nearest_valid(
    plan: PointPlan,
    raw: RawSamples,
    b: int,
    max_distance: int,
    values: list[np.ndarray],
    valid: list[np.ndarray],
    src_rows: list[np.ndarray],
    src_cols: list[np.ndarray],
) -> None:
    """Where the centre is invalid, take the valid window pixel whose centre is nearest to
    the point (ties: first in row-major order), within ``max_distance`` pixels."""
    r = plan.radius
    dr, dc = (d.ravel() for d in np.mgrid[-r : r + 1, -r : r + 1])
    near = (np.abs(dr) <= max_distance) & (np.abs(dc) <= max_distance)
    need = np.flatnonzero(~valid[b] & ~np.isnan(plan.frac_row[b]))
    if not len(need):
        return
    fr, fc = plan.frac_row[b][need], plan.frac_col[b][need]
    r0, c0 = np.floor(fr), np.floor(fc)
    dist = (r0[:, None] + dr + 0.5 - fr[:, None]) ** 2 + (c0[:, None] + dc + 0.5 - fc[:, None]) ** 2
    dist[~raw.valid[b][need] | ~near] = np.inf
    best = np.argmin(dist, axis=1)
    found = np.isfinite(dist[np.arange(len(need)), best])
    rows, k = need[found], best[found]
    values[b][rows] = raw.values[b][rows, k]
    valid[b][rows] = True
    src_rows[b][rows] += dr[k]
    src_cols[b][rows] += dc[k]


def _latest(plan: PointPlan, valid: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per point and band, the pair of the latest record with a valid value (-1: none)."""
    points = np.unique(plan.point_index)
    chosen = []
    for ok in valid:
        pairs = np.flatnonzero(ok)
        order = np.lexsort((plan.record_index[pairs], plan.point_index[pairs]))
        pairs = pairs[order]
        pts = plan.point_index[pairs]
        last = np.flatnonzero(np.append(pts[1:] != pts[:-1], True)) if len(pts) else pts
        pick = np.full(len(points), -1, dtype=np.int64)
        pick[np.searchsorted(points, pts[last])] = pairs[last]
        chosen.append(pick)
    keep = np.zeros(len(points), dtype=bool)
    for c in chosen:
        keep |= c >= 0
    return points[keep], [c[keep] for c in chosen]


def _first_present(chosen: list[np.ndarray]) -> np.ndarray:
    """Per row, the pair of the first band that has one (-1: none)."""
    out = chosen[0].copy()
    for c in chosen[1:]:
        out = np.where(out >= 0, out, c)
    return out


def _neighbourhood(
    plan: PointPlan,
    raw: RawSamples,
    options: PointOptions,
    chosen: list[np.ndarray] | None,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]] | None:
    """Per band: the ``(2 * neighbourhood_radius + 1)²`` window of each row's pair, its
    validity, and which rows carry one."""
    if options.return_neighbourhood == "off":
        return None
    r, nr = plan.radius, options.neighbourhood_radius
    dr, dc = (d.ravel() for d in np.mgrid[-r : r + 1, -r : r + 1])
    inner = np.flatnonzero((np.abs(dr) <= nr) & (np.abs(dc) <= nr))
    win_values, win_valid, present = [], [], []
    for b in range(len(plan.bands)):
        pairs = np.arange(len(plan)) if chosen is None else np.maximum(chosen[b], 0)
        has = np.ones(len(pairs), dtype=bool) if chosen is None else chosen[b] >= 0
        if options.return_neighbourhood == "if_center_nodata":
            has &= ~raw.valid[b][pairs, plan.window // 2]
        win_values.append(raw.values[b][pairs][:, inner])
        win_valid.append(raw.valid[b][pairs][:, inner])
        present.append(has)
    return tuple(win_values), tuple(win_valid), tuple(present)


def stack_samples(parts: Sequence[PointSamples]) -> PointSamples:
    """The rows of several reads one after the other (no reordering)."""
    if len(parts) == 1:
        return parts[0]

    def cat(get: Any) -> Any:
        first = get(parts[0])
        if first is None:
            return None
        if isinstance(first, tuple):
            return tuple(np.concatenate([get(p)[i] for p in parts]) for i in range(len(first)))
        return np.concatenate([get(p) for p in parts])

    return PointSamples(
        point_index=cat(lambda p: p.point_index),
        record_index=cat(lambda p: p.record_index),
        bands=parts[0].bands,
        values=cat(lambda p: p.values),
        valid=cat(lambda p: p.valid),
        row=cat(lambda p: p.row),
        col=cat(lambda p: p.col),
        band_record=cat(lambda p: p.band_record),
        source_row=cat(lambda p: p.source_row),
        source_col=cat(lambda p: p.source_col),
        neighbourhood=cat(lambda p: p.neighbourhood),
        neighbourhood_valid=cat(lambda p: p.neighbourhood_valid),
        neighbourhood_present=cat(lambda p: p.neighbourhood_present),
        skipped=tuple(dict.fromkeys(s for p in parts for s in p.skipped)),
    )


def concat_samples(parts: Sequence[PointSamples]) -> PointSamples:
    """The rows of several batches as one, in point-major order (point, then record)."""
    merged = stack_samples(parts)
    p, r = merged.point_index, merged.record_index
    if len(p) > 1 and not _point_major(p, r):
        merged = merged.take(_point_major_order(p, r))
    return merged


def merge_latest(waves: Sequence[PointSamples], n_points: int) -> PointSamples:
    """``match="latest"`` rows of reads over successively older groups of records: per
    point and band, the value of the first wave that has a valid one.

    Each wave's rows are its own latest valid values (one row per point). The row-level
    fields (record, row, col) come from the wave that gave the first band with a value,
    which is also the band that wave's own row-level fields describe.
    """
    rows = stack_samples(waves)
    nb = len(rows.bands)
    taken = [np.full(n_points, -1, dtype=np.int64) for _ in range(nb)]  # row of each point
    start = 0
    for wave in waves:
        for b in range(nb):
            new = wave.valid[b] & (taken[b][wave.point_index] < 0)
            taken[b][wave.point_index[new]] = start + np.flatnonzero(new)
        start += len(wave)
    points = np.flatnonzero(np.any([t >= 0 for t in taken], axis=0))
    chosen = [t[points] for t in taken]
    first = chosen[0].copy()
    for c in chosen[1:]:
        first = np.where(first >= 0, first, c)

    def per_band(arrays: tuple[np.ndarray, ...] | None, fill: Any) -> tuple[np.ndarray, ...] | None:
        if arrays is None:
            return None
        return tuple(
            np.where((c >= 0).reshape(-1, *([1] * (a.ndim - 1))), a[np.maximum(c, 0)], fill)
            for a, c in zip(arrays, chosen, strict=True)
        )

    present = rows.neighbourhood_present
    return PointSamples(
        point_index=points.astype(np.int64),
        record_index=rows.record_index[first],
        bands=rows.bands,
        values=tuple(a[np.maximum(c, 0)] for a, c in zip(rows.values, chosen, strict=True)),
        valid=per_band(rows.valid, False) or (),
        row=rows.row[first],
        col=rows.col[first],
        band_record=per_band(rows.band_record, -1),
        source_row=per_band(rows.source_row, -1),
        source_col=per_band(rows.source_col, -1),
        neighbourhood=per_band(rows.neighbourhood, 0),
        neighbourhood_valid=per_band(rows.neighbourhood_valid, False),
        neighbourhood_present=per_band(present, False),
        skipped=rows.skipped,
    )


def _point_major(points: np.ndarray, records: np.ndarray) -> bool:
    """Whether rows are already sorted by (point, record), strictly."""
    later = points[1:] > points[:-1]
    if later.all():  # one row per point (one record, or match="latest")
        return True
    same = points[1:] == points[:-1]
    return bool(np.all(later | (same & (records[1:] > records[:-1]))))


def _point_major_order(points: np.ndarray, records: np.ndarray) -> np.ndarray:
    """The order that sorts rows by (point, record), by counting rather than comparing.

    Rows come in runs of one record (a plan's pairs are record-major, records ascending;
    a batch holds each of its points once per record, and batches share no points), so
    within a run every point appears once, and a point's runs come in record order.
    """
    counts = np.bincount(points)
    slot = np.cumsum(counts) - counts  # first output row of each point
    order = np.empty(len(points), dtype=np.int64)
    cuts = np.flatnonzero(records[1:] != records[:-1]) + 1
    for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(points)], strict=True):
        run = points[lo:hi]
        order[slot[run]] = np.arange(lo, hi)
        slot[run] += 1
    return order


def widen_bands(
    samples: PointSamples,
    positions: Sequence[int],
    bands: tuple[str, ...],
    dtypes: Sequence[np.dtype],
) -> PointSamples:
    """``samples`` of a read of some of ``bands`` (at ``positions``, ascending) as rows of
    all ``bands``: the bands not read have no valid value (their values are zeros of
    ``dtypes[b]``, their records, pixels and windows absent).

    >>> rows = PointSamples(np.array([3]), np.array([0]), ("B08",), (np.array([5], "uint16"),),
    ...                     (np.array([True]),), np.array([0]), np.array([0]))
    >>> wide = widen_bands(rows, [1], ("B04", "B08"), [np.dtype("uint16")] * 2)
    >>> wide.bands, [v.tolist() for v in wide.valid], wide.values[0].dtype.name
    (('B04', 'B08'), [[False], [True]], 'uint16')
    """
    if list(positions) == list(range(len(bands))):
        return replace(samples, bands=bands)
    at = {b: k for k, b in enumerate(positions)}
    n = len(samples)

    def each(
        arrays: tuple[np.ndarray, ...] | None, fill: Any, dtype: Any = None
    ) -> tuple[np.ndarray, ...] | None:
        if arrays is None:
            return None
        tail = arrays[0].shape[1:]
        return tuple(
            arrays[at[b]] if b in at else np.full((n, *tail), fill, dtype=dtype or arrays[0].dtype)
            for b in range(len(bands))
        )

    def values(arrays: tuple[np.ndarray, ...] | None) -> tuple[np.ndarray, ...] | None:
        if arrays is None:
            return None
        tail = arrays[0].shape[1:]
        return tuple(
            arrays[at[b]] if b in at else np.zeros((n, *tail), dtype=dtypes[b])
            for b in range(len(bands))
        )

    return replace(
        samples,
        bands=bands,
        values=values(samples.values) or (),
        valid=each(samples.valid, False) or (),
        band_record=each(samples.band_record, -1),
        source_row=each(samples.source_row, -1),
        source_col=each(samples.source_col, -1),
        neighbourhood=values(samples.neighbourhood),
        neighbourhood_valid=each(samples.neighbourhood_valid, False),
        neighbourhood_present=each(samples.neighbourhood_present, False),
    )


def remap_records(samples: PointSamples, records: np.ndarray) -> PointSamples:
    """``samples`` of a read over a subset of records, with record positions mapped back
    through ``records`` (subset position -> caller's position)."""

    def mapped(index: np.ndarray) -> np.ndarray:
        return np.where(index >= 0, records[np.maximum(index, 0)], -1)

    return replace(
        samples,
        record_index=mapped(samples.record_index),
        band_record=None
        if samples.band_record is None
        else tuple(mapped(b) for b in samples.band_record),
        skipped=tuple(
            replace(s, record_index=int(records[s.record_index])) for s in samples.skipped
        ),
    )
