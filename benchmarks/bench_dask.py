"""Dask (issue 8): lazy ``get_xarray`` and partitioned ``sample_points`` on 1 and 2 workers.

Through the loopback HTTP range server with 20 ms latency per request (in a child process),
the same two workloads run three ways: eagerly in this process, and on a
``LocalCluster(n_workers=n, processes=True, threads_per_worker=4)`` of 1 and 2 worker
processes (started once each; each lazy result checked against the eager one, which also
warms the workers up; then timed computing into the workers' memory, ``persist`` + ``wait``,
as a pipeline that reduces or writes on the workers would; gathering hundreds of MB back
into one process is a different measurement):

* xarray: the zone-32N time series of :func:`_common.scene_corpus` (15 dates, B04 + B08,
  4096x4096 at 10 m, 1024x1024 tiles) over a 30 x 30 km box: eager ``get_xarray`` against
  ``get_xarray(chunks="auto").compute()`` (2048-pixel chunks on tile edges: 4 tiles a task);
* points: 200,000 random points over that grid, a Parquet folder of 4 files (one per column
  of tiles: points partitioned spatially, so each tile is read by one task), sampled on all
  15 dates x 2 bands: eager ``sample_points`` against ``sample_points_dask(...).compute()``;
* warped xarray: the zone-33N scenes of the same dates (B04) over a 6 x 6 km box of the
  zone-32N grid, ``target_crs="EPSG:32632"`` (every chip warped, 600 x 600 pixels): eager
  against ``chunks=256`` (3 x 3 chunks a date, cut across the warp strips).

Every run has a cold decoded-tile cache (``cache_mb=0``) and, since session 7, no
nearest-warp maps kept from an earlier run (``clear_nearest_maps`` before each timed run, in
this process and in every worker); every lazy result is checked against the eager one. Per-worker throughput is the tiles (or points) a run handles per second
divided by the worker processes; ``benchmarks/README.md`` extrapolates it to 100 workers.

    python benchmarks/bench_dask.py            # the full run (a few minutes)
    python benchmarks/bench_dask.py --quick    # 3 small dates, 20,000 points
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
import xarray as xr

import _common
import rasteret
from rasteret.dask import sample_points_dask
from rasteret.read.warp import clear_nearest_maps
from rasteret.testing.scenes import record_table

LATENCY = 0.02
EPSG = 32632
BANDS = ("B04", "B08")
WARP_BANDS = ["B04"]
"""The zone-33N scenes of the corpus carry B04 only."""
PARTITIONS = 4
THREADS = 4
"""Threads per worker process: a chunk task waits on the network for most of its time, so a
worker runs a few at once (decoding still goes to the process's one pool, sized to the cores)."""


@contextlib.contextmanager
def cluster(workers: int) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers, processes=True, threads_per_worker=THREADS, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        yield client


def in_workers(client: Any, make: Any) -> None:
    """Compute ``make()`` into the workers' memory (as a pipeline that reduces or writes there
    would), wait, and release it: read throughput, not the transfer to this process."""
    from distributed import futures_of, wait

    persisted = client.persist(make())
    futures = futures_of(persisted)
    wait(futures)
    keys = [f.key for f in futures]
    client.cancel(futures)
    del persisted, futures
    settle(client, keys)


def settle(client: Any, keys: list[Any]) -> None:
    """Wait until the scheduler forgot ``keys`` (a later graph may reuse them)."""

    def forgotten(dask_scheduler: Any, keys: list[Any] = keys) -> bool:
        return not any(k in dask_scheduler.tasks for k in keys)

    while not client.run_on_scheduler(forgotten):
        time.sleep(0.01)


WARP_EPSG = 32633
WARP_CHUNKS = 256


def warp_box() -> shapely.Geometry:
    """A 6 x 6 km box of the zone-32N grid that the zone-33N scenes cover (as bench_reads c)."""
    x0, y0 = _common.SCENE_ORIGINS[EPSG]
    return shapely.box(x0 + 18_000, y0 - 32_000, x0 + 24_000, y0 - 26_000)


def aoi_box() -> shapely.Geometry:
    """A 30 x 30 km box inside the zone-32N scenes (full and quick grids cover 41 km)."""
    x0, y0 = _common.SCENE_ORIGINS[EPSG]
    return shapely.box(x0 + 5_000, y0 - 35_000, x0 + 35_000, y0 - 5_000)


def point_folder(n: int, quick: bool) -> Path:
    """``n`` random points in the scenes' CRS as ``PARTITIONS`` Parquet files (written once)."""
    folder = _common.data_dir("dask_points", f"{n}_tilecols{'_quick' if quick else ''}")
    if len(list(folder.glob("*.parquet"))) == PARTITIONS:
        return folder
    x0, y0 = _common.SCENE_ORIGINS[EPSG]
    rng = np.random.default_rng(8)
    x = np.sort(rng.uniform(x0, x0 + 40_960, n))
    y = rng.uniform(y0 - 40_960, y0, n)
    table = pa.table({"site": np.arange(n, dtype=np.int64), "x": x, "y": y})
    # one file per column of tiles (10,240 m): points partitioned spatially, as users do at
    # scale, so every tile is read by one task
    strip = np.minimum(((x - x0) // (40_960 / PARTITIONS)).astype(int), PARTITIONS - 1)
    for i in range(PARTITIONS):
        pq.write_table(table.filter(pa.array(strip == i)), folder / f"points-{i}.parquet")
    return folder


def tiles_of_read(collection: Any, aoi: shapely.Geometry) -> tuple[int, int]:
    """Tiles (and their bytes) the xarray workload fetches, from rasteret's own plan."""
    from rasteret._collection_reads import records_for
    from rasteret.read import ReadOptions, plan_read

    records = records_for(collection, list(BANDS))
    plan = plan_read(records, [aoi], f"EPSG:{EPSG}", list(BANDS), ReadOptions())
    tiles = plan.fetch_tiles
    return len(tiles), sum(t.end - t.start for t in tiles)


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv, repeat=3)
    corpus = _common.scene_corpus(args.quick)
    specs = [s for s in corpus.specs if s.epsg == EPSG]
    warp_specs = [s for s in corpus.specs if s.epsg == WARP_EPSG]
    n_points = 20_000 if args.quick else 200_000
    folder = point_folder(n_points, args.quick)
    points = pq.read_table(folder)  # the same rows, in the same order, as the folder's files
    aoi = aoi_box()
    read: dict[str, Any] = {"geometry_crs": EPSG, "cache_mb": 0}
    warp_aoi = warp_box()
    warp_read: dict[str, Any] = {**read, "target_crs": f"EPSG:{EPSG}"}
    results: dict[str, Any] = {"latency_s": LATENCY, "points": n_points, "dates": len(specs)}
    rows: list[tuple[str, int, float, float, float]] = []
    with _common.ServerProcess(corpus.root, latency=LATENCY) as server:
        hrefs = corpus.hrefs(server.url)
        table = record_table(specs, {s.scene_id: hrefs[s.scene_id] for s in specs})
        collection = rasteret.build_from_table(table, enrich_cog=True, progress=False)
        warp_table = record_table(warp_specs, {s.scene_id: hrefs[s.scene_id] for s in warp_specs})
        warp_collection = rasteret.build_from_table(warp_table, enrich_cog=True, progress=False)
        tiles, nbytes = tiles_of_read(collection, aoi)
        results["xarray_tiles"] = tiles
        results["xarray_bytes"] = nbytes

        def xarray_eager() -> xr.Dataset:
            return collection.get_xarray(aoi, list(BANDS), **read)

        def points_eager() -> pa.Table:
            return collection.sample_points(points, list(BANDS), geometry_crs=EPSG, cache_mb=0)

        eager_ds = _common.measure(xarray_eager, repeat=args.repeat)

        def warped_eager() -> xr.Dataset:
            return warp_collection.get_xarray(warp_aoi, WARP_BANDS, **warp_read)

        eager_pts = _common.measure(points_eager, repeat=args.repeat)
        eager_warp = _common.measure(warped_eager, repeat=args.repeat, before=clear_nearest_maps)
        warp_chips = int(eager_warp.result.sizes["time"]) * len(WARP_BANDS)
        results["warped_chips"] = warp_chips
        results["warped_shape"] = [int(eager_warp.result.sizes[d]) for d in ("y", "x")]
        results["eager"] = {
            "xarray": eager_ds.as_dict(),
            "points": eager_pts.as_dict(),
            "warped": eager_warp.as_dict(),
        }
        rows.append(("eager (1 process)", 0, eager_ds.median, eager_pts.median, eager_warp.median))
        chunks = None
        for workers in (1, 2):
            with cluster(workers) as client:

                def lazy_read() -> xr.Dataset:
                    return collection.get_xarray(aoi, list(BANDS), chunks="auto", **read)

                def lazy_points() -> Any:
                    return sample_points_dask(
                        collection, folder, list(BANDS), geometry_crs=EPSG, cache_mb=0
                    )

                lazy = lazy_read()
                chunks = lazy[BANDS[0]].data.chunks
                xr.testing.assert_identical(lazy.compute(), eager_ds.result)  # also warms up
                settle(client, list(dict(lazy.__dask_graph__())))
                ds_run = _common.measure(
                    functools.partial(in_workers, client, lazy_read), repeat=args.repeat, warmup=0
                )
                expected = eager_pts.result.to_pandas(types_mapper=pd.ArrowDtype)
                got = lazy_points().compute().reset_index(drop=True)
                assert got.equals(expected), "partitioned samples differ from eager"
                pts_run = _common.measure(
                    functools.partial(in_workers, client, lazy_points), repeat=args.repeat, warmup=0
                )

                def lazy_warped() -> xr.Dataset:
                    return warp_collection.get_xarray(
                        warp_aoi, WARP_BANDS, chunks=WARP_CHUNKS, **warp_read
                    )

                warped = lazy_warped()
                xr.testing.assert_identical(warped.compute(), eager_warp.result)  # exact
                settle(client, list(dict(warped.__dask_graph__())))
                warp_run = _common.measure(
                    functools.partial(in_workers, client, lazy_warped),
                    repeat=args.repeat,
                    warmup=0,
                    before=lambda: client.run(clear_nearest_maps),
                )
            results[f"workers_{workers}"] = {
                "threads_per_worker": THREADS,
                "xarray": ds_run.as_dict(),
                "points": pts_run.as_dict(),
                "warped": warp_run.as_dict(),
            }
            rows.append(
                (
                    f"dask, {workers} worker process(es)",
                    workers,
                    ds_run.median,
                    pts_run.median,
                    warp_run.median,
                )
            )
        results["xarray_chunks"] = chunks
    samples = eager_pts.result.num_rows
    table_rows = []
    for label, workers, ds_s, pts_s, warp_s in rows:
        per = max(workers, 1)
        table_rows.append(
            [
                label,
                ds_s,
                tiles / ds_s / per,
                nbytes / 1e6 / ds_s / per,
                pts_s,
                n_points / pts_s / per,
                samples / pts_s / per,
                warp_s,
                warp_chips / warp_s / per,
            ]
        )
    _common.print_table(
        f"lazy xarray ({tiles} tiles, {nbytes / 1e6:.0f} MB) and {n_points:,} points x "
        f"{len(specs)} dates, warped xarray ({warp_chips} chips of "
        f"{results['warped_shape'][0]}x{results['warped_shape'][1]}), "
        f"{LATENCY * 1000:.0f} ms per request (median of {args.repeat})",
        [
            "run",
            "xarray s",
            "tiles/s per worker",
            "MB/s per worker",
            "points s",
            "points/s per worker",
            "samples/s per worker",
            "warped s",
            "warped chips/s per worker",
        ],
        table_rows,
    )
    results["table"] = table_rows
    _common.save_results("dask", args, results)


if __name__ == "__main__":
    main()
