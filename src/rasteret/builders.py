"""Building and opening collections: ``build_from_table``, ``load``, ``as_collection``.

>>> import rasteret
>>> collection = rasteret.build_from_table(
...     {"id": [1], "datetime": [2024], "geometry": ["POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))"],
...      "assets": [{"B04": {"href": "scene_B04.tif"}}]},
... )
>>> len(collection), collection.bands
(1, [])
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from rasteret import _sync
from rasteret._warn import warn
from rasteret.collection import Collection
from rasteret.errors import (
    CollectionNotFoundError,
    EnrichmentError,
    RasteretWarning,
    SchemaError,
    WorkspaceError,
)
from rasteret.ingest.enrich import EnrichmentFailure, enrich_table_async, tiff_asset_keys
from rasteret.ingest.normalize import normalize_records
from rasteret.ingest.schema import ASSETS, DATETIME, GEOMETRY, ID, metadata_columns
from rasteret.ingest.sources import read_source
from rasteret.ingest.store import (
    MANIFEST,
    fingerprint,
    open_dataset,
    read_manifest,
    records_dir,
    recover,
    workspace_lock,
    write_collection,
)
from rasteret.io.stores import CloudConfig

__all__ = ["RasteretWarning", "as_collection", "build_from_table", "load"]

DEFAULT_MAX_CONCURRENT = 300


def build_from_table(
    path: Any,
    *,
    name: str = "",
    data_source: str = "",
    workspace_dir: str | os.PathLike[str] | None = None,
    column_map: Mapping[str, str] | None = None,
    href_column: str | None = None,
    band_index_map: Mapping[str, int] | None = None,
    url_rewrite_patterns: Mapping[str, str] | None = None,
    filesystem: Any = None,
    columns: Sequence[str] | None = None,
    filter_expr: ds.Expression | None = None,
    enrich_cog: bool = False,
    band_codes: Sequence[str] | None = None,
    cloud_config: CloudConfig | Mapping[str, Any] | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    force: bool = False,
    backend: Any = None,
    progress: bool | None = None,
    client: Any = None,
) -> Collection:
    """Turn a table of raster records into a collection.

    Args:
        path: a Parquet/GeoParquet file or folder (local, ``s3://``, ``gs://``, ``az://``)
            or any Arrow-compatible object (``pa.Table``, ``RecordBatchReader``, dataset,
            DuckDB relation, Polars frame, GeoDataFrame, anything with ``__arrow_c_stream__``).
        name: persist to ``{workspace_dir}/{name}_records/`` and reuse it on the same call.
        enrich_cog: parse every requested band's COG header into ``{band}_metadata``.
        band_codes: bands to enrich (default: every asset that points at a TIFF).
        max_concurrent: header requests in flight during enrichment.
        columns, filter_expr: columns to read and rows to keep, pushed into the scan of
            ``path`` (partition columns prune files): they name the source's own columns,
            before ``column_map`` renames them.
        force: rebuild even when a stored collection matches the input.
        client: a ``distributed.Client``: header parsing is spread over its workers, one
            task per partition of records (``max_concurrent`` requests in flight on each
            worker), with the same result and failure report as the local path (needs the
            ``dask`` extra; see :func:`rasteret.dask.enrich_table_distributed`).

    Returns:
        The collection. Assets whose header could not be read are listed in
        ``collection.enrichment_errors`` and reported with a :class:`RasteretWarning`.
    """
    if data_source:
        _check_registered(data_source)
    cloud = _cloud_config(cloud_config, data_source, url_rewrite_patterns)
    source = read_source(path, filesystem=filesystem, columns=columns, filter_expr=filter_expr)
    table = normalize_records(
        source,
        column_map=column_map,
        href_column=href_column,
        band_index_map=band_index_map,
        url_rewrite_patterns=cloud.url_rewrite_patterns if cloud else None,
    )
    if data_source:
        table = _apply_band_map(table, data_source)
    options = {
        "data_source": data_source,
        "enrich_cog": enrich_cog,
        "band_codes": list(band_codes) if band_codes is not None else None,
        "requester_pays": cloud.requester_pays if cloud else False,
    }
    if not name:
        table, failures = _maybe_enrich(
            table, enrich_cog, band_codes, max_concurrent, backend, cloud, progress, client
        )
        return Collection(ds.dataset(table), data_source=data_source, enrichment_errors=failures)
    folder = records_dir(name, workspace_dir)
    digest = fingerprint(table, options)
    # One lock over check, build, write and open: a concurrent builder of the same name waits,
    # then reuses this result when its input is the same, and never opens a half-swapped folder.
    with workspace_lock(folder):
        recover(folder)  # whatever a killed build of this name left behind
        if not force:
            manifest = read_manifest(folder)
            if manifest is not None and manifest.get("fingerprint") == digest:
                return load(folder)
        table, failures = _maybe_enrich(
            table, enrich_cog, band_codes, max_concurrent, backend, cloud, progress, client
        )
        write_collection(
            table,
            folder,
            {
                "name": name,
                "data_source": data_source,
                "fingerprint": digest,
                "enrichment_errors": [asdict(f) for f in failures],
            },
        )
        return load(folder)


def _maybe_enrich(
    table: pa.Table,
    enrich_cog: bool,
    band_codes: Sequence[str] | None,
    max_concurrent: int,
    backend: Any,
    cloud: CloudConfig | None,
    progress: bool | None,
    client: Any = None,
) -> tuple[pa.Table, list[EnrichmentFailure]]:
    if not enrich_cog:
        return table, []
    return _enrich(
        table, band_codes, max_concurrent, backend, cloud, _show_progress(progress), client
    )


def _cloud_config(
    config: CloudConfig | Mapping[str, Any] | None,
    data_source: str,
    patterns: Mapping[str, str] | None,
) -> CloudConfig | None:
    """A build's cloud settings: ``cloud_config=``, else the data source's (catalog), with
    ``url_rewrite_patterns=`` added (winning for a prefix in both).

    Their URL rewrites are applied to the hrefs the build stores, as
    :func:`rasteret.build_from_stac` does: the collection then reads from the rewritten URLs
    with no cloud settings passed again (a read that passes them rewrites nothing twice, see
    :func:`rasteret.io.urls.rewrite_url`).

    >>> config = _cloud_config({"requester_pays": True}, "", {"s3://a/": "https://a/"})
    >>> config.requester_pays, config.url_rewrite_patterns
    (True, {'s3://a/': 'https://a/'})
    """
    if isinstance(config, Mapping):
        config = CloudConfig(**config)
    if config is None and data_source:
        from rasteret.catalog import cloud_config_for

        config = cloud_config_for(data_source)
    if patterns:
        merged = {**((config.url_rewrite_patterns or {}) if config else {}), **patterns}
        config = replace(config or CloudConfig(), url_rewrite_patterns=merged)
    return config


def _check_registered(data_source: str) -> None:
    """Warn when ``data_source`` names no registered dataset: no band map and no cloud
    settings (requester-pays, URL rewrites) apply then, which a typo would hide until a
    read is refused."""
    from rasteret.catalog import get_dataset

    try:
        get_dataset(data_source)
    except SchemaError as exc:
        warn(
            f"data_source={data_source!r} applies no band map and no cloud settings: {exc}",
            RasteretWarning,
            stacklevel=3,  # the caller of build_from_table
        )


def _apply_band_map(table: pa.Table, data_source: str) -> pa.Table:
    """Re-key assets by the registered band map of ``data_source``."""
    from rasteret.catalog import band_map_for
    from rasteret.stac.tables import remap_assets_column

    mapping = band_map_for(data_source)
    if mapping:
        table = remap_assets_column(
            table,
            mapping,
            keep_unmapped=True,
            require_all=False,
            where=f"data_source={data_source!r}",
        )
    return table


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr.isatty()


def _enrich(
    table: pa.Table,
    band_codes: Sequence[str] | None,
    max_concurrent: int,
    backend: Any,
    cloud: CloudConfig | None,
    progress: bool,
    client: Any = None,
) -> tuple[pa.Table, list[EnrichmentFailure]]:
    from rasteret.ingest.enrich import _assets_as_dicts

    assets = _assets_as_dicts(table.column(ASSETS))
    bands = list(band_codes) if band_codes is not None else tiff_asset_keys(assets)
    if not bands:
        raise SchemaError(
            "enrich_cog=True found no asset pointing at a TIFF; pass band_codes=[...] naming "
            f"asset keys (found keys: {sorted({k for a in assets for k in (a or {})})})"
        )
    unknown = [b for b in bands if not any(b in (a or {}) for a in assets)]
    if unknown:
        raise SchemaError(
            f"band_codes {unknown} are not asset keys of any record; "
            f"found keys: {sorted({k for a in assets for k in (a or {})})}"
        )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        hrefs = {a[b]["href"] for a in assets for b in bands if a and b in a and a[b]}
        bar = (
            tqdm(total=len(hrefs), desc="COG headers", unit="file")
            if client is None
            else tqdm(total=len(table), desc="COG headers", unit="record")
        )
    try:
        if client is not None:
            from rasteret.dask.enrich import enrich_table_distributed

            enriched, failures = enrich_table_distributed(
                table,
                bands,
                client=client,
                max_concurrent=max_concurrent,
                backend=backend,
                cloud_config=cloud,
                on_partition=(lambda part: bar.update(len(part))) if bar is not None else None,
            )
        else:
            enriched, failures, _ = _sync.run(
                enrich_table_async(
                    table,
                    bands,
                    max_concurrent=max_concurrent,
                    backend=backend,
                    cloud_config=cloud,
                    on_header=bar.update if bar is not None else None,
                )
            )
    finally:
        if bar is not None:
            bar.close()
    attempted = sum(1 for a in assets for b in bands if a and a.get(b) and a[b].get("href"))
    if failures and len(failures) >= attempted:
        examples = "; ".join(f"{f.url}: {f.error}" for f in failures[:3])
        raise EnrichmentError(
            f"COG header parsing failed for all {attempted} assets (e.g. {examples}). Check "
            "whether the URLs require credentials, requester-pays configuration "
            "(cloud_config={'requester_pays': True}), URL rewriting (url_rewrite_patterns=...) "
            "or a custom backend (backend=...)."
        )
    if failures:
        warn(
            f"{len(failures)} of {attempted} COG headers could not be read; their "
            "{band}_metadata cells are null. See collection.enrichment_errors.",
            RasteretWarning,
            stacklevel=3,
        )
    return enriched, failures


def load(path: str | os.PathLike[str]) -> Collection:
    """Open a stored collection lazily, or a Parquet/GeoParquet table of records.

    A stored collection is what ``build_from_table(name=...)`` or
    :meth:`Collection.export` wrote: a folder or object-store prefix with ``_rasteret.json``
    and every data file it lists (a partial copy is refused). Any other Parquet/GeoParquet
    file or Hive folder is read as a record table and normalised as by
    :func:`build_from_table` (no header enrichment; ``{band}_metadata`` columns it already
    has are kept).

    Args:
        path: a local folder or file (or ``file://`` URI), or an ``s3://``, ``gs://`` or
            ``az://`` URI (configured by the standard environment variables, as for
            :func:`build_from_table`).

    Raises:
        CollectionNotFoundError: nothing at ``path`` (a :class:`WorkspaceError` and a
            :class:`FileNotFoundError`).
        WorkspaceError: an empty folder, or a collection whose manifest
            lists files that are missing or of another size.
        SchemaError: a records table that lacks the record columns.

    >>> import tempfile, pyarrow.parquet as pq
    >>> tmp = tempfile.TemporaryDirectory()
    >>> pq.write_table(pa.table({"id": ["a"], "datetime": ["2024-05-01"],
    ...     "geometry": ["POINT (0 0)"], "assets": ['{"B04": {"href": "a.tif"}}']}),
    ...     f"{tmp.name}/records.parquet")
    >>> len(load(f"{tmp.name}/records.parquet"))
    1
    >>> tmp.cleanup()
    """
    from rasteret.ingest.filesystems import (
        collection_root,
        not_a_collection,
        open_collection_remote,
    )

    where = collection_root(path)
    if not isinstance(where, Path):
        opened = open_collection_remote(os.fspath(path))
        if opened is None:
            return build_from_table(os.fspath(path))
        return _stored(*opened, os.fspath(path))
    manifest = read_manifest(where)
    if manifest is None:
        if not (where / MANIFEST).exists() and _holds_records(where):
            return build_from_table(where)
        if not where.exists():
            raise CollectionNotFoundError(not_a_collection(where, "nothing"))
        if (where / MANIFEST).exists():
            got = "an incomplete collection (a data file its manifest lists is missing or of "
            got += "another size)"
        else:
            got = "no Parquet file"
        raise WorkspaceError(not_a_collection(where, got))
    return _stored(open_dataset(where), manifest, where)


def _holds_records(where: Path) -> bool:
    """A file, or a folder with Parquet files in it (a table of records, not a collection)."""
    return where.is_file() or (where.is_dir() and any(where.rglob("*.parquet")))


def _stored(dataset: ds.Dataset, manifest: Mapping[str, Any], path: Path | str) -> Collection:
    return Collection(
        dataset,
        name=manifest.get("name") or "",
        data_source=manifest.get("data_source") or "",
        path=path,
        enrichment_errors=[EnrichmentFailure(**f) for f in manifest.get("enrichment_errors") or ()],
    )


def as_collection(
    table: Any,
    *,
    name: str = "",
    data_source: str = "",
    require_band_metadata: bool = True,
) -> Collection:
    """Wrap a table that already follows the collection schema (e.g. an exported one).

    Raises:
        SchemaError: a canonical column is missing, or (with ``require_band_metadata``) the
            table has no ``{band}_metadata`` column.
    """
    source = read_source(table)
    missing = [c for c in (ID, DATETIME, GEOMETRY, ASSETS) if c not in source.column_names]
    if missing:
        raise SchemaError(
            f"expected a collection table with columns {missing}; found {source.column_names}. "
            "Use rasteret.build_from_table() to normalise a raw record table."
        )
    table_ = normalize_records(source)
    if require_band_metadata and not metadata_columns(table_.schema):
        raise SchemaError(
            f"expected at least one {{band}}_metadata column; found {table_.column_names}. "
            "Build with enrich_cog=True, or pass require_band_metadata=False."
        )
    return Collection(ds.dataset(table_), name=name, data_source=data_source)
