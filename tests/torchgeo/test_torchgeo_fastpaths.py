"""Fast paths of the TorchGeo dataset equal the general paths they shortcut.

* index look-ups through NumPy arrays (:class:`IndexArrays`) give the rows of the pandas /
  shapely selection TorchGeo itself makes;
* whole-pixel windows (``_paste_part``) give the part rasterio's ``from_bounds`` gives;
* the cached dataset bounds follow the index when it changes;
* the dataset's decoded-tile cache (5 % of RAM by default) serves samples equal to uncached
  reads.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torchgeo.datasets")  # the ``torchgeo`` extra

import geopandas
import pandas as pd
import shapely
from rasterio.enums import Resampling
from torchgeo_support import assert_same_sample, build, local_hrefs, spec, write_scenes

import rasteret
from rasteret._collection_torchgeo import DATASET_CACHE_SHARE, dataset_cache_mb
from rasteret.outputs import _torchgeo_index as tg_index
from rasteret.outputs import _torchgeo_merge as merge
from rasteret.outputs._torchgeo_window import SourceGrid
from rasteret.read.cache import clear_tile_cache, get_tile_cache, memory_share_mb, usable_memory
from rasteret.read.grid import Grid
from support.samplers import random_sampler


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> rasteret.Collection:
    root = tmp_path_factory.mktemp("tg_fast")
    specs = [spec(5), spec(10, origin=(501_280.0, 4_598_720.0)), spec(10, hour=6), spec(15)]
    return build(specs, local_hrefs(write_scenes(root / "scenes", specs)), root / "ws")


def test_index_arrays_select_the_rows_torchgeo_selects(scenes: rasteret.Collection) -> None:
    ds = scenes.to_torchgeo_dataset(bands=["B04"])
    frame = ds.index
    arrays = tg_index.IndexArrays(frame)
    assert arrays.boxes_only
    rng = random.Random(4)
    x0, y0, x1, y1 = frame.total_bounds
    edges = sorted({v for box in frame.geometry for v in box.bounds})
    days = [pd.Timestamp(2024, 1, d, h) for d in (4, 5, 10, 15, 16) for h in (0, 6)]
    second = pd.Timedelta(seconds=1)
    checked = 0
    for _ in range(400):
        # bounds on the footprints' own edges half of the time: touching counts
        xs = sorted(rng.choice(edges) if rng.random() < 0.5 else rng.uniform(x0 - 500, x1 + 500)
                    for _ in range(2))  # fmt: skip
        ys = sorted(rng.choice(edges) if rng.random() < 0.5 else rng.uniform(y0 - 500, y1 + 500)
                    for _ in range(2))  # fmt: skip
        start = rng.choice(days) + rng.choice([-second, 0 * second, second / 2])
        stop = start + rng.choice([0 * second, second, pd.Timedelta(days=6)])
        closed = rng.choice(["right", "both", "left", "neither"])
        interval = pd.Interval(start, stop, closed=closed)
        step = rng.choice([1, 1, 2])
        bounds = (xs[0], ys[0], xs[1], ys[1])
        fast = arrays.hits(interval, step, bounds)
        expected = tg_index.hits(frame, interval, step, bounds)
        if fast is None:  # an empty box or interval: left to shapely and pandas
            assert xs[0] == xs[1] or ys[0] == ys[1] or interval.is_empty
            continue
        assert fast == expected, (interval, step, bounds)
        checked += 1
    assert checked > 250


def test_index_arrays_stand_aside_for_other_footprints_and_times() -> None:
    times = pd.IntervalIndex.from_tuples(
        [(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02"))], closed="both"
    )
    frame = geopandas.GeoDataFrame(
        {"id": ["a"], "record": [0]},
        index=times,
        geometry=[shapely.Point(0, 0).buffer(10)],  # not a box
        crs="EPSG:32633",
    )
    arrays = tg_index.IndexArrays(frame)
    assert not arrays.boxes_only
    assert arrays.hits(pd.Interval(pd.Timestamp.min, pd.Timestamp.max), 1, (0, 0, 1, 1)) is None


def test_whole_pixel_windows_equal_rasterio_windows() -> None:
    """``plan_part`` with the paste shortcut equals ``plan_part`` through ``from_bounds``."""
    rng = random.Random(7)
    meta = _Meta()
    compared = pasted = 0
    for _ in range(600):
        res = rng.choice([10.0, 20.0, 0.1, 1 / 3])
        src = SourceGrid(
            (res, 0.0, 500_000.0 + rng.randint(-9, 9) * res * rng.choice([1, 0.5]), 0.0, -res,
             4_600_000.0), rng.randint(50, 300), rng.randint(50, 300), False,
        )  # fmt: skip
        out_res = res * rng.choice([1.0, 1.0, 1.0, 0.5, 2.0])
        shift = rng.choice([0.0, 0.0, 0.5, 1e-7, 0.25])
        x = src.transform[2] + (rng.randint(-40, 200) + shift) * res
        y = src.transform[5] - (rng.randint(-40, 200) + shift) * res
        width, height = rng.randint(1, 120), rng.randint(1, 120)
        grid = Grid("EPSG:32633", (out_res, 0.0, x, 0.0, -out_res, y), width, height)
        fast = merge.plan_part(meta, src, grid, Resampling.bilinear)  # type: ignore[arg-type]
        general = _general_part(meta, src, grid)
        assert fast == general, (src, grid)
        compared += 1
        pasted += fast is not None and fast.read is None
    assert compared == 600
    assert pasted > 100


def _general_part(meta: Any, src: SourceGrid, grid: Grid) -> Any:
    original = merge._paste_part
    merge._paste_part = lambda *args: None  # type: ignore[assignment]
    try:
        return merge.plan_part(meta, src, grid, Resampling.bilinear)
    finally:
        merge._paste_part = original


class _Meta:
    """The BandMetadata fields ``plan_part`` reads on a native (unwarped) file."""

    crs = "EPSG:32633"
    epsg = 32633
    overviews: tuple[Any, ...] = ()
    levels: tuple[Any, ...] = (None,)  # full resolution only; a file's grid is not read here


def test_cached_bounds_follow_the_index(scenes: rasteret.Collection) -> None:
    ds = scenes.to_torchgeo_dataset(bands=["B04"])
    first = ds.bounds
    assert ds.bounds is first  # computed once
    x, y, _t = first
    everything = pd.Interval(pd.Timestamp.min, pd.Timestamp.max)
    assert ds._hits(ds.index, everything, 1, (x.start, y.start, x.stop, y.stop)) == [0, 1, 2, 3]
    ds.crs = "EPSG:4326"  # TorchGeo reprojects the index in place: new bounds, new boxes
    x2, y2, _t2 = ds.bounds
    assert x2.start != x.start
    assert x2.stop < 180
    corner = (x2.start, y2.start, x2.start + 1e-4, y2.start + 1e-4)
    assert ds._hits(ds.index, everything, 1, corner) == tg_index.hits(
        ds.index, everything, 1, corner
    )


def test_dataset_cache_default_and_cached_samples_equal_uncached(
    scenes: rasteret.Collection,
) -> None:
    total = usable_memory()
    assert total is None or total > 0
    assert dataset_cache_mb() == memory_share_mb(DATASET_CACHE_SHARE, floor_mb=256.0)
    cached = scenes.to_torchgeo_dataset(bands=["B04", "B08"])
    assert cached.options.cache_mb == dataset_cache_mb()
    plain = scenes.to_torchgeo_dataset(bands=["B04", "B08"], cache_mb=0)
    assert plain.options.cache_mb == 0
    queries = list(random_sampler(cached, size=48, length=12, seed=5))
    clear_tile_cache()
    expected = [plain[q] for q in queries]
    cache = get_tile_cache(cached.options.cache_mb)
    first = cached.__getitems__(queries)
    second = cached.__getitems__(queries)  # every tile from the cache now
    assert cache.hits > 0
    for a, b, c in zip(expected, first, second, strict=True):
        assert_same_sample(b, a)
        assert_same_sample(c, a)


def test_memory_share_has_a_floor() -> None:
    assert memory_share_mb(0.0, floor_mb=12.5) == 12.5
    total = usable_memory()
    if total is not None:
        assert memory_share_mb(1.0, floor_mb=0.0) == pytest.approx(total / 1e6, rel=1e-3)


def test_queries_through_the_shortcuts_match_a_fresh_dataset(
    scenes: rasteret.Collection, tmp_path: Path
) -> None:
    """Index and bounds caches do not leak between datasets or across pickling."""
    import pickle

    ds = scenes.to_torchgeo_dataset(bands=["B04"], cache_mb=0)
    queries = list(random_sampler(ds, size=32, length=6, seed=8))
    before = [ds[q] for q in queries]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._arrays == {}
    for q, sample in zip(queries, before, strict=True):
        assert_same_sample(clone[q], sample)
