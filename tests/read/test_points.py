"""Collection.sample_points: input forms, kept columns, options, batching, I/O; rasterio is
the oracle for every value (``DatasetReader.sample`` / ``read(window=, boundless=True)``)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import geopandas as gpd
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from rasterio.transform import rowcol
from rasterio.windows import Window
from read_support import record

import rasteret
import rasteret._collection_points as collection_points
import rasteret.outputs.points as points_out
from rasteret._collection_points import _wkb_points_fast, normalize_points
from rasteret.errors import NoOverlapWarning, SchemaError, UnsupportedFormatError
from rasteret.read import ReadOptions
from rasteret.read.cache import clear_tile_cache
from rasteret.read.points import PointOptions, plan_points
from rasteret.read.sample import read_points
from rasteret.read.select import _point_major_order
from rasteret.testing.stores import CountingReader, URLReader
from rasteret.types import geoarrow_wkb_field

EPSG = 32633
X0, Y0, RES = 500_000.0, 4_600_000.0, 10.0
W, H = 300, 200


def _write(
    path: Path, data: np.ndarray, *, nodata: float | None = 0, interleave: str = "band",
    epsg: int | None = EPSG,
) -> Path:  # fmt: skip
    """A tiled (128 px), deflate GeoTIFF of ``data`` (bands, rows, cols) on the test grid."""
    count, height, width = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": count,
        "dtype": data.dtype.name, "nodata": nodata, "tiled": True, "blockxsize": 128,
        "blockysize": 128, "compress": "deflate", "interleave": interleave,
    }  # fmt: skip
    if epsg is not None:
        profile.update(crs=f"EPSG:{epsg}", transform=Affine(RES, 0, X0, 0, -RES, Y0))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _field(seed: int, dtype: str = "uint16") -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    return (1000 + 7 * xx + 3 * yy + rng.integers(0, 50, (H, W))).astype(dtype)


def _collection(folder: Path, scenes: list[tuple[str, dt.datetime, dict[str, Any]]]) -> Any:
    """A collection of records ``(id, datetime, {band: path or (path, band_index)})``."""
    footprint = shapely.box(X0, Y0 - H * RES, X0 + W * RES, Y0)
    to84 = Transformer.from_crs(EPSG, 4326, always_xy=True)
    geom = shapely.transform(
        shapely.segmentize(footprint, 100), lambda xy: np.column_stack(to84.transform(*xy.T))
    )
    assets = []
    for _, _, bands in scenes:
        entry = {}
        for band, where in bands.items():
            path, index = where if isinstance(where, tuple) else (where, None)
            entry[band] = {"href": str(path)} | ({} if index is None else {"band_index": index})
        assets.append(entry)
    table = pa.table({
        "id": [s[0] for s in scenes],
        "datetime": pa.array([s[1] for s in scenes], pa.timestamp("us", tz="UTC")),
        "geometry": shapely.to_wkb([geom] * len(scenes)),
        "assets": assets,
    })  # fmt: skip
    return rasteret.build_from_table(table, workspace_dir=folder / "ws", enrich_cog=True)


def _oracle(path: Path, xs: np.ndarray, ys: np.ndarray, band: int = 1) -> tuple[np.ndarray, Any]:
    """rasterio: which points fall inside, and their masked values."""
    with rasterio.open(path) as src:
        r, c = rowcol(src.transform, xs, ys)
        inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        values = np.ma.stack(list(src.sample(zip(xs, ys, strict=True), indexes=band, masked=True)))
    return inside, values[:, 0]


def _as_list(values: Any, inside: np.ndarray) -> list[Any]:
    return [None if values.mask[i] else values.data[i].item() for i in np.flatnonzero(inside)]


DAY = [dt.datetime(2024, m, 1, tzinfo=dt.UTC) for m in (1, 2, 3, 4)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("points")
    b04, b08 = _field(1), _field(2)
    b04[:40, :40] = 0  # nodata corner
    left = _field(3)
    left[:, :150] = 0  # newer record: B04 nodata on the left half
    holes = _field(4)
    holes[50:150:7, 30:270:5] = 0  # isolated nodata pixels
    chunky = np.stack([_field(5), _field(6, "uint16"), _field(7)])
    return {
        "b04": _write(d / "b04.tif", b04[None]),
        "b08": _write(d / "b08.tif", b08[None]),
        "b04_left": _write(d / "b04_left.tif", left[None]),
        "b04_empty": _write(d / "b04_empty.tif", np.zeros((1, H, W), "uint16")),
        "holes": _write(d / "holes.tif", holes[None]),
        "chunky": _write(d / "chunky.tif", chunky, interleave="pixel"),
        "planar": _write(d / "planar.tif", chunky[::-1].copy(), interleave="band"),
        "int8": _write(d / "int8.tif", (_field(8) % 200 - 100).astype("int8")[None], nodata=-1),
        "nogeo": _write(d / "nogeo.tif", _field(9)[None], epsg=None),
        "folder": d,
    }


@pytest.fixture(scope="module")
def single(files: dict[str, Path]) -> Any:
    return _collection(
        files["folder"] / "single", [("s1", DAY[0], {"B04": files["b04"], "B08": files["b08"]})]
    )


@pytest.fixture(autouse=True)
def _cold_cache() -> None:
    clear_tile_cache()


def _random_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(X0 - 200, X0 + W * RES + 200, n), rng.uniform(
        Y0 - H * RES - 200, Y0 + 200, n
    )


# ----------------------------------------------------------------------------- input forms
def _forms(xs: np.ndarray, ys: np.ndarray) -> dict[str, tuple[Any, dict[str, Any]]]:
    site = np.arange(len(xs), dtype=np.int64)
    pts = shapely.points(xs, ys)
    wkb_table = pa.table({"site": site, "geometry": shapely.to_wkb(pts)}).cast(
        pa.schema([pa.field("site", pa.int64()), geoarrow_wkb_field("geometry", EPSG)])
    )
    xy_table = pa.table({"site": site, "x": xs, "y": ys})
    lon, lat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(xs, ys)
    native_type = pa.struct([("x", pa.float64()), ("y", pa.float64())])
    native = pa.StructArray.from_arrays([pa.array(xs), pa.array(ys)], fields=list(native_type))
    meta = {b"ARROW:extension:name": b"geoarrow.point",
            b"ARROW:extension:metadata": b'{"crs": "EPSG:32633"}'}  # fmt: skip
    native_table = pa.Table.from_arrays(
        [pa.array(site), native],
        schema=pa.schema([("site", pa.int64()), pa.field("pt", native_type, metadata=meta)]),
    )
    con = duckdb.connect()
    con.register("xy", xy_table)
    return {
        "arrow_wkb": (wkb_table, {}),
        "geodataframe": (gpd.GeoDataFrame({"site": site}, geometry=list(pts), crs=EPSG), {}),
        "xy_columns": (xy_table, {"x_column": "x", "y_column": "y", "geometry_crs": EPSG}),
        "xy_detected": (xy_table, {"geometry_crs": f"EPSG:{EPSG}"}),
        "lonlat_detected": (
            pa.table({"site": site, "Lon": lon, "Lat": lat}),
            {"geometry_crs": 4326},
        ),
        "duckdb": (con.sql("SELECT * FROM xy"), {"geometry_crs": EPSG}),
        "polars": (
            pl.DataFrame({"site": site, "longitude": xs, "latitude": ys}),
            {"geometry_crs": EPSG},
        ),
        "geoarrow_point": (native_table, {"geometry_column": "pt"}),
        "shapely_list": (list(pts), {"geometry_crs": EPSG}),
        "wkb_list": (list(shapely.to_wkb(pts)), {"geometry_crs": EPSG}),
    }


@pytest.mark.parametrize("form", [
    "arrow_wkb", "geodataframe", "xy_columns", "xy_detected", "lonlat_detected", "duckdb",
    "polars", "geoarrow_point", "shapely_list", "wkb_list",
])  # fmt: skip
def test_every_input_form_samples_like_rasterio(form: str, files: dict, single: Any) -> None:
    xs, ys = _random_points(300, seed=1)
    points, kwargs = _forms(xs, ys)[form]
    table = single.sample_points(points, ["B04", "B08"], **kwargs)
    if form == "lonlat_detected":  # the oracle samples the same lon/lat taken back to UTM
        lon, lat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(xs, ys)
        xs, ys = Transformer.from_crs(4326, EPSG, always_xy=True).transform(lon, lat)
    for band in ("B04", "B08"):
        inside, values = _oracle(files[band.lower()], xs, ys)
        assert table[band].to_pylist() == _as_list(values, inside)
        assert table.schema.field(band).type == pa.uint16()
    assert table["B04"].null_count > 0  # the nodata corner is null, not 0
    if "site" in table.column_names:
        assert table["site"].to_pylist() == np.flatnonzero(inside).tolist()
    (geometry,) = [
        f.name for f in table.schema if f.metadata and b"geoarrow.wkb" in f.metadata.values()
    ]
    geoms = shapely.from_wkb(table[geometry].to_numpy(zero_copy_only=False))
    assert shapely.get_type_id(geoms).tolist() == [0] * table.num_rows


def test_xy_columns_need_a_crs_and_say_so(single: Any) -> None:
    table = pa.table({"x": [X0 + 5], "y": [Y0 - 5]})
    with pytest.raises(SchemaError, match=r"geometry_crs=.*EPSG:4326"):
        single.sample_points(table, ["B04"])
    with_meta = table.cast(pa.schema([pa.field("x", pa.float64(), metadata={"crs": "EPSG:32633"}),
                                      pa.field("y", pa.float64())]))  # fmt: skip
    assert single.sample_points(with_meta, ["B04"])["point_crs"].to_pylist() == ["EPSG:32633"]


def test_input_errors_say_what_came(single: Any) -> None:
    with pytest.raises(SchemaError, match=r"expected Point geometries .* Polygon at row 1"):
        single.sample_points([shapely.Point(X0, Y0), shapely.box(X0, Y0, X0 + 1, Y0 + 1)], ["B04"])
    with pytest.raises(SchemaError, match="x/y columns"):
        single.sample_points(pa.table({"a": [1.0], "b": [2.0]}), ["B04"])
    with pytest.raises(SchemaError, match="both x_column= and y_column="):
        single.sample_points(pa.table({"a": [1.0]}), ["B04"], x_column="a")
    with pytest.raises(SchemaError, match="match='all' or 'latest'"):
        single.sample_points([shapely.Point(X0, Y0)], ["B04"], match="first")
    with pytest.raises(SchemaError, match="max_distance_pixels"):
        single.sample_points([shapely.Point(X0, Y0)], ["B04"], max_distance_pixels=-1)
    with pytest.raises(TypeError, match="resampling"):
        single.sample_points([shapely.Point(X0, Y0)], ["B04"], resampling="bilinear")


def test_a_raster_without_crs_is_refused(files: dict) -> None:
    rec = record("r", files["nogeo"])
    with pytest.raises(UnsupportedFormatError, match="no CRS"):
        read_points([rec], [X0], [Y0], EPSG, ["b1"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e7, 1e7), st.floats(-1e7, 1e7)), min_size=1, max_size=40))
def test_wkb_fast_path_equals_shapely(coords: list[tuple[float, float]]) -> None:
    xs, ys = np.array(coords).T
    wkb = pa.array(shapely.to_wkb(shapely.points(xs, ys)), pa.binary())
    fast = _wkb_points_fast(wkb)
    assert fast is not None
    np.testing.assert_array_equal(fast[0], xs)
    np.testing.assert_array_equal(fast[1], ys)
    general = normalize_points(
        pa.table(
            {
                "geometry": pa.array(
                    shapely.to_wkb(shapely.points(xs, ys), hex=False), pa.large_binary()
                ).slice(0)
            }
        )
    )
    np.testing.assert_array_equal(general.x, xs)
    with_z = pa.array(shapely.to_wkb(shapely.points(xs, ys, 0.0)), pa.binary())
    assert _wkb_points_fast(with_z) is None  # 3-D points take the general path
    np.testing.assert_array_equal(normalize_points(pa.table({"geometry": with_z})).y, ys)


# ----------------------------------------------------------------------------- output columns
def test_input_columns_are_kept_with_their_types(single: Any) -> None:
    xs, ys = _random_points(50, seed=3)
    n = len(xs)
    table = pa.table({
        "code": pa.array(np.arange(n) % 100, pa.int8()),
        "label": pa.array([f"site-{i}" for i in range(n)]).dictionary_encode(),
        "datetime": pa.array([dt.datetime(2020, 1, 1 + i % 28) for i in range(n)], pa.timestamp("ms")),
        "tags": pa.array([[i, i + 1] for i in range(n)], pa.list_(pa.int32())),
        "price": pa.array([Decimal(i) / 4 for i in range(n)], pa.decimal128(9, 2)),
        "x": xs, "y": ys,
    })  # fmt: skip
    out = single.sample_points(table, ["B04"], geometry_crs=EPSG)
    for name in table.column_names:
        assert out.schema.field(name).type == table.schema.field(name).type
    inside, _ = _oracle(
        Path(single.to_table(["assets"])["assets"][0].as_py()[0][1]["href"]), xs, ys
    )
    rows = np.flatnonzero(inside)
    assert out["tags"].to_pylist() == table["tags"].take(rows).to_pylist()
    assert out["datetime"].to_pylist() == table["datetime"].take(rows).to_pylist()
    # the record datetime would collide with the point table's own "datetime"
    assert out["sample_datetime"].to_pylist() == [DAY[0]] * len(rows)
    assert out.column_names[-8:] == ["geometry", "record_id", "sample_datetime", "B04",
                                     "point_crs", "raster_crs", "row", "col"]  # fmt: skip
    geometry = out.schema.field("geometry")
    assert geometry.metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    assert b"32633" in geometry.metadata[b"ARROW:extension:metadata"]


def test_outside_and_null_points_give_no_rows_unless_kept(single: Any) -> None:
    xs = np.array([X0 + 15, X0 - 500, np.nan, X0 + 2995, X0 + 3000])
    ys = np.array([Y0 - 15, Y0 - 15, Y0, Y0 - 1995, Y0 - 15])
    table = pa.table({"site": ["in", "west", "null", "corner", "east-edge"], "x": xs, "y": ys})
    out = single.sample_points(table, ["B04"], geometry_crs=EPSG)
    assert out["site"].to_pylist() == ["in", "corner"]
    assert (out["row"].to_pylist(), out["col"].to_pylist()) == ([1, 199], [1, 299])
    kept = single.sample_points(table, ["B04"], geometry_crs=EPSG, keep_missing=True)
    assert kept["site"].to_pylist() == table["site"].to_pylist()
    assert kept["record_id"].to_pylist() == ["s1", None, None, "s1", None]
    assert kept["B04"].to_pylist()[0] is None  # inside the raster, on nodata
    assert kept["geometry"].null_count == 1  # the NaN point
    with pytest.warns(NoOverlapWarning, match="no record meets the points"):
        empty = single.sample_points(table.slice(1, 1), ["B04", "B08"], geometry_crs=EPSG)
    assert empty.num_rows == 0
    assert empty.schema.field("B08").type == pa.uint16()


@pytest.mark.parametrize("batch_size", [None, 7])
@pytest.mark.parametrize("point_crs", [EPSG, 4326])
def test_the_table_converts_to_pandas_and_polars(
    series: Any, point_crs: int, batch_size: int | None
) -> None:
    """The CRS columns' dictionaries hold each CRS once, in every chunk: pandas refuses
    categories that repeat, and the points' CRS is often the rasters' own."""
    xs, ys = _random_points(20, seed=11)
    xs[3] = X0 - 500  # outside every record: a missing row
    if point_crs == 4326:
        xs, ys = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(xs, ys)
    table = pa.table({"site": np.arange(20), "x": xs, "y": ys})
    out = series.sample_points(
        table, ["B04"], geometry_crs=point_crs, keep_missing=True, batch_size=batch_size
    )
    assert out["record_id"].null_count >= 1  # a missing row
    assert out.num_rows > 20  # three records
    for name in ("point_crs", "raster_crs"):
        for chunk in out[name].chunks:
            names = chunk.dictionary.to_pylist()
            assert len(names) == len(set(names)), (name, names)
    frame = out.to_pandas()
    assert (
        frame["raster_crs"].astype(object).where(frame["raster_crs"].notna(), None).tolist()
        == out["raster_crs"].to_pylist()
    )
    assert frame["point_crs"].astype(str).tolist() == [f"EPSG:{point_crs}"] * out.num_rows
    assert pl.from_arrow(out)["raster_crs"].to_list() == out["raster_crs"].to_pylist()


@pytest.mark.parametrize("name", ["geometry", "geom"])
def test_the_table_is_geoparquet_once_written(single: Any, tmp_path: Path, name: str) -> None:
    """The table carries GeoParquet ``geo`` metadata for its point column: written with
    pyarrow, it reads back with geopandas (CRS and points) and DuckDB sees the same rows."""
    xs, ys = _random_points(30, seed=12)
    xs[2] = X0 - 500  # outside: a row of nulls, its point kept
    points = gpd.GeoDataFrame(
        {"site": np.arange(30), name: gpd.points_from_xy(xs, ys)}, geometry=name, crs=EPSG
    )
    out = single.sample_points(points, ["B04"], keep_missing=True)
    path = tmp_path / "samples.parquet"
    pq.write_table(out, path)
    frame = gpd.read_parquet(path)
    assert frame.geometry.name == name
    assert frame.crs.to_epsg() == EPSG
    site = out["site"].to_numpy()
    np.testing.assert_array_equal(frame.geometry.x.to_numpy(), xs[site])
    np.testing.assert_array_equal(frame.geometry.y.to_numpy(), ys[site])
    assert frame["B04"].isna().sum() == out["B04"].null_count
    assert duckdb.sql(f"select count(*) from '{path}'").fetchall() == [(out.num_rows,)]


@pytest.mark.parametrize("keep_missing", [False, True])
def test_geometry_built_during_the_read_equals_geometry_built_after(
    single: Any, keep_missing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From ``_PARALLEL_WKB_POINTS`` points on, sample_points builds the WKB column on a
    thread while the tiles are fetched; the table is the one built after the read."""
    from rasteret.outputs import points as out_points

    xs, ys = _random_points(300, seed=5)
    missing = np.zeros(300, bool)
    missing[4] = True
    xs[9] = X0 - 500  # outside
    table = pa.table({"site": np.arange(300), "x": pa.array(xs, mask=missing), "y": ys})

    def sample(threshold: int) -> pa.Table:
        with monkeypatch.context() as m:
            m.setattr(out_points, "_PARALLEL_WKB_POINTS", threshold)
            return single.sample_points(
                table, ["B04"], geometry_crs=EPSG, keep_missing=keep_missing
            )

    early, after = sample(0), sample(10**12)
    assert early.equals(after)
    assert (early.num_rows == 300) == keep_missing


