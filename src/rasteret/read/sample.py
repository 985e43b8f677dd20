"""Run point plans: fetch and decode each tile once, gather its pixels, pick the values.

:func:`read_points` is the entry point ``Collection.sample_points`` calls. Points are read
in batches (:meth:`~rasteret.read.points.PointOptions.points_per_batch`; spatially sorted
when there is more than one batch); each batch is planned (:func:`~rasteret.read.points.plan_points`)
on a worker thread while the previous batch reads, and its fetch starts as soon as the plan
knows its tiles (the plan's first step), while the pixels are still being grouped by tile.
A large batch (:data:`PROBE_MIN_POINTS`) starts sooner still: the tiles of an evenly spaced
sample of its points (:data:`PROBE_POINTS`; needed anyway) are fetched while the whole batch
is located, and the tiles the sample missed once the plan knows them (never a tile the
points do not need). A batch's tiles are fetched with the chip reads' machinery
(:mod:`rasteret.read.execute`: coalesced ranges, one wave under :mod:`rasteret.io`'s global
bound, decoding on the shared pool, the decoded-tile cache); as soon as a tile is decoded
its pixels are gathered (one ``numpy.take`` per tile and band: in the thread that decoded
it, while the tile is in that core's cache, once the plan is done; tiles decoded before
that, on two gather threads) and the tile released, and at most ``max_decoded_mb`` of
decoded tiles are held. Dense pixels planned once tiles are already being decoded are read
from mosaics instead (:class:`~rasteret.read.points.MosaicGather`): each tile is copied
into its slot as it is gathered, and the band's values are taken at once when the last
one is in (no sort by tile; the mosaics of a plan hold at most ``max_decoded_mb`` more).
The large arrays of a read come from recycled memory
(:func:`rasteret.read.locate.point_buffers`).

Then, per batch, :func:`rasteret.read.select.select_samples` turns the raw windows into
output rows (match, nearest valid pixel, neighbourhoods); rows come out point-major: points
in input order, then records in the order given (datetime, id).

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
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from rasteret._pools import ELASTIC, run_on, shared_pool
from rasteret._sync import run
from rasteret.errors import DecodeError
from rasteret.io.fetch import FetchOptions
from rasteret.read.bands import TileKey, TileSource
from rasteret.read.buffers import decoded_buffers
from rasteret.read.cache import get_tile_cache
from rasteret.read.execute import (
    TileDecodes,
    _first_error,
    decode_pool,
    fetch_groups,
    fetch_options,
)
from rasteret.read.grid import crs_key
from rasteret.read.locate import FiniteBounds, pixel_of, point_array, spatial_order
from rasteret.read.mask import nodata_mask
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef
from rasteret.read.points import (
    MosaicGather,
    PointOptions,
    PointPlan,
    TileGather,
    _band_dtype,
    check_records,
    plan_points,
    plan_tiles,
)
from rasteret.read.select import (
    PointSamples,
    RawSamples,
    concat_samples,
    merge_latest,
    remap_records,
    select_samples,
    widen_bands,
)
from rasteret.tiff.decode import empty_tile
from rasteret.types import crs_

__all__ = ["PointSamples", "execute_points_async", "read_points", "read_points_async"]

_MB = 1_000_000

RowsKnown = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]
"""Told a read's rows (``point_index``, ``record_index``, ``row``, ``col``) before it ends."""

PROBE_MIN_POINTS = 100_000
"""Batches of at least this many points start fetching the tiles of a sample of their points
(:data:`PROBE_POINTS`, evenly spaced in input order) before the whole batch is located: those
tiles are needed anyway, the rest are fetched once the plan knows them."""
PROBE_POINTS = 8_192
_GATHER_THREADS = 2
"""Threads gathering decoded tiles' pixels (each pixel is written by one gather)."""
_FETCH_WAIT_S = 0.05
"""At most this long the planner waits for the sample's requests to go out."""
_FETCH_ROUNDS = 4
"""Event-loop rounds after which a fetch task has sent its request: each round runs one step
of every ready task, and a request goes out from a task three levels down (coalesced group,
fetch, range)."""


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


