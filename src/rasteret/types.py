"""Accepted input forms and the small normalisers that turn each into one canonical type.

Public functions take the loose forms users already hold (a bbox tuple, a shapely geometry, WKB
bytes, a GeoJSON dict, a GeoArrow array, a GeoSeries, an EPSG code ...) and internals only ever
see the canonical ones: :class:`pyproj.CRS`, a ``(xmin, ymin, xmax, ymax)`` tuple, a NumPy
object array of shapely geometries, or a WKB :class:`pyarrow.BinaryArray`.

>>> crs_(32633).to_epsg()
32633
>>> bbox_((0, 1, 2, 3))
(0.0, 1.0, 2.0, 3.0)
>>> geometries_to_shapely([(0, 0, 1, 1)])[0].bounds
(0.0, 0.0, 1.0, 1.0)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from rasteret.errors import SchemaError, UnsupportedFormatError

__all__ = [
    "CRS84",
    "DEFAULT_DENSIFY_POINTS",
    "EXTENSION_METADATA_KEY",
    "EXTENSION_NAME_KEY",
    "GEOARROW_WKB",
    "BBox",
    "BBoxLike",
    "CRSLike",
    "GeometryLike",
    "aoi_bounds_crs84",
    "arrow_to_shapely",
    "bbox_",
    "classic_arrow_types",
    "crs_",
    "field_geometry_encoding",
    "geoarrow_wkb_field",
    "geoparquet_metadata",
    "geoparquet_schema_metadata",
    "geometries_to_shapely",
    "geometries_to_wkb",
    "geometry_crs",
    "is_column_like",
    "is_crs84",
    "to_crs84",
]

CRSLike: TypeAlias = pyproj.CRS | str | int | Mapping[str, Any] | Any
"""A CRS: pyproj.CRS, EPSG int, "EPSG:32633", WKT, PROJJSON (str or dict), rasterio CRS."""
BBox: TypeAlias = tuple[float, float, float, float]
"""The canonical bounding box ``(xmin, ymin, xmax, ymax)``."""
BBoxLike: TypeAlias = Sequence[float] | np.ndarray | BaseGeometry | Mapping[str, float]
"""Four numbers, a shapely geometry (its bounds) or a mapping with xmin/ymin/xmax/ymax."""
GeometryLike: TypeAlias = (
    BaseGeometry | bytes | str | Mapping[str, Any] | Sequence[Any] | np.ndarray | pa.Array | Any
)
"""One or many geometries: shapely, WKB, WKT, GeoJSON, bbox tuples, GeoArrow, GeoSeries, tables."""

CRS84 = pyproj.CRS.from_user_input("OGC:CRS84")
EXTENSION_NAME_KEY = b"ARROW:extension:name"
EXTENSION_METADATA_KEY = b"ARROW:extension:metadata"
GEOARROW_WKB = "geoarrow.wkb"
DEFAULT_DENSIFY_POINTS = 21
"""Points per edge when reprojecting footprints (as in ``Transformer.transform_bounds``)."""

_NESTING = {
    "geoarrow.point": 0,
    "geoarrow.linestring": 1,
    "geoarrow.multipoint": 1,
    "geoarrow.polygon": 2,
    "geoarrow.multilinestring": 2,
    "geoarrow.multipolygon": 3,
}
_GEOPARQUET_ENCODINGS = {"wkb": GEOARROW_WKB, "wkt": "geoarrow.wkt"} | {
    name.split(".")[1]: name for name in _NESTING
}
_BBOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


def crs_(value: CRSLike) -> pyproj.CRS:
    """Normalise any CRS form to :class:`pyproj.CRS`.

    Raises:
        SchemaError: the value is not a CRS pyproj understands.

    >>> crs_("epsg:4326").name
    'WGS 84'
    """
    if isinstance(value, pyproj.CRS):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or value is None:
        raise SchemaError(f"expected a CRS (EPSG code, 'EPSG:n', WKT, PROJJSON), got {value!r}")
    try:
        if isinstance(value, str | int):
            return _crs_from_text(value)
        return pyproj.CRS.from_user_input(dict(value) if isinstance(value, Mapping) else value)
    except pyproj.exceptions.CRSError as exc:
        shown = str(value)[:120]
        raise SchemaError(
            f"expected a CRS (EPSG code, 'EPSG:n', WKT, PROJJSON), got {shown!r}: {exc}"
        ) from exc


@functools.lru_cache(maxsize=256)
def _crs_from_text(value: str | int) -> pyproj.CRS:
    """A CRS from an EPSG code or a string, built once: reads name their AOIs' and rasters'
    CRSs by string, and PROJ takes ~0.1 ms to build one (a ``pyproj.CRS`` is immutable and
    shared across threads, as :data:`CRS84` is)."""
    return pyproj.CRS.from_user_input(value)


def is_crs84(crs: CRSLike | None) -> bool:
    """True when ``crs`` is None or CRS84/EPSG:4326 up to axis order (coordinates stay lon/lat).

    >>> is_crs84("EPSG:4326"), is_crs84(32633)
    (True, False)
    """
    if crs is None:
        return True
    if isinstance(crs, str | int) and not isinstance(crs, bool):
        return _text_is_crs84(crs)
    return crs_(crs).equals(CRS84, ignore_axis_order=True)


@functools.lru_cache(maxsize=256)
def _text_is_crs84(crs: str | int) -> bool:
    return crs_(crs).equals(CRS84, ignore_axis_order=True)


def bbox_(value: BBoxLike) -> BBox:
    """Normalise a bounding box to ``(xmin, ymin, xmax, ymax)`` floats, checking its order.

    >>> bbox_({"xmin": 0, "ymin": 0, "xmax": 2, "ymax": 1})
    (0.0, 0.0, 2.0, 1.0)
    """
    if isinstance(value, BaseGeometry):
        values = list(value.bounds)
    elif isinstance(value, Mapping):
        if not all(k in value for k in _BBOX_KEYS):
            raise SchemaError(
                f"expected a bbox mapping with keys {_BBOX_KEYS}, got {sorted(value)}"
            )
        values = [value[k] for k in _BBOX_KEYS]
    else:
        values = list(np.asarray(value, dtype=float).ravel())
    if len(values) != 4:
        raise SchemaError(f"expected a bbox of 4 numbers (xmin, ymin, xmax, ymax), got {value!r}")
    xmin, ymin, xmax, ymax = (float(v) for v in values)
    if not (np.isfinite(values).all() and xmin <= xmax and ymin <= ymax):
        raise SchemaError(f"expected finite bbox with xmin <= xmax and ymin <= ymax, got {value!r}")
    return xmin, ymin, xmax, ymax


def geoarrow_wkb_field(name: str, crs: CRSLike = CRS84, *, nullable: bool = True) -> pa.Field:
    """A binary field tagged ``geoarrow.wkb`` whose metadata carries ``crs`` as PROJJSON.

    >>> geoarrow_wkb_field("geometry").metadata[b"ARROW:extension:name"]
    b'geoarrow.wkb'
    """
    meta = json.dumps({"crs": crs_(crs).to_json_dict()})
    return pa.field(
        name,
        pa.binary(),
        nullable=nullable,
        metadata={EXTENSION_NAME_KEY: GEOARROW_WKB.encode(), EXTENSION_METADATA_KEY: meta.encode()},
    )


def geoparquet_metadata(
    column: str, crs: CRSLike, geometry_types: Sequence[str] = ()
) -> dict[str, Any]:
    """GeoParquet 1.1 ``geo`` metadata naming one WKB ``column`` in ``crs`` primary (the
    column's entry can take more keys: ``edges``, ``covering``, ``bbox``).

    >>> geo = geoparquet_metadata("geometry", 32633, ["Point"])
    >>> geo["primary_column"], geo["columns"]["geometry"]["crs"]["id"]["code"]
    ('geometry', 32633)
    """
    entry: dict[str, Any] = {"encoding": "WKB", "geometry_types": list(geometry_types)}
    entry["crs"] = crs_(crs).to_json_dict()
    return {"version": "1.1.0", "primary_column": column, "columns": {column: entry}}


def geoparquet_schema_metadata(
    column: str, crs: CRSLike, geometry_types: Sequence[str] = ()
) -> dict[bytes, bytes]:
    """:func:`geoparquet_metadata` as Arrow schema metadata: a table that carries it is
    GeoParquet once written (``geopandas.read_parquet`` and DuckDB's spatial extension read
    it as such).

    >>> json.loads(geoparquet_schema_metadata("g", 4326)[b"geo"])["primary_column"]
    'g'
    """
    return {b"geo": json.dumps(geoparquet_metadata(column, crs, geometry_types)).encode()}


def field_geometry_encoding(
    field: pa.Field, schema_metadata: Mapping[bytes, bytes] | None = None
) -> tuple[str | None, pyproj.CRS | None]:
    """GeoArrow encoding name and CRS of a field, from its extension type or field metadata,
    else from GeoParquet ``geo`` schema metadata. ``(None, None)`` when the field is untagged.

    >>> field_geometry_encoding(geoarrow_wkb_field("g"))[0]
    'geoarrow.wkb'
    """
    name: str | None = None
    ext_meta: bytes | None = None
    if isinstance(field.type, pa.ExtensionType):
        name = field.type.extension_name
        ext_meta = field.type.__arrow_ext_serialize__()
    elif field.metadata and EXTENSION_NAME_KEY in field.metadata:
        name = field.metadata[EXTENSION_NAME_KEY].decode()
        ext_meta = field.metadata.get(EXTENSION_METADATA_KEY)
    if name is not None:
        parsed = json.loads(ext_meta) if ext_meta else {}
        crs = parsed.get("crs") if isinstance(parsed, dict) else None
        return name, (crs_(crs) if crs else None)
    geo = (schema_metadata or {}).get(b"geo")
    column = json.loads(geo).get("columns", {}).get(field.name) if geo else None
    if not column:
        return None, None
    encoding = _GEOPARQUET_ENCODINGS.get(str(column.get("encoding", "WKB")).lower())
    if "crs" not in column:  # GeoParquet: an absent crs means OGC:CRS84, a null one unknown
        return encoding, CRS84
    return encoding, (crs_(column["crs"]) if column["crs"] else None)


def is_column_like(value: Any) -> bool:
    """Whether ``value`` is one column rather than a table: an Arrow array or chunked array,
    a pandas, Polars or GeoPandas Series, or a GeoPandas GeometryArray. (Some of these have
    ``__arrow_c_stream__`` too, but stream arrays, not record batches.)

    >>> import pandas as pd
    >>> is_column_like(pa.chunked_array([[1]])), is_column_like(pd.Series([1]))
    (True, True)
    >>> is_column_like(pa.table({"a": [1]})), is_column_like(pd.DataFrame({"a": [1]}))
    (False, False)
    >>> import geopandas as gpd, shapely
    >>> frame = gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)])
    >>> is_column_like(frame.geometry), is_column_like(frame.to_arrow())  # the latter: a table
    (True, False)
    """
    if isinstance(value, pa.Array | pa.ChunkedArray):
        return True
    kind = type(value)
    if kind.__module__.startswith(("pandas", "geopandas")):  # Series and subclasses
        return any(c.__name__ in ("Series", "GeometryArray") for c in kind.__mro__)
    return kind.__module__.startswith("polars") and kind.__name__ == "Series"


def classic_arrow_types(table: pa.Table) -> pa.Table:
    """``table`` with Arrow's view types cast to their classic layouts: ``string_view`` to
    ``large_string``, ``binary_view`` to ``large_binary``, list views to lists, at any depth
    (struct fields, list items, map keys and values, dictionary values); field and schema
    metadata kept. Polars hands text over as ``string_view``, which many Arrow kernels
    (``take``, ``sort_by``, Parquet writing in older readers) do not accept.

    >>> table = pa.table({"s": pa.array(["a"], pa.string_view()), "n": [1]})
    >>> classic_arrow_types(table).schema.types
    [DataType(large_string), DataType(int64)]
    """
    fields = [field.with_type(_classic_type(field.type)) for field in table.schema]
    if all(new.type == old.type for new, old in zip(fields, table.schema, strict=True)):
        return table
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def _classic_type(dtype: pa.DataType) -> pa.DataType:
    types = pa.types
    if types.is_string_view(dtype):
        return pa.large_string()
    if types.is_binary_view(dtype):
        return pa.large_binary()
    if types.is_list_view(dtype) or types.is_list(dtype):
        return pa.list_(_classic_field(dtype.value_field))
    if types.is_large_list_view(dtype) or types.is_large_list(dtype):
        return pa.large_list(_classic_field(dtype.value_field))
    if types.is_fixed_size_list(dtype):
        return pa.list_(_classic_field(dtype.value_field), dtype.list_size)
    if types.is_map(dtype):
        key, item = _classic_field(dtype.key_field), _classic_field(dtype.item_field)
        return pa.map_(key, item, keys_sorted=dtype.keys_sorted)
    if types.is_struct(dtype):
        return pa.struct([_classic_field(dtype.field(i)) for i in range(dtype.num_fields)])
    if types.is_dictionary(dtype):
        return pa.dictionary(dtype.index_type, _classic_type(dtype.value_type), dtype.ordered)
    return dtype


def _classic_field(field: pa.Field) -> pa.Field:
    return field.with_type(_classic_type(field.type))


def arrow_to_shapely(array: pa.Array | pa.ChunkedArray, encoding: str | None = None) -> np.ndarray:
    """Decode a WKB/WKT/GeoJSON or native GeoArrow array into shapely geometries (nulls -> None).

    ``encoding`` is the GeoArrow extension name; when None it comes from a registered extension
    type or is inferred from the storage type (binary: WKB, string: WKT, nested lists: polygon or
    multipolygon).

    >>> arrow_to_shapely(pa.array([{"x": 1.0, "y": 2.0}, None]))
    array([<POINT (1 2)>, None], dtype=object)
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if isinstance(array.type, pa.ExtensionType):
        encoding = encoding or array.type.extension_name
        array = array.storage
    encoding = encoding or _infer_encoding(array.type)
    nulls = array.is_null().to_numpy(zero_copy_only=False)
    if encoding in (GEOARROW_WKB, "ogc.wkb"):
        raw = array.cast(pa.large_binary()).to_numpy(zero_copy_only=False)
        geoms = shapely.from_wkb(raw, on_invalid="ignore")
    elif encoding == "geoarrow.wkt":
        text = array.cast(pa.large_string()).to_numpy(zero_copy_only=False)
        first = next((t for t in text if t is not None), "")
        parse = shapely.from_geojson if first.lstrip().startswith("{") else shapely.from_wkt
        geoms = parse(text, on_invalid="ignore")
    elif encoding == "geoarrow.box":
        xmin, ymin, xmax, ymax = (array.field(k).to_numpy(zero_copy_only=False) for k in _BBOX_KEYS)
        geoms = shapely.box(xmin, ymin, xmax, ymax)
    elif encoding in _NESTING:
        geoms = _native_to_shapely(array, encoding)
    else:
        raise UnsupportedFormatError(
            f"expected a WKB, WKT, box or native GeoArrow geometry array, got {encoding!r} "
            f"with storage type {array.type}"
        )
    geoms = np.asarray(geoms, dtype=object)
    invalid = shapely.is_missing(geoms) & ~nulls
    if invalid.any():
        rows = np.flatnonzero(invalid)[:10].tolist()
        raise SchemaError(
            f"expected valid {encoding} geometries, got undecodable values in rows {rows}"
        )
    geoms[nulls] = None
    return geoms


