"""rasterio as the oracle: what an AOI read should return, computed with rasterio alone.

The window rule is rasteret's documented one (:mod:`rasteret.read.grid`): the AOI's bounds,
transformed to the raster CRS with densified edges, covered by whole pixels (offsets rounded
down, ends rounded up). The polygon's edges are densified (20 segments across its extent, as
rasteret does) before GDAL transforms it to the raster CRS, so both sides mask the same
shape; pixels outside it (``rasterio.features.geometry_mask``) and outside the raster hold
``fill``.

>>> import tempfile, shapely
>>> from rasteret.testing.scenes import SceneSpec, write_scene
>>> spec = SceneSpec("s", 32643, (770000.0, 1450000.0), size=256, tile=128)
>>> path = write_scene(spec, tempfile.mkdtemp(), bands=("B04",))["B04"]
>>> rasterio_aoi_read(path, shapely.box(770100, 1449000, 770300, 1449500), "EPSG:32643").shape
(50, 20)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.features import geometry_mask
from rasterio.warp import transform_bounds, transform_geom
from rasterio.windows import Window

__all__ = ["covering_window_rasterio", "rasterio_aoi_read"]

_EPS = 1e-6


def covering_window_rasterio(src: Any, bounds: tuple[float, float, float, float]) -> Window:
    """The whole-pixel window of ``src`` covering ``bounds`` (raster CRS)."""
    window = rasterio.windows.from_bounds(*bounds, transform=src.transform)
    col0 = math.floor(window.col_off + _EPS)
    row0 = math.floor(window.row_off + _EPS)
    col1 = math.ceil(window.col_off + window.width - _EPS)
    row1 = math.ceil(window.row_off + window.height - _EPS)
    return Window(col0, row0, max(col1 - col0, 1), max(row1 - row0, 1))


def rasterio_aoi_read(
    path: str | Path,
    aoi: shapely.Geometry,
    aoi_crs: str,
    band: int = 1,
    *,
    all_touched: bool = False,
    fill: float | None = None,
) -> np.ndarray:
    """Read ``band`` of ``path`` over ``aoi`` with rasterio, masked outside the polygon."""
    with rasterio.open(path) as src:
        fill_value = fill if fill is not None else (src.nodata if src.nodata is not None else 0)
        bounds = transform_bounds(aoi_crs, src.crs, *aoi.bounds, densify_pts=21)
        window = covering_window_rasterio(src, bounds)
        data = src.read(band, window=window, boundless=True, fill_value=fill_value)
        xmin, ymin, xmax, ymax = aoi.bounds
        dense = shapely.segmentize(aoi, max(xmax - xmin, ymax - ymin) / 20.0)
        shape = transform_geom(aoi_crs, src.crs, shapely.geometry.mapping(dense))
        outside = geometry_mask(
            [shape],
            out_shape=data.shape,
            transform=src.window_transform(window),
            all_touched=all_touched,
        )
        data[outside] = fill_value
        return data


def rasterio_strip_warp(
    region: np.ndarray, read: Any, grid: Any, kernel: str, *, nodata: float = 0
) -> np.ndarray:
    """rasterio's ``reproject`` of an assembled source ``region`` onto ``grid``, strip by strip.

    The oracle of a reprojecting read: one ``reproject`` per :func:`rasteret.read.warp.
    warp_calls` strip with the options rasteret gives GDAL (the strip's fixed ``XSCALE`` /
    ``YSCALE``, ``SRC_FILL_RATIO_HEURISTICS=NO``), pasted into a ``grid.shape`` array
    initialised to ``nodata``. ``read`` is the band read (its ``src_transform``, ``src_crs``).
    """
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from rasteret.read.warp import warp_calls

    expected = np.full(grid.shape, nodata, dtype=region.dtype)
    for call in warp_calls(read, grid):
        out = np.full((call.height, call.width), nodata, dtype=region.dtype)
        scale = {} if call.scale is None else {"XSCALE": call.scale[0], "YSCALE": call.scale[1]}
        reproject(
            region,
            out,
            src_transform=Affine(*read.src_transform),
            src_crs=read.src_crs,
            dst_transform=Affine(*call.transform),
            dst_crs=grid.crs,
            resampling=Resampling[kernel],
            src_nodata=nodata,
            dst_nodata=nodata,
            SRC_FILL_RATIO_HEURISTICS="NO",
            **scale,
        )
        c0, c1 = max(call.col, 0), min(call.col + call.width, grid.width)
        expected[call.row : call.row + call.height, c0:c1] = out[:, c0 - call.col : c1 - call.col]
    return expected
