"""How one band of one chip is read: mode, overview level, source region and tiles (pure).

Three modes, from cheapest to most general:

* ``paste``: same CRS, same pixel size, grid offsets a whole number of pixels apart. The
  chip is a window of the full-resolution image; decoded tiles are copied in with NumPy
  slicing. Bit-exact with ``rasterio`` ``read(window=..., boundless=True)``.
* ``resample``: same CRS, other pixel size. GDAL's RasterIO
  semantics: the overview level ``GDALBandGetBestOverviewLevel2`` picks, then the fractional
  window resampled to the chip's shape; equal to ``rasterio`` ``read(window=, out_shape=,
  resampling=)``.
* ``warp``: another CRS, or the same pixel size off by a fraction of a pixel (where
  RasterIO on an in-memory region would round the offset away). The overview level is picked the same way from the chip's footprint
  in the source CRS, then :func:`rasterio.warp.reproject` onto the chip grid.

The *region* of a band read is the rectangle of its level that gets assembled from tiles: the
window itself when pasting, the window plus a kernel margin otherwise (margins stay inside the
image, so kernels see the same neighbours GDAL sees).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rasterio.enums import Resampling

from rasteret.ingest.metadata import BandMetadata, RasterLevel
from rasteret.read.grid import (
    Grid,
    Transform,
    Window,
    best_overview,
    crs_key,
    level_window,
    same_crs,
    transform_bounds,
)
from rasteret.read.options import ReadOptions
from rasteret.tiff.decode import TileLayout

__all__ = ["BandRead", "Mode", "TileKey", "TileSource", "plan_band"]

Mode = Literal["paste", "resample", "warp"]

_ALIGN_TOLERANCE = 1e-6
"""Grids closer than this (in pixels, or relative pixel size) count as aligned."""

_KERNEL_RADIUS = {
    Resampling.nearest: 1,
    Resampling.bilinear: 1,
    Resampling.cubic: 2,
    Resampling.cubic_spline: 2,
    Resampling.lanczos: 3,
    Resampling.average: 1,
    Resampling.mode: 1,
    Resampling.rms: 1,
}


@dataclass(frozen=True, slots=True)
class TileKey:
    """Identity of one decoded tile: the unit of fetching, decoding and caching."""

    href: str
    version: str
    """ETag or object size of the file when known (a rewritten file never hits the cache)."""
    level: int
    """0 full resolution, ``k`` the k-th overview."""
    mask: bool
    """A tile of the GDAL internal mask of that level."""
    plane: int
    """Sample plane of a planar file (0 for chunky files: one tile serves every band)."""
    tile: int
    """Tile (or strip) number, row-major."""


@dataclass(frozen=True, slots=True, eq=False)
class TileSource:
    """Where a tile's bytes are and how to decode them."""

    key: TileKey
    layout: TileLayout
    rows: int
    """Rows stored in the tile (the last strip of a striped image may be short)."""
    start: int
    end: int
    """Byte range ``[start, end)``; empty for sparse tiles (GDAL fills them, no fetch)."""
    sparse_fill: float
    """Value of a sparse tile: nodata (else 0) for data, 255 (valid) for masks."""


@dataclass(frozen=True, slots=True, eq=False)
class BandRead:
    """The plan for one band of one chip."""

    band: str
    index: int
    """Channel of the chip this band fills."""
    href: str
    mode: Mode
    level: int
    sample: int
    """Sample of the decoded tile holding this band (its index in a chunky file, else 0)."""
    region: Window
    """``(col, row, width, height)`` of the level assembled from tiles (may pass the edge)."""
    image_size: tuple[int, int]
    """``(width, height)`` of the level."""
    tile_size: tuple[int, int]
    """``(tile_width, tile_height)`` of the level (strips: image width x rows per strip)."""
    tiles: tuple[TileKey, ...]
    mask_tiles: tuple[TileKey, ...]
    """Tiles of the level's validity mask (empty when the band has none)."""
    mask_sample: int
    """Sample of a mask tile holding the mask: 0 for an internal mask IFD, the alpha
    sample's index when a chunky RGBA / gray+alpha file's alpha band is the mask."""
    src_window: tuple[float, float, float, float] | None
    """``resample``: fractional ``(x0, y0, width, height)`` relative to the region."""
    src_transform: Transform
    """Transform of the region's first pixel (at the level's pixel size)."""
    src_crs: str
    nodata: float | None
    dtype: str
    resampling: Resampling
    overlaps: bool
    """Whether the chip sees any pixel of this band's raster."""


