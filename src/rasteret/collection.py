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

import datetime as _dt
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

DateLike = str | _dt.date | _dt.datetime


class Collection(PixelReadsMixin, PointSamplingMixin, TorchGeoMixin):
    """Raster records plus their parsed COG headers, as a lazy Arrow dataset."""

    def __init__(
        self,
        dataset: ds.Dataset,
        *,
        name: str = "",
        data_source: str = "",
        filter: ds.Expression | None = None,
        path: Path | None = None,
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
        date_range: tuple[DateLike, DateLike] | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        geometries: Any = None,
        split: str | Sequence[str] | None = None,
        split_column: str = "split",
    ) -> Collection:
        """Filter by cloud cover, date range (inclusive), CRS84 bbox, AOI geometries or split.

        ``geometries`` accepts every AOI form of the pixel reads; records whose footprint
        bbox intersects the AOIs' CRS84 bounds are kept.
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
            start, end = (_as_timestamp(d, end=i == 1) for i, d in enumerate(date_range))
            parts.append((ds.field(DATETIME) >= start) & (ds.field(DATETIME) <= end))
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

    def export(self, path: str | Path) -> Path:
        """Write the (filtered) records to ``path`` as a collection ``rasteret.load`` opens."""
        from rasteret.ingest.store import workspace_lock, write_collection

        target = Path(path).expanduser()
        with workspace_lock(target):
            write_collection(
                self.to_table(),
                target,
                {
                    "name": self.name,
                    "data_source": self.data_source,
                    "fingerprint": None,
                    "enrichment_errors": [asdict(e) for e in self.enrichment_errors],
                },
            )
        return target

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


def _as_timestamp(value: DateLike, *, end: bool) -> pa.Scalar:
    if isinstance(value, str):
        parsed = _dt.datetime.fromisoformat(value)
        date_only = len(value) <= 10
    elif isinstance(value, _dt.datetime):
        parsed, date_only = value, False
    else:
        parsed, date_only = _dt.datetime(value.year, value.month, value.day), True
    if date_only and end:
        parsed = parsed + _dt.timedelta(days=1) - _dt.timedelta(microseconds=1)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return pa.scalar(parsed, type=pa.timestamp("us", tz="UTC"))
