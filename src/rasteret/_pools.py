"""Thread pools kept for the life of the process, one per kind of work.

A read used to start some pools of its own (planning, gathering point values, building WKB)
and shut them down at the end. Every call then paid for new threads, and for more than the
threads: pyproj builds a CRS or transformer again in each thread that uses it (PROJ objects
are per thread), ~1-2 ms on a thread's first use, so planning in a fresh thread was ~2 ms
slower on every call. Threads made here live on and keep what they built.

Pools are made on first use and forgotten in a forked child (their threads do not exist
there); their threads end with the interpreter, as :mod:`concurrent.futures` arranges.

>>> shared_pool("doctest", 2) is shared_pool("doctest", 2)
True
>>> shared_pool("doctest", 2).submit(sum, [1, 2]).result()
3
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["ELASTIC", "run_on", "shared_pool"]

T = TypeVar("T")

ELASTIC = 32
"""Threads at most of a pool whose jobs may wait a little (for requests to go out): a
:class:`~concurrent.futures.ThreadPoolExecutor` starts a thread only when none is idle, so
one read keeps using one or two, and concurrent reads never queue behind another's wait."""

_pools: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def shared_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The process's pool for ``name`` (threads named ``rasteret-{name}``), made with
    ``workers`` threads on first use; later calls return it as it is."""
    with _lock:
        pool = _pools.get(name)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"rasteret-{name}")
            _pools[name] = pool
        return pool


async def run_on(
    pool: Executor,
    fn: Callable[..., T],
    *args: Any,
    started: Callable[[Future[T]], None] | None = None,
) -> T:
    """``fn(*args)`` on ``pool``, awaited from the event loop; ``started`` is given the pool's
    future once submitted.

    As ``loop.run_in_executor``, with one call back into the loop per job instead of two (a
    read runs a few jobs per tile, and each call back costs the loop thread a turn). A
    cancelled await cancels the job if it has not started.

    >>> asyncio.run(run_on(shared_pool("doctest", 2), sum, [1, 2]))
    3
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def finished(job: Future[T]) -> None:  # in the pool's thread (or here, if cancelled)
        if not loop.is_closed():
            loop.call_soon_threadsafe(_copy_outcome, job, done)

    job = pool.submit(fn, *args)
    if started is not None:
        started(job)
    job.add_done_callback(finished)
    try:
        return await done
    except asyncio.CancelledError:
        job.cancel()  # not started yet: never starts
        raise


def _copy_outcome(job: Future[T], done: asyncio.Future[T]) -> None:
    if done.done():  # the await was cancelled
        return
    if job.cancelled():
        done.cancel()
        return
    error = job.exception()
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(job.result())


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it while forking
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
