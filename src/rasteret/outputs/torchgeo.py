"""TorchGeo output: a real ``GeoDataset`` whose pixels come from rasteret's planned reads.

:class:`RasteretGeoDataset` holds the records (their parsed headers) and an index in
TorchGeo's own form, so TorchGeo's samplers, ``DataLoader`` collation, transforms and
``IntersectionDataset``/``UnionDataset`` work unchanged. Samples match those of TorchGeo's
``RasterDataset`` over the same files: same keys, shapes, dtype and values (see
:mod:`rasteret.outputs._torchgeo_merge`).

Three TorchGeo generations are supported:

* 0.9 and newer (Python 3.12+): queries are ``GeoSlice`` values (``[xmin:xmax:xres,
  ymin:ymax:yres, tmin:tmax:tres]``, or their ``(x, y)`` part from the spatial samplers),
  the index is a GeoDataFrame over an ``IntervalIndex`` of time, and a sample carries
  ``image`` or ``mask`` with ``bounds`` and ``transform`` as tensors;
* 0.8: the same queries and index; a sample carries ``crs`` and ``bounds`` (the query);
* 0.7: queries are ``BoundingBox`` values and the index is an R-tree with POSIX times;
  samples as in 0.8.

The dataset pickles as plain data (records, index, options): no event loop, store or thread
pool; a ``spawn``/``forkserver`` worker creates its own on first use. A worker forked after
its parent made requests cannot use obstore (its tokio runtime does not survive ``fork()``):
it hands its reads to the process that forked it, which reads them on its own loop, pool and
tile cache (see :mod:`rasteret.outputs._torchgeo_helper`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import rasterio.crs
import shapely
from affine import Affine
from rasterio.enums import Resampling

from rasteret._optional import import_optional
from rasteret.errors import RasteretError, ReadError
from rasteret.io._fork import inherited_runtime
from rasteret.outputs import _torchgeo_helper
from rasteret.outputs import _torchgeo_index as tg_index
from rasteret.outputs._torchgeo_helper import helper_read
from rasteret.outputs._torchgeo_merge import Job, SourceGrids, query_grid, read_jobs
from rasteret.read.grid import Grid, crs_key
from rasteret.read.options import ReadOptions
from rasteret.read.plan import RecordRef

torch = import_optional("torch", extra="torchgeo")
geopandas = import_optional("geopandas", extra="torchgeo")
tg_datasets = import_optional("torchgeo.datasets", extra="torchgeo")
tg_utils = import_optional("torchgeo.datasets.utils", extra="torchgeo")

__all__ = ["GEOSLICE_QUERIES", "TENSOR_SAMPLES", "RasteretGeoDataset"]

GEOSLICE_QUERIES: bool = hasattr(tg_utils, "GeoSlice")
"""True for TorchGeo >= 0.8 (GeoSlice queries, GeoDataFrame index); False for 0.7."""

_GeoDataset: Any = tg_datasets.GeoDataset

TENSOR_SAMPLES: bool = hasattr(_GeoDataset, "_slice_to_tensor")
"""True for TorchGeo >= 0.9: samples carry ``bounds`` and ``transform`` tensors and no
``crs`` (every value a tensor, so ``stack_samples`` stacks them); False: ``crs`` and the
query as ``bounds``."""
_NATIVE = "native"


class RasteretGeoDataset(_GeoDataset):
    """A TorchGeo ``GeoDataset`` over a rasteret collection's records.

    Build it with :meth:`rasteret.Collection.to_torchgeo_dataset`; the arguments here are
    already validated and normalised.

    Args:
        records: The records, in (datetime, id) order; each has metadata for every band.
        bands: Band names, in channel order.
        crs: The dataset CRS (``EPSG:n`` or WKT).
        res: Pixel size ``(x, y)`` in CRS units.
        is_image: Samples carry ``image`` (float32 by default) or ``mask`` (int64).
        time_series: Stack the records of each query as ``[T, C, H, W]`` (one frame per
            distinct datetime) instead of mosaicking them into ``[C, H, W]``.
        labels: One value per record for ``sample["label"]`` (None: no label).
        transforms: Applied to every sample.
        chip_size: Force every sample to ``(height, width)`` pixels.
        resampling: Kernel for reads off the native grid (default as TorchGeo: bilinear
            for float output, nearest otherwise).
        dtype: Output ``torch.dtype``; ``"native"`` keeps the bands' dtype (uint16 becomes
            int32 and uint32 int64, as TorchGeo converts them); default as TorchGeo.
        options: I/O options of the reads.
    """

    filename_glob = "*"

    def __init__(
        self,
        records: Sequence[RecordRef],
        bands: Sequence[str],
        *,
        crs: str,
        res: tuple[float, float],
        is_image: bool = True,
        time_series: bool = False,
        labels: Sequence[Any] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        chip_size: tuple[int, int] | None = None,
        resampling: Resampling | None = None,
        dtype: Any = None,
        options: ReadOptions | None = None,
    ) -> None:
        self.records = tuple(records)
        self.bands = tuple(bands)
        self.is_image = is_image
        self.time_series = time_series
        self.labels = None if labels is None else list(labels)
        self.transforms = transforms
        self.chip_size = chip_size
        self.options = options or ReadOptions()
        self.paths: list[str] = [m.href for r in self.records for m in r.bands.values() if m]
        self._dtype = dtype
        self._resampling = resampling
        self._res = (float(res[0]), float(res[1]))
        self._source = SourceGrids(self.records)
        self._crs_cache: tuple[Any, str] | None = None
        self._arrays: dict[int, tg_index.IndexArrays] = {}
        self._bounds_cache: tuple[Any, tuple[float, float], Any] | None = None
        self._token = uuid.uuid4().hex
        footprints = [self._footprint(i, crs) for i in range(len(self.records))]
        times = [tg_index.interval(r.datetime) for r in self.records]
        self._record_index = tg_index.record_frame(footprints, times, self.records, crs)
        if time_series:  # one row per distinct footprint, spanning its records' times
            groups: dict[bytes, list[int]] = {}
            for i, box in enumerate(footprints):
                groups.setdefault(shapely.to_wkb(box), []).append(i)
            rows = list(groups.values())
            spans = [(min(times[i][0] for i in g), max(times[i][1] for i in g)) for g in rows]
            index = tg_index.record_frame(
                [footprints[g[0]] for g in rows],
                spans,
                [self.records[g[0]] for g in rows],
                crs,
                [g[0] for g in rows],
            )
        else:
            index = self._record_index
        if GEOSLICE_QUERIES:
            self.index = index
        else:
            self._crs = rasterio.crs.CRS.from_user_input(crs)
            self.index = tg_index.rtree_index(index)
        _torchgeo_helper.register(self)  # forks of this process read through its server

    # ------------------------------------------------------------------ TorchGeo surface
    @property
    def dtype(self) -> Any:
        """The ``torch.dtype`` of samples (``None`` with ``dtype="native"``)."""
        if isinstance(self._dtype, str) and self._dtype == _NATIVE:
            return None
        if self._dtype is not None:
            return self._dtype
        return torch.float32 if self.is_image else torch.long

    @property
    def crs(self) -> Any:
        """The dataset CRS (TorchGeo's property; setting it reprojects the index)."""
        return _GeoDataset.crs.fget(self)

    @crs.setter
    def crs(self, new_crs: Any) -> None:
        _GeoDataset.crs.fset(self, new_crs)  # TorchGeo 0.8 reprojects the index in place
        self._arrays = {}
        self._bounds_cache = None

    @property
    def bounds(self) -> Any:
        """TorchGeo's bounds of the index, computed once per index, CRS and resolution
        (TorchGeo recomputes them for every query)."""
        if not GEOSLICE_QUERIES:
            return _GeoDataset.bounds.fget(self)
        index, res = self.index, self.res
        cached = self._bounds_cache
        if cached is None or cached[0] is not index or cached[1] != res:
            cached = self._bounds_cache = (index, res, _GeoDataset.bounds.fget(self))
        return cached[2]

    @property
    def resampling(self) -> Resampling:
        """Kernel for reads off the native grid; TorchGeo's rule unless one was given."""
        if self._resampling is not None:
            return self._resampling
        dtype = self.dtype
        if dtype is not None and dtype.is_floating_point:
            return Resampling.bilinear
        return Resampling.nearest

    def __getitem__(self, query: Any) -> dict[str, Any]:
        """The sample of a query: ``image`` or ``mask``, ``bounds`` and ``transform``
        (TorchGeo >= 0.9) or ``crs`` and ``bounds`` (older), and ``label`` if asked for.

        Raises:
            IndexError: the query meets no record.
            RasteretError: a read failed; the message names the record, band and URL.
        """
        return self.__getitems__([query])[0]

    def __getitems__(self, queries: Sequence[Any]) -> list[dict[str, Any]]:
        """The samples of several queries, read together (one wave of requests).

        PyTorch's ``DataLoader`` calls this with each batch's queries, so a batch costs about
        one round trip to the store rather than one per sample. Samples are those
        :meth:`__getitem__` returns for each query.
        """
        crs = self._crs_key()
        jobs: list[Job] = []
        for query in queries:
            rows, bounds, res = self._select(query)
            if not rows:
                raise IndexError(f"query: {query} not found in index with bounds: {self.bounds}")
            jobs.append((self._frames(rows), query_grid(crs, bounds, res, self.chip_size)))
        frames = [f for job in jobs for f in job[0]]
        try:
            if inherited_runtime():  # a forked worker: obstore cannot run here
                arrays = helper_read(
                    self._token, self.records, self.options, self.bands, jobs, self.resampling
                )
            else:
                arrays = read_jobs(
                    self.records, self.bands, jobs, self.resampling, self.options,
                    lambda ri, band: self._source(ri, band, crs),
                )  # fmt: skip
        except RasteretError as exc:
            raise _with_context(exc, self.records, frames, self.bands) from exc
        except Exception as exc:  # a kernel (GDAL) failure: still say where
            raise ReadError(f"{_where(self.records, frames, self.bands, str(exc))}: {exc}") from exc
        return [
            self._sample(query, array, *job)
            for query, array, job in zip(queries, arrays, jobs, strict=True)
        ]

    def _sample(
        self, query: Any, array: np.ndarray, frames: Sequence[Sequence[int]], grid: Grid
    ) -> dict[str, Any]:
        data = _to_tensor(array if self.time_series else array[0], self.dtype)
        sample: dict[str, Any]
        if TENSOR_SAMPLES:
            # as TorchGeo >= 0.9: the whole slice as a tensor, and the transform of the output
            # grid (TorchGeo's from_origin(xmin, ymax, xres, yres); with chip_size, the chip's)
            transform = torch.tensor(Affine(*grid.transform))
            sample = {"bounds": self._slice_to_tensor(query), "transform": transform}
        else:
            sample = {"crs": self.crs, "bounds": query}
        if self.is_image:
            sample["image"] = data
        else:
            sample["mask"] = data.squeeze(1) if self.time_series else data.squeeze(0)
        if self.labels is not None:
            sample["label"] = _label(self.labels[frames[0][0]])
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def __getstate__(self) -> dict[str, Any]:
        """Plain data for pickling (a ``spawn``/``forkserver`` worker): caches stay behind."""
        state = self.__dict__.copy()
        state["_arrays"] = {}
        state["_bounds_cache"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _torchgeo_helper.register(self)

    def __str__(self) -> str:
        return (
            f"RasteretGeoDataset Dataset\n    type: GeoDataset\n    bbox: {self.bounds}\n"
            f"    size: {len(self)}\n    bands: {list(self.bands)}"
        )

    # ------------------------------------------------------------------ internals
    def _footprint(self, ri: int, crs: str) -> shapely.Geometry:
        meta = self.records[ri].bands[self.bands[0]]
        assert meta is not None
        return shapely.box(*self._source(ri, self.bands[0], crs).bounds)

    def _crs_key(self) -> str:
        crs = self.crs
        if self._crs_cache is None or self._crs_cache[0] is not crs:
            self._crs_cache = (crs, crs_key(pyproj.CRS.from_user_input(crs)))
        return self._crs_cache[1]

    def _select(
        self, query: Any
    ) -> tuple[list[int], tuple[float, float, float, float], tuple[float, float]]:
        """Record positions a query hits (in index order), its bounds and pixel size."""
        if GEOSLICE_QUERIES:
            x, y, t = self._disambiguate_slice(query)
            interval = pd.Interval(t.start, t.stop)
            bounds = (x.start, y.start, x.stop, y.stop)
            if self.time_series:
                rows = self._hits(self._current_record_index(), interval, 1, bounds)
            else:
                rows = self._hits(self.index, interval, t.step, bounds)
            return rows, bounds, (x.step, y.step)
        bounds = (query.minx, query.miny, query.maxx, query.maxy)
        if self.time_series:
            span = pd.Interval(
                tg_index.posix(query.mint), tg_index.posix(query.maxt), closed="both"
            )
            return tg_index.hits(self._current_record_index(), span, 1, bounds), bounds, self.res
        hits = self.index.intersection(tuple(query), objects=True)
        return sorted(int(h.object) for h in hits), bounds, self.res

    def _hits(
        self, frame: Any, interval: pd.Interval, step: int, bounds: tuple[float, ...]
    ) -> list[int]:
        """:func:`tg_index.hits`, through NumPy arrays of ``frame`` kept while it is in use."""
        arrays = self._arrays.get(id(frame))
        if arrays is None or arrays.frame is not frame:
            self._arrays = {k: v for k, v in self._arrays.items() if v.frame is self.index}
            arrays = self._arrays[id(frame)] = tg_index.IndexArrays(frame)
        rows = arrays.hits(interval, step, bounds)  # type: ignore[arg-type]
        if rows is None:
            rows = tg_index.hits(frame, interval, step, bounds)  # type: ignore[arg-type]
        return rows

    def _current_record_index(self) -> Any:
        """The per-record index (time series), in the dataset's current CRS."""
        crs = self.crs
        if self._record_index.crs is not crs and not self._record_index.crs.equals(crs):
            self._record_index = self._record_index.to_crs(crs)
        return self._record_index

    def _frames(self, rows: list[int]) -> list[list[int]]:
        if not self.time_series:
            return [rows]
        frames: dict[Any, list[int]] = {}
        for ri in sorted(rows):
            frames.setdefault(self.records[ri].datetime, []).append(ri)
        return list(frames.values())


_NUMPY_OF = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "int32": np.int32}


def _to_tensor(array: np.ndarray, dtype: Any) -> Any:
    """``array`` as TorchGeo makes a tensor of it, then cast to ``dtype`` (None: no cast).

    TorchGeo converts uint16 to int32 and uint32 to int64 (``array_to_tensor``), then casts.
    Widening integers to floats or wider integers gives the same values cast once in NumPy,
    which is what happens here; anything else goes the same way TorchGeo goes.
    """
    target = None if dtype is None else _NUMPY_OF.get(str(dtype).removeprefix("torch."))
    kind = array.dtype.kind
    if target is not None and (
        (kind in "iub" and np.dtype(target).kind == "f")
        or (kind in "iub" and np.can_cast(array.dtype, target))
        or (kind == "f" and np.dtype(target).kind == "f")
    ):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=target))
    if array.dtype == np.uint16:
        array = array.astype(np.int32)
    elif array.dtype == np.uint32:
        array = array.astype(np.int64)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if dtype is None else tensor.to(dtype)


