"""Arrow output of point samples: one row per (point, record), the point table's columns kept.

Columns, in order:

1. every non-geometry column of the point table, types unchanged;
2. the point geometry (WKB, tagged ``geoarrow.wkb`` with the points' CRS);
3. ``record_id`` (string) and ``datetime`` (the record's);
4. one column per band in the band's own dtype, null where the pixel is nodata, masked or
   outside the raster;
5. ``point_crs``, ``raster_crs`` (``EPSG:n`` or WKT; dictionary-encoded strings), ``row``
   and ``col`` (int32: the pixel holding the point in the first band's full-resolution grid);
6. per band, when asked for: ``{band}_row`` / ``{band}_col`` (the pixel the value came from,
   with ``max_distance_pixels``), ``{band}_neighbourhood`` (list of the window's values,
   row-major, nulls where invalid), ``{band}_record_id`` / ``{band}_datetime`` (the record
   of the band's value, with ``match="latest"``).

An added column whose name the point table already uses is prefixed with ``sample_``
(``datetime`` becomes ``sample_datetime``). Points in no record get no row unless
``keep_missing`` is set; then they get one row whose sample columns are null.

>>> import numpy as np
>>> from rasteret.read.select import PointSamples
>>> samples = PointSamples(np.array([1]), np.array([0]), ("B04",), (np.array([7], "uint16"),),
...                        (np.array([True]),), np.array([3]), np.array([4]))
>>> table = samples_to_table(samples, ["r1"], [None], ["EPSG:32633"],
...     columns=pa.table({"site": ["a", "b"]}), x=np.array([1.0, 2.0]), y=np.array([3.0, 4.0]),
...     point_crs="EPSG:32633", keep_missing=True)
>>> table.select(["site", "record_id", "B04", "row"]).to_pylist()
[{'site': 'a', 'record_id': None, 'B04': None, 'row': None}, {'site': 'b', 'record_id': 'r1', 'B04': 7, 'row': 3}]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret._pools import ELASTIC, shared_pool
from rasteret.errors import SchemaError
from rasteret.read.locate import point_array, point_range
from rasteret.read.select import PointSamples
from rasteret.types import (
    EXTENSION_NAME_KEY,
    GEOARROW_WKB,
    geoarrow_wkb_field,
    geoparquet_schema_metadata,
)

__all__ = [
    "DEFAULT_GEOMETRY_NAME",
    "PointRows",
    "TableFrame",
    "build_point_wkb",
    "build_table_frame",
    "points_to_wkb",
    "samples_to_table",
    "table_frame",
]

DEFAULT_GEOMETRY_NAME = "geometry"
_PREFIX = "sample_"
_PARALLEL_WKB_POINTS = 100_000
"""From this many points on, their WKB is built on a thread of its own, next to the other
columns (NumPy's copies release the GIL)."""
_WKB_WAIT_S = 0.1
"""The longest a deferred geometry build waits for its event (see :func:`build_point_wkb`)."""
_WKB_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])
_WKB_POINT_HEAD = b"\x01\x01\x00\x00\x00" + bytes(16)
"""A little-endian WKB point with zero coordinates."""


