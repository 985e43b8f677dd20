"""What a read leaves out is reported by every output, not only warned about.

One collection of three records over the same AOI: ``good`` reads, ``corrupt`` has a tile
whose bytes do not decode (``on_error="skip"`` leaves it out), ``missing`` has no metadata
for its band because its header could not be read at build time (``on_missing="skip"``
leaves it out). ``get_numpy(return_index=True)``, ``get_xarray`` and ``get_gdf`` must each
name both, the warnings must be :class:`RasteretWarning`, and the pixels of ``good`` must be
rasterio's.
"""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely
from rasterio.windows import from_bounds

import rasteret
from rasteret.errors import BandResolutionError, DecodeError, RasteretWarning
from rasteret.testing.scenes import SceneSpec, write_scene
from rasteret.tiff.header import parse_header

SPEC = SceneSpec("good", 32633, (500_000.0, 4_600_000.0), size=256, tile=128)
AOI = shapely.box(500_000, 4_597_440, 501_280, 4_600_000)  # 128 x 256 px: tiles 0 and 2
IO = {"geometry_crs": 32633, "cache_mb": 0}


@pytest.fixture(scope="module")
def hrefs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("reports")
    good = write_scene(SPEC, root, bands=("B04",))["B04"]
    data = bytearray(good.read_bytes())
    ifd = parse_header(bytes(data)).ifds[0]
    start, count = int(ifd.tile_offsets[0]), int(ifd.tile_byte_counts[0])
    data[start + 10 : start + count - 10] = bytes(count - 20)  # tile 0 no longer inflates
    corrupt = root / "corrupt.tif"
    corrupt.write_bytes(bytes(data))
    return {"good": str(good), "corrupt": str(corrupt), "missing": str(root / "absent.tif")}


@pytest.fixture(scope="module")
def collection(hrefs: dict[str, str]) -> rasteret.Collection:
    table = pa.table(
        {
            "id": list(hrefs),
            "datetime": pa.array([1, 2, 3], pa.timestamp("s")).cast(pa.timestamp("us")),
            "geometry": ["POLYGON ((14 41, 16 41, 16 42, 14 42, 14 41))"] * 3,
            "assets": [{"B04": {"href": href}} for href in hrefs.values()],
        }
    )
    with pytest.warns(RasteretWarning, match="1 of 3 COG headers"):
        return rasteret.build_from_table(table, enrich_cog=True)


@pytest.fixture(scope="module")
def expected(hrefs: dict[str, str]) -> np.ndarray:
    with rasterio.open(hrefs["good"]) as src:
        return src.read(1, window=from_bounds(*AOI.bounds, transform=src.transform))


def _read_quietly(call: object, *args: object, **kwargs: object) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call(*args, **kwargs)  # type: ignore[operator]
    assert all(issubclass(w.category, RasteretWarning) for w in caught), caught
    return result, [str(w.message) for w in caught]


def test_the_defaults_raise_naming_record_band_and_tile(collection: rasteret.Collection) -> None:
    with pytest.raises(BandResolutionError, match=r"B04 of record 'missing'.*on_missing='skip'"):
        collection.get_numpy(AOI, "B04", **IO)
    with (
        pytest.raises(DecodeError, match=r"tile 0 of .*corrupt\.tif"),
        pytest.warns(RasteretWarning, match="left out for lack of band metadata"),
    ):
        collection.get_numpy(AOI, "B04", on_missing="skip", **IO)


def test_get_numpy_index_names_what_was_left_out(
    collection: rasteret.Collection, expected: np.ndarray
) -> None:
    (arr, index), messages = _read_quietly(
        collection.get_numpy, AOI, "B04", return_index=True, on_missing="skip",
        on_error="skip", **IO,
    )  # fmt: skip
    assert index.record_id.tolist() == ["good"]
    np.testing.assert_array_equal(arr[0], expected)
    assert [(s.record_id, s.missing_bands) for s in index.skipped] == [("missing", ("B04",))]
    (failed,) = index.failed
    assert (failed.record_id, failed.band) == ("corrupt", "B04")
    assert failed.error.startswith("DecodeError: ")
    assert "corrupt.tif" in failed.error
    assert len(messages) == 2
    assert any("1 record(s) left out for lack of band metadata" in m and "missing (B04)" in m
               for m in messages)  # fmt: skip
    assert any("corrupt/B04 (DecodeError" in m for m in messages)


def test_get_xarray_attrs_name_what_was_left_out(
    collection: rasteret.Collection, expected: np.ndarray
) -> None:
    ds, _ = _read_quietly(
        collection.get_xarray, AOI, "B04", on_missing="skip", on_error="skip", **IO
    )
    assert ds.sizes["time"] == 1
    np.testing.assert_array_equal(ds["B04"].values[0], expected)
    assert ds.attrs["rasteret_skipped"] == ["missing: no metadata for B04"]
    (failed,) = ds.attrs["rasteret_failed"]
    assert failed.startswith("corrupt/B04: DecodeError: ")


def test_get_gdf_attrs_name_what_was_left_out(
    collection: rasteret.Collection, expected: np.ndarray
) -> None:
    gdf, _ = _read_quietly(collection.get_gdf, AOI, "B04", on_missing="skip", on_error="skip", **IO)
    assert gdf["record_id"].tolist() == ["good"]
    np.testing.assert_array_equal(gdf["B04"].iloc[0], expected)
    assert gdf.attrs["rasteret_skipped"] == ["missing: no metadata for B04"]
    assert gdf.attrs["rasteret_failed"][0].startswith("corrupt/B04: DecodeError: ")


def test_a_clean_read_reports_nothing(collection: rasteret.Collection) -> None:
    good_only = collection.where(pa.compute.field("id") == "good")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = good_only.get_xarray(AOI, "B04", **IO)
        _, index = good_only.get_numpy(AOI, "B04", return_index=True, **IO)
    assert "rasteret_skipped" not in ds.attrs
    assert "rasteret_failed" not in ds.attrs
    assert index.skipped == ()
    assert index.failed == ()
