"""Lazy xarray: the eager ``get_xarray`` Dataset as a Dask graph of one task per chunk.

:func:`lazy_xarray` plans the output on the driver (:func:`rasteret.dask._layout.plan_layout`:
the eager grid, time axis and chip places, without planning tiles), cuts it into chunks
(:mod:`rasteret.dask._chunks`) and builds, per band, a ``dask.array`` whose every block is
one :func:`rasteret.dask._task.read_chunk` task carrying the records and AOIs that reach it.
Computing a block reads only the tiles under it; coordinates and attributes equal the eager
Dataset's (see the module doc of :mod:`rasteret.outputs.xarray`), and so do the values:
pasted tiles, overviews, RasterIO resampling, polygon masks and mosaics, and reads that
reproject (``target_crs=``, records in several CRSs) too, with every kernel. GDAL's warper
output depends on the output window it is given, so every warp, eager or lazy, runs on
strips of the output CRS's absolute pixel lattice with a fixed kernel scale
(:func:`rasteret.read.warp.warp_calls`): a pixel is warped the same way in any chunk.

>>> import tempfile, shapely
>>> from rasteret.testing.fixtures import get_fixture_spec, write_fixture
>>> from rasteret.tiff.header import parse_header
>>> from rasteret.ingest.metadata import band_metadata_from_header
>>> from rasteret.read import RecordRef, read_chips
>>> from rasteret.outputs.xarray import chips_to_xarray
>>> path = write_fixture(get_fixture_spec("uint16_deflate_pred2_tile256"), tempfile.mkdtemp())
>>> meta = band_metadata_from_header(parse_header(path.read_bytes()), href=str(path))
>>> records, aoi = [RecordRef("r1", None, {"B1": meta})], shapely.box(500100, 4597000, 502000, 4599500)
>>> lazy = lazy_xarray(records, [aoi], "EPSG:32633", ["B1"], chunks=128)
>>> lazy["B1"].data.chunks
((1,), (128, 122), (128, 62))
>>> eager = chips_to_xarray(read_chips(records, [aoi], "EPSG:32633", ["B1"]))
>>> lazy.load().identical(eager)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from rasteret._optional import import_optional
from rasteret.dask._chunks import (
    ChunkSpec,
    aligned_sizes,
    auto_size,
    block_sizes,
    parse_chunks,
)
from rasteret.dask._layout import Layout, plan_layout
from rasteret.dask._task import ChunkAOI, ChunkRead, read_chunk
from rasteret.outputs.xarray import build_dataset
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef

if TYPE_CHECKING:
    import xarray

__all__ = ["chunk_sizes", "lazy_xarray"]

Sizes = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def chunk_sizes(layout: Layout, chunks: Any) -> Sizes:
    """Block sizes along (time, y, x) for ``chunks=`` (see :mod:`rasteret.dask._chunks`)."""
    spec: ChunkSpec = parse_chunks(chunks)
    times = block_sizes(len(layout.times), spec.get("time", 1))
    tile = layout.tile_size
    out: list[tuple[int, ...]] = []
    for axis, dim, length in ((0, "y", layout.height), (1, "x", layout.width)):
        if dim in spec:
            out.append(block_sizes(length, spec[dim]))
        elif tile is None:
            out.append(block_sizes(length, auto_size(None)))
        else:
            out.append(aligned_sizes(length, auto_size(tile[axis]), layout.tile_origin[axis]))
    return times, out[0], out[1]


def _starts(sizes: tuple[int, ...]) -> np.ndarray:
    """Start offset of each block, plus the end."""
    return np.array([0, *accumulate(sizes)], dtype=np.int64)


def _block_range(starts: np.ndarray, lo: int, hi: int) -> range:
    """Blocks (by index) that intersect ``[lo, hi)``."""
    if hi <= lo:
        return range(0)
    first = int(np.searchsorted(starts, lo, side="right")) - 1
    last = int(np.searchsorted(starts, hi, side="left"))
    return range(max(first, 0), min(last, len(starts) - 1))


Block = tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, int, int], ...]]
"""A block's records and AOIs (indexes into the layout) and its chips as ``(slot in the
block, index into those records, index into those AOIs)``, in eager chip order."""


def _blocks(layout: Layout, sizes: Sizes) -> dict[tuple[int, int, int], Block]:
    """Per block ``(t, i, j)`` with any chip: what its task reads (the same for every band)."""
    tstarts, ystarts, xstarts = (_starts(s) for s in sizes)
    members: dict[tuple[int, int, int], list[int]] = {}
    for n, place in enumerate(layout.chips):
        r0, r1, c0, c1 = place.window
        t = int(np.searchsorted(tstarts, place.slot, side="right")) - 1
        for i in _block_range(ystarts, r0, r1):
            for j in _block_range(xstarts, c0, c1):
                members.setdefault((t, i, j), []).append(n)
    first_slot = tstarts.tolist()
    blocks: dict[tuple[int, int, int], Block] = {}
    for key, chip_ids in members.items():
        records: dict[int, int] = {}
        aois: dict[int, int] = {}
        chips = []
        for n in chip_ids:
            place = layout.chips[n]
            rj = records.setdefault(place.record_index, len(records))
            aj = aois.setdefault(place.aoi_index, len(aois))
            chips.append((place.slot - first_slot[key[0]], rj, aj))
        blocks[key] = (tuple(records), tuple(aois), tuple(chips))
    return blocks


def _one_band(records: Sequence[RecordRef], band: str) -> list[RecordRef]:
    return [RecordRef(r.id, r.datetime, {band: r.bands.get(band)}) for r in records]


def _band_array(
    layout: Layout,
    b: int,
    sizes: Sizes,
    blocks: dict[tuple[int, int, int], Block],
    options: ReadOptions,
    token: str,
) -> Any:
    da = import_optional("dask.array", extra="dask")
    from dask.highlevelgraph import HighLevelGraph

    band = layout.bands[b]
    name = f"rasteret-read-{band}-{token}"
    slim = _one_band(layout.records, band)
    aois = {
        ai: ChunkAOI(layout.aoi_geometries[ai], grid, offset)
        for ai, (grid, offset) in enumerate(zip(layout.aoi_grids, layout.aoi_offsets, strict=True))
        if grid is not None and offset is not None
    }
    ystarts, xstarts = (_starts(s).tolist() for s in sizes[1:])
    dtype = layout.dtype
    fill, nodata = layout.fill_values[b], layout.nodata[b]
    empty: Block = ((), (), ())
    graph: dict[Any, Any] = {}
    for t, tsize in enumerate(sizes[0]):
        for i, ysize in enumerate(sizes[1]):
            for j, xsize in enumerate(sizes[2]):
                rec_ids, aoi_ids, chips = blocks.get((t, i, j), empty)
                spec = ChunkRead(
                    records=tuple(slim[ri] for ri in rec_ids),
                    aois=tuple(aois[ai] for ai in aoi_ids),
                    chips=chips,
                    window=(ystarts[i], xstarts[j], ysize, xsize),
                    slots=tsize,
                    band=band,
                    dtype=dtype.str,
                    fill=fill,
                    nodata=nodata,
                    crs=layout.crs,
                    all_touched=layout.all_touched,
                    options=options,
                )
                graph[(name, t, i, j)] = (read_chunk, spec)
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
    return da.Array(hlg, name, sizes, dtype=dtype, meta=np.empty((0, 0, 0), dtype=dtype))


def _token(layout: Layout, sizes: Sizes, options: ReadOptions) -> str:
    from dask.base import tokenize

    hrefs = [
        (r.id, *((m.href, m.etag, m.object_size) for m in r.bands.values() if m is not None))
        for r in layout.records
    ]
    aois = shapely.to_wkb(np.asarray(layout.aoi_geometries, dtype=object)).tolist()
    return tokenize(hrefs, aois, layout.bands, layout.crs, repr(options), sizes, layout.transform)


def lazy_xarray(
    records: Sequence[RecordRef],
    aois: np.ndarray | Sequence[shapely.Geometry],
    aoi_crs: Any,
    bands: Sequence[str],
    options: ReadOptions | None = None,
    *,
    chunks: Any = "auto",
) -> xarray.Dataset:
    """The eager ``chips_to_xarray(read_chips(...))`` Dataset, Dask-backed and unread.

    Args:
        records: The records to read (as for :func:`rasteret.read.read_chips`).
        aois: Polygons or MultiPolygons.
        aoi_crs: CRS of ``aois``.
        bands: Band names; one Dataset variable each.
        options: Read options; ``backend=`` must pickle to reach the workers.
        chunks: ``"auto"`` (tile-aligned multiples of the COG tile size, one time step),
            an int, a ``(y, x)``/``(time, y, x)`` tuple, or a dict over ``time``/``y``/``x``.

    Returns:
        An ``xarray.Dataset`` equal to the eager one once computed (reprojecting reads
        included); one task per block of each band variable.

    Raises:
        MissingDependencyError: dask or xarray is not installed.
        SchemaError: bad ``chunks=`` or AOIs; and what :func:`plan_read` raises.
        ReadError: ``out_shape=`` with several AOIs (no common grid), as the eager read.
    """
    import_optional("xarray", extra="dask")
    import_optional("dask.array", extra="dask")
    options = options or ReadOptions()
    layout = plan_layout(records, aois, aoi_crs, bands, options)
    sizes = chunk_sizes(layout, chunks)
    blocks = _blocks(layout, sizes)
    token = _token(layout, sizes, options)
    arrays = [_band_array(layout, b, sizes, blocks, options, token) for b in range(len(bands))]
    return build_dataset(
        layout.bands,
        arrays,
        layout.fill_values,
        layout.dtype,
        layout.times,
        layout.record_ids,
        layout.crs,
        layout.transform,
        layout.width,
        layout.height,
    )