# ----------------------------------------------------------------------------- options
@pytest.fixture(scope="module")
def series(files: dict[str, Path]) -> Any:
    """Four dates over one grid: valid; B04 nodata on the left half; all-nodata B04; holes."""
    return _collection(files["folder"] / "series", [
        ("r1", DAY[0], {"B04": files["b04"], "B08": files["b08"]}),
        ("r2", DAY[1], {"B04": files["b04_left"], "B08": files["b08"]}),
        ("r3", DAY[2], {"B04": files["b04_empty"], "B08": files["holes"]}),
    ])  # fmt: skip


def test_match_all_gives_a_row_per_point_and_record(series: Any, files: dict) -> None:
    xs, ys = _random_points(200, seed=4)
    out = series.sample_points(pa.table({"x": xs, "y": ys}), ["B04", "B08"], geometry_crs=EPSG)
    inside, _ = _oracle(files["b04"], xs, ys)
    assert out.num_rows == 3 * int(inside.sum())
    assert out["record_id"].to_pylist()[:3] == ["r1", "r2", "r3"]  # point-major
    for rid, b04, b08 in (
        ("r1", "b04", "b08"),
        ("r2", "b04_left", "b08"),
        ("r3", "b04_empty", "holes"),
    ):
        part = out.filter(pc.equal(out["record_id"], rid))
        assert part["B04"].to_pylist() == _as_list(_oracle(files[b04], xs, ys)[1], inside)
        assert part["B08"].to_pylist() == _as_list(_oracle(files[b08], xs, ys)[1], inside)


