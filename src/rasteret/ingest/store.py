"""Persistence: workspace layout, fingerprints, atomic writes, GeoParquet 1.1 metadata.

A named collection lives in ``{workspace}/{name}_records/``: a Hive-partitioned
(``year=/month=``) GeoParquet dataset plus ``_rasteret.json``, which records the schema
version, the fingerprint of the input and options it was built from, and every data file with
its size. What is on disk is always a complete collection or none:

- a write goes to a hidden sibling folder, is synced, and is then exchanged with the previous
  folder in one atomic step, under an exclusive per-name lock (:func:`workspace_lock`); a build
  killed at any point leaves the previous collection (or none) and leftovers that the next
  writer removes (:func:`recover`);
- a reader trusts a folder only when its manifest parses and lists files that are all there
  with their recorded sizes (:func:`read_manifest`), so a partial copy never loads as complete;
- URLs are stored without signatures or passwords (:func:`redact_table`).

>>> default_workspace().name
'rasteret_workspace'
>>> records_dir("scenes", Path("/tmp/ws")).as_posix()
'/tmp/ws/scenes_records'
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rasteret.errors import WorkspaceError
from rasteret.ingest.schema import BBOX, GEOMETRY, MONTH, SCHEMA_VERSION, YEAR
from rasteret.io.urls import redact_url
from rasteret.types import CRS84
from rasteret.types import geoparquet_metadata as geoparquet_column_metadata

__all__ = [
    "MANIFEST",
    "default_workspace",
    "fingerprint",
    "geoparquet_metadata",
    "manifest_dataset",
    "open_dataset",
    "read_manifest",
    "records_dir",
    "recover",
    "redact_table",
    "workspace_lock",
    "write_collection",
]

MANIFEST = "_rasteret.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


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
    """The manifest of the complete collection at ``folder``, or ``None`` when there is none.

    Complete means: the manifest parses and every data file it lists is there with the size it
    was written with. Where the file system has no atomic directory exchange, a writer killed
    between moving the previous collection aside and moving the new one in leaves no
    ``folder``; the previous collection is then put back first (see :func:`recover`).
    """
    manifest = _manifest_of(folder)
    if manifest is None and _leftovers(folder, "old"):
        with workspace_lock(folder):
            recover(folder)
        manifest = _manifest_of(folder)
    return manifest


def _manifest_of(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not _files_complete(folder, manifest):
        return None
    return manifest


def _files_complete(folder: Path, manifest: Mapping[str, Any]) -> bool:
    files = manifest.get("files")
    if files is None:  # written before manifests listed their files
        return True
    if not isinstance(files, dict):
        return False
    for relpath, size in files.items():
        try:
            if (folder / relpath).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


_held = threading.local()


@contextlib.contextmanager
def workspace_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock for building ``folder``: two builders of one name take turns.

    An ``flock`` on ``.{folder name}.lock`` beside the folder, so it works across processes
    and is released by the kernel when its holder dies. Re-entrant within one thread.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    key = os.path.abspath(lock_path)
    held: set[str] = _held.__dict__.setdefault("paths", set())
    if key in held:
        yield
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def recover(folder: Path) -> None:
    """Clean up after writers of ``folder`` that were killed (the caller holds its lock).

    A previous collection moved aside (``.{name}.old-*``) while ``folder`` is missing is moved
    back; unfinished ``.{name}.tmp-*`` folders and superseded ``.old-*`` ones are removed.
    """
    olds = _leftovers(folder, "old")
    if olds and not folder.exists():
        for candidate in sorted(olds, key=lambda p: p.stat().st_mtime_ns, reverse=True):
            if _manifest_of(candidate) is not None:
                candidate.rename(folder)
                break
    for leftover in (*_leftovers(folder, "tmp"), *_leftovers(folder, "old")):
        shutil.rmtree(leftover, ignore_errors=True)


def _leftovers(folder: Path, kind: str) -> list[Path]:
    pattern = re.compile(rf"^\.{re.escape(folder.name)}\.{kind}-[0-9a-f]{{32}}$")
    try:
        return [p for p in folder.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return []


def geoparquet_metadata(table: pa.Table) -> dict[str, Any]:
    """GeoParquet 1.1 ``geo`` metadata for the collection's CRS84 WKB footprints."""
    geo = geoparquet_column_metadata(GEOMETRY, CRS84)
    column = geo["columns"][GEOMETRY]
    column["edges"] = "planar"
    if BBOX in table.column_names:
        bbox = table.column(BBOX)
        column["covering"] = {"bbox": {k: [BBOX, k] for k in ("xmin", "ymin", "xmax", "ymax")}}
        if len(table) and bbox.null_count < len(table):
            flat = bbox.combine_chunks()
            lows = [pa.compute.min(flat.field(k)).as_py() for k in ("xmin", "ymin")]
            highs = [pa.compute.max(flat.field(k)).as_py() for k in ("xmax", "ymax")]
            column["bbox"] = [*lows, *highs]
    return geo


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

    The caller holds :func:`workspace_lock`. The new collection is written completely (data,
    then a manifest listing every data file and its size) into a hidden sibling folder, synced,
    and then exchanged with ``folder`` in one atomic step (``renameat2(RENAME_EXCHANGE)`` on
    Linux; elsewhere two renames, undone by :func:`recover` if interrupted). Data file names
    are unique per write, so a dataset opened before a rebuild fails loudly instead of reading
    the new files. URLs are stored without credentials (:func:`redact_table`).

    Raises:
        WorkspaceError: ``folder`` exists and is not a rasteret collection (nor empty).
    """
    recover(folder)
    _check_replaceable(folder)
    token = uuid.uuid4().hex
    tmp = folder.parent / f".{folder.name}.tmp-{token}"
    try:
        table = _with_geo_metadata(_clustered(redact_table(table)))
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
            basename_template=f"part-{token[:12]}-{{i}}.parquet",
            max_rows_per_group=65536,
        )
        if not any(tmp.rglob("*.parquet")):  # an empty table still yields a readable dataset
            tmp.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, tmp / f"part-{token[:12]}-0.parquet")
        full_manifest = {"schema_version": SCHEMA_VERSION, **manifest}
        full_manifest["schema"] = table.schema.serialize().to_pybytes().hex()
        full_manifest["files"] = {
            p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*.parquet"))
        }
        (tmp / MANIFEST).write_text(json.dumps(full_manifest, sort_keys=True, default=str))
        _fsync_tree(tmp)
        _swap_into_place(tmp, folder, token)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange: the previous collection


def _clustered(table: pa.Table) -> pa.Table:
    """Rows ordered by (year, month, bbox.xmin, bbox.ymin).

    Each partition then gets a few large row groups instead of one per input batch, and the
    footprint statistics of neighbouring rows are close, so bbox filters skip row groups.
    """
    keys: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name in (YEAR, MONTH):
        if name in table.column_names:
            keys[name] = table.column(name)
    if BBOX in table.column_names and pa.types.is_struct(table.schema.field(BBOX).type):
        bbox = table.column(BBOX)
        for part in ("xmin", "ymin"):
            keys[f"bbox.{part}"] = pc.struct_field(bbox, part)
    if not keys or len(table) < 2:
        return table
    order = pc.sort_indices(pa.table(keys), sort_keys=[(k, "ascending") for k in keys])
    return table.take(order)


def _check_replaceable(folder: Path) -> None:
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_dir() and ((folder / MANIFEST).is_file() or not any(folder.iterdir())):
        return
    raise WorkspaceError(
        f"expected {folder} to be a rasteret collection (with {MANIFEST}), an empty folder or "
        "nothing, got other content; refusing to replace it"
    )


def _swap_into_place(tmp: Path, folder: Path, token: str) -> None:
    """Make ``tmp`` the collection at ``folder``; the previous one ends up at ``tmp``."""
    if not folder.exists():
        tmp.rename(folder)
    elif not _exchange(tmp, folder):
        old = folder.parent / f".{folder.name}.old-{token}"
        folder.rename(old)
        try:
            tmp.rename(folder)
        except BaseException:
            old.rename(folder)
            raise
        old.rename(tmp)  # removed by the caller, like an exchanged previous collection
    _fsync_dir(folder.parent)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, musl)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when the OS or file system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in (*(p for p in folder.rglob("*") if p.is_dir()), folder):
        _fsync_dir(path)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- credentials never reach the disk ------------------------------------------------------------

_SUSPECT_URL = r"://.*[?@]"


def redact_table(table: pa.Table) -> pa.Table:
    """``table`` with credentials taken out of every URL in it, at any nesting depth.

    String values that look like URLs with a query string or ``user:password@`` go through
    :func:`rasteret.io.urls.redact_url` (signature parameters such as ``X-Amz-Signature``,
    ``X-Amz-Credential`` or ``sig`` are dropped; other parameters stay). Columns without
    such values are returned untouched (no copy).

    >>> t = pa.table({"assets": [{"B1": {"href": "https://h/a.tif?X-Amz-Signature=s&v=1"}}]})
    >>> redact_table(t).column("assets")[0].as_py()
    {'B1': {'href': 'https://h/a.tif?v=1'}}
    """
    for index, column in enumerate(table.columns):
        chunks = [_redact_array(chunk) for chunk in column.chunks]
        if any(new is not old for new, old in zip(chunks, column.chunks, strict=True)):
            field = table.schema.field(index)
            table = table.set_column(index, field, pa.chunked_array(chunks, type=field.type))
    return table


def _redact_array(arr: pa.Array) -> pa.Array:
    """``arr`` with URLs redacted; ``arr`` itself when nothing changes."""
    kind = arr.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if arr.null_count == len(arr):
            return arr
        hits = pc.fill_null(pc.match_substring_regex(arr, _SUSPECT_URL), False)
        if not pc.any(hits).as_py():
            return arr
        values = arr.to_pylist()
        changed = False
        for i, hit in enumerate(hits.to_pylist()):
            if hit and values[i] is not None and (clean := redact_url(values[i])) != values[i]:
                values[i], changed = clean, True
        return pa.array(values, type=kind) if changed else arr
    mask = arr.is_null() if arr.null_count else None
    if pa.types.is_struct(kind):
        children = arr.flatten()
        redacted = [_redact_array(c) for c in children]
        if all(new is old for new, old in zip(redacted, children, strict=True)):
            return arr
        return pa.StructArray.from_arrays(redacted, fields=list(kind), mask=mask)
    if pa.types.is_map(kind):
        keys, items = arr.keys, arr.items
        new_keys, new_items = _redact_array(keys), _redact_array(items)
        if new_keys is keys and new_items is items:
            return arr
        return pa.MapArray.from_arrays(arr.offsets, new_keys, new_items, type=kind, mask=mask)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        values = arr.values
        new_values = _redact_array(values)
        if new_values is values:
            return arr
        cls = pa.ListArray if pa.types.is_list(kind) else pa.LargeListArray
        return cls.from_arrays(arr.offsets, new_values, type=kind, mask=mask)
    if pa.types.is_dictionary(kind):
        dictionary = arr.dictionary
        new_dictionary = _redact_array(dictionary)
        if new_dictionary is dictionary:
            return arr
        return pa.DictionaryArray.from_arrays(arr.indices, new_dictionary)
    return arr


def open_dataset(folder: Path) -> ds.Dataset:
    """Open a stored collection as a lazy dataset with its full schema (partitions included).

    Raises:
        WorkspaceError: ``folder`` holds no complete collection.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        raise WorkspaceError(
            f"expected a complete rasteret collection (with {MANIFEST} and every data file it "
            f"lists) at {folder}, got none"
        )
    listed = manifest.get("files")
    files = (
        [str(folder / p) for p in listed]
        if isinstance(listed, dict)
        else [str(p) for p in folder.rglob("*.parquet")]
    )
    return manifest_dataset(manifest, files, str(folder))


def manifest_dataset(
    manifest: Mapping[str, Any],
    files: Iterable[str],
    base: str,
    filesystem: pafs.FileSystem | None = None,
) -> ds.Dataset:
    """The lazy dataset of a stored collection's data ``files`` (under ``base``, on
    ``filesystem``; local by default), with the full schema its manifest records and the
    ``year=``/``month=`` partitions: the same for a local folder and an object-store prefix.
    """
    schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(manifest["schema"])))
    partitioning = (
        ds.partitioning(pa.schema([schema.field(YEAR), schema.field(MONTH)]), flavor="hive")
        if YEAR in schema.names and MONTH in schema.names
        else None
    )
    return ds.dataset(
        sorted(files),
        schema=schema,
        format="parquet",
        filesystem=filesystem,
        partitioning=partitioning,
        partition_base_dir=base,
    )
