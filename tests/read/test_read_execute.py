"""Executing a plan: one fetch per tile, one wave, the tile cache, fill/dtype, errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window
from read_support import X0, Y0, box, record, write_cog

import rasteret.read.execute as execute_mod
from rasteret.errors import ObjectNotFoundError
from rasteret.read import ReadOptions, plan_read, read_chips, read_chips_async
from rasteret.read.cache import TileCache, clear_tile_cache, get_tile_cache
from rasteret.read.sample import read_points
from rasteret.testing.stores import CountingReader, LatencyReader, URLReader


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("execute")
    return {
        "chunky": write_cog(d / "chunky.tif", count=3, size=(700, 500)),
        "planar": write_cog(d / "planar.tif", count=2, interleave="band"),
        "sparse": write_cog(d / "sparse.tif", sparse=True, overviews=()),
        **{f"s{i}": write_cog(d / f"s{i}.tif", seed=10 + i) for i in range(4)},
    }


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    clear_tile_cache()


def test_every_needed_tile_is_fetched_exactly_once(files: dict[str, Path]) -> None:
    rec = record("c", files["chunky"], 3)
    aois = [box(10, 10, 300, 140), box(100, 100, 400, 300), box(250, 20, 260, 30)]
    counting = CountingReader(URLReader())
    opts = ReadOptions(backend=counting, max_gap=0, cache_mb=0)
    chips = read_chips([rec], aois, 32633, ["b1", "b2", "b3"], opts)
    plan = plan_read([rec], aois, 32633, ["b1", "b2", "b3"], opts)
    assert len(chips) == 3
    needed = sum(t.end - t.start for t in plan.tiles.values())
    requested = [(s, e) for call in counting.calls for s, e in call.ranges]
    # three bands and three overlapping AOIs, yet every tile's bytes travel once
    assert sum(e - s for s, e in requested) == needed == counting.bytes_read()
    assert len(set(requested)) == len(requested)


def test_a_larger_read_is_spread_over_parallel_requests(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merged requests stop growing at the call's bytes / SPREAD_REQUESTS: the same pixels
    and samples, the same bytes, more requests (here the 24 tiles would fit one request)."""
    rec = record("c", files["chunky"], 3)
    aoi = [box(0, 0, 700, 500)]
    whole = read_chips([rec], aoi, 32633, ["b1"], ReadOptions(cache_mb=0))
    plan = plan_read([rec], aoi, 32633, ["b1"], ReadOptions())
    tile = max(t.end - t.start for t in plan.tiles.values())
    xs = np.random.default_rng(3).uniform(X0, X0 + 7000, 500)
    ys = np.random.default_rng(4).uniform(Y0 - 5000, Y0, 500)
    points = read_points([rec], xs, ys, 32633, ["b1", "b2"], read_options=ReadOptions(cache_mb=0))
    monkeypatch.setattr(execute_mod, "SPREAD_REQUESTS", 6)
    monkeypatch.setattr(execute_mod, "MIN_SPREAD_SIZE", 1)
    for read in ("chips", "points"):
        clear_tile_cache()
        counting = CountingReader(URLReader())
        opts = ReadOptions(backend=counting, cache_mb=0)
        if read == "chips":
            spread = read_chips([rec], aoi, 32633, ["b1"], opts)
            np.testing.assert_array_equal(spread.chips[0].data, whole.chips[0].data)
            np.testing.assert_array_equal(spread.chips[0].valid, whole.chips[0].valid)
        else:
            got = read_points([rec], xs, ys, 32633, ["b1", "b2"], read_options=opts)
            for a, b in zip(got.values + got.valid, points.values + points.valid, strict=True):
                np.testing.assert_array_equal(a, b)
        requested = [(s, e) for call in counting.calls for s, e in call.ranges]
        assert len(set(requested)) == len(requested)  # no range asked twice
        assert counting.requests() >= 6, read
        # a merged request stops growing at a sixth of the bytes: it passes that by less
        # than the one tile that made it grow past
        largest = max(e - s for s, e in requested)
        assert largest < counting.bytes_read() / 6 + tile, read


def test_coalescing_merges_neighbouring_tiles(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execute_mod, "SPREAD_REQUESTS", 1)  # coalescing alone (a 1.2 MB read)
    rec = record("c", files["chunky"], 3)
    counting = CountingReader(URLReader())
    read_chips(
        [rec], [box(0, 0, 700, 500)], 32633, ["b1"], ReadOptions(backend=counting, cache_mb=0)
    )
    assert counting.requests() == 1  # 24 tiles, all within the default gap and size limits
    counting.reset()
    read_chips(
        [rec],
        [box(0, 0, 700, 500)],
        32633,
        ["b1"],
        ReadOptions(backend=counting, cache_mb=0, max_coalesced_size=1),
    )
    assert counting.requests() == 24


