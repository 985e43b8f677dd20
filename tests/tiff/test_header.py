"""parse_header against rasterio/GDAL on real files, plus truncated, hostile and mutated input."""

from __future__ import annotations

import functools
import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.enums import Resampling
from rasterio.windows import Window

from rasteret.errors import HeaderError, UnsupportedFormatError
from rasteret.tiff.header import ImageFileDirectory, IncompleteHeaderError, TiffHeader, parse_header

TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)
COMPRESSION_NAMES = {1: None, 5: "lzw", 7: "jpeg", 8: "deflate", 32773: "packbits",
                     34887: "lerc", 50000: "zstd", 50001: "webp"}  # fmt: skip


# --------------------------------------------------------------------------- real files


def _pixels(count: int, height: int, width: int, dtype: str) -> np.ndarray:
    values = np.arange(count * height * width, dtype=np.int64).reshape(count, height, width)
    if np.dtype(dtype).kind == "f":
        return (values * 0.5).astype(dtype)
    return (values % min(np.iinfo(dtype).max, 251)).astype(dtype)


def _write(path: Path, *, width: int = 300, height: int = 200, count: int = 1,
           dtype: str = "uint16", mask: bool = False, overviews: tuple[int, ...] = (),
           env: dict[str, Any] | None = None, **creation: Any) -> Path:  # fmt: skip
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count,
               "dtype": dtype, "crs": "EPSG:32633", "transform": TRANSFORM, **creation}  # fmt: skip
    with rasterio.Env(**(env or {})), rasterio.open(path, "w", **profile) as dst:
        dst.write(_pixels(count, height, width, dtype))
        if mask:
            valid = np.zeros((height, width), "uint8")
            valid[10:-10, 20:-20] = 255
            dst.write_mask(valid)
        if overviews:
            dst.build_overviews(list(overviews), Resampling.nearest)
    return path


def uint16_deflate_tile256(p: Path) -> Path:
    return _write(p, width=600, height=520, tiled=True, blockxsize=256, blockysize=256,
                  compress="deflate")  # fmt: skip


def uint8_classic_uncompressed_tile128(p: Path) -> Path:
    return _write(p, dtype="uint8", tiled=True, blockxsize=128, blockysize=128)


def int16_bigtiff_tile64(p: Path) -> Path:
    return _write(p, dtype="int16", bigtiff="YES", tiled=True, blockxsize=64, blockysize=64,
                  compress="deflate")  # fmt: skip


def int32_bigendian_tile128_zstd_pred2(p: Path) -> Path:
    return _write(p, dtype="int32", endianness="BIG", tiled=True, blockxsize=128,
                  blockysize=128, compress="zstd", predictor=2)  # fmt: skip


def float32_bigtiff_bigendian_strips7_lzw_pred3(p: Path) -> Path:
    return _write(p, dtype="float32", bigtiff="YES", endianness="BIG", blockysize=7,
                  compress="lzw", predictor=3)  # fmt: skip


def float64_strips_default(p: Path) -> Path:
    return _write(p, dtype="float64")


def uint8_rgb_planar_tile64(p: Path) -> Path:
    return _write(p, dtype="uint8", count=3, interleave="band", tiled=True, blockxsize=64,
                  blockysize=64, compress="deflate")  # fmt: skip


def uint8_rgba_chunky_tile64(p: Path) -> Path:
    return _write(p, dtype="uint8", count=4, interleave="pixel", photometric="RGB", alpha="YES",
                  tiled=True, blockxsize=64, blockysize=64, compress="deflate")  # fmt: skip


def uint8_jpeg_ycbcr_tile64(p: Path) -> Path:
    return _write(p, dtype="uint8", count=3, photometric="YCBCR", tiled=True, blockxsize=64,
                  blockysize=64, compress="jpeg")  # fmt: skip


def float32_lerc_tile128(p: Path) -> Path:
    return _write(p, dtype="float32", tiled=True, blockxsize=128, blockysize=128, compress="lerc")


def uint8_1bit_strips(p: Path) -> Path:
    return _write(p, dtype="uint8", nbits=1)


