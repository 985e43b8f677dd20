"""The pixel-read methods of :class:`rasteret.Collection`: AOIs in, NumPy/xarray/GeoPandas out.

Every method normalises its AOIs once (any form of :mod:`rasteret.types`), selects the
records whose footprints meet them (pushed into the dataset scan), turns their
``{band}_metadata`` cells into :class:`~rasteret.read.RecordRef` values and runs one planned
read (:func:`rasteret.read.read_chips`). Records are read in (datetime, id) order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret._no_overlap import warn_if_no_overlap
from rasteret.errors import SchemaError
from rasteret.ingest.metadata import BandMetadata
from rasteret.ingest.schema import DATETIME, ID, metadata_column
from rasteret.read import ChipSet, ReadOptions, RecordRef, read_chips
from rasteret.types import (
    aoi_bounds_crs84,
    crs_,
    geometries_to_shapely,
    geometry_crs,
    is_column_like,
)

if TYPE_CHECKING:
    import pyproj

    from rasteret.collection import Collection
    from rasteret.io.stores import CloudConfig

__all__ = [
    "IO_KEYWORDS",
    "AOIs",
    "PixelReadsMixin",
    "normalize_aois",
    "read_cloud_config",
    "records_for",
]

DEFAULT_AOI_CRS = "EPSG:4326"
_FILTER_KEYWORDS = ("cloud_cover_lt", "date_range", "bbox", "split", "split_column")
IO_KEYWORDS = (
    "max_concurrent",
    "backend",
    "cloud_config",
    "cache_mb",
    "max_gap",
    "max_coalesced_size",
)
"""The I/O keywords every pixel-reading method passes to :class:`ReadOptions`."""
_OPTION_KEYWORDS = (
    "all_touched",
    "target_crs",
    "resolution",
    "out_shape",
    "resampling",
    "fill_value",
    "dtype",
    *IO_KEYWORDS,
    "on_missing",
    "on_error",
    "retries",
    "request_timeout",
    "progress",
)


@dataclass(frozen=True, slots=True, eq=False)
class AOIs:
    """AOIs normalised once: shapely geometries, their CRS, and the table's other columns."""

    geometries: np.ndarray
    crs: str
    columns: pa.Table | None
    """The AOI table's non-geometry columns (one row per AOI), when AOIs came as a table."""


def _is_table(value: Any) -> bool:
    """A table of AOIs or points (columns kept in the output), not one geometry column."""
    if is_column_like(value):
        return False
    return (
        isinstance(value, pa.Table | pa.RecordBatch | pa.RecordBatchReader)
        or hasattr(value, "__arrow_c_stream__")
        or (type(value).__module__.startswith("geopandas") and hasattr(value, "columns"))
    )


def normalize_aois(
    geometries: Any, *, geometry_crs_: Any = None, geometry_column: str | None = None
) -> AOIs:
    """Normalise AOIs of any accepted form (see :mod:`rasteret.types`).

    The CRS is ``geometry_crs_`` when given, else the CRS the input carries (GeoArrow field
    metadata, GeoSeries.crs), else EPSG:4326.

    >>> aois = normalize_aois((77.5, 12.9, 77.6, 13.0))
    >>> aois.crs, aois.geometries[0].bounds
    ('EPSG:4326', (77.5, 12.9, 77.6, 13.0))
    """
    columns: pa.Table | None = None
    value = geometries
    if _is_table(geometries):
        from rasteret.ingest.sources import read_source

        value = read_source(geometries)  # consume a stream exactly once
    geoms = geometries_to_shapely(value, geometry_column=geometry_column)
    carried = geometry_crs(value, geometry_column=geometry_column)
    if isinstance(value, pa.Table):
        name = geometry_column or _geometry_column_name(value)
        columns = value.drop_columns([name]) if name in value.column_names else value
    crs = geometry_crs_ if geometry_crs_ is not None else carried
    crs_string = DEFAULT_AOI_CRS if crs is None else _crs_string(crs)
    return AOIs(np.asarray(geoms, dtype=object), crs_string, columns)


def _geometry_column_name(table: pa.Table) -> str:
    from rasteret.types import field_geometry_encoding

    for field in table.schema:
        if field_geometry_encoding(field)[0] is not None:
            return field.name
    return "geometry"


def _crs_string(crs: Any) -> str:
    """``EPSG:n`` when the CRS has a code, else its WKT (worked out once per CRS string or
    code: PROJ's identification costs ~0.1 ms, and every read names its AOIs' CRS)."""
    if isinstance(crs, str | int) and not isinstance(crs, bool):
        return _crs_string_of(crs)
    return _describe_crs(crs_(crs))


@functools.lru_cache(maxsize=256)
def _crs_string_of(crs: str | int) -> str:
    return _describe_crs(crs_(crs))


def _describe_crs(parsed: pyproj.CRS) -> str:
    epsg = parsed.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else parsed.to_wkt()


