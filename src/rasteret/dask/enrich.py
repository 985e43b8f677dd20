"""COG header enrichment spread over a ``dask.distributed`` cluster.

The record table is cut into row partitions; each is one task that runs the local
enrichment (:func:`rasteret.ingest.enrich.enrich_table_async`) on its worker, with
``max_concurrent`` headers in flight there. A task carries its rows (Arrow) and the options,
never a store: the worker opens its own. Partitions come back in order, so the enriched
table and the per-asset failure list are the local path's, row for row. A worker lost
mid-build has its partitions rerun by Dask (header reads are idempotent).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from rasteret._optional import import_optional
from rasteret._sync import run
from rasteret.errors import SchemaError
from rasteret.ingest.enrich import EnrichmentFailure, enrich_table_async
from rasteret.io.stores import CloudConfig

__all__ = ["DEFAULT_PARTITION_ROWS", "enrich_partition", "enrich_table_distributed"]

DEFAULT_PARTITION_ROWS = 2_000
"""Records per task: 2,000 headers is seconds of work at 300 in flight, large enough that the
scheduler's per-task overhead (about a millisecond) does not matter."""


def enrich_partition(
    table: pa.Table,
    bands: Sequence[str],
    max_concurrent: int,
    backend: Any,
    cloud_config: CloudConfig | None,
) -> tuple[pa.Table, list[EnrichmentFailure]]:
    """Enrich one partition of rows on this process (the task a worker runs)."""
    enriched, failures, _ = run(
        enrich_table_async(
            table,
            list(bands),
            max_concurrent=max_concurrent,
            backend=backend,
            cloud_config=cloud_config,
        )
    )
    return enriched, failures


def _partitions(table: pa.Table, rows: int) -> list[pa.Table]:
    if len(table) == 0:
        return [table]
    return [table.slice(start, rows) for start in range(0, len(table), rows)]


def enrich_table_distributed(
    table: pa.Table,
    bands: Sequence[str],
    *,
    client: Any,
    max_concurrent: int,
    backend: Any = None,
    cloud_config: CloudConfig | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    on_partition: Callable[[pa.Table], None] | None = None,
) -> tuple[pa.Table, list[EnrichmentFailure]]:
    """Add ``{band}_metadata`` columns like the local enrichment, one task per row partition.

    Args:
        table: Normalised records (as ``build_from_table`` has them before enrichment).
        bands: Bands to enrich.
        client: A ``distributed.Client``.
        max_concurrent: Header requests in flight on each worker.
        backend: A store for every URL; it must pickle to reach the workers.
        cloud_config: Requester-pays, URL rewrites, ...
        partition_rows: Records per task.
        on_partition: Called on the driver with each partition's rows when it is done.

    Returns:
        The enriched table (row order kept) and the failures, in the local path's order.

    Raises:
        MissingDependencyError: ``distributed`` is not installed.
        SchemaError: ``client`` is not a ``distributed.Client`` or ``partition_rows < 1``.

    Example:
        ``table, failures = enrich_table_distributed(table, ["B04"], client=client,
        max_concurrent=300)``
    """
    distributed = import_optional("distributed", extra="dask")
    if not isinstance(client, distributed.Client):
        raise SchemaError(f"expected client= a distributed.Client, got {type(client).__name__}")
    if partition_rows < 1:
        raise SchemaError(f"expected partition_rows >= 1, got {partition_rows}")
    parts = _partitions(table, partition_rows)
    token = uuid.uuid4().hex
    futures = [
        client.submit(
            enrich_partition,
            part,
            tuple(bands),
            max_concurrent,
            backend,
            cloud_config,
            pure=False,
            key=f"rasteret-enrich-{token}-{i}",
        )
        for i, part in enumerate(parts)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[tuple[pa.Table, list[EnrichmentFailure]] | None] = [None] * len(futures)
    try:
        for future in distributed.as_completed(futures):
            i = index[future.key]
            results[i] = future.result()
            if on_partition is not None:
                on_partition(parts[i])
    finally:
        for future in futures:
            future.release()
    tables = [r[0] for r in results if r is not None]
    failures = [f for r in results if r is not None for f in r[1]]
    return pa.concat_tables(tables).combine_chunks(), failures
