"""The assets column: struct, map, JSON, plain hrefs, href_column + band_index_map, rewrites."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
import shapely

from rasteret.errors import SchemaError
from rasteret.ingest import schema
from rasteret.ingest.assets import normalize_assets, rewrite_hrefs
from rasteret.ingest.normalize import normalize_records
from rasteret.io.urls import rewrite_url

# Python truth for three rows; row 1 lacks B08, row 2 has none of its assets.
STAC_ASSETS: list[dict[str, Any] | None] = [
    {
        "B04": {
            "href": "s3://b/0_B04.tif",
            "type": "image/tiff",
            "roles": ["data"],
            "title": "Red",
        },
        "B08": {
            "href": "s3://b/0_B08.tif",
            "type": "image/tiff",
            "roles": ["data"],
            "title": "NIR",
        },
    },
    {"B04": {"href": "s3://b/1_B04.tif", "type": None, "roles": None, "title": None}, "B08": None},
    None,
]


def expected_entries(rows: list[dict[str, Any] | None]) -> list[Any]:
    """The canonical map value of each row: unknown fields dropped, absent assets omitted."""
    out: list[Any] = []
    for row in rows:
        if row is None:
            out.append(None)
            continue
        entries = []
        for key, value in row.items():
            if value is None:
                continue
            value = {"href": value} if isinstance(value, str) else value
            entries.append(
                (
                    key,
                    {
                        "href": value.get("href"),
                        "band_index": value.get("band_index"),
                        "type": value.get("type"),
                        "roles": value.get("roles"),
                    },
                )
            )
        out.append(entries)
    return out


def assets_of(column: Any) -> list[Any]:
    array = normalize_assets(pa.table({"assets": column}))
    assert array.type == schema.ASSETS_TYPE
    return array.to_pylist()


def test_stac_geoparquet_struct() -> None:
    assert assets_of(pa.array(STAC_ASSETS)) == expected_entries(STAC_ASSETS)


def test_map_of_structs_and_map_of_hrefs_sliced() -> None:
    item = pa.struct(
        [("href", pa.string()), ("band_index", pa.int64()), ("roles", pa.list_(pa.string()))]
    )
    rows = [
        [("B04", {"href": "a", "band_index": 0, "roles": ["data"]})],
        [("B04", {"href": "b", "band_index": 1, "roles": None}), ("B08", None)],
        None,
        [("B08", {"href": "c", "band_index": None, "roles": []})],
    ]
    column = pa.array(rows, pa.map_(pa.string(), item)).slice(1)
    assert assets_of(column) == [
        [("B04", {"href": "b", "band_index": 1, "type": None, "roles": None})],
        None,
        [("B08", {"href": "c", "band_index": None, "type": None, "roles": []})],
    ]
    hrefs = pa.array([[("B04", "x.tif"), ("B08", None)], []], pa.map_(pa.string(), pa.string()))
    assert assets_of(hrefs) == [
        [("B04", {"href": "x.tif", "band_index": None, "type": None, "roles": None})],
        [],
    ]


def test_struct_of_plain_href_strings() -> None:
    rows = [{"B04": "s3://b/a.tif", "B08": "s3://b/b.tif"}, {"B04": "s3://b/c.tif", "B08": None}]
    assert assets_of(pa.array(rows)) == expected_entries(rows)


def test_json_strings_uniform_and_mixed() -> None:
    uniform = [json.dumps(r, indent=2) if r is not None else None for r in STAC_ASSETS]
    assert assets_of(pa.array(uniform)) == expected_entries(STAC_ASSETS)
    mixed = [
        {"B04": "s3://b/plain.tif"},
        {"B04": {"href": "s3://b/struct.tif", "band_index": 2}},
        {},
    ]
    column = pa.array([json.dumps(r) for r in mixed], pa.large_string())
    assert assets_of(column) == expected_entries(mixed)
    with pytest.raises(SchemaError, match=r"row 1"):
        assets_of(pa.array(['{"B04": "a"}', "{not json"]))
    with pytest.raises(SchemaError, match="JSON object"):
        assets_of(pa.array(['["a", "b"]']))


def test_href_column_and_band_index_map() -> None:
    table = pa.table({"url": pa.array(["s3://b/a.tif", "s3://b/b.tif"]).dictionary_encode()})
    got = normalize_assets(table, href_column="url", band_index_map={"B04": 0, "B08": 1, "B11": 5})
    assert got.to_pylist() == [
        [(k, {"href": u, "band_index": i, "type": None, "roles": None}) for k, i in (("B04", 0), ("B08", 1), ("B11", 5))]
        for u in ("s3://b/a.tif", "s3://b/b.tif")
    ]  # fmt: skip
    with pytest.raises(SchemaError, match="band_index_map"):
        normalize_assets(table, href_column="url")
    with pytest.raises(SchemaError, match="no href_column 'link'"):
        normalize_assets(table, href_column="link", band_index_map={"B04": 0})


def test_band_index_map_fills_existing_assets_only_where_missing() -> None:
    rows = [{"B04": {"href": "a", "band_index": None}, "B08": {"href": "a", "band_index": 3}, "SCL": {"href": "s", "band_index": None}}]  # fmt: skip
    got = normalize_assets(
        pa.table({"assets": pa.array(rows)}), band_index_map={"B04": 0, "B08": 1}
    )
    assert [(k, v["band_index"]) for k, v in got[0].as_py()] == [
        ("B04", 0),
        ("B08", 3),
        ("SCL", None),
    ]


def test_url_rewrites_match_the_io_layer() -> None:
    patterns = {
        "https://landsatlook.usgs.gov/data/": "s3://usgs-landsat/",
        "https://landsatlook.usgs.gov/": "s3://other/",
        "s3://usgs-landsat/": "s3://never-twice/",
    }
    hrefs = [
        "https://landsatlook.usgs.gov/data/a.tif",
        "https://landsatlook.usgs.gov/b.tif",
        "s3://usgs-landsat/c.tif",
        "gs://untouched/d.tif",
        None,
    ]
    got = rewrite_hrefs(pa.array(hrefs), patterns).to_pylist()
    assert got == [None if h is None else rewrite_url(h, patterns) for h in hrefs]
    table = pa.table({"assets": pa.array([{"B04": {"href": hrefs[0]}}])})
    out = normalize_assets(table, url_rewrite_patterns=patterns)
    assert out[0].as_py()[0][1]["href"] == rewrite_url(hrefs[0], patterns)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (pa.array([1, 2]), "href_column"),
        (pa.array(["s3://b/just-a-url.tif"]), "JSON assets in row 0.*href_column"),
        (pa.array([{"B04": {"url": "x"}}]), "asset 'B04'.*'href'"),
        (pa.array([{"B04": {"href": "x", "band_index": "first"}}]), "band_index"),
    ],
)
def test_bad_assets(column: pa.Array, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        normalize_assets(pa.table({"assets": column}))


def test_records_with_null_assets_are_named() -> None:
    table = pa.table(
        {
            "id": ["a", "b"],
            "datetime": [2024, 2024],
            "geometry": [shapely.box(0, 0, 1, 1).wkb] * 2,
            "assets": pa.array([{"B04": "x"}, None]),
        }
    )
    with pytest.raises(SchemaError, match=r"'assets'.*rows \[1\]"):
        normalize_records(table)
