"""Shared writers of the parity tests: small UTM scenes near the 12 deg E zone border."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling

from rasteret.ingest.metadata import band_metadata_from_header
from rasteret.read import RecordRef
from rasteret.tiff.header import parse_header


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


def file_record(rid: str, path: Path, count: int) -> RecordRef:
    """A record whose bands ``b1..b{count}`` are the samples of one local file, as rasteret's
    own header parser describes them."""
    data = path.read_bytes()
    header = parse_header(data, url=str(path), object_size=len(data))
    return RecordRef(rid, None, {
        f"b{i + 1}": band_metadata_from_header(header, band_index=i, href=str(path))
        for i in range(count)
    })  # fmt: skip


def offset_box(t: Affine, c0: int, r0: int, c1: int, r1: int) -> shapely.Polygon:
    """The box of pixels ``[c0, c1) x [r0, r1)`` of grid ``t``, its edges moved off the pixel
    edges by a few tenths of a metre (fractional windows, as real AOIs give)."""
    return shapely.box(
        t.c + c0 * t.a + 0.3, t.f + r1 * t.e + 0.4, t.c + c1 * t.a - 0.2, t.f + r0 * t.e - 0.1
    )