def points_to_wkb(x: np.ndarray, y: np.ndarray, finite: bool = False) -> pa.BinaryArray:
    """ISO WKB points (little-endian, 21 bytes each) built in one vectorised pass; a point
    with a non-finite coordinate becomes null (``finite``: the caller knows every
    coordinate is finite, and none is tested).

    >>> import shapely
    >>> wkb = points_to_wkb(np.array([1.0, np.nan]), np.array([2.0, 0.0]))
    >>> shapely.from_wkb(wkb[0].as_py()).wkt, wkb[1].as_py()
    ('POINT (1 2)', None)
    >>> points_to_wkb(np.array([1.0]), np.array([2.0]), finite=True).null_count
    0
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    records = point_array(n, _WKB_POINT)
    _repeat_into(records.view(np.uint8), _WKB_POINT_HEAD)  # byte order and type, then x, y
    records["x"], records["y"] = x, y
    large = n * _WKB_POINT.itemsize >= 2**31
    offsets = point_range(n + 1, _WKB_POINT.itemsize, np.dtype(np.int64 if large else np.int32))
    valid = None if finite else np.isfinite(x) & np.isfinite(y)
    bitmap = None
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.large_binary() if large else pa.binary(),
        n,
        [bitmap, pa.py_buffer(offsets), pa.py_buffer(records.view(np.uint8))],
        null_count=0 if valid is None or bitmap is None else int(n - valid.sum()),
    )


def build_point_wkb(
    x: np.ndarray, y: np.ndarray, after: threading.Event | None = None, finite: bool = False
) -> Future[pa.Array]:
    """:func:`points_to_wkb` of ``x, y``: on a thread of its own from
    ``_PARALLEL_WKB_POINTS`` points on (started now, the result when asked), else at once.
    With ``after``, the thread starts building once that event is set (at most
    ``_WKB_WAIT_S`` later): a read sets it when its first requests are out, so the build
    does not slow the work those requests wait for. ``finite`` as for :func:`points_to_wkb`.

    >>> build_point_wkb(np.array([1.0]), np.array([2.0])).result()[0].as_py().hex()
    '0101000000000000000000f03f0000000000000040'
    """
    if len(x) < _PARALLEL_WKB_POINTS:
        done: Future[pa.Array] = Future()
        done.set_result(points_to_wkb(x, y, finite))
        return done

    def build() -> pa.Array:
        if after is not None:
            after.wait(_WKB_WAIT_S)
        return points_to_wkb(x, y, finite)

    return shared_pool("wkb", ELASTIC).submit(build)  # a build may wait (``after``)


@dataclass(frozen=True, slots=True)
class PointRows:
    """What the row-level columns of a point table are made from: each row's point and
    record, and the pixel holding the point (row, col; -1: none)."""

    point_index: np.ndarray
    record_index: np.ndarray
    row: np.ndarray
    col: np.ndarray

    def of(self, samples: PointSamples) -> bool:
        """Whether these are the very arrays of ``samples`` (not merely equal ones)."""
        return (
            self.point_index is samples.point_index
            and self.record_index is samples.record_index
            and self.row is samples.row
            and self.col is samples.col
        )


@dataclass(frozen=True, slots=True, eq=False)
class TableFrame:
    """The columns of a point table that do not depend on pixel values, built once its rows
    are known (:func:`table_frame`); :func:`samples_to_table` adds the bands."""

    rows: PointRows
    head: list[tuple[pa.Field, pa.Array | pa.ChunkedArray]]
    """The point table's columns, the geometry, ``record_id`` and ``datetime``."""
    tail: list[tuple[pa.Field, pa.Array | pa.ChunkedArray]]
    """``point_crs``, ``raster_crs``, ``row`` and ``col``."""
    inputs: set[str]
    """The point table's column names."""

    @property
    def geometry(self) -> str:
        """The name of the points' geometry column (the last WKB column of :attr:`head`:
        the point table's own columns come before it)."""
        wkb = GEOARROW_WKB.encode()
        names = [f.name for f, _ in self.head if (f.metadata or {}).get(EXTENSION_NAME_KEY) == wkb]
        return names[-1]


