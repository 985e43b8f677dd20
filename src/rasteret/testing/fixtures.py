"""The GeoTIFF fixture matrix: small, deterministic files written with rasterio/GDAL.

Each :class:`FixtureSpec` names one file by its properties (``uint16_deflate_pred2_tile256``)
and :func:`write_fixture` writes it; :data:`FIXTURE_MATRIX` covers every dtype GDAL writes,
every TIFF codec GDAL writes, both predictors, tile shapes, chunky and planar layouts,
BigTIFF, big-endian, COG overviews, internal masks, nodata (NaN included), strips, sparse
files, PixelIsPoint, a user-defined CRS and 1-bit data. Images are not multiples of the
tile size, so every file has partial edge tiles.

Not in the matrix, because GDAL's GTiff driver cannot write them: float16 (GDAL < 3.11 and
rasterio have no Float16), JPEG 2000 inside TIFF (34712) and JPEG XL (no codec in the wheel).

Pixel values come from :func:`fixture_data`: seeded by the fixture name, smooth gradients
plus noise (so compression and predictors see realistic data), a rectangle of nodata when
the spec has a nodata value, and full use of each integer type's range.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "FIXTURE_MATRIX",
    "FIXTURE_VERSION",
    "FixtureSpec",
    "fixture_data",
    "fixture_mask",
    "get_fixture_spec",
    "spec_from_name",
    "write_fixture",
    "write_fixture_matrix",
]

FIXTURE_VERSION = 1
"""Bumped whenever the data generator changes, so cached fixture folders are rebuilt."""

_ORIGIN = (500_000.0, 4_600_000.0)
_PIXEL_SIZE = 10.0
_USER_CRS = (
    "+proj=lcc +lat_0=45 +lon_0=10 +lat_1=40 +lat_2=50 +x_0=100000 +y_0=200000 "
    "+ellps=GRS80 +units=m +no_defs"
)


@dataclass(frozen=True)
class FixtureSpec:
    """One GeoTIFF of the matrix, named by its properties."""

    name: str
    """File stem, e.g. ``uint16_deflate_pred2_tile256``."""
    dtype: str = "uint8"
    """NumPy dtype name of the bands (1-bit files are ``uint8`` with ``NBITS=1``)."""
    count: int = 1
    """Number of bands."""
    width: int = 520
    height: int = 300
    driver: Literal["GTiff", "COG"] = "GTiff"
    """``COG`` files are written as GTiff, then copied by GDAL's COG driver."""
    creation_options: Mapping[str, str] = field(default_factory=dict, hash=False)
    """GDAL creation options (upper-case keys), passed through unchanged."""
    nodata: float | None = None
    crs: str | None = "EPSG:32633"
    """``None`` writes a file without georeferencing."""
    overviews: tuple[int, ...] = ()
    """Internal overview factors built by GTiff (the COG driver picks its own)."""
    internal_mask: bool = False
    """Write a per-dataset mask as a 1-bit internal mask IFD."""
    pixel_is_point: bool = False
    """Write ``GTRasterTypeGeoKey = RasterPixelIsPoint``."""
    sparse: bool = False
    """Write only some blocks (with ``SPARSE_OK=TRUE`` the rest stay offset 0 / size 0)."""

    @property
    def compression(self) -> str:
        """Upper-case GDAL compression name (``NONE`` when unset)."""
        return self.creation_options.get("COMPRESS", "NONE").upper()

    @property
    def tiled(self) -> bool:
        """Whether the file is tiled (COG files always are)."""
        if self.driver == "COG":
            return True
        return self.creation_options.get("TILED", "NO").upper() in ("YES", "TRUE")

    @property
    def nbits(self) -> int | None:
        """Value of ``NBITS`` when set."""
        value = self.creation_options.get("NBITS")
        return int(value) if value is not None else None

    @property
    def lossy(self) -> bool:
        """Whether the codec may change pixel values (JPEG, lossy WebP, LERC with error)."""
        comp = self.compression
        if comp == "JPEG":
            return True
        if comp == "WEBP":
            return self.creation_options.get("WEBP_LOSSLESS", "NO").upper() not in ("YES", "TRUE")
        if comp.startswith("LERC"):
            return float(self.creation_options.get("MAX_Z_ERROR", "0")) > 0
        return False


