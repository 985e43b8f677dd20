"""Read one TorchGeo query the way TorchGeo's ``RasterDataset`` does, with rasteret's reads.

TorchGeo (0.7 and 0.8) answers a query by opening every file the index hits, wrapping it in
a ``WarpedVRT`` when it is not on the dataset's CRS and default grid, and calling
``rasterio.merge.merge(files, bounds, res, resampling=...)``. Per (file, band) that is:

1. The output grid: origin ``(xmin, ymax)``, pixel size ``res``, ``round(extent / res)``
   pixels per axis.
2. The source grid: the file's own grid, or the grid of its ``WarpedVRT``
   (``calculate_default_transform``: GDAL's suggested warp output), warped with nearest.
3. The intersection of source and output bounds, read from the fractional source window
   ``from_bounds(intersection, source)`` into the output window
   ``from_bounds(intersection, output)`` rounded as rasterio rounds it, with GDAL RasterIO
   semantics (overview pick, the dataset's ``resampling`` kernel).
4. Composited "first": an output pixel keeps the first valid value in index order; "not yet
   written" means equal to the first source's nodata (else 0).

Here step 3 is a rasteret chip: a whole-pixel copy is pasted straight onto the output
window; anything else reads the record's native pixels the window needs and hands them to
:mod:`rasteret.outputs._torchgeo_window`, which warps (for a WarpedVRT) and resamples them
as GDAL does.

Every (record, band) of a query lands in one :class:`~rasteret.read.ReadPlan` per group of
bands that share their windows, and all plans run at once: one wave of requests per batch of
queries. Records that compositing would not let change a frame (every pixel already filled
by the records before them) are not read; see :func:`read_jobs`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import rasterio.windows
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform

from rasteret._sync import run
from rasteret.errors import ReadError
from rasteret.ingest.metadata import BandMetadata
from rasteret.outputs._torchgeo_composite import Frame, Piece, Window, covering_prefix
from rasteret.outputs._torchgeo_window import (
    SourceGrid,
    WindowRead,
    plan_window,
    source_chip_grid,
    window_pixels,
)
from rasteret.read.bands import TileKey, TileSource, plan_band
from rasteret.read.execute import execute_plan_async
from rasteret.read.grid import Grid, Transform, crs_key, same_crs
from rasteret.read.options import ReadOptions, representable
from rasteret.read.plan import ChipPlan, ReadPlan, RecordRef
from rasteret.read.result import Chip

__all__ = [
    "Job",
    "Part",
    "SourceGrid",
    "SourceGrids",
    "plan_part",
    "query_grid",
    "read_frames",
    "read_jobs",
    "source_grid",
]

Bounds = tuple[float, float, float, float]
FracWindow = tuple[float, float, float, float]
"""``(col_off, row_off, width, height)`` in (fractional) pixels."""


@lru_cache(maxsize=4096)
def _default_grid(src: str, dst: str, width: int, height: int, bounds: Bounds) -> SourceGrid:
    t, w, h = calculate_default_transform(src, dst, width, height, *bounds)
    return SourceGrid((t.a, t.b, t.c, t.d, t.e, t.f), int(w), int(h), True)


def source_grid(meta: BandMetadata, crs: str) -> SourceGrid:
    """The file's own grid if TorchGeo reads it directly, else the grid of its WarpedVRT."""
    lv = meta.level
    a, _, c, _, e, f = lv.transform
    w, h = lv.image_width, lv.image_height
    src = crs_key(meta.crs, meta.epsg)
    vrt = _default_grid(src, crs, w, h, (c, f + e * h, c + a * w, f))
    native = SourceGrid(tuple(lv.transform), w, h, False)  # type: ignore[arg-type]
    if same_crs(src, crs) and (vrt.width, vrt.height) == (w, h):
        scale = max(abs(a), abs(e))
        if all(
            abs(p - q) <= 1e-9 * max(scale, abs(q))
            for p, q in zip(vrt.transform, native.transform, strict=True)
        ):
            return native
    return vrt


class SourceGrids:
    """:func:`source_grid` of each (record, band, CRS) of ``records``, computed once.

    Call it as ``grids(record_position, band, crs)``; it pickles with what it has computed.
    """

    def __init__(self, records: Sequence[RecordRef]) -> None:
        self._records = records
        self._grids: dict[tuple[int, str, str], SourceGrid] = {}

    def __call__(self, ri: int, band: str, crs: str) -> SourceGrid:
        key = (ri, band, crs)
        grid = self._grids.get(key)
        if grid is None:
            meta = self._records[ri].bands[band]
            assert meta is not None
            grid = self._grids[key] = source_grid(meta, crs)
        return grid


