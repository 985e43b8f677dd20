"""The overview paste fast path: downsampled reads GDAL serves as a straight copy.

When a chip's grid is an overview level's grid (whole pixels of the level GDAL picks), GDAL's
RasterIO copies that level's pixels without a kernel, and rasteret pastes whole decoded tiles
of that level (``paste`` mode at ``level > 0``) instead of resampling through GDAL MEM
datasets. These tests check, on files with several overview levels, edge tiles, nodata,
internal masks and levels whose size is not an exact division of the full size:

* that the fast path is taken where GDAL copies (exact divisions, aligned grids) and never
  where GDAL resamples (fractional windows on a non-exact level);
* that it equals rasterio ``read(window=..., out_shape=..., resampling=...)`` and
  ``read_masks`` for every kernel;
* that it equals the general ``resample`` path (the fast path disabled), edges included.
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.windows import Window

import rasteret.read.bands as bands_module
from rasteret.ingest.metadata import band_metadata_from_header
from rasteret.read import ReadOptions, RecordRef, plan_read, read_chips
from rasteret.read.bands import gdal_copies, rasterio_window
from rasteret.read.grid import level_window
from rasteret.testing.fixtures import spec_from_name, write_fixture
from rasteret.tiff.header import parse_header

KERNELS = ["nearest", "bilinear", "cubic", "average"]

# rasterio 1.4 with affine 3 warns inside its own helpers (window_transform, from_bounds)
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

SPECS = {
    # exact divisions, small tiles: many edge tiles on every level
    "uint16_deflate_pred2_tile64_1024x768": {"overviews": (2, 4, 8)},
    # nodata, levels that are not exact divisions (502x499, 251x250, 126x125)
    "int16_deflate_nodata-9999_tile64_1003x997": {"overviews": (2, 4, 8)},
    # internal mask (and its overviews), non-exact levels (687x550, 344x275, 172x138)
    "uint8_deflate_mask_tile128_1373x1100": {"overviews": (2, 4, 8)},
    # 2745 / 2 = 1373: a level like 10980 / 8 (1373 x 1.99927 = 2745)
    "uint8_deflate_tile256_2745x343": {"overviews": (2, 4, 8)},
    # the COG driver's own levels
    "uint16_cog_deflate_pred2_overviews_tile256_1500x1100": {},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("overview_paste")
    out = {}
    for name, extra in SPECS.items():
        spec = dataclasses.replace(spec_from_name(name), **extra)  # type: ignore[arg-type]
        out[name] = write_fixture(spec, folder)
    return out


def record(path: Path) -> RecordRef:
    data = path.read_bytes()
    header = parse_header(data, url=str(path), object_size=len(data))
    return RecordRef("r", None, {"b1": band_metadata_from_header(header, href=str(path))})


def level_box(
    src: rasterio.DatasetReader, k: int, col: int, row: int, w: int, h: int
) -> shapely.Polygon:
    """The AOI covering pixels ``(col, row, w, h)`` of overview ``k`` (1-based), shrunk by a
    tenth of a pixel so covering windows snap to exactly those pixels."""
    with rasterio.open(src.name, overview_level=k - 1) as ovr:
        rx, ry = src.width * src.transform.a / ovr.width, src.height * -src.transform.e / ovr.height
    x0, y0 = src.transform.c + col * rx, src.transform.f - row * ry
    return shapely.box(x0 + rx / 10, y0 - h * ry + ry / 10, x0 + w * rx - rx / 10, y0 - ry / 10)


def cases(src: rasterio.DatasetReader, rng: random.Random) -> list[tuple[shapely.Polygon, dict]]:
    """(AOI, ReadOptions keywords): level-aligned windows (inside, at the right/bottom edges,
    the whole level, partly outside) read with ``resolution=`` the level's pixel size, and
    whole-image reads at each level's size with ``out_shape=``."""
    out: list[tuple[shapely.Polygon, dict]] = []
    t = src.transform
    for k in range(1, len(src.overviews(1)) + 1):
        with rasterio.open(src.name, overview_level=k - 1) as ovr:
            ow, oh = ovr.width, ovr.height
        res = (src.width * t.a / ow, src.height * -t.e / oh)
        full = shapely.box(t.c, t.f + src.height * t.e, t.c + src.width * t.a, t.f)
        out.append((full, {"out_shape": (oh, ow)}))
        windows = [(0, 0, ow, oh), (ow - 7, oh - 5, 7, 5), (ow - 40, 3, 40, min(oh - 3, 33))]
        windows += [(ow - 9, oh - 11, 20, 30), (-5, -3, 12, 9)]  # partly outside
        for _ in range(4):
            w, h = rng.randint(1, max(1, ow // 2)), rng.randint(1, max(1, oh // 2))
            windows.append((rng.randint(0, ow - w), rng.randint(0, oh - h), w, h))
        for col, row, w, h in windows:
            out.append((level_box(src, k, col, row, w, h), {"resolution": res}))
    return out


def read(rec: RecordRef, geom: shapely.Geometry, crs: str, opts: ReadOptions):
    chip = read_chips([rec], [geom], crs, ["b1"], opts).chips[0]
    plan = plan_read([rec], [geom], crs, ["b1"], opts).chips[0]
    return chip, plan


def inside_image(src: rasterio.DatasetReader, win: Window) -> bool:
    return (
        win.col_off >= 0
        and win.row_off >= 0
        and win.col_off + win.width <= src.width + 1e-6
        and win.row_off + win.height <= src.height + 1e-6
    )


@pytest.mark.parametrize("name", list(SPECS))
def test_overview_paste_equals_rasterio_and_general_path(
    files: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = files[name]
    rec = record(path)
    rng = random.Random(name)
    pasted = compared = 0
    with rasterio.open(path) as src:
        crs = src.crs.to_string()
        exact = all(src.width % f == 0 and src.height % f == 0 for f in src.overviews(1))
        for geom, kw in cases(src, rng):
            for kernel in KERNELS:
                opts = ReadOptions(resampling=kernel, all_touched=True, cache_mb=0, **kw)
                chip, plan = read(rec, geom, crs, opts)
                band = plan.bands[0]
                x0, y0, w, h = level_window(tuple(src.transform)[:6], plan.grid)
                win = Window(x0, y0, w, h)
                fast = band.mode == "paste" and band.level > 0
                pasted += fast
                if exact and "resolution" in kw and inside_image(src, win):
                    assert fast, (name, kw, kernel, win)  # GDAL copies: so does rasteret
                if inside_image(src, win):
                    compared += 1
                    shape = plan.grid.shape
                    expected = src.read(
                        1, window=win, out_shape=shape, resampling=Resampling[kernel]
                    )
                    valid = src.read_masks(1, window=win, out_shape=shape) != 0
                    if src.nodata is not None:
                        valid &= expected != src.nodata
                    np.testing.assert_array_equal(chip.valid[0], valid)
                    fill = np.array(src.nodata or 0).astype(expected.dtype)
                    np.testing.assert_array_equal(chip.data[0], np.where(valid, expected, fill))
                if fast:  # the general path (GDAL MEM resampling) gives the same chip
                    with monkeypatch.context() as m:
                        m.setattr(bands_module, "gdal_copies", lambda io: False)
                        slow, slow_plan = read(rec, geom, crs, opts)
                    assert slow_plan.bands[0].mode == "resample"
                    np.testing.assert_array_equal(chip.data, slow.data)
                    np.testing.assert_array_equal(chip.valid, slow.valid)
    assert pasted > 0
    assert compared > 0


@pytest.mark.parametrize("name", list(SPECS))
def test_no_overview_paste_where_gdal_resamples(files: dict[str, Path], name: str) -> None:
    """Windows whose integer size matches the output but whose floating window is not whole
    pixels of the level: GDAL samples or resamples, so no paste; every kernel equals
    rasterio."""
    path = files[name]
    rec = record(path)
    rng = random.Random(name + "jitter")
    with rasterio.open(path) as src:
        crs, t = src.crs.to_string(), src.transform
        for k in range(1, len(src.overviews(1)) + 1):
            with rasterio.open(path, overview_level=k - 1) as ovr:
                ow, oh = ovr.width, ovr.height
            fx, fy = src.width / ow, src.height / oh
            for _ in range(5):
                w, h = rng.randint(2, max(2, ow // 3)), rng.randint(2, max(2, oh // 3))
                c0 = rng.randint(1, max(1, src.width - math.ceil(w * fx) - 2))
                r0 = rng.randint(1, max(1, src.height - math.ceil(h * fy) - 2))
                geom = shapely.box(
                    t.c + c0 * t.a + 0.5,
                    t.f + (r0 + h * fy) * t.e + 0.5,
                    t.c + (c0 + w * fx) * t.a - 0.5,
                    t.f + r0 * t.e - 0.5,
                )
                for kernel in KERNELS:
                    opts = ReadOptions(
                        out_shape=(h, w), resampling=kernel, all_touched=True, cache_mb=0
                    )
                    chip, plan = read(rec, geom, crs, opts)
                    band = plan.bands[0]
                    x0, y0, ww, hh = level_window(tuple(t)[:6], plan.grid)
                    io = rasterio_window(
                        rec.bands["b1"], (x0, y0, ww, hh), w, h, nearest=kernel == "nearest"
                    )
                    assert io is not None
                    assert (band.mode == "paste") == gdal_copies(io)
                    if band.mode == "paste":
                        # only where the floating window is whole pixels of the level
                        assert (io.x, io.y, io.w, io.h) == (io.col, io.row, io.width, io.height)
                    win = Window(x0, y0, ww, hh)
                    expected = src.read(
                        1, window=win, out_shape=(h, w), resampling=Resampling[kernel]
                    )
                    valid = src.read_masks(1, window=win, out_shape=(h, w)) != 0
                    if src.nodata is not None:
                        valid &= expected != src.nodata
                    np.testing.assert_array_equal(chip.valid[0], valid)
                    np.testing.assert_array_equal(chip.data[0][valid], expected[valid])


def test_rasterio_window_rule(files: dict[str, Path]) -> None:
    """GDAL's arithmetic on a level that is not an exact division (2745 -> 1373, like
    10980 -> 1373): integer sizes rounded, the floating window compared exactly."""
    meta = record(files["uint8_deflate_tile256_2745x343"]).bands["b1"]
    assert meta is not None
    whole = rasterio_window(meta, (0.0, 0.0, 2745.0, 343.0), 1373, 172, nearest=True)
    assert whole is not None
    assert whole.level == 1
    assert gdal_copies(whole)
    # one full-resolution pixel in: the integer window is still 1373 wide, not the floats
    shifted = rasterio_window(meta, (2.0, 0.0, 2743.0, 343.0), 1372, 172, nearest=True)
    assert shifted is not None
    assert shifted.level == 1
    assert not gdal_copies(shifted)
    # an odd offset at factor 2: GDAL rounds the integer offset up, the float is x.5
    odd = rasterio_window(meta, (3.0, 0.0, 200.0, 100.0), 100, 50, nearest=True)
    assert odd is not None
    assert (odd.col, odd.x) == (2, 3 / (2745 / 1373))
    assert not gdal_copies(odd)
    # past the edge: no rasterio equivalent
    assert rasterio_window(meta, (2700.0, 0.0, 100.0, 10.0), 50, 5, nearest=True) is None
