"""Where points fall on raster grids: candidate search, pixel location, spatial order (pure).

:func:`locate` finds the pixel under a point exactly as rasterio's ``DatasetReader.sample``
does: ``rasterio.transform.rowcol`` applies the inverse affine transform to x and y and
floors the result, so a point on a pixel edge belongs to the pixel to its right / below, and
a point on the raster's right or bottom edge is outside it. The same arithmetic is used here
(``~Affine`` coefficients, multiply-add, floor), so the results are bit-identical.

>>> meta_transform = (10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)
>>> cols, rows = pixel_coordinates(meta_transform, np.array([500010.0]), np.array([4599990.0]))
>>> cols.tolist(), rows.tolist()
([1.0], [1.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pyproj
from affine import Affine

from rasteret.ingest.metadata import BandMetadata
from rasteret.read.buffers import BufferPool, ProcessPool
from rasteret.read.grid import crs_key, same_crs, transform_bounds, transformer

__all__ = [
    "point_array",
    "POINT_POOL_MB",
    "Candidates",
    "box_inside",
    "FiniteBounds",
    "finite_bounds",
    "locate",
    "pixel_coordinates",
    "pixel_of",
    "point_buffers",
    "spatial_order",
]

_DIRECT_SCANS = 8
"""Distinct footprints tested against every point before the points get sorted by x."""
_BOUNDS_MARGIN = 0.01
"""Footprints reprojected to the points' CRS are widened by this fraction (curved edges)."""


