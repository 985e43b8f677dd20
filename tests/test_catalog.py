"""The dataset catalog: shipped descriptors validated offline, user registrations persisted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rasteret import catalog
from rasteret.catalog import BandSource, CloudSettings, DatasetDescriptor
from rasteret.errors import SchemaError
from rasteret.io.urls import parse_location, rewrite_url

SHIPPED = {
    "earthsearch/sentinel-2-l2a",
    "earthsearch/landsat-c2-l2",
    "earthsearch/naip",
    "earthsearch/cop-dem-glo-30",
    "pc/esa-worldcover",
}


@pytest.fixture(autouse=True)
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty user config dir and no process registrations."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(catalog, "_session", {})
    return tmp_path / "config"


def _descriptor(**overrides: object) -> DatasetDescriptor:
    values: dict[str, object] = {
        "id": "acme/survey",
        "title": "ACME survey",
        "stac_api": "https://stac.acme.example/v1",
        "collection": "survey",
        "bands": {"RGB": "image"},
    }
    values.update(overrides)
    return DatasetDescriptor(**values)  # type: ignore[arg-type]


def test_shipped_descriptors_are_valid() -> None:
    shipped = {d.id: d for d in catalog.datasets()}
    assert set(shipped) >= SHIPPED
    for descriptor in shipped.values():
        assert descriptor.title
        assert descriptor.license
        assert descriptor.license_url.startswith("https://")
        assert descriptor.stac_api is not None
        assert descriptor.stac_api.startswith("https://")
        assert descriptor.collection
        assert descriptor.bands
        assert all(isinstance(s, BandSource) and s.asset for s in descriptor.bands.values())
        assert descriptor.example_bbox is not None
        xmin, ymin, xmax, ymax = descriptor.example_bbox
        assert -180 <= xmin < xmax <= 180
        assert -90 <= ymin < ymax <= 90
        assert descriptor.example_date_range is not None
        # every descriptor survives a JSON round trip unchanged
        again = DatasetDescriptor.from_dict(json.loads(json.dumps(descriptor.to_dict())))
        assert again == descriptor
        assert len({again, descriptor}) == 1  # hashable despite its dict fields


def test_shipped_band_maps_and_cloud_settings() -> None:
    s2 = catalog.get_dataset("earthsearch/sentinel-2-l2a")
    assert s2.bands["B04"] == BandSource("red")
    assert s2.bands["B8A"] == BandSource("nir08")
    assert len({s.asset for s in s2.bands.values()}) == len(s2.bands)  # one asset per band
    assert s2.cloud.anonymous is True

    naip = catalog.get_dataset("earthsearch/naip")
    assert naip.band_index_map == {"R": 0, "G": 1, "B": 2, "NIR": 3}
    assert {s.asset for s in naip.bands.values()} == {"image"}
    assert naip.cloud.requester_pays is True

    landsat = catalog.get_dataset("earthsearch/landsat-c2-l2")
    config = landsat.cloud.to_cloud_config()
    assert config.requester_pays is True
    assert config.region == "us-west-2"
    href = "https://landsatlook.usgs.gov/data/collection02/level-2/a_SR_B4.TIF"
    rewritten = rewrite_url(href, config.url_rewrite_patterns)
    assert rewritten == "s3://usgs-landsat/collection02/level-2/a_SR_B4.TIF"
    assert parse_location(rewritten).kind == "s3"

    worldcover = catalog.get_dataset("pc/esa-worldcover")
    pc_href = "https://ai4edataeuwest.blob.core.windows.net/esa-worldcover/v100/2020/map/x_Map.tif"
    target = rewrite_url(pc_href, worldcover.cloud.url_rewrite_patterns)
    assert target == "s3://esa-worldcover/v100/2020/map/x_Map.tif"


def test_lookup_by_id_name_or_collection() -> None:
    assert catalog.get_dataset("sentinel-2-l2a").id == "earthsearch/sentinel-2-l2a"
    assert catalog.get_dataset("esa-worldcover").id == "pc/esa-worldcover"
    with pytest.raises(SchemaError, match="did you mean") as caught:
        catalog.get_dataset("earthsearch/sentinel-2-l2b")
    assert "earthsearch/sentinel-2-l2a" in str(caught.value)
    assert catalog.band_map_for("earthsearch/naip")["NIR"] == BandSource("image", 3)
    assert catalog.band_map_for("") == {}
    assert catalog.band_map_for("my-own-label") == {}


def test_descriptor_validation() -> None:
    with pytest.raises(SchemaError, match="provider/name"):
        _descriptor(id="no-slash")
    with pytest.raises(SchemaError, match="exactly one of stac_api or geoparquet"):
        _descriptor(geoparquet="s3://b/records.parquet")
    with pytest.raises(SchemaError, match="collection id"):
        _descriptor(collection=None)
    with pytest.raises(SchemaError, match="at least one band"):
        _descriptor(bands={})
    with pytest.raises(SchemaError, match="band codes"):
        _descriptor(bands={"bad band": "image"})
    with pytest.raises(SchemaError, match="unknown keys"):
        DatasetDescriptor.from_dict({**_descriptor().to_dict(), "colour": "blue"})
    with pytest.raises(SchemaError, match="href_column"):
        _descriptor(stac_api=None, geoparquet="t.parquet", href_column="url", bands={"A": "b"})


def test_register_for_this_process_and_persisted(user_config: Path) -> None:
    catalog.register(_descriptor())
    assert catalog.get_dataset("acme/survey").title == "ACME survey"
    assert not catalog.user_registry_path().exists()
    with pytest.raises(SchemaError, match="already registered"):
        catalog.register(_descriptor())

    catalog.register(_descriptor(title="ACME v2"), persist=True, overwrite=True)
    path = catalog.user_registry_path()
    assert path == user_config / "rasteret" / "datasets.json"
    stored = json.loads(path.read_text())["datasets"]
    assert [d["id"] for d in stored] == ["acme/survey"]
    assert catalog.get_dataset("acme/survey").title == "ACME v2"

    catalog.unregister("acme/survey")
    with pytest.raises(SchemaError, match="unknown dataset"):
        catalog.get_dataset("acme/survey")
    with pytest.raises(SchemaError, match="registered by the user"):
        catalog.unregister("earthsearch/naip")


def test_register_local_persists_across_processes(tmp_path: Path, user_config: Path) -> None:
    table = tmp_path / "survey.parquet"
    descriptor = catalog.register_local(
        "survey",
        table,
        bands={"R": "url", "N": "url"},
        band_index_map={"R": 0, "N": 3},
        href_column="url",
        column_map={"scene": "id"},
        cloud={"region": "eu-west-1"},
        license="CC-BY-4.0",
    )
    assert descriptor.id == "local/survey"
    assert descriptor.geoparquet == str(table.resolve())
    assert descriptor.cloud == CloudSettings(region="eu-west-1")

    catalog_file = catalog.register_local("field-stac", tmp_path / "catalog.json", bands={"B": "b"})
    assert catalog_file.static_catalog is True
    assert catalog_file.stac_api == str((tmp_path / "catalog.json").resolve())

    code = (
        "from rasteret import catalog; d = catalog.get_dataset('local/survey'); "
        "print(d.band_index_map, d.href_column, dict(d.column_map))"
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(user_config)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "{'R': 0, 'N': 3} url {'scene': 'id'}"


def test_a_corrupt_user_registry_is_reported(user_config: Path) -> None:
    path = catalog.user_registry_path()
    path.parent.mkdir(parents=True)
    path.write_text("[not json")
    with pytest.raises(SchemaError, match=r"datasets\.json"):
        catalog.datasets()


@pytest.mark.network
@pytest.mark.parametrize("dataset_id", sorted(SHIPPED))
def test_live_search_finds_items(dataset_id: str) -> None:
    """Live: the descriptor's search returns items whose band assets exist (needs internet)."""
    from rasteret.stac.build import find_items
    from rasteret.stac.search import StacSearch

    descriptor = catalog.get_dataset(dataset_id)
    assert descriptor.stac_api is not None
    assert descriptor.collection is not None
    search = StacSearch(
        descriptor.stac_api,
        collections=(descriptor.collection,),
        bbox=descriptor.example_bbox,
        date_range=descriptor.example_date_range,
        max_items=2,
    )
    items = find_items(search)
    assets = set(items[0]["assets"])
    assert {s.asset for s in descriptor.bands.values()} <= assets
