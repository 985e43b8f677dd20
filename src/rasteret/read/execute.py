"""Run a :class:`~rasteret.read.plan.ReadPlan`: fetch, decode and assemble as a pipeline.

1. Tiles already in the decoded-tile cache are used as they are; sparse tiles (byte count 0)
   are filled without a request.
2. Every other tile's byte range is grouped by file and coalesced (gap and size limits);
   every group goes out at once, in one wave, under :mod:`rasteret.io`'s global bound on
   requests in flight.
3. As each group's bytes arrive, its tiles are decoded on a thread pool sized to the cores
   (imagecodecs releases the GIL) into recycled memory (:mod:`rasteret.read.buffers`) and
   cached. A tile whose chips need only its top rows is decoded down to the last of them
   where the codec can stop early (Deflate), unless ``ReadOptions.whole_tiles``; such a
   tile is cached with its :class:`~rasteret.tiff.decode.PartialTile`, and a later read
   needing deeper rows decodes only those, without fetching the tile again.
4. Each chip is assembled on the same pool, into recycled memory too (or straight into its
   entry of a caller's stacked ``out`` array), as soon as its last tile is decoded; a tile
   is let go as soon as the last chip that needs it is assembled (the cache may keep it), so
   its memory can serve the tiles decoded after it.

Bytes usually arrive faster than they decode, so decode jobs wait in a :class:`DecodeQueue`
rather than in the pool's own queue: a few at a time go to the pool, tiles of earlier chips
first. A chip's assembly then waits behind a few decodes, not behind every tile of the read,
and only the tiles of chips still being put together are held in memory.

A tile needed by several chips or bands is fetched and decoded once. With
``on_error="skip"``, tiles whose bytes cannot be fetched (after retries) or decoded leave
out the chips that need them, and each (record, band) is reported as a
:class:`~rasteret.read.result.FailedRead`; otherwise the first such error is raised.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from rasteret._pools import run_on, shared_pool
from rasteret.errors import (
    AccessDeniedError,
    DecodeError,
    FetchError,
    ObjectNotFoundError,
    RasteretError,
    SchemaError,
    StaleIndexError,
)
from rasteret.io.fetch import FetchOptions, Prefix, fetch_head, fetch_ranges
from rasteret.io.ranges import ByteRange, coalesce
from rasteret.io.urls import redact_url
from rasteret.read.assemble import assemble_band
from rasteret.read.bands import TileKey, TileSource
from rasteret.read.buffers import decoded_buffers, recycled_array
from rasteret.read.cache import TileCache, get_tile_cache
from rasteret.read.mask import geometry_inside
from rasteret.read.options import ReadOptions
from rasteret.read.plan import ChipPlan, ReadPlan, RecordRef
from rasteret.read.result import Chip, FailedRead
from rasteret.tiff.decode import PartialTile, decode_tile, decodes_in_part, empty_tile

__all__ = [
    "DecodeQueue",
    "PoolJobs",
    "TileDecodes",
    "decode_pool",
    "execute_plan_async",
    "fetch_groups",
    "fetch_options",
    "stack_shape",
]

T = TypeVar("T")

DECODE_SLOTS_PER_THREAD = 2
"""Decode jobs handed to the pool at once, per pool thread (the rest wait, in chip order)."""


def decode_pool() -> ThreadPoolExecutor:
    """The shared thread pool for decoding and assembly (one thread per core)."""
    return shared_pool("decode", _threads())


def _threads() -> int:
    """Threads of the decode pool: one per core."""
    return os.cpu_count() or 1


SPREAD_REQUESTS = 16
"""A call's bytes go out in at least this many requests when they fill them: merged requests
stop growing at the call's bytes / SPREAD_REQUESTS (never below :data:`MIN_SPREAD_SIZE`).
An object store serves one connection at tens to ~100 MB/s, so a few large requests arrive
later than the same bytes in parallel ones, and decoding waits for each request's end."""
MIN_SPREAD_SIZE = 1024 * 1024
"""Merged requests may always grow to this many bytes (small reads stay one request)."""


