"""STAC: search an API or walk a static catalog, and build enriched collections from items.

Modules, in import order: ``records`` (pure: item dicts -> a record table), ``search``
(pystac-client API searches with retries, static catalog walks), ``tables`` (catalog datasets
backed by a GeoParquet record table), ``build`` (``build_from_stac`` and the catalog's
``build``, over :func:`rasteret.builders.build_from_table`). Band maps and dataset descriptors
come from :mod:`rasteret.catalog`, below all of these. The public entry points are re-exported
by :mod:`rasteret`; this package imports nothing itself, so ``records`` and ``search`` stay
usable without the collection layer.
"""

__all__: list[str] = []
