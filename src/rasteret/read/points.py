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
reads, so the decoded-tile cache serves both), and one :class:`TileGather` per (tile, band)
lists the pixels taken from it as index arrays. Execution is then one vectorised take per
gather; there is no per-point Python.

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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from affine import Affine

from rasteret.errors import SchemaError, UnsupportedFormatError
from rasteret.ingest.metadata import BandMetadata, RasterLevel
from rasteret.read.bands import TileKey, TileSource, _alpha_sample, _mask_level, _tiles
from rasteret.read.grid import crs_key, same_crs, transform_bounds, transformer
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef, SkippedRecord, _resolve_bands
from rasteret.types import crs_

__all__ = [
    "DEFAULT_BATCH_POINTS",
    "DEFAULT_MAX_DECODED_MB",
    "Match",
    "Neighbourhood",
    "PointOptions",
    "PointPlan",
    "TileGather",
    "plan_points",
    "spatial_order",
]

Match = Literal["all", "latest"]
Neighbourhood = Literal["off", "always", "if_center_nodata"]

DEFAULT_BATCH_POINTS = 500_000
"""Points planned and read together; larger inputs are read in spatially sorted batches."""
DEFAULT_MAX_DECODED_MB = 512.0
"""Decoded tile bytes a sample read holds at once (tiles are released once gathered)."""
_BOUNDS_MARGIN = 0.01
"""Footprints reprojected to the points' CRS are widened by this fraction (curved edges)."""


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
    batch_size: int = DEFAULT_BATCH_POINTS
    """Points per batch (memory bound of the plan)."""
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
        if self.batch_size < 1 or not self.max_decoded_mb > 0:
            raise SchemaError(
                "expected batch_size >= 1 and max_decoded_mb > 0, got "
                f"{self.batch_size!r} and {self.max_decoded_mb!r}"
            )

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
    rows: np.ndarray
    """Row of each pixel inside the tile."""
    cols: np.ndarray
    """Column of each pixel inside the tile."""


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
    tiles: Mapping[TileKey, TileSource]
    """Every distinct tile (data and mask) the gathers need."""
    gathers: tuple[TileGather, ...]
    skipped: tuple[SkippedRecord, ...] = ()

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
) -> PointPlan:
    """Plan sampling ``bands`` of ``records`` at the points ``(x, y)`` (in ``points_crs``).

    Non-finite coordinates (null or empty points) fall in no raster.

    Raises:
        SchemaError: no bands, or ``x`` and ``y`` of different lengths.
        BandResolutionError: a record lacks a requested band (``on_missing="raise"``).
        UnsupportedFormatError: a rotated raster grid or a raster without CRS.
    """
    options = options or PointOptions()
    bands = tuple(bands)
    if not bands:
        raise SchemaError("expected at least one band name in bands=, got none")
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise SchemaError(f"expected as many x as y coordinates, got {len(x)} and {len(y)}")
    _check_georeferenced(records, bands)
    usable, skipped = _resolve_bands(records, bands, read_options or ReadOptions())
    src = crs_key(crs_(points_crs))
    finder = _Candidates(x, y, src)
    per_record = []
    for ri, metas in usable:
        cands = [finder.near(m) for m in metas]
        per_record.append((ri, metas, cands))
    projected = finder.project({crs_key(m.crs, m.epsg): None for _, ms in usable for m in ms})
    radius = options.radius
    tiles: dict[TileKey, TileSource] = {}
    gathers: list[TileGather] = []
    points_parts: list[np.ndarray] = []
    records_parts: list[np.ndarray] = []
    frac: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in bands]
    start = 0
    for ri, metas, cands in per_record:
        located = [
            _locate(m, c, *projected[crs_key(m.crs, m.epsg)])
            for m, c in zip(metas, cands, strict=True)
        ]
        inside = [idx[ok] for idx, (_, _, ok) in zip(cands, located, strict=True)]
        pair_points = np.unique(np.concatenate(inside)) if inside else np.empty(0, np.int64)
        n = len(pair_points)
        if n == 0:
            continue
        points_parts.append(pair_points)
        records_parts.append(np.full(n, ri, dtype=np.int64))
        for bi, (meta, idx, (fr, fc, ok)) in enumerate(zip(metas, cands, located, strict=True)):
            rows = np.full(n, np.nan)
            cols = np.full(n, np.nan)
            at = np.searchsorted(pair_points, idx[ok])
            rows[at], cols[at] = fr[ok], fc[ok]
            frac[bi].append((rows, cols))
            gathers.extend(_band_gathers(bi, meta, rows, cols, start, radius, tiles))
        start += n
    dtypes = tuple(_band_dtype([ms[bi] for _, ms in usable]) for bi in range(len(bands)))
    empty = np.empty(0, dtype=np.float64)
    return PointPlan(
        point_index=_concat(points_parts),
        record_index=_concat(records_parts),
        bands=bands,
        dtypes=dtypes,
        radius=radius,
        frac_row=tuple(np.concatenate([r for r, _ in parts]) if parts else empty for parts in frac),
        frac_col=tuple(np.concatenate([c for _, c in parts]) if parts else empty for parts in frac),
        tiles=tiles,
        gathers=tuple(gathers),
        skipped=tuple(skipped),
    )


