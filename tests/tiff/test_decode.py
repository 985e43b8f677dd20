"""Unit tests of rasteret.tiff.decode on real tiles of the fixture matrix.

Tile bytes are located with GDAL's own block offsets (the ``TIFF`` metadata domain), and
layouts are written by hand from each fixture's spec, so these tests do not depend on
rasteret's header parser (except JPEG, whose tables come from it). Expected pixels are the
generator's array for lossless codecs and rasterio's read for lossy ones.
"""

from __future__ import annotations

import pickle
import tracemalloc
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rasteret.errors import DecodeError, UnsupportedFormatError
from rasteret.testing.fixtures import FixtureSpec, fixture_data, get_fixture_spec
from rasteret.tiff.decode import (
    COMPRESSION_NAMES,
    SUPPORTED_COMPRESSIONS,
    TileLayout,
    decode_tile,
    empty_tile,
)
from rasteret.tiff.header import parse_header

CODES = {"NONE": 1, "LZW": 5, "JPEG": 7, "DEFLATE": 8, "PACKBITS": 32773, "LZMA": 34925,
         "ZSTD": 50000, "WEBP": 50001, "LERC": 34887, "LERC_DEFLATE": 34887,
         "LERC_ZSTD": 34887}  # fmt: skip
LERC_STAGE = {"LERC": 0, "LERC_DEFLATE": 1, "LERC_ZSTD": 2}


def hand_layout(spec: FixtureSpec) -> TileLayout:
    """The layout a reader must derive for ``spec``, written from its creation options."""
    opts = spec.creation_options
    tiled = opts.get("TILED") == "YES"
    chunky = spec.count > 1 and opts.get("INTERLEAVE", "PIXEL") == "PIXEL"
    dtype = np.dtype(spec.dtype)
    predictor = opts.get("PREDICTOR", "1")
    return TileLayout(
        tile_width=int(opts["BLOCKXSIZE"]) if tiled else spec.width,
        tile_height=int(opts["BLOCKYSIZE"]),
        samples=spec.count if chunky else 1,
        dtype=dtype.name,
        bits_per_sample=1 if spec.nbits == 1 else dtype.itemsize * 8,
        big_endian=opts.get("ENDIANNESS") == "BIG",
        compression=CODES[spec.compression],
        predictor=int(predictor),
        planar_configuration=1 if chunky or spec.count == 1 else 2,
        lerc_parameters=(4, LERC_STAGE[spec.compression]) if "LERC" in spec.compression else None,
    )


def gdal_block(path: Path, x: int, y: int, band: int = 1) -> bytes:
    """The stored bytes of block (x, y) of ``band``, located by GDAL."""
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band))
        size = int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=band))
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


def expected_block(spec: FixtureSpec, layout: TileLayout, x: int, y: int, band: int = 1):
    """The generator's pixels of block (x, y): (samples, rows, cols) clipped to the image."""
    data = fixture_data(spec)
    bands = slice(None) if layout.samples > 1 else slice(band - 1, band)
    rows = slice(y * layout.tile_height, (y + 1) * layout.tile_height)
    cols = slice(x * layout.tile_width, (x + 1) * layout.tile_width)
    return data[bands, rows, cols]


def check_block(spec: FixtureSpec, path: Path, x: int, y: int, band: int = 1) -> np.ndarray:
    layout = hand_layout(spec)
    exp = expected_block(spec, layout, x, y, band)
    rows = None if spec.tiled else exp.shape[1]
    out = decode_tile(gdal_block(path, x, y, band), layout, rows=rows, url=path.name, tile=0)
    assert out.shape == (layout.samples, rows or layout.tile_height, layout.tile_width)
    assert out.dtype == np.dtype(spec.dtype)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out[:, : exp.shape[1], : exp.shape[2]], exp, strict=True)
    return out


