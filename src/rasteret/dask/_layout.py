"""Driver-side planning of a lazy read: the eager mosaic grid, its time axis, each chip's place.

:func:`plan_layout` makes every decision :func:`rasteret.read.plan_read` makes that shapes the
*output* (output CRS, pixel lattice, dtype, fill values, AOI grids, which (record, AOI) pairs
give a chip) with the same functions, but plans no tiles: which tiles a chunk needs is decided
on the worker that reads it. Whether a pair gives a chip depends only on the grid geometry of
its bands, so it is decided once per distinct raster grid (a 10,000-scene time series of one
tile grid plans one chip). The mosaic grid and time slots then come from
:func:`rasteret.outputs.xarray.mosaic_grid` and the eager time-slot rule, so the lazy Dataset
has the eager Dataset's coordinates by construction.

>>> import tempfile, shapely
>>> from rasteret.testing.fixtures import get_fixture_spec, write_fixture
>>> from rasteret.tiff.header import parse_header
>>> from rasteret.ingest.metadata import band_metadata_from_header
>>> from rasteret.read import ReadOptions, RecordRef
>>> path = write_fixture(get_fixture_spec("uint16_deflate_pred2_tile256"), tempfile.mkdtemp())
>>> meta = band_metadata_from_header(parse_header(path.read_bytes()), href=str(path))
>>> aoi = shapely.box(500100, 4599000, 500300, 4599500)
>>> layout = plan_layout([RecordRef("r1", None, {"B1": meta})], [aoi], "EPSG:32633", ["B1"],
...                      ReadOptions())
>>> layout.height, layout.width, len(layout.chips), layout.tile_size
(50, 20, 1, (256, 256))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from rasteret.errors import SchemaError
from rasteret.ingest.metadata import BandMetadata
from rasteret.outputs.xarray import _time_slots, mosaic_grid
from rasteret.read.bands import TileKey, TileSource, plan_band
from rasteret.read.grid import Grid, crs_key, same_crs, transform_bounds, transform_geometry
from rasteret.read.options import ReadOptions
from rasteret.read.plan import (
    RecordRef,
    SkippedRecord,
    _aoi_grid,
    _candidate_pairs,
    _check_aois,
    _common_dtype,
    _fill_values,
    _lattice,
    _output_crs,
    _resolve_bands,
)
from rasteret.read.result import Chip, ChipSet
from rasteret.types import crs_

__all__ = ["ChipPlace", "Layout", "plan_layout"]

Transform = tuple[float, float, float, float, float, float]

_MARGIN_PIXELS = 2
"""Output pixels added around a raster's footprint when deciding which chunks it may reach."""


@dataclass(frozen=True, slots=True)
class ChipPlace:
    """Where one eager chip lands on the mosaic grid."""

    record_index: int
    """Position of the record in :attr:`Layout.records`."""
    aoi_index: int
    slot: int
    """Its time slot (index on the ``time`` axis)."""
    window: tuple[int, int, int, int]
    """``(row0, row1, col0, col1)`` of the mosaic the chip can have valid pixels in: its AOI
    grid clipped to its raster's footprint (plus a margin)."""


@dataclass(frozen=True, slots=True, eq=False)
class Layout:
    """The output of a read, decided without I/O: grid, time axis and chip places."""

    records: tuple[RecordRef, ...]
    bands: tuple[str, ...]
    dtype: np.dtype
    fill_values: tuple[float, ...]
    nodata: tuple[float | None, ...]
    crs: str
    all_touched: bool
    transform: Transform | None
    """Affine of the mosaic grid (None with no chips)."""
    height: int
    width: int
    times: np.ndarray
    """``datetime64[ns]`` of each time slot (sorted; a NaT slot last)."""
    record_ids: tuple[str, ...]
    """Per time slot, the record ids mosaicked (comma-joined, priority order)."""
    chips: tuple[ChipPlace, ...]
    """Record-major, as the eager read orders its chips (so mosaics agree)."""
    aoi_geometries: tuple[shapely.Geometry, ...]
    """Each AOI in the output CRS."""
    aoi_grids: tuple[Grid | None, ...]
    aoi_offsets: tuple[tuple[int, int] | None, ...]
    """``(row, col)`` of each AOI grid's top-left pixel on the mosaic grid."""
    tile_size: tuple[int, int] | None
    """``(height, width)`` of a tile of the finest native band, in output pixels."""
    tile_origin: tuple[int, int]
    """``(row, col)`` of a tile corner of that band on the mosaic grid (chunk alignment)."""
    skipped: tuple[SkippedRecord, ...] = ()


