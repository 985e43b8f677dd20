"""Lazy ``get_xarray(chunks=...)``: equal to the eager Dataset, one task per chunk, on a cluster.

The cluster is a ``LocalCluster`` of two single-threaded worker processes started here and
shared by the module. Scenes are real COGs written by rasterio; HTTP tests serve them from the
loopback range server.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import rasterio
import xarray as xr
from dask_support import BANDS, aois, collection

import dask
from rasteret import as_collection
from rasteret._collection_reads import records_for
from rasteret.collection import Collection
from rasteret.dask import _layout as layout_mod
from rasteret.dask._chunks import aligned_sizes, auto_size, block_sizes, parse_chunks
from rasteret.dask.xarray import lazy_xarray
from rasteret.errors import MissingDependencyError, NoOverlapWarning, SchemaError
from rasteret.ingest.schema import DATETIME, ID
from rasteret.read.cache import clear_tile_cache
from rasteret.testing.servers import RangeHTTPServer


@pytest.mark.parametrize(
    ("options", "chunks"),
    [
        ({}, 100),
        ({"all_touched": True}, {"y": 77, "x": 130}),
        ({"resolution": 20}, "auto"),  # overview level 1, RasterIO resampling
        ({"resolution": 15, "resampling": "bilinear"}, (2, 64, 96)),
        ({"fill_value": 7, "dtype": "int32"}, {"time": -1, "y": 256}),
    ],
)
def test_lazy_equals_eager_on_a_cluster(
    col: Collection, client: Any, options: dict[str, Any], chunks: Any
) -> None:
    from distributed import get_task_stream

    eager = col.get_xarray(aois(), list(BANDS), **options)
    lazy = col.get_xarray(aois(), list(BANDS), chunks=chunks, **options)
    assert all(isinstance(lazy[b].data, da.Array) for b in BANDS)
    assert dict(lazy.sizes) == dict(eager.sizes)
    assert eager.sizes["time"] == 2  # scenes a and b mosaicked into the first step
    xr.testing.assert_identical(lazy.drop_vars(list(BANDS)), eager.drop_vars(list(BANDS)))
    with get_task_stream(client) as stream:
        computed = lazy.compute()
    xr.testing.assert_identical(computed, eager)
    reads = [t for t in stream.data if str(t["key"]).find("rasteret-read") >= 0]
    blocks = sum(lazy[b].data.npartitions for b in BANDS)
    assert len(reads) == blocks  # one task per block, nothing per tile
    assert len({t["worker"] for t in reads}) == 2  # the work was spread over both workers


REPROJECTED = [
    # (collection fixture, options): one CRS warped elsewhere, and records in two UTM zones
    # read onto either zone (some records pasted, the others warped)
    ("col", {"target_crs": "EPSG:4326"}),
    ("mixed_col", {"target_crs": "EPSG:32633"}),
    ("mixed_col", {"target_crs": "EPSG:32632"}),
]


def _lazy_and_eager(
    collection: Collection, options: dict[str, Any], chunks: Any
) -> tuple[xr.Dataset, xr.Dataset]:
    eager = collection.get_xarray(aois(), list(BANDS), **options)
    lazy = collection.get_xarray(aois(), list(BANDS), chunks=chunks, **options)
    return lazy, eager


@pytest.mark.parametrize("chunks", [100, 257, {"y": 257, "x": 100}])
@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_reprojected_lazy_reads_equal_eager_exactly(
    request: pytest.FixtureRequest, resampling: str, chunks: Any
) -> None:
    # Chunks cut the AOI grids at odd places; every warp goes through the same absolute
    # strips (rasteret.read.warp.warp_calls), so each pixel is computed the same way.
    for fixture, options in REPROJECTED:
        collection = request.getfixturevalue(fixture)
        lazy, eager = _lazy_and_eager(collection, {**options, "resampling": resampling}, chunks)
        assert lazy.sizes["time"] == 2
        with dask.config.set(scheduler="synchronous"):
            computed = lazy.compute()
        xr.testing.assert_identical(computed, eager)
        fill = eager.B04.attrs["_FillValue"]
        assert (eager.B04.values != fill).mean() > 0.3  # the check saw real pixels


@pytest.mark.parametrize(
    ("fixture", "options", "chunks"),
    [
        ("col", {"target_crs": "EPSG:4326"}, 257),
        ("mixed_col", {"target_crs": "EPSG:32633", "resampling": "bilinear"}, (1, 100, 257)),
        ("mixed_col", {"target_crs": "EPSG:32632"}, {"y": 100, "x": 100}),
    ],
)
def test_reprojected_lazy_reads_equal_eager_on_a_cluster(
    request: pytest.FixtureRequest, client: Any, fixture: str, options: dict[str, Any], chunks: Any
) -> None:
    lazy, eager = _lazy_and_eager(request.getfixturevalue(fixture), options, chunks)
    computed = lazy.compute()  # on the LocalCluster's two worker processes
    xr.testing.assert_identical(computed, eager)


def test_auto_chunks_are_tile_multiples_on_tile_edges(
    col: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rasteret.dask import _chunks

    monkeypatch.setattr(_chunks, "DEFAULT_CHUNK_PIXELS", 300)  # 2 tiles of 128 px
    lazy = col.get_xarray(aois()[0], ["B04"], chunks={"y": "auto", "x": 100})
    ys, xs = lazy.B04.data.chunks[1:]
    assert xs[:-1] == (100,) * (len(xs) - 1)  # explicit sizes start at the first pixel
    assert len(ys) > 2
    assert set(ys[1:-1]) == {256}
    top = float(lazy.y.values[0]) + 5.0  # outer edge of the first row
    edges = top - 10.0 * np.cumsum(ys)[:-1]
    assert all((4_600_000.0 - e) % 2560.0 == 0 for e in edges)  # on scene a's tile rows


def test_block_sizes() -> None:
    assert block_sizes(10, 4) == (4, 4, 2)
    assert block_sizes(10, None) == (10,)
    assert block_sizes(0, 4) == (0,)
    assert aligned_sizes(1000, 256, -100) == (156, 256, 256, 256, 76)
    assert aligned_sizes(100, 256, 30) == (30, 70)
    assert auto_size(512) == 2048
    assert auto_size(300) == 2100
    assert auto_size(None) == 2048


@pytest.mark.parametrize("chunks", ["big", 0, -3, (1, 2, 3, 4), {"band": 2}, {"x": 1.5}, True, 2.0])
def test_bad_chunks_are_refused(chunks: Any) -> None:
    with pytest.raises(SchemaError, match="chunk"):
        parse_chunks(chunks)


def _tile_ranges(path: Path) -> dict[tuple[int, int], tuple[int, int]]:
    """(tile row, tile col) -> byte range, as GDAL reports it (the oracle)."""
    out = {}
    with rasterio.open(path) as src:
        th, tw = src.block_shapes[0]
        for r in range(-(-src.height // th)):
            for c in range(-(-src.width // tw)):
                offset = int(src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
                size = int(src.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1))
                out[(r, c)] = (offset, offset + size)
    return out


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


@pytest.mark.integration
def test_a_chunk_reads_only_the_tiles_under_it(files: dict[str, dict[str, Path]]) -> None:
    folder = files["a"]["B04"].parent
    with RangeHTTPServer(folder) as server:
        col_http = collection(files, server.url)
        clear_tile_cache()
        lazy = col_http.get_xarray(aois()[0], ["B04"], chunks=128, max_gap=0, cache_mb=0)
        block = lazy.B04.isel(time=slice(0, 1), y=slice(128, 256), x=slice(256, 384))
        assert block.data.npartitions == 1
        server.clear_log()
        with dask.config.set(scheduler="synchronous"):
            values = block.values
        assert values.shape == (1, 128, 128)
        xmin, xmax = float(block.x[0]) - 5, float(block.x[-1]) + 5
        ymax, ymin = float(block.y[0]) + 5, float(block.y[-1]) - 5
        for scene, (ox, oy) in (("a", (500_000.0, 4_600_000.0)), ("b", (504_000.0, 4_598_000.0))):
            tiles = _tile_ranges(files[scene]["B04"])
            c0, c1 = int((xmin - ox) // 1280), int((xmax - ox - 1e-6) // 1280)
            r0, r1 = int((oy - ymax) // 1280), int((oy - ymin - 1e-6) // 1280)
            expected = [
                tiles[(r, c)]
                for r in range(max(r0, 0), min(r1, 3) + 1)
                for c in range(max(c0, 0), min(c1, 3) + 1)
            ]
            requested = [
                tuple(int(v) for v in rec.range.removeprefix("bytes=").split("-"))
                for rec in server.requests
                if rec.path == f"/{scene}_B04.tif"
            ]
            got = _merged([(start, end + 1) for start, end in requested])
            assert got == _merged(expected), scene


def _many_records(col: Collection, n: int) -> Collection:
    """``n`` records that all point at scene a, one day apart (a 1,000-step time series)."""
    row = col.to_table().filter(pc.equal(col.to_table().column(ID), "a"))
    table = pa.concat_tables([row] * n).combine_chunks()
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    days = pa.array(
        [start + dt.timedelta(days=i) for i in range(n)], table.schema.field(DATETIME).type
    )
    table = table.set_column(
        table.schema.get_field_index(ID), ID, pa.array([f"r{i:04d}" for i in range(n)])
    )
    table = table.set_column(table.schema.get_field_index(DATETIME), DATETIME, days)
    return as_collection(table)


def test_graph_over_1000_records_is_one_task_per_chunk_and_plans_no_tiles(
    col: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph of a 1,000-record time series is made without planning tiles per record:
    whether a record's bands meet the grid is worked out once per grid signature (its
    speed is for the benchmarks; a CPU-time bound here failed on a slow machine)."""
    many = _many_records(col, 1000)
    aoi = aois()[0]
    planned: list[str] = []
    plan_band = layout_mod.plan_band

    def counted(name: str, *args: Any) -> Any:
        planned.append(name)
        return plan_band(name, *args)

    monkeypatch.setattr(layout_mod, "plan_band", counted)
    lazy = many.get_xarray(aoi, list(BANDS), chunks=256)
    assert 0 < len(planned) <= len(BANDS)  # one record's bands: the others share its grid
    records = records_for(many, list(BANDS))
    planned.clear()
    again = lazy_xarray(records, [aoi], "EPSG:4326", list(BANDS), chunks=256)
    assert len(planned) <= len(BANDS)
    assert again.B04.data.name == lazy.B04.data.name  # deterministic task names
    arrays = [lazy[b].data for b in BANDS]
    assert arrays[0].numblocks[0] == 1000
    graph = dict(lazy.__dask_graph__())
    assert len(graph) == sum(a.npartitions for a in arrays)  # O(chunks), nothing per tile
    sample = next(iter(graph.values()))
    spec = sample[1]
    assert len(spec.records) == 1  # a task carries its own records' rows only
    assert len(pickle.dumps(sample)) < 64_000  # a plan, no stores, loops or pools


