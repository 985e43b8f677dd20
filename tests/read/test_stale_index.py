"""A file replaced after it was indexed: reads say the index is stale (which file, what was
indexed, what is there now) instead of a bare decode error, for chips and for points, and
``on_error="skip"`` reports it per (record, band). A corrupt tile of an unchanged file is
still a DecodeError."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

import rasteret
from rasteret.errors import DecodeError, RasteretWarning, StaleIndexError
from rasteret.read.cache import clear_tile_cache
from rasteret.testing.scenes import monthly_series, record_table, scene_footprint, write_scene

SPECS = monthly_series("scene", 2, size=300)


@pytest.fixture
def scenes(tmp_path: Path) -> tuple[Path, Any]:
    for spec in SPECS:
        write_scene(spec, tmp_path)
    hrefs = {s.scene_id: {"B04": str(tmp_path / f"{s.scene_id}_B04.tif")} for s in SPECS}
    collection = rasteret.build_from_table(
        record_table(SPECS, hrefs), enrich_cog=True, progress=False
    )
    clear_tile_cache()
    return tmp_path, collection


def _aoi() -> shapely.Polygon:
    c = scene_footprint(SPECS[0]).centroid
    return shapely.box(c.x - 0.002, c.y - 0.002, c.x + 0.002, c.y + 0.002)


def _replace_first_scene(folder: Path) -> Path:
    """scene-0's B04 overwritten in place by scene-1's B08 (same grid, other tiles)."""
    target = folder / "scene-0_B04.tif"
    shutil.copy(folder / "scene-1_B08.tif", target)
    return target


def test_chips_of_a_replaced_file_say_the_index_is_stale(scenes: tuple[Path, Any]) -> None:
    folder, collection = scenes
    before = collection.get_numpy(_aoi(), "B04")
    clear_tile_cache()
    target = _replace_first_scene(folder)
    with pytest.raises(StaleIndexError) as caught:
        collection.get_numpy(_aoi(), "B04", cache_mb=0)
    message = str(caught.value)
    assert str(target) in message
    assert "as indexed" in message
    assert "force=True" in message
    assert before.shape[0] == 2


def test_points_of_a_replaced_file_say_the_index_is_stale(scenes: tuple[Path, Any]) -> None:
    folder, collection = scenes
    _replace_first_scene(folder)
    with pytest.raises(StaleIndexError, match=r"scene-0_B04\.tif"):
        collection.sample_points([_aoi().centroid], "B04", cache_mb=0)


def test_skip_reports_the_stale_file_and_reads_the_others(scenes: tuple[Path, Any]) -> None:
    folder, collection = scenes
    expected, index = collection.get_numpy(_aoi(), "B04", return_index=True)
    clear_tile_cache()
    _replace_first_scene(folder)
    with pytest.warns(RasteretWarning, match="StaleIndexError"):
        got, got_index = collection.get_numpy(
            _aoi(), "B04", return_index=True, on_error="skip", cache_mb=0
        )
    assert list(got_index.record_id) == ["scene-1"]
    np.testing.assert_array_equal(got[0], expected[list(index.record_id).index("scene-1")])


class _GarbageReader:
    """A backend whose bytes are all garbage and which cannot HEAD: nothing tells a stale
    index from a corrupt file, so the decode error stays what it is."""

    async def get_range(self, path: str, start: int, end: int) -> bytes:
        return b"\x07" * (end - start)

    async def get_ranges(self, path: str, starts: list[int], ends: list[int]) -> list[bytes]:
        return [b"\x07" * (e - s) for s, e in zip(starts, ends, strict=True)]


def test_corrupt_bytes_without_a_head_stay_a_decode_error(scenes: tuple[Path, Any]) -> None:
    _, collection = scenes
    with pytest.raises(DecodeError) as caught:
        collection.get_numpy(_aoi(), "B04", backend=_GarbageReader(), cache_mb=0)
    assert not isinstance(caught.value, StaleIndexError)