_NAMES = """
uint8_none_tile256_300x200 uint8_deflate_pred2_tile256 int8_none_tile256_300x200
int8_deflate_pred2_tile256 uint16_none_tile256_300x200 uint16_deflate_pred2_tile256
int16_none_tile256_300x200 int16_deflate_pred2_tile256 uint32_none_tile256_300x200
uint32_deflate_pred2_tile256 int32_none_tile256_300x200 int32_deflate_pred2_tile256
uint64_none_tile256_300x200 uint64_deflate_pred2_tile256 int64_none_tile256_300x200
int64_deflate_pred2_tile256 float32_none_tile256_300x200 float32_deflate_pred3_tile256
float64_none_tile256_300x200 float64_deflate_pred3_tile256

uint16_zstd_tile256 int32_zstd_pred2_tile256 float32_zstd_pred3_tile256 uint8_zstd_pred2_tile256
float64_zstd_pred3_tile256 uint16_lzw_tile256 int32_lzw_pred2_tile256 float32_lzw_pred3_tile256
uint16_packbits_tile256 float32_packbits_tile256 uint16_lzma_tile256 float32_lzma_tile256
float32_deflate_pred2_tile256

float32_lerc_tile256 float32_lerc_deflate_maxz0.01_tile256 uint16_lerc_zstd_tile256
float64_lerc_zstd_tile256 int8_lerc_tile256 uint8_lerc_3band_pixel_tile256
float32_lerc_nodatanan_tile256 float32_lerc_deflate_4band_band_tile256_300x200
float32_lerc_bigendian_tile256

uint8_jpeg_ycbcr_3band_pixel_tile256 uint8_jpeg_rgb_3band_pixel_tile256
uint8_jpeg_minisblack_3band_pixel_tile256 uint8_jpeg_4band_pixel_tile256
uint8_jpeg_3band_band_tile256 uint8_jpeg_tile256 uint8_jpeg_ycbcr_3band_pixel_mask_striped_rows64
uint8_webp_3band_pixel_tile256 uint8_webp_lossless_4band_pixel_tile256
uint8_webp_4band_pixel_tile512

uint16_deflate_pred2_tile512 uint16_deflate_tile512x256 int16_none_tile256x512_300x200
uint8_deflate_tile256_100x60

uint8_deflate_pred2_3band_pixel_tile256 uint8_deflate_pred2_3band_band_tile256
uint16_none_4band_pixel_tile256_300x200 uint16_none_4band_band_tile256_300x200
int64_zstd_pred2_3band_pixel_tile256_300x200 int64_zstd_pred2_3band_band_tile256_300x200
float32_deflate_pred3_3band_pixel_tile256 float32_deflate_pred3_3band_band_tile256
int16_lzw_pred2_4band_pixel_tile512x256 float64_deflate_pred3_4band_pixel_tile256_300x200

uint16_deflate_bigtiff_tile256 float32_zstd_pred3_3band_pixel_bigtiff_tile256
uint16_none_bigendian_tile256_300x200 uint16_deflate_pred2_bigendian_tile256
int32_lzw_pred2_3band_pixel_bigendian_tile256 int64_zstd_pred2_bigendian_tile256_300x200
float32_deflate_pred3_bigendian_tile256 float64_deflate_pred3_3band_pixel_bigendian_tile256_300x200
float64_none_bigendian_striped_rows16_300x200 uint8_none_bigtiff_bigendian_tile256

int16_deflate_pred2_overviews_tile256 uint8_deflate_mask_tile256
uint16_zstd_3band_pixel_mask_overviews_tile256 uint16_cog_deflate_pred2_overviews_tile256
uint8_cog_jpeg_3band_mask_overviews_tile256 float32_cog_lerc_nodatanan_overviews_tile256
uint8_cog_webp_3band_overviews_tile512_1100x700 int16_cog_zstd_pred2_4band_mask_overviews_tile256

uint16_deflate_nodata0_tile256 int16_deflate_nodata-9999_tile256
float32_deflate_pred3_nodatanan_tile256 float64_none_nodata-1e30_tile256_300x200
uint16_none_striped_rows48 int16_deflate_pred2_striped_rows64 uint8_lzw_3band_pixel_striped_rows48
float32_lzw_pred3_3band_band_striped_rows48
uint16_deflate_sparse_tile256 int16_none_sparse_nodata-1_tile256
float32_deflate_pixelispoint_tile256 int16_deflate_usercrs_tile256 uint8_deflate_nogeo_tile256
bit1_none_tile256 bit1_deflate_striped_rows50_701x203
"""
"""Every fixture, by name; :func:`spec_from_name` turns each name into its spec."""

