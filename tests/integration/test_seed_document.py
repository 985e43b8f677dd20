"""Every example of the user's document (spec/seed-build-from-tables.txt), run verbatim.

The document's ``s3://my-bucket/...`` URLs are served by a real S3-compatible server (moto in
server mode on 127.0.0.1) reached only through the standard AWS environment variables. Each
example's code below is copied unchanged from the document; the tests then check the result.
"""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from pyproj import Transformer

from rasteret.testing.oracle import rasterio_aoi_read
from rasteret.testing.scenes import SceneSpec, record_table, write_multiband_scene, write_scene

pytestmark = pytest.mark.integration

BUCKET = "my-bucket"

EXAMPLE_IN_MEMORY = """
from datetime import datetime
import geopandas as gpd
import rasteret
from shapely.geometry import box
records = [
{
"id": "scene-001",
"datetime": datetime(2024, 1, 15),
"geometry": box(77.50, 12.90, 77.70, 13.10),
"assets": {
"B04": {"href": "s3://my-bucket/scenes/scene-001_B04.tif"},
"B08": {"href": "s3://my-bucket/scenes/scene-001_B08.tif"},
},
}
]
gdf = gpd.GeoDataFrame(records, geometry="geometry", crs="OGC:CRS84")
collection = rasteret.build_from_table(
gdf.to_arrow(geometry_encoding="WKB"),
name="my-scenes",
enrich_cog=True,
)
"""

EXAMPLE_DUCKDB = '''
import duckdb
import rasteret
con = duckdb.connect()
records = con.sql("""
SELECT *
FROM 'records.parquet'
WHERE "eo:cloud_cover" < 20
""")
collection = rasteret.build_from_table(
records,
name="filtered-scenes",
enrich_cog=True,
)
'''

EXAMPLE_PARQUET_PATH = """
import rasteret
collection = rasteret.build_from_table(
"s3://my-bucket/my-cog-records.parquet",
name="my-cog-records",
enrich_cog=True,
band_codes=["B04", "B08"],
max_concurrent=300,
)
"""

EXAMPLE_COLUMN_MAP = """
collection = rasteret.build_from_table(
"records.parquet",
name="custom",
column_map={
"scene_id": "id",
"geom": "geometry",
"year": "datetime",
},
href_column="url",
band_index_map={"B04": 0, "B08": 1},
enrich_cog=True,
)
"""

EXAMPLE_AOI_TABLE = """
import geopandas as gpd
from shapely.geometry import box
parcels = gpd.GeoDataFrame(
{
"parcel_id": ["parcel-001"],
"crop": ["rice"],
},
geometry=[box(77.55, 13.01, 77.58, 13.08)],
crs="OGC:CRS84",
).to_arrow(geometry_encoding="WKB")
gdf = collection.get_gdf(
geometries=parcels,
geometry_column="geometry",
bands=["B04", "B08"],
)
"""


def _scene_over(scene_id: str, bbox: tuple[float, float, float, float], **kw: Any) -> SceneSpec:
    """A UTM 43N scene at 60 m covering the CRS84 ``bbox``."""
    to_utm = Transformer.from_crs("OGC:CRS84", "EPSG:32643", always_xy=True)
    xs, ys = to_utm.transform(
        [bbox[0], bbox[2], bbox[0], bbox[2]], [bbox[1], bbox[1], bbox[3], bbox[3]]
    )
    res = 60.0
    x0, y1 = np.floor(min(xs) / res) * res, np.ceil(max(ys) / res) * res
    size = int(np.ceil(max(max(xs) - x0, y1 - min(ys)) / res))
    return SceneSpec(
        scene_id, epsg=32643, origin=(x0, y1), size=size, resolution=res, tile=128, **kw
    )


