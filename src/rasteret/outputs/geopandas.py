"""GeoPandas output: one GeoDataFrame row per chip, i.e. per (record, AOI) pair.

Rows follow the read's chip order (record-major: records in read order, then AOIs in the
order given). Columns, in this order:

* ``record_id`` (str), ``datetime`` (pandas datetime, UTC when the records carry a time zone;
  NaT when unknown), ``aoi_index`` (int64: position of the AOI in the geometries passed);
* every column of the AOI table (e.g. ``parcel_id``, ``crop``) for that row's AOI, with its
  dtype kept (integer and boolean columns with nulls become pandas nullable dtypes rather
  than float/object); an AOI column whose name clashes with one of rasteret's columns is
  renamed ``aoi_{name}`` (with a warning);
* one column per band, each cell the chip's 2-D array ``[H, W]`` (native dtype, the band's
  fill value where invalid; a view into the read's buffers);
* ``transform`` (the chip grid's affine ``(a, b, c, d, e, f)``) and ``crs`` (the chip
  grid's CRS as a string);
* ``geometry``: the AOI as given, in the AOI CRS (the GeoDataFrame's ``crs``).

>>> import numpy as np, shapely
>>> from rasteret.read.result import Chip, ChipSet
>>> t = (10.0, 0.0, 0.0, 0.0, -10.0, 20.0)
>>> chips = [Chip(0, i, "r0", None, np.full((1, 2, 2), i, "uint8"), np.ones((1, 2, 2), bool),
...               t, "EPSG:32633") for i in range(2)]
>>> cs = ChipSet(chips, ("B04",), (0,), np.dtype("uint8"), "EPSG:32633")
>>> aois = np.array([shapely.box(0, 0, 1, 1), shapely.box(1, 1, 2, 2)])
>>> gdf = chips_to_gdf(cs, aois, "EPSG:4326", None)
>>> list(gdf.columns)
['record_id', 'datetime', 'aoi_index', 'B04', 'transform', 'crs', 'geometry']
>>> gdf["B04"].iloc[1].tolist(), gdf.crs.to_string()
([[1, 1], [1, 1]], 'EPSG:4326')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from rasteret._optional import import_optional
from rasteret._warn import warn
from rasteret.errors import ReadError
from rasteret.read.result import ChipSet

if TYPE_CHECKING:
    import geopandas
    import pandas

__all__ = ["RESERVED_COLUMNS", "chips_to_gdf"]

RESERVED_COLUMNS = ("record_id", "datetime", "aoi_index", "transform", "crs", "geometry")
"""Columns rasteret writes itself (the band names are reserved too)."""


def _nullable_dtype(pd: Any, field: pa.Field) -> Any:
    """The pandas nullable dtype keeping ``field``'s values exact, or None for the default."""
    if pa.types.is_integer(field.type):
        name = str(field.type)  # int8 ... uint64
        return pd.api.types.pandas_dtype(("UInt" + name[4:]) if name[0] == "u" else "I" + name[1:])
    if pa.types.is_boolean(field.type):
        return pd.BooleanDtype()
    return None


def _aoi_frame(pd: Any, columns: pa.Table, aoi_index: np.ndarray) -> pandas.DataFrame:
    """The AOI table's rows for each chip, dtypes kept."""
    rows = columns.take(pa.array(aoi_index, pa.int64()))
    out = {}
    for field, column in zip(rows.schema, rows.columns, strict=True):
        nullable = _nullable_dtype(pd, field) if column.null_count else None
        if nullable is not None:
            out[field.name] = pd.array(column.to_pylist(), dtype=nullable)
        else:
            out[field.name] = column.to_pandas()
    return pd.DataFrame(out, index=pd.RangeIndex(len(aoi_index)))


def _datetimes(pd: Any, values: list[Any]) -> pandas.Series:
    """Chip datetimes as one pandas column: UTC when any is time-zone aware (naive ones are
    then taken as UTC), naive otherwise; NaT when unknown."""
    aware = any(v is not None and v.tzinfo is not None for v in values)
    return pd.to_datetime(pd.Series(values, dtype=object), utc=aware)