def int8_uint32_int64_uint64(p: Path, dtype: str) -> Path:
    return _write(p, dtype=dtype, tiled=True, blockxsize=128, blockysize=128, compress="deflate")


def cog_uint16_overviews_mask(p: Path) -> Path:
    src = _write(p.with_suffix(".src.tif"), width=1000, height=700, tiled=True, blockxsize=256,
                 blockysize=256, mask=True, env={"GDAL_TIFF_INTERNAL_MASK": True})  # fmt: skip
    with rasterio.open(src) as s:
        profile = {**s.profile, "driver": "COG", "blocksize": 256, "compress": "deflate",
                   "overview_resampling": "nearest"}  # fmt: skip
        for key in ("tiled", "blockxsize", "blockysize", "interleave"):
            profile.pop(key, None)
        with rasterio.open(p, "w", **profile) as dst:
            dst.write(s.read())
            dst.write_mask(s.read_masks(1))
    return p


def gtiff_internal_mask_overviews(p: Path) -> Path:
    return _write(p, width=1000, height=700, tiled=True, blockxsize=256, blockysize=256,
                  compress="deflate", mask=True, overviews=(2, 4, 8),
                  env={"GDAL_TIFF_INTERNAL_MASK": True})  # fmt: skip


def bigtiff_bigendian_overviews(p: Path) -> Path:
    return _write(p, width=700, height=500, tiled=True, blockxsize=128, blockysize=128,
                  bigtiff="YES", endianness="BIG", overviews=(2, 4))  # fmt: skip


GENERATORS: dict[str, Callable[[Path], Path]] = {
    f.__name__: f
    for f in (
        uint16_deflate_tile256,
        uint8_classic_uncompressed_tile128,
        int16_bigtiff_tile64,
        int32_bigendian_tile128_zstd_pred2,
        float32_bigtiff_bigendian_strips7_lzw_pred3,
        float64_strips_default,
        uint8_rgb_planar_tile64,
        uint8_rgba_chunky_tile64,
        uint8_jpeg_ycbcr_tile64,
        float32_lerc_tile128,
        uint8_1bit_strips,
        cog_uint16_overviews_mask,
        gtiff_internal_mask_overviews,
        bigtiff_bigendian_overviews,
    )
}
for _dtype in ("int8", "uint32", "int64", "uint64"):
    GENERATORS[f"{_dtype}_deflate_tile128"] = functools.partial(
        int8_uint32_int64_uint64, dtype=_dtype
    )


@pytest.fixture(scope="module", params=sorted(GENERATORS))
def tiff_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return GENERATORS[request.param](tmp_path_factory.mktemp("tiff") / f"{request.param}.tif")


def _check_level(ifd: ImageFileDirectory, src: Any, data: bytes, byte_order: str) -> None:
    """Every grid fact of ``ifd`` equals what GDAL reports for the same level."""
    assert (ifd.image_width, ifd.image_height) == (src.width, src.height)
    assert set(src.block_shapes) == {(ifd.tile_height, ifd.tile_width)}
    assert ifd.samples_per_pixel == src.count
    assert ifd.dtype == np.dtype(src.dtypes[0])
    structure = src.tags(ns="IMAGE_STRUCTURE")
    assert ifd.predictor == int(structure.get("PREDICTOR", 1))
    assert COMPRESSION_NAMES[ifd.compression] == (src.compression and src.compression.name)
    planar = src.count > 1 and src.interleaving.name == "band"
    assert ifd.planar_configuration == (2 if planar else 1) or src.count == 1
    # TileOffsets/TileByteCounts equal GDAL's BLOCK_OFFSET/BLOCK_SIZE for every block and plane.
    planes = src.count if ifd.planar_configuration == 2 else 1
    across, down = ifd.tiles_across, ifd.tiles_down
    assert ifd.tile_offsets.dtype == np.uint64
    assert ifd.tile_offsets.size == planes * across * down
    for plane in range(planes):
        for row in range(down):
            for col in range(across):
                i = (plane * down + row) * across + col
                offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=plane + 1)
                size = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=plane + 1)
                assert int(ifd.tile_offsets[i]) == int(offset)
                assert int(ifd.tile_byte_counts[i]) == int(size)
                assert int(offset) + int(size) <= len(data)