_CODECS = {"none", "deflate", "zstd", "lzw", "packbits", "lzma", "jpeg", "webp", "lerc"}
_DTYPES = {
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float32",
    "float64",
    "bit1",
}
_FLAGS = {
    "bigtiff": {"BIGTIFF": "YES"},
    "bigendian": {"ENDIANNESS": "BIG"},
    "pixel": {"INTERLEAVE": "PIXEL"},
    "band": {"INTERLEAVE": "BAND"},
    "ycbcr": {"PHOTOMETRIC": "YCBCR"},
    "rgb": {"PHOTOMETRIC": "RGB"},
    "minisblack": {"PHOTOMETRIC": "MINISBLACK"},
    "lossless": {"WEBP_LOSSLESS": "TRUE"},
    "striped": {"TILED": "NO"},
    "sparse": {"SPARSE_OK": "TRUE"},
}
_COG_PREDICTOR = {"2": "STANDARD", "3": "FLOATING_POINT"}


def spec_from_name(name: str) -> FixtureSpec:
    """Parse a fixture name (``_``-separated properties) into its :class:`FixtureSpec`.

    Tokens: a dtype first (``bit1`` is 1-bit ``uint8``), a codec (``lerc_deflate``,
    ``lerc_zstd`` included), ``pred2``/``pred3``, ``3band``, ``pixel``/``band``,
    ``tile256``/``tile512x256`` (width x height), ``striped`` with ``rows48``, ``cog``,
    ``bigtiff``, ``bigendian``, ``mask``, ``overviews``, ``sparse``, ``nodata<value>``,
    ``pixelispoint``, ``usercrs``, ``nogeo``, ``ycbcr``/``rgb``/``minisblack``, ``lossless`` (WebP),
    ``maxz<error>`` (LERC) and ``<width>x<height>`` (default 520x300).

    Example:
        >>> spec = spec_from_name("int16_deflate_pred2_3band_pixel_tile512x256")
        >>> spec.count, spec.creation_options["BLOCKXSIZE"], spec.creation_options["PREDICTOR"]
        (3, '512', '2')
    """
    tokens = name.split("_")
    if tokens[0] not in _DTYPES:
        raise ValueError(f"expected a fixture name starting with a dtype, got {name!r}")
    opts: dict[str, str] = {"NBITS": "1"} if tokens[0] == "bit1" else {}
    kw: dict[str, object] = {}
    cog = "cog" in tokens
    tile: tuple[str, str] | None = None
    pos = 1
    while pos < len(tokens):
        tok = tokens[pos]
        pos += 1
        if tok == "lerc" and pos < len(tokens) and tokens[pos] in ("deflate", "zstd"):
            tok = f"lerc_{tokens[pos]}"
            pos += 1
        if (m := re.fullmatch(r"tile(\d+)(?:x(\d+))?", tok)) is not None:
            tile = (m[1], m[2] or m[1])
        elif (m := re.fullmatch(r"(\d+)x(\d+)", tok)) is not None:
            kw.update(width=int(m[1]), height=int(m[2]))
        elif (m := re.fullmatch(r"pred([23])", tok)) is not None:
            opts["PREDICTOR"] = _COG_PREDICTOR[m[1]] if cog else m[1]
        elif (m := re.fullmatch(r"(\d)band", tok)) is not None:
            kw["count"] = int(m[1])
        elif (m := re.fullmatch(r"rows(\d+)", tok)) is not None:
            opts["BLOCKYSIZE"] = m[1]
        elif (m := re.fullmatch(r"maxz([\d.]+)", tok)) is not None:
            opts["MAX_Z_ERROR"] = m[1]
        elif (m := re.fullmatch(r"nodata(.+)", tok)) is not None:
            kw["nodata"] = float(m[1])
        elif tok in _CODECS or tok.startswith("lerc_"):
            if tok != "none":
                opts["COMPRESS"] = tok.upper()
        elif tok in _FLAGS:
            opts.update(_FLAGS[tok])
            kw["sparse"] = kw.get("sparse", False) or tok == "sparse"
        elif tok == "cog":
            kw["driver"] = "COG"
        elif tok == "mask":
            kw["internal_mask"] = True
        elif tok == "overviews":
            kw["overviews"] = () if cog else (2, 4)
        elif tok == "pixelispoint":
            kw["pixel_is_point"] = True
        elif tok in ("usercrs", "nogeo"):
            kw["crs"] = _USER_CRS if tok == "usercrs" else None
        else:
            raise ValueError(f"unknown token {tok!r} in fixture name {name!r}")
    if tile is not None and cog:
        opts["BLOCKSIZE"] = tile[0]
        opts["OVERVIEW_RESAMPLING"] = "NEAREST"
    elif tile is not None:
        opts.update(TILED="YES", BLOCKXSIZE=tile[0], BLOCKYSIZE=tile[1])
    dtype = "uint8" if tokens[0] == "bit1" else tokens[0]
    return FixtureSpec(name=name, dtype=dtype, creation_options=opts, **kw)  # type: ignore[arg-type]


