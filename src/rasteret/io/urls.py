"""URLs of objects: prefix rewrites, redaction of signatures, and routing to a store kind.

Pure string work, no I/O (local paths are made absolute against the current directory).

>>> rewrite_url("https://landsatlook.usgs.gov/data/a.tif",
...             {"https://landsatlook.usgs.gov/data/": "s3://usgs-landsat/"})
's3://usgs-landsat/a.tif'
>>> redact_url("https://h.example/a.tif?X-Amz-Signature=abc&versionId=3")
'https://h.example/a.tif?versionId=3'
>>> parse_location("https://bkt.s3.us-west-2.amazonaws.com/a/b.tif")
Location(kind='s3', root='bkt', path='a/b.tif', region='us-west-2', account=None, endpoint='https://s3.us-west-2.amazonaws.com')
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Location",
    "StoreKind",
    "aws_endpoint",
    "parse_location",
    "redact_text",
    "redact_url",
    "rewrite_url",
]

StoreKind = Literal["s3", "gs", "az", "http", "file"]

_S3_SCHEMES = frozenset({"s3", "s3a"})
_GS_SCHEMES = frozenset({"gs", "gcs"})
_AZ_SCHEMES = frozenset({"az", "azure", "adl"})
_ABFS_SCHEMES = frozenset({"abfs", "abfss"})
_HTTP_SCHEMES = frozenset({"http", "https"})

# Virtual-hosted: bucket.s3.amazonaws.com, bucket.s3.REGION.amazonaws.com,
# bucket.s3-REGION.amazonaws.com, bucket.s3.dualstack.REGION.amazonaws.com
_S3_VIRTUAL = re.compile(
    r"^(?P<bucket>[a-z0-9][a-z0-9.\-]*)\.s3(?:[.-](?:dualstack\.)?(?P<region>[a-z0-9-]+))?"
    r"\.amazonaws\.com$"
)
# Path-style: s3.amazonaws.com/bucket, s3.REGION.amazonaws.com/bucket, s3-REGION.amazonaws.com
_S3_PATH = re.compile(r"^s3(?:[.-](?:dualstack\.)?(?P<region>[a-z0-9-]+))?\.amazonaws\.com$")

# Query parameters that carry credentials in presigned/SAS URLs (compared lower-case).
_SECRET_PARAMS = frozenset(
    {
        "signature", "sig", "expires", "awsaccesskeyid", "key-pair-id", "policy",
        "se", "st", "sp", "sv", "sr", "spr", "srt", "ss", "skoid", "sktid", "skt", "ske",
        "sks", "skv", "token", "access_token", "googleaccessid",
    }
)  # fmt: skip
_SECRET_PREFIXES = ("x-amz-", "x-goog-")


@dataclass(frozen=True, slots=True)
class Location:
    """Where one URL lives: the kind of store, the store's root, and the path inside it."""

    kind: StoreKind
    """Which obstore store serves it."""
    root: str
    """Bucket (s3, gs), container (az), origin or full signed URL (http), "" (file)."""
    path: str
    """Object key inside the root, without a leading slash and not percent-encoded."""
    region: str | None = None
    """S3 region named by an ``amazonaws.com`` host, if any."""
    account: str | None = None
    """Azure storage account named by an ``abfs(s)://container@account...`` URL, if any."""
    endpoint: str | None = None
    """Explicit S3 endpoint for ``https://...amazonaws.com`` URLs (overrides the env)."""


def rewrite_url(url: str, patterns: Mapping[str, str] | None) -> str:
    """Replace the longest matching prefix of ``url`` from ``patterns`` (applied once).

    Idempotent: a URL that already starts with the replacement is left as it is, so hrefs
    rewritten when a collection was built are not rewritten again by a read given the same
    patterns (which matters when a replacement extends its own prefix).

    >>> rewrite_url("s3://a/x.tif", {"s3://a/": "https://cdn.example/a/"})
    'https://cdn.example/a/x.tif'
    >>> rewrite_url("s3://b/x.tif", {"s3://a/": "https://cdn.example/a/"})
    's3://b/x.tif'
    >>> mirror = {"https://h/": "https://h/mirror/"}
    >>> rewrite_url(rewrite_url("https://h/x.tif", mirror), mirror)
    'https://h/mirror/x.tif'
    """
    if not patterns:
        return url
    best = max((p for p in patterns if url.startswith(p)), key=len, default=None)
    if best is None or url.startswith(patterns[best]):
        return url
    return patterns[best] + url[len(best) :]


