"""Record tables of catalog datasets: re-keying assets by band code, query filters."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import shapely

from rasteret.catalog import BandSource, band_map_for
from rasteret.errors import SchemaError
from rasteret.ingest.normalize import normalize_records
from rasteret.stac.tables import query_expression, remap_assets_column


def _table() -> pa.Table:
    raw = pa.table(
        {
            "id": ["a", "b"],
            "datetime": ["2024-01-01", "2024-02-01"],
            "geometry": shapely.to_wkb([shapely.box(0, 0, 1, 1), shapely.box(1, 1, 2, 2)]),
            "assets": [
                {"image": {"href": "s3://b/a.tif"}, "thumbnail": {"href": "s3://b/a.png"}},
                {"image": {"href": "s3://b/b.tif"}},
            ],
            "eo:cloud_cover": [5.0, 50.0],
        }
    )
    return normalize_records(raw)


def _keys(table: pa.Table) -> list[dict[str, tuple[str, int | None]]]:
    return [
        {k: (v["href"], v["band_index"]) for k, v in row}
        for row in table.column("assets").to_pylist()
    ]


def test_assets_are_rekeyed_by_band_code_with_sample_indices() -> None:
    bands = band_map_for("earthsearch/naip")
    out = remap_assets_column(_table(), bands)
    assert _keys(out) == [
        {
            "R": ("s3://b/a.tif", 0),
            "G": ("s3://b/a.tif", 1),
            "B": ("s3://b/a.tif", 2),
            "NIR": ("s3://b/a.tif", 3),
        },
        {
            "R": ("s3://b/b.tif", 0),
            "G": ("s3://b/b.tif", 1),
            "B": ("s3://b/b.tif", 2),
            "NIR": ("s3://b/b.tif", 3),
        },
    ]
    kept = remap_assets_column(_table(), {"NIR": BandSource("image", 3)}, keep_unmapped=True)
    assert _keys(kept)[0] == {"NIR": ("s3://b/a.tif", 3), "thumbnail": ("s3://b/a.png", None)}


def test_missing_assets_are_reported_or_tolerated() -> None:
    bands = {"B04": BandSource("red"), "NIR": BandSource("image", 3)}
    with pytest.raises(SchemaError, match=r"bands \['B04'\] map to assets \['red'\]"):
        remap_assets_column(_table(), bands, where="the survey")
    tolerant = remap_assets_column(_table(), bands, require_all=False)
    assert [list(row) for row in _keys(tolerant)] == [["NIR"], ["NIR"]]


def test_query_expression_filters_columns() -> None:
    table = _table()
    kept = ds.dataset(table).to_table(filter=query_expression({"eo:cloud_cover": {"lt": 10}}))
    assert kept.column("id").to_pylist() == ["a"]
    both = query_expression({"id": {"in": ["a", "b"]}, "eo:cloud_cover": {"gte": 5, "neq": 5}})
    assert ds.dataset(table).to_table(filter=both).column("id").to_pylist() == ["b"]
    assert ds.dataset(table).to_table(filter=query_expression({"id": "b"})).num_rows == 1
    with pytest.raises(SchemaError, match="query operators"):
        query_expression({"id": {"startsWith": "a"}})
