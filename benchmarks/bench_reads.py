"""Pixel reads (issue 4): rasteret vs rasterio/GDAL vs the floor, over a 20 ms loopback store.

Sentinel-2-like scenes (:func:`_common.scene_corpus`: 4096x4096 uint16 at 10 m, 1024x1024
deflate+predictor tiles, overviews, a 15-date time series in UTM 32N with B04/B08 and one in
33N with B04, both covering the 12 deg E zone border) are served by a loopback HTTP store that
sleeps 20 ms before every answer. Scenarios:

a. one 5 x 5 km AOI over the 15-scene time series (1 band; 4 tiles per scene);
b. 4 AOIs x 15 scenes x 2 bands;
c. a 3 x 3 km AOI on the zone border: 15 scenes of each zone, warped onto EPSG:32632
   (nearest) - zone 32 pasted, zone 33 warped;
d. whole scenes at 1/8 resolution (the overview level), 15 scenes.

Each scenario is timed for rasteret (``Collection.get_numpy``, tile cache cleared), rasterio
per file as TorchGeo does (open, window read(s), close; ``WarpedVRT`` for the other zone;
``read(out_shape=)`` for d), the same in a 16-thread pool (GDAL's /vsicurl/ cache cleared
before each run), and the floor (``_common.measure_floor`` over exactly the tiles rasteret's
plan needs, each decoded down to the last row the plan needs; the details also give the
decode of those tiles whole). The details table adds the *CPU floor*: the CPU seconds of that fetch (client and
server process) plus that decode, divided by the cores - on one machine the store, the HTTP
client and the decoders share the cores, so ``max(fetch, decode)`` cannot be reached - and
rasteret's own CPU seconds (client and server) per core, and the *machine floor*: the
store's first-byte latency plus the CPU floor (no byte arrives earlier, and all that CPU work
comes after it), at least ``max(fetch, decode)`` - what no reader can beat on this machine.
Arrays are compared: same-grid reads
must be identical; warped reads report their share of equal pixels.

    python benchmarks/bench_reads.py            # full scenes (written once, ~2 min)
    python benchmarks/bench_reads.py --quick    # 3 dates of 1024x1024 scenes
    python benchmarks/bench_reads.py --scenario b --no-rasterio   # one scenario, rasteret only
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rasterio.windows import from_bounds

import _common
import rasteret
from rasteret._collection_reads import records_for
from rasteret.read import ReadOptions, plan_read
from rasteret.read.cache import clear_tile_cache
from rasteret.read.warp import clear_nearest_maps
from rasteret.testing.scenes import record_table

LATENCY = 0.02
POOL_THREADS = 16
CRS = "EPSG:32632"
X0, Y0 = _common.SCENE_ORIGINS[32632]


def aoi(dx: float, dy: float, size: float) -> shapely.Polygon:
    """A square AOI in EPSG:32632, ``dx``/``dy`` metres right of / below the scene corner."""
    return shapely.box(X0 + dx, Y0 - dy - size, X0 + dx + size, Y0 - dy)


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    aois: list[shapely.Polygon]
    bands: list[str]
    zones: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    overview: int = 0
    """Read whole scenes at 1/``overview`` resolution (rasterio ``out_shape``)."""


def scenarios(corpus: _common.SceneCorpus) -> list[Scenario]:
    n = len(corpus.specs) // 2
    spec = corpus.specs[0]
    extent = spec.size * spec.resolution
    return [
        Scenario("a", f"1 AOI x {n} scenes x 1 band", [aoi(18000, 18000, 4960)], ["B04"], (32632,)),
        Scenario(
            "b",
            f"4 AOIs x {n} scenes x 2 bands",
            [
                aoi(18000, 18000, 4960),
                aoi(1200, 30000, 4960),
                aoi(31000, 4000, 4960),
                aoi(8000, 8000, 4960),
            ],
            ["B04", "B08"],
            (32632,),
        ),
        Scenario(
            "c",
            f"1 AOI across 2 UTM zones x {n} dates, warped to {CRS}",
            [aoi(20400, 28560, 2960)],
            ["B04"],
            (32632, 32633),
            {"target_crs": CRS},
        ),
        Scenario(
            "d",
            f"whole scene at 1/8 resolution x {n} scenes",
            [aoi(0, 0, extent)],
            ["B04"],
            (32632,),
            {"resolution": spec.resolution * 8},
            overview=8,
        ),
    ]


# -- rasterio/GDAL, as TorchGeo reads ------------------------------------------------------------

Key = tuple[str, str, int]
"""(record id, band, AOI index)."""


def rasterio_file(scenario: Scenario, scene_id: str, band: str, url: str) -> dict[Key, Any]:
    """Open one file and read every AOI of the scenario from it (TorchGeo's per-file step)."""
    out: dict[Key, Any] = {}
    with rasterio.open(url) as src:
        for i, geom in enumerate(scenario.aois):
            if scenario.overview:
                shape = (src.height // scenario.overview, src.width // scenario.overview)
                out[(scene_id, band, i)] = src.read(1, out_shape=shape)
                continue
            if src.crs.to_string() == CRS:
                window = from_bounds(*geom.bounds, transform=src.transform)
                window = window.round_offsets().round_lengths()
                out[(scene_id, band, i)] = src.read(1, window=window, boundless=True)
                continue
            x0, y0, x1, y1 = geom.bounds
            res = src.res[0]
            grid = from_origin(x0, y1, res, res)
            with WarpedVRT(
                src,
                crs=CRS,
                transform=grid,
                width=round((x1 - x0) / res),
                height=round((y1 - y0) / res),
                resampling=Resampling.nearest,
            ) as vrt:
                out[(scene_id, band, i)] = vrt.read(1)  # fmt: skip
    return out


def rasterio_serial(scenario: Scenario, files: Sequence[tuple[str, str, str]]) -> dict[Key, Any]:
    out: dict[Key, Any] = {}
    for scene_id, band, url in files:
        out.update(rasterio_file(scenario, scene_id, band, url))
    return out


def rasterio_pooled(scenario: Scenario, files: Sequence[tuple[str, str, str]]) -> dict[Key, Any]:
    out: dict[Key, Any] = {}
    with ThreadPoolExecutor(max_workers=POOL_THREADS) as pool:
        for part in pool.map(lambda f: rasterio_file(scenario, *f), files):
            out.update(part)
    return out


# -- rasteret --------------------------------------------------------------------------------------


def clear_caches() -> None:
    """Before each timed rasteret run: no decoded tile, no nearest-warp map kept from the
    last (each run asks GDAL for its maps again)."""
    clear_tile_cache()
    clear_nearest_maps()


def rasteret_read(collection: rasteret.Collection, scenario: Scenario) -> dict[Key, Any]:
    arr, index = collection.get_numpy(
        scenario.aois, scenario.bands, geometry_crs=CRS, return_index=True, **scenario.options
    )
    if arr.ndim == 3:
        arr = arr[:, None]
    return {
        (rid, band, int(ai)): arr[n, c]
        for n, (rid, ai) in enumerate(zip(index.record_id, index.aoi_index, strict=True))
        for c, band in enumerate(scenario.bands)
    }


def compare(ours: dict[Key, Any], theirs: dict[Key, Any], zone_of: dict[str, int]) -> str:
    """``identical`` or what differs; warped chips (zone 33) report their share of equal pixels."""
    if set(ours) != set(theirs):
        return f"DIFFERENT chips: {sorted(set(ours) ^ set(theirs))[:4]}"
    same_grid_bad, warped_equal, warped_total = [], 0, 0
    for key, a in ours.items():
        b = theirs[key]
        if a.shape != b.shape:
            return f"DIFFERENT shapes at {key}: {a.shape} vs {b.shape}"
        if zone_of[key[0]] == 32632:
            if not np.array_equal(a, b):
                same_grid_bad.append(key)
        else:
            warped_equal += int((a == b).sum())
            warped_total += a.size
    if same_grid_bad:
        return f"DIFFERENT pixels in {len(same_grid_bad)} same-grid chips, e.g. {same_grid_bad[0]}"
    if warped_total:
        return f"same-grid identical; warped {100 * warped_equal / warped_total:.2f}% equal"
    return "identical"


# -- the benchmark ------------------------------------------------------------------------------------


def scenario_files(
    scenario: Scenario, corpus: _common.SceneCorpus, base_url: str | None = None
) -> list[tuple[str, str, str]]:
    """``(scene id, band, file)`` of every file ``scenario`` reads: its URL under
    ``base_url``, or its path relative to the corpus root."""
    return [
        (s.scene_id, band, corpus.relpaths[s.scene_id][band] if base_url is None
         else corpus.hrefs(base_url)[s.scene_id][band])
        for s in corpus.specs
        if s.epsg in scenario.zones
        for band in scenario.bands
    ]  # fmt: skip


def plan_floor(
    selected: rasteret.Collection,
    scenario: Scenario,
    server: _common.ServerProcess,
    repeat: int,
) -> _common.Floor:
    """The floor of ``scenario`` on the records ``selected``: exactly the tiles rasteret's
    plan fetches."""
    records = records_for(selected, scenario.bands)
    plan = plan_read(records, scenario.aois, CRS, scenario.bands, ReadOptions(**scenario.options))
    return _common.measure_floor(plan.fetch_tiles, repeat=repeat, server=server)


def run_scenario(
    scenario: Scenario,
    collection: rasteret.Collection,
    corpus: _common.SceneCorpus,
    server: _common.ServerProcess,
    repeat: int,
    *,
    rasterio: bool = True,
) -> dict[str, Any]:
    selected = collection.where(pc.field("proj:epsg").isin(list(scenario.zones)))
    zone_of = {s.scene_id: s.epsg for s in corpus.specs}
    files = scenario_files(scenario, corpus, server.url)
    floor = plan_floor(selected, scenario, server, repeat)

    def counted(
        fn: Callable[[], Any], before: Callable[[], None], runs: int, warmup: int = 0
    ) -> tuple[Any, float]:
        for _ in range(warmup):  # untimed, and its requests not counted
            before()
            fn()
        server.clear_log()
        timing = _common.measure(fn, repeat=runs, warmup=0, before=before, server=server)
        return timing, server.count() / len(timing.runs)

    ours, ours_gets = counted(
        lambda: rasteret_read(selected, scenario), clear_caches, repeat, warmup=1
    )
    if not rasterio:  # rasteret against itself: the timing rows say nothing, the check nothing
        skipped = _common.Timing([float("nan")], ours.result, [float("nan")], [float("nan")])
        serial = pooled = skipped
        serial_gets = pooled_gets = float("nan")
    else:
        serial, serial_gets = counted(
            lambda: rasterio_serial(scenario, files), _common.clear_gdal_cache, 1
        )
        pooled, pooled_gets = counted(
            lambda: rasterio_pooled(scenario, files), _common.clear_gdal_cache, repeat
        )
    if rasterio:
        check = compare(ours.result, serial.result, zone_of)
        check_pooled = compare(ours.result, pooled.result, zone_of)
        if check_pooled != check:
            check += f" (pooled: {check_pooled})"
    else:
        check = "not checked (--no-rasterio)"
    return {
        "scenario": scenario.key,
        "label": scenario.label,
        "chips": len(ours.result) // len(scenario.bands),
        "files": len(files),
        "rasteret": ours,
        "serial": serial,
        "pooled": pooled,
        "floor": floor,
        "gets": (ours_gets, serial_gets, pooled_gets),
        "check": check,
    }


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", default="", help="comma-separated scenario keys (default: all; not saved)"
    )
    parser.add_argument(
        "--no-rasterio", action="store_true", help="time rasteret and the floor only (not saved)"
    )
    _common.add_bandwidth_option(parser)


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv, configure=_options)
    wanted = {k.strip() for k in args.scenario.split(",") if k.strip()}
    if wanted or args.no_rasterio:
        args.save = False  # a partial run never replaces the saved figures
    bandwidth = _common.store_bandwidth(args)
    corpus = _common.scene_corpus(args.quick)
    results = []
    with _common.ServerProcess(corpus.root, latency=LATENCY, bandwidth=bandwidth) as server:
        table = record_table(list(corpus.specs), corpus.hrefs(server.url))
        collection = rasteret.build_from_table(table, enrich_cog=True, progress=False)
        first = corpus.specs[0]
        rasterio_file(scenarios(corpus)[0], first.scene_id, "B04",
                      corpus.hrefs(server.url)[first.scene_id]["B04"])  # load GDAL  # fmt: skip
        for scenario in scenarios(corpus):
            if wanted and scenario.key not in wanted:
                continue
            print(f"scenario {scenario.key}: {scenario.label} ...", flush=True)
            results.append(
                run_scenario(
                    scenario, collection, corpus, server, args.repeat, rasterio=not args.no_rasterio
                )
            )
    main_rows, detail_rows, raw = [], [], []
    for r in results:
        ours, pooled, floor = r["rasteret"].median, r["pooled"].median, r["floor"].seconds
        speedup = "-" if pooled != pooled else f"{pooled / ours:.2f}x"  # NaN: rasterio not run
        main_rows.append([f"{r['scenario']}. {r['label']}", ours, r["serial"].median, pooled,
                          floor, f"{ours / floor:.2f}x", speedup])  # fmt: skip
        f = r["floor"]
        cores = os.cpu_count() or 1
        detail_rows.append([r["scenario"], r["chips"], f.tiles, f.fetched_bytes / 1e6,
                            f.decoded_bytes / 1e6, f.fetch.median, f.decode.median,
                            f.decode_whole.median if f.decode_whole else "-",
                            f.fetch.cpu_median,
                            f.fetch_coalesced.cpu_median if f.fetch_coalesced else "-",
                            f.cpu_bound,
                            r["rasteret"].cpu_median / cores,
                            f"{r['rasteret'].cpu_median / f.cpu_seconds:.2f}x",
                            f.machine_floor(LATENCY), f"{ours / f.machine_floor(LATENCY):.2f}x",
                            f.arrival_s or "-",
                            f"{ours / f.arrival_s:.2f}x" if f.arrival_s else "-",
                            *(round(g, 1) for g in r["gets"]), r["check"]])  # fmt: skip
        raw.append({"scenario": r["scenario"], "label": r["label"], "chips": r["chips"],
                    "files": r["files"], "rasteret": r["rasteret"].as_dict(),
                    "rasterio_serial": r["serial"].as_dict(),
                    "rasterio_pooled": r["pooled"].as_dict(), "floor": f.as_dict(LATENCY),
                    "gets_per_run": dict(zip(("rasteret", "serial", "pooled"), r["gets"],
                                             strict=True)),
                    "check": r["check"]})  # fmt: skip
    _common.print_table(
        f"Pixel reads over a loopback store with {LATENCY * 1000:.0f} ms latency (median s)",
        ["scenario", "rasteret s", "rasterio serial s", f"rasterio {POOL_THREADS} threads s",
         "floor s", "rasteret/floor", "speedup vs pooled"],
        main_rows,
    )  # fmt: skip
    _common.print_table(
        "Details: the floor's parts, CPU (client + server) per core, GETs per run, array check",
        ["scenario", "chips", "tiles", "MB fetched", "MB decoded", "floor fetch s",
         "floor decode s", "whole tiles decode s", "fetch CPU s (GET per tile)",
         "fetch CPU s (coalesced)", "CPU floor s", "rasteret CPU s",
         "CPU rasteret/floor", "machine floor s", "rasteret/machine floor", "arrival floor s",
         "rasteret/arrival floor", "GETs rasteret", "GETs serial", "GETs pooled", "check vs rasterio"],
        detail_rows,
    )  # fmt: skip
    _common.save_results("reads", args, {"latency_s": LATENCY, "rows": raw})
    if any("DIFFERENT" in r["check"] for r in results):
        sys.exit("rasteret and rasterio returned different arrays (see 'check' above)")


if __name__ == "__main__":
    main()
