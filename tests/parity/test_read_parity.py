"""Pixel reads against rasterio/GDAL, the oracle.

* Same-grid windows, every georeferenced file of the fixture matrix, polygons crossing the
  raster edges, ``all_touched`` both ways: bit-exact data and validity (nodata, internal
  masks, alpha bands, sparse tiles, PixelIsPoint, a user CRS, strips, big-endian, 1-bit).
  The oracle reads the clipped window (``boundless=True`` goes through a VRT that rounds
  64-bit integers through float64) and rasterizes the polygon with ``geometry_mask``.
* ``out_shape=`` reads from files with overviews, five kernels: equal to ``src.read(window=,
  out_shape=, resampling=)``, validity equal to ``read_masks``. One documented exception:
  when GDAL rounds the overview window's *integer* offset up (``int(x / factor + 0.5)``)
  while the floating window starts half a pixel earlier, GDAL leaves that partial first
  source row/column out of non-nearest kernels; rasteret keeps it (which is what GDAL gives
  when reading that same window from the overview directly). Only the first output row or
  column can differ, and only then; the test checks exactly that. Apart from that, the
  region rasteret resamples starts at another origin than the file, so GDAL's floating-point
  footprints round differently once in a while: one unit, in well under 0.1 % of pixels
  (measured: 1 pixel in ~40 000); nearest is always exact.
* A two-UTM-zone corpus (EPSG:32632 / 32633 near the 12 degree E border): warped chips equal
  ``rasterio.warp.reproject`` with the same kernel from the same overview level onto the same
  grid. Measured share of differing pixels with nearest: 0 (no pixel-centre ties occurred);
  the test allows at most 0.1 %.
"""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from parity_support import file_record, offset_box, write_scene
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.warp import reproject
from rasterio.windows import Window, from_bounds

from rasteret.read import ReadOptions, RecordRef, plan_read, read_chips
from rasteret.read.grid import level_window
from rasteret.testing.fixtures import FIXTURE_MATRIX
from rasteret.testing.oracle import rasterio_strip_warp

GEOREFERENCED = [s.name for s in FIXTURE_MATRIX if s.crs is not None]
LOSSY = {s.name for s in FIXTURE_MATRIX if s.lossy}
OVERVIEW_FILES = [s.name for s in FIXTURE_MATRIX if "overviews" in s.name] + [
    "uint16_deflate_pred2_tile256",
    "uint8_deflate_mask_tile256",
    "int16_deflate_nodata-9999_tile256",
]
KERNELS = ["nearest", "bilinear", "cubic", "average", "mode"]

# rasterio 1.4 with affine 3 warns inside its own helpers (window_transform, from_bounds)
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def crs_string(src: rasterio.DatasetReader) -> str:
    return src.crs.to_string() if src.crs.to_epsg() else src.crs.to_wkt()


