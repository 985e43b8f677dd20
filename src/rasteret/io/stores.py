"""URL -> a shared store that can read byte ranges, configured like the cloud SDKs.

The read path needs one capability, :class:`RangeReader`: read one range or many ranges of
a path. :func:`resolve` turns a URL into ``(reader, path)``: one obstore store per bucket,
container or origin (and configuration), created once per process and shared, wrapped in an
:class:`ObstoreReader`. Stores hold connection pools; they are never shared across a fork,
and a process forked after its parent sent requests cannot use obstore at all: its readers
raise there (:mod:`rasteret.io._fork`) rather than wait forever.

Configuration comes from the standard environment variables, read by obstore itself
(``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``/
``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_SKIP_SIGNATURE``, ``AWS_REQUEST_PAYER``,
``GOOGLE_SERVICE_ACCOUNT``/``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_ACCOUNT_NAME``/
``AZURE_STORAGE_ACCOUNT_KEY``/``AZURE_STORAGE_SAS_TOKEN``, ...). What obstore leaves out is
filled in by :mod:`rasteret.io._config`: ``AWS_PROFILE`` and ``~/.aws`` files through boto3 when
installed, ``*_ALLOW_HTTP`` and other client variables, and anonymous requests when no
credentials are configured at all (public buckets work with no setup).

>>> reader, path = resolve("s3://some-bucket/scenes/a.tif")
>>> path
'scenes/a.tif'
>>> resolve("s3://some-bucket/other.tif")[0] is reader  # one store per bucket
True
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import obstore
import obstore.store
from obstore import exceptions as obstore_errors

from rasteret._sync import foreign
from rasteret.errors import FetchError
from rasteret.io._config import CloudConfig, anonymous_default, client_options, env_fingerprint
from rasteret.io._failures import describe
from rasteret.io._fork import at_fork, check_runtime, mark_runtime_used
from rasteret.io._s3region import forget_regions, lookup_bucket_region, wrong_region
from rasteret.io.urls import Location, aws_endpoint, parse_location, redact_url, rewrite_url

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "CloudConfig",
    "ObstoreReader",
    "Prefix",
    "RangeReader",
    "Target",
    "clear_store_cache",
    "is_obstore_store",
    "open_target",
    "read_prefix",
    "redact_url",
    "resolve",
    "rewrite_url",
]

T = TypeVar("T")
Relocate = Callable[[Any, BaseException], Awaitable[Any]]

#: Stores for URLs that carry their own query string (presigned, SAS) are per URL: keep few.
MAX_PER_URL_STORES = 256

_OBSTORE_TYPES: tuple[type, ...] = (
    obstore.store.S3Store,
    obstore.store.GCSStore,
    obstore.store.AzureStore,
    obstore.store.HTTPStore,
    obstore.store.LocalStore,
    obstore.store.MemoryStore,
)


@runtime_checkable
class RangeReader(Protocol):
    """The one capability the read path needs: byte ranges of a path (end exclusive)."""

    async def get_range(self, path: str, start: int, end: int) -> Buffer:
        """Bytes ``[start, end)`` of ``path``."""
        ...

    async def get_ranges(
        self, path: str, starts: Sequence[int], ends: Sequence[int]
    ) -> Sequence[Buffer]:
        """Bytes ``[starts[i], ends[i])`` of ``path`` for every ``i``."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Prefix:
    """The first bytes of an object and what the response said about the whole object."""

    data: Buffer
    """Up to the requested length of bytes from offset 0 (the whole object if smaller)."""
    object_size: int | None
    """Size of the whole object in bytes; None when the reader cannot tell."""
    etag: str | None
    """The object's ETag as the store reports it (quotes kept); None when unknown."""


