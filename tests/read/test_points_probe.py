"""Fast paths of large point reads, each against the general path it skips work of.

Fetching the tiles of a sample of the points before the whole batch is planned (then the
rest), numbering pixels by tile with shifts, targets given as a run, and the point table's
single-record columns.
"""

from __future__ import annotations

import datetime as dt
import itertools
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pyarrow as pa
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

import rasteret.outputs.points as out_points
import rasteret.read.sample as sample_mod
from rasteret.errors import BandResolutionError
from rasteret.ingest.metadata import band_metadata_from_header
from rasteret.read import ReadOptions, RecordRef
from rasteret.read import points as points_mod
from rasteret.read.buffers import BufferPool
from rasteret.read.locate import point_buffers
from rasteret.read.points import PointOptions, _Numbered, _tile_numbers, plan_points, plan_tiles
from rasteret.read.sample import read_points
from rasteret.read.select import PointSamples
from rasteret.testing.stores import CountingReader, URLReader
from rasteret.tiff.header import parse_header

EPSG = 32633
X0, Y0, RES = 500_000.0, 4_600_000.0, 10.0
WIDTH, HEIGHT = 700, 500


def _write(path: Path, count: int, interleave: str, tile: int) -> Path:
    rng = np.random.default_rng(len(path.name))
    data = rng.integers(0, 6, (count, HEIGHT, WIDTH)).astype("uint16")
    with rasterio.open(
        path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=count, dtype="uint16",
        nodata=0, tiled=True, blockxsize=tile, blockysize=tile, compress="deflate",
        interleave=interleave, crs=f"EPSG:{EPSG}", transform=Affine(RES, 0, X0, 0, -RES, Y0),
    ) as dst:  # fmt: skip
        dst.write(data)
    return path


def _record(path: Path, count: int, rid: str) -> RecordRef:
    data = path.read_bytes()
    header = parse_header(data, url=str(path), object_size=len(data))
    return RecordRef(rid, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), {
        f"b{i + 1}": band_metadata_from_header(header, band_index=i, href=str(path))
        for i in range(count)
    })  # fmt: skip


_TIFFS: dict[str, Path] = {}


def _tiffs() -> dict[str, Path]:
    """The test files, written once per session (hypothesis tests take no fixtures)."""
    if not _TIFFS:
        d = Path(tempfile.mkdtemp(prefix="rasteret-probe-"))
        _TIFFS["planar"] = _write(d / "planar.tif", 2, "band", 128)
        _TIFFS["chunky"] = _write(d / "chunky.tif", 2, "pixel", 128)
        _TIFFS["odd_tiles"] = _write(d / "odd_tiles.tif", 1, "band", 80)
    return _TIFFS


@pytest.fixture
def tiffs() -> dict[str, Path]:
    return _tiffs()


