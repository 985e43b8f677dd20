"""Turn one IFD's entries into the fields of :class:`~rasteret.tiff.header.ImageFileDirectory`.

Validates the tile grid against the TileOffsets/TileByteCounts counts *before* reading those
arrays, so hostile headers fail fast without allocating.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from rasteret.errors import HeaderError, UnsupportedFormatError
from rasteret.tiff import _tags as t
from rasteret.tiff._reader import Entry, TiffReader
from rasteret.tiff._tags import Tag

__all__ = ["MAX_TILES", "MAX_TILE_PIXELS", "MAX_VALUE_BYTES", "ifd_fields", "value_ends"]

MAX_TILES: Final = 2**31
"""Most tiles (or strips) one IFD may have, all planes together."""
MAX_TILE_PIXELS: Final = 2**31
"""Most pixels one tile may have (TileWidth x TileLength)."""
MAX_VALUE_BYTES: Final = 64 * 2**20
"""Largest value of any tag other than the tile tables (GDAL_METADATA, JPEGTables, ...)."""
_WHOLE_IMAGE: Final = 2**32 - 1
"""RowsPerStrip default: one strip for the whole image."""

_SCALAR_TAGS: Final = (
    Tag.NEW_SUBFILE_TYPE,
    Tag.IMAGE_WIDTH,
    Tag.IMAGE_LENGTH,
    Tag.BITS_PER_SAMPLE,
    Tag.COMPRESSION,
    Tag.PHOTOMETRIC_INTERPRETATION,
    Tag.SAMPLES_PER_PIXEL,
    Tag.ROWS_PER_STRIP,
    Tag.PLANAR_CONFIGURATION,
    Tag.PREDICTOR,
    Tag.TILE_WIDTH,
    Tag.TILE_LENGTH,
    Tag.EXTRA_SAMPLES,
    Tag.SAMPLE_FORMAT,
    Tag.JPEG_TABLES,
    Tag.YCBCR_SUBSAMPLING,
    Tag.MODEL_PIXEL_SCALE,
    Tag.MODEL_TIEPOINT,
    Tag.MODEL_TRANSFORMATION,
    Tag.GEO_KEY_DIRECTORY,
    Tag.GEO_DOUBLE_PARAMS,
    Tag.GEO_ASCII_PARAMS,
    Tag.GDAL_METADATA,
    Tag.GDAL_NODATA,
    Tag.LERC_PARAMETERS,
)
"""Every tag read besides the tile tables."""


def _table_tags(entries: dict[int, Entry]) -> tuple[int, int]:
    if Tag.TILE_OFFSETS in entries or Tag.TILE_WIDTH in entries:
        return Tag.TILE_OFFSETS, Tag.TILE_BYTE_COUNTS
    return Tag.STRIP_OFFSETS, Tag.STRIP_BYTE_COUNTS


def value_ends(entries: dict[int, Entry]) -> list[int]:
    """Byte ends of every value :func:`ifd_fields` will read from these entries, if plausible."""
    ends = []
    tables = _table_tags(entries)
    for tag in (*_SCALAR_TAGS, *tables):
        entry = entries.get(tag)
        if entry is None or entry.field_type not in t.NUMPY_TYPES:
            continue
        if entry.count <= MAX_TILES if tag in tables else entry.nbytes <= MAX_VALUE_BYTES:
            ends.append(entry.end)
    return ends


class _Fields:
    """Typed accessors over one IFD's entries; absent tags give ``None``."""

    def __init__(self, reader: TiffReader, index: int, entries: dict[int, Entry]):
        self.reader = reader
        self.index = index
        self.entries = entries
        self.where = f"IFD {index}{reader.where}"

    def _entry(self, tag: int, kinds: frozenset[int], kind: str) -> Entry | None:
        entry = self.entries.get(tag)
        if entry is None:
            return None
        if entry.field_type not in kinds:
            name = t.FIELD_TYPE_NAMES.get(entry.field_type, f"unknown type {entry.field_type}")
            raise HeaderError(f"expected tag {tag} as {kind} in {self.where}, got {name}")
        if entry.nbytes > MAX_VALUE_BYTES:
            raise HeaderError(
                f"expected tag {tag} to hold at most {MAX_VALUE_BYTES} bytes in {self.where}, "
                f"got {entry.count} values ({entry.nbytes} bytes)"
            )
        return entry

    def ints(self, tag: int) -> np.ndarray | None:
        entry = self._entry(tag, t.INTEGER_TYPES, "an integer type")
        return None if entry is None else self.reader.array(entry, f"tag {tag} of IFD {self.index}")

    def integer(self, tag: int, default: int | None = None) -> int:
        entry = self._entry(tag, t.INTEGER_TYPES, "an integer type")
        if entry is None or entry.count == 0:
            if default is None:
                raise HeaderError(f"expected tag {tag} in {self.where}, got none")
            return default
        return self.reader.first_int(entry, f"tag {tag} of IFD {self.index}")

    def int_tuple(self, tag: int) -> tuple[int, ...] | None:
        values = self.ints(tag)
        return None if values is None else tuple(values.tolist())

    def floats(self, tag: int) -> tuple[float, ...] | None:
        numeric = frozenset(t.NUMPY_TYPES) - {t.ASCII, t.UNDEFINED}
        entry = self._entry(tag, numeric, "a numeric type")
        if entry is None:
            return None
        values = self.reader.array(entry, f"tag {tag} of IFD {self.index}")
        return tuple(values.astype(np.float64).tolist())

    def raw(self, tag: int) -> bytes | None:
        entry = self._entry(tag, frozenset(t.NUMPY_TYPES), "a TIFF field type")
        return None if entry is None else self.reader.raw(entry, f"tag {tag} of IFD {self.index}")

    def text(self, tag: int, encoding: str = "utf-8") -> str | None:
        raw = self.raw(tag)
        return None if raw is None else raw.rstrip(b"\0").decode(encoding, errors="replace")

    def same(self, tag: int, default: int, name: str) -> int:
        values = self.ints(tag)
        if values is None or values.size == 0:
            return default
        listed = values.tolist()
        if listed.count(listed[0]) != len(listed):
            raise UnsupportedFormatError(
                f"expected one {name} shared by every sample in {self.where}, got {listed}"
            )
        return int(listed[0])

    def table(self, tag: int, name: str, expected: int) -> np.ndarray:
        entry = self.entries.get(tag)
        if entry is None:
            raise HeaderError(f"expected {name} in {self.where}, got none")
        if entry.count != expected:
            raise HeaderError(
                f"expected {expected} {name} values in {self.where} (from the image and tile "
                f"sizes), got {entry.count}"
            )
        if entry.field_type not in t.INTEGER_TYPES:
            name_ = t.FIELD_TYPE_NAMES.get(entry.field_type, f"unknown type {entry.field_type}")
            raise HeaderError(f"expected {name} as an integer type in {self.where}, got {name_}")
        values = self.reader.array(entry, f"{name} of IFD {self.index}")
        if values.dtype.kind == "i" and values.size and values.min() < 0:
            raise HeaderError(f"expected non-negative {name} in {self.where}, got negatives")
        out = values.astype(np.uint64)
        out.setflags(write=False)
        return out