def table_frame(
    rows: PointRows,
    record_ids: Sequence[str],
    record_datetimes: Sequence[datetime | None],
    raster_crs: Sequence[str | None],
    *,
    columns: pa.Table | None,
    x: np.ndarray,
    y: np.ndarray,
    point_crs: str,
    geometry: pa.Array | pa.ChunkedArray | None = None,
    geometry_name: str = DEFAULT_GEOMETRY_NAME,
    built: Future[pa.Array] | None = None,
) -> TableFrame:
    """The value-independent columns of the table of ``rows`` (arguments as for
    :func:`samples_to_table`): they can be built while the pixels are still being read."""
    n_points = len(x)
    point_idx = rows.point_index
    take = None if _is_identity(point_idx, n_points) else pa.array(point_idx)

    def rows_of(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        return array if take is None else array.take(take)

    inputs = set(columns.column_names) if columns is not None else set()
    frame = TableFrame(rows, [], [], inputs)
    if columns is not None:
        for i in range(columns.num_columns):
            frame.head.append((columns.schema.field(i), rows_of(columns.column(i))))
    if geometry is not None:
        geometry_array: pa.Array | pa.ChunkedArray = geometry
    elif built is not None:
        geometry_array = built.result()
    else:
        geometry_array = points_to_wkb(x, y)
    geometry_field = geoarrow_wkb_field(geometry_name, point_crs).with_type(geometry_array.type)
    _add(frame, frame.head, geometry_name, rows_of(geometry_array), geometry_field)
    rec = rows.record_index
    only = _only_record(rec, len(record_ids))
    if only is None:
        _add(
            frame,
            frame.head,
            "record_id",
            _per_record(pa.array(list(record_ids), pa.string()), rec),
        )
        _add(frame, frame.head, "datetime", _per_record(_datetimes(record_datetimes), rec))
    else:  # every row is of one record: the values repeated, no take
        _add(frame, frame.head, "record_id", _repeated_string(record_ids[only], len(rec)))
        stamp = _datetimes(record_datetimes)[only : only + 1]
        stamps = point_array(len(rec), np.dtype(np.int64))
        stamps.fill(stamp.cast(pa.int64())[0].as_py() if stamp[0].is_valid else 0)
        mask = None if stamp[0].is_valid or not len(rec) else _no_bits(len(rec))
        _add(frame, frame.head, "datetime",
             pa.Array.from_buffers(stamp.type, len(rec), [mask, pa.py_buffer(stamps)]))  # fmt: skip
    # each CRS once in the dictionary (pandas' categories must be unique): the points' first
    raster_names = [c or "" for c in raster_crs]
    position = {name: i for i, name in enumerate(dict.fromkeys([point_crs, *raster_names]))}
    crs_dictionary = pa.array(list(position), pa.string())
    record_crs = np.array([position[name] for name in raster_names], dtype=np.int32)
    zeros = np.zeros(len(rec), dtype=np.int32)  # untouched pages until read
    _add(frame, frame.tail, "point_crs", _dictionary(zeros, crs_dictionary))
    if only is None:
        _add(frame, frame.tail, "raster_crs", _dictionary_take(crs_dictionary, record_crs, rec))
    else:
        indices = point_array(len(rec), np.dtype(np.int32))
        indices.fill(record_crs[only])
        _add(frame, frame.tail, "raster_crs", _dictionary(indices, crs_dictionary))
    _add(frame, frame.tail, "row", _pixel_column(rows.row))
    _add(frame, frame.tail, "col", _pixel_column(rows.col))
    return frame


def _add(
    frame: TableFrame,
    where: list[tuple[pa.Field, pa.Array | pa.ChunkedArray]],
    name: str,
    array: pa.Array | pa.ChunkedArray,
    field: pa.Field | None = None,
) -> None:
    """Add a column to ``where``, renamed if the point table has ``name``."""
    if name in frame.inputs:
        name = _free(name, frame.inputs)
    where.append(
        (field.with_name(name) if field is not None else pa.field(name, array.type), array)
    )


def build_table_frame(
    rows: PointRows, after: threading.Event | None = None, **kwargs: Any
) -> Future[TableFrame]:
    """:func:`table_frame` of ``rows`` (``kwargs``: its other arguments) on a thread of its
    own, started once ``after`` is set (at most ``_WKB_WAIT_S`` later), as
    :func:`build_point_wkb`."""

    def build() -> TableFrame:
        if after is not None:
            after.wait(_WKB_WAIT_S)
        return table_frame(rows, **kwargs)

    return shared_pool("wkb", ELASTIC).submit(build)


def samples_to_table(
    samples: PointSamples,
    record_ids: Sequence[str],
    record_datetimes: Sequence[datetime | None],
    raster_crs: Sequence[str | None],
    *,
    columns: pa.Table | None,
    x: np.ndarray,
    y: np.ndarray,
    point_crs: str,
    geometry: pa.Array | pa.ChunkedArray | None = None,
    geometry_name: str = DEFAULT_GEOMETRY_NAME,
    keep_missing: bool = False,
    built: Future[pa.Array] | None = None,
    frame: Future[TableFrame] | None = None,
) -> pa.Table:
    """The Arrow table of ``samples`` (see the module docstring for its columns).

    Args:
        samples: Rows from :func:`rasteret.read.sample.read_points`.
        record_ids, record_datetimes, raster_crs: Per record of the read (by position).
        columns: The point table's non-geometry columns (one row per point), or None.
        x, y: Point coordinates (used for the geometry column when ``geometry`` is None).
        point_crs: CRS of the points.
        geometry: The points' own WKB column, kept as is when given.
        geometry_name: Name of the geometry column.
        keep_missing: Give points without any sample a row of nulls.
        built: :func:`build_point_wkb` of ``x, y``, started earlier (e.g. while the read
            fetched), for the geometry column when ``geometry`` is None.
        frame: :func:`build_table_frame` of rows known before the read ended (with the same
            other arguments); used when they are the very rows of ``samples``, else the
            frame is built here.
    """
    n_points = len(x)
    if keep_missing:
        samples = _with_missing(samples, n_points)
    rows = PointRows(samples.point_index, samples.record_index, samples.row, samples.col)
    made = frame.result() if frame is not None else None
    if made is None or not made.rows.of(samples):
        made = table_frame(
            rows, record_ids, record_datetimes, raster_crs, columns=columns, x=x, y=y,
            point_crs=point_crs, geometry=geometry, geometry_name=geometry_name, built=built,
        )  # fmt: skip
    bands: list[tuple[pa.Field, pa.Array | pa.ChunkedArray]] = []  # after the head
    extras: list[tuple[pa.Field, pa.Array | pa.ChunkedArray]] = []  # after the tail
    for b, band in enumerate(samples.bands):
        _add(made, bands, band, _masked(samples.values[b], samples.valid[b]))
    for b, band in enumerate(samples.bands):
        if samples.source_row is not None and samples.source_col is not None:
            r, c = samples.source_row[b], samples.source_col[b]
            _add(made, extras, f"{band}_row", _pixel_column(r))
            _add(made, extras, f"{band}_col", _pixel_column(c))
        if samples.neighbourhood is not None:
            _add(made, extras, f"{band}_neighbourhood", _windows(samples, b))
        if samples.band_record is not None:
            br = samples.band_record[b]
            _add(made, extras, f"{band}_record_id",
                 _per_record(pa.array(list(record_ids), pa.string()), br))  # fmt: skip
            _add(made, extras, f"{band}_datetime", _per_record(_datetimes(record_datetimes), br))
    every = [*made.head, *bands, *made.tail, *extras]
    geo = geoparquet_schema_metadata(made.geometry, point_crs, ["Point"])  # GeoParquet once written
    schema = pa.schema([f for f, _ in every], metadata=geo)
    return pa.Table.from_arrays([a for _, a in every], schema=schema)


def _is_identity(index: np.ndarray, n: int) -> bool:
    """Whether ``index`` is ``0, 1, ..., n - 1`` (tested without building that range).

    >>> _is_identity(np.array([0, 1, 2]), 3), _is_identity(np.array([0, 2, 2]), 3)
    (True, False)
    """
    if len(index) != n:
        return False
    if n == 0:
        return True
    if int(index[0]) != 0 or int(index[-1]) != n - 1:
        return False
    return bool(np.all(index[1:] > index[:-1]))  # n distinct integers in [0, n)


def _only_record(record_index: np.ndarray, records: int) -> int | None:
    """The record of every row when all rows have the same one (none missing), else None;
    ``records``: how many records the read had (rows name one of them, or -1 for none).

    >>> _only_record(np.array([2, 2]), 3), _only_record(np.array([2, -1]), 3)
    (2, None)
    >>> _only_record(np.array([0, 0]), 1), _only_record(np.array([0, -1]), 1)
    (0, None)
    >>> _only_record(np.array([], np.int64), 1) is None
    True
    """
    if not len(record_index):
        return None
    first = int(record_index[0])
    if first < 0 or int(record_index.min()) != first:
        return None
    if records == 1:  # rows are 0 or -1: none below 0, all 0 (one pass, not two)
        return first
    return first if int(record_index.max()) == first else None


def _repeated_string(value: str, n: int) -> pa.Array:
    """``[value] * n`` as an Arrow string array, built from its buffers (a plain take past
    32-bit offsets, which then fails as the take does).

    >>> _repeated_string("ab", 2).to_pylist(), _repeated_string("", 2).to_pylist()
    (['ab', 'ab'], ['', ''])
    """
    data = value.encode()
    if len(data) * n >= 2**31:
        return pa.array([value], pa.string()).take(np.zeros(n, dtype=np.int32))
    offsets = point_range(n + 1, len(data), np.dtype(np.int32))
    chars = point_array(n * len(data), np.dtype(np.uint8))
    _repeat_into(chars, data)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars)])


