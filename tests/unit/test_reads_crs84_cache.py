"""AOI bounds reuse one CRS84 transformer per CRS, from any thread, with unchanged results."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyproj
import shapely

from rasteret.types import _transformer_to_crs84, aoi_bounds_crs84, crs_


def test_transformer_built_once_per_crs() -> None:
    first = _transformer_to_crs84(crs_(32633))
    assert _transformer_to_crs84(crs_("EPSG:32633")) is first
    assert _transformer_to_crs84(crs_(32632)) is not first


def test_bounds_equal_a_fresh_transformer_on_every_thread() -> None:
    aoi = shapely.box(500_000, 4_600_000, 510_000, 4_610_000)
    fresh = pyproj.Transformer.from_crs(32633, "OGC:CRS84", always_xy=True)
    expected = fresh.transform_bounds(*aoi.bounds, densify_pts=21)

    def bounds(_: int) -> tuple[float, float, float, float]:
        return aoi_bounds_crs84([aoi], geometry_crs=32633)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(bounds, range(64)))
    assert len(set(results)) == 1
    got = results[0]
    assert all(abs(a - b) < 1e-9 for a, b in zip(got, expected, strict=True))