def _clustered(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Most points in one corner (one tile), a few spread over the raster and beyond, and
    some nulls: a sample of them misses most of the tiles the whole set needs."""
    rng = np.random.default_rng(seed)
    xs = rng.uniform(X0, X0 + 1000, n)
    ys = rng.uniform(Y0 - 1000, Y0, n)
    spread = rng.choice(n, 40, replace=False)
    xs[spread] = rng.uniform(X0 - 500, X0 + WIDTH * RES + 500, 40)
    ys[spread] = rng.uniform(Y0 - HEIGHT * RES - 500, Y0 + 500, 40)
    xs[::97] = np.nan
    return xs, ys


def _read(records: list[RecordRef], xs: np.ndarray, ys: np.ndarray, bands: list[str],
          options: PointOptions, probe: bool, monkeypatch: pytest.MonkeyPatch,
          ) -> tuple[Any, int, int]:  # fmt: skip
    with monkeypatch.context() as m:
        m.setattr(sample_mod, "PROBE_MIN_POINTS", 1 if probe else 10**12)
        m.setattr(sample_mod, "PROBE_POINTS", 25)
        counting = CountingReader(URLReader())
        read_options = ReadOptions(cache_mb=0, backend=counting, max_gap=0)
        got = read_points(records, xs, ys, EPSG, bands, options, read_options)
    return got, counting.bytes_read(), counting.requests()


@pytest.mark.parametrize("kind", ["planar", "chunky", "odd_tiles"])
@pytest.mark.parametrize("radius", [0, 1])
@pytest.mark.parametrize("batch_size", [None, 700])
def test_reads_that_fetch_a_sample_first_equal_reads_planned_first(
    tiffs: dict[str, Path], kind: str, radius: int, batch_size: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    count = 1 if kind == "odd_tiles" else 2
    bands = [f"b{i + 1}" for i in range(count)]
    records = [_record(tiffs[kind], count, "r1"), _record(tiffs[kind], count, "r2")]
    xs, ys = _clustered(3000, seed=len(kind) + radius)
    options = PointOptions(max_distance_pixels=radius, batch_size=batch_size)
    probed, probed_bytes, _ = _read(records, xs, ys, bands, options, True, monkeypatch)
    general, general_bytes, _ = _read(records, xs, ys, bands, options, False, monkeypatch)
    for name in ("point_index", "record_index", "row", "col"):
        np.testing.assert_array_equal(getattr(probed, name), getattr(general, name))
    for a, b in zip(probed.values + probed.valid, general.values + general.valid, strict=True):
        np.testing.assert_array_equal(a, b)
    # every tile of a batch is fetched once: the same bytes (one batch: the plan's tiles)
    assert probed_bytes == general_bytes
    if batch_size is None:
        plan = plan_points(records, xs, ys, EPSG, bands, options)
        assert probed_bytes == sum(s.end - s.start for s in plan.tiles.values())


def test_the_sample_misses_tiles_the_rest_fetches(tiffs: dict[str, Path]) -> None:
    """The case above is not vacuous: the sample's tiles are a strict subset of the plan's."""
    records = [_record(tiffs["planar"], 2, "r1")]
    xs, ys = _clustered(3000, seed=6)
    step = len(xs) // 25
    sample = plan_tiles(records, xs[::step], ys[::step], EPSG, ["b1", "b2"])
    every = plan_points(records, xs, ys, EPSG, ["b1", "b2"]).tiles
    assert set(sample) < set(every)
    assert all((sample[k].start, sample[k].end) == (every[k].start, every[k].end) for k in sample)


def test_batches_are_planned_one_at_a_time_on_kept_threads(
    tiffs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner threads outlive a read (PROJ objects are built once per thread), and a
    read still plans its batches one after another, in order, while earlier batches read."""
    records = [_record(tiffs["planar"], 2, "r1"), _record(tiffs["planar"], 2, "r2")]
    xs, ys = _clustered(3000, seed=9)
    calls: list[tuple[threading.Thread, int, float, float]] = []
    plan = sample_mod.plan_points

    def timed(records: Any, bx: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        time.sleep(0.01)  # long enough for a second plan to overlap, if one could start
        try:
            return plan(records, bx, *args, **kwargs)
        finally:
            calls.append((threading.current_thread(), len(bx), start, time.perf_counter()))

    monkeypatch.setattr(sample_mod, "plan_points", timed)
    options = PointOptions(batch_size=500)
    batched = [read_points(records, xs, ys, EPSG, ["b1", "b2"], options)]
    first_planners = {thread for thread, *_ in calls}
    assert all(thread.is_alive() for thread in first_planners)  # kept once the read is done
    batched.append(read_points(records, xs, ys, EPSG, ["b1", "b2"], options))
    whole = read_points(records, xs, ys, EPSG, ["b1", "b2"])
    for got in batched:
        for name in ("point_index", "record_index", "row", "col"):
            np.testing.assert_array_equal(getattr(got, name), getattr(whole, name))
        for a, b in zip(got.values + got.valid, whole.values + whole.valid, strict=True):
            np.testing.assert_array_equal(a, b)
    assert len(calls) == 2 * 6 + 1  # 3000 points in batches of 500, twice; then one plan
    assert all(thread.name.startswith("rasteret-plan") for thread, *_ in calls)
    for one_read in (calls[:6], calls[6:12]):
        spans = sorted((start, end) for _, _, start, end in one_read)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2000), st.integers(1, 60), st.integers(0, 2))
