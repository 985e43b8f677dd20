"""outputs.numpy: [N, C, H, W] stacking of real reads, the index, padding and refusals."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window
from read_support import band_metadata, write_cog

from rasteret.errors import ReadError
from rasteret.outputs.numpy import chips_to_numpy
from rasteret.read import ReadOptions, RecordRef, read_chips

X0, Y0 = 500_000.0, 4_600_000.0


@pytest.fixture(scope="module")
def recs(tmp_path_factory: pytest.TempPathFactory) -> list[RecordRef]:
    d = tmp_path_factory.mktemp("numpy")
    out = []
    for i in range(3):
        path = write_cog(d / f"t{i}.tif", count=2, seed=i, overviews=())
        when = dt.datetime(2024, 5, 1 + i, tzinfo=dt.UTC)
        out.append(
            RecordRef(f"t{i}", when, {"red": band_metadata(path, 0), "nir": band_metadata(path, 1)})
        )
    return out


def test_stack_index_and_values(recs: list[RecordRef]) -> None:
    aois = [
        shapely.box(X0 + 100, Y0 - 400, X0 + 600, Y0 - 100),
        shapely.box(X0 + 1000, Y0 - 1300, X0 + 1500, Y0 - 1000),
    ]
    chips = read_chips(recs, aois, 32633, ["nir", "red"])
    arr, index = chips_to_numpy(chips, return_index=True)
    assert arr.shape == (6, 2, 30, 50)
    assert index.record_id.tolist() == ["t0", "t0", "t1", "t1", "t2", "t2"]
    assert index.aoi_index.tolist() == [0, 1, 0, 1, 0, 1]
    assert index.datetime[2] == np.datetime64("2024-05-02T00:00:00", "us")
    assert index.transform[1] == (10.0, 0.0, X0 + 1000, 0.0, -10.0, Y0 - 1000)
    meta = recs[1].bands["nir"]
    assert meta is not None
    with rasterio.open(meta.href) as src:
        expected = src.read([2, 1], window=Window(100, 100, 50, 30))
    np.testing.assert_array_equal(arr[3], expected)
    one = chips_to_numpy(read_chips(recs, aois, 32633, ["red"]))
    assert one.shape == (6, 30, 50)  # one band: [N, H, W]


def test_masked_and_edge_chips_keep_full_size(recs: list[RecordRef]) -> None:
    corner = [shapely.box(X0 - 200, Y0 - 100, X0 + 300, Y0 + 150)]  # 25 x 50, half outside
    arr = chips_to_numpy(read_chips(recs[:1], corner, 32633, ["red"]), masked=True)
    assert arr.shape == (1, 25, 50)
    assert isinstance(arr, np.ma.MaskedArray)
    assert arr.mask[0, :15].all()  # above the raster
    assert arr.mask[0, :, :20].all()  # left of the raster


def test_one_pixel_snapping_jitter_is_padded_bigger_differences_refused(
    recs: list[RecordRef],
) -> None:
    aligned = shapely.box(X0 + 100, Y0 - 400, X0 + 600, Y0 - 100)  # 50 x 30 pixels
    offset = shapely.box(X0 + 1005, Y0 - 1305, X0 + 1505, Y0 - 1005)  # same size, +1 each way
    chips = read_chips(recs[:1], [aligned, offset], 32633, ["red"], ReadOptions(fill_value=7))
    assert [c.data.shape for c in chips.chips] == [(1, 30, 50), (1, 31, 51)]
    arr = chips_to_numpy(chips)
    assert arr.shape == (2, 31, 51)
    assert (arr[0, 30, :] == 7).all()
    assert (arr[0, :, 50] == 7).all()
    big = shapely.box(X0 + 2000, Y0 - 2500, X0 + 3000, Y0 - 2000)
    mixed = read_chips(recs[:1], [aligned, big], 32633, ["red"])
    with pytest.raises(ReadError, match=r"out_shape=\(H, W\).*get_gdf"):
        chips_to_numpy(mixed)
    fixed = read_chips(recs[:1], [aligned, big], 32633, ["red"], ReadOptions(out_shape=(16, 16)))
    assert chips_to_numpy(fixed).shape == (2, 16, 16)


def test_empty_read(recs: list[RecordRef]) -> None:
    far = [shapely.box(X0 + 90_000, Y0 - 1000, X0 + 91_000, Y0)]
    arr, index = chips_to_numpy(read_chips(recs, far, 32633, ["red", "nir"]), return_index=True)
    assert arr.shape == (0, 2, 0, 0)
    assert index.record_id.size == 0
