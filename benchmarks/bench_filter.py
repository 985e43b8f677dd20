"""Filtering (issue 3): Collection.subset by bbox and date over a 1,000,000-row collection.

The collection is built once with ``build_from_table(..., name=...)`` into
``benchmarks/.data/workspace`` (Parquet on disk, Hive-partitioned by year/month): synthetic
records with 1 x 1 degree footprints spread over the land latitudes, datetimes over six years
and a cloud cover. Each timed run opens the stored collection (``rasteret.load``), applies
``subset(...)`` and materialises the matching rows (``to_table()``, every column), so the time
is what a user waits for. The row counts are checked against NumPy on the generated arrays.
Goal of the issue: well under 1 s.

    python benchmarks/bench_filter.py            # 1,000,000 rows (built once, ~a minute)
    python benchmarks/bench_filter.py --quick    # 20,000 rows
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

import _common
import rasteret

SEED = 42
YEARS = (2019, 2024)
"""First and last year of the datetimes (inclusive)."""


def synthetic_records(n: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """``n`` records (id, datetime, geometry, assets, eo:cloud_cover) and their raw arrays."""
    rng = np.random.default_rng(SEED)
    xmin = rng.uniform(-180.0, 179.0, n)
    ymin = rng.uniform(-60.0, 69.0, n)
    start = np.datetime64(f"{YEARS[0]}-01-01T00:00:00", "s")
    end = np.datetime64(f"{YEARS[1] + 1}-01-01T00:00:00", "s")
    seconds = rng.integers(0, int((end - start).astype(np.int64)), n)
    when = start + seconds.astype("timedelta64[s]")
    cloud = rng.uniform(0.0, 100.0, n).round(1)
    ids = pa.array([f"S{i:07d}" for i in range(n)])
    hrefs = pc.binary_join_element_wise("s3://bench-bucket/", ids, "/B04.tif", "")
    assets = pa.StructArray.from_arrays([pa.StructArray.from_arrays([hrefs], ["href"])], ["B04"])
    table = pa.table(
        {
            "id": ids,
            "datetime": pa.array(when.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
            "geometry": shapely.to_wkb(shapely.box(xmin, ymin, xmin + 1.0, ymin + 1.0)),
            "assets": assets,
            "eo:cloud_cover": cloud,
        }
    )
    return table, {"xmin": xmin, "ymin": ymin, "when": when, "cloud": cloud}


def stored_collection(n: int, folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Build (once) the stored collection of ``n`` synthetic rows; its path and raw arrays."""
    table, arrays = synthetic_records(n)
    name = f"filter_{n}"
    path = folder / f"{name}_records"
    if not path.exists():
        print(f"building the {n:,}-row collection in {path} (once) ...", flush=True)
        timing = _common.measure(
            lambda: rasteret.build_from_table(table, name=name, workspace_dir=folder),
            repeat=1,
            warmup=0,
        )
        print(f"built in {timing.median:.1f} s", flush=True)
    return path, arrays


def expected_rows(arrays: dict[str, np.ndarray], query: dict[str, Any]) -> int:
    """How many records the query must return, computed with NumPy."""
    keep = np.ones(len(arrays["xmin"]), dtype=bool)
    if "bbox" in query:
        x0, y0, x1, y1 = query["bbox"]
        xmin, ymin = arrays["xmin"], arrays["ymin"]
        keep &= (xmin <= x1) & (xmin + 1.0 >= x0) & (ymin <= y1) & (ymin + 1.0 >= y0)
    if "date_range" in query:
        first, last = (np.datetime64(d, "s") for d in query["date_range"])
        keep &= (arrays["when"] >= first) & (arrays["when"] < last + np.timedelta64(1, "D"))
    if "cloud_cover_lt" in query:
        keep &= arrays["cloud"] < query["cloud_cover_lt"]
    return int(keep.sum())


QUERIES: dict[str, dict[str, Any]] = {
    "bbox (2 x 2 deg)": {"bbox": (10.0, 45.0, 12.0, 47.0)},
    "date (one month)": {"date_range": ("2022-06-01", "2022-06-30")},
    "bbox + date": {"bbox": (10.0, 45.0, 12.0, 47.0), "date_range": ("2022-06-01", "2022-06-30")},
    "bbox (20 x 20 deg) + date (one year) + cloud < 20": {
        "bbox": (0.0, 30.0, 20.0, 50.0),
        "date_range": ("2021-01-01", "2021-12-31"),
        "cloud_cover_lt": 20.0,
    },
}


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv, repeat=5)
    n = 20_000 if args.quick else 1_000_000
    path, arrays = stored_collection(n, _common.data_dir("workspace"))
    files = sum(1 for _ in path.rglob("*.parquet"))
    load = _common.measure(lambda: len(rasteret.load(path)), repeat=args.repeat)
    if load.result != n:
        raise SystemExit(f"expected {n} records in {path}, got {load.result}")
    rows: list[list[Any]] = [["load() + len()", n, load.median, load.best]]
    raw: list[dict[str, Any]] = [{"query": "load() + len()", "rows": n, **load.as_dict()}]
    for label, query in QUERIES.items():

        def run(query: dict[str, Any] = query) -> pa.Table:
            return rasteret.load(path).subset(**query).to_table()

        timing = _common.measure(run, repeat=args.repeat)
        want = expected_rows(arrays, query)
        if timing.result.num_rows != want:
            raise SystemExit(f"{label}: expected {want} rows, got {timing.result.num_rows}")
        rows.append([label, want, timing.median, timing.best])
        raw.append({"query": label, "subset": query, "rows": want, **timing.as_dict()})
    _common.print_table(
        f"load(...).subset(...).to_table() on {n:,} records ({files} Parquet files, "
        "Hive year/month)",
        ["query", "rows returned", "wall s (median)", "wall s (best)"],
        rows,
    )
    _common.save_results(
        "filter",
        args,
        {"records": n, "parquet_files": files, "built": _dt.date.today().isoformat(), "rows": raw},
    )


if __name__ == "__main__":
    main()