def _repeat_into(out: np.ndarray, pattern: bytes) -> None:
    """Fill the bytes ``out`` with ``pattern`` repeated (its length divides ``out``'s), by
    doubling copies: a few large copies rather than one short strided copy per repeat.

    >>> out = np.empty(6, np.uint8); _repeat_into(out, b"ab"); out.tobytes()
    b'ababab'
    """
    done = min(len(pattern), len(out))
    out[:done] = np.frombuffer(pattern[:done], dtype=np.uint8)
    while done < len(out):
        more = min(done, len(out) - done)
        out[done : done + more] = out[:more]
        done += more


def _int32(values: np.ndarray) -> np.ndarray:
    """``values.astype(numpy.int32)`` in recycled memory (``values`` itself when it is
    int32 already)."""
    if values.dtype == np.int32 and values.flags.c_contiguous:
        return values
    out = point_array(len(values), np.dtype(np.int32))
    np.copyto(out, values, casting="unsafe")
    return out


def _pixel_column(pixels: np.ndarray) -> pa.Array:
    """Pixel rows or columns as an int32 column, null where negative (no pixel).

    >>> _pixel_column(np.array([3, -1], np.int64)).to_pylist()
    [3, None]
    """
    values = _int32(pixels)
    if not len(values) or int(values.min()) >= 0:  # one pass, no mask to build
        return pa.array(values)
    return _masked(values, values >= 0)


