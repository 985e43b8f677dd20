"""One bound on requests in flight per event loop, shared by every fetch on that loop.

Every ranged GET rasteret issues takes a slot from the loop's :class:`RequestLimiter` first,
so concurrent reads, header enrichment and user code calling the async API at the same time
share one budget of connections. Each caller brings its own ceiling (its ``max_concurrent``):
it waits until fewer than that many requests are in flight overall. Waiters are served in
arrival order, so nobody starves.

>>> import asyncio
>>> async def demo() -> int:
...     limiter = get_limiter()
...     async with limiter.slot(2):
...         return limiter.in_flight
>>> asyncio.run(demo())
1
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["RequestLimiter", "get_limiter"]


class RequestLimiter:
    """A counter of requests in flight with per-caller ceilings and FIFO waiting."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._peak = 0
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()

    @property
    def in_flight(self) -> int:
        """Requests holding a slot right now."""
        return self._in_flight

    @property
    def peak(self) -> int:
        """Most requests in flight at once since creation or :meth:`reset_peak`."""
        return self._peak

    def reset_peak(self) -> None:
        """Start measuring :attr:`peak` afresh."""
        self._peak = self._in_flight

    async def acquire(self, limit: int) -> None:
        """Wait until fewer than ``limit`` requests are in flight, then take a slot."""
        if limit < 1:
            raise ValueError(f"expected a concurrency limit >= 1, got {limit}")
        if not self._waiters and self._in_flight < limit:
            self._take()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, limit))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted and cancelled in the same tick: hand the slot back
            else:
                self._wake()  # a small-limit waiter leaving may unblock the ones behind it
            raise

    def release(self) -> None:
        """Give a slot back and wake the waiters that now fit."""
        self._in_flight -= 1
        self._wake()

    @asynccontextmanager
    async def slot(self, limit: int) -> AsyncIterator[None]:
        """``async with limiter.slot(limit):`` holds one slot for the block."""
        await self.acquire(limit)
        try:
            yield
        finally:
            self.release()

    def _take(self) -> None:
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)

    def _wake(self) -> None:
        while self._waiters:
            future, limit = self._waiters[0]
            if future.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            if self._in_flight >= limit:
                return
            self._waiters.popleft()
            self._take()
            future.set_result(None)


_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RequestLimiter] = (
    weakref.WeakKeyDictionary()
)


def get_limiter() -> RequestLimiter:
    """The limiter of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = RequestLimiter()
    return limiter


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_limiters.clear)
