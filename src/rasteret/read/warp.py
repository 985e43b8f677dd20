"""Resampling kernels: GDAL RasterIO (same CRS) and the GDAL warper (other CRS).

Both run GDAL itself (or its arithmetic), through rasterio, on in-memory data (no file
I/O), so the results are GDAL's to the bit:

* :func:`resample_region` gives what ``rasterio`` ``read(window=..., out_shape=...,
  resampling=...)`` gives on the file: for a window inside the image, nearest samples the
  level with GDAL's own arithmetic (NumPy, no GDAL call) and other kernels run GDAL on a
  sparse in-memory GeoTIFF shaped like the source (so GDAL rounds the same integer window
  on the same overview level); a window past the edge is read from an in-memory (MEM)
  dataset of the region. Invalid pixels the nodata value cannot express (internal mask,
  outside the image) are given to GDAL as a per-dataset mask, so kernels skip them as GDAL
  does for masked files.
* :func:`warp_region` calls :func:`rasterio.warp.reproject` between MEM datasets, the
  source carrying the same per-dataset mask, once per strip of the output CRS's absolute
  pixel lattice (:func:`warp_calls`) with a fixed kernel scale, so a pixel's value does not
  depend on the extent of the grid (or lazy chunk) it is read in.

Validity follows GDAL: after RasterIO resampling, the validity of the source pixel nearest
each output pixel's centre (what ``read_masks(out_shape=...)`` returns); after warping, the
pixels the warper wrote (its destination alpha: at least one valid source pixel contributed).
A pixel equal to nodata is never valid.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.warp import reproject
from rasterio.windows import Window

from rasteret.read.bands import BandRead, RasterIOWindow, gdal_copies
from rasteret.read.grid import Grid, Transform, same_crs, transformer
from rasteret.read.mask import nodata_mask

__all__ = [
    "NEAREST_MAPS_MB",
    "SCALE_CELL",
    "WARP_STRIP",
    "WarpCall",
    "clear_nearest_maps",
    "nearest_sources",
    "resample_region",
    "warp_calls",
    "warp_region",
]


def resample_region(
    canvas: np.ndarray,
    valid: np.ndarray,
    read: BandRead,
    out_shape: tuple[int, int],
    *,
    use_mask: bool,
    samples: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``read.src_window`` of ``canvas`` to ``out_shape`` as GDAL RasterIO does.

    With ``read.io_window`` (a window inside the image), GDAL's own request is reproduced:
    nearest samples the floating window exactly as ``GDALRasterBand::IRasterIO`` does
    (NumPy indexing, no GDAL call), other kernels run GDAL's ``RasterIOResampled`` on the
    region the plan cropped to GDAL's source chunk. Validity is the validity of the source
    pixel nearest each output pixel (``read_masks(out_shape=...)``).

    Args:
        canvas: ``(height, width)`` pixels of the read's region, in the band's dtype.
        valid: Same shape; False for pixels outside the image or masked.
        read: The band read (its ``src_window``, ``nodata`` and ``resampling``).
        out_shape: ``(height, width)`` of the result.
        use_mask: Give ``valid`` to GDAL as a per-dataset mask (needed when some invalid
            pixels are not equal to nodata).
        samples: ``(samples, height, width)``: every band of a chunky multi-band file over
            the region. rasterio reads such files' bands together, and GDAL then resamples
            the whole dataset (``GDALDataset::RasterIOResampled``: one kernel margin for
            both axes, band 1's mask for all), which the emulation follows.

    Returns:
        The resampled pixels and their validity.
    """
    assert read.src_window is not None
    x0, y0, w, h = read.src_window
    window = Window(x0, y0, w, h)
    mask = valid if use_mask else None
    io = read.io_window
    if io is not None:
        rows, cols = _nearest_index(io, read.image_size, read.region)
        valid_out = valid[np.ix_(rows, cols)]
        if read.resampling == Resampling.nearest:
            data = canvas[np.ix_(rows, cols)]
        else:
            data = _file_read(canvas if samples is None else samples, mask, read, io, out_shape)
        valid_out &= ~nodata_mask(data, read.nodata)
        return data, valid_out
    data = _mem_read(canvas, mask, read, window, out_shape, read.resampling, nodata=read.nodata)
    valid_u8 = valid.astype(np.uint8)
    valid_out = (
        _mem_read(valid_u8, None, read, window, out_shape, Resampling.nearest, nodata=None) != 0
    )
    valid_out &= ~nodata_mask(data, read.nodata)
    return data, valid_out


