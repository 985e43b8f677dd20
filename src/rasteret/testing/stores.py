"""Readers for tests and benchmarks: count requests, add latency, route URLs.

All three implement :class:`rasteret.io.stores.RangeReader` and can be passed as
``backend=``. They forward ``get_prefix``/``head`` when the reader they wrap has them, so a
wrapped store still reports object size and ETag.

- :class:`CountingReader` counts calls and bytes per path.
- :class:`LatencyReader` sleeps before every call, like a distant object store.
- :class:`URLReader` receives full URLs (what a custom backend gets) and routes each to the
  shared store :func:`rasteret.io.stores.resolve` picks, so real stores can be wrapped.

>>> import pathlib, tempfile
>>> from rasteret._sync import run
>>> from rasteret.io.fetch import fetch_prefix
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
>>> _ = path.write_bytes(b"0123456789")
>>> counting = CountingReader(LatencyReader(URLReader(), latency=0.001))
>>> prefix = run(fetch_prefix(str(path), 4, backend=counting))
>>> bytes(prefix.data), prefix.object_size, counting.requests(str(path))
(b'0123', 10, 1)
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rasteret.io.stores import CloudConfig, Prefix, read_prefix, resolve

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["Call", "CountingReader", "LatencyReader", "URLReader"]


@dataclass(frozen=True, slots=True)
class Call:
    """One call seen by :class:`CountingReader`."""

    method: str
    """``get_range``, ``get_ranges``, ``get_prefix`` or ``head``."""
    path: str
    ranges: tuple[tuple[int, int], ...]
    """The ``(start, end)`` ranges asked for (``get_prefix``: ``(0, length)``)."""
    nbytes: int
    """Bytes returned."""


class CountingReader:
    """Wraps a reader and records every call.

    Args:
        inner: Any :class:`~rasteret.io.stores.RangeReader`.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._calls: list[Call] = []

    @property
    def calls(self) -> list[Call]:
        """A copy of every call so far, in order of completion."""
        with self._lock:
            return list(self._calls)

    def requests(self, path: str | None = None) -> int:
        """Requests made, for one path or all: a ``get_ranges`` call counts once per range."""
        return sum(
            1 if c.method != "get_ranges" else len(c.ranges)
            for c in self.calls
            if path is None or c.path == path
        )

    def bytes_read(self, path: str | None = None) -> int:
        """Bytes returned, for one path or all."""
        return sum(c.nbytes for c in self.calls if path is None or c.path == path)

    def per_path(self) -> Counter[str]:
        """Requests per path."""
        counts: Counter[str] = Counter()
        for call in self.calls:
            counts[call.path] += 1 if call.method != "get_ranges" else len(call.ranges)
        return counts

    def reset(self) -> None:
        """Forget every call."""
        with self._lock:
            self._calls.clear()

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    async def get_range(self, path: str, start: int, end: int) -> Buffer:
        """Forward and record."""
        data = await self.inner.get_range(path, start, end)
        self._record(Call("get_range", path, ((start, end),), memoryview(data).nbytes))
        return data

    async def get_ranges(
        self, path: str, starts: Sequence[int], ends: Sequence[int]
    ) -> Sequence[Buffer]:
        """Forward and record (one call, ``len(starts)`` requests)."""
        datas = await self.inner.get_ranges(path, starts, ends)
        total = sum(memoryview(d).nbytes for d in datas)
        self._record(Call("get_ranges", path, tuple(zip(starts, ends, strict=True)), total))
        return datas

    async def get_prefix(self, path: str, length: int) -> Prefix:
        """Forward (size and ETag kept when the inner reader knows them) and record."""
        prefix = await read_prefix(self.inner, path, length)
        self._record(Call("get_prefix", path, ((0, length),), memoryview(prefix.data).nbytes))
        return prefix

    async def head(self, path: str) -> Prefix:
        """Forward and record; raises AttributeError when the inner reader cannot HEAD."""
        prefix: Prefix = await self.inner.head(path)
        self._record(Call("head", path, (), 0))
        return prefix


class LatencyReader:
    """Wraps a reader and sleeps ``latency`` seconds (asyncio) before every call.

    Args:
        inner: Any :class:`~rasteret.io.stores.RangeReader`.
        latency: Seconds added per call (a ``get_ranges`` call sleeps once).
    """

    def __init__(self, inner: Any, latency: float) -> None:
        self.inner = inner
        self.latency = latency

    async def get_range(self, path: str, start: int, end: int) -> Buffer:
        """Sleep, then forward."""
        await asyncio.sleep(self.latency)
        return await self.inner.get_range(path, start, end)

    async def get_ranges(
        self, path: str, starts: Sequence[int], ends: Sequence[int]
    ) -> Sequence[Buffer]:
        """Sleep, then forward."""
        await asyncio.sleep(self.latency)
        return await self.inner.get_ranges(path, starts, ends)

    async def get_prefix(self, path: str, length: int) -> Prefix:
        """Sleep, then forward."""
        await asyncio.sleep(self.latency)
        return await read_prefix(self.inner, path, length)

    async def head(self, path: str) -> Prefix:
        """Sleep, then forward."""
        await asyncio.sleep(self.latency)
        return await self.inner.head(path)


class URLReader:
    """A reader whose paths are full URLs, each routed to its shared store.

    Args:
        cloud_config: Passed to :func:`~rasteret.io.stores.resolve` for every URL.
    """

    def __init__(self, cloud_config: CloudConfig | None = None) -> None:
        self.cloud_config = cloud_config

    async def get_range(self, path: str, start: int, end: int) -> Buffer:
        """Bytes of URL ``path``."""
        reader, key = resolve(path, cloud_config=self.cloud_config)
        return await reader.get_range(key, start, end)

    async def get_ranges(
        self, path: str, starts: Sequence[int], ends: Sequence[int]
    ) -> Sequence[Buffer]:
        """Bytes of several ranges of URL ``path``."""
        reader, key = resolve(path, cloud_config=self.cloud_config)
        return await reader.get_ranges(key, starts, ends)

    async def get_prefix(self, path: str, length: int) -> Prefix:
        """Prefix, size and ETag of URL ``path``."""
        reader, key = resolve(path, cloud_config=self.cloud_config)
        return await read_prefix(reader, key, length)

    async def head(self, path: str) -> Prefix:
        """Size and ETag of URL ``path``."""
        reader, key = resolve(path, cloud_config=self.cloud_config)
        return await reader.head(key)
