"""Plan a whole read before any I/O: AOIs x records x bands -> chips and unique tiles.

:func:`plan_read` is pure (no I/O, no pixels): it decides the output grid of every AOI, which
(record, AOI) pairs produce a chip, how each band of each chip is read (``paste`` whole
tiles, ``resample`` through GDAL RasterIO, or ``warp`` through the GDAL warper), at which
overview level, and which tiles that needs. Tiles are keyed by :class:`TileKey`, so a tile
needed by several AOIs, several bands of one chunky file or several chips is fetched and
decoded once.

Output grid (one per AOI, all on one lattice per call):

* CRS: ``target_crs``; else the records' CRS; else the most common CRS among the records
  (ties: first seen), with a :class:`UserWarning`.
* Lattice: resolution ``resolution=`` or the finest full-resolution pixel size among the
  bands natively in that CRS; origin the grid origin of that finest band, so its records are
  pasted without resampling. With no band in that CRS the lattice goes through 0 and the
  resolution is the finest a band suggests (as many pixels along its diagonal as it has, as
  ``gdalwarp`` suggests).
* An AOI's grid covers its bounds (in the output CRS) on the lattice (``grid.py`` snapping);
  with ``out_shape=`` that covered extent is divided into ``out_shape`` pixels instead.

Chip order is record-major: records in the given order, then AOIs in the given order; pairs
whose raster does not intersect the AOI are left out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import shapely

from rasteret._warn import warn
from rasteret.errors import BandResolutionError, SchemaError
from rasteret.ingest.metadata import BandMetadata
from rasteret.read.bands import BandRead, TileKey, TileSource, plan_band
from rasteret.read.grid import (
    Grid,
    check_north_up,
    crs_key,
    same_crs,
    snap_bounds,
    transform_bounds,
    transform_geometry,
)
from rasteret.read.options import ReadOptions, representable
from rasteret.types import crs_

__all__ = [
    "BandRead",
    "ChipPlan",
    "ReadPlan",
    "RecordRef",
    "SkippedRecord",
    "TileKey",
    "TileSource",
    "plan_read",
]


@dataclass(frozen=True, slots=True)
class RecordRef:
    """One raster record: its id, datetime and the metadata of each of its bands."""

    id: str
    datetime: datetime | None
    bands: Mapping[str, BandMetadata | None]
    """Band name -> metadata (None when the header was not read)."""


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record left out of a read with ``on_missing="skip"``."""

    record_index: int
    record_id: str
    missing_bands: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChipPlan:
    """One output chip: one record read onto one AOI's grid."""

    record_index: int
    aoi_index: int
    grid: Grid
    """The AOI's output grid (shared by every chip of that AOI)."""
    bands: tuple[BandRead, ...]
    """How each requested band is read, in output order."""


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """Everything a read does, decided up front."""

    chips: tuple[ChipPlan, ...]
    """Record-major: records in input order, then AOIs in input order."""
    tiles: Mapping[TileKey, TileSource]
    """Every distinct tile the chips need (data and mask tiles)."""
    aoi_grids: tuple[Grid | None, ...]
    """Each AOI's output grid (None when no record intersects it)."""
    aoi_geometries: tuple[shapely.Geometry, ...]
    """Each AOI in the output CRS (densified before reprojection)."""
    bands: tuple[str, ...]
    dtype: np.dtype
    fill_values: tuple[float, ...]
    """Per band: the value of invalid pixels."""
    nodata: tuple[float | None, ...]
    """Per band: the first nodata value the records declare (None if none does)."""
    crs: str
    """The output CRS (``EPSG:n`` or WKT)."""
    lattice: tuple[float, float, float, float] | None
    """``(origin_x, origin_y, res_x, res_y)`` shared by every AOI grid (None with out_shape)."""
    all_touched: bool
    skipped: tuple[SkippedRecord, ...] = field(default=())

    @property
    def fetch_tiles(self) -> list[TileSource]:
        """Tiles that need bytes from the store (sparse tiles need none)."""
        return [t for t in self.tiles.values() if t.end > t.start]


