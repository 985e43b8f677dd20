"""Resampling kernels: GDAL RasterIO (same CRS) and the GDAL warper (other CRS).

Both run GDAL itself, through rasterio, on in-memory arrays (no file I/O), so the results
are GDAL's to the bit:

* :func:`resample_region` puts an assembled region of one level into an in-memory (MEM)
  dataset and reads the fractional window at the output shape, exactly as
  ``rasterio`` ``read(window=..., out_shape=..., resampling=...)`` reads that level of the
  file. Invalid pixels the nodata value cannot express (internal mask, outside the image)
  are given to GDAL as a per-dataset mask, so kernels skip them as GDAL does for masked files.
* :func:`warp_region` calls :func:`rasterio.warp.reproject` between two MEM datasets, the
  source carrying the same per-dataset mask.

Validity follows GDAL: after RasterIO resampling, the validity of the source pixel nearest
each output pixel's centre (what ``read_masks(out_shape=...)`` returns); after warping, the
pixels the warper wrote (its destination alpha: at least one valid source pixel contributed).
A pixel equal to nodata is never valid.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from rasteret.read.bands import BandRead
from rasteret.read.grid import Grid
from rasteret.read.mask import nodata_mask

__all__ = ["resample_region", "warp_region"]


def resample_region(
    canvas: np.ndarray,
    valid: np.ndarray,
    read: BandRead,
    out_shape: tuple[int, int],
    *,
    use_mask: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``read.src_window`` of ``canvas`` to ``out_shape`` as GDAL RasterIO does.

    Args:
        canvas: ``(height, width)`` pixels of the read's region, in the band's dtype.
        valid: Same shape; False for pixels outside the image or masked.
        read: The band read (its ``src_window``, ``nodata`` and ``resampling``).
        out_shape: ``(height, width)`` of the result.
        use_mask: Give ``valid`` to GDAL as a per-dataset mask (needed when some invalid
            pixels are not equal to nodata).

    Returns:
        The resampled pixels and their validity.
    """
    assert read.src_window is not None
    x0, y0, w, h = read.src_window
    window = Window(x0, y0, w, h)
    mask = valid if use_mask else None
    data = _mem_read(canvas, mask, read, window, out_shape, read.resampling, nodata=read.nodata)
    valid_u8 = valid.astype(np.uint8)
    valid_out = (
        _mem_read(valid_u8, None, read, window, out_shape, Resampling.nearest, nodata=None) != 0
    )
    valid_out &= ~nodata_mask(data, read.nodata)
    return data, valid_out


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
    # RasterIO ignores georeferencing: any non-identity transform keeps rasterio quiet
    transform = read.src_transform
    if abs(transform[2]) < 1 and abs(transform[5]) < 1:
        transform = (*transform[:2], 1e6, *transform[3:5], 1e6)
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


def warp_region(
    canvas: np.ndarray,
    valid: np.ndarray,
    read: BandRead,
    grid: Grid,
    *,
    use_mask: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Reproject ``canvas`` (the read's region) onto ``grid`` with the read's kernel.

    Returns:
        The warped pixels (nodata, else 0, where nothing was written) and their validity
        (the warper's destination alpha).
    """
    dst_nodata = read.nodata if read.nodata is not None else 0
    mask = valid if use_mask else None
    with (
        _mem(canvas, read.src_transform, read.src_crs, read.nodata, mask) as src,
        _mem(
            np.full((2, *grid.shape), dst_nodata, canvas.dtype),
            grid.transform,
            grid.crs,
            None,
        ) as dst,
    ):
        reproject(
            rasterio.band(src, 1),
            rasterio.band(dst, 1),
            resampling=read.resampling,
            dst_nodata=dst_nodata,
            init_dest_nodata=True,
            dst_alpha=2,
        )
        data = dst.read(1)
        written = dst.read(2) != 0
    return data, written & ~nodata_mask(data, read.nodata)