_EPS = 1e-10
"""GDAL's epsilon on nearest source positions (``GDALRasterBand::IRasterIO``)."""


def _nearest_index(
    io: RasterIOWindow, image_size: tuple[int, int], region: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of ``region`` that GDAL's nearest RasterIO samples for ``io``.

    A copy takes the integer window; otherwise row ``i`` is ``(i + 0.5) * dy + y + eps``
    and the column position starts at ``0.5 * dx + x + eps`` and adds ``dx`` per column (a
    running sum, as GDAL's loop does), both truncated and clamped to the level.

    >>> io = RasterIOWindow(1, 2, 0, 4, 2, 2.5, 0.0, 4.0, 2.0, 2, 1, (5.0, 0.0, 8.0, 4.0), (32, 32))
    >>> rows, cols = _nearest_index(io, (16, 16), (0, 0, 16, 16))
    >>> rows.tolist(), cols.tolist()
    ([1], [3, 5])
    """
    width, height = image_size
    col0, row0 = region[0], region[1]
    if gdal_copies(io):
        rows = np.arange(io.row, io.row + io.out_height)
        cols = np.arange(io.col, io.col + io.out_width)
        return rows - row0, cols - col0
    dy = io.h / io.out_height
    ys = (np.arange(io.out_height) + 0.5) * dy + io.y + _EPS
    dx = io.w / io.out_width
    steps = np.full(io.out_width, dx)
    steps[0] = 0.5 * dx + io.x + _EPS
    xs = np.add.accumulate(steps)
    rows = np.minimum(np.maximum(0.0, ys), height - 1).astype(np.int64)
    cols = np.minimum(np.maximum(0.0, xs), width - 1).astype(np.int64)
    return rows - row0, cols - col0


def _file_read(
    canvas: np.ndarray,
    mask: np.ndarray | None,
    read: BandRead,
    io: RasterIOWindow,
    out_shape: tuple[int, int],
) -> np.ndarray:
    """GDAL's kernel for ``io``, run by GDAL on a file shaped like the source.

    ``RasterIOResampled`` depends on more than the floating window: the integer offset GDAL
    rounds on the overview (its chunk starts there; average then weighs the first row by
    more than 1, or takes its unweighted 2x2 fast path), the chunk's clamping to the level
    and the "virtual" output offset. None of that survives moving the window onto a cropped
    in-memory region. So the region is written, at its place, into a sparse in-memory GeoTIFF
    of the full image's size (its overview level as an external ``.ovr`` of the level's
    size), with the band's nodata and the region's validity as its internal mask, and read
    with the very request rasterio makes on the source file. Only the region's tiles hold
    pixels; GDAL's chunk lies inside the region (see :func:`rasteret.read.bands.gdal_chunk`).
    A ``(samples, h, w)`` canvas is written pixel-interleaved and read whole, and the read's
    sample returned.
    """
    col0, row0, width, height = read.region
    if canvas.ndim == 2 and _mem_is_exact(io, col0 + width, row0 + height):
        # the same request reaches GDAL from a MEM dataset holding the region at its place
        # (lazily allocated: only the region's pages are touched), with no file to build
        with rasterio.open(
            f"/vsimem/rasteret-{uuid.uuid4().hex}",
            "w+",
            driver="MEM",
            width=col0 + width,
            height=row0 + height,
            count=1,
            dtype=canvas.dtype,
            nodata=read.nodata,
            transform=Affine(1.0, 0.0, 1e6, 0.0, -1.0, 1e6),
            crs=read.src_crs,
        ) as mem:
            window = Window(col0, row0, width, height)
            mem.write(canvas, 1, window=window)
            if mask is not None:
                mem.write_mask(np.where(mask, 255, 0).astype(np.uint8), window=window)
            return mem.read(
                1,
                window=Window(io.x, io.y, io.w, io.h),
                out_shape=out_shape,
                resampling=read.resampling,
            )
    full_w, full_h = io.full_size
    level_w, level_h = read.image_size
    folder = uuid.uuid4().hex
    count = 1 if canvas.ndim == 2 else canvas.shape[0]
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "count": count,
        "interleave": "pixel",
        "dtype": canvas.dtype,
        "nodata": read.nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "sparse_ok": True,
        "transform": Affine(1.0, 0.0, 1e6, 0.0, -1.0, 1e6),
        "crs": read.src_crs,
    }
    # masks are written inside the GeoTIFFs (GDAL_TIFF_INTERNAL_MASK defaults to YES)
    with (
        MemoryFile(dirname=folder, filename="src.tif") as base,
        MemoryFile(dirname=folder, filename="src.tif.ovr") as overview,
    ):
        levels = [base] if io.level == 0 else [base, overview]
        with base.open(width=full_w, height=full_h, **profile) as dst:
            if io.level == 0:
                _write_region(dst, canvas, mask, col0, row0, width, height)
        if io.level > 0:
            with overview.open(width=level_w, height=level_h, **profile) as dst:
                _write_region(dst, canvas, mask, col0, row0, width, height)
        with levels[0].open() as src:
            data = src.read(
                window=Window(*io.window), out_shape=(count, *out_shape), resampling=read.resampling
            )
    return data[read.sample if count > 1 else 0]


_ONE_CHUNK = 1024 * 1024
"""Source pixels ``RasterIOResampled`` reads in one chunk at most."""


def _mem_is_exact(io: RasterIOWindow, width: int, height: int) -> bool:
    """Whether a MEM dataset of ``width x height`` level pixels, read with ``io``'s floating
    window, hands GDAL the very request the source file gets: rasterio's clipped window and
    its integer truncation equal GDAL's (no offset rounded up on the overview, no float
    changed by the clipping), and the integer size is not the output size (where
    ``MEMRasterBand`` would copy instead of resampling). Large reads, which GDAL splits into
    chunks by a rule that involves the raster's size, keep the file's size (the emulation).
    """
    rx, ry = io.w / io.out_width, io.h / io.out_height
    if (3 + int(io.out_width * rx)) * (3 + int(io.out_height * ry)) > _ONE_CHUNK:
        return False
    w = min(io.x + io.w, float(width)) - max(io.x, 0.0)
    h = min(io.y + io.h, float(height)) - max(io.y, 0.0)
    ints = (int(io.x), int(io.y), int(max(1.0, w)), int(max(1.0, h)))
    return (
        (w, h) == (io.w, io.h)
        and ints == (io.col, io.row, io.width, io.height)
        and (ints[2], ints[3]) != (io.out_width, io.out_height)
    )


def _write_region(
    dst: Any,
    canvas: np.ndarray,
    mask: np.ndarray | None,
    col: int,
    row: int,
    width: int,
    height: int,
) -> None:
    window = Window(col, row, width, height)
    if canvas.ndim == 2:
        dst.write(canvas, 1, window=window)
    else:
        dst.write(canvas, window=window)
    if mask is not None:
        dst.write_mask(np.where(mask, 255, 0).astype(np.uint8), window=window)


def _georeferenced(transform: tuple[float, ...]) -> tuple[float, ...]:
    # RasterIO ignores georeferencing: any non-identity transform keeps rasterio quiet
    if abs(transform[2]) < 1 and abs(transform[5]) < 1:
        return (*transform[:2], 1e6, *transform[3:5], 1e6)
    return transform


def _mem_read(
    canvas: np.ndarray,
    mask: np.ndarray | None,
    read: BandRead,
    window: Window,
    out_shape: tuple[int, int],
    resampling: Resampling,
    *,
    nodata: float | None,
) -> np.ndarray:
    transform = _georeferenced(read.src_transform)
    with _mem(canvas, transform, read.src_crs, nodata, mask) as mem:
        return mem.read(1, window=window, out_shape=out_shape, resampling=resampling)


@contextmanager
def _mem(
    array: np.ndarray,
    transform: tuple[float, ...],
    crs: str,
    nodata: float | None,
    mask: np.ndarray | None = None,
) -> Iterator[Any]:
    """A GDAL MEM dataset holding ``array`` (2-D: one band) and ``mask`` as its dataset mask.

    Opened with a real (north-up, so never identity) transform: no NotGeoreferencedWarning,
    and no ``warnings.catch_warnings`` (which is not thread-safe) anywhere on this path.
    """
    count, height, width = (1, *array.shape) if array.ndim == 2 else array.shape
    with rasterio.open(
        f"/vsimem/rasteret-{uuid.uuid4().hex}",
        "w+",
        driver="MEM",
        width=width,
        height=height,
        count=count,
        dtype=array.dtype,
        nodata=nodata,
        transform=Affine(*transform),
        crs=crs,
    ) as mem:
        mem.write(array, 1) if array.ndim == 2 else mem.write(array)
        if mask is not None:
            mem.write_mask(np.where(mask, 255, 0).astype(np.uint8))
        yield mem


WARP_STRIP = 256
"""Width in pixels of the column strips a reprojecting warp is cut into. Strips sit on the
output CRS's absolute pixel lattice (column ``k * WARP_STRIP`` of the lattice through the
grid's pixel corners, counted from the CRS origin), whatever grid they serve."""