def query_grid(
    crs: str, bounds: Bounds, res: tuple[float, float], shape: tuple[int, int] | None = None
) -> Grid:
    """The output grid of ``rasterio.merge.merge(bounds=, res=)`` (``shape`` overrides its size).

    >>> query_grid("EPSG:32633", (0.0, 0.0, 2560.0, 1280.0), (10.0, 10.0)).shape
    (128, 256)
    """
    xmin, ymin, xmax, ymax = bounds
    xres, yres = res
    if shape is None:
        width, height = round(float((xmax - xmin) / xres)), round(float((ymax - ymin) / yres))
    else:
        height, width = (int(n) for n in shape)
        xres, yres = (xmax - xmin) / width, (ymax - ymin) / height
    return Grid(crs, (xres, 0.0, xmin, 0.0, -yres, ymax), width, height)


@dataclass(frozen=True, slots=True)
class Part:
    """How one band of one record reaches the output grid."""

    grid: Grid
    """Grid of the rasteret chip: the output window itself (a whole-pixel copy of a file),
    or the record's native pixels a :class:`WindowRead` needs."""
    out: tuple[int, int, int, int]
    """``(col, row, width, height)`` where the part lands in the output grid."""
    read: WindowRead | None
    """The GDAL read that turns the chip into the output window (None: the chip is it)."""


def _frac_window(bounds: Bounds, transform: Transform) -> FracWindow:
    w = rasterio.windows.from_bounds(*bounds, transform=Affine(*transform))
    return float(w.col_off), float(w.row_off), float(w.width), float(w.height)


_WHOLE = 1e-9
"""Distance to an integer (in pixels) under which a fast-path window counts as whole."""


def _whole_window(bounds: Bounds, transform: Transform) -> tuple[int, int, int, int] | None:
    """``_frac_window`` rounded, when it is whole pixels of a north-up grid (else None).

    A shortcut of rasterio's ``from_bounds`` (inverse affine, matrix product): for whole
    windows both round to the same integers, so only the paste case takes it.
    """
    a, b, c, d, e, f = transform
    if b != 0.0 or d != 0.0 or not (a > 0.0 and e < 0.0):
        return None
    left, bottom, right, top = bounds
    values = ((left - c) / a, (top - f) / e, (right - left) / a, (bottom - top) / e)
    snapped = tuple(round(v) for v in values)
    if any(abs(v - n) > _WHOLE for v, n in zip(values, snapped, strict=True)):
        return None
    return snapped  # type: ignore[return-value]


def _paste_part(meta: BandMetadata, src: SourceGrid, grid: Grid, ib: Bounds) -> Part | None:
    """The part when it is a whole-pixel copy of the file (the fast path), else None."""
    if src.warped:
        return None
    out = _whole_window(ib, grid.transform)
    window = _whole_window(ib, src.transform)
    if out is None or window is None or out[2:] != window[2:] or min(out[2:]) <= 0:
        return None
    paste = src.sub_grid(crs_key(meta.crs, meta.epsg), window)
    return Part(paste, out, None)


def plan_part(meta: BandMetadata, src: SourceGrid, grid: Grid, kernel: Resampling) -> Part | None:
    """The part of ``grid`` a band on ``src`` fills, or None when they do not overlap."""
    sx0, sy0, sx1, sy1 = src.bounds
    gx0, gy0, gx1, gy1 = grid.bounds
    ib = (max(sx0, gx0), max(sy0, gy0), min(sx1, gx1), min(sy1, gy1))
    if ib[0] >= ib[2] or ib[1] >= ib[3]:
        return None
    fast = _paste_part(meta, src, grid, ib)
    if fast is not None:
        return fast
    cx, cy, cw, ch = _frac_window(ib, grid.transform)
    out = (math.floor(cx + 0.1), math.floor(cy + 0.1), math.floor(cw + 0.5), math.floor(ch + 0.5))
    if out[2] <= 0 or out[3] <= 0:
        return None
    window = _frac_window(ib, src.transform)
    x0, y0, w, h = window
    whole = all(abs(v - round(v)) < 1e-6 for v in window)
    if not src.warped and whole and (round(w), round(h)) == out[2:]:
        paste = src.sub_grid(crs_key(meta.crs, meta.epsg), (round(x0), round(y0), out[2], out[3]))
        return Part(paste, out, None)
    read = plan_window(meta, src, window, (out[2], out[3]), kernel)
    native = source_chip_grid(meta, read, grid.crs)
    return None if native is None else Part(native, out, read)


@dataclass(frozen=True, slots=True, eq=False)
class _Group:
    bands: tuple[int, ...]
    """Positions (in the dataset's band order) of the bands this plan reads."""
    plan: ReadPlan
    parts: tuple[tuple[int, Part], ...]
    """The job and part of each chip of ``plan`` (same order)."""


