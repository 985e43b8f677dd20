"""Property: the planned, coalesced, de-duplicated, cached read equals a naive read.

The naive read takes each tile under the window on its own: reads its bytes with a plain
file seek, decodes it alone, and copies its pixels one tile at a time. Any difference would be
a bug in planning, coalescing, the decode pipeline (whole tiles or only their top rows), the
cache or the whole-tile paste.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from read_support import band_metadata, record

from rasteret.ingest.metadata import BandMetadata
from rasteret.read import ReadOptions, read_chips
from rasteret.read.cache import clear_tile_cache
from rasteret.tiff.decode import decode_tile

FILES = (
    "uint16_deflate_pred2_tile256",
    "uint8_deflate_pred2_3band_pixel_tile256",
    "float32_deflate_pred3_3band_band_tile256",
    "uint8_lzw_3band_pixel_striped_rows48",
    "int16_none_sparse_nodata-1_tile256",
    "uint16_deflate_tile512x256",
    "int16_lzw_pred2_4band_pixel_tile512x256",
)


def naive_window(meta: BandMetadata, col: int, row: int, width: int, height: int) -> np.ndarray:
    """Pixels of ``meta``'s band under a window, one tile at a time; NaN-free fill 0."""
    lv = meta.level
    out = np.zeros((height, width), dtype=meta.dtype)
    layout = lv.layout(meta.byte_order)
    sample = 0 if lv.planar_configuration == 2 else meta.band_index
    with open(meta.href, "rb") as fh:
        for number in range(lv.tiles_across * lv.tiles_down):
            tile_row, tile_col = divmod(number, lv.tiles_across)
            y0, x0 = tile_row * lv.tile_height, tile_col * lv.tile_width
            rows = lv.tile_rows(tile_row)
            y1 = min(y0 + rows, lv.image_height)
            x1 = min(x0 + lv.tile_width, lv.image_width)
            # the part of this tile inside both the image and the window
            top, bottom = max(y0, row), min(y1, row + height)
            left, right = max(x0, col), min(x1, col + width)
            if top >= bottom or left >= right:
                continue
            start, end = lv.tile_range(number)
            if end == start:
                pixels = np.full((rows, lv.tile_width), meta.nodata or 0, dtype=meta.dtype)
            else:
                fh.seek(start)
                pixels = decode_tile(fh.read(end - start), layout, rows=rows)[sample]
            out[top - row : bottom - row, left - col : right - col] = pixels[
                top - y0 : bottom - y0, left - x0 : right - x0
            ]
    return out


windows = st.tuples(
    st.integers(-60, 560), st.integers(-60, 320), st.integers(1, 300), st.integers(1, 200)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(FILES),
    wins=st.lists(windows, min_size=1, max_size=3),
    band_order=st.permutations([0, 1, 2, 3]),
    max_gap=st.sampled_from([0, 300, 1 << 20]),
    max_size=st.sampled_from([1, 20_000, 8 << 20]),
    warm=st.booleans(),
    whole=st.booleans(),
)
def test_planned_read_equals_naive_tile_by_tile_read(
    fixture_paths: dict[str, Path],
    name: str,
    wins: list[tuple[int, int, int, int]],
    band_order: list[int],
    max_gap: int,
    max_size: int,
    warm: bool,
    whole: bool,
) -> None:
    path = fixture_paths[name]
    probe = band_metadata(path)
    count = probe.level.samples_per_pixel
    bands = [f"b{i + 1}" for i in band_order if i < count]
    rec = record("r", path, count)
    a, _, c, _, e, f = probe.level.transform
    aois = [
        shapely.box(c + a * x, f + e * (y + h), c + a * (x + w), f + e * y) for x, y, w, h in wins
    ]
    if not warm:
        clear_tile_cache()
    opts = ReadOptions(
        max_gap=max_gap,
        max_coalesced_size=max_size,
        cache_mb=0 if not warm else 64,
        whole_tiles=whole,  # else Deflate tiles stop inflating below the windows' last rows
    )
    if warm:  # the windows' top thirds first: their tiles are cached decoded in part, and
        # the read below resumes them (PartialTile) for its deeper rows
        tops = [
            shapely.box(c + a * x, f + e * (y + max(1, h // 3)), c + a * (x + w), f + e * y)
            for x, y, w, h in wins
        ]
        read_chips([rec], tops, probe.crs or probe.epsg, bands, replace(opts, whole_tiles=False))
    chips = read_chips([rec], aois, probe.crs or probe.epsg, bands, opts)
    by_aoi = {chip.aoi_index: chip for chip in chips.chips}
    for i, (x, y, w, h) in enumerate(wins):
        inside_image = x < probe.level.image_width and x + w > 0 and y < probe.level.image_height
        if not (inside_image and y + h > 0):
            assert i not in by_aoi
            continue
        chip = by_aoi[i]
        assert chip.data.shape == (len(bands), h, w)
        for channel, band in enumerate(bands):
            meta = rec.bands[band]
            assert meta is not None
            expected = naive_window(meta, x, y, w, h)
            in_image = np.zeros((h, w), dtype=bool)
            in_image[
                max(0, -y) : probe.level.image_height - y, max(0, -x) : probe.level.image_width - x
            ] = True
            nodata = (
                np.zeros((h, w), dtype=bool) if meta.nodata is None else expected == meta.nodata
            )
            valid = in_image & ~nodata
            np.testing.assert_array_equal(chip.valid[channel], valid)
            np.testing.assert_array_equal(chip.data[channel][valid], expected[valid])
            assert (chip.data[channel][~valid] == chips.fill_values[channel]).all()


@pytest.mark.parametrize("name", FILES[:2])
def test_naive_reference_matches_rasterio(fixture_paths: dict[str, Path], name: str) -> None:
    """The naive reference itself agrees with GDAL, so the property compares to the truth."""
    import rasterio
    from rasterio.windows import Window

    path = fixture_paths[name]
    meta = band_metadata(path)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(
            naive_window(meta, 100, 50, 300, 200), src.read(1, window=Window(100, 50, 300, 200))
        )