SCALE_CELL = 2048
"""Side in pixels of the absolute lattice cells over which the warp kernel's scale is constant
(a multiple of :data:`WARP_STRIP`, so a strip lies in one column of cells)."""

_WARP_OPTIONS = {"SRC_FILL_RATIO_HEURISTICS": "NO"}
"""GDAL splits an output window whose source window is mostly outside the source (a strip
sticking out of the region): that would cut strips where the region ends. Never split."""

_PHASE_DIGITS = 6
"""A grid's sub-pixel offset from the lattice is rounded to 1e-6 pixel (past float noise)."""


@dataclass(frozen=True, slots=True)
class WarpCall:
    """One GDAL warp of a reprojecting read: a strip of the absolute lattice (pure data)."""

    transform: Transform
    """Transform of the strip, from its absolute lattice position (the same floats for every
    grid that contains it)."""
    width: int
    height: int
    col: int
    """Column of the grid where the strip's first column lands (negative: starts before it)."""
    row: int
    """Row of the grid where the strip's first row lands (``>= 0``)."""
    scale: tuple[float, float] | None
    """GDAL's ``XSCALE`` / ``YSCALE`` (output pixels per source pixel) for the strip's cell;
    None leaves GDAL's own per-window estimate (the transform failed at the cell centre)."""


