"""TIFF tag ids, field types and GeoTIFF key ids, in the format's own words.

Only the tags and keys rasteret reads are named here. Sources: TIFF 6.0, BigTIFF, the
GeoTIFF 1.1 standard (OGC 19-008r4) and GDAL's private tags (42112, 42113, 50674).
"""

from __future__ import annotations

from typing import Final

import numpy as np

__all__ = [
    "ASCII",
    "BIGTIFF_VERSION",
    "BYTE",
    "CLASSIC_VERSION",
    "DOUBLE",
    "FIELD_TYPE_NAMES",
    "FIELD_TYPE_SIZES",
    "FLOAT",
    "IFD",
    "IFD8",
    "INTEGER_TYPES",
    "INTEGER_STRUCT_CODES",
    "LONG",
    "LONG8",
    "NUMPY_TYPES",
    "RATIONAL",
    "RATIONAL_TYPES",
    "SBYTE",
    "SHORT",
    "SLONG",
    "SLONG8",
    "SRATIONAL",
    "SSHORT",
    "Tag",
    "UNDEFINED",
]

CLASSIC_VERSION: Final = 42
"""Version word of a classic TIFF (``II*\\0`` / ``MM\\0*``)."""
BIGTIFF_VERSION: Final = 43
"""Version word of a BigTIFF (``II+\\0`` / ``MM\\0+``)."""


class Tag:
    """Tag ids (TIFF 6.0 baseline/extensions, GeoTIFF, GDAL private tags)."""

    NEW_SUBFILE_TYPE: Final = 254
    IMAGE_WIDTH: Final = 256
    IMAGE_LENGTH: Final = 257
    BITS_PER_SAMPLE: Final = 258
    COMPRESSION: Final = 259
    PHOTOMETRIC_INTERPRETATION: Final = 262
    STRIP_OFFSETS: Final = 273
    SAMPLES_PER_PIXEL: Final = 277
    ROWS_PER_STRIP: Final = 278
    STRIP_BYTE_COUNTS: Final = 279
    PLANAR_CONFIGURATION: Final = 284
    PREDICTOR: Final = 317
    TILE_WIDTH: Final = 322
    TILE_LENGTH: Final = 323
    TILE_OFFSETS: Final = 324
    TILE_BYTE_COUNTS: Final = 325
    EXTRA_SAMPLES: Final = 338
    SAMPLE_FORMAT: Final = 339
    JPEG_TABLES: Final = 347
    YCBCR_SUBSAMPLING: Final = 530
    MODEL_PIXEL_SCALE: Final = 33550
    MODEL_TIEPOINT: Final = 33922
    MODEL_TRANSFORMATION: Final = 34264
    GEO_KEY_DIRECTORY: Final = 34735
    GEO_DOUBLE_PARAMS: Final = 34736
    GEO_ASCII_PARAMS: Final = 34737
    GDAL_METADATA: Final = 42112
    GDAL_NODATA: Final = 42113
    LERC_PARAMETERS: Final = 50674


# Field types: code -> (name, byte size of one value).
BYTE: Final = 1
ASCII: Final = 2
SHORT: Final = 3
LONG: Final = 4
RATIONAL: Final = 5
SBYTE: Final = 6
UNDEFINED: Final = 7
SSHORT: Final = 8
SLONG: Final = 9
SRATIONAL: Final = 10
FLOAT: Final = 11
DOUBLE: Final = 12
IFD: Final = 13
LONG8: Final = 16
SLONG8: Final = 17
IFD8: Final = 18

FIELD_TYPE_NAMES: Final[dict[int, str]] = {
    BYTE: "BYTE",
    ASCII: "ASCII",
    SHORT: "SHORT",
    LONG: "LONG",
    RATIONAL: "RATIONAL",
    SBYTE: "SBYTE",
    UNDEFINED: "UNDEFINED",
    SSHORT: "SSHORT",
    SLONG: "SLONG",
    SRATIONAL: "SRATIONAL",
    FLOAT: "FLOAT",
    DOUBLE: "DOUBLE",
    IFD: "IFD",
    LONG8: "LONG8",
    SLONG8: "SLONG8",
    IFD8: "IFD8",
}

NUMPY_TYPES: Final[dict[int, np.dtype]] = {
    BYTE: np.dtype("u1"),
    ASCII: np.dtype("u1"),
    SHORT: np.dtype("u2"),
    LONG: np.dtype("u4"),
    RATIONAL: np.dtype("u4"),  # two per value: numerator, denominator
    SBYTE: np.dtype("i1"),
    UNDEFINED: np.dtype("u1"),
    SSHORT: np.dtype("i2"),
    SLONG: np.dtype("i4"),
    SRATIONAL: np.dtype("i4"),  # two per value
    FLOAT: np.dtype("f4"),
    DOUBLE: np.dtype("f8"),
    IFD: np.dtype("u4"),
    LONG8: np.dtype("u8"),
    SLONG8: np.dtype("i8"),
    IFD8: np.dtype("u8"),
}
"""Element dtype of each field type (byte order applied by the reader)."""

RATIONAL_TYPES: Final = frozenset({RATIONAL, SRATIONAL})
INTEGER_TYPES: Final = frozenset(
    {BYTE, SHORT, LONG, SBYTE, SSHORT, SLONG, IFD, LONG8, SLONG8, IFD8}
)

FIELD_TYPE_SIZES: Final[dict[int, int]] = {
    code: NUMPY_TYPES[code].itemsize * (2 if code in RATIONAL_TYPES else 1) for code in NUMPY_TYPES
}
"""Byte size of one value of each field type."""
INTEGER_STRUCT_CODES: Final[dict[int, str]] = {
    code: {"u": "BHIQ", "i": "bhiq"}[NUMPY_TYPES[code].kind][
        (1, 2, 4, 8).index(NUMPY_TYPES[code].itemsize)
    ]
    for code in INTEGER_TYPES
}
"""The :mod:`struct` code (standard size) of one value of each integer field type."""
