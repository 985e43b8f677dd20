"""COG header enrichment: many headers concurrently -> ``{band}_metadata`` columns.

Each distinct file is fetched once, with one speculative ranged GET of its prefix (a second
only when its IFDs reach further), however many logical bands point into it. Every header of
the build is in flight at once, bounded by ``max_concurrent``. A header that cannot be read
leaves its cells null and is reported in the returned failure list; it never aborts the build.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from rasteret.errors import RasteretError
from rasteret.ingest.metadata import BandMetadata, band_metadata_from_header
from rasteret.ingest.schema import (
    ASSETS,
    BAND_METADATA_TYPE,
    CRS,
    ID,
    PROJ_EPSG,
    metadata_column,
)
from rasteret.io.fetch import DEFAULT_HEADER_PREFIX, FetchOptions, fetch_prefix, fetch_ranges
from rasteret.io.ranges import ByteRange
from rasteret.io.stores import CloudConfig, redact_url
from rasteret.tiff.header import IncompleteHeaderError, TiffHeader, parse_header

__all__ = [
    "EnrichmentFailure",
    "HeaderResult",
    "enrich_table_async",
    "read_header_async",
    "tiff_asset_keys",
]

MAX_HEADER_FETCHES = 8
"""Ranged GETs allowed for one header before giving up (a GDAL COG needs exactly one)."""

_TIFF_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff", "application/geotiff")
_TIFF_SUFFIXES = (".tif", ".tiff", ".gtiff", ".geotiff")
_NON_DATA_ROLES = frozenset({"thumbnail", "overview", "metadata", "visual-preview"})


@dataclass(frozen=True, slots=True, eq=False)
class HeaderResult:
    """A parsed header and what fetching it cost."""

    header: TiffHeader
    object_size: int | None
    etag: str | None
    requests: int
    """Ranged GETs used (1 for a GDAL-written COG whose header fits the prefix)."""


@dataclass(frozen=True, slots=True)
class EnrichmentFailure:
    """One asset whose header could not be read."""

    record_id: str
    band: str
    url: str
    error: str


async def read_header_async(
    url: str,
    *,
    prefix: int = DEFAULT_HEADER_PREFIX,
    options: FetchOptions | None = None,
    backend: Any = None,
    cloud_config: CloudConfig | None = None,
) -> HeaderResult:
    """Fetch and parse the header of one TIFF with as few ranged GETs as possible.

    The first GET asks for ``prefix`` bytes and learns the object size; when the IFDs reach
    further, the parser says how far, and one more GET fetches the rest.
    """
    first = await fetch_prefix(
        url, prefix, options=options, backend=backend, cloud_config=cloud_config
    )
    data = bytes(first.data)
    size = first.object_size
    requests = 1
    while True:
        try:
            header = parse_header(data, url=redact_url(url), object_size=size)
            return HeaderResult(header, size, first.etag, requests)
        except IncompleteHeaderError as incomplete:
            if requests >= MAX_HEADER_FETCHES:
                raise
            end = max(incomplete.needed, 2 * len(data))
            if size is not None:
                end = min(end, size)
            if end <= len(data):
                raise
            (more,) = await fetch_ranges(
                url,
                [ByteRange(len(data), end)],
                options=options,
                backend=backend,
                cloud_config=cloud_config,
            )
            data += bytes(more)
            requests += 1


def tiff_asset_keys(assets: Sequence[dict[str, Any] | None]) -> list[str]:
    """Asset keys that point at a TIFF in any row, in first-seen order.

    An asset counts when its media type says TIFF, or, without a type, when its href ends
    in a TIFF suffix; thumbnails and metadata files are left out.

    >>> tiff_asset_keys([{"B04": {"href": "a_B04.tif"}, "thumb": {"href": "a.jpg"}}])
    ['B04']
    """
    keys: dict[str, None] = {}
    for row in assets:
        for key, asset in (row or {}).items():
            if key in keys or not asset or not asset.get("href"):
                continue
            roles = set(asset.get("roles") or ())
            if roles & _NON_DATA_ROLES and "data" not in roles:
                continue
            media = (asset.get("type") or "").lower()
            href = asset["href"].split("?", 1)[0].lower()
            if any(media.startswith(t) for t in _TIFF_TYPES) or (
                not media and href.endswith(_TIFF_SUFFIXES)
            ):
                keys[key] = None
    return list(keys)


def _assets_as_dicts(column: pa.ChunkedArray) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for value in column.to_pylist():
        if value is None:
            out.append(None)
        elif isinstance(value, dict):
            out.append(value)
        else:  # map<string, struct> arrives as a list of (key, value) pairs
            out.append(dict(value))
    return out


async def enrich_table_async(
    table: pa.Table,
    bands: Sequence[str],
    *,
    max_concurrent: int,
    backend: Any = None,
    cloud_config: CloudConfig | None = None,
    on_header: Callable[[], None] | None = None,
) -> tuple[pa.Table, list[EnrichmentFailure], int]:
    """Add one ``{band}_metadata`` column per band; return the table, failures and GET count.

    Existing metadata columns of the same bands are replaced. CRS sidecars (``proj:epsg``,
    ``crs``) that are null are filled from the first readable header of each row.
    """
    assets = _assets_as_dicts(table.column(ASSETS))
    ids = table.column(ID).to_pylist()
    # (row, band) -> (href, band_index); distinct hrefs are fetched once.
    wanted: dict[tuple[int, str], tuple[str, int]] = {}
    for row, row_assets in enumerate(assets):
        for band in bands:
            asset = (row_assets or {}).get(band)
            if asset and asset.get("href"):
                wanted[(row, band)] = (asset["href"], int(asset.get("band_index") or 0))
    hrefs = sorted({href for href, _ in wanted.values()})
    options = FetchOptions(max_concurrent=max_concurrent)
    limiter = asyncio.Semaphore(max(1, max_concurrent))

    async def one(href: str) -> HeaderResult | BaseException:
        async with limiter:
            try:
                return await read_header_async(
                    href, options=options, backend=backend, cloud_config=cloud_config
                )
            except (RasteretError, OSError, IncompleteHeaderError) as exc:
                return exc
            finally:
                if on_header is not None:
                    on_header()

    results = dict(zip(hrefs, await asyncio.gather(*(one(h) for h in hrefs)), strict=True))
    failures: list[EnrichmentFailure] = []
    columns: dict[str, list[dict[str, Any] | None]] = {b: [None] * len(table) for b in bands}
    sidecars: list[BandMetadata | None] = [None] * len(table)
    for (row, band), (href, band_index) in wanted.items():
        result = results[href]
        try:
            if isinstance(result, BaseException):
                raise result
            meta = band_metadata_from_header(
                result.header,
                band_index=band_index,
                href=href,  # signed URLs keep their signature in memory (never stored)
                object_size=result.object_size,
                etag=result.etag,
            )
        except (RasteretError, OSError, IncompleteHeaderError) as exc:
            failures.append(
                EnrichmentFailure(str(ids[row]), band, redact_url(href), _describe(exc))
            )
            continue
        columns[band][row] = meta.to_row()
        if sidecars[row] is None:
            sidecars[row] = meta
    for band in bands:
        name = metadata_column(band)
        array = pa.array(columns[band], type=BAND_METADATA_TYPE)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(pa.field(name, BAND_METADATA_TYPE), array)
    table = _fill_crs_sidecars(table, sidecars)
    requests = sum(r.requests for r in results.values() if isinstance(r, HeaderResult))
    return table, failures, requests


def _describe(exc: BaseException) -> str:
    if isinstance(exc, IncompleteHeaderError):
        return f"HeaderError: header still incomplete after {MAX_HEADER_FETCHES} ranged GETs"
    return f"{type(exc).__name__}: {exc}"


def _fill_crs_sidecars(table: pa.Table, sidecars: list[BandMetadata | None]) -> pa.Table:
    epsg = table.column(PROJ_EPSG).to_pylist()
    crs = table.column(CRS).to_pylist()
    for row, meta in enumerate(sidecars):
        if meta is None:
            continue
        if epsg[row] is None and meta.epsg is not None:
            epsg[row] = meta.epsg
        if crs[row] is None and meta.crs is not None:
            crs[row] = meta.crs
    table = table.set_column(
        table.column_names.index(PROJ_EPSG), PROJ_EPSG, pa.array(epsg, type=pa.int32())
    )
    return table.set_column(table.column_names.index(CRS), CRS, pa.array(crs, type=pa.string()))
