"""STAC items -> record table: columns, band maps, sidecars, redaction (no I/O)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import shapely.geometry

from rasteret.catalog import BandSource, parse_band_map, remap_assets
from rasteret.errors import SchemaError
from rasteret.stac.records import items_to_table, parse_datetime, raster_band_codes
from support.stac_server import OFFSET, SCALE, SIGNED_QUERY, StacScenes


def _assets(table: pa.Table, row: int) -> dict[str, dict[str, Any]]:
    return dict(table.column("assets")[row].as_py())


def test_every_item_becomes_a_row_with_its_properties(stac_scenes: StacScenes) -> None:
    items = stac_scenes.s2_items
    table = items_to_table(items)

    assert table.column("id").to_pylist() == [i["id"] for i in items]
    expected_dates = [s.datetime for s in stac_scenes.s2_specs]
    assert table.column("datetime").to_pylist() == expected_dates
    assert table.schema.field("datetime").type == pa.timestamp("us", tz="UTC")
    for row, item in enumerate(items):
        footprint = shapely.from_wkb(table.column("geometry")[row].as_py())
        assert footprint.equals_exact(shapely.geometry.shape(item["geometry"]), 1e-12)
    assert table.column("eo:cloud_cover").to_pylist() == [
        s.cloud_cover for s in stac_scenes.s2_specs
    ]
    assert table.column("platform").to_pylist() == ["synthetic-2a"] * len(items)
    assert table.column("collection").to_pylist() == ["synthetic-s2"] * len(items)
    nested = table.column("s2:processing")[0].as_py()
    assert nested == {"baseline": "05.10", "flags": [1, 2]}
    # nanosecond timestamps are kept to the microsecond
    assert table.column("created")[0].as_py() == dt.datetime(
        2024, 2, 1, 0, 0, 0, 123456, tzinfo=dt.UTC
    )


def test_without_band_map_only_tiff_assets_are_kept(stac_scenes: StacScenes) -> None:
    table = items_to_table(stac_scenes.s2_items)
    assert raster_band_codes(stac_scenes.s2_items) == ["red", "nir"]
    assert sorted(_assets(table, 0)) == ["nir", "red"]
    red = _assets(table, 0)["red"]
    assert red["type"].startswith("image/tiff")
    assert red["roles"] == ["data", "reflectance"]
    assert red["band_index"] is None


def test_band_map_keys_assets_by_band_code_and_keeps_raster_bands(stac_scenes: StacScenes) -> None:
    table = items_to_table(stac_scenes.s2_items, band_map={"B04": "red"})
    assert list(_assets(table, 0)) == ["B04"]
    assert _assets(table, 0)["B04"]["href"] == stac_scenes.s2_items[0]["assets"]["red"]["href"]
    assert table.column("B04_scale").to_pylist() == [SCALE] * len(table)
    assert table.column("B04_offset").to_pylist() == [OFFSET] * len(table)
    assert table.column("B04_nodata").to_pylist() == [0.0] * len(table)
    assert "B08_scale" not in table.column_names


def test_band_index_map_points_bands_at_samples(stac_scenes: StacScenes) -> None:
    bands = dict.fromkeys(("R", "G", "B", "NIR"), "image")
    table = items_to_table(
        stac_scenes.naip_items, band_map=bands, band_index_map={"R": 0, "G": 1, "B": 2, "NIR": 3}
    )
    assets = _assets(table, 0)
    assert [assets[b]["band_index"] for b in ("R", "G", "B", "NIR")] == [0, 1, 2, 3]
    assert len({a["href"] for a in assets.values()}) == 1


def test_signed_query_strings_never_reach_the_table(stac_scenes: StacScenes, tmp_path: Any) -> None:
    signed = stac_scenes.s2_items[1]["assets"]["red"]["href"]
    assert SIGNED_QUERY in signed
    table = items_to_table(stac_scenes.s2_items, band_map={"B04": "red", "B08": "nir"})
    assert _assets(table, 1)["B04"]["href"] == signed.split("?")[0]
    pq.write_table(table, tmp_path / "records.parquet")
    assert b"X-Amz-Signature" not in (tmp_path / "records.parquet").read_bytes()


def test_proj_sidecars_come_from_properties_or_assets(stac_scenes: StacScenes) -> None:
    items = copy.deepcopy(stac_scenes.s2_items[:2])
    del items[1]["properties"]["proj:code"]
    items[1]["assets"]["red"]["proj:epsg"] = 32643
    table = items_to_table(items, band_map={"B04": "red"})
    assert table.column("proj:code").to_pylist() == ["EPSG:32643", None]
    assert table.column("proj:epsg").to_pylist() == [None, 32643]
    assert table.schema.field("proj:epsg").type == pa.int32()


def test_interval_items_relative_hrefs_and_awkward_properties() -> None:
    item = {
        "type": "Feature",
        "id": 42,
        "geometry": None,
        "bbox": [10.0, 20.0, 11.0, 21.0],
        "properties": {
            "datetime": None,
            "start_datetime": "2023-05-01T00:00:00+02:00",
            "end_datetime": "2023-05-31T00:00:00Z",
            "mixed": 1,
            "empty": {},
            "bbox": "a property named like a canonical column",
        },
        "assets": {"data": {"href": "tiles/a.tif"}},
        "links": [{"rel": "self", "href": "https://stac.example/items/42.json"}],
    }
    other = copy.deepcopy(item)
    other["id"] = "43"
    other["properties"]["mixed"] = "text"
    table = items_to_table([item, other])

    assert table.column("id").to_pylist() == ["42", "43"]
    assert table.column("datetime")[0].as_py() == dt.datetime(2023, 4, 30, 22, tzinfo=dt.UTC)
    assert shapely.from_wkb(table.column("geometry")[0].as_py()).bounds == (10.0, 20.0, 11.0, 21.0)
    assert _assets(table, 0)["data"]["href"] == "https://stac.example/items/tiles/a.tif"
    assert table.column("mixed").to_pylist() == ["1", '"text"']  # mixed types: JSON text
    assert table.column("empty").to_pylist() == ["{}", "{}"]  # Parquet cannot store empty structs
    assert table.column("properties.bbox").to_pylist()[0].startswith("a property")


def test_items_without_id_or_date_are_refused() -> None:
    with pytest.raises(SchemaError, match="'id'"):
        items_to_table([{"properties": {"datetime": "2024-01-01T00:00:00Z"}}])
    with pytest.raises(SchemaError, match="'datetime' or 'start_datetime'"):
        items_to_table([{"id": "x", "properties": {"datetime": None}}])


def test_band_map_forms() -> None:
    parsed = parse_band_map(
        {
            "A": "red",
            "B": ("image", 2),
            "C": {"asset": "image", "band_index": 1},
            "D": BandSource("x"),
        },
        {"A": 0},
    )
    assert parsed == {
        "A": BandSource("red", 0),
        "B": BandSource("image", 2),
        "C": BandSource("image", 1),
        "D": BandSource("x", None),
    }
    with pytest.raises(SchemaError, match="sample index"):
        parse_band_map({"A": ("image", -1)})
    with pytest.raises(SchemaError, match="band_map does not map"):
        parse_band_map({"A": "red"}, {"B": 1})
    with pytest.raises(SchemaError, match="asset key"):
        parse_band_map({"A": 3})  # type: ignore[dict-item]
    assert remap_assets(
        {"red": {"href": "a.tif"}}, {"B04": BandSource("red"), "B08": BandSource("nir")}
    ) == {"B04": {"href": "a.tif"}}


def test_parse_datetime() -> None:
    assert parse_datetime("2024-01-15") == dt.datetime(2024, 1, 15, tzinfo=dt.UTC)
    assert parse_datetime("2024-01-15T10:00:00.5z") == dt.datetime(
        2024, 1, 15, 10, 0, 0, 500000, tzinfo=dt.UTC
    )
    assert parse_datetime("not a date") == "not a date"
    assert parse_datetime(7) == 7
