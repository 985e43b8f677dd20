"""Rectangular AOIs: the computed centre-rule mask equals rasterio's ``geometry_mask``.

The fast path (an axis-aligned rectangle on a north-up grid: a row test times a column
test, no rasterization) is checked against the general path on random grids and boxes whose
edges fall on pixel edges, pixel centres and quarter pixels - the ties where a rule or an
arithmetic that differs from GDAL's would show - and every other shape or grid is checked to
be rasterized as before.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rasterio.features import geometry_mask

from rasteret.read import mask as mask_module
from rasteret.read.mask import geometry_inside


def rasterio_mask(
    geom: shapely.Geometry, transform: tuple[float, ...], shape: tuple[int, int], touched: bool
) -> np.ndarray:
    return geometry_mask(
        [geom], out_shape=shape, transform=Affine(*transform), all_touched=touched, invert=True
    )


steps = st.sampled_from([10.0, 20.0, 30.0, 1.0, 0.1, 0.0001, 0.000089831528412])
origins = st.sampled_from([500000.0, 0.0, 12.345, -180.0, 699960.0, 4600000.0, 53.21])
# an edge position in pixels: on a pixel edge, on a pixel centre, on a quarter, or anywhere
positions = st.one_of(
    st.integers(-3, 43).map(float),
    st.integers(-3, 43).map(lambda k: k + 0.5),
    st.integers(-12, 172).map(lambda k: k / 4),
    st.floats(-3, 43),
)


@settings(max_examples=400, deadline=None)
@given(
    a=steps,
    ratio=st.sampled_from([1.0, 2.0, 0.5]),
    c=origins,
    f=origins,
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    xs=st.tuples(positions, positions),
    ys=st.tuples(positions, positions),
)
@example(  # found on Python 3.13: extents of 3.5e-265 make a box whose area underflows to 0
    a=10.0, ratio=1.0, c=0.0, f=0.0, height=1, width=1,
    xs=(0.0, 3.5164956427492745e-266), ys=(0.0, 3.5164956427492745e-266),
)  # fmt: skip
def test_a_rectangle_s_mask_equals_rasterio_s(
    a: float,
    ratio: float,
    c: float,
    f: float,
    height: int,
    width: int,
    xs: tuple[float, float],
    ys: tuple[float, float],
) -> None:
    e = -a * ratio
    (x0, x1), (y0, y1) = sorted(xs), sorted(ys)
    if x0 == x1 or y0 == y1:
        return
    box = shapely.box(c + x0 * a, f + y1 * e, c + x1 * a, f + y0 * e)
    transform = (a, 0.0, c, 0.0, e, f)
    if box.area == 0:  # edges a hair apart collapse in world coordinates
        assert mask_module._rectangle(box) is None
        return
    assert mask_module._rectangle(box) is not None  # the fast path is taken
    got = geometry_inside(box, transform, (height, width), all_touched=False)
    np.testing.assert_array_equal(got, rasterio_mask(box, transform, (height, width), False))


def test_ties_on_every_edge() -> None:
    """Edges exactly on pixel centres and pixel edges, one at a time."""
    transform = (10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)
    for k in np.arange(-1, 12, 0.5):
        for edge in range(4):
            bounds = [500020.0, 4599920.0, 500080.0, 4599980.0]
            bounds[edge] = (500000.0 + 10 * k) if edge % 2 == 0 else (4600000.0 - 10 * k)
            if bounds[0] >= bounds[2] or bounds[1] >= bounds[3]:
                continue
            box = shapely.box(*bounds)
            got = geometry_inside(box, transform, (10, 10), all_touched=False)
            np.testing.assert_array_equal(got, rasterio_mask(box, transform, (10, 10), False))


SHAPES = {
    "triangle": shapely.Polygon([(2, 2), (30, 2), (2, 30)]),
    "rectangle with a sixth vertex": shapely.Polygon([(2, 2), (15, 2), (30, 2), (30, 30), (2, 30)]),
    "bowtie": shapely.Polygon([(2, 2), (30, 30), (30, 2), (2, 30)]),
    "rotated square": shapely.Polygon([(16, 2), (30, 16), (16, 30), (2, 16)]),
    "rectangle with a hole": shapely.box(2, 2, 30, 30).difference(shapely.box(10, 10, 20, 20)),
    "multipolygon": shapely.MultiPolygon([shapely.box(2, 2, 10, 10), shapely.box(20, 20, 30, 30)]),
}


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("touched", [False, True])
def test_other_shapes_and_all_touched_are_rasterized(name: str, touched: bool) -> None:
    geom = SHAPES[name]
    transform = (1.0, 0.0, 0.0, 0.0, -1.0, 32.0)
    assert mask_module._rectangle(geom) is None
    got = geometry_inside(geom, transform, (32, 32), all_touched=touched)
    np.testing.assert_array_equal(got, rasterio_mask(geom, transform, (32, 32), touched))


@pytest.mark.parametrize(
    "transform",
    [
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),  # south-up
        (-1.0, 0.0, 32.0, 0.0, -1.0, 32.0),  # mirrored
        (1.0, 0.1, 0.0, 0.1, -1.0, 32.0),  # rotated
    ],
)
def test_rectangles_on_other_grids_are_rasterized(transform: tuple[float, ...]) -> None:
    box = shapely.box(3.5, 4.25, 20.5, 25.0)
    assert not mask_module._north_up(transform)
    for touched in (False, True):
        got = geometry_inside(box, transform, (32, 32), all_touched=touched)
        np.testing.assert_array_equal(got, rasterio_mask(box, transform, (32, 32), touched))


def test_all_touched_rectangles_are_rasterized(monkeypatch: pytest.MonkeyPatch) -> None:
    """GDAL's all-touched burn of a rectangle's outline has quirks on pixel edges that no
    row-times-column rule reproduces: it stays with the rasterizer."""
    called: list[bool] = []
    monkeypatch.setattr(
        mask_module, "_rectangle_inside", lambda *a: called.append(True) or np.zeros((1, 1))
    )
    box = shapely.box(3.5, 4.25, 20.5, 25.0)
    transform = (1.0, 0.0, 0.0, 0.0, -1.0, 32.0)
    got = geometry_inside(box, transform, (32, 32), all_touched=True)
    assert not called
    np.testing.assert_array_equal(got, rasterio_mask(box, transform, (32, 32), True))