def _infer_encoding(dtype: pa.DataType) -> str:
    if (
        pa.types.is_binary(dtype)
        or pa.types.is_large_binary(dtype)
        or pa.types.is_binary_view(dtype)
    ):
        return GEOARROW_WKB
    if (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
    ):
        return "geoarrow.wkt"
    if pa.types.is_struct(dtype) and {"xmin", "ymax"} <= {f.name for f in dtype}:
        return "geoarrow.box"
    depth = 0
    while pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        dtype, depth = dtype.value_type, depth + 1
    if pa.types.is_struct(dtype) or pa.types.is_fixed_size_list(dtype):
        return {0: "geoarrow.point", 1: "geoarrow.linestring", 2: "geoarrow.polygon"}.get(
            depth, "geoarrow.multipolygon"
        )
    raise UnsupportedFormatError(f"expected a geometry column (WKB, WKT or GeoArrow), got {dtype}")


def _native_to_shapely(array: pa.Array, encoding: str) -> np.ndarray:
    offsets: list[np.ndarray] = []
    child = array
    for _ in range(_NESTING[encoding]):  # rebase each level so every offsets array starts at 0
        off = child.offsets.to_numpy().astype(np.int64)
        offsets.append(off - off[0])
        child = child.values.slice(int(off[0]), int(off[-1] - off[0]))
    if pa.types.is_fixed_size_list(child.type):
        size = child.type.list_size
        flat = child.values.slice(child.offset * size, len(child) * size)
        coords = flat.to_numpy(zero_copy_only=False).reshape(-1, size)
        coords = coords[:, : 3 if child.type.value_field.name in ("xyz", "xyzm") else 2]
    else:
        names = [n for n in ("x", "y", "z") if child.type.get_field_index(n) >= 0]
        coords = np.column_stack([child.field(n).to_numpy(zero_copy_only=False) for n in names])
    geometry_type = getattr(shapely.GeometryType, encoding.split(".")[1].upper())
    return shapely.from_ragged_array(geometry_type, coords, tuple(reversed(offsets)) or None)


