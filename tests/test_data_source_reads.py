"""A collection's ``data_source`` reaches every pixel read: its cloud settings (here
requester-pays) go on the wire for ``get_numpy``, ``sample_points`` (eager and Dask) and the
TorchGeo dataset, and an explicit ``cloud_config=`` overrides them.

The loopback range server stands in for S3 (``AWS_ENDPOINT_URL``) and logs every request's
headers, so the test sees ``x-amz-request-payer`` as the bucket would.
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import shapely

import rasteret
from rasteret import catalog
from rasteret.collection import Collection
from rasteret.io.stores import CloudConfig
from rasteret.testing.scenes import SceneSpec, record_table, scene_footprint, write_scene
from rasteret.testing.servers import RangeHTTPServer

pytestmark = pytest.mark.integration

BUCKET = "payer-bkt"
SOURCE = "local/payer-scenes"
PAYER = "x-amz-request-payer"
NOT_PAYING = CloudConfig(requester_pays=False)
SPEC = SceneSpec(
    "scene-0",
    32633,
    (500_000.0, 4_600_000.0),
    size=256,
    tile=128,
    datetime=dt.datetime(2024, 1, 10, tzinfo=dt.UTC),
)
HttpServer = Callable[..., RangeHTTPServer]


@pytest.fixture
def server(
    tmp_path: Path, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> RangeHTTPServer:
    """The scene under ``s3://payer-bkt/``, served by the range server as the S3 endpoint,
    and a requester-pays catalog source registered for this test only."""
    write_scene(SPEC, tmp_path / BUCKET)
    served = http_server(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", served.url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")  # requester-pays needs signed requests
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(catalog, "_session", {})
    catalog.register(
        {
            "id": SOURCE,
            "title": "requester-pays scenes",
            "geoparquet": f"s3://{BUCKET}/records.parquet",
            "bands": {"B04": "B04", "B08": "B08"},
            "cloud": {"requester_pays": True},
        }
    )
    return served


def _table() -> pa.Table:
    hrefs = {SPEC.scene_id: {b: f"s3://{BUCKET}/{SPEC.scene_id}_{b}.tif" for b in ("B04", "B08")}}
    return record_table([SPEC], hrefs)


@pytest.fixture
def paying(server: RangeHTTPServer) -> Collection:
    """A collection built with the requester-pays ``data_source``."""
    return rasteret.build_from_table(_table(), data_source=SOURCE, enrich_cog=True, progress=False)


@pytest.fixture
def plain(server: RangeHTTPServer) -> Collection:
    """The same records without a data source."""
    return rasteret.build_from_table(_table(), enrich_cog=True, progress=False)


def _payer_headers(
    server: RangeHTTPServer, read: Callable[..., object], *args: Any, **kwargs: Any
) -> set[str | None]:
    """The ``x-amz-request-payer`` values of the GETs ``read(*args, **kwargs)`` sent (at
    least one)."""
    server.clear_log()
    read(*args, **kwargs)
    gets = [r for r in server.requests if r.method == "GET"]
    assert gets, "expected the read to reach the server"
    return {r.header(PAYER) for r in gets}


def _centre() -> shapely.Point:
    return scene_footprint(SPEC).centroid


def _aoi() -> shapely.Polygon:
    c = _centre()
    return shapely.box(c.x - 0.002, c.y - 0.002, c.x + 0.002, c.y + 0.002)


# -- chips -------------------------------------------------------------------------------


def test_get_numpy_pays_for_the_collection_source(
    server: RangeHTTPServer, paying: Collection
) -> None:
    assert paying.data_source == SOURCE
    read = paying.get_numpy
    assert _payer_headers(server, read, _aoi(), ["B04"], cache_mb=0) == {"requester"}
    explicit = {"cache_mb": 0, "cloud_config": NOT_PAYING}
    assert _payer_headers(server, read, _aoi(), ["B04"], **explicit) == {None}


# -- points ------------------------------------------------------------------------------


def test_sample_points_pays_for_the_collection_source(
    server: RangeHTTPServer, paying: Collection
) -> None:
    read = paying.sample_points
    assert _payer_headers(server, read, [_centre()], ["B08"], cache_mb=0) == {"requester"}


def test_sample_points_data_source_argument(
    server: RangeHTTPServer, plain: Collection, paying: Collection
) -> None:
    given = {"cache_mb": 0, "data_source": SOURCE}
    assert _payer_headers(server, plain.sample_points, [_centre()], ["B08"], **given) == {
        "requester"
    }
    off = {"cache_mb": 0, "data_source": ""}  # "" turns the collection's source off
    assert _payer_headers(server, paying.sample_points, [_centre()], ["B08"], **off) == {None}


def test_sample_points_explicit_cloud_config_wins(
    server: RangeHTTPServer, paying: Collection
) -> None:
    both = {"cache_mb": 0, "data_source": SOURCE, "cloud_config": NOT_PAYING}
    assert _payer_headers(server, paying.sample_points, [_centre()], ["B08"], **both) == {None}


def _dask_points() -> Any:
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    c = _centre()
    frame = pd.DataFrame({"site": ["a", "b"], "lon": [c.x, c.x + 0.001], "lat": [c.y, c.y]})
    return dd.from_pandas(frame, npartitions=2)


@pytest.mark.parametrize(("cloud_config", "expected"), [(None, "requester"), (NOT_PAYING, None)])
def test_dask_points_carry_the_resolved_cloud_config(
    server: RangeHTTPServer, paying: Collection, cloud_config: Any, expected: str | None
) -> None:
    dask = pytest.importorskip("dask")
    lazy = paying.sample_points(
        _dask_points(), ["B08"], geometry_crs=4326, cache_mb=0, cloud_config=cloud_config
    )
    # the graph holds the settings as a value: pickled (as for a cluster) and computed
    # after the source is gone from the catalog, the reads still pay
    catalog.unregister(SOURCE)
    shipped = pickle.loads(pickle.dumps(lazy))
    assert _payer_headers(server, dask.compute, shipped, scheduler="sync") == {expected}


# -- TorchGeo ----------------------------------------------------------------------------


def _one_sample(dataset: Any) -> dict[str, Any]:
    from support.samplers import random_sampler

    query = next(iter(random_sampler(dataset, size=16, length=1, seed=0)))
    sample: dict[str, Any] = dataset[query]
    return sample


def test_torchgeo_dataset_pays_for_the_collection_source(
    server: RangeHTTPServer, paying: Collection
) -> None:
    pytest.importorskip("torchgeo.datasets")
    dataset = paying.to_torchgeo_dataset(bands=["B04"], chip_size=16, cache_mb=0)
    assert _payer_headers(server, _one_sample, dataset) == {"requester"}
    catalog.unregister(SOURCE)  # what a DataLoader worker gets: the settings, pickled
    shipped = pickle.loads(pickle.dumps(dataset))
    assert _payer_headers(server, _one_sample, shipped) == {"requester"}


def test_torchgeo_dataset_takes_data_source_and_progress(
    server: RangeHTTPServer, plain: Collection, paying: Collection
) -> None:
    pytest.importorskip("torchgeo.datasets")
    dataset = plain.to_torchgeo_dataset(
        bands=["B04"], chip_size=16, cache_mb=0, data_source=SOURCE, progress=True
    )
    assert _payer_headers(server, _one_sample, dataset) == {"requester"}
    explicit = paying.to_torchgeo_dataset(
        bands=["B04"], chip_size=16, cache_mb=0, cloud_config=NOT_PAYING, progress=False
    )
    assert _payer_headers(server, _one_sample, explicit) == {None}
