"""Mosaics of whole tiles (dense points) against pixels gathered tile by tile.

A record's pixels of one tiling are read from a mosaic when they are dense (at least
:data:`~rasteret.read.points.MOSAIC_MIN_PIXELS_PER_TILE` per tile) and the plan's mosaic
budget has room; otherwise they are grouped by tile. Both must give the same samples for
every layout, window radius, record mix and order of decoding; the parity tests read the
fixture matrix both ways against rasterio (tests/parity/test_points_parity.py).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from read_support import record
from read_support import write_small_tiled as _write

from points_support import ALWAYS, NEVER, gather_by
from rasteret._sync import run
from rasteret.errors import DecodeError
from rasteret.read import ReadOptions
from rasteret.read import points as points_mod
from rasteret.read import sample as sample_mod
from rasteret.read.cache import clear_tile_cache
from rasteret.read.points import PointOptions, plan_points
from rasteret.read.sample import _execute, execute_points_async, read_points
from rasteret.read.select import PointSamples, RawSamples
from rasteret.testing.stores import CountingReader, LatencyReader, URLReader

EPSG = 32633
X0, Y0, RES = 500_000.0, 4_600_000.0, 10.0


@pytest.fixture(scope="module")
def tiffs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mosaic")
    return {
        "single": _write(d / "single.tif", 1, "band", values=9),
        "planar": _write(d / "planar.tif", 3, "band", values=9),
        "chunky": _write(d / "chunky.tif", 3, "pixel", values=9),
        "chunky_other_nodata": _write(d / "chunky2.tif", 3, "pixel", nodata=3, values=9),
    }


def _points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points over the 260 x 300 raster and a margin (some outside), some null."""
    rng = np.random.default_rng(seed)
    xs = rng.uniform(X0 - 300, X0 + 2900, n)
    ys = rng.uniform(Y0 - 3300, Y0 + 300, n)
    xs[::19] = np.nan
    return xs, ys


