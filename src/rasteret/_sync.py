"""The only sync -> async bridge in rasteret.

All I/O in rasteret is ``async def``. Synchronous entry points run their coroutine on one
dedicated event-loop thread owned by this module, so they work the same in scripts, in
Jupyter (where a loop is already running in the main thread) and in DataLoader workers (a
forked child gets a fresh loop on first use).

It also lets the process exit cleanly after reads. obstore completes each request from one
of its tokio worker threads, which call into Python (``loop.call_soon_threadsafe``) and may
still be inside that call, or about to make it, when the caller already has its result. A
thread Python did not create that needs the GIL while the interpreter finalizes kills the
whole process with SIGABRT (Python ends such threads with ``pthread_exit``, which cannot
unwind Rust frames). So at exit, before finalization, :func:`_drain_at_exit` cancels what
still runs on rasteret's loop and waits, bounded, until those tasks are over and no such
thread can still need the GIL: every future registered with :func:`foreign` settled, no
thread inside the loop's ``call_soon_threadsafe``, and a short grace after the last
cancellation (a cancelled obstore request takes the GIL once more to see it was cancelled).

>>> import asyncio
>>> async def answer() -> int:
...     await asyncio.sleep(0)
...     return 42
>>> run(answer())
42
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import Context
from typing import Any, TypeVar, TypeVarTuple

__all__ = ["foreign", "get_loop", "run"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

EXIT_WAIT_S = 5.0
"""At most this long at exit for requests still in flight to settle (then exit regardless)."""
CANCEL_GRACE_S = 0.1
"""At exit, wait this long after the last cancelled foreign future before finalizing."""
_SETTLE_S = 0.002
"""The exit wait's polling step, and the quiet time it wants to see twice before finalizing."""


class _Loop(asyncio.SelectorEventLoop):
    """rasteret's event loop: it counts the threads inside :meth:`call_soon_threadsafe`."""

    def __init__(self) -> None:
        super().__init__()
        self.handing_in = 0
        """Threads inside :meth:`call_soon_threadsafe` right now."""
        self._count_lock = threading.Lock()

    def call_soon_threadsafe(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        with self._count_lock:
            self.handing_in += 1
        try:
            return super().call_soon_threadsafe(callback, *args, context=context)
        finally:
            with self._count_lock:
                self.handing_in -= 1


_lock = threading.Lock()
_loop: _Loop | None = None
_thread: threading.Thread | None = None
_foreign: set[asyncio.Future[Any]] = set()
_last_cancel = 0.0


def _reset_after_fork() -> None:
    global _loop, _thread, _lock, _foreign, _last_cancel
    _loop = None
    _thread = None
    _lock = threading.Lock()
    _foreign = set()  # the parent's futures: nothing here completes them
    _last_cancel = 0.0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def get_loop() -> asyncio.AbstractEventLoop:
    """Return rasteret's event loop, starting its thread on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = _Loop()
            thread = threading.Thread(target=loop.run_forever, name="rasteret-io", daemon=True)
            thread.start()
            _loop, _thread = loop, thread
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on rasteret's loop and return its result.

    An interruption of the wait (Ctrl-C) cancels the coroutine too. Calling this from
    rasteret's own loop thread would deadlock, so that raises instead.
    """
    loop = get_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("rasteret._sync.run() called from rasteret's own event loop")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # a no-op once it finished; stops it after KeyboardInterrupt
        raise


def foreign(awaitable: Awaitable[T]) -> asyncio.Future[T]:
    """Register an awaitable that another runtime's threads complete (an obstore request), so
    that the process waits for them at exit instead of aborting; returns it as a future.

    Call it on the loop that will await the result.

    >>> async def request() -> int:
    ...     return 7
    >>> async def main() -> int:
    ...     return await foreign(request())
    >>> run(main())
    7
    """
    future = asyncio.ensure_future(awaitable)
    _foreign.add(future)
    future.add_done_callback(_settled)
    return future


def _settled(future: asyncio.Future[Any]) -> None:
    global _last_cancel
    _foreign.discard(future)
    if future.cancelled():
        _last_cancel = time.monotonic()


def _cancel_all(over: threading.Event) -> None:
    """Cancel every task of the running loop; set ``over`` once they are all done."""
    tasks = asyncio.all_tasks()
    left = len(tasks)
    if not left:
        over.set()
        return

    def one_done(_: asyncio.Task[Any]) -> None:
        nonlocal left
        left -= 1
        if not left:
            over.set()

    for task in tasks:
        task.cancel()
        task.add_done_callback(one_done)


def _quiet(loop: _Loop) -> bool:
    """No foreign thread can still need the GIL for what rasteret asked of it."""
    if _foreign or loop.handing_in:
        return False
    return time.monotonic() - _last_cancel >= CANCEL_GRACE_S


def _drain_at_exit(timeout: float = EXIT_WAIT_S) -> bool:
    """Cancel what still runs on rasteret's loop, then wait (releasing the GIL) until those
    tasks are done and :func:`_quiet` holds twice in a row, at most ``timeout`` seconds.
    True when it did."""
    loop, thread = _loop, _thread
    if loop is None or thread is None or not thread.is_alive():
        return True
    over = threading.Event()
    try:
        loop.call_soon_threadsafe(_cancel_all, over)
    except RuntimeError:  # closed
        return True
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline:
        calm = calm + 1 if over.is_set() and _quiet(loop) else 0
        if calm >= 2:
            return True
        time.sleep(_SETTLE_S)
    return False


atexit.register(_drain_at_exit)  # returns at once in a process that never started the loop
