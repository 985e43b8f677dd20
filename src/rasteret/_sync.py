"""The only sync -> async bridge in rasteret.

All I/O in rasteret is ``async def``. Synchronous entry points run their coroutine on one
dedicated event-loop thread owned by this module, so they work the same in scripts, in
Jupyter (where a loop is already running in the main thread) and in DataLoader workers (a
forked child gets a fresh loop on first use).

>>> import asyncio
>>> async def answer() -> int:
...     await asyncio.sleep(0)
...     return 42
>>> run(answer())
42
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["get_loop", "run"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _reset_after_fork() -> None:
    global _loop, _thread, _lock
    _loop = None
    _thread = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def get_loop() -> asyncio.AbstractEventLoop:
    """Return rasteret's event loop, starting its thread on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="rasteret-io", daemon=True)
            thread.start()
            _loop, _thread = loop, thread
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on rasteret's loop and return its result.

    Calling this from rasteret's own loop thread would deadlock, so that raises instead.
    """
    loop = get_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("rasteret._sync.run() called from rasteret's own event loop")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
