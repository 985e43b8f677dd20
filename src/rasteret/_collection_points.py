"""``Collection.sample_points``: pixel values under points, as an Arrow table.

Points come as a table (Arrow, GeoDataFrame, DuckDB relation, Polars frame, anything with
``__arrow_c_stream__``) with a geometry column (WKB, GeoArrow point, shapely) or x/y columns,
or as an array of shapely points or WKB, or as ``(x, y)`` pairs. They are normalised once to
float64 ``x``/``y`` arrays plus the table's other columns (:func:`normalize_points`); the
records whose footprints meet the points' bounds are selected with pushdown (as for pixel
reads), read with :func:`rasteret.read.sample.read_points` and assembled by
:func:`rasteret.outputs.points.samples_to_table`. The output's geometry, and for a read of
one record every column that does not depend on pixel values
(:func:`rasteret.outputs.points.table_frame`), are built on threads of their own while the
pixels are read.
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from rasteret._collection_reads import (
    _FILTER_KEYWORDS,
    DEFAULT_AOI_CRS,
    IO_KEYWORDS,
    _crs_string,
    _geometry_column_name,
    _is_table,
    read_cloud_config,
    records_for,
)
from rasteret._no_overlap import warn_if_no_overlap
from rasteret.errors import SchemaError
from rasteret.ingest.schema import metadata_column
from rasteret.read import ReadOptions
from rasteret.read.grid import crs_key, transform_bounds
from rasteret.read.locate import finite_bounds
from rasteret.read.points import PointOptions
from rasteret.read.sample import read_points
from rasteret.types import arrow_to_shapely, field_geometry_encoding, geometries_to_shapely
from rasteret.types import geometry_crs as carried_crs

__all__ = ["XY_COLUMN_PAIRS", "PointSamplingMixin", "Points", "normalize_points"]

XY_COLUMN_PAIRS = (("x", "y"), ("lon", "lat"), ("longitude", "latitude"))
"""Column pairs detected as point coordinates (case-insensitive), in order of preference."""
_OPTION_KEYWORDS = (*IO_KEYWORDS, "on_missing", "progress")
_POINT_KEYWORDS = ("batch_size", "max_decoded_mb")
_CRS_METADATA_KEY = b"crs"
_EARLY_FRAME_ROWS = 100_000
"""From this many rows on, a table's row-level columns are built on a thread of their own as
soon as the read knows its rows, while the pixels are read."""


@dataclass(frozen=True, slots=True, eq=False)
class Points:
    """Points normalised once: coordinates, CRS, and the table's other columns."""

    x: np.ndarray
    """float64; NaN for null or empty points."""
    y: np.ndarray
    crs: str
    """``EPSG:n`` when the CRS has a code, else WKT."""
    columns: pa.Table | None
    """The point table's non-geometry columns (None for plain geometry arrays)."""
    geometry: pa.Array | pa.ChunkedArray | None
    """The table's own WKB geometry column, reused in the output (None: built from x/y)."""
    geometry_name: str