def test_every_field_matches_rasterio(tiff_file: Path) -> None:
    data = tiff_file.read_bytes()
    header = parse_header(data, url=str(tiff_file), object_size=len(data))
    assert header.byte_order == {b"II": "<", b"MM": ">"}[data[:2]]
    assert header.bigtiff == (struct.unpack(header.byte_order + "H", data[2:4])[0] == 43)
    assert 0 < header.header_size <= len(data)
    with rasterio.open(tiff_file) as src:
        base = header.main_ifds[0]
        assert base is header.ifds[0]
        _check_level(base, src, data, header.byte_order)
        assert base.is_tiled == bool(src.profile.get("tiled"))
        if src.photometric is not None:
            assert base.photometric == {"minisblack": 1, "rgb": 2, "ycbcr": 6}[src.photometric.name]
        if base.photometric == 6 and base.compression == 7:
            assert base.jpeg_tables is not None
            assert base.jpeg_tables[:2] == b"\xff\xd8"
        if base.compression == 34887:
            assert base.lerc_parameters is not None
            assert len(base.lerc_parameters) >= 2
        if "alpha" in [c.name for c in src.colorinterp]:
            assert base.extra_samples == (2,)  # unassociated alpha
        assert base.model_pixel_scale == (10.0, 10.0, 0.0)
        assert base.model_tiepoint == (0.0, 0.0, 0.0, 500000.0, 6000000.0, 0.0)
        factors = src.overviews(1)
        flags = {f.name for f in src.mask_flag_enums[0]}
        has_mask = "per_dataset" in flags and "alpha" not in flags  # an internal mask IFD
    assert len(header.overviews) == len(factors)
    for level, ifd in enumerate(header.overviews):
        assert ifd.is_reduced_resolution
        assert not ifd.is_mask
        with rasterio.open(tiff_file, overview_level=level) as ovr:
            _check_level(ifd, ovr, data, header.byte_order)
    assert (header.mask_ifd(0) is not None) == has_mask
    for level, image in enumerate(header.main_ifds):
        mask = header.mask_ifd(level)
        assert (mask is not None) == has_mask
        if mask is not None:
            assert mask.new_subfile_type == (5 if level else 4)
            assert (mask.image_width, mask.image_height) == (image.image_width, image.image_height)
            assert mask.bits_per_sample in (1, 8)
            assert mask.dtype == np.uint8
    # The header size is exactly enough to parse everything again.
    again = parse_header(data[: header.header_size])
    _assert_same(header, again)


def _assert_same(a: TiffHeader, b: TiffHeader) -> None:
    assert (a.byte_order, a.bigtiff, a.header_size) == (b.byte_order, b.bigtiff, b.header_size)
    assert len(a.ifds) == len(b.ifds)
    for x, y in zip(a.ifds, b.ifds, strict=True):
        for name in ImageFileDirectory.__slots__:
            vx, vy = getattr(x, name), getattr(y, name)
            if isinstance(vx, np.ndarray):
                np.testing.assert_array_equal(vx, vy)
            else:
                assert vx == vy, name


def test_tile_tables_are_read_only_uint64(tmp_path: Path) -> None:
    header = parse_header(uint16_deflate_tile256(tmp_path / "a.tif").read_bytes())
    ifd = header.ifds[0]
    assert ifd.tile_byte_counts.dtype == np.uint64
    with pytest.raises(ValueError, match="read-only"):
        ifd.tile_offsets[0] = 1