def _lattice(origin: float, step: float) -> tuple[int, float]:
    """``(index, phase)`` with ``origin == (index + phase) * step`` and ``0 <= phase < 1``.

    >>> _lattice(500_020.0, 10.0), _lattice(4_600_005.0, -10.0)
    ((50002, 0.0), (-460001, 0.5))
    """
    q = origin / step
    index = math.floor(q)
    phase = round(q - index, _PHASE_DIGITS)
    if phase >= 1.0:
        return index + 1, 0.0
    return index, phase


@lru_cache(maxsize=4096)
def _cell_scale(
    src_crs: str,
    src_res: tuple[float, float],
    dst_crs: str,
    dst_res: tuple[float, float],
    centre: tuple[float, float],
) -> tuple[float, float] | None:
    """Output pixels per source pixel along x and y at ``centre`` (output CRS).

    As GDAL estimates it for a square output window (output size over the size of the source
    window its footprint spans): one over the source pixels that one output pixel to the
    right plus one down move along each source axis. A pure rotation thus gets a scale
    below 1, as in GDAL's own per-window estimate.
    """
    a, e = dst_res
    x, y = centre
    xs, ys = transformer(dst_crs, src_crs).transform([x, x + a, x], [y, y, y + e])
    sx = np.asarray(xs, dtype=float) / src_res[0]
    sy = np.asarray(ys, dtype=float) / src_res[1]
    step_x = abs(sx[1] - sx[0]) + abs(sx[2] - sx[0])
    step_y = abs(sy[1] - sy[0]) + abs(sy[2] - sy[0])
    if not (math.isfinite(step_x) and math.isfinite(step_y)) or step_x <= 0 or step_y <= 0:
        return None
    return float(1.0 / step_x), float(1.0 / step_y)


