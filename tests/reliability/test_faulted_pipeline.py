"""A time series read and a build under a fixed seed of faults give exactly the clean result.

The scenes (16 dates x 2 bands of real COGs) are served by the loopback range server, both as
plain HTTP and as an S3 endpoint. Faults come from the server (on the wire, through obstore)
or from :class:`~rasteret.testing.faults.FaultyReader` (a wrapped backend). Reads fetch every
tile as its own request (``max_coalesced_size=1``, tile cache off), so a read is ~300
requests and several percent of them fail.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import shapely

import rasteret
from rasteret._collection_reads import records_for
from rasteret.errors import FetchError, RasteretWarning
from rasteret.ingest.schema import metadata_column
from rasteret.io.stores import CloudConfig, clear_store_cache
from rasteret.read import ChipSet, ReadOptions, read_chips
from rasteret.testing.faults import FaultPlan, FaultyReader
from rasteret.testing.oracle import rasterio_aoi_read
from rasteret.testing.scenes import SceneSpec, record_table, write_scene
from rasteret.testing.servers import RangeHTTPServer
from rasteret.testing.stores import URLReader

pytestmark = pytest.mark.integration

BANDS = ("B04", "B08")
EPSG = 32633
ORIGIN = (500_000.0, 4_600_000.0)
SPECS = [
    SceneSpec(
        f"scene-{i:03d}",
        EPSG,
        ORIGIN,
        size=384,
        tile=128,
        seed=i,
        overviews=(2,),
        datetime=dt.datetime(2024, 1 + i % 12, 1 + i, tzinfo=dt.UTC),
    )
    for i in range(16)
]
AOI_UTM = shapely.box(ORIGIN[0] + 200, ORIGIN[1] - 3600, ORIGIN[0] + 3500, ORIGIN[1] - 300)
READ = {"cache_mb": 0, "max_coalesced_size": 1}
SEED = 20240601


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("faulted") / "bkt"
    return {spec.scene_id: write_scene(spec, root, bands=BANDS) for spec in SPECS}


@pytest.fixture(scope="module")
def server(scenes: dict[str, dict[str, Path]]) -> Iterator[RangeHTTPServer]:
    root = next(iter(scenes.values()))["B04"].parent.parent
    with RangeHTTPServer(root) as srv:
        yield srv


@pytest.fixture
def live(server: RangeHTTPServer) -> Iterator[RangeHTTPServer]:
    """The module's server, healed after each test."""
    yield server
    server.inject_faults(None)


@pytest.fixture(scope="module")
def table(server: RangeHTTPServer) -> pa.Table:
    hrefs = {
        s.scene_id: {b: server.url_for(f"bkt/{s.scene_id}_{b}.tif") for b in BANDS} for s in SPECS
    }
    return record_table(SPECS, hrefs)


@pytest.fixture(scope="module")
def clean(table: pa.Table) -> rasteret.Collection:
    return rasteret.build_from_table(table, enrich_cog=True)


@pytest.fixture(scope="module")
def clean_read(clean: rasteret.Collection) -> tuple[np.ndarray, Any]:
    return clean.get_numpy(AOI_UTM, list(BANDS), geometry_crs=EPSG, return_index=True, **READ)


def metadata_bytes(collection: rasteret.Collection) -> bytes:
    columns = [metadata_column(b) for b in BANDS]
    table = collection.to_table(columns=["id", *columns]).sort_by("id")
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def assert_same_read(result: tuple[np.ndarray, Any], reference: tuple[np.ndarray, Any]) -> None:
    (array, index), (ref_array, ref_index) = result, reference
    assert array.dtype == ref_array.dtype
    np.testing.assert_array_equal(array, ref_array)
    assert index.record_id.tolist() == ref_index.record_id.tolist()


def test_clean_read_matches_rasterio(
    clean_read: tuple[np.ndarray, Any], scenes: dict[str, dict[str, Path]]
) -> None:
    array, index = clean_read
    assert array.shape[:2] == (len(SPECS), len(BANDS))
    for n, record_id in enumerate(index.record_id):
        for c, band in enumerate(BANDS):
            expected = rasterio_aoi_read(scenes[record_id][band], AOI_UTM, f"EPSG:{EPSG}")
            np.testing.assert_array_equal(array[n, c], expected)