def test_all_requests_go_out_in_one_wave(files: dict[str, Path]) -> None:
    recs = [record(f"s{i}", files[f"s{i}"]) for i in range(4)]
    aois = [box(0, 0, 600, 400)]
    latency = 0.25
    slow = LatencyReader(URLReader(), latency=latency)
    opts = ReadOptions(backend=slow, cache_mb=0, max_coalesced_size=1)  # 15 requests per file
    start = time.perf_counter()
    chips = read_chips(recs, aois, 32633, ["b1"], opts)
    elapsed = time.perf_counter() - start
    assert len(chips) == 4
    # 60 requests one after the other would take 15 s; in one wave, about one latency
    assert elapsed < 6 * latency


def test_repeated_reads_come_from_the_tile_cache(files: dict[str, Path]) -> None:
    rec = record("c", files["chunky"], 3)
    aois = [box(50, 50, 250, 200)]
    counting = CountingReader(URLReader())
    first = read_chips([rec], aois, 32633, ["b1", "b3"], ReadOptions(backend=counting))
    assert counting.requests() > 0
    counting.reset()
    again = read_chips([rec], aois, 32633, ["b2", "b1"], ReadOptions(backend=counting))
    assert counting.requests() == 0  # the decoded tiles serve other bands of the file too
    np.testing.assert_array_equal(again.chips[0].data[1], first.chips[0].data[0])
    read_chips([rec], aois, 32633, ["b1"], ReadOptions(backend=counting, cache_mb=0))
    assert counting.requests() > 0  # cache_mb=0: no cache


def test_cache_key_includes_the_file_version(files: dict[str, Path]) -> None:
    rec = record("c", files["chunky"], 1)
    meta = rec.bands["b1"]
    assert meta is not None
    aois = [box(0, 0, 100, 100)]
    counting = CountingReader(URLReader())
    read_chips([rec], aois, 32633, ["b1"], ReadOptions(backend=counting))
    counting.reset()
    from dataclasses import replace

    changed = type(rec)("c", None, {"b1": replace(meta, etag='"v2"')})
    read_chips([changed], aois, 32633, ["b1"], ReadOptions(backend=counting))
    assert counting.requests() > 0


def test_sparse_tiles_are_filled_without_requests(files: dict[str, Path]) -> None:
    rec = record("s", files["sparse"])
    counting = CountingReader(URLReader())
    chips = read_chips(
        [rec],
        [box(0, 0, 600, 400)],
        32633,
        ["b1"],
        ReadOptions(backend=counting, cache_mb=0, max_coalesced_size=1),
    )
    written_tiles = 5  # only the first tile row (600 / 128 -> 5 tiles) holds data
    assert counting.requests() == written_tiles
    chip = chips.chips[0]
    assert not chip.valid[0, 128:].any()
    assert (chip.data[0, 128:] == 0).all()
    with rasterio.open(files["sparse"]) as src:
        np.testing.assert_array_equal(chip.data[0], src.read(1, masked=True).filled(0))


def test_fill_value_dtype_and_validity(files: dict[str, Path]) -> None:
    rec = record("c", files["chunky"], 3)
    aoi = box(-20, -10, 40, 30)  # crosses the top-left corner (which holds nodata 0)
    chips = read_chips([rec], [aoi], 32633, ["b2"], ReadOptions(fill_value=65535))
    chip = chips.chips[0]
    assert chip.data.shape == (1, 40, 60)
    assert chip.data.dtype == np.uint16
    assert not chip.valid[0, :10].any()
    assert not chip.valid[0, :, :20].any()
    assert (chip.data[~chip.valid] == 65535).all()
    with rasterio.open(files["chunky"]) as src:
        raw = src.read(2, window=Window(0, 0, 40, 30))
    inner = chip.data[0, 10:, 20:]
    np.testing.assert_array_equal(inner[raw != 0], raw[raw != 0])
    assert (chip.valid[0, 10:, 20:] == (raw != 0)).all()
    as_float = read_chips(
        [rec], [aoi], 32633, ["b2"], ReadOptions(dtype="float32", fill_value=float("nan"))
    )
    data = as_float.chips[0].data
    assert data.dtype == np.float32
    assert np.isnan(data[~as_float.chips[0].valid]).all()


