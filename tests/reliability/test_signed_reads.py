"""Pre-signed URLs (S3 ``X-Amz-Signature``, Azure SAS ``sig``) read within the session: the
collection held in memory keeps each href's signature, so pixel and point reads send it;
what is stored (a named build, export) and every message and warning go without it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import shapely

import rasteret
from rasteret.errors import RasteretError, RasteretWarning
from rasteret.read.cache import clear_tile_cache
from rasteret.testing.scenes import monthly_series, record_table, scene_footprint, write_scene
from rasteret.testing.servers import RangeHTTPServer

SIGNATURE = "c0ffee00deadbeef1234"
QUERY = f"X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Signature={SIGNATURE}"
SPECS = monthly_series("signed", 2, size=256)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RangeHTTPServer]:
    for spec in SPECS:
        write_scene(spec, tmp_path / "files")
    with RangeHTTPServer(tmp_path / "files") as running:
        yield running


def _table(server: RangeHTTPServer) -> object:
    hrefs = {
        s.scene_id: {"B04": f"{server.url_for(f'{s.scene_id}_B04.tif')}?{QUERY}"} for s in SPECS
    }
    return record_table(SPECS, hrefs)


def _aoi() -> shapely.Polygon:
    c = scene_footprint(SPECS[0]).centroid
    return shapely.box(c.x - 0.002, c.y - 0.002, c.x + 0.002, c.y + 0.002)


def _pixel_requests(server: RangeHTTPServer) -> list[str]:
    return [r.query for r in server.requests if r.method == "GET"]


def test_reads_in_the_session_send_the_signature(server: RangeHTTPServer) -> None:
    collection = rasteret.build_from_table(_table(server), enrich_cog=True, progress=False)
    clear_tile_cache()
    server.clear_log()
    chips = collection.get_numpy(_aoi(), "B04", cache_mb=0)
    assert chips.shape[0] >= 1
    queries = _pixel_requests(server)
    assert queries
    assert all(q == QUERY for q in queries)

    server.clear_log()
    points = collection.sample_points([_aoi().centroid], "B04", cache_mb=0)
    assert points.num_rows >= 1
    assert all(q == QUERY for q in _pixel_requests(server))


def test_what_is_stored_has_no_signature(server: RangeHTTPServer, tmp_path: Path) -> None:
    collection = rasteret.build_from_table(
        _table(server), name="signed", workspace_dir=tmp_path / "ws", enrich_cog=True
    )
    stored = list((tmp_path / "ws").rglob("*.parquet"))
    assert stored
    for path in stored:
        assert SIGNATURE not in str(pq.read_table(path).to_pylist())
    # a stored collection's reads go unsigned: the signature was never written
    server.clear_log()
    collection.get_numpy(_aoi(), "B04", cache_mb=0)
    queries = _pixel_requests(server)
    assert queries
    assert all(SIGNATURE not in q for q in queries)


def test_errors_and_warnings_about_signed_urls_do_not_show_the_signature(
    server: RangeHTTPServer,
) -> None:
    collection = rasteret.build_from_table(_table(server), enrich_cog=True, progress=False)
    clear_tile_cache()
    files = server.root_dir
    shutil.copy(files / "signed-1_B04.tif", files / "signed-0_B04.tif")  # stale index
    with pytest.raises(RasteretError) as caught:
        collection.get_numpy(_aoi(), "B04", cache_mb=0)
    assert "signed-0_B04.tif" in str(caught.value)
    assert SIGNATURE not in str(caught.value)
    with pytest.warns(RasteretWarning) as warned:
        collection.get_numpy(_aoi(), "B04", cache_mb=0, on_error="skip")
    assert any("signed-0_B04.tif" in str(w.message) for w in warned)
    assert all(SIGNATURE not in str(w.message) for w in warned)


def test_an_export_of_a_signed_collection_has_no_signature(
    server: RangeHTTPServer, tmp_path: Path
) -> None:
    collection = rasteret.build_from_table(_table(server), enrich_cog=True, progress=False)
    folder = collection.export(tmp_path / "exported")
    files = list(Path(folder).rglob("*"))
    assert any(f.suffix == ".parquet" for f in files)
    for file in files:
        if file.is_file():
            assert SIGNATURE not in file.read_bytes().decode("latin-1"), file
    assert SIGNATURE not in str(rasteret.load(folder).to_table().to_pylist())
