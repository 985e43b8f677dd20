"""Point sampling at scale: a Dask DataFrame or a Parquet folder of points, partition by partition.

Each partition of points is one task that runs the eager ``Collection.sample_points`` on its
worker, over an in-memory collection of the records table the driver selected once (id,
datetime, bbox and the bands' ``{band}_metadata``; one graph key, shipped once per worker).
The eager sampler then picks the records under the partition's points, groups the points by
tile and reads each tile once. Rows are point-major, so the partitions' rows concatenated are
the eager rows for all the points, in the same order.

Output is a Dask DataFrame (pandas partitions with ``pyarrow``-backed dtypes: band values
keep their native dtype and nulls) or, with ``output=``, one Parquet file per partition,
written by the workers with the eager Arrow schema (geometry tagged ``geoarrow.wkb``).
Every partition has the same schema: band columns take the dtype the bands have across the
selected records (the eager dtype when the bands share one dtype, as they do in practice).
"""

from __future__ import annotations

import inspect
import os
import threading
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rasteret._no_overlap import quiet_no_overlap
from rasteret._optional import import_optional
from rasteret.errors import SchemaError
from rasteret.ingest.filesystems import filesystem_for_uri
from rasteret.ingest.schema import BBOX, DATETIME, ID, metadata_column

if TYPE_CHECKING:
    from rasteret.collection import Collection

__all__ = ["ParquetPart", "is_dask_collection", "sample_partition", "sample_points_dask"]

_DRIVER_ONLY = ("data_source", "progress")
"""Keywords the driver consumes: ``data_source`` becomes the tasks' ``cloud_config``."""


@dataclass(frozen=True, slots=True, eq=False)
class ParquetPart:
    """One file of a Parquet folder of points: what a worker needs to open it itself."""

    uri: str
    """The folder's URI (the worker resolves its filesystem from its own environment)."""
    path: str
    """The file's path inside that filesystem."""
    schema: pa.Schema
    partition: ds.Expression
    """Hive partition keys of the file (filled in as columns)."""

    def read(self) -> pa.Table:
        """The file's rows, with the folder's schema."""
        fs, _ = filesystem_for_uri(self.uri)
        dataset = ds.FileSystemDataset.from_paths(
            [self.path],
            schema=self.schema,
            format=ds.ParquetFileFormat(),
            filesystem=fs,
            partitions=[self.partition],
        )
        return dataset.to_table()


def is_dask_collection(value: Any) -> bool:
    """Whether ``value`` is a Dask collection (checked without importing dask)."""
    module = type(value).__module__
    return module.startswith(("dask.", "dask_geopandas")) and hasattr(value, "__dask_graph__")


_aligned_cache: dict[int, tuple[weakref.ref[pa.Table], pa.Table]] = {}
_aligned_lock = threading.Lock()


def _aligned(records: pa.Table) -> pa.Table:
    """``records`` with buffers Arrow allocated (aligned), copied once per process.

    A table unpickled from a Dask frame can sit at any byte offset, and Arrow's scanner
    warns about (and copies) such buffers on every filter; one IPC round trip fixes it.
    """
    with _aligned_lock:
        hit = _aligned_cache.get(id(records))
        if hit is not None and hit[0]() is records:
            return hit[1]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, records.schema) as writer:
        writer.write_table(records)
    copy = pa.ipc.open_stream(sink.getvalue()).read_all()
    with _aligned_lock:
        for key in [k for k, (ref, _) in _aligned_cache.items() if ref() is None]:
            del _aligned_cache[key]
        _aligned_cache[id(records)] = (weakref.ref(records), copy)
    return copy


def sample_partition(
    records: pa.Table,
    points: Any,
    bands: Sequence[str],
    kwargs: dict[str, Any],
    schema: pa.Schema | None,
) -> pa.Table:
    """Sample one partition of points over ``records`` with the eager sampler (a task)."""
    from rasteret.collection import Collection

    if isinstance(points, ParquetPart):
        points = points.read()
    collection = Collection(ds.dataset(_aligned(records)))
    with quiet_no_overlap():  # a partition outside every record is no mistake
        table = collection.sample_points(points, list(bands), **kwargs)
    if schema is None or table.schema.equals(schema):
        return table
    return table.cast(schema)


def _to_pandas(table: pa.Table) -> Any:
    import pandas as pd

    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _sample_to_pandas(
    records: pa.Table, points: Any, bands: Sequence[str], kwargs: dict[str, Any], schema: pa.Schema
) -> Any:
    return _to_pandas(sample_partition(records, points, bands, kwargs, schema))


def _sample_to_parquet(
    records: pa.Table,
    points: Any,
    bands: Sequence[str],
    kwargs: dict[str, Any],
    schema: pa.Schema,
    uri: str,
    name: str,
) -> str:
    table = sample_partition(records, points, bands, kwargs, schema)
    fs, root = filesystem_for_uri(uri)
    pq.write_table(table, f"{root.rstrip('/')}/{name}", filesystem=fs)
    return f"{uri.rstrip('/')}/{name}"


def _check_keywords(kwargs: dict[str, Any]) -> None:
    from rasteret._collection_points import _OPTION_KEYWORDS, _POINT_KEYWORDS, PointSamplingMixin
    from rasteret._collection_reads import _FILTER_KEYWORDS

    named = set(inspect.signature(PointSamplingMixin.sample_points).parameters) - {
        "self",
        "points",
        "bands",
        "kwargs",
    }
    allowed = {*named, *_FILTER_KEYWORDS, *_OPTION_KEYWORDS, *_POINT_KEYWORDS}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {unknown} for sample_points()")


