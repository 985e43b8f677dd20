"""Reads whose AOIs or points meet no record say so (NoOverlapWarning) instead of returning an
empty result in silence, and say when x and y look swapped; filters that leave no record, a
read that meets records, and a Dask partition outside every record stay quiet."""

from __future__ import annotations

import warnings
from typing import Any

import pyarrow as pa
import pytest
import shapely

import rasteret
from rasteret._no_overlap import quiet_no_overlap
from rasteret.errors import NoOverlapWarning
from rasteret.testing.scenes import local_records, monthly_series, scene_footprint

SPECS = monthly_series("scene", 2, size=200)
SWAPPED = "with x and y swapped they would meet records"


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Any:
    records = local_records(SPECS, tmp_path_factory.mktemp("scenes"))
    return rasteret.build_from_table(records, enrich_cog=True, progress=False)


def _centre() -> shapely.Point:
    """A point both records cover."""
    return scene_footprint(SPECS[0]).intersection(scene_footprint(SPECS[1])).centroid


def _box(x: float, y: float) -> shapely.Polygon:
    return shapely.box(x - 0.001, y - 0.001, x + 0.001, y + 0.001)


@pytest.mark.parametrize("method", ["get_numpy", "get_xarray", "get_gdf"])
def test_swapped_aois_warn_and_say_so(collection: Any, method: str) -> None:
    c = _centre()
    with pytest.warns(NoOverlapWarning, match=SWAPPED) as caught:
        result = getattr(collection, method)(_box(c.y, c.x), bands=["B04"])
    assert len(result) == 0 or dict(result.sizes)["time"] == 0
    (warning,) = [w for w in caught if w.category is NoOverlapWarning]
    assert warning.filename == __file__  # the user's line, not rasteret's
    message = str(warning.message)
    assert "no record meets the AOIs" in message
    assert "(CRS84), the records within [" in message


def test_swapped_points_warn_and_say_so(collection: Any) -> None:
    c = _centre()
    with pytest.warns(NoOverlapWarning, match=SWAPPED) as caught:
        table = collection.sample_points([shapely.Point(c.y, c.x)], bands=["B04"])
    assert table.num_rows == 0
    assert [w.filename for w in caught if w.category is NoOverlapWarning] == [__file__]
    assert "no record meets the points" in str(caught[0].message)


def test_far_points_warn_without_the_swap_hint(collection: Any) -> None:
    with pytest.warns(NoOverlapWarning) as caught:
        table = collection.sample_points(pa.table({"x": [-120.0], "y": [-40.0]}), "B04",
                                         geometry_crs=4326)  # fmt: skip
    assert table.num_rows == 0
    message = str(caught[0].message)
    assert "they lie within [-120, -40, -120, -40]" in message
    assert SWAPPED not in message


def test_quiet_when_filters_leave_no_record_or_records_are_met(collection: Any) -> None:
    c = _centre()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        late = collection.get_numpy(
            _box(c.x, c.y), ["B04"], date_range=("2030-01-01", "2030-12-31")
        )
        assert len(late) == 0  # nothing left after the filter: what was asked for
        both = collection.get_numpy([_box(c.x, c.y), _box(c.y, c.x)], ["B04"])
        assert len(both) == 2  # one AOI meets both records: no warning for the other
        points = collection.sample_points([shapely.Point(c.x, c.y)], "B04")
        assert points.num_rows == 2


def test_quiet_inside_quiet_no_overlap(collection: Any) -> None:
    c = _centre()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quiet_no_overlap():
            assert collection.sample_points([shapely.Point(c.y, c.x)], "B04").num_rows == 0
    with pytest.warns(NoOverlapWarning):  # and only inside
        collection.sample_points([shapely.Point(c.y, c.x)], "B04")


def test_a_dask_partition_outside_every_record_is_quiet(collection: Any) -> None:
    pytest.importorskip("dask")
    from rasteret.dask.points import sample_partition

    c = _centre()
    outside = pa.table({"site": ["far"], "geometry": [shapely.Point(c.y, c.x).wkb]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = sample_partition(collection.to_table(), outside, ["B04"], {}, None)
    assert table.num_rows == 0
