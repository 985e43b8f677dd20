"""build_from_stac, the catalog's build and STAC GeoParquet, end to end on loopback servers.

The STAC API is rustac's server on 127.0.0.1; the COGs it points at live on moto's S3 server,
reached only through the standard AWS variables (``s3_env``). rasterio reading the same local
files is the oracle for the parsed headers.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import rasterio.windows
import shapely

from rasteret import catalog
from rasteret.builders import build_from_table
from rasteret.catalog import DatasetDescriptor
from rasteret.errors import BandResolutionError, SchemaError
from rasteret.stac.build import build, build_from_stac
from rasteret.testing.scenes import scene_footprint
from rasteret.testing.servers import MotoS3Server
from support.stac_server import (
    NAIP_BANDS,
    NAIP_COLLECTION,
    OFFSET,
    S2_ASSETS,
    S2_COLLECTION,
    SCALE,
    StacApiServer,
    StacScenes,
    rustac_executable,
)

pytestmark = pytest.mark.integration

SOUTH = (77.40, 13.0, 77.51, 13.2)
"""Over S2-00..S2-02 only."""


@pytest.fixture(autouse=True)
def _isolated_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(catalog, "_session", {})


def _metadata(collection: Any, band: str) -> dict[str, dict[str, Any]]:
    table = collection.to_table(columns=["id", f"{band}_metadata"])
    return dict(
        zip(
            table.column("id").to_pylist(),
            table.column(f"{band}_metadata").to_pylist(),
            strict=True,
        )
    )


def _assert_matches_rasterio(meta: dict[str, Any], path: Path, sample: int = 0) -> None:
    with rasterio.open(path) as src:
        assert meta["image_width"] == src.width
        assert meta["image_height"] == src.height
        assert (meta["tile_height"], meta["tile_width"]) == src.block_shapes[0]
        assert meta["dtype"] == src.dtypes[sample]
        assert meta["nodata"] == src.nodata
        assert list(meta["transform"]) == pytest.approx(list(src.transform)[:6])
        offset = src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=sample + 1)
        assert offset is not None
        assert int(offset) in meta["tile_offsets"]
        assert meta["epsg"] == src.crs.to_epsg()


def _expected_ids(scenes: StacScenes, bbox: Any = None, dates: Any = None) -> list[str]:
    out = []
    for spec in scenes.s2_specs:
        if bbox is not None and not scene_footprint(spec).intersects(shapely.box(*bbox)):
            continue
        if dates is not None and not dates[0] <= spec.datetime <= dates[1]:
            continue
        out.append(spec.scene_id)
    return out


def test_build_from_stac_enriches_every_band(
    stac_server: StacApiServer, stac_scenes: StacScenes, s3_env: MotoS3Server, tmp_path: Path
) -> None:
    collection = build_from_stac(
        name="s2",
        stac_api=stac_server.url,
        collection=S2_COLLECTION,
        band_map={"B04": "red", "B08": "nir"},
        workspace_dir=tmp_path,
        page_size=3,
    )

    assert len(collection) == len(stac_scenes.s2_specs)
    assert collection.bands == ["B04", "B08"]
    assert collection.enrichment_errors == []
    assert collection.path == tmp_path / "s2_records"
    assert len(stac_server.searches()) == 3  # 3 + 3 + 1 items
    for band in ("B04", "B08"):
        for scene_id, meta in _metadata(collection, band).items():
            _assert_matches_rasterio(meta, stac_scenes.local[scene_id][band])
    table = collection.to_table()
    assert table.column("B04_scale").to_pylist() == [SCALE] * len(table)
    assert table.column("B04_offset").to_pylist() == [OFFSET] * len(table)
    assert set(table.column("proj:epsg").to_pylist()) == {32643}
    assert set(table.column("eo:cloud_cover").to_pylist()) == {
        s.cloud_cover for s in stac_scenes.s2_specs
    }

    stored = b"".join(p.read_bytes() for p in collection.path.rglob("*") if p.is_file())
    assert b"X-Amz-Signature" not in stored
    assert b"deadbeef" not in stored


def test_without_a_band_map_every_tiff_asset_is_a_band(
    stac_server: StacApiServer, s3_env: MotoS3Server, stac_scenes: StacScenes
) -> None:
    collection = build_from_stac(stac_api=stac_server.url, collection=S2_COLLECTION, bbox=SOUTH)
    assert collection.bands == list(S2_ASSETS.values())  # thumbnail and metadata left out
    assert sorted(collection.to_table(columns=["id"]).column("id").to_pylist()) == _expected_ids(
        stac_scenes, SOUTH
    )


def test_multiband_files_map_bands_to_samples(
    stac_server: StacApiServer, stac_scenes: StacScenes, s3_env: MotoS3Server
) -> None:
    collection = build_from_stac(
        stac_api=stac_server.url,
        collection=NAIP_COLLECTION,
        band_map=dict.fromkeys(NAIP_BANDS, "image"),
        band_index_map={band: i for i, band in enumerate(NAIP_BANDS)},
    )
    assert collection.bands == list(NAIP_BANDS)
    for index, band in enumerate(NAIP_BANDS):
        for scene_id, meta in _metadata(collection, band).items():
            assert meta["band_index"] == index
            _assert_matches_rasterio(meta, stac_scenes.local[scene_id]["image"], sample=index)

    only_index = build_from_stac(
        stac_api=stac_server.url, collection=NAIP_COLLECTION, band_index_map={"NIR": 3}
    )
    assert only_index.bands == ["NIR"]
    assert {m["band_index"] for m in _metadata(only_index, "NIR").values()} == {3}


def test_an_empty_search_names_the_query(stac_server: StacApiServer, s3_env: MotoS3Server) -> None:
    with pytest.raises(SchemaError, match="found no items") as caught:
        build_from_stac(
            stac_api=stac_server.url,
            collection=S2_COLLECTION,
            bbox=SOUTH,
            date_range=("1990-01-01", "1990-12-31"),
        )
    message = str(caught.value)
    assert "synthetic-s2" in message
    assert "1990-01-01..1990-12-31" in message
    assert stac_server.url in message


def test_band_map_naming_missing_assets(stac_server: StacApiServer, s3_env: MotoS3Server) -> None:
    with pytest.raises(SchemaError, match=r"none of the 7 items has") as caught:
        build_from_stac(
            stac_api=stac_server.url, collection=S2_COLLECTION, band_map={"B11": "swir16"}
        )
    assert "'red'" in str(caught.value)


def test_a_rebuild_reuses_the_stored_collection(
    stac_server: StacApiServer, s3_env: MotoS3Server, tmp_path: Path
) -> None:
    options: dict[str, Any] = {
        "name": "again",
        "stac_api": stac_server.url,
        "collection": NAIP_COLLECTION,
        "band_map": {"NIR": ("image", 3)},
        "workspace_dir": tmp_path,
    }
    first = build_from_stac(**options)
    manifest = first.path / "_rasteret.json"
    stamp = manifest.stat().st_mtime_ns
    build_from_stac(**options)
    assert manifest.stat().st_mtime_ns == stamp
    build_from_stac(**options, force=True)
    assert manifest.stat().st_mtime_ns != stamp


def test_static_catalog_build(stac_static_catalog: Path, stac_scenes: StacScenes) -> None:
    dates = (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2024, 1, 16, tzinfo=dt.UTC))
    collection = build_from_stac(
        stac_api=str(stac_static_catalog),
        static_catalog=True,
        date_range=("2024-01-01", "2024-01-15"),
        band_map={"B08": "nir"},
    )
    ids = collection.to_table(columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == _expected_ids(stac_scenes, dates=dates)
    for scene_id, meta in _metadata(collection, "B08").items():
        _assert_matches_rasterio(meta, stac_scenes.local[scene_id]["B08"])


def test_catalog_build_of_a_registered_api_dataset(
    stac_server: StacApiServer, stac_scenes: StacScenes, s3_env: MotoS3Server, tmp_path: Path
) -> None:
    catalog.register(
        DatasetDescriptor(
            id="test/synthetic-s2",
            title="synthetic S2",
            stac_api=stac_server.url,
            collection=S2_COLLECTION,
            bands={"B04": "red", "B08": "nir"},
            license="CC0-1.0",
        )
    )
    collection = build(
        "test/synthetic-s2", name="cat", bbox=SOUTH, bands=["B08"], workspace_dir=tmp_path
    )
    assert collection.bands == ["B08"]
    assert collection.data_source == "test/synthetic-s2"
    ids = collection.to_table(columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == _expected_ids(stac_scenes, SOUTH)

    # the dataset's band map also applies to build_from_stac by data_source, or by API+collection
    by_source = build_from_stac(
        stac_api=stac_server.url,
        collection=S2_COLLECTION,
        data_source="test/synthetic-s2",
        bbox=SOUTH,
    )
    assert by_source.bands == ["B04", "B08"]
    by_match = build_from_stac(stac_api=stac_server.url, collection=S2_COLLECTION, bbox=SOUTH)
    assert by_match.bands == ["B04", "B08"]
    assert by_match.data_source == "test/synthetic-s2"

    with pytest.raises(BandResolutionError, match="no bands"):
        build("test/synthetic-s2", bands=["B99"])


def _stac_geoparquet(stac_scenes: StacScenes, tmp_path: Path) -> Path:
    source = tmp_path / "items.json"
    source.write_text(json.dumps({"type": "FeatureCollection", "features": stac_scenes.s2_items}))
    target = tmp_path / "items.parquet"
    subprocess.run(
        [rustac_executable(), "translate", str(source), str(target)],
        check=True,
        capture_output=True,
    )
    return target


def test_stac_geoparquet_goes_through_build_from_table(
    stac_scenes: StacScenes, s3_env: MotoS3Server, tmp_path: Path
) -> None:
    path = _stac_geoparquet(stac_scenes, tmp_path)
    schema = pq.read_schema(path)
    assert schema.field("assets").type.num_fields == 4  # struct of per-asset structs
    assert "eo:cloud_cover" in schema.names  # properties as top-level columns

    collection = build_from_table(path, enrich_cog=True)
    assert collection.bands == ["red", "nir"]
    assert collection.enrichment_errors == []
    for scene_id, meta in _metadata(collection, "red").items():
        _assert_matches_rasterio(meta, stac_scenes.local[scene_id]["B04"])
    table = collection.to_table()
    assert sorted(table.column("eo:cloud_cover").to_pylist()) == sorted(
        s.cloud_cover for s in stac_scenes.s2_specs
    )


def test_catalog_build_of_a_local_stac_geoparquet(
    stac_scenes: StacScenes, s3_env: MotoS3Server, tmp_path: Path
) -> None:
    path = _stac_geoparquet(stac_scenes, tmp_path)
    catalog.register_local("synthetic-table", path, bands={"B04": "red", "B08": "nir"})
    collection = build(
        "local/synthetic-table",
        bbox=SOUTH,
        query={"eo:cloud_cover": {"lt": 20}},
        bands=["B04"],
    )
    assert collection.bands == ["B04"]
    assert collection.data_source == "local/synthetic-table"
    ids = collection.to_table(columns=["id"]).column("id").to_pylist()
    expected = [
        i
        for i in _expected_ids(stac_scenes, SOUTH)
        if next(s for s in stac_scenes.s2_specs if s.scene_id == i).cloud_cover < 20
    ]
    assert sorted(ids) == expected
    assert expected  # the filters keep some records and drop others
    with pytest.raises(SchemaError, match="no records of dataset"):
        build("local/synthetic-table", date_range=("1990-01-01", "1990-02-01"))


def test_pixels_read_from_a_stac_built_collection_match_rasterio(
    stac_server: StacApiServer, stac_scenes: StacScenes, s3_env: MotoS3Server
) -> None:
    collection = build_from_stac(
        stac_api=stac_server.url,
        collection=S2_COLLECTION,
        band_map={"B04": "red", "B08": "nir"},
        bbox=SOUTH,
    )
    x0, y0 = stac_scenes.s2_specs[1].origin  # a box on S2-01's pixel grid, overlapping S2-00/02
    aoi = shapely.box(x0 + 100.0, y0 - 600.0, x0 + 1300.0, y0 - 200.0)
    pixels, index = collection.get_numpy(
        aoi, ["B04", "B08"], geometry_crs="EPSG:32643", return_index=True
    )

    assert pixels.shape[1:] == (2, 40, 120)
    assert sorted(index.record_id) == ["S2-00", "S2-01", "S2-02"]
    for entry, record_id in enumerate(index.record_id):
        for channel, band in enumerate(("B04", "B08")):
            with rasterio.open(stac_scenes.local[record_id][band]) as src:
                window = rasterio.windows.from_bounds(*aoi.bounds, transform=src.transform)
                expected = src.read(1, window=window, boundless=True, fill_value=src.nodata)
            np.testing.assert_array_equal(pixels[entry, channel], expected)


def test_url_rewrites_apply_to_enrichment_and_stored_hrefs(
    stac_scenes: StacScenes, s3_env: MotoS3Server, tmp_path: Path
) -> None:
    mirror = "https://mirror.example/naip/"
    items = json.loads(json.dumps(stac_scenes.naip_items).replace("s3://stac-cogs/naip/", mirror))
    source = tmp_path / "items.json"  # a static item collection
    source.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    collection = build_from_stac(
        stac_api=str(source),
        static_catalog=True,
        band_map={"NIR": ("image", 3)},
        cloud_config={"url_rewrite_patterns": {mirror: "s3://stac-cogs/naip/"}},
    )
    assert collection.enrichment_errors == []
    hrefs = [dict(a)["NIR"]["href"] for a in collection.to_table().column("assets").to_pylist()]
    assert hrefs == [f"s3://stac-cogs/naip/{s.scene_id}.tif" for s in stac_scenes.naip_specs]
    for scene_id, meta in _metadata(collection, "NIR").items():
        _assert_matches_rasterio(meta, stac_scenes.local[scene_id]["image"], sample=3)