def test_sparse_tiles_are_allowed_like_gdal(tmp_path: Path) -> None:
    path = tmp_path / "sparse.tif"
    profile = {"driver": "GTiff", "width": 128, "height": 128, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": TRANSFORM, "tiled": True, "blockxsize": 64,
               "blockysize": 64, "sparse_ok": True}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:  # only one block is ever written
        dst.write(np.ones((64, 64), "uint8"), 1, window=Window(64, 0, 64, 64))
    data = path.read_bytes()
    ifd = parse_header(data, object_size=len(data)).ifds[0]
    with rasterio.open(path) as src:
        gdal = [src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1)
                for r in range(2) for c in range(2)]  # fmt: skip
    assert [int(o) if o else 0 for o in gdal] == ifd.tile_offsets.tolist()
    assert ifd.tile_byte_counts.tolist().count(0) == gdal.count(None) >= 1


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("generator", [cog_uint16_overviews_mask, bigtiff_bigendian_overviews])
def test_every_prefix_asks_for_more_within_the_header(generator: Callable[[Path], Path],
                                                      tmp_path: Path) -> None:  # fmt: skip
    data = generator(tmp_path / "f.tif").read_bytes()
    full = parse_header(data)
    view = memoryview(data)
    # Every length near the front, then a stride through the rest (the IFDs of a GTiff with
    # overviews added later sit after the pixel data), and the last one.
    lengths = [*range(1, min(full.header_size, 4096)), *range(4096, full.header_size, 509)]
    for length in [*lengths, full.header_size - 1]:
        with pytest.raises(IncompleteHeaderError) as info:
            parse_header(view[:length])
        assert length < info.value.needed <= full.header_size, length
    _assert_same(full, parse_header(data[: full.header_size]))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_growing_prefixes_converge(name: str, tmp_path: Path) -> None:
    data = GENERATORS[name](tmp_path / "f.tif").read_bytes()
    length, asked = 16, []
    header = None
    while header is None:
        assert len(asked) < 20
        try:
            header = parse_header(data[:length], object_size=len(data))
        except IncompleteHeaderError as exc:
            asked.append(exc.needed)
            length = min(max(exc.needed, 2 * length), len(data))
    assert all(n > m for n, m in zip(asked, [16, *asked], strict=False))
    _assert_same(header, parse_header(data))


def test_tile_table_past_the_object_or_buffer() -> None:
    data = bytearray(build_tiff([_image(width=64, height=64, tiles=16)]))
    at = data.index(struct.pack("<HHI", 324, 4, 16), 8)
    data[at + 8 : at + 12] = struct.pack("<I", 10**9)  # TileOffsets values far away
    with pytest.raises(HeaderError, match=r"TileOffsets of IFD 0 to end within the object's"):
        parse_header(bytes(data), url="u", object_size=len(data))
    with pytest.raises(IncompleteHeaderError) as info:
        parse_header(bytes(data))
    assert info.value.needed == 10**9 + 16 * 4


def test_object_size_turns_missing_bytes_into_header_error(tmp_path: Path) -> None:
    data = cog_uint16_overviews_mask(tmp_path / "f.tif").read_bytes()
    size = parse_header(data).header_size
    with pytest.raises(HeaderError, match=r"object's 100 bytes.*s3://b/k\.tif"):
        parse_header(data[:100], url="s3://b/k.tif", object_size=100)
    # The header fits, but the last tile does not: the error names the IFD and the tile.
    header = parse_header(data)
    last = max(int((i.tile_offsets + i.tile_byte_counts).max()) for i in header.ifds)
    with pytest.raises(HeaderError, match=r"tile \d+ of IFD \d+ at s3://b/k\.tif"):
        parse_header(data, url="s3://b/k.tif", object_size=last - 1)
    parse_header(data, url="s3://b/k.tif", object_size=last)
    with pytest.raises(HeaderError):
        parse_header(data[:size], object_size=size)


# --------------------------------------------------------------------------- hand-built TIFFs

_FORMATS = {1: "B", 2: "s", 3: "H", 4: "I", 5: "I", 6: "b", 7: "s", 8: "h", 9: "i", 10: "i",
            11: "f", 12: "d", 13: "I", 16: "Q", 17: "q", 18: "Q"}  # fmt: skip
Entry = tuple[int, int, Any]  # (tag, field type, values: list of numbers or bytes)


