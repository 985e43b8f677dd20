"""Record tables -> the canonical record columns every collection starts from.

``normalize_records`` renames (``column_map``), then derives ``id`` (string), ``datetime``
(UTC microseconds), ``geometry`` (ISO WKB in CRS84, tagged ``geoarrow.wkb``), ``assets``
(map of asset structs), ``bbox``, ``year``, ``month``, ``proj:epsg`` and ``crs``. Every other
column is kept unchanged. It is idempotent: a normalised table comes back equal.

>>> import shapely
>>> raw = pa.table({"scene_id": [7], "year": [2024], "geom": [shapely.box(0, 0, 1, 1).wkb],
...                 "url": ["s3://b/7.tif"], "split": ["train"]})
>>> out = normalize_records(raw, column_map={"scene_id": "id", "geom": "geometry",
...                         "year": "datetime"}, href_column="url", band_index_map={"B04": 0})
>>> out.column_names
['id', 'datetime', 'geometry', 'assets', 'bbox', 'year', 'month', 'proj:epsg', 'crs', 'url', 'split']
>>> out["id"][0].as_py(), str(out["datetime"][0]), out["bbox"][0].as_py()["xmax"]
('7', '2024-01-01 00:00:00+00:00', 1.0)
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from rasteret.errors import SchemaError
from rasteret.ingest.assets import normalize_assets
from rasteret.ingest.crs import crs_sidecars
from rasteret.ingest.schema import (
    ASSETS,
    BBOX,
    BBOX_TYPE,
    CANONICAL_COLUMNS,
    CRS,
    DATETIME,
    DATETIME_TYPE,
    GEOMETRY,
    ID,
    MONTH,
    PROJ_EPSG,
    YEAR,
)
from rasteret.ingest.sources import read_source
from rasteret.types import (
    CRSLike,
    arrow_to_shapely,
    field_geometry_encoding,
    geoarrow_wkb_field,
    to_crs84,
)

__all__ = [
    "ASSETS",
    "BBOX",
    "CRS",
    "DATETIME",
    "GEOMETRY",
    "ID",
    "MONTH",
    "PROJ_EPSG",
    "REQUIRED_COLUMNS",
    "YEAR",
    "normalize_datetimes",
    "normalize_records",
]

REQUIRED_COLUMNS = (ID, DATETIME, GEOMETRY, ASSETS)
_ALIASES = {
    ID: ("scene_id", "item_id", "record_id", "image_id", "product_id", "granule_id", "tile_id", "name", "key", "uid"),
    DATETIME: ("date", "time", "timestamp", "acquired", "acquisition_date", "start_datetime", "sensing_time", "year"),
    GEOMETRY: ("geom", "footprint", "wkb_geometry", "the_geom", "shape", "wkb", "geometry_wkb", "boundary"),
    ASSETS: ("asset", "bands", "files", "links"),
}  # fmt: skip
_ZONED = r"(?i)[T ]\d{1,2}:\d{2}.*(z|[+-]\d{2}(:?\d{2})?)$"
_YEAR_ONLY = r"^[+-]?\d{1,4}$"
_YEAR_MONTH = r"^\d{4}-\d{2}$"
_SUB_MICROSECONDS = r"(:\d{2}\.\d{6})\d+"
_MAX_ROWS_SHOWN = 10


def normalize_records(
    table: Any,
    *,
    column_map: Mapping[str, str] | None = None,
    href_column: str | None = None,
    band_index_map: Mapping[str, int] | None = None,
    url_rewrite_patterns: Mapping[str, str] | None = None,
    source_crs: CRSLike | None = None,
) -> pa.Table:
    """Normalise a record table to the canonical columns (other columns kept unchanged).

    Args:
        table: a pa.Table, or any form :func:`rasteret.ingest.sources.read_source` accepts.
        column_map: ``{source_name: canonical_name}`` renames applied first.
        href_column: one URL per row; with ``band_index_map`` it builds ``assets``.
        band_index_map: logical band -> 0-based sample index in the file.
        url_rewrite_patterns: ``{old_prefix: new_prefix}`` applied to every asset href.
        source_crs: CRS of the geometry column, overriding its GeoArrow/GeoParquet metadata;
            untagged geometries are taken as CRS84.

    Raises:
        SchemaError: a missing required column (with the ``column_map`` that would fix it),
            nulls in ``id``/``datetime``/``geometry``, or values that cannot be converted.
    """
    if not isinstance(table, pa.Table):
        table = read_source(table)
    table = _rename(table, column_map or {})
    _require(table, href_column)
    geometry, bbox = _footprints(table, source_crs)
    epsg, crs = crs_sidecars(table)
    ids = table.column(ID)
    datetime = normalize_datetimes(table.column(DATETIME), DATETIME, ids=ids)
    if "start_datetime" in table.column_names and datetime.null_count:
        start = normalize_datetimes(table.column("start_datetime"), "start_datetime", ids=ids)
        datetime = pc.coalesce(datetime, start)
    _no_nulls(datetime, DATETIME)
    assets = normalize_assets(
        table,
        href_column=href_column,
        band_index_map=band_index_map,
        url_rewrite_patterns=url_rewrite_patterns,
    )
    _no_nulls(assets, ASSETS)
    columns: dict[str, tuple[pa.Field, Any]] = {
        ID: (pa.field(ID, pa.string()), _ids(table.column(ID))),
        DATETIME: (pa.field(DATETIME, DATETIME_TYPE), datetime),
        GEOMETRY: (geoarrow_wkb_field(GEOMETRY), geometry),
        ASSETS: (pa.field(ASSETS, assets.type), assets),
        BBOX: (pa.field(BBOX, BBOX_TYPE), bbox),
        YEAR: (pa.field(YEAR, pa.int32()), pc.year(datetime).cast(pa.int32())),
        MONTH: (pa.field(MONTH, pa.int32()), pc.month(datetime).cast(pa.int32())),
        PROJ_EPSG: (pa.field(PROJ_EPSG, pa.int32()), epsg),
        CRS: (pa.field(CRS, pa.string()), crs),
    }
    fields = [columns[name][0] for name in CANONICAL_COLUMNS]
    arrays = [columns[name][1] for name in CANONICAL_COLUMNS]
    for field in table.schema:
        if field.name not in columns:
            fields.append(field)
            arrays.append(table.column(field.name))
    metadata = {
        k: v for k, v in (table.schema.metadata or {}).items() if k not in (b"geo", b"pandas")
    }
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata or None))


def _rename(table: pa.Table, column_map: Mapping[str, str]) -> pa.Table:
    names = table.column_names
    unknown = [s for s in column_map if s not in names]
    if unknown:
        raise SchemaError(f"column_map names columns {unknown} that the table lacks; found {names}")
    renamed = [column_map.get(n, n) for n in names]
    clashes = sorted({n for n in renamed if renamed.count(n) > 1})
    if clashes:
        raise SchemaError(
            f"column_map={dict(column_map)} gives several columns the name {clashes}; "
            f"found {names}: drop or rename the existing column first"
        )
    return table.rename_columns(renamed) if renamed != names else table


def _require(table: pa.Table, href_column: str | None) -> None:
    names = table.column_names
    needed = [c for c in REQUIRED_COLUMNS if c not in names and not (c == ASSETS and href_column)]
    if not needed:
        return
    guesses = {c: g for c in needed if (g := _guess(table.schema, c)) is not None}
    hint = f"; pass column_map={ {g: c for c, g in guesses.items()} }" if guesses else ""
    if ASSETS in needed and ASSETS not in guesses:
        urls = [n for n in names if any(w in n.lower() for w in ("url", "href", "path", "uri"))]
        if urls:
            hint += (
                f"; or build assets with href_column={urls[0]!r}, band_index_map={{'B04': 0, ...}}"
            )
    listed = ", ".join(repr(c) for c in needed)
    raise SchemaError(f"no {listed} column; found {names}{hint}")


def _guess(schema: pa.Schema, canonical: str) -> str | None:
    """The column most likely meant as ``canonical``, by name then by type."""
    names = [n for n in schema.names if n not in REQUIRED_COLUMNS]
    lowered = {n.lower(): n for n in names}
    for alias in _ALIASES[canonical]:
        if alias in lowered:
            return lowered[alias]
    close = difflib.get_close_matches(canonical, list(lowered), n=1, cutoff=0.6)
    if close:
        return lowered[close[0]]
    for field in schema:
        if field.name not in names:
            continue
        kind = field.type
        if canonical == GEOMETRY and (
            field_geometry_encoding(field, schema.metadata)[0] or pa.types.is_binary(kind)
        ):
            return field.name
        if canonical == DATETIME and (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
            return field.name
    return None


def _ids(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    try:
        ids = column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"expected 'id' as strings or integers; got {column.type}") from exc
    _no_nulls(ids, ID)
    return ids


def _no_nulls(values: pa.Array | pa.ChunkedArray, name: str) -> None:
    if values.null_count:
        _null_rows(values.is_null().to_numpy(zero_copy_only=False), name)


def _null_rows(mask: np.ndarray, name: str) -> None:
    if mask.any():
        rows = np.flatnonzero(mask)
        shown = rows[:_MAX_ROWS_SHOWN].tolist()
        more = f" (+{len(rows) - len(shown)} more)" if len(rows) > len(shown) else ""
        raise SchemaError(
            f"expected non-null {name!r} in every record; got nulls in rows {shown}{more}"
        )


def normalize_datetimes(
    column: pa.Array | pa.ChunkedArray,
    name: str = DATETIME,
    *,
    ids: pa.Array | pa.ChunkedArray | None = None,
) -> pa.Array:
    """Any time form -> ``timestamp[us, tz=UTC]`` (nulls kept).

    Timestamps of any unit (naive ones are UTC; nanoseconds are truncated to microseconds),
    dates, ISO 8601 strings (with or without an offset; fractions of a second beyond six
    digits are truncated to microseconds), year-months (``"2024-05"``: the first instant of
    the month) and integer years (January 1 of that year, as numbers or strings).

    Args:
        column: the time values.
        name: the column's name, for error messages.
        ids: the record ids, aligned with ``column``; error messages name the bad records by
            them as well as by row.

    Raises:
        SchemaError: values that are no time, naming the column, the rows, the record ids
            and the values.

    >>> out = normalize_datetimes(pa.array(["2024-01-15T10:00:00+02:00", "2020", "2023-05", None]))
    >>> [str(v) for v in out.to_pylist()]
    ['2024-01-15 08:00:00+00:00', '2020-01-01 00:00:00+00:00', '2023-05-01 00:00:00+00:00', 'None']
    >>> normalize_datetimes(pa.array(["2024-01-15T10:00:00.123456789Z"]))[0].as_py().microsecond
    123456
    """
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = values.type
    try:
        if pa.types.is_timestamp(kind):
            return values.cast(DATETIME_TYPE, safe=kind.unit != "ns")
        if pa.types.is_date(kind):
            return values.cast(DATETIME_TYPE)
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            return _years(values, name)
        if (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)
        ):
            return _iso_strings(values.cast(pa.string()), name, ids)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"expected {name!r} values convertible to UTC timestamps; {exc}") from exc
    raise SchemaError(
        f"expected {name!r} as timestamps, dates, ISO 8601 strings or integer years; got {kind}"
    )


def _years(values: pa.Array, name: str) -> pa.Array:
    nulls = values.is_null().to_numpy(zero_copy_only=False)
    years = pc.fill_null(values, 1970).to_numpy(zero_copy_only=False).astype(np.float64)
    bad = (years != np.round(years)) | (years < 1) | (years > 9999)
    if (bad & ~nulls).any():
        rows = np.flatnonzero(bad & ~nulls)[:_MAX_ROWS_SHOWN].tolist()
        raise SchemaError(
            f"expected {name!r} numbers to be calendar years (1..9999); got "
            f"{years[rows].tolist()} in rows {rows}. Convert epoch numbers to timestamps first"
        )
    stamps = (years.astype(np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[us]")
    return pa.array(stamps, pa.timestamp("us"), mask=nulls).cast(DATETIME_TYPE)


def _iso_strings(
    values: pa.Array, name: str, ids: pa.Array | pa.ChunkedArray | None = None
) -> pa.Array:
    try:
        return _parse_iso_strings(values, name)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, SchemaError) as exc:
        rows = _failing_rows(values, name)
        if not rows:
            raise
        index = pa.array(rows, pa.int64())
        found = values.take(index).to_pylist()
        named = (
            [f", id {i!r}" for i in ids.take(index).to_pylist()]
            if ids is not None
            else [""] * len(rows)
        )
        listed = ", ".join(
            f"{v!r} (row {r}{n})" for v, r, n in zip(found, rows, named, strict=True)
        )
        more = f"; the first {len(rows)} shown" if len(rows) == _MAX_ROWS_SHOWN else ""
        raise SchemaError(
            f"expected {name!r} as ISO 8601 strings ('2024-01-15', '2024-01-15T10:30:00Z'), "
            f"year-months ('2024-01') or years ('2024'); got {listed}{more}"
        ) from exc


def _failing_rows(values: pa.Array, name: str) -> list[int]:
    """The first rows (in order, at most ``_MAX_ROWS_SHOWN``) whose string does not parse.

    Bisects: a slice that parses as a whole holds no bad row, so only O(bad rows * log n)
    slices are parsed.
    """
    rows: list[int] = []
    pending = [(0, len(values))]
    while pending and len(rows) < _MAX_ROWS_SHOWN:
        start, stop = pending.pop()
        if _parses(values.slice(start, stop - start), name):
            continue
        if stop - start == 1:
            rows.append(start)
        else:
            middle = (start + stop) // 2
            pending += [(middle, stop), (start, middle)]  # the first half is popped first
    return rows


def _parses(values: pa.Array, name: str) -> bool:
    try:
        _parse_iso_strings(values, name)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, SchemaError):
        return False
    return True


def _parse_iso_strings(values: pa.Array, name: str) -> pa.Array:
    text = pc.utf8_trim_whitespace(values)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    text = pc.replace_substring_regex(text, _SUB_MICROSECONDS, r"\1")  # ns -> us, truncated
    month = pc.fill_null(pc.match_substring_regex(text, _YEAR_MONTH), False)
    text = pc.if_else(month, pc.binary_join_element_wise(text, "-01", ""), text)
    zoned = pc.fill_null(pc.match_substring_regex(text, _ZONED), False)
    year = pc.fill_null(pc.match_substring_regex(text, _YEAR_ONLY), False)
    naive = pc.invert(pc.or_(zoned, year))
    null = pa.scalar(None, pa.string())
    parts = [
        pc.if_else(zoned, text, null).cast(DATETIME_TYPE),
        pc.if_else(naive, text, null).cast(pa.timestamp("us")).cast(DATETIME_TYPE),
        _years(pc.if_else(year, text, null).cast(pa.int64()), name),
    ]
    return pc.coalesce(*parts)


def _footprints(table: pa.Table, source_crs: CRSLike | None) -> tuple[pa.Array, pa.Array]:
    """(WKB geometry in CRS84, bbox struct) of the geometry column."""
    field = table.schema.field(GEOMETRY)
    encoding, crs = field_geometry_encoding(field, table.schema.metadata)
    geoms = arrow_to_shapely(table.column(GEOMETRY), encoding)
    geoms = to_crs84(geoms, source_crs if source_crs is not None else crs)
    _null_rows(np.asarray(shapely.is_missing(geoms), dtype=bool), GEOMETRY)
    wkb = pa.array(shapely.to_wkb(geoms, flavor="iso"), pa.binary())
    bounds = np.asarray(shapely.bounds(geoms), dtype=np.float64).reshape(-1, 4)
    empty = ~np.isfinite(bounds).all(axis=1)
    bbox = pa.StructArray.from_arrays(
        [pa.array(bounds[:, i]) for i in range(4)], fields=list(BBOX_TYPE), mask=pa.array(empty)
    )
    return wkb, bbox
