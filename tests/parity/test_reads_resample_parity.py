"""Same-CRS reads at another pixel size (``out_shape=``, ``resolution=``) against rasterio.

rasteret reproduces GDAL's RasterIO request (``rasterio.read(window=, out_shape=,
resampling=)`` on the source file): the overview level GDAL picks, the integer window it
rounds on that level and the floating one. Copies are pasted, nearest is sampled with
GDAL's own arithmetic, and the other kernels run GDAL's ``RasterIOResampled`` on a sparse
in-memory file shaped like the source. So every kernel is compared *bit-exact* here
(lossy codecs: within 2 units, as decoders may differ), on files with overviews, masks,
nodata and levels that are not exact divisions, with windows at integer and at fractional
offsets (a ``resolution=`` lattice not aligned with the overview), downsampling, the same
size and upsampling. Validity equals ``read_masks(out_shape=...)`` (and not nodata).
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
from parity_support import file_record, offset_box
from rasterio.enums import Resampling
from rasterio.windows import Window

from rasteret.read import ReadOptions, plan_read, read_chips
from rasteret.read.grid import level_window
from rasteret.read.options import RESAMPLING_NAMES
from rasteret.testing.fixtures import FIXTURE_MATRIX, spec_from_name, write_fixture

KERNELS = list(RESAMPLING_NAMES)
LOSSY = {s.name for s in FIXTURE_MATRIX if s.lossy}
MATRIX_FILES = [s.name for s in FIXTURE_MATRIX if "overviews" in s.name and s.crs] + [
    "float32_lerc_deflate_4band_band_tile256_300x200",
    "uint8_lerc_3band_pixel_tile256",
    "uint16_deflate_pred2_tile256",
    "int16_deflate_nodata-9999_tile256",
]
EXTRA_FILES = {
    # levels that are not exact divisions (502x499, 251x250, 126x125), nodata
    "int16_deflate_nodata-9999_tile64_1003x997": {"overviews": (2, 4, 8)},
    # an internal mask and its overviews on uneven levels
    "uint8_deflate_mask_tile128_1373x1100": {"overviews": (2, 4, 8)},
    # float data with NaN nodata
    "float32_deflate_pred3_nodatanan_tile64_777x555": {"overviews": (2, 4)},
}

# rasterio 1.4 with affine 3 warns inside its own helpers (window_transform, from_bounds)
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.fixture(scope="module")
def extra_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("resample_parity")
    return {
        name: write_fixture(dataclasses.replace(spec_from_name(name), **extra), folder)  # type: ignore[arg-type]
        for name, extra in EXTRA_FILES.items()
    }


def crs_string(src: rasterio.DatasetReader) -> str:
    return src.crs.to_string() if src.crs.to_epsg() else src.crs.to_wkt()


def same(a: np.ndarray, b: np.ndarray, lossy: bool) -> np.ndarray:
    if lossy:
        return np.abs(a.astype(float) - b.astype(float)) <= 2
    equal = a == b
    if a.dtype.kind == "f":
        equal |= np.isnan(a) & np.isnan(b)
    return equal


def cases(src: rasterio.DatasetReader, rng: random.Random) -> list[tuple[shapely.Polygon, dict]]:
    """AOIs inside the image with ``out_shape=`` (downsampling by assorted factors, the
    same size, upsampling) or ``resolution=`` (a lattice through the image origin at a pixel
    size that is no overview's: fractional windows on every level)."""
    t = src.transform
    out: list[tuple[shapely.Polygon, dict]] = []
    for trial in range(6):
        c0, r0 = rng.randint(0, src.width - 24), rng.randint(0, src.height - 24)
        c1, r1 = rng.randint(c0 + 12, src.width), rng.randint(r0 + 12, src.height)
        geom = offset_box(t, c0, r0, c1, r1)
        w, h = c1 - c0, r1 - r0
        if trial == 0:
            shape = (h * 2 + 1, w + 3)  # upsampling
        elif trial == 1:
            shape = (h, w)  # same size (whole pixels: a paste)
        else:
            fx, fy = rng.choice([1.3, 2, 2.5, 3, 4, 7]), rng.choice([1.5, 2, 3, 4, 5])
            shape = (max(1, round(h / fy)), max(1, round(w / fx)))
        out.append((geom, {"out_shape": shape}))
        res = abs(t.a) * rng.choice([1.37, 1.9, 2.2, 3.3, 4.6])
        out.append((geom, {"resolution": res}))
    return out


def check_file(path: Path, lossy: bool, seed: str) -> dict[str, int]:
    """Compare every case and kernel; returns how many reads took each mode."""
    modes: dict[str, int] = {}
    rng = random.Random(seed)
    with rasterio.open(path) as src:
        rec = file_record("r", path, src.count)
        crs = crs_string(src)
        full = tuple(src.transform)[:6]
        for geom, kw in cases(src, rng):
            for kernel in KERNELS:
                opts = ReadOptions(resampling=kernel, all_touched=True, cache_mb=0, **kw)
                chips = read_chips([rec], [geom], crs, list(rec.bands), opts)
                plan = plan_read([rec], [geom], crs, list(rec.bands), opts).chips[0]
                chip = chips.chips[0]
                for read in plan.bands:
                    key = f"{read.mode}@{'overview' if read.level else 'full'}"
                    modes[key] = modes.get(key, 0) + 1
                x0, y0, w, h = level_window(full, plan.grid)  # type: ignore[arg-type]
                win = Window(x0, y0, w, h)
                if x0 < 0 or y0 < 0 or x0 + w > src.width or y0 + h > src.height:
                    continue  # past the edge: rasterio crops, rasteret fills
                shape = (src.count, *plan.grid.shape)
                expected = src.read(window=win, out_shape=shape, resampling=Resampling[kernel])
                valid = src.read_masks(window=win, out_shape=shape) != 0
                if src.nodata is not None:
                    valid &= (
                        ~np.isnan(expected) if math.isnan(src.nodata) else expected != src.nodata
                    )
                where = (path.name, kernel, kw, tuple(win.flatten()))
                np.testing.assert_array_equal(chip.valid, valid, err_msg=str(where))
                assert same(chip.data, expected, lossy)[valid].all(), where
    return modes


@pytest.mark.parametrize("name", MATRIX_FILES)
def test_resampled_reads_equal_rasterio(fixture_paths: dict[str, Path], name: str) -> None:
    modes = check_file(fixture_paths[name], name in LOSSY, name)
    assert modes.get("resample@full", 0) + modes.get("resample@overview", 0) > 0


@pytest.mark.parametrize("name", list(EXTRA_FILES))
def test_resampled_reads_equal_rasterio_on_uneven_levels(
    extra_paths: dict[str, Path], name: str
) -> None:
    modes = check_file(extra_paths[name], False, name)
    assert modes.get("resample@overview", 0) > 0


@pytest.mark.parametrize("name", ["int16_deflate_nodata-9999_tile64_1003x997"])
def test_mem_shortcut_equals_file_emulation(
    extra_paths: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kernels read from a MEM dataset where that hands GDAL the file's very request (the
    fast path) give what the sparse in-memory GeoTIFF emulation gives (the general path)."""
    import rasteret.read.warp as warp_module

    path = extra_paths[name]
    taken = {"mem": 0}
    exact = warp_module._mem_is_exact

    def counting(*args: object) -> bool:
        result = exact(*args)  # type: ignore[arg-type]
        taken["mem"] += result
        return result

    rng = random.Random(name)
    with rasterio.open(path) as src:
        rec = file_record("r", path, 1)
        crs = crs_string(src)
        for geom, kw in cases(src, rng):
            for kernel in ("bilinear", "cubic", "average", "lanczos"):
                opts = ReadOptions(resampling=kernel, all_touched=True, cache_mb=0, **kw)
                with monkeypatch.context() as m:
                    m.setattr(warp_module, "_mem_is_exact", counting)
                    fast = read_chips([rec], [geom], crs, ["b1"], opts).chips[0]
                with monkeypatch.context() as m:
                    m.setattr(warp_module, "_mem_is_exact", lambda *a: False)
                    slow = read_chips([rec], [geom], crs, ["b1"], opts).chips[0]
                np.testing.assert_array_equal(fast.data, slow.data)
                np.testing.assert_array_equal(fast.valid, slow.valid)
    assert taken["mem"] > 0
