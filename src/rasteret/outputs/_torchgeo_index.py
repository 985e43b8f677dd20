"""TorchGeo's index of a rasteret dataset, in both TorchGeo generations' forms.

* 0.8 and newer: a GeoDataFrame over a closed ``IntervalIndex`` named ``datetime``, one row
  per record (its footprint on the dataset grid, its time), columns ``id`` and ``record``
  (position in the dataset's records);
* 0.7: an R-tree of ``(minx, maxx, miny, maxy, mint, maxt)`` with POSIX times, objects the
  record positions.

A record's time is the closed interval TorchGeo gives a timestamp parsed to the second,
``[t, t + 1 s - 1 us]`` (naive UTC); a record without a datetime spans all time.

>>> interval(None)[0] == pd.Timestamp.min
True
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import geopandas
import numpy as np
import pandas as pd
import pyproj
import shapely

from rasteret.read.plan import RecordRef

__all__ = ["IndexArrays", "hits", "interval", "posix", "record_frame", "rtree_index"]

_MAX_POSIX = pd.Timestamp.max.timestamp()
_SECOND = pd.Timedelta(seconds=1) - pd.Timedelta(microseconds=1)


def interval(value: datetime | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """A record's time as TorchGeo indexes a timestamp parsed to the second: the closed
    interval ``[t, t + 1 s - 1 us]`` (naive UTC); no datetime means all time."""
    if value is None:
        return pd.Timestamp.min, pd.Timestamp.max
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    start = pd.Timestamp(value).floor("s")
    return start, start + _SECOND


def hits(
    frame: Any, interval: pd.Interval, step: int, bounds: tuple[float, float, float, float]
) -> list[int]:
    """Record positions of ``frame``'s rows whose time overlaps ``interval`` (every ``step``-th
    of them) and whose footprint meets ``bounds``, in row order.

    The same rows as TorchGeo's ``index.iloc[index.index.overlaps(interval)].iloc[::step]
    .cx[xmin:xmax, ymin:ymax]``, without building the intermediate frames.
    """
    rows = np.flatnonzero(frame.index.overlaps(interval))[::step]
    if rows.size == 0:
        return []
    geoms = np.asarray(frame.geometry.values[rows], dtype=object)
    hit = shapely.intersects(geoms, shapely.box(*bounds))
    return [int(r) for r in frame["record"].to_numpy()[rows[hit]]]


class IndexArrays:
    """A GeoDataFrame index as NumPy arrays, for :meth:`hits` without pandas per query.

    Footprints are axis-aligned boxes (every index row is ``shapely.box`` of a grid's
    bounds), so ``intersects`` with a query box is a comparison of bounds, touching
    included.
    """

    def __init__(self, frame: Any) -> None:
        self.frame = frame
        times = frame.index
        self._left = _nanoseconds(times.left)
        self._right = _nanoseconds(times.right)
        self._closed_left = bool(times.closed_left)
        self._closed_right = bool(times.closed_right)
        self._boxes = shapely.bounds(np.asarray(frame.geometry.values, dtype=object))
        self._records = frame["record"].to_numpy()
        rects = shapely.box(*self._boxes.T)
        self.boxes_only = bool(
            np.all(shapely.equals_exact(rects, np.asarray(frame.geometry.values), 0.0))
            and not np.any(times.is_empty)  # pandas versions differ on empty intervals
        )

    def hits(
        self, interval: pd.Interval, step: int, bounds: tuple[float, float, float, float]
    ) -> list[int] | None:
        """:func:`hits` of the frame; None when this fast path does not apply (times that
        are not timestamps, empty intervals, footprints that are not boxes)."""
        start, stop = interval.left, interval.right
        if not (self.boxes_only and _timestamp(start) and _timestamp(stop)) or interval.is_empty:
            return None
        # pandas' IntervalArray.overlaps: equal ends count when both ends are closed
        before = np.less_equal if self._closed_left and interval.closed_right else np.less
        after = np.less_equal if interval.closed_left and self._closed_right else np.less
        lo = before(self._left, stop.value)
        hi = after(start.value, self._right)
        rows = np.flatnonzero(lo & hi)[::step]
        if rows.size == 0:
            return []
        xmin, ymin, xmax, ymax = bounds
        if not (xmin < xmax and ymin < ymax):
            return None  # an empty or inverted box: shapely's own rules
        box = self._boxes[rows]
        hit = (box[:, 0] <= xmax) & (xmin <= box[:, 2]) & (box[:, 1] <= ymax) & (ymin <= box[:, 3])
        return [int(r) for r in self._records[rows[hit]]]


def _nanoseconds(values: Any) -> np.ndarray:
    return np.asarray(values.values.astype("datetime64[ns]")).view(np.int64)


def _timestamp(value: Any) -> bool:
    return isinstance(value, pd.Timestamp) and value.tzinfo is None


def posix(value: float) -> pd.Timestamp:
    """A TorchGeo 0.7 time (POSIX seconds; 0 and ``sys.maxsize`` mean unbounded)."""
    if value <= 0:
        return pd.Timestamp.min
    if value >= _MAX_POSIX:
        return pd.Timestamp.max
    return pd.Timestamp(value, unit="s")


def record_frame(
    boxes: Sequence[shapely.Geometry],
    times: Sequence[tuple[pd.Timestamp, pd.Timestamp]],
    records: Sequence[RecordRef],
    crs: str,
    positions: Sequence[int] | None = None,
) -> Any:
    index = pd.IntervalIndex.from_tuples(list(times), closed="both", name="datetime")
    data = {
        "id": [r.id for r in records],
        "record": list(range(len(records))) if positions is None else list(positions),
    }
    return geopandas.GeoDataFrame(
        data, index=index, geometry=list(boxes), crs=pyproj.CRS.from_user_input(crs)
    )


def rtree_index(frame: Any) -> Any:
    """TorchGeo 0.7's R-tree: ``(minx, maxx, miny, maxy, mint, maxt)`` -> record position."""
    from rtree.index import Index, Property

    index = Index(interleaved=False, properties=Property(dimension=3))
    for i, (box, interval, record) in enumerate(
        zip(frame.geometry, frame.index, frame["record"], strict=True)
    ):
        xmin, ymin, xmax, ymax = box.bounds
        mint = 0.0 if interval.left == pd.Timestamp.min else interval.left.timestamp()
        maxt = (
            float(sys.maxsize) if interval.right == pd.Timestamp.max else interval.right.timestamp()
        )
        index.insert(i, (xmin, xmax, ymin, ymax, mint, maxt), int(record))
    return index
