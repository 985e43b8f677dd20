"""Point samples equal rasterio's ``DatasetReader.sample(masked=True)``, value for value.

1. Every georeferenced fixture of the matrix (every dtype, codec, layout, mask, nodata,
   strips, sparse files, PixelIsPoint): random points in and around the raster, points
   exactly on pixel edges and corners, and on the raster's own edges; read both ways a
   plan can take pixels from tiles (grouped tile by tile, and from mosaics of whole tiles,
   the way of dense points). A point rasterio
   places outside the raster must give no row; inside, every band's value must equal
   rasterio's, and be null exactly where rasterio's is masked (nodata, internal mask,
   alpha). The pixel row/col must be rasterio's ``index``.
2. A two-UTM-zone corpus read through ``Collection.sample_points`` with lon/lat points:
   records in two CRSs in one call, each compared with rasterio sampling the points
   transformed by pyproj.

The fixture without georeferencing is left out of (1): points in a CRS cannot be placed on
a raster without one (its error is tested in tests/read/test_points.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio
from parity_support import file_record
from pyproj import Transformer
from rasterio.transform import rowcol

import rasteret
from points_support import gather_by
from rasteret.read import ReadOptions
from rasteret.read import points as points_mod
from rasteret.read.cache import clear_tile_cache
from rasteret.read.sample import read_points
from rasteret.testing.fixtures import FIXTURE_MATRIX
from rasteret.testing.scenes import SceneSpec, record_table, write_scene

GEOREFERENCED = [s.name for s in FIXTURE_MATRIX if s.crs is not None]


def _points(src: rasterio.DatasetReader, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points over the raster and a margin around it, plus pixel edges and corners
    (exactly representable: the fixtures' origin and pixel size are whole numbers)."""
    rng = np.random.default_rng(seed)
    a, _, c, _, e, f = tuple(src.transform)[:6]
    w, h = src.width, src.height
    cols = rng.uniform(-3, w + 3, n)
    rows = rng.uniform(-3, h + 3, n)
    edge_cols = np.concatenate([rng.integers(0, w + 1, 60), [0, w, 0, w, w - 1]])
    edge_rows = np.concatenate([rng.integers(0, h + 1, 60), [0, 0, h, h, h - 1]])
    half = rng.uniform(0, 1, 40)
    xs = np.concatenate([c + a * cols, c + a * edge_cols, c + a * rng.integers(0, w, 40)])
    ys = np.concatenate([f + e * rows, f + e * edge_rows, f + e * (rng.integers(0, h, 40) + half)])
    return xs, ys


