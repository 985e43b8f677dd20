"""Fast paths of point sampling, each against the general path it skips work of.

Locating (north-up arithmetic, no subsetting), tile splits shared by the bands of one grid,
one ``numpy.take`` per gather (planar, single-sample and chunky tiles), fetching before the
plan is done, whole pixels of fractional coordinates, the point-major check and the bounds
of points with nulls.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from read_support import record
from read_support import write_small_tiled as _write

from rasteret._collection_points import Points, points_bounds_crs84
from rasteret._sync import run
from rasteret.errors import SchemaError
from rasteret.ingest.metadata import band_metadata_from_header
from rasteret.read import ReadOptions
from rasteret.read import execute as execute_mod
from rasteret.read import sample as sample_mod
from rasteret.read.locate import Candidates, locate, pixel_coordinates, point_range
from rasteret.read.points import PointOptions, _by_tile, plan_points, whole_pixels
from rasteret.read.sample import _execute, execute_points_async, read_points, take_pixels
from rasteret.read.select import _point_major, concat_samples
from rasteret.testing.fixtures import get_fixture_spec, write_fixture
from rasteret.testing.stores import CountingReader, LatencyReader, URLReader
from rasteret.tiff.header import parse_header

EPSG = 32633
X0, Y0, RES = 500_000.0, 4_600_000.0, 10.0

finite = st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(finite, finite), min_size=1, max_size=30),
    st.sampled_from([0.5, 10.0, 30.0, 1 / 3]),
    st.sampled_from([-10.0, -0.25, -1 / 7]),
    finite,
    finite,
)
def test_north_up_coordinates_equal_the_full_affine(
    coords: list[tuple[float, float]], a: float, e: float, c: float, f: float
) -> None:
    xs, ys = np.array(coords).T
    cols, rows = pixel_coordinates((a, 0.0, c, 0.0, e, f), xs, ys)
    inv = ~Affine(a, 0.0, c, 0.0, e, f)
    np.testing.assert_array_equal(cols, inv.a * xs + inv.b * ys + inv.c)
    np.testing.assert_array_equal(rows, inv.d * xs + inv.e * ys + inv.f)
    np.testing.assert_array_equal(np.floor(cols), np.floor(inv.a * xs + inv.b * ys + inv.c))


@pytest.fixture(scope="module")
def tiffs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fastpaths")
    return {
        "single": _write(d / "single.tif", 1, "band"),
        "planar": _write(d / "planar.tif", 3, "band"),
        "chunky": _write(d / "chunky.tif", 3, "pixel"),
    }


def _points(n: int, seed: int, margin: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = rng.uniform(X0 - margin, X0 + 2600 + margin, n)
    ys = rng.uniform(Y0 - 3000 - margin, Y0 + margin, n)
    xs[::17] = np.nan  # null points
    return xs, ys


def _gathers(plan: Any) -> dict[tuple[Any, int, bool], tuple[list[int], list[int]]]:
    out = {}
    for g in plan.gathers:
        order = np.argsort(g.targets)
        out[(g.key, g.band, g.mask)] = (g.targets[order].tolist(), g.pixels[order].tolist())
    return out


@pytest.mark.parametrize("kind", ["planar", "chunky"])
@pytest.mark.parametrize("radius", [0, 2])
def test_bands_of_one_grid_plan_like_each_band_alone(
    tiffs: dict[str, Path], kind: str, radius: int
) -> None:
    xs, ys = _points(3000, seed=1)
    rec = record("r", tiffs[kind], 3)
    together = plan_points([rec], xs, ys, EPSG, ["b1", "b2", "b3"], _options(radius))
    got = _gathers(together)
    for b, name in enumerate(["b1", "b2", "b3"]):
        alone = plan_points([rec], xs, ys, EPSG, [name], _options(radius))
        np.testing.assert_array_equal(alone.point_index, together.point_index)
        np.testing.assert_array_equal(alone.frac_row[0], together.frac_row[b])
        for (key, _, mask), want in _gathers(alone).items():
            assert got[(key, b, mask)] == want
    assert sum(len(g.targets) for g in together.gathers) == 3 * sum(
        len(g.targets) for g in alone.gathers
    )


def _options(radius: int) -> Any:
    from rasteret.read.points import PointOptions

    return PointOptions(max_distance_pixels=radius)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 400), st.integers(0, 3), st.booleans())
def test_tile_split_equals_a_per_tile_selection(n: int, seed: int, run: bool) -> None:
    """The counting sort (and the run-of-targets shortcut) against boolean selection."""
    rng = np.random.default_rng(seed)
    level = _record_level()
    rows = rng.integers(0, level.image_height, n).astype(np.int32)
    cols = rng.integers(0, level.image_width, n).astype(np.int32)
    targets = np.arange(5, 5 + n) if run else np.sort(rng.choice(10 * n + 1, n, replace=False))
    split = _by_tile(level, rows, cols, targets)
    seen = 0
    for tr, tc, tg, px in split:
        sel = (rows // level.tile_height == tr) & (cols // level.tile_width == tc)
        np.testing.assert_array_equal(tg, targets[sel])
        want = (rows[sel] % level.tile_height) * level.tile_width + cols[sel] % level.tile_width
        np.testing.assert_array_equal(px, want)
        seen += len(tg)
    assert seen == n


_LEVEL: list[Any] = []


def _record_level() -> Any:
    if not _LEVEL:
        import tempfile

        path = _write(Path(tempfile.mkdtemp()) / "lvl.tif", 1, "band")
        _LEVEL.append(band_metadata_from_header(parse_header(path.read_bytes())).level)
    return _LEVEL[0]


@pytest.mark.parametrize("layout", ["planar", "chunky", "strided"])
def test_take_pixels_equals_fancy_indexing(layout: str) -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 1000, (3, 7, 5)).astype("int16")
    if layout == "chunky":  # decoders return chunky tiles as pixel-major views
        tile = np.ascontiguousarray(base.transpose(1, 2, 0)).transpose(2, 0, 1)
    elif layout == "strided":
        tile = np.zeros((3, 7, 10), "int16")[:, :, ::2]
        tile[...] = base
    else:
        tile = base
    pixels = rng.integers(0, 35, 50)
    for sample in range(3):
        want = tile[sample, pixels // 5, pixels % 5]
        np.testing.assert_array_equal(take_pixels(tile, sample, pixels), want)


@pytest.mark.parametrize("kind", ["single", "planar", "chunky"])
def test_sampled_values_equal_rasterio(tiffs: dict[str, Path], kind: str) -> None:
    count = 1 if kind == "single" else 3
    names = [f"b{i + 1}" for i in range(count)]
    xs, ys = _points(2000, seed=5)
    out = read_points([record("r", tiffs[kind], count)], xs, ys, EPSG, names)
    with rasterio.open(tiffs[kind]) as src:
        keep = np.isfinite(xs)
        r, c = rasterio.transform.rowcol(src.transform, xs[keep], ys[keep])
        inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        want_points = np.flatnonzero(keep)[inside]
        data = src.read()
    np.testing.assert_array_equal(out.point_index, want_points)
    rr, cc = np.asarray(r)[inside], np.asarray(c)[inside]
    for b in range(count):
        np.testing.assert_array_equal(out.values[b], data[b, rr, cc])
        np.testing.assert_array_equal(out.valid[b], data[b, rr, cc] != 0)
    np.testing.assert_array_equal(out.row, rr)
    np.testing.assert_array_equal(out.col, cc)


def test_locate_of_every_point_equals_a_subset(tiffs: dict[str, Path]) -> None:
    meta = record("r", tiffs["single"], 1).bands["b1"]
    xs, ys = _points(500, seed=7, margin=0.0)
    fast = locate(meta, np.arange(len(xs)), xs, ys)  # every point: no subsetting
    general = locate(meta, np.arange(len(xs) - 1), xs, ys)  # a subset
    for f, g in zip(fast, general, strict=True):
        np.testing.assert_array_equal(f[:-1], g)
    idx = Candidates(xs, ys, f"EPSG:{EPSG}").near(meta)
    assert len(idx) == np.isfinite(xs).sum()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1e6), st.just(math.nan)), max_size=30))
def test_whole_pixels_equal_a_masked_floor(frac: list[float]) -> None:
    values = np.array(frac, dtype=np.float64)
    want = np.where(np.isnan(values), -1, np.floor(np.nan_to_num(values))).astype(np.int64)
    np.testing.assert_array_equal(whole_pixels(values), want)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), max_size=25))
def test_point_major_check_equals_a_lexsort(rows: list[tuple[int, int]]) -> None:
    if not rows:
        return
    p = np.array([r[0] for r in rows])
    r = np.array([r[1] for r in rows])
    order = np.lexsort((r, p))
    distinct = len(set(rows)) == len(rows)
    assert _point_major(p, r) == (distinct and bool(np.array_equal(order, np.arange(len(p)))))


@pytest.mark.parametrize("nulls", [False, True])
def test_bounds_with_and_without_null_points(nulls: bool) -> None:
    xs = np.array([10.0, 11.0, 12.5])
    ys = np.array([45.0, 46.0, 44.5])
    if nulls:
        xs = np.append(xs, np.nan)
        ys = np.append(ys, 1e9)
    got = points_bounds_crs84(Points(xs, ys, "EPSG:4326", None, None, "geometry"))
    assert got == pytest.approx((10.0, 44.5, 12.5, 46.0))
    empty = Points(np.array([np.nan]), np.array([np.nan]), "EPSG:4326", None, None, "geometry")
    assert points_bounds_crs84(empty) is None
    none = Points(np.empty(0), np.empty(0), "EPSG:4326", None, None, "geometry")
    assert points_bounds_crs84(none) is None


def test_tiles_reported_before_grouping_are_the_plans(tiffs: dict[str, Path]) -> None:
    xs, ys = _points(1000, seed=8)
    seen: list[Any] = []
    plan = plan_points([record("r", tiffs["chunky"], 3)], xs, ys, EPSG, ["b1", "b3"],
                       on_tiles=seen.append)  # fmt: skip
    assert len(seen) == 1
    assert list(seen[0]) == list(plan.tiles)


def test_fetching_before_the_plan_is_done_gives_the_same_pixels(tiffs: dict[str, Path]) -> None:
    """The executor fetches and decodes while the plan's second step runs, then gathers."""
    xs, ys = _points(1500, seed=9)
    plan = plan_points([record("r", tiffs["planar"], 3)], xs, ys, EPSG, ["b2", "b3"])
    general = run(execute_points_async(plan, ReadOptions(cache_mb=0), 512))
    counting = CountingReader(URLReader())

    async def late_plan() -> Any:
        for _ in range(500):  # the plan arrives only once tiles are being fetched
            if counting.requests():
                return plan
            await asyncio.sleep(0.01)
        raise AssertionError("no tile was fetched before the plan was done")

    opts = ReadOptions(cache_mb=0, backend=counting)
    early = run(_execute(plan.tiles, late_plan(), opts, 512))
    for a, b in zip(early.values + early.valid, general.values + general.valid, strict=True):
        np.testing.assert_array_equal(a, b)

    async def failed_plan() -> Any:
        raise SchemaError("the plan failed")

    with pytest.raises(SchemaError, match="the plan failed"):
        run(_execute(plan.tiles, failed_plan(), opts, 512))