class ObstoreReader:
    """A :class:`RangeReader` over an obstore store, plus prefix/HEAD reads with metadata.

    Args:
        store: Any obstore store.
        relocate: For S3 stores rasteret made: given the store and the error of a request,
            returns a store for the bucket's real region (or None); the request is retried
            once with it, and it replaces :attr:`store` for later requests.
    """

    def __init__(self, store: Any, *, relocate: Relocate | None = None) -> None:
        self.store = store
        self._relocate = relocate

    def __repr__(self) -> str:
        return f"ObstoreReader({self.store!r})"

    async def _call(self, op: Callable[[Any], Awaitable[T]]) -> T:
        store = self.store
        check_runtime()  # raises in a forked child, where obstore would wait forever
        mark_runtime_used()
        try:
            return await foreign(op(store))  # waited for at exit: see rasteret._sync
        except obstore_errors.BaseError as exc:
            moved = None if self._relocate is None else await self._relocate(store, exc)
            if moved is None:
                raise
            self.store = moved
            return await foreign(op(moved))

    async def get_range(self, path: str, start: int, end: int) -> Buffer:
        """Bytes ``[start, end)`` of ``path`` (one GET)."""
        return await self._call(
            lambda store: obstore.get_range_async(store, path, start=start, end=end)
        )

    async def get_ranges(
        self, path: str, starts: Sequence[int], ends: Sequence[int]
    ) -> Sequence[Buffer]:
        """Bytes of several ranges of ``path`` (obstore merges ranges up to 1 MiB apart)."""
        return await self._call(
            lambda store: obstore.get_ranges_async(
                store, path, starts=list(starts), ends=list(ends)
            )
        )

    async def get_prefix(self, path: str, length: int) -> Prefix:
        """Up to ``length`` first bytes of ``path`` plus its size and ETag, in one GET."""

        async def op(store: Any) -> Prefix:
            result = await obstore.get_async(store, path, options={"range": (0, length)})
            data = await result.bytes_async()
            return Prefix(data, int(result.meta["size"]), result.meta.get("e_tag"))

        return await self._call(op)

    async def head(self, path: str) -> Prefix:
        """Size and ETag of ``path`` with no body (one HEAD)."""

        async def op(store: Any) -> Prefix:
            meta = await obstore.head_async(store, path)
            return Prefix(b"", int(meta["size"]), meta.get("e_tag"))

        return await self._call(op)


async def read_prefix(reader: Any, path: str, length: int) -> Prefix:
    """The first ``length`` bytes of ``path`` with whatever the reader knows of the object.

    Readers with a ``get_prefix`` method (:class:`ObstoreReader` and the wrappers in
    :mod:`rasteret.testing.stores`) report size and ETag; for any other reader this is a plain
    ``get_range``, and the size is known only when fewer bytes than asked came back.
    """
    if hasattr(reader, "get_prefix"):
        prefix: Prefix = await reader.get_prefix(path, length)
        return prefix
    data = await reader.get_range(path, 0, length)
    got = memoryview(data).nbytes
    return Prefix(data, got if got < length else None, None)


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A URL made ready for reading."""

    reader: Any
    """A :class:`RangeReader` (an :class:`ObstoreReader` unless a custom backend is used)."""
    path: str
    """What to pass as ``path`` to ``reader``."""
    url: str
    """The URL actually read (after rewrites); may hold a signature, never print it."""

    @property
    def display_url(self) -> str:
        """The URL for messages: rewritten, without signatures."""
        return redact_url(self.url)


def is_obstore_store(obj: object) -> bool:
    """True for obstore's own store classes."""
    return isinstance(obj, _OBSTORE_TYPES)


def resolve(
    url: str, *, backend: Any = None, cloud_config: CloudConfig | None = None
) -> tuple[Any, str]:
    """The shared reader for ``url`` and the path to pass to it.

    Args:
        url: Object URL or local path (see :func:`rasteret.io.urls.parse_location`).
        backend: An obstore store (wrapped in :class:`ObstoreReader`, paths made relative to
            it) or any object with async ``get_range``/``get_ranges``, which is used as is
            and receives the full URL as its ``path``.
        cloud_config: Requester-pays, region, URL rewrites and client options.

    Returns:
        ``(reader, path)``.
    """
    target = open_target(url, backend=backend, cloud_config=cloud_config)
    return target.reader, target.path


def open_target(
    url: str, *, backend: Any = None, cloud_config: CloudConfig | None = None
) -> Target:
    """Like :func:`resolve`, also returning the rewritten URL for messages."""
    config = cloud_config or CloudConfig()
    effective = rewrite_url(url, config.url_rewrite_patterns)
    if backend is not None:
        if is_obstore_store(backend):
            reader = _wrapped_backend(backend)
            return Target(reader, _backend_path(backend, effective), effective)
        if not (hasattr(backend, "get_range") and hasattr(backend, "get_ranges")):
            raise TypeError(
                "expected backend to be an obstore store or an object with async "
                f"get_range(path, start, end) and get_ranges(path, starts, ends), got "
                f"{type(backend).__name__}"
            )
        return Target(backend, effective, effective)
    try:
        location = parse_location(effective)
    except ValueError as exc:
        raise FetchError(f"cannot read from this URL: {exc}") from exc
    return Target(_shared_reader(effective, location, config), location.path, effective)


# -- the per-process cache ------------------------------------------------------------------

_lock = threading.Lock()
_readers: dict[tuple[Any, ...], ObstoreReader] = {}
_per_url_readers: OrderedDict[tuple[Any, ...], ObstoreReader] = OrderedDict()
_backend_readers: dict[int, tuple[Any, ObstoreReader]] = {}