def _filled(n: int, dtype: np.dtype, value: Any) -> np.ndarray:
    """``numpy.full(n, value, dtype)`` in recycled memory (see :func:`rasteret.read.locate.point_array`)."""
    out = point_array(n, np.dtype(dtype))
    out.fill(value)
    return out


def _decoded_nbytes(source: TileSource) -> int:
    layout = source.layout
    return layout.tile_width * source.rows * layout.samples * np.dtype(layout.dtype).itemsize


async def execute_points_async(
    plan: PointPlan, options: ReadOptions, max_decoded_mb: float
) -> RawSamples:
    """Fetch and decode every tile of ``plan`` once and gather the pixels it holds."""
    return await _execute(plan.tiles, _done(plan), options, max_decoded_mb)


async def _done(plan: PointPlan) -> PointPlan:
    return plan


class _Mosaic:
    """The tiles of one or more :class:`MosaicGather` (the same ``keys``), copied in as they
    are decoded (from any thread); :meth:`put` says when the last one is in."""

    def __init__(self, first: MosaicGather) -> None:
        self.gathers = [first]
        self.slot = {key: i for i, key in enumerate(first.keys)}
        self.shape = (len(first.keys), first.tile_height, first.tile_width, first.samples)
        self.dtype = np.dtype(first.dtype)
        self.left = len(first.keys)
        self.lock = threading.Lock()
        self.array: np.ndarray | None = None
        """The mosaic, from the first tile in until the gathers are taken."""

    def put(self, key: TileKey, tile: np.ndarray) -> bool:
        """Copy the decoded ``(samples, rows, width)`` tile of ``key`` into its slot; True
        once every tile is in.

        Raises:
            DecodeError: the tile is not of the shape and dtype its layout promised.
        """
        _, height, width, samples = self.shape
        if (
            tile.dtype != self.dtype
            or tile.shape[0] != samples
            or tile.shape[1] > height
            or tile.shape[2] != width
        ):
            raise DecodeError(
                f"expected a decoded tile of {samples} x {height} x {width} {self.dtype} "
                f"samples, got {' x '.join(map(str, tile.shape))} {tile.dtype} at tile "
                f"{key.tile} of {key.href}"
            )
        with self.lock:
            if self.array is None:  # private recycled memory: mosaics never reach users
                nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
                self.array = decoded_buffers().take(nbytes).view(self.dtype).reshape(self.shape)
            array = self.array
        np.copyto(array[self.slot[key], : tile.shape[1]], tile.transpose(1, 2, 0))
        with self.lock:
            self.left -= 1
            return self.left == 0