def test_match_latest_takes_each_bands_latest_valid_value(series: Any, files: dict) -> None:
    xs, ys = _random_points(300, seed=5)
    out = series.sample_points(pa.table({"x": xs, "y": ys}), ["B04", "B08"], geometry_crs=EPSG,
                               match="latest")  # fmt: skip
    newest_first = {"B04": [("r3", "b04_empty"), ("r2", "b04_left"), ("r1", "b04")],
                    "B08": [("r3", "holes"), ("r2", "b08"), ("r1", "b08")]}  # fmt: skip
    inside, _ = _oracle(files["b04"], xs, ys)
    want: dict[str, list[Any]] = {"B04": [], "B08": [], "B04_record_id": [], "B08_record_id": []}
    rows = []
    oracle = {
        f: _oracle(files[f], xs, ys)[1] for f in ("b04", "b04_left", "b04_empty", "holes", "b08")
    }
    for i in np.flatnonzero(inside):
        picked = {}
        for band, candidates in newest_first.items():
            picked[band] = next(
                ((rid, oracle[f].data[i].item()) for rid, f in candidates if not oracle[f].mask[i]),
                (None, None),
            )
        if any(v is not None for _, v in picked.values()):
            rows.append(i)
            for band, (rid, v) in picked.items():
                want[band].append(v)
                want[f"{band}_record_id"].append(rid)
    for name, values in want.items():
        assert out[name].to_pylist() == values, name
    assert out["record_id"].to_pylist() == [
        b4 or b8 for b4, b8 in zip(want["B04_record_id"], want["B08_record_id"], strict=True)
    ]
    assert {"r1", "r2"} <= set(want["B04_record_id"])
    assert "r3" in want["B08_record_id"]
    assert out["B04_datetime"].to_pylist()[:1] in ([DAY[0]], [DAY[1]])