def _signature(metas: Sequence[BandMetadata]) -> tuple[Any, ...]:
    """What decides whether a record's bands meet a grid (not its hrefs or tile offsets)."""
    return tuple(
        (
            crs_key(m.crs, m.epsg),
            m.level.transform,
            m.level.image_width,
            m.level.image_height,
            tuple((o.image_width, o.image_height) for o in m.overviews),
        )
        for m in metas
    )


def _overlaps(
    bands: tuple[str, ...], metas: Sequence[BandMetadata], grid: Grid, options: ReadOptions
) -> bool:
    scratch: dict[TileKey, TileSource] = {}
    return any(
        plan_band(name, i, meta, grid, options, scratch).overlaps
        for i, (name, meta) in enumerate(zip(bands, metas, strict=True))
    )


def _footprint_window(
    metas: Sequence[BandMetadata], crs: str, transform: Transform
) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of the mosaic grid covering the bands' rasters."""
    a, _, c, _, e, f = transform
    rows: list[float] = []
    cols: list[float] = []
    margin = float(_MARGIN_PIXELS)
    for m in metas:
        lv = m.level
        la, _, lc, _, le, lf = lv.transform
        bounds = (lc, lf + le * lv.image_height, lc + la * lv.image_width, lf)
        xmin, ymin, xmax, ymax = transform_bounds(bounds, crs_key(m.crs, m.epsg), crs)
        cols += [(xmin - c) / a, (xmax - c) / a]
        rows += [(ymax - f) / e, (ymin - f) / e]
        # a resampling kernel reaches a few source pixels past the edge
        margin = max(margin, _MARGIN_PIXELS + 4 * max(lv.resolution[0] / a, 1.0))
    return (
        math.floor(min(rows) - margin),
        math.ceil(max(rows) + margin),
        math.floor(min(cols) - margin),
        math.ceil(max(cols) + margin),
    )