def geometries_to_shapely(value: GeometryLike, *, geometry_column: str | None = None) -> np.ndarray:
    """Normalise one or many geometries to a 1-D object array of shapely geometries.

    Accepts a shapely geometry or a sequence of them, WKB bytes (or list), WKT, a GeoJSON dict
    (geometry, Feature or FeatureCollection), a bbox tuple or list of bbox tuples, objects with
    ``__geo_interface__``, Arrow/GeoArrow arrays, a GeoSeries/GeoDataFrame, or a table (Arrow,
    DuckDB, Polars: anything with ``__arrow_c_stream__``) with ``geometry_column``.

    >>> geometries_to_shapely({"type": "Point", "coordinates": [1, 2]})
    array([<POINT (1 2)>], dtype=object)
    """
    return _shapely_and_crs(value, geometry_column)[0]


def geometry_crs(value: GeometryLike, *, geometry_column: str | None = None) -> pyproj.CRS | None:
    """The CRS an input carries (GeoArrow/GeoParquet metadata, GeoSeries.crs), else None.

    >>> table = pa.table({"g": pa.array([], pa.binary())})
    >>> geometry_crs(table.cast(pa.schema([geoarrow_wkb_field("g", 32633)]))).to_epsg()
    32633
    """
    return _shapely_and_crs(value, geometry_column, decode=False)[1]