def normalize_points(
    points: Any,
    *,
    geometry_column: str | None = None,
    x_column: str | None = None,
    y_column: str | None = None,
    geometry_crs: Any = None,
) -> Points:
    """Normalise points of any accepted form.

    A table is read through its geometry column (``geometry_column``, else the GeoArrow /
    GeoParquet-tagged one, else ``geometry``) unless ``x_column``/``y_column`` are given or
    it has no geometry column; then x/y columns are used (auto-detected among
    :data:`XY_COLUMN_PAIRS`). x/y columns need ``geometry_crs`` unless their field metadata
    carries a ``crs`` entry. A dict without a GeoJSON ``type`` is a table of columns;
    ``(x, y)`` pairs are read by :func:`xy_pairs`. Geometry CRS: ``geometry_crs``, else the
    CRS the input carries, else EPSG:4326.

    Raises:
        SchemaError: no geometry or x/y columns, x/y without a CRS, non-point geometries,
            pairs that are not all pairs of numbers, or a dict of unequal columns.

    >>> pts = normalize_points(pa.table({"site": ["a"], "lon": [77.5], "lat": [13.0]}),
    ...                        geometry_crs="EPSG:4326")
    >>> pts.x.tolist(), pts.crs, pts.columns.column_names
    ([77.5], 'EPSG:4326', ['site', 'lon', 'lat'])
    """
    if (x_column is None) != (y_column is None):
        raise SchemaError(
            f"expected both x_column= and y_column= or neither, got x_column={x_column!r}, "
            f"y_column={y_column!r}"
        )
    if isinstance(points, Mapping) and "type" not in points:
        points = _columns_table(points)
    if not _is_table(points):
        pairs = xy_pairs(points)
        if pairs is not None:
            return Points(*pairs, _crs_or_default(geometry_crs), None, None, "geometry")
        geoms = geometries_to_shapely(points)
        x, y = _point_xy(geoms)
        crs = geometry_crs if geometry_crs is not None else carried_crs(points)
        return Points(x, y, _crs_or_default(crs), None, None, "geometry")
    from rasteret.ingest.sources import read_source

    table = read_source(points)  # consume a stream exactly once
    if x_column is None and geometry_column is None and not _has_geometry(table):
        x_column, y_column = _detect_xy(table)
    if x_column is not None and y_column is not None:
        return _from_xy(table, x_column, y_column, geometry_crs)
    name = geometry_column or _geometry_column_name(table)
    if name not in table.column_names:
        raise SchemaError(
            f"expected a point geometry column {name!r} or x/y columns, found {table.column_names}"
        )
    field = table.schema.field(name)
    encoding, crs = field_geometry_encoding(field, table.schema.metadata)
    column = table.column(name)
    xy = None
    if encoding in (None, "geoarrow.wkb", "ogc.wkb"):
        xy = _wkb_points_fast(column)
    elif encoding == "geoarrow.point":
        xy = _native_points(column)
    if xy is None:
        xy = _point_xy(arrow_to_shapely(column, encoding), where=f"column {name!r}")
    is_wkb = pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)
    return Points(
        xy[0],
        xy[1],
        _crs_or_default(geometry_crs if geometry_crs is not None else crs),
        table.drop_columns([name]),
        column if is_wkb else None,
        name,
    )


def xy_pairs(points: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """x and y (float64) of points given as ``(x, y)`` pairs of numbers, as rasterio's
    ``sample()`` takes them: an ``(N, 2)`` numeric array, a list or tuple of pairs, or one
    pair. None for any other input (geometries, WKB, tables).

    Raises:
        SchemaError: a numeric array not of shape ``(N, 2)``, or a sequence whose first item
            is a pair of numbers but which is not all pairs of numbers (the first item that
            is not is named).

    >>> x, y = xy_pairs([(500000.0, 4100000.0), (500010, 4100020)])
    >>> x.tolist(), y.tolist()
    ([500000.0, 500010.0], [4100000.0, 4100020.0])
    >>> xy_pairs((1.5, 2.5))[0].tolist(), xy_pairs(["POINT (1 2)"])
    ([1.5], None)
    """
    if isinstance(points, np.ndarray):
        if points.dtype.kind not in "iuf":
            return None
        if points.ndim != 2 or points.shape[1] != 2:
            raise SchemaError(
                f"expected (x, y) pairs as an array of shape (N, 2), got shape {points.shape}"
            )
        pairs = points.astype(np.float64)
    elif isinstance(points, list | tuple) and points:
        if _number_pair(points):  # one pair
            points = [points]
        if not _number_pair(points[0]):
            return None
        try:
            pairs = np.asarray(points, dtype=np.float64)
        except (TypeError, ValueError):
            pairs = np.empty((0, 0))
        if pairs.ndim != 2 or pairs.shape[1] != 2:  # name the first item that is no pair
            bad = next((i for i, p in enumerate(points) if not _number_pair(p)), 0)
            raise SchemaError(f"expected (x, y) pairs of numbers, got {points[bad]!r} at row {bad}")
    else:
        return None
    return np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])


def _number_pair(value: Any) -> bool:
    return (
        isinstance(value, list | tuple | np.ndarray)
        and len(value) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    )


def _columns_table(columns: Mapping[Any, Any]) -> pa.Table:
    """A dict of columns (as pandas and pyarrow take them) as a table."""
    try:
        return pa.table({str(name): values for name, values in columns.items()})
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SchemaError(
            "expected a GeoJSON dict (with a 'type') or a dict of equal-length columns, got "
            f"keys {list(columns)[:8]}: {exc}"
        ) from exc


def _has_geometry(table: pa.Table) -> bool:
    return _geometry_column_name(table) in table.column_names


def _detect_xy(table: pa.Table) -> tuple[str, str]:
    lower = {n.lower(): n for n in table.column_names}
    for xn, yn in XY_COLUMN_PAIRS:
        if xn in lower and yn in lower:
            return lower[xn], lower[yn]
    raise SchemaError(
        "expected a point geometry column (WKB, GeoArrow point; pass geometry_column=) or "
        f"x/y columns ({', '.join('/'.join(p) for p in XY_COLUMN_PAIRS)}; or pass "
        f"x_column=/y_column=), got columns {table.column_names}"
    )


