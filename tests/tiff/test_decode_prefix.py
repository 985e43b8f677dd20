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


def first_tile(
    name: str, fixture_paths: dict[str, Path]
) -> tuple[TileLayout, int, bytes, np.ndarray]:
    """The first tile of a fixture: its layout, rows, stored bytes and whole decode."""
    spec = get_fixture_spec(name)
    layout = hand_layout(spec)
    rows = layout.tile_height if spec.tiled else min(layout.tile_height, spec.height)
    data = gdal_block(fixture_paths[name], 0, 0)
    return layout, rows, data, decode_tile(data, layout, rows=rows)


@pytest.fixture(params=["isal", "zlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "zlib":
        monkeypatch.setattr(decode, "_streaming_zlib", zlib)
    return str(request.param)


@pytest.mark.parametrize("name", LOSSLESS)
def test_prefix_equals_the_top_of_the_whole_tile(
    name: str, fixture_paths: dict[str, Path], backend: str
) -> None:
    layout, rows, data, whole = first_tile(name, fixture_paths)
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


# -- PartialTile: a prefix decode resumed later -----------------------------------------------

DEFLATE = [n for n in LOSSLESS if hand_layout(get_fixture_spec(n)).compression in {8, 32946}]
"""The lossless fixtures a PartialTile decodes (Deflate)."""


def steps(rows: int) -> list[list[int]]:
    """Orders in which a tile's rows are asked for: one go, growing prefixes, the same
    prefix twice, and a shallower request after a deeper one."""
    third = max(1, rows // 3)
    return [[rows], [1, third, rows], [third, third, min(rows, third + 1)], [rows // 2 or 1, 1]]


@pytest.mark.parametrize("name", DEFLATE)
def test_resumed_rows_equal_the_whole_tile(
    name: str, fixture_paths: dict[str, Path], backend: str
) -> None:
    layout, rows, data, whole = first_tile(name, fixture_paths)
    for order in steps(rows):
        tile = decode.PartialTile(data, layout, rows=rows)
        for count in order:
            top = tile.decode_rows(count)
            assert tile.decoded == max(order[: order.index(count) + 1])
            np.testing.assert_array_equal(top, whole[:, :count], strict=True)
        assert tile.complete == (max(order) == rows)


def test_a_resumed_tile_lets_go_of_its_input_once_complete(backend: str) -> None:
    layout = _deflate_layout(predictor=1, tile_height=64, tile_width=256)
    pixels = np.random.default_rng(2).integers(0, 65535, (64, 256), dtype="<u2")
    data = zlib.compress(pixels.tobytes())
    tile = decode.PartialTile(data, layout)
    tile.decode_rows(8)
    held = tile.nbytes
    assert held > pixels.nbytes  # the buffer and the compressed input
    tile.decode_rows(64)
    assert tile.complete
    assert tile.nbytes == pixels.nbytes < held
    np.testing.assert_array_equal(tile.decode_rows(64)[0], pixels)


def test_one_bit_tiles_resume_into_their_unpacked_rows(backend: str) -> None:
    layout = TileLayout(tile_width=20, tile_height=6, samples=1, dtype="uint8",
                        bits_per_sample=1, compression=8)  # fmt: skip
    bits = np.random.default_rng(3).integers(0, 2, (6, 20), dtype=np.uint8)
    data = zlib.compress(np.packbits(bits, axis=1).tobytes())
    tile = decode.PartialTile(data, layout)
    np.testing.assert_array_equal(tile.decode_rows(2)[0], bits[:2])
    np.testing.assert_array_equal(tile.decode_rows(6)[0], bits)


def test_concurrent_callers_decode_each_row_once(backend: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    layout = _deflate_layout(tile_height=256, tile_width=256)
    pixels = np.random.default_rng(4).integers(0, 65535, (256, 256), dtype="<u2")
    data = zlib.compress(np.diff(pixels, axis=1, prepend=0).astype("<u2").tobytes())
    tile = decode.PartialTile(data, layout)
    wanted = [int(n) for n in np.random.default_rng(5).integers(1, 257, 64)]
    with ThreadPoolExecutor(4) as pool:
        tops = list(pool.map(tile.decode_rows, wanted))
    for count, top in zip(wanted, tops, strict=True):
        np.testing.assert_array_equal(top[0], pixels[:count])
    assert tile.decoded == max(wanted)


def test_a_stream_too_short_for_the_deeper_rows_fails_every_later_call(backend: str) -> None:
    layout = _deflate_layout(predictor=1)
    short = zlib.compress(np.zeros((4, 64), dtype="<u2").tobytes())  # 4 of 32 rows
    tile = decode.PartialTile(short, layout, url="s3://b/k", tile=7)
    assert tile.decode_rows(2).shape == (1, 2, 64)
    for _ in range(2):
        with pytest.raises(
            DecodeError, match=r"expected at least 1280 bytes .* tile 7 of s3://b/k"
        ):
            tile.decode_rows(10)
    assert tile.decoded == 2


def test_only_deflate_tiles_decode_in_parts() -> None:
    from rasteret.errors import UnsupportedFormatError

    with pytest.raises(UnsupportedFormatError, match=r"Deflate .* got compression 5 \(LZW\)"):
        decode.PartialTile(b"", _deflate_layout(compression=5))


def test_a_stream_longer_than_the_tile_fails_at_its_last_row_as_a_whole_decode_does(
    backend: str,
) -> None:
    layout = _deflate_layout(predictor=1)
    longer = zlib.compress(np.zeros((33, 64), dtype="<u2").tobytes())  # 33 rows for 32
    tile = decode.PartialTile(longer, layout, url="u", tile=2)
    assert tile.decode_rows(20).shape == (1, 20, 64)  # a prefix does not see the end
    with pytest.raises(DecodeError, match="tile 2 of u, got more than 4096 bytes"):
        tile.decode_rows(32)
    with pytest.raises(DecodeError, match="tile 2 of u"):
        decode_tile(longer, layout, url="u", tile=2)


def test_a_bad_checksum_fails_the_decode_that_reaches_the_end(backend: str) -> None:
    layout = _deflate_layout(predictor=1)
    stream = bytearray(zlib.compress(np.arange(32 * 64, dtype="<u2").tobytes()))
    stream[-1] ^= 0xFF  # the Adler-32 trailer
    tile = decode.PartialTile(bytes(stream), layout, url="u", tile=4)
    tile.decode_rows(8)
    with pytest.raises(DecodeError, match="tile 4 of u"):
        tile.decode_rows(32)
