"""Accepted-input normalisers: CRS, bbox, and every geometry form (rasteret.types)."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import geopandas as gpd
import numpy as np
import polars as pl
import pyarrow as pa
import pyproj
import pytest
import rasterio.crs
import shapely
from shapely.geometry import LineString, MultiLineString, MultiPoint, MultiPolygon, Point, box

from rasteret.errors import SchemaError, UnsupportedFormatError
from rasteret.types import (
    CRS84,
    aoi_bounds_crs84,
    arrow_to_shapely,
    bbox_,
    crs_,
    field_geometry_encoding,
    geoarrow_wkb_field,
    geometries_to_shapely,
    geometries_to_wkb,
    geometry_crs,
    is_crs84,
    to_crs84,
)

UTM33 = pyproj.CRS.from_epsg(32633)
SHAPES = [
    box(10.0, 45.0, 10.5, 45.5),
    MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 4)]),
    Point(1.5, -2.5),
    LineString([(0, 0), (1, 2), (3, 1)]),
    MultiPoint([(0, 0), (5, 5)]),
    MultiLineString([[(0, 0), (1, 1)], [(2, 2), (3, 5)]]),
]


def assert_same_geometries(got: np.ndarray, expected: list[Any]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        if e is None:
            assert g is None
        else:
            assert shapely.equals(g, e), (g, e)


# ---------------------------------------------------------------- CRS


@pytest.mark.parametrize(
    "value",
    [
        32633,
        "32633",
        "EPSG:32633",
        "epsg:32633",
        UTM33,
        UTM33.to_wkt(),
        UTM33.to_json(),
        UTM33.to_json_dict(),
        rasterio.crs.CRS.from_epsg(32633),
    ],
    ids=[
        "int",
        "digits",
        "authority",
        "lowercase",
        "pyproj",
        "wkt",
        "projjson",
        "dict",
        "rasterio",
    ],
)
def test_crs_accepts_every_form(value: Any) -> None:
    crs = crs_(value)
    assert isinstance(crs, pyproj.CRS)
    assert crs.to_epsg() == 32633


@pytest.mark.parametrize("value", ["not a crs", None, True, "EPSG:999999999"])
def test_crs_rejects_garbage_with_schema_error(value: Any) -> None:
    with pytest.raises(SchemaError, match="expected a CRS"):
        crs_(value)


def test_is_crs84_ignores_axis_order_only() -> None:
    assert is_crs84(None)
    assert is_crs84("OGC:CRS84")
    assert is_crs84(4326)  # lat/lon by authority, lon/lat in GeoArrow data
    assert not is_crs84(32633)
    assert not is_crs84(4269)  # NAD83 is a different datum


# ---------------------------------------------------------------- bbox


@pytest.mark.parametrize(
    "value",
    [
        (1, 2, 3, 4),
        [1.0, 2.0, 3.0, 4.0],
        np.array([1, 2, 3, 4]),
        box(1, 2, 3, 4),
        {"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4},
    ],
)
def test_bbox_forms(value: Any) -> None:
    assert bbox_(value) == (1.0, 2.0, 3.0, 4.0)


@pytest.mark.parametrize(
    "value", [(1, 2, 3), (3, 2, 1, 4), (1, 4, 3, 2), (0, 0, np.nan, 1), {"west": 0}]
)
def test_bbox_rejects_bad_boxes(value: Any) -> None:
    with pytest.raises(SchemaError, match="bbox"):
        bbox_(value)


# ---------------------------------------------------------------- geometry forms


class GeoInterface:
    """A third-party geometry exposing only ``__geo_interface__``."""

    def __init__(self, geom: Any) -> None:
        self.__geo_interface__ = shapely.geometry.mapping(geom)


class FieldCapsule:
    """An array exporter (like geoarrow-pyarrow) carrying field metadata in its capsule."""

    def __init__(self, array: pa.Array, field: pa.Field) -> None:
        self._batch = pa.record_batch([array], schema=pa.schema([field]))

    def __arrow_c_array__(self, requested_schema: Any = None) -> Any:
        schema_capsule = self._batch.schema.field(0).__arrow_c_schema__()
        _, array_capsule = self._batch.column(0).__arrow_c_array__()
        return schema_capsule, array_capsule


def _forms() -> dict[str, tuple[Any, list[Any]]]:
    a, b = SHAPES[0], SHAPES[1]
    return {
        "shapely": (a, [a]),
        "shapely-list": ([a, b], [a, b]),
        "shapely-ndarray": (np.array([a, b], dtype=object), [a, b]),
        "wkb": (a.wkb, [a]),
        "wkb-list": ([a.wkb, None, b.wkb], [a, None, b]),
        "wkt": (a.wkt, [a]),
        "geojson-geometry": (shapely.geometry.mapping(a), [a]),
        "geojson-feature": ({"type": "Feature", "geometry": shapely.geometry.mapping(a)}, [a]),
        "geojson-null-feature": ({"type": "Feature", "geometry": None}, [None]),
        "geojson-collection": (
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(g)}
                    for g in (a, b)
                ],
            },
            [a, b],
        ),
        "bbox": ((10.0, 45.0, 10.5, 45.5), [a]),
        "bbox-list": ([(10.0, 45.0, 10.5, 45.5), (0, 0, 1, 1)], [a, box(0, 0, 1, 1)]),
        "geo-interface": (GeoInterface(a), [a]),
        "mixed-list": ([a, b.wkb, shapely.geometry.mapping(a)], [a, b, a]),
        "arrow-wkb": (pa.array([a.wkb, None]), [a, None]),
        "arrow-large-wkb": (pa.array([a.wkb], pa.large_binary()), [a]),
        "arrow-wkb-view": (pa.array([a.wkb, b.wkb], pa.binary_view()), [a, b]),
        "arrow-wkt": (pa.array([a.wkt, None, b.wkt]), [a, None, b]),
        "arrow-geojson": (pa.array([json.dumps(shapely.geometry.mapping(a))]), [a]),
        "chunked-wkb": (pa.chunked_array([[a.wkb], [b.wkb]]), [a, b]),
        "geoseries": (gpd.GeoSeries([a, None, b]), [a, None, b]),
        "geodataframe": (gpd.GeoDataFrame({"k": [1, 2]}, geometry=[a, b]), [a, b]),
    }


@pytest.mark.parametrize("name", list(_forms()))
def test_geometries_to_shapely_every_form(name: str) -> None:
    value, expected = _forms()[name]
    assert_same_geometries(geometries_to_shapely(value), expected)


@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("geom", SHAPES, ids=lambda g: g.geom_type)
def test_native_geoarrow_arrays_sliced_with_nulls(geom: Any, interleaved: bool) -> None:
    """Every native GeoArrow encoding, with nulls, sliced so offsets do not start at zero."""
    shifted = shapely.affinity.translate(geom, 7, -3)
    geoms = [geom, None, shifted, geom]
    table = pa.table(
        gpd.GeoDataFrame(geometry=geoms, crs=UTM33).to_arrow(
            geometry_encoding="geoarrow", interleaved=interleaved
        )
    )
    name = field_geometry_encoding(table.schema.field("geometry"))[0]
    assert name == f"geoarrow.{geom.geom_type.lower()}"
    sliced = table.slice(1)
    assert_same_geometries(geometries_to_shapely(sliced), geoms[1:])
    assert geometry_crs(sliced) == UTM33
    # Without the extension name the nesting depth is used (polygon/multipolygon, point).
    if geom.geom_type in ("Polygon", "MultiPolygon", "Point"):
        plain = sliced.column("geometry").combine_chunks()
        assert_same_geometries(arrow_to_shapely(plain), geoms[1:])


def test_box_encoding() -> None:
    boxes = pa.array([{"xmin": 0.0, "ymin": 1.0, "xmax": 2.0, "ymax": 3.0}, None])
    assert_same_geometries(arrow_to_shapely(boxes, "geoarrow.box"), [box(0, 1, 2, 3), None])


def test_tables_and_streams_pick_the_geometry_column() -> None:
    gdf = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=SHAPES[:2], crs=UTM33)
    table = pa.table(gdf.to_arrow(geometry_encoding="WKB")).rename_columns(["name", "footprint"])
    assert_same_geometries(geometries_to_shapely(table), SHAPES[:2])  # found by its extension
    assert geometry_crs(table) == UTM33
    plain = pa.table({"g": [g.wkb for g in SHAPES[:2]], "other": [b"x", b"y"]})
    assert_same_geometries(geometries_to_shapely(plain, geometry_column="g"), SHAPES[:2])
    with pytest.raises(SchemaError, match="geometry"):
        geometries_to_shapely(plain)  # no tag and no 'geometry' column
    rel = duckdb.connect().sql("SELECT * FROM plain")
    assert_same_geometries(geometries_to_shapely(rel, geometry_column="g"), SHAPES[:2])
    frame = pl.from_arrow(plain)
    assert isinstance(frame, pl.DataFrame)
    assert_same_geometries(geometries_to_shapely(frame, geometry_column="g"), SHAPES[:2])
    assert_same_geometries(geometries_to_shapely(gdf, geometry_column="geometry"), SHAPES[:2])


def test_geoparquet_geo_metadata_gives_encoding_and_crs() -> None:
    geo = {"version": "1.1.0", "primary_column": "geom", "columns": {"geom": {"encoding": "WKB"}}}
    table = pa.table({"geom": [SHAPES[0].wkb]}).replace_schema_metadata({"geo": json.dumps(geo)})
    assert field_geometry_encoding(table.schema.field("geom"), table.schema.metadata) == (
        "geoarrow.wkb",
        CRS84,  # GeoParquet: no crs key means OGC:CRS84
    )
    assert_same_geometries(geometries_to_shapely(table), [SHAPES[0]])
    geo["columns"]["geom"]["crs"] = UTM33.to_json_dict()
    table = table.replace_schema_metadata({"geo": json.dumps(geo)})
    assert geometry_crs(table) == UTM33
    geo["columns"]["geom"]["crs"] = None
    table = table.replace_schema_metadata({"geo": json.dumps(geo)})
    assert geometry_crs(table) is None


def test_arrow_c_array_exporter_keeps_field_crs() -> None:
    field = geoarrow_wkb_field("g", UTM33)
    exporter = FieldCapsule(pa.array([SHAPES[0].wkb]), field)
    assert geometry_crs(exporter) == UTM33
    assert_same_geometries(geometries_to_shapely(exporter), [SHAPES[0]])


def test_geometries_to_wkb_is_iso_binary_with_nulls() -> None:
    z = Point(1, 2, 3)
    out = geometries_to_wkb([z.wkb, None])
    assert out.type == pa.binary()
    assert out.null_count == 1
    assert out[0].as_py() == shapely.to_wkb(z, flavor="iso")


def test_undecodable_and_unknown_inputs() -> None:
    with pytest.raises(SchemaError, match=r"rows \[1\]"):
        arrow_to_shapely(pa.array([SHAPES[0].wkb, b"\x00garbage"]))
    with pytest.raises(UnsupportedFormatError, match=r"geoarrow\.geometry"):
        arrow_to_shapely(pa.array([b"x"]), "geoarrow.geometry")
    with pytest.raises(UnsupportedFormatError, match="int64"):
        arrow_to_shapely(pa.array([1, 2]))
    with pytest.raises(SchemaError, match="expected geometries"):
        geometries_to_shapely(object())
    with pytest.raises(SchemaError, match=r"rows \[0\]"):
        geometries_to_shapely(b"\x01\x02")
    with pytest.raises(SchemaError, match=r"rows \[0\]"):
        geometries_to_shapely("POLYGON ((0 0, 1")
    with pytest.raises(SchemaError, match="GeoJSON"):
        geometries_to_shapely({"type": "Polygon"})


# ---------------------------------------------------------------- reprojection


def test_to_crs84_matches_pyproj_transform_bounds() -> None:
    utm_box = box(400_000, 5_000_000, 509_800, 5_109_800)  # a ~110 km Sentinel-2 tile
    out = to_crs84(np.array([utm_box, None], dtype=object), "EPSG:32633")
    expected = pyproj.Transformer.from_crs(UTM33, CRS84, always_xy=True).transform_bounds(
        *utm_box.bounds, densify_pts=21
    )
    np.testing.assert_allclose(out[0].bounds, expected, atol=1e-9)
    assert out[1] is None
    # Every original vertex lands exactly where pyproj puts it.
    tr = pyproj.Transformer.from_crs(UTM33, CRS84, always_xy=True)
    for x, y in utm_box.exterior.coords:
        lon, lat = tr.transform(x, y)
        assert shapely.distance(out[0].exterior, Point(lon, lat)) < 1e-9


def test_to_crs84_passes_lon_lat_through_for_epsg_4326() -> None:
    geoms = np.array([box(77.5, 12.9, 77.7, 13.1)], dtype=object)
    assert to_crs84(geoms, "EPSG:4326")[0] is geoms[0]


def test_to_crs84_transforms_polygons_of_no_area_as_they_are() -> None:
    """GEOS cannot densify a polygon of no area (a point or a line as a box): it failed on
    the one and emptied the other. They are transformed undensified; lines and areas are
    densified as before."""
    tr = pyproj.Transformer.from_crs(UTM33, CRS84, always_xy=True)
    point_box, row_box = box(500_000, 0, 500_000, 0), box(500_000, 10, 500_100, 10)
    line = LineString([(500_000, 0), (500_100, 100)])
    out = to_crs84(np.array([point_box, row_box, line], dtype=object), "EPSG:32633")
    np.testing.assert_allclose(out[0].bounds, tr.transform(500_000, 0) * 2, atol=1e-12)
    lon0, lat = tr.transform(500_000, 10)
    lon1, _ = tr.transform(500_100, 10)
    np.testing.assert_allclose(out[1].bounds, (lon0, lat, lon1, lat), atol=1e-12)
    assert shapely.get_num_coordinates(out[2]) > 2  # densified


def test_to_crs84_rejects_untransformable_coordinates() -> None:
    with pytest.raises(SchemaError, match=r"rows \[0\]"):
        to_crs84(np.array([Point(1e30, 0)], dtype=object), 32633)


def test_aoi_bounds_crs84_uses_carried_crs_then_default() -> None:
    utm = gpd.GeoSeries([box(500_000, 4_000_000, 510_000, 4_010_000)], crs=UTM33)
    expected = pyproj.Transformer.from_crs(UTM33, CRS84, always_xy=True).transform_bounds(
        500_000, 4_000_000, 510_000, 4_010_000, densify_pts=21
    )
    np.testing.assert_allclose(aoi_bounds_crs84(utm), expected, atol=1e-9)
    lonlat = aoi_bounds_crs84([(0, 0, 1, 1), (2, -1, 3, 0)])
    assert lonlat == (0.0, -1.0, 3.0, 1.0)
    as_utm = aoi_bounds_crs84([box(500_000, 4_000_000, 510_000, 4_010_000)], geometry_crs=32633)
    np.testing.assert_allclose(as_utm, expected, atol=1e-9)
    with pytest.raises(SchemaError, match="non-empty"):
        aoi_bounds_crs84([None])
