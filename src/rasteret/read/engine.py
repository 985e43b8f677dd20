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
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely

from rasteret._sync import run
from rasteret.read.execute import execute_plan_async
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef, plan_read
from rasteret.read.result import ChipSet, FailedRead

__all__ = ["read_chips", "read_chips_async"]


async def read_chips_async(
    records: Sequence[RecordRef],
    aois: np.ndarray | Sequence[shapely.Geometry],
    aoi_crs: Any,
    bands: Sequence[str],
    options: ReadOptions | None = None,
) -> ChipSet:
    """Read ``bands`` of ``records`` over every AOI; one chip per intersecting pair.

    Args:
        records: The records to read (typically already filtered to those whose footprint
            meets some AOI).
        aois: Polygons or MultiPolygons (a shapely array or sequence).
        aoi_crs: CRS of ``aois`` (anything :mod:`pyproj` reads).
        bands: Band names, in output channel order.
        options: Everything else (grid, resampling, fill, I/O); defaults if None.

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
        UserWarning: with ``on_error="skip"``, how many (record, band) pairs were skipped
            (listed in ``ChipSet.failed``).
    """
    options = options or ReadOptions()
    records = list(records)
    plan = plan_read(records, aois, aoi_crs, bands, options)
    bar = None
    if options.progress and plan.chips:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan.chips), unit="chip", desc="rasteret read")
    failed: list[FailedRead] = []
    try:
        chips = await execute_plan_async(
            plan,
            records,
            options,
            on_chip=None if bar is None else lambda: bar.update(1),
            failures=failed,
        )
    finally:
        if bar is not None:
            bar.close()
    if failed:
        warnings.warn(
            f"{len(failed)} (record, band) pairs could not be fetched or decoded and were "
            "skipped (on_error='skip'); see ChipSet.failed",
            UserWarning,
            stacklevel=2,
        )
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
    )


def read_chips(
    records: Sequence[RecordRef],
    aois: np.ndarray | Sequence[shapely.Geometry],
    aoi_crs: Any,
    bands: Sequence[str],
    options: ReadOptions | None = None,
) -> ChipSet:
    """Synchronous :func:`read_chips_async` (runs on rasteret's event-loop thread)."""
    return run(read_chips_async(records, aois, aoi_crs, bands, options))
