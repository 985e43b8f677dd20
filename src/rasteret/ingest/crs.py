"""Raster CRS sidecar columns: ``proj:epsg`` (int32) and ``crs`` (string) per record.

They come from whichever of ``proj:epsg``, ``proj:code``, ``crs``, ``proj:wkt2`` and
``proj:projjson`` a table has (first non-null wins, in that order); pyproj resolves each
distinct value once. Records with none stay null until enrichment reads the headers.

>>> epsg, crs = crs_sidecars(pa.table({"proj:code": ["EPSG:32633", None]}))
>>> epsg.to_pylist(), crs.to_pylist()
([32633, None], ['EPSG:32633', None])
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rasteret.errors import SchemaError
from rasteret.ingest.schema import CRS, PROJ_EPSG
from rasteret.types import crs_

__all__ = ["CRS_SOURCE_COLUMNS", "crs_sidecars", "resolve_crs"]

CRS_SOURCE_COLUMNS = (PROJ_EPSG, "proj:code", CRS, "proj:wkt2", "proj:projjson")
"""Columns a record's raster CRS is read from, in priority order."""


def crs_sidecars(table: pa.Table) -> tuple[pa.Array, pa.Array]:
    """``(proj:epsg int32, crs string)`` arrays for every row of ``table``.

    Raises:
        SchemaError: a value pyproj cannot read as a CRS, or a column of an unusable type.
    """
    candidates = [
        _as_text(table.column(c), c) for c in CRS_SOURCE_COLUMNS if c in table.column_names
    ]
    if not candidates:
        return pa.nulls(table.num_rows, pa.int32()), pa.nulls(table.num_rows, pa.string())
    combined = pc.coalesce(*candidates) if len(candidates) > 1 else candidates[0]
    encoded = combined.dictionary_encode()
    resolved = [resolve_crs(v) for v in encoded.dictionary.to_pylist()]
    epsg = pa.array([e for e, _ in resolved], pa.int32()).take(encoded.indices)
    text = pa.array([t for _, t in resolved], pa.string()).take(encoded.indices)
    return epsg, text


@functools.lru_cache(maxsize=1024)
def resolve_crs(value: str) -> tuple[int | None, str]:
    """``(EPSG code or None, canonical text)`` of one CRS value; text is "EPSG:n" when known.

    >>> resolve_crs("epsg:32633")
    (32633, 'EPSG:32633')
    """
    try:
        crs = crs_(value)
    except SchemaError as exc:
        raise SchemaError(f"expected a raster CRS in {CRS_SOURCE_COLUMNS}; {exc}") from exc
    code = crs.to_epsg()
    if code is not None:
        return code, f"EPSG:{code}"
    authority = crs.to_authority()
    return None, (":".join(authority) if authority else crs.to_wkt())


def _as_text(column: pa.ChunkedArray, name: str) -> pa.Array:
    """A CRS column as strings ("EPSG:n" for codes, JSON for PROJJSON structs), "" -> null."""
    values = column.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = values.type
    if pa.types.is_floating(kind):
        values = values.cast(pa.int64())  # NaN-padded integer codes from pandas
        kind = values.type
    if pa.types.is_integer(kind):
        text = pc.binary_join_element_wise("EPSG:", values.cast(pa.string()), "")
    elif (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    ):
        text = values.cast(pa.string())
        text = pc.if_else(
            pc.equal(pc.utf8_trim_whitespace(text), ""), pa.scalar(None, pa.string()), text
        )
    elif pa.types.is_struct(kind):
        rows = values.to_pylist()  # PROJJSON stored as a struct: rare, one dumps per row
        text = pa.array([json.dumps(_drop_nulls(r)) if r else None for r in rows], pa.string())
    elif pa.types.is_null(kind):
        text = pa.nulls(len(values), pa.string())
    else:
        raise SchemaError(f"expected {name!r} as an EPSG code, CRS text or PROJJSON; got {kind}")
    return text


def _drop_nulls(value: Any) -> Any:
    """PROJJSON read back from a struct column has null members for absent keys; drop them."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value
