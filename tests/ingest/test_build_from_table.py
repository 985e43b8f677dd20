"""build_from_table end to end: enrichment, failures, persistence and the build cache."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio

import rasteret
from rasteret.errors import BandResolutionError, EnrichmentError, SchemaError, WorkspaceError
from rasteret.testing.scenes import SceneSpec, record_table, write_multiband_scene, write_scene
from rasteret.testing.servers import RangeHTTPServer


def _specs(n: int = 3) -> list[SceneSpec]:
    return [
        SceneSpec(
            f"scene-{i}",
            32633 if i % 2 == 0 else 32632,
            (500000.0 + 1000 * i, 4600000.0),
            size=300,
            tile=128,
            datetime=dt.datetime(2024, 1 + i, 10, tzinfo=dt.UTC),
            seed=i,
            cloud_cover=10.0 * i,
        )
        for i in range(n)
    ]


@pytest.fixture
def served(tmp_path: Path) -> Any:
    specs = _specs()
    for spec in specs:
        write_scene(spec, tmp_path / "cogs")
    with RangeHTTPServer(tmp_path) as server:
        hrefs = {
            s.scene_id: {b: server.url_for(f"cogs/{s.scene_id}_{b}.tif") for b in ("B04", "B08")}
            for s in specs
        }
        yield server, record_table(specs, hrefs), specs


def test_enrichment_takes_one_get_per_cog_and_matches_rasterio(served: Any, tmp_path: Path) -> None:
    server, table, specs = served
    server.clear_log()
    collection = rasteret.build_from_table(table, enrich_cog=True)
    assert server.count() == 2 * len(specs)  # one ranged GET per COG header
    assert collection.bands == ["B04", "B08"]
    assert collection.epsg == [32632, 32633]
    rows = collection.to_table(columns=["id", "B08_metadata", "proj:epsg", "crs"]).to_pylist()
    for row in rows:
        meta = row["B08_metadata"]
        with rasterio.open(tmp_path / "cogs" / f"{row['id']}_B08.tif") as src:
            assert (meta["image_width"], meta["image_height"]) == (src.width, src.height)
            assert tuple(meta["transform"]) == tuple(src.transform)[:6]
            assert meta["crs"] == f"EPSG:{src.crs.to_epsg()}"
            assert meta["compression"] == 8
            assert meta["predictor"] == 2
            assert len(meta["overviews"]) == len(src.overviews(1))
        assert meta["header_size"] <= 65536
        assert meta["object_size"] > 0
        assert row["crs"] == meta["crs"]
        assert row["proj:epsg"] == meta["epsg"]


def test_band_codes_limit_enrichment(served: Any) -> None:
    _, table, _ = served
    collection = rasteret.build_from_table(table, enrich_cog=True, band_codes=["B08"])
    assert collection.bands == ["B08"]
    with pytest.raises(SchemaError, match="not asset keys"):
        rasteret.build_from_table(table, enrich_cog=True, band_codes=["B99"])


def test_unreadable_asset_is_listed_and_does_not_abort(served: Any) -> None:
    server, table, _ = served
    assets = table.column("assets").to_pylist()
    broken = server.url_for("cogs/missing_B04.tif")
    assets[1]["B04"]["href"] = broken
    table = table.set_column(table.column_names.index("assets"), "assets", pa.array(assets))
    with pytest.warns(rasteret.RasteretWarning, match="1 of 6 COG headers"):
        collection = rasteret.build_from_table(table, enrich_cog=True)
    (failure,) = collection.enrichment_errors
    assert (failure.record_id, failure.band, failure.url) == ("scene-1", "B04", broken)
    assert "ObjectNotFoundError" in failure.error
    cells = collection.to_table(columns=["id", "B04_metadata"]).to_pylist()
    assert [c["B04_metadata"] is None for c in cells] == [False, True, False]


def test_every_header_failing_says_what_to_check(served: Any) -> None:
    server, table, _ = served
    assets = [
        {b: {"href": server.url_for(f"nope/{i}_{b}.tif")} for b in ("B04", "B08")}
        for i in range(len(table))
    ]
    table = table.set_column(table.column_names.index("assets"), "assets", pa.array(assets))
    with pytest.raises(
        EnrichmentError, match=r"credentials.*requester-pays.*URL rewriting.*backend"
    ):
        rasteret.build_from_table(table, enrich_cog=True)


def test_garbage_header_is_a_per_asset_failure(served: Any, tmp_path: Path) -> None:
    server, table, _ = served
    (tmp_path / "garbage.tif").write_bytes(b"this is not a tiff" * 10)
    assets = table.column("assets").to_pylist()
    assets[0]["B08"]["href"] = server.url_for("garbage.tif")
    table = table.set_column(table.column_names.index("assets"), "assets", pa.array(assets))
    with pytest.warns(rasteret.RasteretWarning):
        collection = rasteret.build_from_table(table, enrich_cog=True)
    (failure,) = collection.enrichment_errors
    assert "HeaderError" in failure.error
    assert "garbage.tif" in failure.error


def test_multiband_file_gives_per_band_sample_index(tmp_path: Path) -> None:
    spec = _specs(1)[0]
    path = write_multiband_scene(spec, tmp_path, bands=("B04", "B08", "B11"))
    table = pa.table(
        {
            "scene_id": ["a"],
            "when": [2024],
            "geometry": record_table([spec], {spec.scene_id: {}}).column("geometry"),
            "url": [str(path)],
        }
    )
    collection = rasteret.build_from_table(
        table,
        column_map={"scene_id": "id", "when": "datetime"},
        href_column="url",
        band_index_map={"B04": 0, "B11": 2},
        enrich_cog=True,
    )
    assert collection.bands == ["B04", "B11"]
    row = collection.to_table(columns=["B04_metadata", "B11_metadata"]).to_pylist()[0]
    assert (row["B04_metadata"]["band_index"], row["B11_metadata"]["band_index"]) == (0, 2)
    # Pixel reads pick the right sample from the shared tiles.
    with rasterio.open(path) as src:
        expected = src.read(3, window=rasterio.windows.Window(10, 20, 30, 40))
        bounds = rasterio.windows.bounds(rasterio.windows.Window(10, 20, 30, 40), src.transform)
    got = collection.get_numpy(bounds, ["B11"], geometry_crs=f"EPSG:{spec.epsg}")
    np.testing.assert_array_equal(got[0], expected)


def test_named_build_is_cached_and_rebuilt_on_change(served: Any, tmp_path: Path) -> None:
    server, table, _ = served
    workspace = tmp_path / "ws"
    first = rasteret.build_from_table(
        table, name="scenes", workspace_dir=workspace, enrich_cog=True
    )
    folder = workspace / "scenes_records"
    assert first.path == folder
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "year=2024"
    ]  # Hive partitions
    assert sorted(p.name for p in (folder / "year=2024").iterdir()) == [
        "month=1",
        "month=2",
        "month=3",
    ]
    manifest = json.loads((folder / "_rasteret.json").read_text())

    server.clear_log()
    again = rasteret.build_from_table(
        table, name="scenes", workspace_dir=workspace, enrich_cog=True
    )
    assert server.count() == 0  # a cache hit fetches nothing
    assert json.loads((folder / "_rasteret.json").read_text()) == manifest
    assert again.to_table().equals(first.to_table())

    changed = table.set_column(
        table.column_names.index("eo:cloud_cover"), "eo:cloud_cover", pa.array([1.0, 2.0, 3.0])
    )
    server.clear_log()
    rebuilt = rasteret.build_from_table(
        changed, name="scenes", workspace_dir=workspace, enrich_cog=True
    )
    assert server.count() == 6
    assert sorted(rebuilt.to_table(columns=["eo:cloud_cover"]).column(0).to_pylist()) == [1, 2, 3]

    server.clear_log()
    rasteret.build_from_table(
        changed, name="scenes", workspace_dir=workspace, enrich_cog=True, force=True
    )
    assert server.count() == 6  # force always rebuilds

    server.clear_log()
    only_b04 = rasteret.build_from_table(
        changed, name="scenes", workspace_dir=workspace, enrich_cog=True, band_codes=["B04"]
    )
    assert only_b04.bands == ["B04"]  # a different option is a different build
    assert server.count() == 3


def test_default_workspace_is_under_home(
    served: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, table, _ = served
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    collection = rasteret.build_from_table(table, name="mine")
    assert collection.path == tmp_path / "home" / "rasteret_workspace" / "mine_records"
    assert len(rasteret.load(collection.path)) == 3


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "/abs", "", " spaced"])
def test_names_that_escape_the_workspace_are_refused(
    served: Any, tmp_path: Path, name: str
) -> None:
    _, table, _ = served
    if not name:
        # An empty name means "do not persist", not an error.
        assert rasteret.build_from_table(table, workspace_dir=tmp_path).path is None
        return
    with pytest.raises(WorkspaceError, match="collection name"):
        rasteret.build_from_table(table, name=name, workspace_dir=tmp_path)
    assert not any(tmp_path.parent.glob("escape*"))


def test_stored_collection_is_geoparquet_read_by_geopandas(served: Any, tmp_path: Path) -> None:
    geopandas = pytest.importorskip("geopandas")
    _, table, _ = served
    collection = rasteret.build_from_table(
        table, name="geo", workspace_dir=tmp_path, enrich_cog=True
    )
    frame = geopandas.read_parquet(collection.path / "year=2024" / "month=1")
    assert frame.crs.equals("OGC:CRS84")
    assert list(frame["id"]) == ["scene-0"]
    geo = json.loads(pq.read_schema(next(collection.path.rglob("*.parquet"))).metadata[b"geo"])
    assert geo["version"] == "1.1.0"
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]


def test_band_resolution_errors_say_what_is_missing(served: Any) -> None:
    _, table, _ = served
    plain = rasteret.build_from_table(table)
    with pytest.raises(BandResolutionError, match=r"enrich_cog=True") as info:
        plain.get_numpy((0, 0, 1, 1), ["B04"])
    assert "asset keys: ['B04', 'B08']" in str(info.value)
    enriched = rasteret.build_from_table(table, enrich_cog=True)
    with pytest.raises(BandResolutionError, match=r"'B12'.*data_source"):
        enriched.get_numpy((0, 0, 1, 1), ["B04", "B12"])


def test_data_source_maps_asset_keys_to_band_codes(served: Any) -> None:
    _, table, _ = served
    assets = [
        {"red": a["B04"], "nir": a["B08"], "thumbnail": {"href": "x.jpg"}}
        for a in table.column("assets").to_pylist()
    ]
    table = table.set_column(table.column_names.index("assets"), "assets", pa.array(assets))
    collection = rasteret.build_from_table(
        table, data_source="earthsearch/sentinel-2-l2a", enrich_cog=True
    )
    assert collection.data_source == "earthsearch/sentinel-2-l2a"
    assert collection.bands == ["B04", "B08"]
    b04 = rasteret.build_from_table(table, enrich_cog=True, band_codes=["red"])
    first = b04.to_table(columns=["red_metadata"]).column(0)[0].as_py()
    mapped = collection.to_table(columns=["B04_metadata"]).column(0)[0].as_py()
    assert first["href"] == mapped["href"]


def test_progress_bar_counts_headers(served: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, table, _ = served
    rasteret.build_from_table(table, enrich_cog=True, progress=True)
    err = capsys.readouterr().err
    assert "COG headers" in err
    assert "6/6" in err
    rasteret.build_from_table(table, enrich_cog=True, progress=False)
    assert "COG headers" not in capsys.readouterr().err


def test_reads_skip_unreadable_tiles_when_asked(served: Any, tmp_path: Path) -> None:
    _, table, specs = served
    collection = rasteret.build_from_table(table, enrich_cog=True)
    bounds = collection.subset(date_range=("2024-01-01", "2024-01-31")).bounds
    assert bounds is not None
    (tmp_path / "cogs" / f"{specs[0].scene_id}_B04.tif").write_bytes(b"gone")
    # the refused range of a file replaced since it was indexed: a stale index, and said so
    with pytest.raises(rasteret.errors.StaleIndexError, match="force=True"):
        collection.get_numpy(
            bounds, ["B04"], retries=0, cache_mb=0, date_range=("2024-01-01", "2024-01-31")
        )
    with pytest.warns(UserWarning, match="1"):
        arrays = collection.get_numpy(
            bounds,
            ["B04"],
            on_error="skip",
            retries=0,
            cache_mb=0,
            date_range=("2024-01-01", "2024-01-31"),
        )
    assert arrays.shape[0] == 0