@pytest.mark.parametrize("case", ["inside", "inside_with_nulls", "some_outside", "no_points"])
def test_candidates_inside_the_footprint_equal_a_bounds_test(
    tiffs: dict[str, Path], case: str
) -> None:
    meta = record("r", tiffs["single"], 1).bands["b1"]
    rng = np.random.default_rng(11)
    n = 0 if case == "no_points" else 300
    xs = rng.uniform(X0, X0 + 2600, n)
    ys = rng.uniform(Y0 - 3000, Y0, n)
    if case == "inside_with_nulls":
        xs[::7] = np.nan
    if case == "some_outside":
        xs[::5] += 5000
    a, _, c, _, e, f = meta.level.transform
    xmin, xmax = c, c + a * meta.level.image_width
    ymin, ymax = f + e * meta.level.image_height, f
    want = np.flatnonzero((xs >= xmin) & (xs <= xmax) & (ys >= ymin) & (ys <= ymax))
    got = Candidates(xs, ys, f"EPSG:{EPSG}").near(meta)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "float32", "float64", "bool"])
@pytest.mark.parametrize("strided", [False, True])
def test_masked_columns_equal_arrow_masks(dtype: str, strided: bool) -> None:
    from rasteret.outputs.points import _masked

    rng = np.random.default_rng(12)
    values = (rng.integers(0, 100, 2 * 1001) % 7).astype(dtype)
    valid = rng.random(2 * 1001) > 0.3
    if strided:
        values, valid = values[::2], valid[::2]
    else:
        values, valid = values[:1001], valid[:1001]
    got = _masked(values, valid)
    assert got.equals(pa.array(values, mask=~valid))
    assert got.null_count == int((~valid).sum())
    assert _masked(values, np.ones(len(values), bool)).equals(pa.array(values))


