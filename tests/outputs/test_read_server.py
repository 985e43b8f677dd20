"""The read server of forked processes, without torch: a forked child's ``read_jobs`` calls
answered by the process that forked it (or by a helper process of the child's own) give the
arrays the parent reads itself.

This is the machinery under the TorchGeo dataset's forked ``DataLoader`` workers
(:mod:`rasteret.outputs._torchgeo_helper`); it needs neither torch nor TorchGeo, so it also
runs on Pythons where those are not installed. A fork of a multi-threaded process warns on
Python >= 3.12 (DeprecationWarning): expected here, and said so.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rasterio.enums import Resampling

import rasteret
from rasteret._collection_reads import records_for
from rasteret.io import _fork
from rasteret.outputs import _torchgeo_helper as helper
from rasteret.outputs._torchgeo_merge import SourceGrids, query_grid, read_jobs
from rasteret.read.buffers import tile_buffers
from rasteret.read.locate import point_buffers
from rasteret.read.options import ReadOptions
from rasteret.testing.scenes import SceneSpec, record_table, write_scene
from support.forking import FORK_OF_THREADS_EXPECTED

pytestmark = FORK_OF_THREADS_EXPECTED

BANDS = ("B04", "B08")
CRS = "EPSG:32633"


class _Dataset:
    """What the server looks a live dataset up by: token, records, options, source grids."""

    def __init__(self, records: list[Any], options: ReadOptions) -> None:
        self._token = f"test-{id(self)}"
        self.records = records
        self.options = options
        self._source = SourceGrids(records)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> _Dataset:
    root = tmp_path_factory.mktemp("read_server")
    specs = [
        SceneSpec(f"s{day}", epsg=32633, origin=(500_000.0, 4_600_000.0), size=256, tile=128,
                  datetime=dt.datetime(2024, 1, day, tzinfo=dt.UTC), seed=day, overviews=(2,))
        for day in (5, 10)
    ]  # fmt: skip
    hrefs = {
        s.scene_id: {b: str(p) for b, p in write_scene(s, root / "scenes", BANDS).items()}
        for s in specs
    }
    collection = rasteret.build_from_table(
        record_table(specs, hrefs), name="rs", workspace_dir=root / "ws", enrich_cog=True
    )
    return _Dataset(records_for(collection, BANDS), ReadOptions(cache_mb=0))


def _jobs() -> list[Any]:
    return [
        ([[0]], query_grid(CRS, (500_300.0, 4_598_700.0, 500_940.0, 4_599_340.0), (10.0, 10.0))),
        ([[1], [0]], query_grid(CRS, (500_100.0, 4_598_000.0, 501_300.0, 4_599_900.0), (20.0, 20.0))),
        ([[0, 1]], query_grid(CRS, (500_105.0, 4_598_015.0, 500_745.0, 4_598_655.0), (7.5, 7.5))),
    ]  # fmt: skip


def _child(ds: _Dataset, own_helper: bool, out: Any) -> None:
    if own_helper:
        helper._target = None  # as if no process had served this one
    arrays = helper.helper_read(
        ds._token, ds.records, ds.options, BANDS, _jobs(), Resampling.bilinear
    )
    client = helper._client
    used_own = client is not None and client._proc is not None
    out.send((_fork.inherited_runtime(), used_own, arrays))


@pytest.mark.parametrize("own_helper", [False, True], ids=["parent-server", "own-helper"])
def test_a_forked_child_reads_what_the_parent_reads(dataset: _Dataset, own_helper: bool) -> None:
    ds = dataset
    expected = read_jobs(
        ds.records, BANDS, _jobs(), Resampling.bilinear, ds.options,
        lambda ri, band: ds._source(ri, band, CRS),
    )  # fmt: skip
    assert _fork.runtime_used()  # the parent has sent requests: its forks cannot
    helper.register(ds)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(ds, own_helper, send))
    child.start()
    inherited, used_own, arrays = receive.recv()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert inherited
    assert used_own is own_helper
    assert helper.server_address() is not None  # the fork started it
    assert len(arrays) == len(expected)
    for got, want in zip(arrays, expected, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    helper.stop_server()


def test_helper_read_refuses_a_process_that_can_read_itself(dataset: _Dataset) -> None:
    with pytest.raises(rasteret.errors.ReadError, match="forked processes"):
        helper.helper_read("x", dataset.records, dataset.options, BANDS, [], Resampling.nearest)


def test_no_server_without_live_datasets_or_requests(tmp_path: Path) -> None:
    """The fork hook starts nothing in a process that has no dataset (or never read)."""
    helper.stop_server()
    saved = list(helper._datasets)
    for item in saved:
        helper._datasets.discard(item)
    try:
        context = multiprocessing.get_context("fork")
        child = context.Process(target=lambda: None)
        child.start()
        child.join(timeout=60)
        assert helper.server_address() is None
    finally:
        for item in saved:
            helper._datasets.add(item)


def test_a_fork_of_a_serving_process_gives_back_reusable_memory(dataset: _Dataset) -> None:
    """Memory kept for reuse would be shared with the children: it is freed at the fork.

    The parent goes on reading while its forked workers live; a page they share is copied
    on its first write, so recycled tile memory would cost more than fresh memory. Reads
    after the fork (fresh memory) equal those before it (recycled memory).
    """
    assert _fork.runtime_used()
    helper.register(dataset)

    def read() -> list[np.ndarray]:
        return read_jobs(
            dataset.records, BANDS, _jobs(), Resampling.nearest, dataset.options,
            lambda ri, band: dataset._source(ri, band, CRS),
        )  # fmt: skip

    before = read()
    pool, points = tile_buffers(), point_buffers()
    held = [pool.take(1 << 20) for _ in range(3)] + [points.take(1 << 20)]
    del held
    assert pool.free_bytes >= 3 << 20
    assert points.free_bytes >= 1 << 20
    context = multiprocessing.get_context("fork")
    child = context.Process(target=lambda: None)
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert pool.free_bytes == points.free_bytes == 0
    for got, want in zip(read(), before, strict=True):
        np.testing.assert_array_equal(got, want)
    helper.stop_server()


def test_trim_heap_says_whether_it_could() -> None:
    assert _fork.trim_heap() is (_fork._malloc_trim is not False)
    assert _fork.trim_heap() in (True, False)


class _FailingHeld:
    """A held dataset whose read fails deep down, as a read through asyncio and GDAL does."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def read(self, names: Any, jobs: Any, kernel: Any) -> Any:
        def down(n: int) -> None:
            if n == 0:
                raise rasteret.errors.ObjectNotFoundError(
                    "expected an object at /data/x.tif, got none (404) reading bytes [0, 10)"
                )
            down(n - 1)

        down(self.depth)


