"""The read entry points the Collection calls: :func:`read_chips` and :func:`read_chips_async`.

>>> import tempfile, shapely
>>> from rasteret.testing.fixtures import get_fixture_spec, write_fixture
>>> from rasteret.tiff.header import parse_header
>>> from rasteret.ingest.metadata import band_metadata_from_header
>>> path = write_fixture(get_fixture_spec("uint16_deflate_pred2_tile256"), tempfile.mkdtemp())
>>> meta = band_metadata_from_header(parse_header(path.read_bytes()), href=str(path))
>>> record = RecordRef("r1", None, {"B1": meta})
>>> aoi = shapely.box(500100, 4599000, 500300, 4599500)  # 20 x 50 pixels of 10 m
>>> chips = read_chips([record], [aoi], "EPSG:32633", ["B1"])
>>> chips.chips[0].data.shape, str(chips.dtype), bool(chips.chips[0].valid.all())
((1, 50, 20), 'uint16', True)
>>> stacked = read_chips([record], [aoi], "EPSG:32633", ["B1"], stack=True)
>>> stacked.stack.shape, bool((stacked.stack[0] == chips.chips[0].data).all())
((1, 1, 50, 20), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely

from rasteret._sync import run
from rasteret._warn import warn
from rasteret.errors import RasteretWarning
from rasteret.read.buffers import recycled_array
from rasteret.read.execute import execute_plan_async, stack_shape
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef, SkippedRecord, plan_read
from rasteret.read.result import ChipSet, FailedRead

__all__ = ["read_chips", "read_chips_async", "warn_failed", "warn_skipped"]

_SHOWN = 3
"""How many skipped records or failed pairs a warning names."""


async def read_chips_async(
    records: Sequence[RecordRef],
    aois: np.ndarray | Sequence[shapely.Geometry],
    aoi_crs: Any,
    bands: Sequence[str],
    options: ReadOptions | None = None,
    *,
    stack: bool = False,
) -> ChipSet:
    """Read ``bands`` of ``records`` over every AOI; one chip per intersecting pair.

    Args:
        records: The records to read (typically already filtered to those whose footprint
            meets some AOI).
        aois: Polygons or MultiPolygons (a shapely array or sequence).
        aoi_crs: CRS of ``aois`` (anything :mod:`pyproj` reads).
        bands: Band names, in output channel order.
        options: Everything else (grid, resampling, fill, I/O); defaults if None.
        stack: Assemble the chips straight into one ``[N, C, H, W]`` array
            (:attr:`ChipSet.stack`) when they all have one shape, for callers that want them
            stacked (``get_numpy``): no copy after the last chip. Each chip's ``data`` is
            then a view of that array.

    Returns:
        The chips in record-major order (records as given, then AOIs as given), skipping
        pairs where the record's raster does not meet the AOI.

    Raises:
        SchemaError: bad AOIs (points or lines: use ``sample_points``) or options.
        BandResolutionError: a record lacks a requested band's metadata and
            ``options.on_missing`` is ``"raise"``.
        FetchError: tile bytes could not be fetched (``options.on_error="raise"``).
        DecodeError, UnsupportedFormatError: tile bytes rasteret cannot decode (idem).

    Warns:
        RasteretWarning: with ``on_missing="skip"``, which records were left out for lack of
            band metadata (listed in ``ChipSet.skipped``); with ``on_error="skip"``, which
            (record, band) pairs could not be fetched or decoded (``ChipSet.failed``).
    """
    options = options or ReadOptions()
    records = list(records)
    plan = plan_read(records, aois, aoi_crs, bands, options)
    if plan.skipped:
        warn_skipped(plan.skipped)
    bar = None
    if options.progress and plan.chips:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan.chips), unit="chip", desc="rasteret read")
    failed: list[FailedRead] = []
    shape = stack_shape(plan) if stack else None
    # recycled memory: the same-shaped result of an earlier read, once let go, is reused
    # (fresh memory costs a page fault per 4 KiB on first write, ~0.75 ms per MB here)
    out = None if shape is None else recycled_array(shape, plan.dtype)
    try:
        chips = await execute_plan_async(
            plan,
            records,
            options,
            on_chip=None if bar is None else lambda: bar.update(1),
            failures=failed,
            out=out,
        )
    finally:
        if bar is not None:
            bar.close()
    if failed:
        warn_failed(failed)
    return ChipSet(
        chips=chips,
        bands=plan.bands,
        fill_values=plan.fill_values,
        dtype=plan.dtype,
        crs=plan.crs,
        nodata=plan.nodata,
        lattice=plan.lattice,
        skipped=plan.skipped,
        failed=tuple(failed),
        stack=out if len(chips) == len(plan.chips) else None,
    )


def warn_skipped(skipped: Sequence[SkippedRecord], *, stacklevel: int = 3) -> None:
    """Warn that records were left out for lack of band metadata (``on_missing="skip"``).

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_skipped([SkippedRecord(0, "scene-1", ("B04",))])
    >>> print(caught[0].message)
    1 record(s) left out for lack of band metadata (on_missing='skip'): scene-1 (B04); see ChipSet.skipped
    """
    shown = ", ".join(f"{s.record_id} ({', '.join(s.missing_bands)})" for s in skipped[:_SHOWN])
    more = f" and {len(skipped) - _SHOWN} more" if len(skipped) > _SHOWN else ""
    warn(
        f"{len(skipped)} record(s) left out for lack of band metadata (on_missing='skip'): "
        f"{shown}{more}; see ChipSet.skipped",
        RasteretWarning,
        stacklevel=stacklevel,
    )


def warn_failed(failed: Sequence[FailedRead], *, stacklevel: int = 3) -> None:
    """Warn that (record, band) pairs could not be fetched or decoded (``on_error="skip"``).

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_failed([FailedRead(0, "scene-1", "B04", "FetchError: 404")])
    >>> print(caught[0].message)
    1 (record, band) pairs could not be fetched or decoded and were skipped (on_error='skip'): scene-1/B04 (FetchError: 404); see ChipSet.failed
    """
    shown = ", ".join(f"{f.record_id}/{f.band} ({f.error})" for f in failed[:_SHOWN])
    more = f" and {len(failed) - _SHOWN} more" if len(failed) > _SHOWN else ""
    warn(
        f"{len(failed)} (record, band) pairs could not be fetched or decoded and were "
        f"skipped (on_error='skip'): {shown}{more}; see ChipSet.failed",
        RasteretWarning,
        stacklevel=stacklevel,
    )


def read_chips(
    records: Sequence[RecordRef],
    aois: np.ndarray | Sequence[shapely.Geometry],
    aoi_crs: Any,
    bands: Sequence[str],
    options: ReadOptions | None = None,
    *,
    stack: bool = False,
) -> ChipSet:
    """Synchronous :func:`read_chips_async` (runs on rasteret's event-loop thread)."""
    return run(read_chips_async(records, aois, aoi_crs, bands, options, stack=stack))