def plan_band(
    band: str,
    index: int,
    meta: BandMetadata,
    grid: Grid,
    options: ReadOptions,
    tiles: dict[TileKey, TileSource],
) -> BandRead:
    """Plan reading ``meta`` onto ``grid``; registers the tiles it needs in ``tiles``."""
    kernel = options.resampling_for(meta.dtype)
    src_crs = crs_key(meta.crs, meta.epsg)
    full = meta.level
    nearest = kernel == Resampling.nearest
    if same_crs(src_crs, grid.crs):
        x0, y0, w, h = level_window(full.transform, grid)
        if _aligned(x0, y0, w, h, grid):
            region = (round(x0), round(y0), grid.width, grid.height)
            return _build(band, index, meta, "paste", 0, region, None, src_crs, kernel, tiles)
        # GDAL's in-memory RasterIO copies a window as whole pixels when its integer size
        # equals the output size, ignoring a sub-pixel offset; the warper does not.
        same_size = int(w) == grid.width and int(h) == grid.height
        mode: Mode = "warp" if same_size else "resample"
    else:
        a, _, c, _, e, f = full.transform
        xmin, ymin, xmax, ymax = transform_bounds(grid.bounds, grid.crs, src_crs)
        x0, y0 = (xmin - c) / a, (ymax - f) / e
        w, h = (xmax - xmin) / a, (ymin - ymax) / e
        mode = "warp"
    sizes = [(o.image_width, o.image_height) for o in meta.overviews]
    level = best_overview(
        full.image_width,
        full.image_height,
        sizes,
        int(w),
        int(h),
        grid.width,
        grid.height,
        nearest=nearest,
    )
    lv = meta.levels[level]
    fx, fy = full.image_width / lv.image_width, full.image_height / lv.image_height
    ox0, oy0, ow, oh = x0 / fx, y0 / fy, w / fx, h / fy
    scale = max(ow / grid.width, oh / grid.height)
    margin = math.ceil(_KERNEL_RADIUS.get(kernel, 3) * max(1.0, scale)) + 2
    col0, col1 = math.floor(ox0) - margin, math.ceil(ox0 + ow) + margin
    row0, row1 = math.floor(oy0) - margin, math.ceil(oy0 + oh) + margin
    if mode == "warp":  # the warper treats outside the source as no data: clip to the image
        lo_c, hi_c, lo_r, hi_r = 0, lv.image_width, 0, lv.image_height
    else:  # margins stay inside the image; the window itself may pass the edge
        lo_c, hi_c = min(0, math.floor(ox0)), max(lv.image_width, math.ceil(ox0 + ow))
        lo_r, hi_r = min(0, math.floor(oy0)), max(lv.image_height, math.ceil(oy0 + oh))
    col0, col1 = max(col0, lo_c), min(col1, hi_c)
    row0, row1 = max(row0, lo_r), min(row1, hi_r)
    region = (col0, row0, max(col1 - col0, 0), max(row1 - row0, 0))
    src_window = (ox0 - col0, oy0 - row0, ow, oh) if mode == "resample" else None
    overlaps = (
        ox0 < lv.image_width and ox0 + ow > 0 and oy0 < lv.image_height and oy0 + oh > 0
        if mode == "resample"
        else region[2] > 0 and region[3] > 0
    )
    return _build(
        band, index, meta, mode, level, region, src_window, src_crs, kernel, tiles, overlaps
    )


def _aligned(x0: float, y0: float, w: float, h: float, grid: Grid) -> bool:
    tol = _ALIGN_TOLERANCE
    return (
        abs(w - grid.width) <= tol * max(grid.width, 1)
        and abs(h - grid.height) <= tol * max(grid.height, 1)
        and abs(x0 - round(x0)) <= tol
        and abs(y0 - round(y0)) <= tol
    )


