"""Shared plumbing of the benchmark scripts: data cache, loopback server, timing, tables, floor.

The scripts in this folder are not tests; each prints a Markdown table and (in a full run)
writes its raw figures to ``benchmarks/results/{name}.json``. Generated data lives in
``benchmarks/.data/`` (git-ignored; ``RASTERET_BENCH_DATA`` moves it) and is reused.

The object store is :class:`rasteret.testing.servers.RangeHTTPServer` run in a *child process*
(:class:`ServerProcess`), so its Python threads never compete for the benchmark's GIL, as a
real object store would not. GDAL is configured through the environment as a knowledgeable
user would (:data:`GDAL_ENV`); everything else is GDAL's default.

>>> t = measure(lambda: sum(range(1000)), repeat=3, warmup=0)
>>> len(t.runs), t.median >= t.best
(3, True)
>>> print(format_table(["a", "b"], [[1, 2.5]]))
| a | b |
| ---: | ---: |
| 1 | 2.5 |
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import functools
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "BENCH_DIR",
    "DATA_DIR",
    "GDAL_ENV",
    "RESULTS_DIR",
    "Floor",
    "SCENE_ORIGINS",
    "SceneCorpus",
    "ServerProcess",
    "Timing",
    "clear_gdal_cache",
    "data_dir",
    "fmt",
    "format_table",
    "header_corpus",
    "machine_info",
    "measure",
    "measure_floor",
    "parse_args",
    "print_table",
    "save_results",
    "scene_corpus",
]

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("RASTERET_BENCH_DATA", BENCH_DIR / ".data"))
RESULTS_DIR = BENCH_DIR / "results"

GDAL_ENV: dict[str, str] = {
    # Do not list the "directory" of every file on open (a /vsicurl/ URL has none to list).
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # Do not probe for .aux.xml / .msk / .ovr side-car files.
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
}
"""GDAL settings of every rasterio run: what rioxarray/TorchGeo users get by default plus the
two settings every cloud guide recommends. GDAL's own defaults stay: parallel multi-range
reads of the blocks a window needs (``GDAL_HTTP_MULTIRANGE=YES``), merged consecutive ranges,
16 KiB first read on open, no ``VSI_CACHE``, single-threaded decoding per dataset."""
for _key, _value in GDAL_ENV.items():
    os.environ.setdefault(_key, _value)


# -- command line, data folders, results ---------------------------------------------------------


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    *,
    repeat: int = 3,
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The options every benchmark accepts: ``--quick``, ``--repeat``, ``--no-save``.

    A quick run uses small inputs and one repeat; it never overwrites ``results/``.
    ``configure`` adds a script's own options to the parser.
    """
    parser = argparse.ArgumentParser(description=description)
    if configure is not None:
        configure(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: small data, seconds")
    parser.add_argument("--repeat", type=int, default=None, help=f"timed runs (default {repeat})")
    parser.add_argument("--no-save", action="store_true", help="do not write results/*.json")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else repeat
    args.save = not (args.quick or args.no_save)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load} (1/5/15 min) at start", flush=True)
    return args


def add_bandwidth_option(parser: argparse.ArgumentParser) -> None:
    """``--bandwidth MBPS``: the store sends each response at that rate at most (see
    :class:`ServerProcess`); read it back with :func:`store_bandwidth`."""
    parser.add_argument(
        "--bandwidth",
        type=float,
        default=0.0,
        help="MB/s per response the store sends at most (default: unlimited; not saved)",
    )


def store_bandwidth(args: argparse.Namespace) -> float | None:
    """The ``--bandwidth`` of ``args`` in bytes/s for :class:`ServerProcess` (None: no cap).
    A throttled run never replaces the saved figures: it clears ``args.save``."""
    if not args.bandwidth:
        return None
    args.save = False
    return float(args.bandwidth) * 1e6