def _from_xy(table: pa.Table, x_name: str, y_name: str, geometry_crs: Any) -> Points:
    for name in (x_name, y_name):
        if name not in table.column_names:
            raise SchemaError(f"expected a coordinate column {name!r}, found {table.column_names}")
    crs = geometry_crs
    if crs is None:
        for name in (x_name, y_name):
            meta = table.schema.field(name).metadata or {}
            if _CRS_METADATA_KEY in meta:
                crs = meta[_CRS_METADATA_KEY].decode()
                break
    if crs is None:
        raise SchemaError(
            f"expected a CRS for the coordinate columns {x_name!r}/{y_name!r}, got none: their "
            "field metadata has no 'crs'; pass geometry_crs= (e.g. geometry_crs='EPSG:4326' "
            "for longitude/latitude)"
        )
    x = _float_column(table, x_name)
    y = _float_column(table, y_name)
    return Points(x, y, _crs_or_default(crs), table, None, _free_name(table, "geometry"))


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    try:
        values = column.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(
            f"expected numbers in coordinate column {name!r}, got {column.type}"
        ) from exc
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)  # nulls -> NaN


def _free_name(table: pa.Table, name: str) -> str:
    return name if name not in table.column_names else f"point_{name}"


def _crs_or_default(crs: Any) -> str:
    return DEFAULT_AOI_CRS if crs is None else _crs_string(crs)


def _point_xy(geoms: np.ndarray, where: str = "points") -> tuple[np.ndarray, np.ndarray]:
    """x and y of point geometries (NaN for None and empty points)."""
    geoms = np.asarray(geoms, dtype=object)
    kinds = shapely.get_type_id(geoms)
    bad = np.flatnonzero((kinds != 0) & (kinds != -1))
    if len(bad):
        i = int(bad[0])
        raise SchemaError(
            f"expected Point geometries in {where}, got {geoms[i].geom_type} at row {i}"
            f"{' (and ' + str(len(bad) - 1) + ' more)' if len(bad) > 1 else ''}; use "
            "get_numpy()/get_gdf() for areas"
        )
    return (
        np.asarray(shapely.get_x(geoms), dtype=np.float64),
        np.asarray(shapely.get_y(geoms), dtype=np.float64),
    )


_WKB_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])


