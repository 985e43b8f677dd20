"""The options of a pixel read: every keyword of API.md "Pixel reads", validated once.

>>> opts = ReadOptions(resolution=20, resampling="average")
>>> opts.resampling_for("uint16").name
'average'
>>> ReadOptions().resampling_for("float32").name
'nearest'
>>> ReadOptions(resolution=10, out_shape=(64, 64))
Traceback (most recent call last):
...
rasteret.errors.SchemaError: expected at most one of resolution= and out_shape=, got both (resolution=10, out_shape=(64, 64))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from rasterio.enums import Resampling

from rasteret.errors import SchemaError

__all__ = [
    "DEFAULT_CACHE_MB",
    "RESAMPLING_NAMES",
    "OnError",
    "OnMissing",
    "ReadOptions",
    "representable",
]

DEFAULT_CACHE_MB = 256.0
"""Decoded-tile cache size: 256 MB holds ~128 decoded 1024x1024 uint16 tiles."""

RESAMPLING_NAMES = (
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "rms",
)
"""Kernels both GDAL RasterIO (overview/out_shape reads) and the GDAL warper implement."""

OnMissing = Literal["raise", "skip"]
OnError = Literal["raise", "skip"]


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How to read pixels; the defaults read at full resolution with no warping.

    Every field mirrors a keyword of ``get_numpy`` / ``get_xarray`` / ``get_gdf``.
    """

    all_touched: bool = False
    """Burn every pixel the AOI touches, not only those whose centre is inside it."""
    target_crs: Any = None
    """CRS of the output grid; default: the records' CRS (the most common one, with a
    warning, when they differ)."""
    resolution: float | tuple[float, float] | None = None
    """Output pixel size (x, y) in target CRS units; default: the finest source resolution."""
    out_shape: tuple[int, int] | None = None
    """Output (height, width) of every chip; the AOI's snapped bounds divided into it."""
    resampling: str | None = None
    """Kernel name of :data:`RESAMPLING_NAMES`; default ``nearest`` (never silently bilinear)."""
    fill_value: int | float | None = None
    """Value of invalid pixels; default: the band's nodata, else 0."""
    dtype: str | None = None
    """Output dtype; default: the bands' common dtype (``numpy.result_type``)."""
    max_concurrent: int | None = None
    """Requests in flight for this read (the global bound of :mod:`rasteret.io` still holds)."""
    backend: Any = None
    """An obstore store or any object with async ``get_range``/``get_ranges``."""
    cloud_config: Any = None
    """A :class:`rasteret.io.stores.CloudConfig` (requester-pays, URL rewrites, ...)."""
    cache_mb: float = DEFAULT_CACHE_MB
    """Size of the process-wide decoded-tile cache in MB; 0 disables it."""
    max_gap: int | None = None
    """Largest byte gap merged into one request (default: :mod:`rasteret.io.ranges`)."""
    max_coalesced_size: int | None = None
    """Largest merged request in bytes (default: :mod:`rasteret.io.ranges`); a read also
    keeps its merged requests below its bytes / 16 (at least 1 MiB), so its bytes travel
    over parallel connections (:func:`rasteret.read.execute.spread`)."""
    on_missing: OnMissing = "raise"
    """A requested band without metadata: ``raise`` BandResolutionError, or ``skip`` the
    record and list it in ``ChipSet.skipped``."""
    progress: bool = False
    """Show a progress bar (tqdm) over the chips of the read."""
    retries: int | None = None
    """Retries of a failed request (default :data:`rasteret.io.fetch.DEFAULT_RETRIES`); 0
    raises at the first failure."""
    request_timeout: float | None = None
    """Seconds one request may take before it is abandoned and retried (default
    :data:`rasteret.io.fetch.DEFAULT_REQUEST_TIMEOUT`)."""
    on_error: OnError = "raise"
    """Tile bytes that cannot be fetched (after retries) or decoded: ``raise`` the error, or
    ``skip`` the chips that need them, list each (record, band) in ``ChipSet.failed`` and
    warn with the count."""
    whole_tiles: bool = False
    """Decode every tile whole, even when the read needs only its top rows (by default a
    Deflate tile stops inflating after them, and is cached with the state that decodes the
    rows below for a later read, without a second fetch: see
    :class:`~rasteret.tiff.decode.PartialTile`). One whole-tile inflate is ~7% faster per
    row than a streamed one: worth it only when later reads will need every row anyway."""

    def __post_init__(self) -> None:
        if self.resolution is not None and self.out_shape is not None:
            raise SchemaError(
                "expected at most one of resolution= and out_shape=, got both "
                f"(resolution={self.resolution!r}, out_shape={self.out_shape!r})"
            )
        if self.resolution is not None:
            res = self.resolution_xy
            if res is None or not all(math.isfinite(r) and r > 0 for r in res):
                raise SchemaError(
                    "expected resolution= as one positive number or an (x, y) pair, "
                    f"got {self.resolution!r}"
                )
        if self.out_shape is not None and not (
            len(self.out_shape) == 2
            and all(isinstance(n, int | np.integer) and n > 0 for n in self.out_shape)
        ):
            raise SchemaError(
                f"expected out_shape= as (height, width) positive integers, got {self.out_shape!r}"
            )
        if (
            self.resampling is not None
            and _resampling_name(self.resampling) not in RESAMPLING_NAMES
        ):
            raise SchemaError(
                f"expected resampling= one of {', '.join(RESAMPLING_NAMES)}, got {self.resampling!r}"
            )
        if self.on_error not in ("raise", "skip"):
            raise SchemaError(f"expected on_error='raise' or 'skip', got {self.on_error!r}")
        if self.retries is not None and not (isinstance(self.retries, int) and self.retries >= 0):
            raise SchemaError(f"expected retries= an integer >= 0, got {self.retries!r}")
        if self.request_timeout is not None and not self.request_timeout > 0:
            raise SchemaError(
                f"expected request_timeout= seconds > 0, got {self.request_timeout!r}"
            )
        if self.on_missing not in ("raise", "skip"):
            raise SchemaError(f"expected on_missing='raise' or 'skip', got {self.on_missing!r}")
        if not (self.cache_mb >= 0):
            raise SchemaError(f"expected cache_mb >= 0, got {self.cache_mb!r}")
        if self.dtype is not None:
            try:
                np.dtype(self.dtype)
            except TypeError as exc:
                raise SchemaError(f"expected dtype= a NumPy dtype, got {self.dtype!r}") from exc

    @property
    def resolution_xy(self) -> tuple[float, float] | None:
        """``resolution`` as a positive ``(x, y)`` pair, or None."""
        res = self.resolution
        if res is None:
            return None
        if isinstance(res, int | float | np.number):
            return float(res), float(res)
        try:
            rx, ry = (float(v) for v in res)
        except (TypeError, ValueError):
            return None
        return abs(rx), abs(ry)

    def resampling_for(self, dtype: str | np.dtype) -> Resampling:
        """The kernel for a band of ``dtype``: the requested one, else nearest.

        Nearest is the default for every dtype: integer (class) data never turns into
        interpolated values unless bilinear/cubic/... is asked for explicitly.
        """
        del dtype  # one default for all dtypes, documented above
        if self.resampling is None:
            return Resampling.nearest
        return Resampling[_resampling_name(self.resampling)]


def _resampling_name(value: Any) -> str:
    if isinstance(value, Resampling):
        return value.name
    return str(value).strip().lower().replace("-", "_")


def representable(value: float, dtype: np.dtype) -> bool:
    """True when ``value`` survives a round trip through ``dtype`` (NaN only in floats).

    >>> representable(0, np.dtype("uint8")), representable(-1, np.dtype("uint8"))
    (True, False)
    >>> representable(float("nan"), np.dtype("float32")), representable(float("nan"), np.dtype("int16"))
    (True, False)
    """
    if isinstance(value, float) and math.isnan(value):
        return dtype.kind in "fc"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    if dtype.kind == "b":
        return value in (0, 1)
    with np.errstate(over="ignore"):
        return bool(np.array(value, dtype=dtype) == value) or math.isinf(value)
