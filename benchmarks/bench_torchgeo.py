"""TorchGeo training input (issue 6): an epoch of random chips, rasteret's dataset vs TorchGeo's.

The 15-date Sentinel-2-like time series of :func:`_common.scene_corpus` (zone 32N, bands B04
and B08; 4096x4096 uint16 at 10 m in 1024x1024 deflate tiles) is served by the loopback HTTP
store with 20 ms latency before every answer. One epoch is N random 256x256 chips
(``RandomGeoSampler`` over rasteret's dataset, seeded; the same query list for both), read
through ``DataLoader(batch_size=8, collate_fn=stack_samples)`` with 0 and with 2 workers by:

* rasteret: ``Collection.to_torchgeo_dataset(bands=["B04", "B08"])`` (its decoded-tile cache
  is 5 % of RAM by default, as GDAL's block cache); with workers, forked from a process that
  built the collection, so each worker hands its reads to the read server the parent starts
  when it forks them (see ``rasteret.outputs._torchgeo_helper``); the server is stopped
  before each epoch, so its start is part of the epoch;
* TorchGeo: its own ``RasterDataset`` (``separate_files``, bands B04/B08, dates from the file
  names) over the same files as GDAL ``/vsicurl/`` URLs of the same server (``/vsicurl/``
  of the HTTP store rather than ``/vsis3/`` of moto: the same GDAL range reads, without
  moto's own per-request cost), GDAL configured as in every benchmark here.

Each epoch is cold: a fresh TorchGeo dataset (its file-handle cache empty: the files earlier
datasets left open in ``RasterDataset``'s class-level cache are closed) and GDAL's
``/vsicurl/`` cache cleared; rasteret's decoded-tile cache cleared (with workers: the parent's,
which the read server uses). The first chips of both are compared (they must be equal: same
grid, same bilinear RasterIO). Creating the datasets (headers: rasteret's collection build,
TorchGeo's opening of every file) is not timed. The start-up of a worker pool (forking two
workers and shutting them down, no chip read) is timed apart: every epoch of both pays it.
Process CPU is the benchmark process's: with workers it holds rasteret's reads (the read
server) but not TorchGeo's (in its workers); the workers' own CPU (reaped when the epoch's
DataLoader shuts them down) is recorded apart, so process + workers is each reader's whole
CPU per epoch (the loopback store's is in neither).

    python benchmarks/bench_torchgeo.py            # 256 chips per epoch
    python benchmarks/bench_torchgeo.py --quick    # 16 chips of the small corpus
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import RandomGeoSampler

import _common
import rasteret
from rasteret.outputs._torchgeo_helper import stop_server
from rasteret.read.cache import clear_tile_cache
from rasteret.read.warp import clear_nearest_maps
from rasteret.testing.scenes import record_table

LATENCY = 0.02
CHIP = 256
BATCH = 8
BANDS = ("B04", "B08")


def torchgeo_dataset(urls: Sequence[str]) -> RasterDataset:
    """TorchGeo's ``RasterDataset`` over ``/vsicurl/`` URLs of the B04 files."""

    class Scenes(RasterDataset):
        filename_glob = "T32_*_B04.tif"
        filename_regex = r"^T32_(?P<date>\d{8})_(?P<band>B0\d)\.tif$"
        date_format = "%Y%m%d"
        separate_files = True
        all_bands = BANDS

    return Scenes([f"/vsicurl/{u}" for u in urls], bands=list(BANDS))


def forget_torchgeo_handles() -> None:
    """Close the files earlier TorchGeo datasets left open.

    ``RasterDataset`` caches its open files in a class-level ``lru_cache`` (128 entries),
    keyed by dataset and path: a fresh dataset opens its files anew, but the old handles,
    and the decoded blocks GDAL keeps for them (up to GDAL's block cache, 5% of RAM), stay
    in the benchmark process. Every later ``DataLoader`` forks that process, rasteret's and
    TorchGeo's alike; without this, the process forks with ~1 GB more memory than either
    reader of one epoch holds.
    """
    RasterDataset._cached_load_warp_file.cache_clear()
    gc.collect()