_VALIDITY_FIXTURES = [
    "uint16_deflate_nodata0_tile256",
    "int16_deflate_nodata-9999_tile256",
    "float32_deflate_pred3_nodatanan_tile256",
    "uint8_deflate_mask_tile256",
    "uint8_webp_lossless_4band_pixel_tile256",  # alpha
    "uint16_deflate_pred2_tile256",  # no nodata
]


@pytest.mark.parametrize("name", _VALIDITY_FIXTURES)
@pytest.mark.parametrize("case", ["one_record", "same_nodata", "other_nodata", "widened"])
def test_validity_from_the_values_equals_per_tile_validity(
    name: str, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A band whose every pixel is gathered, with one nodata and dtype, is told valid from
    its values at the end (one pass); per tile otherwise. Both give the same samples."""
    path = write_fixture(get_fixture_spec(name), tmp_path)
    with rasterio.open(path) as src:
        count = src.count - (1 if "4band" in name else 0)
        a, _, c, _, e, f = tuple(src.transform)[:6]
        w, h = src.width, src.height
    rng = np.random.default_rng(3)
    xs = c + a * rng.uniform(-2, w + 2, 3000)
    ys = f + e * rng.uniform(-2, h + 2, 3000)
    records = [record("r1", path, count)]
    if case != "one_record":
        other = tmp_path / "other.tif"
        _rewrite(path, other, case)
        records.append(record("r2", other, count))
    bands = [f"b{i + 1}" for i in range(count)]
    opts = ReadOptions(cache_mb=0)
    plan = plan_points(records, xs, ys, EPSG, bands)
    later = sample_mod._validity_later(plan)
    fast = read_points(records, xs, ys, EPSG, bands, read_options=opts)
    monkeypatch.setattr(sample_mod, "_validity_later", lambda plan: {})
    general = read_points(records, xs, ys, EPSG, bands, read_options=opts)
    assert bool(later) == (case in ("one_record", "same_nodata"))
    assert len(fast) == len(general) > 0
    for got, want in zip(fast.values + fast.valid, general.values + general.valid, strict=True):
        np.testing.assert_array_equal(got, want)
    if "nodata" in name or "mask" in name:
        assert not fast.valid[0].all(), "the points meet invalid pixels"


def _rewrite(path: Path, out: Path, case: str) -> None:
    """A second record on the same grid: a copy (same nodata), another nodata, or float64."""
    if case == "same_nodata":
        shutil.copy(path, out)
        return
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    if case == "other_nodata":
        profile["nodata"] = 7 if profile.get("nodata") is None else None
    else:
        keep = ("driver", "width", "height", "count", "crs", "transform", "nodata")
        profile = {k: profile.get(k) for k in keep} | {"dtype": "float64", "tiled": True,
                                                       "compress": "deflate"}  # fmt: skip
        data = data.astype("float64")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)


def test_tiles_gathered_where_decoded_equal_tiles_gathered_after(
    tiffs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the plan is done, a tile is gathered in the thread that decoded it; without
    that (or before the plan is done), on the gather threads. Same samples."""
    xs, ys = _points(3000, seed=11)
    records = [record("r", tiffs["chunky"], 3)]
    slow = ReadOptions(cache_mb=0, backend=LatencyReader(URLReader(), 0.05))  # plan first
    threads: list[str] = []
    gather = sample_mod._Gatherer.gather

    def spy(self: Any, key: Any, tile: np.ndarray) -> None:
        threads.append(threading.current_thread().name)
        gather(self, key, tile)

    monkeypatch.setattr(sample_mod._Gatherer, "gather", spy)
    inline = read_points(records, xs, ys, EPSG, ["b1", "b3"], read_options=slow)
    assert threads
    assert all(t.startswith("rasteret-decode") for t in threads), threads
    threads.clear()
    monkeypatch.setattr(execute_mod, "_then", lambda then, key, job, *args: job(*args))
    after = read_points(records, xs, ys, EPSG, ["b1", "b3"], read_options=slow)
    assert threads
    assert all(t.startswith("rasteret-gather") for t in threads), threads
    assert len(inline) == len(after) > 0
    for got, want in zip(inline.values + inline.valid, after.values + after.valid, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("match", ["all", "latest"])
def test_one_record_rows_need_no_reordering(tiffs: dict[str, Path], match: str) -> None:
    """A read of one record returns its batch's rows as they are: they are already in point
    order, so the general merge (a check, and a sort when needed) would give them back."""
    xs, ys = _points(2500, seed=12)
    options = PointOptions(match=match)  # type: ignore[arg-type]
    out = read_points([record("r", tiffs["planar"], 3)], xs, ys, EPSG, ["b1", "b2"], options)
    assert len(out) > 0
    assert _point_major(out.point_index, out.record_index)
    merged = concat_samples([out])
    for got, want in zip(
        (merged.point_index, merged.record_index, merged.row, *merged.values, *merged.valid),
        (out.point_index, out.record_index, out.row, *out.values, *out.valid),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n", [0, 1, 65_535, 65_536, 65_537, 200_001])
@pytest.mark.parametrize(("step", "dtype"), [(1, "intp"), (21, "int32"), (21, "int64")])
def test_point_range_equals_arange(n: int, step: int, dtype: str) -> None:
    """Ranges and WKB offsets, written a chunk at a time in recycled memory."""
    got = point_range(n, step, np.dtype(dtype))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, np.arange(n, dtype=dtype) * step)


@pytest.mark.parametrize("nulls", [False, True])
def test_wkb_of_points_known_finite_equals_wkb_tested(nulls: bool) -> None:
    """Points whose bounds are finite are all finite: their WKB skips the test."""
    from rasteret.outputs.points import points_to_wkb
    from rasteret.read.locate import finite_bounds

    rng = np.random.default_rng(13)
    xs, ys = rng.uniform(-1e5, 1e5, 1000), rng.uniform(-1e5, 1e5, 1000)
    if nulls:
        xs[::9] = np.nan
    box, mask = finite_bounds(xs, ys)
    finite = mask is None
    assert finite is not nulls
    keep = np.isfinite(xs)
    assert box == (xs[keep].min(), ys[keep].min(), xs[keep].max(), ys[keep].max())
    tested = points_to_wkb(xs, ys)
    assert points_to_wkb(xs, ys, finite=finite).equals(tested)
    assert tested.null_count == (112 if nulls else 0)


def _plan_arrays(plan: Any) -> dict[str, Any]:
    return {
        "point_index": plan.point_index, "record_index": plan.record_index,
        "pixel_row": plan.pixel_row, "pixel_col": plan.pixel_col,
        **{f"frac_row{b}": r for b, r in enumerate(plan.frac_row)},
        **{f"frac_col{b}": c for b, c in enumerate(plan.frac_col)},
    }  # fmt: skip


@pytest.mark.parametrize("case", ["inside", "with_nulls", "some_outside", "all_null"])
def test_plan_given_the_bounds_equals_the_plan_working_them_out(
    tiffs: dict[str, Path], case: str
) -> None:
    """plan_points(bounds=finite_bounds(x, y)) skips the planner's own pass over the
    coordinates and plans the same pixels, tiles and gathers."""
    from rasteret.read.locate import finite_bounds

    rng = np.random.default_rng(17)
    xs, ys = rng.uniform(X0, X0 + 2600, 2000), rng.uniform(Y0 - 3000, Y0, 2000)
    if case == "with_nulls":
        xs[::7] = np.nan
    if case == "some_outside":
        xs[::5] += 5000
    if case == "all_null":
        xs[:] = np.nan
    recs = [record("r", tiffs["planar"], 3), record("s", tiffs["chunky"], 3)]
    bands = ["b1", "b3"]
    known = plan_points(recs, xs, ys, EPSG, bands, bounds=finite_bounds(xs, ys))
    worked = plan_points(recs, xs, ys, EPSG, bands)
    assert list(known.tiles) == list(worked.tiles)
    assert (len(worked) == 0) is (case == "all_null")
    for name, want in _plan_arrays(worked).items():
        np.testing.assert_array_equal(_plan_arrays(known)[name], want, err_msg=name)
    assert _gathers(known) == _gathers(worked)


def test_sample_points_works_out_the_bounds_once(
    tiffs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read's planner is handed the bounds sample_points worked out: one pass over the
    coordinates for both (and the same rows as when the planner works them out itself)."""
    import rasteret
    from rasteret import _collection_points
    from rasteret.read import locate as locate_mod
    from rasteret.testing.scenes import SceneSpec, record_table, write_scene

    spec = SceneSpec("s0", EPSG, (X0, Y0), size=256, tile=128, seed=3)
    write_scene(spec, tmp_path, bands=("B04",))
    collection = rasteret.build_from_table(
        record_table([spec], {"s0": {"B04": str(tmp_path / "s0_B04.tif")}}),
        workspace_dir=tmp_path / "ws", enrich_cog=True, force=True,
    )  # fmt: skip
    rng = np.random.default_rng(5)
    xs, ys = rng.uniform(X0, X0 + 2560, 500), rng.uniform(Y0 - 2560, Y0, 500)
    xs[::11] = np.nan
    points = pa.table({"x": xs, "y": ys})
    calls: list[int] = []
    real = locate_mod.finite_bounds

    def counted(x: np.ndarray, y: np.ndarray) -> Any:
        calls.append(len(x))
        return real(x, y)

    monkeypatch.setattr(locate_mod, "finite_bounds", counted)
    monkeypatch.setattr(_collection_points, "finite_bounds", counted)
    table = collection.sample_points(points, ["B04"], geometry_crs=EPSG)
    assert calls == [500]
    monkeypatch.setattr(sample_mod, "plan_points", _without_bounds(sample_mod.plan_points))
    assert collection.sample_points(points, ["B04"], geometry_crs=EPSG).equals(table)
    assert calls == [500, 500, 500]  # sample_points', then the planner's own
    assert table.num_rows == int(np.isfinite(xs).sum())


def _without_bounds(plan: Any) -> Any:
    def planned(*args: Any) -> Any:
        assert len(args) == 10  # the read passes every argument, the bounds last
        return plan(*args[:-1], None)

    return planned


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([10.0, 0.5, 1 / 3, 30.0]),
    st.sampled_from([-10.0, -0.25, -1 / 7, 20.0]),
    st.integers(1, 40),
    st.integers(1, 40),
    st.lists(
        st.tuples(st.floats(-0.01, 1.01), st.floats(-0.01, 1.01), st.sampled_from([0, 1, 2])),
        min_size=1,
        max_size=12,
    ),
)
def test_points_of_a_box_inside_the_grid_are_each_inside(
    a: float, e: float, width: int, height: int, where: list[tuple[float, float, int]]
) -> None:
    """box_inside (the box's edges through the grid arithmetic) never says inside when a
    point is not, also for points on or a rounding step off the grid's edges; and locate
    given the box marks what it marks without."""
    from types import SimpleNamespace

    from rasteret.read.locate import box_inside

    c, f = 600_000.0 + 1 / 3, 5_000_000.0 - 1 / 7
    x_edges = sorted((c, c + a * width))
    y_edges = sorted((f, f + e * height))
    xs, ys = [], []
    for u, v, nudge in where:  # a fraction of the extent, and some exactly on an edge
        x = x_edges[0] + u * (x_edges[1] - x_edges[0])
        y = y_edges[0] + v * (y_edges[1] - y_edges[0])
        if nudge:
            x = x_edges[nudge - 1] if u > 0.5 else x
            x = math.nextafter(x, -math.inf if nudge == 2 else math.inf) if u > 0.9 else x
        xs.append(x)
        ys.append(y)
    x, y = np.array(xs), np.array(ys)
    transform = (a, 0.0, c, 0.0, e, f)
    box = (x.min(), y.min(), x.max(), y.max())
    cols, rows = pixel_coordinates(transform, x, y)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    if box_inside(transform, width, height, box):
        assert inside.all()
    meta = SimpleNamespace(
        level=SimpleNamespace(transform=transform, image_width=width, image_height=height)
    )
    every = np.arange(len(x))
    fast = locate(meta, every, x, y, box)  # type: ignore[arg-type]
    general = locate(meta, every, x, y)  # type: ignore[arg-type]
    for got, want in zip(fast, general, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(general[2], inside)


def test_box_inside_is_undecided_for_rotated_grids() -> None:
    from rasteret.read.locate import box_inside

    assert not box_inside((10.0, 0.5, 0.0, 0.5, -10.0, 1000.0), 100, 100, (1.0, 900.0, 2.0, 901.0))
