"""Every benchmark script runs in its smoke mode (``--quick``), exits 0 and prints its table.

The scripts live in ``benchmarks/`` and are not tests themselves; this only checks that each
still runs end to end against the current API (a loopback store, real generated COGs, rasterio
beside rasteret) and reports a Markdown table. A quick run never rewrites ``results/``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("bench_*.py"))
NEEDS = {
    "bench_torchgeo": ("torch", "torchgeo"),
    "bench_dask": ("distributed",),
    "bench_peers": ("async_tiff",),
}
"""Optional packages a script imports (extras a Python may lack, e.g. torch on 3.13)."""

pytestmark = pytest.mark.slow


def _results_state() -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (BENCHMARKS / "results").glob("*.json")}


def test_every_scenario_has_a_script() -> None:
    names = {p.stem for p in SCRIPTS}
    assert {"bench_headers", "bench_decode", "bench_enrich", "bench_filter", "bench_reads"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_quick_run_prints_its_table(script: Path) -> None:
    missing = [m for m in NEEDS.get(script.stem, ()) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{script.name} needs {', '.join(missing)}, not installed here")
    before = _results_state()
    proc = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=BENCHMARKS.parent,
    )
    assert proc.returncode == 0, (
        f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    lines = proc.stdout.splitlines()
    assert any(line.startswith("### ") for line in lines), proc.stdout
    header = next(
        (i for i, line in enumerate(lines[:-1]) if lines[i + 1].startswith("| ---")), None
    )
    assert header is not None, f"{script.name} printed no Markdown table:\n{proc.stdout}"
    body = []
    for line in lines[header + 2 :]:
        if not line.startswith("| "):
            break
        body.append(line)
    assert body, f"{script.name} printed a table without rows:\n{proc.stdout}"
    assert all(line.count("|") == lines[header].count("|") for line in body), body
    assert _results_state() == before, "a --quick run must not rewrite benchmarks/results/"