def _plan_group(
    records: Sequence[RecordRef],
    names: Sequence[str],
    bands: tuple[int, ...],
    entries: Sequence[tuple[int, int, Part | None]],
    options: ReadOptions,
    crs: str,
    kind: tuple[np.dtype, tuple[float | None, ...]],
) -> _Group:
    """One plan reading ``bands`` for every ``(job, record, part)`` entry that has a part;
    ``kind`` is the chips' dtype and each band's nodata (of every record the query could
    read, so a chip does not depend on which of them a wave reads)."""
    tiles: dict[TileKey, TileSource] = {}
    chips: list[ChipPlan] = []
    kept: list[tuple[int, Part]] = []
    grids: list[Grid] = []
    opts = replace(options, resampling="nearest")
    for job, ri, part in entries:
        if part is None:
            continue
        metas = records[ri].bands
        reads = tuple(
            plan_band(names[b], i, metas[names[b]], part.grid, opts, tiles)  # type: ignore[arg-type]
            for i, b in enumerate(bands)
        )
        if any(r.overlaps for r in reads):
            chips.append(ChipPlan(ri, len(grids), part.grid, reads))
            grids.append(part.grid)
            kept.append((job, part))
    dtype, nodata = kind
    fills = tuple(v if v is not None and representable(v, dtype) else 0 for v in nodata)
    used = {k for c in chips for r in c.bands for k in (*r.tiles, *r.mask_tiles)}
    plan = ReadPlan(
        chips=tuple(chips),
        tiles={k: v for k, v in tiles.items() if k in used},
        aoi_grids=tuple(grids),
        aoi_geometries=tuple(shapely.box(*g.bounds) for g in grids),
        bands=tuple(names[b] for b in bands),
        dtype=dtype,
        fill_values=fills,
        nodata=nodata,
        crs=crs,
        lattice=None,
        all_touched=False,
    )
    return _Group(bands, plan, tuple(kept))


def _kind(
    records: Sequence[RecordRef],
    names: Sequence[str],
    bands: tuple[int, ...],
    rows: Sequence[int],
) -> tuple[np.dtype, tuple[float | None, ...]]:
    """Chip dtype (common dtype of ``bands`` of the records ``rows``) and each band's nodata."""
    metas = [records[ri].bands[names[b]] for ri in rows for b in bands]
    dtype = np.result_type(*{np.dtype(m.dtype) for m in metas if m}) if metas else np.dtype("uint8")
    return dtype, tuple(_first_nodata(records, rows, names[b]) for b in bands)


def _meta(records: Sequence[RecordRef], ri: int, band: str) -> BandMetadata:
    meta = records[ri].bands[band]
    if meta is None:
        raise ReadError(
            f"expected metadata for band {band!r} of record {records[ri].id!r}, got none"
        )
    return meta


def _first_nodata(records: Sequence[RecordRef], rows: Sequence[int], band: str) -> float | None:
    for ri in rows:
        meta = records[ri].bands[band]
        if meta is not None and meta.nodata is not None:
            return meta.nodata
    return None


async def _execute(
    groups: Sequence[_Group], records: Sequence[RecordRef], options: ReadOptions
) -> list[list[Chip]]:
    tasks: list[asyncio.Task[list[Chip]]] = []
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(execute_plan_async(g.plan, list(records), options)) for g in groups
            ]
    except BaseExceptionGroup as eg:
        raise _first_error(eg) from None
    return [t.result() for t in tasks]


