"""Record tables of catalog datasets: a (STAC) GeoParquet table -> filtered, band-mapped records.

Used by :func:`rasteret.build` for descriptors with a ``geoparquet`` source. The table is
normalised (so any accepted layout works, stac-geoparquet's included), filtered by bbox, dates
and a STAC-style query on its columns, and its assets are re-keyed by band code, so the
collection's bands are the descriptor's band codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from rasteret.catalog import BandSource, DatasetDescriptor, remap_assets
from rasteret.errors import SchemaError
from rasteret.ingest.normalize import normalize_records
from rasteret.ingest.schema import ASSETS, ASSETS_TYPE, BBOX, DATETIME
from rasteret.ingest.sources import read_source
from rasteret.stac.search import DateLike, StacSearch, date_window
from rasteret.types import BBoxLike, bbox_

__all__ = ["query_expression", "records_from_table", "remap_assets_column"]

_COMPARISONS = {
    "eq": lambda f, v: f == v,
    "neq": lambda f, v: f != v,
    "lt": lambda f, v: f < v,
    "lte": lambda f, v: f <= v,
    "gt": lambda f, v: f > v,
    "gte": lambda f, v: f >= v,
    "in": lambda f, v: f.isin(list(v)),
}


def records_from_table(
    descriptor: DatasetDescriptor,
    bands: Mapping[str, BandSource],
    *,
    bbox: BBoxLike | None = None,
    date_range: tuple[DateLike, DateLike] | None = None,
    query: Mapping[str, Any] | None = None,
    max_items: int | None = None,
) -> pa.Table:
    """The descriptor's GeoParquet records matching the filters, assets keyed by band code.

    Raises:
        SchemaError: no record matched (the message names the filters), or a band's asset
            is in no record.
    """
    assert descriptor.geoparquet is not None
    search = StacSearch(
        descriptor.geoparquet,
        bbox=bbox_(bbox) if bbox is not None else None,
        date_range=tuple(date_range) if date_range is not None else None,  # type: ignore[arg-type]
        query=dict(query) if query else None,
        max_items=max_items,
    )
    multiband = descriptor.href_column is not None
    table = normalize_records(
        read_source(descriptor.geoparquet),
        column_map=dict(descriptor.column_map) or None,
        href_column=descriptor.href_column,
        band_index_map={b: s.band_index or 0 for b, s in bands.items()} if multiband else None,
    )
    expression = _filters(search)
    if expression is not None:
        table = ds.dataset(table).to_table(filter=expression)
    if max_items is not None:
        table = table.slice(0, max_items)
    if len(table) == 0:
        raise SchemaError(
            f"no records of dataset {descriptor.id!r} matched {search.describe()}; widen the "
            "bbox or date_range, or relax the query"
        )
    if multiband:
        return table
    return remap_assets_column(table, bands, where=f"dataset {descriptor.id!r}")


def remap_assets_column(
    table: pa.Table,
    bands: Mapping[str, BandSource],
    *,
    keep_unmapped: bool = False,
    require_all: bool = True,
    where: str = "the table",
) -> pa.Table:
    """Re-key a normalised table's ``assets`` by band code (``{band: asset + band_index}``).

    Args:
        table: a table with the canonical ``assets`` column.
        bands: band code -> asset key and sample index (e.g. ``band_map_for(data_source)``).
        keep_unmapped: also keep the assets no band maps, under their own keys (a mapped
            band of the same name wins).
        require_all: every band's asset must be in some record.
        where: names the table in errors.

    Raises:
        SchemaError: with ``require_all``, a band whose asset no record has.
    """
    rows = []
    for value in table.column(ASSETS).to_pylist():
        assets = dict(value or ())
        mapped = remap_assets(assets, bands)
        if keep_unmapped:
            used = {source.asset for source in bands.values()}
            extra = {k: v for k, v in assets.items() if k not in used and k not in mapped}
            mapped = {**mapped, **extra}
        rows.append(list(mapped.items()))
    present = {band for row in rows for band, _ in row}
    missing = [b for b in bands if b not in present]
    if missing and require_all:
        keys = sorted({k for v in table.column(ASSETS).to_pylist() for k, _ in v or ()})
        raise SchemaError(
            f"bands {missing} map to assets {sorted({bands[b].asset for b in missing})} that no "
            f"record of {where} has; its asset keys: {keys}"
        )
    index = table.column_names.index(ASSETS)
    return table.set_column(index, ASSETS, pa.array(rows, ASSETS_TYPE))


def query_expression(query: Mapping[str, Any]) -> ds.Expression:
    """A STAC query object (``{"eo:cloud_cover": {"lt": 20}}``) as an Arrow filter.

    >>> str(query_expression({"eo:cloud_cover": {"lt": 20}}))
    '(eo:cloud_cover < 20)'

    Raises:
        SchemaError: an operator other than eq, neq, lt, lte, gt, gte, in.
    """
    parts: list[ds.Expression] = []
    for name, condition in query.items():
        ops = condition if isinstance(condition, Mapping) else {"eq": condition}
        for op, value in ops.items():
            if op not in _COMPARISONS:
                raise SchemaError(
                    f"expected query operators {sorted(_COMPARISONS)} on a record table, got "
                    f"{op!r} for {name!r}"
                )
            parts.append(_COMPARISONS[op](ds.field(name), value))
    expression = parts[0]
    for part in parts[1:]:
        expression = expression & part
    return expression


def _filters(search: StacSearch) -> ds.Expression | None:
    parts: list[ds.Expression] = []
    if search.bbox is not None:
        xmin, ymin, xmax, ymax = search.bbox
        parts.append(
            (ds.field(BBOX, "xmin") <= xmax)
            & (ds.field(BBOX, "xmax") >= xmin)
            & (ds.field(BBOX, "ymin") <= ymax)
            & (ds.field(BBOX, "ymax") >= ymin)
        )
    window = date_window(search.date_range)
    if window is not None:
        low, high = (pa.scalar(w, pa.timestamp("us", tz="UTC")) for w in window)
        parts.append((ds.field(DATETIME) >= low) & (ds.field(DATETIME) <= high))
    if search.query:
        parts.append(query_expression(search.query))
    if not parts:
        return None
    expression = parts[0]
    for part in parts[1:]:
        expression = expression & part
    return expression
