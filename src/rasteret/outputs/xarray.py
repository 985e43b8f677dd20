"""xarray output: the chips of a read mosaicked into one ``xarray.Dataset`` (time, y, x).

One variable per band (named after the band, native dtype), on ONE grid covering every chip.
Chips of different AOIs lie on a common pixel lattice (:attr:`ChipSet.lattice`), so each is
placed by whole-pixel offsets, never resampled. ``time`` holds the distinct record datetimes,
sorted (records without a datetime share one ``NaT`` slot, last). Records of the same datetime
are mosaicked: the first valid pixel in read order wins, later records fill the gaps. Pixels no
chip covers validly hold the band's fill value.

Georeferencing follows CF and GDAL so ``rioxarray`` (and GDAL's netCDF driver) read it back:
``x``/``y`` are pixel-centre coordinates (float64, ``y`` decreasing); the scalar coordinate
``spatial_ref`` carries :meth:`pyproj.CRS.to_cf` attributes plus ``spatial_ref`` (WKT) and
``GeoTransform`` (GDAL order); every variable has ``grid_mapping="spatial_ref"`` and a
``_FillValue`` attribute equal to the value invalid pixels hold (the band's nodata, unless
``fill_value=`` chose another; 0 when neither exists), as ``rioxarray.open_rasterio`` does for
unmasked reads. The ``record_ids`` coordinate (on ``time``) names the records of each time
step, comma-joined in mosaic priority order.

>>> import numpy as np
>>> from datetime import datetime
>>> from rasteret.read.result import Chip, ChipSet
>>> day = datetime(2024, 1, 15)
>>> chips = [Chip(0, i, "r0", day, np.full((1, 2, 2), i + 1, "uint8"), np.ones((1, 2, 2), bool),
...               (10.0, 0.0, 20.0 * i, 0.0, -10.0, 20.0), "EPSG:32633") for i in range(2)]
>>> cs = ChipSet(chips, ("B04",), (0,), np.dtype("uint8"), "EPSG:32633", (None,),
...              lattice=(0.0, 0.0, 10.0, 10.0))
>>> ds = chips_to_xarray(cs)
>>> ds["B04"].shape, ds["B04"].values[0, 0].tolist(), ds.x.values.tolist()
((1, 2, 4), [1, 1, 2, 2], [5.0, 15.0, 25.0, 35.0])
>>> ds["B04"].attrs["grid_mapping"], ds.spatial_ref.attrs["GeoTransform"]
('spatial_ref', '0.0 10.0 0.0 20.0 0.0 -10.0')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from pyproj import CRS

from rasteret._optional import import_optional
from rasteret.errors import ReadError
from rasteret.read.result import Chip, ChipSet

if TYPE_CHECKING:
    import xarray

__all__ = ["DEFAULT_MAX_BYTES", "MosaicGrid", "build_dataset", "chips_to_xarray", "mosaic_grid"]

DEFAULT_MAX_BYTES = 4 * 1024**3
"""Largest Dataset (all bands and time steps) :func:`chips_to_xarray` allocates: 4 GiB."""

GRID_MAPPING = "spatial_ref"
"""Name of the CF grid-mapping coordinate (the name rioxarray and odc-geo use)."""

_OFFSET_TOLERANCE = 1e-6
"""Largest distance (in pixels) of a chip origin from a lattice node."""

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class MosaicGrid:
    """The one grid that covers every chip of a read."""

    transform: Transform | None
    """Affine ``(a, b, c, d, e, f)``; None when there are no chips."""
    height: int
    width: int
    offsets: list[tuple[int, int]]
    """Per chip (chip order): ``(row, col)`` of its top-left pixel in the grid."""


def mosaic_grid(chipset: ChipSet) -> MosaicGrid:
    """Place every chip of ``chipset`` on one grid by whole-pixel offsets.

    Raises:
        ReadError: the chips have no common lattice (``out_shape=`` with several AOIs), or a
            chip does not lie on the lattice the read declares.

    >>> import numpy as np
    >>> from rasteret.read.result import Chip, ChipSet
    >>> chips = [Chip(0, i, "r", None, np.zeros((1, 3, 2), "uint8"), np.ones((1, 3, 2), bool),
    ...               (10.0, 0.0, 100.0 + 30 * i, 0.0, -10.0, 50.0 - 10 * i), "EPSG:32633")
    ...          for i in range(2)]
    >>> grid = mosaic_grid(ChipSet(chips, ("b",), (0,), np.dtype("uint8"), "EPSG:32633",
    ...                            lattice=(0.0, 0.0, 10.0, 10.0)))
    >>> grid.transform, grid.height, grid.width, grid.offsets
    ((10.0, 0.0, 100.0, 0.0, -10.0, 50.0), 4, 5, [(0, 0), (1, 3)])
    """
    chips = chipset.chips
    if not chips:
        return MosaicGrid(None, 0, 0, [])
    if chipset.lattice is None:
        aois = sorted({c.aoi_index for c in chips})
        if len(aois) > 1:
            raise ReadError(
                f"expected chips on one pixel lattice to mosaic into one xarray grid, got "
                f"{len(aois)} AOIs (indexes {aois[:5]}{' ...' if len(aois) > 5 else ''}) each "
                "with its own pixel size because out_shape= was given; use get_numpy() or "
                "get_gdf() for one array per AOI, or resolution= instead of out_shape="
            )
        first = chips[0]
        for chip in chips[1:]:
            if chip.transform != first.transform or chip.data.shape[1:] != first.data.shape[1:]:
                raise ReadError(
                    f"expected every chip of AOI {first.aoi_index} on one grid, got record "
                    f"{chip.record_id!r} on {chip.transform} {chip.data.shape[1:]} and record "
                    f"{first.record_id!r} on {first.transform} {first.data.shape[1:]}"
                )
        _, height, width = first.data.shape
        return MosaicGrid(first.transform, height, width, [(0, 0)] * len(chips))
    ox, oy, rx, ry = chipset.lattice
    places = [_lattice_offset(chip, ox, oy, rx, ry) for chip in chips]
    row0 = min(r for r, _ in places)
    col0 = min(c for _, c in places)
    bottom = max(r + chip.data.shape[1] for (r, _), chip in zip(places, chips, strict=True))
    right = max(c + chip.data.shape[2] for (_, c), chip in zip(places, chips, strict=True))
    transform: Transform = (rx, 0.0, ox + col0 * rx, 0.0, -ry, oy - row0 * ry)
    offsets = [(r - row0, c - col0) for r, c in places]
    return MosaicGrid(transform, bottom - row0, right - col0, offsets)


def _lattice_offset(chip: Chip, ox: float, oy: float, rx: float, ry: float) -> tuple[int, int]:
    """``(row, col)`` of ``chip``'s top-left pixel on the lattice through ``(ox, oy)``."""
    a, b, c, d, e, f = chip.transform
    if (
        b != 0.0
        or d != 0.0
        or not math.isclose(a, rx, rel_tol=1e-9)
        or not math.isclose(-e, ry, rel_tol=1e-9)
    ):
        raise ReadError(
            f"expected record {chip.record_id!r} AOI {chip.aoi_index} on the read's lattice "
            f"of {rx} x {ry} pixels (north-up), got the chip transform {chip.transform}"
        )
    col, row = (c - ox) / rx, (oy - f) / ry
    if abs(col - round(col)) > _OFFSET_TOLERANCE or abs(row - round(row)) > _OFFSET_TOLERANCE:
        raise ReadError(
            f"expected record {chip.record_id!r} AOI {chip.aoi_index} at a whole-pixel offset "
            f"from the lattice origin ({ox}, {oy}), got ({col}, {row}) pixels"
        )
    return round(row), round(col)


