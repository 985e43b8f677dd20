"""The records of a small collection, kept in memory between reads.

Every pixel read starts by selecting the records whose footprints meet its AOIs or points
(:func:`rasteret._collection_reads.records_for`). Done as a dataset scan, that costs ~2-3 ms
even for a few dozen records (Acero's set-up, Parquet decoding of the nested metadata
columns), which a loop of small reads (an AOI per call, a sampler, a time series browsed
window by window) pays on every call. A :class:`RecordCache` keeps, per filter and band
list, the scanned records of the collection *without* its bounding-box filters; a read then
selects by bounding box in NumPy, with the comparisons of the scan (float64, null boxes never
match), and each record's metadata is parsed once.

Only small selections are kept (:data:`MAX_ROWS` records, :data:`MAX_BYTES` of Arrow data,
:data:`ENTRIES` filter/band combinations per collection family); larger ones are scanned
with every filter on each read, as before. The cache belongs to the collections derived from
one dataset (``where``, ``subset``); the dataset is immutable, so nothing goes stale.

>>> import pyarrow as pa, pyarrow.dataset as ds
>>> table = pa.table({"id": ["a", "b"], "bbox": pa.array(
...     [{"xmin": 0.0, "ymin": 0.0, "xmax": 1.0, "ymax": 1.0},
...      {"xmin": 5.0, "ymin": 5.0, "xmax": 6.0, "ymax": 6.0}])})
>>> cache = RecordCache()
>>> entry = cache.entry(ds.dataset(table), None, ("id",))
>>> entry.rows([(0.5, 0.5, 0.7, 0.7)]).tolist(), entry.rows([]).tolist()
([0], [0, 1])
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from rasteret.ingest.schema import BBOX

__all__ = ["ENTRIES", "MAX_BYTES", "MAX_ROWS", "CachedRecords", "RecordCache"]

MAX_ROWS = 4096
"""Selections of more records than this are not kept (scanned with every filter instead)."""
MAX_BYTES = 32_000_000
"""Nor selections whose Arrow data exceeds this many bytes."""
ENTRIES = 4
"""Filter/band combinations kept per collection family (least recently used dropped)."""

Box = tuple[float, float, float, float]
_Key = tuple[ds.Expression | None, tuple[str, ...], tuple[str, ...]]


class CachedRecords:
    """One scanned selection: its Arrow columns, its boxes, and records parsed on demand."""

    def __init__(self, table: pa.Table, sort_keys: Sequence[str] = ()) -> None:
        self.table = table.combine_chunks()
        self.boxes = _boxes(self.table)
        self.order = (
            pc.sort_indices(self.table, sort_keys=[(k, "ascending") for k in sort_keys])
            .to_numpy()
            .astype(np.int64)
            if sort_keys and self.table.num_rows
            else np.arange(self.table.num_rows, dtype=np.int64)
        )
        """Row positions in ``sort_keys`` order."""
        self._parsed: dict[int, Any] = {}

    def rows(self, boxes: Sequence[Box]) -> np.ndarray:
        """Positions of the rows whose box meets every one of ``boxes`` (as the scan's
        filter would test them), in :attr:`order`."""
        keep = np.ones(len(self.boxes), dtype=bool)
        xmin, ymin, xmax, ymax = self.boxes.T
        with np.errstate(invalid="ignore"):
            for bx0, by0, bx1, by1 in boxes:
                keep &= (xmin <= bx1) & (xmax >= bx0) & (ymin <= by1) & (ymax >= by0)
        return self.order[keep[self.order]]

    def parsed(self, row: int, parse: Callable[[CachedRecords, int], Any]) -> Any:
        """``parse(self, row)``, computed once per row."""
        value = self._parsed.get(row)
        if value is None:
            value = self._parsed[row] = parse(self, row)
        return value


class RecordCache:
    """Cached selections of one dataset, keyed by filter expression and column list."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[_Key, CachedRecords | None]] = []

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a pickled collection (a worker's copy) starts with an empty cache

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._entries = []

    def entry(
        self,
        dataset: ds.Dataset,
        where: ds.Expression | None,
        columns: tuple[str, ...],
        sort_keys: tuple[str, ...] = (),
    ) -> CachedRecords | None:
        """The rows of ``dataset`` matching ``where`` with ``columns`` (and the boxes),
        ordered by ``sort_keys`` (ascending), scanned on first use; None when the selection
        is too large to keep. The columns name the entry: the same filter with other
        columns is another entry."""
        key = (where, columns, sort_keys)
        with self._lock:
            for i, (seen, cached) in enumerate(self._entries):
                if seen[1:] == key[1:] and _same(seen[0], where):
                    self._entries.append(self._entries.pop(i))  # most recently used last
                    return cached
            cached = _scan(dataset, where, columns, sort_keys)
            self._entries.append((key, cached))
            del self._entries[:-ENTRIES]
            return cached


def _same(a: ds.Expression | None, b: ds.Expression | None) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a.equals(b))


def _scan(
    dataset: ds.Dataset,
    where: ds.Expression | None,
    columns: tuple[str, ...],
    sort_keys: tuple[str, ...],
) -> CachedRecords | None:
    if BBOX not in dataset.schema.names:
        return None
    if dataset.count_rows(filter=where) > MAX_ROWS:
        return None
    wanted = list(dict.fromkeys([*columns, BBOX]))
    table = dataset.to_table(columns=wanted, filter=where)
    if table.nbytes > MAX_BYTES:
        return None
    return CachedRecords(table, sort_keys)


def _boxes(table: pa.Table) -> np.ndarray:
    """``(n, 4)`` float64 xmin, ymin, xmax, ymax of each row; NaN where the box is null."""
    bbox = table.column(BBOX).combine_chunks() if table.num_rows else None
    out = np.full((table.num_rows, 4), np.nan)
    if bbox is None:
        return out
    present = ~np.asarray(bbox.is_null(), dtype=bool)
    for k, name in enumerate(("xmin", "ymin", "xmax", "ymax")):
        values = bbox.field(name).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        out[:, k] = np.where(present, values, np.nan)
    return out