@pytest.fixture(params=["tile_by_tile", "mosaic"])
def gathering(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every plan takes its pixels tile by tile, or from mosaics (whatever the density)."""
    gather_by(monkeypatch, request.param)
    return str(request.param)


@pytest.mark.parametrize("name", GEOREFERENCED)
def test_fixture_matrix_equals_rasterio_sample(
    name: str, fixture_paths: dict[str, Path], gathering: str
) -> None:
    path = fixture_paths[name]
    with rasterio.open(path) as src:
        count = src.count
        xs, ys = _points(src, 400, seed=len(name))
        r, c = rowcol(src.transform, xs, ys)
        inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        expected = np.ma.stack(list(src.sample(zip(xs, ys, strict=True), masked=True)))
    bands = [f"b{i + 1}" for i in range(count)]
    records = [file_record(path.stem, path, count)]
    crs = "EPSG:32633" if "usercrs" not in name else _crs(path)
    samples = read_points(records, xs, ys, crs, bands, read_options=ReadOptions(cache_mb=0))
    plan = points_mod.plan_points(records, xs, ys, crs, bands)  # how the read took pixels
    assert bool(plan.mosaics) == (gathering == "mosaic") != bool(plan.gathers)
    np.testing.assert_array_equal(samples.point_index, np.flatnonzero(inside))
    np.testing.assert_array_equal(samples.row, r[inside])
    np.testing.assert_array_equal(samples.col, c[inside])
    want = expected[inside]
    for b in range(count):
        mask = np.ma.getmaskarray(want[:, b])
        np.testing.assert_array_equal(samples.valid[b], ~mask, err_msg=f"{name} band {b + 1}")
        got = samples.values[b][~mask]
        assert got.dtype == np.dtype(want.dtype)
        np.testing.assert_array_equal(got, want[:, b].data[~mask], err_msg=f"{name} band {b + 1}")
    assert samples.valid[0].any(), "every fixture has valid pixels under some points"


def _crs(path: Path) -> str:
    with rasterio.open(path) as src:
        return str(src.crs.to_wkt())


def test_pixel_edges_belong_to_the_pixel_right_and_below(fixture_paths: dict[str, Path]) -> None:
    path = fixture_paths["uint16_deflate_pred2_tile256"]
    with rasterio.open(path) as src:
        a, _, c, _, e, f = tuple(src.transform)[:6]
        w, h = src.width, src.height
    # the corner shared by pixels (9, 9), (9, 10), (10, 9), (10, 10); tile edges at 256;
    # the raster's left/top edges (inside) and right/bottom edges (outside)
    xs = np.array([c + 10 * a, c + 256 * a, c, c + w * a, c + (w - 0.5) * a, c + 5.5 * a])
    ys = np.array([f + 10 * e, f + 256 * e, f, f + 5.5 * e, f + h * e, f + (h - 0.5) * e])
    samples = read_points([file_record(path.stem, path, 1)], xs, ys, "EPSG:32633", ["b1"])
    assert samples.point_index.tolist() == [0, 1, 2, 5]
    assert samples.row.tolist() == [10, 256, 0, h - 1]
    assert samples.col.tolist() == [10, 256, 0, 5]
    with rasterio.open(path) as src:
        want = [v[0] for v in src.sample([(xs[i], ys[i]) for i in (0, 1, 2, 5)])]
    assert samples.values[0].tolist() == want


@pytest.fixture(scope="module")
def two_zones(tmp_path_factory: pytest.TempPathFactory) -> tuple[rasteret.Collection, dict]:
    """Six scenes either side of 78°E (UTM 43N / 44N), three dates each, with nodata."""
    folder = tmp_path_factory.mktemp("two_zones")
    specs = []
    for k, day in enumerate((5, 15, 25)):
        when = dt.datetime(2024, 3, day, tzinfo=dt.UTC)
        specs.append(SceneSpec(f"w{k}", 32643, (817000.0, 1452000.0), size=512, tile=256,
                               datetime=when, seed=k))  # fmt: skip
        specs.append(SceneSpec(f"e{k}", 32644, (176000.0, 1452000.0), size=512, tile=256,
                               datetime=when, seed=10 + k))  # fmt: skip
    hrefs = {s.scene_id: {b: str(p) for b, p in write_scene(s, folder).items()} for s in specs}
    collection = rasteret.build_from_table(
        record_table(specs, hrefs), workspace_dir=folder / "ws", enrich_cog=True
    )
    return collection, {s.scene_id: (s, hrefs[s.scene_id]) for s in specs}


def test_two_utm_zones_equal_rasterio(two_zones: tuple[rasteret.Collection, dict]) -> None:
    collection, scenes = two_zones
    rng = np.random.default_rng(7)
    lon = rng.uniform(77.90, 78.08, 3000)
    lat = rng.uniform(13.07, 13.125, 3000)
    points = pa.table({"site": np.arange(3000, dtype=np.int32), "lon": lon, "lat": lat})
    clear_tile_cache()
    table = collection.sample_points(points, ["B04", "B08"], geometry_crs="EPSG:4326")
    assert set(table["raster_crs"].to_pylist()) == {"EPSG:32643", "EPSG:32644"}
    got = {(row["site"], row["record_id"]): row for row in table.to_pylist()}
    expected_rows = 0
    for scene_id, (spec, hrefs) in sorted(scenes.items()):
        to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{spec.epsg}", always_xy=True)
        x, y = to_utm.transform(lon, lat)
        for band in ("B04", "B08"):
            with rasterio.open(hrefs[band]) as src:
                r, c = rowcol(src.transform, x, y)
                inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
                values = np.ma.stack(list(src.sample(zip(x, y, strict=True), masked=True)))[:, 0]
            for i in np.flatnonzero(inside):
                row = got[(int(i), scene_id)]
                want = None if values.mask[i] else int(values.data[i])
                assert row[band] == want, (scene_id, band, i)
                assert (row["row"], row["col"]) == (int(r[i]), int(c[i]))
            if band == "B04":
                expected_rows += int(inside.sum())
    assert table.num_rows == expected_rows
    assert 0 < expected_rows < 3000 * 6
    # point-major order: sites ascending, then records by datetime
    order = list(zip(table["site"].to_pylist(), table["datetime"].to_pylist(), strict=True))
    assert order == sorted(order)
