"""chips_to_gdf over real reads: one row per (record, AOI), AOI columns kept, rasterio oracle."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import shapely
from outputs_support import BANDS, CRS, DAY, oracle, read, scene

from rasteret.errors import ReadError
from rasteret.outputs.geopandas import chips_to_gdf

gpd = pytest.importorskip("geopandas")
pd = pytest.importorskip("pandas")

# Scene "a" spans x 500000..502560; "b" (128 pixels east) x 501280..503840.
WEST = (500_200.0, 4_598_800.0, 500_600.0, 4_599_300.0)  # only in "a"
EAST = (501_500.0, 4_598_000.0, 501_800.0, 4_598_200.0)  # in both
TRIANGLE = shapely.Polygon([(501_400, 4_599_000), (501_900, 4_599_000), (501_400, 4_599_600)])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gdf_scenes")


def parcels() -> pa.Table:
    return pa.table(
        {
            "parcel_id": ["p-west", "p-east", "p-tri"],
            "crop": pa.array(["rice", None, "maize"]),
            "area_ha": pa.array([20.0, 6.0, 15.0], pa.float32()),
            "plot": pa.array([7, None, 9], pa.uint16()),
            "irrigated": pa.array([True, False, True]),
            "sown": pa.array([dt.date(2023, 11, 1), dt.date(2023, 11, 5), None], pa.date32()),
        }
    )


def test_rows_columns_dtypes_and_pixels(folder: Path) -> None:
    a, pa_ = scene(folder, "a", when=DAY)
    b, pb = scene(folder, "b", shift=(128, 0), seed=1, when=DAY + dt.timedelta(days=3))
    aois = np.array([shapely.box(*WEST), shapely.box(*EAST), TRIANGLE], dtype=object)
    chips = read([a, b], aois)
    gdf = chips_to_gdf(chips, aois, CRS, parcels())

    # One row per intersecting (record, AOI) pair, record-major; "b" misses the west AOI.
    assert list(zip(gdf.record_id, gdf.aoi_index, strict=True)) == [
        ("a", 0),
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("b", 2),
    ]
    assert list(gdf.columns) == [
        "record_id",
        "datetime",
        "aoi_index",
        "parcel_id",
        "crop",
        "area_ha",
        "plot",
        "irrigated",
        "sown",
        *BANDS,
        "transform",
        "crs",
        "geometry",
    ]
    assert isinstance(gdf, gpd.GeoDataFrame)
    assert gdf.crs.to_epsg() == 32633
    # AOI columns: each row carries its AOI's values, dtypes kept (nulls stay nulls).
    assert gdf.parcel_id.tolist() == ["p-west", "p-east", "p-tri", "p-east", "p-tri"]
    assert gdf.crop.isna().tolist() == [False, True, False, True, False]
    assert gdf.area_ha.dtype == np.float32
    assert gdf["plot"].dtype == pd.UInt16Dtype()
    assert gdf["plot"].tolist() == [7, pd.NA, 9, pd.NA, 9]
    assert gdf.irrigated.dtype == np.bool_
    assert gdf.sown.tolist()[:2] == [dt.date(2023, 11, 1), dt.date(2023, 11, 5)]
    assert gdf.aoi_index.dtype == np.int64
    assert str(gdf.datetime.dtype) == "datetime64[us, UTC]"
    assert (
        gdf.datetime.tolist()
        == [pd.Timestamp(DAY)] * 3 + [pd.Timestamp(DAY + dt.timedelta(days=3))] * 2
    )
    assert gdf["crs"].tolist() == [CRS] * 5
    # Geometry: the AOI as given.
    for geom, i in zip(gdf.geometry, gdf.aoi_index, strict=True):
        assert shapely.equals_exact(geom, aois[i], tolerance=0)
    # Band cells: the chip's 2-D array, native dtype, equal to rasterio with the AOI mask.
    paths = {"a": pa_, "b": pb}
    for _, row in gdf.iterrows():
        geom = aois[row.aoi_index]
        bounds = geom.bounds
        assert row["transform"] == (10.0, 0.0, bounds[0], 0.0, -10.0, bounds[3])
        for band in BANDS:
            cell = row[band]
            assert cell.dtype == np.uint16
            assert cell.ndim == 2
            expected = oracle(paths[row.record_id][band], bounds, geometry=geom)
            np.testing.assert_array_equal(cell, expected)


def test_without_aoi_columns(folder: Path) -> None:
    a, _ = scene(folder, "a", when=None)
    aois = [shapely.box(*WEST)]
    gdf = chips_to_gdf(read([a], aois, ["B08"]), np.array(aois, dtype=object), CRS, None)
    assert list(gdf.columns) == [
        "record_id",
        "datetime",
        "aoi_index",
        "B08",
        "transform",
        "crs",
        "geometry",
    ]
    assert len(gdf) == 1
    assert gdf.datetime.isna().all()
    assert gdf.index.tolist() == [0]


def test_geometry_keeps_the_aoi_crs(folder: Path) -> None:
    a, pa_ = scene(folder, "a")
    aoi = shapely.box(*WEST)
    chips = read([a], [aoi], ["B04"])
    lonlat = shapely.box(15.0, 41.5, 15.1, 41.6)  # what the caller passed, in its own CRS
    gdf = chips_to_gdf(chips, np.array([lonlat], dtype=object), "EPSG:4326", None)
    assert gdf.crs.to_epsg() == 4326
    assert shapely.equals_exact(gdf.geometry.iloc[0], lonlat, tolerance=0)
    assert gdf["crs"].iloc[0] == CRS  # the pixels' grid CRS
    np.testing.assert_array_equal(gdf.B04.iloc[0], oracle(pa_["B04"], WEST))


def test_clashing_aoi_column_renamed(folder: Path) -> None:
    a, _ = scene(folder, "a")
    aois = np.array([shapely.box(*WEST)], dtype=object)
    table = pa.table({"datetime": ["label day"], "B04": [1]})
    with pytest.warns(
        UserWarning, match=r"\['B04', 'datetime'\] clash.*\['aoi_B04', 'aoi_datetime'\]"
    ):
        gdf = chips_to_gdf(read([a], aois, ["B04"]), aois, CRS, table)
    assert gdf.aoi_datetime.tolist() == ["label day"]
    assert gdf.aoi_B04.tolist() == [1]
    assert gdf.B04.iloc[0].shape == (50, 40)


def test_mismatched_inputs_refused(folder: Path) -> None:
    a, _ = scene(folder, "a")
    aois = np.array([shapely.box(*WEST), shapely.box(*EAST)], dtype=object)
    chips = read([a], aois, ["B04"])
    with pytest.raises(ReadError, match=r"at least 2 AOI geometries.*got 1"):
        chips_to_gdf(chips, aois[:1], CRS, None)
    with pytest.raises(ReadError, match=r"one AOI table row per AOI geometry \(2\), got 3"):
        chips_to_gdf(chips, aois, CRS, parcels())


def test_no_chips_gives_empty_frame(folder: Path) -> None:
    a, _ = scene(folder, "a")
    aois = np.array([shapely.box(600_000, 4_000_000, 600_100, 4_000_100)], dtype=object)
    table = pa.table({"parcel_id": ["far"], "n": pa.array([3], pa.int32())})
    gdf = chips_to_gdf(read([a], aois), aois, CRS, table)
    assert len(gdf) == 0
    assert list(gdf.columns) == [
        "record_id",
        "datetime",
        "aoi_index",
        "parcel_id",
        "n",
        *BANDS,
        "transform",
        "crs",
        "geometry",
    ]
    assert gdf.n.dtype == np.int32
    assert gdf.crs.to_epsg() == 32633