def _nearest_oracle(path: Path, x: float, y: float, max_d: int) -> tuple[Any, int, int] | None:
    """Brute force: the valid pixel within ``max_d`` (Chebyshev) of the point's pixel whose
    centre is nearest to the point; ties to the first in row-major order."""
    with rasterio.open(path) as src:
        data = src.read(1, masked=True)
        inv = ~src.transform
    fc, fr = inv * (x, y)
    r0, c0 = int(np.floor(fr)), int(np.floor(fc))
    if not data.mask[r0, c0]:
        return data.data[r0, c0].item(), r0, c0
    best = None
    for r in range(r0 - max_d, r0 + max_d + 1):
        for c in range(c0 - max_d, c0 + max_d + 1):
            if 0 <= r < data.shape[0] and 0 <= c < data.shape[1] and not data.mask[r, c]:
                d = (r + 0.5 - fr) ** 2 + (c + 0.5 - fc) ** 2
                if best is None or d < best[0]:
                    best = (d, data.data[r, c].item(), r, c)
    return None if best is None else best[1:]


def test_max_distance_pixels_takes_the_nearest_valid_pixel(files: dict) -> None:
    with rasterio.open(files["holes"]) as src:
        holes = np.argwhere(src.read(1) == 0)
    rng = np.random.default_rng(6)
    picks = holes[rng.choice(len(holes), 80, replace=False)]
    xs = X0 + RES * (picks[:, 1] + rng.uniform(0, 1, 80))
    ys = Y0 - RES * (picks[:, 0] + rng.uniform(0, 1, 80))
    corner_x, corner_y = X0 + 5 * RES, Y0 - 5 * RES  # on a pixel corner, valid: kept as is
    xs, ys = np.append(xs, corner_x), np.append(ys, corner_y)
    rec = record("r", files["holes"])
    plain = read_points([rec], xs, ys, EPSG, ["b1"])
    assert not plain.valid[0][:80].any()
    for max_d in (1, 2):
        got = read_points([rec], xs, ys, EPSG, ["b1"], PointOptions(max_distance_pixels=max_d))
        assert got.source_row is not None
        assert got.source_col is not None
        for i in range(len(xs)):
            want = _nearest_oracle(files["holes"], xs[i], ys[i], max_d)
            assert want is not None
            assert (got.values[0][i].item(), got.source_row[0][i], got.source_col[0][i]) == want
            assert (got.row[i], got.col[i]) == tuple(
                rowcol(Affine(RES, 0, X0, 0, -RES, Y0), xs[i], ys[i])
            )


