"""rasteret's warnings, made safe from threads that silence every warning for a moment.

rasterio's ``rasterize`` (under ``geometry_mask``) runs inside ``warnings.catch_warnings()``
with ``simplefilter("ignore")``. The warning filters are process-wide, so while an AOI mask
is rasterized on a decode thread, a warning issued on any other thread vanishes: a read
could skip a record and say nothing. Code that changes the filters like that holds
:func:`warnings_lock`, and rasteret warns through :func:`warn`, which holds it too.

>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     warn("2 records skipped", UserWarning)
>>> str(caught[0].message)
'2 records skipped'
"""

from __future__ import annotations

import os
import threading
import warnings

__all__ = ["warn", "warnings_lock"]

_lock = threading.RLock()


def warnings_lock() -> threading.RLock:
    """The lock held while the process's warning filters are changed, and while warning."""
    return _lock


def warn(message: str, category: type[Warning], *, stacklevel: int = 1) -> None:
    """``warnings.warn`` while no rasteret thread has every warning filtered out.

    ``stacklevel`` counts as in ``warnings.warn`` from the caller (1: the caller's line).
    URLs in ``message`` lose their credentials (:func:`rasteret.io.urls.redact_text`).
    """
    from rasteret.io.urls import redact_text

    with _lock:
        warnings.warn(redact_text(message), category, stacklevel=stacklevel + 1)


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.RLock()  # a thread of the parent may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