def warp_calls(read: BandRead, grid: Grid) -> tuple[WarpCall, ...]:
    """The GDAL warps that put ``read`` onto ``grid``, each independent of ``grid``'s extent.

    GDAL's warper output depends on the output window it is handed: its approximate
    transformer interpolates source positions along each output row between points it
    transforms exactly (so a pixel's source position depends on where the row starts and
    ends), and the kernel scale is estimated per window. A reprojecting read is therefore
    cut into column strips of :data:`WARP_STRIP` pixels on the output CRS's absolute lattice,
    each warped whole (also where it sticks out of the grid), with ``XSCALE`` / ``YSCALE`` fixed
    per :data:`SCALE_CELL` cell: a pixel comes out the same whichever grid or chunk it is read
    in. A same-CRS warp (a sub-pixel shift) is affine, so interpolation is exact: one call with
    the exact scale.

    >>> from rasteret.read.grid import Grid, Transform, same_crs, transformer
    >>> from types import SimpleNamespace
    >>> read = SimpleNamespace(src_crs="EPSG:32633", src_transform=(10.0, 0, 0, 0, -10.0, 0))
    >>> grid = Grid("EPSG:32632", (10.0, 0.0, 700_300.0, 0.0, -10.0, 5_120_000.0), 300, 200)
    >>> [(c.col, c.row, c.width, c.height) for c in warp_calls(read, grid)]
    [(-142, 0, 256, 200), (114, 0, 256, 200)]
    """
    a, _, c, _, e, f = grid.transform
    sa, _, _, _, se, _ = read.src_transform
    if same_crs(read.src_crs, grid.crs):
        exact = (abs(sa) / abs(a), abs(se) / abs(e))
        return (WarpCall(grid.transform, grid.width, grid.height, 0, 0, exact),)
    col0, phase_x = _lattice(c, a)
    row0, phase_y = _lattice(f, e)
    calls: list[WarpCall] = []
    first, last = col0 // WARP_STRIP, (col0 + grid.width - 1) // WARP_STRIP
    for strip in range(first, last + 1):
        start = strip * WARP_STRIP
        cell_x = start // SCALE_CELL
        row = row0
        while row < row0 + grid.height:
            cell_y = row // SCALE_CELL
            end = min((cell_y + 1) * SCALE_CELL, row0 + grid.height)
            centre = (
                (cell_x * SCALE_CELL + SCALE_CELL / 2 + phase_x) * a,
                (cell_y * SCALE_CELL + SCALE_CELL / 2 + phase_y) * e,
            )
            scale = _cell_scale(read.src_crs, (sa, se), grid.crs, (a, e), centre)
            transform = (a, 0.0, (start + phase_x) * a, 0.0, e, (row + phase_y) * e)
            calls.append(
                WarpCall(transform, WARP_STRIP, end - row, start - col0, row - row0, scale)
            )
            row = end
    return tuple(calls)


