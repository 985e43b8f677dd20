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

__all__ = ["hits", "interval", "posix", "record_frame", "rtree_index"]

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
