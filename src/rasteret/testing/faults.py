"""Seeded fault injection: what object stores do on a bad day, reproducibly.

Object stores throttle (503 SlowDown, 429), fail (500), drop connections, cut bodies off
half-way, stall, and now and then hand back fewer bytes than the range asked for. A
:class:`FaultPlan` says how often and which of these happen; a :class:`FaultInjector` applies
it: request by request it decides, from the seed, the request's key (path and range) and how
many times that key was asked for before, whether this attempt fails and how. The decision
does not depend on timing or on the order of concurrent requests, so a seed replays the same
faults run after run, and a retry of a faulted request gets a fresh, independent draw.

Two places use it: :class:`FaultyReader` wraps any
:class:`~rasteret.io.stores.RangeReader` (pass it as ``backend=``), and
:class:`~rasteret.testing.servers.RangeHTTPServer` injects the same faults on the wire
(:meth:`~rasteret.testing.servers.RangeHTTPServer.inject_faults`).

>>> import pathlib, tempfile
>>> from rasteret._sync import run
>>> from rasteret.io.fetch import FetchOptions, fetch_ranges
>>> from rasteret.io.ranges import ByteRange
>>> from rasteret.testing.stores import URLReader
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
>>> _ = path.write_bytes(bytes(range(256)) * 64)
>>> reader = FaultyReader(URLReader(), FaultPlan(rate=0.5, seed=7, stall_seconds=10))
>>> ranges = [ByteRange(i * 1000, i * 1000 + 10) for i in range(16)]
>>> fast = FetchOptions(max_gap=0, backoff_base=0.001, retries=10, request_timeout=0.1)
>>> views = run(fetch_ranges(str(path), ranges, backend=reader, options=fast))
>>> [bytes(v) for v in views] == [path.read_bytes()[r.start:r.end] for r in ranges]
True
>>> reader.injector.count() > 0  # some requests failed and were retried
True
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from rasteret.io.stores import Prefix, read_prefix

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "FaultyReader",
    "InjectedFault",
]

FaultKind = Literal["slowdown", "server_error", "throttle", "reset", "cut", "stall", "short"]
"""``slowdown`` 503 SlowDown, ``server_error`` 500, ``throttle`` 429, ``reset`` a connection
reset before any byte, ``cut`` a body that stops half-way (the full length was promised),
``stall`` a response that stops sending for :attr:`FaultPlan.stall_seconds`, ``short`` a
complete-looking response carrying only half of the range."""

FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
"""Every fault kind, in a fixed order."""

STATUS: dict[str, tuple[int, str]] = {
    "slowdown": (503, "SlowDown"),
    "server_error": (500, "InternalError"),
    "throttle": (429, "TooManyRequests"),
}
"""HTTP status and S3 error code of the status-code faults."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Which requests fail, and how.

    Args:
        rate: Probability that one attempt of a request fails (0 to 1).
        kinds: The kinds to draw from (uniformly).
        seed: Seed of every decision.
        stall_seconds: How long a ``stall`` lasts.
        first: The first ``first`` attempts of every matching request fail whatever ``rate``
            says (``first=1`` with ``retries=0`` makes every request fail).
        match: Only requests whose path contains one of these substrings fail (None: all).

    >>> plan = FaultPlan(rate=0.0, first=1, kinds=("reset",))
    >>> plan.decide("a.tif|0|10", 0), plan.decide("a.tif|0|10", 1)
    ('reset', None)
    """

    rate: float = 0.05
    kinds: tuple[FaultKind, ...] = FAULT_KINDS
    seed: int = 0
    stall_seconds: float = 30.0
    first: int = 0
    match: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"expected a fault rate in [0, 1], got {self.rate}")
        unknown = [k for k in self.kinds if k not in FAULT_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"expected fault kinds among {FAULT_KINDS}, got {self.kinds!r}")
        if self.stall_seconds < 0 or self.first < 0:
            raise ValueError(
                f"expected stall_seconds >= 0 and first >= 0, got {self.stall_seconds}, "
                f"{self.first}"
            )

    def decide(self, key: str, attempt: int) -> FaultKind | None:
        """The fault of attempt number ``attempt`` (0-based) of request ``key``, or None."""
        if self.match is not None and not any(m in key for m in self.match):
            return None
        digest = hashlib.blake2b(f"{self.seed}|{key}|{attempt}".encode(), digest_size=16)
        draw = int.from_bytes(digest.digest()[:8], "big") / 2.0**64
        pick = int.from_bytes(digest.digest()[8:], "big")
        if attempt < self.first or draw < self.rate:
            return self.kinds[pick % len(self.kinds)]
        return None


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault."""

    kind: FaultKind
    key: str
    """The request: ``path|start|end`` (server: ``url_path|Range header``)."""
    attempt: int
    """Which attempt of that request it was (0 is the first)."""


