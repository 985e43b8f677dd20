"""The loopback range server sends file bodies with ``sendfile``, byte-exact for every range
form and for the faults that send part of a body (cut, stall, short)."""

from __future__ import annotations

import http.client
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rasteret.testing.faults import FaultPlan
from rasteret.testing.servers import RangeHTTPServer

pytestmark = pytest.mark.integration

DATA = bytes((i * 7919 + i // 4096) % 256 for i in range(1_500_000))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RangeHTTPServer]:
    (tmp_path / "a.bin").write_bytes(DATA)
    with RangeHTTPServer(tmp_path) as server:
        yield server


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    """Counts of bytes asked of ``os.sendfile`` for this test's files (the server runs in
    this process; a server thread of an earlier test may still be finishing its answer)."""
    calls: list[int] = []
    real: Callable[..., int] = os.sendfile
    root = tmp_path.resolve()

    def ours(in_fd: int) -> bool:
        try:
            return Path(os.readlink(f"/proc/self/fd/{in_fd}")).is_relative_to(root)
        except OSError:  # no /proc: count every call
            return True

    def spy(out_fd: int, in_fd: int, offset: Any, count: int) -> int:
        if ours(in_fd):
            calls.append(count)
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", spy)
    return calls


def _get(server: RangeHTTPServer, range_header: str | None) -> tuple[int, bytes, dict[str, str]]:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/a.bin", headers={"Range": range_header} if range_header else {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.headers)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("range_header", "status", "expected"),
    [
        (None, 200, DATA),
        ("bytes=0-0", 206, DATA[:1]),
        ("bytes=1000-1099999", 206, DATA[1000:1_100_000]),
        ("bytes=1400000-", 206, DATA[1_400_000:]),
        ("bytes=-777", 206, DATA[-777:]),
        ("bytes=1499990-9999999", 206, DATA[1_499_990:]),
    ],
)
def test_ranges_are_sent_with_sendfile(
    served: RangeHTTPServer,
    sendfile_calls: list[int],
    range_header: str | None,
    status: int,
    expected: bytes,
) -> None:
    got_status, body, headers = _get(served, range_header)
    assert (got_status, body) == (status, expected)
    assert int(headers["Content-Length"]) == len(expected)
    assert sendfile_calls
    assert sum(sendfile_calls) >= len(expected)


def test_unsatisfiable_range_sends_no_body(
    served: RangeHTTPServer, sendfile_calls: list[int]
) -> None:
    status, body, headers = _get(served, "bytes=2000000-")
    assert (status, body, headers["Content-Range"]) == (416, b"", f"bytes */{len(DATA)}")
    assert sendfile_calls == []


def test_short_answer_is_the_first_half_of_the_range(served: RangeHTTPServer) -> None:
    served.inject_faults(FaultPlan(rate=0.0, first=1, kinds=("short",)))
    status, body, headers = _get(served, "bytes=100-200099")
    assert (status, body) == (206, DATA[100:100_100])
    assert headers["Content-Range"] == f"bytes 100-100099/{len(DATA)}"


def test_stalled_answer_completes_with_the_exact_bytes(served: RangeHTTPServer) -> None:
    served.inject_faults(FaultPlan(rate=0.0, first=1, kinds=("stall",), stall_seconds=0.05))
    assert _get(served, "bytes=5-300004")[:2] == (206, DATA[5:300_005])


def test_cut_answer_stops_after_half_the_body(served: RangeHTTPServer) -> None:
    served.inject_faults(FaultPlan(rate=0.0, first=1, kinds=("cut",)))
    host, port = served.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/a.bin", headers={"Range": "bytes=0-399999"})
        response = conn.getresponse()
        with pytest.raises((http.client.IncompleteRead, ConnectionError)) as info:
            response.read()
    finally:
        conn.close()
    if isinstance(info.value, http.client.IncompleteRead):
        assert info.value.partial == DATA[: len(info.value.partial)]
        assert len(info.value.partial) <= 200_000
