"""Collection: filtering without copies, inspection, Arrow export and persistence."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import shapely

import rasteret
from rasteret.errors import SchemaError


def _records(n: int = 6) -> pa.Table:
    boxes = [shapely.box(10 + i, 40, 10.5 + i, 40.5) for i in range(n)]
    return pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "datetime": [dt.datetime(2024, 1 + i, 1, tzinfo=dt.UTC) for i in range(n)],
            "geometry": shapely.to_wkb(boxes),
            "assets": [{"B04": {"href": f"s3://bucket/r{i}_B04.tif"}} for i in range(n)],
            "eo:cloud_cover": [5.0 * i for i in range(n)],
            "split": ["train", "train", "val", "test", "train", "val"][:n],
            "label": list(range(n)),
        }
    )


@pytest.fixture
def collection() -> rasteret.Collection:
    return rasteret.build_from_table(_records())


def test_filters_compose_and_never_copy(collection: rasteret.Collection) -> None:
    assert len(collection) == 6
    low = collection.subset(cloud_cover_lt=12)
    assert low.to_table(columns=["id"]).column(0).to_pylist() == ["r0", "r1", "r2"]
    assert low.dataset is collection.dataset  # same data, another filter
    spring = low.subset(date_range=("2024-02-01", "2024-03-01"))
    assert spring.to_table(columns=["id"]).column(0).to_pylist() == ["r1", "r2"]
    east = collection.subset(bbox=(12.2, 40.1, 13.2, 40.2))
    assert east.to_table(columns=["id"]).column(0).to_pylist() == ["r2", "r3"]
    near = collection.subset(geometries=shapely.box(14.1, 40.1, 14.2, 40.2))
    assert near.to_table(columns=["id"]).column(0).to_pylist() == ["r4"]
    assert len(collection.select_split("train")) == 3
    assert len(collection.select_split(["val", "test"])) == 3
    assert len(collection.subset(split="val")) == 2
    assert len(collection.where(ds.field("label") >= 4)) == 2
    assert len(collection) == 6  # the original is untouched


def test_date_range_end_date_is_inclusive(collection: rasteret.Collection) -> None:
    one_day = collection.subset(date_range=(dt.date(2024, 3, 1), dt.date(2024, 3, 1)))
    assert one_day.to_table(columns=["id"]).column(0).to_pylist() == ["r2"]


def test_missing_filter_columns_are_named(collection: rasteret.Collection) -> None:
    with pytest.raises(SchemaError, match="'fold'"):
        collection.select_split("train", split_column="fold")
    bare = rasteret.build_from_table(_records().drop_columns(["eo:cloud_cover"]))
    with pytest.raises(SchemaError, match="eo:cloud_cover"):
        bare.subset(cloud_cover_lt=10)


def test_inspection(collection: rasteret.Collection) -> None:
    assert collection.bounds == pytest.approx((10.0, 40.0, 15.5, 40.5))
    assert collection.bands == []
    assert collection.asset_keys == ["B04"]
    assert collection.head(2).column("id").to_pylist() == ["r0", "r1"]
    assert "6 records" in repr(collection)
    summary = collection.describe()
    assert summary["records"] == 6
    assert summary["date_range"][0] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    empty = collection.subset(bbox=(-50, -50, -49, -49))
    assert len(empty) == 0
    assert empty.bounds is None


def test_arrow_export_reaches_duckdb_and_geopandas(collection: rasteret.Collection) -> None:
    duckdb = pytest.importorskip("duckdb")
    geopandas = pytest.importorskip("geopandas")
    con = duckdb.connect()
    con.register("scenes", collection.subset(cloud_cover_lt=12))
    assert con.execute("SELECT count(*) FROM scenes").fetchone() == (3,)
    assert con.execute("SELECT max(label) FROM scenes").fetchone() == (2,)
    frame = geopandas.GeoDataFrame.from_arrow(collection)
    assert frame.crs.equals("OGC:CRS84")
    assert frame.geometry.iloc[0].equals(shapely.box(10, 40, 10.5, 40.5))
    batches = list(collection.to_batches())
    assert sum(len(b) for b in batches) == 6


def test_export_then_load_round_trips(collection: rasteret.Collection, tmp_path: Path) -> None:
    target = collection.subset(split="train").export(tmp_path / "train_records")
    loaded = rasteret.load(target)
    assert loaded.to_table(columns=["id"]).column(0).to_pylist() == ["r0", "r1", "r4"]
    assert loaded.schema.field("datetime").type == pa.timestamp("us", tz="UTC")
    assert loaded.subset(cloud_cover_lt=6).to_table(columns=["id"]).column(0).to_pylist() == [
        "r0",
        "r1",
    ]


def test_as_collection_checks_the_schema(collection: rasteret.Collection) -> None:
    table = collection.to_table()
    wrapped = rasteret.as_collection(table, require_band_metadata=False)
    assert len(wrapped) == 6
    with pytest.raises(SchemaError, match="band}_metadata"):
        rasteret.as_collection(table)
    with pytest.raises(SchemaError, match="build_from_table"):
        rasteret.as_collection(table.drop_columns(["assets"]), require_band_metadata=False)
