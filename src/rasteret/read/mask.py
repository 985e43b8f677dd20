"""Validity masks: AOI geometry (rasterio's rasterizer), nodata and internal masks.

A chip pixel is *valid* when it is inside the AOI polygon (``geometry_mask`` semantics:
pixel centre inside, or any touch with ``all_touched=True``), inside the raster, not equal to
the band's nodata, and not masked by the file's GDAL internal mask. Invalid pixels hold the
fill value.

>>> import shapely
>>> inside = geometry_inside(shapely.box(0, 0, 2, 1), (1.0, 0.0, 0.0, 0.0, -1.0, 2.0), (2, 3),
...                          all_touched=False)
>>> inside.astype(int).tolist()
[[0, 0, 0], [1, 1, 0]]
>>> nodata_mask(np.array([1.0, np.nan, 3.0]), float("nan")).tolist()
[False, True, False]
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from rasterio.features import geometry_mask

from rasteret._warn import warnings_lock
from rasteret.read.grid import Transform

__all__ = ["apply_fill", "geometry_inside", "nodata_mask"]


def geometry_inside(
    geom: shapely.Geometry,
    transform: Transform,
    shape: tuple[int, int],
    *,
    all_touched: bool,
) -> np.ndarray:
    """Boolean ``(height, width)``: True for pixels the polygon covers (rasterio semantics).

    Args:
        geom: The AOI polygon, in the grid's CRS.
        transform: The grid's affine ``(a, b, c, d, e, f)``.
        shape: ``(height, width)``.
        all_touched: Burn every pixel the polygon touches, not only centre-inside ones.
    """
    from affine import Affine

    # rasterio's rasterize ignores every warning while it runs (warnings.catch_warnings, which
    # is process-wide): two at once can leak a NotGeoreferencedWarning, and a warning of
    # another thread meanwhile would vanish. One at a time, never while rasteret warns.
    with warnings_lock():
        return geometry_mask(
            [geom],
            out_shape=shape,
            transform=Affine(*transform),
            all_touched=all_touched,
            invert=True,
        )


def nodata_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """True where ``data`` equals ``nodata`` (NaN-aware; compared in the data's dtype).

    GDAL compares a float32 band against its nodata rounded to float32; so does this.
    """
    if nodata is None:
        return np.zeros(data.shape, dtype=bool)
    if isinstance(nodata, float) and math.isnan(nodata):
        return np.isnan(data) if data.dtype.kind in "fc" else np.zeros(data.shape, dtype=bool)
    kind = data.dtype.kind
    if kind in "iu":
        info = np.iinfo(data.dtype)
        if not (float(nodata).is_integer() and info.min <= nodata <= info.max):
            return np.zeros(data.shape, dtype=bool)
        return data == data.dtype.type(int(nodata))
    with np.errstate(over="ignore"):
        return data == data.dtype.type(nodata)


def apply_fill(data: np.ndarray, valid: np.ndarray, fill: float) -> None:
    """Set every invalid pixel of ``data`` to ``fill``, in place."""
    if not valid.all():
        np.copyto(data, data.dtype.type(fill), where=~valid)