def data_dir(*parts: str) -> Path:
    """``DATA_DIR / parts``, created if missing."""
    path = DATA_DIR.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS and the versions of everything measured."""
    import imagecodecs
    import numpy
    import obstore
    import pyarrow
    import rasterio

    import rasteret

    cpu = platform.processor() or platform.machine()
    memory_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "rasteret": rasteret.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "obstore": obstore.__version__,
        "imagecodecs": imagecodecs.__version__,
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "gdal_env": GDAL_ENV,
    }


def save_results(name: str, args: argparse.Namespace, payload: dict[str, Any]) -> Path | None:
    """Write ``results/{name}.json`` (machine, options, payload) unless the run is quick."""
    if not args.save:
        return None
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    body = {"benchmark": name, "machine": machine_info(), "repeat": args.repeat, **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=1, default=str) + "\n")
    tmp.replace(path)
    print(f"\nraw figures: {path.relative_to(BENCH_DIR.parent)}")
    return path


# -- tables ------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; numeric columns are right-aligned."""
    cells = [[fmt(v) for v in row] for row in rows]
    align = [
        "---:" if all(_looks_numeric(r[i]) for r in cells) and cells else "---"
        for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell.rstrip("x%"))
    except ValueError:
        return cell == "-"
    return True


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Print ``### title`` and the table; return the table text."""
    text = format_table(headers, list(rows))
    print(f"\n### {title}\n\n{text}", flush=True)
    return text


# -- timing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated runs of one thing, and the CPU they used."""

    runs: list[float]
    result: Any = field(default=None, repr=False, compare=False)
    """What the last run returned."""
    cpu: list[float] = field(default_factory=list)
    """CPU seconds of this process (every thread) per run."""
    server_cpu: list[float] = field(default_factory=list)
    """CPU seconds of the :class:`ServerProcess` per run (when one was given)."""

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def cpu_median(self) -> float:
        """Median CPU seconds per run: this process plus the server process."""
        server = self.server_cpu or [0.0] * len(self.cpu)
        return statistics.median(c + s for c, s in zip(self.cpu, server, strict=True))

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "best_s": self.best,
            "runs_s": self.runs,
            "cpu_s": self.cpu,
            "server_cpu_s": self.server_cpu,
        }


def measure(
    fn: Callable[[], Any],
    *,
    repeat: int = 3,
    warmup: int = 1,
    before: Callable[[], Any] | None = None,
    server: ServerProcess | None = None,
) -> Timing:
    """Time ``fn`` ``repeat`` times after ``warmup`` untimed runs; ``before`` runs untimed first.

    Process CPU time is recorded per run too, and the server's when ``server`` is given.
    """
    result = None
    for _ in range(warmup):
        if before is not None:
            before()
        result = fn()
    runs, cpu, server_cpu = [], [], []
    for _ in range(max(repeat, 1)):
        if before is not None:
            before()
        served = server.cpu_seconds() if server is not None else 0.0
        used = time.process_time()
        start = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - start)
        cpu.append(time.process_time() - used)
        if server is not None:
            server_cpu.append(server.cpu_seconds() - served)
    return Timing(runs, result, cpu, server_cpu)


def clear_gdal_cache() -> None:
    """Forget everything GDAL's /vsicurl/ layer cached (file sizes, downloaded regions).

    GDAL keeps those across dataset opens in one process; a cold read needs them gone. The
    call goes to the libgdal rasterio loaded (``VSICurlClearCache`` of the GDAL C API).
    """
    global _gdal
    if _gdal is None:
        import rasterio

        libs = Path(rasterio.__file__).parent.parent / "rasterio.libs"
        found = sorted(glob.glob(str(libs / "libgdal*"))) or ["libgdal.so"]
        _gdal = ctypes.CDLL(found[0])
    _gdal.VSICurlClearCache()


_gdal: Any = None


# -- the loopback object store in a child process ------------------------------------------------


