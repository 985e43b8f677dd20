"""Saying so when a read's AOIs or points meet no record of the collection.

A read whose geometries lie outside every record returns an empty result: no entry from
``get_numpy``, no row from ``sample_points``. The usual cause is a mistake, latitude given
before longitude or a wrong ``geometry_crs``, so the read warns (:class:`NoOverlapWarning`)
with both extents, and says when the coordinates with x and y swapped would meet records.

Callers that split one read into many (a Dask partition of points) read in
:func:`quiet_no_overlap`: one part outside every record is expected there.

>>> _box((1.0, 2.0, 3.0, 4.0))
'[1, 2, 3, 4]'
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import FrameType
from typing import Any

from rasteret._warn import warn
from rasteret.errors import NoOverlapWarning

__all__ = ["quiet_no_overlap", "warn_if_no_overlap"]

_QUIET: ContextVar[bool] = ContextVar("rasteret_quiet_no_overlap", default=False)
_PACKAGE = str(Path(__file__).resolve().parent)


@contextmanager
def quiet_no_overlap() -> Iterator[None]:
    """Within it (this thread or task only), :func:`warn_if_no_overlap` stays quiet."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def warn_if_no_overlap(filtered: Any, bounds: tuple[float, float, float, float], what: str) -> None:
    """Warn that ``what`` (CRS84 ``bounds``) meets no record of ``filtered`` (the collection
    after the read's filters), unless ``filtered`` has no record at all or we are quiet. The
    warning points at the first line outside rasteret (the user's call)."""
    if _QUIET.get():
        return
    covered = filtered.bounds
    if covered is None:  # the filters left nothing: an empty result is what was asked for
        return
    xmin, ymin, xmax, ymax = bounds
    message = (
        f"no record meets the {what}: they lie within {_box(bounds)} (CRS84), the records "
        f"within {_box(covered)}; the result is empty"
    )
    if len(filtered.subset(bbox=(ymin, xmin, ymax, xmax))) > 0:
        message += (
            "; with x and y swapped they would meet records: give longitude (or easting) "
            "as x and latitude (or northing) as y, or check geometry_crs"
        )
    warn(message, NoOverlapWarning, stacklevel=_user_level())


def _user_level() -> int:
    """The ``stacklevel`` that :func:`warn_if_no_overlap` gives :func:`rasteret._warn.warn`
    for the first frame outside rasteret (1: its own line, 2: its caller's, ...)."""
    level = 2
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    return level


def _box(bounds: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in bounds) + "]"