def _datetime64(value: datetime | None) -> np.datetime64:
    """UTC-naive ``datetime64[ns]`` (NaT for None), the resolution xarray encodes best."""
    if value is None:
        return np.datetime64("NaT", "ns")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(value, "ns")


def _time_slots(chips: Sequence[Chip]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sorted distinct datetimes, each chip's slot, and each slot's record ids (joined)."""
    stamps = np.array([_datetime64(c.datetime) for c in chips], dtype="datetime64[ns]")
    known = ~np.isnat(stamps)
    times = np.unique(stamps[known])
    slots = np.where(known, np.searchsorted(times, stamps), len(times))
    if not known.all():  # records without a datetime share one NaT slot, last
        times = np.append(times, np.datetime64("NaT", "ns"))
    ids: list[list[str]] = [[] for _ in range(len(times))]
    for chip, slot in zip(chips, slots.tolist(), strict=True):
        if chip.record_id not in ids[slot]:
            ids[slot].append(chip.record_id)
    return times, slots.reshape(-1), [",".join(i) for i in ids]


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024:
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"


def _check_budget(chipset: ChipSet, ntimes: int, grid: MosaicGrid, max_bytes: int) -> None:
    nbands = len(chipset.bands)
    nbytes = ntimes * nbands * grid.height * grid.width * chipset.dtype.itemsize
    if nbytes > max_bytes:
        raise ReadError(
            f"expected an xarray grid within max_bytes={max_bytes} ({_human(max_bytes)}), got "
            f"{nbands} band(s) x (time={ntimes}, y={grid.height}, x={grid.width}) of "
            f"{chipset.dtype} = {nbytes} bytes ({_human(nbytes)}) to cover {len(chipset)} "
            "chips; read smaller or fewer AOIs at a time, a coarser resolution=, fewer dates "
            "(date_range=), or use get_numpy()/get_gdf() for one array per AOI"
        )


def _mosaic(chipset: ChipSet, grid: MosaicGrid, ntimes: int, slots: np.ndarray) -> list[np.ndarray]:
    """Per band, ``[time, y, x]``: first valid pixel (in chip order) wins per time slot."""
    bands = [
        np.full((ntimes, grid.height, grid.width), fill, dtype=chipset.dtype)
        for fill in chipset.fill_values
    ]
    members = [np.flatnonzero(slots == slot).tolist() for slot in range(ntimes)]
    taken = np.empty((grid.height, grid.width), dtype=bool)  # one band and time step at a time
    for b, band in enumerate(bands):
        for slot, chip_indexes in enumerate(members):
            taken.fill(False)
            for i in chip_indexes:
                chip = chipset.chips[i]
                row, col = grid.offsets[i]
                _, h, w = chip.data.shape
                seen = taken[row : row + h, col : col + w]
                valid = chip.valid[b]
                np.copyto(
                    band[slot, row : row + h, col : col + w], chip.data[b], where=valid & ~seen
                )
                seen |= valid
    return bands


def _crs_coordinates(crs_text: str, transform: Transform | None) -> tuple[dict[str, Any], ...]:
    """Attributes of ``spatial_ref``, ``x`` and ``y`` for ``crs_text``."""
    crs = CRS.from_user_input(crs_text)
    wkt = crs.to_wkt()
    grid_mapping: dict[str, Any] = {**crs.to_cf(), "crs_wkt": wkt, "spatial_ref": wkt}
    if transform is not None:
        a, b, c, d, e, f = transform
        grid_mapping["GeoTransform"] = " ".join(str(float(v)) for v in (c, a, b, f, d, e))
    axes = {axis.get("axis"): axis for axis in crs.cs_to_cf()}
    x_attrs = {k: v for k, v in axes.get("X", {}).items() if k != "axis"}
    y_attrs = {k: v for k, v in axes.get("Y", {}).items() if k != "axis"}
    return grid_mapping, {**x_attrs, "axis": "X"}, {**y_attrs, "axis": "Y"}


def chips_to_xarray(chipset: ChipSet, *, max_bytes: int = DEFAULT_MAX_BYTES) -> xarray.Dataset:
    """Mosaic the chips of ``chipset`` into one ``xarray.Dataset`` (dims ``time, y, x``).

    Args:
        chipset: The result of :func:`rasteret.read.read_chips`.
        max_bytes: Refuse (before allocating) a Dataset larger than this.

    Returns:
        A Dataset with one variable per band, ``time``/``y``/``x`` coordinates, the
        ``record_ids`` coordinate on ``time`` and the CF ``spatial_ref`` coordinate (see the
        module docstring). With no chips, every dimension has length 0. Records left out
        (``ChipSet.skipped``) and reads that failed (``ChipSet.failed``) are listed as
        strings in ``ds.attrs["rasteret_skipped"]`` / ``ds.attrs["rasteret_failed"]`` when
        there are any.

    Raises:
        ReadError: the Dataset would exceed ``max_bytes``, or the chips share no pixel
            lattice (``out_shape=`` with several AOIs: use get_numpy/get_gdf or
            ``resolution=``).
        MissingDependencyError: xarray is not installed.
    """
    import_optional("xarray", extra="xarray")
    grid = mosaic_grid(chipset)
    times, slots, record_ids = _time_slots(chipset.chips)
    _check_budget(chipset, len(times), grid, max_bytes)
    arrays = _mosaic(chipset, grid, len(times), slots)
    dataset = build_dataset(
        chipset.bands,
        arrays,
        chipset.fill_values,
        chipset.dtype,
        times,
        record_ids,
        chipset.crs,
        grid.transform,
        grid.width,
        grid.height,
    )
    dataset.attrs.update(chipset.problem_attrs())
    return dataset


def build_dataset(
    bands: Sequence[str],
    arrays: Sequence[Any],
    fill_values: Sequence[float],
    dtype: np.dtype,
    times: Any,
    record_ids: Sequence[str],
    crs: str,
    transform: tuple[float, float, float, float, float, float] | None,
    width: int,
    height: int,
) -> xarray.Dataset:
    """The Dataset of ``arrays`` (one ``[time, y, x]`` array per band, NumPy or Dask) on the
    north-up grid ``transform``/``width``/``height``: pixel-centre coordinates, the
    ``record_ids`` coordinate on ``time``, CF ``spatial_ref`` and ``_FillValue`` per band.

    Shared by the eager mosaic and the lazy Dask graph, so both describe their grid alike.
    """
    xr = import_optional("xarray", extra="xarray")
    grid_mapping, x_attrs, y_attrs = _crs_coordinates(crs, transform)
    if transform is None:
        xs = ys = np.empty(0, dtype=np.float64)
    else:
        a, _, c, _, e, f = transform
        xs = c + a * (np.arange(width, dtype=np.float64) + 0.5)
        ys = f + e * (np.arange(height, dtype=np.float64) + 0.5)
    coords = {
        "time": ("time", times, {"standard_name": "time", "axis": "T"}),
        "y": ("y", ys, y_attrs),
        "x": ("x", xs, x_attrs),
        "record_ids": (
            "time",
            np.array(record_ids, dtype=object),
            {"long_name": "ids of the records mosaicked, first wins", "separator": ","},
        ),
        GRID_MAPPING: ((), np.int64(0), grid_mapping),
    }
    data_vars = {
        band: (
            ("time", "y", "x"),
            array,
            {"grid_mapping": GRID_MAPPING, "_FillValue": dtype.type(fill)},
        )
        for band, array, fill in zip(bands, arrays, fill_values, strict=True)
    }
    ds = xr.Dataset(data_vars, coords=coords)
    for name in ("x", "y"):  # coordinates have no missing values: write no _FillValue
        ds[name].encoding["_FillValue"] = None
    return ds
