"""Collection: a lazy, filterable Arrow dataset of raster records with parsed COG headers.

Filtering returns a new collection that shares the same dataset; nothing is copied until a
method materialises rows. A collection is an Arrow stream (``__arrow_c_stream__``), so DuckDB,
Polars and GeoPandas read it directly.

>>> import pyarrow as pa
>>> from datetime import datetime, timezone
>>> import shapely
>>> from rasteret import as_collection
>>> table = pa.table({
...     "id": ["a", "b"],
...     "datetime": [datetime(2024, 1, 5, tzinfo=timezone.utc), datetime(2024, 3, 1, tzinfo=timezone.utc)],
...     "geometry": shapely.to_wkb([shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 6)]),
...     "assets": [{"B04": {"href": "a.tif"}}, {"B04": {"href": "b.tif"}}],
... })
>>> collection = as_collection(table, require_band_metadata=False)
>>> len(collection), len(collection.subset(bbox=(0.5, 0.5, 2, 2)))
(2, 1)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from rasteret._collection_points import PointSamplingMixin
from rasteret._collection_reads import PixelReadsMixin
from rasteret._collection_torchgeo import TorchGeoMixin
from rasteret._dates import DateLike, date_bounds
from rasteret._record_cache import RecordCache
from rasteret.errors import BandResolutionError, SchemaError
from rasteret.ingest.schema import (
    ASSETS,
    BBOX,
    CRS,
    DATETIME,
    PROJ_EPSG,
    metadata_column,
    metadata_columns,
)

if TYPE_CHECKING:
    from rasteret.ingest.enrich import EnrichmentFailure

__all__ = ["Collection"]


class Collection(PixelReadsMixin, PointSamplingMixin, TorchGeoMixin):
    """Raster records plus their parsed COG headers, as a lazy Arrow dataset."""

    def __init__(
        self,
        dataset: ds.Dataset,
        *,
        name: str = "",
        data_source: str = "",
        filter: ds.Expression | None = None,
        path: Path | str | None = None,
        enrichment_errors: Sequence[EnrichmentFailure] = (),
    ) -> None:
        self._dataset = dataset
        self.name = name
        self.data_source = data_source
        self._filter = filter
        self._unboxed_filter = filter
        """``_filter`` without the bounding-box filters of :meth:`subset` (kept apart in
        ``_boxes``), so reads select records of a cached scan by box (:mod:`rasteret._record_cache`)."""
        self._boxes: tuple[tuple[float, float, float, float], ...] = ()
        self._records = RecordCache()
        self.path = path
        """Where the collection was loaded from: a local folder, or an object-store URI."""
        self.enrichment_errors: list[EnrichmentFailure] = list(enrichment_errors)
        """Every asset whose COG header could not be read when the collection was built."""

    # ----------------------------------------------------------------- filtering
    def _derive(
        self,
        expression: ds.Expression | None,
        box: tuple[float, float, float, float] | None = None,
    ) -> Collection:
        """This collection with ``expression`` and the CRS84 ``box`` filter added."""
        derived = Collection(
            self._dataset,
            name=self.name,
            data_source=self.data_source,
            filter=_and(self._filter, expression, None if box is None else _box_expression(box)),
            path=self.path,
            enrichment_errors=self.enrichment_errors,
        )
        derived._unboxed_filter = _and(self._unboxed_filter, expression)
        derived._boxes = self._boxes if box is None else (*self._boxes, box)
        derived._records = self._records  # same dataset: the same cached scans
        return derived

    def where(self, expression: ds.Expression) -> Collection:
        """Keep records matching a ``pyarrow.dataset`` expression (pushed into the scan)."""
        return self._derive(expression)

    def subset(
        self,
        cloud_cover_lt: float | None = None,
        date_range: tuple[DateLike | None, DateLike | None] | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        geometries: Any = None,
        split: str | Sequence[str] | None = None,
        split_column: str = "split",
    ) -> Collection:
        """Filter by cloud cover, date range (inclusive), CRS84 bbox, AOI geometries or split.

        Args:
            cloud_cover_lt: keep records whose ``eo:cloud_cover`` (or ``cloud_cover``) is below.
            date_range: ``(start, end)``, both inclusive; either may be ``None`` (or ``".."``)
                for an open end. Bounds are ISO 8601 strings, ``datetime.date``/``datetime``,
                ``pandas.Timestamp``, ``numpy.datetime64`` (any unit) or integer years; naive
                values are UTC. A bound that names a calendar period (``"2024"``, ``"2024-01"``,
                ``"2024-01-15"``, a ``date``, a ``datetime64`` in Y/M/W/D units) starts at the
                period's first instant and, as the end, includes the whole period, as pandas
                partial-string indexing reads it: ``("2024-01", "2024-02")`` keeps 1 January
                00:00 through 29 February 23:59:59.999999 UTC, and ``("2024-01-10",
                "2024-01-10")`` that one day. A bound with a time of day is that instant.
            bbox: ``(xmin, ymin, xmax, ymax)`` in CRS84; keeps footprints that meet it.
            geometries: every AOI form of the pixel reads; records whose footprint bbox
                intersects the AOIs' CRS84 bounds are kept.
            split: one split value or several, looked up in ``split_column``.
            split_column: the column holding the split labels.

        Raises:
            SchemaError: a missing cloud-cover or split column, or a ``date_range`` bound that
                is not a date.

        >>> import numpy as np
        >>> from rasteret import as_collection
        >>> collection = as_collection({
        ...     "id": ["jan", "feb", "mar"],
        ...     "datetime": ["2024-01-31T23:00:00Z", "2024-02-29T12:00:00Z", "2024-03-01"],
        ...     "geometry": ["POINT (0 0)"] * 3,
        ...     "assets": [{"B04": {"href": f"{m}.tif"}} for m in ("jan", "feb", "mar")],
        ... }, require_band_metadata=False)
        >>> def ids(c): return c.to_table(columns=["id"]).column("id").to_pylist()
        >>> ids(collection.subset(date_range=("2024-01", "2024-02")))
        ['jan', 'feb']
        >>> ids(collection.subset(date_range=("2024-02-01", "2024-02-29")))
        ['feb']
        >>> ids(collection.subset(date_range=(np.datetime64("2024-03-01"), None)))
        ['mar']
        """
        parts: list[ds.Expression] = []
        names = self._dataset.schema.names
        if cloud_cover_lt is not None:
            column = next((c for c in ("eo:cloud_cover", "cloud_cover") if c in names), None)
            if column is None:
                raise SchemaError(
                    f"cloud_cover_lt needs an 'eo:cloud_cover' or 'cloud_cover' column; "
                    f"found {names}"
                )
            parts.append(ds.field(column) < cloud_cover_lt)
        if date_range is not None:
            start, end = (
                None if b is None else pa.scalar(b, type=pa.timestamp("us", tz="UTC"))
                for b in date_bounds(date_range)
            )
            if start is not None:
                parts.append(ds.field(DATETIME) >= start)
            if end is not None:
                parts.append(ds.field(DATETIME) <= end)
        if geometries is not None:
            from rasteret.types import aoi_bounds_crs84

            bbox = aoi_bounds_crs84(geometries)
        box = None
        if bbox is not None:
            xmin, ymin, xmax, ymax = (float(v) for v in bbox)
            box = (xmin, ymin, xmax, ymax)
        if split is not None:
            parts.append(_split_expression(split, split_column, names))
        return self._derive(_and(*parts), box)

    def select_split(self, split: str | Sequence[str], split_column: str = "split") -> Collection:
        """Keep the records of one or several splits (``"train"``, ``["val", "test"]``)."""
        return self._derive(_split_expression(split, split_column, self._dataset.schema.names))

    # ----------------------------------------------------------------- inspection
    @property
    def schema(self) -> pa.Schema:
        return self._dataset.schema

    @property
    def dataset(self) -> ds.Dataset:
        """The underlying dataset, without this collection's filter."""
        return self._dataset

    @property
    def filter(self) -> ds.Expression | None:
        return self._filter

    def __len__(self) -> int:
        return int(self._dataset.count_rows(filter=self._filter))

    @property
    def bands(self) -> list[str]:
        """Bands with parsed headers (``{band}_metadata`` columns), in column order."""
        return list(metadata_columns(self.schema))

    @property
    def asset_keys(self) -> list[str]:
        """Every key found in the ``assets`` column of the (filtered) records."""
        keys: dict[str, None] = {}
        for value in self.to_table(columns=[ASSETS]).column(ASSETS).to_pylist():
            items = value.items() if isinstance(value, dict) else (value or [])
            for key, _ in items:
                keys[key] = None
        return list(keys)

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """CRS84 bounds (xmin, ymin, xmax, ymax) of every footprint, or ``None`` if empty."""
        bbox = self.to_table(columns=[BBOX]).column(BBOX).combine_chunks()
        if len(bbox) == 0 or bbox.null_count == len(bbox):
            return None
        return (
            pc.min(bbox.field("xmin")).as_py(),
            pc.min(bbox.field("ymin")).as_py(),
            pc.max(bbox.field("xmax")).as_py(),
            pc.max(bbox.field("ymax")).as_py(),
        )

    @property
    def epsg(self) -> list[int]:
        """Distinct EPSG codes of the records' rasters (sorted)."""
        values = pc.unique(self.to_table(columns=[PROJ_EPSG]).column(PROJ_EPSG)).to_pylist()
        return sorted(int(v) for v in values if v is not None)

    @property
    def crs(self) -> list[str]:
        """Distinct CRSs of the records' rasters, as strings (``"EPSG:32633"`` or WKT)."""
        values = pc.unique(self.to_table(columns=[CRS]).column(CRS)).to_pylist()
        return sorted(str(v) for v in values if v is not None)

    def head(self, n: int = 5, columns: Sequence[str] | None = None) -> pa.Table:
        """The first ``n`` records as an Arrow table."""
        return self._dataset.head(
            n, columns=list(columns) if columns else None, filter=self._filter
        )

    def describe(self) -> dict[str, Any]:
        """A summary: record count, date range, CRS84 bounds, raster CRSs and per-band coverage."""
        table = self.to_table(columns=[DATETIME, *(metadata_column(b) for b in self.bands)])
        dates = table.column(DATETIME)
        coverage = {
            band: len(table) - table.column(metadata_column(band)).null_count for band in self.bands
        }
        return {
            "name": self.name,
            "records": len(table),
            "date_range": (pc.min(dates).as_py(), pc.max(dates).as_py()) if len(table) else None,
            "bounds": self.bounds,
            "crs": self.crs,
            "bands": self.bands,
            "records_with_band_metadata": coverage,
            "enrichment_errors": len(self.enrichment_errors),
        }

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        filtered = ", filtered" if self._filter is not None else ""
        return f"<rasteret.Collection{label}: {len(self)} records, bands={self.bands}{filtered}>"

    # ----------------------------------------------------------------- Arrow export
    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Materialise the (filtered) records as one Arrow table."""
        return self._dataset.to_table(
            columns=list(columns) if columns is not None else None, filter=self._filter
        )

    def to_batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Stream the (filtered) records as Arrow record batches."""
        yield from self._dataset.to_batches(
            columns=list(columns) if columns is not None else None, filter=self._filter
        )

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """Arrow PyCapsule stream of the records (geometry tagged ``geoarrow.wkb``, CRS84)."""
        reader = pa.RecordBatchReader.from_batches(self.schema, self.to_batches())
        return reader.__arrow_c_stream__(requested_schema)

    def export(self, path: str | os.PathLike[str]) -> Path | str:
        """Write the (filtered) records as a collection that :func:`rasteret.load` opens.

        What is at ``path`` afterwards is the complete new collection, or, if the export
        fails, whatever was there before (an earlier export stays complete): locally the
        collection is written to a hidden sibling folder and swapped into place; on an object
        store the data files are uploaded first and the manifest (``_rasteret.json``) last,
        and the previous export's files are deleted only after that. A path holding anything
        other than a collection is refused.

        Args:
            path: a local folder (or ``file://`` URI), or an ``s3://``, ``gs://`` or ``az://``
                prefix; object stores are configured by the standard environment variables
                (``AWS_ENDPOINT_URL``, ``AWS_REGION``, credentials, ...), as for
                ``build_from_table``.

        Returns:
            The local folder as a ``Path``, or the URI as given.

        Raises:
            WorkspaceError: ``path`` holds something that is not a rasteret collection, or an
                object-store URI without a bucket and prefix.
            UnsupportedFormatError: an ``http(s)://`` URL or another unknown scheme.
            FetchError: the object store refused or failed a request.

        >>> import tempfile, rasteret
        >>> scenes = rasteret.as_collection({"id": ["a"], "datetime": ["2024-05"],
        ...     "geometry": ["POINT (0 0)"], "assets": [{"B04": {"href": "a.tif"}}]},
        ...     require_band_metadata=False)
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = scenes.export(f"{tmp.name}/scenes_records")
        >>> len(rasteret.load(folder)), folder.name
        (1, 'scenes_records')
        >>> tmp.cleanup()
        """
        from rasteret.ingest.filesystems import collection_root, write_collection_remote
        from rasteret.ingest.store import workspace_lock, write_collection

        where = collection_root(path)  # refuses unusable URIs before anything is written
        manifest = {
            "name": self.name,
            "data_source": self.data_source,
            "fingerprint": None,
            "enrichment_errors": [asdict(e) for e in self.enrichment_errors],
        }
        table = self.to_table()  # a failing scan leaves nothing behind
        if not isinstance(where, Path):
            write_collection_remote(table, os.fspath(path), manifest)
            return os.fspath(path)
        with workspace_lock(where):
            write_collection(table, where, manifest)
        return where

    # ----------------------------------------------------------------- bands
    def _require_bands(self, bands: Sequence[str]) -> list[str]:
        if isinstance(bands, str):
            bands = [bands]
        if not bands:
            raise BandResolutionError("expected at least one band in bands=[...], got none")
        available = set(self.bands)
        missing = [b for b in bands if b not in available]
        if missing:
            keys = self.asset_keys
            hint = (
                "these bands exist as assets but have no parsed headers: rebuild with "
                "enrich_cog=True"
                if all(b in keys for b in missing)
                else "check the band names, or pass data_source=... for a registered band mapping"
            )
            raise BandResolutionError(
                f"cannot resolve bands {missing} (asked for {list(bands)}); "
                f"asset keys: {keys}; {{band}}_metadata columns: "
                f"{[metadata_column(b) for b in self.bands]}; {hint}"
            )
        return list(bands)


def _and(*parts: ds.Expression | None) -> ds.Expression | None:
    """The conjunction of the given expressions (None: no filter)."""
    combined = None
    for part in parts:
        if part is not None:
            combined = part if combined is None else combined & part
    return combined


def _box_expression(box: tuple[float, float, float, float]) -> ds.Expression:
    """Records whose CRS84 footprint bbox meets ``box`` (a null bbox never does)."""
    xmin, ymin, xmax, ymax = box
    return (
        (ds.field(BBOX, "xmin") <= xmax)
        & (ds.field(BBOX, "xmax") >= xmin)
        & (ds.field(BBOX, "ymin") <= ymax)
        & (ds.field(BBOX, "ymax") >= ymin)
    )


def _split_expression(
    split: str | Sequence[str], split_column: str, names: Sequence[str]
) -> ds.Expression:
    if split_column not in names:
        raise SchemaError(f"expected a split column {split_column!r}; found columns {list(names)}")
    values = [split] if isinstance(split, str) else list(split)
    return ds.field(split_column).isin(values)
