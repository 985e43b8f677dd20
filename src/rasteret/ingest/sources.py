"""Record-table sources: every accepted input form becomes one :class:`pyarrow.Table`.

In-memory forms (Arrow tables, batches, readers, datasets, anything with
``__arrow_c_stream__`` such as DuckDB relations and Polars frames, GeoDataFrames and pandas
DataFrames) and Parquet/GeoParquet/Arrow files or Hive-partitioned folders, local or on
``s3://``, ``gs://``, ``az://``. Column projection and row filters are pushed into the scan.
Geometry metadata (GeoArrow field metadata, GeoParquet ``geo`` schema metadata) is kept.

Cloud filesystems come from :mod:`rasteret.ingest.filesystems`, configured by the same
standard environment variables as the COG reads; pass ``filesystem=`` to override.

>>> read_source(pa.table({"id": ["a", "b"], "n": [1, 2]}), filter_expr=ds.field("n") > 1)
pyarrow.Table
id: string
n: int64
----
id: [["b"]]
n: [[2]]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import shapely
from shapely.geometry.base import BaseGeometry

from rasteret.errors import (
    AccessDeniedError,
    FetchError,
    ObjectNotFoundError,
    SchemaError,
    UnsupportedFormatError,
)
from rasteret.ingest.filesystems import filesystem_for_uri
from rasteret.types import (
    EXTENSION_NAME_KEY,
    GEOARROW_WKB,
    classic_arrow_types,
    geoarrow_wkb_field,
)

__all__ = ["FilterLike", "PathLike", "read_source"]

PathLike: TypeAlias = str | os.PathLike[str]
FilterLike: TypeAlias = ds.Expression | Sequence[Any]
"""A pyarrow.dataset expression or pyarrow.parquet DNF filters ``[("year", "=", 2024)]``."""

_IPC_SUFFIXES = (".arrow", ".feather", ".ipc")


def read_source(
    source: Any,
    *,
    filesystem: pafs.FileSystem | None = None,
    columns: Sequence[str] | None = None,
    filter_expr: FilterLike | None = None,
) -> pa.Table:
    """Read any accepted record-table form into one Arrow table.

    Args:
        source: a path/URI or list of them (Parquet, GeoParquet, Arrow IPC, Hive folders), or an
            in-memory table: pa.Table/RecordBatch/RecordBatchReader, pyarrow.dataset.Dataset,
            GeoDataFrame, pandas DataFrame, or anything with ``__arrow_c_stream__``.
        filesystem: a pyarrow filesystem for paths; by default one is built from the URI scheme
            and the standard environment variables.
        columns: columns to keep (pushed into the scan).
        filter_expr: row filter (pushed into the scan; partition columns prune files).

    Raises:
        ObjectNotFoundError: no file or folder at the path.
        AccessDeniedError: the store refused the credentials.
        UnsupportedFormatError: plain HTTP(S) Parquet URLs or unknown source types.
        SchemaError: unknown columns in ``columns``/``filter_expr`` or an unreadable table.
    """
    return classic_arrow_types(_read(source, filesystem, columns, filter_expr))


def _read(
    source: Any,
    filesystem: pafs.FileSystem | None,
    columns: Sequence[str] | None,
    filter_expr: FilterLike | None,
) -> pa.Table:
    expr = _expression(filter_expr)
    cols = list(columns) if columns is not None else None
    if isinstance(source, str | os.PathLike) or (
        isinstance(source, list | tuple)
        and source
        and all(isinstance(s, str | os.PathLike) for s in source)
    ):
        return _read_paths(source, filesystem, cols, expr)
    if isinstance(source, ds.Dataset):
        return _scan(lambda: source.to_table(columns=cols, filter=expr), repr(source))
    table_or_reader = _in_memory(source)
    if cols is None and expr is None:
        if isinstance(table_or_reader, pa.RecordBatchReader):
            return table_or_reader.read_all()
        return table_or_reader
    if isinstance(table_or_reader, pa.RecordBatchReader):
        scanner = ds.Scanner.from_batches(table_or_reader, columns=cols, filter=expr)
        return _scan(scanner.to_table, type(source).__name__)
    dataset = ds.dataset(table_or_reader)
    return _scan(lambda: dataset.to_table(columns=cols, filter=expr), type(source).__name__)


def _expression(filter_expr: FilterLike | None) -> ds.Expression | None:
    if filter_expr is None or isinstance(filter_expr, ds.Expression):
        return filter_expr
    try:
        return pq.filters_to_expression(list(filter_expr))
    except (TypeError, ValueError) as exc:
        raise SchemaError(
            "expected filter_expr as a pyarrow.dataset expression or DNF filters like "
            f"[('year', '=', 2024)], got {filter_expr!r}: {exc}"
        ) from exc


def _in_memory(source: Any) -> pa.Table | pa.RecordBatchReader:
    module = type(source).__module__
    if isinstance(source, pa.Table | pa.RecordBatchReader):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    if module.startswith("geopandas") and hasattr(source, "to_arrow"):
        return pa.table(source.to_arrow(geometry_encoding="WKB"))
    if module.startswith("pandas") and hasattr(source, "columns"):
        return _from_pandas(source)
    if isinstance(source, Mapping):
        return _from_pydict(source)
    if isinstance(source, list | tuple) and source and all(isinstance(r, Mapping) for r in source):
        names = list(dict.fromkeys(k for row in source for k in row))
        return _from_pydict({k: [row.get(k) for row in source] for k in names})
    if hasattr(source, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(source)
    if hasattr(source, "__arrow_c_array__"):
        return pa.Table.from_batches([pa.record_batch(source)])
    raise UnsupportedFormatError(
        "expected a Parquet path/URI or an Arrow-compatible table (pa.Table, RecordBatch, "
        "RecordBatchReader, pyarrow dataset, GeoDataFrame, pandas/Polars DataFrame, DuckDB "
        f"relation, __arrow_c_stream__), got {type(source).__module__}.{type(source).__name__}"
    )


def _from_pandas(frame: Any) -> pa.Table:
    """pandas -> Arrow; columns of shapely geometries become tagged WKB (with their CRS, if any)."""
    frame = frame.copy(deep=False)
    geometry_fields = {}
    for name in frame.columns:
        column = frame[name]
        first = column.first_valid_index()
        if first is not None and isinstance(column[first], BaseGeometry):
            frame[name] = shapely.to_wkb(np.asarray(column, dtype=object), flavor="iso")
            crs = getattr(column.array, "crs", None)  # a geopandas GeometryArray knows its CRS
            geometry_fields[str(name)] = (
                _untyped_wkb_field(str(name)) if crs is None else geoarrow_wkb_field(str(name), crs)
            )
    table = pa.Table.from_pandas(frame)
    for name, field in geometry_fields.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, field, table.column(i).cast(pa.binary()))
    return table


def _from_pydict(columns: Mapping[str, Any]) -> pa.Table:
    """Python columns -> Arrow; columns of shapely geometries become tagged WKB (CRS unknown)."""
    arrays: dict[str, Any] = {}
    fields = []
    for name, values in columns.items():
        values = list(values) if not isinstance(values, pa.Array | pa.ChunkedArray) else values
        if isinstance(values, list) and any(isinstance(v, BaseGeometry) for v in values):
            wkb = shapely.to_wkb(np.array(values, dtype=object), flavor="iso")
            arrays[name] = pa.array(wkb, pa.binary())
            fields.append(_untyped_wkb_field(name))
        else:
            arrays[name] = values
            fields.append(None)
    table = pa.table(arrays)
    for i, field in enumerate(fields):
        if field is not None:
            table = table.set_column(i, field, table.column(i))
    return table


def _untyped_wkb_field(name: str) -> pa.Field:
    return pa.field(name, pa.binary(), metadata={EXTENSION_NAME_KEY: GEOARROW_WKB.encode()})


def _scan(run: Any, where: str) -> pa.Table:
    try:
        table: pa.Table = run()
    except FileNotFoundError as exc:
        raise ObjectNotFoundError(
            f"expected a Parquet/Arrow record table at {where}, got: {exc}"
        ) from exc
    except pa.ArrowInvalid as exc:
        raise SchemaError(f"could not read the record table at {where}: {exc}") from exc
    except OSError as exc:
        text = str(exc)
        if "ACCESS_DENIED" in text or "Forbidden" in text or "403" in text:
            raise AccessDeniedError(
                f"access denied reading {where}; check the AWS_*/GOOGLE_*/AZURE_* credentials "
                f"(requester-pays buckets cannot be scanned: download the table first): {exc}"
            ) from exc
        if "NoSuchKey" in text or "NoSuchBucket" in text or "does not exist" in text:
            raise ObjectNotFoundError(f"no record table at {where}: {exc}") from exc
        raise FetchError(f"could not read the record table at {where}: {exc}") from exc
    return table


def _read_paths(
    source: PathLike | Sequence[PathLike],
    filesystem: pafs.FileSystem | None,
    columns: list[str] | None,
    expr: ds.Expression | None,
) -> pa.Table:
    uris = (
        [os.fspath(source)]
        if isinstance(source, str | os.PathLike)
        else [os.fspath(s) for s in source]
    )
    resolved = [filesystem_for_uri(u, filesystem) for u in uris]
    fs = resolved[0][0]
    paths = [p for _, p in resolved]
    if len({type(f) for f, _ in resolved}) > 1:
        raise UnsupportedFormatError(f"expected paths on one filesystem, got {uris}")
    fmt = "ipc" if paths[0].lower().endswith(_IPC_SUFFIXES) else "parquet"
    where = uris[0] if len(uris) == 1 else f"{uris[0]} (+{len(uris) - 1} more)"

    def run() -> pa.Table:
        dataset = ds.dataset(
            paths if len(paths) > 1 else paths[0],
            filesystem=fs,
            format=fmt,
            partitioning="hive" if len(paths) == 1 else None,
        )
        return dataset.to_table(columns=columns, filter=expr)

    return _scan(run, where)
