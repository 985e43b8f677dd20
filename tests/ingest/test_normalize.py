"""normalize_records: canonical id/datetime/geometry/bbox/year/month/CRS columns."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import pytest
import shapely
from shapely.geometry import MultiPolygon, box

from rasteret.errors import SchemaError
from rasteret.ingest import schema
from rasteret.ingest.normalize import normalize_datetimes, normalize_records
from rasteret.ingest.sources import read_source
from rasteret.types import CRS84

UTC = dt.UTC
FOOTPRINTS = [
    box(77.50, 12.90, 77.70, 13.10),
    MultiPolygon([box(10, 45, 11, 46), box(12, 45, 13, 46)]),
]
WHEN = [dt.datetime(2024, 1, 15, 10, 30, tzinfo=UTC), dt.datetime(2023, 7, 1, tzinfo=UTC)]


def raw(**columns: Any) -> pa.Table:
    """A minimal valid record table; keyword columns replace or add columns."""
    base: dict[str, Any] = {
        "id": pa.array(["scene-001", "scene-002"]),
        "datetime": pa.array(WHEN, pa.timestamp("us", tz="UTC")),
        "geometry": pa.array([g.wkb for g in FOOTPRINTS]),
        "assets": pa.array([{"B04": {"href": f"s3://b/{i}_B04.tif"}} for i in range(2)]),
    }
    base.update(columns)
    return pa.table({k: v for k, v in base.items() if v is not None})


def out_geometries(table: pa.Table) -> np.ndarray:
    return shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))


def out_bounds(table: pa.Table) -> np.ndarray:
    bbox = table.column("bbox").combine_chunks()
    return np.column_stack([bbox.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax")])


# ---------------------------------------------------------------- schema and user columns


def test_canonical_columns_types_and_user_columns_kept() -> None:
    user = {
        "eo:cloud_cover": pa.array([12.5, None]),
        "label": pa.array([1, 2], pa.int8()),
        "split": pa.array(["train", "val"]).dictionary_encode(),
        "tags": pa.array([["a"], []], pa.list_(pa.string())),
        "props": pa.array([{"gsd": 10.0}, {"gsd": 20.0}]),
        "when_local": pa.array(WHEN, pa.timestamp("ms")),
    }
    table = raw(**user)
    out = normalize_records(table)
    assert out.column_names == [*schema.CANONICAL_COLUMNS, *user]
    types = {f.name: f.type for f in out.schema}
    assert types["id"] == pa.string()
    assert types["datetime"] == schema.DATETIME_TYPE
    assert types["geometry"] == pa.binary()
    assert types["assets"] == schema.ASSETS_TYPE
    assert types["bbox"] == schema.BBOX_TYPE
    assert (types["year"], types["month"], types["proj:epsg"], types["crs"]) == (
        pa.int32(),
        pa.int32(),
        pa.int32(),
        pa.string(),
    )
    for name in user:
        assert out.schema.field(name) == table.schema.field(name)
        assert out.column(name).equals(table.column(name))
    assert out.column("year").to_pylist() == [w.year for w in WHEN]
    assert out.column("month").to_pylist() == [w.month for w in WHEN]
    np.testing.assert_array_equal(out_bounds(out), shapely.bounds(np.array(FOOTPRINTS)))


def test_normalising_twice_changes_nothing() -> None:
    once = normalize_records(raw(**{"proj:code": pa.array(["EPSG:32643", None])}))
    twice = normalize_records(once)
    assert twice.equals(once, check_metadata=True)


def test_geometry_field_is_geoarrow_wkb_in_crs84_for_geopandas() -> None:
    out = normalize_records(raw())
    meta = out.schema.field("geometry").metadata
    assert meta[b"ARROW:extension:name"] == b"geoarrow.wkb"
    crs = json.loads(meta[b"ARROW:extension:metadata"])["crs"]
    assert pyproj.CRS.from_json_dict(crs).equals(CRS84)
    frame = gpd.GeoDataFrame.from_arrow(out)
    assert frame.crs.equals(CRS84)
    assert shapely.equals(np.asarray(frame.geometry.values), FOOTPRINTS).all()


def test_stale_geoparquet_and_pandas_metadata_dropped() -> None:
    table = raw().replace_schema_metadata({"geo": "{}", "pandas": "{}", "mine": "kept"})
    assert normalize_records(table).schema.metadata == {b"mine": b"kept"}


# ---------------------------------------------------------------- id


def test_ids_cast_and_nulls_named() -> None:
    assert normalize_records(raw(id=pa.array([7, 8]))).column("id").to_pylist() == ["7", "8"]
    encoded = pa.array(["a", "b"]).dictionary_encode()
    assert normalize_records(raw(id=encoded)).column("id").to_pylist() == ["a", "b"]
    with pytest.raises(SchemaError, match=r"'id'.*rows \[1\]"):
        normalize_records(raw(id=pa.array(["a", None])))


# ---------------------------------------------------------------- datetime


def _naive(values: list[dt.datetime]) -> list[dt.datetime]:
    return [v.astimezone(UTC).replace(tzinfo=None) for v in values]


def _datetime_forms() -> dict[str, tuple[pa.Array, list[dt.datetime]]]:
    berlin = [dt.datetime(2024, 1, 15, 11, 30, tzinfo=ZoneInfo("Europe/Berlin")), WHEN[1]]
    iso = ["2024-01-15T10:30:00Z", "2024-01-15T12:30:00.250+02:00", "2024-01-15", "2024-01-15 08:00:00",
           "2019", " 2024-03-01T00:00:00+0530 "]  # fmt: skip
    iso_expected = [
        dt.datetime.fromisoformat(s.strip().replace(" ", "T")) if len(s.strip()) > 4 else None
        for s in iso
    ]
    iso_expected[4] = dt.datetime(2019, 1, 1)
    return {
        **{
            f"timestamp-{unit}": (pa.array(_naive(WHEN), pa.timestamp(unit)), WHEN)
            for unit in ("s", "ms", "us", "ns")
        },
        "timestamp-ns-berlin": (
            pa.array(berlin, pa.timestamp("ns", tz="Europe/Berlin")),
            [b.astimezone(UTC) for b in berlin],
        ),
        "date32": (
            pa.array([w.date() for w in WHEN], pa.date32()),
            [dt.datetime(w.year, w.month, w.day) for w in WHEN],
        ),
        "date64": (
            pa.array([w.date() for w in WHEN], pa.date64()),
            [dt.datetime(w.year, w.month, w.day) for w in WHEN],
        ),
        "iso-strings": (pa.array(iso), iso_expected),
        "iso-large-strings": (pa.array(iso, pa.large_string()), iso_expected),
        "iso-dictionary": (pa.array(iso).dictionary_encode(), iso_expected),
        "int-years": (pa.array([2024, 1999], pa.int16()), [dt.datetime(2024, 1, 1), dt.datetime(1999, 1, 1)]),
        "float-years": (pa.array([2024.0, None]), [dt.datetime(2024, 1, 1), None]),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(_datetime_forms()))
def test_datetime_forms(name: str) -> None:
    values, expected = _datetime_forms()[name]
    got = normalize_datetimes(values)
    assert got.type == schema.DATETIME_TYPE
    want = [None if e is None else (e if e.tzinfo else e.replace(tzinfo=UTC)) for e in expected]
    assert [None if g is None else g.astimezone(UTC) for g in got.to_pylist()] == want


def test_integer_years_as_the_seed_document_maps_them() -> None:
    out = normalize_records(
        raw(datetime=None, year=pa.array([2024, 2021])), column_map={"year": "datetime"}
    )
    assert [str(v) for v in out.column("datetime").to_pylist()] == [
        "2024-01-01 00:00:00+00:00",
        "2021-01-01 00:00:00+00:00",
    ]
    assert out.column("year").to_pylist() == [2024, 2021]
    assert out.column("month").to_pylist() == [1, 1]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (pa.array([1_700_000_000, 2024]), r"calendar years.*rows \[0\]"),
        (pa.array([2024.5, 2024.0]), "calendar years"),
        (pa.array(["yesterday", "2024-01-01"]), "yesterday"),
        (pa.array([True, False]), "bool"),
    ],
)
def test_bad_datetimes(values: pa.Array, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        normalize_records(raw(datetime=values))


def test_null_datetimes_fall_back_to_start_datetime_then_fail() -> None:
    values = pa.array([WHEN[0], None], pa.timestamp("us", tz="UTC"))
    start = pa.array(["2020-05-01T00:00:00Z", "2020-06-01T00:00:00Z"])
    out = normalize_records(raw(datetime=values, start_datetime=start))
    assert out.column("datetime").to_pylist() == [WHEN[0], dt.datetime(2020, 6, 1, tzinfo=UTC)]
    assert out.column("start_datetime").equals(pa.chunked_array([start]))
    with pytest.raises(SchemaError, match=r"'datetime'.*rows \[1\]"):
        normalize_records(raw(datetime=values))


# ---------------------------------------------------------------- geometry


def _frame(crs: Any = "OGC:CRS84", geoms: list[Any] = FOOTPRINTS) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"id": ["scene-001", "scene-002"], "datetime": pd.to_datetime([w.replace(tzinfo=None) for w in WHEN])},
        geometry=geoms,
        crs=crs,
    )  # fmt: skip


def _with_assets(table: pa.Table) -> pa.Table:
    return table.append_column("assets", raw().column("assets"))


def _geometry_forms(tmp_path: Path) -> dict[str, Any]:
    wkb = [g.wkb for g in FOOTPRINTS]
    gdf = _frame()
    parquet = tmp_path / "records.parquet"
    gdf.assign(assets=[json.dumps({"B04": f"s3://b/{i}.tif"}) for i in range(2)]).to_parquet(
        parquet
    )
    return {
        "plain-wkb": raw(),
        "large-binary": raw(geometry=pa.array(wkb, pa.large_binary())),
        "binary-view": raw(geometry=pa.array(wkb, pa.binary_view())),
        "hex-free-wkt": raw(geometry=pa.array([g.wkt for g in FOOTPRINTS])),
        "geojson-strings": raw(geometry=pa.array([shapely.to_geojson(g) for g in FOOTPRINTS])),
        "geoarrow-wkb": _with_assets(pa.table(gdf.to_arrow(geometry_encoding="WKB"))),
        "geoarrow-native": _with_assets(pa.table(gdf.to_arrow(geometry_encoding="geoarrow"))),
        "geoarrow-native-xy": _with_assets(
            pa.table(gdf.to_arrow(geometry_encoding="geoarrow", interleaved=False))
        ),
        "geodataframe": gdf.assign(assets=[{"B04": {"href": "x"}}] * 2),
        "pandas-shapely": pd.DataFrame(gdf.assign(assets=['{"B04": "x"}'] * 2)),
        "geoparquet": parquet,
    }


@pytest.mark.parametrize(
    "name",
    ["plain-wkb", "large-binary", "binary-view", "hex-free-wkt", "geojson-strings", "geoarrow-wkb",
     "geoarrow-native", "geoarrow-native-xy", "geodataframe", "pandas-shapely", "geoparquet"],
)  # fmt: skip
def test_geometry_forms(name: str, tmp_path: Path) -> None:
    source = _geometry_forms(tmp_path)[name]
    out = normalize_records(read_source(source))
    got = out_geometries(out)
    assert all(shapely.equals(g, e) for g, e in zip(got, FOOTPRINTS, strict=True))
    np.testing.assert_array_equal(out_bounds(out), shapely.bounds(np.array(FOOTPRINTS)))


UTM_FOOTPRINTS = [
    box(300_000, 1_400_000, 409_800, 1_509_800),
    box(600_000, 1_420_000, 650_000, 1_520_000),
]


def _expected_crs84_bounds(crs: Any, geoms: list[Any]) -> np.ndarray:
    tr = pyproj.Transformer.from_crs(pyproj.CRS(crs), CRS84, always_xy=True)
    return np.array([tr.transform_bounds(*g.bounds, densify_pts=21) for g in geoms])


@pytest.mark.parametrize("encoding", ["WKB", "geoarrow"])
def test_utm_footprints_reprojected_before_bbox(encoding: str) -> None:
    table = _with_assets(
        pa.table(_frame(32643, UTM_FOOTPRINTS).to_arrow(geometry_encoding=encoding))
    )
    out = normalize_records(table)
    expected = _expected_crs84_bounds(32643, UTM_FOOTPRINTS)
    np.testing.assert_allclose(out_bounds(out), expected, rtol=0, atol=1e-6)  # < 0.1 m
    tr = pyproj.Transformer.from_crs(32643, CRS84, always_xy=True)
    for geom, utm in zip(out_geometries(out), UTM_FOOTPRINTS, strict=True):
        corners = np.column_stack(tr.transform(*np.asarray(utm.exterior.coords).T))
        assert shapely.distance(geom.exterior, shapely.points(corners)).max() < 1e-9


@pytest.mark.parametrize("encoding", ["WKB", "geoarrow"])
def test_geoparquet_crs_and_source_crs_override(encoding: str, tmp_path: Path) -> None:
    path = tmp_path / "utm.parquet"
    frame = _frame(32643, UTM_FOOTPRINTS).assign(assets=['{"B04": "x"}'] * 2)
    frame.to_parquet(path, geometry_encoding=encoding)  # GeoParquet 1.1 native or WKB
    expected = _expected_crs84_bounds(32643, UTM_FOOTPRINTS)
    np.testing.assert_allclose(out_bounds(normalize_records(path)), expected, atol=1e-6)
    untagged = raw(geometry=pa.array([g.wkb for g in UTM_FOOTPRINTS]))
    out = normalize_records(untagged, source_crs="EPSG:32643")
    np.testing.assert_allclose(out_bounds(out), expected, atol=1e-6)


def test_epsg_4326_lat_lon_authority_keeps_lon_lat_data() -> None:
    table = _with_assets(pa.table(_frame("EPSG:4326").to_arrow(geometry_encoding="WKB")))
    out = normalize_records(table)
    assert all(shapely.equals(g, e) for g, e in zip(out_geometries(out), FOOTPRINTS, strict=True))


def test_existing_bbox_in_another_form_is_replaced() -> None:
    out = normalize_records(raw(bbox=pa.array([[0.0, 0.0, 0.0, 0.0]] * 2)))
    assert out.schema.field("bbox").type == schema.BBOX_TYPE
    np.testing.assert_array_equal(out_bounds(out), shapely.bounds(np.array(FOOTPRINTS)))


def test_null_and_broken_geometries_are_named() -> None:
    with pytest.raises(SchemaError, match=r"'geometry'.*rows \[0\]"):
        normalize_records(raw(geometry=pa.array([None, FOOTPRINTS[1].wkb])))
    with pytest.raises(SchemaError, match=r"rows \[1\]"):
        normalize_records(raw(geometry=pa.array([FOOTPRINTS[0].wkb, b"\x01\x02"])))


# ---------------------------------------------------------------- column_map and errors


def test_seed_document_column_map(tmp_path: Path) -> None:
    """The user document's example: scene_id/geom/year columns and one multi-band URL."""
    path = tmp_path / "records.parquet"
    urls = ["s3://my-bucket/multi/a.tif", "s3://my-bucket/multi/b.tif"]
    pa.parquet.write_table(
        pa.table({"scene_id": ["a", "b"], "geom": [g.wkb for g in FOOTPRINTS], "year": [2022, 2024],
                  "url": urls, "eo:cloud_cover": [3.0, 9.5]}),
        path,
    )  # fmt: skip
    out = normalize_records(
        read_source(str(path)),
        column_map={"scene_id": "id", "geom": "geometry", "year": "datetime"},
        href_column="url",
        band_index_map={"B04": 0, "B08": 1},
    )
    assert out.column("id").to_pylist() == ["a", "b"]
    assert out.column("year").to_pylist() == [2022, 2024]
    assert out.column("assets").to_pylist() == [
        [
            ("B04", {"href": url, "band_index": 0, "type": None, "roles": None}),
            ("B08", {"href": url, "band_index": 1, "type": None, "roles": None}),
        ]
        for url in urls
    ]
    assert out.column_names[-2:] == ["url", "eo:cloud_cover"]