class _Gatherer:
    """The ``(pairs x window)`` arrays of a plan, filled tile by tile (from any thread:
    each pixel is written by one gather).

    A band whose every window pixel is gathered (no pair outside its rasters), with one
    nodata and one dtype in every record, gets its validity from the values once all are
    in (:meth:`raw`: one vectorised pass) instead of a scatter per tile."""

    def __init__(self, plan: PointPlan, bar: Any) -> None:
        n = len(plan) * plan.window
        masked = {g.band for g in _every_gather(plan) if g.mask}
        self.shape = (len(plan), plan.window)
        self.later = _validity_later(plan)
        self.values = [
            point_array(n, np.dtype(d)) if b in self.later else _filled(n, d, 0)
            for b, d in enumerate(plan.dtypes)
        ]
        self.data_ok = [
            None if b in self.later else _filled(n, np.dtype(bool), False)
            for b in range(len(plan.dtypes))
        ]
        self.mask_ok = [
            _filled(n, np.dtype(bool), True) if b in masked else None
            for b in range(len(plan.dtypes))
        ]
        self.by_key: dict[TileKey, list[TileGather]] = defaultdict(list)
        for g in plan.gathers:
            self.by_key[g.key].append(g)
        self.mosaics: dict[TileKey, list[_Mosaic]] = defaultdict(list)
        shared: dict[tuple[TileKey, ...], _Mosaic] = {}
        for m in plan.mosaics:
            if m.keys in shared:
                shared[m.keys].gathers.append(m)
                continue
            shared[m.keys] = _Mosaic(m)
            for key in m.keys:
                self.mosaics[key].append(shared[m.keys])
        self.bar = bar

    def gather(self, key: TileKey, tile: np.ndarray) -> None:
        for g in self.by_key.pop(key, ()):
            self._store(g.band, g.mask, g.nodata, g.targets, take_pixels(tile, g.sample, g.pixels))
        for mosaic in self.mosaics.pop(key, ()):
            if mosaic.put(key, tile):
                self._take(mosaic)
        if self.bar is not None:
            self.bar.update(1)

    def _take(self, mosaic: _Mosaic) -> None:
        """Read every gather of a complete mosaic, then let the mosaic go."""
        assert mosaic.array is not None  # every tile is in
        flat = mosaic.array.reshape(-1)
        for g in mosaic.gathers:
            values = self.values[g.band]
            if isinstance(g.targets, int) and not g.mask and values.dtype == flat.dtype:
                # a run of targets: taken straight into place (no scatter); mode="wrap":
                # the positions are in range, and with out= "raise" buffers the result
                out = values[g.where]
                np.take(flat, g.positions, out=out, mode="wrap")
                self._store(g.band, False, g.nodata, g.where, out, in_place=True)
            else:
                pixels = np.take(
                    flat, g.positions, mode="wrap", out=point_array(g.size, flat.dtype)
                )
                self._store(g.band, g.mask, g.nodata, g.where, pixels)
        mosaic.array = None

    def _store(
        self,
        band: int,
        mask: bool,
        nodata: float | None,
        where: np.ndarray | slice,
        pixels: np.ndarray,
        *,
        in_place: bool = False,
    ) -> None:
        """Write gathered ``pixels`` of ``band`` at ``where`` in its flat arrays (unless
        ``in_place``: they are there already), and their validity."""
        if mask:
            mask_ok = self.mask_ok[band]
            assert mask_ok is not None  # made for every band with mask gathers
            mask_ok[where] = pixels != 0
            return
        if not in_place:
            self.values[band][where] = pixels
        data_ok = self.data_ok[band]
        if data_ok is None:  # told from the values at the end
            return
        if nodata is None:
            data_ok[where] = True
        else:
            data_ok[where] = ~nodata_mask(pixels, nodata)

    def raw(self) -> RawSamples:
        valid = []
        for b, (values, data_ok, mask_ok) in enumerate(
            zip(self.values, self.data_ok, self.mask_ok, strict=True)
        ):
            if data_ok is None:
                data_ok = _valid_values(values, self.later[b])
            valid.append((data_ok if mask_ok is None else data_ok & mask_ok).reshape(self.shape))
        return RawSamples(
            values=tuple(v.reshape(self.shape) for v in self.values), valid=tuple(valid)
        )


def _every_gather(plan: PointPlan) -> list[TileGather | MosaicGather]:
    return [*plan.gathers, *plan.mosaics]


def _validity_later(plan: PointPlan) -> dict[int, float | None]:
    """The bands of ``plan`` whose validity can be told from their values once gathered,
    with their nodata: every window pixel gathered once, one nodata and one dtype."""
    if not plan.native:
        return {}
    n = len(plan) * plan.window
    counts = [0] * len(plan.dtypes)
    nodata: list[set[Any]] = [set() for _ in plan.dtypes]
    for g in _every_gather(plan):
        if not g.mask:
            counts[g.band] += g.size
            nodata[g.band].add("nan" if g.nodata is not None and np.isnan(g.nodata) else g.nodata)
    later: dict[int, float | None] = {}
    for b, (count, values) in enumerate(zip(counts, nodata, strict=True)):
        if count == n and len(values) == 1 and plan.native[b]:
            value = next(iter(values))
            later[b] = float("nan") if value == "nan" else value
    return later


