"""TorchGeo queries read in two waves equal the one-wave read of every record.

Compositing is "first", so records after those that fill every pixel of a frame cannot
change it: ``read_jobs`` reads, per frame, the records up to the first that (with those
before it) covers the query's grid, and the rest only for frames left with empty pixels.
The general path (``waves=False``) reads every record; both must give the same arrays, and
the requests show which records the fast path left out. Torch-free: ``read_jobs`` is what
the dataset calls.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rasterio.enums import Resampling

import rasteret
from rasteret._collection_reads import records_for
from rasteret.outputs._torchgeo_merge import SourceGrids, query_grid, read_jobs
from rasteret.read.cache import clear_tile_cache
from rasteret.read.options import ReadOptions
from rasteret.testing.scenes import SceneSpec, record_table, write_scene
from rasteret.testing.stores import CountingReader, URLReader

BANDS = ("B04", "B08")
CRS = "EPSG:32633"
X0, Y0 = 500_000.0, 4_600_000.0
DAYS = (5, 10, 15)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Three dates of one 256 x 256 scene (nodata in its top-left corner), and a fourth
    record covering only the scene's right half, dated first."""
    root = tmp_path_factory.mktemp("waves")
    specs = [
        SceneSpec(f"s{day:02d}", epsg=32633, origin=(X0, Y0), size=256, tile=128,
                  datetime=dt.datetime(2024, 1, day, tzinfo=dt.UTC), seed=day, overviews=(2,))
        for day in DAYS
    ]  # fmt: skip
    specs.append(
        SceneSpec("half", epsg=32633, origin=(X0 + 1280, Y0), size=128, tile=128,
                  datetime=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), seed=1, overviews=(2,))
    )  # fmt: skip
    hrefs = {
        s.scene_id: {b: str(p) for b, p in write_scene(s, root / "scenes", BANDS).items()}
        for s in specs
    }
    collection = rasteret.build_from_table(
        record_table(specs, hrefs), name="waves", workspace_dir=root / "ws", enrich_cog=True
    )
    return records_for(collection, BANDS)


def _read(records: list[Any], jobs: list[Any], *, waves: bool) -> tuple[list[Any], set[str]]:
    """The arrays of ``jobs`` and the scenes whose files were requested."""
    clear_tile_cache()
    counting = CountingReader(URLReader())
    options = ReadOptions(backend=counting, cache_mb=0)
    source = SourceGrids(records)
    arrays = read_jobs(
        records, BANDS, jobs, Resampling.nearest, options,
        lambda ri, band: source(ri, band, CRS), waves=waves,
    )  # fmt: skip
    return arrays, {Path(path).name.rsplit("_", 1)[0] for path in counting.per_path()}


def _position(records: list[Any], scene: str) -> int:
    return next(i for i, r in enumerate(records) if r.id == scene)


def _grid(x0: float, y0: float, size: float, res: float = 10.0) -> Any:
    return query_grid(CRS, (x0, y0 - size, x0 + size, y0), (res, res))


def _check(records: list[Any], jobs: list[Any]) -> set[str]:
    """Two waves equal one; returns the scenes the two waves read."""
    fast, read = _read(records, jobs, waves=True)
    general, _ = _read(records, jobs, waves=False)
    assert len(fast) == len(general)
    for a, b in zip(fast, general, strict=True):
        np.testing.assert_array_equal(a, b, strict=True)
    return read


def test_a_frame_filled_by_its_first_record_reads_no_other(records: list[Any]) -> None:
    dates = [_position(records, f"s{d:02d}") for d in DAYS]
    interior = _grid(X0 + 800, Y0 - 660, 640)  # no nodata in any date
    assert _check(records, [([dates], interior)]) == {"s05"}
    assert _check(records, [([dates[::-1]], interior)]) == {"s15"}


def test_empty_pixels_left_by_the_first_records_bring_in_the_rest(records: list[Any]) -> None:
    dates = [_position(records, f"s{d:02d}") for d in DAYS]
    corner = _grid(X0, Y0, 640)  # the nodata corner, the same in every date
    assert _check(records, [([dates], corner)]) == {"s05", "s10", "s15"}


def test_records_are_read_until_their_footprints_cover_the_grid(records: list[Any]) -> None:
    half = _position(records, "half")
    dates = [_position(records, f"s{d:02d}") for d in DAYS]
    across = _grid(X0 + 640, Y0 - 320, 1280)  # half of it inside the right-half record
    assert _check(records, [([[half, *dates]], across)]) == {"half", "s05"}
    beyond = _grid(X0 + 2000, Y0 - 320, 1280)  # past the scenes' right edge: never covered
    assert _check(records, [([[half, *dates]], beyond)]) == {"half", "s05", "s10", "s15"}


def test_each_frame_and_query_of_a_batch_decides_alone(records: list[Any]) -> None:
    dates = [_position(records, f"s{d:02d}") for d in DAYS]
    interior = _grid(X0 + 800, Y0 - 660, 640)
    corner = _grid(X0, Y0, 640, res=20.0)
    series = [[d] for d in dates]  # time series: one record per frame, each read
    jobs = [([dates], interior), ([dates[1:]], corner), (series, interior)]
    assert _check(records, jobs) == {"s05", "s10", "s15"}
    only_first = [([dates], interior), ([dates[1:]], interior)]
    assert _check(records, only_first) == {"s05", "s10"}
