"""pyarrow filesystems for record-table URIs, configured like the COG reads.

The Parquet scan goes through pyarrow (for predicate pushdown). pyarrow 26's
``S3FileSystem()`` reads the credential variables but not ``AWS_ENDPOINT_URL`` (only
``FileSystem.from_uri`` does), and falls back to ``~/.aws`` and instance metadata. So the
filesystem is built explicitly from the same standard variables, with the same rules as
:mod:`rasteret.io` (see :func:`rasteret.io._config.anonymous_default`):

- ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT``: host and scheme
  (``http://`` endpoints are allowed, as boto3 and the COG reads allow them);
- ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (else the bucket's own region, else us-east-1);
- ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` passed explicitly;
- no credentials configured anywhere, or ``AWS_SKIP_SIGNATURE=true``: anonymous requests;
- ``AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true``: virtual-hosted addressing.

``gs://`` and ``az://`` URIs get a GCS / Azure filesystem the same way.

Collections exported to or loaded from an object-store prefix go through the same
filesystems (:func:`write_collection_remote`, :func:`open_collection_remote`): the data files
first and the manifest last, so a prefix holds the complete new collection or the previous one.

>>> fs, path = filesystem_for_uri("s3://bucket/records.parquet", pafs.LocalFileSystem())
>>> path
'bucket/records.parquet'
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from rasteret.errors import (
    AccessDeniedError,
    CollectionNotFoundError,
    FetchError,
    ObjectNotFoundError,
    RasteretError,
    UnsupportedFormatError,
    WorkspaceError,
)
from rasteret.ingest.store import MANIFEST, manifest_dataset, workspace_lock, write_collection
from rasteret.io._config import anonymous_default

__all__ = [
    "azure_filesystem_from_env",
    "collection_root",
    "filesystem_for_uri",
    "gcs_filesystem_from_env",
    "not_a_collection",
    "open_collection_remote",
    "s3_filesystem_from_env",
    "write_collection_remote",
]

DEFAULT_S3_REGION = "us-east-1"
_TRUE = frozenset({"1", "true", "yes", "on"})
_S3_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")


def filesystem_for_uri(
    uri: str, filesystem: pafs.FileSystem | None = None
) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a local path or cloud URI.

    With ``filesystem`` given, a path without a scheme is that filesystem's own path and is
    used as is (``"bucket/key.parquet"`` for an ``S3FileSystem``, a path relative to the root
    of a ``SubTreeFileSystem``); only the local filesystem makes it absolute. A URI's scheme
    picks nothing then, its bucket and key are the path.

    >>> subtree = pafs.SubTreeFileSystem("/data", pafs.LocalFileSystem())
    >>> filesystem_for_uri("records/2024.parquet", subtree)[1]
    'records/2024.parquet'

    Raises:
        UnsupportedFormatError: ``http(s)://`` URLs (pyarrow cannot scan them) and unknown
            schemes.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower() if len(parts.scheme) > 1 else ""  # "C:\\x" is a local path
    if scheme in ("http", "https"):
        raise UnsupportedFormatError(
            f"cannot scan a Parquet table over plain HTTP(S) at {uri}: download the file first "
            "or use its cloud URI (s3://, gs://, az://) instead"
        )
    if scheme == "" and filesystem is not None and not _is_local(filesystem):
        return filesystem, uri  # the filesystem's own path ("bucket/key", a SubTree's relpath)
    if scheme in ("", "file"):
        local = parts.path if scheme == "file" else uri
        return filesystem or pafs.LocalFileSystem(), str(Path(local).expanduser().absolute())
    bucket_path = f"{parts.netloc}{parts.path}"
    if scheme in ("s3", "s3a"):
        return filesystem or s3_filesystem_from_env(bucket=parts.netloc), bucket_path
    if scheme in ("gs", "gcs"):
        return filesystem or gcs_filesystem_from_env(), bucket_path
    if scheme in ("az", "azure", "abfs", "abfss"):
        container, _, host = parts.netloc.partition("@")
        if filesystem is None:
            filesystem = azure_filesystem_from_env(account_name=host.split(".")[0] or None)
        return filesystem, f"{container}{parts.path}"
    raise UnsupportedFormatError(f"expected a local path or s3://, gs://, az:// URI, got {uri}")


def _is_local(filesystem: Any) -> bool:
    """Whether ``filesystem`` is the plain local one (pyarrow's, or fsspec's ``"file"``).

    Its scheme-less paths are local paths, made absolute against the working directory
    (``~`` expanded); any other filesystem gets its own paths untouched.
    """
    if isinstance(filesystem, pafs.PyFileSystem):  # e.g. an fsspec filesystem pyarrow wraps
        filesystem = getattr(filesystem.handler, "fs", filesystem)
    if isinstance(filesystem, pafs.LocalFileSystem):
        return True
    protocol = getattr(filesystem, "protocol", None)
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol or ())
    return "file" in protocols


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _endpoint(names: tuple[str, ...], default_scheme: str) -> dict[str, str]:
    value = next((os.environ[n] for n in names if os.environ.get(n)), None)
    if not value:
        return {}
    parts = urlsplit(value if "://" in value else f"{default_scheme}://{value}")
    return {"endpoint_override": parts.netloc, "scheme": parts.scheme}


def s3_filesystem_from_env(*, bucket: str | None = None) -> pafs.S3FileSystem:
    """An S3 filesystem configured only from the standard AWS environment variables.

    >>> isinstance(s3_filesystem_from_env(), pafs.S3FileSystem)
    True
    """
    options: dict[str, Any] = _endpoint(_S3_ENDPOINT_VARS, "https")
    anonymous, extra = anonymous_default("s3")
    region = (
        os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or extra.get("config", {}).get("region")
    )
    if not region and not options and bucket:
        try:  # a public AWS bucket named without its region: ask S3 where it lives
            region = pafs.resolve_s3_region(bucket)
        except OSError:
            region = None
    options["region"] = region or DEFAULT_S3_REGION
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if anonymous or _flag("AWS_SKIP_SIGNATURE"):
        options["anonymous"] = True
    elif key and secret:
        options |= {
            "access_key": key,
            "secret_key": secret,
            "session_token": os.environ.get("AWS_SESSION_TOKEN"),
        }
    # else: the AWS SDK's own chain (profile, web identity, container or instance metadata).
    if _flag("AWS_VIRTUAL_HOSTED_STYLE_REQUEST"):
        options["force_virtual_addressing"] = True
    return pafs.S3FileSystem(**options)


def gcs_filesystem_from_env() -> pafs.GcsFileSystem:
    """A GCS filesystem: Google's default credentials when any are configured, else anonymous;
    ``GOOGLE_BASE_URL`` or ``STORAGE_EMULATOR_HOST`` point it at another endpoint.

    >>> gcs_filesystem_from_env().default_bucket_location
    'US'
    """
    anonymous, _ = anonymous_default("gs")
    options: dict[str, Any] = {"anonymous": anonymous or _flag("GOOGLE_SKIP_SIGNATURE")}
    options |= _endpoint(("GOOGLE_BASE_URL", "STORAGE_EMULATOR_HOST"), "http")
    return pafs.GcsFileSystem(**options)


def azure_filesystem_from_env(*, account_name: str | None = None) -> pafs.AzureFileSystem:
    """An Azure Blob filesystem from ``AZURE_STORAGE_ACCOUNT_NAME`` (or the URI's account),
    ``AZURE_STORAGE_ACCOUNT_KEY`` or ``AZURE_STORAGE_SAS_TOKEN`` (else Azure's default
    credential chain) and ``AZURE_STORAGE_ENDPOINT`` for emulators.

    Raises:
        FetchError: no account name in the URI or the environment.
    """
    account = account_name or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
    if not account:
        raise FetchError(
            "expected an Azure storage account in the URI (abfs://container@account.dfs.core."
            "windows.net/...) or AZURE_STORAGE_ACCOUNT_NAME, got neither"
        )
    options: dict[str, Any] = {}
    if key := os.environ.get("AZURE_STORAGE_ACCOUNT_KEY"):
        options["account_key"] = key
    elif sas := os.environ.get("AZURE_STORAGE_SAS_TOKEN"):
        options["sas_token"] = sas
    endpoint = _endpoint(("AZURE_STORAGE_ENDPOINT",), "https")
    if endpoint:
        options["blob_storage_authority"] = endpoint["endpoint_override"]
        options["blob_storage_scheme"] = endpoint["scheme"]
    return pafs.AzureFileSystem(account, **options)


# -- collections on object stores ----------------------------------------------------------------
#
# A collection stored under an object-store prefix has the layout of a local one (see
# rasteret.ingest.store): year=/month= data files with names unique to each write, and a
# manifest, _rasteret.json, listing every data file with its size. Object stores cannot rename,
# so the manifest is the switch: the new data files are uploaded first, the manifest last (one
# PUT, atomic), and only then are the files of the previous collection deleted. A failed export
# deletes what it uploaded, and the previous collection stays complete. There is no lock: of
# two exports to one prefix at once, the later manifest wins.

_LOCAL_SCHEMES = frozenset({"", "file"})


def _scheme(uri: str) -> str:
    scheme = urlsplit(uri).scheme.lower()
    return scheme if len(scheme) > 1 else ""  # "C:\\x" is a local path


def collection_root(uri: str | os.PathLike[str]) -> Path | tuple[pafs.FileSystem, str]:
    """Where a collection lives: a local folder, or (filesystem, root) on an object store.

    >>> collection_root("file:///tmp/scenes_records")
    PosixPath('/tmp/scenes_records')

    Raises:
        UnsupportedFormatError: ``http(s)://`` URLs and unknown schemes.
        WorkspaceError: an object-store URI without a bucket or without a prefix in it.
    """
    text = os.fspath(uri)
    scheme = _scheme(text)
    if scheme in _LOCAL_SCHEMES:
        return Path(urlsplit(text).path if scheme else text).expanduser()
    if scheme in ("http", "https"):
        raise UnsupportedFormatError(
            f"expected a local folder or an s3://, gs://, az:// prefix for a collection, got "
            f"{text}: an HTTP(S) server cannot be listed or written; download the collection"
        )
    parts = urlsplit(text)
    if not parts.netloc or not parts.path.strip("/"):
        raise WorkspaceError(
            f"expected a collection URI with a bucket and a prefix, like "
            f"{scheme}://bucket/scenes_records, got {text}"
        )
    filesystem, path = filesystem_for_uri(text)
    return filesystem, path.strip("/")


def write_collection_remote(table: pa.Table, uri: str, manifest: Mapping[str, Any]) -> None:
    """Write ``table`` as a collection under the object-store prefix ``uri``.

    The collection is written locally first by :func:`rasteret.ingest.store.write_collection`
    (the same files, GeoParquet metadata, redaction and manifest), then uploaded: data files,
    then the manifest, then the previous collection's files are deleted.

    Args:
        table: the records.
        uri: ``s3://bucket/prefix`` (or ``gs://``, ``az://``).
        manifest: the manifest entries (``name``, ``data_source``, ...).

    Raises:
        WorkspaceError: ``uri`` holds something that is not a rasteret collection.
        FetchError: the store refused or failed a request (nothing new is left behind).
    """
    filesystem, root = _remote(uri)
    previous = _previous_files(filesystem, root, uri)
    with tempfile.TemporaryDirectory(prefix="rasteret-export-") as tmp:
        local = Path(tmp) / "collection"
        with workspace_lock(local):
            write_collection(table, local, manifest)
        files = list(json.loads((local / MANIFEST).read_text())["files"])
        uploaded: list[str] = []
        try:
            for relpath in files:
                _upload(local / relpath, filesystem, f"{root}/{relpath}")
                uploaded.append(relpath)
            _upload(local / MANIFEST, filesystem, f"{root}/{MANIFEST}")  # the switch
        except BaseException as exc:
            if _lists_all(filesystem, root, files):  # the manifest landed: the export is done
                if not isinstance(exc, OSError):
                    raise
            else:
                _delete(filesystem, root, uploaded)
                if isinstance(exc, OSError) and not isinstance(exc, FetchError):
                    raise _store_error(exc, uri, "write the collection to") from exc
                raise
    _delete(filesystem, root, sorted(set(previous) - set(files)))


def not_a_collection(where: object, got: str) -> str:
    """The message for a path :func:`rasteret.load` cannot open.

    >>> not_a_collection("s3://b/c", "nothing")  # doctest: +ELLIPSIS
    'expected a complete rasteret collection (with _rasteret.json and every data file it lists) or a Parquet/GeoParquet table of records at s3://b/c, got nothing'
    """
    return (
        f"expected a complete rasteret collection (with {MANIFEST} and every data file it "
        f"lists) or a Parquet/GeoParquet table of records at {where}, got {got}"
    )


def open_collection_remote(uri: str) -> tuple[ds.Dataset, dict[str, Any]] | None:
    """The lazy dataset and manifest of the collection under ``uri``.

    Returns:
        ``(dataset, manifest)``, or ``None`` when ``uri`` holds something without a manifest
        (a plain table of records).

    Raises:
        CollectionNotFoundError: nothing at ``uri``.
        WorkspaceError: a manifest that does not parse, or lists files
            that are not there with their recorded sizes (a partial copy never opens as
            complete).
        FetchError: the store refused or failed a request.
    """
    filesystem, root = _remote(uri)
    try:
        try:
            manifest = _read_json(filesystem, f"{root}/{MANIFEST}")
        except FileNotFoundError:
            if filesystem.get_file_info(root).type == pafs.FileType.NotFound:
                raise CollectionNotFoundError(not_a_collection(uri, "nothing")) from None
            return None
        except ValueError:
            manifest = None
        sizes = _sizes(filesystem, root)
    except RasteretError:  # already says what it is (CollectionNotFoundError is an OSError)
        raise
    except OSError as exc:
        raise _store_error(exc, uri, "read the collection at") from exc
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or any(sizes.get(p) != n for p, n in listed.items()):
        raise WorkspaceError(
            f"expected a complete rasteret collection (with {MANIFEST} and every data file it "
            f"lists) at {uri}, got a manifest that does not parse or lists files that are "
            "missing or of another size"
        )
    files = [f"{root}/{p}" for p in listed]
    return manifest_dataset(manifest, files, root, filesystem), manifest


def _remote(uri: str) -> tuple[pafs.FileSystem, str]:
    where = collection_root(uri)
    if isinstance(where, Path):
        raise WorkspaceError(f"expected an s3://, gs:// or az:// collection URI, got {uri}")
    return where


def _previous_files(filesystem: pafs.FileSystem, root: str, uri: str) -> list[str]:
    """The data files of the collection at ``root`` (none if empty); refuses other content."""
    try:
        if filesystem.get_file_info(root).type == pafs.FileType.File:
            found = "a file"
        else:
            sizes = _sizes(filesystem, root)
            if not sizes:
                return []
            listed = _listed_files(filesystem, root) if MANIFEST in sizes else None
            if listed is not None:
                return [p for p in listed if p in sizes]
            found = (
                f"an unreadable {MANIFEST}"
                if MANIFEST in sizes
                else f"{len(sizes)} other objects (e.g. {min(sizes)!r})"
            )
    except OSError as exc:
        raise _store_error(exc, uri, "list") from exc
    raise WorkspaceError(
        f"expected {uri} to be a rasteret collection (with {MANIFEST}), an empty prefix or "
        f"nothing, got {found}; refusing to replace it"
    )


def _listed_files(filesystem: pafs.FileSystem, root: str) -> dict[str, int] | None:
    """``{file: size}`` of the manifest at ``root``; ``None`` if it does not parse.

    Raises:
        FileNotFoundError: no manifest.
    """
    try:
        manifest = _read_json(filesystem, f"{root}/{MANIFEST}")
    except ValueError:
        return None
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    return listed if isinstance(listed, dict) else None


def _sizes(filesystem: pafs.FileSystem, root: str) -> dict[str, int]:
    """``{path relative to root: size}`` of every file under ``root`` (one listing)."""
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return {
        info.path[len(root) + 1 :]: int(info.size or 0)
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File
    }


def _read_json(filesystem: pafs.FileSystem, path: str) -> Any:
    with filesystem.open_input_stream(path) as stream:
        return json.loads(stream.read())


def _upload(local: Path, filesystem: pafs.FileSystem, path: str) -> None:
    with local.open("rb") as source, filesystem.open_output_stream(path) as target:
        shutil.copyfileobj(source, target, length=8 << 20)


def _lists_all(filesystem: pafs.FileSystem, root: str, files: list[str]) -> bool:
    """Whether the manifest at ``root`` lists ``files`` (the switch to them happened)."""
    try:
        listed = _listed_files(filesystem, root) or {}
    except OSError:
        return False
    return all(p in listed for p in files)


def _delete(filesystem: pafs.FileSystem, root: str, relpaths: list[str]) -> None:
    """Delete files under ``root``, then the folders they leave empty (best effort).

    Object stores have no folders, but pyarrow keeps one alive by writing an empty marker
    object when its last file goes; those markers are removed too, deepest first, and
    ``root`` itself when no file is left under it.
    """
    if not relpaths:
        return
    for relpath in relpaths:
        with contextlib.suppress(OSError):
            filesystem.delete_file(f"{root}/{relpath}")
    with contextlib.suppress(OSError):
        listing = filesystem.get_file_info(
            pafs.FileSelector(root, recursive=True, allow_not_found=True)
        )
        files = [i.path for i in listing if i.type == pafs.FileType.File]
        folders = [i.path for i in listing if i.type == pafs.FileType.Directory]
        for folder in sorted(folders, key=lambda p: p.count("/"), reverse=True):
            if not any(f.startswith(f"{folder}/") for f in files):
                filesystem.delete_dir(folder)
        if not files:
            filesystem.delete_dir(root)


def _store_error(exc: OSError, uri: str, doing: str) -> FetchError:
    text = str(exc)
    message = f"could not {doing} {uri}: {exc}"
    if any(s in text for s in ("ACCESS_DENIED", "AccessDenied", "Forbidden", "403")):
        return AccessDeniedError(f"{message}; check the AWS_*/GOOGLE_*/AZURE_* credentials")
    if isinstance(exc, FileNotFoundError) or any(
        s in text for s in ("NoSuchBucket", "NO_SUCH_BUCKET", "does not exist")
    ):
        return ObjectNotFoundError(message)
    return FetchError(message)
