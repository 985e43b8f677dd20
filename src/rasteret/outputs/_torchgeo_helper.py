"""Reads for forked ``DataLoader`` workers: the process that forked them does them.

obstore's runtime does not survive ``fork()`` (:mod:`rasteret.io._fork`): a process forked
after its parent sent requests cannot send any. PyTorch's ``DataLoader`` forks its workers
(on Linux before Python 3.14), usually from a process that has already read: it built the
collection, or showed a sample. So a TorchGeo dataset in such a worker hands its reads to a
*read server*:

* When a process that holds a :class:`~rasteret.outputs.torchgeo.RasteretGeoDataset` and has
  sent requests forks, it first starts a server: a daemon thread listening on a local
  socket (``multiprocessing.connection``, authenticated with a random key), once per
  process. Forked descendants inherit its address and key. A worker's batch goes there as a
  ``read_jobs`` call (the queries' plans: record positions and output grids) and comes back
  as pixel arrays; selection, tensors, labels and transforms stay in the worker.
  The server reads on the parent's own event loop, decode pool and decoded-tile cache:
  workers cost no start-up, share one cache, and the batches of several workers overlap.
  Before each such fork the parent gives the memory it keeps for reuse back to the system:
  shared with the children, every page of it would be copied when a read reused it. Its
  decoded-tile memory is private instead (children do not share it, see
  :mod:`rasteret.read.buffers`), so it is kept and reused after the fork.
* A forked process that has no server to go to (its dataset was made or unpickled after the
  fork) starts a helper process of its own instead, ``python -m
  rasteret.outputs._torchgeo_helper``: a fresh interpreter running the same server.

Processes that did not inherit a used runtime (the main process, ``spawn``/``forkserver``
workers, forks of a process that never read) read in-process as usual.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import numpy as np
from rasterio.enums import Resampling

from rasteret.errors import ReadError
from rasteret.io._fork import at_fork, inherited_runtime, runtime_used, trim_heap
from rasteret.outputs._torchgeo_merge import Job, SourceGrids, read_jobs
from rasteret.outputs._torchgeo_window import SourceGrid
from rasteret.read.buffers import decoded_buffers, tile_buffers
from rasteret.read.locate import point_buffers
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef

__all__ = ["helper_read", "main", "register", "server_address", "stop_server"]

_AUTHKEY_BYTES = 32


class _Held:
    """A dataset as the server reads it: records, options and the source grids so far."""

    def __init__(
        self,
        records: Sequence[RecordRef],
        options: ReadOptions,
        source: Callable[[int, str, str], SourceGrid] | None = None,
    ) -> None:
        self.records = tuple(records)
        self.options = options
        self.source = source or SourceGrids(self.records)

    def read(self, names: Sequence[str], jobs: list[Job], kernel: Resampling) -> list[np.ndarray]:
        crs = jobs[0][1].crs if jobs else ""
        return read_jobs(
            self.records, names, jobs, kernel, self.options,
            lambda ri, band: self.source(ri, band, crs),
        )  # fmt: skip


class _Server:
    """Answers ``read_jobs`` calls of forked processes: one thread per connection."""

    def __init__(self, find: Callable[[str], _Held | None], authkey: bytes | None = None) -> None:
        self.authkey = authkey or os.urandom(_AUTHKEY_BYTES)
        self.listener = Listener(authkey=self.authkey)
        self.address = self.listener.address
        self._find = find
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Accept connections on a daemon thread."""
        threading.Thread(target=self._accept, name="rasteret-read-server", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn = self.listener.accept()
            except OSError:  # closed
                return
            except Exception:  # a failed handshake (wrong key): not one of ours
                continue
            threading.Thread(
                target=self._serve, args=(conn,), name="rasteret-read-conn", daemon=True
            ).start()

    def _serve(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    return
                try:
                    answer: tuple[str, Any] = ("ok", self._answer(message))
                except _NeedInit:
                    answer = ("init", None)
                except Exception as exc:
                    answer = ("error", _bare(exc))
                try:
                    conn.send(answer)
                except (EOFError, OSError):
                    return
                except Exception as failure:  # an answer that does not pickle
                    conn.send(("error", _unsendable(answer, failure)))

    def _answer(self, message: tuple[Any, ...]) -> Any:
        kind, token = message[0], message[1]
        if kind == "init":
            _, _, records, options = message
            with self._lock:
                self._held[token] = _Held(records, options)
            return None
        _, _, names, jobs, kernel = message
        with self._lock:
            held = self._held.get(token)
        if held is None:
            held = self._find(token)
            if held is None:
                raise _NeedInit
            with self._lock:
                self._held[token] = held
        return held.read(names, jobs, Resampling(kernel))


def _bare(exc: Exception) -> Exception:
    """``exc`` rebuilt from its type and arguments alone, for sending to a worker.

    The worker raises it again (a missing file is still a ``FileNotFoundError`` there). Its
    traceback and chained exceptions stay here: where a library registered picklers that
    keep them (tblib, which ``distributed`` installs for every exception class), a deep
    traceback of the server's read would not even pickle.

    >>> from rasteret.errors import ObjectNotFoundError
    >>> try:
    ...     raise ObjectNotFoundError("expected an object at x.tif, got none (404)")
    ... except ObjectNotFoundError as exc:
    ...     sent = _bare(exc)
    >>> type(sent).__name__, str(sent), sent.__traceback__
    ('ObjectNotFoundError', 'expected an object at x.tif, got none (404)', None)
    """
    try:
        return type(exc)(*exc.args)
    except Exception:  # an exception type with another constructor: keep its story
        return ReadError(f"{type(exc).__name__}: {exc}")


def _unsendable(answer: tuple[str, Any], failure: Exception) -> ReadError:
    """What to send instead of an answer that did not pickle."""
    status, payload = answer
    if status == "error":
        return ReadError(f"{payload!r} (the read server could not send it: {failure!r})")
    return ReadError(
        f"expected the read server to send the read's arrays, got {type(failure).__name__}: "
        f"{failure}"
    )


class _NeedInit(Exception):
    """The server does not hold the dataset yet: the client sends its records."""


class _Client:
    """This process's connection to a read server (and the helper process, if its own)."""

    def __init__(self, address: Any, authkey: bytes, proc: subprocess.Popen[bytes] | None):
        self._conn = Client(address, authkey=authkey)
        self._proc = proc
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def call(self, token: str, init: tuple[Any, ...], message: tuple[Any, ...]) -> Any:
        with self._lock:
            status, payload = self._exchange(message)
            if status == "init":
                self._exchange(("init", token, *init))
                status, payload = self._exchange(message)
        if status == "error":
            raise payload
        return payload

    def _exchange(self, message: tuple[Any, ...]) -> tuple[str, Any]:
        try:
            self._conn.send(message)
            answer: tuple[str, Any] = self._conn.recv()
        except (OSError, EOFError) as exc:
            where = f"helper process {self._proc.pid}" if self._proc else "the forking process"
            raise ReadError(
                f"expected an answer from rasteret's read server in {where}, got "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return answer

    def close(self) -> None:
        if os.getpid() != self._pid:
            return
        self._conn.close()
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the helper exits when its stdin closes
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()


# -- per-process state ----------------------------------------------------------------------

_datasets: weakref.WeakSet[Any] = weakref.WeakSet()
"""Live datasets of this process: a fork starts the server only when there are some."""
_server: _Server | None = None
"""The server this process runs for its forked descendants."""
_target: tuple[Any, bytes] | None = None
"""Address and key of the server this (forked) process's reads go to."""
_client: _Client | None = None
_lock = threading.Lock()
_stop_at_exit: list[Any] = []


def register(dataset: Any) -> None:
    """Note a live dataset (with ``_token``, ``records``, ``options`` and ``_source``)."""
    _datasets.add(dataset)


def server_address() -> Any:
    """The address of the read server this process runs, or None."""
    return None if _server is None else _server.address


def stop_server() -> None:
    """Stop this process's read server (a later fork starts a new one)."""
    global _server
    with _lock:
        if _server is not None:
            _server.close()
            _server = None


def _find_live(token: str) -> _Held | None:
    for dataset in list(_datasets):
        if dataset._token == token:
            return _Held(dataset.records, dataset.options, dataset._source)
    return None


def _before_fork() -> None:
    global _server
    if not _datasets or not runtime_used():
        return
    with contextlib.suppress(Exception):  # never break the fork: reads only get slower
        _release_free_memory()
    if _server is not None:
        return
    try:
        server = _Server(_find_live)
        server.start()
    except Exception:  # never break the fork: the children start helpers of their own
        return
    _server = server
    if not _stop_at_exit:
        _stop_at_exit.append(atexit.register(stop_server))  # close the socket at exit


def _release_free_memory() -> None:
    """Before a fork of a process that reads for its children: free what it keeps for reuse.

    Its reads go on while the children live, and a page they share is copied on the
    process's first write to it. Tile memory kept for reuse (the buffer pool) and the C
    heap's free pages would all be shared, and reused: they are given back to the system
    instead, so reads after the fork write fresh pages (:func:`rasteret.io._fork.trim_heap`).
    Point reads keep memory of their own (:func:`rasteret.read.locate.point_buffers`): freed too.
    Decoded-tile memory is kept where it is private (never shared with children, see
    :mod:`rasteret.read.buffers`): reads after the fork reuse it without a page fault.
    """
    tile_buffers().clear()
    point_buffers().clear()
    decoded_buffers().clear_shared()
    trim_heap()


def _after_fork_in_child() -> None:
    global _server, _target, _client, _lock
    _lock = threading.Lock()
    if _server is not None:
        _target = (_server.address, _server.authkey)
    _server = None  # its threads stay in the parent
    _client = None  # the parent's connection is the parent's


at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _connect() -> _Client:
    if _target is not None:
        try:
            return _Client(_target[0], _target[1], None)
        except (OSError, EOFError):
            pass  # the server is gone: a helper of our own
    authkey = os.urandom(_AUTHKEY_BYTES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rasteret.outputs._torchgeo_helper"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(authkey.hex().encode() + b"\n")
    proc.stdin.flush()
    line = proc.stdout.readline().decode().strip()
    if not line:
        raise ReadError(
            "expected rasteret's read helper process to start and print its address, got "
            f"nothing (exit code {proc.poll()})"
        )
    client = _Client(json.loads(line), authkey, proc)
    atexit.register(client.close)
    return client


def helper_read(
    token: str,
    records: Sequence[RecordRef],
    options: ReadOptions,
    names: Sequence[str],
    jobs: Sequence[Job],
    kernel: Resampling,
) -> list[np.ndarray]:
    """:func:`~rasteret.outputs._torchgeo_merge.read_jobs` in the read server.

    ``token`` names the dataset; its records and options are sent only when the server
    does not hold them (a server in the forking process finds its live datasets itself).
    """
    global _client
    if not inherited_runtime():
        raise ReadError("helper_read is for forked processes that cannot send requests")
    with _lock:
        if _client is None:
            _client = _connect()
        client = _client
    plain = [([list(f) for f in frames], grid) for frames, grid in jobs]
    message = ("read", token, tuple(names), plain, int(kernel))
    arrays: list[np.ndarray] = client.call(token, (tuple(records), options), message)
    return arrays


def main() -> None:
    """Serve reads until stdin closes: read the key from stdin, print the address."""
    authkey = bytes.fromhex(sys.stdin.buffer.readline().decode().strip())
    server = _Server(lambda token: None, authkey)
    server.start()
    out = sys.stdout
    sys.stdout = sys.stderr  # any print goes to stderr
    out.write(json.dumps(server.address) + "\n")
    out.flush()
    sys.stdin.buffer.read()  # until the client closes it (or dies)
    server.close()


if __name__ == "__main__":
    main()
