"""``build_from_stac``: a STAC search (or static catalog) -> an enriched collection.

The items found become a record table (:func:`rasteret.stac.records.items_to_table`), which
goes through :func:`rasteret.builders.build_from_table` with ``enrich_cog=True``: every kept
band's COG header is parsed during the build, so the collection is ready for pixel reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from rasteret import catalog
from rasteret.builders import DEFAULT_MAX_CONCURRENT, _show_progress, build_from_table
from rasteret.catalog import BandMapLike, BandSource, parse_band_map
from rasteret.collection import Collection
from rasteret.errors import BandResolutionError, SchemaError
from rasteret.io.stores import CloudConfig
from rasteret.stac.records import items_to_table, raster_band_codes
from rasteret.stac.search import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PAGE_SIZE,
    DateLike,
    StacSearch,
    collections_tuple,
    search_api,
    walk_static_catalog,
)
from rasteret.stac.tables import records_from_table
from rasteret.types import BBoxLike, bbox_

__all__ = ["build", "build_from_stac", "find_items"]


def build_from_stac(
    name: str = "",
    stac_api: str = "",
    collection: str | Sequence[str] | None = None,
    *,
    bbox: BBoxLike | None = None,
    date_range: tuple[DateLike, DateLike] | None = None,
    query: Mapping[str, Any] | None = None,
    band_map: BandMapLike | None = None,
    band_index_map: Mapping[str, int] | None = None,
    data_source: str = "",
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    workspace_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    backend: Any = None,
    static_catalog: bool = False,
    cloud_config: CloudConfig | Mapping[str, Any] | None = None,
    max_items: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    max_retries: int = DEFAULT_MAX_RETRIES,
    headers: Mapping[str, str] | None = None,
    progress: bool | None = None,
) -> Collection:
    """Search a STAC API (or walk a static catalog) and build an enriched collection.

    Args:
        name: persist to ``{workspace_dir}/{name}_records/`` (``""``: keep in memory).
        stac_api: the STAC API root URL, or a static catalog's href with ``static_catalog``.
        collection: STAC collection id(s) to search.
        bbox: CRS84 ``(xmin, ymin, xmax, ymax)`` (or a geometry: its bounds).
        date_range: inclusive ``(start, end)``: ISO strings, dates or datetimes (``None``
            leaves a side open).
        query: STAC query extension object, e.g. ``{"eo:cloud_cover": {"lt": 20}}``.
        band_map: band code -> asset key, ``(asset key, sample index)`` or
            ``{"asset":, "band_index":}``; the collection's bands are these codes. Default:
            the ``data_source``'s band map, else a registered dataset with this API and
            collection, else every TIFF asset under its own key.
        band_index_map: band code -> sample index within its asset (multi-band files).
        data_source: a registered dataset id whose band map and cloud settings apply; it is
            recorded on the collection.
        max_concurrent: COG header requests in flight during enrichment.
        workspace_dir: the workspace folder (default ``~/rasteret_workspace``).
        force: rebuild even when the stored collection matches the search result.
        backend: an obstore store (or object with async ``get_range``) for the COGs.
        static_catalog: ``stac_api`` is a static catalog, collection or item collection.
        cloud_config: requester-pays, region, URL rewrites (default: the data source's).
        max_items: stop after this many items.
        page_size: items per API page.
        max_retries: retries per API request on connection errors, 429 and 5xx.
        headers: extra HTTP headers for the API (e.g. an API key).
        progress: show progress bars (default: when stderr is a terminal or in Jupyter).

    Returns:
        The collection, with one ``{band}_metadata`` column per band.

    Raises:
        SchemaError: the search found no items (the message names the query), or an item is
            malformed, or the band map names assets no item has.
        FetchError: the API could not be reached or kept failing after retries.
        EnrichmentError: no COG header could be read.

    Example::

        collection = build_from_stac(
            name="bangalore-s2", stac_api="https://earth-search.aws.element84.com/v1",
            collection="sentinel-2-l2a", bbox=(77.55, 13.01, 77.58, 13.08),
            date_range=("2024-01-01", "2024-01-31"), band_map={"B04": "red", "B08": "nir"},
        )
    """
    if not stac_api:
        raise SchemaError("expected stac_api= (a STAC API URL or a static catalog href), got ''")
    search = StacSearch(
        source=stac_api,
        collections=collections_tuple(collection),
        bbox=bbox_(bbox) if bbox is not None else None,
        date_range=tuple(date_range) if date_range is not None else None,  # type: ignore[arg-type]
        query=dict(query) if query else None,
        max_items=max_items,
    )
    bands, data_source, cloud = _resolve_bands(
        search, band_map, band_index_map, data_source, cloud_config
    )
    items = find_items(
        search,
        static_catalog=static_catalog,
        page_size=page_size,
        max_retries=max_retries,
        headers=headers,
        progress=_show_progress(progress),
    )
    if not bands and band_index_map:
        bands = _single_asset_bands(items, band_index_map, search)
    table = items_to_table(items, band_map=bands or None)
    band_codes = list(bands) or _asset_keys(table)
    if not band_codes:
        raise SchemaError(
            f"expected items with TIFF assets for {search.describe()}, got {len(items)} items "
            f"whose assets are {sorted({k for i in items for k in i.get('assets') or {}})}; "
            "pass band_map={band: asset_key} naming the raster assets"
        )
    present = set(_asset_keys(table))
    missing = [b for b in band_codes if b not in present]
    if missing:
        raise SchemaError(
            f"band_map bands {missing} name assets "
            f"{sorted({bands[b].asset for b in missing})} that none of the {len(items)} items "
            f"has ({search.describe()}); the items' assets: "
            f"{sorted({k for i in items for k in i.get('assets') or {}})}"
        )
    return build_from_table(
        table,
        name=name,
        data_source=data_source,
        workspace_dir=workspace_dir,
        enrich_cog=True,
        band_codes=band_codes,
        cloud_config=cloud,
        url_rewrite_patterns=_rewrites(cloud),
        max_concurrent=max_concurrent,
        force=force,
        backend=backend,
        progress=progress,
    )


def find_items(
    search: StacSearch,
    *,
    static_catalog: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
    max_retries: int = DEFAULT_MAX_RETRIES,
    headers: Mapping[str, str] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """The items of ``search`` (API or static catalog); an empty result is an error.

    Raises:
        SchemaError: no item matched; the message names the search.
    """
    if static_catalog:
        items = walk_static_catalog(search, progress=progress)
    else:
        items = search_api(
            search,
            page_size=page_size,
            max_retries=max_retries,
            headers=headers,
            progress=progress,
        )
    if not items:
        raise SchemaError(
            f"the STAC search found no items for {search.describe()}; widen the bbox or "
            "date_range, check the collection id, or relax the query"
        )
    return items


def _resolve_bands(
    search: StacSearch,
    band_map: BandMapLike | None,
    band_index_map: Mapping[str, int] | None,
    data_source: str,
    cloud_config: CloudConfig | Mapping[str, Any] | None,
) -> tuple[dict[str, BandSource], str, CloudConfig | Mapping[str, Any] | None]:
    descriptor = None
    if data_source:
        descriptor = catalog.get_dataset(data_source)
    elif band_map is None and len(search.collections) == 1:
        descriptor = next(
            (
                d
                for d in catalog.datasets()
                if d.collection == search.collections[0]
                and (d.stac_api or "").rstrip("/") == search.source.rstrip("/")
            ),
            None,
        )
    if band_map is not None:
        bands = parse_band_map(band_map, band_index_map)
    elif descriptor is not None:
        bands = parse_band_map(descriptor.bands, band_index_map)
    else:
        bands = {}
    if descriptor is not None:
        data_source = descriptor.id
        if cloud_config is None:
            cloud_config = descriptor.cloud.to_cloud_config()
    return bands, data_source, cloud_config


def _single_asset_bands(
    items: Sequence[Mapping[str, Any]], band_index_map: Mapping[str, int], search: StacSearch
) -> dict[str, BandSource]:
    keys = raster_band_codes(items)
    if len(keys) != 1:
        raise SchemaError(
            f"band_index_map without band_map needs items with exactly one TIFF asset, got "
            f"{keys} for {search.describe()}; pass band_map={{band: asset_key}} as well"
        )
    return parse_band_map(dict.fromkeys(band_index_map, keys[0]), band_index_map)


def _asset_keys(table: Any) -> list[str]:
    keys: dict[str, None] = {}
    for value in table.column("assets").to_pylist():
        for key, _ in value or ():
            keys[key] = None
    return list(keys)


def build(
    dataset_id: str,
    *,
    name: str = "",
    bbox: BBoxLike | None = None,
    date_range: tuple[DateLike, DateLike] | None = None,
    query: Mapping[str, Any] | None = None,
    bands: Sequence[str] | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    workspace_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    backend: Any = None,
    cloud_config: CloudConfig | Mapping[str, Any] | None = None,
    max_items: int | None = None,
    progress: bool | None = None,
    **stac_options: Any,
) -> Collection:
    """Build a collection of a catalog dataset (``"earthsearch/sentinel-2-l2a"``, ...).

    The dataset's descriptor says where to search (STAC API, static catalog or GeoParquet
    record table), how band codes map to assets and how objects are reached; ``bands``
    narrows the band map. Other keywords (``page_size``, ``max_retries``, ``headers``) go to
    :func:`build_from_stac`.

    Raises:
        SchemaError: an unknown dataset id, or no records matched.
        BandResolutionError: ``bands`` names bands the dataset does not have.

    Example::

        collection = rasteret.build("earthsearch/sentinel-2-l2a", name="bangalore",
                                    bbox=(77.55, 13.01, 77.58, 13.08),
                                    date_range=("2024-01-01", "2024-01-31"), bands=["B04"])
    """
    descriptor = catalog.get_dataset(dataset_id)
    selected = _select_bands(descriptor, bands)
    cloud = cloud_config if cloud_config is not None else descriptor.cloud.to_cloud_config()
    common: dict[str, Any] = {
        "name": name,
        "data_source": descriptor.id,
        "max_concurrent": max_concurrent,
        "workspace_dir": workspace_dir,
        "force": force,
        "backend": backend,
        "cloud_config": cloud,
        "progress": progress,
    }
    if descriptor.stac_api:
        return build_from_stac(
            stac_api=descriptor.stac_api,
            collection=descriptor.collection,
            bbox=bbox,
            date_range=date_range,
            query=query,
            band_map=selected,
            static_catalog=descriptor.static_catalog,
            max_items=max_items,
            **common,
            **stac_options,
        )
    assert descriptor.geoparquet is not None  # the descriptor checks it
    if stac_options:
        raise TypeError(
            f"unexpected keyword arguments {sorted(stac_options)}: dataset {descriptor.id!r} is "
            "a GeoParquet record table, not a STAC search"
        )
    table = records_from_table(
        descriptor, selected, bbox=bbox, date_range=date_range, query=query, max_items=max_items
    )
    return build_from_table(
        table,
        enrich_cog=True,
        band_codes=list(selected),
        url_rewrite_patterns=_rewrites(cloud),
        **common,
    )


def _rewrites(cloud: CloudConfig | Mapping[str, Any] | None) -> dict[str, str] | None:
    """The URL rewrites of a cloud config: applied to the stored hrefs too, so reads of the
    collection reach the rewritten location without the config."""
    if cloud is None:
        return None
    patterns = (
        cloud.get("url_rewrite_patterns")
        if isinstance(cloud, Mapping)
        else cloud.url_rewrite_patterns
    )
    return dict(patterns) if patterns else None


def _select_bands(
    descriptor: catalog.DatasetDescriptor, bands: Sequence[str] | None
) -> dict[str, BandSource]:
    if bands is None:
        return dict(descriptor.bands)
    wanted = [bands] if isinstance(bands, str) else list(bands)
    missing = [b for b in wanted if b not in descriptor.bands]
    if missing:
        raise BandResolutionError(
            f"dataset {descriptor.id!r} has no bands {missing}; its bands: {list(descriptor.bands)}"
        )
    return {b: descriptor.bands[b] for b in wanted}
