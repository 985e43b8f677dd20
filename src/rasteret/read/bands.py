"""How one band of one chip is read: mode, overview level, source region and tiles (pure).

Three modes, from cheapest to most general:

* ``paste``: same CRS, same pixel size, grid offsets a whole number of pixels apart. The
  chip is a window of the full-resolution image; decoded tiles are copied in with NumPy
  slicing. Bit-exact with ``rasterio`` ``read(window=..., boundless=True)``. Also a
  downsampled read that GDAL serves as a straight copy from the overview level it picks
  (the chip's grid is that level's grid, see :func:`gdal_copies`): bit-exact with
  ``read(window=..., out_shape=...)``, with no kernel run.
* ``resample``: same CRS, other pixel size. GDAL's RasterIO semantics, reproduced to the
  bit (:func:`rasterio_window`): the window rasterio passes, the overview level
  ``GDALBandGetBestOverviewLevel2`` picks, the integer window GDAL rounds on it and the
  floating one, resampled to the chip's shape; equal to ``rasterio`` ``read(window=,
  out_shape=, resampling=)`` (validity: ``read_masks``, which samples with nearest and may
  pick another level, see ``BandRead.validity``).
* ``warp``: another CRS, or the same pixel size off by a fraction of a pixel (where
  RasterIO on an in-memory region would round the offset away). The overview level is picked the same way from the chip's footprint
  in the source CRS, then :func:`rasterio.warp.reproject` onto the chip grid.

The *region* of a band read is the rectangle of its level that gets assembled from tiles: the
window itself when pasting, the window plus a kernel margin otherwise (margins stay inside the
image, so kernels see the same neighbours GDAL sees).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
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

__all__ = [
    "BandRead",
    "Mode",
    "RasterIOWindow",
    "TileKey",
    "TileSource",
    "gdal_chunk",
    "gdal_copies",
    "plan_band",
    "rasterio_window",
]

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
    need: int | None = None
    """Rows from the top of the tile that the planned reads use (None: all of them); a
    decoder that can stop early stops there (``decode_tile(prefix=)``)."""

    @property
    def needed_rows(self) -> int:
        """Rows from the top of the tile that a decode must produce."""
        return self.rows if self.need is None else self.need


@dataclass(frozen=True, slots=True)
class RasterIOWindow:
    """The request GDAL's RasterIO serves for ``rasterio`` ``read(window=, out_shape=)``.

    rasterio clips the window to the raster (``width = min(x0 + w, W) - x0``) and passes it
    twice: truncated to integers and as floats. GDAL picks the overview level with the
    integer size (``GDALBandGetBestOverviewLevel2``) and scales both windows to it: integers
    as ``int(v / factor + 0.5)``, floats as ``v / factor``. Both are kept here, on the level.
    """

    level: int
    col: int
    row: int
    width: int
    height: int
    """The integer window on the level."""
    x: float
    y: float
    w: float
    h: float
    """The floating window on the level."""
    out_width: int
    out_height: int
    window: tuple[float, float, float, float]
    """The full-resolution floating window as requested (before rasterio clips it)."""
    full_size: tuple[int, int]
    """``(width, height)`` of the full-resolution image."""


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
    io_window: RasterIOWindow | None = None
    """``resample`` inside the image: GDAL's RasterIO request (level, integer and floating
    windows, output size), which :func:`rasteret.read.warp.resample_region` reproduces."""
    validity: BandRead | None = None
    """Where GDAL's validity for a non-nearest read comes from another level than its
    pixels: ``read_masks(out_shape=)`` samples the mask with nearest, whose overview
    threshold (1.2) can pick a coarser level than the kernel's (1.0). The nearest read of
    that level; its tiles are listed in ``mask_tiles`` too, so whatever fetches ``tiles``
    and ``mask_tiles`` fetches them (they are not pasted into this read's region)."""


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
        # the same pixel size off the lattice by a fraction of a pixel: the warper (GDAL's
        # in-memory RasterIO would copy whole pixels, ignoring the sub-pixel offset)
        same_size = int(w) == grid.width and int(h) == grid.height
        io = (
            None
            if same_size
            else rasterio_window(meta, (x0, y0, w, h), *grid.shape[::-1], nearest=nearest)
        )
        if io is not None:
            return _plan_rasterio(band, index, meta, io, src_crs, kernel, tiles)
        # else a window past the image edge (no rasterio equivalent: filled outside the image)
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


def gdal_copies(io: RasterIOWindow) -> bool:
    """Whether GDAL serves ``io`` as a straight copy of the level's pixels (no kernel).

    GDAL >= 3.10 (``GDALRasterBand::IRasterIO``, ``bUseIntegerRequestCoords``) copies only
    when the integer window has the output's size and the floating window equals it exactly;
    otherwise nearest samples the floating window and other kernels resample it.

    >>> whole = ((512.0, 0.0, 4096.0, 4096.0), (4096, 4096))
    >>> gdal_copies(RasterIOWindow(3, 64, 0, 512, 512, 64.0, 0.0, 512.0, 512.0, 512, 512, *whole))
    True
    >>> gdal_copies(RasterIOWindow(3, 64, 0, 512, 512, 64.5, 0.0, 512.0, 512.0, 512, 512, *whole))
    False
    """
    return (io.width, io.height) == (io.out_width, io.out_height) and (
        io.x,
        io.y,
        io.w,
        io.h,
    ) == (io.col, io.row, io.width, io.height)


def rasterio_window(
    meta: BandMetadata,
    window: tuple[float, float, float, float],
    out_width: int,
    out_height: int,
    *,
    nearest: bool,
) -> RasterIOWindow | None:
    """GDAL's view of ``read(window=window, out_shape=(out_height, out_width))`` on the full
    resolution image of ``meta`` (see :class:`RasterIOWindow`); None when the window passes
    the image edge by more than float noise (rasterio would crop it; rasteret fills it).

    The arithmetic is rasterio's and GDAL's, in the same doubles.
    """
    full = meta.level
    fw, fh = full.image_width, full.image_height
    x0, y0, w, h = window
    tol = _ALIGN_TOLERANCE
    if x0 < -tol or y0 < -tol or x0 + w > fw + tol or y0 + h > fh + tol:
        return None
    xa, ya = max(x0, 0.0), max(y0, 0.0)
    wa, ha = min(x0 + w, float(fw)) - xa, min(y0 + h, float(fh)) - ya
    ix, iy, iw, ih = int(xa), int(ya), int(max(1.0, wa)), int(max(1.0, ha))
    sizes = [(o.image_width, o.image_height) for o in meta.overviews]
    level = best_overview(fw, fh, sizes, iw, ih, out_width, out_height, nearest=nearest)
    if level == 0:
        return RasterIOWindow(
            0, ix, iy, iw, ih, xa, ya, wa, ha, out_width, out_height, window, (fw, fh)
        )
    lw, lh = sizes[level - 1]
    fx, fy = fw / lw, fh / lh
    col, row = min(lw - 1, int(ix / fx + 0.5)), min(lh - 1, int(iy / fy + 0.5))
    width, height = max(1, int(iw / fx + 0.5)), max(1, int(ih / fy + 0.5))
    width, height = min(width, lw - col), min(height, lh - row)
    return RasterIOWindow(
        level,
        col,
        row,
        width,
        height,
        xa / fx,
        ya / fy,
        wa / fx,
        ha / fy,
        out_width,
        out_height,
        window,
        (fw, fh),
    )


_GDAL_RADIUS = {
    Resampling.bilinear: 1,
    Resampling.cubic: 2,
    Resampling.cubic_spline: 2,
    Resampling.lanczos: 3,
    Resampling.gauss: 1,
}
"""Kernel radius of GDAL's RasterIO resampling functions (``GDALGetResampleFunction``);
0 for the others (average, mode, rms)."""


def gdal_chunk(
    io: RasterIOWindow, kernel: Resampling, level_size: tuple[int, int], *, joint: bool = False
) -> tuple[int, int, int, int]:
    """``(col0, row0, col1, row1)`` of the level pixels GDAL's ``RasterIOResampled`` reads
    for ``io`` (one chunk): the integer window from its offset, ``1 + ceil(out * ratio)``
    pixels long, widened by the kernel radius times the rounded ratio, clamped to the level.
    Kernels see no pixel outside it (for average, not the partial first source column when
    the integer offset was rounded up past the floating one). ``joint``: the bands of a
    chunky multi-band file resampled together (``GDALDataset::RasterIOResampled``), whose
    margin uses the larger of the two rounded ratios on both axes.

    >>> full = ((539.5, 319.0, 371.6, 7.97), (1003, 997))
    >>> io = RasterIOWindow(1, 270, 160, 186, 4, 270.0, 159.68, 186.0, 3.992, 93, 2, *full)
    >>> gdal_chunk(io, Resampling.average, (502, 499))
    (270, 160, 457, 165)
    >>> gdal_chunk(io, Resampling.cubic, (502, 499))
    (266, 156, 461, 169)
    """
    lw, lh = level_size
    radius = _GDAL_RADIUS.get(kernel, 0)
    rx, ry = io.w / io.out_width, io.h / io.out_height
    mx, my = radius * max(1, int(0.5 + rx)), radius * max(1, int(0.5 + ry))
    if joint:
        mx = my = max(mx, my)
    col1 = min(lw, io.col + 1 + math.ceil(io.out_width * rx) + mx)
    row1 = min(lh, io.row + 1 + math.ceil(io.out_height * ry) + my)
    return max(0, io.col - mx), max(0, io.row - my), col1, row1


def _plan_rasterio(
    band: str,
    index: int,
    meta: BandMetadata,
    io: RasterIOWindow,
    src_crs: str,
    kernel: Resampling,
    tiles: dict[TileKey, TileSource],
) -> BandRead:
    """A same-CRS read inside the image: a paste where GDAL copies, else a resample whose
    region is what GDAL reads (``RasterIOResampled``'s chunk: the integer window plus
    ``radius x round(ratio)`` pixels, clamped to the level), so kernels meet the same edges."""
    if gdal_copies(io):
        region = (io.col, io.row, io.width, io.height)
        read = _build(band, index, meta, "paste", io.level, region, None, src_crs, kernel, tiles)
    else:
        lv = meta.levels[io.level]
        lw, lh = lv.image_width, lv.image_height
        if kernel == Resampling.nearest:  # samples inside the floating window (clamped)
            col0, row0 = max(0, math.floor(io.x) - 1), max(0, math.floor(io.y) - 1)
            col1 = min(lw, math.ceil(io.x + io.w) + 1)
            row1 = min(lh, math.ceil(io.y + io.h) + 1)
        else:  # GDAL's chunk, and the floating window's first pixel
            joint = lv.samples_per_pixel > 1 and lv.planar_configuration != 2
            col0, row0, col1, row1 = gdal_chunk(io, kernel, (lw, lh), joint=joint)
            col0 = min(col0, max(0, math.floor(io.x)))
            row0 = min(row0, max(0, math.floor(io.y)))
        region = (col0, row0, col1 - col0, row1 - row0)
        src_window = (io.x - col0, io.y - row0, io.w, io.h)
        read = _build(
            band,
            index,
            meta,
            "resample",
            io.level,
            region,
            src_window,
            src_crs,
            kernel,
            tiles,
            True,
            io,
        )
    if kernel == Resampling.nearest:
        return read
    masks = rasterio_window(meta, io.window, io.out_width, io.out_height, nearest=True)
    if masks is None or masks.level == io.level:
        return read
    validity = _plan_rasterio(band, index, meta, masks, src_crs, Resampling.nearest, tiles)
    extra = tuple(k for k in (*validity.tiles, *validity.mask_tiles) if k not in read.mask_tiles)
    return replace(read, validity=validity, mask_tiles=(*read.mask_tiles, *extra))


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
    io: RasterIOWindow | None = None,
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
        io_window=io,
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
        rows = lv.tile_rows(tr)
        need = min(rows, r1 - tr * th)  # the region's rows in this tile row, from its top
        for tc in range(c0 // tw, (c1 - 1) // tw + 1):
            number = tr * across + tc
            key = TileKey(href, version, level, mask, plane, number)
            keys.append(key)
            known = tiles.get(key)
            if known is None:
                layout = layout or lv.layout(byte_order)
                start, end = lv.tile_range(number)
                if int(lv.tile_byte_counts[number]) == 0:
                    start = end = 0
                tiles[key] = TileSource(key, layout, rows, start, end, fill, need)
            elif known.needed_rows < need:
                tiles[key] = replace(known, need=need)
    return tuple(keys)