def plan_read(
    records: Sequence[RecordRef],
    aois: np.ndarray | Sequence[shapely.Geometry],
    aoi_crs: Any,
    bands: Sequence[str],
    options: ReadOptions,
) -> ReadPlan:
    """Plan the read of ``bands`` of ``records`` over ``aois`` (see the module docstring).

    Raises:
        SchemaError: AOIs that are not polygons, no bands, or a fill value the output dtype
            cannot hold.
        BandResolutionError: a record lacks metadata for a requested band (``on_missing``
            "raise").
        UnsupportedFormatError: a rotated or south-up raster grid.
    """
    bands = tuple(bands)
    if not bands:
        raise SchemaError("expected at least one band name in bands=, got none")
    geoms = _check_aois(aois)
    src_crs = crs_key(crs_(aoi_crs))
    usable, skipped = _resolve_bands(records, bands, options)
    metas = [m for _, band_metas in usable for m in band_metas]
    dtype = np.dtype(options.dtype) if options.dtype else _common_dtype(metas)
    nodata, fills = _fill_values(usable, bands, dtype, options)
    out_crs = _output_crs(usable, options)
    lattice = _lattice(usable, out_crs, options)
    aoi_geoms = tuple(transform_geometry(g, src_crs, out_crs) for g in geoms)
    aoi_grids: list[Grid | None] = [None] * len(geoms)
    chips: list[ChipPlan] = []
    tiles: dict[TileKey, TileSource] = {}
    candidates = _candidate_pairs(usable, geoms, src_crs)
    for ri, band_metas in usable:
        for ai in candidates.get(ri, ()):
            grid = aoi_grids[ai]
            if grid is None:
                grid = aoi_grids[ai] = _aoi_grid(aoi_geoms[ai], out_crs, lattice, options)
            reads = [
                plan_band(name, i, meta, grid, options, tiles)
                for i, (name, meta) in enumerate(zip(bands, band_metas, strict=True))
            ]
            if any(r.overlaps for r in reads):
                chips.append(ChipPlan(ri, ai, grid, tuple(reads)))
    used = {k for c in chips for r in c.bands for k in (*r.tiles, *r.mask_tiles)}
    return ReadPlan(
        chips=tuple(chips),
        tiles={k: v for k, v in tiles.items() if k in used},
        aoi_grids=tuple(aoi_grids),
        aoi_geometries=aoi_geoms,
        bands=bands,
        dtype=dtype,
        fill_values=fills,
        nodata=nodata,
        crs=out_crs,
        lattice=None if options.out_shape else (*lattice[0], *lattice[1]),
        all_touched=options.all_touched,
        skipped=tuple(skipped),
    )


def _check_aois(aois: np.ndarray | Sequence[shapely.Geometry]) -> np.ndarray:
    geoms = np.asarray(aois, dtype=object).ravel()
    types = shapely.get_type_id(geoms)
    areas = shapely.area(geoms)
    for i, (geom, kind, area) in enumerate(zip(geoms, types, areas, strict=True)):
        if kind in (3, 6) and not shapely.is_empty(geom) and area > 0:
            continue
        at_points = kind in (0, 1, 2, 4, 5)
        if geom is None:
            got = "None"
        elif shapely.is_empty(geom):
            got = f"empty {geom.geom_type}"
        elif kind in (3, 6):  # a point or a line drawn as a box
            got = f"{geom.geom_type} of no area (bounds {list(geom.bounds)})"
            at_points = True
        else:
            got = geom.geom_type
        hint = "; use sample_points() to read values at points" if at_points else ""
        raise SchemaError(f"expected Polygon or MultiPolygon AOIs, got {got} at AOI {i}{hint}")
    return geoms


def _resolve_bands(
    records: Sequence[RecordRef], bands: tuple[str, ...], options: ReadOptions
) -> tuple[list[tuple[int, tuple[BandMetadata, ...]]], list[SkippedRecord]]:
    usable: list[tuple[int, tuple[BandMetadata, ...]]] = []
    skipped: list[SkippedRecord] = []
    for ri, rec in enumerate(records):
        metas = [rec.bands.get(b) for b in bands]
        missing = tuple(b for b, m in zip(bands, metas, strict=True) if m is None)
        if missing and options.on_missing == "raise":
            known = sorted(k for k, v in rec.bands.items() if v is not None)
            raise BandResolutionError(
                f"expected metadata for band(s) {', '.join(missing)} of record {rec.id!r}, "
                f"got none (bands with metadata: {', '.join(known) or 'none'}); enrich the "
                "collection or pass on_missing='skip'"
            )
        if missing:
            skipped.append(SkippedRecord(ri, rec.id, missing))
            continue
        present = tuple(m for m in metas if m is not None)
        for m in present:
            check_north_up(m.level.transform, m.href)
        usable.append((ri, present))
    return usable, skipped


def _common_dtype(metas: Sequence[BandMetadata]) -> np.dtype:
    if not metas:
        return np.dtype("float64")
    return np.result_type(*{np.dtype(m.dtype) for m in metas})


def _fill_values(
    usable: Sequence[tuple[int, tuple[BandMetadata, ...]]],
    bands: tuple[str, ...],
    dtype: np.dtype,
    options: ReadOptions,
) -> tuple[tuple[float | None, ...], tuple[float, ...]]:
    nodata: list[float | None] = []
    for bi in range(len(bands)):
        values = [metas[bi].nodata for _, metas in usable if metas[bi].nodata is not None]
        nodata.append(values[0] if values else None)
    fills: list[float] = []
    for name, nd in zip(bands, nodata, strict=True):
        fill = (
            options.fill_value if options.fill_value is not None else (nd if nd is not None else 0)
        )
        if not representable(fill, dtype):
            source = "fill_value=" if options.fill_value is not None else "nodata"
            raise SchemaError(
                f"expected a fill value that {dtype} can hold for band {name!r}, got {fill!r} "
                f"(from {source}); pass fill_value= or dtype="
            )
        fills.append(fill)
    return tuple(nodata), tuple(fills)


