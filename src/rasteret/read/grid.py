"""Pixel grids, window snapping and GDAL's overview choice; pure functions, no I/O.

Snapping rule (documented once, used everywhere): a window is the smallest whole-pixel
window that **covers** the bounds, i.e. offsets rounded down and ends rounded up, with bounds
that lie within ``SNAP_TOLERANCE`` pixels of a pixel edge snapping to that edge. This is
``gdalwarp -tap`` and rioxarray's ``clip_box`` (``from_bounds`` then floor/ceil). It differs
from ``from_bounds(...).round_offsets().round_lengths()`` (nearest-edge rounding), which can
drop edge pixels whose centres lie inside the AOI and so breaks ``all_touched``.

>>> grid = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0), 520, 300)
>>> grid.bounds
(500000.0, 4597000.0, 505200.0, 4600000.0)
>>> covering_window(grid.transform, (500015.0, 4599900.0, 500041.0, 4599985.0))
(1, 1, 4, 9)
>>> best_overview(1000, 1000, [(500, 500), (250, 250)], 1000, 1000, 250, 250, nearest=True)
2
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyproj
import shapely

from rasteret.errors import UnsupportedFormatError

__all__ = [
    "SNAP_TOLERANCE",
    "Grid",
    "Transform",
    "Window",
    "best_overview",
    "check_north_up",
    "covering_window",
    "crs_key",
    "crs_of",
    "level_window",
    "same_crs",
    "snap_bounds",
    "transform_bounds",
    "transform_geometry",
    "transformer",
]

Transform = tuple[float, float, float, float, float, float]
"""Affine ``(a, b, c, d, e, f)``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``."""
Window = tuple[int, int, int, int]
"""``(col_off, row_off, width, height)`` in whole pixels."""

SNAP_TOLERANCE = 1e-6
"""Bounds closer than this many pixels to a pixel edge snap to the edge (float noise)."""


@dataclass(frozen=True, slots=True)
class Grid:
    """A north-up pixel grid: CRS, affine transform and size."""

    crs: str
    """The CRS as ``EPSG:n`` when it has a code, else WKT."""
    transform: Transform
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the grid's outer pixel edges."""
        a, _, c, _, e, f = self.transform
        x0, x1 = c, c + a * self.width
        y0, y1 = f, f + e * self.height
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` as positive numbers."""
        return abs(self.transform[0]), abs(self.transform[4])


def check_north_up(transform: Sequence[float], where: str) -> None:
    """Raise unless ``transform`` is north-up (no rotation, x to the east, y to the south)."""
    a, b, _, d, e, _ = transform[:6]
    if b != 0 or d != 0 or a <= 0 or e >= 0:
        raise UnsupportedFormatError(
            f"expected a north-up grid (a > 0, b = d = 0, e < 0) at {where}, got {tuple(transform)}"
        )


def covering_window(transform: Transform, bounds: Sequence[float]) -> Window:
    """The smallest whole-pixel window of ``transform``'s grid covering ``bounds``.

    May extend past the raster (negative offsets, larger than the image): callers clip.
    A degenerate (zero-width) bounds still gets one pixel.
    """
    a, _, c, _, e, f = transform
    xmin, ymin, xmax, ymax = bounds
    col0 = math.floor((xmin - c) / a + SNAP_TOLERANCE)
    col1 = math.ceil((xmax - c) / a - SNAP_TOLERANCE)
    row0 = math.floor((ymax - f) / e + SNAP_TOLERANCE)
    row1 = math.ceil((ymin - f) / e - SNAP_TOLERANCE)
    return col0, row0, max(col1 - col0, 1), max(row1 - row0, 1)


def snap_bounds(
    bounds: Sequence[float], origin: tuple[float, float], resolution: tuple[float, float]
) -> tuple[Transform, int, int]:
    """Cover ``bounds`` with the lattice of ``resolution`` through ``origin`` (north-up).

    Returns the window's transform, width and height.
    """
    rx, ry = resolution
    base: Transform = (rx, 0.0, origin[0], 0.0, -ry, origin[1])
    col, row, width, height = covering_window(base, bounds)
    return (rx, 0.0, origin[0] + col * rx, 0.0, -ry, origin[1] - row * ry), width, height


def level_window(transform: Transform, grid: Grid) -> tuple[float, float, float, float]:
    """``grid``'s extent as a fractional window ``(x0, y0, width, height)`` in pixels of
    ``transform`` (same CRS assumed)."""
    a, _, c, _, e, f = transform
    ga, _, gc, _, ge, gf = grid.transform
    return (gc - c) / a, (gf - f) / e, grid.width * ga / a, grid.height * ge / e


def best_overview(
    full_width: int,
    full_height: int,
    overview_sizes: Sequence[tuple[int, int]],
    window_width: int,
    window_height: int,
    buf_width: int | None = None,
    buf_height: int | None = None,
    *,
    nearest: bool,
) -> int:
    """GDAL's overview pick for a downsampled read (``GDALBandGetBestOverviewLevel2``).

    Args:
        full_width, full_height: Size of the full-resolution image.
        overview_sizes: ``(width, height)`` of each overview, in file order.
        window_width, window_height: Integer size of the requested window at full resolution
            (rasterio passes ``int(width)``, truncated).
        buf_width, buf_height: Output size; with a single size, both axes use it.
        nearest: Whether the kernel is nearest (threshold 1.2) or not (threshold 1.0); the
            ``GDAL_OVERVIEW_OVERSAMPLING_THRESHOLD`` environment variable overrides both, as
            it does in GDAL.

    Returns:
        0 for full resolution, ``k`` for ``overview_sizes[k - 1]``.
    """
    if buf_width is None:
        buf_width = window_width
    if buf_height is None:
        buf_height = window_height
    if not (buf_width < window_width or buf_height < window_height) or not overview_sizes:
        return 0
    fx = window_width / buf_width
    fy = window_height / buf_height
    desired = fx if (fx < fy or buf_height == 1) else fy
    configured = os.environ.get("GDAL_OVERVIEW_OVERSAMPLING_THRESHOLD")
    threshold = float(configured) if configured else (1.2 if nearest else 1.0)
    eps = 1e-1  # GDAL's tolerance against numerical instability
    best, best_factor = 0, 0.0
    for k, (ow, oh) in enumerate(overview_sizes, start=1):
        if ow > full_width or oh > full_height:
            continue
        factor = min(full_width / ow, full_height / oh)
        if factor >= desired * threshold + eps or factor <= best_factor:
            continue
        best, best_factor = k, factor
        if abs(desired - factor) < eps:
            break
    return best


@lru_cache(maxsize=1024)
def crs_of(key: str) -> pyproj.CRS:
    """The pyproj CRS of a CRS string (``EPSG:n``, WKT, PROJJSON), cached."""
    return pyproj.CRS.from_user_input(key)


def crs_key(crs: str | int | pyproj.CRS | None, epsg: int | None = None) -> str:
    """A canonical CRS string: ``EPSG:n`` when a code is known, else WKT."""
    if epsg:
        return f"EPSG:{int(epsg)}"
    if crs is None:
        raise UnsupportedFormatError("expected a georeferenced raster, got one with no CRS")
    if isinstance(crs, int):
        return f"EPSG:{crs}"
    if isinstance(crs, str) and crs.upper().startswith("EPSG:"):
        return crs.upper()
    obj = crs if isinstance(crs, pyproj.CRS) else crs_of(str(crs))
    code = obj.to_epsg(min_confidence=100)
    return f"EPSG:{code}" if code else obj.to_wkt()


@lru_cache(maxsize=4096)
def same_crs(a: str, b: str) -> bool:
    """Whether two canonical CRS strings name the same CRS (axis order ignored)."""
    return a == b or crs_of(a).equals(crs_of(b), ignore_axis_order=True)


@lru_cache(maxsize=1024)
def transformer(src: str, dst: str) -> pyproj.Transformer:
    """A cached always-x/y transformer between two canonical CRS strings."""
    return pyproj.Transformer.from_crs(crs_of(src), crs_of(dst), always_xy=True)


def transform_geometry(geom: shapely.Geometry, src: str, dst: str) -> shapely.Geometry:
    """``geom`` in ``dst``, edges densified first so curved edges stay accurate."""
    if same_crs(src, dst):
        return geom
    xmin, ymin, xmax, ymax = shapely.bounds(geom)
    step = max(xmax - xmin, ymax - ymin) / 20.0
    dense = shapely.segmentize(geom, step) if step > 0 else geom
    return shapely.transform(
        dense, lambda xy: _transform_xy(xy, transformer(src, dst)), include_z=False
    )


def _transform_xy(xy: np.ndarray, tr: pyproj.Transformer) -> np.ndarray:
    arr = np.asarray(xy, dtype=float)
    x, y = tr.transform(arr[:, 0], arr[:, 1])
    return np.column_stack([x, y])


def transform_bounds(bounds: Sequence[float], src: str, dst: str) -> tuple[float, ...]:
    """``bounds`` in ``dst`` with densified edges (pyproj ``transform_bounds``)."""
    if same_crs(src, dst):
        return tuple(float(v) for v in bounds)
    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    return tuple(transformer(src, dst).transform_bounds(xmin, ymin, xmax, ymax, densify_pts=21))
