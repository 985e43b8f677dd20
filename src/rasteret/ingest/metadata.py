"""``{band}_metadata`` values: from a parsed TIFF header, to Arrow rows, and back.

The read layer works with :class:`BandMetadata` objects; the collection stores them as the
``BAND_METADATA_TYPE`` struct of :mod:`rasteret.ingest.schema`.

>>> level = RasterLevel(
...     image_width=512, image_height=256, tile_width=256, tile_height=256, is_tiled=True,
...     transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0),
...     tile_offsets=np.array([100, 200], dtype=np.uint64),
...     tile_byte_counts=np.array([100, 100], dtype=np.uint64),
...     compression=8, predictor=2, photometric=1, bits_per_sample=16, sample_format=1,
...     samples_per_pixel=1, planar_configuration=1)
>>> level.tiles_across, level.tiles_down
(2, 1)
>>> level.tile_range(1)
(200, 300)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from rasteret.errors import HeaderError, UnsupportedFormatError
from rasteret.tiff.decode import TileLayout
from rasteret.tiff.geo import GeoReference, georeference, overview_transform
from rasteret.tiff.header import ImageFileDirectory, TiffHeader

__all__ = ["BandMetadata", "RasterLevel", "band_metadata_from_header"]

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True, slots=True, eq=False)
class RasterLevel:
    """The grid and tile facts of one image: full resolution, an overview, or a mask."""

    image_width: int
    image_height: int
    tile_width: int
    tile_height: int
    is_tiled: bool
    transform: Transform
    """Affine (a, b, c, d, e, f) of this level's pixel grid, as rasterio reports it."""
    tile_offsets: np.ndarray
    """uint64 offsets of this band's tiles (for planar files, this sample's plane only)."""
    tile_byte_counts: np.ndarray
    compression: int
    predictor: int
    photometric: int
    bits_per_sample: int
    sample_format: int
    samples_per_pixel: int
    planar_configuration: int
    jpeg_tables: bytes | None = None
    ycbcr_subsampling: tuple[int, ...] | None = None
    lerc_parameters: tuple[int, ...] | None = None

    @property
    def tiles_across(self) -> int:
        return -(-self.image_width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-self.image_height // self.tile_height)

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size (x, y) as positive numbers."""
        a, _, _, _, e, _ = self.transform
        return abs(a), abs(e)

    def tile_range(self, tile: int) -> tuple[int, int]:
        """Half-open byte range ``(start, end)`` of tile number ``tile`` (row-major)."""
        start = int(self.tile_offsets[tile])
        return start, start + int(self.tile_byte_counts[tile])

    def tile_rows(self, tile_row: int) -> int:
        """Rows stored in tiles of row ``tile_row`` (the last strip of a striped image is short)."""
        if self.is_tiled:
            return self.tile_height
        return min(self.tile_height, self.image_height - tile_row * self.tile_height)

    def layout(self, byte_order: str) -> TileLayout:
        """The decode layout of this level's tiles (``byte_order`` of the file: ``<``/``>``).

        Raises:
            UnsupportedFormatError: a sample type NumPy has no native dtype for.
        """
        kinds = {1: "uint", 2: "int", 3: "float"}
        bits = self.bits_per_sample
        if (
            self.sample_format not in kinds
            or bits not in (1, 8, 16, 32, 64)
            or (bits == 1 and self.sample_format != 1)
        ):
            raise UnsupportedFormatError(
                f"expected SampleFormat 1/2/3 with 8, 16, 32 or 64 bits (or 1-bit unsigned), "
                f"got SampleFormat {self.sample_format} with {bits} bits"
            )
        return TileLayout(
            tile_width=self.tile_width,
            tile_height=self.tile_height,
            samples=self.samples_per_pixel if self.planar_configuration == 1 else 1,
            dtype="uint8" if bits == 1 else f"{kinds[self.sample_format]}{bits}",
            bits_per_sample=bits,
            big_endian=byte_order == ">",
            compression=self.compression,
            predictor=self.predictor,
            photometric=self.photometric,
            planar_configuration=self.planar_configuration,
            jpeg_tables=self.jpeg_tables,
            ycbcr_subsampling=None
            if self.ycbcr_subsampling is None
            else (int(self.ycbcr_subsampling[0]), int(self.ycbcr_subsampling[1])),
            lerc_parameters=self.lerc_parameters,
        )

    def to_row(self) -> dict[str, Any]:
        """This level as a Python dict matching ``LEVEL_TYPE``."""
        row = {name: getattr(self, name) for name in _LEVEL_FIELDS}
        row["transform"] = list(self.transform)
        row["tile_offsets"] = self.tile_offsets.tolist()
        row["tile_byte_counts"] = self.tile_byte_counts.tolist()
        for key in ("ycbcr_subsampling", "lerc_parameters"):
            row[key] = None if row[key] is None else list(row[key])
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RasterLevel:
        """Inverse of :meth:`to_row` (accepts the dicts ``pyarrow`` gives for the struct)."""
        kwargs: dict[str, Any] = {name: row.get(name) for name in _LEVEL_FIELDS}
        kwargs["transform"] = tuple(row["transform"])
        kwargs["tile_offsets"] = np.asarray(row["tile_offsets"], dtype=np.uint64)
        kwargs["tile_byte_counts"] = np.asarray(row["tile_byte_counts"], dtype=np.uint64)
        for key in ("ycbcr_subsampling", "lerc_parameters"):
            value = kwargs[key]
            kwargs[key] = None if value is None else tuple(value)
        return cls(**kwargs)


_LEVEL_FIELDS = tuple(f.name for f in fields(RasterLevel))
"""RasterLevel's field names (``dataclasses.fields`` is slow enough to show in every read)."""


@dataclass(frozen=True, slots=True, eq=False)
class BandMetadata:
    """Everything a pixel read needs about one band of one record."""

    level: RasterLevel
    """The full-resolution image."""
    dtype: str
    band_index: int
    """0-based sample index of this band inside its file."""
    nodata: float | None
    crs: str | None
    epsg: int | None
    byte_order: str
    href: str
    overviews: tuple[RasterLevel, ...] = ()
    """Reduced-resolution levels, largest first."""
    mask: RasterLevel | None = None
    """GDAL internal mask of the full-resolution image, if any."""
    mask_overviews: tuple[RasterLevel, ...] = ()
    extra_samples: tuple[int, ...] = ()
    pixel_scale: tuple[float, ...] | None = None
    tiepoint: tuple[float, ...] | None = None
    pixel_is_point: bool = False
    scale: float | None = None
    offset: float | None = None
    bigtiff: bool = False
    header_size: int | None = None
    object_size: int | None = None
    etag: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> tuple[RasterLevel, ...]:
        """Full resolution first, then every overview."""
        return (self.level, *self.overviews)

    def to_row(self) -> dict[str, Any]:
        """This band as a Python dict matching ``BAND_METADATA_TYPE``."""
        row = self.level.to_row()
        row.update(
            dtype=self.dtype,
            band_index=self.band_index,
            extra_samples=list(self.extra_samples),
            pixel_scale=None if self.pixel_scale is None else list(self.pixel_scale),
            tiepoint=None if self.tiepoint is None else list(self.tiepoint),
            pixel_is_point=self.pixel_is_point,
            nodata=self.nodata,
            scale=self.scale,
            offset=self.offset,
            crs=self.crs,
            epsg=self.epsg,
            byte_order=self.byte_order,
            bigtiff=self.bigtiff,
            header_size=self.header_size,
            object_size=self.object_size,
            etag=self.etag,
            href=self.href,
            overviews=[o.to_row() for o in self.overviews],
            mask=None if self.mask is None else self.mask.to_row(),
            mask_overviews=[o.to_row() for o in self.mask_overviews],
        )
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BandMetadata:
        """Inverse of :meth:`to_row`."""
        return cls(
            level=RasterLevel.from_row(row),
            dtype=row["dtype"],
            band_index=int(row.get("band_index") or 0),
            nodata=row.get("nodata"),
            crs=row.get("crs"),
            epsg=row.get("epsg"),
            byte_order=row.get("byte_order") or "<",
            href=row.get("href") or "",
            overviews=tuple(RasterLevel.from_row(o) for o in row.get("overviews") or ()),
            mask=None if row.get("mask") is None else RasterLevel.from_row(row["mask"]),
            mask_overviews=tuple(RasterLevel.from_row(o) for o in row.get("mask_overviews") or ()),
            extra_samples=tuple(row.get("extra_samples") or ()),
            pixel_scale=_tuple_or_none(row.get("pixel_scale")),
            tiepoint=_tuple_or_none(row.get("tiepoint")),
            pixel_is_point=bool(row.get("pixel_is_point")),
            scale=row.get("scale"),
            offset=row.get("offset"),
            bigtiff=bool(row.get("bigtiff")),
            header_size=row.get("header_size"),
            object_size=row.get("object_size"),
            etag=row.get("etag"),
        )


def _tuple_or_none(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def _level(ifd: ImageFileDirectory, transform: Transform, band_index: int) -> RasterLevel:
    offsets, counts = ifd.tile_offsets, ifd.tile_byte_counts
    if ifd.planar_configuration == 2 and ifd.samples_per_pixel > 1:
        per_plane = ifd.tiles_across * ifd.tiles_down
        offsets = offsets[band_index * per_plane : (band_index + 1) * per_plane]
        counts = counts[band_index * per_plane : (band_index + 1) * per_plane]
    return RasterLevel(
        image_width=ifd.image_width,
        image_height=ifd.image_height,
        tile_width=ifd.tile_width,
        tile_height=ifd.tile_height,
        is_tiled=ifd.is_tiled,
        transform=transform,
        tile_offsets=np.asarray(offsets, dtype=np.uint64),
        tile_byte_counts=np.asarray(counts, dtype=np.uint64),
        compression=ifd.compression,
        predictor=ifd.predictor,
        photometric=ifd.photometric,
        bits_per_sample=ifd.bits_per_sample,
        sample_format=ifd.sample_format,
        samples_per_pixel=ifd.samples_per_pixel,
        planar_configuration=ifd.planar_configuration,
        jpeg_tables=ifd.jpeg_tables,
        ycbcr_subsampling=ifd.ycbcr_subsampling,
        lerc_parameters=ifd.lerc_parameters,
    )


def band_metadata_from_header(
    header: TiffHeader,
    *,
    band_index: int = 0,
    href: str = "",
    object_size: int | None = None,
    etag: str | None = None,
) -> BandMetadata:
    """Build the metadata of sample ``band_index`` from a parsed header.

    Raises:
        HeaderError: the file has no image, or fewer samples than ``band_index`` needs.
        UnsupportedFormatError: the grid is rotated or sheared (from :func:`georeference`).
    """
    if not header.ifds:
        raise HeaderError(f"expected at least one image IFD in {href}, found none")
    base, *overviews = header.main_ifds
    if not 0 <= band_index < base.samples_per_pixel:
        raise HeaderError(
            f"expected sample index < {base.samples_per_pixel} (SamplesPerPixel of IFD 0) "
            f"in {href}, got band_index={band_index}"
        )
    geo: GeoReference = georeference(base, url=href)
    full_mask = header.mask_ifd(0)
    mask_overviews = [
        m for level in range(1, len(overviews) + 1) if (m := header.mask_ifd(level)) is not None
    ]

    def transform_of(ifd: ImageFileDirectory) -> Transform:
        return overview_transform(
            geo.transform, base.image_width, base.image_height, ifd.image_width, ifd.image_height
        )

    if base.bits_per_sample not in (1, 8, 16, 32, 64):
        raise UnsupportedFormatError(
            f"expected 1, 8, 16, 32 or 64 bits per sample in {href}, got {base.bits_per_sample}"
        )
    return BandMetadata(
        level=_level(base, geo.transform, band_index),
        dtype=np.dtype(base.dtype).name,
        band_index=band_index,
        nodata=geo.nodata,
        crs=geo.crs,
        epsg=geo.epsg,
        byte_order=header.byte_order,
        href=href,
        overviews=tuple(_level(o, transform_of(o), band_index) for o in overviews),
        mask=None if full_mask is None else _level(full_mask, geo.transform, 0),
        mask_overviews=tuple(_level(m, transform_of(m), 0) for m in mask_overviews),
        extra_samples=tuple(base.extra_samples),
        pixel_scale=base.model_pixel_scale,
        tiepoint=base.model_tiepoint,
        pixel_is_point=geo.pixel_is_point,
        scale=None if geo.scales is None else geo.scales[band_index],
        offset=None if geo.offsets is None else geo.offsets[band_index],
        bigtiff=header.bigtiff,
        header_size=header.header_size,
        object_size=object_size,
        etag=etag,
    )