def test_tiles_of_a_subset_are_a_subset_of_the_plans(n: int, step: int, radius: int) -> None:
    records = [_record(_tiffs()["planar"], 2, "r1")]
    rng = np.random.default_rng(n + step)
    xs = rng.uniform(X0 - 300, X0 + WIDTH * RES + 300, n)
    ys = rng.uniform(Y0 - HEIGHT * RES - 300, Y0 + 300, n)
    options = PointOptions(max_distance_pixels=radius)
    sample = plan_tiles(records, xs[::step], ys[::step], EPSG, ["b1", "b2"], options)
    every = plan_points(records, xs, ys, EPSG, ["b1", "b2"], options).tiles
    assert set(sample) <= set(every)


def test_a_failing_plan_fails_a_read_that_fetched_a_sample(
    tiffs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [_record(tiffs["planar"], 2, "r1")]
    xs, ys = _clustered(500, seed=2)
    monkeypatch.setattr(sample_mod, "PROBE_MIN_POINTS", 1)
    with pytest.raises(BandResolutionError):
        read_points(records, xs, ys, EPSG, ["b1", "b9"], read_options=ReadOptions(cache_mb=0))
    calls: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RuntimeError("the plan failed after the sample's tiles were known")

    monkeypatch.setattr(sample_mod, "plan_points", failing)
    with pytest.raises(RuntimeError, match="the plan failed"):
        read_points(records, xs, ys, EPSG, ["b1"], read_options=ReadOptions(cache_mb=0))
    assert calls


def _level(kind: str) -> Any:
    return band_metadata_from_header(parse_header(_tiffs()[kind].read_bytes())).level


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 500), st.integers(0, 5), st.sampled_from(["planar", "odd_tiles"]))
def test_tile_numbers_by_shifts_equal_divmod(n: int, seed: int, kind: str) -> None:
    """int32 pixels on power-of-2 tiles take the shift path; int64 ones the general one."""
    level = _level(kind)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, level.image_height, n).astype(np.int32)
    cols = rng.integers(0, level.image_width, n).astype(np.int32)
    fast = _tile_numbers(level, rows, cols, 0)
    general = _tile_numbers(level, rows.astype(np.int64), cols.astype(np.int64), 0)
    np.testing.assert_array_equal(fast.number, general.number)
    np.testing.assert_array_equal(fast.pixels, general.pixels)
    shifts = kind == "planar"  # power-of-2 tiles; "odd_tiles" are not
    assert fast.pixels.dtype == (np.int32 if shifts else np.intp)  # int32: half the bytes
    assert general.pixels.dtype == np.intp
    assert fast.used == general.used


@pytest.mark.parametrize(
    ("across", "down", "small"),
    [(255, 257, np.uint16), (256, 256, np.uint32), (300, 300, np.uint32)],
)
def test_tile_numbers_of_many_tiles_by_shifts_equal_divmod(
    across: int, down: int, small: type
) -> None:
    """Tile numbers are worked out in their small type (uint16 up to 65,535 tiles, else
    uint32), also at the edge of each and in the last tile."""
    from types import SimpleNamespace

    level = SimpleNamespace(tiles_across=across, tiles_down=down, tile_width=16, tile_height=16)
    rng = np.random.default_rng(across)
    rows = np.append(rng.integers(0, down * 16, 5000), [down * 16 - 1, 0]).astype(np.int32)
    cols = np.append(rng.integers(0, across * 16, 5000), [across * 16 - 1, 0]).astype(np.int32)
    fast = _tile_numbers(level, rows, cols, 0)  # type: ignore[arg-type]
    general = _tile_numbers(level, rows.astype(np.int64), cols.astype(np.int64), 0)  # type: ignore[arg-type]
    assert fast.number.dtype == general.number.dtype == small
    np.testing.assert_array_equal(fast.number, (rows // 16) * across + cols // 16)
    np.testing.assert_array_equal(fast.number, general.number)
    np.testing.assert_array_equal(fast.pixels, general.pixels)
    assert fast.used == general.used


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 400), st.integers(0, 3), st.integers(0, 50))
def test_targets_as_a_run_equal_the_explicit_run(n: int, seed: int, first: int) -> None:
    level = _level("planar")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, level.image_height, n).astype(np.int32)
    cols = rng.integers(0, level.image_width, n).astype(np.int32)
    run = _tile_numbers(level, rows, cols, first).grouped()
    explicit = _Numbered(*_parts(level, rows, cols, np.arange(first, first + n))).grouped()
    assert len(run) == len(explicit)
    for (t1, p1), (t2, p2) in zip(run, explicit, strict=True):
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(p1, p2)
        assert t1.dtype == np.int64