def _equal(got: PointSamples, want: PointSamples) -> None:
    assert len(got) == len(want) > 0
    for name in ("point_index", "record_index", "row", "col"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    for a, b in zip(got.values + got.valid, want.values + want.valid, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got.neighbourhood or (), want.neighbourhood or (), strict=True):
        np.testing.assert_array_equal(a, b)


def _raw_equal(got: RawSamples, want: RawSamples) -> None:
    for a, b in zip(got.values + got.valid, want.values + want.valid, strict=True):
        np.testing.assert_array_equal(a, b)


def _both_ways(monkeypatch: pytest.MonkeyPatch, read: Any) -> tuple[PointSamples, PointSamples]:
    """``read()`` with every plan on mosaics, then with every plan tile by tile."""
    with monkeypatch.context() as patch:
        gather_by(patch, "mosaic")
        mosaic = read()
    gather_by(monkeypatch, "tile_by_tile")
    return mosaic, read()


@pytest.mark.parametrize("kind", ["single", "planar", "chunky"])
@pytest.mark.parametrize("radius", [0, 2])
@pytest.mark.parametrize("records", [1, 2])
def test_mosaics_equal_tile_by_tile(
    tiffs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, kind: str, radius: int, records: int
) -> None:
    count = 1 if kind == "single" else 3
    names = ["b1"] if kind == "single" else ["b3", "b1"]
    recs = [record("r1", tiffs[kind], count)]
    if records == 2:  # another nodata: validity per gather, not from the values at the end
        recs.append(record("r2", tiffs["chunky_other_nodata"], 3))
    xs, ys = _points(4000, seed=radius + records)
    options = PointOptions(return_neighbourhood="always" if radius else "off",
                           neighbourhood_radius=max(radius, 1))  # fmt: skip
    io = ReadOptions(cache_mb=0)
    mosaic, tiles = _both_ways(
        monkeypatch, lambda: read_points(recs, xs, ys, EPSG, names, options, io)
    )
    _equal(mosaic, tiles)
    assert not mosaic.valid[0].all(), "some points meet nodata"


def test_dense_points_use_mosaics_and_sparse_points_do_not(tiffs: dict[str, Path]) -> None:
    rec = record("r", tiffs["planar"], 3)
    tiles = 9  # 128-pixel tiles of a 260 x 300 raster
    dense = _points(points_mod.MOSAIC_MIN_PIXELS_PER_TILE * tiles * 2, seed=1)
    plan = plan_points([rec], *dense, EPSG, ["b1", "b2"])
    assert len(plan.mosaics) == 2
    assert not plan.gathers
    assert {m.keys for m in plan.mosaics} == {
        tuple(k for k in plan.tiles if k.plane == p) for p in (0, 1)
    }
    sparse = _points(1000, seed=2)
    plan = plan_points([rec], *sparse, EPSG, ["b1", "b2"])
    assert plan.gathers
    assert not plan.mosaics


def test_a_budget_without_room_falls_back_to_tile_by_tile(
    tiffs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mosaic budget is the read's ``max_decoded_mb``: a mosaic that does not fit is
    read tile by tile; one band on a mosaic and one tile by tile give the same samples."""
    monkeypatch.setattr(points_mod, "MOSAIC_MIN_PIXELS_PER_TILE", ALWAYS)
    rec = record("r", tiffs["planar"], 3)
    xs, ys = _points(3000, seed=3)
    one_band = 9 * 128 * 128 * 2 / 1e6  # nine uint16 tiles, in MB
    plans = {
        mb: plan_points([rec], xs, ys, EPSG, ["b1", "b2"], PointOptions(max_decoded_mb=mb))
        for mb in (one_band / 2, one_band * 1.5, one_band * 3)
    }
    assert [len(p.mosaics) for p in plans.values()] == [0, 1, 2]
    assert [len({g.band for g in p.gathers}) for p in plans.values()] == [2, 1, 0]
    io = ReadOptions(cache_mb=0)
    results = [run(execute_points_async(p, io, 512)) for p in plans.values()]
    for other in results[1:]:
        _raw_equal(other, results[0])


def test_bands_of_a_chunky_file_share_one_mosaic(
    tiffs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(points_mod, "MOSAIC_MIN_PIXELS_PER_TILE", ALWAYS)
    xs, ys = _points(2000, seed=4)
    plan = plan_points([record("r", tiffs["chunky"], 3)], xs, ys, EPSG, ["b1", "b2", "b3"])
    assert len(plan.mosaics) == 3
    assert len({m.keys for m in plan.mosaics}) == 1
    gatherer = sample_mod._Gatherer(plan, None)
    mosaics = {id(m) for ms in gatherer.mosaics.values() for m in ms}
    assert len(mosaics) == 1
    only = next(iter(gatherer.mosaics.values()))[0]
    assert [g.sample for g in only.gathers] == [0, 1, 2]


def test_mosaics_filled_from_the_cache_and_before_the_plan_is_done(
    tiffs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiles reach a mosaic from the decoded-tile cache, and tiles decoded before the plan
    is done reach it on the gather threads: the same samples as a cold read."""
    monkeypatch.setattr(points_mod, "MOSAIC_MIN_PIXELS_PER_TILE", ALWAYS)
    xs, ys = _points(3000, seed=5)
    rec = record("r", tiffs["planar"], 3)
    plan = plan_points([rec], xs, ys, EPSG, ["b2", "b3"])
    assert plan.mosaics
    cold = run(execute_points_async(plan, ReadOptions(cache_mb=0), 512))
    clear_tile_cache()
    cached = ReadOptions(cache_mb=64)
    run(execute_points_async(plan, cached, 512))
    counting = CountingReader(URLReader())
    warm = run(execute_points_async(plan, ReadOptions(cache_mb=64, backend=counting), 512))
    assert counting.requests() == 0, "every tile came from the cache"
    clear_tile_cache()
    early_reader = CountingReader(URLReader())

    async def late_plan() -> Any:
        for _ in range(500):  # the plan arrives once tiles are fetched (and decoded)
            if early_reader.requests():
                await asyncio.sleep(0.05)
                return plan
            await asyncio.sleep(0.01)
        raise AssertionError("no tile was fetched before the plan was done")

    early = run(
        _execute(plan.tiles, late_plan(), ReadOptions(cache_mb=0, backend=early_reader), 512)
    )
    for got in (warm, early):
        _raw_equal(got, cold)


def test_a_tile_unlike_its_layout_is_a_decode_error(
    tiffs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(points_mod, "MOSAIC_MIN_PIXELS_PER_TILE", ALWAYS)
    xs, ys = _points(500, seed=6)
    plan = plan_points([record("r", tiffs["single"], 1)], xs, ys, EPSG, ["b1"])
    gatherer = sample_mod._Gatherer(plan, None)
    key = plan.mosaics[0].keys[0]
    with pytest.raises(DecodeError, match=r"expected a decoded tile of 1 x 128 x 128 uint16 "
                       r"samples, got 1 x 128 x 64 uint16 at tile 0 of .*single\.tif"):  # fmt: skip
        gatherer.gather(key, np.zeros((1, 128, 64), np.uint16))
    with pytest.raises(DecodeError, match="got 1 x 128 x 128 float32"):
        gatherer.gather(plan.mosaics[0].keys[1], np.zeros((1, 128, 128), np.float32))


def test_a_run_of_targets_is_taken_in_place_and_others_scattered(
    tiffs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Points all inside the raster make one run of targets per band (taken straight into
    the band's array); a second record of a wider dtype makes the take go through a copy."""
    monkeypatch.setattr(points_mod, "MOSAIC_MIN_PIXELS_PER_TILE", ALWAYS)
    rng = np.random.default_rng(7)
    xs, ys = rng.uniform(X0, X0 + 2599, 3000), rng.uniform(Y0 - 2999, Y0, 3000)
    wide = tmp_path / "wide.tif"
    shutil.copy(tiffs["single"], tmp_path / "same.tif")
    with rasterio.open(tiffs["single"]) as src:
        profile, data = src.profile, src.read()
    profile.update(dtype="float64")
    with rasterio.open(wide, "w", **profile) as dst:
        dst.write(data.astype("float64"))
    recs = [record("r1", tiffs["single"], 1), record("r2", wide, 1)]
    plan = plan_points(recs, xs, ys, EPSG, ["b1"])
    assert all(isinstance(m.targets, int) for m in plan.mosaics)
    mosaic, tiles = _both_ways(
        monkeypatch, lambda: read_points(recs, xs, ys, EPSG, ["b1"], None, ReadOptions(cache_mb=0))
    )
    _equal(mosaic, tiles)
    assert mosaic.values[0].dtype == np.float64
    np.testing.assert_array_equal(mosaic.values[0][::2], mosaic.values[0][1::2])


def test_dense_pixels_are_sorted_while_the_read_waits_for_bytes(
    tiffs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before a read's first bytes are in, grouping by tile costs it no time: dense pixels
    are grouped then, and go to mosaics once tiles are being decoded."""
    monkeypatch.setattr(points_mod, "MOSAIC_MIN_PIXELS_PER_TILE", ALWAYS)
    rec = record("r", tiffs["planar"], 3)
    xs, ys = _points(3000, seed=8)
    waiting = threading.Event()
    plan = plan_points([rec], xs, ys, EPSG, ["b1", "b2"], bytes_in=waiting)
    assert plan.gathers
    assert not plan.mosaics
    waiting.set()
    plan = plan_points([rec], xs, ys, EPSG, ["b1", "b2"], bytes_in=waiting)
    assert plan.mosaics
    assert not plan.gathers
    plans: list[Any] = []
    real = sample_mod.plan_points

    def spy(*args: Any) -> Any:
        plans.append(real(*args))
        return plans[-1]

    monkeypatch.setattr(sample_mod, "plan_points", spy)
    slow = ReadOptions(cache_mb=0, backend=LatencyReader(URLReader(), 0.3))  # plan first
    early = read_points([rec], xs, ys, EPSG, ["b1", "b2"], read_options=slow)
    assert plans[-1].gathers
    assert not plans[-1].mosaics
    monkeypatch.setattr(points_mod, "MOSAIC_MIN_PIXELS_PER_TILE", NEVER)
    _equal(early, read_points([rec], xs, ys, EPSG, ["b1", "b2"], read_options=slow))
