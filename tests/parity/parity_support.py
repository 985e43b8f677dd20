"""Shared writers of the parity tests: small UTM scenes near the 12 deg E zone border."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling


def write_scene(
    path: Path, epsg: int, lon: float, lat: float, seed: int, overviews: Sequence[int] = (2, 4)
) -> Path:
    """A 600 x 600 uint16 GeoTIFF at 10 m around (lon, lat), nodata 0 in one corner,
    256 px deflate tiles, with ``overviews`` (average)."""
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    size = 600
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    data = 1000 + 500 * np.sin(xx / 37.0) + 400 * np.cos(yy / 23.0) + rng.integers(0, 50, xx.shape)
    data = data.astype("uint16")
    data[(xx + yy) < size // 6] = 0
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": f"EPSG:{epsg}",
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "transform": Affine(10.0, 0.0, round(x, -1) + seed, 0.0, -10.0, round(y, -1) + 2 * seed),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if overviews:
            dst.build_overviews(list(overviews), Resampling.average)
    return path
