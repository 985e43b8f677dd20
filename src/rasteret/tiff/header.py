"""TIFF / BigTIFF header parsing, sans-I/O: bytes in, dataclasses out.

(Contract written first; the parser body is filled in by the tiff-header work.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["ImageFileDirectory", "IncompleteHeaderError", "TiffHeader", "parse_header"]


@dataclass(frozen=True, slots=True, eq=False)
class ImageFileDirectory:
    """One image of a TIFF file, in the format's own words. Absent tags are ``None``."""

    index: int
    """Position in the IFD chain (0 is the first IFD)."""
    offset: int
    """Byte offset of this IFD in the file."""
    new_subfile_type: int
    """NewSubfileType: bit 0 reduced-resolution image, bit 2 transparency mask."""
    image_width: int
    image_height: int
    tile_width: int
    """TileWidth; for a striped image, the image width."""
    tile_height: int
    """TileLength; for a striped image, RowsPerStrip clamped to the image height."""
    is_tiled: bool
    samples_per_pixel: int
    bits_per_sample: int
    """One width shared by every sample (differing widths are an UnsupportedFormatError)."""
    sample_format: int
    """1 unsigned integer, 2 signed integer, 3 IEEE float."""
    planar_configuration: int
    """1 chunky (samples interleaved), 2 planar (one tile grid per sample)."""
    compression: int
    predictor: int
    photometric: int
    extra_samples: tuple[int, ...]
    tile_offsets: np.ndarray
    """TileOffsets or StripOffsets as uint64, in TIFF order (plane-major, then row-major)."""
    tile_byte_counts: np.ndarray
    """TileByteCounts or StripByteCounts as uint64, aligned with ``tile_offsets``."""
    jpeg_tables: bytes | None
    ycbcr_subsampling: tuple[int, int] | None
    lerc_parameters: tuple[int, ...] | None
    model_pixel_scale: tuple[float, ...] | None
    model_tiepoint: tuple[float, ...] | None
    model_transformation: tuple[float, ...] | None
    geo_key_directory: tuple[int, ...] | None
    geo_double_params: tuple[float, ...] | None
    geo_ascii_params: str | None
    gdal_nodata: str | None
    gdal_metadata: str | None

    @property
    def is_reduced_resolution(self) -> bool:
        return bool(self.new_subfile_type & 1)

    @property
    def is_mask(self) -> bool:
        return bool(self.new_subfile_type & 4)

    @property
    def tiles_across(self) -> int:
        return -(-self.image_width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-self.image_height // self.tile_height)

    @property
    def dtype(self) -> np.dtype:
        """Native-byte-order NumPy dtype of one sample (1-bit data is reported as uint8)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, eq=False)
class TiffHeader:
    """Every IFD of one TIFF file."""

    byte_order: Literal["<", ">"]
    bigtiff: bool
    ifds: tuple[ImageFileDirectory, ...]
    header_size: int
    """Bytes from offset 0 that hold every IFD and every out-of-line tag value."""


class IncompleteHeaderError(Exception):
    """Raised by :func:`parse_header` when the buffer ends before the header does."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"header needs at least {needed} bytes")
        self.needed = needed


def parse_header(data: bytes | memoryview, *, url: str = "", object_size: int | None = None) -> TiffHeader:
    raise NotImplementedError
