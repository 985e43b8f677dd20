"""chips_to_xarray over real reads: rasterio is the pixel oracle, rioxarray the CRS oracle."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from outputs_support import CRS, DAY, EPSG, oracle, read, scene
from pyproj import CRS as ProjCRS

from rasteret.errors import ReadError
from rasteret.outputs.xarray import DEFAULT_MAX_BYTES, chips_to_xarray, mosaic_grid
from rasteret.read.result import Chip, ChipSet

xr = pytest.importorskip("xarray")
rioxarray = pytest.importorskip("rioxarray")

# Scene "a" spans x 500000..502560, y 4597440..4600000 with nodata in its top-left corner.
AOI = (500_200.0, 4_598_800.0, 500_900.0, 4_599_600.0)  # 70 x 80 pixels inside "a"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xarray_scenes")


def test_one_record_matches_rasterio_and_cf_grid(folder: Path) -> None:
    rec, paths = scene(folder, "a")
    ds = chips_to_xarray(read([rec], [shapely.box(*AOI)]))
    assert list(ds.data_vars) == ["B04", "B08"]
    assert dict(ds.sizes) == {"time": 1, "y": 80, "x": 70}
    for band in ("B04", "B08"):
        assert ds[band].dims == ("time", "y", "x")
        assert ds[band].dtype == np.uint16
        np.testing.assert_array_equal(ds[band].values[0], oracle(paths[band], AOI))
        assert ds[band].attrs["grid_mapping"] == "spatial_ref"
    # Pixel centres, float64, y decreasing.
    assert ds.x.dtype == np.float64
    assert ds.y.dtype == np.float64
    np.testing.assert_array_equal(ds.x.values, AOI[0] + 5.0 + 10.0 * np.arange(70))
    np.testing.assert_array_equal(ds.y.values, AOI[3] - 5.0 - 10.0 * np.arange(80))
    assert ds.x.attrs["standard_name"] == "projection_x_coordinate"
    assert ds.y.attrs["units"] == "metre"
    assert ds.time.values.tolist() == [np.datetime64("2024-01-15T00:00", "ns").item()]
    assert ds.record_ids.values.tolist() == ["a"]
    cf = ds.spatial_ref.attrs
    assert cf["grid_mapping_name"] == "transverse_mercator"
    assert ProjCRS.from_cf(cf) == ProjCRS.from_epsg(EPSG)
    assert cf["GeoTransform"] == f"{AOI[0]} 10.0 0.0 {AOI[3]} 0.0 -10.0"


def test_rioxarray_reads_crs_transform_and_nodata(folder: Path, tmp_path: Path) -> None:
    rec, paths = scene(folder, "a")
    ds = chips_to_xarray(read([rec], [shapely.box(*AOI)]))
    expected = Affine(10.0, 0.0, AOI[0], 0.0, -10.0, AOI[3])
    assert ds.rio.crs == rasterio.crs.CRS.from_epsg(EPSG)
    assert ds.rio.transform() == expected
    assert ds.rio.transform(recalc=True) == expected  # from the x/y coordinates alone
    assert ds["B04"].rio.nodata == 0
    assert ds["B04"].rio.encoded_nodata is None  # not masked: native dtype, as open_rasterio
    # GDAL sees the same grid when rioxarray writes it out.
    out = tmp_path / "b04.tif"
    ds["B04"].isel(time=0).rio.to_raster(out)
    with rasterio.open(out) as dst:
        assert dst.crs.to_epsg() == EPSG
        assert dst.transform == expected
        assert dst.nodata == 0
        np.testing.assert_array_equal(dst.read(1), oracle(paths["B04"], AOI))


@pytest.mark.skipif(
    not any(importlib.util.find_spec(m) for m in ("h5netcdf", "scipy")),
    reason="neither h5netcdf nor scipy is installed for xarray's NetCDF writer",
)
def test_netcdf_round_trip(folder: Path, tmp_path: Path) -> None:
    engine = "h5netcdf" if importlib.util.find_spec("h5netcdf") else "scipy"
    rec, _ = scene(folder, "a")
    corner = (499_900.0, 4_599_500.0, 500_300.0, 4_600_100.0)  # nodata corner and outside
    ds = chips_to_xarray(read([rec], [shapely.box(*corner)]))
    assert (ds["B04"].values == 0).any()
    assert (ds["B04"].values != 0).any()
    path = tmp_path / "chips.nc"
    ds.to_netcdf(path, engine=engine)
    with xr.open_dataset(path, engine=engine, mask_and_scale=False) as raw:
        xr.testing.assert_identical(raw.load(), ds)
        assert raw["B04"].rio.nodata == 0
    with xr.open_dataset(path, engine=engine) as masked:  # CF decoding: fill -> NaN
        assert masked["B04"].rio.encoded_nodata == 0
        assert masked.rio.crs == rasterio.crs.CRS.from_epsg(EPSG)
        assert masked.rio.transform() == ds.rio.transform()
        np.testing.assert_array_equal(np.isnan(masked["B04"].values), ds["B04"].values == 0)


def test_same_datetime_mosaic_first_valid_wins(folder: Path) -> None:
    # "b" is 64 pixels up-left of "a": it covers a's nodata corner with valid pixels.
    a, pa_ = scene(folder, "a")
    b, pb = scene(folder, "b", shift=(-64, -64), seed=1)
    bounds = (499_000.0, 4_599_000.0, 500_800.0, 4_600_900.0)  # also outside both scenes
    for first, second, p1, p2 in ((a, b, pa_, pb), (b, a, pb, pa_)):
        ds = chips_to_xarray(read([first, second], [shapely.box(*bounds)]))
        assert dict(ds.sizes) == {"time": 1, "y": 190, "x": 180}
        assert ds.record_ids.values.tolist() == [f"{first.id},{second.id}"]
        for band in ("B04", "B08"):
            one, two = oracle(p1[band], bounds), oracle(p2[band], bounds)
            expected = np.where(one != 0, one, two)
            np.testing.assert_array_equal(ds[band].values[0], expected)
    # Every case occurs: both valid (the order decides), a's nodata corner filled by b, and
    # outside both scenes (fill).
    one, two = oracle(pa_["B04"], bounds), oracle(pb["B04"], bounds)
    assert ((one != 0) & (two != 0) & (one != two)).any()
    assert ((one == 0) & (two != 0)).any()
    assert ((one == 0) & (two == 0)).any()


def test_time_steps_sorted_each_from_its_record(folder: Path) -> None:
    days = [DAY + dt.timedelta(days=d) for d in (10, 0, 5)]
    pairs = [scene(folder, f"t{i}", seed=i, when=day) for i, day in enumerate(days)]
    records = [r for r, _ in pairs] + [scene(folder, "undated", seed=9, when=None)[0]]
    ds = chips_to_xarray(read(records, [shapely.box(*AOI)]))
    order = [1, 2, 0]  # by datetime
    expected_times = [np.datetime64(days[i].replace(tzinfo=None), "ns") for i in order]
    assert ds.time.values[:3].tolist() == [t.item() for t in expected_times]
    assert np.isnat(ds.time.values[3])  # the record without datetime: its own slot, last
    assert ds.record_ids.values.tolist() == ["t1", "t2", "t0", "undated"]
    for slot, i in enumerate(order):
        np.testing.assert_array_equal(ds["B08"].values[slot], oracle(pairs[i][1]["B08"], AOI))


def test_several_aois_placed_on_one_grid(folder: Path) -> None:
    rec, paths = scene(folder, "a")
    west = (500_100.0, 4_599_000.0, 500_400.0, 4_599_300.0)
    east = (501_000.0, 4_598_000.0, 501_500.0, 4_598_700.0)
    triangle = shapely.Polygon([(501_000, 4_599_400), (501_600, 4_599_400), (501_000, 4_599_900)])
    ds = chips_to_xarray(read([rec], [shapely.box(*west), shapely.box(*east), triangle]))
    union = (500_100.0, 4_598_000.0, 501_600.0, 4_599_900.0)
    assert dict(ds.sizes) == {"time": 1, "y": 190, "x": 150}
    assert ds.rio.transform() == Affine(10.0, 0.0, union[0], 0.0, -10.0, union[3])
    mosaic = ds["B04"].values[0]
    expected = np.zeros_like(mosaic)  # nothing between the AOIs: fill
    for bounds, geom in ((west, None), (east, None), (triangle.bounds, triangle)):
        col, row = int((bounds[0] - union[0]) / 10), int((union[3] - bounds[3]) / 10)
        window = oracle(paths["B04"], bounds, geometry=geom)
        h, w = window.shape
        expected[row : row + h, col : col + w] = np.where(
            window != 0, window, expected[row : row + h, col : col + w]
        )
    np.testing.assert_array_equal(mosaic, expected)
    assert (mosaic == 0).any()  # the gaps between AOIs and outside the triangle


def test_fill_value_becomes_fill_attribute(folder: Path) -> None:
    rec, paths = scene(folder, "a")
    corner = (499_900.0, 4_599_500.0, 500_300.0, 4_600_100.0)
    ds = chips_to_xarray(read([rec], [shapely.box(*corner)], ["B04"], fill_value=7))
    np.testing.assert_array_equal(ds["B04"].values[0], oracle(paths["B04"], corner, fill=7))
    assert ds["B04"].attrs["_FillValue"] == 7
    assert ds["B04"].attrs["_FillValue"].dtype == np.uint16
    assert ds["B04"].rio.nodata == 7


def test_float_nan_nodata(folder: Path) -> None:
    rec, paths = scene(folder, "f", dtype="float32", nodata=float("nan"))
    corner = (499_900.0, 4_599_500.0, 500_300.0, 4_600_100.0)
    ds = chips_to_xarray(read([rec], [shapely.box(*corner)], ["B04"]))
    assert ds["B04"].dtype == np.float32
    assert np.isnan(ds["B04"].attrs["_FillValue"])
    assert np.isnan(ds["B04"].rio.nodata)
    expected = oracle(paths["B04"], corner, fill=np.nan)
    np.testing.assert_array_equal(ds["B04"].values[0], expected)  # NaNs in the same places
    assert np.isnan(expected).any()


def test_out_shape_one_aoi_ok_several_refused(folder: Path) -> None:
    rec, _ = scene(folder, "a")
    one = chips_to_xarray(read([rec], [shapely.box(*AOI)], ["B04"], out_shape=(20, 35)))
    assert dict(one.sizes) == {"time": 1, "y": 20, "x": 35}
    assert one.rio.transform() == Affine(20.0, 0.0, AOI[0], 0.0, -40.0, AOI[3])
    other = shapely.box(501_000, 4_598_000, 501_300, 4_598_300)
    chips = read([rec], [shapely.box(*AOI), other], ["B04"], out_shape=(20, 35))
    with pytest.raises(ReadError, match=r"out_shape=.*get_numpy\(\) or get_gdf\(\)"):
        chips_to_xarray(chips)


def test_memory_budget_refused_before_allocating(folder: Path) -> None:
    rec, _ = scene(folder, "a")
    chips = read([rec], [shapely.box(*AOI)])
    need = 2 * 80 * 70 * 2  # bands x pixels x uint16
    assert chips_to_xarray(chips, max_bytes=need)["B04"].nbytes == need // 2
    with pytest.raises(ReadError, match=rf"y=80, x=70\) of uint16 = {need} bytes.*resolution="):
        chips_to_xarray(chips, max_bytes=need - 1)
    # Two chips a million pixels apart: an 8 TB grid is refused, never allocated.
    far = [
        Chip(
            0,
            i,
            "r",
            DAY,
            np.ones((1, 2, 2), "uint16"),
            np.ones((1, 2, 2), bool),
            (10.0, 0.0, 1e7 * i, 0.0, -10.0, -1e7 * i),
            CRS,
        )
        for i in range(2)
    ]
    cs = ChipSet(far, ("B04",), (0,), np.dtype("uint16"), CRS, (0,), lattice=(0, 0, 10, 10))
    with pytest.raises(ReadError, match=r"y=1000002, x=1000002\)") as info:
        chips_to_xarray(cs)
    assert f"max_bytes={DEFAULT_MAX_BYTES}" in str(info.value)


def test_off_lattice_chip_refused() -> None:
    chips = [
        Chip(
            0,
            i,
            "r",
            DAY,
            np.ones((1, 2, 2), "uint8"),
            np.ones((1, 2, 2), bool),
            (10.0, 0.0, 5.0 * i, 0.0, -10.0, 0.0),
            CRS,
        )
        for i in range(2)
    ]
    cs = ChipSet(chips, ("b",), (0,), np.dtype("uint8"), CRS, lattice=(0, 0, 10, 10))
    with pytest.raises(ReadError, match=r"whole-pixel offset.*\(0\.5, 0\.0\)"):
        mosaic_grid(cs)


def test_no_chips_gives_empty_dataset(folder: Path) -> None:
    rec, _ = scene(folder, "a")
    chips = read([rec], [shapely.box(600_000, 4_000_000, 600_100, 4_000_100)])
    assert len(chips) == 0
    ds = chips_to_xarray(chips)
    assert dict(ds.sizes) == {"time": 0, "y": 0, "x": 0}
    assert list(ds.data_vars) == ["B04", "B08"]
    assert ds.rio.crs == rasterio.crs.CRS.from_epsg(EPSG)