def pixel_coordinates(
    transform: Sequence[float], x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fractional ``(col, row)`` of points in the grid of ``transform`` (rasterio's
    ``rowcol`` arithmetic, before flooring)."""
    inv = ~Affine(*transform[:6])
    if inv.b == 0 and inv.d == 0:  # north-up: the zero terms add nothing for finite points
        cols = np.multiply(x, inv.a, out=point_array(len(x), np.dtype(np.float64)))
        cols += inv.c
        rows = np.multiply(y, inv.e, out=point_array(len(y), np.dtype(np.float64)))
        rows += inv.f
        return cols, rows
    return inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f


class Candidates:
    """Finds the points that may fall in a raster footprint (reprojected and widened into
    the points' CRS). The first few distinct footprints are scanned directly; past
    :data:`_DIRECT_SCANS` the points are sorted by x once and searched. Equal footprints
    share one (cached) index array."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, src: str, bounds: FiniteBounds | None = None
    ) -> None:
        """``bounds``: :func:`finite_bounds` of ``x, y`` when the caller knows it already."""
        self.x, self.y, self.src = x, y, src
        self._bounds_known = bounds
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self._bounds: dict[tuple[tuple[float, ...], str], tuple[float, ...]] = {}
        self._near: dict[tuple[tuple[float, ...], str], np.ndarray] = {}
        self._wanted: dict[str, np.ndarray] = {}
        self._box: tuple[tuple[float, ...], np.ndarray] | None = None

    def near(self, meta: BandMetadata) -> np.ndarray:
        """Sorted indices of the points whose coordinates may fall in ``meta``'s raster."""
        key = crs_key(meta.crs, meta.epsg)
        lv = meta.level
        a, _, c, _, e, f = lv.transform
        bounds = self._in_src((c, f + e * lv.image_height, c + a * lv.image_width, f), key)
        idx = self._near.get((bounds, key))
        if idx is None:
            idx = self._scan(bounds) if len(self._near) < _DIRECT_SCANS else self._search(bounds)
            self._near[(bounds, key)] = idx
            if not same_crs(key, self.src):
                self._wanted.setdefault(key, np.zeros(len(self.x), dtype=bool))[idx] = True
        return idx

    def _scan(self, bounds: tuple[float, ...]) -> np.ndarray:
        xmin, ymin, xmax, ymax = bounds
        (pxmin, pymin, pxmax, pymax), finite = self._finite_box()
        if xmin <= pxmin and pxmax <= xmax and ymin <= pymin and pymax <= ymax:
            return finite  # every point is inside the footprint's bounds: nothing to test
        hit = (self.y >= ymin) & (self.y <= ymax)
        if xmin <= xmax:
            hit &= (self.x >= xmin) & (self.x <= xmax)
        else:  # the footprint crosses the antimeridian: keep every x
            hit &= np.isfinite(self.x)
        return np.flatnonzero(hit)

    def _finite_box(self) -> tuple[tuple[float, ...], np.ndarray]:
        """Bounds of the finite points (NaN when there are none) and their indices."""
        if self._box is None:
            known = self._bounds_known
            box, mask = finite_bounds(self.x, self.y) if known is None else known
            finite = point_range(len(self.x)) if mask is None else np.flatnonzero(mask)
            self._box = (box or (math.nan,) * 4, finite)
        return self._box

    def box_in(self, key: str) -> tuple[float, ...] | None:
        """Bounds of the coordinates :meth:`project` gives for the CRS ``key`` when they
        are the points' own (``key`` is their CRS) and every one is finite, else None."""
        if not same_crs(key, self.src):
            return None
        box, finite = self._finite_box()
        return box if 0 < len(finite) == len(self.x) else None

    def _search(self, bounds: tuple[float, ...]) -> np.ndarray:
        if self._sorted is None:
            finite = np.flatnonzero(np.isfinite(self.x) & np.isfinite(self.y))
            order = finite[np.argsort(self.x[finite], kind="stable")]
            self._sorted = (order, self.x[order])
        order, sorted_x = self._sorted
        xmin, ymin, xmax, ymax = bounds
        lo, hi = 0, len(order)
        if xmin <= xmax:  # else the footprint crosses the antimeridian: keep every x
            lo = int(np.searchsorted(sorted_x, xmin, side="left"))
            hi = int(np.searchsorted(sorted_x, xmax, side="right"))
        idx = order[lo:hi]
        yy = self.y[idx]
        return np.sort(idx[(yy >= ymin) & (yy <= ymax)])

    def _in_src(self, bounds: tuple[float, ...], key: str) -> tuple[float, ...]:
        cached = self._bounds.get((bounds, key))
        if cached is None:
            xmin, ymin, xmax, ymax = bounds
            if same_crs(key, self.src):
                cached = bounds
            else:
                try:
                    xmin, ymin, xmax, ymax = transform_bounds(bounds, key, self.src)
                except pyproj.exceptions.ProjError:  # no bounds: test every point
                    xmin, ymin, xmax, ymax = -math.inf, -math.inf, math.inf, math.inf
                if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
                    xmin, ymin, xmax, ymax = -math.inf, -math.inf, math.inf, math.inf
                mx, my = (xmax - xmin) * _BOUNDS_MARGIN, (ymax - ymin) * _BOUNDS_MARGIN
                cached = (xmin - abs(mx), ymin - abs(my), xmax + abs(mx), ymax + abs(my))
            self._bounds[(bounds, key)] = cached
        return cached

    def project(self, keys: Mapping[str, None]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per raster CRS: x and y of every point any footprint in that CRS may hold
        (NaN for the others), each point transformed once."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key in keys:
            if same_crs(key, self.src):
                out[key] = (self.x, self.y)
                continue
            idx = np.flatnonzero(self._wanted.get(key, np.zeros(0, dtype=bool)))
            px = np.full(len(self.x), np.nan)
            py = np.full(len(self.x), np.nan)
            if len(idx):
                px[idx], py[idx] = transformer(self.src, key).transform(self.x[idx], self.y[idx])
            out[key] = (px, py)
        return out


POINT_POOL_MB = 256
"""Megabytes (10**6 bytes) of returned point-read memory kept for reuse (a 1,000,000-point
read of one record and two bands uses ~150 MB, its table included)."""

_point_pool = ProcessPool(POINT_POOL_MB)


def point_buffers() -> BufferPool:
    """The process-wide pool of point-read memory (:data:`POINT_POOL_MB`), apart from the
    decoded tiles' own so that neither crowds the other out."""
    return _point_pool()


def point_array(n: int, dtype: np.dtype) -> np.ndarray:
    """``numpy.empty(n, dtype)`` in recycled memory (:func:`point_buffers`).

    The large arrays of a point read and of its table are written into pages an earlier read
    let go, not fresh ones (a page fault per 4 KiB page on first write costs more than
    filling the page many times). Every element must be written by the caller.

    >>> a = point_array(3, np.dtype(np.int64))
    >>> a[:] = 7
    >>> a.tolist(), a.dtype.name
    ([7, 7, 7], 'int64')
    """
    return point_buffers().take(n * dtype.itemsize).view(dtype)


_RANGE_CHUNK = 1 << 16
"""Elements of a :func:`point_range` written per vectorised step."""


def point_range(n: int, step: int = 1, dtype: np.dtype | None = None) -> np.ndarray:
    """``numpy.arange(n) * step`` (intp unless ``dtype``) in recycled memory, a chunk of
    :data:`_RANGE_CHUNK` at a time (a small ramp shifted into place: vectorised, unlike a
    running sum, and no temporary as large as the result).

    >>> point_range(4).tolist(), point_range(3, 21, np.dtype(np.int32)).tolist()
    ([0, 1, 2, 3], [0, 21, 42])
    """
    dtype = np.dtype(np.intp) if dtype is None else dtype
    out = point_array(n, dtype)
    ramp = np.arange(min(n, _RANGE_CHUNK), dtype=dtype)
    ramp *= step
    for lo in range(0, n, _RANGE_CHUNK):
        hi = min(n, lo + _RANGE_CHUNK)
        np.add(ramp[: hi - lo], lo * step, out=out[lo:hi], dtype=dtype)
    return out


FiniteBounds = tuple[tuple[float, ...] | None, np.ndarray | None]
"""What :func:`finite_bounds` returns: the box of the finite points, and which they are."""


def finite_bounds(x: np.ndarray, y: np.ndarray) -> FiniteBounds:
    """Bounds ``(xmin, ymin, xmax, ymax)`` of the points with finite coordinates (None if
    there are none), and which points those are (None: every point).

    >>> box, mask = finite_bounds(np.array([1.0, np.nan, 3.0]), np.array([5.0, 0.0, 4.0]))
    >>> box, mask.tolist()
    ((1.0, 4.0, 3.0, 5.0), [True, False, True])
    >>> finite_bounds(np.array([2.0]), np.array([1.0]))
    ((2.0, 1.0, 2.0, 1.0), None)
    """
    if not len(x):
        return None, None
    box = (float(x.min()), float(y.min()), float(x.max()), float(y.max()))
    if all(math.isfinite(v) for v in box):  # min and max: NaN if any is
        return box, None
    mask = np.isfinite(x) & np.isfinite(y)  # some null or empty points
    if not mask.any():
        return None, mask
    x, y = x[mask], y[mask]
    return (float(x.min()), float(y.min()), float(x.max()), float(y.max())), mask


def locate(
    meta: BandMetadata,
    idx: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    box: tuple[float, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fractional pixel (row, col) of the points ``idx`` in ``meta``'s full-resolution grid,
    and whether they fall inside it, exactly as ``rasterio.transform.rowcol`` computes them
    (the inverse affine applied to x and y, then floored).

    ``box``: the bounds ``(xmin, ymin, xmax, ymax)`` of ``px, py`` when every one is
    finite. When ``idx`` is every point and the box falls inside the grid
    (:func:`box_inside`), so does every point, and none is tested."""
    lv = meta.level
    every = len(idx) == len(px) and (len(idx) == 0 or idx[-1] == len(idx) - 1)
    if every:
        cols, rows = pixel_coordinates(lv.transform, px, py)  # no subsetting
    else:
        cols, rows = pixel_coordinates(lv.transform, px[idx], py[idx])
    if every and box is not None and box_inside(lv.transform, lv.image_width, lv.image_height, box):
        inside = point_array(len(rows), np.dtype(bool))
        inside.fill(True)
        return rows, cols, inside
    # floor(v) >= 0 iff v >= 0, and floor(v) < n iff v < n for whole n: no floor needed
    ok = np.greater_equal(rows, 0, out=point_array(len(rows), np.dtype(bool)))
    test = point_array(len(rows), np.dtype(bool))
    ok &= np.less(rows, lv.image_height, out=test)
    ok &= np.greater_equal(cols, 0, out=test)
    ok &= np.less(cols, lv.image_width, out=test)
    return rows, cols, ok


def box_inside(transform: Sequence[float], width: int, height: int, box: tuple[float, ...]) -> bool:
    """Whether every point with coordinates inside ``box`` (``xmin, ymin, xmax, ymax``,
    finite) falls inside the north-up grid ``transform`` of ``width`` x ``height`` pixels,
    by the arithmetic of :func:`pixel_coordinates` (False for a rotated grid: not decided).

    The fractional column of a point is ``x * a + c`` of the inverse transform, one
    correctly rounded multiply and one add, and rounding keeps order: ``x <= x'`` gives
    ``x * a + c <= x' * a + c`` for ``a > 0`` (the reverse for ``a < 0``). The columns of
    the box's edges, worked out by :func:`pixel_coordinates` itself, bound every point's
    column (rows alike).

    >>> grid = (10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)  # 100 x 100 pixels
    >>> box_inside(grid, 100, 100, (500000.0, 4599000.0 + 1e-9, 500999.99, 4600000.0))
    True
    >>> box_inside(grid, 100, 100, (500000.0, 4599500.0, 501000.0, 4600000.0))  # right edge
    False
    """
    if transform[1] != 0 or transform[3] != 0:  # rotated or sheared
        return False
    xmin, ymin, xmax, ymax = box
    cols, rows = pixel_coordinates(transform, np.array([xmin, xmax]), np.array([ymin, ymax]))
    return bool(cols.min() >= 0 and cols.max() < width and rows.min() >= 0 and rows.max() < height)


def pixel_of(
    meta: BandMetadata, x: np.ndarray, y: np.ndarray, src: str
) -> tuple[np.ndarray, np.ndarray]:
    """Whole pixel (row, col) of points ``(x, y)`` (in the CRS ``src``, a :func:`crs_key`)
    in ``meta``'s full-resolution grid, -1 where outside: the same transform and arithmetic
    as :meth:`Candidates.project` and :func:`locate`."""
    key = crs_key(meta.crs, meta.epsg)
    if not same_crs(key, src) and len(x):
        x, y = transformer(src, key).transform(x, y)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rows, cols, ok = locate(meta, np.arange(len(x)), x, y)
    return np.where(ok, rows, -1).astype(np.int64), np.where(ok, cols, -1).astype(np.int64)


def spatial_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An order of the points along a Z-order (Morton) curve, so that consecutive batches
    touch few tiles; non-finite points come last.

    >>> spatial_order(np.array([10.0, 0.0, 10.0, 0.0]), np.array([10.0, 0.0, 0.0, np.nan])).tolist()
    [1, 2, 0, 3]
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    key = np.full(len(x), np.iinfo(np.uint64).max, dtype=np.uint64)
    if finite.any():
        qx = _quantise(x[finite])
        qy = _quantise(y[finite])
        key[finite] = _spread(qx) | (_spread(qy) << np.uint64(1))
    return np.argsort(key, kind="stable")


def _quantise(v: np.ndarray) -> np.ndarray:
    lo, hi = float(v.min()), float(v.max())
    scale = (2**16 - 1) / (hi - lo) if hi > lo else 0.0
    return ((v - lo) * scale).astype(np.uint64)


def _spread(v: np.ndarray) -> np.ndarray:
    """Insert a zero bit between the 16 low bits of ``v``."""
    v = v & np.uint64(0xFFFF)
    for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v
