"""Long fuzz runs of the TIFF header parser and tile decoder, on demand.

    python fuzz/run_fuzz.py --seconds 600              # both targets, atheris if installed
    python fuzz/run_fuzz.py --seconds 60 --engine hypothesis --target tile

The targets and their contract are in ``targets.py``. Seeds are the fixture matrix (written
with GDAL into ``--seed-dir`` on first use). Each target runs in its own process with its
address space capped (``--memory-mb``) and a per-input hang timeout (``--hang-seconds``):

- ``atheris`` (libFuzzer, coverage-guided over rasteret's Python code): the corpus starts
  from the real headers and tiles; libFuzzer's ``-timeout``/``-rss_limit_mb`` catch hangs and
  memory blow-ups. The corpus grows in ``tests/.fixtures/fuzz-corpus/`` (git-ignored, kept
  between runs); crashing inputs are written to ``--crash-dir``.
- ``hypothesis`` (fallback when atheris is missing): batches of generated mutations until
  the time is up; a hang is caught by ``faulthandler`` (traceback, exit code 70).

Prints one JSON line per target with the inputs tried, the time and the crashes found; the
exit status is non-zero when any target crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE.parent / "tests" / ".fixtures"  # git-ignored
DEFAULT_SEED_DIR = WORK_DIR / "fuzz-seeds"
DEFAULT_CRASH_DIR = WORK_DIR / "fuzz-crashes"
TARGETS = ("header", "tile")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="total run time")
    parser.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--seed-dir", type=Path, default=DEFAULT_SEED_DIR)
    parser.add_argument("--crash-dir", type=Path, default=DEFAULT_CRASH_DIR)
    parser.add_argument("--memory-mb", type=int, default=4096)
    parser.add_argument("--hang-seconds", type=int, default=20)
    parser.add_argument("--worker", choices=TARGETS, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.worker:
        return worker(args, rest)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            engine = "hypothesis"
        else:
            engine = "atheris"
    seeds(args.seed_dir)  # write the fixture matrix once, before the clocks start
    targets = TARGETS if args.target == "all" else (args.target,)
    failed = False
    for target in targets:
        result = run_target(args, engine, target, args.seconds / len(targets))
        print(json.dumps(result), flush=True)
        failed |= bool(result["crashes"])
    return 1 if failed else 0


def run_target(
    args: argparse.Namespace, engine: str, target: str, seconds: float
) -> dict[str, Any]:
    """Run one target in a child process; summarise what it did."""
    args.crash_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker", target, "--engine", engine, "--seconds", str(seconds),
        "--seed-dir", str(args.seed_dir), "--crash-dir", str(args.crash_dir),
        "--memory-mb", str(args.memory_mb), "--hang-seconds", str(args.hang_seconds),
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr
    stats = _last_json(proc.stdout) or {}
    if engine == "atheris":
        runs = re.findall(r"Done (\d+) runs", output) or re.findall(r"#(\d+)\s", output)
        stats["inputs"] = int(runs[-1]) if runs else 0
        stats.setdefault("crashes", [])
        if proc.returncode != 0:
            artifacts = re.findall(r"Test unit written to (\S+)", output)
            stats["crashes"] = stats["crashes"] or [f"exit {proc.returncode}: {artifacts}"]
    elif proc.returncode != 0 and not stats.get("crashes"):
        stats["crashes"] = [f"exit {proc.returncode}"]
    if stats.get("crashes"):
        (args.crash_dir / f"{target}-{engine}-{int(time.time())}.log").write_text(output)
    return {"target": target, "engine": engine, "seconds": round(elapsed, 1), **stats}


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return None


def seeds(folder: Path) -> list[Path]:
    """The fixture matrix as seed files (written on first use)."""
    from rasteret.testing.fixtures import write_fixture_matrix

    return sorted(write_fixture_matrix(folder).values())


# -- the worker process ------------------------------------------------------------------------


def worker(args: argparse.Namespace, rest: list[str]) -> int:
    limit = args.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    sys.path.insert(0, str(HERE))
    if args.engine == "atheris":
        return atheris_worker(args, rest)
    return hypothesis_worker(args)


def hypothesis_worker(args: argparse.Namespace) -> int:
    from hypothesis import HealthCheck, Phase, given, settings
    from strategies import header_inputs, object_size, tile_inputs
    from targets import check_header, check_tile, load_seeds, mutate

    headers, tiles = load_seeds(seeds(args.seed_dir))
    count = 0
    crashes: list[str] = []

    def header_case(case: Any) -> None:
        seed, edits, mode = case
        data = mutate(seed.data, edits, seed.byte_order)
        check_header(data, object_size(mode, seed, data))

    def tile_case(case: Any) -> None:
        seed, header_edits, tile_edits = case
        header = mutate(seed.header.data, header_edits, seed.header.byte_order)
        size = max(seed.header.object_size, len(header))
        check_tile(header, size, seed.tile, mutate(seed.data, tile_edits))

    case_fn, strategy = (
        (header_case, header_inputs(headers))
        if args.worker == "header"
        else (tile_case, tile_inputs(tiles))
    )
    config = settings(
        max_examples=500,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and not crashes:

        def body(case: Any) -> None:
            nonlocal count
            count += 1
            faulthandler.dump_traceback_later(args.hang_seconds, exit=True)
            try:
                case_fn(case)
            finally:
                faulthandler.cancel_dump_traceback_later()

        try:
            given(strategy)(config(body))()
        except Exception as exc:  # hypothesis re-raises the shrunk failure
            crashes.append(f"{type(exc).__name__}: {exc}"[:2000])
    print(json.dumps({"inputs": count, "crashes": crashes}))
    return 1 if crashes else 0


def atheris_worker(args: argparse.Namespace, rest: list[str]) -> int:
    import atheris

    with atheris.instrument_imports(include=["rasteret.tiff", "rasteret.ingest.metadata"]):
        from targets import check_header, check_tile, load_seeds

    headers, tiles = load_seeds(seeds(args.seed_dir))
    corpus = WORK_DIR / "fuzz-corpus" / args.worker
    corpus.mkdir(parents=True, exist_ok=True)
    if args.worker == "header":
        for s in headers:  # first byte: how the object size relates to the buffer
            (corpus / f"{s.name}.bin").write_bytes(bytes([0]) + s.data)
    else:
        for t in tiles:  # [tile index][header length][object size][header][tile], lengths u32
            blob = b"".join(
                (
                    bytes([t.tile % 256]),
                    len(t.header.data).to_bytes(4, "little"),
                    t.header.object_size.to_bytes(4, "little"),
                    t.header.data,
                    t.data,
                )
            )
            (corpus / f"{t.name.replace('#', '_')}.bin").write_bytes(blob)
    sizes = {s.data: s.object_size for s in headers}

    def one_input(data: bytes) -> None:
        if len(data) < 2:
            return
        mode, body = data[0], data[1:]
        if args.worker == "header":
            true_size = sizes.get(body, len(body) * 4)
            size = (true_size, None, len(body), max(len(body) // 2, 1))[mode % 4]
            check_header(body, size if size is None else max(size, 1))
            return
        n = int.from_bytes(body[:4], "little") % max(len(body), 1)
        size = int.from_bytes(body[4:8], "little")
        header, tile = body[8 : 8 + n], body[8 + n :]
        check_tile(header, max(size, len(header), 1), mode, tile)

    flags = [
        f"-max_total_time={max(int(args.seconds), 1)}",
        f"-timeout={args.hang_seconds}",
        f"-rss_limit_mb={args.memory_mb}",
        f"-malloc_limit_mb={args.memory_mb}",
        f"-artifact_prefix={args.crash_dir}/{args.worker}-",
        "-print_final_stats=1",
    ]
    os.environ.setdefault("PYTHONHASHSEED", "0")
    atheris.Setup([sys.argv[0], *flags, *rest, str(corpus)], one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
