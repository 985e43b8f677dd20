"""A build stores hrefs rewritten by every rewrite it was given (``url_rewrite_patterns=``,
``cloud_config=`` or the data source's catalog entry), so its collection reads from them with
no cloud settings passed again, and a read that passes the same rewrites does not apply them
twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import shapely

import rasteret
from rasteret import catalog
from rasteret.builders import _cloud_config
from rasteret.errors import RasteretWarning
from rasteret.io.stores import CloudConfig
from rasteret.testing.scenes import monthly_series, record_table, scene_footprint, write_scene

FAKE = "https://fake.example/"
SPECS = monthly_series("scene", 2, size=200)


@pytest.fixture(autouse=True)
def _own_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty user catalog and no process registrations for each test."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(catalog, "_session", {})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    for spec in SPECS:
        write_scene(spec, out)
    return out


def _table(prefix: str) -> pa.Table:
    hrefs = {s.scene_id: {"B04": f"{prefix}{s.scene_id}_B04.tif"} for s in SPECS}
    return record_table(SPECS, hrefs)


def _aoi() -> shapely.Polygon:
    c = scene_footprint(SPECS[0]).centroid
    return shapely.box(c.x - 0.001, c.y - 0.001, c.x + 0.001, c.y + 0.001)


def _hrefs(collection: Any) -> list[str]:
    column = collection.to_table(columns=["B04_metadata"]).column(0)
    return sorted(cell["href"] for cell in column.to_pylist())


def _expected(folder: Path) -> np.ndarray:
    local = rasteret.build_from_table(_table(f"{folder}/"), enrich_cog=True, progress=False)
    return local.get_numpy(_aoi(), "B04")


def test_cloud_config_rewrites_are_stored(folder: Path) -> None:
    rewrites = {FAKE: f"{folder}/"}
    built = rasteret.build_from_table(
        _table(FAKE),
        enrich_cog=True,
        progress=False,
        cloud_config={"url_rewrite_patterns": rewrites},
    )
    assert _hrefs(built) == [f"{folder}/{s.scene_id}_B04.tif" for s in SPECS]
    # read with no cloud settings, and with the same rewrites again (applied once)
    np.testing.assert_array_equal(built.get_numpy(_aoi(), "B04", retries=0), _expected(folder))
    again = built.get_numpy(
        _aoi(), "B04", retries=0, cloud_config=CloudConfig(url_rewrite_patterns=rewrites)
    )
    np.testing.assert_array_equal(again, _expected(folder))


def test_a_data_sources_rewrites_are_stored(folder: Path, tmp_path: Path) -> None:
    source_file = tmp_path / "records.parquet"
    import pyarrow.parquet as pq

    pq.write_table(_table(FAKE), source_file)
    catalog.register_local(
        "rewritten",
        str(source_file),
        bands={"B04": "B04"},
        cloud={"url_rewrite_patterns": {FAKE: f"{folder}/"}},
    )
    built = rasteret.build_from_table(
        _table(FAKE), data_source="local/rewritten", enrich_cog=True, progress=False
    )
    assert _hrefs(built) == [f"{folder}/{s.scene_id}_B04.tif" for s in SPECS]
    np.testing.assert_array_equal(built.get_numpy(_aoi(), "B04", retries=0), _expected(folder))
    points = built.sample_points([_aoi().centroid], ["B04"])
    assert points.num_rows == 1


def test_url_rewrite_patterns_add_to_the_data_sources_settings() -> None:
    """``url_rewrite_patterns=`` no longer replaces a data source's requester-pays setting."""
    catalog.register(
        {
            "id": "acme/paid",
            "title": "ACME",
            "stac_api": "https://stac.acme.example/v1",
            "collection": "paid",
            "bands": {"B04": "red"},
            "cloud": {"requester_pays": True, "url_rewrite_patterns": {"s3://a/": "s3://b/"}},
        }
    )
    config = _cloud_config(None, "acme/paid", {"https://x/": "s3://x/"})
    assert config is not None
    assert config.requester_pays
    assert config.url_rewrite_patterns == {"s3://a/": "s3://b/", "https://x/": "s3://x/"}
    explicit = _cloud_config({"region": "eu-west-1"}, "acme/paid", None)
    assert explicit == CloudConfig(region="eu-west-1")  # an explicit cloud_config wins whole


def test_an_unregistered_data_source_is_warned_about(folder: Path) -> None:
    catalog.register_local("rewritten", str(folder / "scene-0_B04.tif"), bands={"B04": "B04"})
    with pytest.warns(RasteretWarning, match=r"local/rewriten.*did you mean.*local/rewritten"):
        built = rasteret.build_from_table(
            _table(f"{folder}/"), data_source="local/rewriten", progress=False
        )
    assert built.data_source == "local/rewriten"