def clear_store_cache() -> None:
    """Forget every shared store; the next :func:`resolve` creates new ones."""
    with _lock:
        _readers.clear()
        _per_url_readers.clear()
        _backend_readers.clear()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it while forking
    _readers.clear()
    _per_url_readers.clear()
    _backend_readers.clear()
    forget_regions()


at_fork(after_in_child=_after_fork_in_child)


def _shared_reader(url: str, location: Location, config: CloudConfig) -> ObstoreReader:
    per_url = location.kind == "http" and "?" in location.root
    key = (
        location.kind,
        location.root,
        location.region,
        location.account,
        location.endpoint,
        config.cache_key(),
        env_fingerprint(location.kind),
    )
    with _lock:
        cache = _per_url_readers if per_url else _readers
        reader = cache.get(key)
        if reader is None:
            try:
                store = _make_store(location, config)
            except (obstore_errors.BaseError, ValueError) as exc:
                raise FetchError(
                    f"could not set up an {location.kind} store for {redact_url(url)} from the "
                    f"environment and cloud_config: {describe(exc)}"
                ) from exc
            relocate = _relocator(location, config) if location.kind == "s3" else None
            reader = ObstoreReader(store, relocate=relocate)
            cache[key] = reader
            if per_url and len(_per_url_readers) > MAX_PER_URL_STORES:
                _per_url_readers.popitem(last=False)
        elif per_url:
            _per_url_readers.move_to_end(key)
        return reader


def _wrapped_backend(store: Any) -> ObstoreReader:
    with _lock:
        held = _backend_readers.get(id(store))
        if held is None or held[0] is not store:
            held = (store, ObstoreReader(store))
            _backend_readers[id(store)] = held
        return held[1]


def _backend_path(store: Any, url: str) -> str:
    """Path of ``url`` relative to a user-given obstore store (and its prefix, if any)."""
    if isinstance(store, obstore.store.HTTPStore):
        base = store.url.rstrip("/") + "/"
        if url.startswith(base):
            return url[len(base) :]
    path = parse_location(url).path
    prefix = getattr(store, "prefix", None)
    if prefix:
        stem = str(prefix).replace(os.sep, "/").strip("/") + "/"
        if path.startswith(stem):
            return path[len(stem) :]
    return path


def _relocator(location: Location, config: CloudConfig) -> Relocate:
    """The ``relocate`` hook of an S3 reader: a store for the bucket's real region."""
    moved: dict[str, Any] = {}
    lock = threading.Lock()

    async def relocate(store: Any, exc: BaseException) -> Any:
        wrong, region = wrong_region(str(exc))
        if not wrong:
            return None
        if region is None:
            region = await asyncio.to_thread(lookup_bucket_region, location.root)
        if region is None or region == store.config.get("region"):
            return None
        with lock:
            if region not in moved:
                endpoint = aws_endpoint(region) if location.endpoint else None
                there = dataclasses.replace(location, region=region, endpoint=endpoint)
                moved[region] = _make_store(there, config)
            return moved[region]

    return relocate


def _make_store(location: Location, config: CloudConfig) -> Any:
    kind = location.kind
    if kind == "file":
        return obstore.store.LocalStore()
    options: Any = client_options(kind, config, allow_http=location.root.startswith("http://"))
    retry: Any = {"max_retries": 0}  # rasteret.io.fetch owns retries (FetchOptions)
    if kind == "http":
        return obstore.store.HTTPStore(location.root, client_options=options, retry_config=retry)
    store_config: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    anonymous = config.anonymous
    if kind == "s3":
        if location.endpoint:
            store_config["endpoint"] = location.endpoint
        region = location.region or config.region
        if region:
            store_config["region"] = region
        if config.requester_pays:
            store_config["request_payer"] = True
        if anonymous is None:
            anonymous, extra = anonymous_default("s3")
        store_cls: Any = obstore.store.S3Store
    elif kind == "gs":
        if anonymous is None:
            anonymous, extra = anonymous_default("gs")
        store_cls = obstore.store.GCSStore
    else:
        if location.account:
            store_config["account_name"] = location.account
        if anonymous is None:
            anonymous, extra = anonymous_default("az")
        store_cls = obstore.store.AzureStore
    if anonymous:
        store_config["skip_signature"] = True
    for key, value in extra.pop("config", {}).items():
        store_config.setdefault(key, value)
    return store_cls(
        location.root,
        config=store_config,
        client_options=options,
        retry_config=retry,
        **extra,
    )
