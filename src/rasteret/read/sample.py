"""Run point plans: fetch and decode each tile once, gather its pixels, pick the values.

:func:`read_points` is the entry point ``Collection.sample_points`` calls. Points are read
in batches of :attr:`~rasteret.read.points.PointOptions.batch_size` (spatially sorted when
there is more than one batch); each batch is planned (:func:`~rasteret.read.points.plan_points`)
on a worker thread while the previous batch reads. A batch's tiles are fetched with the chip
reads' machinery (:mod:`rasteret.read.execute`: coalesced ranges, one wave under
:mod:`rasteret.io`'s global bound, decoding on the shared pool, the decoded-tile cache); as
soon as a coalesced request's tiles are decoded their pixels are gathered with vectorised
indexing and the tiles released, and at most ``max_decoded_mb`` of decoded tiles are held.

Then, per batch, :func:`select_samples` turns the raw windows into output rows (match,
nearest valid pixel, neighbourhoods); rows come out point-major: points in input order, then
records in the order given (datetime, id).

>>> import tempfile
>>> from rasteret.testing.fixtures import get_fixture_spec, write_fixture
>>> from rasteret.tiff.header import parse_header
>>> from rasteret.ingest.metadata import band_metadata_from_header
>>> path = write_fixture(get_fixture_spec("int16_deflate_nodata-9999_tile256"), tempfile.mkdtemp())
>>> meta = band_metadata_from_header(parse_header(path.read_bytes()), href=str(path))
>>> records = [RecordRef("r1", None, {"B1": meta})]
>>> samples = read_points(records, [500005.0, 501405.0], [4599995.0, 4599195.0], 32633, ["B1"])
>>> samples.values[0].tolist(), samples.valid[0].tolist()  # the second point is in nodata
([11080, -9999], [True, False])
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from rasteret._sync import run
from rasteret.read.bands import TileKey, TileSource
from rasteret.read.cache import get_tile_cache
from rasteret.read.execute import (
    _fetch_and_decode,
    _first_error,
    _groups,
    decode_pool,
    fetch_options,
)
from rasteret.read.mask import nodata_mask
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef, SkippedRecord
from rasteret.read.points import PointOptions, PointPlan, TileGather, plan_points, spatial_order
from rasteret.tiff.decode import empty_tile

__all__ = [
    "PointSamples",
    "RawSamples",
    "execute_points_async",
    "read_points",
    "read_points_async",
    "select_samples",
]

_MB = 1_000_000


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


class _ByteBudget:
    """At most ``capacity`` bytes held at once (one oversized holder may run alone)."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.held = capacity, 0
        self.changed = asyncio.Condition()

    async def acquire(self, n: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.held == 0 or self.held + n <= self.capacity)
            self.held += n

    async def release(self, n: int) -> None:
        async with self.changed:
            self.held -= n
            self.changed.notify_all()


def _decoded_nbytes(source: TileSource) -> int:
    layout = source.layout
    return layout.tile_width * source.rows * layout.samples * np.dtype(layout.dtype).itemsize


