"""How point plans take their pixels, set for a test: every plan on mosaics, or none."""

from __future__ import annotations

from typing import Any

import pytest

from rasteret.read import points as points_mod
from rasteret.read import sample as sample_mod

ALWAYS, NEVER = 0, 2**62
"""Thresholds of pixels per tile that put every plan on mosaics, or none."""


def gather_by(monkeypatch: pytest.MonkeyPatch, way: str) -> None:
    """Make every point plan take its pixels ``way``: ``"mosaic"`` (whatever the density,
    and even while a read still waits for its bytes) or ``"tile_by_tile"``."""
    if way not in ("mosaic", "tile_by_tile"):
        raise ValueError(f"expected 'mosaic' or 'tile_by_tile', got {way!r}")
    mosaic = way == "mosaic"
    monkeypatch.setattr(points_mod, "MOSAIC_MIN_PIXELS_PER_TILE", ALWAYS if mosaic else NEVER)
    if mosaic:  # reads pass plan_points the event of their first bytes (its 9th argument)
        plan = points_mod.plan_points

        def without_waiting(*args: Any) -> Any:
            return plan(*args[:8])

        monkeypatch.setattr(sample_mod, "plan_points", without_waiting)
