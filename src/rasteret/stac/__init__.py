"""STAC: search an API or walk a static catalog, and build enriched collections from items.

Import direction: ``records`` (pure: items -> Arrow) <- ``search`` (pystac-client, pystac)
and ``tables`` (catalog GeoParquet record tables) <- ``build`` (``build_from_stac`` and the
catalog's ``build`` over :func:`rasteret.builders.build_from_table`). Band maps and dataset
descriptors come from :mod:`rasteret.catalog`, below all of these.
"""

from __future__ import annotations

from rasteret.stac.build import build, build_from_stac, find_items
from rasteret.stac.records import items_to_table
from rasteret.stac.search import StacSearch, matches_query, search_api, walk_static_catalog

__all__ = [
    "StacSearch",
    "build",
    "build_from_stac",
    "find_items",
    "items_to_table",
    "matches_query",
    "search_api",
    "walk_static_catalog",
]
