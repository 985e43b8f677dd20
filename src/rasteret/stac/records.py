"""STAC items -> a record table (pure: dicts in, Arrow out, no I/O).

One row per item: ``id``, ``datetime`` (or ``start_datetime`` when ``datetime`` is null),
``geometry`` (WKB, CRS84), ``assets`` (``map<band, {href, band_index, type, roles}>``), every
property as a column of its own, the ``collection`` id, ``proj:*`` CRS sidecars (from the
properties, else from the first kept asset), and each kept band's ``raster:bands`` scale,
offset and nodata as ``{band}_scale`` / ``{band}_offset`` / ``{band}_nodata`` columns.

Which assets are kept: with a band map (band code -> asset key and sample index) exactly the
mapped bands, keyed by band code; without one, every asset that points at a TIFF, keyed by its
asset key. Hrefs are made absolute against the item's own location and lose any signature
query string (:func:`rasteret.io.urls.redact_url`), so nothing secret is ever persisted.

>>> item = {"type": "Feature", "id": "s1", "collection": "c",
...         "geometry": {"type": "Point", "coordinates": [1.0, 2.0]},
...         "properties": {"datetime": "2024-01-15T10:00:00Z", "eo:cloud_cover": 3.5},
...         "assets": {"red": {"href": "s3://b/s1_B04.tif?X-Amz-Signature=s",
...                            "type": "image/tiff; application=geotiff"},
...                    "thumbnail": {"href": "s3://b/s1.png", "type": "image/png"}}}
>>> table = items_to_table([item], band_map={"B04": "red"})
>>> table.column("assets")[0].as_py()[0][0], table.column("assets")[0].as_py()[0][1]["href"]
('B04', 's3://b/s1_B04.tif')
>>> table.column("eo:cloud_cover").to_pylist()
[3.5]
"""

from __future__ import annotations

import datetime as _dt
import json
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import shapely
import shapely.geometry

from rasteret.catalog import BandMapLike, BandSource, parse_band_map, remap_assets
from rasteret.errors import SchemaError
from rasteret.ingest.enrich import tiff_asset_keys
from rasteret.ingest.schema import ASSETS, ASSETS_TYPE, DATETIME, DATETIME_TYPE, GEOMETRY, ID
from rasteret.io.urls import redact_url

__all__ = [
    "BandMapLike",
    "BandSource",
    "items_to_table",
    "parse_datetime",
    "parse_band_map",
    "raster_band_codes",
    "remap_assets",
]


_DATE_PROPERTIES = frozenset(
    {"datetime", "start_datetime", "end_datetime", "created", "updated", "published",
     "expires", "unpublished"}
)  # fmt: skip
_RESERVED = frozenset({ID, DATETIME, GEOMETRY, ASSETS, "bbox", "year", "month"})
_PROJ_SIDECARS = ("proj:epsg", "proj:code", "proj:wkt2", "proj:projjson")