def build_tiff(ifds: list[list[Entry]], *, bigtiff: bool = False, order: str = "<",
               tail: bytes = b"", next_offsets: list[int] | None = None) -> bytes:  # fmt: skip
    """A TIFF with the given IFDs, each followed by its out-of-line values, then ``tail``."""
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "H", 43 if bigtiff else 42)
    head += struct.pack(order + "HHQ", 8, 0, 16) if bigtiff else struct.pack(order + "I", 8)
    count_fmt, entry_size, field = ("Q", 20, 8) if bigtiff else ("H", 12, 4)
    offset_fmt = "Q" if bigtiff else "I"
    out = bytearray(head)
    for k, entries in enumerate(ifds):
        start = len(out)
        values_at = start + struct.calcsize(order + count_fmt) + entry_size * len(entries) + field
        table, values = bytearray(struct.pack(order + count_fmt, len(entries))), bytearray()
        for tag, kind, vals in entries:
            raw = bytes(vals) if isinstance(vals, bytes | bytearray) else struct.pack(
                order + _FORMATS[kind] * len(vals), *vals)  # fmt: skip
            count = len(raw) if kind in (1, 2, 6, 7) else len(vals) // (2 if kind in (5, 10) else 1)
            table += struct.pack(order + ("HHQ" if bigtiff else "HHI"), tag, kind, count)
            if len(raw) <= field:
                table += raw.ljust(field, b"\0")
            else:
                table += struct.pack(order + offset_fmt, values_at + len(values))
                values += raw + b"\0" * (len(raw) % 2)
        last = k == len(ifds) - 1
        next_ifd = 0 if last else values_at + len(values)
        if next_offsets is not None:
            next_ifd = next_offsets[k]
        out += table + struct.pack(order + offset_fmt, next_ifd) + values
    return bytes(out + tail)


def _image(width: int = 16, height: int = 16, tile: int = 16, *, tiles: int = 1,
           extra: tuple[Entry, ...] = ()) -> list[Entry]:  # fmt: skip
    return [(256, 4, [width]), (257, 4, [height]), (258, 3, [8]), (322, 3, [tile]),
            (323, 3, [tile]), (324, 4, [0] * tiles), (325, 4, [0] * tiles), *extra]  # fmt: skip


def test_missing_rows_per_strip_is_one_strip_like_gdal(tmp_path: Path) -> None:
    pixels = bytes(range(6 * 5))
    entries = [(256, 3, [6]), (257, 3, [5]), (258, 3, [8]), (262, 3, [1]), (273, 4, [0]),
               (279, 4, [len(pixels)])]  # fmt: skip
    data = build_tiff([entries])
    entries[4] = (273, 4, [len(data)])
    data = build_tiff([entries], tail=pixels)
    (tmp_path / "s.tif").write_bytes(data)
    ifd = parse_header(data).ifds[0]
    assert (ifd.is_tiled, ifd.tile_width, ifd.tile_height) == (False, 6, 5)
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        src = rasterio.open(tmp_path / "s.tif")
    with src:
        assert src.block_shapes == [(5, 6)]
        assert src.read(1).tobytes() == pixels


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("count", [1, 5], ids=["inline", "out-of-line"])
def test_every_field_type(bigtiff: bool, order: str, count: int) -> None:
    ints = {1: [7, 255, 0, 1, 2], 3: [7, 65535, 0, 1, 2], 4: [7, 2**32 - 1, 0, 1, 2],
            6: [-7, 127, 0, 1, 2], 8: [-7, 32767, 0, 1, 2], 9: [-7, 2**31 - 1, 0, 1, 2],
            13: [7, 8, 9, 10, 11], 16: [7, 2**64 - 1, 0, 1, 2], 17: [-7, 2**63 - 1, 0, 1, 2],
            18: [7, 8, 9, 10, 11]}  # fmt: skip
    floats = {11: [1.5, -2.25, 0.0, 3.0, 4.0], 12: [1.1, -2.2, 1e300, 0.0, 5.5]}
    for kind, values in ints.items():
        if kind in (16, 17, 18) and not bigtiff:
            continue
        data = build_tiff(
            [_image(extra=((338, kind, values[:count]),))], bigtiff=bigtiff, order=order
        )
        assert parse_header(data).ifds[0].extra_samples == tuple(values[:count])
    for kind, values in floats.items():
        data = build_tiff(
            [_image(extra=((33922, kind, values[:count]),))], bigtiff=bigtiff, order=order
        )
        expected = np.array(values[:count], dtype="f4" if kind == 11 else "f8").tolist()
        assert parse_header(data).ifds[0].model_tiepoint == tuple(expected)
    for kind, pairs in {5: [3, 2, 1, 4], 10: [-3, 2, 1, 4]}.items():
        data = build_tiff(
            [_image(extra=((33550, kind, pairs[: 2 * min(count, 2)]),))],
            bigtiff=bigtiff,
            order=order,
        )
        got = parse_header(data).ifds[0].model_pixel_scale
        assert got == ((pairs[0] / 2, 0.25) if count > 1 else (pairs[0] / 2,))
    text = b"-9999\0" if count > 1 else b"nan\0"
    blob = bytes(range(1, 1 + 3 * count))
    data = build_tiff([_image(extra=((42113, 2, text), (347, 7, blob), (50674, 4, [4, 1])))],
                      bigtiff=bigtiff, order=order)  # fmt: skip
    ifd = parse_header(data).ifds[0]
    assert (ifd.gdal_nodata, ifd.jpeg_tables, ifd.lerc_parameters) == (
        text[:-1].decode(),
        blob,
        (4, 1),
    )


