"""Plan point samples before any I/O: points x records x bands -> pairs and tile gathers.

A *pair* is one (point, record) whose point lies inside the raster of at least one requested
band of the record. The pixel under a point is found exactly as rasterio's
``DatasetReader.sample`` finds it: the inverse affine transform of the point, floored
(``rasterio.transform.rowcol``). A point on a pixel edge therefore belongs to the pixel to
its right / below, and a point on the raster's right or bottom edge is outside it. With a
window radius ``r`` (``max_distance_pixels`` or ``return_neighbourhood``) the ``(2r + 1)²``
pixels around that pixel are read too, row-major.

Every pixel is assigned to the tile holding it: a tile appears once in
:attr:`PointPlan.tiles` (keyed by the same :class:`~rasteret.read.bands.TileKey` as chip
reads, so the decoded-tile cache serves both). Sparse pixels are grouped by tile: one
:class:`TileGather` per (tile, band) lists the pixels taken from it as index arrays. Dense
pixels (:data:`MOSAIC_MIN_PIXELS_PER_TILE`) are not sorted: one :class:`MosaicGather` per
(record, band) gives each pixel's position in a *mosaic*, the band's tiles laid end to end.
Execution is then one vectorised take per gather; there is no per-point Python.

>>> import tempfile
>>> from rasteret.testing.fixtures import get_fixture_spec, write_fixture
>>> from rasteret.tiff.header import parse_header
>>> from rasteret.ingest.metadata import band_metadata_from_header
>>> from rasteret.read.plan import RecordRef
>>> path = write_fixture(get_fixture_spec("uint16_deflate_pred2_tile256"), tempfile.mkdtemp())
>>> meta = band_metadata_from_header(parse_header(path.read_bytes()), href=str(path))
>>> xs, ys = np.array([500005.0, 502565.0, 0.0]), np.array([4599995.0, 4599995.0, 0.0])
>>> plan = plan_points([RecordRef("r1", None, {"B1": meta})], xs, ys, "EPSG:32633", ["B1"])
>>> plan.point_index.tolist(), sorted(k.tile for k in plan.tiles)  # pixel (0, 0) and (0, 256)
([0, 1], [0, 1])
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rasteret.errors import SchemaError, UnsupportedFormatError
from rasteret.ingest.metadata import BandMetadata, RasterLevel
from rasteret.read.bands import TileKey, TileSource, _alpha_sample, _mask_level, _tiles
from rasteret.read.grid import crs_key
from rasteret.read.locate import Candidates, FiniteBounds, locate, point_array
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef, SkippedRecord, _resolve_bands
from rasteret.types import crs_

__all__ = [
    "DEFAULT_BATCH_SAMPLES",
    "DEFAULT_MAX_DECODED_MB",
    "MIN_BATCH_POINTS",
    "MOSAIC_MIN_PIXELS_PER_TILE",
    "Match",
    "MosaicGather",
    "Neighbourhood",
    "PointOptions",
    "PointPlan",
    "TileGather",
    "check_records",
    "plan_points",
    "plan_tiles",
]

Match = Literal["all", "latest"]
Neighbourhood = Literal["off", "always", "if_center_nodata"]

DEFAULT_BATCH_SAMPLES = 4_000_000
"""Window pixels (points x records x bands x window) planned and read together by default;
larger reads go in spatially sorted batches of points (at least :data:`MIN_BATCH_POINTS`)."""
MIN_BATCH_POINTS = 10_000
DEFAULT_MAX_DECODED_MB = 512.0
"""Decoded tile bytes a sample read holds at once (tiles are released once gathered); a
plan's mosaics (:class:`MosaicGather`) hold at most as many again."""
MOSAIC_MIN_PIXELS_PER_TILE = 4096
"""Pixels per tile (on average over the tiles a record's pixels of one tiling fall in) from
which they are read from a mosaic (:class:`MosaicGather`) instead of being grouped by tile:
grouping sorts every pixel, a mosaic copies each whole tile once."""