def test_column_map_errors() -> None:
    with pytest.raises(SchemaError, match=r"\['nope'\] that the table lacks"):
        normalize_records(raw(), column_map={"nope": "id"})
    with pytest.raises(SchemaError, match="several columns"):
        normalize_records(raw(other=pa.array(["x", "y"])), column_map={"other": "id"})


def test_missing_fields_suggest_a_column_map() -> None:
    table = pa.table(
        {"scene_id": ["a"], "geom": [FOOTPRINTS[0].wkb], "year": [2024], "url": ["s3://b/a.tif"]}
    )
    with pytest.raises(SchemaError) as info:
        normalize_records(table)
    message = str(info.value)
    assert "no 'id', 'datetime', 'geometry', 'assets' column" in message
    assert "found ['scene_id', 'geom', 'year', 'url']" in message
    assert "column_map={'scene_id': 'id', 'year': 'datetime', 'geom': 'geometry'}" in message
    assert "href_column='url'" in message
    with pytest.raises(
        SchemaError, match=r"no 'geometry' column.*column_map=\{'geom': 'geometry'\}"
    ):
        normalize_records(raw(geometry=None, geom=raw().column("geometry")))
    # by type when no name is close: a binary column, a timestamp column
    with pytest.raises(SchemaError, match=r"column_map=\{'acq': 'datetime', 'shp': 'geometry'\}"):
        normalize_records(raw(datetime=None, geometry=None, acq=raw().column("datetime"),
                              shp=raw().column("geometry")))  # fmt: skip