LOSSLESS = [
    # every codec
    "uint16_none_tile256_300x200", "uint16_deflate_tile512x256", "uint16_lzw_tile256",
    "uint16_packbits_tile256", "uint16_lzma_tile256", "uint16_zstd_tile256",
    "float32_lerc_tile256", "uint16_lerc_zstd_tile256", "float64_lerc_zstd_tile256",
    "int8_lerc_tile256", "uint8_lerc_3band_pixel_tile256",
    "float32_lerc_deflate_4band_band_tile256_300x200", "uint8_webp_lossless_4band_pixel_tile256",
    # predictor 2 on every integer width, predictor 3 on both float widths, 2 on a float
    "uint8_deflate_pred2_tile256", "int8_deflate_pred2_tile256", "uint16_deflate_pred2_tile256",
    "int16_deflate_pred2_tile256", "uint32_deflate_pred2_tile256", "int32_deflate_pred2_tile256",
    "uint64_deflate_pred2_tile256", "int64_deflate_pred2_tile256", "float32_deflate_pred2_tile256",
    "float32_deflate_pred3_tile256", "float64_zstd_pred3_tile256", "float32_lzw_pred3_tile256",
    # chunky predictors (per sample), planar, big-endian, BigTIFF, nodata NaN
    "uint8_deflate_pred2_3band_pixel_tile256", "int16_lzw_pred2_4band_pixel_tile512x256",
    "float32_deflate_pred3_3band_pixel_tile256", "float64_deflate_pred3_4band_pixel_tile256_300x200",
    "int64_zstd_pred2_3band_band_tile256_300x200", "uint16_none_bigendian_tile256_300x200",
    "uint16_deflate_pred2_bigendian_tile256", "int32_lzw_pred2_3band_pixel_bigendian_tile256",
    "int64_zstd_pred2_bigendian_tile256_300x200", "float32_deflate_pred3_bigendian_tile256",
    "float64_deflate_pred3_3band_pixel_bigendian_tile256_300x200", "float32_lerc_bigendian_tile256",
    "uint8_none_bigtiff_bigendian_tile256", "float32_deflate_pred3_nodatanan_tile256",
    "float32_lerc_nodatanan_tile256",
    # 1-bit, strips
    "bit1_none_tile256", "bit1_deflate_striped_rows50_701x203",
]  # fmt: skip


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_tiles_equal_the_written_pixels(name: str, fixture_paths: dict[str, Path]):
    spec = get_fixture_spec(name)
    layout = hand_layout(spec)
    across = -(-spec.width // layout.tile_width)
    down = -(-spec.height // layout.tile_height)
    for x, y in {(0, 0), (across - 1, down - 1)}:  # an inner and an edge tile
        check_block(spec, fixture_paths[name], x, y, band=spec.count if layout.samples == 1 else 1)


def test_one_bit_tiles_unpack_to_zero_and_one(fixture_paths: dict[str, Path]) -> None:
    spec = get_fixture_spec("bit1_deflate_striped_rows50_701x203")  # 701 px: padded rows
    out = check_block(spec, fixture_paths[spec.name], 0, 1)
    assert out.dtype == np.uint8
    assert set(np.unique(out).tolist()) == {0, 1}


@pytest.mark.parametrize(
    "name", ["uint16_none_striped_rows48", "int16_deflate_pred2_striped_rows64",
             "float32_lzw_pred3_3band_band_striped_rows48", "uint8_lzw_3band_pixel_striped_rows48",
             "float64_none_bigendian_striped_rows16_300x200"],
)  # fmt: skip
def test_short_last_strip_decodes_with_rows(name: str, fixture_paths: dict[str, Path]) -> None:
    spec = get_fixture_spec(name)
    layout = hand_layout(spec)
    last = (spec.height - 1) // layout.tile_height
    assert spec.height % layout.tile_height, "fixture must have a short last strip"
    out = check_block(
        spec, fixture_paths[name], 0, last, band=spec.count if layout.samples == 1 else 1
    )
    assert out.shape[1] == spec.height % layout.tile_height


def test_padded_last_strip_is_cropped_to_rows() -> None:
    layout = TileLayout(tile_width=5, tile_height=4, samples=1, dtype="uint16",
                        bits_per_sample=16, compression=8)  # fmt: skip
    full = np.arange(20, dtype="<u2").reshape(4, 5)
    out = decode_tile(zlib.compress(full.tobytes()), layout, rows=3)
    np.testing.assert_array_equal(out[0], full[:3])


def test_deflate_code_32946_equals_adobe_deflate(fixture_paths: dict[str, Path]) -> None:
    spec = get_fixture_spec("uint16_deflate_pred2_tile256")
    layout = hand_layout(spec)
    data = gdal_block(fixture_paths[spec.name], 1, 0)
    adobe = decode_tile(data, layout)
    old = decode_tile(data, TileLayout(**{**_fields(layout), "compression": 32946}))
    np.testing.assert_array_equal(adobe, old)


def _fields(layout: TileLayout) -> dict[str, object]:
    return {name: getattr(layout, name) for name in TileLayout.__slots__}


def _rasterio_block(path: Path, spec: FixtureSpec, layout: TileLayout, x: int, y: int):
    with rasterio.open(path) as src:
        win = Window(
            x * layout.tile_width, y * layout.tile_height, layout.tile_width, layout.tile_height
        ).intersection(Window(0, 0, src.width, src.height))
        return src.read(window=win)


@pytest.mark.parametrize(
    "name", ["uint8_jpeg_ycbcr_3band_pixel_tile256", "uint8_jpeg_rgb_3band_pixel_tile256",
             "uint8_jpeg_tile256", "uint8_jpeg_3band_band_tile256", "uint8_jpeg_4band_pixel_tile256",
             "uint8_jpeg_minisblack_3band_pixel_tile256",
             "uint8_jpeg_ycbcr_3band_pixel_mask_striped_rows64", "uint8_webp_3band_pixel_tile256",
             "uint8_webp_4band_pixel_tile512", "float32_lerc_deflate_maxz0.01_tile256"],
)  # fmt: skip
def test_lossy_tiles_equal_gdal(name: str, fixture_paths: dict[str, Path]) -> None:
    path = fixture_paths[name]
    data = path.read_bytes()
    header = parse_header(data)
    ifd = header.ifds[0]
    layout = TileLayout.from_ifd(ifd, header.byte_order)
    spec = get_fixture_spec(name)
    last = len(ifd.tile_offsets) // (1 if layout.samples > 1 else spec.count) - 1
    for index in (0, last):
        y, x = divmod(index, ifd.tiles_across)
        rows = (
            None if ifd.is_tiled else min(ifd.tile_height, ifd.image_height - y * ifd.tile_height)
        )
        start, size = int(ifd.tile_offsets[index]), int(ifd.tile_byte_counts[index])
        out = decode_tile(data[start : start + size], layout, rows=rows)
        theirs = _rasterio_block(path, spec, layout, x, y)
        if layout.samples == 1:
            theirs = theirs[:1]
        np.testing.assert_array_equal(out[:, : theirs.shape[1], : theirs.shape[2]], theirs)


def test_jpeg_ycbcr_is_returned_as_rgb(fixture_paths: dict[str, Path]) -> None:
    name = "uint8_jpeg_ycbcr_3band_pixel_tile256"
    data = fixture_paths[name].read_bytes()
    header = parse_header(data)
    ifd = header.ifds[0]
    assert ifd.photometric == 6
    start, size = int(ifd.tile_offsets[0]), int(ifd.tile_byte_counts[0])
    out = decode_tile(data[start : start + size], TileLayout.from_ifd(ifd, header.byte_order))
    written = fixture_data(get_fixture_spec(name))[:, :256, :256].astype(np.int16)
    assert np.abs(out.astype(np.int16) - written).mean() < 4  # YCbCr planes would be far off


@pytest.mark.skipif(not imagecodecs.JPEG2K.available, reason="imagecodecs built without JPEG 2000")
def test_jpeg2000_tiles_decode() -> None:
    # GDAL's GTiff cannot write JPEG 2000 tiles, so the tile is encoded (losslessly) here.
    spec = get_fixture_spec("uint16_none_4band_pixel_tile256_300x200")
    tile = np.ascontiguousarray(fixture_data(spec)[:3, :128, :96].transpose(1, 2, 0))
    encoded = imagecodecs.jpeg2k_encode(tile, level=0)  # level 0: reversible
    layout = TileLayout(tile_width=96, tile_height=128, samples=3, dtype="uint16",
                        bits_per_sample=16, compression=34712)  # fmt: skip
    np.testing.assert_array_equal(decode_tile(encoded, layout), tile.transpose(2, 0, 1))


def test_uncompressed_little_endian_tiles_are_zero_copy(fixture_paths: dict[str, Path]) -> None:
    spec = get_fixture_spec("uint16_none_tile256_300x200")
    data = gdal_block(fixture_paths[spec.name], 0, 0)
    out = decode_tile(data, hand_layout(spec))
    assert np.shares_memory(out, np.frombuffer(data, dtype=np.uint8))


def test_empty_tile_is_fill_of_the_layout_dtype() -> None:
    layout = TileLayout(tile_width=16, tile_height=8, samples=3, dtype="float32",
                        bits_per_sample=32)  # fmt: skip
    tile = empty_tile(layout, float("nan"), rows=5)
    assert tile.shape == (3, 5, 16)
    assert tile.dtype == np.float32
    assert np.isnan(tile).all()
    assert empty_tile(layout, 7).shape == (3, 8, 16)


def test_layout_from_ifd_matches_hand_layout_and_pickles(fixture_paths: dict[str, Path]) -> None:
    for name in ["int32_lzw_pred2_3band_pixel_bigendian_tile256",
                 "float32_lerc_deflate_4band_band_tile256_300x200",
                 "float64_none_bigendian_striped_rows16_300x200", "bit1_none_tile256"]:  # fmt: skip
        header = parse_header(fixture_paths[name].read_bytes())
        layout = TileLayout.from_ifd(header.ifds[0], header.byte_order)
        hand = hand_layout(get_fixture_spec(name))
        assert _fields(layout) | {"photometric": 1} == _fields(hand)  # photometric: GDAL's pick
        assert pickle.loads(pickle.dumps(layout)) == layout


def test_decoding_is_thread_safe(fixture_paths: dict[str, Path]) -> None:
    spec = get_fixture_spec("float32_deflate_pred3_3band_pixel_tile256")
    layout = hand_layout(spec)
    blocks = [gdal_block(fixture_paths[spec.name], x, y) for x in range(3) for y in range(2)]
    serial = [decode_tile(b, layout) for b in blocks]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda b: decode_tile(b, layout), blocks * 4))
    for i, out in enumerate(threaded):
        np.testing.assert_array_equal(out, serial[i % len(blocks)])