def test_unknown_tags_and_types_are_skipped_but_not_in_known_tags() -> None:
    data = build_tiff([_image(extra=((65000, 99, b"\1\2\3\4"), (65001, 12, [1.0, 2.0])))])
    header = parse_header(data)
    assert header.ifds[0].image_width == 16
    # The out-of-line value of an unread tag is not part of the header size.
    assert header.header_size == len(data) - 16
    with pytest.raises(HeaderError, match=r"tag 256 as an integer type in IFD 0, got DOUBLE"):
        parse_header(build_tiff([[(256, 12, [16.0]), *_image()[1:]]]))


@pytest.mark.parametrize(
    ("ifds", "match"),
    [
        ([_image(tiles=2)], r"expected 1 TileOffsets values in IFD 0 at u \(.*\), got 2"),
        ([_image(width=17)], r"expected 2 TileOffsets values in IFD 0 at u .*got 1"),
        ([_image(tile=0)], r"positive tile/strip sizes in IFD 0 at u, got 0 x 0"),
        ([_image(width=0)], r"positive image size"),
        ([_image()[:5]], r"expected TileOffsets in IFD 0 at u, got none"),
        ([_image()[:3]], r"expected a tiled or striped TIFF in IFD 0 at u, got no TileOffsets"),
        ([[e for e in _image() if e[0] != 256]], r"expected tag 256 in IFD 0 at u, got none"),
        ([_image(width=2**32 - 1, height=2**32 - 1)], r"at most 2147483648 tiles in IFD 0"),
        ([_image(tile=65535, width=65535, height=65535)], r"tiles of at most 2147483648 pixels"),
        ([_image(extra=((284, 3, [3]),))], r"PlanarConfiguration 1 or 2 in IFD 0 at u, got 3"),
        ([_image(), _image(extra=((277, 3, [0]),))], r"SamplesPerPixel >= 1 in IFD 1 at u"),
        ([_image(extra=((530, 3, [2]),))], r"2 YCbCrSubSampling values"),
    ],
)
def test_inconsistent_headers_are_header_errors(ifds: list[list[Entry]], match: str) -> None:
    with pytest.raises(HeaderError, match=match):
        parse_header(build_tiff(ifds), url="u")


def test_loops_and_bad_offsets() -> None:
    with pytest.raises(HeaderError, match=r"IFD 1 points back to offset 8 \(a loop\)"):
        parse_header(build_tiff([_image(), _image()], next_offsets=[8, 0]), url="u")
    with pytest.raises(HeaderError, match="IFD 1 at or after byte 8 at u, got offset 4"):
        parse_header(build_tiff([_image(), _image()], next_offsets=[4, 0]), url="u")
    data = bytearray(build_tiff([_image()]))
    data[4:8] = struct.pack("<I", 0)
    with pytest.raises(HeaderError, match="first IFD offset at u, got 0"):
        parse_header(bytes(data), url="u")
    data = bytearray(build_tiff([_image()]))
    data[8:10] = struct.pack("<H", 0)
    with pytest.raises(HeaderError, match="1 to 4096 entries in IFD 0 at u, got 0"):
        parse_header(bytes(data), url="u")


