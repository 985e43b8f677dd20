"""Enrichment (issue 3): build_from_table(enrich_cog=True) of 1,000 records against a 20 ms store.

Each record has one band (``B04``) pointing at its own COG URL on a loopback HTTP store that
sleeps 20 ms before every answer (the COGs are one small GDAL COG hard-linked under 1,000
names). Measured: wall time of the whole build (normalise, fetch and parse every header,
build the metadata columns) in memory and persisted with ``name=`` (``force=True``), and GETs
per COG from the server's log. Goals of the issue: 1.0 GET per COG, under 2 s at
``max_concurrent=300``.

    python benchmarks/bench_enrich.py            # 1,000 COGs
    python benchmarks/bench_enrich.py --quick    # 50 COGs
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

import _common
import rasteret
from rasteret.ingest.schema import metadata_column
from rasteret.testing.scenes import SceneSpec, record_table

LATENCY = 0.02
MAX_CONCURRENT = 300


def records(urls: Sequence[str]) -> pa.Table:
    """A record table with one ``B04`` asset per URL (all footprints the same scene)."""
    specs = [
        SceneSpec(f"r{i:05d}", epsg=32632, origin=(699960.0, 5400000.0), size=1024, tile=256)
        for i in range(len(urls))
    ]
    return record_table(specs, {s.scene_id: {"B04": u} for s, u in zip(specs, urls, strict=True)})


def main(argv: Sequence[str] | None = None) -> None:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    n = 50 if args.quick else 1000
    root, names = _common.header_corpus(n + 10)
    workspace = _common.data_dir("workspace")
    rows: list[list[Any]] = []
    raw: list[dict[str, Any]] = []
    with _common.ServerProcess(root, latency=LATENCY) as server:
        table = records([server.url_for(name) for name in names[:n]])
        warm = records([server.url_for(name) for name in names[n:]])
        rasteret.build_from_table(warm, enrich_cog=True, progress=False)  # start loop, connect
        cases = {
            "in memory": {},
            "persisted (name=, force=True)": {
                "name": "bench_enrich",
                "workspace_dir": workspace,
                "force": True,
            },
        }
        for label, extra in cases.items():
            server.clear_log()

            def build(extra: dict[str, Any] = extra) -> rasteret.Collection:
                return rasteret.build_from_table(
                    table,
                    enrich_cog=True,
                    max_concurrent=MAX_CONCURRENT,
                    progress=False,
                    **extra,
                )

            timing = _common.measure(build, repeat=args.repeat, warmup=0, server=server)
            collection = timing.result
            enriched = collection.to_table(columns=[metadata_column("B04")]).column(0)
            if len(collection) != n or enriched.null_count or collection.enrichment_errors:
                raise SystemExit(
                    f"{label}: expected {n} enriched records, got {len(collection)} with "
                    f"{enriched.null_count} null headers and {collection.enrichment_errors[:3]}"
                )
            gets = server.count(method="GET") / (len(timing.runs) * n)
            heads = server.count(method="HEAD") / (len(timing.runs) * n)
            rows.append([label, n, MAX_CONCURRENT, timing.median, timing.best, gets, heads,
                         timing.cpu_median,
                         "yes" if timing.median < 2.0 and gets == 1.0 else "no"])  # fmt: skip
            raw.append({"case": label, "cogs": n, "max_concurrent": MAX_CONCURRENT,
                        "gets_per_cog": gets, "heads_per_cog": heads,
                        **timing.as_dict()})  # fmt: skip
    shutil.rmtree(workspace / "bench_enrich_records", ignore_errors=True)
    _common.print_table(
        f"build_from_table(enrich_cog=True), loopback store with {LATENCY * 1000:.0f} ms latency",
        ["case", "COGs", "max_concurrent", "wall s (median)", "wall s (best)", "GET per COG",
         "HEAD per COG", "CPU s (client + server)", "goal met (< 2 s, 1.0 GET)"],
        rows,
    )  # fmt: skip
    _common.save_results("enrich", args, {"latency_s": LATENCY, "rows": raw})


if __name__ == "__main__":
    main()
