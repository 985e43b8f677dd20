"""The nearest warp's gather through GDAL's own source map equals GDAL warping the pixels.

``warp_region`` asks GDAL once per geometry which source pixel each output pixel takes
(:func:`rasteret.read.warp.nearest_sources`) and gathers through that map; the general path
runs ``rasterio.warp.reproject`` on the pixels. Both must give the same pixels and validity,
bit for bit, on random grids (other CRS, other resolutions, strips sticking out), dtypes,
nodata values (NaN too), internal masks and holes, with GDAL 3.10 and 3.12 alike.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from rasterio.enums import Resampling

import rasteret.read.warp as warp
from rasteret.read.bands import BandRead
from rasteret.read.grid import Grid, transformer

SRC_CRS = "EPSG:32633"


def _read(shape: tuple[int, int], origin: tuple[float, float], nodata: float | None, dtype: str):
    return BandRead(
        band="b", index=0, href="h", mode="warp", level=0, sample=0,
        region=(0, 0, shape[1], shape[0]), image_size=(shape[1], shape[0]), tile_size=(256, 256),
        tiles=(), mask_tiles=(), mask_sample=0, src_window=None,
        src_transform=(10.0, 0.0, origin[0], 0.0, -10.0, origin[1]), src_crs=SRC_CRS,
        nodata=nodata, dtype=dtype, resampling=Resampling.nearest, overlaps=True,
    )  # fmt: skip


def _case(rng: np.random.Generator):
    dtype = str(rng.choice(["uint16", "int16", "float32", "uint8"]))
    h, w = (int(v) for v in rng.integers(40, 300, 2))
    origin = (300_000.0 + rng.uniform(0, 1000), 5_100_000.0 + rng.uniform(0, 1000))
    canvas = rng.integers(0, 30, (h, w)).astype(dtype)
    options: list[float | None] = [None, 0.0, 5.0] + ([float("nan")] if dtype == "float32" else [])
    nodata = options[int(rng.integers(len(options)))]
    if nodata is not None and np.isnan(nodata):
        canvas[rng.random((h, w)) < 0.1] = np.nan
    valid = rng.random((h, w)) > 0.2
    valid[:, : int(rng.integers(0, w // 3))] = False  # a band outside the image
    use_mask = bool(rng.random() < 0.5)
    (x,), (y,) = transformer(SRC_CRS, "EPSG:32632").transform([origin[0]], [origin[1]])
    res = float(rng.choice([10.0, 20.0, 7.0, 60.0]))
    gw, gh = (int(v) for v in rng.integers(20, 300, 2))
    x0, y0 = x + rng.uniform(-300, 1500), y - rng.uniform(-300, 1500)
    grid = Grid("EPSG:32632", (res, 0.0, x0, 0.0, -res, y0), gw, gh)
    return canvas, valid, _read((h, w), origin, nodata, dtype), grid, use_mask


@pytest.mark.parametrize("seed", range(6))
def test_gathered_nearest_warp_equals_gdal_warping_the_pixels(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    gathered_some = 0
    for _ in range(25):
        canvas, valid, read, grid, use_mask = _case(rng)
        fast = warp.warp_region(canvas, valid, read, grid, use_mask=use_mask)
        with monkeypatch.context() as m:
            m.setattr(warp, "_gathers", lambda read, canvas: False)
            general = warp.warp_region(canvas, valid, read, grid, use_mask=use_mask)
        np.testing.assert_array_equal(fast[1], general[1])
        assert fast[0].dtype == general[0].dtype
        np.testing.assert_array_equal(fast[0], general[0])  # NaN equal to NaN
        gathered_some += int(fast[1].any())
    assert gathered_some >= 10  # most grids meet the source


@pytest.mark.parametrize("kernel", [Resampling.nearest, Resampling.bilinear, Resampling.cubic])
@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_valid_zeros_stay_zero_without_a_band_nodata(kernel: Resampling, dtype: str) -> None:
    """A band without nodata: the warp's destination starts at 0 and its alpha says what
    was written. Given 0 as a nodata value, GDAL 3.12 would write valid zeros as +-1."""
    rng = np.random.default_rng(3)
    _, _, read, grid, _ = _case(rng)
    read = replace(read, nodata=None, dtype=dtype, resampling=kernel)
    h, w = read.region[3], read.region[2]
    data, written = warp.warp_region(
        np.zeros((h, w), dtype), np.ones((h, w), bool), read, grid, use_mask=False
    )
    assert written.any()
    assert (data == 0).all()


def test_one_geometry_asks_gdal_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A time series of one region onto one grid: GDAL maps the strips once, then every
    date gathers; the maps kept stay within NEAREST_MAPS_MB."""
    rng = np.random.default_rng(11)
    _, valid, read, grid, _ = _case(rng)
    calls: list[object] = []
    real = warp._reproject_call
    monkeypatch.setattr(warp, "_reproject_call", lambda *a: (calls.append(a[2]), real(*a)))
    monkeypatch.setattr(warp, "_maps", warp.OrderedDict())
    monkeypatch.setattr(warp, "_maps_bytes", 0)
    strips = len(warp.warp_calls(read, grid))
    for _ in range(4):
        canvas = rng.integers(0, 9, valid.shape).astype(read.dtype)
        warp.warp_region(canvas, valid, read, grid, use_mask=True)
        assert len(calls) == strips  # the first date only
    monkeypatch.setattr(warp, "NEAREST_MAPS_MB", 1e-6)  # every new map evicts the others
    other = Grid(grid.crs, (*grid.transform[:2], grid.transform[2] + 5000, *grid.transform[3:]),
                 grid.width, grid.height)  # fmt: skip
    warp.warp_region(canvas, valid, read, other, use_mask=True)
    assert len(warp._maps) == 1
    assert warp._maps_bytes == next(iter(warp._maps.values())).nbytes
    warp.clear_nearest_maps()
    assert (len(warp._maps), warp._maps_bytes) == (0, 0)