class ServerProcess:
    """:class:`~rasteret.testing.servers.RangeHTTPServer` serving ``root`` from a child process.

    Same surface as the in-process server where the benchmarks need it: :attr:`url`,
    :meth:`url_for`, :meth:`count`, :meth:`clear_log`.

    Args:
        root: Folder to serve.
        latency: Seconds slept before answering each request.
        bandwidth: Bytes per second each response is sent at, at most (None: as fast as
            loopback goes). Object stores cap a single connection (S3: tens to ~100 MB/s),
            so large ranged GETs take time in transfer, not only in first-byte latency.
    """

    def __init__(
        self, root: str | Path, *, latency: float = 0.02, bandwidth: float | None = None
    ) -> None:
        self.root = Path(root)
        self.latency = latency
        self.bandwidth = bandwidth
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> Self:
        command = [sys.executable, __file__, "serve", str(self.root), repr(self.latency)]
        self._proc = subprocess.Popen(
            [*command, repr(self.bandwidth or 0.0)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self._read()
        return self

    def stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._ask("stop")
            self._proc.wait(timeout=10)
            self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def url_for(self, relpath: str) -> str:
        """URL of ``relpath`` under the served folder."""
        return f"{self.url}/{relpath.lstrip('/')}"

    def count(self, path: str | None = None, method: str = "GET") -> int:
        """Requests of ``method`` seen so far (for one URL path, or all)."""
        return int(self._ask(json.dumps(["count", path, method])))

    def clear_log(self) -> None:
        """Forget every request seen so far."""
        self._ask(json.dumps(["clear", None, None]))

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the server process used so far (Linux; else 0)."""
        if self._proc is None:
            raise RuntimeError("ServerProcess is not started")
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _ask(self, line: str) -> str:
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("ServerProcess is not started")
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        return self._read()

    def _read(self) -> str:
        if self._proc is None or self._proc.stdout is None:
            raise RuntimeError("ServerProcess is not started")
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the server process exited (code {self._proc.poll()})")
        return line.strip()


_THROTTLE_CHUNK = 256 * 1024
"""Bytes a throttled response sends between two checks of its pace."""


def _throttle(bandwidth: float) -> None:
    """Make this process's range server send each response at ``bandwidth`` bytes/s at most
    (in :data:`_THROTTLE_CHUNK` pieces, sleeping whenever a response runs ahead of its pace)."""
    from rasteret.testing import servers

    plain = servers._Handler._write

    def write(self: Any, body: Any, start: int = 0, stop: int | None = None) -> None:
        stop = len(body) if stop is None else stop
        began = time.perf_counter()
        for at in range(start, stop, _THROTTLE_CHUNK):
            end = min(at + _THROTTLE_CHUNK, stop)
            plain(self, body, at, end)
            ahead = (end - start) / bandwidth - (time.perf_counter() - began)
            if ahead > 0:
                time.sleep(ahead)

    servers._Handler._write = write  # type: ignore[method-assign]


def _serve(root: str, latency: float, bandwidth: float = 0.0) -> None:
    from rasteret.testing.servers import RangeHTTPServer

    if bandwidth > 0:
        _throttle(bandwidth)
    with RangeHTTPServer(root, latency=latency) as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "stop":
                print("ok", flush=True)
                return
            command, path, method = json.loads(line)
            if command == "count":
                print(server.count(path, method), flush=True)
            else:
                server.clear_log()
                print("ok", flush=True)


# -- shared data --------------------------------------------------------------------------------


def header_corpus(n: int) -> tuple[Path, list[str]]:
    """A folder holding one small realistic COG under ``n`` names (hard links); the names.

    The COG: 1024x1024 uint16, deflate + horizontal predictor, 256-pixel tiles, overviews
    2/4/8 written by GDAL's COG driver (IFDs and tile tables first, as in every GDAL COG).
    """
    from rasteret.testing.scenes import SceneSpec, write_scene

    root = data_dir("headers")
    spec = SceneSpec("master", epsg=32632, origin=(699960.0, 5400000.0), size=1024, tile=256)
    master = write_scene(spec, data_dir("headers_master"), bands=("B04",))["B04"]
    names = [f"cogs/c{i:05d}.tif" for i in range(n)]
    for name in names:
        path = root / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(master, path)
    return root, names


@dataclass(frozen=True)
class SceneCorpus:
    """Sentinel-2-like scenes on disk: a time series in UTM 32N and one in 33N, at 12 deg E."""

    root: Path
    """Folder to serve; :attr:`relpaths` are relative to it."""
    specs: tuple[Any, ...]
    """Every :class:`rasteret.testing.scenes.SceneSpec` (zone 32 first, then zone 33)."""
    relpaths: dict[str, dict[str, str]]
    """Scene id -> band -> file path relative to :attr:`root`."""

    def hrefs(self, base_url: str) -> dict[str, dict[str, str]]:
        """Scene id -> band -> URL under ``base_url``."""
        return {
            sid: {band: f"{base_url}/{rel}" for band, rel in bands.items()}
            for sid, bands in self.relpaths.items()
        }


#: Upper-left corners of the two scene footprints: both cover the 12 deg E zone border near
#: 48.3 deg N (zone 32N x ~722 km, zone 33N x ~278 km), 40.96 km on a side.
SCENE_ORIGINS = {32632: (699960.0, 5400000.0), 32633: (250000.0, 5400000.0)}


def scene_corpus(quick: bool, dates: int = 15) -> SceneCorpus:
    """Generate (once) and return the scene corpus of the read benchmarks.

    Full: 4096x4096 uint16 at 10 m, 1024x1024 deflate+predictor tiles, overviews 2/4/8 (COG
    driver); bands B04 and B08 in zone 32N, B04 in zone 33N; ``dates`` dates 5 days apart,
    the same dates in both zones. Quick: 3 dates of 1024x1024 at 40 m with 256x256 tiles (same
    footprints, same tile footprints). Files are written by a process pool, once.
    """
    from rasteret.testing.scenes import SceneSpec

    size, tile, res = (1024, 256, 40.0) if quick else (4096, 1024, 10.0)
    dates = 3 if quick else dates
    folder = data_dir("scenes_quick" if quick else "scenes")
    t0 = _dt.datetime(2024, 5, 3, 10, 30, tzinfo=_dt.UTC)
    specs: list[Any] = []
    jobs: list[tuple[Any, tuple[str, ...]]] = []
    relpaths: dict[str, dict[str, str]] = {}
    for zone, bands in ((32632, ("B04", "B08")), (32633, ("B04",))):
        for i in range(dates):
            when = t0 + _dt.timedelta(days=5 * i)
            spec = SceneSpec(
                f"T{zone % 100}_{when:%Y%m%d}",
                epsg=zone,
                origin=SCENE_ORIGINS[zone],
                size=size,
                resolution=res,
                tile=tile,
                datetime=when,
                seed=zone % 100 * 1000 + i,
                cloud_cover=float(i * 7 % 60),
            )
            specs.append(spec)
            relpaths[spec.scene_id] = {b: f"{spec.scene_id}_{b}.tif" for b in bands}
            if not all((folder / rel).exists() for rel in relpaths[spec.scene_id].values()):
                jobs.append((spec, bands))
    if jobs:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        print(f"writing {len(jobs)} scenes into {folder} (once) ...", flush=True)
        workers = min(len(jobs), os.cpu_count() or 1)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            list(pool.map(_write_scene, [(spec, bands, folder) for spec, bands in jobs]))
    return SceneCorpus(folder, tuple(specs), relpaths)


def _write_scene(job: tuple[Any, tuple[str, ...], Path]) -> None:
    from rasteret.testing.scenes import write_scene

    spec, bands, folder = job
    write_scene(spec, folder, bands=bands)


# -- the floor of a read -------------------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """The floor of a read: fetching and decoding exactly its tiles, each at full parallelism."""

    fetch: Timing
    """Every tile's byte range as its own ranged GET, all in flight at once (no decode)."""
    decode: Timing
    """Every tile decoded on a thread pool of ``os.cpu_count()`` threads (bytes in memory,
    each decoded tile dropped at once so the next one reuses its memory), down to the last
    row the plan needs (``decode_tile(prefix=)``: Deflate stops there, as rasteret does)."""
    tiles: int
    fetched_bytes: int
    decoded_bytes: int
    decode_whole: Timing | None = None
    """The same decode of every tile whole (the floor of sessions 1-3), for comparison."""
    fetch_coalesced: Timing | None = None
    """The same tiles fetched as rasteret fetches them: one job per file, ranges coalesced
    with the default :class:`~rasteret.io.fetch.FetchOptions` (fewer GETs, less CPU for
    client and server than one GET per tile)."""
    arrival_s: float | None = None
    """The floor when decoding can only start as each tile's bytes arrive: see
    :func:`arrival_floor`; the median over the fetch's runs."""

    @property
    def seconds(self) -> float:
        """``max(fetch, decode)``: the floor if fetching cost no CPU and overlapped decoding."""
        return max(self.fetch.median, self.decode.median)

    @property
    def fetch_cpu_seconds(self) -> float:
        """CPU seconds (client and server) of the cheaper of the two fetches."""
        cpus = [self.fetch.cpu_median]
        if self.fetch_coalesced is not None:
            cpus.append(self.fetch_coalesced.cpu_median)
        return min(cpus)

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds of fetching (client and server, the cheaper way) plus decoding."""
        return self.fetch_cpu_seconds + self.decode.cpu_median

    @property
    def cpu_bound(self) -> float:
        """:attr:`cpu_seconds` spread over every core: the floor when the CPUs are the limit
        (on one machine the server, the HTTP client and the decoders share the cores)."""
        return self.cpu_seconds / (os.cpu_count() or 1)

    def machine_floor(self, latency: float) -> float:
        """The least wall time any reader needs for these tiles on this machine: no byte
        arrives before the store's first-byte ``latency``, and all the CPU work of fetching
        (client and server, the cheaper of one GET per tile and rasteret's coalesced GETs)
        and decoding comes after it, on every core; nor can it end before the fetch, or the
        decode, alone would."""
        return max(self.seconds, latency + self.cpu_bound)

    def as_dict(self, latency: float | None = None) -> dict[str, Any]:
        machine = {} if latency is None else {"machine_floor_s": self.machine_floor(latency)}
        return {
            "floor_s": self.seconds,
            **machine,
            "cpu_bound_s": self.cpu_bound,
            "fetch": self.fetch.as_dict(),
            "decode": self.decode.as_dict(),
            "tiles": self.tiles,
            "fetched_bytes": self.fetched_bytes,
            "decoded_bytes": self.decoded_bytes,
            "decode_whole": None if self.decode_whole is None else self.decode_whole.as_dict(),
            "arrival_floor_s": self.arrival_s,
            "fetch_coalesced": (
                None if self.fetch_coalesced is None else self.fetch_coalesced.as_dict()
            ),
        }


def measure_floor(
    tiles: Sequence[Any], *, repeat: int = 3, server: ServerProcess | None = None
) -> Floor:
    """Measure the floor of reading ``tiles`` (:class:`rasteret.read.bands.TileSource` values).

    Fetch: :func:`rasteret.io.fetch.fetch_many` with one single-range job per tile and
    ``max_concurrent`` equal to the tile count (no coalescing, no decoding); then, for the
    machine floor's CPU, one job per file coalesced as rasteret does (default options).
    Decode: :func:`rasteret.tiff.decode.decode_tile` of every tile on ``os.cpu_count()``
    threads, down to the rows the plan needs (and, for comparison, whole). ``server`` (the
    store serving the tiles) adds its CPU time to the fetch's.
    """
    from rasteret._sync import run
    from rasteret.io.fetch import FetchOptions, fetch_many
    from rasteret.io.ranges import ByteRange
    from rasteret.tiff.decode import decode_tile

    tiles = [t for t in tiles if t.end > t.start]
    jobs = [(t.key.href, [ByteRange(t.start, t.end)]) for t in tiles]
    options = FetchOptions(max_concurrent=max(len(jobs), 1), max_gap=0)
    arrivals: list[list[float]] = []  # per run: seconds from the start to each tile's bytes

    def fetch_all() -> list[list[memoryview]]:
        start, times = time.perf_counter(), [0.0] * len(jobs)

        def done(index: int) -> None:
            times[index] = time.perf_counter() - start

        result = run(fetch_many(jobs, options=options, on_done=done))
        arrivals.append(times)
        return result

    fetch = measure(fetch_all, repeat=repeat, server=server)
    del arrivals[: len(arrivals) - len(fetch.runs)]  # the warm-up's
    buffers = [bytes(views[0]) for views in fetch.result]
    by_file: dict[str, list[Any]] = {}
    for t in tiles:
        by_file.setdefault(t.key.href, []).append(ByteRange(t.start, t.end))
    coalesced = measure(
        lambda: run(fetch_many(list(by_file.items()))), repeat=repeat, server=server
    )
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:

        def decode_one(pair: tuple[Any, bytes], whole: bool) -> int:
            # Each tile is dropped as soon as it is decoded, so its memory serves the next
            # one: the floor counts decoding, not faulting in fresh pages for every output.
            source, data = pair
            prefix = None if whole else source.needed_rows
            return decode_tile(data, source.layout, rows=source.rows, prefix=prefix).nbytes

        def decode_all(whole: bool = False) -> int:
            pairs = zip(tiles, buffers, strict=True)
            return sum(pool.map(lambda pair: decode_one(pair, whole), pairs))

        decode = measure(decode_all, repeat=repeat)
        whole = measure(lambda: decode_all(whole=True), repeat=repeat)
    each = [
        min(
            _thread_seconds(functools.partial(decode_one, pair, False))
            for _ in range(max(repeat, 1))
        )
        for pair in zip(tiles, buffers, strict=True)
    ]
    arrival = statistics.median(arrival_floor(times, each) for times in arrivals) if each else None
    return Floor(
        fetch, decode, len(tiles), sum(map(len, buffers)), int(decode.result or 0), whole,
        coalesced, arrival,
    )  # fmt: skip


def _thread_seconds(fn: Callable[[], Any]) -> float:
    """CPU seconds of this thread while ``fn`` runs."""
    used = time.thread_time()
    fn()
    return time.thread_time() - used


def arrival_floor(
    arrivals: Sequence[float], decodes: Sequence[float], cores: int | None = None
) -> float:
    """The least time to decode tiles that arrive at ``arrivals`` (seconds from the start)
    and take ``decodes`` CPU seconds each, on ``cores`` cores (default: all): no tile
    decodes before its bytes are in, so whatever arrives at or after ``a`` still needs
    ``a`` plus its decoding spread over the cores, and a tile's own decode runs on one core.

    >>> round(arrival_floor([0.02, 0.02, 0.03], [0.004, 0.004, 0.004], cores=2), 4)
    0.034
    """
    cores = cores or os.cpu_count() or 1
    order = sorted(range(len(arrivals)), key=lambda i: arrivals[i])
    bound, rest = 0.0, 0.0
    for i in reversed(order):  # latest first: ``rest`` is the decoding arriving at or after
        rest += decodes[i]
        bound = max(bound, arrivals[i] + rest / cores, arrivals[i] + decodes[i])
    return bound


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    _serve(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
