"""GeoTIFF georeferencing of one IFD: CRS, affine transform, nodata, scale/offset.

Results equal what rasterio/GDAL report for the same file with default settings:
``transform`` equals ``src.transform`` (PixelIsPoint shifted by half a pixel, as GDAL does),
``crs`` is equivalent to ``src.crs``, ``nodata`` to ``src.nodata`` and ``scales``/``offsets``
to ``src.scales``/``src.offsets``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final

import numpy as np

from rasteret.errors import HeaderError, UnsupportedFormatError
from rasteret.tiff._geokeys import Key, crs_from_keys, parse_geo_keys
from rasteret.tiff.header import ImageFileDirectory

__all__ = ["GeoReference", "georeference", "overview_transform", "parse_nodata"]

Transform = tuple[float, float, float, float, float, float]
IDENTITY: Final[Transform] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_ROTATION_TOLERANCE: Final = 1e-12


@dataclass(frozen=True, slots=True)
class GeoReference:
    """Where an image's pixels are on Earth."""

    crs: str | None
    """``"EPSG:<code>"``, or WKT2 for a user-defined CRS; ``None`` when the file has none."""
    epsg: int | None
    """The EPSG code when the GeoKeys name one (user-defined CRSs give ``None``)."""
    transform: Transform
    """Affine ``(a, b, c, d, e, f)`` as in ``affine.Affine`` / rasterio, pixel corner based.
    A file with no georeferencing gets the identity, as rasterio reports."""
    pixel_is_point: bool
    """GTRasterTypeGeoKey is 2 (PixelIsPoint); ``transform`` is already shifted to corners."""
    nodata: float | None
    """GDAL_NODATA as a float (float32 images: rounded to float32, as GDAL reports it).
    The exact text, e.g. a uint64 maximum, is ``ImageFileDirectory.gdal_nodata``."""
    scales: tuple[float, ...] | None
    """Per-sample SCALE from GDAL_METADATA (missing samples 1.0), or ``None`` if none given."""
    offsets: tuple[float, ...] | None
    """Per-sample OFFSET from GDAL_METADATA (missing samples 0.0), or ``None`` if none given."""
    georeferenced: bool
    """Whether the file carries a transform (ModelPixelScale+ModelTiepoint or
    ModelTransformation); ``False`` means ``transform`` is the identity placeholder."""


def parse_nodata(text: str | None, *, where: str = "") -> float | None:
    """Parse a GDAL_NODATA value as GDAL does (``"nan"``, ``"-inf"``, big integers) to a float.

    Integers beyond 2**53 lose precision as floats (as in rasterio's ``src.nodata``); the
    exact text stays in :attr:`ImageFileDirectory.gdal_nodata`.

    >>> parse_nodata("-9999"), parse_nodata("nan"), parse_nodata("18446744073709551615")
    (-9999.0, nan, 1.8446744073709552e+19)
    >>> parse_nodata(None) is None
    True
    """
    if text is None:
        return None
    value = text.strip().rstrip("\0").strip()
    try:
        return float(value)  # correctly rounded, also for integers beyond 2**53
    except ValueError:
        raise HeaderError(f"expected a number in GDAL_NODATA{where}, got {text!r}") from None


def _nodata_for(ifd: ImageFileDirectory, where: str) -> float | None:
    """GDAL_NODATA as GDAL reports it: rounded to float32 for float32 samples."""
    value = parse_nodata(ifd.gdal_nodata, where=where)
    if value is not None and ifd.sample_format == 3 and ifd.bits_per_sample == 32:
        with np.errstate(over="ignore"):
            return float(np.float32(value))
    return value