def warp_region(
    canvas: np.ndarray,
    valid: np.ndarray,
    read: BandRead,
    grid: Grid,
    *,
    use_mask: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Reproject ``canvas`` (the read's region) onto ``grid`` with the read's kernel.

    Runs :func:`rasterio.warp.reproject` once per :func:`warp_calls` strip, so the result of a
    pixel does not depend on the grid's extent: a lazy chunk equals the same pixels of the
    eager read, bit for bit. Against one ``reproject`` of the whole grid (GDAL's defaults)
    source positions agree within GDAL's approximate transformer (0.125 pixel).

    A nearest warp is a gather: each output pixel takes the one source pixel GDAL picks for
    it, if that pixel is valid. Which pixel that is depends only on the geometry, so it is
    asked of GDAL once (:func:`nearest_sources`) and every read of the same region onto the
    same strips (a time series of one grid, a lazy chunk per date) gathers through it.

    Returns:
        The warped pixels (nodata, else 0, where nothing was written) and their validity
        (the warper's destination alpha).
    """
    dst_nodata = read.nodata if read.nodata is not None else 0
    mask = valid if use_mask else None
    if mask is not None and read.nodata is not None:
        # GDAL's warper honours a per-dataset mask next to a nodata value for some output
        # windows and not for others: with a nodata value, invalid pixels become nodata
        canvas, mask = np.where(valid, canvas, canvas.dtype.type(read.nodata)), None
    data = np.full(grid.shape, dst_nodata, canvas.dtype)
    written = np.zeros(grid.shape, dtype=bool)
    calls = warp_calls(read, grid)
    if _gathers(read, canvas):
        source_ok = ~nodata_mask(canvas, read.nodata)
        if mask is not None:
            source_ok &= mask
        for call in calls:
            c0, c1 = max(call.col, 0), min(call.col + call.width, grid.width)
            sources = nearest_sources(canvas.shape, read, call, grid.crs)
            picked = sources[:, c0 - call.col : c1 - call.col]
            take = picked >= 0
            take[take] = source_ok.ravel()[picked[take]]
            rows = slice(call.row, call.row + call.height)
            written[rows, c0:c1] = take
            data[rows, c0:c1][take] = canvas.ravel()[picked[take]]
        return data, written & ~nodata_mask(data, read.nodata)
    with _mem(canvas, read.src_transform, read.src_crs, read.nodata, mask) as src:
        for call in calls:
            c0, c1 = max(call.col, 0), min(call.col + call.width, grid.width)
            r0, r1 = call.row, call.row + call.height
            with _mem(
                np.full((2, call.height, call.width), dst_nodata, canvas.dtype),
                call.transform,
                grid.crs,
                None,
            ) as dst:
                _reproject_call(src, dst, call, read.resampling, read.nodata)
                window = Window(c0 - call.col, 0, c1 - c0, call.height)
                data[r0:r1, c0:c1] = dst.read(1, window=window)
                written[r0:r1, c0:c1] = dst.read(2, window=window) != 0
    return data, written & ~nodata_mask(data, read.nodata)


def _gathers(read: BandRead, canvas: np.ndarray) -> bool:
    """Whether ``warp_region`` gathers through :func:`nearest_sources` (a nearest warp whose
    region's positions fit the map's int32) rather than warping the pixels with GDAL."""
    return read.resampling == Resampling.nearest and canvas.size < 2**31


def _reproject_call(
    src: Any, dst: Any, call: WarpCall, resampling: Resampling, dst_nodata: float | None
) -> None:
    """One strip's GDAL warp from ``src`` (band 1) into ``dst`` (band 1, alpha in band 2).

    Without ``dst_nodata`` the destination keeps what it holds where nothing is written
    (its alpha says where): given a nodata value, recent GDAL (3.12) writes a valid source
    pixel equal to it as a neighbouring value, which would change real data.
    """
    options: dict[str, str | float] = dict(_WARP_OPTIONS)
    if call.scale is not None:
        options["XSCALE"], options["YSCALE"] = call.scale
    reproject(
        rasterio.band(src, 1),
        rasterio.band(dst, 1),
        resampling=resampling,
        dst_nodata=dst_nodata,
        init_dest_nodata=dst_nodata is not None,
        dst_alpha=2,
        **options,
    )


NEAREST_MAPS_MB = 64
"""Megabytes (10**6 bytes) of :func:`nearest_sources` maps kept for reuse (least recently
used dropped first)."""

_maps: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
_maps_bytes = 0
_maps_lock = threading.Lock()


def clear_nearest_maps() -> None:
    """Forget every kept :func:`nearest_sources` map (e.g. between benchmark runs)."""
    global _maps_bytes
    with _maps_lock:
        _maps.clear()
        _maps_bytes = 0


def nearest_sources(shape: tuple[int, int], read: BandRead, call: WarpCall, crs: str) -> np.ndarray:
    """For each pixel of the strip ``call`` (in ``crs``), the flat position in a region of
    ``shape`` (at ``read.src_transform`` in ``read.src_crs``) of the source pixel GDAL's
    nearest warp takes, or -1 where it writes nothing (outside the source).

    GDAL is asked once per geometry: it warps an image whose pixels hold their own
    positions, with the warp options of the real call and nothing invalid; a real warp then
    writes, at each pixel, the source pixel named there when that pixel is valid (nodata
    or masked ones are skipped, as GDAL's nearest kernel does). Maps are kept (at most
    :data:`NEAREST_MAPS_MB`) and shared by threads; treat them as read-only.

    >>> from rasteret.read.grid import Grid
    >>> from types import SimpleNamespace
    >>> read = SimpleNamespace(src_crs="EPSG:32633", src_transform=(10.0, 0, 300_000.0, 0, -10.0, 5_100_000.0))
    >>> grid = Grid("EPSG:32632", (10.0, 0.0, 727_500.0, 0.0, -10.0, 5_101_000.0), 40, 30)
    >>> call = warp_calls(read, grid)[0]
    >>> sources = nearest_sources((100, 100), read, call, grid.crs)
    >>> sources.shape == (call.height, call.width), int(sources.max()) < 100 * 100
    (True, True)
    """
    global _maps_bytes
    key = (shape, tuple(read.src_transform), read.src_crs, call, crs)
    with _maps_lock:
        found = _maps.get(key)
        if found is not None:
            _maps.move_to_end(key)
            return found
    height, width = shape
    positions = np.arange(height * width, dtype=np.int32).reshape(shape)
    with (
        _mem(positions, read.src_transform, read.src_crs, None) as src,
        _mem(np.full((2, call.height, call.width), -1, np.int32), call.transform, crs, None) as dst,
    ):
        _reproject_call(src, dst, call, Resampling.nearest, -1)
        sources = np.where(dst.read(2) != 0, dst.read(1), -1)
    sources.flags.writeable = False
    with _maps_lock:
        if key not in _maps:
            _maps[key] = sources
            _maps_bytes += sources.nbytes
            while _maps_bytes > NEAREST_MAPS_MB * 1_000_000 and len(_maps) > 1:
                _, dropped = _maps.popitem(last=False)
                _maps_bytes -= dropped.nbytes
    return sources