async def execute_points_async(
    plan: PointPlan, options: ReadOptions, max_decoded_mb: float
) -> RawSamples:
    """Fetch and decode every tile of ``plan`` once and gather the pixels it holds."""
    window = plan.window
    n = len(plan) * window
    values = [np.zeros(n, dtype=d) for d in plan.dtypes]
    data_ok = [np.zeros(n, dtype=bool) for _ in plan.dtypes]
    mask_ok = [np.ones(n, dtype=bool) for _ in plan.dtypes]
    by_key: dict[TileKey, list[TileGather]] = defaultdict(list)
    for g in plan.gathers:
        by_key[g.key].append(g)
    bar = _progress(options, len(plan.tiles))

    def gather(key: TileKey, tile: np.ndarray) -> None:
        for g in by_key.pop(key, ()):
            pixels = tile[g.sample, g.rows, g.cols]
            if g.mask:
                mask_ok[g.band][g.targets] = pixels != 0
            else:
                values[g.band][g.targets] = pixels
                data_ok[g.band][g.targets] = ~nodata_mask(pixels, g.nodata)
        if bar is not None:
            bar.update(1)

    loop = asyncio.get_running_loop()
    cache = get_tile_cache(options.cache_mb)
    futures: dict[TileKey, asyncio.Future[np.ndarray]] = {}
    to_fetch: dict[str, list[TileSource]] = defaultdict(list)
    for key, source in plan.tiles.items():
        cached = cache.get(key)
        if cached is not None:
            gather(key, cached)
        elif source.end == source.start:
            gather(key, empty_tile(source.layout, source.sparse_fill, rows=source.rows))
        else:
            futures[key] = loop.create_future()
            to_fetch[key.href].append(source)
    fopts = fetch_options(options)
    budget = _ByteBudget(int(max_decoded_mb * _MB))
    pool = decode_pool()

    async def fetch_group(href: str, members: list[TileSource]) -> None:
        need = sum(_decoded_nbytes(s) for s in members)
        await budget.acquire(need)
        try:
            await _fetch_and_decode(href, members, fopts, options, futures, cache, pool)
            for s in members:
                gather(s.key, futures.pop(s.key).result())
        finally:
            await budget.release(need)

    try:
        async with asyncio.TaskGroup() as group:
            for href, sources in to_fetch.items():
                for members in _groups(sources, fopts):
                    group.create_task(fetch_group(href, members))
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None
    finally:
        if bar is not None:
            bar.close()
    shape = (len(plan), window)
    return RawSamples(
        values=tuple(v.reshape(shape) for v in values),
        valid=tuple((d & m).reshape(shape) for d, m in zip(data_ok, mask_ok, strict=True)),
    )


def _progress(options: ReadOptions, total: int) -> Any:
    if not options.progress or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tile", desc="rasteret sample")