def _valid_values(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """Validity of gathered ``values`` in recycled memory: not ``nodata``."""
    out = point_array(len(values), np.dtype(bool))
    if nodata is None:
        out.fill(True)
    else:
        np.logical_not(nodata_mask(values, nodata), out=out)
    return out


async def _execute(
    tiles: Mapping[TileKey, TileSource],
    planned: Awaitable[PointPlan],
    options: ReadOptions,
    max_decoded_mb: float,
    every_tile: Awaitable[Mapping[TileKey, TileSource]] | None = None,
    fetching: Callable[[], None] | None = None,
    bytes_in: threading.Event | None = None,
) -> RawSamples:
    """Fetch and decode ``tiles`` and gather their pixels once the plan ``planned`` is done:
    fetching and decoding do not wait for the plan's second step (grouping pixels by tile).
    ``tiles`` is every tile of the plan, or with ``every_tile`` (which resolves to every
    tile of the plan) a first part of them: the rest is fetched once known. ``fetching`` is
    called once the requests of ``tiles`` are out; ``bytes_in`` is set once a first tile
    is decoded or found in the cache (see :func:`~rasteret.read.points.plan_points`). At
    most ``max_decoded_mb`` of decoded tiles are held (a group's budget is taken before
    its fetch, returned once gathered)."""
    loop = asyncio.get_running_loop()
    bar = _progress(options, len(tiles))
    cache = get_tile_cache(options.cache_mb)
    futures: dict[TileKey, asyncio.Future[np.ndarray]] = {}
    fopts = fetch_options(options)
    budget = _ByteBudget(int(max_decoded_mb * _MB))
    pool = decode_pool()
    ready: list[_Gatherer] = []  # the gatherer, once the plan is done
    inline: set[TileKey] = set()  # tiles gathered in the thread that decoded them

    arrived = bytes_in or threading.Event()

    def gather_decoded(key: TileKey, tile: np.ndarray) -> None:
        """In the decoding thread: gather the tile while it is in the core's cache (once
        the plan is done; else the tile is gathered below once it is)."""
        arrived.set()
        if ready:
            ready[0].gather(key, tile)
            inline.add(key)

    decodes = TileDecodes(options, futures, cache, pool, then=gather_decoded)

    async def start() -> _Gatherer:
        ready.append(_Gatherer(await planned, bar))
        return ready[0]

    gathering: asyncio.Task[_Gatherer]  # made first in the task group below

    async def gather_rest(keys: list[TileKey]) -> None:
        """Gather the decoded tiles ``keys`` that no decoding thread gathered (decoded before
        the plan was done, cached, or taken further from a partial decode)."""
        rest = [key for key in keys if key not in inline]
        if rest:
            gatherer = await asyncio.shield(gathering)
            await asyncio.gather(*(
                run_on(gatherers, gatherer.gather, key, futures[key].result()) for key in rest
            ))  # fmt: skip
        for key in keys:
            del futures[key]

    async def gather_tile(key: TileKey) -> None:
        await futures[key]  # decoded
        await gather_rest([key])

    async def fetch_group(href: str, members: list[TileSource], fopts: FetchOptions) -> None:
        need = sum(_decoded_nbytes(s) for s in members)
        await budget.acquire(need)
        try:
            await decodes.fetch(href, members, fopts)
            await gather_rest([s.key for s in members])
        finally:
            await budget.release(need)

    def read(group: asyncio.TaskGroup, wave: Mapping[TileKey, TileSource]) -> None:
        """Start reading the tiles of ``wave``: cached and sparse ones are gathered as they
        are, the others fetched in coalesced groups per file."""
        to_fetch: dict[str, list[TileSource]] = defaultdict(list)
        for key, source in wave.items():
            futures[key] = loop.create_future()
            cached = cache.get(key, rows=source.needed_rows)
            if cached is None and source.end == source.start:
                cached = empty_tile(source.layout, source.sparse_fill, rows=source.rows)
            if cached is not None:
                arrived.set()
                futures[key].set_result(cached)
                group.create_task(gather_tile(key))
            elif (partial := cache.partial(key)) is not None:  # decoded partly by a read
                group.create_task(decodes.resume(source, partial))
                group.create_task(gather_tile(key))
            else:
                to_fetch[key.href].append(source)
        for href, members, wave_fopts in fetch_groups(to_fetch, fopts):
            group.create_task(fetch_group(href, members, wave_fopts))

    async def read_the_rest(group: asyncio.TaskGroup) -> None:
        assert every_tile is not None
        rest = {k: s for k, s in (await every_tile).items() if k not in tiles}
        if bar is not None and rest:
            bar.total += len(rest)
            bar.refresh()
        read(group, rest)

    # gathers get their own threads: behind the decode pool's queue they would wait for every
    # tile already queued; numpy's take and scatter release the GIL while they run. Two, so
    # the gathers still queued when the last tile is decoded run on two cores
    gatherers = shared_pool("gather", _GATHER_THREADS)
    try:
        async with asyncio.TaskGroup() as group:
            gathering = group.create_task(start())  # a failed plan fails the read
            read(group, tiles)
            if fetching is not None:  # once the fetch tasks just made have issued requests
                _after_rounds(loop, _FETCH_ROUNDS, fetching)
            if every_tile is not None:
                group.create_task(read_the_rest(group))
        return gathering.result().raw()
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None
    finally:
        if bar is not None:
            bar.close()


def take_pixels(tile: np.ndarray, sample: int, pixels: np.ndarray) -> np.ndarray:
    """Values of one sample of a decoded ``(samples, rows, width)`` tile at flat pixel
    positions ``row * width + col``: one ``numpy.take`` on the tile's own memory (planar
    and single-sample tiles are contiguous per sample; chunky tiles are pixel-major views).

    >>> tile = np.arange(12).reshape(2, 3, 2)  # 2 samples, 3 rows, 2 columns
    >>> take_pixels(tile, 1, np.array([0, 5])).tolist()
    [6, 11]
    >>> take_pixels(tile.transpose(1, 2, 0).copy().transpose(2, 0, 1), 1, np.array([0, 5])).tolist()
    [6, 11]
    """
    plane = tile[sample]
    if plane.flags.c_contiguous:
        return np.take(plane.reshape(-1), pixels)
    pixel_major = tile.transpose(1, 2, 0)
    if pixel_major.flags.c_contiguous:
        return np.take(pixel_major.reshape(-1), pixels * tile.shape[0] + sample)
    return plane[np.divmod(pixels, tile.shape[2])]


def _progress(options: ReadOptions, total: int) -> Any:
    if not options.progress or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tile", desc="rasteret sample")


async def read_points_async(
    records: Sequence[RecordRef],
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    points_crs: Any,
    bands: Sequence[str],
    options: PointOptions | None = None,
    read_options: ReadOptions | None = None,
    requests_out: threading.Event | None = None,
    rows_known: RowsKnown | None = None,
    bounds: FiniteBounds | None = None,
) -> PointSamples:
    """Sample ``bands`` of ``records`` at the points ``(x, y)`` given in ``points_crs``.

    Args:
        records: The records to sample, in the order rows should follow (datetime, id).
        x, y: Point coordinates; non-finite ones (null points) fall in no raster.
        points_crs: CRS of the coordinates (anything :mod:`pyproj` reads).
        bands: Band names, in output order.
        options: What to sample (match, nearest valid pixel, neighbourhoods, batching).
        read_options: I/O options (backend, concurrency, cache, coalescing, on_missing).
        requests_out: Set once the first tiles' requests are out, or the read is over
            (work that can wait, e.g. building the output's geometry, waits for it).
        rows_known: Called (on the event loop) with the very arrays the result's
            ``point_index``, ``record_index``, ``row`` and ``col`` will be, as soon as
            they are known, when that is before the read ends (one record, one batch,
            ``match="all"``): work on the rows alone can start while pixels are read.
        bounds: :func:`~rasteret.read.locate.finite_bounds` of ``x, y``, when the caller
            has it (the planner then does not work it out again).

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
    out = requests_out or threading.Event()
    try:
        if options.match == "latest" and len(records) > 1:
            return await _latest_in_waves(
                records, xs, ys, points_crs, bands, options, read_options, out
            )
        return await _read_batches(
            records, xs, ys, points_crs, bands, options, read_options, out, rows_known, bounds
        )
    finally:
        out.set()


async def _latest_in_waves(
    records: list[RecordRef],
    xs: np.ndarray,
    ys: np.ndarray,
    points_crs: Any,
    bands: Sequence[str],
    options: PointOptions,
    read_options: ReadOptions,
    requests_out: threading.Event,
) -> PointSamples:
    """``match="latest"`` newest records first: waves of 1, 2, 4, ... records (newest to
    oldest), so a time series is read no deeper than its points need. A wave reads only the
    (point, band) pairs still without a valid value: bands missing at the same points are
    read together (a chunky tile still serves them all), the others separately, all at once.
    Every record is checked for the bands up front; records without them (``on_missing=
    "skip"``) take no part."""
    bands = tuple(bands)
    usable, skipped = check_records(records, bands, read_options)
    newest_first = [ri for ri, _ in usable][::-1]
    metas_of = dict(usable)
    waves: list[PointSamples] = []
    missing = np.ones((len(bands), len(xs)), dtype=bool)
    size = 1
    while newest_first and missing.any():
        group = np.array(sorted(newest_first[:size]), dtype=np.int64)
        newest_first, size = newest_first[size:], size * 2
        subsets = _band_subsets(missing)
        group_records = [records[i] for i in group]
        try:
            async with asyncio.TaskGroup() as tasks:  # one failure cancels the other reads
                reads = [
                    tasks.create_task(_read_batches(
                        group_records, xs[pts], ys[pts], points_crs,
                        [bands[b] for b in positions], options, read_options, requests_out,
                    ))
                    for positions, pts in subsets
                ]  # fmt: skip
        except BaseExceptionGroup as eg:
            raise _first_error(eg) from None
        for (positions, pts), read in zip(subsets, reads, strict=True):
            wave = read.result()
            wave = remap_records(replace(wave, point_index=pts[wave.point_index]), group)
            if positions[0] != 0:  # row/col name the pixel in the first band's grid
                row, col = _first_band_pixels(wave, records, bands[0], xs, ys, points_crs)
                wave = replace(wave, row=row, col=col)
            band_dtypes = [_band_dtype([metas_of[i][b] for i in group]) for b in range(len(bands))]
            wave = widen_bands(wave, positions, bands, band_dtypes)
            waves.append(wave)
            for b in positions:
                missing[b, wave.point_index[wave.valid[b]]] = False
    return replace(merge_latest(waves, len(xs)), skipped=tuple(skipped))


def _band_subsets(missing: np.ndarray) -> list[tuple[list[int], np.ndarray]]:
    """Bands (positions, ascending) grouped by the points that miss them, with those points;
    bands missing nowhere are left out.

    >>> m = np.array([[True, True, False], [False, False, False], [True, True, False]])
    >>> [(bands, points.tolist()) for bands, points in _band_subsets(m)]
    [([0, 2], [0, 1])]
    """
    groups: list[tuple[list[int], np.ndarray]] = []
    for b, mask in enumerate(missing):
        if not mask.any():
            continue
        for positions, seen in groups:
            if np.array_equal(seen, mask):
                positions.append(b)
                break
        else:
            groups.append(([b], mask))
    return [(positions, np.flatnonzero(mask)) for positions, mask in groups]


def _first_band_pixels(
    samples: PointSamples,
    records: Sequence[RecordRef],
    band: str,
    xs: np.ndarray,
    ys: np.ndarray,
    points_crs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, col) of each row's point in its record's ``band`` grid (-1: none)."""
    rows = np.full(len(samples), -1, dtype=np.int64)
    cols = np.full(len(samples), -1, dtype=np.int64)
    src = crs_key(crs_(points_crs))
    rec = samples.record_index
    for r in np.unique(rec[rec >= 0]).tolist():
        sel = np.flatnonzero(rec == r)
        pts = samples.point_index[sel]
        rows[sel], cols[sel] = pixel_of(records[r].bands[band], xs[pts], ys[pts], src)
    return rows, cols


async def _read_batches(
    records: list[RecordRef],
    xs: np.ndarray,
    ys: np.ndarray,
    points_crs: Any,
    bands: Sequence[str],
    options: PointOptions,
    read_options: ReadOptions,
    requests_out: threading.Event,
    rows_known: RowsKnown | None = None,
    bounds: FiniteBounds | None = None,
) -> PointSamples:
    n = len(xs)
    size = options.points_per_batch(len(records), len(bands))
    if n <= size:
        batches: list[np.ndarray | None] = [None]  # every point, in order
    else:
        order = spatial_order(xs, ys)
        batches = [np.sort(order[i : i + size]) for i in range(0, n, size)]
    loop = asyncio.get_running_loop()
    planner = shared_pool("plan", ELASTIC)  # a plan may wait for its requests to go out

    def plan_batch(ids: np.ndarray | None, after: asyncio.Future[PointPlan] | None) -> _Planning:
        """Start planning a batch on a planner thread once the plan ``after`` (that of
        the batch before) is done, so a read plans one batch at a time; the first batch
        (``after`` None) is read as soon as its sample's tiles are known."""
        first = after is None
        probed: asyncio.Future[Any] = loop.create_future()
        known: asyncio.Future[Any] = loop.create_future()
        fetching = threading.Event()
        bytes_in = threading.Event()

        def on_tiles(tiles: Mapping[TileKey, TileSource]) -> None:
            loop.call_soon_threadsafe(_resolve, known, tiles)

        def work() -> PointPlan:
            bx, by = (xs, ys) if ids is None else (xs[ids], ys[ids])
            if len(bx) >= PROBE_MIN_POINTS:  # the tiles of a sample of them, fetched first
                step = max(1, len(bx) // PROBE_POINTS)
                tiles = plan_tiles(records, bx[::step], by[::step], points_crs, bands,
                                   options, read_options)  # fmt: skip
                loop.call_soon_threadsafe(_resolve, probed, tiles)
                if first:  # let the event loop send the requests before planning on:
                    # this thread would hold the GIL up to a switch interval (5 ms) at a time
                    fetching.wait(_FETCH_WAIT_S)
            return plan_points(records, bx, by, points_crs, bands, options, read_options,
                               on_tiles, bytes_in, bounds if ids is None else None)  # fmt: skip

        async def when_free() -> PointPlan:
            assert after is not None
            await asyncio.wait([after])  # done or failed: that is the batch before's concern
            return await loop.run_in_executor(planner, work)

        if after is None:
            planned = loop.run_in_executor(planner, work)
        else:
            planned = asyncio.ensure_future(when_free())
        return _Planning(probed, known, planned, fetching, bytes_in)

    parts: list[PointSamples] = []
    upcoming = plan_batch(batches[0], None)
    if (
        rows_known is not None
        and len(batches) == 1
        and len(records) == 1
        and options.match == "all"
    ):
        # a single record's pairs are point-major: select_samples keeps the plan's arrays
        upcoming.planned.add_done_callback(partial(_tell_rows, rows_known))
    try:
        for i, ids in enumerate(batches):
            batch = upcoming
            tiles, rest = await batch.first_tiles()
            if i + 1 < len(batches):
                upcoming = plan_batch(batches[i + 1], batch.planned)  # while this one reads
            raw = await _execute(tiles, batch.planned, read_options, options.max_decoded_mb,
                                 rest, batch.requests_out(requests_out), batch.bytes_in)  # fmt: skip
            plan = batch.planned.result()
            parts.append(select_samples(plan, raw, options, ids))
    finally:
        if not upcoming.planned.done():
            upcoming.planned.cancel()
    if len(parts) == 1 and len(records) == 1:  # one record's pairs are in point order
        return parts[0]
    return concat_samples(parts)


class _Planning:
    """A batch's plan in the making: the tiles of a sample of its points (:data:`PROBE_POINTS`
    of them, for batches of at least :data:`PROBE_MIN_POINTS`), then every tile (the plan's
    first step), then the plan."""

    def __init__(
        self,
        probed: asyncio.Future[Mapping[TileKey, TileSource]],
        known: asyncio.Future[Mapping[TileKey, TileSource]],
        planned: asyncio.Future[PointPlan],
        fetching: threading.Event,
        bytes_in: threading.Event,
    ) -> None:
        self.probed, self.known, self.planned = probed, known, planned
        self.fetching = fetching
        """Set once the first tiles' requests are out."""
        self.bytes_in = bytes_in
        """Set once the first tile is decoded (or found in the cache)."""

    def requests_out(self, also: threading.Event) -> Callable[[], None]:
        """What to call once the first tiles' requests are out: sets :attr:`fetching` and
        ``also``."""

        def sent() -> None:
            self.fetching.set()
            also.set()

        return sent

    async def first_tiles(
        self,
    ) -> tuple[Mapping[TileKey, TileSource], Awaitable[Mapping[TileKey, TileSource]] | None]:
        """The first tiles known (as soon as they are), and what gives every tile when
        those are only the probe's (else None)."""
        await asyncio.wait(
            (self.probed, self.known, self.planned), return_when=asyncio.FIRST_COMPLETED
        )
        if self.known.done():
            return self.known.result(), None
        if self.probed.done():
            return self.probed.result(), self.every_tile()
        return self.planned.result().tiles, None

    async def every_tile(self) -> Mapping[TileKey, TileSource]:
        await asyncio.wait((self.known, self.planned), return_when=asyncio.FIRST_COMPLETED)
        return self.known.result() if self.known.done() else self.planned.result().tiles


def _tell_rows(
    rows_known: RowsKnown,
    planned: asyncio.Future[PointPlan],
) -> None:
    if not planned.cancelled() and planned.exception() is None:
        plan = planned.result()
        rows_known(plan.point_index, plan.record_index, plan.pixel_row, plan.pixel_col)


def _after_rounds(loop: asyncio.AbstractEventLoop, rounds: int, fn: Callable[[], None]) -> None:
    """Call ``fn`` after ``rounds`` passes over the event loop's ready callbacks."""
    if rounds <= 0:
        fn()
    else:
        loop.call_soon(_after_rounds, loop, rounds - 1, fn)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def read_points(
    records: Sequence[RecordRef],
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    points_crs: Any,
    bands: Sequence[str],
    options: PointOptions | None = None,
    read_options: ReadOptions | None = None,
    requests_out: threading.Event | None = None,
    rows_known: RowsKnown | None = None,
    bounds: FiniteBounds | None = None,
) -> PointSamples:
    """Synchronous :func:`read_points_async` (runs on rasteret's event-loop thread)."""
    return run(read_points_async(
        records, x, y, points_crs, bands, options, read_options, requests_out, rows_known, bounds
    ))  # fmt: skip
