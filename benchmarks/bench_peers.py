"""rasteret against async-tiff, another async reader of COGs, on the same pixel reads.

async-tiff (Development Seed; Rust, with object_store for I/O and its own decoders on a
thread pool) fetches and decodes tiles of TIFFs in object stores. It does not plan windows,
warp or sample points, so the window code below is what its users write themselves: the
AOI's window on the file's grid (rasterio's ``from_bounds`` snapping, as ``bench_reads``
does for rasterio), the tiles it needs (each fetched and decoded once per file, however
many AOIs need it), pasted and cropped. Scenarios a, b and d of ``bench_reads.py`` (same-grid
windows, and whole scenes at the 1/8 overview level; c warps, which async-tiff does not),
over the same corpus and the same 20 ms loopback store:

- rasteret ``get_numpy`` (headers from its index, decoded-tile cache cleared);
- async-tiff with every file opened in the timed run (``TIFF.open``: its header GETs), then
  the tiles fetched (``fetch_tiles``) and decoded (``Tile.decode``), every file at once;
- async-tiff with the files opened beforehand (headers in memory, as rasteret's index holds
  them): fetch and decode only - the same work as rasteret's read;
- the floor of ``bench_reads`` (exactly the tiles rasteret's plan needs).

Every chip async-tiff returns must equal rasteret's, pixel for pixel.

Points: scenarios A and B of ``bench_points.py`` (10,000 points x 15 scenes and 1,000,000
points x 1 scene, 2 bands each). An async-tiff user fetches and decodes the tiles and then
does the per-point work themselves: here the tiles are pasted into whole rasters (the points
fall in every tile of these scenes, so every tile is needed: checked against rasteret's plan)
and :func:`bench_points.minimal_point_work` makes the same Arrow table rasteret returns (the
pixel of each point, one take per raster, nodata as null), checked against rasteret's.

    python benchmarks/bench_peers.py            # full scenes (written once, ~2 min)
    python benchmarks/bench_peers.py --quick    # 3 dates of 1024x1024 scenes; 3 point scenes
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import async_tiff
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from affine import Affine
from async_tiff import TIFF
from obstore.store import HTTPStore
from rasterio.windows import Window, from_bounds

import _common
import bench_points
import rasteret
from bench_reads import (
    LATENCY,
    Key,
    Scenario,
    clear_caches,
    compare,
    plan_floor,
    rasteret_read,
    scenario_files,
    scenarios,
)
from rasteret._collection_reads import records_for
from rasteret.read.cache import clear_tile_cache
from rasteret.read.points import plan_points
from rasteret.testing.scenes import record_table

SCENARIOS = ("a", "b", "d")
"""The scenarios of ``bench_reads`` async-tiff can do: no warping (c)."""

Files = list[tuple[str, str, str]]
"""(scene id, band, path in the store) of every file a scenario reads."""


# -- async-tiff, as its users read windows ----------------------------------------------------


def level(tiff: TIFF, overview: int) -> tuple[Any, Affine]:
    """The IFD of the full-resolution image, or of the overview ``overview`` times smaller,
    and its grid (from the GeoTIFF tie point and pixel scale of the first IFD)."""
    full = tiff.ifds[0]
    ifd = full
    if overview:
        width = full.image_width // overview
        ifd = next(i for i in tiff.ifds if i.image_width == width)
    tiepoint, scale = full.model_tiepoint, full.model_pixel_scale
    if tiepoint is None or scale is None:
        raise ValueError("expected a GeoTIFF with a tie point and a pixel scale")
    i, j, _, x, y, _ = tiepoint
    sx, sy = scale[:2]
    factor = full.image_width / ifd.image_width
    return ifd, Affine(sx * factor, 0.0, x - i * sx, 0.0, -sy * factor, y + j * sy)


def tile_grid(ifd: Any) -> tuple[int, int]:
    """Tiles across and down of a tiled IFD."""
    count = ifd.tile_count
    if count is None:
        raise ValueError("expected a tiled TIFF, got a stripped one")
    return int(count[0]), int(count[1])


def window_of(scenario: Scenario, aoi: int, ifd: Any, grid: Affine) -> Window:
    """The window of AOI ``aoi`` on ``grid`` (the whole image for overview reads)."""
    if scenario.overview:
        return Window(0, 0, ifd.image_width, ifd.image_height)
    window = from_bounds(*scenario.aois[aoi].bounds, transform=grid)
    return window.round_offsets().round_lengths()


def tiles_of(window: Window, ifd: Any) -> list[tuple[int, int]]:
    """``(column, row)`` of every tile of ``ifd`` the window overlaps."""
    across, down = tile_grid(ifd)
    tw, th = ifd.tile_width, ifd.tile_height
    rows = range(max(window.row_off // th, 0), min((window.row_off + window.height - 1) // th + 1, down))  # fmt: skip
    cols = range(max(window.col_off // tw, 0), min((window.col_off + window.width - 1) // tw + 1, across))  # fmt: skip
    return [(c, r) for r in rows for c in cols]


def paste(window: Window, ifd: Any, tiles: dict[tuple[int, int], np.ndarray], fill: Any) -> np.ndarray:  # fmt: skip
    """The window's pixels from the decoded tiles (``fill`` outside the image)."""
    first = next(iter(tiles.values()))
    out = np.full((int(window.height), int(window.width)), fill, dtype=first.dtype)
    tw, th = ifd.tile_width, ifd.tile_height
    r0, c0 = int(window.row_off), int(window.col_off)
    for (tc, tr), tile in tiles.items():
        top, left = max(tr * th, r0, 0), max(tc * tw, c0, 0)
        bottom = min((tr + 1) * th, r0 + out.shape[0], ifd.image_height)
        right = min((tc + 1) * tw, c0 + out.shape[1], ifd.image_width)
        if bottom > top and right > left:
            out[top - r0 : bottom - r0, left - c0 : right - c0] = tile[
                top - tr * th : bottom - tr * th, left - tc * tw : right - tc * tw
            ]
    return out