def test_all_touched_burns_every_touched_pixel(files: dict[str, Path]) -> None:
    rec = record("c", files["chunky"], 3)
    tri = shapely.Polygon([(X0 + 1005, Y0 - 1003), (X0 + 1800, Y0 - 1207), (X0 + 1300, Y0 - 2600)])
    centre = read_chips([rec], [tri], 32633, ["b1"], ReadOptions()).chips[0]
    touched = read_chips([rec], [tri], 32633, ["b1"], ReadOptions(all_touched=True)).chips[0]
    assert centre.data.shape == touched.data.shape
    assert touched.valid.sum() > centre.valid.sum()
    assert (touched.valid | ~centre.valid).all()  # centre-inside pixels are a subset


def test_planar_bands_read_their_own_planes(files: dict[str, Path]) -> None:
    rec = record("p", files["planar"], 2)
    chip = read_chips([rec], [box(300, 200, 400, 260)], 32633, ["b2", "b1"]).chips[0]
    with rasterio.open(files["planar"]) as src:
        expected = src.read([2, 1], window=Window(300, 200, 100, 60))
    np.testing.assert_array_equal(chip.data, expected)


def test_a_missing_file_raises_instead_of_hanging(tmp_path: Path, files: dict[str, Path]) -> None:
    gone = tmp_path / "gone.tif"
    gone.write_bytes(files["s0"].read_bytes())
    rec = record("g", gone)
    gone.unlink()
    with pytest.raises(ObjectNotFoundError):
        read_chips([rec], [box(0, 0, 50, 50)], 32633, ["b1"], ReadOptions(cache_mb=0))