def test_no_chips_gives_an_empty_lazy_dataset(col: Collection) -> None:
    from shapely import box

    far = box(10.0, 10.0, 10.01, 10.01)
    with pytest.warns(NoOverlapWarning, match="no record meets the AOIs") as lazy_warned:
        lazy = col.get_xarray(far, ["B04"], chunks="auto")
    with pytest.warns(NoOverlapWarning, match="no record meets the AOIs") as eager_warned:
        eager = col.get_xarray(far, ["B04"])
    for caught in (lazy_warned, eager_warned):  # lazy or eager: pointed at the user's line
        assert [w.filename for w in caught] == [__file__]
    with dask.config.set(scheduler="synchronous"):
        xr.testing.assert_identical(lazy.compute(), eager)


def test_without_dask_a_clear_error_names_the_extra(
    col: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "rasteret.dask" or m.startswith("rasteret.dask.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'rasteret\[dask\]'"):
        col.get_xarray(aois(), ["B04"], chunks="auto")
    assert col.get_xarray(aois()[1], ["B04"]).B04.shape[0] == 1  # eager reads need no dask


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_killed_mid_computation_is_retried(
    files: dict[str, dict[str, Path]], client: Any
) -> None:
    from distributed import futures_of, wait

    folder = files["a"]["B04"].parent
    eager = collection(files).get_xarray(aois(), list(BANDS))
    with RangeHTTPServer(folder, latency=0.15) as server:
        col_http = collection(files, server.url)
        lazy = col_http.get_xarray(aois(), list(BANDS), chunks=256, cache_mb=0)
        before = client.run(os.getpid)
        persisted = client.persist(lazy)
        futures = futures_of(persisted)
        victim = None
        deadline = time.monotonic() + 30
        while victim is None and time.monotonic() < deadline:
            for worker, keys in client.processing().items():
                if any("rasteret-read" in str(k) for k in keys):
                    victim = worker
                    break
            else:
                time.sleep(0.02)
        assert victim is not None, "no read task was ever running"
        os.kill(before[victim], signal.SIGKILL)  # the worker process dies mid-task
        wait(futures, timeout=120)
        suspicious = client.run_on_scheduler(
            lambda dask_scheduler: sum(
                ts.suspicious
                for key, ts in dask_scheduler.tasks.items()
                if "rasteret-read" in str(key)
            )
        )
        result = persisted.compute()
        after = client.run(os.getpid)
        assert server.count() > 0
    assert suspicious >= 1  # the scheduler saw a worker die while running a read
    assert set(after.values()) != set(before.values())  # the nanny restarted it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.testing.assert_identical(result, eager)
