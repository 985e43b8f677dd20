"""``read_chips(..., stack=True)``: chips assembled straight into one [N, C, H, W] array.

The fast path (no chip buffers, no copy after the last chip) must give exactly the chips of
the general path, and fall back to no stack whenever one array cannot hold every chip.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np
import pytest
from read_support import box, record, write_cog

from rasteret._sync import run
from rasteret.errors import RasteretWarning, SchemaError
from rasteret.read import ReadOptions, plan_read, read_chips
from rasteret.read.cache import clear_tile_cache
from rasteret.read.execute import execute_plan_async, stack_shape
from rasteret.read.result import ChipSet


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stack")
    return {
        "chunky": write_cog(d / "chunky.tif", count=3, size=(700, 500)),
        **{f"s{i}": write_cog(d / f"s{i}.tif", seed=20 + i) for i in range(3)},
    }


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    clear_tile_cache()


def assert_same_chips(fast: ChipSet, general: ChipSet) -> None:
    assert len(fast) == len(general)
    for a, b in zip(fast.chips, general.chips, strict=True):
        assert (a.record_index, a.aoi_index, a.transform) == (
            b.record_index,
            b.aoi_index,
            b.transform,
        )
        np.testing.assert_array_equal(a.data, b.data, strict=True)
        np.testing.assert_array_equal(a.valid, b.valid, strict=True)


@pytest.mark.parametrize("cache_mb", [0, 64])
def test_stacked_read_equals_the_general_path(files: dict[str, Path], cache_mb: int) -> None:
    recs = [record("c", files["chunky"], 3)] + [record(f"s{i}", files[f"s{i}"]) for i in range(3)]
    # equal-size AOIs: inside, across the image edge (filled), and overlapping each other
    aois = [box(10, 10, 110, 90), box(640, 450, 740, 530), box(60, 40, 160, 120)]
    opts = ReadOptions(cache_mb=cache_mb)
    general = read_chips(recs, aois, 32633, ["b1"], opts)
    clear_tile_cache()
    fast = read_chips(recs, aois, 32633, ["b1"], opts, stack=True)
    assert general.stack is None
    assert fast.stack is not None
    assert fast.stack.shape == (len(fast), 1, 80, 100)
    assert_same_chips(fast, general)
    for i, chip in enumerate(fast.chips):
        assert np.shares_memory(chip.data, fast.stack[i])
        np.testing.assert_array_equal(fast.stack[i], general.chips[i].data)


def test_stacked_read_of_several_bands(files: dict[str, Path]) -> None:
    rec = record("c", files["chunky"], 3)
    aois = [box(0, 0, 300, 200), box(500, 350, 800, 550)]
    general = read_chips([rec], aois, 32633, ["b3", "b1"], ReadOptions(cache_mb=0))
    fast = read_chips([rec], aois, 32633, ["b3", "b1"], ReadOptions(cache_mb=0), stack=True)
    assert fast.stack is not None
    assert fast.stack.shape == (2, 2, 200, 300)
    assert_same_chips(fast, general)


def test_no_stack_when_chips_differ_in_shape(files: dict[str, Path]) -> None:
    rec = record("s", files["s0"])
    aois = [box(0, 0, 50, 50), box(0, 0, 60, 50)]
    fast = read_chips([rec], aois, 32633, ["b1"], ReadOptions(cache_mb=0), stack=True)
    general = read_chips([rec], aois, 32633, ["b1"], ReadOptions(cache_mb=0))
    assert fast.stack is None
    assert_same_chips(fast, general)


def test_no_stack_when_a_chip_is_left_out(tmp_path: Path, files: dict[str, Path]) -> None:
    gone = tmp_path / "gone.tif"
    gone.write_bytes(files["s1"].read_bytes())
    recs = [record("ok", files["s0"]), record("gone", gone)]
    gone.unlink()
    opts = ReadOptions(cache_mb=0, on_error="skip", retries=0)
    with pytest.warns(RasteretWarning, match="could not be fetched"):
        fast = read_chips(recs, [box(0, 0, 50, 50)], 32633, ["b1"], opts, stack=True)
    with pytest.warns(RasteretWarning, match="could not be fetched"):
        general = read_chips(recs, [box(0, 0, 50, 50)], 32633, ["b1"], opts)
    assert fast.stack is None
    assert len(fast) == 1
    assert_same_chips(fast, general)


def test_out_of_the_wrong_shape_is_refused(files: dict[str, Path]) -> None:
    rec = record("s", files["s0"])
    plan = plan_read([rec], [box(0, 0, 50, 40)], 32633, ["b1"], ReadOptions())
    assert stack_shape(plan) == (1, 1, 40, 50)
    with pytest.raises(SchemaError, match=r"expected out of shape \(1, 1, 40, 50\)"):
        run(execute_plan_async(plan, [rec], ReadOptions(), out=np.empty((1, 1, 40, 49), "uint16")))


def test_a_held_stack_is_never_overwritten_by_later_reads(files: dict[str, Path]) -> None:
    """The returned stack is the user's: reads of the same shape after it (which recycle
    each other's memory) leave it as it was."""
    recs = [record(f"s{i}", files[f"s{i}"]) for i in range(3)]
    opts = ReadOptions(cache_mb=0)
    held = read_chips(recs, [box(10, 10, 110, 90)], 32633, ["b1"], opts, stack=True).stack
    assert held is not None
    snapshot = held.copy()
    for shift in (5, 20, 40):  # other windows, same shape
        other = read_chips(recs, [box(10 + shift, 10, 110 + shift, 90)], 32633, ["b1"], opts,
                           stack=True)  # fmt: skip
        assert other.stack is not None
        assert not np.shares_memory(other.stack, held)
        del other
    np.testing.assert_array_equal(held, snapshot, strict=True)


def test_a_let_go_stack_is_reused_and_fully_overwritten(files: dict[str, Path]) -> None:
    """A stack comes from recycled memory: the next same-shaped read reuses a dropped one
    (filled with garbage here) and still equals the general path, edges and fill included."""
    from rasteret.read.buffers import tile_buffers

    recs = [record("c", files["chunky"], 3)] + [record(f"s{i}", files[f"s{i}"]) for i in range(3)]
    opts = ReadOptions(cache_mb=0)
    first = read_chips(recs, [box(10, 10, 110, 90)], 32633, ["b1"], opts, stack=True)
    assert first.stack is not None
    first.stack[...] = 54321  # garbage left behind
    address = first.stack.__array_interface__["data"][0]
    pool = tile_buffers()
    returned = pool.free_bytes + first.stack.nbytes
    del first
    # A decoding thread may hold the last view a moment longer (its frame is left only when
    # the thread runs again, later on a loaded machine): wait for the memory to come back.
    deadline = time.monotonic() + 10
    while pool.free_bytes < returned and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert pool.free_bytes >= returned
    reused = pool.reused
    aois = [box(550, 350, 650, 430)]  # across the 600 x 400 images' edge: filled pixels too
    fast = read_chips(recs, aois, 32633, ["b1"], opts, stack=True)
    assert fast.stack is not None
    assert fast.stack.__array_interface__["data"][0] == address
    assert tile_buffers().reused > reused
    assert_same_chips(fast, read_chips(recs, aois, 32633, ["b1"], opts))
