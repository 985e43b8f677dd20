"""Worker side of a lazy read: one :class:`ChunkRead` in, one ``[time, y, x]`` block out.

A chunk task carries values only (records with one band's metadata, AOI geometries and
grids, the chunk window, options), never stores, loops or pools: the worker opens its own
shared stores on first use (:mod:`rasteret.io.stores`) and runs the read on its own event
loop (:mod:`rasteret._sync`).

The block is computed as the eager read computes the same pixels: each (record, AOI) chip
is planned by :func:`rasteret.read.bands.plan_band` on the part of its AOI grid inside the
chunk (so only the tiles under the chunk are fetched), executed by the eager engine
(:func:`rasteret.read.execute.execute_plan_async`: one fetch wave, decode pool, AOI mask,
nodata and internal masks), then mosaicked per time slot with the eager rule: the first
valid pixel in chip order wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import shapely

from rasteret._sync import run
from rasteret.read.bands import TileKey, TileSource, plan_band
from rasteret.read.execute import execute_plan_async
from rasteret.read.grid import Grid
from rasteret.read.options import ReadOptions
from rasteret.read.plan import ChipPlan, ReadPlan, RecordRef

__all__ = ["ChunkAOI", "ChunkRead", "read_chunk"]


@dataclass(frozen=True, slots=True, eq=False)
class ChunkAOI:
    """One AOI as a chunk sees it."""

    geometry: shapely.Geometry
    """The AOI polygon in the output CRS."""
    grid: Grid
    """The AOI's whole output grid (as the eager read builds it)."""
    offset: tuple[int, int]
    """``(row, col)`` of the AOI grid's top-left pixel on the mosaic grid."""


@dataclass(frozen=True, slots=True, eq=False)
class ChunkRead:
    """Everything one chunk task needs: one band, some time slots, one y/x window."""

    band: str
    records: tuple[RecordRef, ...]
    """The records with a chip in this chunk, each carrying this band's metadata only."""
    aois: tuple[ChunkAOI, ...]
    """The AOIs with a chip in this chunk."""
    chips: tuple[tuple[int, int, int], ...]
    """``(slot, record, aoi)`` per chip, in eager chip order; ``slot`` counts from the
    chunk's first time slot, ``record`` and ``aoi`` index :attr:`records` and :attr:`aois`."""
    window: tuple[int, int, int, int]
    """``(row, col, height, width)`` of the chunk on the mosaic grid."""
    slots: int
    """Time slots in the chunk."""
    dtype: str
    fill: float
    nodata: float | None
    crs: str
    all_touched: bool
    options: ReadOptions


def _sub_grid(aoi: ChunkAOI, window: tuple[int, int, int, int]) -> tuple[Grid, int, int] | None:
    """The part of ``aoi``'s grid inside the chunk, and its (row, col) in the chunk."""
    row, col, height, width = window
    ar, ac = aoi.offset
    grid = aoi.grid
    r0, r1 = max(row, ar), min(row + height, ar + grid.height)
    c0, c1 = max(col, ac), min(col + width, ac + grid.width)
    if r0 >= r1 or c0 >= c1:
        return None
    a, b, c, d, e, f = grid.transform
    dr, dc = r0 - ar, c0 - ac
    transform = (a, b, c + dc * a, d, e, f + dr * e)
    return Grid(grid.crs, transform, c1 - c0, r1 - r0), r0 - row, c0 - col


def read_chunk(spec: ChunkRead) -> np.ndarray:
    """Read one chunk: ``[slots, height, width]`` of ``spec.band`` (fill where nothing valid).

    Raises:
        FetchError, DecodeError, UnsupportedFormatError: as the eager read.
    """
    _, _, height, width = spec.window
    dtype = np.dtype(spec.dtype)
    out = np.full((spec.slots, height, width), dtype.type(spec.fill), dtype=dtype)
    # neighbouring chunks share tiles through each worker's cache; a tile decoded down to
    # one chunk's last row is resumed (not fetched again) for the chunk below
    options = replace(spec.options, progress=False)
    subs = [_sub_grid(aoi, spec.window) for aoi in spec.aois]
    tiles: dict[TileKey, TileSource] = {}
    plans: list[ChipPlan] = []
    places: list[tuple[int, int, int]] = []
    for slot, ri, ai in spec.chips:
        sub = subs[ai]
        if sub is None:
            continue
        grid, r, c = sub
        meta = spec.records[ri].bands[spec.band]
        assert meta is not None
        read = plan_band(spec.band, 0, meta, grid, options, tiles)
        if read.overlaps:
            plans.append(ChipPlan(ri, ai, grid, (read,)))
            places.append((slot, r, c))
    if not plans:
        return out
    used = {k for p in plans for k in (*p.bands[0].tiles, *p.bands[0].mask_tiles)}
    plan = ReadPlan(
        chips=tuple(plans),
        tiles={k: v for k, v in tiles.items() if k in used},
        aoi_grids=tuple(None if s is None else s[0] for s in subs),
        aoi_geometries=tuple(aoi.geometry for aoi in spec.aois),
        bands=(spec.band,),
        dtype=dtype,
        fill_values=(spec.fill,),
        nodata=(spec.nodata,),
        crs=spec.crs,
        lattice=None,
        all_touched=spec.all_touched,
    )
    chips = run(execute_plan_async(plan, spec.records, options))
    taken = np.zeros(out.shape, dtype=bool)
    for chip, (slot, r, c) in zip(chips, places, strict=True):
        _, h, w = chip.data.shape
        seen = taken[slot, r : r + h, c : c + w]
        valid = chip.valid[0]
        np.copyto(out[slot, r : r + h, c : c + w], chip.data[0], where=valid & ~seen)
        seen |= valid
    return out