def geometries_to_wkb(value: GeometryLike, *, geometry_column: str | None = None) -> pa.Array:
    """Normalise one or many geometries to an ISO WKB :class:`pyarrow.BinaryArray` (nulls kept).

    >>> shapely.from_wkb(geometries_to_wkb((0, 0, 1, 1))[0].as_py()).bounds
    (0.0, 0.0, 1.0, 1.0)
    """
    geoms = geometries_to_shapely(value, geometry_column=geometry_column)
    return pa.array(shapely.to_wkb(geoms, flavor="iso"), type=pa.binary())


def to_crs84(
    geoms: np.ndarray, crs: CRSLike | None, *, densify_points: int = DEFAULT_DENSIFY_POINTS
) -> np.ndarray:
    """Reproject geometries to CRS84 (lon/lat), densifying edges first so footprints stay true.

    Coordinates are taken in x/y (lon/lat) order whatever the CRS's declared axis order, as
    GeoArrow and GeoParquet specify. A None or CRS84-equivalent ``crs`` returns ``geoms`` as is.

    Raises:
        SchemaError: coordinates that cannot be transformed (e.g. outside the projection).

    >>> out = to_crs84(geometries_to_shapely((500000, 0, 500001, 1)), 32633)
    >>> [round(v, 4) for v in out[0].bounds]
    [15.0, 0.0, 15.0, 0.0]
    """
    geoms = np.asarray(geoms, dtype=object)
    if is_crs84(crs):
        return geoms
    source = crs_(crs)
    transformer = _transformer_to_crs84(source)
    bounds = shapely.bounds(geoms)
    extent = np.fmax(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    # GEOS cannot densify a polygon of no area (a point or a line as a box): it fails on
    # some and empties others, so those are transformed as they are
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6))
    densify = (extent > 0) & ~(polygonal & (shapely.area(geoms) == 0))
    dense = geoms.copy()
    if densify.any():
        step = extent[densify] / max(densify_points - 1, 1)
        dense[densify] = shapely.segmentize(geoms[densify], step)

    def _transform(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    out = np.asarray(shapely.transform(dense, _transform), dtype=object)
    bad = ~np.isfinite(shapely.bounds(out)).all(axis=1) & ~shapely.is_empty(dense)
    bad &= ~shapely.is_missing(dense)
    if bad.any():
        rows = np.flatnonzero(bad)[:10].tolist()
        raise SchemaError(
            f"expected geometries reprojectable from {source.to_string()} to CRS84, "
            f"got non-finite coordinates in rows {rows}"
        )
    return out


_TO_CRS84: dict[str, pyproj.Transformer] = {}
_TO_CRS84_MAX = 64


def _transformer_to_crs84(source: pyproj.CRS) -> pyproj.Transformer:
    """An always-x/y transformer from ``source`` to CRS84, built once per CRS.

    Building one costs milliseconds (PROJ searches its database for the operation); reads
    call this on every AOI. A pyproj (>= 3.1) ``Transformer`` may be shared across threads:
    each thread gets its own PROJ object behind it. Keyed by the CRS's input string
    (``CRS.srs``); a race builds one twice, harmlessly.

    >>> _transformer_to_crs84(crs_(32633)) is _transformer_to_crs84(crs_("EPSG:32633"))
    True
    """
    key = source.srs
    found = _TO_CRS84.get(key)
    if found is None:
        if len(_TO_CRS84) >= _TO_CRS84_MAX:
            _TO_CRS84.clear()
        found = _TO_CRS84[key] = pyproj.Transformer.from_crs(source, CRS84, always_xy=True)
    return found


def aoi_bounds_crs84(
    value: GeometryLike,
    *,
    geometry_crs: CRSLike | None = None,
    geometry_column: str | None = None,
) -> BBox:
    """CRS84 bounds of all AOIs together (edges densified before reprojection).

    ``geometry_crs`` defaults to the CRS the input carries, else EPSG:4326 (lon/lat).

    Raises:
        SchemaError: no non-empty geometry in ``value``.

    >>> aoi_bounds_crs84([(0, 0, 1, 1), (2, 2, 3, 3)])
    (0.0, 0.0, 3.0, 3.0)
    """
    geoms, carried = _shapely_and_crs(value, geometry_column)
    crs84 = to_crs84(geoms, geometry_crs if geometry_crs is not None else carried)
    bounds = np.asarray(shapely.bounds(crs84), dtype=np.float64).reshape(-1, 4)
    bounds = bounds[np.isfinite(bounds).all(axis=1)]
    if not len(bounds):
        raise SchemaError(f"expected at least one non-empty AOI geometry, got {len(geoms)} empty")
    return (
        float(bounds[:, 0].min()),
        float(bounds[:, 1].min()),
        float(bounds[:, 2].max()),
        float(bounds[:, 3].max()),
    )


def _shapely_and_crs(
    value: Any, column: str | None, *, decode: bool = True
) -> tuple[np.ndarray, pyproj.CRS | None]:
    empty = np.empty(0, dtype=object)
    module = type(value).__module__
    if module.startswith("geopandas") and (hasattr(value, "columns") or is_column_like(value)):
        # GeoDataFrame, GeoSeries, GeometryArray (to_arrow()'s table goes the Arrow way)
        series = value
        if hasattr(value, "columns"):  # a GeoDataFrame: the named or the active geometry column
            series = value[column] if column else value.geometry
        return (np.asarray(series, dtype=object) if decode else empty), series.crs
    if is_column_like(value) and not isinstance(value, pa.ChunkedArray | pa.Array):
        if module.startswith("pandas"):  # shapely objects, WKB or WKT in a Series
            return (_python_to_shapely(value.to_numpy(dtype=object)) if decode else empty), None
        value = value.to_arrow()  # a Polars Series
    if isinstance(value, pa.ChunkedArray | pa.Array):
        if pa.types.is_binary_view(value.type) or pa.types.is_string_view(value.type):
            value = value.cast(_classic_type(value.type))
        return (arrow_to_shapely(value) if decode else empty), None
    if hasattr(value, "__arrow_c_array__") and not hasattr(value, "__arrow_c_stream__"):
        schema_capsule, array_capsule = value.__arrow_c_array__()
        field = pa.Field._import_from_c_capsule(schema_capsule)
        encoding, crs = field_geometry_encoding(field)
        if not decode:
            return empty, crs
        array = pa.Array._import_from_c_capsule(field.__arrow_c_schema__(), array_capsule)
        return arrow_to_shapely(array, encoding), crs
    if isinstance(value, pa.Table | pa.RecordBatch) or hasattr(value, "__arrow_c_stream__"):
        table = value if isinstance(value, pa.Table | pa.RecordBatch) else pa.table(value)
        name = column or _default_geometry_column(table.schema)
        if name not in table.schema.names:
            raise SchemaError(f"expected a geometry column {name!r}, found {table.schema.names}")
        field = table.schema.field(name)
        encoding, crs = field_geometry_encoding(field, table.schema.metadata)
        return (arrow_to_shapely(table.column(name), encoding) if decode else empty), crs
    return (_python_to_shapely(value) if decode else empty), None


def _default_geometry_column(schema: pa.Schema) -> str:
    for field in schema:
        if field_geometry_encoding(field)[0] is not None:
            return field.name
    geo = (schema.metadata or {}).get(b"geo")
    return str(json.loads(geo).get("primary_column", "geometry")) if geo else "geometry"


def _python_to_shapely(value: Any) -> np.ndarray:
    if value is None or isinstance(value, BaseGeometry):
        return _object_array([value])
    if isinstance(value, bytes | bytearray | memoryview):
        return arrow_to_shapely(pa.array([bytes(value)], pa.binary()))
    if isinstance(value, str):
        return arrow_to_shapely(pa.array([value]), "geoarrow.wkt")
    if isinstance(value, Mapping):
        if value.get("type") == "FeatureCollection":
            return _python_to_shapely([f.get("geometry") for f in value.get("features", [])])
        if value.get("type") == "Feature":
            return _python_to_shapely(value.get("geometry"))
        try:
            return _object_array([shapely.geometry.shape(value)])
        except (
            AttributeError,
            KeyError,
            TypeError,
            ValueError,
            shapely.errors.ShapelyError,
        ) as exc:
            raise SchemaError(
                f"expected a GeoJSON geometry, got {str(value)[:120]}: {exc}"
            ) from exc
    if hasattr(value, "__geo_interface__"):
        return _python_to_shapely(dict(value.__geo_interface__))
    if isinstance(value, Sequence | np.ndarray):
        items = list(value)
        if len(items) == 4 and all(isinstance(v, int | float | np.number) for v in items):
            return _object_array([shapely.box(*bbox_(items))])
        if all(isinstance(v, BaseGeometry) or v is None for v in items):
            return _object_array(items)
        if all(isinstance(v, bytes) or v is None for v in items):
            return arrow_to_shapely(pa.array(items, pa.binary()))
        if items and all(isinstance(v, Sequence) and not isinstance(v, str) for v in items):
            boxes = np.array([bbox_(v) for v in items], dtype=float).reshape(-1, 4)
            return np.asarray(shapely.box(*boxes.T), dtype=object)
        parts = [_python_to_shapely(v) for v in items]
        return np.concatenate(parts) if parts else np.empty(0, dtype=object)
    raise SchemaError(
        "expected geometries as shapely, WKB, WKT, GeoJSON, bbox tuples, GeoArrow arrays, a "
        f"GeoSeries or a table with a geometry column, got {type(value).__name__}"
    )


def _object_array(items: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
