"""Helpers shared by the read tests: band metadata of real files, small COG writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from rasteret.ingest.metadata import BandMetadata, band_metadata_from_header
from rasteret.read import RecordRef
from rasteret.tiff.header import parse_header

X0, Y0 = 500_000.0, 4_600_000.0
"""Upper-left corner of the files :func:`write_cog` writes by default (EPSG:32633, 10 m)."""


def box(c0: float, r0: float, c1: float, r1: float) -> shapely.Polygon:
    """A box given in pixel coordinates of the default 10 m grid of :func:`write_cog`."""
    return shapely.box(X0 + 10 * c0, Y0 - 10 * r1, X0 + 10 * c1, Y0 - 10 * r0)


def band_metadata(path: str | Path, band_index: int = 0, href: str | None = None) -> BandMetadata:
    """Metadata of one band of a local TIFF, parsed by rasteret's own header parser."""
    data = Path(path).read_bytes()
    header = parse_header(data, url=str(path), object_size=len(data))
    return band_metadata_from_header(
        header, band_index=band_index, href=href or str(path), object_size=len(data)
    )


def record(
    rid: str,
    path: str | Path,
    count: int = 1,
    *,
    names: tuple[str, ...] | None = None,
    href: str | None = None,
) -> RecordRef:
    """A record whose bands ``b1..bN`` (or ``names``) are the samples of one file."""
    names = names or tuple(f"b{i + 1}" for i in range(count))
    return RecordRef(rid, None, {n: band_metadata(path, i, href) for i, n in enumerate(names)})


def write_cog(
    path: Path,
    *,
    epsg: int = 32633,
    origin: tuple[float, float] = (X0, Y0),
    size: tuple[int, int] = (600, 400),
    res: float = 10.0,
    tile: int = 128,
    count: int = 1,
    dtype: str = "uint16",
    nodata: float | None = 0,
    overviews: tuple[int, ...] = (2, 4),
    interleave: str = "pixel",
    seed: int = 0,
    sparse: bool = False,
) -> Path:
    """A tiled, deflate-compressed GeoTIFF with internal overviews and a nodata corner."""
    width, height = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    data = np.empty((count, height, width), dtype=dtype)
    for b in range(count):
        field = 900 + 400 * np.sin(xx / (31.0 + b)) + 300 * np.cos(yy / (19.0 + 2 * b))
        data[b] = (field + rng.integers(0, 60, (height, width))).astype(dtype)
        if nodata is not None:
            data[b][(xx + yy) < min(width, height) // 5] = nodata
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype,
        "crs": f"EPSG:{epsg}",
        "transform": Affine(res, 0.0, origin[0], 0.0, -res, origin[1]),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": tile,
        "blockysize": tile,
        "compress": "deflate",
        "predictor": 2,
        "interleave": interleave,
    }
    if sparse:
        profile["sparse_ok"] = True
    with rasterio.open(path, "w", **profile) as dst:
        if sparse:  # only the first tile row is written; the rest stays sparse
            dst.write(data[:, :tile, :], window=Window(0, 0, width, tile))
        else:
            dst.write(data)
        if overviews:
            dst.build_overviews(list(overviews), Resampling.average)
    return path


def write_small_tiled(
    path: Path, count: int, interleave: str, nodata: float | None = 0, values: int = 5
) -> Path:
    """A 260 x 300 uint16 GeoTIFF of 128-pixel deflate tiles (3 x 3, partial at the right
    and bottom) on the 10 m EPSG:32633 grid at (X0, Y0), random values below ``values``
    (seeded by the file name), ``interleave`` "band" or "pixel"."""
    rng = np.random.default_rng(len(path.name))
    data = rng.integers(0, values, (count, 300, 260)).astype("uint16")
    with rasterio.open(
        path, "w", driver="GTiff", width=260, height=300, count=count, dtype="uint16",
        nodata=nodata, tiled=True, blockxsize=128, blockysize=128, compress="deflate",
        interleave=interleave, crs="EPSG:32633", transform=Affine(10.0, 0, X0, 0, -10.0, Y0),
    ) as dst:  # fmt: skip
        dst.write(data)
    return path
