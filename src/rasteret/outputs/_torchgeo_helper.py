"""Reads for forked processes: a fresh interpreter does them when the fork cannot.

obstore runs its requests on a tokio runtime whose worker threads are started on first use
and are not carried over by ``fork()``: a process forked after its parent made any obstore
request (a collection build, a read) waits forever on its own. PyTorch's ``DataLoader``
forks its workers on Linux. So a TorchGeo dataset whose process inherited a used runtime
hands each query to a helper: ``python -m rasteret.outputs._torchgeo_helper``, started on
first need (one per process, with the same environment), which holds the dataset's records
and answers ``read_jobs`` calls over pickled pipes. Processes that did not inherit a used
runtime (the main process, ``spawn``/``forkserver`` workers, forks of a process that never
read) read in-process as usual.

"Used" is known from rasteret's own event loop (started by every rasteret read or build):
a parent whose loop had started when it forked.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
from rasterio.enums import Resampling

from rasteret import _sync
from rasteret.errors import ReadError
from rasteret.outputs._torchgeo_merge import Job, read_jobs, source_grid
from rasteret.outputs._torchgeo_window import SourceGrid
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef

__all__ = ["helper_read", "inherited_runtime", "main"]

_inherited = False
"""True in a process forked (directly or not) from one that had made rasteret requests."""
_forking_inherits = False


def _before_fork() -> None:
    global _forking_inherits
    _forking_inherits = _inherited or _sync._loop is not None  # the loop starts with any read


def _after_fork_in_child() -> None:
    global _inherited, _client
    _inherited = _forking_inherits
    _client = None  # the parent's helper pipes are the parent's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def inherited_runtime() -> bool:
    """Whether this process was forked after rasteret made requests in an ancestor."""
    return _inherited


class _Client:
    """One helper process and the datasets it holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rasteret.outputs._torchgeo_helper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        atexit.register(self.close)

    def call(self, token: str, init: tuple[Any, ...], message: tuple[Any, ...]) -> Any:
        with self._lock:
            if token not in self._known:
                self._exchange(("init", token, *init))
                self._known.add(token)
            return self._exchange(message)

    def _exchange(self, message: tuple[Any, ...]) -> Any:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None
        assert stdout is not None
        try:
            pickle.dump(message, stdin, protocol=pickle.HIGHEST_PROTOCOL)
            stdin.flush()
            status, payload = pickle.load(stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise ReadError(
                f"expected an answer from rasteret's read helper (pid {self._proc.pid}), "
                f"got {type(exc).__name__}: {exc}; exit code {self._proc.poll()}"
            ) from exc
        if status == "error":
            raise payload
        return payload

    def close(self) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()


_client: _Client | None = None
_client_lock = threading.Lock()


def helper_read(
    token: str,
    records: Sequence[RecordRef],
    options: ReadOptions,
    names: Sequence[str],
    jobs: Sequence[Job],
    kernel: Resampling,
) -> list[np.ndarray]:
    """:func:`~rasteret.outputs._torchgeo_merge.read_jobs` in this process's helper.

    ``token`` names the dataset: its records and options are sent once per helper.
    """
    global _client
    with _client_lock:
        if _client is None:
            _client = _Client()
        client = _client
    plain = [([list(f) for f in frames], grid) for frames, grid in jobs]
    message = ("read", token, tuple(names), plain, int(kernel))
    arrays: list[np.ndarray] = client.call(token, (tuple(records), options), message)
    return arrays


_Held = tuple[tuple[RecordRef, ...], ReadOptions, dict[tuple[int, str, str], SourceGrid]]
"""A dataset in the helper: its records, read options and source grids computed so far."""


def _read(
    held: _Held, names: Sequence[str], jobs: list[Job], kernel: Resampling
) -> list[np.ndarray]:
    records, options, sources = held

    def source(ri: int, band: str) -> SourceGrid:
        crs = jobs[0][1].crs
        key = (ri, band, crs)
        if key not in sources:
            meta = records[ri].bands[band]
            assert meta is not None
            sources[key] = source_grid(meta, crs)
        return sources[key]

    return read_jobs(records, names, jobs, kernel, options, source)


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    datasets: dict[str, _Held] = {}
    while True:
        try:
            message = pickle.load(stdin)
        except EOFError:
            return
        try:
            if message[0] == "init":
                _, token, records, options = message
                datasets[token] = (records, options, {})
                answer: tuple[str, Any] = ("ok", None)
            else:
                _, token, names, jobs, kernel = message
                answer = ("ok", _read(datasets[token], names, jobs, Resampling(kernel)))
        except Exception as exc:
            answer = ("error", exc)
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that does not pickle: keep its message
            data = pickle.dumps(("error", ReadError(f"{answer[1]!r}")))
        stdout.write(data)
        stdout.flush()


def main() -> None:
    """Serve reads on stdin/stdout until stdin closes (stdout is kept for the protocol)."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # any print goes to stderr, never into the protocol stream
    _serve(stdin, stdout)


if __name__ == "__main__":
    main()
