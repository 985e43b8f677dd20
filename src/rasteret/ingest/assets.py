"""The ``assets`` column: every accepted form becomes ``map<string, asset struct>``.

Accepted forms of a row's assets: a struct of per-asset structs (STAC GeoParquet), a map, a
JSON string, per-asset values that are plain href strings; or one URL column plus a
``band_index_map`` for multi-band files (every logical band points at the same file, at its
0-based sample index). Hrefs can be rewritten by prefix. All steps work on whole arrays.

>>> arr = normalize_assets(pa.table({"url": ["s3://b/a.tif"]}), href_column="url",
...                        band_index_map={"B04": 0, "B08": 1})
>>> [(k, v["href"], v["band_index"]) for k, v in arr[0].as_py()]
[('B04', 's3://b/a.tif', 0), ('B08', 's3://b/a.tif', 1)]
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from rasteret.errors import SchemaError
from rasteret.ingest.schema import ASSET_TYPE, ASSETS, ASSETS_TYPE

__all__ = ["normalize_assets", "rewrite_hrefs"]

_ASSET_FIELDS = [f.name for f in ASSET_TYPE]
_HREF_HINT = "; for one file URL per row pass href_column=... and band_index_map={band: index}"


def normalize_assets(
    table: pa.Table,
    *,
    href_column: str | None = None,
    band_index_map: Mapping[str, int] | None = None,
    url_rewrite_patterns: Mapping[str, str] | None = None,
) -> pa.Array:
    """Build the canonical ``assets`` array (``ASSETS_TYPE``) of ``table``.

    Args:
        table: the record table; its ``assets`` column is used unless ``href_column`` is given.
        href_column: one URL per row; with ``band_index_map`` it builds every row's assets.
        band_index_map: logical band -> 0-based sample index. Without ``href_column`` it fills
            ``band_index`` of existing assets with those keys.
        url_rewrite_patterns: ``{old_prefix: new_prefix}``; the longest matching prefix of
            each href is replaced once.

    Raises:
        SchemaError: a form that is not one of the accepted ones, or invalid JSON.
    """
    if href_column is not None:
        if not band_index_map:
            raise SchemaError(
                f"href_column={href_column!r} needs band_index_map={{band: sample_index}}, e.g. "
                "band_index_map={'B04': 0, 'B08': 1}; got none"
            )
        if href_column not in table.column_names:
            raise SchemaError(f"no href_column {href_column!r}; found {table.column_names}")
        offsets, keys, items, valid = _from_href_column(table.column(href_column), band_index_map)
    else:
        offsets, keys, items, valid = _entries(_combined(table.column(ASSETS)))
        if band_index_map:
            items = _fill_band_index(keys, items, band_index_map)
    if url_rewrite_patterns:
        href = rewrite_hrefs(items.field("href"), url_rewrite_patterns)
        items = _asset_struct(href, *(items.field(n) for n in _ASSET_FIELDS[1:]))
    mask = pa.array(~valid)
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), keys, items, ASSETS_TYPE, mask=mask
    )


def rewrite_hrefs(hrefs: pa.Array, patterns: Mapping[str, str]) -> pa.Array:
    """Replace the longest matching prefix of every href (once), like ``io.urls.rewrite_url``.

    >>> rewrite_hrefs(pa.array(["s3://a/x.tif", "gs://b/y.tif"]), {"s3://a/": "/data/"}).to_pylist()
    ['/data/x.tif', 'gs://b/y.tif']
    """
    out = hrefs
    done = pa.array(np.zeros(len(hrefs), dtype=bool))
    for old in sorted(patterns, key=len, reverse=True):
        hit = pc.and_(pc.fill_null(pc.starts_with(hrefs, old), False), pc.invert(done))
        tail = pc.utf8_slice_codeunits(hrefs, len(old))
        out = pc.if_else(hit, pc.binary_join_element_wise(patterns[old], tail, ""), out)
        done = pc.or_(done, hit)
    return out


def _combined(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def _entries(array: pa.Array) -> tuple[np.ndarray, pa.Array, pa.StructArray, np.ndarray]:
    """(offsets, keys, items, row_valid) of an assets column in any accepted form."""
    dtype = array.type
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_map(dtype):
        off = array.offsets.to_numpy().astype(np.int64)
        n = int(off[-1] - off[0])
        keys = array.keys.slice(int(off[0]), n).cast(pa.string())
        items = _asset_items(array.items.slice(int(off[0]), n), "map values")
        keep = items.is_valid().to_numpy(zero_copy_only=False)
        counts = np.concatenate([[0], np.cumsum(keep)])[off - off[0]]
        return counts, keys.filter(pa.array(keep)), items.filter(pa.array(keep)), valid
    if pa.types.is_struct(dtype):
        return _struct_entries(array, valid)
    if (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
    ):
        return _struct_entries(_parse_json(array.cast(pa.large_string())), valid)
    raise SchemaError(
        "expected 'assets' as a struct of per-asset structs, a map, a JSON string, or per-asset "
        f"href strings; got type {dtype}. For one multi-band file per row pass href_column=... "
        "and band_index_map=..."
    )


def _struct_entries(
    array: pa.StructArray, valid: np.ndarray
) -> tuple[np.ndarray, pa.Array, pa.StructArray, np.ndarray]:
    names = [f.name for f in array.type]
    n, k = len(array), len(names)
    if k == 0:
        empty = _asset_struct(*(pa.nulls(0, f.type) for f in ASSET_TYPE))
        return np.zeros(n + 1, dtype=np.int64), pa.array([], pa.string()), empty, valid
    children = [_asset_items(array.field(i), f"asset {name!r}") for i, name in enumerate(names)]
    present = np.column_stack([c.is_valid().to_numpy(zero_copy_only=False) for c in children])
    present &= valid[:, None]
    order = (np.arange(k)[None, :] * n + np.arange(n)[:, None])[present]  # row-major entries
    items = pa.concat_arrays(children).take(pa.array(order))
    keys = pa.array(np.array(names, dtype=object)[np.nonzero(present)[1]], pa.string())
    offsets = np.concatenate([[0], np.cumsum(present.sum(axis=1))])
    return offsets, keys, items, valid


def _asset_items(values: pa.Array, where: str) -> pa.StructArray:
    """Per-asset values (struct with href/..., or a plain href string) -> ``ASSET_TYPE``."""
    values = _combined(values)
    n = len(values)
    if pa.types.is_null(values.type):
        return _asset_struct(*(pa.nulls(n, f.type) for f in ASSET_TYPE))
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        nulls = [pa.nulls(n, f.type) for f in list(ASSET_TYPE)[1:]]
        return _asset_struct(values.cast(pa.string()), *nulls, mask=values.is_null())
    if not pa.types.is_struct(values.type) or values.type.get_field_index("href") < 0:
        raise SchemaError(
            f"expected {where} as a struct with an 'href' or an href string; got {values.type}"
        )
    parts = []
    for field in ASSET_TYPE:
        i = values.type.get_field_index(field.name)
        child = values.field(i) if i >= 0 else pa.nulls(n, field.type)
        try:
            parts.append(child.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"expected {where} field {field.name!r} as {field.type}; got {child.type}"
            ) from exc
    return _asset_struct(*parts, mask=values.is_null())


def _asset_struct(*children: pa.Array, mask: pa.Array | None = None) -> pa.StructArray:
    return pa.StructArray.from_arrays(list(children), fields=list(ASSET_TYPE), mask=mask)


def _parse_json(text: pa.Array) -> pa.StructArray:
    filled = pc.fill_null(text, "{}")
    try:
        parsed = pajson.read_json(
            io.BytesIO("\n".join(filled.to_pylist()).encode()),
            parse_options=pajson.ParseOptions(newlines_in_values=True),
        )
        if parsed.num_rows == len(text):
            columns = [c.combine_chunks() for c in parsed.columns]
            if not columns:
                return pa.StructArray.from_arrays([], fields=[], mask=text.is_null())
            return pa.StructArray.from_arrays(
                columns, names=parsed.column_names, mask=text.is_null()
            )
    except pa.ArrowInvalid:
        pass
    return _parse_json_rows(text)


def _parse_json_rows(text: pa.Array) -> pa.StructArray:
    """Slow path for JSON whose per-asset values mix forms across rows (struct and href)."""
    rows: list[dict[str, Any] | None] = []
    for i, value in enumerate(text.to_pylist()):
        try:
            obj = json.loads(value) if value is not None else None
        except json.JSONDecodeError as exc:
            hint = "" if value.lstrip().startswith("{") else _HREF_HINT
            raise SchemaError(f"expected JSON assets in row {i}, got {value[:80]!r}{hint}") from exc
        if obj is not None and not isinstance(obj, dict):
            raise SchemaError(f"expected a JSON object of assets in row {i}, got {value[:80]!r}")
        rows.append(
            None
            if obj is None
            else {k: {"href": v} if isinstance(v, str) else v for k, v in obj.items()}
        )
    return pa.array(rows)


def _from_href_column(
    hrefs: pa.ChunkedArray, band_index_map: Mapping[str, int]
) -> tuple[np.ndarray, pa.Array, pa.StructArray, np.ndarray]:
    href = _combined(hrefs).cast(pa.string())
    k = len(band_index_map)
    valid = href.is_valid().to_numpy(zero_copy_only=False)
    rows = np.repeat(np.flatnonzero(valid), k)
    keys = pa.array(
        np.tile(np.array(list(band_index_map), dtype=object), int(valid.sum())), pa.string()
    )
    index = pa.array(
        np.tile(np.array(list(band_index_map.values()), dtype=np.int32), int(valid.sum()))
    )
    m = len(rows)
    items = _asset_struct(
        href.take(pa.array(rows, pa.int64())),
        index,
        pa.nulls(m, pa.string()),
        pa.nulls(m, pa.list_(pa.string())),
    )
    offsets = np.concatenate([[0], np.cumsum(valid * k)])
    return offsets, keys, items, valid


def _fill_band_index(
    keys: pa.Array, items: pa.StructArray, band_index_map: Mapping[str, int]
) -> pa.StructArray:
    position = pc.index_in(keys, value_set=pa.array(list(band_index_map), pa.string()))
    mapped = pa.array(list(band_index_map.values()), pa.int32()).take(position)
    band_index = pc.coalesce(items.field("band_index"), mapped)
    parts = [items.field(n) if n != "band_index" else band_index for n in _ASSET_FIELDS]
    return _asset_struct(*parts, mask=items.is_null())
