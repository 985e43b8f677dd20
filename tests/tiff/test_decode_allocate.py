"""decode_tile into caller-provided memory (``allocate=``) equals decoding into fresh memory,
for every tile of every IFD of the fixture matrix, even when that memory is dirty or recycled
from earlier tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rasteret.read.buffers import BufferPool
from rasteret.testing.fixtures import FIXTURE_MATRIX, FixtureSpec
from rasteret.tiff.decode import TileLayout, decode_tile
from rasteret.tiff.header import parse_header

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def _tiles(path: Path) -> list[tuple[bytes, TileLayout, int | None]]:
    """Every non-empty tile (or strip) of every IFD: bytes, layout and rows."""
    data = path.read_bytes()
    header = parse_header(data, url=str(path))
    out = []
    for ifd in header.ifds:
        layout = TileLayout.from_ifd(ifd, header.byte_order)
        per_plane = ifd.tiles_across * ifd.tiles_down
        for index, (offset, count) in enumerate(
            zip(ifd.tile_offsets, ifd.tile_byte_counts, strict=True)
        ):
            if count == 0:
                continue
            row = (index % per_plane) // ifd.tiles_across
            rows = (
                None
                if ifd.is_tiled
                else min(ifd.tile_height, ifd.image_height - row * ifd.tile_height)
            )
            out.append((data[offset : offset + count], layout, rows))
    return out


class DirtyMemory:
    """An allocator whose memory holds garbage, recording the sizes asked for."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, nbytes: int) -> np.ndarray:
        self.sizes.append(nbytes)
        out = np.empty(nbytes, dtype=np.uint8)
        out.fill(0xA5)
        return out


@pytest.mark.parametrize("spec", FIXTURE_MATRIX, ids=lambda s: s.name)
def test_decoding_into_dirty_memory_equals_fresh_memory(
    spec: FixtureSpec, fixture_paths: dict[str, Path]
) -> None:
    dirty = DirtyMemory()
    for data, layout, rows in _tiles(fixture_paths[spec.name]):
        expected = decode_tile(data, layout, rows=rows)
        got = decode_tile(data, layout, rows=rows, allocate=dirty)
        np.testing.assert_array_equal(got, expected, strict=True)
    if spec.compression != "NONE":  # uncompressed tiles are views of the bytes: no allocation
        assert dirty.sizes


@pytest.mark.parametrize(
    "name",
    [
        "uint16_deflate_pred2_tile256",
        "float32_deflate_pred3_3band_pixel_tile256",
        "uint8_jpeg_ycbcr_3band_pixel_tile256",
        "float32_lerc_deflate_maxz0.01_tile256",
        "bit1_deflate_striped_rows50_701x203",
    ],
)
def test_recycled_buffers_never_change_live_tiles(
    name: str, fixture_paths: dict[str, Path]
) -> None:
    tiles = _tiles(fixture_paths[name])
    expected = [decode_tile(d, layout, rows=rows) for d, layout, rows in tiles]
    pool = BufferPool(max_free_bytes=1 << 30)
    kept = [decode_tile(d, layout, rows=rows, allocate=pool.take) for d, layout, rows in tiles]
    for _ in range(2):  # tiles decoded and dropped: their memory serves the next ones
        for d, layout, rows in reversed(tiles):
            decode_tile(d, layout, rows=rows, allocate=pool.take)
    assert pool.reused > 0
    for got, want in zip(kept, expected, strict=True):  # still intact
        np.testing.assert_array_equal(got, want, strict=True)
    del kept
    again = [decode_tile(d, layout, rows=rows, allocate=pool.take) for d, layout, rows in tiles]
    for got, want in zip(again, expected, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)
