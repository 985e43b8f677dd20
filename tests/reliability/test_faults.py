"""Every fault mode, alone, at the fetch level: through the wrapper reader and on the wire.

With retries, every faulted request is retried until it gives exactly the bytes asked for;
with ``retries=0`` the call raises a FetchError naming the URL, the range and the cause,
never a shorter result.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rasteret._sync import run
from rasteret.errors import FetchError, RasteretError
from rasteret.io.fetch import FetchOptions, fetch_prefix, fetch_ranges
from rasteret.io.ranges import ByteRange
from rasteret.io.stores import clear_store_cache
from rasteret.testing.faults import FAULT_KINDS, FaultKind, FaultPlan, FaultyReader
from rasteret.testing.servers import RangeHTTPServer
from rasteret.testing.stores import URLReader

DATA = bytes((i * 37 + i // 4096) % 256 for i in range(300_000))
RANGES = [ByteRange(1000, 51_000), ByteRange(100_000, 100_010), ByteRange(250_000, 299_999)]
FAST = FetchOptions(backoff_base=0.001, backoff_max=0.01, request_timeout=0.3, max_gap=0)
CAUSES: dict[str, str] = {
    "slowdown": "503",
    "server_error": "500",
    "throttle": "429",
    "reset": "",  # wrapper: "reset by peer"; wire: the client's "error sending request"
    "cut": "",  # wrapper: "connection closed after"; wire: "response body error"
    "stall": "no complete response within request_timeout=0.3 s",
    "short": "",  # wrapper: our length check; wire: the client's Content-Range check
}


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    (tmp_path / "bkt").mkdir()
    path = tmp_path / "bkt" / "scene.bin"
    path.write_bytes(DATA)
    return path


@pytest.fixture
def server(data_file: Path) -> Iterator[RangeHTTPServer]:
    with RangeHTTPServer(data_file.parent.parent) as srv:
        yield srv


def fetch_all(url: str, options: FetchOptions, backend: object = None) -> list[bytes]:
    views = run(fetch_ranges(url, RANGES, options=options, backend=backend))
    return [bytes(v) for v in views]


def expected() -> list[bytes]:
    return [DATA[r.start : r.end] for r in RANGES]


# -- the plan ------------------------------------------------------------------------------


def test_plan_is_seeded_and_independent_of_request_order() -> None:
    plan = FaultPlan(rate=0.2, seed=3)
    keys = [f"/a.tif|bytes={i}-{i + 9}" for i in range(3000)]
    forward = [plan.decide(k, 0) for k in keys]
    backward = [plan.decide(k, 0) for k in reversed(keys)][::-1]
    assert forward == backward
    faulted = [k for k in forward if k is not None]
    assert 0.17 < len(faulted) / len(keys) < 0.23
    assert set(faulted) == set(FAULT_KINDS)
    assert forward != [FaultPlan(rate=0.2, seed=4).decide(k, 0) for k in keys]
    # retries get fresh draws: a request is not doomed by its first fault
    assert [plan.decide(k, 1) for k in keys] != forward


def test_plan_first_and_match() -> None:
    plan = FaultPlan(rate=0.0, first=2, kinds=("reset",), match=("b.tif",))
    assert [plan.decide("/b.tif|0-9", n) for n in range(3)] == ["reset", "reset", None]
    assert plan.decide("/a.tif|0-9", 0) is None
    with pytest.raises(ValueError, match="fault rate"):
        FaultPlan(rate=1.5)
    with pytest.raises(ValueError, match="fault kinds"):
        FaultPlan(kinds=("gremlins",))  # type: ignore[arg-type]


def test_backoff_is_exponential_with_full_jitter() -> None:
    options = FetchOptions(backoff_base=0.1, backoff_max=1.0)
    for retry, cap in ((0, 0.1), (1, 0.2), (3, 0.8), (6, 1.0)):
        waits = [options.backoff(retry) for _ in range(200)]
        assert all(0.0 <= w <= cap for w in waits)
        assert max(waits) > 0.8 * cap  # spread over the whole interval, not a constant
        assert min(waits) < 0.2 * cap


# -- the wrapper ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_wrapper_fault_is_retried_to_the_exact_bytes(kind: FaultKind, data_file: Path) -> None:
    reader = FaultyReader(URLReader(), FaultPlan(rate=0.0, first=2, kinds=(kind,)))
    assert fetch_all(str(data_file), FAST, reader) == expected()
    assert reader.injector.kinds() == {kind: 2 * len(RANGES)}
    prefix = run(fetch_prefix(str(data_file), 4096, options=FAST, backend=reader))
    assert bytes(prefix.data) == DATA[:4096]
    assert prefix.object_size == len(DATA)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_wrapper_fault_without_retries_names_url_range_and_cause(
    kind: FaultKind, data_file: Path
) -> None:
    reader = FaultyReader(URLReader(), FaultPlan(rate=0.0, first=1, kinds=(kind,)))
    options = FetchOptions(retries=0, request_timeout=0.3, max_gap=0)
    with pytest.raises(FetchError) as info:
        fetch_all(str(data_file), options, reader)
    message = str(info.value)
    assert str(data_file) in message
    assert any(f"bytes [{r.start}, {r.end})" in message for r in RANGES)
    assert "on the first attempt" in message
    wrapper_causes = {"reset": "reset by peer", "cut": "connection closed after", "short": "got"}
    assert (CAUSES[kind] or wrapper_causes[kind]) in message
    if kind == "short":
        assert "expected 50000 bytes" in message or "expected 10 bytes" in message


def test_retries_stop_at_the_count_and_the_time_limit(data_file: Path) -> None:
    forever = FaultPlan(rate=1.0, kinds=("slowdown",))
    reader = FaultyReader(URLReader(), forever)
    options = FetchOptions(retries=3, backoff_base=0.001)
    with pytest.raises(FetchError, match=r"after 4 attempts: InjectedFault: .*503"):
        run(fetch_ranges(str(data_file), RANGES[:1], options=options, backend=reader))
    assert reader.injector.attempts == 4

    reader = FaultyReader(URLReader(), forever)
    options = FetchOptions(retries=1000, backoff_base=0.02, backoff_max=0.05, retry_time_limit=0.4)
    start = time.monotonic()
    with pytest.raises(FetchError, match="503"):
        run(fetch_ranges(str(data_file), RANGES[:1], options=options, backend=reader))
    assert time.monotonic() - start < 1.5
    assert 3 < reader.injector.attempts < 100


def test_stalls_time_out_and_are_retried(data_file: Path) -> None:
    reader = FaultyReader(URLReader(), FaultPlan(rate=0.0, first=1, kinds=("stall",)))
    start = time.monotonic()
    assert fetch_all(str(data_file), FAST, reader) == expected()
    assert time.monotonic() - start < 5  # three 30 s stalls, each cut off after 0.3 s


def test_faults_replay_identically_at_any_concurrency(data_file: Path) -> None:
    ranges = [ByteRange(i * 2500, i * 2500 + 100) for i in range(100)]
    logs = []
    for concurrency in (1, 64):
        reader = FaultyReader(URLReader(), FaultPlan(rate=0.3, seed=11, stall_seconds=0.0))
        options = FetchOptions(
            max_concurrent=concurrency, max_gap=0, backoff_base=0.001, retries=20
        )
        views = run(fetch_ranges(str(data_file), ranges, options=options, backend=reader))
        assert [bytes(v) for v in views] == [DATA[r.start : r.end] for r in ranges]
        logs.append(sorted((f.key, f.attempt, f.kind) for f in reader.faults))
    assert logs[0] == logs[1]
    assert len(logs[0]) >= 15  # ~43 expected (30% of attempts); the draw depends on the path


# -- on the wire: obstore against the range server, as HTTP and as S3 -----------------------


@pytest.fixture(params=["http", "s3"])
def wire_url(
    request: pytest.FixtureRequest, server: RangeHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> str:
    if request.param == "http":
        return server.url_for("bkt/scene.bin")
    env = {
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    clear_store_cache()
    return "s3://bkt/scene.bin"


@pytest.mark.integration
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_wire_fault_is_retried_to_the_exact_bytes(
    kind: FaultKind, wire_url: str, server: RangeHTTPServer
) -> None:
    injector = server.inject_faults(FaultPlan(rate=0.0, first=1, kinds=(kind,), stall_seconds=5))
    assert injector is not None
    assert fetch_all(wire_url, FAST) == expected()
    assert injector.kinds() == {kind: len(RANGES)}
    faulted = [r for r in server.requests if r.fault is not None]
    assert [r.fault for r in faulted] == [kind] * len(RANGES)
    prefix = run(fetch_prefix(wire_url, 4096, options=FAST))
    assert (bytes(prefix.data), prefix.object_size) == (DATA[:4096], len(DATA))


@pytest.mark.integration
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_wire_fault_without_retries_is_a_fetch_error(
    kind: FaultKind, wire_url: str, server: RangeHTTPServer
) -> None:
    server.inject_faults(FaultPlan(rate=0.0, first=1, kinds=(kind,), stall_seconds=5))
    with pytest.raises(FetchError) as info:
        run(
            fetch_ranges(wire_url, RANGES[:1], options=FetchOptions(retries=0, request_timeout=0.3))
        )
    message = str(info.value)
    assert isinstance(info.value, RasteretError)
    assert wire_url in message
    assert "bytes [1000, 51000)" in message
    wire_causes = {
        "reset": "error sending request",
        "cut": "body error",
        "short": "got 1000..26000",
    }
    assert (CAUSES[kind] or wire_causes[kind]) in message


@pytest.mark.integration
def test_wire_faults_replay_with_the_seed(server: RangeHTTPServer) -> None:
    url = server.url_for("bkt/scene.bin")
    ranges = [ByteRange(i * 2500, i * 2500 + 100) for i in range(60)]
    options = FetchOptions(max_gap=0, backoff_base=0.001, retries=20, max_concurrent=8)
    logs = []
    for _ in range(2):
        injector = server.inject_faults(FaultPlan(rate=0.25, seed=5, stall_seconds=0.05))
        assert injector is not None
        views = run(fetch_ranges(url, ranges, options=options))
        assert [bytes(v) for v in views] == [DATA[r.start : r.end] for r in ranges]
        logs.append(sorted((f.key, f.attempt, f.kind) for f in injector.faults))
    assert logs[0] == logs[1]
    assert len({kind for _, _, kind in logs[0]}) >= 5
