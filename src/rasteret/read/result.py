"""What a read returns: one :class:`Chip` per (record, AOI) pair, gathered in a :class:`ChipSet`.

>>> import numpy as np
>>> chip = Chip(0, 0, "r1", None, np.zeros((1, 2, 2), "uint8"), np.ones((1, 2, 2), bool),
...             (10.0, 0.0, 0.0, 0.0, -10.0, 20.0), "EPSG:32633")
>>> chip.shape, chip.bounds
((1, 2, 2), (0.0, 0.0, 20.0, 20.0))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from rasteret.errors import ReadError
from rasteret.read.plan import SkippedRecord

__all__ = ["Chip", "ChipSet", "FailedRead"]


@dataclass(frozen=True, slots=True, eq=False)
class Chip:
    """The pixels of one record over one AOI, on the AOI's output grid."""

    record_index: int
    """Position of the record in the ``records`` passed to the read."""
    aoi_index: int
    """Position of the AOI in the ``aois`` passed to the read."""
    record_id: str
    datetime: datetime | None
    data: np.ndarray
    """``[C, H, W]``, one channel per requested band (request order); invalid pixels hold
    the band's fill value."""
    valid: np.ndarray
    """``[C, H, W]`` bool: inside the AOI polygon, inside the raster, not nodata and not
    masked by the file's internal mask."""
    transform: tuple[float, float, float, float, float, float]
    """Affine ``(a, b, c, d, e, f)`` of the chip grid."""
    crs: str
    """``EPSG:n`` when the CRS has a code, else WKT."""

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.data.shape
        return c, h, w

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the chip's outer pixel edges."""
        a, _, c, _, e, f = self.transform
        _, h, w = self.data.shape
        xs, ys = (c, c + a * w), (f, f + e * h)
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True, slots=True)
class FailedRead:
    """A (record, band) left out of a read with ``on_error="skip"``."""

    record_index: int
    """Position of the record in the ``records`` passed to the read."""
    record_id: str
    band: str
    error: str
    """The error of the first of its tiles that failed (type and message)."""


@dataclass(frozen=True, slots=True, eq=False)
class ChipSet:
    """Every chip of a read, in record-major order (records, then AOIs, as given)."""

    chips: list[Chip]
    bands: tuple[str, ...]
    fill_values: tuple[float, ...]
    """Per band: the value invalid pixels hold (``fill_value=``, else nodata, else 0)."""
    dtype: np.dtype
    """dtype of every chip's ``data``."""
    crs: str
    """The output CRS shared by every chip."""
    nodata: tuple[float | None, ...] = ()
    """Per band: the nodata the records declare (None when none does)."""
    lattice: tuple[float, float, float, float] | None = None
    """``(origin_x, origin_y, res_x, res_y)``: every chip grid lies on this lattice, so chips
    of different AOIs can be placed on one mosaic grid by whole-pixel offsets. None when
    ``out_shape=`` gave each AOI its own pixel size."""
    skipped: tuple[SkippedRecord, ...] = field(default=())
    """Records left out because of missing band metadata (``on_missing="skip"``)."""
    failed: tuple[FailedRead, ...] = field(default=())
    """(record, band) pairs whose chips were left out because tile bytes could not be
    fetched or decoded (``on_error="skip"``)."""
    stack: np.ndarray | None = None
    """``[N, C, H, W]`` holding every chip's ``data`` (``stack[i]`` is ``chips[i].data``, the
    same memory) when the read was asked to assemble into one array (``read_chips(...,
    stack=True)``) and every chip of its plan was read; None otherwise."""

    def __len__(self) -> int:
        return len(self.chips)

    @property
    def fill_value(self) -> float:
        """The fill value shared by every band.

        Raises:
            ReadError: the bands have different fill values (use :attr:`fill_values`).
        """
        if len(set(self.fill_values)) > 1 and not all(v != v for v in self.fill_values):
            raise ReadError(
                f"expected one fill value for bands {self.bands}, got {self.fill_values}; "
                "use ChipSet.fill_values"
            )
        return self.fill_values[0]

    def problem_attrs(self) -> dict[str, list[str]]:
        """What the read left out, as attribute values netCDF can store (lists of strings).

        Empty when nothing was left out. ``get_xarray`` puts these in ``Dataset.attrs`` and
        ``get_gdf`` in ``GeoDataFrame.attrs``.

        >>> cs = ChipSet([], ("B04",), (0,), np.dtype("uint16"), "EPSG:32633",
        ...              skipped=(SkippedRecord(1, "s2", ("B04",)),),
        ...              failed=(FailedRead(0, "s1", "B04", "FetchError: 404"),))
        >>> cs.problem_attrs()
        {'rasteret_skipped': ['s2: no metadata for B04'], 'rasteret_failed': ['s1/B04: FetchError: 404']}
        """
        attrs: dict[str, list[str]] = {}
        if self.skipped:
            attrs["rasteret_skipped"] = [
                f"{s.record_id}: no metadata for {', '.join(s.missing_bands)}" for s in self.skipped
            ]
        if self.failed:
            attrs["rasteret_failed"] = [f"{f.record_id}/{f.band}: {f.error}" for f in self.failed]
        return attrs