def _label(value: Any) -> Any:
    """A label as a tensor when it is numeric (int/bool -> int64, float -> float32)."""
    if isinstance(value, bool | np.bool_ | int | np.integer):
        return torch.tensor(int(value), dtype=torch.long)
    if isinstance(value, float | np.floating):
        return torch.tensor(float(value), dtype=torch.float32)
    if isinstance(value, list | tuple | np.ndarray):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            return torch.as_tensor(
                array, dtype=torch.float32 if array.dtype.kind == "f" else torch.long
            )
    return value


def _where(
    records: Sequence[RecordRef],
    frames: Sequence[Sequence[int]],
    bands: Sequence[str],
    message: str,
) -> str:
    """The (record, band, URL) a failure message points at, else every one of the query."""
    pairs = [
        (records[ri].id, band, meta.href)
        for frame in frames
        for ri in frame
        for band in bands
        if (meta := records[ri].bands.get(band)) is not None
    ]
    named = [p for p in pairs if p[2] and p[2] in message] or pairs
    shown = "; ".join(f"record {rid!r} band {band!r} at {href}" for rid, band, href in named[:6])
    more = f" (+{len(named) - 6} more)" if len(named) > 6 else ""
    return f"failed to read {shown}{more}"


def _with_context(
    exc: RasteretError,
    records: Sequence[RecordRef],
    frames: Sequence[Sequence[int]],
    bands: Sequence[str],
) -> BaseException:
    message = f"{_where(records, frames, bands, str(exc))}: {exc}"
    try:
        return type(exc)(message)
    except Exception:
        return ReadError(message)