def test_max_distance_and_neighbourhood_columns_in_the_table(single: Any, files: dict) -> None:
    xs = np.array([X0 + 395.0, X0 + 5.0, X0 + 2995.0])  # nodata corner edge, top-left, right edge
    ys = np.array([Y0 - 15.0, Y0 - 5.0, Y0 - 1000.0])
    out = single.sample_points(pa.table({"x": xs, "y": ys}), ["B04"], geometry_crs=EPSG,
                               max_distance_pixels=1, return_neighbourhood="always",
                               neighbourhood_radius=2)  # fmt: skip
    assert out["B04"].to_pylist()[1] is None  # nothing valid within 1 pixel of (0, 0)
    assert out["B04_row"].to_pylist()[0] == 1
    assert out["B04_col"].to_pylist()[0] == 40  # pixel (1, 39) is nodata; (1, 40) is nearest
    with rasterio.open(files["b04"]) as src:
        for i, (r, c) in enumerate(
            zip(out["row"].to_pylist(), out["col"].to_pylist(), strict=True)
        ):
            window = src.read(1, window=Window(c - 2, r - 2, 5, 5), boundless=True, masked=True)
            want = [
                None if m else v
                for v, m in zip(window.data.ravel().tolist(), window.mask.ravel(), strict=True)
            ]
            assert out["B04_neighbourhood"][i].as_py() == want
    assert out.schema.field("B04_neighbourhood").type == pa.list_(pa.uint16())


