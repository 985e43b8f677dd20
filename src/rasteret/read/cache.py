"""A process-wide LRU cache of decoded tiles, bounded in bytes.

Keys are :class:`~rasteret.read.bands.TileKey` values: ``(href, etag/size, level, mask,
plane, tile)``, so a file rewritten in place (new ETag or size) never serves stale pixels.
Cached arrays are made read-only: readers copy out of them, never into them. A tile decoded
only down to the rows its read needed is cached with its
:class:`~rasteret.tiff.decode.PartialTile`, so a later read needing deeper rows decodes only
those (:meth:`TileCache.partial`) instead of fetching the tile again.

>>> import numpy as np
>>> cache = TileCache(max_bytes=100)
>>> cache.put("a", np.zeros(10, dtype=np.uint8)); cache.put("b", np.zeros(80, dtype=np.uint8))
>>> cache.get("a") is not None, cache.nbytes
(True, 90)
>>> cache.put("c", np.zeros(20, dtype=np.uint8))  # evicts the least recently used: "b"
>>> cache.get("b") is None, sorted(cache.keys())
(True, ['a', 'c'])
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

import numpy as np

from rasteret.read.buffers import DEFAULT_POOL_MB, decoded_buffers
from rasteret.tiff.decode import PartialTile

__all__ = ["TileCache", "clear_tile_cache", "get_tile_cache", "memory_share_mb", "usable_memory"]

_MB = 1_000_000
_CGROUP_LIMITS = (
    "/sys/fs/cgroup/memory.max",  # cgroup v2
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
)


class _Entry(NamedTuple):
    arr: np.ndarray
    partial: PartialTile | None
    nbytes: int


class TileCache:
    """Least-recently-used arrays up to ``max_bytes`` in total; thread-safe.

    Args:
        max_bytes: Capacity; 0 stores nothing. An array larger than the whole capacity is
            not stored.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max = max(int(max_bytes), 0)
        self._items: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def max_bytes(self) -> int:
        return self._max

    @property
    def nbytes(self) -> int:
        """Bytes held right now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._items)

    def get(self, key: Hashable, *, rows: int = 0) -> np.ndarray | None:
        """The array stored under ``key`` (marking it recently used), or None.

        ``rows``: the caller needs that many rows (axis 1 of a ``(samples, rows, width)``
        tile); an entry holding fewer (a tile decoded only down to the rows an earlier read
        needed) counts as a miss: see :meth:`partial` for decoding the rest.

        >>> cache = TileCache(max_bytes=1000)
        >>> cache.put("t", np.zeros((1, 3, 4), dtype=np.uint8))  # the top 3 rows of a tile
        >>> cache.get("t", rows=3) is not None, cache.get("t", rows=4) is None
        (True, True)
        """
        with self._lock:
            entry = self._items.get(key)
            arr = None if entry is None else entry.arr
            if arr is None or (rows and (arr.ndim < 2 or arr.shape[1] < rows)):
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return arr

    def partial(self, key: Hashable) -> PartialTile | None:
        """The :class:`~rasteret.tiff.decode.PartialTile` cached with the rows of ``key``
        (a tile not decoded to its last row), which decodes rows below them; None when the
        entry is whole or absent.

        >>> import zlib
        >>> from rasteret.tiff.decode import TileLayout
        >>> layout = TileLayout(tile_width=2, tile_height=3, samples=1, dtype="uint8",
        ...                     bits_per_sample=8, compression=8)
        >>> tile = PartialTile(zlib.compress(bytes(range(6))), layout)
        >>> cache = TileCache(max_bytes=1000)
        >>> cache.put("t", tile.decode_rows(1), partial=tile)
        >>> cache.get("t", rows=3) is None, cache.partial("t").decode_rows(3).tolist()
        (True, [[[0, 1], [2, 3], [4, 5]]])
        """
        with self._lock:
            entry = self._items.get(key)
            if entry is None or entry.partial is None:
                return None
            self._items.move_to_end(key)
            return entry.partial

    def put(self, key: Hashable, arr: np.ndarray, *, partial: PartialTile | None = None) -> None:
        """Store ``arr`` (read-only) under ``key``, evicting old entries to make room.

        An entry of more rows (axis 1) than ``arr`` stays: it serves every read ``arr`` can.
        ``partial``: the decode ``arr`` is the top of, kept (and counted in the cache's
        bytes: the whole tile's buffer and the input not inflated yet) until a later put
        stores the tile whole.
        """
        if partial is not None and partial.complete:
            partial = None
        size = int(arr.nbytes) if partial is None else max(partial.nbytes, int(arr.nbytes))
        if size > self._max:
            return
        if arr.flags.writeable:
            arr = arr.view()
            arr.flags.writeable = False
        with self._lock:
            old = self._items.get(key)
            if (
                old is not None
                and arr.ndim >= 2
                and old.arr.ndim >= 2
                and old.arr.shape[1] > arr.shape[1]
            ):
                self._items.move_to_end(key)
                return
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = _Entry(arr, partial, size)
            self._bytes += size
            self._evict(self._max)

    def resize(self, max_bytes: int) -> None:
        """Change the capacity, evicting least recently used entries if needed."""
        with self._lock:
            self._max = max(int(max_bytes), 0)
            self._evict(self._max)

    def clear(self) -> None:
        """Drop every entry and reset the hit counters."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def _evict(self, limit: int) -> None:
        while self._bytes > limit and self._items:
            _, entry = self._items.popitem(last=False)
            self._bytes -= entry.nbytes


_cache: TileCache | None = None
_cache_lock = threading.Lock()


_DISABLED = TileCache(0)


def get_tile_cache(cache_mb: float) -> TileCache:
    """The process-wide cache, resized to ``cache_mb`` megabytes (10**6 bytes).

    ``cache_mb=0`` returns an empty cache that stores nothing, leaving the process-wide cache
    (and what other reads put in it) untouched; any other size resizes the shared cache
    (the last read's setting wins), and lets the pool of decoded-tile memory
    (:func:`~rasteret.read.buffers.decoded_buffers`) keep as much for reuse.
    """
    global _cache
    if cache_mb <= 0:
        return _DISABLED
    size = int(cache_mb * _MB)
    with _cache_lock:
        if _cache is None:
            _cache = TileCache(size)
        elif _cache.max_bytes != size:
            _cache.resize(size)
        else:
            return _cache
        # what the cache lets go is decoded into again: keep up to as much for reuse
        decoded_buffers().resize(max(size, int(DEFAULT_POOL_MB * _MB)))
        return _cache


def usable_memory() -> int | None:
    """Bytes of RAM this process may use: physical memory, capped by a cgroup memory limit
    (as GDAL reckons it for its block cache); None when the platform does not tell.

    >>> usable_memory() is None or usable_memory() > 0
    True
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    if total <= 0:
        return None
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return int(total)


def memory_share_mb(share: float, *, floor_mb: float) -> float:
    """``share`` of :func:`usable_memory` in MB (10**6 bytes), at least ``floor_mb``.

    >>> memory_share_mb(0.0, floor_mb=256.0)
    256.0
    """
    total = usable_memory()
    if total is None:
        return float(floor_mb)
    return max(float(floor_mb), round(share * total / _MB, 1))


def clear_tile_cache() -> None:
    """Empty the process-wide cache (e.g. between benchmark runs)."""
    with _cache_lock:
        if _cache is not None:
            _cache.clear()


def _reset_after_fork() -> None:
    global _cache, _cache_lock
    _cache = None
    _cache_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