def _output_crs(
    usable: Sequence[tuple[int, tuple[BandMetadata, ...]]], options: ReadOptions
) -> str:
    if options.target_crs is not None:
        target = options.target_crs
        return crs_key(crs_(target))
    counts: Counter[str] = Counter()
    for _, metas in usable:
        counts[crs_key(metas[0].crs, metas[0].epsg)] += 1
    if not counts:
        return "EPSG:4326"
    distinct: list[str] = []
    for key in counts:
        if not any(same_crs(key, d) for d in distinct):
            distinct.append(key)
    if len(distinct) > 1:
        best = max(distinct, key=lambda k: sum(n for c, n in counts.items() if same_crs(c, k)))
        warn(
            f"records are in {len(distinct)} CRSs ({', '.join(distinct[:4])}); reading onto "
            f"the most common one, {best}, with warping; pass target_crs= to choose",
            UserWarning,
            stacklevel=4,
        )
        return best
    return distinct[0]


Lattice = tuple[tuple[float, float], tuple[float, float]]


def _lattice(
    usable: Sequence[tuple[int, tuple[BandMetadata, ...]]], out_crs: str, options: ReadOptions
) -> Lattice:
    """``((origin_x, origin_y), (res_x, res_y))`` of the call's output lattice."""
    native = [
        m.level for _, metas in usable for m in metas if same_crs(crs_key(m.crs, m.epsg), out_crs)
    ]
    finest = min(native, key=lambda lv: lv.resolution[0] * lv.resolution[1], default=None)
    res = options.resolution_xy
    if finest is not None:
        origin = (finest.transform[2], finest.transform[5])
        return origin, res or finest.resolution
    if res is None:
        res = _estimated_resolution(usable, out_crs)
    return (0.0, 0.0), res


def _estimated_resolution(
    usable: Sequence[tuple[int, tuple[BandMetadata, ...]]], out_crs: str
) -> tuple[float, float]:
    """Finest output pixel size any band suggests, the way ``gdalwarp`` suggests one
    (``GDALSuggestedWarpOutput``): as many pixels along the extent's diagonal as the source
    has, square pixels."""
    best: float | None = None
    for _, metas in usable:
        for m in metas:
            lv = m.level
            a, _, c, _, e, f = lv.transform
            bounds = (c, f + e * lv.image_height, c + a * lv.image_width, f)
            xmin, ymin, xmax, ymax = transform_bounds(bounds, crs_key(m.crs, m.epsg), out_crs)
            diagonal = math.hypot(xmax - xmin, ymax - ymin)
            res = diagonal / math.hypot(lv.image_width, lv.image_height)
            if res > 0 and (best is None or res < best):
                best = res
    return (best, best) if best else (1.0, 1.0)


def _aoi_grid(geom: shapely.Geometry, out_crs: str, lattice: Lattice, options: ReadOptions) -> Grid:
    origin, res = lattice
    transform, width, height = snap_bounds(shapely.bounds(geom).tolist(), origin, res)
    if options.out_shape is not None:
        out_h, out_w = (int(n) for n in options.out_shape)
        a, b, c, d, e, f = transform
        transform = (a * width / out_w, b, c, d, e * height / out_h, f)
        width, height = out_w, out_h
    return Grid(out_crs, transform, width, height)


def _candidate_pairs(
    usable: Sequence[tuple[int, tuple[BandMetadata, ...]]],
    geoms: np.ndarray,
    aoi_crs: str,
) -> dict[int, list[int]]:
    """Record index -> AOI indexes whose geometry intersects a band's raster footprint."""
    by_crs: dict[str, list[tuple[int, shapely.Geometry]]] = {}
    for ri, metas in usable:
        for m in metas:
            lv = m.level
            a, _, c, _, e, f = lv.transform
            box = shapely.box(c, f + e * lv.image_height, c + a * lv.image_width, f)
            by_crs.setdefault(crs_key(m.crs, m.epsg), []).append((ri, box))
    pairs: dict[int, set[int]] = {}
    for key, boxes in by_crs.items():
        local = np.array([transform_geometry(g, aoi_crs, key) for g in geoms], dtype=object)
        tree = shapely.STRtree(local)
        rec_idx = np.array([ri for ri, _ in boxes])
        hits = tree.query(np.array([b for _, b in boxes], dtype=object), predicate="intersects")
        for box_i, aoi_i in zip(hits[0].tolist(), hits[1].tolist(), strict=True):
            pairs.setdefault(int(rec_idx[box_i]), set()).add(int(aoi_i))
    return {ri: sorted(a) for ri, a in pairs.items()}