# ---------------------------------------------------------------- CRS sidecars


UTM = pyproj.CRS.from_epsg(32633)


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("proj:epsg", pa.array([32633, None])),
        ("proj:epsg", pa.array([32633.0, np.nan], from_pandas=True)),
        ("proj:code", pa.array(["EPSG:32633", None])),
        ("crs", pa.array(["epsg:32633", ""])),
        ("proj:wkt2", pa.array([UTM.to_wkt(), None])),
        ("proj:projjson", pa.array([UTM.to_json(), None])),
        ("proj:projjson", pa.array([UTM.to_json_dict(), None])),
    ],
    ids=["epsg", "epsg-float", "code", "crs", "wkt2", "projjson", "projjson-struct"],
)
def test_crs_sidecars_from_stac_columns(column: str, values: pa.Array) -> None:
    out = normalize_records(raw(**{column: values}))
    assert out.column("proj:epsg").to_pylist() == [32633, None]
    assert out.column("crs").to_pylist() == ["EPSG:32633", None]


def test_crs_sidecar_priority_custom_and_errors() -> None:
    out = normalize_records(
        raw(
            **{
                "proj:epsg": pa.array([None, 32633]),
                "proj:code": pa.array(["EPSG:4326", "EPSG:3857"]),
            }
        )
    )
    assert out.column("proj:epsg").to_pylist() == [4326, 32633]
    custom = pyproj.CRS.from_proj4(
        "+proj=tmerc +lat_0=0 +lon_0=77.3 +k=0.9996 +x_0=500000 +ellps=GRS80"
    )
    out = normalize_records(raw(**{"proj:wkt2": pa.array([custom.to_wkt(), None])}))
    assert out.column("proj:epsg").to_pylist() == [None, None]
    assert pyproj.CRS(out.column("crs")[0].as_py()).equals(custom)
    assert out.column("crs")[1].as_py() is None
    nothing = normalize_records(raw())
    assert nothing.column("proj:epsg").null_count == nothing.column("crs").null_count == 2
    with pytest.raises(SchemaError, match="raster CRS"):
        normalize_records(raw(**{"proj:code": pa.array(["EPSG:not-a-code", None])}))


def test_table_level_helpers_accept_chunked_input() -> None:
    table = pa.concat_tables([raw().slice(0, 1), raw().slice(1, 1)])
    assert table.column("id").num_chunks == 2
    out = normalize_records(table)
    assert out.column("id").to_pylist() == ["scene-001", "scene-002"]
    assert pc.all(pc.equal(out.column("year"), pa.array([2024, 2023], pa.int32()))).as_py()