class FaultInjector:
    """A :class:`FaultPlan` plus the per-request attempt counters and a log of faults.

    Thread-safe: the HTTP server calls it from its handler threads.
    """

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._attempts: Counter[str] = Counter()
        self._faults: list[Fault] = []

    def next(self, key: str) -> FaultKind | None:
        """Count one more attempt of ``key``; its fault (logged), or None."""
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
            kind = self.plan.decide(key, attempt)
            if kind is not None:
                self._faults.append(Fault(kind, key, attempt))
            return kind

    @property
    def faults(self) -> list[Fault]:
        """Every fault injected so far, in order."""
        with self._lock:
            return list(self._faults)

    @property
    def attempts(self) -> int:
        """Requests seen so far (faulted or not)."""
        with self._lock:
            return sum(self._attempts.values())

    def count(self, kind: FaultKind | None = None) -> int:
        """Faults injected so far (of one kind, or all)."""
        return sum(1 for f in self.faults if kind is None or f.kind == kind)

    def kinds(self) -> Counter[str]:
        """Faults injected so far, per kind."""
        return Counter(f.kind for f in self.faults)


class InjectedFault(OSError):
    """The error a :class:`FaultyReader` raises; the message reads like the store's own.

    Status-code faults carry ``status code: NNN`` in the message, as obstore's errors do, so
    they are classified exactly as a real 503/500/429.
    """

    def __init__(self, kind: FaultKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _raise_for(kind: FaultKind, nbytes: int) -> None:
    if kind in STATUS:
        status, code = STATUS[kind]
        raise InjectedFault(kind, f"injected {code}: status code: {status}, please retry")
    if kind == "reset":
        raise InjectedFault(kind, "injected: connection reset by peer before the response")
    if kind == "cut":
        raise InjectedFault(
            kind, f"injected: connection closed after {nbytes // 2} of {nbytes} body bytes"
        )


class FaultyReader:
    """Wraps a reader and makes some of its requests fail, as a :class:`FaultPlan` says.

    Every ``get_range``, every range of ``get_ranges`` and every ``get_prefix`` is one request.
    Status faults, resets and cuts raise :class:`InjectedFault`; ``stall`` sleeps
    ``plan.stall_seconds`` (asyncio) before answering; ``short`` returns the first half of
    the bytes (a ``get_prefix`` still reports the full object size, as a store would).
    ``head`` is passed through untouched. A request is keyed by the object's file name and
    its range, so a plan makes the same decisions wherever the files are (a test's temporary
    directory changes from run to run).

    Args:
        inner: Any :class:`~rasteret.io.stores.RangeReader`.
        plan: What to inject (default: 5 % of requests, every kind, seed 0).
    """

    def __init__(self, inner: Any, plan: FaultPlan | None = None) -> None:
        self.inner = inner
        self.injector = FaultInjector(plan or FaultPlan())

    @property
    def faults(self) -> list[Fault]:
        """Every fault injected so far."""
        return self.injector.faults

    async def _before(self, key: str, nbytes: int) -> FaultKind | None:
        kind = self.injector.next(key)
        if kind == "stall":
            await asyncio.sleep(self.injector.plan.stall_seconds)
        elif kind is not None:
            _raise_for(kind, nbytes)
        return kind

    async def get_range(self, path: str, start: int, end: int) -> Buffer:
        """Bytes ``[start, end)`` of ``path``, unless this attempt is faulted."""
        kind = await self._before(f"{_name(path)}|{start}|{end}", end - start)
        data = await self.inner.get_range(path, start, end)
        return _halve(data) if kind == "short" else data

    async def get_ranges(
        self, path: str, starts: Sequence[int], ends: Sequence[int]
    ) -> Sequence[Buffer]:
        """Each range as :meth:`get_range` would return it (the first fault raises)."""
        return [await self.get_range(path, s, e) for s, e in zip(starts, ends, strict=True)]

    async def get_prefix(self, path: str, length: int) -> Prefix:
        """The first ``length`` bytes with size and ETag, unless this attempt is faulted."""
        kind = await self._before(f"{_name(path)}|prefix|{length}", length)
        prefix = await read_prefix(self.inner, path, length)
        if kind == "short":
            return Prefix(_halve(prefix.data), prefix.object_size, prefix.etag)
        return prefix

    async def head(self, path: str) -> Prefix:
        """Passed through (raises AttributeError when the inner reader cannot HEAD)."""
        prefix: Prefix = await self.inner.head(path)
        return prefix


def _halve(data: Any) -> bytes:
    view = memoryview(data).cast("B")
    return bytes(view[: view.nbytes // 2])


def _name(path: str) -> str:
    """The last component of a path or URL: what :class:`FaultyReader` keys requests by."""
    return path.rstrip("/").rsplit("/", 1)[-1]
