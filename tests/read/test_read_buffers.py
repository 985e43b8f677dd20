"""Recycled tile memory (BufferPool), the decode queue, and a read letting tiles go early.

A read decodes into recycled memory and lets a tile go once its last chip is assembled; these
tests show that memory is reused only when nothing can see it, that recycled memory gives
the same pixels as fresh memory (and rasterio's), and that a read holds only part of its
tiles at once.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import from_bounds
from read_support import record, write_cog

from rasteret.read import ReadOptions, read_chips
from rasteret.read import execute as execute_module
from rasteret.read.buffers import PRIVATE_MIN_BYTES, BufferPool, ProcessPool, tile_buffers
from rasteret.read.cache import clear_tile_cache
from rasteret.read.execute import DecodeQueue, decode_pool
from rasteret.testing.stores import URLReader
from support.forking import FORK_OF_THREADS_EXPECTED

X0, Y0 = 500_000.0, 4_600_000.0


def _address(arr: np.ndarray) -> int:
    return int(arr.__array_interface__["data"][0])


# -- BufferPool ----------------------------------------------------------------------------------


def test_memory_returns_only_after_the_last_view_is_gone() -> None:
    pool = BufferPool(max_free_bytes=10_000)
    first = pool.take(1000)
    address = _address(first)
    view = first[100:].view(np.uint16)[::3]
    cached = view.view()
    cached.flags.writeable = False
    del first, view
    assert pool.free_bytes == 0  # ``cached`` still sees the memory
    other = pool.take(1000)
    assert _address(other) != address
    del cached
    assert pool.free_bytes == 1000
    again = pool.take(1000)
    assert (_address(again), pool.reused, pool.free_bytes) == (address, 1, 0)
    assert again.flags.writeable
    del other, again


def test_buffers_are_recycled_by_exact_size_within_the_bound() -> None:
    pool = BufferPool(max_free_bytes=2500)
    taken = [pool.take(1000) for _ in range(3)]
    del taken
    assert pool.free_bytes == 2000  # the third did not fit: freed
    small = pool.take(999)
    assert pool.reused == 0  # no buffer of that size
    big = [pool.take(1000), pool.take(1000)]
    assert (pool.reused, pool.free_bytes) == (2, 0)
    del small, big
    pool.clear()
    assert pool.free_bytes == 0


def test_pool_without_room_never_keeps_memory() -> None:
    pool = BufferPool(max_free_bytes=0)
    buf = pool.take(100)
    del buf
    assert pool.free_bytes == 0


def test_pool_is_thread_safe() -> None:
    pool = BufferPool(max_free_bytes=1 << 20)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(300):
                buf = pool.take(4096)
                buf[:] = seed
                if not (buf == seed).all():  # another thread wrote into a live buffer
                    raise AssertionError(f"buffer changed under thread {seed} at {i}")
                del buf  # back to the pool before the next take: one live buffer a thread
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pool.reused > 0
    # Every buffer is back, and no more were ever made than were live at once (one a thread).
    assert pool.free_bytes == (8 * 300 - pool.reused) * 4096 <= 8 * 4096


# -- DecodeQueue --------------------------------------------------------------------------------


def test_queue_runs_lowest_priority_first_within_its_slots() -> None:
    lock = threading.Lock()
    running = [0, 0]  # now, most at once
    order: list[int] = []

    gate = threading.Event()

    def job(p: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
            order.append(p)
        gate.wait(10)
        with lock:
            running[0] -= 1
        return p

    async def main() -> list[int]:
        queue = DecodeQueue(decode_pool(), slots=1)
        first = asyncio.ensure_future(queue.run(5, job, 5))  # takes the only slot
        rest = [asyncio.ensure_future(queue.run(p, job, p)) for p in (9, 2, 7, 1)]
        await asyncio.sleep(0.01)  # every job queued behind the first
        gate.set()
        return [await first, *await asyncio.gather(*rest)]

    assert asyncio.run(main()) == [5, 9, 2, 7, 1]
    assert order == [5, 1, 2, 7, 9]
    assert running[1] == 1


def test_cancelled_waiters_give_their_turn_back() -> None:
    async def main() -> list[int]:
        queue = DecodeQueue(decode_pool(), slots=1)
        gate = threading.Event()
        first = asyncio.ensure_future(queue.run(0, gate.wait, 5))
        await asyncio.sleep(0)
        waiting = asyncio.ensure_future(queue.run(1, abs, -1))
        later = asyncio.ensure_future(queue.run(2, abs, -2))
        await asyncio.sleep(0)
        waiting.cancel()
        gate.set()
        await first
        return [await later, await queue.run(3, abs, -3)]

    assert asyncio.run(main()) == [2, 3]


def test_queue_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="slots >= 1"):
        DecodeQueue(decode_pool(), slots=0)


# -- reads ---------------------------------------------------------------------------------------


TILE_NBYTES = 64 * 64 * 2 + 1
"""Decode buffer of one 64x64 uint16 tile (one spare byte); chips take other sizes."""


class CountingPool(BufferPool):
    """A BufferPool that counts the tile buffers in use and the most in use at once."""

    def __init__(self) -> None:
        super().__init__(max_free_bytes=1 << 30)
        self.live = self.peak = self.taken = 0
        self._count_lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        if nbytes == TILE_NBYTES:
            with self._count_lock:
                self.live += 1
                self.taken += 1
                self.peak = max(self.peak, self.live)
        return super().take(nbytes)

    def settled(self) -> bool:
        """No tile buffer in use, once the decode threads have let their last job go.

        A pool thread drops its finished job (and the tile it returned) only after the event
        loop has been told of the result, so right after a read a tile or two may still be
        referenced by an idle thread's last work item, for a moment.
        """
        deadline = time.monotonic() + 10
        while self.live and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.01)
        return self.live == 0

    def _give_back(self, raw: np.ndarray) -> None:
        if raw.nbytes == TILE_NBYTES:
            with self._count_lock:
                self.live -= 1
        super()._give_back(raw)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("buffers")
    return [write_cog(d / f"s{i}.tif", size=(512, 512), tile=64, seed=i) for i in range(3)]


def _aois() -> list[shapely.Polygon]:
    """Twelve AOIs, each exactly one 2x2 block of 64-pixel tiles (no tile shared)."""
    size = 1280.0  # 128 pixels of 10 m
    return [
        shapely.box(X0 + size * c, Y0 - size * (r + 1), X0 + size * (c + 1), Y0 - size * r)
        for r in range(3)
        for c in range(4)
    ]


def _rasterio(path: Path, aoi: shapely.Polygon) -> np.ndarray:
    with rasterio.open(path) as src:
        window = from_bounds(*aoi.bounds, transform=src.transform).round_offsets().round_lengths()
        return src.read(1, window=window, boundless=True)


def test_reads_hold_few_tiles_and_recycle_them(
    scenes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = CountingPool()
    monkeypatch.setattr(execute_module, "decoded_buffers", lambda: pool)
    chip_reuse = tile_buffers().reused
    recs = [record(p.stem, p) for p in scenes]
    aois = _aois()
    opts = ReadOptions(backend=URLReader(), cache_mb=0)
    first = read_chips(recs, aois, 32633, ["b1"], opts).chips
    tiles = pool.taken
    assert tiles == 3 * 12 * 4
    assert pool.settled()  # every tile let go after the read: no leak
    assert pool.peak <= tiles // 2  # tiles go as soon as their chip is assembled
    for _ in range(2):  # recycled (dirty) memory: the same pixels
        again = read_chips(recs, aois, 32633, ["b1"], opts).chips
        for a, b in zip(first, again, strict=True):
            np.testing.assert_array_equal(a.data, b.data, strict=True)
            np.testing.assert_array_equal(a.valid, b.valid, strict=True)
        del again, a, b  # the second read's chips take this one's memory
    assert pool.reused >= 2 * tiles  # the tiles of both later reads
    assert tile_buffers().reused - chip_reuse >= 2 * len(first)  # chips' data and valid
    for chip in first:
        expected = _rasterio(scenes[chip.record_index], aois[chip.aoi_index])
        np.testing.assert_array_equal(chip.data[0], expected, strict=True)


def test_cached_tiles_keep_their_memory(scenes: list[Path]) -> None:
    clear_tile_cache()
    recs = [record(p.stem, p) for p in scenes]
    aois = _aois()
    opts = ReadOptions(backend=URLReader(), cache_mb=64)
    first = read_chips(recs, aois, 32633, ["b1"], opts).chips
    for _ in range(3):  # other reads recycle memory; the cached tiles must not be touched
        read_chips(recs, aois, 32633, ["b1"], ReadOptions(backend=URLReader(), cache_mb=0))
    cached = read_chips(recs, aois, 32633, ["b1"], opts).chips
    for a, b in zip(first, cached, strict=True):
        np.testing.assert_array_equal(a.data, b.data, strict=True)
    clear_tile_cache()
    assert tile_buffers().free_bytes >= 0


def _report_pool(pool: ProcessPool, out: Any) -> None:
    out.send(pool().free_bytes)


@FORK_OF_THREADS_EXPECTED
def test_a_forked_child_starts_its_own_process_pool() -> None:
    """The parent's free buffers are never the child's (they may be shared pages)."""
    import multiprocessing

    pool = ProcessPool(1.0)
    parent = pool()
    del_me = parent.take(4096)
    del del_me
    assert parent.free_bytes == 4096
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_report_pool, args=(pool, send))
    child.start()
    assert receive.recv() == 0
    child.join(timeout=60)
    assert child.exitcode == 0
    assert pool() is parent


def _report_bytes(arrays: list[np.ndarray], out: Any) -> None:
    out.send([int(a.max()) for a in arrays])
    for a in arrays:
        a[...] = 9  # the child's writes never reach the parent


@FORK_OF_THREADS_EXPECTED
def test_private_memory_is_not_shared_with_forked_children() -> None:
    """Decoded tiles live in private memory (MADV_WIPEONFORK): a forked child sees zeros
    there and cannot share (so cannot make the parent copy) those pages; the memory of the
    other pools, which may reach users, is inherited as usual."""
    import multiprocessing

    from rasteret.read.buffers import private_block

    if private_block(4096) is None:
        pytest.skip("this system has no MADV_WIPEONFORK")
    private = BufferPool(1 << 20, private=True)
    shared = BufferPool(1 << 20)
    assert private.private
    assert not shared.private
    size = PRIVATE_MIN_BYTES
    mine, small, theirs = private.take(size), private.take(4096), shared.take(size)
    for array in (mine, small, theirs):
        array[...] = 7
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_report_bytes, args=([mine, small, theirs], send))
    child.start()
    assert receive.recv() == [0, 7, 7]  # small buffers are ordinary memory
    child.join(timeout=60)
    assert child.exitcode == 0
    for array in (mine, small, theirs):
        assert (array == 7).all()
    del mine, small, theirs  # back to the pools
    assert private.free_bytes == size + 4096
    private.clear_shared()  # what a fork would share goes; the private block stays
    assert private.free_bytes == size
    shared.clear_shared()
    assert shared.free_bytes == 0


def test_decoded_tiles_come_from_the_private_pool_sized_to_the_cache(scenes: list[Path]) -> None:
    from rasteret.read.buffers import decoded_buffers
    from rasteret.read.cache import get_tile_cache

    get_tile_cache(512)
    assert decoded_buffers().max_free_bytes == 512_000_000
    clear_tile_cache()
    taken = decoded_buffers().reused
    recs = [record(p.stem, p) for p in scenes]
    opts = ReadOptions(backend=URLReader(), cache_mb=512)
    first = read_chips(recs, _aois(), 32633, ["b1"], opts).chips
    clear_tile_cache()  # the tiles' memory goes back to the pool, kept for the next read
    again = read_chips(recs, _aois(), 32633, ["b1"], opts).chips
    assert decoded_buffers().reused - taken >= 3 * 12 * 4
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.data, b.data, strict=True)
    get_tile_cache(10)  # a smaller cache: the pool keeps its default bound
    assert decoded_buffers().max_free_bytes == 256_000_000


def _vm_flags(array: np.ndarray) -> set[str]:
    """The kernel's VmFlags of the mapping holding ``array`` (/proc/self/smaps)."""
    address = array.ctypes.data
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return set(line.split()[1:])
    raise AssertionError(f"no mapping holds address {address:#x}")


def test_large_private_blocks_are_advised_huge_pages_and_stay_private() -> None:
    """From HUGE_PAGE_MIN_BYTES on, a private block is advised MADV_HUGEPAGE (VmFlags "hg",
    as NumPy advises its large arrays) and is still wiped on fork ("wf"); smaller ones get
    no huge-page advice."""
    import mmap
    import os

    from rasteret.read.buffers import HUGE_PAGE_MIN_BYTES, private_block

    if private_block(4096) is None or not os.path.exists("/proc/self/smaps"):
        pytest.skip("this system has no MADV_WIPEONFORK or no /proc/self/smaps")
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        pytest.skip("this Python has no MADV_HUGEPAGE")
    large = private_block(HUGE_PAGE_MIN_BYTES)
    small = private_block(HUGE_PAGE_MIN_BYTES - mmap.PAGESIZE)
    assert large is not None
    assert small is not None
    large_flags, small_flags = _vm_flags(large), _vm_flags(small)
    assert {"wf", "hg"} <= large_flags
    assert "wf" in small_flags
    assert "hg" not in small_flags
    large[...] = 3  # huge or not, the memory is ordinary writable memory
    assert int(large.sum()) == 3 * HUGE_PAGE_MIN_BYTES