def _no_bits(n: int) -> pa.Buffer:
    """A validity bitmap of ``n`` nulls."""
    return pa.py_buffer(np.zeros((n + 7) // 8, dtype=np.uint8))


def _free(name: str, taken: set[str]) -> str:
    candidate = _PREFIX + name
    if candidate in taken:
        raise SchemaError(
            f"expected the point table to leave {name!r} or {candidate!r} free for the sample "
            f"column {name!r}, got both among its columns; rename one of them"
        )
    return candidate


def _masked(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    """``values`` as an Arrow array, null where not ``valid``; numbers keep their buffer and
    get a validity bitmap packed straight from ``valid``."""
    if valid.all():
        return pa.array(values)
    if values.dtype.kind in "iuf" and values.dtype.isnative and values.ndim == 1:
        data = np.ascontiguousarray(values)
        bitmap = np.packbits(valid, bitorder="little")
        nulls = len(valid) - int(np.count_nonzero(valid))
        return pa.Array.from_buffers(
            pa.from_numpy_dtype(data.dtype),
            len(data),
            [pa.py_buffer(bitmap), pa.py_buffer(data)],
            null_count=nulls,
        )
    return pa.array(values, mask=~valid)


def _datetimes(values: Sequence[datetime | None]) -> pa.Array:
    return pa.array(list(values), pa.timestamp("us", tz="UTC"))


def _per_record(per_record: pa.Array, index: np.ndarray) -> pa.Array:
    """``per_record`` taken at ``index`` (-1: null).

    >>> _per_record(pa.array(["a", "b"]), np.array([1, -1, 0])).to_pylist()
    ['b', None, 'a']
    """
    missing = index < 0
    return per_record.take(pa.array(index, mask=missing if missing.any() else None))


def _dictionary_take(dictionary: pa.Array, per_record: np.ndarray, index: np.ndarray) -> pa.Array:
    """A dictionary-encoded column whose row ``i`` is ``dictionary[per_record[index[i]]]``
    (null where ``index`` < 0): the (long, repeated) CRS strings are stored once.

    >>> _dictionary_take(pa.array(["a", "b"]), np.array([1, 1, 0], np.int32),
    ...                  np.array([2, -1, 0])).to_pylist()
    ['a', None, 'b']
    """
    missing = index < 0
    if len(per_record):
        indices = np.take(per_record, index, mode="clip")  # the missing (-1) are masked
    else:  # no record: every row is missing
        indices = np.zeros(len(index), dtype=np.int32)
    return _dictionary(indices, dictionary, missing if missing.any() else None)


def _dictionary(
    indices: np.ndarray, dictionary: pa.Array, missing: np.ndarray | None = None
) -> pa.DictionaryArray:
    """A dictionary-encoded array of int32 ``indices`` (null where ``missing``), which the
    callers build within the dictionary: Arrow's check of every index (~0.75 ms per million)
    is skipped.

    >>> _dictionary(np.array([1, 0], np.int32), pa.array(["a", "b"])).to_pylist()
    ['b', 'a']
    """
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=missing), dictionary, safe=False)


def _windows(samples: PointSamples, b: int) -> pa.Array:
    assert samples.neighbourhood is not None
    assert samples.neighbourhood_valid is not None
    assert samples.neighbourhood_present is not None
    values = samples.neighbourhood[b]
    valid = samples.neighbourhood_valid[b]
    present = samples.neighbourhood_present[b]
    n, k = values.shape
    flat = _masked(values.ravel(), valid.ravel())
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * k)
    lists = pa.ListArray.from_arrays(offsets, flat)
    if present.all():
        return lists
    return pc.if_else(pa.array(present), lists, pa.nulls(n, lists.type))


