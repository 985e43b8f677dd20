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

>>> fs, path = filesystem_for_uri("s3://bucket/records.parquet", pafs.LocalFileSystem())
>>> path
'bucket/records.parquet'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from rasteret.errors import FetchError, UnsupportedFormatError
from rasteret.io._config import anonymous_default

__all__ = [
    "azure_filesystem_from_env",
    "filesystem_for_uri",
    "gcs_filesystem_from_env",
    "s3_filesystem_from_env",
]

DEFAULT_S3_REGION = "us-east-1"
_TRUE = frozenset({"1", "true", "yes", "on"})
_S3_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")


def filesystem_for_uri(
    uri: str, filesystem: pafs.FileSystem | None = None
) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a local path or cloud URI.

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
