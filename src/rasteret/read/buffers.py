"""Recycled memory for decoded tiles and assembled chips: fewer page faults per read.

A read decodes hundreds of megabytes of tiles (300 tiles of 2 MiB in the S2-like benchmark).
Fresh memory for each tile costs a page fault per 4 KiB page on first write (~1 ms of kernel
time per 2 MiB tile on the benchmark VM, a fifth of the tile's decode time), and the freed
tiles go back to the system, so the next read faults again; chips likewise.
:class:`BufferPool` hands out writable byte arrays and takes their memory back once the last
view of an array is gone (cache entries, chips being assembled, user references: NumPy views
keep the array they were taken from alive, so memory is reused only when nothing can see it
any more). Up to ``max_free_bytes`` of returned memory is kept; the rest is freed.

Decoded tiles never leave rasteret (chips and outputs are copied out of them), so their pool
(:func:`decoded_buffers`) is *private*: its memory is mapped ``MADV_WIPEONFORK``, which a
forked child sees as fresh zero pages instead of sharing it. A process that forks workers
and goes on reading (the TorchGeo read server) then reuses its tile memory without the
copy-on-write of shared pages and without the page faults of fresh memory; the pool of
memory that may reach users (:func:`tile_buffers`: chips, stacked outputs) is shared like
any memory and is freed before such a fork instead.

>>> pool = BufferPool(max_free_bytes=1 << 20)
>>> a = pool.take(1000)
>>> a[:] = 7
>>> tile = a[:800].view("uint16").reshape(20, 20)  # a view keeps the buffer in use
>>> del a
>>> pool.free_bytes
0
>>> del tile  # the last view is gone: the memory is kept for the next take()
>>> pool.free_bytes
1000
>>> b = pool.take(1000)
>>> pool.free_bytes, pool.reused
(0, 1)
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import weakref

import numpy as np

__all__ = [
    "DEFAULT_POOL_MB",
    "HUGE_PAGE_MIN_BYTES",
    "PRIVATE_MIN_BYTES",
    "BufferPool",
    "ProcessPool",
    "decoded_buffers",
    "private_block",
    "recycled_array",
    "tile_buffers",
]

DEFAULT_POOL_MB = 256
"""Megabytes (10**6 bytes) of returned tile memory kept for reuse: the default tile cache's
size, so the tiles a cleared or overflowing cache lets go are reused by the next read."""


MADV_WIPEONFORK = 18
"""Linux's ``madvise`` advice (4.14+): a forked child gets zero pages, not this memory."""

HUGE_PAGE_MIN_BYTES = 4 * 1024 * 1024
"""Private blocks of this size and more are advised ``MADV_HUGEPAGE`` (as NumPy advises its
own arrays of 4 MiB and more): a point read's mosaic of tiles is indexed at random, and with
4 KiB pages nearly every index misses the TLB (a million random reads in an 8 MB mosaic:
12.9 ms with 4 KiB pages, 10.6 ms with huge pages, on the benchmark VM)."""

PRIVATE_MIN_BYTES = 256 * 1024
"""Smallest buffer a private pool maps on its own. Each such buffer is one mapping, and a
process has a bounded number of them (``vm.max_map_count``, 65,530 by default): small tiles
(strips of a few rows) come from ordinary memory, whose sharing after a fork costs little."""


def private_block(nbytes: int) -> np.ndarray | None:
    """``nbytes`` of anonymous memory that forked children do not share (``MADV_WIPEONFORK``:
    they see zero pages there), as a writable ``uint8`` array; None where the system cannot
    (not Linux, an old kernel, or ``nbytes`` 0). From :data:`HUGE_PAGE_MIN_BYTES` on, the
    block is also advised ``MADV_HUGEPAGE`` where the system has it (advice only: the
    kernel's transparent huge page setting decides).

    >>> block = private_block(4096)
    >>> block is None or (block.nbytes, bool(block.flags.writeable)) == (4096, True)
    True
    """
    if nbytes <= 0:
        return None
    try:
        block = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        block.madvise(MADV_WIPEONFORK)
    except (OSError, ValueError, AttributeError):
        return None
    if nbytes >= HUGE_PAGE_MIN_BYTES and hasattr(mmap, "MADV_HUGEPAGE"):
        with contextlib.suppress(OSError):  # no huge pages in this kernel: plain pages serve
            block.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(block, dtype=np.uint8)


