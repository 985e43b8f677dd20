"""Inputs as users hand them over: Polars frames with text columns (Arrow view types) and one
geometry column on its own (Arrow chunked array, GeoSeries, GeometryArray, pandas and Polars
Series) as AOIs and points. Each gives what the same data as a plain Arrow table gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import shapely
import shapely.affinity

import rasteret
from rasteret.errors import SchemaError
from rasteret.testing.scenes import local_records, monthly_series, scene_footprint
from rasteret.types import classic_arrow_types

pl = pytest.importorskip("polars")
gpd = pytest.importorskip("geopandas")
pd = pytest.importorskip("pandas")

SPECS = monthly_series("scene", 2, size=300)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    return local_records(SPECS, tmp_path_factory.mktemp("scenes"))


@pytest.fixture(scope="module")
def collection(records: pa.Table) -> Any:
    return rasteret.build_from_table(records, enrich_cog=True, progress=False)


def _aoi() -> shapely.Polygon:
    c = scene_footprint(SPECS[0]).centroid
    return shapely.box(c.x - 0.002, c.y - 0.002, c.x + 0.002, c.y + 0.002)


def _points() -> list[shapely.Point]:
    c = scene_footprint(SPECS[0]).centroid
    return [shapely.Point(c.x + d, c.y - d) for d in (0.0, 0.001, 0.002)]


# -- Arrow view types ----------------------------------------------------------------------------


def test_view_types_become_classic_at_any_depth() -> None:
    table = pa.table(
        {
            "s": pa.array(["a", None], pa.string_view()),
            "b": pa.array([b"x", b"y"], pa.binary_view()),
            "l": pa.array([["p"], ["q", "r"]], pa.large_list(pa.string_view())),
            "st": pa.array([{"k": "v"}, {"k": None}], pa.struct([("k", pa.string_view())])),
            "n": [1, 2],
        }
    ).replace_schema_metadata({"origin": "polars"})
    out = classic_arrow_types(table)
    assert out.schema.types == [
        pa.large_string(),
        pa.large_binary(),
        pa.large_list(pa.large_string()),
        pa.struct([("k", pa.large_string())]),
        pa.int64(),
    ]
    assert out.schema.metadata == {b"origin": b"polars"}
    assert out.to_pylist() == table.to_pylist()
    plain = pa.table({"n": [1]})
    assert classic_arrow_types(plain) is plain  # nothing to cast: the same table


@pytest.mark.parametrize("persisted", [False, True])
def test_a_polars_record_table_with_text_columns_builds(
    records: pa.Table, persisted: bool, tmp_path: Path
) -> None:
    frame = pl.from_arrow(records.append_column("note", pa.array(["clear", "hazy"])))
    assert pa.table(frame).schema.field("note").type == pa.string_view()  # what Polars hands over
    where = {"name": "polars", "workspace_dir": tmp_path} if persisted else {}
    built = rasteret.build_from_table(frame, enrich_cog=True, progress=False, **where)
    assert len(built) == len(SPECS)
    rows = built.to_table(columns=["id", "note"]).sort_by("id").to_pylist()
    assert rows == [{"id": "scene-0", "note": "clear"}, {"id": "scene-1", "note": "hazy"}]


def test_get_gdf_keeps_the_text_columns_of_a_polars_aoi_table(collection: Any) -> None:
    frame = pl.DataFrame({"parcel_id": ["p1"], "crop": ["wheat"], "geometry": [_aoi().wkb]})
    gdf = collection.get_gdf(frame, ["B04"])
    expected = collection.get_gdf(
        pa.table(frame.to_arrow()).cast(
            pa.schema(
                [("parcel_id", pa.string()), ("crop", pa.string()), ("geometry", pa.binary())]
            )
        ),
        ["B04"],
    )
    assert list(gdf["parcel_id"]) == ["p1"] * len(gdf)
    assert list(gdf["crop"]) == ["wheat"] * len(gdf)
    assert len(gdf) == len(expected) > 0
    for a, b in zip(gdf["B04"], expected["B04"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_sample_points_keeps_the_text_columns_of_a_polars_point_table(collection: Any) -> None:
    pts = _points()
    frame = pl.DataFrame(
        {"site": ["a", "b", "c"], "lon": [p.x for p in pts], "lat": [p.y for p in pts]}
    )
    table = collection.sample_points(frame, ["B04"], geometry_crs="EPSG:4326")
    plain = collection.sample_points(
        pa.table(
            {"site": ["a", "b", "c"], "lon": frame["lon"].to_list(), "lat": frame["lat"].to_list()}
        ),
        ["B04"],
        geometry_crs="EPSG:4326",
    )
    assert table.num_rows == plain.num_rows > 0
    assert table.column("site").to_pylist() == plain.column("site").to_pylist()
    assert table.column("B04").to_pylist() == plain.column("B04").to_pylist()


def test_a_polars_text_label_field_feeds_torchgeo(records: pa.Table) -> None:
    pytest.importorskip("torchgeo.datasets")
    frame = pl.from_arrow(records.append_column("label", pa.array(["crop", "forest"])))
    built = rasteret.build_from_table(frame, enrich_cog=True, progress=False)
    dataset = built.to_torchgeo_dataset(bands=["B04"], label_field="label")
    assert len(dataset) == len(SPECS)


# -- one geometry column as AOIs or points -------------------------------------------------------


def _aoi_forms() -> dict[str, Any]:
    aoi = _aoi()
    series = gpd.GeoSeries([aoi], crs="EPSG:4326")
    return {
        "chunked WKB array": pa.chunked_array([[aoi.wkb]]),
        "GeoSeries": series,
        "GeometryArray": series.values,
        "pandas Series of shapely": pd.Series([aoi]),
        "pandas Series of WKB": pd.Series([aoi.wkb]),
        "Polars Series of WKB": pl.Series("geometry", [aoi.wkb]),
    }


@pytest.mark.parametrize("form", list(_aoi_forms()))
def test_one_geometry_column_is_an_aoi_list(form: str, collection: Any) -> None:
    expected, index = collection.get_numpy([_aoi()], ["B04"], return_index=True)
    got, got_index = collection.get_numpy(_aoi_forms()[form], ["B04"], return_index=True)
    np.testing.assert_array_equal(got, expected)
    assert list(got_index.record_id) == list(index.record_id)


def test_geopandas_arrow_tables_are_tables_with_their_crs() -> None:
    """``GeoDataFrame.to_arrow()`` (a geopandas object, but a table) gives its geometries and
    its CRS to the geometry helpers directly, as an Arrow table would."""
    from rasteret.types import geometries_to_shapely, geometry_crs

    frame = gpd.GeoDataFrame({"n": [1]}, geometry=[shapely.Point(1, 2)], crs="EPSG:32633")
    table = frame.to_arrow(geometry_encoding="WKB")
    assert [g.wkt for g in geometries_to_shapely(table)] == ["POINT (1 2)"]
    crs = geometry_crs(table)
    assert crs is not None
    assert crs.to_epsg() == 32633


def test_a_geoseries_brings_its_crs(collection: Any) -> None:
    utm = gpd.GeoSeries([_aoi()], crs="EPSG:4326").to_crs(32633)
    expected = collection.get_numpy([utm.iloc[0]], ["B04"], geometry_crs="EPSG:32633")
    np.testing.assert_array_equal(collection.get_numpy(utm, ["B04"]), expected)


def _point_forms() -> dict[str, Any]:
    pts = _points()
    return {
        "chunked WKB array": pa.chunked_array([[p.wkb for p in pts]]),
        "GeoSeries": gpd.GeoSeries(pts, crs="EPSG:4326"),
        "pandas Series of shapely": pd.Series(pts),
        "Polars Series of WKB": pl.Series("geometry", [p.wkb for p in pts]),
    }


@pytest.mark.parametrize("form", list(_point_forms()))
def test_one_geometry_column_is_a_point_list(form: str, collection: Any) -> None:
    expected = collection.sample_points(_points(), ["B04"])
    got = collection.sample_points(_point_forms()[form], ["B04"])
    assert got.num_rows == expected.num_rows > 0
    assert got.column("B04").to_pylist() == expected.column("B04").to_pylist()
    assert got.column("record_id").to_pylist() == expected.column("record_id").to_pylist()


def _pair_forms() -> dict[str, Any]:
    xy = [(p.x, p.y) for p in _points()]
    return {
        "list of tuples": xy,
        "tuple of lists": tuple(list(pair) for pair in xy),
        "(N, 2) array": np.array(xy),
        "list of NumPy scalars": [(np.float64(x), np.float64(y)) for x, y in xy],
    }


@pytest.mark.parametrize("form", list(_pair_forms()))
def test_xy_pairs_are_points_as_rasterio_samples_them(form: str, collection: Any) -> None:
    """``(x, y)`` pairs, as rasterio's ``sample()`` takes them, are points: the same rows,
    values and WKB geometries as shapely points (CRS: EPSG:4326 unless given)."""
    expected = collection.sample_points(_points(), ["B04", "B08"])
    got = collection.sample_points(_pair_forms()[form], ["B04", "B08"])
    assert got.num_rows == expected.num_rows > 0
    for name in ("geometry", "record_id", "B04", "B08", "row", "col", "point_crs"):
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name


def test_one_xy_pair_is_one_point(collection: Any) -> None:
    point = _points()[1]
    got = collection.sample_points((point.x, point.y), ["B04"])
    expected = collection.sample_points([point], ["B04"])
    assert got.column("B04").to_pylist() == expected.column("B04").to_pylist()
    assert got.num_rows == len(SPECS)


def test_xy_pairs_in_a_given_crs(collection: Any) -> None:
    utm = gpd.GeoSeries(_points(), crs="EPSG:4326").to_crs(32633)
    pairs = np.column_stack([utm.x.to_numpy(), utm.y.to_numpy()])
    got = collection.sample_points(pairs, ["B04"], geometry_crs="EPSG:32633")
    expected = collection.sample_points(_points(), ["B04"])
    assert got.column("B04").to_pylist() == expected.column("B04").to_pylist()
    assert set(got.column("point_crs").to_pylist()) == {"EPSG:32633"}


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        ([(1.0, 2.0), (3.0, "a")], "got (3.0, 'a') at row 1"),
        ([(1.0, 2.0), (1.0, 2.0, 3.0)], "at row 1"),
        ([(1.0, 2.0), None], "got None at row 1"),
        (np.zeros((3, 3)), "shape (N, 2), got shape (3, 3)"),
        (np.zeros(4), "got shape (4,)"),
    ],
)
def test_malformed_xy_pairs_are_refused_naming_the_row(
    pairs: Any, says: str, collection: Any
) -> None:
    with pytest.raises(SchemaError, match="expected \\(x, y\\) pairs") as info:
        collection.sample_points(pairs, ["B04"])
    assert says in str(info.value)


def test_a_dict_of_columns_is_a_point_table(collection: Any) -> None:
    """A dict of columns (as pandas and pyarrow take them) is a table: its columns kept, its
    x/y columns found, their CRS asked for as for any table."""
    pts = _points()
    columns = {"site": ["a", "b", "c"], "lon": [p.x for p in pts], "lat": [p.y for p in pts]}
    got = collection.sample_points(columns, ["B04"], geometry_crs="EPSG:4326")
    expected = collection.sample_points(pa.table(columns), ["B04"], geometry_crs="EPSG:4326")
    assert got.equals(expected)
    assert got.column("site").to_pylist()[: len(SPECS)] == ["a"] * len(SPECS)
    with pytest.raises(SchemaError, match="geometry_crs"):
        collection.sample_points(columns, ["B04"])


def test_a_dict_of_unequal_columns_is_refused(collection: Any) -> None:
    with pytest.raises(SchemaError, match="dict of equal-length columns, got keys \\['x', 'y'\\]"):
        collection.sample_points({"x": [1.0, 2.0], "y": [1.0]}, ["B04"], geometry_crs=4326)


def test_a_dict_that_is_no_geojson_is_refused_as_an_aoi(collection: Any) -> None:
    """A dict without a GeoJSON ``type`` is not an AOI: a SchemaError, not an AttributeError."""
    with pytest.raises(SchemaError, match="expected a GeoJSON geometry"):
        collection.get_numpy({"coordinates": [[0, 0], [1, 1]]}, ["B04"])


# -- AOIs of different sizes ---------------------------------------------------------------------


def test_aois_of_different_sizes_are_refused_with_the_remedies(collection: Any) -> None:
    """``get_numpy`` stacks equal chips only: parcels of different sizes are refused with
    what to do instead, and both remedies it names work."""
    from rasteret.errors import ReadError

    small = _aoi()
    large = shapely.affinity.scale(small, 3.0, 3.0)
    with pytest.raises(ReadError, match=r"out_shape=\(H, W\).*get_gdf"):
        collection.get_numpy([small, large], ["B04"])
    equal = collection.get_numpy([small, large], ["B04"], out_shape=(16, 16))
    assert equal.shape[1:] == (16, 16)
    per_aoi = collection.get_gdf([small, large], ["B04"])
    assert {a.shape for a in per_aoi["B04"]} == {
        a.shape for a in collection.get_numpy([small], ["B04"])
    } | {a.shape for a in collection.get_numpy([large], ["B04"])}


@pytest.mark.parametrize("keyword", ["all_touched", "target_crs", "resampling", "dtype"])
def test_sample_points_says_why_an_area_keyword_does_not_apply(
    keyword: str, collection: Any
) -> None:
    value = {"all_touched": True, "target_crs": "EPSG:3857", "resampling": "bilinear"}
    with pytest.raises(TypeError, match=f"{keyword}= does not apply"):
        collection.sample_points(_points(), ["B04"], **{keyword: value.get(keyword, "float32")})
