"""NumPy output: the chips of a read stacked as ``[N, C, H, W]`` (``[N, H, W]`` for one band).

Entries follow the read's chip order: record-major (records in collection order, then AOIs
in the order given). Every entry has the same shape: AOIs clipped by a scene edge are
filled, not cropped. Chips of different AOIs may differ by one pixel per axis because each
AOI's bounds are snapped outward to the pixel grid; such chips are padded at the bottom and
right with the fill value (invalid). AOIs of really different sizes cannot share one array:
pass ``out_shape=`` or use ``get_gdf``.

>>> import numpy as np
>>> from rasteret.read.result import Chip, ChipSet
>>> t = (10.0, 0.0, 0.0, 0.0, -10.0, 0.0)
>>> chips = [Chip(i, 0, f"r{i}", None, np.full((1, 2, 3), i, "uint8"), np.ones((1, 2, 3), bool),
...               t, "EPSG:32633") for i in range(2)]
>>> cs = ChipSet(chips, ("B04",), (0,), np.dtype("uint8"), "EPSG:32633")
>>> arr, index = chips_to_numpy(cs, return_index=True)
>>> arr.shape, index.record_id.tolist(), index.aoi_index.tolist()
((2, 2, 3), ['r0', 'r1'], [0, 0])
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal, overload

import numpy as np

from rasteret.errors import ReadError
from rasteret.read.plan import SkippedRecord
from rasteret.read.result import ChipSet, FailedRead

__all__ = ["MAX_PAD_PIXELS", "ChipIndex", "chips_to_numpy"]

MAX_PAD_PIXELS = 1
"""Largest shape difference (per axis) between chips that is padded rather than refused."""


@dataclass(frozen=True, slots=True)
class ChipIndex:
    """What each entry of the stacked array is; one element per entry."""

    record_index: np.ndarray
    """Position of the record in the read (int64)."""
    record_id: np.ndarray
    """Record ids (object array of str)."""
    datetime: np.ndarray
    """Record datetimes (``datetime64[us]``, NaT when unknown)."""
    aoi_index: np.ndarray
    """Position of the AOI in the geometries passed (int64)."""
    transform: list[tuple[float, float, float, float, float, float]]
    """Affine ``(a, b, c, d, e, f)`` of each entry's grid."""
    crs: str
    """CRS of every entry."""
    skipped: tuple[SkippedRecord, ...] = ()
    """Records left out for lack of band metadata (``on_missing="skip"``); none of them has
    an entry."""
    failed: tuple[FailedRead, ...] = ()
    """(record, band) pairs that could not be fetched or decoded (``on_error="skip"``); the
    chips of those records over the AOIs concerned have no entry."""

    def to_dict(self) -> dict[str, Any]:
        """The index as plain columns (e.g. for ``pandas.DataFrame``)."""
        return {
            "record_index": self.record_index,
            "record_id": self.record_id,
            "datetime": self.datetime,
            "aoi_index": self.aoi_index,
            "transform": self.transform,
        }


@overload
def chips_to_numpy(
    chipset: ChipSet, *, return_index: Literal[False] = ..., masked: bool = ...
) -> np.ndarray: ...
@overload
def chips_to_numpy(
    chipset: ChipSet, *, return_index: Literal[True], masked: bool = ...
) -> tuple[np.ndarray, ChipIndex]: ...
def chips_to_numpy(
    chipset: ChipSet, *, return_index: bool = False, masked: bool = False
) -> np.ndarray | tuple[np.ndarray, ChipIndex]:
    """Stack the chips of ``chipset`` into one array.

    Args:
        chipset: The result of :func:`rasteret.read.read_chips`.
        return_index: Also return a :class:`ChipIndex` naming each entry.
        masked: Return a ``numpy.ma.MaskedArray`` masked where pixels are invalid.

    Returns:
        ``[N, C, H, W]``, or ``[N, H, W]`` when one band was read; with ``return_index``, the
        array and its :class:`ChipIndex`.

    Raises:
        ReadError: chips differ in shape by more than :data:`MAX_PAD_PIXELS` per axis.
    """
    chips = chipset.chips
    nbands = len(chipset.bands)
    if chips:
        height = max(c.data.shape[1] for c in chips)
        width = max(c.data.shape[2] for c in chips)
        small = [c for c in chips if c.data.shape[1:] != (height, width)]
        worst = max(
            (max(height - c.data.shape[1], width - c.data.shape[2]) for c in small), default=0
        )
        if worst > MAX_PAD_PIXELS:
            shapes = sorted({c.data.shape[1:] for c in chips})
            raise ReadError(
                f"expected chips of one shape to stack into [N, C, H, W], got shapes "
                f"{shapes[:5]}{' ...' if len(shapes) > 5 else ''} (AOIs of different sizes); "
                "pass out_shape=(H, W) for equal chips, or use get_gdf() for one array per AOI"
            )
    else:
        height = width = 0
    fills = np.array(chipset.fill_values, dtype=chipset.dtype).reshape(1, nbands, 1, 1)
    stack = chipset.stack
    if stack is not None and stack.shape[0] != len(chips):
        stack = None
    # the read assembled every chip into the stack: no copy
    data = np.empty((len(chips), nbands, height, width), chipset.dtype) if stack is None else stack
    valid = np.zeros(data.shape, dtype=bool) if masked else None
    for i, chip in enumerate(chips):
        _, h, w = chip.data.shape
        if stack is None:
            if (h, w) != (height, width):
                data[i] = fills[0]
            data[i, :, :h, :w] = chip.data
        if valid is not None:
            valid[i, :, :h, :w] = chip.valid
    out: np.ndarray = data if valid is None else np.ma.MaskedArray(data, mask=~valid)
    if nbands == 1:
        out = out[:, 0]
    if not return_index:
        return out
    index = ChipIndex(
        record_index=np.array([c.record_index for c in chips], dtype=np.int64),
        record_id=np.array([c.record_id for c in chips], dtype=object),
        datetime=np.array(
            [
                np.datetime64("NaT", "us") if c.datetime is None else _datetime64(c.datetime)
                for c in chips
            ],
            dtype="datetime64[us]",
        ),
        aoi_index=np.array([c.aoi_index for c in chips], dtype=np.int64),
        transform=[c.transform for c in chips],
        crs=chipset.crs,
        skipped=chipset.skipped,
        failed=chipset.failed,
    )
    return out, index


def _datetime64(value: Any) -> np.datetime64:
    if getattr(value, "tzinfo", None) is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(value, "us")
