"""rasteret's warnings survive rasterio silencing every warning on a decode thread.

rasterio's ``rasterize`` (under ``geometry_mask``, which AOI masks use on decode threads)
filters out every warning process-wide while it runs. A warning rasteret issues meanwhile on
another thread must still reach the user.
"""

from __future__ import annotations

import threading
import warnings

import pytest

from rasteret._warn import warn, warnings_lock
from rasteret.errors import RasteretWarning


def _silencing_thread(entered: threading.Event, leave: threading.Event) -> threading.Thread:
    """A thread that silences every warning as rasterio's rasterize does, under the lock."""

    def run() -> None:
        with warnings_lock(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            entered.set()
            leave.wait(10)

    return threading.Thread(target=run)


def test_a_warning_waits_for_a_thread_that_silences_warnings() -> None:
    entered, leave = threading.Event(), threading.Event()
    silencer = _silencing_thread(entered, leave)
    with warnings.catch_warnings(record=True) as caught:  # as pytest.warns around a read
        warnings.simplefilter("always")
        silencer.start()
        assert entered.wait(10)
        warner = threading.Thread(target=warn, args=("3 records skipped", RasteretWarning))
        warner.start()
        warner.join(0.2)
        assert warner.is_alive()  # waiting for the silenced moment to end
        leave.set()
        warner.join(10)
        silencer.join(10)
    assert [(w.category, str(w.message)) for w in caught] == [
        (RasteretWarning, "3 records skipped")
    ]


def test_warn_points_at_the_caller() -> None:
    with pytest.warns(UserWarning, match="here") as caught:
        warn("here", UserWarning)
    assert caught[0].filename == __file__


def test_geometry_masks_hold_the_lock() -> None:
    """``geometry_inside`` (rasterio's rasterize) runs only while no warning is being issued.

    A triangle: rectangles get their mask without rasterio (no lock needed)."""
    import shapely

    from rasteret.read import mask

    with warnings_lock():
        done = threading.Event()

        def rasterize() -> None:
            triangle = shapely.Polygon([(0, 0), (3, 0), (0, 2)])
            mask.geometry_inside(
                triangle, (1.0, 0.0, 0.0, 0.0, -1.0, 2.0), (2, 3), all_touched=False
            )
            done.set()

        worker = threading.Thread(target=rasterize)
        worker.start()
        assert not done.wait(0.2)  # blocked while this thread holds the lock
    assert done.wait(10)
    worker.join(10)