def plan_layout(
    records: Sequence[RecordRef],
    aois: np.ndarray | Sequence[shapely.Geometry],
    aoi_crs: Any,
    bands: Sequence[str],
    options: ReadOptions,
) -> Layout:
    """Decide the lazy read's output exactly as the eager read decides it (see module doc).

    Raises:
        SchemaError, BandResolutionError, UnsupportedFormatError: as :func:`plan_read`.
        ReadError: the chips share no pixel lattice (``out_shape=`` with several AOIs), as
            the eager ``get_xarray`` does.
    """
    bands = tuple(bands)
    if not bands:
        raise SchemaError("expected at least one band name in bands=, got none")
    records = tuple(records)
    geoms = _check_aois(aois)
    src_crs = crs_key(crs_(aoi_crs))
    usable, skipped = _resolve_bands(records, bands, options)
    dtype = (
        np.dtype(options.dtype)
        if options.dtype
        else _common_dtype([m for _, ms in usable for m in ms])
    )
    nodata, fills = _fill_values(usable, bands, dtype, options)
    out_crs = _output_crs(usable, options)
    lattice = _lattice(usable, out_crs, options)
    aoi_geoms = tuple(transform_geometry(g, src_crs, out_crs) for g in geoms)
    aoi_grids: list[Grid | None] = [None] * len(geoms)
    candidates = _candidate_pairs(usable, geoms, src_crs)
    meets: dict[tuple[Any, int], bool] = {}
    pairs: list[tuple[int, int, tuple[BandMetadata, ...]]] = []
    for ri, metas in usable:
        signature = _signature(metas)
        for ai in candidates.get(ri, ()):
            grid = aoi_grids[ai]
            if grid is None:
                grid = aoi_grids[ai] = _aoi_grid(aoi_geoms[ai], out_crs, lattice, options)
            key = (signature, ai)
            if key not in meets:
                meets[key] = _overlaps(bands, metas, grid, options)
            if meets[key]:
                pairs.append((ri, ai, metas))
    shells = [_shell(records[ri], ri, ai, aoi_grids[ai], len(bands), dtype) for ri, ai, _ in pairs]
    chipset = ChipSet(
        shells,
        bands,
        fills,
        dtype,
        out_crs,
        nodata,
        lattice=None if options.out_shape else (*lattice[0], *lattice[1]),
    )
    mosaic = mosaic_grid(chipset)
    times, slots, record_ids = _time_slots(shells)
    offsets: list[tuple[int, int] | None] = [None] * len(geoms)
    for (_, ai, _), place in zip(pairs, mosaic.offsets, strict=True):
        offsets[ai] = place
    places = []
    windows: dict[Any, tuple[int, int, int, int]] = {}
    for (ri, ai, metas), slot in zip(pairs, slots.tolist(), strict=True):
        grid, offset = aoi_grids[ai], offsets[ai]
        assert grid is not None
        assert offset is not None
        assert mosaic.transform is not None
        signature = _signature(metas)
        if signature not in windows:
            windows[signature] = _footprint_window(metas, out_crs, mosaic.transform)
        r0, r1, c0, c1 = windows[signature]
        row, col = offset
        window = (
            max(row, r0),
            min(row + grid.height, r1),
            max(col, c0),
            min(col + grid.width, c1),
        )
        places.append(ChipPlace(ri, ai, int(slot), window))
    tile_size, tile_origin = _tiles_on_grid(usable, out_crs, mosaic.transform)
    return Layout(
        records=records,
        bands=bands,
        dtype=dtype,
        fill_values=fills,
        nodata=nodata,
        crs=out_crs,
        all_touched=options.all_touched,
        transform=mosaic.transform,
        height=mosaic.height,
        width=mosaic.width,
        times=times,
        record_ids=tuple(record_ids),
        chips=tuple(places),
        aoi_geometries=aoi_geoms,
        aoi_grids=tuple(aoi_grids),
        aoi_offsets=tuple(offsets),
        tile_size=tile_size,
        tile_origin=tile_origin,
        skipped=tuple(skipped),
    )


def _shell(
    record: RecordRef, ri: int, ai: int, grid: Grid | None, nbands: int, dtype: np.dtype
) -> Chip:
    """A chip with the eager chip's place and identity and no pixels (a broadcast view)."""
    assert grid is not None
    shape = (nbands, grid.height, grid.width)
    return Chip(
        record_index=ri,
        aoi_index=ai,
        record_id=record.id,
        datetime=record.datetime,
        data=np.broadcast_to(np.zeros((), dtype=dtype), shape),
        valid=np.broadcast_to(np.zeros((), dtype=bool), shape),
        transform=grid.transform,
        crs=grid.crs,
    )


def _tiles_on_grid(
    usable: Sequence[tuple[int, tuple[BandMetadata, ...]]],
    out_crs: str,
    transform: Transform | None,
) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    """Tile size (output pixels) and a tile corner (mosaic row, col) of the finest native band."""
    if transform is None:
        return None, (0, 0)
    native = [m.level for _, ms in usable for m in ms if same_crs(crs_key(m.crs, m.epsg), out_crs)]
    finest = min(native, key=lambda lv: lv.resolution[0] * lv.resolution[1], default=None)
    if finest is None:
        return None, (0, 0)
    a, _, c, _, e, f = transform
    rx, ry = finest.resolution
    th = max(1, round(finest.tile_height * ry / abs(e)))
    tw = max(1, round(finest.tile_width * rx / a))
    _, _, lc, _, _, lf = finest.transform
    return (th, tw), (round((lf - f) / e), round((lc - c) / a))