class BufferPool:
    """Writable ``uint8`` arrays whose memory is reused once nothing refers to them.

    Thread-safe. Buffers are recycled by exact size (every tile of an IFD has the same).

    Args:
        max_free_bytes: Returned memory kept for reuse; 0 keeps none (every take allocates).
        private: Allocate memory that forked children do not share (:func:`private_block`),
            where the system allows (:attr:`private` says whether it does), for buffers of
            at least :data:`PRIVATE_MIN_BYTES`.
    """

    def __init__(self, max_free_bytes: int, *, private: bool = False) -> None:
        self.private = private and private_block(mmap.PAGESIZE) is not None
        """This pool's buffers (of :data:`PRIVATE_MIN_BYTES` and more) are private: forked
        children do not share them."""
        self._max_free = max(int(max_free_bytes), 0)
        self._free: dict[int, list[np.ndarray]] = {}
        self._free_bytes = 0
        # Re-entrant: a garbage collection inside a locked block may finalize a pooled array.
        self._lock = threading.RLock()
        self.reused = 0
        """Takes served from returned memory so far."""

    @property
    def max_free_bytes(self) -> int:
        """Returned memory kept for reuse at most."""
        return self._max_free

    @property
    def free_bytes(self) -> int:
        """Bytes of returned memory held for reuse right now."""
        return self._free_bytes

    def take(self, nbytes: int) -> np.ndarray:
        """A writable ``uint8`` array of ``nbytes`` (contents undefined).

        Its memory returns to the pool when the array and every view of it are gone.
        """
        raw: np.ndarray | None = None
        with self._lock:
            stack = self._free.get(nbytes)
            if stack:
                raw = stack.pop()
                self._free_bytes -= nbytes
                self.reused += 1
        if raw is None and self.private and nbytes >= PRIVATE_MIN_BYTES:
            raw = private_block(nbytes)
        if raw is None:
            raw = np.empty(nbytes, dtype=np.uint8)
        # The array handed out wraps a memoryview, so NumPy's views of it keep *it* alive (a
        # view of an array whose base is not an array never skips over that array).
        out = np.frombuffer(raw.data, dtype=np.uint8)
        weakref.finalize(out, self._give_back, raw).atexit = False
        return out

    def clear(self) -> None:
        """Free every buffer held for reuse."""
        with self._lock:
            self._free.clear()
            self._free_bytes = 0

    def clear_shared(self) -> None:
        """Free the buffers held for reuse that forked children would share: all of them,
        except the private ones of a private pool (see :data:`PRIVATE_MIN_BYTES`)."""
        with self._lock:
            for size in list(self._free):
                if not (self.private and size >= PRIVATE_MIN_BYTES):
                    self._free_bytes -= size * len(self._free.pop(size))

    def resize(self, max_free_bytes: int) -> None:
        """Keep at most ``max_free_bytes`` of returned memory from now on (freeing the rest)."""
        with self._lock:
            self._max_free = max(int(max_free_bytes), 0)
            for size in sorted(self._free, reverse=True):
                stack = self._free[size]
                while stack and self._free_bytes > self._max_free:
                    stack.pop()
                    self._free_bytes -= size

    def _give_back(self, raw: np.ndarray) -> None:
        with self._lock:
            if self._free_bytes + raw.nbytes > self._max_free:
                return
            self._free.setdefault(raw.nbytes, []).append(raw)
            self._free_bytes += raw.nbytes


class ProcessPool:
    """A process-wide :class:`BufferPool`, made on first use and made afresh in a forked child.

    A child never takes the parent's pool (its buffers may be shared with the parent, and
    its lock may have been held by a parent thread at the fork).

    >>> pool = ProcessPool(1.0)
    >>> pool() is pool(), pool().free_bytes
    (True, 0)
    """

    def __init__(self, max_mb: float, *, private: bool = False) -> None:
        self._max_bytes = int(max_mb * 1_000_000)
        self._private = private
        self._pool: BufferPool | None = None
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def __call__(self) -> BufferPool:
        with self._lock:
            if self._pool is None:
                self._pool = BufferPool(self._max_bytes, private=self._private)
            return self._pool

    def _reset(self) -> None:
        self._pool = None
        self._lock = threading.Lock()


_tile_pool = ProcessPool(DEFAULT_POOL_MB)
_decoded_pool = ProcessPool(DEFAULT_POOL_MB, private=True)


def tile_buffers() -> BufferPool:
    """The process-wide pool of memory for assembled chips and stacked outputs, which reach
    users (:data:`DEFAULT_POOL_MB` kept)."""
    return _tile_pool()


def decoded_buffers() -> BufferPool:
    """The process-wide pool of decoded-tile memory: private (see the module docstring),
    keeping :data:`DEFAULT_POOL_MB`, or as much as the decoded-tile cache holds when that is
    more (:func:`rasteret.read.cache.get_tile_cache`), so the tiles of a cleared or
    overflowing cache are decoded again into memory already mapped.

    Only for arrays that never reach users: a forked child reads zeros in them.
    """
    return _decoded_pool()


def recycled_array(shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
    """``np.empty(shape, dtype)`` in the memory of :func:`tile_buffers` (contents undefined:
    every element must be written by the caller). Its memory returns to the pool once
    nothing refers to the array, so the same-shaped array of the next read reuses it.

    >>> arr = recycled_array((2, 3), "uint16")
    >>> arr.shape, str(arr.dtype), arr.flags.writeable
    ((2, 3), 'uint16', True)
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    return tile_buffers().take(nbytes).view(dtype).reshape(shape)
