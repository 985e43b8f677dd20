"""Helpers for the output tests: real COG scenes, their records, and rasterio oracle reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.features import geometry_mask
from rasterio.windows import from_bounds

from rasteret.ingest.metadata import band_metadata_from_header
from rasteret.read import ChipSet, ReadOptions, RecordRef, read_chips
from rasteret.testing.scenes import SceneSpec, write_scene
from rasteret.tiff.header import parse_header

EPSG = 32633
CRS = f"EPSG:{EPSG}"
RES = 10.0
ORIGIN = (500_000.0, 4_600_000.0)
"""Upper-left corner of the reference scene; other scenes sit on the same 10 m lattice."""
DAY = dt.datetime(2024, 1, 15, tzinfo=dt.UTC)
BANDS = ("B04", "B08")


def scene(
    folder: Path,
    scene_id: str,
    *,
    shift: tuple[int, int] = (0, 0),
    when: dt.datetime | None = DAY,
    size: int = 256,
    seed: int = 0,
    dtype: str = "uint16",
    nodata: float | None = 0,
) -> tuple[RecordRef, dict[str, Path]]:
    """Write a scene ``shift`` = (columns, rows) pixels from :data:`ORIGIN`; its record."""
    origin = (ORIGIN[0] + shift[0] * RES, ORIGIN[1] - shift[1] * RES)
    spec = SceneSpec(
        scene_id,
        epsg=EPSG,
        origin=origin,
        size=size,
        tile=128,
        seed=seed,
        dtype=dtype,
        nodata=nodata,
        overviews=(2,),
    )
    paths = write_scene(spec, folder, bands=BANDS)
    metas = {}
    for band, path in paths.items():
        data = path.read_bytes()
        header = parse_header(data, url=str(path), object_size=len(data))
        metas[band] = band_metadata_from_header(header, href=str(path), object_size=len(data))
    return RecordRef(scene_id, when, metas), paths


def read(
    records: Sequence[RecordRef],
    aois: Sequence[shapely.Geometry],
    bands: Sequence[str] = BANDS,
    **options: object,
) -> ChipSet:
    """``read_chips`` of ``records`` over ``aois`` (given in the scenes' CRS)."""
    return read_chips(records, aois, CRS, bands, ReadOptions(**options))  # type: ignore[arg-type]


def oracle(
    path: Path,
    bounds: tuple[float, float, float, float],
    *,
    fill: float = 0,
    geometry: shapely.Geometry | None = None,
) -> np.ndarray:
    """rasterio's read of ``bounds`` (on the file's lattice), ``fill`` outside the raster,
    at nodata pixels and (when given) outside ``geometry``."""
    with rasterio.open(path) as src:
        window = from_bounds(*bounds, transform=src.transform)
        window = window.round_offsets().round_lengths()
        data = src.read(1, window=window, boundless=True, fill_value=src.nodata or 0)
        transform = src.window_transform(window)
        invalid = np.zeros(data.shape, dtype=bool)
        if src.nodata is not None:
            invalid |= (data == src.nodata) | (np.isnan(src.nodata) & np.isnan(data))
    if geometry is not None:
        invalid |= geometry_mask([geometry], out_shape=data.shape, transform=transform)
    return np.where(invalid, np.asarray(fill, dtype=data.dtype), data)