def _grid(f: _Fields, width: int, height: int) -> tuple[bool, int, int]:
    """(is_tiled, tile_width, tile_height), validated."""
    offsets_tag, _ = _table_tags(f.entries)
    tiled = offsets_tag == Tag.TILE_OFFSETS
    if tiled:
        tile_width, tile_height = f.integer(Tag.TILE_WIDTH), f.integer(Tag.TILE_LENGTH)
    elif Tag.STRIP_OFFSETS not in f.entries:
        raise HeaderError(
            f"expected a tiled or striped TIFF in {f.where}, got no TileOffsets or StripOffsets"
        )
    else:
        tile_width, tile_height = width, min(f.integer(Tag.ROWS_PER_STRIP, _WHOLE_IMAGE), height)
    if tile_width <= 0 or tile_height <= 0:
        raise HeaderError(
            f"expected positive tile/strip sizes in {f.where}, got {tile_width} x {tile_height}"
        )
    if tiled and tile_width * tile_height > MAX_TILE_PIXELS:
        raise HeaderError(
            f"expected tiles of at most {MAX_TILE_PIXELS} pixels in {f.where}, "
            f"got {tile_width} x {tile_height}"
        )
    return tiled, tile_width, tile_height


def ifd_fields(
    reader: TiffReader, index: int, offset: int, entries: dict[int, Entry]
) -> dict[str, Any]:
    """Keyword arguments for ``ImageFileDirectory`` from one IFD's entries."""
    f = _Fields(reader, index, entries)
    width, height = f.integer(Tag.IMAGE_WIDTH), f.integer(Tag.IMAGE_LENGTH)
    if width <= 0 or height <= 0:
        raise HeaderError(f"expected a positive image size in {f.where}, got {width} x {height}")
    samples = f.integer(Tag.SAMPLES_PER_PIXEL, 1)
    if samples <= 0:
        raise HeaderError(f"expected SamplesPerPixel >= 1 in {f.where}, got {samples}")
    planar = f.integer(Tag.PLANAR_CONFIGURATION, 1)
    if planar not in (1, 2):
        raise HeaderError(f"expected PlanarConfiguration 1 or 2 in {f.where}, got {planar}")
    tiled, tile_width, tile_height = _grid(f, width, height)
    planes = samples if planar == 2 else 1
    count = -(-width // tile_width) * -(-height // tile_height) * planes
    if count > MAX_TILES:
        raise HeaderError(f"expected at most {MAX_TILES} tiles in {f.where}, got {count}")
    offsets_tag, counts_tag = _table_tags(entries)
    kind = "Tile" if tiled else "Strip"
    offsets = f.table(offsets_tag, f"{kind}Offsets", count)
    byte_counts = f.table(counts_tag, f"{kind}ByteCounts", count)
    if reader.object_size is not None:
        size = np.uint64(reader.object_size)
        bad = np.flatnonzero((offsets > size) | (byte_counts > size - np.minimum(offsets, size)))
        if bad.size:
            i = int(bad[0])
            raise HeaderError(
                f"expected tile {i} of {f.where} to end within the object's {reader.object_size} "
                f"bytes, got offset {int(offsets[i])} + {int(byte_counts[i])} bytes"
            )
    ycbcr = f.int_tuple(Tag.YCBCR_SUBSAMPLING)
    if ycbcr is not None and len(ycbcr) < 2:
        raise HeaderError(f"expected 2 YCbCrSubSampling values in {f.where}, got {len(ycbcr)}")
    return {
        "index": index,
        "offset": offset,
        "new_subfile_type": f.integer(Tag.NEW_SUBFILE_TYPE, 0),
        "image_width": width,
        "image_height": height,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "is_tiled": tiled,
        "samples_per_pixel": samples,
        "bits_per_sample": f.same(Tag.BITS_PER_SAMPLE, 1, "BitsPerSample"),
        "sample_format": f.same(Tag.SAMPLE_FORMAT, 1, "SampleFormat"),
        "planar_configuration": planar,
        "compression": f.integer(Tag.COMPRESSION, 1),
        "predictor": f.integer(Tag.PREDICTOR, 1),
        "photometric": f.integer(Tag.PHOTOMETRIC_INTERPRETATION, 1),
        "extra_samples": f.int_tuple(Tag.EXTRA_SAMPLES) or (),
        "tile_offsets": offsets,
        "tile_byte_counts": byte_counts,
        "jpeg_tables": f.raw(Tag.JPEG_TABLES),
        "ycbcr_subsampling": None if ycbcr is None else (ycbcr[0], ycbcr[1]),
        "lerc_parameters": f.int_tuple(Tag.LERC_PARAMETERS),
        "model_pixel_scale": f.floats(Tag.MODEL_PIXEL_SCALE),
        "model_tiepoint": f.floats(Tag.MODEL_TIEPOINT),
        "model_transformation": f.floats(Tag.MODEL_TRANSFORMATION),
        "geo_key_directory": f.int_tuple(Tag.GEO_KEY_DIRECTORY),
        "geo_double_params": f.floats(Tag.GEO_DOUBLE_PARAMS),
        "geo_ascii_params": f.text(Tag.GEO_ASCII_PARAMS, "latin-1"),
        "gdal_nodata": f.text(Tag.GDAL_NODATA),
        "gdal_metadata": f.text(Tag.GDAL_METADATA),
    }