def test_neighbourhood_if_center_nodata(single: Any, files: dict) -> None:
    xs, ys = _random_points(300, seed=8)
    out = single.sample_points(pa.table({"x": xs, "y": ys}), ["B04"], geometry_crs=EPSG,
                               return_neighbourhood="if_center_nodata")  # fmt: skip
    windows = out["B04_neighbourhood"].to_pylist()
    values = out["B04"].to_pylist()
    assert any(w is not None for w in windows)
    with rasterio.open(files["b04"]) as src:
        for w, v, r, c in zip(
            windows, values, out["row"].to_pylist(), out["col"].to_pylist(), strict=True
        ):
            assert (w is None) == (v is not None)
            if w is not None:
                win = src.read(1, window=Window(c - 1, r - 1, 3, 3), boundless=True, masked=True)
                assert w == [
                    None if m else x
                    for x, m in zip(win.data.ravel().tolist(), win.mask.ravel(), strict=True)
                ]


def test_multiband_chunky_and_planar_files(files: dict) -> None:
    collection = _collection(files["folder"] / "multi", [
        ("chunky", DAY[0], {"R": (files["chunky"], 0), "G": (files["chunky"], 1), "B": (files["chunky"], 2)}),
        ("planar", DAY[1], {"R": (files["planar"], 2), "G": (files["planar"], 1), "B": (files["planar"], 0)}),
    ])  # fmt: skip
    xs, ys = _random_points(300, seed=9)
    counting = CountingReader(URLReader())
    out = collection.sample_points(pa.table({"x": xs, "y": ys}), ["B", "R", "G"], geometry_crs=EPSG,
                                   backend=counting)  # fmt: skip
    inside, _ = _oracle(files["chunky"], xs, ys)
    for name, index in (("R", 1), ("G", 2), ("B", 3)):
        want = _as_list(_oracle(files["chunky"], xs, ys, index)[1], inside)
        assert out.filter(pc.equal(out["record_id"], "chunky"))[name].to_pylist() == want
        assert out.filter(pc.equal(out["record_id"], "planar"))[name].to_pylist() == want
    # a chunky tile serves all three bands: 6 tiles per file, chunky fetched once, planar per band
    plan = plan_points(
        [record("r", files["chunky"], 3), record("r", files["planar"], 3)],
        xs,
        ys,
        EPSG,
        ["b1", "b2", "b3"],
    )
    assert len(plan.tiles) == 6 + 18
    assert counting.bytes_read() == sum(t.end - t.start for t in plan.tiles.values())


def test_different_dtypes_and_signed_nodata(files: dict) -> None:
    xs, ys = _random_points(200, seed=10)
    out = read_points([record("r", files["int8"])], xs, ys, EPSG, ["b1"])
    inside, values = _oracle(files["int8"], xs, ys)
    assert out.values[0].dtype == np.int8
    assert [
        v.item() if ok else None for v, ok in zip(out.values[0], out.valid[0], strict=True)
    ] == _as_list(values, inside)


