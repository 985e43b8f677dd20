"""Headers per second (issue 2): COG headers parsed through a loopback store with 20 ms latency.

rasteret's enrichment path (:func:`rasteret.ingest.enrich.read_header_async` for every URL at
once, ``max_concurrent=300``, one speculative 64 KiB GET each) against ``rasterio.open()`` of
the same URLs, serially and in a 16-thread pool. rasterio also lists the overviews and block
shapes, so GDAL walks every IFD as rasteret does. GDAL's /vsicurl/ cache is cleared before
each timed run.

    python benchmarks/bench_headers.py            # 1,000 COGs (serial rasterio: first 200)
    python benchmarks/bench_headers.py --quick    # 50 COGs
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import rasterio

import _common
from rasteret._sync import run
from rasteret.ingest.enrich import HeaderResult, read_header_async
from rasteret.io.fetch import DEFAULT_HEADER_PREFIX, FetchOptions, fetch_many
from rasteret.io.ranges import ByteRange

LATENCY = 0.02
MAX_CONCURRENT = 300
POOL_THREADS = 16
SERIAL_LIMIT = 200
"""Serial rasterio opens this many files at most (a rate is a rate; 1,000 take ~a minute)."""


def rasteret_headers(urls: Sequence[str], max_concurrent: int = MAX_CONCURRENT) -> list[int]:
    """Parse every header at once (at most ``max_concurrent`` in flight); IFD counts."""

    async def all_headers() -> list[HeaderResult]:
        gate = asyncio.Semaphore(max_concurrent)
        options = FetchOptions(max_concurrent=max_concurrent)

        async def one(url: str) -> HeaderResult:
            async with gate:
                return await read_header_async(url, options=options)

        return await asyncio.gather(*(one(u) for u in urls))

    return [len(r.header.ifds) for r in run(all_headers())]


def prefixes_only(urls: Sequence[str], max_concurrent: int = MAX_CONCURRENT) -> list[int]:
    """The transport floor: the same 64 KiB GETs through rasteret's io layer, no parsing."""
    jobs = [(u, [ByteRange(0, DEFAULT_HEADER_PREFIX)]) for u in urls]
    views = run(fetch_many(jobs, options=FetchOptions(max_concurrent=max_concurrent)))
    return [len(v[0]) for v in views]


def rasterio_header(url: str) -> int:
    """Open with rasterio, touching what makes GDAL read every IFD; the IFD count."""
    with rasterio.open(url) as src:
        _ = src.profile, src.block_shapes
        return 1 + len(src.overviews(1))


def rasterio_serial(urls: Sequence[str]) -> list[int]:
    return [rasterio_header(u) for u in urls]


def rasterio_pooled(urls: Sequence[str]) -> list[int]:
    with ThreadPoolExecutor(max_workers=POOL_THREADS) as pool:
        return list(pool.map(rasterio_header, urls))


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    n = 50 if args.quick else 1000
    root, names = _common.header_corpus(n + 10)
    names, spare = names[:n], names[n:]
    ifd_count = rasterio_header(str(root / names[0]))  # IFDs of the file, read locally
    rows: list[list[Any]] = []
    raw: list[dict[str, Any]] = []
    with _common.ServerProcess(root, latency=LATENCY) as server:
        urls = [server.url_for(name) for name in names]
        warm = [server.url_for(name) for name in spare]
        rasteret_headers(warm)  # start the event loop, open connections
        rasterio_pooled(warm)  # load GDAL's drivers
        gdal = (rasterio_serial, rasterio_pooled)
        # (label, URLs, function, repeats, what the function must return for every URL)
        cases: list[tuple[str, Sequence[str], Callable[[Sequence[str]], list[int]], int, int]] = [
            (f"rasteret (enrichment path, max_concurrent={MAX_CONCURRENT})", urls,
             rasteret_headers, args.repeat, ifd_count),
            ("floor: the same 64 KiB GETs, no parsing", urls, prefixes_only, args.repeat,
             DEFAULT_HEADER_PREFIX),
            ("rasterio.open, serial", urls[:SERIAL_LIMIT], rasterio_serial, 1, ifd_count),
            (f"rasterio.open, {POOL_THREADS} threads", urls, rasterio_pooled, args.repeat,
             ifd_count),
        ]  # fmt: skip
        for label, case_urls, fn, repeat, expected in cases:
            before = _common.clear_gdal_cache if fn in gdal else None
            server.clear_log()
            timing = _common.measure(
                functools.partial(fn, case_urls),
                repeat=repeat,
                warmup=0,
                before=before,
                server=server,
            )
            if set(timing.result) != {expected}:
                raise SystemExit(f"{label}: expected {expected} for every COG, got {timing.result}")
            runs = len(timing.runs)
            gets = server.count(method="GET") / (runs * len(case_urls))
            heads = server.count(method="HEAD") / (runs * len(case_urls))
            rate = len(case_urls) / timing.median
            cpu = timing.cpu_median
            rows.append([label, len(case_urls), timing.median, rate, gets, heads, cpu])
            raw.append({"method": label, "files": len(case_urls), "headers_per_s": rate,
                        "gets_per_file": gets, "heads_per_file": heads,
                        **timing.as_dict()})  # fmt: skip
    _common.print_table(
        f"COG headers through a loopback store, {LATENCY * 1000:.0f} ms latency per request",
        [
            "method",
            "files",
            "wall s",
            "headers/s",
            "GET per file",
            "HEAD per file",
            "CPU s (client + server)",
        ],
        rows,
    )
    _common.save_results("headers", args, {"latency_s": LATENCY, "rows": raw})


if __name__ == "__main__":
    main()