def startup(dataset: Any, workers: int) -> float:
    """Seconds to start ``workers`` DataLoader workers and shut them down (no chip read)."""
    loader = DataLoader(dataset, sampler=[], batch_size=BATCH, num_workers=workers)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (DataLoader workers once shut down)."""
    times = os.times()
    return times.children_user + times.children_system


def epoch(dataset: Any, queries: list[Any], workers: int) -> int:
    """Read every query through a DataLoader; returns the number of chips read."""
    loader = DataLoader(
        dataset, sampler=queries, batch_size=BATCH, num_workers=workers, collate_fn=stack_samples
    )
    return sum(len(batch["image"]) for batch in loader)


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    corpus = _common.scene_corpus(args.quick)
    specs = [s for s in corpus.specs if s.epsg == 32632]
    chips = 16 if args.quick else 256
    chip = 64 if args.quick else CHIP
    rows, raw, check = [], [], ""
    with _common.ServerProcess(corpus.root, latency=LATENCY) as server:
        hrefs = corpus.hrefs(server.url)
        table = record_table(specs, {s.scene_id: hrefs[s.scene_id] for s in specs})
        collection = rasteret.build_from_table(table, enrich_cog=True, progress=False)
        ours = collection.to_torchgeo_dataset(bands=list(BANDS))
        generator = torch.Generator().manual_seed(6)
        queries = list(RandomGeoSampler(ours, size=chip, length=chips, generator=generator))
        b04 = [hrefs[s.scene_id]["B04"] for s in specs]
        check = compare(ours, torchgeo_dataset(b04), queries[: min(8, chips)])
        print(f"{len(specs)} scenes, {chips} chips of {chip}x{chip}: {check}", flush=True)
        readers: dict[str, Callable[[], Any]] = {
            "TorchGeo RasterDataset": lambda: torchgeo_dataset(b04),
            "rasteret": lambda: ours,
        }
        for workers in (0, 2):
            seconds: dict[str, _common.Timing] = {}
            gets: dict[str, float] = {}
            worker_cpu: dict[str, list[float]] = {}
            for name, make in readers.items():
                holder: dict[str, Any] = {}
                reaped = worker_cpu[name] = []

                def before(make: Callable[[], Any] = make, holder: dict[str, Any] = holder) -> None:
                    clear_tile_cache()
                    clear_nearest_maps()
                    stop_server()
                    holder.pop("ds", None)
                    forget_torchgeo_handles()
                    holder["ds"] = make()
                    # Also drops GDAL's open connections, which forked workers would share.
                    _common.clear_gdal_cache()
                    server.clear_log()

                def run(
                    w: int = workers, holder: dict[str, Any] = holder, reaped: list[float] = reaped
                ) -> int:
                    before_cpu = children_cpu()
                    chips_read = epoch(holder["ds"], queries, w)
                    reaped.append(children_cpu() - before_cpu)
                    return chips_read

                print(f"{name}, {workers} workers ...", flush=True)
                seconds[name] = _common.measure(run, repeat=args.repeat, warmup=0, before=before)
                gets[name] = server.count() / chips
            theirs, mine = seconds["TorchGeo RasterDataset"], seconds["rasteret"]
            spawn = statistics.median(startup(ours, workers) for _ in range(3)) if workers else 0.0
            cpu = {
                name: statistics.median(
                    c + w for c, w in zip(seconds[name].cpu, worker_cpu[name], strict=True)
                )
                for name in readers
            }
            rows.append([workers, chips, theirs.median, mine.median, chips / theirs.median,
                         chips / mine.median, f"{theirs.median / mine.median:.2f}x",
                         round(cpu["TorchGeo RasterDataset"], 2), round(cpu["rasteret"], 2),
                         round(gets["TorchGeo RasterDataset"], 1), round(gets["rasteret"], 1),
                         round(spawn, 2)])  # fmt: skip
            raw.append({"workers": workers, "chips": chips, "chip": chip,
                        "torchgeo": theirs.as_dict(), "rasteret": mine.as_dict(),
                        "workers_cpu_s": worker_cpu, "gets_per_chip": gets,
                        "worker_startup_s": spawn})  # fmt: skip
    _common.print_table(
        f"One epoch of random {chip}x{chip} chips, {len(specs)}-date series, 2 bands, "
        f"{LATENCY * 1000:.0f} ms store (median s)",
        ["workers", "chips", "TorchGeo s", "rasteret s", "TorchGeo chips/s", "rasteret chips/s",
         "speed-up", "CPU-s TorchGeo", "CPU-s rasteret", "GETs/chip TorchGeo",
         "GETs/chip rasteret", "worker start-up s"],
        rows,
    )  # fmt: skip
    _common.save_results("torchgeo", args, {"latency_s": LATENCY, "check": check, "rows": raw})
    if "DIFFERENT" in check:
        sys.exit("rasteret's and TorchGeo's samples differ (see the check above)")


def compare(ours: Any, theirs: Any, queries: list[Any]) -> str:
    """Whether both datasets return the same samples for ``queries``."""
    same = sum(torch.equal(ours[q]["image"], theirs[q]["image"]) for q in queries)
    verdict = "equal" if same == len(queries) else "DIFFERENT"
    return f"{same}/{len(queries)} samples {verdict} to TorchGeo's"


if __name__ == "__main__":
    main()