# --- errors -------------------------------------------------------------------------------

SMALL = {"tile_width": 32, "tile_height": 16, "samples": 1, "dtype": "uint16",
         "bits_per_sample": 16}  # fmt: skip
RGB = {"tile_width": 32, "tile_height": 16, "samples": 3, "dtype": "uint8",
       "bits_per_sample": 8}  # fmt: skip


@pytest.mark.parametrize(
    ("code", "name"),
    [(2, "CCITT RLE"), (6, "old-style JPEG"), (50002, "JPEG XL"), (4242, "unknown")],
)
def test_unknown_compression_is_unsupported(code: int, name: str) -> None:
    layout = TileLayout(**SMALL, compression=code)  # type: ignore[arg-type]
    with pytest.raises(
        UnsupportedFormatError, match=rf"compression {code} \({name}\).*tile 3 of s3://b/k.tif"
    ):
        decode_tile(b"\x00" * 64, layout, url="s3://b/k.tif", tile=3)


def test_every_named_supported_code_has_a_name() -> None:
    assert all(code in COMPRESSION_NAMES for code in SUPPORTED_COMPRESSIONS)


@pytest.mark.parametrize("code", sorted(SUPPORTED_COMPRESSIONS))
def test_garbage_bytes_raise_decode_error(code: int) -> None:
    garbage = np.random.default_rng(code).integers(0, 256, 300, dtype=np.uint8).tobytes()
    kwargs = RGB if code in (7, 50001) else SMALL
    layout = TileLayout(**kwargs, compression=code, lerc_parameters=(4, 0))  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match=r"tile 7 of https://h/x.tif"):
        decode_tile(garbage, layout, url="https://h/x.tif", tile=7)


