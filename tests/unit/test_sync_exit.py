"""The sync bridge at exit: the process waits for threads other runtimes use to hand results to
rasteret's loop, cancels what still runs there, and a Ctrl-C during ``run()`` cancels the read.

obstore completes requests from tokio threads that call ``loop.call_soon_threadsafe``; a thread
Python did not create that needs the GIL while the interpreter finalizes aborts the process
(SIGABRT, seen in ~2-9 % of exits of a script that had just read, on a loaded machine). Here a
Python thread plays that part with a slowed hand-in: a daemon Python thread is merely stopped
at finalization, so what it prints after its hand-in shows whether the exit waited for it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rasteret import _sync
from rasteret._sync import foreign, run

_LONG_READ = """
import asyncio, sys, threading
from rasteret._sync import run


async def long_read():
    try:
        await asyncio.sleep(60)
    finally:
        sys.stdout.write("cancelled\\n")  # one write: another thread may print at once
"""
"""A prelude: a read that runs until it is cancelled, and says so."""


def _script(code: str, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_exit_waits_for_a_thread_still_handing_a_result_in() -> None:
    done = _script(
        """
        import asyncio, sys, threading, time
        from rasteret._sync import foreign, get_loop, run

        loop = get_loop()
        slow = type(loop)._write_to_self

        def write_slowly(self):
            time.sleep(0.3)  # the hand-in is still running when the caller has its result
            slow(self)

        type(loop)._write_to_self = write_slowly

        async def request():
            future = loop.create_future()

            def other_runtime():
                loop.call_soon_threadsafe(future.set_result, 7)
                print("handed in", flush=True)

            threading.Thread(target=other_runtime, daemon=True).start()
            return await foreign(future)

        print("got", run(request()), flush=True)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["got 7", "handed in"]


def test_exit_cancels_what_still_runs_on_the_loop() -> None:
    done = _script(
        """
        import time

        threading.Thread(target=run, args=(long_read(),), daemon=True).start()
        time.sleep(0.2)
        print("exiting", flush=True)
        """,
        prelude=_LONG_READ,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["exiting", "cancelled"]


def test_ctrl_c_during_run_cancels_the_coroutine() -> None:
    done = _script(
        """
        import os, signal

        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            run(long_read())
        except KeyboardInterrupt:
            sys.stdout.write("interrupted\\n")
        """,
        prelude=_LONG_READ,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines) == ["cancelled", "interrupted"]


def test_a_script_that_read_through_obstore_exits_cleanly(tmp_path: Path) -> None:
    """The real case, a few times: read a range through obstore, print it, exit with 0."""
    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(100)))
    code = """
        import sys
        from rasteret._sync import run
        from rasteret.io.fetch import fetch_ranges
        from rasteret.io.ranges import ByteRange

        print(bytes(run(fetch_ranges(sys.argv[1], [ByteRange(2, 6)]))[0]))
        """
    for _ in range(4):
        done = _script(code, str(path))
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.strip() == r"b'\x02\x03\x04\x05'"


def test_foreign_futures_are_tracked_until_settled() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        kept = foreign(loop.create_future())
        dropped = foreign(loop.create_future())
        assert {kept, dropped} <= _sync._foreign
        kept.set_result(1)
        dropped.cancel()
        await asyncio.sleep(0)  # done callbacks run on the next turn
        assert not {kept, dropped} & _sync._foreign

    before = time.monotonic()
    run(main())
    assert _sync._last_cancel >= before  # a cancelled request is given a grace at exit
    assert not _sync._quiet(_sync.get_loop())  # within the grace
    assert run(_wrapped()) == 42  # coroutines are wrapped, results passed through


async def _wrapped() -> int:
    async def answer() -> int:
        return 42

    return await foreign(answer())


def test_quiet_needs_no_thread_handing_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sync, "_last_cancel", 0.0)
    loop = _sync.get_loop()
    assert isinstance(loop, _sync._Loop)
    assert _sync._quiet(loop)
    monkeypatch.setattr(loop, "handing_in", 1)
    assert not _sync._quiet(loop)