@pytest.fixture
def seed_world(s3_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The bucket and tables the document's examples expect, and a private HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    s3.create_bucket(Bucket=BUCKET)
    cogs = tmp_path / "cogs"
    bbox = (77.50, 12.90, 77.70, 13.10)
    scenes = {
        "scene-001": _scene_over("scene-001", bbox, seed=1, cloud_cover=5.0),
        "scene-002": _scene_over(
            "scene-002",
            bbox,
            seed=2,
            cloud_cover=55.0,
            datetime=dt.datetime(2024, 2, 15, tzinfo=dt.UTC),
        ),
        "scene-003": _scene_over(
            "scene-003",
            bbox,
            seed=3,
            cloud_cover=12.0,
            datetime=dt.datetime(2024, 3, 15, tzinfo=dt.UTC),
        ),
    }
    hrefs: dict[str, dict[str, str]] = {}
    local: dict[str, dict[str, Path]] = {}
    for scene_id, spec in scenes.items():
        paths = write_scene(spec, cogs)
        local[scene_id] = paths
        hrefs[scene_id] = {}
        for band, path in paths.items():
            key = f"scenes/{path.name}"
            s3.upload_file(str(path), BUCKET, key)
            hrefs[scene_id][band] = f"s3://{BUCKET}/{key}"
    table = record_table(list(scenes.values()), hrefs)
    table = table.set_column(
        table.column_names.index("geometry"),
        "geometry",
        pa.array(shapely.to_wkb([shapely.box(*bbox)] * len(scenes))),
    )
    # The DuckDB example reads records.parquet from the working directory.
    duck_dir = tmp_path / "duckdb"
    duck_dir.mkdir()
    pq.write_table(table, duck_dir / "records.parquet")
    # The Parquet-path example reads the same records from the bucket.
    pq.write_table(table, tmp_path / "my-cog-records.parquet")
    s3.upload_file(str(tmp_path / "my-cog-records.parquet"), BUCKET, "my-cog-records.parquet")
    # The column-mapping example: scene_id / geom / year / url -> one two-band COG per row.
    mapped_dir = tmp_path / "mapped"
    multiband = {sid: write_multiband_scene(spec, cogs / "multi") for sid, spec in scenes.items()}
    urls = []
    for path in multiband.values():
        s3.upload_file(str(path), BUCKET, f"multi/{path.name}")
        urls.append(f"s3://{BUCKET}/multi/{path.name}")
    mapped_dir.mkdir()
    pq.write_table(
        pa.table(
            {
                "scene_id": list(multiband),
                "geom": shapely.to_wkb([shapely.box(*bbox)] * len(multiband)),
                "year": [2021, 2022, 2023],
                "url": urls,
            }
        ),
        mapped_dir / "records.parquet",
    )
    return {
        "home": home,
        "local": local,
        "multiband": multiband,
        "duck_dir": duck_dir,
        "mapped_dir": mapped_dir,
        "scenes": scenes,
    }


def _run(code: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    namespace = {} if namespace is None else namespace
    exec(compile(textwrap.dedent(code), "<seed document example>", "exec"), namespace)
    return namespace


def _assert_band_metadata_matches(collection: Any, band: str, path: Path) -> None:
    row = collection.to_table(columns=[f"{band}_metadata"]).column(0)[0].as_py()
    with rasterio.open(path) as src:
        assert (row["image_width"], row["image_height"]) == (src.width, src.height)
        assert tuple(row["transform"]) == pytest.approx(tuple(src.transform)[:6])
        assert row["dtype"] == src.dtypes[0]
        assert row["nodata"] == src.nodata
        levels = len(src.overviews(1))
    widths = []
    for level in range(levels):
        with rasterio.open(path, overview_level=level) as ovr:
            widths.append(ovr.width)
    assert [o["image_width"] for o in row["overviews"]] == widths


def test_build_from_in_memory_geodataframe_then_read_parcels(seed_world: dict[str, Any]) -> None:
    ns = _run(EXAMPLE_IN_MEMORY)
    collection = ns["collection"]
    assert len(collection) == 1
    assert collection.bands == ["B04", "B08"]
    assert (seed_world["home"] / "rasteret_workspace" / "my-scenes_records").is_dir()
    _assert_band_metadata_matches(collection, "B04", seed_world["local"]["scene-001"]["B04"])
    # The record year/month and bbox were derived during normalisation.
    row = collection.to_table(columns=["year", "month", "bbox"]).to_pylist()[0]
    assert (row["year"], row["month"]) == (2024, 1)
    assert row["bbox"] == pytest.approx({"xmin": 77.5, "ymin": 12.9, "xmax": 77.7, "ymax": 13.1})
    assert collection.epsg == [32643]

    ns = _run(EXAMPLE_AOI_TABLE, {"collection": collection})
    gdf = ns["gdf"]
    assert list(gdf["parcel_id"]) == ["parcel-001"]
    assert list(gdf["crop"]) == ["rice"]
    # The parcel's pixels equal rasterio's read of the same window, outside-polygon filled.
    expected = rasterio_aoi_read(
        seed_world["local"]["scene-001"]["B04"],
        shapely.box(77.55, 13.01, 77.58, 13.08),
        "OGC:CRS84",
    )
    np.testing.assert_array_equal(gdf["B04"].iloc[0], expected)


def test_build_from_duckdb_relation_filters_by_sql(
    seed_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(seed_world["duck_dir"])
    collection = _run(EXAMPLE_DUCKDB)["collection"]
    assert sorted(collection.to_table(columns=["id"]).column("id").to_pylist()) == [
        "scene-001",
        "scene-003",
    ]
    assert collection.bands == ["B04", "B08"]
    # The user's own columns survive.
    assert "eo:cloud_cover" in collection.schema.names


def test_build_from_parquet_path_on_s3(seed_world: dict[str, Any]) -> None:
    collection = _run(EXAMPLE_PARQUET_PATH)["collection"]
    assert len(collection) == 3
    assert collection.bands == ["B04", "B08"]
    assert (seed_world["home"] / "rasteret_workspace" / "my-cog-records_records").is_dir()
    for band in ("B04", "B08"):
        _assert_band_metadata_matches(
            collection.subset(date_range=("2024-01-01", "2024-01-31")),
            band,
            seed_world["local"]["scene-001"][band],
        )


def test_column_mapping_with_href_column_and_band_index_map(
    seed_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(seed_world["mapped_dir"])
    import rasteret

    collection = _run(EXAMPLE_COLUMN_MAP, {"rasteret": rasteret})["collection"]
    table = collection.to_table(
        columns=["id", "datetime", "assets", "B04_metadata", "B08_metadata"]
    )
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == ["scene-001", "scene-002", "scene-003"]
    assert [r["datetime"].year for r in rows] == [2021, 2022, 2023]
    first_assets = dict(rows[0]["assets"])
    assert first_assets["B04"]["href"] == first_assets["B08"]["href"]
    assert (first_assets["B04"]["band_index"], first_assets["B08"]["band_index"]) == (0, 1)
    assert (rows[0]["B04_metadata"]["band_index"], rows[0]["B08_metadata"]["band_index"]) == (0, 1)
    assert rows[0]["B04_metadata"]["samples_per_pixel"] == 2
