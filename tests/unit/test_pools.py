"""``_pools.run_on``: a pool job awaited with one call back into the loop."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from rasteret._pools import run_on


def test_result_and_the_thread_it_ran_on() -> None:
    with ThreadPoolExecutor(1, thread_name_prefix="pool-test") as pool:

        def where(value: int) -> tuple[int, str]:
            return value * 2, threading.current_thread().name

        value, thread = asyncio.run(run_on(pool, where, 21))
    assert value == 42
    assert thread.startswith("pool-test")


def test_an_error_of_the_job_is_raised_by_the_await() -> None:
    def fail() -> None:
        raise ValueError("bad tile")

    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="bad tile"):
        asyncio.run(run_on(pool, fail))


def test_started_gets_the_pools_future() -> None:
    seen: list[Future[int]] = []
    with ThreadPoolExecutor(1) as pool:
        assert asyncio.run(run_on(pool, sum, [1, 2], started=seen.append)) == 3
    assert len(seen) == 1
    assert seen[0].result() == 3


def test_a_cancelled_await_never_starts_a_queued_job() -> None:
    """The pool's one thread is busy, so the second job waits in its queue; cancelling its
    await cancels it there (as ``run_in_executor`` does)."""
    gate = threading.Event()
    ran: list[str] = []
    jobs: list[Future[None]] = []

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            busy = asyncio.ensure_future(run_on(pool, gate.wait))
            queued = asyncio.ensure_future(run_on(pool, ran.append, "late", started=jobs.append))
            await asyncio.sleep(0.01)
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            gate.set()
            await busy

    asyncio.run(main())
    assert ran == []
    assert jobs[0].cancelled()


def test_many_jobs_each_resolve_their_own_await() -> None:
    async def main() -> list[int]:
        with ThreadPoolExecutor(2) as pool:
            return list(await asyncio.gather(*(run_on(pool, abs, -i) for i in range(200))))

    assert asyncio.run(main()) == list(range(200))