@pytest.fixture
def pickled_tracebacks() -> Any:
    """tblib's picklers for rasteret's errors (``distributed`` installs them for every class)."""
    import copyreg

    tblib_pickling = pytest.importorskip("tblib.pickling_support")
    classes = [c for c in vars(rasteret.errors).values() if isinstance(c, type)]
    before = {c: copyreg.dispatch_table.get(c) for c in classes}
    tblib_pickling.install(*[c for c in classes if issubclass(c, BaseException)])
    yield
    for cls, reducer in before.items():
        if reducer is None:
            copyreg.dispatch_table.pop(cls, None)
        else:
            copyreg.dispatch_table[cls] = reducer


def test_a_deep_server_error_reaches_the_worker_as_itself(pickled_tracebacks: Any) -> None:
    """A read failing 900 frames deep is sent bare: the worker raises the same error type."""
    server = helper._Server(lambda token: helper._Held([], ReadOptions()))
    server._held["t"] = _FailingHeld(900)  # type: ignore[assignment]
    server.start()
    client = helper._Client(server.address, server.authkey, None)
    try:
        with pytest.raises(rasteret.errors.ObjectNotFoundError, match=r"/data/x\.tif") as info:
            client.call("t", ((), ReadOptions()), ("read", "t", BANDS, [], 0))
        assert isinstance(info.value, FileNotFoundError)
    finally:
        client._conn.close()
        server.close()