@pytest.mark.parametrize("transport", ["http", "s3"])
def test_time_series_read_under_wire_faults(
    transport: str,
    clean: rasteret.Collection,
    clean_read: tuple[np.ndarray, Any],
    live: RangeHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cloud = None
    if transport == "s3":  # the same files, addressed as s3://bkt/... at the server
        monkeypatch.setenv("AWS_ENDPOINT_URL", live.url)
        monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
        monkeypatch.setenv("AWS_SKIP_SIGNATURE", "true")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        clear_store_cache()
        cloud = CloudConfig(url_rewrite_patterns={f"{live.url}/": "s3://"})
    injector = live.inject_faults(FaultPlan(rate=0.06, seed=SEED, stall_seconds=0.2))
    assert injector is not None
    result = clean.get_numpy(
        AOI_UTM, list(BANDS), geometry_crs=EPSG, return_index=True, cloud_config=cloud, **READ
    )
    assert_same_read(result, clean_read)
    assert injector.attempts > 250
    assert injector.count() >= 8
    assert len(injector.kinds()) >= 5


def test_time_series_read_under_wrapper_faults(
    clean: rasteret.Collection, clean_read: tuple[np.ndarray, Any]
) -> None:
    reader = FaultyReader(URLReader(), FaultPlan(rate=0.06, seed=SEED, stall_seconds=0.2))
    result = clean.get_numpy(
        AOI_UTM, list(BANDS), geometry_crs=EPSG, return_index=True, backend=reader, **READ
    )
    assert_same_read(result, clean_read)
    assert reader.injector.attempts > 250
    assert reader.injector.count() >= 8
    assert len(reader.injector.kinds()) >= 5


def test_read_with_retries_exhausted_raises_naming_url_range_and_cause(
    clean: rasteret.Collection, live: RangeHTTPServer
) -> None:
    live.inject_faults(FaultPlan(rate=0.0, first=100, kinds=("slowdown",), match=("003_B08",)))
    with pytest.raises(FetchError) as info:
        clean.get_numpy(AOI_UTM, list(BANDS), geometry_crs=EPSG, **READ)
    message = str(info.value)
    assert live.url_for("bkt/scene-003_B08.tif") in message
    assert "bytes [" in message
    assert "after 6 attempts" in message
    assert "503 Service Unavailable" in message


def test_build_under_wire_faults_is_byte_identical(
    table: pa.Table, clean: rasteret.Collection, live: RangeHTTPServer
) -> None:
    injector = live.inject_faults(FaultPlan(rate=0.2, seed=SEED, stall_seconds=0.2))
    assert injector is not None
    faulted = rasteret.build_from_table(table, enrich_cog=True)
    assert faulted.enrichment_errors == []
    assert metadata_bytes(faulted) == metadata_bytes(clean)
    assert injector.count() >= 4


def test_build_under_wrapper_faults_is_byte_identical(
    table: pa.Table, clean: rasteret.Collection
) -> None:
    reader = FaultyReader(URLReader(), FaultPlan(rate=0.2, seed=SEED, stall_seconds=0.2))
    faulted = rasteret.build_from_table(table, enrich_cog=True, backend=reader)
    assert faulted.enrichment_errors == []
    assert metadata_bytes(faulted) == metadata_bytes(clean)
    assert reader.injector.count() >= 4


def test_build_lists_assets_that_never_answer_and_keeps_the_rest_identical(
    table: pa.Table, clean: rasteret.Collection, live: RangeHTTPServer
) -> None:
    live.inject_faults(FaultPlan(rate=0.0, first=100, kinds=("reset",), match=("005_B04",)))
    with pytest.warns(RasteretWarning, match="1 of 32 COG headers could not be read"):
        faulted = rasteret.build_from_table(table, enrich_cog=True)
    (failure,) = faulted.enrichment_errors
    assert (failure.record_id, failure.band) == ("scene-005", "B04")
    assert failure.url == live.url_for("bkt/scene-005_B04.tif")
    assert "bytes [0, 65536)" in failure.error
    assert "after 6 attempts" in failure.error
    got = faulted.to_table().sort_by("id")
    want = clean.to_table().sort_by("id")
    column = metadata_column("B04")
    assert got.column(column).to_pylist()[5] is None
    for name in (metadata_column("B08"), "id", "datetime", "geometry"):
        assert got.column(name).equals(want.column(name))
    others = [i for i in range(len(SPECS)) if i != 5]
    assert got.column(column).take(others).equals(want.column(column).take(others))


# -- read options: retries, request timeout, partial results ----------------------------------


def read(collection: rasteret.Collection, **options: Any) -> ChipSet:
    records = records_for(collection, list(BANDS))
    opts = ReadOptions(cache_mb=0, max_coalesced_size=1, **options)
    return read_chips(records, [AOI_UTM], f"EPSG:{EPSG}", list(BANDS), opts)


def test_read_without_retries_raises_the_first_fault(clean: rasteret.Collection) -> None:
    reader = FaultyReader(URLReader(), FaultPlan(rate=0.06, seed=SEED, stall_seconds=0.0))
    with pytest.raises(FetchError) as info:
        read(clean, retries=0, backend=reader)
    message = str(info.value)
    assert "on the first attempt" in message
    assert "/bkt/scene-" in message
    assert "bytes [" in message
    assert any(f.key.split("|")[0] in message for f in reader.faults)


def test_read_stalls_are_cut_off_by_request_timeout(
    clean: rasteret.Collection, clean_read: tuple[np.ndarray, Any], live: RangeHTTPServer
) -> None:
    injector = live.inject_faults(
        FaultPlan(rate=0.05, seed=SEED, kinds=("stall",), stall_seconds=30)
    )
    assert injector is not None
    start = time.monotonic()
    chips = read(clean, request_timeout=0.3)
    assert time.monotonic() - start < 20
    assert injector.count("stall") >= 5
    np.testing.assert_array_equal(np.stack([c.data for c in chips.chips]), clean_read[0])


def test_read_on_error_skip_returns_the_rest_and_lists_what_failed(
    clean: rasteret.Collection, clean_read: tuple[np.ndarray, Any], live: RangeHTTPServer
) -> None:
    live.inject_faults(FaultPlan(rate=0.0, first=100, kinds=("server_error",), match=("003_B08",)))
    with pytest.warns(UserWarning, match="1 \\(record, band\\) pairs could not be fetched"):
        chips = read(clean, retries=0, on_error="skip")
    (failed,) = chips.failed
    assert (failed.record_id, failed.band) == ("scene-003", "B08")
    assert "FetchError" in failed.error
    assert "500" in failed.error
    ids = [c.record_id for c in chips.chips]
    assert ids == [i for i in clean_read[1].record_id.tolist() if i != "scene-003"]
    keep = [n for n, i in enumerate(clean_read[1].record_id.tolist()) if i != "scene-003"]
    np.testing.assert_array_equal(np.stack([c.data for c in chips.chips]), clean_read[0][keep])
    with pytest.raises(FetchError, match="scene-003_B08"):
        read(clean, retries=0)  # the default is to raise
