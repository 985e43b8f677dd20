"""Helpers for the Dask tests: real COG scenes, their collection, AOIs, points, a local cluster."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely
from pyproj import Transformer

import rasteret
from rasteret.collection import Collection
from rasteret.testing.scenes import SceneSpec, record_table, write_scene

BANDS = ("B04", "B08")
EPSG = 32633
X0, Y0 = 500_000.0, 4_600_000.0
DAY1 = dt.datetime(2024, 1, 15, tzinfo=dt.UTC)
DAY2 = dt.datetime(2024, 2, 15, tzinfo=dt.UTC)

SPECS = (
    # a and b share a datetime and overlap: one mosaicked time step, a wins where both are valid
    SceneSpec("a", EPSG, (X0, Y0), size=512, tile=128, datetime=DAY1, seed=1),
    SceneSpec("b", EPSG, (X0 + 4000, Y0 - 2000), size=512, tile=128, datetime=DAY1, seed=2),
    SceneSpec("c", EPSG, (X0 + 2000, Y0 + 1000), size=512, tile=128, datetime=DAY2, seed=3),
)

_TO_LONLAT = Transformer.from_crs(EPSG, 4326, always_xy=True)
_TO_ZONE32 = Transformer.from_crs(EPSG, 32632, always_xy=True)


def in_zone32(x: float, y: float) -> tuple[float, float]:
    """A point of the scenes' UTM zone (33N) in zone 32N, on the 10 m lattice."""
    x32, y32 = _TO_ZONE32.transform(x, y)
    return round(float(x32), -1), round(float(y32), -1)


MIXED_SPECS = (
    # records in two UTM zones over the same ground: reading them onto one grid warps some
    SceneSpec("m33", EPSG, (X0, Y0), size=512, tile=128, datetime=DAY1, seed=4),
    SceneSpec(
        "m32", 32632, in_zone32(X0 + 2000, Y0 - 1000), size=512, tile=128, datetime=DAY1, seed=5
    ),
    SceneSpec(
        "n32", 32632, in_zone32(X0 + 3000, Y0 + 500), size=512, tile=128, datetime=DAY2, seed=6
    ),
)


def lonlat(x: float, y: float) -> tuple[float, float]:
    """A point of the scenes' UTM zone in longitude/latitude."""
    lon, lat = _TO_LONLAT.transform(x, y)
    return float(lon), float(lat)


def aois() -> list[shapely.Geometry]:
    """A slanted quadrilateral over all three scenes and a small box, in EPSG:4326."""
    quad = shapely.Polygon(
        [
            lonlat(X0 + 500, Y0 - 1000),
            lonlat(X0 + 6500, Y0 - 2500),
            lonlat(X0 + 7000, Y0 - 6000),
            lonlat(X0 + 1000, Y0 - 4500),
        ]
    )
    box = shapely.Polygon(
        [
            lonlat(X0 + 3000, Y0 + 500),
            lonlat(X0 + 5000, Y0 + 500),
            lonlat(X0 + 5000, Y0 + 1500),
            lonlat(X0 + 3000, Y0 + 1500),
        ]
    )
    return [quad, box]


def write_scenes(folder: Path, specs: Sequence[SceneSpec] = SPECS) -> dict[str, dict[str, Path]]:
    """Write every scene of ``specs`` (one COG per band) into ``folder``."""
    return {s.scene_id: write_scene(s, folder, bands=BANDS) for s in specs}


def collection(
    files: Mapping[str, Mapping[str, Path]],
    base_url: str | None = None,
    specs: Sequence[SceneSpec] = SPECS,
) -> Collection:
    """An enriched in-memory collection of ``specs``' scenes (hrefs under ``base_url``)."""
    hrefs = {
        sid: {
            band: (str(path) if base_url is None else f"{base_url}/{path.name}")
            for band, path in paths.items()
        }
        for sid, paths in files.items()
    }
    return rasteret.build_from_table(record_table(specs, hrefs), enrich_cog=True)


def points(n: int, seed: int = 0) -> pa.Table:
    """``n`` points over the scenes (some outside every scene), WKB in EPSG:4326, with ids."""
    rng = np.random.default_rng(seed)
    xs = rng.uniform(X0 - 1000, X0 + 10_000, n)
    ys = rng.uniform(Y0 - 8000, Y0 + 2000, n)
    lon, lat = _TO_LONLAT.transform(xs, ys)
    return pa.table(
        {
            "site": [f"p{i:04d}" for i in range(n)],
            "n": np.arange(n, dtype=np.int64),
            "geometry": shapely.to_wkb(shapely.points(lon, lat)),
        }
    )


@contextlib.contextmanager
def local_cluster() -> Iterator[object]:
    """A ``distributed.Client`` on two single-threaded worker processes (started here)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