async def read_file(scenario: Scenario, tiff: TIFF, scene_id: str, band: str) -> dict[Key, Any]:
    """Every AOI of ``scenario`` from one file: its tiles fetched and decoded once each."""
    ifd, grid = level(tiff, scenario.overview)
    windows = [window_of(scenario, i, ifd, grid) for i in range(len(scenario.aois))]
    needed = sorted({xy for w in windows for xy in tiles_of(w, ifd)})
    fetched = await ifd.fetch_tiles(needed)
    decoded = await asyncio.gather(*(tile.decode() for tile in fetched))
    tiles = {xy: np.asarray(a)[..., 0] for xy, a in zip(needed, decoded, strict=True)}
    nodata = ifd.gdal_nodata
    fill = float(nodata) if nodata else 0
    return {(scene_id, band, i): paste(w, ifd, tiles, fill) for i, w in enumerate(windows)}


async def open_all(store: HTTPStore, files: Files) -> dict[str, TIFF]:
    """Every file's TIFF (its header read), all at once."""
    paths = sorted({path for _, _, path in files})
    opened = await asyncio.gather(*(TIFF.open(p, store=store) for p in paths))
    return dict(zip(paths, opened, strict=True))


def async_tiff_read(
    scenario: Scenario, store: HTTPStore, files: Files, opened: dict[str, TIFF] | None = None
) -> dict[Key, Any]:
    """Every chip of ``scenario`` with async-tiff, every file at once (opening them first
    unless ``opened`` holds them)."""

    async def run() -> dict[Key, Any]:
        tiffs = opened if opened is not None else await open_all(store, files)
        parts = await asyncio.gather(
            *(read_file(scenario, tiffs[path], sid, band) for sid, band, path in files)
        )
        return {key: chip for part in parts for key, chip in part.items()}

    return asyncio.run(run())


# -- points: async-tiff's tiles, then the per-point work in NumPy --------------------------------


async def whole_raster(tiff: TIFF) -> np.ndarray:
    """The full-resolution image of a single-band file: every tile fetched, decoded, pasted."""
    ifd = tiff.ifds[0]
    across, down = tile_grid(ifd)
    xy = [(c, r) for r in range(down) for c in range(across)]
    fetched = await ifd.fetch_tiles(xy)
    decoded = await asyncio.gather(*(tile.decode() for tile in fetched))
    whole = Window(0, 0, ifd.image_width, ifd.image_height)
    return paste(whole, ifd, {k: np.asarray(a)[..., 0] for k, a in zip(xy, decoded, strict=True)}, 0)  # fmt: skip


def async_tiff_points(
    store: HTTPStore,
    files: Files,
    points: pa.Table,
    grid: Any,
    nodata: float,
    records: list[tuple[str, Any]],
    opened: dict[str, TIFF] | None = None,
) -> pa.Table:
    """rasteret's table of ``points`` from async-tiff's tiles and the minimal per-point work."""

    async def run() -> list[np.ndarray]:
        tiffs = opened if opened is not None else await open_all(store, files)
        return list(await asyncio.gather(*(whole_raster(tiffs[path]) for _, _, path in files)))

    rasters: dict[str, dict[str, np.ndarray]] = {}
    for (scene, band, _), raster in zip(files, asyncio.run(run()), strict=True):
        rasters.setdefault(scene, {})[band] = raster
    return bench_points.minimal_point_work(points, rasters, grid, nodata, records)


