"""Warp CPU per chip: rasteret's strip warps against one GDAL warp of the whole chip.

Since the window-independent warps (issue 8), :func:`rasteret.read.warp.warp_region` runs
one ``rasterio.warp.reproject`` per 256-pixel strip of the output CRS's absolute lattice
(whole strips, also where they stick out of the chip) with a fixed kernel scale; before, it
ran one ``reproject`` of the whole chip with GDAL's defaults. This measures what that costs
on the chips of ``bench_reads.py`` scenario c: 296 x 296 pixels of EPSG:32632 warped from the
zone-33N region the read plan assembles for them (uint16 with nodata), each kernel, the chip
shifted by 13 pixels between runs (chips land anywhere on the strips). Process CPU time,
median.

    python benchmarks/bench_warp.py            # 60 chips per kernel and method
    python benchmarks/bench_warp.py --quick    # 10
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

import _common
from rasteret.read.grid import Grid, transform_bounds
from rasteret.read.warp import _mem, warp_calls, warp_region

SIZE = 296
"""Chip side in pixels (bench_reads scenario c: a 2,960 m AOI at 10 m)."""
KERNELS = ("nearest", "bilinear", "cubic")
SRC_ORIGIN = _common.SCENE_ORIGINS[32633]
DST_ORIGIN = _common.SCENE_ORIGINS[32632]


def one_window(canvas: np.ndarray, read: Any, grid: Grid) -> np.ndarray:
    """The warp before issue 8: one ``reproject`` of the whole chip, GDAL's defaults."""
    with (
        _mem(canvas, read.src_transform, read.src_crs, read.nodata, None) as src,
        _mem(np.zeros((2, *grid.shape), canvas.dtype), grid.transform, grid.crs, None) as dst,
    ):
        reproject(
            rasterio.band(src, 1),
            rasterio.band(dst, 1),
            resampling=read.resampling,
            dst_nodata=0,
            init_dest_nodata=True,
            dst_alpha=2,
        )
        return dst.read(1)


def strips(canvas: np.ndarray, read: Any, grid: Grid) -> np.ndarray:
    return warp_region(canvas, canvas != 0, read, grid, use_mask=False)[0]


Case = tuple[np.ndarray, Any, Grid]
"""A chip's source region (as the read plan cuts it), its band read, and the chip grid."""


def cases(kernel: str) -> list[Case]:
    """Chips of scenario c's AOI, each with the zone-33N region the read plan would assemble.

    The region is the chip's footprint in the source CRS plus the plan's kernel margin
    (:func:`rasteret.read.bands.plan_band`), so pixels of a strip outside the chip find no
    source pixels, as in a real read.
    """
    rng = np.random.default_rng(4)
    n = 1024
    yy, xx = np.mgrid[0:n, 0:n]
    scene = 1500 + 600 * np.sin(xx / 41.0) * np.cos(yy / 29.0) + rng.normal(0, 60, (n, n))
    scene = scene.clip(1, 60000).astype("uint16")
    scene[(xx + yy) < 300] = 0  # nodata, as at a swath edge
    # scenario c's AOI: 20,400 m right of and 28,560 m below the zone-32N scenes' corner
    x, y = DST_ORIGIN[0] + 20_400, DST_ORIGIN[1] - 28_560
    xs, ys = rasterio.warp.transform("EPSG:32632", "EPSG:32633", [x], [y])
    left, top = round(xs[0], -1) - 3000, round(ys[0], -1) + 3000  # the scene's corner
    margin = {"nearest": 3, "bilinear": 3, "cubic": 4}[kernel]
    out = []
    for i in range(7):
        grid = Grid("EPSG:32632", (10.0, 0.0, x + 130.0 * (i % 7), 0.0, -10.0, y), SIZE, SIZE)
        x0, y0, x1, y1 = transform_bounds(grid.bounds, grid.crs, "EPSG:32633")
        c0, c1 = math.floor((x0 - left) / 10) - margin, math.ceil((x1 - left) / 10) + margin
        r0, r1 = math.floor((top - y1) / 10) - margin, math.ceil((top - y0) / 10) + margin
        region = np.ascontiguousarray(scene[r0:r1, c0:c1])
        transform = (10.0, 0.0, left + c0 * 10.0, 0.0, -10.0, top - r0 * 10.0)
        read = SimpleNamespace(
            nodata=0, src_transform=transform, src_crs="EPSG:32633", resampling=Resampling[kernel]
        )
        out.append((region, read, grid))
    return out


def cpu_ms(fn: Callable[[np.ndarray, Any, Grid], Any], chips: list[Case], n: int) -> float:
    fn(*chips[0])  # warm-up: CRS objects, GDAL drivers
    times = []
    for i in range(n):
        start = time.process_time()
        fn(*chips[i % len(chips)])
        times.append(time.process_time() - start)
    return float(np.median(times)) * 1000


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv, repeat=60)
    n = 10 if args.quick else args.repeat
    rows: list[list[Any]] = []
    kernels: dict[str, dict[str, float]] = {}
    results = {"chip": SIZE, "chips": n, "kernels": kernels}
    for kernel in KERNELS:
        chips = cases(kernel)
        calls = float(np.mean([len(warp_calls(read, grid)) for _, read, grid in chips]))
        old = cpu_ms(one_window, chips, n)
        new = cpu_ms(strips, chips, n)
        kernels[kernel] = {"one_window_ms": old, "strips_ms": new, "calls": calls}
        rows.append([kernel, old, new, new / old, calls])
    _common.print_table(
        f"warp CPU per {SIZE}x{SIZE} chip (EPSG:32633 -> 32632, median of {n})",
        ["kernel", "one window ms", "strips ms", "strips / one window", "GDAL calls per chip"],
        rows,
    )
    _common.save_results("warp", args, results)


if __name__ == "__main__":
    main()