def spread(fopts: FetchOptions, total: int) -> FetchOptions:
    """``fopts`` for a call fetching ``total`` bytes: its merged requests stop growing at
    ``total / SPREAD_REQUESTS`` bytes (at least :data:`MIN_SPREAD_SIZE`) when that is below
    ``fopts.max_coalesced_size``.

    >>> spread(FetchOptions(), 11_000_000).max_coalesced_size
    1048576
    >>> spread(FetchOptions(), 400_000_000).max_coalesced_size == FetchOptions().max_coalesced_size
    True
    """
    size = max(MIN_SPREAD_SIZE, total // SPREAD_REQUESTS)
    if size >= fopts.max_coalesced_size:
        return fopts
    return replace(fopts, max_coalesced_size=size)


def fetch_options(options: ReadOptions) -> FetchOptions:
    """The :class:`~rasteret.io.fetch.FetchOptions` a read's options ask for."""
    defaults = FetchOptions()
    return FetchOptions(
        retries=defaults.retries if options.retries is None else options.retries,
        request_timeout=options.request_timeout or defaults.request_timeout,
        max_concurrent=options.max_concurrent or defaults.max_concurrent,
        max_gap=defaults.max_gap if options.max_gap is None else options.max_gap,
        max_coalesced_size=(
            defaults.max_coalesced_size
            if options.max_coalesced_size is None
            else options.max_coalesced_size
        ),
    )


class DecodeQueue:
    """Runs jobs on a thread pool, at most ``slots`` at once, lowest priority number first.

    Example:
        >>> async def demo() -> list[int]:
        ...     queue = DecodeQueue(decode_pool(), slots=1)
        ...     return list(await asyncio.gather(*(queue.run(p, abs, -p) for p in (3, 1, 2))))
        >>> asyncio.run(demo())
        [3, 1, 2]
    """

    def __init__(self, pool: ThreadPoolExecutor, slots: int, jobs: PoolJobs | None = None) -> None:
        if slots < 1:
            raise ValueError(f"expected slots >= 1, got {slots}")
        self._pool = pool
        self._jobs = jobs or PoolJobs(pool)
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def run(self, priority: int, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the pool once a slot is free and no lower number waits."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._order), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._release()  # handed a slot and cancelled in the same tick
                raise
        try:
            return await self._jobs.run(fn, *args)
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():  # skip waiters cancelled meanwhile
                turn.set_result(None)
                return
        self._free += 1


class PoolJobs:
    """Runs a read's jobs on a thread pool and can wait for every one it started.

    A cancelled asyncio task does not stop a pool job that is already running. A read that
    fails waits for its jobs (:meth:`settle`) before raising, so no job of it outlives it:
    a late AOI rasterize, which silences warnings process-wide while it runs, could
    otherwise hide a warning of whatever the caller does next.

    Example:
        >>> async def demo() -> int:
        ...     jobs = PoolJobs(decode_pool())
        ...     value = await jobs.run(abs, -3)
        ...     await jobs.settle()
        ...     return value
        >>> asyncio.run(demo())
        3
    """

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._running: set[concurrent.futures.Future[Any]] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the pool."""
        return await run_on(self._pool, fn, *args, started=self._track)

    def _track(self, job: concurrent.futures.Future[Any]) -> None:
        self._running.add(job)
        job.add_done_callback(self._running.discard)  # set operations hold the GIL

    async def settle(self) -> None:
        """Wait until every job started so far has finished (their outcomes are dropped)."""
        running = [f for f in list(self._running) if not f.done()]
        if running:
            await asyncio.wrap_future(_all_done(running))


def _all_done(futures: list[concurrent.futures.Future[Any]]) -> concurrent.futures.Future[None]:
    """A future resolved once every one of ``futures`` is done (cancelled, failed or not)."""
    done: concurrent.futures.Future[None] = concurrent.futures.Future()
    left = [len(futures)]
    lock = threading.Lock()

    def one(_: concurrent.futures.Future[Any]) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            done.set_result(None)

    for future in futures:
        future.add_done_callback(one)
    return done


async def execute_plan_async(
    plan: ReadPlan,
    records: list[RecordRef] | tuple[RecordRef, ...],
    options: ReadOptions,
    *,
    on_chip: Callable[[], None] | None = None,
    failures: list[FailedRead] | None = None,
    out: np.ndarray | None = None,
) -> list[Chip]:
    """Fetch, decode and assemble every chip of ``plan`` (in plan order).

    With ``options.on_error == "skip"``, chips whose tiles failed are left out and their
    (record, band) pairs are appended to ``failures``.

    With ``out`` (``[len(plan.chips), bands, H, W]`` of ``plan.dtype``, every chip grid
    ``H x W``), chip ``i`` of the plan is assembled straight into ``out[i]`` and its ``data``
    is that view (no chip-sized buffer, no later copy into a stacked array); otherwise chips
    are assembled into recycled memory.
    """
    if out is not None:
        _check_out(plan, out)
    loop = asyncio.get_running_loop()
    pool = decode_pool()
    cache = get_tile_cache(options.cache_mb)
    tiles: dict[TileKey, asyncio.Future[np.ndarray | None]] = {}
    errors: dict[TileKey, str] = {}  # tiles that failed with on_error="skip"
    to_fetch: dict[str, list[TileSource]] = defaultdict(list)
    to_resume: list[tuple[TileSource, PartialTile]] = []  # cached, but not deep enough
    for key, source in plan.tiles.items():
        future: asyncio.Future[np.ndarray | None] = loop.create_future()
        tiles[key] = future
        cached = cache.get(key, rows=source.needed_rows)
        if cached is not None:
            future.set_result(cached)
        elif source.end == source.start:
            future.set_result(empty_tile(source.layout, source.sparse_fill, rows=source.rows))
        elif (partial := cache.partial(key)) is not None:
            to_resume.append((source, partial))
        else:
            to_fetch[key.href].append(source)
    masks: dict[int, asyncio.Future[np.ndarray]] = {}

    jobs = PoolJobs(pool)

    def inside(chip: ChipPlan) -> Awaitable[np.ndarray]:
        if chip.aoi_index not in masks:
            geom = plan.aoi_geometries[chip.aoi_index]
            masks[chip.aoi_index] = asyncio.ensure_future(
                jobs.run(
                    lambda: geometry_inside(
                        geom, chip.grid.transform, chip.grid.shape, all_touched=plan.all_touched
                    )
                )
            )
        return masks[chip.aoi_index]

    reported: set[tuple[int, str]] = set()
    users: Counter[TileKey] = Counter()
    first_chip: dict[TileKey, int] = {}  # decode priority: the first chip needing the tile
    for index, planned in enumerate(plan.chips):
        for key in _chip_keys(planned):
            users[key] += 1
            first_chip.setdefault(key, index)
    queue = DecodeQueue(pool, DECODE_SLOTS_PER_THREAD * _threads(), jobs)

    decodes = TileDecodes(options, tiles, cache, pool, errors, queue=queue, priority=first_chip)

    def release(keys: set[TileKey]) -> None:
        """Forget the tiles no chip still needs (their memory can then be reused)."""
        for key in keys:
            users[key] -= 1
            if users[key] == 0:
                tiles.pop(key, None)

    async def one_chip(index: int, chip: ChipPlan) -> Chip | None:
        keys = _chip_keys(chip)
        polygon = inside(chip)  # rasterized while the tiles are still on their way
        arrived = {k: await tiles[k] for k in keys}
        decoded = {k: v for k, v in arrived.items() if v is not None}
        if len(decoded) < len(arrived):
            release(keys)
            _report(chip, records, plan.bands, errors, reported, failures)
            await polygon  # no job of this read outlives it
            return None
        aoi = await polygon
        result = await jobs.run(
            _assemble_chip,
            plan,
            chip,
            records[chip.record_index],
            decoded,
            aoi,
            None if out is None else out[index],
        )
        release(keys)
        if on_chip is not None:
            on_chip()
        return result

    try:
        async with asyncio.TaskGroup() as group:
            for href, members, fopts in fetch_groups(to_fetch, fetch_options(options)):
                group.create_task(decodes.fetch(href, members, fopts))
            for source, partial in to_resume:
                group.create_task(decodes.resume(source, partial))
            chip_tasks = [group.create_task(one_chip(i, c)) for i, c in enumerate(plan.chips)]
    except BaseExceptionGroup as eg:
        for mask in masks.values():
            mask.cancel()  # not started yet: never starts
        await jobs.settle()  # started: let them end before the error leaves the read
        raise _first_error(eg) from None
    return [chip for t in chip_tasks if (chip := t.result()) is not None]


def stack_shape(plan: ReadPlan) -> tuple[int, int, int, int] | None:
    """``[N, C, H, W]`` of an array holding every chip of ``plan`` (the ``out`` of
    :func:`execute_plan_async`); None when the chip grids differ in shape.
    """
    shapes = {c.grid.shape for c in plan.chips}
    if len(shapes) > 1 or any(len(c.bands) != len(plan.bands) for c in plan.chips):
        return None
    height, width = shapes.pop() if shapes else (0, 0)
    return len(plan.chips), len(plan.bands), height, width


def _check_out(plan: ReadPlan, out: np.ndarray) -> None:
    expected = stack_shape(plan)
    if expected is None or out.shape != expected or out.dtype != plan.dtype:
        raise SchemaError(
            f"expected out of shape {expected} and dtype {plan.dtype} (one entry per planned "
            f"chip, all chips of one shape), got {out.shape} {out.dtype}"
        )


def _chip_keys(chip: ChipPlan) -> set[TileKey]:
    """Every tile (data and mask) the bands of ``chip`` are assembled from."""
    return {k for r in chip.bands for k in (*r.tiles, *r.mask_tiles)}


def _report(
    chip: ChipPlan,
    records: list[RecordRef] | tuple[RecordRef, ...],
    bands: tuple[str, ...],
    errors: dict[TileKey, str],
    reported: set[tuple[int, str]],
    failures: list[FailedRead] | None,
) -> None:
    """Add the failed (record, band) pairs of ``chip`` to ``failures`` (once each)."""
    for read in chip.bands:
        failed = [errors[k] for k in (*read.tiles, *read.mask_tiles) if k in errors]
        band = bands[read.index]
        if failed and (chip.record_index, band) not in reported:
            reported.add((chip.record_index, band))
            if failures is not None:
                record = records[chip.record_index]
                failures.append(FailedRead(chip.record_index, record.id, band, failed[0]))


def _first_error(eg: BaseExceptionGroup[Any]) -> BaseException:
    """The first real exception of a task group (not a cancellation)."""
    for exc in eg.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return eg.exceptions[0]


def fetch_groups(
    to_fetch: Mapping[str, list[TileSource]], fopts: FetchOptions
) -> Iterator[tuple[str, list[TileSource], FetchOptions]]:
    """The requests of one call's tiles (``to_fetch``: per file): ``(href, tiles, options)``
    per coalesced request, the options :func:`spread` over the call's bytes."""
    fetched = sum(s.end - s.start for sources in to_fetch.values() for s in sources)
    fopts = spread(fopts, fetched)
    for href, sources in to_fetch.items():
        for members in _groups(sources, fopts):
            yield href, members, fopts


def _groups(sources: list[TileSource], fopts: FetchOptions) -> list[list[TileSource]]:
    """Tiles of one file grouped by the coalesced request that will carry them."""
    by_range: dict[ByteRange, list[TileSource]] = defaultdict(list)
    for s in sources:
        by_range[ByteRange(s.start, s.end)].append(s)
    merged = coalesce(by_range, max_gap=fopts.max_gap, max_size=fopts.max_coalesced_size)
    return [[s for m in c.members for s in by_range[m]] for c in merged]


@dataclass(frozen=True, eq=False)
class TileDecodes:
    """Where one read's tiles are decoded and published: fetched groups, or cached partial
    decodes taken further.

    Each decoded tile is cached and resolves its future in ``tiles``. With ``errors`` given
    and ``options.on_error == "skip"``, a tile that cannot be fetched or decoded resolves to
    None and its error is recorded in ``errors``; otherwise the error is raised. With a
    ``queue``, decodes wait their turn there (``priority[key]``, default 0); otherwise they
    go straight to ``pool``.
    """

    options: ReadOptions
    tiles: Mapping[TileKey, asyncio.Future[Any]]
    cache: TileCache
    pool: ThreadPoolExecutor
    errors: dict[TileKey, str] | None = None
    queue: DecodeQueue | None = None
    priority: Mapping[TileKey, int] | None = None
    then: Callable[[TileKey, np.ndarray], None] | None = None
    """Called in the decoding thread with each tile just decoded (while it is in the core's
    cache), before the tile is cached and published."""
    _heads: dict[str, asyncio.Future[Prefix | None]] = field(default_factory=dict)
    """Per file: the HEAD that tells a stale index from a corrupt tile (error path only)."""

    async def fetch(self, href: str, sources: list[TileSource], fopts: FetchOptions) -> None:
        """Fetch one coalesced group of ``href`` and decode its tiles."""
        ranges = [ByteRange(s.start, s.end) for s in sources]
        try:
            views = await fetch_ranges(
                href,
                ranges,
                options=fopts,
                backend=self.options.backend,
                cloud_config=self.options.cloud_config,
            )
        except RasteretError as exc:
            for source in sources:
                self._fail(source, await self._explained(source, exc))
            return
        whole = self.options.whole_tiles
        runs = [
            self._run(source, _decode, (source, view, None if whole else source.needed_rows))
            for source, view in zip(sources, views, strict=True)
        ]
        if len(runs) == 1:  # one tile: awaited in place (no task, no gather)
            await runs[0]
        else:
            await asyncio.gather(*runs)

    async def resume(self, source: TileSource, partial: PartialTile) -> None:
        """Decode the rows the read needs below those of a cached partial decode (no fetch)."""
        rows = source.rows if self.options.whole_tiles else source.needed_rows
        await self._run(source, _resume, (partial, rows))

    async def _run(
        self, source: TileSource, job: Callable[..., Decoded], args: tuple[Any, ...]
    ) -> None:
        if self.then is not None:
            args = (self.then, source.key, job, *args)
            job = _then
        try:
            if self.queue is None:
                arr, partial = await run_on(self.pool, job, *args)
            else:
                rank = 0 if self.priority is None else self.priority.get(source.key, 0)
                arr, partial = await self.queue.run(rank, job, *args)
        except RasteretError as exc:
            self._fail(source, await self._explained(source, exc))
            return
        self.cache.put(source.key, arr, partial=partial)
        future = self.tiles.get(source.key)
        if future is not None and not future.done():
            future.set_result(arr)

    async def _explained(self, source: TileSource, exc: RasteretError) -> RasteretError:
        """``exc``, or a :class:`~rasteret.errors.StaleIndexError` when the tile's file is
        no longer the one indexed: a decode failure, a short body or a refused range of a
        file whose ETag (or size, when no ETag was stored) differs now. One HEAD per file
        and read, on the error path only."""
        version, href = source.key.version, source.key.href
        if not version or not isinstance(exc, DecodeError | FetchError):
            return exc
        if isinstance(exc, ObjectNotFoundError | AccessDeniedError):
            return exc  # already says what happened
        if href not in self._heads:
            self._heads[href] = asyncio.ensure_future(self._head(href))
        head = await self._heads[href]
        if head is None:
            return exc
        now = str(head.object_size) if version.isdigit() else head.etag
        if now is None or now == version:
            return exc
        stale = StaleIndexError(
            f"expected {redact_url(href)} as indexed ({'size' if version.isdigit() else 'ETag'} "
            f"{version}), got a changed file (ETag {head.etag}, {head.object_size} bytes) at "
            f"tile {source.key.tile}: the collection's tile offsets no longer match it; build "
            f"the collection again (force=True) or enrich its headers again ({exc})"
        )
        stale.__cause__ = exc
        return stale

    async def _head(self, href: str) -> Prefix | None:
        try:
            return await fetch_head(
                href,
                options=fetch_options(self.options),
                backend=self.options.backend,
                cloud_config=self.options.cloud_config,
            )
        except RasteretError:
            return None

    def _fail(self, source: TileSource, exc: RasteretError) -> None:
        """Record a failed tile (``on_error="skip"``), or raise its error."""
        if self.errors is None or self.options.on_error != "skip":
            raise exc
        self.errors[source.key] = f"{type(exc).__name__}: {exc}"
        future = self.tiles.get(source.key)
        if future is not None and not future.done():
            future.set_result(None)


Decoded = tuple[np.ndarray, PartialTile | None]
"""A decoded tile, and the partial decode it is the top of (None: whole)."""


def _then(
    then: Callable[[TileKey, np.ndarray], None],
    key: TileKey,
    job: Callable[..., Decoded],
    *args: Any,
) -> Decoded:
    """``job(*args)``, then ``then(key, tile)`` in the same thread."""
    decoded = job(*args)
    then(key, decoded[0])
    return decoded


def _decode(source: TileSource, view: memoryview, prefix: int | None = None) -> Decoded:
    """Decode one fetched tile: down to row ``prefix`` when given and the codec can stop
    there (Deflate; then with the :class:`PartialTile` that decodes the rows below later),
    otherwise whole."""
    layout, key = source.layout, source.key
    allocate = decoded_buffers().take  # private: decoded tiles never reach users
    if prefix is not None and decodes_in_part(layout, prefix, source.rows):
        partial = PartialTile(
            view, layout, rows=source.rows, url=key.href, tile=key.tile, allocate=allocate
        )
        return partial.decode_rows(prefix), partial
    arr = decode_tile(
        view, layout, rows=source.rows, url=key.href, tile=key.tile, allocate=allocate
    )
    if np.may_share_memory(arr, np.frombuffer(view, dtype=np.uint8)):
        arr = arr.copy()  # uncompressed tiles are views: do not pin the whole fetched buffer
    return arr, None


def _resume(partial: PartialTile, rows: int) -> Decoded:
    """The top ``rows`` of a partly decoded tile, decoding those below what it holds."""
    return partial.decode_rows(rows), partial


def _assemble_chip(
    plan: ReadPlan,
    chip: ChipPlan,
    record: RecordRef,
    decoded: dict[TileKey, np.ndarray],
    inside_aoi: np.ndarray,
    data: np.ndarray | None = None,
) -> Chip:
    """Assemble ``chip`` into ``data`` (``[C, H, W]``) when given, else into recycled memory."""
    grid = chip.grid
    shape = (len(chip.bands), grid.height, grid.width)
    if data is None:
        data = recycled_array(shape, plan.dtype)
    valid = recycled_array(shape, np.dtype(bool))
    for read in chip.bands:
        c = read.index
        assemble_band(read, decoded, grid, inside_aoi, data[c], valid[c], plan.fill_values[c])
    return Chip(
        record_index=chip.record_index,
        aoi_index=chip.aoi_index,
        record_id=record.id,
        datetime=record.datetime,
        data=data,
        valid=valid,
        transform=grid.transform,
        crs=grid.crs,
    )