def _encode_bytes(code: int, raw: bytes) -> bytes:
    encoders = {5: imagecodecs.lzw_encode, 8: zlib.compress, 32946: zlib.compress,
                32773: imagecodecs.packbits_encode, 34925: imagecodecs.lzma_encode,
                50000: imagecodecs.zstd_encode}  # fmt: skip
    return bytes(encoders[code](raw))


BYTE_CODES = [5, 8, 32773, 32946, 34925, 50000]


@pytest.mark.parametrize("code", BYTE_CODES)
def test_oversize_output_is_refused_without_allocating_it(code: int) -> None:
    layout = TileLayout(**SMALL, compression=code)  # type: ignore[arg-type]
    size = 4 * 1024 * 1024  # 4 MiB of zeros for a 1 KiB tile
    # imagecodecs' PackBits encoder is slow on long runs; a run of 128 zeros is b"\x81\x00".
    bomb = b"\x81\x00" * (size // 128) if code == 32773 else _encode_bytes(code, bytes(size))
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match=r"expected 1024 bytes .*tile 1 of <bytes>, got"):
            decode_tile(bomb, layout, tile=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, f"decoder allocated {peak} bytes for a 1 KiB tile"


@pytest.mark.parametrize("code", [*BYTE_CODES, 1])
def test_undersize_output_is_refused(code: int) -> None:
    layout = TileLayout(**SMALL, compression=code)  # type: ignore[arg-type]
    raw = bytes(range(256)) * 3  # 768 of 1024 bytes
    data = raw if code == 1 else _encode_bytes(code, raw)
    with pytest.raises(DecodeError, match=r"expected 1024 bytes .* got 768 bytes"):
        decode_tile(data, layout)


@pytest.mark.parametrize(
    ("code", "encode"),
    [(7, lambda a: imagecodecs.jpeg8_encode(a)), (50001, lambda a: imagecodecs.webp_encode(a)),
     (34887, lambda a: imagecodecs.lerc_encode(a))],
)  # fmt: skip
def test_image_larger_than_the_tile_is_refused(code: int, encode) -> None:
    layout = TileLayout(**RGB, compression=code, lerc_parameters=(4, 0))  # type: ignore[arg-type]
    big = np.zeros((4096, 4096, 3), dtype=np.uint8)
    with pytest.raises(DecodeError, match=r"tile 2 of "):
        decode_tile(encode(big), layout, tile=2)


def test_lerc_second_stage_bomb_is_refused() -> None:
    layout = TileLayout(**SMALL, compression=34887, lerc_parameters=(4, 1))  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match=r"LERC blob of at most"):
        decode_tile(zlib.compress(bytes(8 * 1024 * 1024)), layout)


