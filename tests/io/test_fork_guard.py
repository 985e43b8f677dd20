"""The fork guard: a process forked after its parent sent obstore requests gets a clear error
instead of a request that waits forever; a fork made before any request reads as usual.

Each case runs in a fresh interpreter (the test process itself has long used obstore), which
forks on purpose. The fork of a multi-threaded process warns on Python >= 3.12
(DeprecationWarning); the scripts say explicitly that it is expected, so nothing here relies on
the warning being silent.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_PRELUDE = """
import os, sys, warnings
warnings.filterwarnings(
    "ignore", message=r".*use of fork\\(\\) may lead to deadlocks", category=DeprecationWarning
)
from rasteret._sync import run
from rasteret.io import _fork
from rasteret.io.fetch import fetch_ranges
from rasteret.io.ranges import ByteRange

PATH = sys.argv[1]


def read():
    return bytes(run(fetch_ranges(PATH, [ByteRange(2, 6)]))[0])


def in_child(fn):
    # Run fn in a forked child; return what it printed (its exit code is 0 unless it hung).
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            text = "ok " + repr(fn())
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
        os.write(w, text.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    return text
"""


def _run(script: str, path: Path) -> str:
    code = _PRELUDE + textwrap.dedent(script)
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,  # a hang is a failure, not a wait
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_fork_after_requests_raises_instead_of_hanging(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(100)))
    out = _run(
        """
        assert not _fork.runtime_used()
        print("before", in_child(read))  # nothing sent yet: the child reads itself
        print("parent", read(), _fork.runtime_used(), _fork.inherited_runtime())
        print("after", in_child(read))
        print("grandchild", in_child(lambda: in_child(read)))
        print("flag", in_child(_fork.inherited_runtime))
        print("again", read())
        """,
        path,
    )
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["before"] == r"ok b'\x02\x03\x04\x05'"
    assert lines["parent"] == r"b'\x02\x03\x04\x05' True False"
    assert lines["after"].startswith("FetchError: could not fetch bytes [2, 6) of ")
    assert str(path) in lines["after"]
    assert "on the first attempt" in lines["after"]  # not retried: it cannot succeed
    assert "a fork of process" in lines["after"]
    assert "'spawn' or 'forkserver'" in lines["after"]
    assert "a fork of process" in lines["grandchild"]
    assert lines["flag"] == "ok True"
    assert lines["again"] == r"b'\x02\x03\x04\x05'"


def test_a_custom_backend_is_not_guarded(tmp_path: Path) -> None:
    """Only obstore's runtime is lost in a fork; a reader of the caller's own is not."""
    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(100)))
    out = _run(
        """
        class Memory:
            async def get_range(self, path, start, end):
                return bytes(range(100))[start:end]

            async def get_ranges(self, path, starts, ends):
                return [bytes(range(100))[s:e] for s, e in zip(starts, ends)]

        read()  # obstore used in the parent
        rng = [ByteRange(2, 6)]
        print("child", in_child(lambda: bytes(run(fetch_ranges(PATH, rng, backend=Memory()))[0])))
        """,
        path,
    )
    assert out.strip() == r"child ok b'\x02\x03\x04\x05'"
