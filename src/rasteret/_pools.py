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

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["ELASTIC", "shared_pool"]

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


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it while forking
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
