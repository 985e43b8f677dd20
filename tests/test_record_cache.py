"""Records selected from a cached scan equal those of a scan with every filter."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import rasteret
import rasteret._record_cache as record_cache
from rasteret._collection_reads import records_for
from rasteret.ingest.metadata import band_metadata_from_header
from rasteret.ingest.schema import BAND_METADATA_TYPE, BBOX_TYPE
from rasteret.testing.fixtures import get_fixture_spec, write_fixture
from rasteret.tiff.header import parse_header

RNG = np.random.default_rng(7)


def _table(tmp_path: Path, n: int = 120) -> pa.Table:
    """``n`` records with random CRS84 boxes (every 10th null), dates with ties (so the id
    breaks them) and B1 metadata (every 7th missing), ids out of order."""
    path = write_fixture(get_fixture_spec("uint16_deflate_pred2_tile512"), tmp_path)
    meta = band_metadata_from_header(parse_header(path.read_bytes()), href=str(path)).to_row()
    x0 = RNG.integers(0, 20, n).astype(float)
    y0 = RNG.integers(0, 20, n).astype(float)
    boxes = [
        None if i % 10 == 3 else {"xmin": x, "ymin": y, "xmax": x + w, "ymax": y + h}
        for i, (x, y, w, h) in enumerate(
            zip(x0, y0, RNG.integers(0, 4, n), RNG.integers(0, 4, n), strict=True)
        )
    ]
    days = RNG.integers(1, 6, n)
    return pa.table(
        {
            "id": [f"r{(i * 37) % n:03d}" for i in range(n)],
            "datetime": pa.array(
                [dt.datetime(2024, 1, int(d), tzinfo=dt.UTC) for d in days],
                pa.timestamp("us", tz="UTC"),
            ),
            "bbox": pa.array(boxes, BBOX_TYPE),
            "cloud": RNG.uniform(0, 100, n),
            "B1_metadata": pa.array(
                [None if i % 7 == 5 else meta for i in range(n)], BAND_METADATA_TYPE
            ),
        }
    )


def _summary(records: list) -> list[tuple]:
    return [
        (r.id, r.datetime, None if r.bands["B1"] is None else r.bands["B1"].to_row()["href"])
        for r in records
    ]


def _scanned(collection: rasteret.Collection, monkeypatch: pytest.MonkeyPatch) -> list:
    """records_for through a scan with every filter (nothing cached)."""
    with monkeypatch.context() as m:
        m.setattr(record_cache, "MAX_ROWS", -1)
        fresh = rasteret.Collection(collection.dataset, filter=collection.filter)
        return records_for(fresh, ["B1"])


def test_cached_selection_equals_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = rasteret.Collection(ds.dataset(_table(tmp_path)))
    queries = [(float(x), float(y), float(x) + w, float(y) + h)
               for x, y, w, h in RNG.integers(-2, 22, (150, 4))]  # fmt: skip
    queries += [(5.0, 5.0, 5.0, 5.0), (0.0, 0.0, 0.0, 0.0), (-5.0, -5.0, -1.0, -1.0)]
    cloudy = base.where(ds.field("cloud") < 60)
    seen_nonempty = 0
    for i, box in enumerate(queries):
        for coll in (base, cloudy):
            selected = coll.subset(bbox=box)
            if i % 3 == 0:  # two boxes: both must meet a record's box
                selected = selected.subset(bbox=queries[i - 1])
            if i % 5 == 0:
                selected = selected.subset(date_range=("2024-01-02", "2024-01-04"))
            got = records_for(selected, ["B1"])
            assert _summary(got) == _summary(_scanned(selected, monkeypatch)), box
            assert [r.id for r in got] == selected.to_table(columns=["id", "datetime"]).sort_by(
                [("datetime", "ascending"), ("id", "ascending")]
            ).column("id").to_pylist()
            seen_nonempty += bool(got)
    assert seen_nonempty > 100  # the boxes select something most of the time
    unfiltered = records_for(base, ["B1"])
    assert len(unfiltered) == 120
    assert _summary(unfiltered) == _summary(_scanned(base, monkeypatch))


def test_records_are_parsed_once_and_shared_by_derived_collections(tmp_path: Path) -> None:
    base = rasteret.Collection(ds.dataset(_table(tmp_path)))
    first = records_for(base.subset(bbox=(0, 0, 30, 30)), ["B1"])
    again = records_for(base.subset(bbox=(0, 0, 30, 30)).subset(bbox=(-1, -1, 40, 40)), ["B1"])
    assert [id(r) for r in first] == [id(r) for r in again]  # the same parsed records
    assert base.subset(bbox=(1, 1, 2, 2))._records is base._records
    assert base.where(ds.field("cloud") < 5)._records is base._records


def test_large_selections_are_scanned_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(record_cache, "MAX_ROWS", 50)
    base = rasteret.Collection(ds.dataset(_table(tmp_path)))
    assert base._records.entry(base.dataset, None, ("id",)) is None  # 120 rows: too many
    few = base.where(ds.field("cloud") < 20)
    assert len(few) <= 50
    assert few._records.entry(few.dataset, few._unboxed_filter, ("id",)) is not None
    got = records_for(base.subset(bbox=(0, 0, 5, 5)), ["B1"])
    assert _summary(got) == _summary(_scanned(base.subset(bbox=(0, 0, 5, 5)), monkeypatch))


def test_the_cache_keeps_a_few_entries(tmp_path: Path) -> None:
    base = rasteret.Collection(ds.dataset(_table(tmp_path)))
    cache = base._records
    for k in range(record_cache.ENTRIES + 3):
        records_for(base.where(ds.field("cloud") < 10.0 * k), ["B1"])
    assert len(cache._entries) == record_cache.ENTRIES
    newest = base.where(ds.field("cloud") < 10.0 * (record_cache.ENTRIES + 2))
    entry = cache.entry(newest.dataset, newest._unboxed_filter, ("id",))
    assert entry is not None
    assert entry.table.column_names == ["id", "bbox"]
    assert len(cache._entries) == record_cache.ENTRIES  # replaced the oldest


def test_the_boxed_filter_still_filters_scans(tmp_path: Path) -> None:
    base = rasteret.Collection(ds.dataset(_table(tmp_path)))
    box = (3.0, 3.0, 6.0, 6.0)
    boxed = base.subset(bbox=box)
    ids = set(boxed.to_table(columns=["id"]).column("id").to_pylist())
    assert ids == {r.id for r in records_for(boxed, ["B1"])}
    assert len(boxed) == len(ids) < len(base)
    assert boxed._unboxed_filter is None
    assert boxed._boxes == (box,)


def test_a_pickled_collection_keeps_its_filters_and_starts_a_cache(tmp_path: Path) -> None:
    """Collections go to worker processes pickled (Dask, DataLoader workers with spawn)."""
    pq.write_table(_table(tmp_path), tmp_path / "records.parquet")
    base = rasteret.Collection(ds.dataset(tmp_path / "records.parquet"))
    selected = base.where(ds.field("cloud") < 70).subset(bbox=(2.0, 2.0, 12.0, 12.0))
    want = _summary(records_for(selected, ["B1"]))
    copy = pickle.loads(pickle.dumps(selected))
    assert copy._records is not selected._records
    assert copy._records._entries == []
    assert _summary(records_for(copy, ["B1"])) == want
    assert len(copy) == len(selected)