FIXTURE_MATRIX: tuple[FixtureSpec, ...] = tuple(spec_from_name(n) for n in _NAMES.split())
"""Every fixture of the matrix (names are unique)."""

_BY_NAME = {spec.name: spec for spec in FIXTURE_MATRIX}
assert len(_BY_NAME) == len(FIXTURE_MATRIX), "fixture names must be unique"


def get_fixture_spec(name: str) -> FixtureSpec:
    """Return the spec of the matrix fixture called ``name``.

    Example:
        >>> get_fixture_spec("uint16_deflate_pred2_tile512").dtype
        'uint16'
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"expected a fixture name of FIXTURE_MATRIX, got {name!r}") from None


def _nodata_window(spec: FixtureSpec) -> tuple[slice, slice]:
    h, w = spec.height, spec.width
    return slice(h // 5, h // 5 + h // 4), slice(w // 6, w // 6 + w // 5)


def fixture_data(spec: FixtureSpec) -> np.ndarray:
    """Deterministic pixels of a fixture, shape ``(count, height, width)``.

    Smooth gradients plus seeded noise spanning most of the dtype's range; a rectangle of
    the nodata value when the spec has one. 1-bit fixtures hold 0 and 1.

    Example:
        >>> data = fixture_data(get_fixture_spec("int8_deflate_pred2_tile256"))
        >>> data.shape, str(data.dtype)
        ((1, 300, 520), 'int8')
    """
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    h, w = spec.height, spec.width
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    dtype = np.dtype(spec.dtype)
    out = np.empty((spec.count, h, w), dtype=dtype)
    for band in range(spec.count):
        phase = 0.9 * band
        f = (
            0.5
            + 0.22 * np.sin(x / 47.0 + phase)
            + 0.18 * np.cos(y / 31.0 - phase)
            + 0.08 * (x - y) / (w + h)
        )
        if spec.nbits == 1:
            out[band] = (f + rng.normal(0.0, 0.02, (h, w))) > 0.5
        elif dtype.kind == "f":  # quantised to 1/64 so predictor 3 + deflate compress
            values = f * 4000.0 - 1000.0 + rng.normal(0.0, 0.05, (h, w))
            out[band] = np.round(values * 64.0) / 64.0
        else:  # the whole range (predictor 2 wraps around), plus a few units of noise
            info = np.iinfo(dtype)
            lo, hi = float(info.min), float(info.max) * 0.999
            step = np.floor((hi - lo) / 1024.0)  # 1024 levels: differences stay compressible
            noise = rng.integers(-2, 3, (h, w))
            values = np.clip(lo + np.floor(f * 1024.0) * step + noise, lo, hi)
            out[band] = values.astype(dtype)
            if dtype.itemsize == 8:  # float64 lost the low bits: put noise back in them
                out[band] ^= rng.integers(0, 1 << 6, (h, w)).astype(dtype)
    if spec.nodata is not None:
        out[(slice(None), *_nodata_window(spec))] = spec.nodata
    return out


def fixture_mask(spec: FixtureSpec) -> np.ndarray:
    """The dataset mask written for ``internal_mask`` fixtures: 255 valid, 0 masked.

    Example:
        >>> mask = fixture_mask(get_fixture_spec("uint8_deflate_mask_tile256"))
        >>> sorted(np.unique(mask).tolist())
        [0, 255]
    """
    h, w = spec.height, spec.width
    y, x = np.mgrid[0:h, 0:w]
    inside = ((x - 0.6 * w) / (0.3 * w)) ** 2 + ((y - 0.55 * h) / (0.3 * h)) ** 2 < 1.0
    mask = np.where(inside, 0, 255).astype(np.uint8)
    mask[:, : w // 10] = 0
    return mask


def _sparse_windows(spec: FixtureSpec) -> list[tuple[int, int, int, int]]:
    """(col, row, width, height) windows to write for sparse fixtures: two whole blocks."""
    bw = int(spec.creation_options.get("BLOCKXSIZE", "256"))
    bh = int(spec.creation_options.get("BLOCKYSIZE", "256"))
    wins = [(0, 0, bw, bh), (bw, bh, bw, bh)]
    return [(c, r, min(cw, spec.width - c), min(ch, spec.height - r)) for c, r, cw, ch in wins]


def _write_gtiff(spec: FixtureSpec, path: Path, options: Mapping[str, str]) -> None:
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    data = fixture_data(spec)
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": spec.width,
        "height": spec.height,
        "count": spec.count,
        "dtype": spec.dtype,
        "nodata": spec.nodata,
    }
    if spec.crs is not None:
        profile["crs"] = spec.crs
        profile["transform"] = Affine(_PIXEL_SIZE, 0.0, _ORIGIN[0], 0.0, -_PIXEL_SIZE, _ORIGIN[1])
    profile.update({k.lower(): v for k, v in options.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
            if spec.pixel_is_point:
                dst.update_tags(AREA_OR_POINT="Point")
            if spec.sparse:
                for col, row, cw, ch in _sparse_windows(spec):
                    win = Window(col, row, cw, ch)
                    dst.write(data[:, row : row + ch, col : col + cw], window=win)
            else:
                dst.write(data)
            if spec.internal_mask:
                dst.write_mask(fixture_mask(spec))
            if spec.overviews:
                dst.build_overviews(list(spec.overviews), Resampling.nearest)


def write_fixture(spec: FixtureSpec, folder: str | os.PathLike[str]) -> Path:
    """Write one fixture as ``folder/<name>.tif`` (atomically) and return its path.

    Example:
        >>> import tempfile
        >>> path = write_fixture(get_fixture_spec("uint8_deflate_tile256_100x60"),
        ...                      tempfile.mkdtemp())
        >>> path.name
        'uint8_deflate_tile256_100x60.tif'
    """
    import rasterio.shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}.tif"
    tmp = folder / f".{spec.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.tif"
    try:
        if spec.driver == "GTiff":
            _write_gtiff(spec, tmp, spec.creation_options)
        else:
            src = tmp.with_suffix(".src.tif")
            try:
                _write_gtiff(spec, src, {"TILED": "YES"})
                with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                    rasterio.shutil.copy(src, tmp, driver="COG", **spec.creation_options)
            finally:
                src.unlink(missing_ok=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_fixture_matrix(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Write every fixture of :data:`FIXTURE_MATRIX` not yet in ``folder``; name -> path.

    Example:
        >>> import tempfile
        >>> paths = write_fixture_matrix(tempfile.mkdtemp())  # doctest: +SKIP
    """
    folder = Path(folder)
    paths: dict[str, Path] = {}
    for spec in FIXTURE_MATRIX:
        path = folder / f"{spec.name}.tif"
        if not path.exists():
            write_fixture(spec, folder)
        paths[spec.name] = path
    return paths