def oracle_window(
    src: rasterio.DatasetReader, win: Window, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and validity (read_masks) of ``win``, filled outside the raster."""
    raw = np.full((src.count, int(win.height), int(win.width)), fill, dtype=src.dtypes[0])
    valid = np.zeros(raw.shape, dtype=bool)
    clipped = win.intersection(Window(0, 0, src.width, src.height))
    rows = slice(clipped.row_off - win.row_off, clipped.row_off - win.row_off + clipped.height)
    cols = slice(clipped.col_off - win.col_off, clipped.col_off - win.col_off + clipped.width)
    raw[:, rows, cols] = src.read(window=clipped)
    valid[:, rows, cols] = src.read_masks(window=clipped) != 0
    return raw, valid


def covering(src: rasterio.DatasetReader, geom: shapely.Geometry) -> Window:
    """rasterio's from_bounds, offsets floored and ends ceiled (the documented snapping)."""
    w = from_bounds(*geom.bounds, transform=src.transform)
    col0, row0 = math.floor(w.col_off + 1e-6), math.floor(w.row_off + 1e-6)
    col1 = math.ceil(w.col_off + w.width - 1e-6)
    row1 = math.ceil(w.row_off + w.height - 1e-6)
    return Window(col0, row0, col1 - col0, row1 - row0)


def equal(a: np.ndarray, b: np.ndarray, lossy: bool) -> np.ndarray:
    if lossy:
        return np.abs(a.astype(float) - b.astype(float)) <= 2
    same = a == b
    if a.dtype.kind == "f":
        same |= np.isnan(a) & np.isnan(b)
    return same


@pytest.mark.parametrize("name", GEOREFERENCED)
def test_same_grid_reads_are_bit_exact(fixture_paths: dict[str, Path], name: str) -> None:
    path = fixture_paths[name]
    with rasterio.open(path) as src:
        t = src.transform
        x0, y0, w, h = t.c, t.f, src.width * t.a, src.height * t.e
        aois = [
            shapely.box(x0 + 123.4, y0 - 987.6, x0 + 1234.5, y0 - 55.5),  # inside
            shapely.box(x0 - 300, y0 - 400, x0 + 222, y0 + 100),  # over the top-left corner
            shapely.box(x0 + w - 333, y0 + h - 250, x0 + w + 140, y0 + h + 415),  # bottom-right
            shapely.Polygon([(x0 + 50, y0 - 50), (x0 + 2000, y0 - 300), (x0 + 700, y0 - 2500)]),
            shapely.box(x0 + 30, y0 - 400, x0 + 2000, y0 - 30).difference(
                shapely.box(x0 + 300, y0 - 300, x0 + 900, y0 - 100)
            ),  # a hole
            shapely.MultiPolygon(
                [
                    shapely.box(x0 + 40, y0 - 300, x0 + 500, y0 - 20),
                    shapely.box(x0 + 1500, y0 - 2000, x0 + 1900, y0 - 1200),
                ]
            ),
        ]
        rec = file_record("r", path, src.count)
        for all_touched in (False, True):
            chips = read_chips(
                [rec],
                aois,
                crs_string(src),
                list(rec.bands),
                ReadOptions(all_touched=all_touched, cache_mb=0),
            )
            assert [c.aoi_index for c in chips.chips] == list(range(len(aois)))
            for chip in chips.chips:
                geom = aois[chip.aoi_index]
                win = covering(src, geom)
                fill = chips.fill_values[0]
                raw, valid = oracle_window(src, win, fill)
                inside = geometry_mask(
                    [geom],
                    out_shape=(win.height, win.width),
                    transform=src.window_transform(win),
                    all_touched=all_touched,
                    invert=True,
                )
                valid &= inside[None]
                expected = np.where(valid, raw, np.array(fill).astype(raw.dtype))
                assert chip.transform == tuple(src.window_transform(win))[:6]
                assert chip.data.shape == expected.shape
                np.testing.assert_array_equal(chip.valid, valid)
                assert equal(chip.data, expected, name in LOSSY).all()


def gdal_rounds_up(meta_width: int, level_width: int, x_full: float) -> bool:
    """Whether GDAL's integer overview offset is past the floor of the floating one."""
    factor = meta_width / level_width
    integer = min(level_width - 1, int(int(x_full) / factor + 0.5))
    return integer > math.floor(x_full / factor)


@pytest.mark.parametrize("name", OVERVIEW_FILES)
def test_out_shape_reads_match_rasterio(fixture_paths: dict[str, Path], name: str) -> None:
    path = fixture_paths[name]
    rng = random.Random(name)
    noisy: dict[str, int] = {}
    total: dict[str, int] = {}
    with rasterio.open(path) as src:
        rec = file_record("r", path, src.count)
        t = src.transform
        for trial in range(10):
            c0, r0 = rng.randint(0, src.width - 20), rng.randint(0, src.height - 20)
            c1, r1 = rng.randint(c0 + 8, src.width), rng.randint(r0 + 8, src.height)
            geom = offset_box(t, c0, r0, c1, r1)
            if trial % 4 == 0:  # upsampling
                shape = ((r1 - r0) * 2 + 1, (c1 - c0) + 3)
            else:
                shape = (
                    rng.randint(1, max(2, (r1 - r0) // rng.choice([1, 2, 3, 5, 8]))),
                    rng.randint(1, max(2, (c1 - c0) // rng.choice([1, 2, 3, 4, 7]))),
                )
            win = Window(c0, r0, c1 - c0, r1 - r0)
            for kernel in KERNELS:
                opts = ReadOptions(out_shape=shape, resampling=kernel, all_touched=True, cache_mb=0)
                chip = read_chips([rec], [geom], crs_string(src), list(rec.bands), opts).chips[0]
                read = plan_read([rec], [geom], crs_string(src), ["b1"], opts).chips[0].bands[0]
                expected = src.read(
                    window=win, out_shape=(src.count, *shape), resampling=Resampling[kernel]
                )
                valid = src.read_masks(window=win, out_shape=(src.count, *shape)) != 0
                if src.nodata is not None:
                    valid &= (
                        ~np.isnan(expected) if math.isnan(src.nodata) else expected != src.nodata
                    )
                np.testing.assert_array_equal(chip.valid, valid)
                diff = ~equal(chip.data, expected, name in LOSSY) & valid
                if kernel == "nearest":
                    assert not diff.any(), (kernel, (c0, r0, c1 - c0, r1 - r0), shape)
                    continue
                if read.level > 0:
                    level_w, level_h = read.image_size
                    if gdal_rounds_up(src.width, level_w, c0):
                        diff[:, :, 0] = False
                    if gdal_rounds_up(src.height, level_h, r0):
                        diff[:, 0, :] = False
                # what is left is floating-point noise of a shifted origin: one unit, rarely
                gap = np.abs(chip.data.astype(float) - expected.astype(float))[diff]
                noisy[kernel] = noisy.get(kernel, 0) + int(diff.sum())
                total[kernel] = total.get(kernel, 0) + int(valid.sum())
                assert (gap <= 1 + 1e-6 * np.abs(expected.astype(float))[diff]).all()
    for kernel, n in noisy.items():
        assert n <= 0.001 * total[kernel], (kernel, n, total[kernel])


# -- the two-UTM-zone corpus --------------------------------------------------------------------


@pytest.fixture(scope="module")
def utm_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[RecordRef, Path]]:
    d = tmp_path_factory.mktemp("utm")
    paths = [
        write_scene(d / "z32_a.tif", 32632, 11.97, 46.03, 1),
        write_scene(d / "z33_a.tif", 32633, 11.97, 46.03, 2),
        write_scene(d / "z33_b.tif", 32633, 11.99, 46.02, 3),
    ]
    return [(file_record(p.stem, p, 1), p) for p in paths]


UTM_CASES = [
    {},  # no target_crs: the most common CRS (32633), with a warning
    {"target_crs": 32632},
    {"target_crs": 4326},
    {"resolution": 35.0},
    {"resolution": 41.0, "target_crs": 32632},
]


@pytest.mark.parametrize("kernel", ["nearest", "bilinear", "cubic", "average"])
@pytest.mark.parametrize("case", UTM_CASES)
def test_warped_reads_match_reproject(
    utm_corpus: list[tuple[RecordRef, Path]], kernel: str, case: dict[str, object]
) -> None:
    recs = [r for r, _ in utm_corpus]
    aoi = shapely.box(11.985, 46.0, 12.02, 46.02)
    opts = ReadOptions(resampling=kernel, cache_mb=0, **case)  # type: ignore[arg-type]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chips = read_chips(recs, [aoi], "EPSG:4326", ["b1"], opts)
        plan = plan_read(recs, [aoi], "EPSG:4326", ["b1"], opts)
    crs_warnings = [w for w in caught if "most common" in str(w.message)]
    assert len(crs_warnings) == (2 if "target_crs" not in case else 0)  # read + plan
    assert {c.data.shape for c in chips.chips} == {chips.chips[0].data.shape}  # one grid
    assert len(chips.chips) == 3
    for chip, chip_plan in zip(chips.chips, plan.chips, strict=True):
        read = chip_plan.bands[0]
        path = utm_corpus[chip.record_index][1]
        level = {} if read.level == 0 else {"overview_level": read.level - 1}
        inside = geometry_mask(
            [plan.aoi_geometries[chip.aoi_index]],
            out_shape=chip_plan.grid.shape,
            transform=Affine(*chip.transform),
            invert=True,
        )
        assert not chip.valid[0][~inside].any()
        if read.mode == "paste":
            continue  # same-grid reads: test_same_grid_reads_are_bit_exact
        if read.mode == "warp":
            # GDAL's warper on the very pixels rasteret assembled (the region of the chosen
            # level): bit-exact, whatever the kernel
            col, row, width, height = read.region
            with rasterio.open(path, **level) as src:
                region = src.read(1, window=Window(col, row, width, height))
            expected = rasterio_strip_warp(region, read, chip_plan.grid, kernel)
            valid = (expected != 0) & inside
            np.testing.assert_array_equal(chip.data[0][valid], expected[valid])
            assert (chip.data[0][~chip.valid[0]] == 0).all()
            # validity differs from the warped nodata only where a kernel blends nodata
            # neighbours into a value (rasteret: nearest source pixel invalid -> invalid)
            assert (chip.valid[0] != valid).sum() <= 0.005 * valid.sum()
            assert (chip.valid[0] & ~valid).sum() == 0 or kernel != "nearest"
        else:  # resample: the same CRS at another pixel size
            with rasterio.open(path) as full:
                expected, interior = resample_oracle(full, chip_plan.grid, kernel)
            both = (expected != 0) & inside & interior & chip.valid[0]
            gap = np.abs(chip.data[0].astype(float) - expected)[both]
            assert (gap == 0).all() if kernel == "nearest" else (gap <= 1).mean() >= 0.995


@pytest.mark.parametrize("kernel", ["nearest", "bilinear", "cubic", "average"])
def test_warps_against_whole_file_reproject(
    utm_corpus: list[tuple[RecordRef, Path]], kernel: str
) -> None:
    """Against ``reproject`` of the *whole file* at GDAL's defaults. rasteret warps in fixed
    strips of the output CRS's pixel lattice (see ``rasteret.read.warp``), so that a pixel does
    not depend on the window it is read in; GDAL's approximate transformer (0.125 pixel)
    interpolates along the rows of whatever window it is handed. Nearest: measured 0.05 % of
    ~106 000 pixels differ (bound: 0.1 %); other kernels: mean difference below one unit of
    values ~1000-2000, 99th percentile at most 5."""
    recs = [r for r, _ in utm_corpus]
    aoi = shapely.box(11.985, 46.0, 12.02, 46.02)
    opts = ReadOptions(resampling=kernel, cache_mb=0, target_crs=32632)
    chips = read_chips(recs, [aoi], "EPSG:4326", ["b1"], opts)
    gaps = []
    for chip in chips.chips[1:]:  # the two zone-33 scenes, warped into zone 32
        expected = np.zeros(chip.data.shape[1:], dtype="uint16")
        with rasterio.open(utm_corpus[chip.record_index][1]) as src:
            reproject(
                rasterio.band(src, 1),
                expected,
                dst_transform=Affine(*chip.transform),
                dst_crs=chip.crs,
                resampling=Resampling[kernel],
                src_nodata=0,
                dst_nodata=0,
            )
        both = chip.valid[0] & (expected != 0)
        gaps.append(np.abs(chip.data[0].astype(float) - expected)[both])
    gap = np.concatenate(gaps)
    if kernel == "nearest":
        assert (gap > 0).mean() <= 0.001
    else:
        assert gap.mean() <= 1.0
        assert np.percentile(gap, 99) <= 5


def resample_oracle(
    src: rasterio.DatasetReader, grid: object, kernel: str
) -> tuple[np.ndarray, np.ndarray]:
    """rasterio's read of the grid's fractional window, where it lies inside the raster.

    Output pixels whose footprint plus a 4-pixel kernel margin lies inside the raster are
    read with a non-boundless window covering exactly them; the rest are not compared.
    """
    x0, y0, w, h = level_window(tuple(src.transform)[:6], grid)  # type: ignore[arg-type]
    height, width = grid.shape  # type: ignore[attr-defined]
    sx, sy = w / width, h / height
    cols = [j for j in range(width) if x0 + j * sx >= 4 and x0 + (j + 1) * sx <= src.width - 4]
    rows = [i for i in range(height) if y0 + i * sy >= 4 and y0 + (i + 1) * sy <= src.height - 4]
    expected = np.zeros((height, width), dtype=src.dtypes[0])
    interior = np.zeros((height, width), dtype=bool)
    if cols and rows:
        j0, j1, i0, i1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
        win = Window(x0 + j0 * sx, y0 + i0 * sy, (j1 - j0) * sx, (i1 - i0) * sy)
        expected[i0:i1, j0:j1] = src.read(
            1, window=win, out_shape=(i1 - i0, j1 - j0), resampling=Resampling[kernel]
        )
        interior[i0:i1, j0:j1] = True
    return expected, interior
