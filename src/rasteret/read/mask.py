"""Validity masks: AOI geometry (rasterio's rasterizer), nodata and internal masks.

A chip pixel is *valid* when it is inside the AOI polygon (``geometry_mask`` semantics:
pixel centre inside, or any touch with ``all_touched=True``), inside the raster, not equal to
the band's nodata, and not masked by the file's GDAL internal mask. Invalid pixels hold the
fill value.

AOIs are most often rectangles (bbox tuples, TorchGeo queries). On a north-up grid their
centre-rule mask is the outer product of a row test and a column test, computed here with
GDAL's own rules and arithmetic (tested against ``geometry_mask``, ties included) at a
fraction of a rasterization's cost; other polygons, and ``all_touched``, are rasterized.

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

    if not all_touched:
        bounds = _rectangle(geom)
        if bounds is not None and _north_up(transform):
            return _rectangle_inside(bounds, transform, shape)
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


def _north_up(transform: Transform) -> bool:
    a, b, _, d, e, _ = transform[:6]
    return b == 0 and d == 0 and a > 0 and e < 0


def _rectangle(geom: shapely.Geometry) -> tuple[float, float, float, float] | None:
    """``geom``'s bounds when it is an axis-aligned rectangle of positive area (a polygon
    whose ring visits its four corners, each step along one axis), else None.

    >>> _rectangle(shapely.box(0, 0, 2, 1)), _rectangle(shapely.Point(0, 0).buffer(1))
    ((0.0, 0.0, 2.0, 1.0), None)
    """
    if not isinstance(geom, shapely.Polygon) or geom.interiors:
        return None
    ring = shapely.get_coordinates(geom.exterior)
    if ring.shape != (5, 2):
        return None
    xmin, ymin = ring.min(axis=0)
    xmax, ymax = ring.max(axis=0)
    if not (xmin < xmax and ymin < ymax) or not geom.area > 0:  # extents so small the
        return None  # area underflows: leave such a sliver to the general path
    on_x = np.isin(ring[:, 0], (xmin, xmax)).all() and np.isin(ring[:, 1], (ymin, ymax)).all()
    steps = np.diff(ring, axis=0) != 0
    if not on_x or not (steps.sum(axis=1) == 1).all():
        return None
    return float(xmin), float(ymin), float(xmax), float(ymax)


def _rectangle_inside(
    bounds: tuple[float, float, float, float], transform: Transform, shape: tuple[int, int]
) -> np.ndarray:
    """The centre-rule mask of an axis-aligned rectangle on a north-up grid, as GDAL burns
    it: vertices to pixel space through the inverse geotransform (``-c/a + x * (1/a)``);
    column ``i`` inside when ``floor(x0 + 0.5) <= i < floor(x1 + 0.5)`` (its scanline fill),
    row ``j`` when ``y0 <= j + 0.5 <= y1`` (a scanline on the bottom edge burns it too)."""
    a, _, c, _, e, f = transform[:6]
    xmin, ymin, xmax, ymax = bounds
    x0, x1 = -c / a + xmin * (1.0 / a), -c / a + xmax * (1.0 / a)
    y0, y1 = -f / e + ymax * (1.0 / e), -f / e + ymin * (1.0 / e)
    height, width = shape
    cols = np.arange(width)
    in_cols = (cols >= math.floor(x0 + 0.5)) & (cols < math.floor(x1 + 0.5))
    centres = np.arange(height) + 0.5
    in_rows = (centres >= y0) & (centres <= y1)
    return np.logical_and(in_rows[:, None], in_cols[None, :])


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
