"""One windowed read as rasterio/GDAL does it, for a file or for TorchGeo's ``WarpedVRT``.

``rasterio.merge`` reads each source with ``read(window=, out_shape=, resampling=,
masked=True)``. When the window is whole pixels at the output size this is a copy (rasteret
pastes it). Otherwise GDAL RasterIO:

1. picks an overview (``GDALBandGetBestOverviewLevel2``) and divides the floating-point
   window by that overview's reduction;
2. resamples the window to the output size with the kernel, skipping nodata and masked
   pixels; a pixel is valid when the resampled mask says so.

A record that is not on the dataset's CRS and default grid is read through
``WarpedVRT(src, crs=, transform=, width=, height=)``: GDAL's warper (nearest kernel,
approximate transformer) computes the VRT's pixels block by block, and a downsampling read
goes through the VRT's implicit overviews, each the matching source overview warped onto the
VRT grid coarsened by the same factor.

:func:`plan_window` picks the level as GDAL does and the pixels the read needs; the record's
native pixels under them come from a rasteret read (:func:`source_chip_grid`).
:func:`window_pixels` then runs GDAL itself on those pixels in memory: RasterIO on an
in-memory GTiff for a file (GDAL's MEM driver resamples fractional windows differently from
a file band), or, for a VRT, a ``WarpedVRT`` on the same grid over an in-memory copy of the
record's pixels, read with the same window, size and kernel, so that its blocks, transformer
approximations and resampling are GDAL's own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT

from rasteret.ingest.metadata import BandMetadata
from rasteret.read.grid import (
    Grid,
    Transform,
    best_overview,
    covering_window,
    crs_key,
    transform_bounds,
)
from rasteret.read.mask import nodata_mask
from rasteret.read.options import representable

__all__ = [
    "SourceGrid",
    "WindowRead",
    "plan_window",
    "source_chip_grid",
    "vrt_overviews",
    "window_pixels",
]

_SOURCE_MARGIN = 2
"""Native pixels read beyond a VRT window's footprint, so every nearest pick is inside."""

_KERNEL_RADIUS = {Resampling.cubic: 2, Resampling.cubic_spline: 2, Resampling.lanczos: 3}
"""Kernel half-widths (in source pixels) beyond the default 1, for RasterIO margins."""

Window = tuple[int, int, int, int]
"""``(col, row, width, height)``."""
FracWindow = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class SourceGrid:
    """The grid TorchGeo reads one band of one record from, in the dataset CRS."""

    transform: Transform
    width: int
    height: int
    warped: bool
    """True for a ``WarpedVRT`` (another CRS, or a grid GDAL would not suggest for that
    CRS); False when TorchGeo reads the file itself."""

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        a, _, c, _, e, f = self.transform
        return c, f + e * self.height, c + a * self.width, f

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform[0]), abs(self.transform[4])

    def sub_grid(self, crs: str, window: Window) -> Grid:
        """The grid of ``window`` (pixels of this grid)."""
        a, _, c, _, e, f = self.transform
        col, row, width, height = window
        return Grid(crs, (a, 0.0, c + col * a, 0.0, e, f + row * e), width, height)


@dataclass(frozen=True, slots=True)
class WindowRead:
    """How GDAL reads one window of a file or ``WarpedVRT`` at an output size."""

    grid: SourceGrid
    """The grid read: the file or VRT, or the overview ``level`` picks."""
    level: int
    """0 for full resolution, ``k`` for the k-th overview (of the file, or of the source
    and the VRT)."""
    region: Window
    """The pixels of ``grid`` the read needs: the window plus the kernel's margin."""
    window: FracWindow
    """The RasterIO window, in pixels of ``grid``, read at the output size."""
    kernel: Resampling
    """The RasterIO kernel (the dataset's resampling)."""


def vrt_overviews(meta: BandMetadata, vrt: SourceGrid) -> list[tuple[int, int]]:
    """``(width, height)`` of a VRT's implicit overviews: one per source overview, the VRT
    size divided by that overview's x reduction, rounded (GDAL's ``GetOverviewSize``)."""
    full = meta.level.image_width
    sizes = []
    for ov in meta.overviews:
        ratio = full / ov.image_width
        width, height = int(vrt.width / ratio + 0.5), int(vrt.height / ratio + 0.5)
        if width < 1 or height < 1:
            break
        sizes.append((width, height))
    return sizes


def plan_window(
    meta: BandMetadata,
    src: SourceGrid,
    window: FracWindow,
    out_size: tuple[int, int],
    kernel: Resampling,
) -> WindowRead:
    """How GDAL reads ``window`` (pixels of ``src``) into ``out_size`` ``(width, height)``."""
    x0, y0, w, h = window
    out_w, out_h = out_size
    if src.warped:
        sizes = vrt_overviews(meta, src)
    else:
        sizes = [(ov.image_width, ov.image_height) for ov in meta.overviews]
    nearest = kernel == Resampling.nearest
    level = best_overview(
        src.width, src.height, sizes, int(w), int(h), out_w, out_h, nearest=nearest
    )
    grid = src
    if level:
        ov_w, ov_h = sizes[level - 1]
        fx, fy = src.width / ov_w, src.height / ov_h
        if src.warped:
            a, _, c, _, e, f = src.transform
            grid = SourceGrid((a * fx, 0.0, c, 0.0, e * fy, f), ov_w, ov_h, True)
        else:
            grid = SourceGrid(meta.levels[level].transform, ov_w, ov_h, False)
        x0, y0, w, h = window = (x0 / fx, y0 / fy, w / fx, h / fy)
    if _whole(window, out_size):
        need: Window = (round(x0), round(y0), out_w, out_h)
    else:
        margin = math.ceil(_KERNEL_RADIUS.get(kernel, 1) * max(w / out_w, h / out_h, 1.0)) + 1
        c0, r0 = max(math.floor(x0) - margin, 0), max(math.floor(y0) - margin, 0)
        c1 = min(math.ceil(x0 + w) + margin, grid.width)
        r1 = min(math.ceil(y0 + h) + margin, grid.height)
        need = (c0, r0, c1 - c0, r1 - r0)
    return WindowRead(grid, level, need, window, kernel)