def records_for(collection: Collection, bands: Sequence[str]) -> list[RecordRef]:
    """The collection's records as :class:`RecordRef` values, in (datetime, id) order.

    Small collections are selected from a scan kept in memory (:mod:`rasteret._record_cache`),
    each record parsed once; others are scanned with every filter.
    """
    columns = [ID, DATETIME, *(metadata_column(b) for b in bands)]
    cached = collection._records.entry(
        collection.dataset, collection._unboxed_filter, tuple(columns), (DATETIME, ID)
    )
    if cached is not None:
        bands = tuple(bands)
        return [
            cached.parsed(row, lambda c, r: _record_of(c.table, r, bands))
            for row in cached.rows(collection._boxes).tolist()
        ]
    table = collection.to_table(columns=columns)
    if len(table) == 0:
        return []
    # sort the row numbers, not the table: taking the nested metadata columns costs more
    order = pc.sort_indices(table, sort_keys=[(DATETIME, "ascending"), (ID, "ascending")])
    ids = table.column(ID).to_pylist()
    dates = table.column(DATETIME).to_pylist()
    per_band = {b: table.column(metadata_column(b)).to_pylist() for b in bands}
    return [
        _record(ids[row], dates[row], {b: per_band[b][row] for b in bands})
        for row in order.to_pylist()
    ]


def _record_of(table: pa.Table, row: int, bands: Sequence[str]) -> RecordRef:
    """Row ``row`` of a table of :func:`records_for`'s columns as a :class:`RecordRef`."""
    cells = {b: table.column(metadata_column(b))[row].as_py() for b in bands}
    return _record(table.column(ID)[row].as_py(), table.column(DATETIME)[row].as_py(), cells)


def _record(record_id: Any, datetime: Any, cells: dict[str, Any]) -> RecordRef:
    """A record from its id, datetime and ``{band}_metadata`` cells (None: no header read)."""
    metas = {b: None if c is None else BandMetadata.from_row(c) for b, c in cells.items()}
    return RecordRef(str(record_id), datetime, metas)


def read_cloud_config(
    cloud_config: CloudConfig | None, data_source: str | None, collection_source: str
) -> CloudConfig | None:
    """The ``cloud_config`` of one read: the explicit one, else the data source's settings.

    An explicit ``cloud_config`` wins. Otherwise the read's source is ``data_source`` when
    given (``""`` turns the collection's off), else the collection's own
    (``collection_source``), and its cloud settings (requester-pays, region, URL rewrites)
    come from the catalog (:func:`rasteret.catalog.cloud_config_for`; None for ``""`` and
    unregistered names). The result is a plain, picklable value, resolved where the read is
    asked for, so Dask workers and ``DataLoader`` workers need no catalog of their own.

    >>> read_cloud_config(None, None, "") is None
    True
    >>> from rasteret.io.stores import CloudConfig
    >>> explicit = CloudConfig(region="eu-west-1")
    >>> read_cloud_config(explicit, "earthsearch/naip", "earthsearch/naip") is explicit
    True
    >>> read_cloud_config(None, None, "earthsearch/naip").requester_pays
    True
    >>> read_cloud_config(None, "", "earthsearch/naip") is None
    True
    """
    if cloud_config is not None:
        return cloud_config
    source = data_source if data_source is not None else collection_source
    if not source:
        return None
    from rasteret.catalog import cloud_config_for

    return cloud_config_for(source)