def _parts(level: Any, rows: np.ndarray, cols: np.ndarray, targets: np.ndarray) -> tuple[Any, ...]:
    numbered = _tile_numbers(level, rows.astype(np.int64), cols.astype(np.int64), targets)
    return numbered.number, numbered.pixels, targets, numbered.sizes


def _samples(record_index: np.ndarray, point_index: np.ndarray) -> PointSamples:
    n = len(record_index)
    values = np.arange(n, dtype=np.uint16)
    return PointSamples(
        point_index, record_index, ("B1",), (values,), (values % 3 != 0,),
        np.arange(n) % 5 - 1, np.arange(n) % 7,
    )  # fmt: skip


@pytest.mark.parametrize(
    "case",
    ["one_record", "second_record", "two_records", "missing", "read_of_one", "read_of_one_missing"],
)
@pytest.mark.parametrize("n_points", [0, 1, 7])
def test_single_record_columns_equal_the_taken_ones(
    case: str, n_points: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The columns of rows all of one record (values repeated, no take) equal the general
    ones, in reads of two records and of one (where rows are 0 or -1 only)."""
    record_index = {
        "one_record": np.zeros(n_points, np.int64),
        "second_record": np.ones(n_points, np.int64),
        "two_records": np.arange(n_points) % 2,
        "missing": np.where(np.arange(n_points) % 3 == 0, -1, 0),
        "read_of_one": np.zeros(n_points, np.int64),
        "read_of_one_missing": np.where(np.arange(n_points) % 3 == 1, -1, 0),
    }[case]
    samples = _samples(record_index.astype(np.int64), np.arange(n_points))
    ids, stamps, crss = (
        ["r1", "r2"],
        [dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None],
        ["EPSG:1", None],
    )
    if case.startswith("read_of_one"):
        ids, stamps, crss = ids[:1], stamps[:1], crss[:1]
    rng = np.random.default_rng(n_points)
    xs, ys = rng.uniform(0, 10, n_points), rng.uniform(0, 10, n_points)
    kwargs: dict[str, Any] = {
        "columns": pa.table({"site": np.arange(n_points)}), "x": xs, "y": ys,
        "point_crs": "EPSG:4326",
    }  # fmt: skip
    fast = out_points.samples_to_table(samples, ids, stamps, crss, **kwargs)
    monkeypatch.setattr(out_points, "_only_record", lambda index, records: None)
    general = out_points.samples_to_table(samples, ids, stamps, crss, **kwargs)
    assert fast.schema == general.schema
    assert fast.equals(general)
    fast.validate(full=True)  # the dictionary columns' indices skip Arrow's check: in range
    crs_of = {-1: None, 0: "EPSG:1", 1: ""}
    assert fast["raster_crs"].to_pylist() == [crs_of[int(r)] for r in record_index]
    assert fast["point_crs"].to_pylist() == ["EPSG:4326"] * n_points


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2, 6), max_size=8), st.integers(0, 8))
def test_identity_check_equals_comparing_with_a_range(index: list[int], n: int) -> None:
    arr = np.array(index, dtype=np.int64)
    want = len(arr) == n and bool(np.all(arr == np.arange(n)))
    assert out_points._is_identity(arr, n) == want


@given(st.text(max_size=5), st.integers(0, 20))
def test_repeated_strings_equal_a_built_array(value: str, n: int) -> None:
    assert out_points._repeated_string(value, n).equals(pa.array([value] * n, pa.string()))


@pytest.mark.parametrize("kind", ["planar", "chunky", "odd_tiles"])
@pytest.mark.parametrize("radius", [0, 1])
def test_reads_in_dirty_recycled_memory_equal_reads_in_zeroed_memory(
    kind: str, radius: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every byte of the recycled arrays of a read and its table is written: memory handed
    out full of garbage gives the same samples and table as zeroed memory."""
    count = 1 if kind == "odd_tiles" else 2
    bands = [f"b{i + 1}" for i in range(count)]
    records = [_record(_tiffs()[kind], count, "r1"), _record(_tiffs()[kind], count, "r2")]
    xs, ys = _clustered(2000, seed=radius)
    options = PointOptions(max_distance_pixels=radius)

    def read(fill: int) -> tuple[Any, pa.Table]:
        with monkeypatch.context() as m:
            m.setattr(BufferPool, "take", lambda self, n: np.full(n, fill, dtype=np.uint8))
            got = read_points(records, xs, ys, EPSG, bands, options, ReadOptions(cache_mb=0))
            table = out_points.samples_to_table(
                got, ["r1", "r2"], [r.datetime for r in records], ["EPSG:32633"] * 2,
                columns=None, x=xs, y=ys, point_crs="EPSG:32633",
            )  # fmt: skip
            one = replace(got, record_index=np.zeros_like(got.record_index))
            single = out_points.samples_to_table(
                one, ["r1"], [None], ["EPSG:32633"], columns=None, x=xs, y=ys,
                point_crs="EPSG:32633",
            )  # fmt: skip
        return got, pa.concat_tables([table, single])

    dirty, dirty_table = read(0xAB)
    clean, clean_table = read(0)
    for name in ("point_index", "record_index", "row", "col"):
        np.testing.assert_array_equal(getattr(dirty, name), getattr(clean, name))
    for a, b in zip(dirty.values + dirty.valid, clean.values + clean.valid, strict=True):
        np.testing.assert_array_equal(a, b)
    assert dirty_table.equals(clean_table)


@pytest.mark.parametrize("geometry", ["built", "given", "input_named_geometry"])
def test_wkb_built_on_a_thread_equals_wkb_built_in_line(
    geometry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 50
    rng = np.random.default_rng(n)
    xs, ys = rng.uniform(0, 10, n), rng.uniform(0, 10, n)
    xs[3] = np.nan
    samples = _samples(np.zeros(n, np.int64), np.arange(n))
    columns = pa.table({"site": np.arange(n)})
    if geometry == "input_named_geometry":
        columns = columns.append_column("geometry", pa.array(np.arange(n) * 2))
    given = out_points.points_to_wkb(xs[::-1].copy(), ys) if geometry == "given" else None

    def table(parallel: bool, early: bool = False) -> pa.Table:
        with monkeypatch.context() as m:
            m.setattr(out_points, "_PARALLEL_WKB_POINTS", 0 if parallel else 10**12)
            # early: started before the read, as sample_points does
            built = out_points.build_point_wkb(xs, ys) if early else None
            return out_points.samples_to_table(
                samples, ["r1"], [None], ["EPSG:1"], columns=columns, x=xs, y=ys,
                point_crs="EPSG:4326", geometry=given, built=built,
            )  # fmt: skip

    threaded, in_line, early = table(True), table(False), table(True, early=True)
    assert threaded.schema == in_line.schema == early.schema
    assert threaded.equals(in_line)
    assert early.equals(in_line)
    named = geometry == "input_named_geometry"
    want = ["site", "geometry", "sample_geometry"] if named else ["site", "geometry", "record_id"]
    assert threaded.column_names[:3] == want


def test_a_second_read_reuses_the_memory_the_first_let_go() -> None:
    """The large arrays of a read and its table come back to the point pool once nothing
    refers to them, and the next read of the same size takes them from there."""
    records = [_record(_tiffs()["planar"], 2, "r1")]
    xs, ys = _clustered(5000, seed=4)
    pool = point_buffers()

    def read_and_table() -> pa.Table:
        got = read_points(records, xs, ys, EPSG, ["b1", "b2"], read_options=ReadOptions(cache_mb=0))
        return out_points.samples_to_table(
            got, ["r1"], [None], ["EPSG:32633"], columns=None, x=xs, y=ys, point_crs="EPSG:32633"
        )

    first = read_and_table()
    del first
    before = pool.reused
    second = read_and_table()
    assert pool.reused - before >= 10
    assert second.num_rows > 0


def test_a_held_table_is_never_overwritten_by_later_reads() -> None:
    """Memory a table still refers to is not recycled: later reads of the same size (which
    take every buffer the pool has of that size) leave the held table as it was."""
    records = [_record(_tiffs()["planar"], 2, "r1"), _record(_tiffs()["planar"], 2, "r2")]

    def read_and_table(seed: int) -> pa.Table:
        xs, ys = _clustered(5000, seed=seed)
        got = read_points(records, xs, ys, EPSG, ["b1", "b2"], read_options=ReadOptions(cache_mb=0))
        return out_points.samples_to_table(
            got, ["r1", "r2"], [r.datetime for r in records], ["EPSG:32633"] * 2,
            columns=None, x=xs, y=ys, point_crs="EPSG:32633",
        )  # fmt: skip

    held = read_and_table(seed=5)
    snapshot = pa.table(
        {name: pa.array(held.column(name).to_pylist()) for name in held.column_names}
    )
    pool = point_buffers()
    before = pool.reused
    for seed in (6, 7, 8):  # other points, same sizes: their buffers are recycled among them
        read_and_table(seed)
    assert pool.reused > before
    for name in held.column_names:
        assert held.column(name).to_pylist() == snapshot.column(name).to_pylist(), name


def test_a_deferred_wkb_build_waits_for_its_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """The geometry build of a large read starts once the read's requests are out; it still
    ends (later) when nobody sets the event, and equals the build in line."""
    monkeypatch.setattr(out_points, "_PARALLEL_WKB_POINTS", 0)
    xs, ys = np.arange(1000.0), np.arange(1000.0) * 2
    expected = out_points.points_to_wkb(xs, ys)
    gate = threading.Event()
    waiting = out_points.build_point_wkb(xs, ys, gate)
    time.sleep(0.03)
    assert not waiting.done()
    gate.set()
    assert waiting.result(timeout=5).equals(expected)
    monkeypatch.setattr(out_points, "_WKB_WAIT_S", 0.05)
    never = out_points.build_point_wkb(xs, ys, threading.Event())
    assert never.result(timeout=5).equals(expected)


class _StartCounting(URLReader):
    """Counts requests when they are made (not when they complete)."""

    started = 0

    async def get_ranges(self, path: str, starts: Any, ends: Any) -> Any:
        type(self).started += len(starts)
        return await super().get_ranges(path, starts, ends)

    async def get_range(self, path: str, start: int, end: int) -> Any:
        type(self).started += 1
        return await super().get_range(path, start, end)


@pytest.mark.parametrize("inside", [True, False])
def test_read_points_says_when_its_requests_are_out(inside: bool) -> None:
    """``requests_out`` is set once the first tiles are requested, and in any case once the
    read is over (no tile needed: points outside, or no record)."""
    records = [_record(_tiffs()["planar"], 2, "r1")]
    xs, ys = _clustered(500, seed=9)
    if not inside:
        xs = xs - 1e6
    _StartCounting.started = 0
    seen: list[int] = []

    class Watched(threading.Event):
        def set(self) -> None:
            seen.append(_StartCounting.started)  # requests made when told
            super().set()

    out = Watched()
    options = ReadOptions(backend=_StartCounting(), cache_mb=0)
    read_points(records, xs, ys, EPSG, ["b1"], read_options=options, requests_out=out)
    assert out.is_set()
    assert seen[0] >= 1 if inside else seen[0] == 0
    empty = threading.Event()
    read_points([], xs, ys, EPSG, ["b1"], requests_out=empty)
    assert empty.is_set()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 70), st.integers(0, 9))
def test_chunked_tile_order_equals_a_stable_argsort(n: int, tiles: int, seed: int) -> None:
    """Counting and sorting by tile a chunk at a time (small chunks here) gives numpy's
    bincount and stable argsort; past :data:`_CHUNKED_TILES` tiles the plain ones run."""
    rng = np.random.default_rng(seed)
    number = rng.integers(0, tiles, n).astype(np.uint16)
    number[: n // 3] = number[0] if n else 0  # runs of one tile, as spatially sorted points
    with patch.object(points_mod, "_SORT_CHUNK", 97):
        sizes, chunk_sizes = points_mod._counts(number, tiles)
        np.testing.assert_array_equal(sizes, np.bincount(number, minlength=tiles))
        assert (chunk_sizes is None) == (n <= 97 or tiles > points_mod._CHUNKED_TILES)
        used = np.flatnonzero(sizes).tolist()
        order = points_mod._stable_order(number, sizes, used, chunk_sizes)
    np.testing.assert_array_equal(order, np.argsort(number, kind="stable"))