def test_bad_predictors_are_unsupported() -> None:
    raw = zlib.compress(bytes(1024))
    with pytest.raises(UnsupportedFormatError, match=r"floating-point samples with Predictor 3"):
        decode_tile(raw, TileLayout(**SMALL, compression=8, predictor=3))  # type: ignore[arg-type]
    with pytest.raises(UnsupportedFormatError, match=r"Predictor 1, 2 or 3 .* got 7"):
        decode_tile(raw, TileLayout(**SMALL, compression=8, predictor=7))  # type: ignore[arg-type]


def test_rows_out_of_range_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match=r"0 < rows <= 16"):
        decode_tile(bytes(1024), TileLayout(**SMALL), rows=17)  # type: ignore[arg-type]


def test_subsampled_ycbcr_outside_jpeg_is_unsupported() -> None:
    layout = TileLayout(**RGB, compression=8, photometric=6, ycbcr_subsampling=(2, 2))  # type: ignore[arg-type]
    with pytest.raises(
        UnsupportedFormatError, match=r"YCbCrSubSampling \(2, 2\) with Adobe Deflate"
    ):
        decode_tile(zlib.compress(bytes(1024)), layout)


def test_image_codec_errors_name_the_expected_tile() -> None:
    layout = TileLayout(**RGB, compression=50001)  # type: ignore[arg-type]
    small = imagecodecs.webp_encode(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(DecodeError, match=r"expected a 32x16 uint8 image with 3 sample\(s\)"):
        decode_tile(small, layout)


@pytest.mark.parametrize("big_endian", [False, True])
def test_float16_with_floating_point_predictor(big_endian: bool) -> None:
    # GDAL < 3.11 cannot write Float16 GeoTIFFs: the tile is predicted/compressed here.
    rng = np.random.default_rng(16)
    tile = (rng.normal(0, 100, (16, 32, 2))).astype(np.float16)
    predicted = imagecodecs.floatpred_encode(tile, axis=-2)
    layout = TileLayout(tile_width=32, tile_height=16, samples=2, dtype="float16",
                        bits_per_sample=16, compression=50000, predictor=3,
                        big_endian=big_endian)  # fmt: skip
    out = decode_tile(imagecodecs.zstd_encode(predicted.tobytes()), layout)
    np.testing.assert_array_equal(out, tile.transpose(2, 0, 1))
    plain = TileLayout(**{**_fields(layout), "predictor": 1, "compression": 1})
    stored = tile.astype(">f2" if big_endian else "<f2").tobytes()
    np.testing.assert_array_equal(decode_tile(stored, plain), tile.transpose(2, 0, 1))
