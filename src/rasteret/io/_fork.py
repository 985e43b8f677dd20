"""Fork safety of rasteret's I/O: which processes may still send obstore requests.

obstore runs every request on a tokio runtime whose worker threads start on first use and
are not copied by ``fork()``: in a process forked after its parent sent a request, an obstore
call waits forever (the Python-side bookkeeping says the runtime is running, its threads are
gone). rasteret's own per-process state (event loop, decode pool, stores, tile cache) is
reset after a fork by each module's ``os.register_at_fork`` hook; the runtime cannot be.

This module knows which case a process is in:

* :func:`mark_runtime_used` is called by :class:`~rasteret.io.stores.ObstoreReader` before
  each request: from then on a fork of this process inherits a used runtime;
* :func:`inherited_runtime` is True in a process forked (directly or through forks of forks)
  from one that had used it; :func:`check_runtime` raises there, saying why and the way out,
  instead of letting the request hang.

Processes started with ``spawn`` or ``forkserver`` (the default start method on Linux from
Python 3.14) and forks of processes that never sent a request read as usual. TorchGeo
datasets go further: their forked ``DataLoader`` workers hand reads to the process that forked
them (see :mod:`rasteret.outputs._torchgeo_helper`).

>>> inherited_runtime()
False
>>> check_runtime()  # no error in a process that was not forked so
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

from rasteret.errors import ReadError

__all__ = [
    "at_fork",
    "check_runtime",
    "inherited_runtime",
    "mark_runtime_used",
    "runtime_used",
    "trim_heap",
]

_used = False
"""This process sent an obstore request (its own runtime is running)."""
_inherited = False
"""This process was forked after an ancestor sent one (its copy of the runtime is dead)."""
_parent_pid: int | None = None
"""The pid of the process this one was forked from, when ``_inherited``."""


def mark_runtime_used() -> None:
    """Record that this process sends obstore requests (called before each one)."""
    global _used
    _used = True


def runtime_used() -> bool:
    """Whether this process has sent obstore requests on its own, working runtime."""
    return _used and not _inherited


def inherited_runtime() -> bool:
    """Whether this process was forked after an ancestor sent obstore requests, so that
    obstore cannot run here."""
    return _inherited


def check_runtime() -> None:
    """Raise :class:`~rasteret.errors.ReadError` when obstore cannot run in this process.

    The fetch layer does not retry it and adds the URL and range to the message.
    """
    if _inherited:
        raise ReadError(
            f"expected a process that can send requests, got process {os.getpid()}, a fork of "
            f"process {_parent_pid} made after that one had sent requests through obstore, "
            "whose runtime does not survive fork(); start worker processes with the 'spawn' "
            "or 'forkserver' method (multiprocessing.get_context(...), "
            "DataLoader(multiprocessing_context=...)) or fork them before the first read "
            "(TorchGeo datasets of Collection.to_torchgeo_dataset handle forked DataLoader "
            "workers themselves)"
        )


_malloc_trim: Any = None
"""glibc's ``malloc_trim`` (False where the C library has none), looked up on first use."""


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system; False where that cannot be done.

    For a process about to fork children and go on writing memory while they live (a read
    server): every page it writes that they still share is copied on that first write.
    Memory freed before the fork and reused after it (decoded tiles of a cleared cache,
    NumPy's freed arrays kept by ``malloc``) is such memory: ~2 CPU-s of page copies per
    TorchGeo benchmark epoch. Returned to the system, it comes back as fresh pages that no
    child shares. This is glibc's ``malloc_trim(0)``; other C libraries keep their heap.

    >>> trim_heap() in (True, False)
    True
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
            _malloc_trim.argtypes = [ctypes.c_size_t]
            _malloc_trim.restype = ctypes.c_int
        except (AttributeError, OSError, TypeError):  # not glibc (musl, macOS, Windows)
            _malloc_trim = False
    if _malloc_trim is False:
        return False
    _malloc_trim(0)
    return True


def at_fork(
    *, before: Callable[[], None] | None = None, after_in_child: Callable[[], None] | None = None
) -> None:
    """``os.register_at_fork`` where the platform has it (not on Windows)."""
    if hasattr(os, "register_at_fork"):
        kwargs = {k: v for k, v in (("before", before), ("after_in_child", after_in_child)) if v}
        os.register_at_fork(**kwargs)


_forking_pid = 0


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _inherited, _parent_pid
    if _used and not _inherited:
        _parent_pid = _forking_pid
    _inherited = _inherited or _used


at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
