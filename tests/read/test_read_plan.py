"""Planning is pure: grids, modes, levels, skip rules, de-duplicated tiles, errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import shapely
from read_support import X0, Y0, band_metadata, box, record, write_cog

from rasteret.errors import BandResolutionError, SchemaError
from rasteret.read import ReadOptions, RecordRef, plan_read
from rasteret.read.grid import covering_window


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("plan")
    return {
        "a": write_cog(d / "a.tif", seed=1),
        "b": write_cog(d / "b.tif", seed=2, origin=(X0 + 3000, Y0)),  # same grid, to the east
        "chunky": write_cog(d / "chunky.tif", count=3, interleave="pixel"),
        "planar": write_cog(d / "planar.tif", count=3, interleave="band"),
        "coarse": write_cog(d / "coarse.tif", res=20.0, size=(300, 200)),
        "shifted": write_cog(d / "shifted.tif", origin=(X0 + 5.0, Y0)),
        "zone32": write_cog(d / "z32.tif", epsg=32632, origin=(700_000.0, 4_600_000.0)),
        "sparse": write_cog(d / "sparse.tif", sparse=True, overviews=()),
    }


def test_same_grid_is_pasted_on_the_covering_window(files: dict[str, Path]) -> None:
    plan = plan_read(
        [record("a", files["a"])], [box(10.5, 20.2, 30.0, 41.7)], 32633, ["b1"], ReadOptions()
    )
    (chip,) = plan.chips
    (read,) = chip.bands
    assert read.mode == "paste"
    assert read.level == 0
    assert read.region == (10, 20, 20, 22)  # floor of the start, ceil of the end
    assert chip.grid.transform == (10.0, 0.0, X0 + 100, 0.0, -10.0, Y0 - 200)
    assert chip.grid.shape == (22, 20)


def test_covering_window_snaps_float_noise_to_the_edge() -> None:
    t = (10.0, 0.0, X0, 0.0, -10.0, Y0)
    # 1e-9 m past an edge is float noise, not an extra pixel
    assert covering_window(t, (X0 + 100 - 1e-9, Y0 - 200, X0 + 200 + 1e-9, Y0 - 100)) == (
        10,
        10,
        10,
        10,
    )
    assert covering_window(t, (X0 + 100.5, Y0 - 200, X0 + 100.5, Y0 - 199)) == (10, 19, 1, 1)


def test_chip_order_is_record_major_and_non_intersecting_pairs_are_left_out(
    files: dict[str, Path],
) -> None:
    recs = [record("a", files["a"]), record("b", files["b"])]
    aois = [box(10, 10, 20, 20), box(310, 10, 320, 20), box(5000, 10, 5010, 20)]
    plan = plan_read(recs, aois, 32633, ["b1"], ReadOptions())
    # a covers columns 0-600, b covers 300-900; AOI 2 is outside both
    assert [(c.record_index, c.aoi_index) for c in plan.chips] == [(0, 0), (0, 1), (1, 1)]
    assert plan.aoi_grids[2] is None


def test_aoi_touching_the_raster_edge_only_is_skipped(files: dict[str, Path]) -> None:
    plan = plan_read(
        [record("a", files["a"])], [box(600, 10, 610, 20)], 32633, ["b1"], ReadOptions()
    )
    assert plan.chips == ()


def test_a_tile_shared_by_aois_is_planned_once(files: dict[str, Path]) -> None:
    aois = [box(5, 5, 20, 20), box(10, 10, 60, 60), box(100, 100, 120, 120)]
    plan = plan_read([record("a", files["a"])], aois, 32633, ["b1"], ReadOptions())
    assert len(plan.chips) == 3
    assert sorted(k.tile for k in plan.tiles) == [0]  # all in the first 128 x 128 tile


def test_chunky_bands_share_tiles_planar_bands_do_not(files: dict[str, Path]) -> None:
    aoi = [box(100, 10, 200, 60)]  # tiles 0 and 1 of the first tile row
    chunky = plan_read(
        [record("c", files["chunky"], 3)], aoi, 32633, ["b1", "b2", "b3"], ReadOptions()
    )
    planar = plan_read(
        [record("p", files["planar"], 3)], aoi, 32633, ["b1", "b2", "b3"], ReadOptions()
    )
    assert len(chunky.tiles) == 2
    assert [r.sample for r in chunky.chips[0].bands] == [0, 1, 2]
    assert len(planar.tiles) == 6
    assert {k.plane for k in planar.tiles} == {0, 1, 2}
    # planar planes are different byte ranges of the same file
    assert len({(t.start, t.end) for t in planar.tiles.values()}) == 6


def test_modes_paste_resample_warp(files: dict[str, Path]) -> None:
    recs = [
        record("a", files["a"]),
        record("c", files["coarse"]),
        record("s", files["shifted"]),
        record("z", files["zone32"]),
    ]
    aoi = shapely.box(X0 + 100, Y0 - 900, X0 + 600, Y0 - 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = plan_read(recs, [aoi], 32633, ["b1"], ReadOptions(target_crs=32633))
    modes = {
        plan.chips[i].record_index: plan.chips[i].bands[0].mode for i in range(len(plan.chips))
    }
    assert modes[0] == "paste"
    assert modes[1] == "resample"  # 20 m onto the finest (10 m) lattice
    assert modes[2] == "warp"  # 10 m but half a pixel off the lattice: the warper, not RasterIO
    assert plan.crs == "EPSG:32633"
    assert plan.lattice == (X0, Y0, 10.0, 10.0)


def test_mixed_crs_warns_and_picks_the_most_common(files: dict[str, Path]) -> None:
    recs = [record("z", files["zone32"]), record("a", files["a"]), record("b", files["b"])]
    aoi = shapely.box(14.9, 41.5, 15.2, 41.6)
    with pytest.warns(UserWarning, match=r"most common one, EPSG:32633.*target_crs"):
        plan = plan_read(recs, [aoi], 4326, ["b1"], ReadOptions())
    assert plan.crs == "EPSG:32633"


def test_warp_mode_and_overview_level(files: dict[str, Path]) -> None:
    rec = record("z", files["zone32"])
    meta = rec.bands["b1"]
    assert meta is not None
    # the zone-32 raster seen from zone 33, read at 40 m: overview 2 (4x) is picked
    lv = meta.level
    _a, _, c, _, e, f = lv.transform
    footprint = shapely.box(c + 1000, f + e * lv.image_height + 1000, c + 3000, f - 1000)
    from rasteret.read.grid import transform_geometry

    aoi = transform_geometry(footprint, "EPSG:32632", "EPSG:32633")
    plan = plan_read([rec], [aoi], 32633, ["b1"], ReadOptions(resolution=40.0, target_crs=32633))
    (read,) = plan.chips[0].bands
    assert read.mode == "warp"
    assert read.level == 2
    assert plan.chips[0].grid.resolution == (40.0, 40.0)


def test_out_shape_divides_the_snapped_extent(files: dict[str, Path]) -> None:
    plan = plan_read(
        [record("a", files["a"])],
        [box(0, 0, 100, 60)],
        32633,
        ["b1"],
        ReadOptions(out_shape=(15, 25)),
    )
    chip = plan.chips[0]
    assert chip.grid.shape == (15, 25)
    assert chip.grid.transform == pytest.approx((40.0, 0.0, X0, 0.0, -40.0, Y0))
    assert chip.bands[0].mode == "paste"
    assert chip.bands[0].level == 2
    assert plan.lattice is None


def test_sparse_tiles_need_no_bytes(files: dict[str, Path]) -> None:
    plan = plan_read(
        [record("s", files["sparse"])], [box(0, 0, 300, 300)], 32633, ["b1"], ReadOptions()
    )
    sparse = [t for t in plan.tiles.values() if t.start == t.end]
    assert sparse
    assert len(plan.fetch_tiles) == len(plan.tiles) - len(sparse)
    assert {t.sparse_fill for t in sparse} == {0}


def test_missing_band_metadata_is_an_error_naming_record_and_band(files: dict[str, Path]) -> None:
    ok = record("ok", files["a"])
    broken = RecordRef("scene-7", None, {"b1": None, "b2": band_metadata(files["a"])})
    with pytest.raises(BandResolutionError, match=r"b1 of record 'scene-7'.*on_missing='skip'"):
        plan_read([ok, broken], [box(0, 0, 10, 10)], 32633, ["b1"], ReadOptions())
    plan = plan_read(
        [ok, broken], [box(0, 0, 10, 10)], 32633, ["b1"], ReadOptions(on_missing="skip")
    )
    assert [c.record_index for c in plan.chips] == [0]
    assert [(s.record_index, s.record_id, s.missing_bands) for s in plan.skipped] == [
        (1, "scene-7", ("b1",))
    ]


@pytest.mark.parametrize(
    "geom",
    [
        shapely.Point(X0, Y0),
        shapely.LineString([(X0, Y0), (X0 + 50, Y0 - 50)]),
        shapely.MultiPoint([(X0, Y0)]),
    ],
)
def test_points_and_lines_point_to_sample_points(files: dict[str, Path], geom: object) -> None:
    with pytest.raises(SchemaError, match=r"Polygon or MultiPolygon.*AOI 1.*sample_points"):
        plan_read([record("a", files["a"])], [box(0, 0, 5, 5), geom], 32633, ["b1"], ReadOptions())


@pytest.mark.parametrize(
    "geom",
    [box(X0, Y0, X0, Y0), box(X0, Y0 - 50, X0 + 50, Y0 - 50), box(X0, Y0 - 50, X0, Y0)],
    ids=["a point as a box", "a row as a box", "a column as a box"],
)
def test_aois_of_no_area_point_to_sample_points(files: dict[str, Path], geom: object) -> None:
    """A box of no width or height is no area to read: refused with its bounds, as a point
    or a line is, not read as an empty window."""
    with pytest.raises(
        SchemaError, match=r"Polygon of no area \(bounds .*\) at AOI 1.*sample_points"
    ):
        plan_read([record("a", files["a"])], [box(0, 0, 5, 5), geom], 32633, ["b1"], ReadOptions())


def test_empty_aoi_and_empty_bands_are_errors(files: dict[str, Path]) -> None:
    with pytest.raises(SchemaError, match="empty Polygon at AOI 0"):
        plan_read([record("a", files["a"])], [shapely.Polygon()], 32633, ["b1"], ReadOptions())
    with pytest.raises(SchemaError, match="at least one band"):
        plan_read([record("a", files["a"])], [box(0, 0, 5, 5)], 32633, [], ReadOptions())


def test_dtype_and_fill_values(files: dict[str, Path], tmp_path: Path) -> None:
    i16 = write_cog(tmp_path / "i16.tif", dtype="int16", nodata=-9999, overviews=())
    recs = [RecordRef("m", None, {"u": band_metadata(files["a"]), "i": band_metadata(i16)})]
    plan = plan_read(recs, [box(0, 0, 5, 5)], 32633, ["u", "i"], ReadOptions())
    assert plan.dtype == np.dtype("int32")  # uint16 and int16 both fit
    assert plan.fill_values == (0, -9999)
    assert plan.nodata == (0, -9999)
    with pytest.raises(SchemaError, match=r"fill value that uint8 can hold.*-9999"):
        plan_read(recs, [box(0, 0, 5, 5)], 32633, ["u", "i"], ReadOptions(dtype="uint8"))
    plan = plan_read(recs, [box(0, 0, 5, 5)], 32633, ["u", "i"], ReadOptions(fill_value=7))
    assert plan.fill_values == (7, 7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 10, "out_shape": (2, 2)}, "at most one of"),
        ({"resolution": -1}, "positive"),
        ({"out_shape": (0, 3)}, "positive integers"),
        ({"resampling": "bicubic-ish"}, "resampling= one of"),
        ({"on_missing": "ignore"}, "on_missing"),
        ({"cache_mb": -1}, "cache_mb"),
        ({"dtype": "not-a-dtype"}, "dtype"),
    ],
)
def test_options_are_validated(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        ReadOptions(**kwargs)  # type: ignore[arg-type]


def test_each_tile_records_the_rows_its_reads_need(files: dict[str, Path]) -> None:
    # 600 x 400 pixels in 128 x 128 tiles: 5 tiles across, the last tile row holds 16 rows
    aois = [box(5, 5, 20, 20), box(10, 100, 60, 150), box(300, 390, 310, 400)]
    plan = plan_read([record("a", files["a"])], aois, 32633, ["b1"], ReadOptions())
    need = {k.tile: t.needed_rows for k, t in plan.tiles.items()}
    # tile 0: AOI 0 needs its rows 0-19, AOI 1 rows 100-127 (the deepest need wins);
    # tile 5: AOI 1 needs rows 0-21 of it; tile 17: the image ends 16 rows down
    assert need == {0: 128, 5: 22, 17: 16}
    assert all(t.rows == 128 for t in plan.tiles.values())
