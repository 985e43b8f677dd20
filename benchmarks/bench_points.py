"""Point samples (issue 5): ``Collection.sample_points`` against rasterio ``sample()`` and the floor.

Through the loopback HTTP range server with 20 ms latency per request, in a child process:

* A: 10,000 random points x 15 scenes (a time series over one grid) x 2 bands;
* B: 1,000,000 random points on one scene x 2 bands.

Scenes: 2048 x 2048 uint16, deflate + horizontal predictor, 512-pixel tiles, overviews, one
COG per band (:mod:`rasteret.testing.scenes`), cached in ``benchmarks/.data/points/``. The
points are given in the scenes' CRS, so every method does the same work.

Methods: rasteret with a cold decoded-tile cache, given the users' points table (a site id
and x/y columns, made once outside the timings, as the floor has no input to make);
rasterio ``sample()`` per file, serially (GDAL reading the same URLs via /vsicurl/ with the
settings of :data:`_common.GDAL_ENV`, its cache cleared before each run); the same with a
16-thread pool (A: one task per file; B: the points of each file split into 16 chunks, each
on its own dataset); and the floor: fetching exactly the tiles the points need, one GET per
tile all in flight at once, and decoding them on all cores (the larger of the two). Every
method's values are checked against rasteret's.

A second floor adds the per-point work no reader avoids: :func:`minimal_point_work`, the
same output written minimally in NumPy/pyarrow from rasters already decoded (pixel of each
point, one take per file, nodata as null, the same Arrow table), timed alone and added to
the floor ("floor incl. minimal per-point work"; the original floor column is unchanged).
rasteret's median is over at least :data:`RASTERET_REPEAT` timed reads (the others: ``--repeat``).
rasteret and both floors get one untimed full-size run first (memory pages faulted in; the
tile cache is cleared before every run); the first full-size rasteret call, without it,
is reported on its own row. rasterio runs take seconds to minutes and get no extra warm-up.

    python benchmarks/bench_points.py            # the full run, ~8 min (rasterio B: once each)
    python benchmarks/bench_points.py --quick    # 3 scenes, 1,000 and 50,000 points
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import rasterio

import _common
import rasteret
from rasteret._collection_reads import records_for
from rasteret.read.cache import clear_tile_cache
from rasteret.read.points import plan_points
from rasteret.testing.scenes import SceneSpec, record_table, write_scene

LATENCY = 0.02
POOL_THREADS = 16
RASTERET_REPEAT = 7
"""Timed rasteret reads at least (their median is reported): one B read takes ~60 ms on a
shared two-core machine, and the first reads after the rasterio and minimal-work runs still
fault memory back in, so three reads leave the median to one or two of those."""
EPSG = 32632
ORIGIN = (699960.0, 5400000.0)
BANDS = ("B04", "B08")


def scenes(count: int, size: int) -> tuple[Path, list[SceneSpec]]:
    """``count`` dates of one ``size``-pixel grid, written once under ``.data/points/``."""
    root = _common.data_dir("points", f"{size}px")
    specs = [
        SceneSpec(f"p{i:02d}", EPSG, ORIGIN, size=size, tile=512, seed=i,
                  datetime=dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=5 * i))
        for i in range(count)
    ]  # fmt: skip
    for spec in specs:
        write_scene(spec, root, bands=BANDS)
    return root, specs


def random_points(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    extent = size * 10.0
    return rng.uniform(ORIGIN[0], ORIGIN[0] + extent, n), rng.uniform(
        ORIGIN[1] - extent, ORIGIN[1], n
    )


def points_table(x: np.ndarray, y: np.ndarray) -> pa.Table:
    """The users' points: a site id and x/y columns (made once, outside the timings)."""
    return pa.table({"site": np.arange(len(x), dtype=np.int64), "x": x, "y": y})


def rasteret_points(collection: Any, points: pa.Table) -> pa.Table:
    return collection.sample_points(points, list(BANDS), geometry_crs=EPSG)


