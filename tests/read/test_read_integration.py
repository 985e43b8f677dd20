"""Reads over real loopback servers: an HTTP range server and moto's S3 (standard AWS env)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import shapely
from read_support import record, write_cog

from rasteret.read import ReadOptions, read_chips
from rasteret.read.cache import clear_tile_cache
from rasteret.testing.servers import MotoS3Server, RangeHTTPServer

pytestmark = pytest.mark.integration

X0, Y0 = 500_000.0, 4_600_000.0
AOIS = [
    shapely.box(X0 + 1000, Y0 - 3000, X0 + 4000, Y0 - 500),
    shapely.box(X0 - 500, Y0 - 800, X0 + 700, Y0 + 300),  # over the corner
    shapely.Polygon([(X0 + 2000, Y0 - 200), (X0 + 5500, Y0 - 1500), (X0 + 2500, Y0 - 3900)]),
]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("served")
    write_cog(d / "a.tif", count=2, size=(600, 400), seed=5)
    write_cog(d / "b.tif", count=2, size=(600, 400), seed=6, origin=(X0 + 1000, Y0 - 500))
    return d


def local_chips(scenes: Path) -> list[np.ndarray]:
    recs = [record(n, scenes / f"{n}.tif", 2) for n in ("a", "b")]
    chips = read_chips(recs, AOIS, 32633, ["b2", "b1"], ReadOptions(cache_mb=0))
    return [c.data for c in chips.chips]


def test_reads_over_http_equal_local_reads(
    scenes: Path, http_server: Callable[..., RangeHTTPServer]
) -> None:
    server = http_server(scenes, latency=0.01)
    recs = [record(n, scenes / f"{n}.tif", 2, href=f"{server.url}/{n}.tif") for n in ("a", "b")]
    clear_tile_cache()
    chips = read_chips(recs, AOIS, 32633, ["b2", "b1"])
    assert [(c.record_index, c.aoi_index) for c in chips.chips] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 2),
    ]
    for got, expected in zip(chips.chips, local_chips(scenes), strict=True):
        np.testing.assert_array_equal(got.data, expected)
    first = len(server.requests)
    assert 0 < first <= 4  # each file's tiles coalesce into very few range requests
    again = read_chips(recs, AOIS, 32633, ["b1"])
    assert len(server.requests) == first  # served from the decoded-tile cache
    assert len(again) == len(chips)


def test_reads_from_s3_configured_by_standard_env(scenes: Path, s3_env: MotoS3Server) -> None:
    s3_env.create_bucket("scenes")
    urls = {n: s3_env.put("scenes", f"cogs/{n}.tif", scenes / f"{n}.tif") for n in ("a", "b")}
    recs = [record(n, scenes / f"{n}.tif", 2, href=urls[n]) for n in ("a", "b")]
    chips = read_chips(recs, AOIS, 32633, ["b2", "b1"], ReadOptions(cache_mb=0))
    for got, expected in zip(chips.chips, local_chips(scenes), strict=True):
        np.testing.assert_array_equal(got.data, expected)
