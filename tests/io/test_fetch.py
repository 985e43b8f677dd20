"""fetch_ranges / fetch_prefix / fetch_many against scripted in-memory readers and local files."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from obstore.exceptions import GenericError, PermissionDeniedError

from rasteret._sync import run
from rasteret.errors import AccessDeniedError, FetchError, ObjectNotFoundError
from rasteret.io.fetch import FetchOptions, fetch_many, fetch_prefix, fetch_ranges
from rasteret.io.limiter import RequestLimiter, get_limiter
from rasteret.io.ranges import ByteRange
from rasteret.testing.stores import CountingReader, LatencyReader, URLReader

T = TypeVar("T")
URL = "s3://bucket/scene.tif"
DATA = bytes((i * 31 + 7) % 251 for i in range(200_000))
FAST = FetchOptions(backoff_base=0.001, backoff_max=0.002)


class ScriptedReader:
    """In-memory objects keyed by full URL; raises or truncates on cue; tracks concurrency."""

    def __init__(self, objects: dict[str, bytes], *, delay: float = 0.0) -> None:
        self.objects = objects
        self.delay = delay
        self.script: list[BaseException | str] = []  # consumed one per call
        self.calls: list[tuple[str, int, int]] = []
        self.active = 0
        self.peak = 0

    async def get_range(self, path: str, start: int, end: int) -> bytes:
        self.calls.append((path, start, end))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
            action = self.script.pop(0) if self.script else None
            if isinstance(action, BaseException):
                raise action
            if action == "hang":
                await asyncio.sleep(10)
            if path not in self.objects:
                raise FileNotFoundError(path)
            data = self.objects[path][start:end]
            return data[: len(data) // 2] if action == "short" else data
        finally:
            self.active -= 1

    async def get_ranges(
        self, path: str, starts: Sequence[int], ends: Sequence[int]
    ) -> list[bytes]:
        return [await self.get_range(path, s, e) for s, e in zip(starts, ends, strict=True)]


def arun(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_ranges_come_back_in_input_order_as_views() -> None:
    reader = ScriptedReader({URL: DATA})
    ranges = [ByteRange(5000, 5100), ByteRange(10, 20), ByteRange(10, 20), ByteRange(15, 40),
              ByteRange(7, 7)]  # fmt: skip
    views = arun(fetch_ranges(URL, ranges, backend=reader))
    assert all(isinstance(v, memoryview) for v in views)
    assert [bytes(v) for v in views] == [DATA[r.start : r.end] for r in ranges]
    assert len(reader.calls) == 1  # one coalesced request
    assert arun(fetch_ranges(URL, [], backend=reader)) == []


def test_coalescing_limits_decide_the_requests() -> None:
    reader = ScriptedReader({URL: DATA})
    ranges = [ByteRange(i * 10_000, i * 10_000 + 100) for i in range(10)]
    arun(fetch_ranges(URL, ranges, backend=reader, options=FetchOptions(max_gap=10_000)))
    assert reader.calls == [(URL, 0, 90_100)]
    reader.calls.clear()
    arun(fetch_ranges(URL, ranges, backend=reader, options=FetchOptions(max_gap=9_899)))
    assert sorted(reader.calls) == [(URL, r.start, r.end) for r in ranges]
    reader.calls.clear()
    options = FetchOptions(max_gap=10_000, max_coalesced_size=30_100)
    arun(fetch_ranges(URL, ranges, backend=reader, options=options))
    assert sorted(reader.calls) == [(URL, 0, 30_100), (URL, 40_000, 70_100), (URL, 80_000, 90_100)]


def test_requests_in_flight_are_bounded_across_calls() -> None:
    reader = ScriptedReader({URL: DATA, "s3://bucket/other.tif": DATA}, delay=0.01)
    ranges = [ByteRange(i * 2000, i * 2000 + 10) for i in range(60)]
    options = FetchOptions(max_concurrent=8, max_gap=0)

    async def both() -> None:
        await asyncio.gather(
            fetch_ranges(URL, ranges, backend=reader, options=options),
            fetch_ranges("s3://bucket/other.tif", ranges, backend=reader, options=options),
        )
        assert get_limiter().in_flight == 0

    arun(both())
    assert len(reader.calls) == 120
    assert reader.peak == 8


def test_a_caller_with_a_higher_limit_may_use_more_slots() -> None:
    reader = ScriptedReader({URL: DATA}, delay=0.01)
    ranges = [ByteRange(i * 2000, i * 2000 + 10) for i in range(40)]

    async def both() -> None:
        await asyncio.gather(
            fetch_ranges(
                URL, ranges, backend=reader, options=FetchOptions(max_concurrent=4, max_gap=0)
            ),
            fetch_ranges(
                URL, ranges, backend=reader, options=FetchOptions(max_concurrent=16, max_gap=0)
            ),
        )

    arun(both())
    assert 4 < reader.peak <= 16


def test_each_event_loop_has_its_own_limiter() -> None:
    async def limiter_of_this_loop() -> RequestLimiter:
        return get_limiter()

    first = arun(limiter_of_this_loop())
    box: list[RequestLimiter] = []
    thread = threading.Thread(target=lambda: box.append(arun(limiter_of_this_loop())))
    thread.start()
    thread.join()
    assert box[0] is not first
    assert run(limiter_of_this_loop()) is run(limiter_of_this_loop())  # rasteret's loop thread


@pytest.mark.parametrize(
    "transient",
    [
        ConnectionResetError("reset by peer"),
        TimeoutError("read timed out"),
        GenericError("Generic S3 error: Server returned non-2xx status code: 503 Slow Down"),
        GenericError("Generic HTTP error: Server returned non-2xx status code: 429 Too Many"),
        GenericError("Generic S3 error: error sending request"),
    ],
)
def test_transient_failures_are_retried(transient: BaseException) -> None:
    reader = ScriptedReader({URL: DATA})
    reader.script = [transient, transient, transient]
    (view,) = arun(fetch_ranges(URL, [ByteRange(100, 200)], backend=reader, options=FAST))
    assert bytes(view) == DATA[100:200]
    assert len(reader.calls) == 4


def test_retries_run_out_with_a_precise_message() -> None:
    reader = ScriptedReader({URL: DATA})
    cause = GenericError("Generic S3 error: Server returned non-2xx status code: 500 Internal")
    reader.script = [cause] * 10
    signed = URL + "?X-Amz-Signature=SECRET&X-Amz-Credential=AKID"
    options = FetchOptions(retries=2, backoff_base=0.001)
    with pytest.raises(FetchError) as info:
        arun(fetch_ranges(signed, [ByteRange(100, 200)], backend=reader, options=options))
    message = str(info.value)
    assert "bytes [100, 200) of s3://bucket/scene.tif" in message
    assert "after 3 attempts" in message
    assert "500 Internal" in message
    assert "SECRET" not in message
    assert "AKID" not in message
    assert info.value.__cause__ is cause
    assert len(reader.calls) == 3


@pytest.mark.parametrize(
    ("error", "expected", "text"),
    [
        (FileNotFoundError("nope"), ObjectNotFoundError, "expected an object at s3://bucket/scene.tif"),
        (PermissionError("no"), AccessDeniedError, "access to s3://bucket/scene.tif was refused"),
        (PermissionDeniedError("The operation lacked the necessary privileges"), AccessDeniedError, "403"),
        (GenericError("Server returned non-2xx status code: 400 Bad Request"), FetchError, "on the first attempt"),
        (GenericError("Server returned non-2xx status code: 404 Not Found"), ObjectNotFoundError, "404"),
    ],
)  # fmt: skip
def test_final_failures_are_not_retried(
    error: BaseException, expected: type[Exception], text: str
) -> None:
    reader = ScriptedReader({URL: DATA})
    reader.script = [error]
    with pytest.raises(expected, match=text):
        arun(fetch_ranges(URL, [ByteRange(0, 10)], backend=reader, options=FAST))
    assert len(reader.calls) == 1


def test_not_found_is_also_a_builtin_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        arun(fetch_ranges("s3://bucket/missing.tif", [ByteRange(0, 10)],
                          backend=ScriptedReader({})))  # fmt: skip


def test_short_bodies_are_retried_then_reported() -> None:
    reader = ScriptedReader({URL: DATA})
    reader.script = ["short"]
    (view,) = arun(fetch_ranges(URL, [ByteRange(0, 100)], backend=reader, options=FAST))
    assert bytes(view) == DATA[:100]
    assert len(reader.calls) == 2
    reader.script = ["short"] * 10
    options = FetchOptions(retries=3, backoff_base=0.001)
    with pytest.raises(
        FetchError, match=r"expected 100 bytes for bytes \[0, 100\) .* got 50 after 4"
    ):
        arun(fetch_ranges(URL, [ByteRange(0, 100)], backend=reader, options=options))


def test_range_past_the_end_of_the_object_is_a_short_body() -> None:
    reader = ScriptedReader({URL: DATA[:150]})
    with pytest.raises(FetchError, match=r"expected 100 bytes .* got 50"):
        arun(fetch_ranges(URL, [ByteRange(100, 200)], backend=reader,
                          options=FetchOptions(retries=1, backoff_base=0.001)))  # fmt: skip


def test_a_hung_request_times_out_and_is_retried() -> None:
    reader = ScriptedReader({URL: DATA})
    reader.script = ["hang"]
    options = FetchOptions(request_timeout=0.05, backoff_base=0.001)
    started = time.perf_counter()
    (view,) = arun(fetch_ranges(URL, [ByteRange(0, 10)], backend=reader, options=options))
    assert bytes(view) == DATA[:10]
    assert time.perf_counter() - started < 2
    assert len(reader.calls) == 2


def test_total_retry_time_is_bounded() -> None:
    reader = ScriptedReader({URL: DATA})
    reader.script = [ConnectionResetError("reset")] * 10_000
    options = FetchOptions(retries=10_000, backoff_base=0.01, backoff_max=0.02,
                           retry_time_limit=0.3)  # fmt: skip
    started = time.perf_counter()
    with pytest.raises(FetchError, match="could not fetch bytes"):
        arun(fetch_ranges(URL, [ByteRange(0, 10)], backend=reader, options=options))
    assert 0.25 < time.perf_counter() - started < 1.5


def test_backoff_has_jitter_and_a_cap() -> None:
    options = FetchOptions(backoff_base=0.1, backoff_max=1.0)
    waits = [options.backoff(10) for _ in range(200)]
    assert 0.0 <= min(waits) <= max(waits) <= 1.0
    assert len(set(waits)) > 100
    assert all(options.backoff(0) <= 0.1 for _ in range(100))
    with pytest.raises(ValueError, match="max_concurrent"):
        FetchOptions(max_concurrent=0)


def test_first_failure_cancels_the_rest_and_frees_slots() -> None:
    reader = ScriptedReader({URL: DATA}, delay=0.05)
    reader.script = [FileNotFoundError("gone")]
    ranges = [ByteRange(i * 5000, i * 5000 + 10) for i in range(20)]

    async def go() -> None:
        with pytest.raises(ObjectNotFoundError):
            await fetch_ranges(URL, ranges, backend=reader,
                               options=FetchOptions(max_gap=0, max_concurrent=4))  # fmt: skip
        assert get_limiter().in_flight == 0

    started = time.perf_counter()
    arun(go())
    assert time.perf_counter() - started < 0.5  # did not wait for the 16 queued requests
    assert len(reader.calls) < 20


def test_fetch_many_keeps_order_and_can_collect_errors() -> None:
    objects = {f"s3://bucket/{i}.tif": DATA[i : i + 1000] for i in range(30)}
    reader = ScriptedReader(objects, delay=0.001)
    jobs = [(url, [ByteRange(0, 10), ByteRange(500, 510)]) for url in objects]
    jobs.insert(7, ("s3://bucket/missing.tif", [ByteRange(0, 10)]))
    done: list[int] = []
    results = arun(fetch_many(jobs, backend=reader, return_exceptions=True, on_done=done.append))
    assert sorted(done) == list(range(31))
    assert isinstance(results[7], ObjectNotFoundError)
    for (url, _), result in zip(jobs, results, strict=True):
        if url != "s3://bucket/missing.tif":
            assert not isinstance(result, BaseException)
            assert [bytes(v) for v in result] == [objects[url][:10], objects[url][500:510]]
    with pytest.raises(ObjectNotFoundError, match=r"missing\.tif"):
        arun(fetch_many(jobs, backend=reader))


def test_fetch_prefix_with_a_plain_reader() -> None:
    reader = ScriptedReader({URL: DATA, "s3://bucket/tiny.tif": b"II*\x00"})
    full = arun(fetch_prefix(URL, 1000, backend=reader))
    assert (bytes(full.data), full.object_size, full.etag) == (DATA[:1000], None, None)
    tiny = arun(fetch_prefix("s3://bucket/tiny.tif", 1000, backend=reader))
    assert (bytes(tiny.data), tiny.object_size) == (b"II*\x00", 4)
    assert len(reader.calls) == 2


def test_local_files_prefix_sizes_etags_and_errors(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(DATA)
    (tmp_path / "tiny.bin").write_bytes(b"tiny")
    (tmp_path / "empty.bin").write_bytes(b"")
    counting = CountingReader(URLReader())
    big = arun(fetch_prefix(str(tmp_path / "big.bin"), 65536, backend=counting))
    assert (bytes(big.data), big.object_size) == (DATA[:65536], len(DATA))
    assert big.etag
    assert counting.requests() == 1
    tiny = arun(fetch_prefix(f"file://{tmp_path}/tiny.bin"))
    assert (bytes(tiny.data), tiny.object_size) == (b"tiny", 4)
    empty = arun(fetch_prefix(str(tmp_path / "empty.bin")))
    assert (bytes(empty.data), empty.object_size) == (b"", 0)
    with pytest.raises(ObjectNotFoundError, match=r"missing\.bin"):
        arun(fetch_prefix(str(tmp_path / "missing.bin")))
    with pytest.raises(FetchError, match="starts past the end"):
        arun(fetch_ranges(str(tmp_path / "tiny.bin"), [ByteRange(10, 20)]))
    views = run(
        fetch_ranges(str(tmp_path / "big.bin"), [ByteRange(3, 9), ByteRange(70_000, 70_010)])
    )
    assert [bytes(v) for v in views] == [DATA[3:9], DATA[70_000:70_010]]


def test_latency_reader_overlaps_requests() -> None:
    reader = CountingReader(LatencyReader(ScriptedReader({URL: DATA}), latency=0.05))
    ranges = [ByteRange(i * 4000, i * 4000 + 10) for i in range(40)]
    started = time.perf_counter()
    arun(fetch_ranges(URL, ranges, backend=reader, options=FetchOptions(max_gap=0)))
    elapsed = time.perf_counter() - started
    assert reader.requests(URL) == 40
    assert reader.bytes_read() == 400
    assert 0.05 <= elapsed < 0.5  # 40 x 50 ms in parallel, not 2 s in series