def test_a_failed_read_lets_its_pool_jobs_end_before_raising(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job still running after the read raised (an AOI rasterize silences warnings
    process-wide while it runs) would hide the warnings of whatever the caller does next."""
    import threading

    import rasteret.read.execute as execute

    ended: list[bool] = []
    started = threading.Event()
    rasterize = execute.geometry_inside

    def slow(*args: object, **kwargs: object) -> np.ndarray:
        started.set()
        time.sleep(0.3)  # still running when the missing file has failed the read
        mask = rasterize(*args, **kwargs)  # type: ignore[arg-type]
        ended.append(True)
        return mask

    class FailsOnceTheMaskRuns(URLReader):
        """The missing file fails the read only once the mask job is running (else a busy
        pool could leave it queued, and a queued job is cancelled, never run)."""

        async def get_ranges(self, path: str, starts: Any, ends: Any) -> Any:
            await asyncio.to_thread(started.wait, 10)
            return await super().get_ranges(path, starts, ends)

        async def get_range(self, path: str, start: int, end: int) -> Any:
            await asyncio.to_thread(started.wait, 10)
            return await super().get_range(path, start, end)

    monkeypatch.setattr(execute, "geometry_inside", slow)
    rec = record("g", files["s0"], href=str(tmp_path / "gone.tif"))
    options = ReadOptions(cache_mb=0, backend=FailsOnceTheMaskRuns())
    with pytest.raises(ObjectNotFoundError):
        read_chips([rec], [box(0, 0, 50, 50)], 32633, ["b1"], options)
    assert ended == [True]


def test_async_entry_point_runs_on_any_loop(files: dict[str, Path]) -> None:
    rec = record("s", files["s1"])

    async def main() -> int:
        chips = await read_chips_async([rec], [box(0, 0, 50, 50)], "EPSG:32633", ["b1"])
        return len(chips)

    assert asyncio.run(main()) == 1


def test_progress_bar(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rec = record("s", files["s2"])
    read_chips(
        [rec], [box(0, 0, 50, 50), box(60, 60, 90, 90)], 32633, ["b1"], ReadOptions(progress=True)
    )
    assert "rasteret read" in capsys.readouterr().err


def test_tile_cache_is_a_bounded_lru() -> None:
    cache = TileCache(max_bytes=1000)
    for i in range(5):
        cache.put(i, np.zeros(300, np.uint8))
    assert cache.keys() == [2, 3, 4]
    assert cache.nbytes == 900
    assert cache.get(2) is not None  # 2 becomes most recent
    cache.put(5, np.zeros(300, np.uint8))
    assert cache.keys() == [4, 2, 5]
    stored = cache.get(5)
    assert stored is not None
    assert not stored.flags.writeable
    cache.put("huge", np.zeros(5000, np.uint8))  # larger than the cache: not stored
    assert "huge" not in cache
    cache.resize(300)
    assert cache.keys() == [5]
    assert get_tile_cache(1).max_bytes == 1_000_000


def test_tile_cache_serves_only_entries_with_the_rows_asked_for() -> None:
    cache = TileCache(max_bytes=10_000)
    cache.put("t", np.zeros((1, 40, 8), np.uint8))  # the top 40 rows of a tile
    assert cache.get("t", rows=40) is not None
    assert cache.get("t", rows=41) is None
    cache.put("t", np.ones((1, 64, 8), np.uint8))  # the whole tile replaces it
    cache.put("t", np.zeros((1, 10, 8), np.uint8))  # a shorter one never does
    held = cache.get("t", rows=64)
    assert held is not None
    assert held.shape == (1, 64, 8)
    assert held.all()
    assert cache.nbytes == 64 * 8


def _cached_rows() -> dict[int, int]:
    """Tile number -> rows held, for every tile in the process-wide cache."""
    cache = get_tile_cache(256)
    held = {key: cache.get(key) for key in cache.keys()}  # noqa: SIM118 (not a dict)
    return {key.tile: arr.shape[1] for key, arr in held.items() if arr is not None}  # type: ignore[attr-defined]


def test_tiles_are_decoded_down_to_the_rows_the_read_needs(files: dict[str, Path]) -> None:
    rec = record("s", files["s0"])
    with rasterio.open(files["s0"]) as src:
        truth = src.read(1)
    counting = CountingReader(URLReader())
    top = read_chips([rec], [box(0, 130, 100, 150)], 32633, ["b1"], ReadOptions(backend=counting))
    np.testing.assert_array_equal(top.chips[0].data[0], truth[130:150, :100])
    assert _cached_rows() == {5: 22}  # rows 128-149: the top 22 rows of the second tile row
    (key,) = get_tile_cache(256).keys()
    partial = get_tile_cache(256).partial(key)
    assert partial is not None
    assert partial.decoded == 22
    # a read reaching further down that tile (122 of 128 rows) decodes only the rows below,
    # from the cached partial decode: no request
    counting.reset()
    deeper = read_chips(
        [rec], [box(0, 200, 100, 250)], 32633, ["b1"], ReadOptions(backend=counting)
    )
    np.testing.assert_array_equal(deeper.chips[0].data[0], truth[200:250, :100])
    assert counting.requests() == 0
    assert _cached_rows() == {5: 122}
    assert get_tile_cache(256).partial(key) is partial
    assert partial.decoded == 122
    # ... a read down to the tile's last row decodes the last 6 rows: cached whole
    bottom = read_chips(
        [rec], [box(0, 240, 100, 256)], 32633, ["b1"], ReadOptions(backend=counting)
    )
    np.testing.assert_array_equal(bottom.chips[0].data[0], truth[240:256, :100])
    assert counting.requests() == 0
    assert _cached_rows() == {5: 128}
    assert get_tile_cache(256).partial(key) is None
    assert partial.complete
    # ... and then serves the shallow read from the cache
    again = read_chips([rec], [box(0, 130, 100, 150)], 32633, ["b1"], ReadOptions(backend=counting))
    assert counting.requests() == 0
    np.testing.assert_array_equal(again.chips[0].data[0], top.chips[0].data[0])


def test_a_resumed_tile_equals_a_fetched_one_and_costs_its_input_in_the_cache(
    files: dict[str, Path],
) -> None:
    rec = record("s", files["s0"])
    aois = [box(0, 130, 100, 150), box(0, 200, 100, 250), box(0, 1, 100, 2)]
    resumed = [read_chips([rec], [a], 32633, ["b1"]).chips[0] for a in aois]
    cache = get_tile_cache(256)
    (key,) = [k for k in cache.keys() if k.tile == 5]  # type: ignore[attr-defined]  # noqa: SIM118 (not a dict)
    partial = cache.partial(key)
    assert partial is not None
    held = cache.nbytes
    assert held >= partial.nbytes > 128 * 128 * 2  # its buffer and its compressed input
    clear_tile_cache()
    for aoi, chip in zip(aois, resumed, strict=True):
        clear_tile_cache()
        fresh = read_chips([rec], [aoi], 32633, ["b1"]).chips[0]
        np.testing.assert_array_equal(chip.data, fresh.data)
        np.testing.assert_array_equal(chip.valid, fresh.valid)


def test_a_corrupt_tile_resumed_later_raises_a_decode_error_naming_it(
    files: dict[str, Path],
) -> None:
    from rasteret.errors import DecodeError, RasteretWarning
    from rasteret.tiff.decode import PartialTile

    rec = record("s", files["s0"])
    read_chips([rec], [box(0, 130, 100, 150)], 32633, ["b1"])
    cache = get_tile_cache(256)
    (key,) = cache.keys()
    partial = cache.partial(key)
    assert partial is not None
    broken = PartialTile(b"\x78\x9c" + b"\x00" * 40, partial.layout, url="s3://b/k", tile=5)
    cache.put(key, cache.get(key), partial=broken)  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="tile 5 of s3://b/k"):
        read_chips([rec], [box(0, 200, 100, 250)], 32633, ["b1"])
    with pytest.warns(RasteretWarning, match="tile 5 of s3://b/k"):
        skipped = read_chips(
            [rec], [box(0, 200, 100, 250)], 32633, ["b1"], ReadOptions(on_error="skip")
        )
    assert not skipped.chips
    assert skipped.failed[0].band == "b1"
    assert "tile 5 of s3://b/k" in skipped.failed[0].error


def test_whole_tiles_option_decodes_every_row(files: dict[str, Path]) -> None:
    rec = record("s", files["s0"])
    aoi = [box(0, 130, 100, 150)]
    whole = read_chips([rec], aoi, 32633, ["b1"], ReadOptions(whole_tiles=True))
    assert _cached_rows() == {5: 128}
    clear_tile_cache()
    part = read_chips([rec], aoi, 32633, ["b1"], ReadOptions())
    np.testing.assert_array_equal(part.chips[0].data, whole.chips[0].data)
    np.testing.assert_array_equal(part.chips[0].valid, whole.chips[0].valid)


def test_points_after_a_partial_read_get_every_row(files: dict[str, Path]) -> None:
    rec = record("s", files["s1"])
    read_chips([rec], [box(0, 0, 128, 3)], 32633, ["b1"], ReadOptions())
    assert _cached_rows() == {0: 3}
    rows = np.array([1, 60, 127])
    xs, ys = X0 + 10 * 50.5 + 0 * rows, Y0 - 10 * (rows + 0.5)
    got = read_points([rec], xs, ys, 32633, ["b1"])
    with rasterio.open(files["s1"]) as src:
        assert got.values[0].tolist() == src.read(1)[rows, 50].tolist()


def test_bands_of_different_resolution_share_one_grid(tmp_path: Path) -> None:
    fine = write_cog(tmp_path / "b04.tif", res=10.0, size=(600, 400), overviews=())
    coarse = write_cog(tmp_path / "b11.tif", res=20.0, size=(300, 200), seed=3, overviews=())
    from read_support import band_metadata

    from rasteret.read import RecordRef

    rec = RecordRef("s2", None, {"B04": band_metadata(fine), "B11": band_metadata(coarse)})
    aoi = box(101, 51, 301, 171)  # odd pixel offsets: half a 20 m pixel off
    chip = read_chips([rec], [aoi], 32633, ["B04", "B11"]).chips[0]
    assert chip.data.shape == (2, 120, 200)
    with rasterio.open(coarse) as src:  # GDAL's own upsampling of the same window
        expected = src.read(1, window=Window(50.5, 25.5, 100, 60), out_shape=(120, 200))
    np.testing.assert_array_equal(chip.data[1][chip.valid[1]], expected[chip.valid[1]])
    assert chip.valid[1].mean() > 0.9


@pytest.mark.parametrize("nodata", [0, None])
def test_resampled_reads_across_the_scene_edge(tmp_path: Path, nodata: int | None) -> None:
    path = write_cog(tmp_path / "edge.tif", nodata=nodata, overviews=(2, 4))
    rec = record("e", path)
    aoi = box(-100, -60, 300, 180)  # 400 x 240 pixels, a quarter of them outside
    chip = read_chips([rec], [aoi], 32633, ["b1"], ReadOptions(out_shape=(60, 100))).chips[0]
    assert chip.data.shape == (1, 60, 100)
    assert not chip.valid[0, :15].any()  # rows above the raster
    assert not chip.valid[0, :, :25].any()  # columns left of the raster
    assert (chip.data[0][~chip.valid[0]] == 0).all()
    with rasterio.open(path) as src:  # inside, GDAL reads the same level at the same scale
        inner = src.read(1, window=Window(0, 0, 300, 180), out_shape=(45, 75))
    core = chip.valid[0, 15:, 25:]
    np.testing.assert_array_equal(chip.data[0, 15:, 25:][core], inner[core])