# ----------------------------------------------------------------------------- execution
def test_each_tile_is_fetched_and_decoded_once(files: dict) -> None:
    xs, ys = _random_points(5000, seed=11)
    records = [record("a", files["b04"]), record("b", files["b08"])]
    counting = CountingReader(URLReader())
    opts = ReadOptions(backend=counting, cache_mb=0, max_gap=0)
    read_points(records, xs, ys, EPSG, ["b1"], read_options=opts)
    plan = plan_points(records, xs, ys, EPSG, ["b1"])
    assert len(plan.tiles) == 2 * 6  # 3 x 2 tiles of 128 px per file
    ranges = [r for call in counting.calls for r in call.ranges]
    assert len(ranges) == len(set(ranges))
    assert counting.bytes_read() == sum(t.end - t.start for t in plan.tiles.values())


def test_batches_and_a_small_memory_budget_give_the_same_rows(series: Any) -> None:
    xs, ys = _random_points(2000, seed=12)
    points = pa.table({"site": np.arange(2000), "x": xs, "y": ys})
    kwargs = {"geometry_crs": EPSG, "max_distance_pixels": 1, "return_neighbourhood": "always"}
    whole = series.sample_points(points, ["B04", "B08"], **kwargs)
    counting = CountingReader(URLReader())
    batched = series.sample_points(points, ["B04", "B08"], batch_size=97, max_decoded_mb=0.01,
                                   cache_mb=0, backend=counting, **kwargs)  # fmt: skip
    assert batched.equals(whole)
    assert counting.requests() > 20  # the budget forced one tile at a time, per batch
    latest = series.sample_points(points, ["B04", "B08"], match="latest", batch_size=150, **kwargs)
    assert latest.equals(series.sample_points(points, ["B04", "B08"], match="latest", **kwargs))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))),
        min_size=1,
        max_size=30,
    )
)
def test_native_point_fast_path_equals_shapely(coords: list[tuple[float, float] | None]) -> None:
    xs = np.array([np.nan if c is None else c[0] for c in coords])
    ys = np.array([np.nan if c is None else c[1] for c in coords])
    mask = pa.array([c is None for c in coords])
    struct = pa.StructArray.from_arrays(
        [pa.array(np.nan_to_num(xs)), pa.array(np.nan_to_num(ys))], names=["x", "y"], mask=mask
    )
    flat = pa.array(np.column_stack([np.nan_to_num(xs), np.nan_to_num(ys)]).ravel())
    interleaved = pa.FixedSizeListArray.from_arrays(flat, 2, mask=mask)
    general = shapely.from_wkb(
        [None if c is None else shapely.to_wkb(shapely.Point(c)) for c in coords]
    )
    want_x, want_y = shapely.get_x(general), shapely.get_y(general)  # NaN for nulls
    for array in (struct, interleaved):
        meta = {b"ARROW:extension:name": b"geoarrow.point"}
        table = pa.Table.from_arrays(
            [array], schema=pa.schema([pa.field("g", array.type, metadata=meta)])
        )
        points = normalize_points(table)
        np.testing.assert_array_equal(points.x, want_x)
        np.testing.assert_array_equal(points.y, want_y)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sets(st.integers(0, 40), max_size=15), min_size=1, max_size=6), st.integers(1, 4)
)
def test_point_major_order_equals_lexsort(blocks: list[set[int]], batches: int) -> None:
    """Rows as batches produce them: per batch, record-major blocks of distinct points."""
    points, records = [], []
    for b in range(batches):
        for ri, block in enumerate(blocks):
            mine = sorted(p for p in block if p % batches == b)  # batches partition the points
            points += mine
            records += [ri] * len(mine)
    p, r = np.array(points, dtype=np.int64), np.array(records, dtype=np.int64)
    if len(p):
        np.testing.assert_array_equal(p[_point_major_order(p, r)], p[np.lexsort((r, p))])
        np.testing.assert_array_equal(r[_point_major_order(p, r)], r[np.lexsort((r, p))])


def test_many_footprints_use_the_sorted_search(files: dict, tmp_path: Path) -> None:
    """More distinct footprints than the direct-scan limit: points are sorted and searched;
    the rows must not change."""
    base = _field(20)
    paths, records = [], []
    for k in range(12):
        path = tmp_path / f"shifted{k}.tif"
        with rasterio.open(
            path, "w", driver="GTiff", width=40, height=30, count=1, dtype="uint16", nodata=0,
            crs=f"EPSG:{EPSG}", transform=Affine(RES, 0, X0 + 250 * k, 0, -RES, Y0 - 100 * k),
        ) as dst:  # fmt: skip
            dst.write(base[None, :30, :40])
        paths.append(path)
        records.append(record(f"s{k}", path))
    xs, ys = _random_points(3000, seed=21)
    got = read_points(records, xs, ys, EPSG, ["b1"])
    want_points, want_records, want_values = [], [], []
    oracle = [_oracle(p, xs, ys) for p in paths]
    for i in range(len(xs)):
        for k, (inside, values) in enumerate(oracle):
            if inside[i]:
                want_points.append(i)
                want_records.append(k)
                want_values.append(None if values.mask[i] else int(values.data[i]))
    assert got.point_index.tolist() == want_points
    assert got.record_index.tolist() == want_records
    assert [
        int(v) if ok else None for v, ok in zip(got.values[0], got.valid[0], strict=True)
    ] == want_values
    assert len(want_points) > 100


