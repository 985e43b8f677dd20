"""``Collection.to_torchgeo_dataset``: a TorchGeo ``GeoDataset`` straight from the index.

The collection's records (their parsed COG headers) are read once, checked and handed to
:class:`rasteret.outputs.torchgeo.RasteretGeoDataset`; no pixel is read until a sampler
asks. TorchGeo and torch are imported only when the method is called.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rasteret._collection_reads import IO_KEYWORDS, read_cloud_config, records_for
from rasteret._warn import warn
from rasteret.errors import BandResolutionError, SchemaError
from rasteret.ingest.schema import DATETIME, ID
from rasteret.read.cache import memory_share_mb
from rasteret.read.grid import check_north_up, crs_key, same_crs
from rasteret.read.options import DEFAULT_CACHE_MB, RESAMPLING_NAMES, ReadOptions
from rasteret.read.plan import RecordRef
from rasteret.types import crs_

if TYPE_CHECKING:
    from rasteret.collection import Collection

__all__ = ["DATASET_CACHE_SHARE", "TorchGeoMixin", "dataset_cache_mb", "dataset_crs", "dataset_res"]

_FILTER_KEYWORDS = ("cloud_cover_lt", "date_range", "bbox", "geometries", "split", "split_column")
_IO_KEYWORDS = IO_KEYWORDS
_RES_TOLERANCE = 1e-9
"""Relative difference under which two pixel sizes count as equal."""

DATASET_CACHE_SHARE = 0.05
"""Share of the usable RAM a TorchGeo dataset's decoded-tile cache may hold by default: GDAL's
default block cache (``GDAL_CACHEMAX`` 5 %), which TorchGeo's ``RasterDataset`` reads through.
An epoch of random chips comes back to the same tiles again and again; a cache of the
ordinary read size (:data:`~rasteret.read.options.DEFAULT_CACHE_MB`) would decode them anew."""


def dataset_cache_mb() -> float:
    """The default ``cache_mb`` of a TorchGeo dataset: :data:`DATASET_CACHE_SHARE` of the
    usable RAM (cgroup limits included), never less than ``DEFAULT_CACHE_MB``.

    >>> dataset_cache_mb() >= DEFAULT_CACHE_MB
    True
    """
    return memory_share_mb(DATASET_CACHE_SHARE, floor_mb=DEFAULT_CACHE_MB)


class TorchGeoMixin:
    """``to_torchgeo_dataset`` for :class:`rasteret.Collection`."""

    def to_torchgeo_dataset(
        self,
        *,
        bands: Sequence[str] | str,
        chip_size: int | tuple[int, int] | None = None,
        is_image: bool = True,
        allow_resample: bool = False,
        label_field: str | None = None,
        time_series: bool = False,
        target_crs: Any = None,
        res: float | tuple[float, float] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        resampling: str | None = None,
        dtype: Any = None,
        on_missing: str = "raise",
        data_source: str | None = None,
        progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """A TorchGeo ``GeoDataset`` whose samples rasteret reads from the COGs.

        Samples are those TorchGeo's own ``RasterDataset`` returns for the same files,
        queries and resolution: ``image`` ``[C, H, W]`` float32 (or ``mask`` ``[H, W]``
        int64 with ``is_image=False``) with, as TorchGeo 0.9 and newer give them, ``bounds``
        and ``transform`` tensors (TorchGeo 0.7-0.8: ``crs`` and ``bounds``); records a
        query hits are mosaicked first-valid-wins in (datetime, id) order. With
        ``time_series=True`` the frames are one per distinct datetime (records of the same
        datetime mosaicked), where TorchGeo's own stacks one per file.

        ``DataLoader`` workers need no setup: ``spawn``/``forkserver`` workers get the
        dataset pickled and read themselves; workers forked from a process that has already
        read (which obstore cannot do after a fork) hand their reads to that process, which
        serves them on its own thread pool and tile cache.

        Args:
            bands: Band names, in channel order.
            chip_size: Force every sample to this many pixels (int or ``(height, width)``);
                by default a query's extent divided by the resolution.
            is_image: ``image`` samples (True) or ``mask`` samples (False).
            allow_resample: Allow bands of different native resolutions (all are read at
                ``res``); without it they raise :class:`SchemaError`.
            label_field: A record column whose value becomes ``sample["label"]`` (numbers
                as tensors); with ``time_series`` the first frame's record gives it.
            time_series: ``image`` ``[T, C, H, W]``: one frame per distinct datetime among
                the records a query hits (the index then has one row per footprint,
                spanning its records' times).
            target_crs: The dataset CRS; default: the records' CRS (the most common one,
                with a warning, when they differ). Records in other CRSs are warped as
                TorchGeo warps them (a ``WarpedVRT`` on GDAL's suggested grid, nearest).
            res: Pixel size in CRS units (one number or ``(x, y)``); default: the finest
                native pixel size among records in the dataset CRS.
            transforms: Applied to every sample (TorchGeo style: ``dict -> dict``).
            resampling: Kernel for reads off the native grid; default as TorchGeo
                (bilinear for float output, nearest otherwise).
            dtype: Output ``torch.dtype``; ``"native"`` keeps the bands' dtype; default as
                TorchGeo (float32 images, int64 masks).
            on_missing: A record without metadata for a band: ``"raise"`` or ``"skip"``.
            data_source: A registered catalog source whose cloud settings (requester-pays,
                URL rewrites) apply to every sample's read; default: the collection's own
                ``data_source``. An explicit ``cloud_config=`` wins. The settings are
                resolved here and travel with the dataset (to ``DataLoader`` workers too).
            progress: Accepted for symmetry with the other reads; shows no bar. Building
                the dataset reads no pixels (only the index, from headers already
                parsed), and each sample is read when a sampler asks for it, per sample:
                a bar per ``__getitem__`` would only clutter a training loop (wrap the
                ``DataLoader`` in ``tqdm`` for one over an epoch).
            **kwargs: Filters of :meth:`Collection.subset` (``date_range``, ``bbox``,
                ``cloud_cover_lt``, ``geometries``, ``split``, ``split_column``) and I/O
                options (``max_concurrent``, ``backend``, ``cloud_config``, ``cache_mb``,
                ``max_gap``, ``max_coalesced_size``). ``cache_mb`` defaults to
                :func:`dataset_cache_mb` (5 % of RAM, as GDAL's block cache), larger than
                the other reads' default: an epoch returns to the same tiles many times.

        Raises:
            MissingDependencyError: TorchGeo is not installed.
            BandResolutionError: unknown bands, or a record lacks one (``on_missing``).
            SchemaError: no records, bad options, or bands of different resolutions.

        Example:
            ``ds = collection.to_torchgeo_dataset(bands=["B04", "B08"], chip_size=256)``
        """
        from rasteret.collection import Collection
        from rasteret.outputs import torchgeo as tg_output

        assert isinstance(self, Collection)
        del progress  # nothing up front to show a bar for (see above)
        unknown = sorted(set(kwargs) - set(_FILTER_KEYWORDS) - set(_IO_KEYWORDS))
        if unknown:
            raise TypeError(f"unexpected keyword arguments {unknown}")
        names = self._require_bands([bands] if isinstance(bands, str) else list(bands))
        selected = self.subset(**{k: kwargs[k] for k in _FILTER_KEYWORDS if k in kwargs})
        records = records_for(selected, names)
        labels = _labels(selected, label_field, len(records))
        records, labels = _drop_missing(records, labels, names, on_missing)
        if not records:
            raise SchemaError(
                f"expected at least one record with bands {names} to build a TorchGeo "
                f"dataset from, got none (collection {self.name!r} after filters {sorted(kwargs)})"
            )
        for record in records:
            for meta in record.bands.values():
                if meta is not None:
                    check_north_up(meta.level.transform, meta.href)
        if not allow_resample:
            _check_same_resolution(records, names)
        crs = dataset_crs(records, names[0], target_crs)
        io = {k: kwargs[k] for k in _IO_KEYWORDS if k in kwargs}
        io.setdefault("cache_mb", dataset_cache_mb())
        io["cloud_config"] = read_cloud_config(
            io.get("cloud_config"), data_source, self.data_source
        )
        options = ReadOptions(**io)
        kernel = _kernel(resampling)
        return tg_output.RasteretGeoDataset(
            records,
            names,
            crs=crs,
            res=dataset_res(records, names, crs, res),
            is_image=is_image,
            time_series=time_series,
            labels=labels,
            transforms=transforms,
            chip_size=_chip_size(chip_size),
            resampling=kernel,
            dtype=dtype,
            options=options,
        )


def _labels(collection: Collection, field: str | None, count: int) -> list[Any] | None:
    if field is None:
        return None
    if field not in collection.schema.names:
        raise SchemaError(
            f"expected a label column {field!r} in the collection, got columns "
            f"{collection.schema.names}"
        )
    table = collection.to_table(columns=[ID, DATETIME, field])
    table = table.sort_by([(DATETIME, "ascending"), (ID, "ascending")])
    values = table.column(field).to_pylist()
    assert len(values) == count
    return values


def _drop_missing(
    records: list[RecordRef], labels: list[Any] | None, bands: Sequence[str], on_missing: str
) -> tuple[list[RecordRef], list[Any] | None]:
    if on_missing not in ("raise", "skip"):
        raise SchemaError(f"expected on_missing='raise' or 'skip', got {on_missing!r}")
    keep: list[int] = []
    skipped: list[str] = []
    for i, record in enumerate(records):
        missing = [b for b in bands if record.bands.get(b) is None]
        if not missing:
            keep.append(i)
            continue
        if on_missing == "raise":
            raise BandResolutionError(
                f"expected metadata for band(s) {', '.join(missing)} of record {record.id!r}, "
                "got none; enrich the collection or pass on_missing='skip'"
            )
        skipped.append(record.id)
    if skipped:
        warn(
            f"left {len(skipped)} record(s) without band metadata out of the TorchGeo "
            f"dataset: {', '.join(skipped[:10])}",
            UserWarning,
            stacklevel=3,
        )
    return [records[i] for i in keep], None if labels is None else [labels[i] for i in keep]


def _check_same_resolution(records: Sequence[RecordRef], bands: Sequence[str]) -> None:
    for record in records:
        sizes = {b: m.level.resolution for b in bands if (m := record.bands.get(b)) is not None}
        first = next(iter(sizes.values()))
        if any(not _close(s, first) for s in sizes.values()):
            raise SchemaError(
                f"expected bands of one resolution in record {record.id!r}, got "
                + ", ".join(f"{b}: {s[0]:g}x{s[1]:g}" for b, s in sizes.items())
                + "; pass allow_resample=True to read them all at res="
            )


def _close(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.isclose(x, y, rel_tol=_RES_TOLERANCE) for x, y in zip(a, b, strict=True))


def dataset_crs(records: Sequence[RecordRef], band: str, target_crs: Any) -> str:
    """``target_crs`` as a CRS key, else the most common CRS of ``band`` (ties: first seen).

    Warns when records are in several CRSs and none was chosen.
    """
    if target_crs is not None:
        return crs_key(crs_(target_crs))
    counts: Counter[str] = Counter()
    for record in records:
        meta = record.bands[band]
        assert meta is not None
        key = crs_key(meta.crs, meta.epsg)
        counts[next((k for k in counts if same_crs(k, key)), key)] += 1
    best = max(counts, key=lambda k: counts[k])
    if len(counts) > 1:
        warn(
            f"records are in {len(counts)} CRSs ({', '.join(list(counts)[:4])}); the TorchGeo "
            f"dataset uses the most common one, {best}, warping the others; pass target_crs= "
            "to choose",
            UserWarning,
            stacklevel=3,
        )
    return best


def dataset_res(
    records: Sequence[RecordRef],
    bands: Sequence[str],
    crs: str,
    res: float | tuple[float, float] | None,
) -> tuple[float, float]:
    """``res`` as ``(x, y)``; else the finest native pixel size in ``crs``, else the finest
    pixel size of the grids TorchGeo would warp the records onto."""
    if res is not None:
        pair = (
            (float(res), float(res))
            if isinstance(res, int | float)
            else tuple(float(v) for v in res)
        )
        if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in pair):
            raise SchemaError(
                f"expected res= as one positive number or an (x, y) pair, got {res!r}"
            )
        return pair[0], pair[1]
    native = [
        m.level.resolution
        for r in records
        for b in bands
        if (m := r.bands.get(b)) is not None and same_crs(crs_key(m.crs, m.epsg), crs)
    ]
    if native:
        return min(native, key=lambda s: s[0] * s[1])
    from rasteret.outputs._torchgeo_merge import source_grid

    warped = [
        source_grid(m, crs).res for r in records for b in bands if (m := r.bands.get(b)) is not None
    ]
    return min(warped, key=lambda s: s[0] * s[1])


def _chip_size(value: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(n, int) and n > 0 for n in pair):
        raise SchemaError(f"expected chip_size= a positive int or (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def _kernel(name: str | None) -> Any:
    if name is None:
        return None
    from rasterio.enums import Resampling

    key = str(name).strip().lower()
    if key not in RESAMPLING_NAMES:
        raise SchemaError(
            f"expected resampling= one of {', '.join(RESAMPLING_NAMES)}, got {name!r}"
        )
    return Resampling[key]
