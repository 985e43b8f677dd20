"""Parity: rasteret's TorchGeo dataset returns TorchGeo's own ``RasterDataset`` samples.

Same GeoTIFFs, same queries (from TorchGeo's samplers and by hand), same CRS and resolution:
same keys, shapes, dtypes and values. Covered: records on the dataset grid, records in
another UTM zone (TorchGeo's ``WarpedVRT``), mosaics of overlapping records, off-grid and
partly-outside queries, coarser (overviews) and finer resolutions, bilinear images and
nearest masks, uint16 with nodata 0 and float32 with NaN nodata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torchgeo.datasets")  # the ``torchgeo`` extra

import pandas as pd
from torchgeo_support import assert_same_sample, build, local_hrefs, oracle, spec, write_scenes

import rasteret
from support.samplers import grid_sampler, random_sampler

UTM33, UTM34 = "EPSG:32633", "EPSG:32634"
ALL_TIME = slice(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rasteret.Collection]:
    """Two overlapping zone-33 scenes on one 10 m lattice and a zone-34 scene over them."""
    root = tmp_path_factory.mktemp("tg_parity")
    specs = [
        spec(5),
        spec(10, origin=(501_280.0, 4_598_720.0)),
        spec(15, epsg=32634, origin=(-1_000.0, 4_616_700.0)),
    ]
    paths = write_scenes(root / "scenes", specs)
    return root / "scenes", build(specs, local_hrefs(paths), root / "ws")


@pytest.fixture(scope="module")
def float_scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rasteret.Collection]:
    """float32 scenes with NaN nodata (one per zone)."""
    root = tmp_path_factory.mktemp("tg_float")
    kwargs: dict[str, Any] = {"dtype": "float32", "nodata": float("nan"), "predictor": 3}
    specs = [spec(7, **kwargs), spec(9, epsg=32634, origin=(-1_000.0, 4_616_700.0), **kwargs)]
    paths = write_scenes(root / "scenes", specs)
    return root / "scenes", build(specs, local_hrefs(paths), root / "ws", name="tgf")


def _check(ours: Any, theirs: Any, query: Any) -> None:
    try:
        expected = theirs[query]
    except IndexError:  # a query TorchGeo finds nothing for: neither do we
        with pytest.raises(IndexError, match="not found in index"):
            ours[query]
        return
    assert_same_sample(ours[query], expected)


def _queries(theirs: Any, res: tuple[float, float], seed: int) -> list[Any]:
    """Queries from TorchGeo's samplers plus hand-made mosaics, off-grid and edge ones."""
    out: list[Any] = list(random_sampler(theirs, size=48, length=12, seed=seed))
    out += list(grid_sampler(theirs, size=96, stride=112))[::3]
    x, y, _ = theirs.bounds
    cx, cy = (x.start + x.stop) / 2, (y.start + y.stop) / 2
    rx, ry = res
    for dx, dy in ((0.0, 0.0), (3.7, -1.3), (-0.4 * rx, 0.6 * ry)):  # mosaics, off the grid
        out.append(
            (slice(cx + dx, cx + dx + 64 * rx, rx), slice(cy + dy, cy + dy + 40 * ry, ry), ALL_TIME)
        )
    bx0, _, _, by1 = theirs.index.geometry.iloc[0].bounds  # over a record's corner
    out.append(
        (slice(bx0 - 20 * rx, bx0 + 30 * rx, rx), slice(by1 - 30 * ry, by1 + 10 * ry, ry), ALL_TIME)
    )
    return out


@pytest.mark.parametrize(
    ("crs", "res", "is_image"),
    [
        (UTM33, (10.0, 10.0), True),
        (UTM33, (20.0, 20.0), True),  # overviews, bilinear
        (UTM33, (7.5, 7.5), True),  # finer than native
        (UTM33, (10.0, 10.0), False),  # masks: nearest, int64, [H, W]
        (UTM33, (30.0, 30.0), False),
        (UTM34, (10.0, 10.0), True),  # the zone-33 scenes through WarpedVRTs
        (UTM34, (25.0, 25.0), True),
    ],
)
def test_samples_equal_torchgeo_raster_dataset(
    scenes: tuple[Path, rasteret.Collection], crs: str, res: tuple[float, float], is_image: bool
) -> None:
    folder, collection = scenes
    ours = collection.to_torchgeo_dataset(
        bands=["B04", "B08"], target_crs=crs, res=res, is_image=is_image
    )
    theirs = oracle(str(folder), crs=ours.crs, res=res, is_image=is_image)
    assert ours.crs == theirs.crs
    assert ours.res == theirs.res
    bounds = [c for g in theirs.index.geometry for c in g.bounds]
    assert [c for g in ours.index.geometry for c in g.bounds] == pytest.approx(bounds)
    for query in _queries(theirs, res, seed=len(crs) + int(res[0])):
        _check(ours, theirs, query)


@pytest.mark.parametrize(
    ("crs", "res"), [(UTM33, (10.0, 10.0)), (UTM33, (20.0, 20.0)), (UTM34, (10.0, 10.0))]
)
def test_float_nan_nodata_equals_torchgeo(
    float_scenes: tuple[Path, rasteret.Collection], crs: str, res: tuple[float, float]
) -> None:
    folder, collection = float_scenes
    ours = collection.to_torchgeo_dataset(bands=["B04", "B08"], target_crs=crs, res=res)
    theirs = oracle(str(folder), crs=ours.crs, res=res)
    for query in _queries(theirs, res, seed=3):
        _check(ours, theirs, query)


def test_default_grid_is_torchgeos(scenes: tuple[Path, rasteret.Collection]) -> None:
    """Without target_crs/res: the most common CRS and its native pixel size, with a warning
    that one record is warped; TorchGeo on that CRS (first file) agrees on every sample."""
    folder, collection = scenes
    with pytest.warns(UserWarning, match="2 CRSs"):
        ours = collection.to_torchgeo_dataset(bands=["B04", "B08"])
    assert ours.crs.to_epsg() == 32633
    assert ours.res == (10.0, 10.0)
    theirs = oracle(str(folder), crs=None, res=None)
    assert theirs.crs == ours.crs
    assert theirs.res == ours.res
    for query in _queries(theirs, ours.res, seed=11)[:8]:
        _check(ours, theirs, query)
