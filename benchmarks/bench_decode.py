"""Decode throughput per codec (issue 2): MB of pixels decoded per second on this machine.

Every tile of every image (full resolution and overviews) of the fixture-matrix files is
decoded with :func:`rasteret.tiff.decode.decode_tile`, grouped by codec (compression plus
predictor), on one thread and on a pool of one thread per core; the bytes are in memory, so
this is decoding alone. For reference, ``rasterio`` reads the same files whole (full
resolution, datasets opened beforehand, ``GDAL_CACHEMAX=0`` so that every read decodes again,
local disk with a warm page cache), MB decoded per second on one thread.
A last row does the same for one Sentinel-2-like scene of the read benchmarks (large tiles,
where per-call overhead no longer matters). MB = 10**6 bytes of decoded pixels.

    python benchmarks/bench_decode.py            # ~0.5 s of decoding per codec and method
    python benchmarks/bench_decode.py --quick    # a few passes
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import NotGeoreferencedWarning

import _common
from rasteret.testing.fixtures import FIXTURE_VERSION, write_fixture_matrix
from rasteret.tiff.decode import TileLayout, decode_tile
from rasteret.tiff.header import parse_header

_LERC_STAGE = {1: "deflate", 2: "zstd"}


@dataclass(frozen=True)
class Tile:
    data: bytes
    layout: TileLayout
    rows: int


def codec_label(layout: TileLayout, lerc: tuple[int, ...] | None) -> str:
    """``deflate+pred2``, ``lerc+zstd``, ``JPEG`` ...: what a reader must undo."""
    name = {8: "deflate", 32946: "deflate"}.get(layout.compression, layout.compression_name)
    if lerc and len(lerc) > 1 and lerc[1] in _LERC_STAGE:
        name += f"+{_LERC_STAGE[lerc[1]]}"
    if layout.predictor > 1:
        name += f"+pred{layout.predictor}"
    return name.lower()


def file_tiles(path: Path) -> tuple[str, list[Tile]]:
    """Codec label and every tile (all resolution levels) of one TIFF."""
    data = path.read_bytes()
    header = parse_header(data, url=str(path), object_size=len(data))
    tiles: list[Tile] = []
    label = ""
    for ifd in header.main_ifds:
        layout = TileLayout.from_ifd(ifd, header.byte_order)
        label = label or codec_label(layout, ifd.lerc_parameters)
        per_plane = ifd.tiles_across * ifd.tiles_down
        for i, (offset, count) in enumerate(
            zip(ifd.tile_offsets.tolist(), ifd.tile_byte_counts.tolist(), strict=True)
        ):
            if count == 0:
                continue  # sparse: nothing to decode
            rows = layout.tile_height
            if not ifd.is_tiled:  # the last strip may be short
                rows = min(rows, ifd.image_height - (i % per_plane) * layout.tile_height)
            tiles.append(Tile(data[offset : offset + count], layout, rows))
    return label, tiles


def throughput(fn: Callable[[], int], min_seconds: float) -> tuple[float, int]:
    """Run ``fn`` (returns decoded bytes) until ``min_seconds`` passed; (MB/s, passes)."""
    fn()  # warm up: imports, thread start, page cache
    decoded, passes, start = 0, 0, time.perf_counter()
    while True:
        decoded += fn()
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return decoded / elapsed / 1e6, passes


def decode_serial(tiles: Sequence[Tile]) -> int:
    return sum(decode_tile(t.data, t.layout, rows=t.rows).nbytes for t in tiles)


def decode_pooled(pool: ThreadPoolExecutor, tiles: Sequence[Tile]) -> int:
    return sum(pool.map(lambda t: decode_tile(t.data, t.layout, rows=t.rows).nbytes, tiles))


def rasterio_read(datasets: Sequence[Any]) -> int:
    """Read every open dataset whole (GDAL_CACHEMAX=0: every read decodes again)."""
    return sum(src.read().nbytes for src in datasets)


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    min_seconds = 0.02 if args.quick else 0.5
    fixtures = write_fixture_matrix(_common.data_dir(f"fixtures_v{FIXTURE_VERSION}"))
    groups: dict[str, list[Tile]] = defaultdict(list)
    files: dict[str, list[Path]] = defaultdict(list)
    for path in fixtures.values():
        label, tiles = file_tiles(path)
        groups[label] += tiles
        files[label].append(path)
    corpus = _common.scene_corpus(args.quick)
    first = corpus.specs[0]
    scene = corpus.root / corpus.relpaths[first.scene_id]["B04"]
    s2_label, s2_tiles = file_tiles(scene)
    big = f"{s2_label}, S2-like {first.size}x{first.size} scene, {first.tile}x{first.tile} tiles"
    groups[big], files[big] = s2_tiles, [scene]
    threads = os.cpu_count() or 1
    rows: list[list[Any]] = []
    raw: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for label in [*sorted(k for k in groups if k != big), big]:
            tiles = groups[label]
            one, passes = throughput(functools.partial(decode_serial, tiles), min_seconds)
            many, _ = throughput(functools.partial(decode_pooled, pool, tiles), min_seconds)
            with warnings.catch_warnings(), rasterio.Env(GDAL_CACHEMAX=0), ExitStack() as stack:
                warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the "nogeo" fixture
                datasets = [stack.enter_context(rasterio.open(p)) for p in files[label]]
                gdal, _ = throughput(functools.partial(rasterio_read, datasets), min_seconds)
            ratio = sum(len(t.data) for t in tiles) / max(decode_serial(tiles), 1)
            rows.append([label, len(files[label]), len(tiles), ratio, one, many, gdal, one / gdal])
            raw.append({"codec": label, "files": [p.name for p in files[label]],
                        "tiles": len(tiles), "compressed_over_decoded": ratio,
                        "rasteret_mb_s_1_thread": one, f"rasteret_mb_s_{threads}_threads": many,
                        "rasterio_read_mb_s": gdal, "passes": passes})  # fmt: skip
    _common.print_table(
        "Decoded MB/s per codec (MB = 10^6 bytes of pixels)",
        ["codec", "files", "tiles", "size ratio", "rasteret 1 thread",
         f"rasteret {threads} threads", "rasterio read()", "rasteret/rasterio"],
        rows,
    )  # fmt: skip
    _common.save_results("decode", args, {"min_seconds": min_seconds, "rows": raw})


if __name__ == "__main__":
    main()