def redact_url(url: str) -> str:
    """``url`` without credentials: signature query parameters and ``user:password@``.

    Other query parameters stay. Use it for messages and anything persisted.

    >>> redact_url("https://u:pw@h.example/a.tif?sv=1&sig=xyz")
    'https://h.example/a.tif'
    >>> redact_url("s3://bucket/key.tif")
    's3://bucket/key.tif'
    """
    if "?" not in url and "@" not in url:
        return url
    split = urllib.parse.urlsplit(url)
    netloc = split.netloc.rpartition("@")[2] if split.scheme in _HTTP_SCHEMES else split.netloc
    pairs = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not _is_secret(k)]
    query = urllib.parse.urlencode(kept) if len(kept) != len(pairs) else split.query
    return urllib.parse.urlunsplit((split.scheme, netloc, split.path, query, split.fragment))


def _is_secret(name: str) -> bool:
    low = name.lower()
    return low in _SECRET_PARAMS or low.startswith(_SECRET_PREFIXES)


def parse_location(url: str) -> Location:
    """Route ``url`` to a store kind, root and path.

    Accepted: ``s3://``/``s3a://``, ``gs://``/``gcs://``, ``az://``/``azure://``/``adl://``
    (account from the environment), ``abfs(s)://container@account.dfs.core.windows.net``,
    ``https://`` S3 hosts (virtual-hosted and path style), other ``http(s)://`` (one store
    per origin; a URL with a query string keeps it and gets its own store), ``file://`` and
    plain local paths (relative ones resolved against the current directory).

    >>> parse_location("s3://bucket/a/b.tif")
    Location(kind='s3', root='bucket', path='a/b.tif', region=None, account=None, endpoint=None)
    >>> parse_location("https://example.com/a%20b.tif").path
    'a b.tif'
    """
    split = urllib.parse.urlsplit(url)
    scheme = split.scheme.lower()
    if scheme in _S3_SCHEMES | _GS_SCHEMES | _AZ_SCHEMES:
        if not split.netloc:
            raise ValueError(f"expected {scheme}://BUCKET/KEY, got {redact_url(url)!r}")
        kind: StoreKind = "s3" if scheme in _S3_SCHEMES else "gs" if scheme in _GS_SCHEMES else "az"
        return Location(kind, split.netloc, split.path.lstrip("/"))
    if scheme in _ABFS_SCHEMES:
        container, _, host = split.netloc.partition("@")
        if not host or not container:
            raise ValueError(
                f"expected {scheme}://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH, "
                f"got {redact_url(url)!r}"
            )
        return Location("az", container, split.path.lstrip("/"), account=host.split(".")[0])
    if scheme in _HTTP_SCHEMES:
        return _http_location(url, split)
    if scheme == "file":
        return _file_location(urllib.parse.unquote(split.path))
    if len(scheme) <= 1 or "://" not in url:  # a plain path (or a Windows drive letter)
        return _file_location(url)
    raise ValueError(
        f"expected an s3://, gs://, az://, abfs(s)://, http(s)://, file:// URL or a local "
        f"path, got scheme {scheme!r} in {redact_url(url)!r}"
    )


def _file_location(path: str) -> Location:
    absolute = os.path.abspath(os.path.expanduser(path))
    return Location("file", "", absolute.replace(os.sep, "/").lstrip("/"))


def _http_location(url: str, split: urllib.parse.SplitResult) -> Location:
    host = (split.hostname or "").lower()
    path = urllib.parse.unquote(split.path).lstrip("/")
    if not host:
        raise ValueError(f"expected http(s)://HOST/PATH, got {redact_url(url)!r}")
    if split.query:  # presigned or otherwise parameterised: the query must be sent as is
        return Location("http", urllib.parse.urlunsplit(split._replace(fragment="")), "")
    if host.endswith(".amazonaws.com") and split.port is None and "s3-website" not in host:
        virtual = _S3_VIRTUAL.match(host)
        if virtual and path:
            region = virtual["region"]
            return Location("s3", virtual["bucket"], path, region, None, aws_endpoint(region))
        path_style = _S3_PATH.match(host)
        if path_style and "/" in path:
            bucket, _, key = path.partition("/")
            region = path_style["region"]
            return Location("s3", bucket, key, region, None, aws_endpoint(region))
    return Location("http", f"{split.scheme.lower()}://{split.netloc}", path)


def aws_endpoint(region: str | None) -> str:
    """The AWS S3 endpoint of ``region`` (the global one for None)."""
    return f"https://s3.{region}.amazonaws.com" if region else "https://s3.amazonaws.com"


_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_PARAM_RE = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)=([^&\s\"'<>]*)")


def redact_text(text: str) -> str:
    """``text`` with credentials taken out of every URL and ``name=value`` pair in it.

    >>> redact_text("GET https://h/a.tif?X-Amz-Signature=abc&v=1 failed; sig=xyz")
    'GET https://h/a.tif?v=1 failed; sig=[redacted]'
    """
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    return _PARAM_RE.sub(
        lambda m: f"{m.group(1)}=[redacted]" if _is_secret(m.group(1)) else m.group(0), text
    )
