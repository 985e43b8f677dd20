"""``match="latest"`` reads only the (point, band) pairs still missing a valid value, and gives
the rows a brute-force pick from ``match="all"`` gives (bands on different grids, nearest
valid pixel, neighbourhoods); rasterio wrote every file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer

import rasteret
from rasteret.read.cache import clear_tile_cache
from rasteret.testing.stores import CountingReader, URLReader

EPSG = 32633
X0, Y0 = 500_000.0, 4_600_000.0
DAYS = [dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in (1, 2, 3, 4)]


def _write(path: Path, data: np.ndarray, res: float) -> Path:
    height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16",
        nodata=0, tiled=True, blockxsize=64, blockysize=64, compress="deflate",
        crs=f"EPSG:{EPSG}", transform=Affine(res, 0, X0, 0, -res, Y0),
    ) as dst:  # fmt: skip
        dst.write(data[None])
    return path


def _field(seed: int, shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 5000, shape).astype("uint16")


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Path]]:
    """Four dates; B04 10 m (300 x 200 px), B08 20 m (150 x 100 px).

    Newest (r4): B04 nodata on its left half, B08 nodata in its top-left 20 x 20 px corner.
    r3: B04 with scattered holes; r2, r1: everything valid.
    """
    d = tmp_path_factory.mktemp("latest")
    b04 = {f"r{i}": _field(i, (200, 300)) for i in range(1, 5)}
    b08 = {f"r{i}": _field(10 + i, (100, 150)) for i in range(1, 5)}
    b04["r4"][:, :150] = 0
    b04["r3"][::3, ::4] = 0
    b08["r4"][:20, :20] = 0
    files = {f"{r}_B04": _write(d / f"{r}_B04.tif", a, 10.0) for r, a in b04.items()}
    files |= {f"{r}_B08": _write(d / f"{r}_B08.tif", a, 20.0) for r, a in b08.items()}
    footprint = shapely.box(X0, Y0 - 2000, X0 + 3000, Y0)
    to84 = Transformer.from_crs(EPSG, 4326, always_xy=True)
    geom = shapely.transform(
        shapely.segmentize(footprint, 100), lambda xy: np.column_stack(to84.transform(*xy.T))
    )
    ids = [f"r{i}" for i in range(1, 5)]
    table = pa.table({
        "id": ids,
        "datetime": pa.array(DAYS, pa.timestamp("us", tz="UTC")),
        "geometry": shapely.to_wkb([geom] * 4),
        "assets": [{b: {"href": str(files[f"{r}_{b}"])} for b in ("B04", "B08")} for r in ids],
    })  # fmt: skip
    return rasteret.build_from_table(table, workspace_dir=d / "ws", enrich_cog=True), files


@pytest.fixture(autouse=True)
def _cold_cache() -> None:
    clear_tile_cache()


def _points(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    xs = rng.uniform(X0 - 100, X0 + 3100, n)
    ys = rng.uniform(Y0 - 2100, Y0 + 100, n)
    xs[:20] = rng.uniform(X0, X0 + 390, 20)  # some in B08's nodata corner of r4
    ys[:20] = rng.uniform(Y0 - 390, Y0, 20)
    return pa.table({"site": np.arange(n), "x": xs, "y": ys})


def _brute_force_latest(every: pa.Table, bands: list[str], extra: list[str]) -> list[dict]:
    """Per point and band, the newest ``match="all"`` row with a valid value."""
    rows = every.to_pylist()
    by_point: dict[int, list[dict]] = {}
    for row in rows:
        by_point.setdefault(row["site"], []).append(row)
    out = []
    for site in sorted(by_point):
        newest_first = sorted(by_point[site], key=lambda r: r["datetime"], reverse=True)
        picked = {b: next((r for r in newest_first if r[b] is not None), None) for b in bands}
        if all(p is None for p in picked.values()):
            continue
        first = next(picked[b] for b in bands if picked[b] is not None)
        want = {k: first[k] for k in ("site", "record_id", "datetime", "row", "col")}
        for b in bands:
            p = picked[b]
            want[b] = None if p is None else p[b]
            want[f"{b}_record_id"] = None if p is None else p["record_id"]
            want[f"{b}_datetime"] = None if p is None else p["datetime"]
            for name in extra:
                want[f"{b}_{name}"] = None if p is None else p[f"{b}_{name}"]
        out.append(want)
    return out


@pytest.mark.parametrize(
    "options",
    [{}, {"max_distance_pixels": 1}, {"return_neighbourhood": "always"}],
    ids=["centre", "nearest", "neighbourhood"],
)
def test_latest_equals_a_brute_force_pick_from_all(series: tuple[Any, dict], options: dict) -> None:
    collection, _ = series
    points = _points(400, seed=1)
    bands = ["B04", "B08"]
    every = collection.sample_points(points, bands, geometry_crs=EPSG, **options)
    latest = collection.sample_points(points, bands, geometry_crs=EPSG, match="latest", **options)
    extra = {"max_distance_pixels": ["row", "col"], "return_neighbourhood": ["neighbourhood"]}
    names = [n for k, v in extra.items() if k in options for n in v]
    want = _brute_force_latest(every, bands, names)
    got = latest.select(list(want[0])).to_pylist()
    assert got == want
    assert {r["B04_record_id"] for r in want} >= {"r4", "r3"}  # the waves went deep
    assert {r["B08_record_id"] for r in want} == {"r4", "r3"}


def test_latest_reads_only_the_bands_still_missing(series: tuple[Any, dict]) -> None:
    """B08 of the older records is read only for the points in r4's B08 nodata corner (one
    B08 tile), B04 of the older records only for the points on r4's B04 nodata half."""
    collection, files = series
    points = _points(400, seed=2)
    counting = CountingReader(URLReader())
    out = collection.sample_points(points, ["B04", "B08"], geometry_crs=EPSG, match="latest",
                                   backend=counting, cache_mb=0, max_gap=0,
                                   max_coalesced_size=1)  # fmt: skip
    reads = counting.per_path()
    ranges = [(c.path, r) for c in counting.calls for r in c.ranges]
    assert len(ranges) == len(set(ranges))  # no tile fetched twice
    # wave 1 (r4): every tile under the points; wave 2 (r3, r2): B08 only in the corner
    assert reads[str(files["r3_B08"])] == 1
    assert reads[str(files["r2_B08"])] == 1
    assert str(files["r1_B08"]) not in reads
    # B04 of wave 2 (r3, r2): only the tiles under points on r4's B04 nodata (left) half
    with rasterio.open(files["r4_B04"]) as src:
        r, c = rasterio.transform.rowcol(src.transform, points["x"].to_numpy(),
                                         points["y"].to_numpy())  # fmt: skip
    r, c = np.asarray(r), np.asarray(c)
    left = (r >= 0) & (r < 200) & (c >= 0) & (c < 150)
    tiles = {(int(a) // 64, int(b) // 64) for a, b in zip(r[left], c[left], strict=True)}
    assert reads[str(files["r3_B04"])] == reads[str(files["r2_B04"])] == len(tiles) < 20
    assert str(files["r1_B04"]) not in reads  # r2 is valid everywhere: no third wave
    assert set(out["B04_record_id"].to_pylist()) == {"r4", "r3", "r2"}