def _sources(points: Any) -> tuple[list[Any], pa.Table | Any]:
    """The partitions (Delayed pandas frames or :class:`ParquetPart`) and an empty sample."""
    if is_dask_collection(points):
        if not hasattr(points, "to_delayed") or not hasattr(points, "_meta"):
            raise SchemaError(
                f"expected a Dask DataFrame of points, got {type(points).__module__}."
                f"{type(points).__name__}"
            )
        return list(points.to_delayed()), _empty_from_pandas(points._meta)
    if isinstance(points, str | os.PathLike):
        uri = os.fspath(points)
        fs, path = filesystem_for_uri(uri)
        dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
        parts = [
            ParquetPart(uri, fragment.path, dataset.schema, fragment.partition_expression)
            for fragment in dataset.get_fragments()
        ]
        return parts, dataset.schema.empty_table()
    raise SchemaError(
        "expected points as a Dask DataFrame or the path of a Parquet folder of points, got "
        f"{type(points).__module__}.{type(points).__name__}; use Collection.sample_points() "
        "for in-memory points"
    )


def _empty_from_pandas(meta: Any) -> Any:
    """An empty Arrow table for a pandas meta frame (object columns: WKB or strings)."""
    if type(meta).__module__.startswith("geopandas"):
        return meta  # the eager sampler reads GeoDataFrames (and their CRS) itself
    table = pa.Table.from_pandas(meta, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            kind = pa.binary() if field.name in ("geometry", "geom", "wkb") else pa.string()
            table = table.set_column(i, pa.field(field.name, kind), pa.array([], kind))
    return table


def _output_schema(
    records: pa.Table, empty: Any, bands: Sequence[str], kwargs: dict[str, Any]
) -> pa.Schema:
    """The eager schema, band columns in the bands' common dtype over ``records``."""
    schema = sample_partition(records, empty, bands, kwargs, None).schema
    inputs = set(getattr(empty, "column_names", None) or list(getattr(empty, "columns", [])))
    for band in bands:
        dtypes = pc.unique(records.column(metadata_column(band)).combine_chunks().field("dtype"))
        names = [d for d in dtypes.to_pylist() if d is not None]
        if not names:
            continue
        kind = pa.from_numpy_dtype(np.result_type(*(np.dtype(n) for n in names)))
        for name, typ in ((band, kind), (f"{band}_neighbourhood", pa.list_(kind))):
            column = name if name not in inputs else f"sample_{name}"
            i = schema.get_field_index(column)
            if i >= 0:
                schema = schema.set(i, schema.field(i).with_type(typ))
    return schema


def sample_points_dask(
    collection: Collection,
    points: Any,
    bands: Sequence[str] | str,
    *,
    output: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Any:
    """``collection.sample_points`` over a Dask DataFrame or a Parquet folder of points.

    Args:
        collection: The collection to sample.
        points: A Dask DataFrame (or dask-geopandas GeoDataFrame) of points, or the path /
            URI of a (Hive-partitioned) Parquet folder of points: one task per partition.
        bands: Band names, in output column order.
        output: A folder (path or URI) to write one Parquet file per partition into, with
            the eager Arrow schema; the files are written now and their URIs returned.
        **kwargs: Every keyword of :meth:`Collection.sample_points` (filters, point options,
            I/O options); ``backend=`` must pickle to reach the workers. The read's
            ``cloud_config`` (explicit, else that of ``data_source=``, else of the
            collection's own data source) is resolved here, on the driver, and shipped to
            the tasks as a value: workers need no catalog registration of their own.
            ``progress=`` shows no bar (tasks run on the workers).

    Returns:
        A lazy Dask DataFrame (one partition per input partition, rows in eager order), or
        with ``output=`` the list of Parquet files written.

    Raises:
        MissingDependencyError: dask is not installed.
        SchemaError, BandResolutionError, TypeError: as the eager ``sample_points``.

    Example:
        ``ddf = sample_points_dask(collection, dd.read_parquet("points/"), ["B04"])``
    """
    dask = import_optional("dask", extra="dask")
    dd = import_optional("dask.dataframe", extra="dask")
    bands = collection._require_bands([bands] if isinstance(bands, str) else list(bands))
    _check_keywords(kwargs)
    from rasteret._collection_reads import _FILTER_KEYWORDS, read_cloud_config

    filters = {k: kwargs.pop(k) for k in _FILTER_KEYWORDS if k in kwargs}
    kwargs["cloud_config"] = read_cloud_config(
        kwargs.get("cloud_config"), kwargs.get("data_source"), collection.data_source
    )
    for key in _DRIVER_ONLY:
        kwargs.pop(key, None)
    columns = [ID, DATETIME, BBOX, *(metadata_column(b) for b in bands)]
    records = collection.subset(**filters).to_table(columns=columns)
    sources, empty = _sources(points)
    schema = _output_schema(records, empty, bands, kwargs)
    token = uuid.uuid4().hex
    shared = dask.delayed(records, name=f"rasteret-records-{token}", traverse=False)
    if output is None:
        task = dask.delayed(_sample_to_pandas, pure=True)
        parts = [task(shared, src, tuple(bands), kwargs, schema) for src in sources]
        meta = _to_pandas(schema.empty_table())
        return dd.from_delayed(parts, meta=meta, verify_meta=False)
    uri = os.fspath(output)
    fs, root = filesystem_for_uri(uri)
    fs.create_dir(root, recursive=True)
    write = dask.delayed(_sample_to_parquet, pure=True)
    writes = [
        write(shared, src, tuple(bands), kwargs, schema, uri, f"part-{i:05d}.parquet")
        for i, src in enumerate(sources)
    ]
    return list(dask.compute(*writes))