class PixelReadsMixin:
    """``get_numpy``, ``get_xarray`` and ``get_gdf`` for :class:`rasteret.Collection`."""

    def _read(
        self,
        geometries: Any,
        bands: Sequence[str] | str,
        geometry_crs: Any,
        geometry_column: str | None,
        data_source: str | None,
        kwargs: dict[str, Any],
        *,
        stack: bool = False,
    ) -> tuple[ChipSet, AOIs]:
        records, aois, names, options = self._prepare(
            geometries, bands, geometry_crs, geometry_column, data_source, kwargs
        )
        chips = read_chips(records, aois.geometries, aois.crs, names, options, stack=stack)
        return chips, aois

    def _prepare(
        self,
        geometries: Any,
        bands: Sequence[str] | str,
        geometry_crs: Any,
        geometry_column: str | None,
        data_source: str | None,
        kwargs: dict[str, Any],
    ) -> tuple[list[RecordRef], AOIs, list[str], ReadOptions]:
        """Check the keywords, normalise the AOIs, select the records: everything but I/O."""
        from rasteret.collection import Collection

        assert isinstance(self, Collection)
        unknown = sorted(set(kwargs) - set(_FILTER_KEYWORDS) - set(_OPTION_KEYWORDS))
        if unknown:
            raise TypeError(f"unexpected keyword arguments {unknown}")
        if geometries is None:
            raise SchemaError(
                "expected AOIs in geometries= (bbox tuple, shapely geometry, WKB, GeoJSON, "
                "Arrow array or table), got None"
            )
        bands = self._require_bands([bands] if isinstance(bands, str) else list(bands))
        aois = normalize_aois(
            geometries, geometry_crs_=geometry_crs, geometry_column=geometry_column
        )
        filters = {k: kwargs[k] for k in _FILTER_KEYWORDS if k in kwargs}
        bounds = aoi_bounds_crs84(aois.geometries, geometry_crs=aois.crs)
        filtered = self.subset(**filters)
        selected = filtered.subset(bbox=bounds)
        option_values = {k: kwargs[k] for k in _OPTION_KEYWORDS if k in kwargs}
        option_values["cloud_config"] = read_cloud_config(
            option_values.get("cloud_config"), data_source, self.data_source
        )
        options = ReadOptions(**option_values)
        records = records_for(selected, bands)
        if not records:
            warn_if_no_overlap(filtered, bounds, "AOIs")
        return records, aois, bands, options

    def get_numpy(
        self,
        geometries: Any,
        bands: Sequence[str] | str,
        *,
        geometry_crs: Any = None,
        geometry_column: str | None = None,
        data_source: str | None = None,
        return_index: bool = False,
        masked: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Pixels of every (record, AOI) pair as ``[N, C, H, W]`` (``[N, H, W]`` for one band).

        Entries are record-major: records in (datetime, id) order, then AOIs in the order
        given. With ``return_index=True`` a :class:`rasteret.outputs.numpy.ChipIndex` naming
        each entry's record id, datetime and AOI index is returned too. Keywords: those of
        :class:`rasteret.read.ReadOptions` and the filters of :meth:`Collection.subset`.

        With ``on_missing="skip"`` / ``on_error="skip"``, records without the bands'
        metadata and (record, band) pairs that could not be fetched or decoded are left out,
        warned about (:class:`rasteret.RasteretWarning`) and listed in the index's
        ``skipped`` / ``failed``.

        Example:
            ``arr = collection.get_numpy((77.55, 13.01, 77.58, 13.08), ["B04", "B08"])``
        """
        from rasteret.outputs.numpy import chips_to_numpy

        chips, _ = self._read(
            geometries, bands, geometry_crs, geometry_column, data_source, kwargs, stack=True
        )
        if return_index:
            return chips_to_numpy(chips, return_index=True, masked=masked)
        return chips_to_numpy(chips, masked=masked)

    def get_xarray(
        self,
        geometries: Any,
        bands: Sequence[str] | str,
        *,
        geometry_crs: Any = None,
        geometry_column: str | None = None,
        data_source: str | None = None,
        chunks: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Pixels as one ``xarray.Dataset`` (a variable per band, dims time/y/x, CF CRS).

        Records of the same datetime are mosaicked (first valid pixel wins). What a read
        with ``on_missing="skip"`` / ``on_error="skip"`` left out is listed in
        ``ds.attrs["rasteret_skipped"]`` / ``ds.attrs["rasteret_failed"]``. With
        ``chunks=`` (``"auto"``, pixels per dim as an int, a tuple or a dict over
        ``time``/``y``/``x``) the Dataset is lazy and Dask-backed, on the same grid and with
        the same values (reads that reproject: within the GDAL warper's approximation);
        computing a chunk reads only the tiles under it (needs the ``dask`` extra; see
        :func:`rasteret.dask.lazy_xarray`).

        Example:
            ``ds = collection.get_xarray((77.55, 13.01, 77.58, 13.08), ["B04"])``
        """
        from rasteret.outputs.xarray import chips_to_xarray

        if chunks is not None:
            from rasteret.dask.xarray import lazy_xarray  # raises MissingDependencyError

            records, aois, names, options = self._prepare(
                geometries, bands, geometry_crs, geometry_column, data_source, kwargs
            )
            return lazy_xarray(records, aois.geometries, aois.crs, names, options, chunks=chunks)
        chips, _ = self._read(geometries, bands, geometry_crs, geometry_column, data_source, kwargs)
        return chips_to_xarray(chips)

    def get_gdf(
        self,
        geometries: Any,
        bands: Sequence[str] | str,
        *,
        geometry_crs: Any = None,
        geometry_column: str | None = None,
        data_source: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """One GeoDataFrame row per (record, AOI), keeping the AOI table's own columns.

        Each band column holds the chip's 2-D array; ``transform`` and ``crs`` describe its
        grid. What a read with ``on_missing="skip"`` / ``on_error="skip"`` left out is listed
        in ``gdf.attrs["rasteret_skipped"]`` / ``gdf.attrs["rasteret_failed"]``.

        Example:
            ``gdf = collection.get_gdf(parcels, ["B04", "B08"], geometry_column="geometry")``
        """
        from rasteret.outputs.geopandas import chips_to_gdf

        chips, aois = self._read(
            geometries, bands, geometry_crs, geometry_column, data_source, kwargs
        )
        return chips_to_gdf(chips, aois.geometries, aois.crs, aois.columns)
