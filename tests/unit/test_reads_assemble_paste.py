"""The paste fast path of assemble_band (validity built in place) equals the general path
(region canvas and validity, then AOI, then fill), on random windows: inside, across and
outside the image edges, with nodata (NaN too), internal masks, casts and polygon AOIs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from rasterio.enums import Resampling

from rasteret.read.assemble import _fill_needed, _region, assemble_band
from rasteret.read.bands import BandRead, TileKey
from rasteret.read.mask import apply_fill


def tiles(rng: np.random.Generator, dtype: str, nodata: float | None, masked: bool):
    """A 300x200 image in 64x48 tiles (edge tiles partial), data and mask keys."""
    across, down = -(-300 // 64), -(-200 // 48)
    data, masks = {}, {}
    for n in range(across * down):
        th = min(48, 200 - (n // across) * 48)
        tw = min(64, 300 - (n % across) * 64)
        arr = rng.integers(0, 50, (1, th, tw)).astype(dtype)
        if nodata is not None:
            arr[rng.random(arr.shape) < 0.1] = nodata
        data[TileKey("h", "", 0, False, 0, n)] = arr
        if masked:
            masks[TileKey("h", "", 0, True, 0, n)] = (rng.random((1, th, tw)) < 0.8).astype(
                "uint8"
            ) * 255
    return data, masks


def paste_read(region, data_keys, mask_keys, nodata, dtype) -> BandRead:
    return BandRead(
        band="b",
        index=0,
        href="h",
        mode="paste",
        level=0,
        sample=0,
        region=region,
        image_size=(300, 200),
        tile_size=(64, 48),
        tiles=data_keys,
        mask_tiles=mask_keys,
        mask_sample=0,
        src_window=None,
        src_transform=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
        src_crs="EPSG:32633",
        nodata=nodata,
        dtype=dtype,
        resampling=Resampling.nearest,
        overlaps=True,
    )


@pytest.mark.parametrize(
    ("dtype", "nodata", "masked", "out_dtype"),
    [
        ("uint16", 0.0, False, "uint16"),
        ("uint16", None, True, "uint16"),
        ("int16", -3.0, True, "float32"),
        ("float32", float("nan"), False, "float32"),
        ("uint8", None, False, "int32"),
    ],
)
@pytest.mark.parametrize("default_fill", [False, True])
@pytest.mark.parametrize("whole_aoi", [False, True])
def test_paste_fast_path_equals_general_path(
    dtype, nodata, masked, out_dtype, default_fill, whole_aoi
) -> None:
    """With the default fill (nodata, else 0) and no AOI cut, the fill is skipped too."""
    rng = np.random.default_rng(7)
    data, masks = tiles(rng, dtype, nodata, masked)
    pick = random.Random(dtype)
    for _ in range(40):
        w, h = pick.randint(1, 180), pick.randint(1, 140)
        col, row = pick.randint(-60, 320 - w // 2), pick.randint(-60, 220 - h // 2)
        region = (col, row, w, h)
        data_keys = tuple(data)  # paste_region skips tiles outside the region
        read = paste_read(region, data_keys, tuple(masks), nodata, dtype)
        inside_aoi = np.ones((h, w), bool) if whole_aoi else rng.random((h, w)) < 0.9
        fill = (0.0 if nodata is None else nodata) if default_fill else 7.0
        decoded = {**data, **masks}
        out = np.empty((h, w), out_dtype)
        out_valid = np.empty((h, w), bool)
        assemble_band(read, decoded, None, inside_aoi, out, out_valid, fill)  # type: ignore[arg-type]
        canvas, valid, _ = _region(read, decoded)
        expected_valid = valid & inside_aoi
        expected = canvas.astype(out_dtype)
        apply_fill(expected, expected_valid, fill)
        np.testing.assert_array_equal(out_valid, expected_valid)
        np.testing.assert_array_equal(out, expected)
        skipped = not _fill_needed(read, out.dtype, inside_aoi, masked, fill)
        assert skipped == (default_fill and whole_aoi and not masked and nodata == nodata)
