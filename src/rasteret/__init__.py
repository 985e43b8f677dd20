"""rasteret: index-first reads of cloud-optimized GeoTIFFs.

Build a collection once (``build_from_table``: record table -> parsed COG headers in an
Arrow/Parquet index), then read pixels straight from the tile bytes with no header round trips.

Import direction (each layer uses only those to its left)::

    errors, _sync, _optional <- io, tiff <- ingest, read <- outputs <- collection <- builders <- cli

>>> import rasteret
>>> sorted(rasteret.__all__)[:3]
['Collection', 'RasteretError', 'RasteretWarning']
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rasteret import errors
from rasteret.builders import as_collection, build_from_table, load
from rasteret.collection import Collection
from rasteret.errors import RasteretError, RasteretWarning
from rasteret.stac.build import build, build_from_stac

try:
    __version__ = version("rasteret")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Collection",
    "RasteretError",
    "RasteretWarning",
    "__version__",
    "as_collection",
    "build",
    "build_from_stac",
    "build_from_table",
    "errors",
    "load",
]