def run_points(
    name: str,
    collection: rasteret.Collection,
    files: Files,
    x: np.ndarray,
    y: np.ndarray,
    server: _common.ServerProcess,
    repeat: int,
    grid: Any,
    nodata: float,
) -> dict[str, Any]:
    records = records_for(collection, list(bench_points.BANDS))
    plan = plan_points(records, x, y, f"EPSG:{bench_points.EPSG}", list(bench_points.BANDS))
    floor = _common.measure_floor(list(plan.tiles.values()), repeat=repeat, server=server)
    tiles = len(plan.tiles)
    del plan  # its point arrays would pin recycled memory the timed reads reuse
    store = HTTPStore.from_url(server.url, client_options={"allow_http": True})
    opened = asyncio.run(open_all(store, files))
    every = sum(np.prod(tile_grid(t.ifds[0])) for t in opened.values())
    if every != tiles:
        raise SystemExit(f"{name}: the points need {tiles} tiles of {every}; not every tile")
    points = bench_points.points_table(x, y)
    rows = [(r.id, r.datetime) for r in records]
    ours = _common.measure(
        lambda: bench_points.rasteret_points(collection, points),
        repeat=max(repeat, bench_points.RASTERET_REPEAT),
        before=clear_tile_cache,
        server=server,
    )
    cold = _common.measure(
        lambda: async_tiff_points(store, files, points, grid, nodata, rows), repeat=repeat
    )
    warm = _common.measure(
        lambda: async_tiff_points(store, files, points, grid, nodata, rows, opened),
        repeat=max(repeat, bench_points.RASTERET_REPEAT),
    )
    for other in (cold, warm):
        bench_points.check_minimal(ours.result, other.result)
    return {"scenario": name, "rasteret": ours, "async_tiff_open": cold,
            "async_tiff_opened": warm, "floor": floor, "samples": len(x) * len(files)}  # fmt: skip


def points_scenarios(quick: bool, repeat: int) -> list[dict[str, Any]]:
    """Scenarios A and B of ``bench_points`` (fewer scenes and points when ``quick``), through
    a store of their own (the same latency) serving ``bench_points``' scenes."""
    count, n_a, n_b = (3, 1_000, 50_000) if quick else (15, 10_000, 1_000_000)
    root, specs = bench_points.scenes(count, 2048)
    bands = bench_points.BANDS
    files = [(s.scene_id, b, f"{s.scene_id}_{b}.tif") for s in specs for b in bands]
    _, grid, nodata = bench_points.read_rasters(root, specs[:1])
    with _common.ServerProcess(root, latency=LATENCY) as server:
        hrefs = {s.scene_id: {b: server.url_for(f"{s.scene_id}_{b}.tif") for b in bands} for s in specs}  # fmt: skip
        collection = rasteret.build_from_table(
            record_table(specs, hrefs), workspace_dir=_common.data_dir("points", "ws_peers"),
            enrich_cog=True, force=True, progress=False,
        )  # fmt: skip
        x, y = bench_points.random_points(n_a, 2048, seed=1)
        out = [run_points(f"A: {n_a:,} pts x {count} scenes", collection, files, x, y, server,
                          repeat, grid, nodata)]  # fmt: skip
        one = collection.where(ds.field("id") == specs[0].scene_id)
        x, y = bench_points.random_points(n_b, 2048, seed=2)
        out.append(run_points(f"B: {n_b:,} pts x 1 scene", one, files[: len(bands)], x, y,
                              server, repeat, grid, nodata))  # fmt: skip
    return out


# -- the benchmark ------------------------------------------------------------------------------