def _wkb_points_fast(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
    """x/y of a WKB column of 2-D little-endian points without nulls, read straight from
    the buffer; None when the column is anything else (the general path handles it)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        return None
    if array.null_count or len(array) == 0:
        return None
    _, offsets_buf, data_buf = array.buffers()
    offset_type = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[
        array.offset : array.offset + len(array) + 1
    ]
    size = _WKB_POINT.itemsize
    if not np.array_equal(np.diff(offsets), np.full(len(array), size)):
        return None
    start = int(offsets[0])
    records = np.frombuffer(data_buf, dtype=_WKB_POINT, count=len(array), offset=start)
    if not (np.all(records["order"] == 1) and np.all(records["type"] == 1)):
        return None
    return records["x"].astype(np.float64), records["y"].astype(np.float64)


def _native_points(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
    """x/y of a native GeoArrow point column (struct or interleaved), nulls as NaN, without
    building geometries; None for layouts the general path handles."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    null = array.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_struct(array.type) and {"x", "y"} <= {f.name for f in array.type}:
        x, y = (array.field(k).to_numpy(zero_copy_only=False) for k in ("x", "y"))
    elif pa.types.is_fixed_size_list(array.type) and array.type.list_size >= 2:
        size = array.type.list_size
        flat = array.values.slice(array.offset * size, len(array) * size)
        coords = flat.to_numpy(zero_copy_only=False).reshape(-1, size)
        x, y = coords[:, 0], coords[:, 1]
    else:
        return None
    x = np.where(null, np.nan, np.asarray(x, dtype=np.float64))
    y = np.where(null, np.nan, np.asarray(y, dtype=np.float64))
    return x, y


def points_bounds_crs84(
    points: Points, bounds: tuple[float, ...] | None = None
) -> tuple[float, float, float, float] | None:
    """CRS84 bounds of the finite points (their bbox reprojected, edges densified), or None;
    ``bounds``: their :func:`finite_bounds`, when known."""
    if bounds is None:
        bounds = finite_bounds(points.x, points.y)[0]
    if bounds is None:
        return None
    xmin, ymin, xmax, ymax = transform_bounds(bounds, crs_key(points.crs), "OGC:CRS84")
    if xmin > xmax:  # crosses the antimeridian
        xmin, xmax = -180.0, 180.0
    return xmin, ymin, xmax, ymax


_AREA_ONLY = {
    "all_touched": "a point lies in one pixel (no polygon to rasterize)",
    "target_crs": "values come from each raster's own grid (raster_crs column)",
    "resampling": "values are the nearest pixel's, as rasterio's sample()",
    "resolution": "values are full-resolution pixels, as rasterio's sample()",
    "out_shape": "values are full-resolution pixels, as rasterio's sample()",
    "fill_value": "nodata comes back as null (pyarrow.compute.fill_null fills it)",
    "dtype": "band columns keep their native dtype (Table.cast converts them)",
}
"""Keywords of the area reads that sampling points has no use for, and why."""


def _unexpected(names: list[str]) -> str:
    """The message of a TypeError for keywords ``sample_points`` does not take.

    >>> print(_unexpected(["resampling"]))  # doctest: +ELLIPSIS
    sample_points() got unexpected keyword arguments ['resampling']: resampling= does not ...
    """
    why = [f"{n}= does not apply: {_AREA_ONLY[n]}" for n in names if n in _AREA_ONLY]
    message = f"sample_points() got unexpected keyword arguments {names}"
    return f"{message}: {'; '.join(why)}" if why else message


class PointSamplingMixin:
    """``sample_points`` for :class:`rasteret.Collection`."""

    def sample_points(
        self,
        points: Any,
        bands: Sequence[str] | str,
        *,
        geometry_column: str | None = None,
        x_column: str | None = None,
        y_column: str | None = None,
        geometry_crs: Any = None,
        match: str = "all",
        max_distance_pixels: int = 0,
        return_neighbourhood: str = "off",
        neighbourhood_radius: int = 1,
        keep_missing: bool = False,
        data_source: str | None = None,
        **kwargs: Any,
    ) -> pa.Table:
        """Band values under points: one row per (point, record) whose raster holds it.

        Args:
            points: A table (Arrow, GeoDataFrame, DuckDB, Polars, a dict of columns, ...)
                with a point geometry column or x/y columns; shapely points / WKB; or
                ``(x, y)`` pairs (a list, or an ``(N, 2)`` array, as rasterio's
                ``sample()`` takes them).
            bands: Band names, in output column order.
            geometry_column: The table's point column (default: the tagged one, else
                ``geometry``).
            x_column, y_column: Coordinate columns (default: detected ``x``/``y``,
                ``lon``/``lat``, ``longitude``/``latitude`` when there is no geometry).
            geometry_crs: CRS of the points (required for x/y columns without CRS
                metadata; default for geometries: theirs, else EPSG:4326).
            match: ``"all"`` records, or only the ``"latest"`` with a valid value per
                point and band (one row per point).
            max_distance_pixels: Take the nearest valid pixel within this many pixels
                when the point's own pixel is nodata.
            return_neighbourhood: ``"always"`` or ``"if_center_nodata"``: add each band's
                ``(2r+1)²`` window as a ``{band}_neighbourhood`` list column.
            neighbourhood_radius: ``r`` of that window.
            keep_missing: Keep points outside every record as a row of nulls.
            data_source: A registered catalog source whose cloud settings
                (requester-pays, URL rewrites) apply to the read; default: the
                collection's own ``data_source``. An explicit ``cloud_config=`` wins.
            **kwargs: Filters of :meth:`Collection.subset` and I/O options
                (``max_concurrent``, ``backend``, ``cloud_config``, ``cache_mb``,
                ``max_gap``, ``max_coalesced_size``, ``on_missing``, ``progress``,
                ``batch_size``, ``max_decoded_mb``).

        Returns:
            A ``pyarrow.Table``; columns as in :mod:`rasteret.outputs.points`, rows
            point-major (points in input order, then records by datetime and id). For a
            Dask DataFrame of points, a Dask DataFrame of the same rows, sampled partition
            by partition on the workers (:func:`rasteret.dask.sample_points_dask`; needs
            the ``dask`` extra).

        Example:
            ``table = collection.sample_points(sites, ["B04", "B08"], geometry_crs=4326)``
        """
        from rasteret.collection import Collection
        from rasteret.outputs.points import (
            PointRows,
            TableFrame,
            build_point_wkb,
            build_table_frame,
            samples_to_table,
        )

        assert isinstance(self, Collection)
        if type(points).__module__.startswith(("dask.", "dask_geopandas")):
            from rasteret.dask.points import sample_points_dask  # needs the dask extra

            return sample_points_dask(
                self,
                points,
                bands,
                geometry_column=geometry_column,
                x_column=x_column,
                y_column=y_column,
                geometry_crs=geometry_crs,
                match=match,
                max_distance_pixels=max_distance_pixels,
                return_neighbourhood=return_neighbourhood,
                neighbourhood_radius=neighbourhood_radius,
                keep_missing=keep_missing,
                data_source=data_source,
                **kwargs,
            )
        allowed = {*_FILTER_KEYWORDS, *_OPTION_KEYWORDS, *_POINT_KEYWORDS}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise TypeError(_unexpected(unknown))
        if points is None:
            raise SchemaError(
                "expected points (a table with a point geometry or x/y columns, shapely "
                "points or WKB), got None"
            )
        bands = self._require_bands([bands] if isinstance(bands, str) else list(bands))
        point_options = PointOptions(
            match=match,  # type: ignore[arg-type]
            max_distance_pixels=max_distance_pixels,
            return_neighbourhood=return_neighbourhood,  # type: ignore[arg-type]
            neighbourhood_radius=neighbourhood_radius,
            **{k: kwargs[k] for k in _POINT_KEYWORDS if k in kwargs},
        )
        io = {k: kwargs[k] for k in _OPTION_KEYWORDS if k in kwargs}
        io["cloud_config"] = read_cloud_config(
            io.get("cloud_config"), data_source, self.data_source
        )
        read_options = ReadOptions(**io)
        pts = normalize_points(
            points,
            geometry_column=geometry_column,
            x_column=x_column,
            y_column=y_column,
            geometry_crs=geometry_crs,
        )
        # the geometry column needs only the points: built while the tiles are fetched (once
        # their requests are out: before, it would slow the work they wait for)
        requests_out = threading.Event()
        box, mask = finite_bounds(pts.x, pts.y)
        built = None
        if pts.geometry is None:
            built = build_point_wkb(pts.x, pts.y, requests_out, finite=mask is None)
        bounds = points_bounds_crs84(pts, box)
        records = []
        if bounds is not None:
            filters = {k: kwargs[k] for k in _FILTER_KEYWORDS if k in kwargs}
            filtered = self.subset(**filters)
            records = records_for(filtered.subset(bbox=bounds), bands)
            if not records and not keep_missing:  # kept: a null row per point says it
                warn_if_no_overlap(filtered, bounds, "points")
        per_record: dict[str, Any] = {
            "record_ids": [r.id for r in records],
            "record_datetimes": [r.datetime for r in records],
            "raster_crs": [_record_crs(r, bands[0]) for r in records],
        }
        table_args: dict[str, Any] = {
            "columns": pts.columns, "x": pts.x, "y": pts.y, "point_crs": pts.crs,
            "geometry": pts.geometry, "geometry_name": pts.geometry_name, "built": built,
        }  # fmt: skip
        frame: list[Future[TableFrame]] = []

        def rows_known(*rows: np.ndarray) -> None:  # the table's row-level columns, early
            if len(rows[0]) >= _EARLY_FRAME_ROWS and not keep_missing:
                frame.append(build_table_frame(PointRows(*rows), requests_out, **per_record,
                                               **table_args))  # fmt: skip

        samples = read_points(  # sets requests_out, at the latest when it returns
            records, pts.x, pts.y, pts.crs, bands, point_options, read_options, requests_out,
            rows_known, (box, mask),
        )  # fmt: skip
        if not records:  # no record to take the dtypes from: the collection's first one
            samples = replace(samples, values=tuple(
                np.empty(0, dtype=d) for d in _collection_dtypes(self, bands)
            ))  # fmt: skip
        return samples_to_table(
            samples,
            **per_record,
            keep_missing=keep_missing,
            frame=frame[0] if frame else None,
            **table_args,
        )


def _record_crs(record: Any, band: str) -> str | None:
    meta = record.bands.get(band)
    if meta is None:
        return None
    return crs_key(meta.crs, meta.epsg)


def _collection_dtypes(collection: Any, bands: Sequence[str]) -> list[np.dtype]:
    """Each band's dtype in the collection's first record (float64 when it has none)."""
    head = collection.dataset.head(1, columns=[metadata_column(b) for b in bands])
    out = []
    for band in bands:
        cells = head.column(metadata_column(band)).to_pylist() if head.num_rows else [None]
        out.append(np.dtype(cells[0]["dtype"]) if cells[0] else np.dtype("float64"))
    return out