def rasterio_file(url: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with rasterio.open(url) as src:
        return np.array([v[0] for v in src.sample(zip(x.tolist(), y.tolist(), strict=True))])


def rasterio_serial(urls: Sequence[str], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    return [rasterio_file(u, x, y) for u in urls]


def rasterio_pooled(urls: Sequence[str], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """One task per file, or per (file, chunk of points) when there are fewer files than
    threads; each task opens its own dataset (GDAL handles are not thread-safe)."""
    chunks = max(1, POOL_THREADS // len(urls))
    parts = np.array_split(np.arange(len(x)), chunks)
    tasks = [(u, p) for u in urls for p in parts]
    with ThreadPoolExecutor(max_workers=POOL_THREADS) as pool:
        done = list(pool.map(lambda t: rasterio_file(t[0], x[t[1]], y[t[1]]), tasks))
    return [np.concatenate(done[i * chunks : (i + 1) * chunks]) for i in range(len(urls))]


def _wkb_points(x: np.ndarray, y: np.ndarray) -> pa.Array:
    """Little-endian 2-D WKB points, 21 bytes each, in one structured-array pass."""
    records = np.empty(len(x), dtype=[("o", "u1"), ("t", "<u4"), ("x", "<f8"), ("y", "<f8")])
    records["o"], records["t"], records["x"], records["y"] = 1, 1, x, y
    offsets = np.arange(len(x) + 1, dtype=np.int32) * 21
    return pa.Array.from_buffers(
        pa.binary(), len(x), [None, pa.py_buffer(offsets), pa.py_buffer(records.view(np.uint8))]
    )


def minimal_point_work(
    points: pa.Table, rasters: dict[str, dict[str, np.ndarray]], grid: Any, nodata: float,
    records: Sequence[tuple[str, dt.datetime | None]],
) -> pa.Table:  # fmt: skip
    """The per-point work of a point read, written minimally: ``rasters[record][band]`` are
    the decoded rasters (all on one ``grid``, an affine transform; all in memory, all tiles
    needed), the points are in the rasters' CRS. Pixel of each point (inverse affine,
    floor), one ``numpy.take`` per raster, nodata as null, and the table rasteret returns:
    point-major rows, the input columns, WKB geometry, record id and datetime, the bands,
    dictionary-encoded CRS columns, row and col."""
    x = points.column("x").to_numpy()
    y = points.column("y").to_numpy()
    inv = ~grid
    height, width = next(iter(next(iter(rasters.values())).values())).shape
    col = np.floor(x * inv.a + inv.c).astype(np.int64)
    row = np.floor(y * inv.e + inv.f).astype(np.int64)
    inside = np.flatnonzero((row >= 0) & (row < height) & (col >= 0) & (col < width))
    every = len(inside) == len(x)
    if not every:
        row, col = row[inside], col[inside]
    flat = row * width + col
    n, nr = len(inside), len(records)
    point_index = None if every and nr == 1 else np.repeat(inside, nr)
    columns: dict[str, Any] = {}
    for name in points.column_names:
        column = points.column(name)
        columns[name] = column if point_index is None else column.take(pa.array(point_index))
    if point_index is None:
        columns["geometry"] = _wkb_points(x, y)
    else:
        columns["geometry"] = _wkb_points(x[point_index], y[point_index])
    record_index = pa.array(np.tile(np.arange(nr, dtype=np.int32), n))
    columns["record_id"] = pa.array([r for r, _ in records]).take(record_index)
    stamps = pa.array([d for _, d in records], pa.timestamp("us", tz="UTC"))
    columns["datetime"] = stamps.take(record_index)
    for band in BANDS:
        if nr == 1:
            values = np.take(rasters[records[0][0]][band].reshape(-1), flat)
        else:
            values = np.empty((n, nr), dtype=rasters[records[0][0]][band].dtype)
            for k, (rid, _) in enumerate(records):
                values[:, k] = np.take(rasters[rid][band].reshape(-1), flat)
            values = values.reshape(-1)
        columns[band] = pa.array(values, mask=values == nodata)
    crs = pa.array([f"EPSG:{EPSG}"])
    zeros = pa.array(np.zeros(n * nr, dtype=np.int32))
    columns["point_crs"] = pa.DictionaryArray.from_arrays(zeros, crs)
    columns["raster_crs"] = pa.DictionaryArray.from_arrays(zeros, crs)
    row32, col32 = row.astype(np.int32), col.astype(np.int32)
    columns["row"] = pa.array(row32 if nr == 1 else np.repeat(row32, nr))
    columns["col"] = pa.array(col32 if nr == 1 else np.repeat(col32, nr))
    return pa.table(columns)


def machine_floor_with_points(floor: _common.Floor, minimal: _common.Timing) -> float:
    """The least wall time of a point read on this machine, generously: the machine floor,
    or all the CPU work (fetch, decode and the minimal per-point work) spread over every
    core, whichever is longer. Generous because the per-point work may hide entirely in the
    store's first-byte latency and split perfectly over the cores."""
    cores = os.cpu_count() or 1
    return max(floor.machine_floor(LATENCY), (floor.cpu_seconds + minimal.cpu_median) / cores)


def read_rasters(
    root: Path, specs: Sequence[SceneSpec]
) -> tuple[dict[str, dict[str, np.ndarray]], Any, float]:
    """Every scene's bands decoded whole (rasterio, untimed), their grid and nodata."""
    rasters: dict[str, dict[str, np.ndarray]] = {}
    for spec in specs:
        rasters[spec.scene_id] = {}
        for band in BANDS:
            with rasterio.open(root / f"{spec.scene_id}_{band}.tif") as src:
                rasters[spec.scene_id][band] = src.read(1)
                grid, nodata = src.transform, src.nodata
    return rasters, grid, float(nodata)


def check_minimal(reference: pa.Table, minimal: pa.Table) -> None:
    """The minimal work must produce rasteret's values, rows and record order."""
    for name in ("site", "record_id", *BANDS, "row", "col"):
        if not reference[name].equals(minimal[name]):
            raise SystemExit(f"minimal per-point work: column {name!r} differs from rasteret's")


def check(label: str, table: pa.Table, urls: Sequence[str], values: list[np.ndarray]) -> None:
    """``values[k]`` (rasterio, file ``urls[k]``) must equal rasteret's column of that file."""
    scenes_ = sorted({u.rsplit("/", 1)[-1].rsplit("_", 1)[0] for u in urls})
    for url, got in zip(urls, values, strict=True):
        stem = url.rsplit("/", 1)[-1][:-4]
        scene, band = stem.rsplit("_", 1)
        rows = table.filter(pc.equal(table["record_id"], scene))
        mine = rows[band].fill_null(0).to_numpy()
        if rows.num_rows != len(got) or not np.array_equal(mine, got):
            raise SystemExit(
                f"{label}: values of {stem} differ from rasteret's ({len(scenes_)} scenes)"
            )


def run_scenario(
    name: str, collection: Any, urls: Sequence[str], x: np.ndarray, y: np.ndarray,
    server: _common.ServerProcess, args: Any, pooled_repeat: int,
    rasters: tuple[dict[str, dict[str, np.ndarray]], Any, float],
) -> tuple[list[list[Any]], list[dict[str, Any]]]:  # fmt: skip
    records = records_for(collection, list(BANDS))
    plan = plan_points(records, x, y, f"EPSG:{EPSG}", list(BANDS))
    floor = _common.measure_floor(list(plan.tiles.values()), repeat=args.repeat, server=server)
    samples = len(plan) * len(BANDS)
    del plan  # its point arrays would pin recycled memory the timed reads reuse
    rasteret_points(collection, points_table(x[:100], y[:100]))  # loop, connections, imports
    rasterio_pooled(urls[:1], x[:100], y[:100])  # GDAL drivers
    clear_tile_cache()
    points = points_table(x, y)
    first = _common.measure(functools.partial(rasteret_points, collection, points), repeat=1,
                            warmup=0)  # fmt: skip
    minimal = _common.measure(functools.partial(
        minimal_point_work, points, {r.id: rasters[0][r.id] for r in records}, rasters[1],
        rasters[2], [(r.id, r.datetime) for r in records],
    ), repeat=args.repeat)  # fmt: skip
    check_minimal(first.result, minimal.result)
    # the tables are checked: let their memory go (recycled by the timed reads)
    first, minimal = replace(first, result=None), replace(minimal, result=None)
    floor2 = floor.seconds + minimal.median
    cases: list[tuple[str, Callable[[], Any], int, int, Callable[[], None] | None]] = [
        ("rasteret sample_points", functools.partial(rasteret_points, collection, points),
         max(args.repeat, RASTERET_REPEAT), 1, clear_tile_cache),
        ("rasterio sample(), serial", functools.partial(rasterio_serial, urls, x, y), 1, 0,
         _common.clear_gdal_cache),
        (f"rasterio sample(), {POOL_THREADS} threads",
         functools.partial(rasterio_pooled, urls, x, y), pooled_repeat, 0,
         _common.clear_gdal_cache),
    ]  # fmt: skip
    rows: list[list[Any]] = []
    raw: list[dict[str, Any]] = []
    reference = None
    for label, fn, repeat, warmup, before in cases:
        server.clear_log()
        timing = _common.measure(fn, repeat=repeat, warmup=warmup, before=before)
        gets = server.count(method="GET") / (len(timing.runs) + warmup)
        if reference is None:
            reference = timing.result
        else:
            check(label, reference, urls, timing.result)
        rows.append([name, label, timing.median, timing.median / floor.seconds,
                     timing.median / floor2, samples / timing.median, gets])  # fmt: skip
        raw.append({"scenario": name, "method": label, "samples": samples, "gets": gets,
                    **timing.as_dict()})  # fmt: skip
    rows.append([name, "rasteret sample_points, first full-size call (no warm-up run)",
                 first.median, first.median / floor.seconds, first.median / floor2,
                 samples / first.median, ""])  # fmt: skip
    raw.append({"scenario": name, "method": "rasteret first call", "samples": samples,
                **first.as_dict()})  # fmt: skip
    rows.append([name, "floor: needed tiles, 1 GET each; decode on all cores", floor.seconds, 1.0,
                 floor.seconds / floor2, samples / floor.seconds, floor.tiles])  # fmt: skip
    raw.append({"scenario": name, "method": "floor", "samples": samples,
                **floor.as_dict(LATENCY)})  # fmt: skip
    machine = floor.machine_floor(LATENCY)
    rows.append([name, "machine floor: latency + CPU of fetch (client, store) and decode per core",
                 machine, machine / floor.seconds, machine / floor2, samples / machine,
                 ""])  # fmt: skip
    arrival = floor.arrival_s or floor.seconds
    rows.append([name, "arrival floor: each tile decoded once its bytes are in, on all cores",
                 arrival, arrival / floor.seconds, arrival / floor2, samples / arrival,
                 ""])  # fmt: skip
    machine2 = machine_floor_with_points(floor, minimal)
    rows.append([name, "machine floor incl. minimal per-point work (all of it on every core)",
                 machine2, machine2 / floor.seconds, machine2 / floor2, samples / machine2,
                 ""])  # fmt: skip
    rows.append([name, "minimal per-point work alone (NumPy/pyarrow, rasters decoded)",
                 minimal.median, "", "", "", ""])  # fmt: skip
    rows.append([name, "floor incl. minimal per-point work (floor + the row above)", floor2,
                 floor2 / floor.seconds, 1.0, samples / floor2, ""])  # fmt: skip
    raw.append({"scenario": name, "method": "minimal per-point work", "samples": samples,
                "floor_incl_points_s": floor2, "machine_floor_incl_points_s": machine2,
                **minimal.as_dict()})  # fmt: skip
    return rows, raw


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv, configure=_common.add_bandwidth_option)
    bandwidth = _common.store_bandwidth(args)
    count, n_a, n_b = (3, 1_000, 50_000) if args.quick else (15, 10_000, 1_000_000)
    root, specs = scenes(count, 2048)
    rows: list[list[Any]] = []
    raw: list[dict[str, Any]] = []
    with _common.ServerProcess(root, latency=LATENCY, bandwidth=bandwidth) as server:
        hrefs = {
            s.scene_id: {b: server.url_for(f"{s.scene_id}_{b}.tif") for b in BANDS} for s in specs
        }
        collection = rasteret.build_from_table(
            record_table(specs, hrefs), workspace_dir=_common.data_dir("points", "ws"),
            enrich_cog=True, force=True,
        )  # fmt: skip
        x, y = random_points(n_a, 2048, seed=1)
        urls = [hrefs[s.scene_id][b] for s in specs for b in BANDS]
        rasters = read_rasters(root, specs)
        part_rows, part_raw = run_scenario(f"A: {n_a:,} pts x {count} scenes", collection, urls,
                                           x, y, server, args, args.repeat, rasters)  # fmt: skip
        rows += part_rows
        raw += part_raw
        one = collection.where(ds.field("id") == specs[0].scene_id)
        x, y = random_points(n_b, 2048, seed=2)
        urls = [hrefs[specs[0].scene_id][b] for b in BANDS]
        part_rows, part_raw = run_scenario(
            f"B: {n_b:,} pts x 1 scene", one, urls, x, y, server, args, 1, rasters
        )  # rasterio: minutes per run
        rows += part_rows
        raw += part_raw
    _common.print_table(
        f"Point samples x {len(BANDS)} bands through a loopback store, "
        f"{LATENCY * 1000:.0f} ms latency per request",
        [
            "scenario",
            "method",
            "wall s",
            "x floor",
            "x floor incl. minimal per-point work",
            "samples/s",
            "GETs (floor: tiles)",
        ],
        rows,
    )
    _common.save_results("points", args, {"latency_s": LATENCY, "rows": raw})


if __name__ == "__main__":
    main()