def _check_georeferenced(records: Sequence[RecordRef], bands: tuple[str, ...]) -> None:
    for rec in records:
        for band in bands:
            meta = rec.bands.get(band)
            if meta is not None and meta.crs is None and not meta.epsg:
                raise UnsupportedFormatError(
                    f"expected a georeferenced raster to place points on, got no CRS in "
                    f"{meta.href} (band {band!r} of record {rec.id!r})"
                )


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _band_dtype(metas: Sequence[BandMetadata]) -> np.dtype:
    if not metas:
        return np.dtype("float64")
    return np.result_type(*{np.dtype(m.dtype) for m in metas})


class _Candidates:
    """Finds the points near a raster footprint without testing every point against it:
    points sorted by x in their own CRS, footprints reprojected (widened) into that CRS."""

    def __init__(self, x: np.ndarray, y: np.ndarray, src: str) -> None:
        self.x, self.y, self.src = x, y, src
        finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        self.order = finite[np.argsort(x[finite], kind="stable")]
        self.sorted_x = x[self.order]
        self._bounds: dict[tuple[tuple[float, ...], str], tuple[float, ...]] = {}
        self._wanted: dict[str, np.ndarray] = {}

    def near(self, meta: BandMetadata) -> np.ndarray:
        """Sorted indices of the points whose coordinates may fall in ``meta``'s raster."""
        key = crs_key(meta.crs, meta.epsg)
        lv = meta.level
        a, _, c, _, e, f = lv.transform
        bounds = (c, f + e * lv.image_height, c + a * lv.image_width, f)
        xmin, ymin, xmax, ymax = self._in_src(bounds, key)
        lo, hi = 0, len(self.order)
        if xmin <= xmax:  # else the footprint crosses the antimeridian: keep every x
            lo = int(np.searchsorted(self.sorted_x, xmin, side="left"))
            hi = int(np.searchsorted(self.sorted_x, xmax, side="right"))
        idx = self.order[lo:hi]
        yy = self.y[idx]
        idx = np.sort(idx[(yy >= ymin) & (yy <= ymax)])
        wanted = self._wanted.setdefault(key, np.zeros(len(self.x), dtype=bool))
        wanted[idx] = True
        return idx

    def _in_src(self, bounds: tuple[float, ...], key: str) -> tuple[float, ...]:
        cached = self._bounds.get((bounds, key))
        if cached is None:
            xmin, ymin, xmax, ymax = bounds
            if same_crs(key, self.src):
                cached = bounds
            else:
                try:
                    xmin, ymin, xmax, ymax = transform_bounds(bounds, key, self.src)
                except Exception:  # pyproj cannot bound it: test every point in the raster CRS
                    xmin, ymin, xmax, ymax = -math.inf, -math.inf, math.inf, math.inf
                mx, my = (xmax - xmin) * _BOUNDS_MARGIN, (ymax - ymin) * _BOUNDS_MARGIN
                cached = (xmin - abs(mx), ymin - abs(my), xmax + abs(mx), ymax + abs(my))
            self._bounds[(bounds, key)] = cached
        return cached

    def project(self, keys: Mapping[str, None]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per raster CRS: x and y of every point any footprint in that CRS may hold
        (NaN for the others), each point transformed once."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key in keys:
            if same_crs(key, self.src):
                out[key] = (self.x, self.y)
                continue
            idx = np.flatnonzero(self._wanted.get(key, np.zeros(0, dtype=bool)))
            px = np.full(len(self.x), np.nan)
            py = np.full(len(self.x), np.nan)
            if len(idx):
                px[idx], py[idx] = transformer(self.src, key).transform(self.x[idx], self.y[idx])
            out[key] = (px, py)
        return out


def _locate(
    meta: BandMetadata, idx: np.ndarray, px: np.ndarray, py: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fractional pixel (row, col) of the points ``idx`` in ``meta``'s full-resolution grid,
    and whether they fall inside it, exactly as ``rasterio.transform.rowcol`` computes them
    (the inverse affine applied to x and y, then floored)."""
    lv = meta.level
    inv = ~Affine(*lv.transform)
    xs, ys = px[idx], py[idx]
    cols = inv.a * xs + inv.b * ys + inv.c
    rows = inv.d * xs + inv.e * ys + inv.f
    with np.errstate(invalid="ignore"):
        ok = (
            (np.floor(rows) >= 0)
            & (np.floor(rows) < lv.image_height)
            & (np.floor(cols) >= 0)
            & (np.floor(cols) < lv.image_width)
        )
    return rows, cols, ok


def _band_gathers(
    band: int,
    meta: BandMetadata,
    frac_rows: np.ndarray,
    frac_cols: np.ndarray,
    start: int,
    radius: int,
    tiles: dict[TileKey, TileSource],
) -> list[TileGather]:
    """Gathers for one band of one record's pairs (``start`` is its first pair)."""
    lv = meta.level
    ok = np.flatnonzero(~np.isnan(frac_rows))
    if not len(ok):
        return []
    size = 2 * radius + 1
    rows = np.floor(frac_rows[ok]).astype(np.int64)
    cols = np.floor(frac_cols[ok]).astype(np.int64)
    targets = (start + ok) * size * size
    if radius:
        dr, dc = (d.ravel() for d in np.mgrid[-radius : radius + 1, -radius : radius + 1])
        rows = (rows[:, None] + dr).ravel()
        cols = (cols[:, None] + dc).ravel()
        targets = (targets[:, None] + np.arange(size * size)).ravel()
        keep = (rows >= 0) & (rows < lv.image_height) & (cols >= 0) & (cols < lv.image_width)
        rows, cols, targets = rows[keep], cols[keep], targets[keep]
    planar = lv.planar_configuration == 2 and lv.samples_per_pixel > 1
    plane = meta.band_index if planar else 0
    version = meta.etag or (str(meta.object_size) if meta.object_size is not None else "")
    fill = meta.nodata if meta.nodata is not None else 0

    def register(level: RasterLevel, mask: bool, tr: int, tc: int) -> TileKey:
        region = (tc * level.tile_width, tr * level.tile_height, 1, 1)
        p, f = (0, 255) if mask else (plane, fill)
        return _tiles(meta.href, version, 0, mask, p, level, meta.byte_order, region, f, tiles)[0]

    sample = 0 if planar else meta.band_index
    out = [
        TileGather(register(lv, False, tr, tc), band, sample, False, meta.nodata, t, r, c)
        for tr, tc, t, r, c in _by_tile(lv, rows, cols, targets)
    ]
    mask_level = _mask_level(meta, 0)
    alpha = _alpha_sample(meta)
    if mask_level is not None:
        out += [
            TileGather(register(mask_level, True, tr, tc), band, 0, True, None, t, r, c)
            for tr, tc, t, r, c in _by_tile(mask_level, rows, cols, targets)
        ]
    elif alpha is not None:
        out += [TileGather(g.key, band, alpha, True, None, g.targets, g.rows, g.cols) for g in out]
    return out


def _by_tile(
    level: RasterLevel, rows: np.ndarray, cols: np.ndarray, targets: np.ndarray
) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Split pixels by the tile of ``level`` holding them: ``(tile_row, tile_col, targets,
    rows in tile, cols in tile)`` per tile, in tile order."""
    th, tw = level.tile_height, level.tile_width
    tile_rows, in_rows = np.divmod(rows, th)
    tile_cols, in_cols = np.divmod(cols, tw)
    number = tile_rows * level.tiles_across + tile_cols
    count = level.tiles_across * level.tiles_down
    small = np.uint16 if count <= np.iinfo(np.uint16).max else np.uint32
    order = np.argsort(number.astype(small), kind="stable")  # radix sort for small types
    ordered = number[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    out = []
    for lo, hi in zip(
        np.concatenate([[0], cuts]).tolist(),
        np.concatenate([cuts, [len(order)]]).tolist(),
        strict=True,
    ):
        sel = order[lo:hi]
        tr, tc = divmod(int(ordered[lo]), level.tiles_across)
        out.append((tr, tc, targets[sel], in_rows[sel], in_cols[sel]))
    return out


def spatial_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An order of the points along a Z-order (Morton) curve, so that consecutive batches
    touch few tiles; non-finite points come last.

    >>> spatial_order(np.array([10.0, 0.0, 10.0, 0.0]), np.array([10.0, 0.0, 0.0, np.nan])).tolist()
    [1, 2, 0, 3]
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    key = np.full(len(x), np.iinfo(np.uint64).max, dtype=np.uint64)
    if finite.any():
        qx = _quantise(x[finite])
        qy = _quantise(y[finite])
        key[finite] = _spread(qx) | (_spread(qy) << np.uint64(1))
    return np.argsort(key, kind="stable")


def _quantise(v: np.ndarray) -> np.ndarray:
    lo, hi = float(v.min()), float(v.max())
    scale = (2**16 - 1) / (hi - lo) if hi > lo else 0.0
    return ((v - lo) * scale).astype(np.uint64)


def _spread(v: np.ndarray) -> np.ndarray:
    """Insert a zero bit between the 16 low bits of ``v``."""
    v = v & np.uint64(0xFFFF)
    for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v