@pytest.mark.parametrize(
    ("data", "got"),
    [
        (b"", "got 0 bytes"),
        (b"GIF89a\x01\x00\x01\x00", "got b'GIF89a"),
        (b"II\x2b\x00\x04\x00\x00\x00" + bytes(8), "BigTIFF offset size 8"),
        (b"MM\x00\x2c" + bytes(8), "got b'MM\\x00,"),
        (b"X", "got b'X'"),
    ],
)
def test_not_a_tiff(data: bytes, got: str) -> None:
    with pytest.raises(HeaderError, match=r"expected .*at https://h/x\.tif, got") as info:
        parse_header(data, url="https://h/x.tif")
    assert got in str(info.value)
    if "offset size" not in got:
        assert "b'II*\\x00' or b'MM\\x00*', or BigTIFF version 43" in str(info.value)


@pytest.mark.parametrize(("prefix", "needed"), [(b"I", 8), (b"MM", 8), (b"II*\x00\x08", 8),
                                                (b"II+\x00", 16), (b"MM\x00+\x00\x08", 16)])  # fmt: skip
def test_short_magic_asks_for_the_file_header(prefix: bytes, needed: int) -> None:
    with pytest.raises(IncompleteHeaderError) as info:
        parse_header(prefix)
    assert info.value.needed == needed


def test_mixed_sample_widths_and_odd_dtypes_are_unsupported() -> None:
    mixed = _image(extra=((277, 3, [2]),))
    mixed[2] = (258, 3, [8, 16])
    with pytest.raises(UnsupportedFormatError, match=r"one BitsPerSample .*got \[8, 16\]"):
        parse_header(build_tiff([mixed]))
    odd = _image()
    odd[2] = (258, 3, [12])
    ifd = parse_header(build_tiff([odd])).ifds[0]
    with pytest.raises(UnsupportedFormatError, match="SampleFormat 1 with 12 bits"):
        _ = ifd.dtype
    half = _image(extra=((339, 3, [3]),))
    half[2] = (258, 3, [16])
    assert parse_header(build_tiff([half])).ifds[0].dtype == np.float16


def test_hostile_sizes_fail_fast_without_allocating() -> None:
    # 2**40 tiles claimed by a BigTIFF with 2**40 TileOffsets (LONG8) pointing far away.
    hostile = [(256, 16, [2**24]), (257, 16, [2**24]), (322, 3, [16]), (323, 3, [16]),
               (324, 16, [0]), (325, 16, [0])]  # fmt: skip
    data = bytearray(build_tiff([hostile], bigtiff=True))
    for tag in (324, 325):  # patch the counts to 2**40 and the value offsets past the end
        at = data.index(struct.pack("<HH", tag, 16), 16)
        data[at + 4 : at + 20] = struct.pack("<QQ", 2**40, 2**50)
    tracemalloc.start()
    start = time.perf_counter()
    for object_size in (None, len(data)):
        with pytest.raises(HeaderError, match="at most 2147483648 tiles"):
            parse_header(bytes(data), object_size=object_size)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 2**20
    # A huge count on a tag that is not a tile table is refused before it is read.
    big = bytearray(build_tiff([_image(extra=((42112, 2, b"<x/>\0"),))]))
    at = big.index(struct.pack("<HH", 42112, 2), 8)
    big[at + 4 : at + 8] = struct.pack("<I", 2**31)
    with pytest.raises(HeaderError, match="at most 67108864 bytes"):
        parse_header(bytes(big))


# --------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def cog_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    data = cog_uint16_overviews_mask(tmp_path_factory.mktemp("cog") / "c.tif").read_bytes()
    return data[: parse_header(data).header_size]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_headers_raise_only_header_errors(cog_bytes: bytes, data: st.DataObject) -> None:
    buf = bytearray(cog_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    known_size = data.draw(st.booleans())
    try:
        header = parse_header(bytes(buf[:cut]), object_size=len(buf) if known_size else None)
    except (HeaderError, UnsupportedFormatError, IncompleteHeaderError):
        return
    for ifd in header.ifds:
        assert ifd.tile_offsets.size == ifd.tile_byte_counts.size
        assert ifd.tile_width > 0
        assert ifd.tile_height > 0