def _whole(window: FracWindow, out_size: tuple[int, int]) -> bool:
    """Whole pixels at the output size: a copy, no resampling."""
    _, _, w, h = window
    return all(abs(v - round(v)) < 1e-6 for v in window) and (round(w), round(h)) == out_size


def source_chip_grid(meta: BandMetadata, read: WindowRead, crs: str) -> Grid | None:
    """The record's native pixels a read needs, at its level, as a grid on that level's
    lattice (clipped to the image); None when they miss the image.

    For a file that is the read's region itself; for a VRT, the region's footprint in the
    record's CRS plus a margin.
    """
    src_crs = crs_key(meta.crs, meta.epsg)
    lv = meta.levels[read.level]
    if not read.grid.warped:
        return read.grid.sub_grid(src_crs, read.region)
    bounds = transform_bounds(read.grid.sub_grid(crs, read.region).bounds, crs, src_crs)
    col, row, width, height = covering_window(lv.transform, bounds)
    c0, r0 = max(col - _SOURCE_MARGIN, 0), max(row - _SOURCE_MARGIN, 0)
    c1 = min(col + width + _SOURCE_MARGIN, lv.image_width)
    r1 = min(row + height + _SOURCE_MARGIN, lv.image_height)
    if c1 <= c0 or r1 <= r0:
        return None
    a, _, c, _, e, f = lv.transform
    return Grid(src_crs, (a, 0.0, c + c0 * a, 0.0, e, f + r0 * e), c1 - c0, r1 - r0)


def window_pixels(
    canvas: np.ndarray,
    valid: np.ndarray,
    transform: Transform,
    src_crs: str,
    read: WindowRead,
    crs: str,
    nodata: float | None,
    out_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """The output pixels of ``read`` and their validity, from native pixels ``canvas``.

    Args:
        canvas: The record's pixels on :func:`source_chip_grid` (invalid ones hold any value).
        valid: Their validity (inside the image, not nodata, not masked).
        transform: ``canvas``'s grid transform, in ``src_crs``.
        src_crs: The record's CRS.
        read: The read.
        crs: The dataset CRS.
        nodata: The band's nodata (the VRT's, too).
        out_size: ``(width, height)`` of the output window.
    """
    dtype = canvas.dtype
    fill = dtype.type(nodata if nodata is not None and representable(nodata, dtype) else 0)
    pixels = np.where(valid, canvas, fill)
    mask = valid if bool((~valid & ~nodata_mask(pixels, nodata)).any()) else None
    x0, y0, w, h = read.window
    shape = (out_size[1], out_size[0])
    if read.grid.warped:
        grid = read.grid
        with (
            _gtiff(pixels, transform, src_crs, nodata, mask) as src,
            WarpedVRT(
                src,
                crs=crs,
                transform=Affine(*grid.transform),
                width=grid.width,
                height=grid.height,
            ) as vrt,
        ):
            window = rasterio.windows.Window(x0, y0, w, h)
            return _split(
                vrt.read(1, window=window, out_shape=shape, resampling=read.kernel, masked=True)
            )
    col, row = read.region[:2]
    if _whole(read.window, out_size):
        rows = slice(round(y0) - row, round(y0) - row + shape[0])
        cols = slice(round(x0) - col, round(x0) - col + shape[1])
        data = pixels[rows, cols]
        return data, ~nodata_mask(data, nodata) if mask is None else mask[rows, cols]
    window = rasterio.windows.Window(x0 - col, y0 - row, w, h)
    with _gtiff(pixels, transform, crs, nodata, mask) as dataset:
        return _split(
            dataset.read(1, window=window, out_shape=shape, resampling=read.kernel, masked=True)
        )


def _split(arr: np.ma.MaskedArray) -> tuple[np.ndarray, np.ndarray]:
    """A masked read as ``(data, valid)``."""
    return np.asarray(arr.data), ~np.ma.getmaskarray(arr)


@contextmanager
def _gtiff(
    array: np.ndarray,
    transform: Transform,
    crs: str,
    nodata: float | None,
    mask: np.ndarray | None,
) -> Iterator[Any]:
    """``array`` as an in-memory GTiff opened for reading (``mask`` as its internal mask).

    Not GDAL's MEM driver: it serves fractional-window RasterIO through its own fast path,
    which does not resample as a file or VRT band does, and a ``WarpedVRT`` wants a
    read-only source.
    """
    height, width = array.shape
    with MemoryFile() as memfile:
        with memfile.open(
            driver="GTiff", width=width, height=height, count=1, dtype=array.dtype,
            nodata=nodata, transform=Affine(*transform), crs=crs,
        ) as dst:  # fmt: skip
            dst.write(array, 1)
            if mask is not None:
                dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
        with memfile.open() as dataset:
            yield dataset