def _first_error(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in eg.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return eg.exceptions[0]


Job = tuple[Sequence[Sequence[int]], Grid]
"""One query: record positions per output frame (each composited "first"), and its grid."""


def read_frames(
    records: Sequence[RecordRef],
    names: Sequence[str],
    frames: Sequence[Sequence[int]],
    grid: Grid,
    kernel: Resampling,
    options: ReadOptions,
    source: Callable[[int, str], SourceGrid],
) -> np.ndarray:
    """Pixels of one query: :func:`read_jobs` of ``[(frames, grid)]``."""
    return read_jobs(records, names, [(frames, grid)], kernel, options, source)[0]


def read_jobs(
    records: Sequence[RecordRef],
    names: Sequence[str],
    jobs: Sequence[Job],
    kernel: Resampling,
    options: ReadOptions,
    source: Callable[[int, str], SourceGrid],
    *,
    waves: bool = True,
) -> list[np.ndarray]:
    """Pixels of several queries, read together: every tile of every query in one wave, and
    a second wave only for frames the first one left with empty pixels.

    Compositing is "first": a record only fills pixels that every record before it in the
    frame left empty. So the first wave reads, per frame, the records in order until their
    footprints cover the query's grid (usually the first one); when that leaves no empty
    pixel, the later records cannot change the frame and are not read. Otherwise the second
    wave reads the frame's remaining records and compositing goes on in order. The pixels
    are those of compositing every record.

    Args:
        records: Every record of the dataset.
        names: Band names, in output channel order.
        jobs: ``(frames, grid)`` per query: record positions per output frame, in compositing
            order, and the query's output grid (all grids in the dataset CRS).
        kernel: The dataset's resampling kernel (of every RasterIO off the native grid).
        options: I/O options of the reads.
        source: ``(record position, band) -> SourceGrid`` in the dataset CRS.
        waves: False reads every record of every frame in one wave (the general path the
            two waves are tested against).

    Returns:
        ``[T, C, H, W]`` per query, in the common dtype of the bands.
    """
    if not jobs:
        return []
    parts: dict[tuple[int, int, int], Part | None] = {}
    for j, (frames, grid) in enumerate(jobs):
        for ri in sorted({ri for frame in frames for ri in frame}):
            for b, name in enumerate(names):
                parts[j, ri, b] = plan_part(
                    _meta(records, ri, name), source(ri, name), grid, kernel
                )
    reader = _PieceReader(records, names, parts, options, jobs[0][1].crs)
    states = [[Frame(records, names, frame, grid) for frame in frames] for frames, grid in jobs]
    first: set[tuple[int, int]] = set()
    for j, (frames, grid) in enumerate(jobs):
        for frame in frames:
            outs = [[_out(parts[j, ri, b]) for b in range(len(names))] for ri in frame]
            wave = covering_prefix(frame, grid, outs) if waves else frame
            first.update((j, ri) for ri in wave)
    pieces = reader.read(first)
    for j, job_states in enumerate(states):
        unread = {ri for frame in jobs[j][0] for ri in frame if (j, ri) not in first}
        for state in job_states:
            state.composite(j, pieces, stop_at=unread.__contains__)
    unfilled = [
        (j, state)
        for j, job_states in enumerate(states)
        for state in job_states
        if state.remaining and state.has_empty()
    ]
    if unfilled:
        rest = {(j, ri) for j, state in unfilled for ri in state.remaining}
        pieces.update(reader.read(rest - first))
        for j, state in unfilled:
            state.composite(j, pieces)
    return [np.stack([state.array() for state in job_states]) for job_states in states]


def _out(part: Part | None) -> Window | None:
    return None if part is None else part.out


class _PieceReader:
    """Reads the parts of a set of ``(job, record)`` pairs into output-window pieces."""

    def __init__(
        self,
        records: Sequence[RecordRef],
        names: Sequence[str],
        parts: dict[tuple[int, int, int], Part | None],
        options: ReadOptions,
        crs: str,
    ) -> None:
        self._records, self._names, self._parts = records, names, parts
        self._options, self._crs = options, crs
        self._kinds: dict[tuple[int, ...], tuple[np.dtype, tuple[float | None, ...]]] = {}

    def _kind(self, bands: tuple[int, ...]) -> tuple[np.dtype, tuple[float | None, ...]]:
        if bands not in self._kinds:
            rows = sorted(
                {ri for (_, ri, b), p in self._parts.items() if b in bands and p is not None}
            )
            self._kinds[bands] = _kind(self._records, self._names, bands, rows)
        return self._kinds[bands]

    def read(self, pairs: set[tuple[int, int]]) -> dict[tuple[int, int, int], Piece]:
        """``(job, record, band) -> (part, data, valid)`` of every pair (one wave)."""
        records, names, crs = self._records, self._names, self._crs
        entries: dict[int, list[tuple[int, int, Part | None]]] = {b: [] for b in range(len(names))}
        for (j, ri, b), part in self._parts.items():
            if (j, ri) in pairs:
                entries[b].append((j, ri, part))
        by_key: dict[tuple[tuple[int, int, Part | None], ...], list[int]] = {}
        for b, key in entries.items():
            by_key.setdefault(tuple(key), []).append(b)
        groups = [
            _plan_group(records, names, tuple(bs), key, self._options, crs, self._kind(tuple(bs)))
            for key, bs in by_key.items()
        ]
        busy = [g for g in groups if g.plan.chips]
        done = iter(run(_execute(busy, records, self._options)) if busy else [])
        results = [next(done) if g.plan.chips else [] for g in groups]
        pieces: dict[tuple[int, int, int], Piece] = {}
        for group, chips in zip(groups, results, strict=True):
            for (j, part), chip in zip(group.parts, chips, strict=True):
                for i, b in enumerate(group.bands):
                    data, valid = chip.data[i], chip.valid[i]
                    if part.read is not None:
                        nodata = _meta(records, chip.record_index, names[b]).nodata
                        data, valid = window_pixels(
                            data, valid, chip.transform, chip.crs, part.read, crs, nodata,
                            (part.out[2], part.out[3]),
                        )  # fmt: skip
                    pieces[j, chip.record_index, b] = (part.out, data, valid)
        return pieces