def _with_missing(samples: PointSamples, n_points: int) -> PointSamples:
    """``samples`` plus a row of nulls for each point without any row, in point order."""
    missing = np.setdiff1d(np.arange(n_points), samples.point_index)
    if not len(missing):
        return samples
    m = len(missing)
    none = np.full(m, -1, dtype=np.int64)
    no = np.zeros(m, dtype=bool)

    def extend(
        arrays: tuple[np.ndarray, ...] | None, fill: object
    ) -> tuple[np.ndarray, ...] | None:
        if arrays is None:
            return None
        return tuple(
            np.concatenate([a, np.full((m, *a.shape[1:]), fill, dtype=a.dtype)]) for a in arrays
        )

    combined = PointSamples(
        point_index=np.concatenate([samples.point_index, missing]),
        record_index=np.concatenate([samples.record_index, none]),
        bands=samples.bands,
        values=extend(samples.values, 0) or (),
        valid=tuple(np.concatenate([v, no]) for v in samples.valid),
        row=np.concatenate([samples.row, none]),
        col=np.concatenate([samples.col, none]),
        band_record=extend(samples.band_record, -1),
        source_row=extend(samples.source_row, -1),
        source_col=extend(samples.source_col, -1),
        neighbourhood=extend(samples.neighbourhood, 0),
        neighbourhood_valid=extend(samples.neighbourhood_valid, False),
        neighbourhood_present=extend(samples.neighbourhood_present, False),
        skipped=samples.skipped,
    )
    order = np.argsort(combined.point_index, kind="stable")
    return combined.take(order)
