"""Scale out on Dask: lazy xarray reads, distributed point sampling and enrichment.

Nothing here is imported by ``import rasteret``; the first use imports dask, and without the
``dask`` extra that raises :class:`rasteret.errors.MissingDependencyError` naming it.

Import direction: ``_chunks <- _layout <- _task <- xarray``; ``points`` and ``enrich`` stand
alone. Tasks carry plans and record rows (values that pickle cheaply), never stores, event
loops or thread pools; each worker process opens its own shared stores on first use.

- :func:`lazy_xarray` (behind ``Collection.get_xarray(..., chunks=...)``)
- :func:`sample_points_dask` (behind ``Collection.sample_points`` given a Dask DataFrame or
  a partitioned Parquet folder)
- :func:`enrich_table_distributed` (behind ``build_from_table(..., client=...)``)
"""

from rasteret._optional import import_optional

import_optional("dask", extra="dask")

from rasteret.dask.enrich import enrich_table_distributed  # noqa: E402
from rasteret.dask.points import sample_points_dask  # noqa: E402
from rasteret.dask.xarray import lazy_xarray  # noqa: E402

__all__ = ["enrich_table_distributed", "lazy_xarray", "sample_points_dask"]
