"""THE collection schema: column names, the ``{band}_metadata`` struct, and its version.

Everything that reads or writes a collection refers to the names and types defined here.

A collection is an Arrow table with one row per raster record:

- canonical record columns: ``id``, ``datetime``, ``geometry`` (WKB, CRS84), ``assets``,
  ``bbox``, ``year``, ``month``, ``proj:epsg``, ``crs``;
- one ``{band}_metadata`` struct column per enriched band, holding everything a pixel read
  needs: the grid, the tile table, the codec, the CRS, overview levels and the internal mask;
- every other column of the user's table, unchanged.

>>> metadata_column("B04")
'B04_metadata'
>>> band_of_metadata_column("B04_metadata")
'B04'
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "ASSETS",
    "ASSETS_TYPE",
    "ASSET_TYPE",
    "BAND_METADATA_TYPE",
    "BBOX",
    "BBOX_TYPE",
    "CANONICAL_COLUMNS",
    "CRS",
    "DATETIME",
    "DATETIME_TYPE",
    "GEOMETRY",
    "ID",
    "LEVEL_TYPE",
    "METADATA_SUFFIX",
    "MONTH",
    "PROJ_EPSG",
    "SCHEMA_VERSION",
    "YEAR",
    "band_of_metadata_column",
    "metadata_column",
    "metadata_columns",
]

SCHEMA_VERSION = "1"
"""Bumped whenever a stored collection would be read differently."""

ID = "id"
DATETIME = "datetime"
GEOMETRY = "geometry"
ASSETS = "assets"
BBOX = "bbox"
YEAR = "year"
MONTH = "month"
PROJ_EPSG = "proj:epsg"
CRS = "crs"
CANONICAL_COLUMNS = (ID, DATETIME, GEOMETRY, ASSETS, BBOX, YEAR, MONTH, PROJ_EPSG, CRS)

METADATA_SUFFIX = "_metadata"

DATETIME_TYPE = pa.timestamp("us", tz="UTC")

BBOX_TYPE = pa.struct(
    [
        pa.field("xmin", pa.float64()),
        pa.field("ymin", pa.float64()),
        pa.field("xmax", pa.float64()),
        pa.field("ymax", pa.float64()),
    ]
)

ASSET_TYPE = pa.struct(
    [
        pa.field("href", pa.string()),
        pa.field("band_index", pa.int32()),
        pa.field("type", pa.string()),
        pa.field("roles", pa.list_(pa.string())),
    ]
)
"""One asset: its URL, the 0-based sample index of the logical band (null: sample 0)."""

ASSETS_TYPE = pa.map_(pa.string(), ASSET_TYPE)

LEVEL_TYPE = pa.struct(
    [
        pa.field("image_width", pa.int64()),
        pa.field("image_height", pa.int64()),
        pa.field("tile_width", pa.int32()),
        pa.field("tile_height", pa.int32()),
        pa.field("is_tiled", pa.bool_()),
        pa.field("transform", pa.list_(pa.float64(), 6)),
        pa.field("tile_offsets", pa.list_(pa.uint64())),
        pa.field("tile_byte_counts", pa.list_(pa.uint64())),
        pa.field("compression", pa.int32()),
        pa.field("predictor", pa.int32()),
        pa.field("photometric", pa.int32()),
        pa.field("bits_per_sample", pa.int32()),
        pa.field("sample_format", pa.int32()),
        pa.field("samples_per_pixel", pa.int32()),
        pa.field("planar_configuration", pa.int32()),
        pa.field("jpeg_tables", pa.binary()),
        pa.field("ycbcr_subsampling", pa.list_(pa.int32())),
        pa.field("lerc_parameters", pa.list_(pa.int32())),
    ]
)
"""The grid and tile facts of one image (full resolution, an overview, or a mask).

For a planar file the tile table holds only the plane of this band's sample."""

BAND_METADATA_TYPE = pa.struct(
    [
        *LEVEL_TYPE,
        pa.field("dtype", pa.string()),
        pa.field("band_index", pa.int32()),
        pa.field("extra_samples", pa.list_(pa.int32())),
        pa.field("pixel_scale", pa.list_(pa.float64())),
        pa.field("tiepoint", pa.list_(pa.float64())),
        pa.field("pixel_is_point", pa.bool_()),
        pa.field("nodata", pa.float64()),
        pa.field("scale", pa.float64()),
        pa.field("offset", pa.float64()),
        pa.field("crs", pa.string()),
        pa.field("epsg", pa.int32()),
        pa.field("byte_order", pa.string()),
        pa.field("bigtiff", pa.bool_()),
        pa.field("header_size", pa.int64()),
        pa.field("object_size", pa.int64()),
        pa.field("etag", pa.string()),
        pa.field("href", pa.string()),
        pa.field("overviews", pa.list_(LEVEL_TYPE)),
        pa.field("mask", LEVEL_TYPE),
        pa.field("mask_overviews", pa.list_(LEVEL_TYPE)),
    ]
)
"""``{band}_metadata``: the full-resolution level's fields plus everything about the band."""


def metadata_column(band: str) -> str:
    """Name of the metadata column of ``band``."""
    return f"{band}{METADATA_SUFFIX}"


def band_of_metadata_column(column: str) -> str | None:
    """The band a ``{band}_metadata`` column belongs to, or ``None`` for other columns."""
    if column.endswith(METADATA_SUFFIX) and len(column) > len(METADATA_SUFFIX):
        return column[: -len(METADATA_SUFFIX)]
    return None


def metadata_columns(schema: pa.Schema) -> dict[str, str]:
    """Map band -> metadata column for every ``{band}_metadata`` struct column of ``schema``."""
    out: dict[str, str] = {}
    for field in schema:
        band = band_of_metadata_column(field.name)
        if band is not None and pa.types.is_struct(field.type):
            out[band] = field.name
    return out