def _build(
    band: str,
    index: int,
    meta: BandMetadata,
    mode: Mode,
    level: int,
    region: Window,
    src_window: tuple[float, float, float, float] | None,
    src_crs: str,
    kernel: Resampling,
    tiles: dict[TileKey, TileSource],
    overlaps: bool | None = None,
) -> BandRead:
    lv = meta.levels[level]
    if overlaps is None:
        col, row, w, h = region
        overlaps = col < lv.image_width and col + w > 0 and row < lv.image_height and row + h > 0
    planar = lv.planar_configuration == 2 and lv.samples_per_pixel > 1
    plane = meta.band_index if planar else 0
    version = meta.etag or (str(meta.object_size) if meta.object_size is not None else "")
    fill = meta.nodata if meta.nodata is not None else 0
    keys = _tiles(meta.href, version, level, False, plane, lv, meta.byte_order, region, fill, tiles)
    mask_keys: tuple[TileKey, ...] = ()
    mask_sample = 0
    mask_level = _mask_level(meta, level)
    alpha = _alpha_sample(meta)
    if mask_level is not None:
        mask_keys = _tiles(
            meta.href, version, level, True, 0, mask_level, meta.byte_order, region, 255, tiles
        )
    elif alpha is not None:
        mask_keys, mask_sample = keys, alpha
    a, _, c, _, e, f = lv.transform
    col, row = region[0], region[1]
    return BandRead(
        band=band,
        index=index,
        href=meta.href,
        mode=mode,
        level=level,
        sample=0 if planar else meta.band_index,
        region=region,
        image_size=(lv.image_width, lv.image_height),
        tile_size=(lv.tile_width, lv.tile_height),
        tiles=keys if overlaps else (),
        mask_tiles=mask_keys if overlaps else (),
        mask_sample=mask_sample,
        src_window=src_window,
        src_transform=(a, 0.0, c + col * a, 0.0, e, f + row * e),
        src_crs=src_crs,
        nodata=meta.nodata,
        dtype=meta.dtype,
        resampling=kernel,
        overlaps=overlaps,
    )


def _mask_level(meta: BandMetadata, level: int) -> RasterLevel | None:
    if level == 0:
        return meta.mask
    lv = meta.levels[level]
    for m in meta.mask_overviews:
        if (m.image_width, m.image_height) == (lv.image_width, lv.image_height):
            return m
    return None


def _alpha_sample(meta: BandMetadata) -> int | None:
    """The alpha sample GDAL uses as this band's mask, if any.

    GDAL's rule (``GDALRasterBand::GetMaskBand``): with no internal mask and no nodata, bands
    1 of a 2-band or 1-3 of a 4-band file whose last band is alpha (ExtraSamples 1 or 2) are
    masked by it (byte or uint16 alpha; valid where alpha != 0). Only chunky files are
    handled: a planar file's metadata holds the offsets of its own plane only.
    """
    lv = meta.level
    count = lv.samples_per_pixel
    if meta.nodata is not None or count not in (2, 4) or meta.band_index >= count - 1:
        return None
    if (
        lv.planar_configuration == 2
        or not meta.extra_samples
        or meta.dtype
        not in (
            "uint8",
            "uint16",
        )
    ):
        return None
    if meta.extra_samples[-1] not in (1, 2):
        return None
    return count - 1


def _tiles(
    href: str,
    version: str,
    level: int,
    mask: bool,
    plane: int,
    lv: RasterLevel,
    byte_order: str,
    region: Window,
    fill: float,
    tiles: dict[TileKey, TileSource],
) -> tuple[TileKey, ...]:
    """Keys of the tiles of ``lv`` under ``region`` (row-major), registered in ``tiles``."""
    col, row, width, height = region
    c0, c1 = max(col, 0), min(col + width, lv.image_width)
    r0, r1 = max(row, 0), min(row + height, lv.image_height)
    if c0 >= c1 or r0 >= r1:
        return ()
    tw, th = lv.tile_width, lv.tile_height
    across = lv.tiles_across
    keys: list[TileKey] = []
    layout: TileLayout | None = None
    for tr in range(r0 // th, (r1 - 1) // th + 1):
        for tc in range(c0 // tw, (c1 - 1) // tw + 1):
            number = tr * across + tc
            key = TileKey(href, version, level, mask, plane, number)
            keys.append(key)
            if key not in tiles:
                layout = layout or lv.layout(byte_order)
                start, end = lv.tile_range(number)
                if int(lv.tile_byte_counts[number]) == 0:
                    start = end = 0
                tiles[key] = TileSource(key, layout, lv.tile_rows(tr), start, end, fill)
    return tuple(keys)
