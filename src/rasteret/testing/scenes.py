"""Synthetic satellite-like scenes: real COGs written with rasterio, plus their record table.

Used by the quickstart, the seed-document tests and the benchmarks. Scenes are deterministic
(seeded), look like smooth reflectance fields with noise (so deflate and the predictor have
real work to do), and carry nodata where the swath ends.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> spec = SceneSpec("scene-001", epsg=32643, origin=(770000.0, 1450000.0), size=256, tile=128)
>>> paths = write_scene(spec, folder, bands=("B04",))
>>> sorted(p.name for p in paths.values())
['scene-001_B04.tif']
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import rasterio
import shapely
from pyproj import Transformer

__all__ = [
    "SceneSpec",
    "monthly_series",
    "record_table",
    "scene_footprint",
    "write_multiband_scene",
    "write_scene",
]


@dataclass(frozen=True)
class SceneSpec:
    """One synthetic scene: an id, a UTM grid and a date."""

    scene_id: str
    epsg: int
    origin: tuple[float, float]
    """Upper-left corner (x, y) in the scene CRS."""
    size: int = 1024
    """Width and height in pixels."""
    resolution: float = 10.0
    tile: int = 256
    datetime: _dt.datetime = field(
        default_factory=lambda: _dt.datetime(2024, 1, 15, tzinfo=_dt.UTC)
    )
    seed: int = 0
    dtype: str = "uint16"
    nodata: float | None = 0
    compress: str = "deflate"
    predictor: int = 2
    overviews: tuple[int, ...] = (2, 4, 8)
    cloud_cover: float = 10.0

    @property
    def transform(self) -> rasterio.Affine:
        return rasterio.Affine(
            self.resolution, 0.0, self.origin[0], 0.0, -self.resolution, self.origin[1]
        )


def monthly_series(
    prefix: str, count: int, *, size: int = 300, tile: int = 128, epsg: int = 32633
) -> list[SceneSpec]:
    """``count`` small scenes ``{prefix}-0``, ``{prefix}-1``, ... one a month from January
    2024 (the 10th), each 1 km east of the one before, so neighbours overlap; seeds differ.

    >>> [(s.scene_id, s.datetime.month, s.origin) for s in monthly_series("s", 2)]
    [('s-0', 1, (500000.0, 4600000.0)), ('s-1', 2, (501000.0, 4600000.0))]
    """
    return [
        SceneSpec(
            f"{prefix}-{i}",
            epsg,
            (500000.0 + 1000 * i, 4600000.0),
            size=size,
            tile=tile,
            datetime=_dt.datetime(2024, 1 + i, 10, tzinfo=_dt.UTC),
            seed=i,
        )
        for i in range(count)
    ]


def _field(spec: SceneSpec, band_number: int) -> np.ndarray:
    rng = np.random.default_rng(spec.seed * 7919 + band_number)
    n = spec.size
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / max(n, 1)
    phase = rng.uniform(0, 2 * np.pi, 3)
    smooth = np.sin(2 * np.pi * (x * 1.5) + phase[0]) * np.cos(
        2 * np.pi * (y * 1.2) + phase[1]
    ) + 0.5 * np.sin(2 * np.pi * (x + y) * 3 + phase[2])
    base = 1500 + 600 * band_number + 900 * smooth + rng.normal(0, 60, (n, n))
    data = np.clip(base, 1, 60000)
    if spec.nodata is not None:
        # The swath edge: a diagonal band of nodata in one corner.
        data[(x + y) < 0.15] = spec.nodata
    return data.astype(spec.dtype)


def _profile(spec: SceneSpec, count: int) -> dict[str, object]:
    return {
        "driver": "COG",
        "width": spec.size,
        "height": spec.size,
        "count": count,
        "dtype": spec.dtype,
        "crs": f"EPSG:{spec.epsg}",
        "transform": spec.transform,
        "nodata": spec.nodata,
        "compress": spec.compress,
        "predictor": spec.predictor,
        "blocksize": spec.tile,
        "overview_resampling": "average",
        "overview_count": len(spec.overviews),
    }


def _write(path: Path, spec: SceneSpec, bands: Sequence[np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    stack = np.stack(bands)
    # The COG driver writes from a source dataset: build it in memory first.
    memory_profile = {
        k: v
        for k, v in _profile(spec, len(bands)).items()
        if k in ("width", "height", "count", "dtype", "crs", "transform", "nodata")
    }
    with rasterio.MemoryFile() as memfile:
        with memfile.open(driver="GTiff", **memory_profile) as mem:
            mem.write(stack)
        with memfile.open() as mem:
            profile = _profile(spec, len(bands))
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(mem.read())
    return path


def write_scene(
    spec: SceneSpec, folder: str | Path, bands: Iterable[str] = ("B04", "B08")
) -> dict[str, Path]:
    """Write one single-band COG per band, named ``{scene_id}_{band}.tif``."""
    out: dict[str, Path] = {}
    for number, band in enumerate(bands):
        path = Path(folder) / f"{spec.scene_id}_{band}.tif"
        if not path.exists():
            _write(path, spec, [_field(spec, number)])
        out[band] = path
    return out


def write_multiband_scene(
    spec: SceneSpec, folder: str | Path, bands: Sequence[str] = ("B04", "B08")
) -> Path:
    """Write one COG holding every band as a sample (band order = ``bands``)."""
    path = Path(folder) / f"{spec.scene_id}.tif"
    if not path.exists():
        _write(path, spec, [_field(spec, number) for number in range(len(bands))])
    return path


def scene_footprint(spec: SceneSpec) -> shapely.Polygon:
    """The scene's footprint in CRS84 (its UTM corners transformed, edges densified)."""
    x0, y0 = spec.origin
    extent = spec.size * spec.resolution
    box = shapely.segmentize(shapely.box(x0, y0 - extent, x0 + extent, y0), extent / 16)
    transformer = Transformer.from_crs(spec.epsg, "OGC:CRS84", always_xy=True)
    return shapely.transform(box, lambda xy: np.column_stack(transformer.transform(*xy.T)))


def record_table(specs: Sequence[SceneSpec], hrefs: Mapping[str, Mapping[str, str]]) -> pa.Table:
    """A record table (id, datetime, geometry WKB, assets, eo:cloud_cover, proj:epsg).

    ``hrefs`` maps scene id -> band -> URL.
    """
    return pa.table(
        {
            "id": [s.scene_id for s in specs],
            "datetime": pa.array([s.datetime for s in specs], pa.timestamp("us", tz="UTC")),
            "geometry": shapely.to_wkb([scene_footprint(s) for s in specs]),
            "assets": [
                {band: {"href": url} for band, url in hrefs[s.scene_id].items()} for s in specs
            ],
            "eo:cloud_cover": [s.cloud_cover for s in specs],
            "proj:epsg": pa.array([s.epsg for s in specs], pa.int32()),
        }
    )


def local_records(
    specs: Sequence[SceneSpec], folder: str | Path, bands: Sequence[str] = ("B04", "B08")
) -> pa.Table:
    """Write every scene's bands under ``folder`` and return their :func:`record_table`
    (hrefs are the local paths).

    >>> import tempfile
    >>> local_records(monthly_series("s", 1, size=64), tempfile.mkdtemp())["id"].to_pylist()
    ['s-0']
    """
    hrefs = {
        s.scene_id: {b: str(p) for b, p in write_scene(s, folder, bands=bands).items()}
        for s in specs
    }
    return record_table(specs, hrefs)
