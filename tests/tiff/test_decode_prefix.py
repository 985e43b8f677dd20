"""``decode_tile(prefix=)``: decoding only a tile's top rows equals the top of a whole decode.

The fast path (a streamed inflate that stops after the needed rows, the predictor undone on
those rows only) is checked against the general one (the whole tile) on every lossless
fixture of the matrix, with both streaming backends: ISA-L (the dependency) and the standard
library's zlib (the fallback where ISA-L is missing).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from test_decode import LOSSLESS, gdal_block, hand_layout

from rasteret.errors import DecodeError
from rasteret.testing.fixtures import get_fixture_spec
from rasteret.tiff import decode
from rasteret.tiff.decode import PREFIX_SHARE, TileLayout, decode_tile

STOPS_EARLY = {1, 8, 32946}
"""Compressions whose decode stops after the prefix (none, Deflate)."""


def prefixes(rows: int) -> list[int]:
    """First row only, a third, the largest share that stops early, one more, all rows."""
    share = int(PREFIX_SHARE * rows)
    return sorted({1, max(1, rows // 3), share, min(rows, share + 1), rows})


@pytest.fixture(params=["isal", "zlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "zlib":
        monkeypatch.setattr(decode, "_streaming_zlib", zlib)
    return str(request.param)


@pytest.mark.parametrize("name", LOSSLESS)
def test_prefix_equals_the_top_of_the_whole_tile(
    name: str, fixture_paths: dict[str, Path], backend: str
) -> None:
    spec = get_fixture_spec(name)
    layout = hand_layout(spec)
    rows = layout.tile_height if spec.tiled else min(layout.tile_height, spec.height)
    data = gdal_block(fixture_paths[name], 0, 0)
    whole = decode_tile(data, layout, rows=rows)
    for prefix in prefixes(rows):
        top = decode_tile(data, layout, rows=rows, prefix=prefix)
        stops = layout.compression in STOPS_EARLY and (
            layout.compression == 1 or prefix <= PREFIX_SHARE * rows
        )
        assert top.shape[1] == (prefix if stops else rows), (prefix, top.shape)
        assert top.dtype == whole.dtype
        assert top.dtype.isnative
        np.testing.assert_array_equal(top, whole[:, : top.shape[1]], strict=True)


def _deflate_layout(**kw: object) -> TileLayout:
    base: dict[str, object] = {
        "tile_width": 64, "tile_height": 32, "samples": 1, "dtype": "uint16",
        "bits_per_sample": 16, "compression": 8, "predictor": 2,
    }  # fmt: skip
    base.update(kw)
    return TileLayout(**base)  # type: ignore[arg-type]


def test_prefix_writes_into_the_allocator_s_memory(backend: str) -> None:
    layout = _deflate_layout()
    pixels = np.arange(64 * 32, dtype="<u2").reshape(32, 64)
    data = zlib.compress(np.diff(pixels, axis=1, prepend=0).astype("<u2").tobytes())
    given: list[np.ndarray] = []

    def allocate(nbytes: int) -> np.ndarray:
        given.append(np.empty(nbytes, dtype=np.uint8))
        return given[-1]

    top = decode_tile(data, layout, prefix=5, allocate=allocate)
    np.testing.assert_array_equal(top[0], pixels[:5])
    assert len(given) == 1
    assert np.shares_memory(top, given[0])
    assert top.flags.writeable


def test_stored_deflate_blocks_stop_early_too(backend: str) -> None:
    """Level 0 writes stored (uncompressed) Deflate blocks: the prefix still stops inside."""
    layout = _deflate_layout(predictor=1, tile_height=256, tile_width=512)
    pixels = np.random.default_rng(1).integers(0, 65535, (256, 512), dtype="<u2")
    data = zlib.compress(pixels.tobytes(), 0)
    np.testing.assert_array_equal(decode_tile(data, layout, prefix=3)[0], pixels[:3])


def test_a_stream_that_ends_before_the_prefix_is_a_decode_error(backend: str) -> None:
    layout = _deflate_layout(predictor=1)
    short = zlib.compress(np.zeros((4, 64), dtype="<u2").tobytes())  # 4 of 32 rows
    with pytest.raises(DecodeError, match=r"expected at least 1280 bytes .* tile 7 of s3://b/k"):
        decode_tile(short, layout, prefix=10, url="s3://b/k", tile=7)


def test_garbage_with_a_prefix_is_a_decode_error(backend: str) -> None:
    with pytest.raises(DecodeError, match="tile 3 of u"):
        decode_tile(b"\x78\x9c" + b"\xff" * 200, _deflate_layout(), prefix=2, url="u", tile=3)


def test_prefix_out_of_range_is_a_caller_error() -> None:
    layout = _deflate_layout()
    for bad in (0, 33):
        with pytest.raises(ValueError, match="expected 0 < prefix <= 32"):
            decode_tile(b"", layout, prefix=bad)
