"""Fetch many byte ranges fast: coalesced, parallel, bounded, retried, verified.

:func:`fetch_ranges` merges nearby ranges of one object (:func:`rasteret.io.ranges.coalesce`),
sends every merged range as its own ranged GET at once, each holding a slot of the event
loop's :class:`~rasteret.io.limiter.RequestLimiter`, checks that each response has exactly
the requested length, and hands back each requested range as a zero-copy view.
:func:`fetch_prefix` reads the start of an object together with its size and ETag in one GET
(a COG header). :func:`fetch_many` runs many such jobs under the same bound.

Failures: 5xx, 429, 408, timeouts, dropped connections and short bodies are retried with
exponential backoff and full jitter, within a retry count and a total time; then a
:class:`~rasteret.errors.FetchError` names the URL (signatures removed), the range and the
cause. A 404 raises :class:`~rasteret.errors.ObjectNotFoundError`, a 401/403
:class:`~rasteret.errors.AccessDeniedError`, at once.

>>> import pathlib, tempfile
>>> from rasteret._sync import run
>>> from rasteret.io.ranges import ByteRange
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
>>> _ = path.write_bytes(bytes(range(100)))
>>> views = run(fetch_ranges(str(path), [ByteRange(10, 12), ByteRange(50, 51)]))
>>> [bytes(v) for v in views]
[b'\\n\\x0b', b'2']
>>> run(fetch_prefix(str(path), 8)).object_size
100
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from rasteret.errors import FetchError
from rasteret.io._failures import ShortBodyError, classify, scrub, to_fetch_error
from rasteret.io.limiter import get_limiter
from rasteret.io.ranges import DEFAULT_MAX_GAP, DEFAULT_MAX_SIZE, ByteRange, coalesce, slice_members
from rasteret.io.stores import CloudConfig, Prefix, Target, open_target, read_prefix

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_HEADER_PREFIX",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_TIME_LIMIT",
    "FetchOptions",
    "Prefix",
    "fetch_head",
    "fetch_many",
    "fetch_prefix",
    "fetch_ranges",
]

T = TypeVar("T")

DEFAULT_MAX_CONCURRENT = 64
"""Requests in flight per call: enough to hide ~50 ms first-byte latency at ~1 GB/s."""
DEFAULT_RETRIES = 5
"""Retries after the first attempt (S3 advises retrying 503 SlowDown with backoff)."""
DEFAULT_BACKOFF_BASE = 0.1
"""Seconds: the first retry waits up to this long, doubling each time (full jitter)."""
DEFAULT_BACKOFF_MAX = 5.0
"""Seconds: the longest single wait between attempts."""
DEFAULT_RETRY_TIME_LIMIT = 60.0
"""Seconds from the first attempt after which no new attempt starts."""
DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds one request may take, body included (obstore's own default)."""
DEFAULT_HEADER_PREFIX = 65536
"""Bytes read speculatively for a COG header: GDAL COGs put every IFD first."""


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """Concurrency, coalescing and retry settings of a fetch.

    >>> FetchOptions(max_concurrent=300).retries
    5
    """

    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    """Requests in flight at most (shared with every other fetch on the loop)."""
    max_gap: int = DEFAULT_MAX_GAP
    """Ranges at most this many bytes apart are fetched in one request."""
    max_coalesced_size: int = DEFAULT_MAX_SIZE
    """Merged requests stop growing at this many bytes."""
    retries: int = DEFAULT_RETRIES
    """Retries of a failed request after the first attempt."""
    backoff_base: float = DEFAULT_BACKOFF_BASE
    """Seconds; the n-th retry waits ``uniform(0, min(backoff_max, backoff_base * 2**n))``."""
    backoff_max: float = DEFAULT_BACKOFF_MAX
    """Seconds; cap of one wait."""
    retry_time_limit: float = DEFAULT_RETRY_TIME_LIMIT
    """Seconds after the first attempt of a request when no retry starts any more."""
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT
    """Seconds one request may take (None: no limit); a timeout is retried."""

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError(f"expected max_concurrent >= 1, got {self.max_concurrent}")
        if self.retries < 0 or self.max_gap < 0 or self.max_coalesced_size < 0:
            raise ValueError(
                "expected retries, max_gap and max_coalesced_size >= 0, got "
                f"{self.retries}, {self.max_gap}, {self.max_coalesced_size}"
            )

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), with full jitter."""
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2.0**retry))


async def fetch_ranges(
    url: str,
    ranges: Sequence[ByteRange],
    *,
    options: FetchOptions | None = None,
    backend: Any = None,
    cloud_config: CloudConfig | None = None,
) -> list[memoryview]:
    """The bytes of every range of one object, in input order, as read-only views.

    Args:
        url: Object URL or local path.
        ranges: Half-open byte ranges; duplicates and overlaps are fine.
        options: Concurrency, coalescing and retries.
        backend: An obstore store or a :class:`~rasteret.io.stores.RangeReader`.
        cloud_config: Requester-pays, region, URL rewrites.

    Raises:
        ObjectNotFoundError: The object does not exist.
        AccessDeniedError: The store refused access.
        FetchError: Any other failure, after retries.
    """
    options = options or FetchOptions()
    ranges = list(ranges)
    if not ranges:
        return []
    target = open_target(url, backend=backend, cloud_config=cloud_config)
    plan = coalesce(ranges, max_gap=options.max_gap, max_size=options.max_coalesced_size)
    datas = await _all_or_nothing(_read_range(target, c.range, options) for c in plan)
    views: dict[ByteRange, memoryview] = {}
    for merged, data in zip(plan, datas, strict=True):
        views.update(zip(merged.members, slice_members(merged, data), strict=True))
    return [views[r] for r in ranges]


async def fetch_prefix(
    url: str,
    length: int = DEFAULT_HEADER_PREFIX,
    *,
    options: FetchOptions | None = None,
    backend: Any = None,
    cloud_config: CloudConfig | None = None,
) -> Prefix:
    """The first ``length`` bytes of an object (all of it if smaller), its size and ETag.

    One ranged GET. An empty object gives ``data=b""`` and ``object_size=0`` (stores refuse
    any range of an empty object, so a HEAD confirms the size). A custom reader without
    ``get_prefix`` reports no ETag, and a size only when it returned fewer bytes than asked.
    """
    options = options or FetchOptions()
    if length < 1:
        raise ValueError(f"expected a prefix length >= 1, got {length}")
    target = open_target(url, backend=backend, cloud_config=cloud_config)
    reader = target.reader

    async def attempt() -> Prefix:
        prefix = await read_prefix(reader, target.path, length)
        if prefix.object_size is not None:
            _check_length(prefix.data, min(length, prefix.object_size))
        return prefix

    try:
        return await _with_retries(target, f"bytes [0, {length})", options, attempt)
    except FetchError as exc:
        unsatisfiable = exc.__cause__ is not None and (
            classify(exc.__cause__).kind == "unsatisfiable"
        )
        if not unsatisfiable or not hasattr(reader, "head"):
            raise
        head = await _head(target, options)
        if head.object_size != 0:
            raise
        return head  # an empty object: stores refuse any range of it


async def fetch_head(
    url: str,
    *,
    options: FetchOptions | None = None,
    backend: Any = None,
    cloud_config: CloudConfig | None = None,
) -> Prefix | None:
    """The size and ETag of an object (one HEAD, retried as any request; ``data`` is empty),
    or None for a custom reader that cannot HEAD.

    Raises:
        ObjectNotFoundError, AccessDeniedError, FetchError: as :func:`fetch_ranges`.

    >>> import tempfile, pathlib
    >>> from rasteret._sync import run
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = path.write_bytes(b"12345")
    >>> run(fetch_head(str(path))).object_size
    5
    """
    target = open_target(url, backend=backend, cloud_config=cloud_config)
    if not hasattr(target.reader, "head"):
        return None
    return await _head(target, options or FetchOptions())


async def _head(target: Target, options: FetchOptions) -> Prefix:
    """One HEAD of ``target`` (its reader has ``head``), retried as any request."""
    head: Prefix = await _with_retries(
        target, "the object size (HEAD)", options, lambda: target.reader.head(target.path)
    )
    return head


@overload
async def fetch_many(
    jobs: Iterable[tuple[str, Sequence[ByteRange]]],
    *,
    options: FetchOptions | None = ...,
    backend: Any = ...,
    cloud_config: CloudConfig | None = ...,
    return_exceptions: Literal[False] = ...,
    on_done: Callable[[int], None] | None = ...,
) -> list[list[memoryview]]: ...
@overload
async def fetch_many(
    jobs: Iterable[tuple[str, Sequence[ByteRange]]],
    *,
    options: FetchOptions | None = ...,
    backend: Any = ...,
    cloud_config: CloudConfig | None = ...,
    return_exceptions: Literal[True],
    on_done: Callable[[int], None] | None = ...,
) -> list[list[memoryview] | FetchError]: ...
async def fetch_many(
    jobs: Iterable[tuple[str, Sequence[ByteRange]]],
    *,
    options: FetchOptions | None = None,
    backend: Any = None,
    cloud_config: CloudConfig | None = None,
    return_exceptions: bool = False,
    on_done: Callable[[int], None] | None = None,
) -> list[list[memoryview]] | list[list[memoryview] | FetchError]:
    """:func:`fetch_ranges` for many ``(url, ranges)`` jobs at once, in input order.

    All jobs share the loop's request bound (``options.max_concurrent``).

    Args:
        jobs: ``(url, ranges)`` pairs.
        options: As for :func:`fetch_ranges`.
        backend: As for :func:`fetch_ranges`.
        cloud_config: As for :func:`fetch_ranges`.
        return_exceptions: Put a job's :class:`~rasteret.errors.FetchError` in its place
            instead of raising the first one (and cancelling the rest).
        on_done: Called with a job's index when it finishes, successfully or not.
    """

    async def one(index: int, url: str, ranges: Sequence[ByteRange]) -> list[memoryview]:
        try:
            return await fetch_ranges(
                url, ranges, options=options, backend=backend, cloud_config=cloud_config
            )
        finally:
            if on_done is not None:
                on_done(index)

    coros = [one(i, url, ranges) for i, (url, ranges) in enumerate(jobs)]
    if not return_exceptions:
        return await _all_or_nothing(coros)
    results = await asyncio.gather(*coros, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, FetchError):
            raise result
    return results  # type: ignore[return-value]  # gather's type loses the narrowing above


# -- internals ---------------------------------------------------------------------------------


async def _read_range(target: Target, rng: ByteRange, options: FetchOptions) -> Any:
    if rng.length == 0:
        return b""

    async def attempt() -> Any:
        data = await target.reader.get_range(target.path, rng.start, rng.end)
        _check_length(data, rng.length)
        return data

    return await _with_retries(target, f"bytes [{rng.start}, {rng.end})", options, attempt)


def _check_length(data: Any, expected: int) -> None:
    got = memoryview(data).nbytes
    if got != expected:
        raise ShortBodyError(expected, got)


async def _with_retries(
    target: Target, what: str, options: FetchOptions, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Run ``attempt`` under a limiter slot and the request timeout, retrying what is worth it."""
    loop = asyncio.get_running_loop()
    limiter = get_limiter()
    deadline = loop.time() + options.retry_time_limit
    tries = 0
    while True:
        tries += 1
        try:
            async with (
                limiter.slot(options.max_concurrent),
                asyncio.timeout(options.request_timeout),
            ):
                return await attempt()
        except Exception as exc:
            failure = classify(exc)
            remaining = deadline - loop.time()
            if not failure.retryable or tries > options.retries or remaining <= 0:
                cause: BaseException = exc
                if isinstance(exc, TimeoutError) and not str(exc):  # asyncio.timeout's own
                    cause = TimeoutError(
                        f"no complete response within request_timeout={options.request_timeout} s"
                    )
                    cause.__cause__ = exc
                scrub(cause)
                error = to_fetch_error(
                    cause, failure, url=target.display_url, what=what, attempts=tries
                )
                raise error from cause
            await asyncio.sleep(min(options.backoff(tries - 1), remaining))


async def _all_or_nothing(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``coros`` concurrently; on the first failure cancel the rest and raise it.

    One coroutine is awaited in place: no task, no wait (most tile requests are one range).
    """
    coros = list(coros)
    if len(coros) == 1:
        return [await coros[0]]
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return []
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:  # cancelled from outside: take the children down too
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if pending:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        first = next(t for t in tasks if t.done() and not t.cancelled() and t.exception())
        raise first.exception()  # type: ignore[misc]
    return [t.result() for t in tasks]