def _scales_offsets(
    xml: str | None, samples: int, where: str
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if not xml:
        return None, None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise HeaderError(
            f"expected GDAL_METADATA XML{where}, got unparsable text: {exc}"
        ) from None
    found: dict[str, dict[int, float]] = {"scale": {}, "offset": {}}
    for item in root.iter("Item"):
        role = (item.get("role") or "").lower()
        sample = item.get("sample")
        if role in found and sample is not None and sample.isdigit() and item.text:
            try:
                found[role][int(sample)] = float(item.text.strip())
            except ValueError:
                raise HeaderError(
                    f"expected a number for {role} of sample {sample} in GDAL_METADATA{where}, "
                    f"got {item.text!r}"
                ) from None
    scales = tuple(found["scale"].get(i, 1.0) for i in range(samples)) if found["scale"] else None
    offsets = (
        tuple(found["offset"].get(i, 0.0) for i in range(samples)) if found["offset"] else None
    )
    return scales, offsets


def _transform(ifd: ImageFileDirectory, where: str) -> Transform | None:
    """GDAL's geotransform rules (tiepoint+scale first, then ModelTransformation)."""
    scale, tiepoint, matrix = ifd.model_pixel_scale, ifd.model_tiepoint, ifd.model_transformation
    if scale is not None and len(scale) >= 2 and scale[0] != 0 and scale[1] != 0:
        if tiepoint is None or len(tiepoint) < 6:
            return None
        a = scale[0]
        # GDAL, against the GeoTIFF spec, treats a negative ScaleY as north-up too.
        e = scale[1] if scale[1] < 0 else -scale[1]
        return (a, 0.0, tiepoint[3] - tiepoint[0] * a, 0.0, e, tiepoint[4] - tiepoint[1] * e)
    if matrix is not None and len(matrix) == 16:
        a, b, c, d, e, f = matrix[0], matrix[1], matrix[3], matrix[4], matrix[5], matrix[7]
        size = max(abs(a), abs(e))
        if abs(b) > _ROTATION_TOLERANCE * size or abs(d) > _ROTATION_TOLERANCE * size:
            raise UnsupportedFormatError(
                f"expected a north-up ModelTransformation (no rotation or shear){where}, "
                f"got a={a}, b={b}, d={d}, e={e}"
            )
        return (a, 0.0, c, 0.0, e, f)
    if tiepoint is not None and len(tiepoint) > 6:
        raise UnsupportedFormatError(
            f"expected ModelPixelScale+ModelTiepoint or ModelTransformation{where}, "
            f"got {len(tiepoint) // 6} ground control points only"
        )
    return None


def georeference(ifd: ImageFileDirectory, *, url: str = "") -> GeoReference:
    """The georeferencing of one IFD (normally IFD 0; overviews carry no GeoTIFF tags).

    Raises:
        HeaderError: malformed GeoKeyDirectory, GDAL_NODATA or GDAL_METADATA.
        UnsupportedFormatError: a rotated/sheared transform, ground control points only, or a
            CRS that cannot be built from the GeoKeys.

    Example:
        >>> from rasteret.tiff.header import parse_header
        >>> import struct
        >>> def entry(tag, kind, count, value): return struct.pack("<HHII", tag, kind, count, value)
        >>> ifd = struct.pack("<H", 6) + b"".join([entry(256, 3, 1, 1), entry(257, 3, 1, 1),
        ...     entry(273, 4, 1, 0), entry(279, 4, 1, 0), entry(33550, 12, 3, 86),
        ...     entry(33922, 12, 6, 110)]) + struct.pack("<I", 0)
        >>> values = struct.pack("<3d", 10, 10, 0) + struct.pack("<6d", 0, 0, 0, 5e5, 6e6, 0)
        >>> ifd0 = parse_header(b"II*\\x00" + struct.pack("<I", 8) + ifd + values).ifds[0]
        >>> georeference(ifd0).transform
        (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)
    """
    where = f" in IFD {ifd.index} at {url}" if url else f" in IFD {ifd.index}"
    keys = (
        parse_geo_keys(ifd.geo_key_directory, ifd.geo_double_params, ifd.geo_ascii_params, where)
        if ifd.geo_key_directory is not None
        else {}
    )
    pixel_is_point = keys.get(Key.GT_RASTER_TYPE) == 2
    transform = _transform(ifd, where)
    georeferenced = transform is not None
    if transform is None:
        transform = IDENTITY
    elif pixel_is_point:
        a, b, c, d, e, f = transform
        transform = (a, b, c - (a * 0.5 + b * 0.5), d, e, f - (d * 0.5 + e * 0.5))
    key_crs = crs_from_keys(keys, where)
    scales, offsets = _scales_offsets(ifd.gdal_metadata, ifd.samples_per_pixel, where)
    return GeoReference(
        crs=key_crs.crs,
        epsg=key_crs.epsg,
        transform=transform,
        pixel_is_point=pixel_is_point,
        nodata=_nodata_for(ifd, where),
        scales=scales,
        offsets=offsets,
        georeferenced=georeferenced,
    )


def overview_transform(
    base: Transform, base_width: int, base_height: int, width: int, height: int
) -> Transform:
    """The transform GDAL gives an overview of ``width`` x ``height`` pixels.

    Pixel sizes scale by ``base_width / width`` and ``base_height / height``; the origin stays.

    >>> overview_transform((10.0, 0.0, 5e5, 0.0, -10.0, 6e6), 1000, 500, 250, 125)
    (40.0, 0.0, 500000.0, 0.0, -40.0, 6000000.0)
    """
    sx, sy = base_width / width, base_height / height
    a, b, c, d, e, f = base
    return (a * sx, b * sy, c, d * sx, e * sy, f)