def _aoi_columns(
    pd: Any, columns: pa.Table, aoi_index: np.ndarray, bands: tuple[str, ...]
) -> dict[str, Any]:
    """The AOI columns for each chip, renamed ``aoi_{name}`` where they clash with ours."""
    reserved = set(RESERVED_COLUMNS) | set(bands)
    extra = _aoi_frame(pd, columns, aoi_index)
    renamed = {name: f"aoi_{name}" for name in extra.columns if name in reserved}
    clashing = [new for new in renamed.values() if new in reserved or new in extra.columns]
    if clashing:
        raise ReadError(
            f"expected AOI columns distinct from {sorted(reserved)}, got {sorted(renamed)} "
            f"whose renamed forms {clashing} still clash; rename them in the AOI table"
        )
    if renamed:
        warn(
            f"AOI columns {sorted(renamed)} clash with columns rasteret writes; they are "
            f"renamed {[renamed[k] for k in sorted(renamed)]} in the GeoDataFrame",
            UserWarning,
            stacklevel=4,
        )
    return {renamed.get(name, name): extra[name] for name in extra.columns}


def _check_aois(aois: np.ndarray, aoi_columns: pa.Table | None, needed: int) -> None:
    if len(aois) < needed:
        raise ReadError(
            f"expected at least {needed} AOI geometries (the largest chip aoi_index + 1), "
            f"got {len(aois)}"
        )
    if aoi_columns is not None and aoi_columns.num_rows != len(aois):
        raise ReadError(
            f"expected one AOI table row per AOI geometry ({len(aois)}), got "
            f"{aoi_columns.num_rows} rows with columns {aoi_columns.column_names}"
        )


def chips_to_gdf(
    chipset: ChipSet,
    aois: np.ndarray,
    aoi_crs: str,
    aoi_columns: pa.Table | None,
) -> geopandas.GeoDataFrame:
    """One GeoDataFrame row per chip of ``chipset`` (see the module docstring for columns).

    Args:
        chipset: The result of :func:`rasteret.read.read_chips`.
        aois: The AOI geometries passed to the read (shapely, in ``aoi_crs``), in order.
        aoi_crs: CRS of ``aois`` (anything pyproj reads); becomes the GeoDataFrame's CRS.
        aoi_columns: The AOI table's non-geometry columns, one row per AOI, or None.

    Returns:
        A GeoDataFrame in chip order, with a fresh ``RangeIndex``. Records left out and
        reads that failed are listed in ``gdf.attrs["rasteret_skipped"]`` /
        ``gdf.attrs["rasteret_failed"]`` when there are any.

    Raises:
        ReadError: ``aois`` or ``aoi_columns`` do not match the chips' AOI indexes.
        MissingDependencyError: geopandas is not installed.
    """
    gpd = import_optional("geopandas", extra="geopandas")
    pd = import_optional("pandas", extra="geopandas")
    chips = chipset.chips
    aois = np.asarray(aois, dtype=object)
    aoi_index = np.array([c.aoi_index for c in chips], dtype=np.int64)
    _check_aois(aois, aoi_columns, int(aoi_index.max()) + 1 if len(chips) else 0)
    n = len(chips)
    frame: dict[str, Any] = {
        "record_id": pd.Series([c.record_id for c in chips], dtype=str),
        "datetime": _datetimes(pd, [c.datetime for c in chips]),
        "aoi_index": pd.Series(aoi_index, dtype=np.int64),
    }
    if aoi_columns is not None:
        frame.update(_aoi_columns(pd, aoi_columns, aoi_index, chipset.bands))
    for b, band in enumerate(chipset.bands):
        cells = np.empty(n, dtype=object)
        for i, chip in enumerate(chips):
            cells[i] = chip.data[b]
        frame[band] = pd.Series(cells, dtype=object)
    transforms = np.empty(n, dtype=object)
    for i, chip in enumerate(chips):
        transforms[i] = tuple(chip.transform)
    frame["transform"] = pd.Series(transforms, dtype=object)
    frame["crs"] = pd.Series([c.crs for c in chips], dtype=str)
    frame["geometry"] = gpd.GeoSeries(aois[aoi_index], crs=aoi_crs)
    gdf = gpd.GeoDataFrame(frame, geometry="geometry", crs=aoi_crs)
    gdf.attrs.update(chipset.problem_attrs())
    return gdf