def raster_band_codes(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Asset keys that point at a TIFF in any item (thumbnails and metadata left out)."""
    return tiff_asset_keys([dict(item.get("assets") or {}) for item in items])


def items_to_table(
    items: Iterable[Mapping[str, Any]],
    *,
    band_map: BandMapLike | None = None,
    band_index_map: Mapping[str, int] | None = None,
) -> pa.Table:
    """Turn STAC item dicts into a record table ready for ``build_from_table``.

    Args:
        items: STAC items as dicts (``pystac.Item.to_dict()`` or API JSON).
        band_map: band code -> asset (see :func:`parse_band_map`); ``None`` keeps every TIFF
            asset under its own key.
        band_index_map: sample indices of bands (with ``band_map``).

    Raises:
        SchemaError: an item without an ``id`` or without any date.
    """
    rows = list(items)
    bands = parse_band_map(band_map, band_index_map)
    if not bands:
        bands = {key: BandSource(key) for key in raster_band_codes(rows)}
    columns: dict[str, list[Any]] = {ID: [], DATETIME: [], GEOMETRY: [], ASSETS: []}
    extra: dict[str, list[Any]] = {}

    def put(name: str, row: int, value: Any) -> None:
        extra.setdefault(name, [None] * len(rows))[row] = value

    for row, item in enumerate(rows):
        if item.get("id") in (None, ""):
            raise SchemaError(f"expected every STAC item to have an 'id', item {row} has none")
        properties = dict(item.get("properties") or {})
        columns[ID].append(str(item["id"]))
        columns[DATETIME].append(_item_datetime(item, properties))
        columns[GEOMETRY].append(_item_geometry(item))
        base = _self_href(item)
        assets = {
            key: _clean_asset(value, base) for key, value in (item.get("assets") or {}).items()
        }
        kept = remap_assets(assets, bands)
        columns[ASSETS].append(
            [(band, {k: a.get(k) for k in ("href", "band_index", "type", "roles")})
             for band, a in kept.items()]
        )  # fmt: skip
        if item.get("collection") is not None:
            put("collection", row, str(item["collection"]))
        for key, value in properties.items():
            if key == DATETIME:
                continue
            name = f"properties.{key}" if key in _RESERVED else key
            put(name, row, parse_datetime(value) if key in _DATE_PROPERTIES else value)
        for key in _PROJ_SIDECARS:
            if properties.get(key) is None:
                value = next((a[key] for a in kept.values() if a.get(key) is not None), None)
                if value is not None:
                    put(key, row, value)
        for band, asset in kept.items():
            for field, value in _raster_band(asset, bands[band].band_index).items():
                put(f"{band}_{field}", row, value)

    arrays: dict[str, pa.Array] = {
        ID: pa.array(columns[ID], pa.string()),
        DATETIME: pa.array(columns[DATETIME], DATETIME_TYPE),
        GEOMETRY: pa.array(columns[GEOMETRY], pa.binary()),
        ASSETS: pa.array(columns[ASSETS], ASSETS_TYPE),
    }
    for name, values in extra.items():
        arrays[name] = _column(name, values)
    return pa.table(arrays)


def _self_href(item: Mapping[str, Any]) -> str | None:
    for link in item.get("links") or ():
        if isinstance(link, Mapping) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return None


def _clean_asset(asset: Mapping[str, Any], base: str | None) -> dict[str, Any]:
    out = dict(asset)
    href = out.get("href")
    if isinstance(href, str) and href:
        if base and "://" not in href and not href.startswith("/"):
            href = urllib.parse.urljoin(base, href)
        out["href"] = redact_url(href)
    roles = out.get("roles")
    out["roles"] = [str(r) for r in roles] if isinstance(roles, list) else None
    return out


def _raster_band(asset: Mapping[str, Any], band_index: int | None) -> dict[str, float]:
    bands = asset.get("raster:bands")
    if not isinstance(bands, list) or not bands:
        return {}
    entry = bands[band_index or 0] if (band_index or 0) < len(bands) else None
    if not isinstance(entry, Mapping):
        return {}
    out: dict[str, float] = {}
    for field in ("scale", "offset", "nodata"):
        value = entry.get(field)
        special = field == "nodata" and value in ("nan", "inf", "-inf")
        if special or (isinstance(value, int | float) and not isinstance(value, bool)):
            out[field] = float(str(value))
    return out


def _item_datetime(item: Mapping[str, Any], properties: Mapping[str, Any]) -> _dt.datetime:
    for key in ("datetime", "start_datetime", "end_datetime"):
        value = parse_datetime(properties.get(key))
        if isinstance(value, _dt.datetime):
            return value
    raise SchemaError(
        f"expected STAC item {item.get('id')!r} to have a 'datetime' or 'start_datetime' "
        f"property, got properties {sorted(properties)}"
    )


def parse_datetime(value: Any) -> Any:
    """An RFC 3339 string -> aware datetime (UTC when naive); anything else unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip().replace("z", "Z")
    if "." in text:  # Python keeps at most microseconds
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[: min(digits, 6)]}{tail[digits:]}"
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        return value
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_dt.UTC)


def _item_geometry(item: Mapping[str, Any]) -> bytes | None:
    geometry = item.get("geometry")
    if geometry:
        shape = shapely.geometry.shape(geometry)
    elif item.get("bbox") and len(item["bbox"]) in (4, 6):
        box = item["bbox"]
        half = len(box) // 2
        shape = shapely.box(box[0], box[1], box[half], box[half + 1])
    else:
        return None
    return bytes(shapely.to_wkb(shape))


def _column(name: str, values: list[Any]) -> pa.Array:
    """A property column: its natural Arrow type, else JSON text when types are mixed."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        array = None
    if array is None or _unwritable(array.type):
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in values], pa.string()
        )
    if name == "proj:epsg" and pa.types.is_integer(array.type):
        return array.cast(pa.int32())
    if pa.types.is_timestamp(array.type):
        return array.cast(DATETIME_TYPE)
    return array


def _unwritable(dtype: pa.DataType) -> bool:
    """Types Parquet cannot store (empty structs) or that mix naive and aware timestamps."""
    if pa.types.is_struct(dtype):
        return dtype.num_fields == 0 or any(_unwritable(f.type) for f in dtype)
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return _unwritable(dtype.value_type)
    if pa.types.is_timestamp(dtype):
        return dtype.tz is None
    return False
