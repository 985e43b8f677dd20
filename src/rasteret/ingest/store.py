"""Persistence: workspace layout, fingerprints, atomic writes, GeoParquet 1.1 metadata.

A named collection lives in ``{workspace}/{name}_records/``: a Hive-partitioned
(``year=/month=``) GeoParquet dataset plus ``_rasteret.json``, which records the schema
version and the fingerprint of the input and options it was built from. Writes go to a
temporary sibling folder that is renamed into place, under an exclusive lock, so a killed or
concurrent build leaves either the previous collection or none.

>>> default_workspace().name
'rasteret_workspace'
>>> records_dir("scenes", Path("/tmp/ws")).as_posix()
'/tmp/ws/scenes_records'
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyproj

from rasteret.errors import WorkspaceError
from rasteret.ingest.schema import BBOX, GEOMETRY, MONTH, SCHEMA_VERSION, YEAR

__all__ = [
    "MANIFEST",
    "default_workspace",
    "fingerprint",
    "geoparquet_metadata",
    "open_dataset",
    "read_manifest",
    "records_dir",
    "workspace_lock",
    "write_collection",
]

MANIFEST = "_rasteret.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

CRS84_PROJJSON: dict[str, Any] = pyproj.CRS("OGC:CRS84").to_json_dict()
"""The GeoParquet ``crs`` of every collection footprint (longitude/latitude, WGS 84)."""


def default_workspace() -> Path:
    """``~/rasteret_workspace``."""
    return Path.home() / "rasteret_workspace"


def records_dir(name: str, workspace_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of collection ``name``; names that could escape the workspace are refused."""
    if not _NAME.match(name) or ".." in name:
        raise WorkspaceError(
            f"expected a collection name of letters, digits, '.', '_' or '-' (no '/', no '..'), "
            f"got {name!r}"
        )
    base = Path(workspace_dir).expanduser() if workspace_dir is not None else default_workspace()
    return base / f"{name}_records"


def fingerprint(table: pa.Table, options: Mapping[str, Any]) -> str:
    """A stable digest of an input table's content and the build options."""
    digest = hashlib.sha256()
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    digest.update(table.schema.remove_metadata().to_string().encode())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema.remove_metadata()) as writer:
        for batch in table.to_batches(max_chunksize=65536):
            writer.write_batch(batch)
    digest.update(memoryview(sink.getvalue()))
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a stored collection, or ``None`` when there is no complete one."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest


@contextlib.contextmanager
def workspace_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock for building ``folder`` (two builders of one name take turns)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def geoparquet_metadata(table: pa.Table) -> dict[str, Any]:
    """GeoParquet 1.1 ``geo`` metadata for the collection's CRS84 WKB footprints."""
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": [],
        "crs": CRS84_PROJJSON,
        "edges": "planar",
    }
    if BBOX in table.column_names:
        bbox = table.column(BBOX)
        column["covering"] = {"bbox": {k: [BBOX, k] for k in ("xmin", "ymin", "xmax", "ymax")}}
        if len(table) and bbox.null_count < len(table):
            flat = bbox.combine_chunks()
            lows = [pa.compute.min(flat.field(k)).as_py() for k in ("xmin", "ymin")]
            highs = [pa.compute.max(flat.field(k)).as_py() for k in ("xmax", "ymax")]
            column["bbox"] = [*lows, *highs]
    return {"version": "1.1.0", "primary_column": GEOMETRY, "columns": {GEOMETRY: column}}


def _with_geo_metadata(table: pa.Table) -> pa.Table:
    metadata = dict(table.schema.metadata or {})
    metadata[b"geo"] = json.dumps(geoparquet_metadata(table)).encode()
    return table.replace_schema_metadata(metadata)


def write_collection(
    table: pa.Table,
    folder: Path,
    manifest: Mapping[str, Any],
) -> None:
    """Write ``table`` to ``folder`` atomically, partitioned by year/month, with ``manifest``.

    The caller holds :func:`workspace_lock`. The new folder is complete (data and manifest)
    before it replaces the previous one.
    """
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex}"
    old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex}"
    try:
        table = _with_geo_metadata(table)
        partitioned = YEAR in table.column_names and MONTH in table.column_names
        ds.write_dataset(
            table,
            tmp,
            format="parquet",
            partitioning=ds.partitioning(
                pa.schema([table.schema.field(YEAR), table.schema.field(MONTH)]), flavor="hive"
            )
            if partitioned
            else None,
            existing_data_behavior="error",
            basename_template="part-{i}.parquet",
            max_rows_per_group=65536,
        )
        if not any(tmp.rglob("*.parquet")):  # an empty table still yields a readable dataset
            tmp.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, tmp / "part-0.parquet")
        full_manifest = {"schema_version": SCHEMA_VERSION, **manifest}
        full_manifest["schema"] = table.schema.serialize().to_pybytes().hex()
        (tmp / MANIFEST).write_text(json.dumps(full_manifest, sort_keys=True, default=str))
        _fsync_tree(tmp)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def open_dataset(folder: Path) -> ds.Dataset:
    """Open a stored collection as a lazy dataset with its full schema (partitions included)."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise WorkspaceError(f"expected a rasteret collection (with {MANIFEST}) at {folder}")
    schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(manifest["schema"])))
    files = sorted(str(p) for p in folder.rglob("*.parquet"))
    partitioning = (
        ds.partitioning(pa.schema([schema.field(YEAR), schema.field(MONTH)]), flavor="hive")
        if YEAR in schema.names and MONTH in schema.names
        else None
    )
    return ds.dataset(
        files,
        schema=schema,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=str(folder),
    )