def test_match_latest_reads_older_records_only_where_needed(files: dict) -> None:
    collection = _collection(files["folder"] / "fresh", [
        ("old", DAY[0], {"B04": files["holes"], "B08": files["b04_left"]}),
        ("mid", DAY[1], {"B04": files["b04_empty"], "B08": files["b04_left"]}),
        ("new", DAY[2], {"B04": files["b04"], "B08": files["b08"]}),
    ])  # fmt: skip
    rng = np.random.default_rng(22)
    xs = rng.uniform(X0 + 500, X0 + 2900, 400)  # clear of the newest B04's nodata corner
    ys = rng.uniform(Y0 - 1900, Y0 - 500, 400)
    points = pa.table({"x": xs, "y": ys})
    counting = CountingReader(URLReader())
    out = collection.sample_points(points, ["B04", "B08"], geometry_crs=EPSG, match="latest",
                                   backend=counting)  # fmt: skip
    assert set(counting.per_path()) == {str(files["b04"]), str(files["b08"])}
    assert out["record_id"].to_pylist() == ["new"] * 400
    assert out["B04"].to_pylist() == _as_list(_oracle(files["b04"], xs, ys)[1], np.ones(400, bool))
    # one point on the newest B04's nodata: the next wave (mid, old) is read for it alone
    counting.reset()
    corner = pa.table({"x": [X0 + 15.0, X0 + 1995.0], "y": [Y0 - 15.0, Y0 - 15.0]})
    out = collection.sample_points(corner, ["B04", "B08"], geometry_crs=EPSG, match="latest",
                                   backend=counting, cache_mb=0)  # fmt: skip
    assert out["B04_record_id"].to_pylist() == ["old", "new"]  # mid's B04 is all nodata
    assert out["B08_record_id"].to_pylist() == ["new", "new"]
    assert out["record_id"].to_pylist() == ["old", "new"]
    with rasterio.open(files["holes"]) as src:
        assert out["B04"].to_pylist()[0] == int(src.read(1)[1, 1])
    wave2 = ("holes", "b04_empty")  # only B04 of the older records, for 1 point: B08 has its
    assert set(counting.per_path()) == {str(files[k]) for k in ("b04", "b08", *wave2)}
    assert out["row"].to_pylist() == [1, 1]


@pytest.mark.parametrize("form", ["arrow_wkb", "xy_columns", "geoarrow_point", "shapely_list"])
@pytest.mark.parametrize(
    "case", ["plain", "clashing_names", "keep_missing", "nearest_valid", "neighbourhood"]
)
def test_row_columns_built_while_reading_equal_those_built_after(
    form: str, case: str, single: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From ``_EARLY_FRAME_ROWS`` rows on (one record), the columns that do not depend on
    pixel values are built on a thread as soon as the plan knows the rows; the table is the
    one built at the end. With ``keep_missing`` the rows change after the read: built after."""
    xs, ys = _random_points(600, seed=4)
    points, kwargs = _forms(xs, ys)[form]
    if case == "clashing_names" and isinstance(points, pa.Table):
        points = points.append_column("datetime", pa.array(np.arange(len(xs)))).append_column(
            "row", pa.array([str(i) for i in range(len(xs))])
        )
    options = {
        "keep_missing": {"keep_missing": True},
        "nearest_valid": {"max_distance_pixels": 2},
        "neighbourhood": {"return_neighbourhood": "always"},
    }
    kwargs = kwargs | options.get(case, {})
    threads: list[str] = []
    table_frame = points_out.table_frame

    def spy(*args: Any, **kw: Any) -> Any:
        threads.append(threading.current_thread().name)
        return table_frame(*args, **kw)

    monkeypatch.setattr(points_out, "table_frame", spy)
    monkeypatch.setattr(collection_points, "_EARLY_FRAME_ROWS", 0)
    early = single.sample_points(points, ["B04", "B08"], **kwargs)
    assert len(threads) == 1
    assert threads[0].startswith("rasteret-wkb") == (case != "keep_missing"), threads
    threads.clear()
    monkeypatch.setattr(collection_points, "_EARLY_FRAME_ROWS", 10**12)
    late = single.sample_points(points, ["B04", "B08"], **kwargs)
    assert threads == ["MainThread"]
    assert early.schema.equals(late.schema, check_metadata=True)
    assert early.equals(late)
    assert early.num_rows > 0