@dataclass(frozen=True, slots=True)
class PointOptions:
    """What to sample at each point (the keywords of ``Collection.sample_points``).

    >>> PointOptions(return_neighbourhood="always").radius
    1
    >>> PointOptions(match="first")
    Traceback (most recent call last):
    ...
    rasteret.errors.SchemaError: expected match='all' or 'latest', got 'first'
    """

    match: Match = "all"
    """``all``: a row per (point, record); ``latest``: a row per point, each band from the
    latest record (by datetime, then id) with a valid value there."""
    max_distance_pixels: int = 0
    """When the point's pixel is invalid, take the nearest valid pixel within this many
    pixels (Chebyshev) of it; nearest means nearest pixel centre to the point."""
    return_neighbourhood: Neighbourhood = "off"
    """Add the ``(2r + 1)²`` window around the point's pixel as a list column: ``always``,
    or only ``if_center_nodata``."""
    neighbourhood_radius: int = 1
    """``r`` of the returned window."""
    batch_size: int | None = None
    """Points per batch; default: as many as keep a batch near :data:`DEFAULT_BATCH_SAMPLES`
    window pixels (the memory bound of a plan)."""
    max_decoded_mb: float = DEFAULT_MAX_DECODED_MB
    """Decoded tile megabytes held at once while reading."""

    def __post_init__(self) -> None:
        if self.match not in ("all", "latest"):
            raise SchemaError(f"expected match='all' or 'latest', got {self.match!r}")
        if self.return_neighbourhood not in ("off", "always", "if_center_nodata"):
            raise SchemaError(
                "expected return_neighbourhood='off', 'always' or 'if_center_nodata', got "
                f"{self.return_neighbourhood!r}"
            )
        for name in ("max_distance_pixels", "neighbourhood_radius"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise SchemaError(f"expected {name}= a non-negative integer, got {value!r}")
        if (self.batch_size is not None and self.batch_size < 1) or not self.max_decoded_mb > 0:
            raise SchemaError(
                "expected batch_size >= 1 and max_decoded_mb > 0, got "
                f"{self.batch_size!r} and {self.max_decoded_mb!r}"
            )

    def points_per_batch(self, records: int, bands: int) -> int:
        """Points read together when ``records`` records and ``bands`` bands are sampled."""
        if self.batch_size is not None:
            return int(self.batch_size)
        per_point = max(records, 1) * max(bands, 1) * (2 * self.radius + 1) ** 2
        return max(MIN_BATCH_POINTS, DEFAULT_BATCH_SAMPLES // per_point)

    @property
    def radius(self) -> int:
        """Radius of the window read around each point's pixel."""
        r = int(self.max_distance_pixels)
        if self.return_neighbourhood != "off":
            r = max(r, int(self.neighbourhood_radius))
        return r


@dataclass(frozen=True, slots=True, eq=False)
class TileGather:
    """Pixels of one band taken from one decoded tile."""

    key: TileKey
    band: int
    """Position of the band in :attr:`PointPlan.bands`."""
    sample: int
    """Sample of the decoded tile to read (a chunky file's band, or its alpha sample)."""
    mask: bool
    """A validity tile (internal mask or alpha): non-zero pixels are valid."""
    nodata: float | None
    """The band's nodata in this record (pixels equal to it are invalid)."""
    targets: np.ndarray
    """Flat positions in the band's ``(pairs, window)`` arrays (int64)."""
    pixels: np.ndarray
    """Flat position of each pixel inside the tile, ``row * tile_width + col`` (int32 or
    intp), so that gathering is one ``numpy.take``."""

    @property
    def size(self) -> int:
        """Pixels taken."""
        return len(self.pixels)


@dataclass(frozen=True, slots=True, eq=False)
class MosaicGather:
    """Pixels of one band taken from a *mosaic*: the decoded tiles ``keys`` laid end to end,
    each in a slot of ``tile_height x tile_width x samples`` values (pixel-major, the rows
    a tile has from the top), read with one ``numpy.take`` once every tile is in.

    Dense points (many per tile) are read this way: no pixel is sorted by tile, and the
    values come out in the order of :attr:`targets`."""

    keys: tuple[TileKey, ...]
    band: int
    """Position of the band in :attr:`PointPlan.bands`."""
    sample: int
    """Sample of the decoded tiles to read (a chunky file's band, or its alpha sample)."""
    mask: bool
    """A validity mosaic (internal mask or alpha): non-zero pixels are valid."""
    nodata: float | None
    targets: np.ndarray | int
    """Flat positions in the band's ``(pairs, window)`` arrays (int64, increasing), or an
    int: the first of a run of ``len(positions)``."""
    positions: np.ndarray
    """Flat position of each pixel's value in the mosaic, ``(slot * tile_height *
    tile_width + row * tile_width + col) * samples + sample`` (int32 or intp)."""
    tile_height: int
    tile_width: int
    samples: int
    dtype: str
    """Decoded sample dtype of the tiles."""

    @property
    def size(self) -> int:
        """Pixels taken."""
        return len(self.positions)

    @property
    def where(self) -> slice | np.ndarray:
        """:attr:`targets` as an index of the band's flat arrays."""
        if isinstance(self.targets, int):
            return slice(self.targets, self.targets + len(self.positions))
        return self.targets


@dataclass(frozen=True, slots=True, eq=False)
class PointPlan:
    """Everything a point read does, decided up front."""

    point_index: np.ndarray
    """Point of each pair (int64, positions in the ``x``/``y`` passed); record-major."""
    record_index: np.ndarray
    """Record of each pair (int64, positions in the ``records`` passed)."""
    bands: tuple[str, ...]
    dtypes: tuple[np.dtype, ...]
    """Per band: the common dtype of its records (``numpy.result_type``)."""
    radius: int
    frac_row: tuple[np.ndarray, ...]
    """Per band: fractional pixel row of each pair's point (NaN: outside that band)."""
    frac_col: tuple[np.ndarray, ...]
    pixel_row: np.ndarray
    """Whole pixel row of each pair's point in the first band (:func:`whole_pixels` of
    ``frac_row[0]``: -1 outside), worked out while planning rather than after the read."""
    pixel_col: np.ndarray
    tiles: Mapping[TileKey, TileSource]
    """Every distinct tile (data and mask) the gathers need."""
    gathers: tuple[TileGather, ...]
    skipped: tuple[SkippedRecord, ...] = ()
    mosaics: tuple[MosaicGather, ...] = ()
    """Pixels read from mosaics of whole tiles rather than tile by tile (dense points)."""
    native: tuple[bool, ...] = ()
    """Per band: every record's pixels are of the band's dtype in :attr:`dtypes` (none
    widened), so its nodata can be told from the gathered values."""

    @property
    def window(self) -> int:
        """Pixels per window: ``(2 * radius + 1) ** 2``."""
        return (2 * self.radius + 1) ** 2

    def __len__(self) -> int:
        return len(self.point_index)


def plan_points(
    records: Sequence[RecordRef],
    x: np.ndarray,
    y: np.ndarray,
    points_crs: Any,
    bands: Sequence[str],
    options: PointOptions | None = None,
    read_options: ReadOptions | None = None,
    on_tiles: Callable[[Mapping[TileKey, TileSource]], None] | None = None,
    bytes_in: threading.Event | None = None,
    bounds: FiniteBounds | None = None,
) -> PointPlan:
    """Plan sampling ``bands`` of ``records`` at the points ``(x, y)`` (in ``points_crs``).

    Non-finite coordinates (null or empty points) fall in no raster. Planning has two
    steps: locating the points and numbering the tiles that hold them, then grouping the
    pixels by tile, or for dense pixels placing them in mosaics of whole tiles
    (:class:`MosaicGather`); ``on_tiles`` is called with every tile the plan needs in
    between, so fetching can start while the second step runs.

    ``bytes_in``, when given, is set once the read's first tile bytes are in: until then
    even dense pixels are grouped by tile (the read is waiting for its store, so the sort
    costs it no time, and each tile is then gathered in the thread that decodes it, with
    nothing left to do after the last decode); once it is set, dense pixels go to mosaics
    (no sort, when the tiles are already being decoded).

    ``bounds``: :func:`~rasteret.read.locate.finite_bounds` of ``x, y`` when the caller
    has it already (it is then not worked out again).

    Raises:
        SchemaError: no bands, or ``x`` and ``y`` of different lengths.
        BandResolutionError: a record lacks a requested band (``on_missing="raise"``).
        UnsupportedFormatError: a rotated raster grid or a raster without CRS.
    """
    options = options or PointOptions()
    bands = tuple(bands)
    step = _locate_and_number(records, x, y, points_crs, bands, options, read_options, bounds)
    if bytes_in is not None and not bytes_in.is_set():
        step.budget.left = 0  # still waiting for bytes: sort (see above)
    if on_tiles is not None:
        on_tiles(dict(step.tiles))
    usable, pending, tiles = step.usable, step.pending, step.tiles
    points_parts, records_parts, frac = step.points_parts, step.records_parts, step.frac
    made = [g for make in pending for g in make()]
    gathers = [g for g in made if isinstance(g, TileGather)]
    mosaics = [g for g in made if isinstance(g, MosaicGather)]
    dtypes = tuple(_band_dtype([ms[bi] for _, ms in usable]) for bi in range(len(bands)))
    native = tuple(
        all(np.dtype(ms[bi].dtype) == dtypes[bi] for _, ms in usable) for bi in range(len(bands))
    )
    empty = np.empty(0, dtype=np.float64)
    frac_row = tuple(_concat([r for r, _ in parts], empty) for parts in frac)
    frac_col = tuple(_concat([c for _, c in parts], empty) for parts in frac)
    return PointPlan(
        point_index=_concat(points_parts),
        record_index=_concat(records_parts),
        bands=bands,
        dtypes=dtypes,
        radius=options.radius,
        frac_row=frac_row,
        frac_col=frac_col,
        pixel_row=_whole(frac_row[0], step.floors),
        pixel_col=_whole(frac_col[0], step.floors),
        tiles=tiles,
        gathers=tuple(gathers),
        skipped=tuple(step.skipped),
        native=native,
        mosaics=tuple(mosaics),
    )


def whole_pixels(frac: np.ndarray) -> np.ndarray:
    """Whole pixel of fractional pixel coordinates (int32; -1 for NaN: outside the raster),
    in recycled memory (:func:`~rasteret.read.locate.point_array`).

    >>> whole_pixels(np.array([0.0, 2.75, np.nan])).tolist()
    [0, 2, -1]
    """
    out = point_array(len(frac), np.dtype(np.int32))
    with np.errstate(invalid="ignore"):
        np.copyto(out, frac, casting="unsafe")  # inside the raster: truncation is floor
    outside = np.isnan(frac, out=point_array(len(frac), np.dtype(np.bool_)))
    if outside.any():
        out[outside] = -1
    return out


def plan_tiles(
    records: Sequence[RecordRef],
    x: np.ndarray,
    y: np.ndarray,
    points_crs: Any,
    bands: Sequence[str],
    options: PointOptions | None = None,
    read_options: ReadOptions | None = None,
) -> dict[TileKey, TileSource]:
    """The tiles (data and mask) that sampling ``bands`` of ``records`` at ``(x, y)`` needs:
    the first step of :func:`plan_points` alone (points located and numbered by tile, not
    grouped). For a subset of a plan's points this is a subset of its :attr:`PointPlan.tiles`.

    Raises:
        As :func:`plan_points`.
    """
    bands = tuple(bands)
    options = options or PointOptions()
    return _locate_and_number(records, x, y, points_crs, bands, options, read_options).tiles


@dataclass(frozen=True, slots=True, eq=False)
class _FirstStep:
    """What the first planning step leaves for the second (see :func:`plan_points`)."""

    usable: list[tuple[int, tuple[BandMetadata, ...]]]
    skipped: list[SkippedRecord]
    tiles: dict[TileKey, TileSource]
    pending: list[Callable[[], list[TileGather | MosaicGather]]]
    """Per (record, band): makes its gathers."""
    points_parts: list[np.ndarray]
    records_parts: list[np.ndarray]
    frac: list[list[tuple[np.ndarray, np.ndarray]]]
    floors: dict[int, np.ndarray]
    """:func:`whole_pixels` of fractional arrays without NaN (by ``id``; the arrays are
    alive as long as the step), worked out for their tiles and reused for the plan."""
    budget: _MosaicBudget
    """What the plan's mosaics may still hold (the second step takes from it)."""


def _whole(frac: np.ndarray, floors: dict[int, np.ndarray]) -> np.ndarray:
    """:func:`whole_pixels` of ``frac``, from ``floors`` when worked out already."""
    done = floors.get(id(frac))
    return whole_pixels(frac) if done is None else done


def _locate_and_number(
    records: Sequence[RecordRef],
    x: np.ndarray,
    y: np.ndarray,
    points_crs: Any,
    bands: tuple[str, ...],
    options: PointOptions,
    read_options: ReadOptions | None,
    bounds: FiniteBounds | None = None,
) -> _FirstStep:
    """Planning's first step: check the records, locate the points, number their pixels by
    tile and register every tile needed."""
    if not bands:
        raise SchemaError("expected at least one band name in bands=, got none")
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise SchemaError(f"expected as many x as y coordinates, got {len(x)} and {len(y)}")
    usable, skipped = check_records(records, bands, read_options or ReadOptions())
    src = crs_key(crs_(points_crs))
    finder = Candidates(x, y, src, bounds)
    per_record = []
    for ri, metas in usable:
        cands = [finder.near(m) for m in metas]
        per_record.append((ri, metas, cands))
    projected = finder.project({crs_key(m.crs, m.epsg): None for _, ms in usable for m in ms})
    radius = options.radius
    tiles: dict[TileKey, TileSource] = {}
    pending: list[Callable[[], list[TileGather | MosaicGather]]] = []
    budget = _MosaicBudget(int(options.max_decoded_mb * 1_000_000))
    points_parts: list[np.ndarray] = []
    records_parts: list[np.ndarray] = []
    frac: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in bands]
    floors: dict[int, np.ndarray] = {}
    start = 0
    for ri, metas, cands in per_record:
        by_grid: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        located = []
        for m, c in zip(metas, cands, strict=True):
            grid = _grid_key(m)  # bands on one grid (most records) are located once
            if grid not in by_grid:
                by_grid[grid] = locate(m, c, *projected[grid[0]], finder.box_in(grid[0]))
            located.append(by_grid[grid])
        pair_points, per_band = _pairs(cands, located)
        n = len(pair_points)
        if n == 0:
            continue
        points_parts.append(pair_points)
        record_index = point_array(n, np.dtype(np.int64))
        record_index.fill(ri)
        records_parts.append(record_index)
        numbered: dict[tuple[Any, ...], _Numbered] = {}
        for bi, (meta, (rows, cols)) in enumerate(zip(metas, per_band, strict=True)):
            frac[bi].append((rows, cols))
            pending.append(
                _band_tiles(bi, meta, rows, cols, start, radius, tiles, numbered, floors, budget)
            )
        start += n
    return _FirstStep(
        usable, skipped, tiles, pending, points_parts, records_parts, frac, floors, budget
    )


def _pairs(
    cands: list[np.ndarray], located: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The points inside any band of one record (sorted), and each band's fractional
    (row, col) of them (NaN where the point is outside that band)."""
    if all(c is cands[0] for c in cands):  # bands on one footprint: no set union needed
        any_ok = located[0][2]
        for _, _, ok in located[1:]:
            if ok is not any_ok:
                any_ok = any_ok | ok
        every = bool(any_ok.all())
        done: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # equal grids share their arrays
        for fr, fc, ok in located:
            if id(ok) not in done:
                if not ok.all():
                    fr, fc = np.where(ok, fr, np.nan), np.where(ok, fc, np.nan)
                done[id(ok)] = (fr, fc) if every else (fr[any_ok], fc[any_ok])
        per_band = [done[id(ok)] for _, _, ok in located]
        return (cands[0] if every else cands[0][any_ok]), per_band
    merged = np.sort(np.concatenate([c[ok] for c, (_, _, ok) in zip(cands, located, strict=True)]))
    points = merged[np.append(True, merged[1:] != merged[:-1])] if len(merged) else merged
    per_band = []
    for idx, (fr, fc, ok) in zip(cands, located, strict=True):
        rows = np.full(len(points), np.nan)
        cols = np.full(len(points), np.nan)
        at = np.searchsorted(points, idx[ok])
        rows[at], cols[at] = fr[ok], fc[ok]
        per_band.append((rows, cols))
    return points, per_band


def check_records(
    records: Sequence[RecordRef], bands: tuple[str, ...], read_options: ReadOptions
) -> tuple[list[tuple[int, tuple[BandMetadata, ...]]], list[SkippedRecord]]:
    """The records that have every band (with their band metadata), and those skipped.

    Raises:
        UnsupportedFormatError: a raster without CRS, or a rotated grid.
        BandResolutionError: a record lacks a band and ``on_missing`` is ``"raise"``.
    """
    _check_georeferenced(records, bands)
    return _resolve_bands(records, bands, read_options)


def _check_georeferenced(records: Sequence[RecordRef], bands: tuple[str, ...]) -> None:
    for rec in records:
        for band in bands:
            meta = rec.bands.get(band)
            if meta is not None and meta.crs is None and not meta.epsg:
                raise UnsupportedFormatError(
                    f"expected a georeferenced raster to place points on, got no CRS in "
                    f"{meta.href} (band {band!r} of record {rec.id!r})"
                )


def _concat(parts: list[np.ndarray], empty: np.ndarray | None = None) -> np.ndarray:
    """The parts end to end (a single part as is, no copy)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.empty(0, dtype=np.int64) if empty is None else empty
    return np.concatenate(parts)


def _band_dtype(metas: Sequence[BandMetadata]) -> np.dtype:
    if not metas:
        return np.dtype("float64")
    return np.result_type(*{np.dtype(m.dtype) for m in metas})


_TileSplit = tuple[int, int, np.ndarray, np.ndarray]
"""``(tile_row, tile_col, targets, pixels)`` of one tile's share of a band's pixels."""


def _grid_key(meta: BandMetadata) -> tuple[Any, ...]:
    """What decides where points fall on a band's full-resolution grid (CRS key first)."""
    lv = meta.level
    return (crs_key(meta.crs, meta.epsg), tuple(lv.transform), lv.image_width, lv.image_height)


def _band_tiles(
    band: int,
    meta: BandMetadata,
    frac_rows: np.ndarray,
    frac_cols: np.ndarray,
    start: int,
    radius: int,
    tiles: dict[TileKey, TileSource],
    numbered: dict[tuple[Any, ...], _Numbered],
    floors: dict[int, np.ndarray],
    budget: _MosaicBudget,
) -> Callable[[], list[TileGather | MosaicGather]]:
    """Register the tiles one band of one record's pairs needs (``start`` is its first
    pair) and return what makes its gathers (the second planning step): a mosaic when the
    pixels are dense and ``budget`` has room for it, else one gather per tile.

    ``numbered`` holds the record's pixels already numbered by tile, keyed by grid and
    tiling: the bands of a record on one grid share their (frac) arrays, hence their
    numbering and grouping."""
    lv = meta.level
    grid = _grid_key(meta)
    cached: list[tuple[np.ndarray, np.ndarray, np.ndarray | int]] = []

    def number(level: RasterLevel) -> _Numbered:
        key = (*grid, level.image_width, level.image_height, level.tile_width, level.tile_height)
        if key not in numbered:
            if not cached:
                cached.append(_window_pixels(lv, frac_rows, frac_cols, start, radius, floors))
            numbered[key] = _tile_numbers(level, *cached[0])
        return numbered[key]

    planar = lv.planar_configuration == 2 and lv.samples_per_pixel > 1
    plane = meta.band_index if planar else 0
    version = meta.etag or (str(meta.object_size) if meta.object_size is not None else "")
    fill = meta.nodata if meta.nodata is not None else 0

    def register(level: RasterLevel, mask: bool, used: list[int]) -> list[TileKey]:
        p, f = (0, 255) if mask else (plane, fill)
        keys: list[TileKey] = []
        for tile in used:
            tr, tc = divmod(tile, level.tiles_across)
            # the whole tile: gathers index any of its rows, so decoding never stops early
            tw, th = level.tile_width, level.tile_height
            region = (tc * tw, tr * th, tw, th)
            keys += _tiles(meta.href, version, 0, mask, p, level, meta.byte_order, region, f, tiles)
        return keys

    data = number(lv)
    data_keys = register(lv, False, data.used)
    mask_level = _mask_level(meta, 0)
    masks = None if mask_level is None else number(mask_level)
    mask_keys = (
        [] if mask_level is None or masks is None else register(mask_level, True, masks.used)
    )
    alpha = _alpha_sample(meta)
    sample = 0 if planar else meta.band_index

    def mosaic(numbers: _Numbered, keys: list[TileKey], mask: bool, at: int) -> MosaicGather:
        layout = tiles[keys[0]].layout
        return MosaicGather(
            tuple(keys), band, at, mask, None if mask else meta.nodata, numbers.targets,
            numbers.positions(layout.samples, at), layout.tile_height, layout.tile_width,
            layout.samples, layout.dtype,
        )  # fmt: skip

    def make() -> list[TileGather | MosaicGather]:
        parts = [(data, data_keys)] + ([] if masks is None else [(masks, mask_keys)])
        if budget.admit(parts, tiles):
            mosaics: list[TileGather | MosaicGather] = [mosaic(data, data_keys, False, sample)]
            if masks is not None:
                mosaics.append(mosaic(masks, mask_keys, True, 0))
            elif alpha is not None:
                mosaics.append(mosaic(data, data_keys, True, alpha))
            return mosaics
        out: list[TileGather | MosaicGather] = [
            TileGather(key, band, sample, False, meta.nodata, t, px)
            for key, (t, px) in zip(data_keys, data.grouped(), strict=True)
        ]
        if masks is not None:
            out += [
                TileGather(key, band, 0, True, None, t, px)
                for key, (t, px) in zip(mask_keys, masks.grouped(), strict=True)
            ]
        elif alpha is not None:
            out += [
                TileGather(g.key, band, alpha, True, None, g.targets, g.pixels)
                for g in out
                if isinstance(g, TileGather)
            ]
        return out

    return make


def _window_pixels(
    lv: RasterLevel,
    frac_rows: np.ndarray,
    frac_cols: np.ndarray,
    start: int,
    radius: int,
    floors: dict[int, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | int]:
    """Raster row, column (int32) and target of every window pixel inside the raster; the
    targets of every pair of the band in order (a run from ``start``) are given as ``start``
    alone. Whole pixels of fractional arrays without NaN are kept in ``floors``."""
    size = 2 * radius + 1
    outside = np.isnan(frac_rows, out=point_array(len(frac_rows), np.dtype(bool)))
    targets: np.ndarray | int
    if not outside.any():  # every pair is in this band's raster: no subsetting
        rows = _int32(frac_rows)  # inside the raster: truncation is floor
        cols = _int32(frac_cols)
        floors[id(frac_rows)], floors[id(frac_cols)] = rows, cols
        targets = start
        if not radius:
            return rows, cols, targets
        targets = np.arange(start, start + len(frac_rows), dtype=np.int64)
    else:
        ok = np.flatnonzero(~outside)
        rows = frac_rows[ok].astype(np.int32)
        cols = frac_cols[ok].astype(np.int32)
        targets = start + ok
    if radius:
        targets = targets * (size * size)
        dr, dc = (d.ravel() for d in np.mgrid[-radius : radius + 1, -radius : radius + 1])
        rows = (rows[:, None] + dr).ravel()
        cols = (cols[:, None] + dc).ravel()
        targets = (targets[:, None] + np.arange(size * size)).ravel()
        keep = (rows >= 0) & (rows < lv.image_height) & (cols >= 0) & (cols < lv.image_width)
        rows, cols, targets = rows[keep], cols[keep], targets[keep]
    return rows, cols, targets


class _Numbered:
    """Pixels numbered by the tile of one tiling that holds them (first planning step);
    :meth:`grouped` groups them by tile, or :meth:`positions` places them in a mosaic of
    the tiles (second step, each done once)."""

    def __init__(
        self,
        number: np.ndarray,
        pixels: np.ndarray,
        targets: np.ndarray | int,
        sizes: np.ndarray,
        chunk_sizes: np.ndarray | None = None,
        tile_pixels: int = 0,
    ) -> None:
        self.number, self.pixels, self.targets, self.sizes = number, pixels, targets, sizes
        """``targets``: increasing, or an int: the first of a run (one per pixel)."""
        self.tile_pixels = tile_pixels
        """Pixels per tile (``tile_height * tile_width``) of the tiling."""
        self.chunk_sizes = chunk_sizes
        """Per chunk of :data:`_SORT_CHUNK` pixels, their count per tile (when counted
        in chunks: :func:`_counts`); the sort by tile then goes a chunk at a time too."""
        self.used: list[int] = np.flatnonzero(sizes).tolist()
        """The tiles holding any pixel, ascending."""
        self._grouped: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._slots: np.ndarray | None = None
        self._positions: dict[tuple[int, int], np.ndarray] = {}

    def grouped(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(targets, pixels in tile)`` of each tile of :attr:`used`, in that order (a
        counting sort: no comparisons)."""
        if self._grouped is None:
            self._grouped = self._group()
        return self._grouped

    def positions(self, samples: int = 1, sample: int = 0) -> np.ndarray:
        """Position of each pixel's ``sample`` in a mosaic of the tiles of :attr:`used` (in
        that order) laid end to end, ``samples`` values per pixel: ``(slot * tile_pixels +
        pixel) * samples + sample`` (int32 when every position fits, else intp).

        >>> n = _Numbered(np.array([3, 1, 3], np.uint16), np.array([5, 0, 7], np.int32), 0,
        ...               np.array([0, 1, 0, 2]), tile_pixels=16)
        >>> n.used, n.positions().tolist(), n.positions(3, 2).tolist()
        ([1, 3], [21, 0, 23], [65, 2, 71])
        """
        if (samples, sample) not in self._positions:
            slots = self._slot_positions()
            if samples == 1 and sample == 0:
                self._positions[(1, 0)] = slots
            else:
                out = point_array(len(slots), slots.dtype)
                np.multiply(slots, samples, out=out)
                out += sample
                self._positions[(samples, sample)] = out
        return self._positions[(samples, sample)]

    def _slot_positions(self) -> np.ndarray:
        """:meth:`positions` of one sample per pixel (their dtype leaves room to multiply by
        up to :data:`_MAX_SAMPLES` samples)."""
        if self._slots is None:
            used, number = self.used, self.number
            room = len(used) * self.tile_pixels * _MAX_SAMPLES < 2**31
            dtype = np.dtype(np.int32 if room and self.pixels.dtype == np.int32 else np.intp)
            slots = point_array(len(number), dtype)
            if len(used) == len(self.sizes):  # every tile: the slot is the tile number
                np.copyto(slots, number, casting="unsafe")
            else:
                table = np.zeros(len(self.sizes), dtype=dtype)
                table[used] = np.arange(len(used), dtype=dtype)
                np.take(table, number, out=slots, mode="wrap")  # numbers index the table
            slots *= self.tile_pixels
            slots += self.pixels
            self._slots = slots
        return self._slots

    def _group(self) -> list[tuple[np.ndarray, np.ndarray]]:
        targets, pixels = self.targets, self.pixels
        if isinstance(targets, int):
            first: int | None = targets
        elif len(targets) and int(targets[-1] - targets[0]) == len(targets) - 1:
            first = int(targets[0])  # a run of targets
        else:
            first = None
        if len(self.used) <= 1:  # one tile (or none): no reordering
            if isinstance(targets, int):
                targets = np.arange(targets, targets + len(pixels), dtype=np.int64)
            return [(targets, pixels)] if self.used else []
        order = _stable_order(self.number, self.sizes, self.used, self.chunk_sizes)
        # mode="wrap": the order's indices are in range, and with an out= array the default
        # mode ("raise") buffers the whole result and copies it over (twice the time)
        pixels = np.take(pixels, order, out=point_array(len(order), pixels.dtype), mode="wrap")
        if first is None:
            assert not isinstance(targets, int)
            targets = targets[order]
        else:  # the targets are the order itself, shifted in place (order is ours)
            if first:
                order += first
            targets = order
        ends = np.cumsum(self.sizes)
        return [
            (targets[ends[t] - self.sizes[t] : ends[t]], pixels[ends[t] - self.sizes[t] : ends[t]])
            for t in self.used
        ]


_MAX_SAMPLES = 256
"""Samples per pixel below which int32 flat positions in a tile (times the samples, for
pixel-major tiles) cannot overflow when the tile has fewer than ``2**31 / 256`` pixels."""


def _tile_numbers(
    level: RasterLevel, rows: np.ndarray, cols: np.ndarray, targets: np.ndarray | int
) -> _Numbered:
    """Number the pixels ``(rows, cols)`` by the tile of ``level`` holding them, and find
    their flat positions inside it (``row * tile_width + col``: int32 for power-of-2 tiles
    of fewer than ``2**31 / 256`` pixels, else intp)."""
    across = level.tiles_across
    count = across * level.tiles_down
    small = np.dtype(np.uint16 if count <= np.iinfo(np.uint16).max else np.uint32)
    th, tw = level.tile_height, level.tile_width
    if (
        _power_of_2(th)
        and _power_of_2(tw)
        and rows.dtype == cols.dtype == np.int32
        and th * tw * _MAX_SAMPLES < 2**31
    ):
        # shifts and masks in few buffers (fresh memory is costly): the tile row, times the
        # tiles across, plus the tile column, straight in the small type (every partial
        # result is a tile number, so it fits); then the row in the tile, times the tile
        # width, plus the column in the tile
        number = np.right_shift(
            rows, th.bit_length() - 1, out=point_array(len(rows), small), casting="unsafe"
        )
        number *= small.type(across)
        tile_col = np.right_shift(
            cols, tw.bit_length() - 1, out=point_array(len(rows), small), casting="unsafe"
        )
        number += tile_col
        del tile_col
        pixels = np.bitwise_and(rows, th - 1, out=point_array(len(rows), rows.dtype))
        pixels *= tw
        part = np.bitwise_and(cols, tw - 1, out=point_array(len(rows), rows.dtype))
        pixels += part
        del part
    else:
        tile_rows, in_rows = _split(rows, th)
        tile_cols, in_cols = _split(cols, tw)
        number = tile_rows.astype(small)
        number *= np.asarray(across, dtype=small)
        number += tile_cols.astype(small)
        pixels = in_rows.astype(np.intp)
        pixels *= tw
        pixels += in_cols
    return _Numbered(number, pixels, targets, *_counts(number, count), tile_pixels=th * tw)


class _MosaicBudget:
    """Bytes a plan's mosaics may hold in all; decides which pixels are read from mosaics.

    >>> from rasteret.read.bands import TileKey
    >>> from rasteret.tiff.decode import TileLayout
    >>> key = TileKey("a.tif", "", 0, False, 0, 0)
    >>> layout = TileLayout(256, 256, 1, "uint16", 16)
    >>> tiles = {key: TileSource(key, layout, 256, 0, 10, 0.0)}
    >>> dense = _Numbered(np.zeros(5000, np.uint16), np.zeros(5000, np.int32), 0, np.array([5000]))
    >>> budget = _MosaicBudget(200_000)
    >>> budget.admit([(dense, [key])], tiles), budget.left  # a 128 KiB tile
    (True, 68928)
    >>> budget.admit([(dense, [key])], tiles), budget.left  # the same tiles: counted once
    (True, 68928)
    """

    def __init__(self, capacity: int) -> None:
        self.left = capacity
        self.admitted: set[tuple[TileKey, ...]] = set()

    def admit(
        self,
        parts: Sequence[tuple[_Numbered, Sequence[TileKey]]],
        tiles: Mapping[TileKey, TileSource],
    ) -> bool:
        """Whether every part (pixels numbered by tile, and the keys of the tiles they fall
        in) is dense enough for a mosaic (:data:`MOSAIC_MIN_PIXELS_PER_TILE`) and all of
        them fit in what is left (then it is taken); tiles already admitted count once."""
        need = 0
        for numbers, keys in parts:
            if not keys or len(numbers.pixels) < MOSAIC_MIN_PIXELS_PER_TILE * len(keys):
                return False
            if tuple(keys) not in self.admitted:
                layout = tiles[keys[0]].layout
                slot = layout.tile_height * layout.tile_width * layout.samples
                need += len(keys) * slot * np.dtype(layout.dtype).itemsize
        if need > self.left:
            return False
        self.left -= need
        self.admitted.update(tuple(keys) for _, keys in parts)
        return True


_SORT_CHUNK = 1 << 16
"""Pixels numbered, counted and sorted by tile a chunk at a time when there are more (and
few tiles, :data:`_CHUNKED_TILES`): a chunk's scratch buffers are small enough for the
allocator to reuse, where one large ``argsort`` or ``bincount`` faults fresh pages in for
its output and scratch (~3 ms per million pixels on the benchmark VM)."""
_CHUNKED_TILES = 64


def _chunked(n: int, tiles: int) -> bool:
    return n > _SORT_CHUNK and tiles <= _CHUNKED_TILES


def _counts(number: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``numpy.bincount(number, minlength=count)``, and when :func:`_chunked` (counted a
    chunk at a time) each chunk's counts, rows of a ``(chunks, count)`` array (else None)."""
    if not _chunked(len(number), count):
        return np.bincount(number, minlength=count), None
    chunks = np.stack([
        np.bincount(number[lo : lo + _SORT_CHUNK], minlength=count)
        for lo in range(0, len(number), _SORT_CHUNK)
    ])  # fmt: skip
    return chunks.sum(axis=0), chunks


def _stable_order(
    number: np.ndarray, sizes: np.ndarray, used: list[int], chunk_sizes: np.ndarray | None
) -> np.ndarray:
    """``numpy.argsort(number, kind="stable")`` (``sizes``: the count of each number, those
    of ``used`` non-zero): with ``chunk_sizes`` (:func:`_counts`), each chunk is sorted on
    its own (a radix sort of small unsigned numbers) and its runs copied to their places,
    in recycled memory.

    >>> number = np.array([2, 0, 2, 1], np.uint8)
    >>> _stable_order(number, np.array([1, 1, 2]), [0, 1, 2], np.array([[1, 1, 2]])).tolist()
    [1, 3, 0, 2]
    """
    n = len(number)
    if chunk_sizes is None:
        return np.argsort(number, kind="stable")  # radix sort: small unsigned types
    order = point_array(n, np.dtype(np.intp))
    at = (np.cumsum(sizes) - sizes).tolist()  # where each tile's next pixel goes
    for c, lo in enumerate(range(0, n, _SORT_CHUNK)):
        local = np.argsort(number[lo : lo + _SORT_CHUNK], kind="stable")
        local += lo
        counts = chunk_sizes[c].tolist()
        end = 0
        for t in used:
            end += counts[t]
            if counts[t]:
                order[at[t] : at[t] + counts[t]] = local[end - counts[t] : end]
                at[t] += counts[t]
    return order


def _by_tile(
    level: RasterLevel, rows: np.ndarray, cols: np.ndarray, targets: np.ndarray
) -> list[_TileSplit]:
    """Split pixels by the tile of ``level`` holding them: ``(tile_row, tile_col, targets,
    pixels in tile)`` per tile, in tile order; ``targets`` must be increasing."""
    numbered = _tile_numbers(level, rows, cols, targets)
    return [
        (*divmod(tile, level.tiles_across), t, px)
        for tile, (t, px) in zip(numbered.used, numbered.grouped(), strict=True)
    ]


def _int32(values: np.ndarray) -> np.ndarray:
    """``values.astype(numpy.int32)`` in recycled memory."""
    out = point_array(len(values), np.dtype(np.int32))
    np.copyto(out, values, casting="unsafe")
    return out


def _power_of_2(size: int) -> bool:
    return size > 0 and size & (size - 1) == 0


def _split(pixels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``divmod(pixels, size)`` for non-negative pixels; shifts when ``size`` is a power of 2."""
    if _power_of_2(size):
        return pixels >> (size.bit_length() - 1), pixels & (size - 1)
    return np.divmod(pixels, size)