def run_scenario(
    scenario: Scenario,
    collection: rasteret.Collection,
    corpus: _common.SceneCorpus,
    server: _common.ServerProcess,
    repeat: int,
) -> dict[str, Any]:
    selected = collection.where(pc.field("proj:epsg").isin(list(scenario.zones)))
    files = scenario_files(scenario, corpus)
    floor = plan_floor(selected, scenario, server, repeat)
    store = HTTPStore.from_url(server.url, client_options={"allow_http": True})
    opened = asyncio.run(open_all(store, files))

    def counted(fn: Any, before: Any = None) -> tuple[_common.Timing, float]:
        if before is not None:
            before()
        fn()  # untimed warm-up, its requests not counted
        server.clear_log()
        timing = _common.measure(fn, repeat=repeat, warmup=0, before=before, server=server)
        return timing, server.count() / len(timing.runs)

    ours, ours_gets = counted(lambda: rasteret_read(selected, scenario), clear_caches)
    cold, cold_gets = counted(lambda: async_tiff_read(scenario, store, files))
    warm, warm_gets = counted(lambda: async_tiff_read(scenario, store, files, opened))
    zone_of = {s.scene_id: s.epsg for s in corpus.specs}
    checks = {compare(ours.result, cold.result, zone_of), compare(ours.result, warm.result, zone_of)}  # fmt: skip
    return {
        "scenario": scenario.key,
        "label": scenario.label,
        "files": len(files),
        "rasteret": ours,
        "async_tiff_open": cold,
        "async_tiff_opened": warm,
        "floor": floor,
        "gets": (ours_gets, cold_gets, warm_gets),
        "check": " / ".join(sorted(checks)),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    corpus = _common.scene_corpus(args.quick)
    results = []
    with _common.ServerProcess(corpus.root, latency=LATENCY) as server:
        table = record_table(list(corpus.specs), corpus.hrefs(server.url))
        collection = rasteret.build_from_table(table, enrich_cog=True, progress=False)
        for scenario in scenarios(corpus):
            if scenario.key in SCENARIOS:
                print(f"scenario {scenario.key}: {scenario.label} ...", flush=True)
                results.append(run_scenario(scenario, collection, corpus, server, args.repeat))
    print("points ...", flush=True)
    point_results = points_scenarios(args.quick, args.repeat)
    rows, raw = [], []
    for r in results:
        ours, cold, warm = r["rasteret"], r["async_tiff_open"], r["async_tiff_opened"]
        floor = r["floor"].seconds
        rows.append([f"{r['scenario']}. {r['label']}", ours.median, cold.median, warm.median,
                     floor, f"{ours.median / floor:.2f}x", f"{warm.median / floor:.2f}x",
                     f"{warm.median / ours.median:.2f}x", f"{cold.median / ours.median:.2f}x",
                     ours.cpu_median, warm.cpu_median,
                     *(round(g, 1) for g in r["gets"]), r["check"]])  # fmt: skip
        raw.append({"scenario": r["scenario"], "label": r["label"], "files": r["files"],
                    "rasteret": ours.as_dict(), "async_tiff_open": cold.as_dict(),
                    "async_tiff_opened": warm.as_dict(), "floor": r["floor"].as_dict(LATENCY),
                    "gets_per_run": dict(zip(("rasteret", "async_tiff_open", "async_tiff_opened"),
                                             r["gets"], strict=True)),
                    "check": r["check"]})  # fmt: skip
    _common.print_table(
        f"rasteret and async-tiff, same reads, loopback store with {LATENCY * 1000:.0f} ms "
        "latency (median s)",
        ["scenario", "rasteret s", "async-tiff s (opens files)", "async-tiff s (files opened)",
         "floor s", "rasteret/floor", "async-tiff opened/floor",
         "rasteret faster than async-tiff (opened)", "rasteret faster than async-tiff (opens)",
         "rasteret CPU s", "async-tiff CPU s (opened)", "GETs rasteret",
         "GETs async-tiff (opens)", "GETs async-tiff (opened)", "check vs rasteret"],
        rows,
    )  # fmt: skip
    point_rows, point_raw = [], []
    for r in point_results:
        ours, cold, warm, floor = (r["rasteret"], r["async_tiff_open"], r["async_tiff_opened"],
                                   r["floor"].seconds)  # fmt: skip
        point_rows.append([r["scenario"], ours.median, cold.median, warm.median, floor,
                           f"{ours.median / floor:.2f}x", f"{warm.median / floor:.2f}x",
                           f"{warm.median / ours.median:.2f}x",
                           f"{cold.median / ours.median:.2f}x", ours.cpu_median,
                           warm.cpu_median, r["samples"] / ours.median,
                           r["samples"] / warm.median])  # fmt: skip
        point_raw.append({"scenario": r["scenario"], "samples": r["samples"],
                          "rasteret": ours.as_dict(), "async_tiff_open": cold.as_dict(),
                          "async_tiff_opened": warm.as_dict(),
                          "floor": r["floor"].as_dict(LATENCY)})  # fmt: skip
    _common.print_table(
        "Point samples x 2 bands: rasteret sample_points, and async-tiff's tiles with the "
        "minimal per-point work in NumPy (median s; tables checked equal)",
        ["scenario", "rasteret s", "async-tiff s (opens files)", "async-tiff s (files opened)",
         "floor s", "rasteret/floor", "async-tiff opened/floor",
         "rasteret faster than async-tiff (opened)", "rasteret faster than async-tiff (opens)",
         "rasteret CPU s", "async-tiff CPU s (opened)", "rasteret samples/s",
         "async-tiff samples/s (opened)"],
        point_rows,
    )  # fmt: skip
    payload = {"latency_s": LATENCY, "async_tiff": async_tiff.__version__}
    _common.save_results("peers", args, {**payload, "rows": raw, "points": point_raw})
    if any("DIFFERENT" in r["check"] for r in results):
        sys.exit("rasteret and async-tiff returned different arrays (see 'check' above)")


if __name__ == "__main__":
    main()