def select_samples(
    plan: PointPlan, raw: RawSamples, options: PointOptions, point_ids: np.ndarray | None = None
) -> PointSamples:
    """Output rows of one plan: the centre pixel (or the nearest valid one within
    ``max_distance_pixels``), one row per pair (``match="all"``) or per point (``"latest"``).

    ``point_ids`` maps the plan's point positions to the caller's (batches).
    """
    centre = plan.window // 2
    nb = len(plan.bands)
    pair_rows = [np.floor(np.nan_to_num(r, nan=-1.0)).astype(np.int64) for r in plan.frac_row]
    pair_cols = [np.floor(np.nan_to_num(c, nan=-1.0)).astype(np.int64) for c in plan.frac_col]
    values = [v[:, centre].copy() for v in raw.values]
    valid = [v[:, centre].copy() for v in raw.valid]
    src_rows = [r.copy() for r in pair_rows]
    src_cols = [c.copy() for c in pair_cols]
    if options.max_distance_pixels:
        for b in range(nb):
            _nearest_valid(
                plan, raw, b, options.max_distance_pixels, values, valid, src_rows, src_cols
            )
    src_rows = [np.where(v, r, -1) for v, r in zip(valid, src_rows, strict=True)]
    src_cols = [np.where(v, c, -1) for v, c in zip(valid, src_cols, strict=True)]
    # pair chosen for each output row and band
    if options.match == "latest":
        points, chosen = _latest(plan, valid)
    else:
        points = plan.point_index
        chosen = [np.arange(len(plan))] * nb
    row_pair = _first_present(chosen)
    safe = np.maximum(row_pair, 0)
    present = row_pair >= 0
    neighbourhood = _neighbourhood(plan, raw, options, chosen)
    band_record = None
    if options.match == "latest":
        band_record = tuple(
            np.where(c >= 0, plan.record_index[np.maximum(c, 0)], -1) for c in chosen
        )
    ids = points if point_ids is None else point_ids[points]

    def per_band(arrays: list[np.ndarray], fill: Any) -> tuple[np.ndarray, ...]:
        return tuple(
            np.where(c >= 0, a[np.maximum(c, 0)], fill) for a, c in zip(arrays, chosen, strict=True)
        )

    return PointSamples(
        point_index=ids.astype(np.int64),
        record_index=np.where(present, plan.record_index[safe], -1),
        bands=plan.bands,
        values=tuple(a[np.maximum(c, 0)] for a, c in zip(values, chosen, strict=True)),
        valid=per_band(valid, False),
        row=np.where(present, pair_rows[0][safe], -1),
        col=np.where(present, pair_cols[0][safe], -1),
        band_record=band_record,
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
    chosen: list[np.ndarray],
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]] | None:
    """Per band: the ``(2 * neighbourhood_radius + 1)²`` window of each row's pair, its
    validity, and which rows carry one."""
    if options.return_neighbourhood == "off":
        return None
    r, nr = plan.radius, options.neighbourhood_radius
    dr, dc = (d.ravel() for d in np.mgrid[-r : r + 1, -r : r + 1])
    inner = np.flatnonzero((np.abs(dr) <= nr) & (np.abs(dc) <= nr))
    win_values, win_valid, present = [], [], []
    for b, c in enumerate(chosen):
        safe = np.maximum(c, 0)
        has = c >= 0
        if options.return_neighbourhood == "if_center_nodata":
            has = has & ~raw.valid[b][safe, plan.window // 2]
        win_values.append(raw.values[b][safe][:, inner])
        win_valid.append(raw.valid[b][safe][:, inner])
        present.append(has)
    return tuple(win_values), tuple(win_valid), tuple(present)


def _concat_samples(parts: list[PointSamples]) -> PointSamples:
    if len(parts) == 1:
        merged = parts[0]
    else:

        def cat(get: Any) -> Any:
            first = get(parts[0])
            if first is None:
                return None
            if isinstance(first, tuple):
                return tuple(np.concatenate([get(p)[i] for p in parts]) for i in range(len(first)))
            return np.concatenate([get(p) for p in parts])

        merged = PointSamples(
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
    p, r = merged.point_index, merged.record_index
    if len(p) > 1 and not bool(np.all((p[1:] > p[:-1]) | ((p[1:] == p[:-1]) & (r[1:] > r[:-1])))):
        merged = merged.take(np.lexsort((r, p)))
    return merged


async def read_points_async(
    records: Sequence[RecordRef],
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    points_crs: Any,
    bands: Sequence[str],
    options: PointOptions | None = None,
    read_options: ReadOptions | None = None,
) -> PointSamples:
    """Sample ``bands`` of ``records`` at the points ``(x, y)`` given in ``points_crs``.

    Args:
        records: The records to sample, in the order rows should follow (datetime, id).
        x, y: Point coordinates; non-finite ones (null points) fall in no raster.
        points_crs: CRS of the coordinates (anything :mod:`pyproj` reads).
        bands: Band names, in output order.
        options: What to sample (match, nearest valid pixel, neighbourhoods, batching).
        read_options: I/O options (backend, concurrency, cache, coalescing, on_missing).

    Returns:
        The rows, point-major: points in input order, then records in the order given.

    Raises:
        SchemaError: bad options or coordinates.
        BandResolutionError: a record lacks a requested band (``on_missing="raise"``).
        FetchError, DecodeError, UnsupportedFormatError: as for chip reads.
    """
    options = options or PointOptions()
    read_options = read_options or ReadOptions()
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    records = list(records)
    n = len(xs)
    if n <= options.batch_size:
        batches = [np.arange(n)]
    else:
        order = spatial_order(xs, ys)
        batches = [order[i : i + options.batch_size] for i in range(0, n, options.batch_size)]
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rasteret-plan") as planner:

        def plan_batch(ids: np.ndarray) -> asyncio.Future[PointPlan]:
            return loop.run_in_executor(
                planner, plan_points, records, xs[ids], ys[ids], points_crs, bands, options,
                read_options,
            )  # fmt: skip

        parts: list[PointSamples] = []
        upcoming = plan_batch(batches[0])
        try:
            for i, ids in enumerate(batches):
                plan = await upcoming
                if i + 1 < len(batches):
                    upcoming = plan_batch(batches[i + 1])  # plan the next batch while this reads
                raw = await execute_points_async(plan, read_options, options.max_decoded_mb)
                parts.append(select_samples(plan, raw, options, ids))
        finally:
            if not upcoming.done():
                upcoming.cancel()
    return _concat_samples(parts)


def read_points(
    records: Sequence[RecordRef],
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    points_crs: Any,
    bands: Sequence[str],
    options: PointOptions | None = None,
    read_options: ReadOptions | None = None,
) -> PointSamples:
    """Synchronous :func:`read_points_async` (runs on rasteret's event-loop thread)."""
    return run(read_points_async(records, x, y, points_crs, bands, options, read_options))
