"""TIFF / BigTIFF header parsing, sans-I/O: bytes in, dataclasses out.

:func:`parse_header` reads every IFD of a file (full resolution, reduced-resolution overviews,
GDAL internal masks) from a prefix of its bytes. When the prefix is too short it raises
:class:`IncompleteHeaderError` with the number of bytes it needs, so a caller can fetch more and
call again; :attr:`TiffHeader.header_size` tells how many bytes a later parse needs at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from rasteret.errors import UnsupportedFormatError
from rasteret.tiff._ifd import ifd_fields, value_ends
from rasteret.tiff._reader import IncompleteHeaderError, TiffReader

__all__ = ["ImageFileDirectory", "IncompleteHeaderError", "TiffHeader", "parse_header"]

_DTYPES: dict[tuple[int, int], str] = {
    (1, 1): "u1",
    (1, 8): "u1",
    (1, 16): "u2",
    (1, 32): "u4",
    (1, 64): "u8",
    (2, 8): "i1",
    (2, 16): "i2",
    (2, 32): "i4",
    (2, 64): "i8",
    (3, 16): "f2",
    (3, 32): "f4",
    (3, 64): "f8",
}


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
    """Compression (1 none, 5 LZW, 7 JPEG, 8 deflate, 34887 LERC, 50000 zstd, ...); default 1."""
    predictor: int
    """Predictor (1 none, 2 horizontal, 3 floating point); default 1."""
    photometric: int
    """PhotometricInterpretation (0/1 grey, 2 RGB, 3 palette, 6 YCbCr, ...); default 1."""
    extra_samples: tuple[int, ...]
    tile_offsets: np.ndarray
    """TileOffsets or StripOffsets as uint64, in TIFF order (plane-major, then row-major)."""
    tile_byte_counts: np.ndarray
    """TileByteCounts or StripByteCounts as uint64, aligned with ``tile_offsets``."""
    jpeg_tables: bytes | None
    ycbcr_subsampling: tuple[int, int] | None
    """YCbCrSubSampling; ``None`` when absent (the TIFF default is (2, 2))."""
    lerc_parameters: tuple[int, ...] | None
    model_pixel_scale: tuple[float, ...] | None
    model_tiepoint: tuple[float, ...] | None
    model_transformation: tuple[float, ...] | None
    geo_key_directory: tuple[int, ...] | None
    geo_double_params: tuple[float, ...] | None
    geo_ascii_params: str | None
    """GeoAsciiParams decoded as Latin-1, so GeoKey offsets index it byte for byte."""
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
        """Native-byte-order NumPy dtype of one sample (1-bit data is reported as uint8).

        Raises:
            UnsupportedFormatError: for any (SampleFormat, BitsPerSample) pair NumPy has no
                native type for (e.g. 12-bit integers, complex samples).
        """
        code = _DTYPES.get((self.sample_format, self.bits_per_sample))
        if code is None:
            raise UnsupportedFormatError(
                f"expected SampleFormat 1/2/3 with 8, 16, 32 or 64 bits (or 1-bit unsigned) in "
                f"IFD {self.index}, got SampleFormat {self.sample_format} with "
                f"{self.bits_per_sample} bits"
            )
        return np.dtype(code)


@dataclass(frozen=True, slots=True, eq=False)
class TiffHeader:
    """Every IFD of one TIFF file.

    GDAL (and the COG driver) write the full-resolution image first, then one IFD per
    overview (NewSubfileType 1), and, when the file has an internal nodata mask, one mask IFD
    per level (NewSubfileType 4 for full resolution, 5 for an overview).
    """

    byte_order: Literal["<", ">"]
    bigtiff: bool
    ifds: tuple[ImageFileDirectory, ...]
    header_size: int
    """Bytes from offset 0 that hold every IFD and every tag value the parser reads."""

    @property
    def main_ifds(self) -> tuple[ImageFileDirectory, ...]:
        """IFD 0 then its reduced-resolution overviews, largest first; masks are left out.

        An overview is an IFD with NewSubfileType bit 0 set and bit 2 clear, the same
        samples per pixel as IFD 0 and no larger than IFD 0.
        """
        base = self.ifds[0]
        overviews = [
            ifd
            for ifd in self.ifds[1:]
            if ifd.is_reduced_resolution
            and not ifd.is_mask
            and ifd.samples_per_pixel == base.samples_per_pixel
            and ifd.image_width <= base.image_width
            and ifd.image_height <= base.image_height
        ]
        overviews.sort(key=lambda ifd: (-ifd.image_width, -ifd.image_height))
        return (base, *overviews)

    @property
    def overviews(self) -> tuple[ImageFileDirectory, ...]:
        """The reduced-resolution IFDs of :attr:`main_ifds` (level 1 onwards)."""
        return self.main_ifds[1:]

    def mask_ifd(self, level: int = 0) -> ImageFileDirectory | None:
        """The GDAL internal mask IFD of ``main_ifds[level]``, or ``None`` if it has none.

        GDAL writes a full-resolution mask with NewSubfileType 4 and overview masks with
        NewSubfileType 5; a mask belongs to the level whose width and height it shares.

        Raises:
            IndexError: if ``level`` is not an index of :attr:`main_ifds`.
        """
        image = self.main_ifds[level]
        reduced = level > 0
        for ifd in self.ifds:
            if (
                ifd.is_mask
                and ifd.is_reduced_resolution == reduced
                and ifd.image_width == image.image_width
                and ifd.image_height == image.image_height
            ):
                return ifd
        return None


def parse_header(
    data: bytes | bytearray | memoryview, *, url: str = "", object_size: int | None = None
) -> TiffHeader:
    """Parse every IFD of a TIFF or BigTIFF file from a prefix of its bytes.

    Args:
        data: The first bytes of the file (all of them, or a prefix).
        url: Where the bytes came from; used in error messages only.
        object_size: The file's total size, when known. Offsets past it are a
            :class:`~rasteret.errors.HeaderError` instead of a request for more bytes.

    Returns:
        The byte order, BigTIFF flag, every IFD in chain order, and the header size.

    Raises:
        IncompleteHeaderError: ``data`` ends before the header does; fetch at least
            ``needed`` bytes (typically ``max(needed, 2 * len(data))``) and call again.
        HeaderError: the bytes are not a TIFF, or the header is corrupt or inconsistent.
        UnsupportedFormatError: a valid TIFF rasteret cannot read (e.g. mixed sample widths).

    Example:
        >>> import struct
        >>> # ImageWidth 2, ImageLength 1, BitsPerSample 8, StripOffsets 74, StripByteCounts 2
        >>> entries = [(256, 3, 1, 2), (257, 3, 1, 1), (258, 3, 1, 8), (273, 4, 1, 74),
        ...            (279, 4, 1, 2)]
        >>> ifd = struct.pack("<H", 5) + b"".join(
        ...     struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
        >>> tiff = b"II*\\x00" + struct.pack("<I", 8) + ifd + b"\\x07\\x09"
        >>> header = parse_header(tiff)
        >>> ifd0 = header.ifds[0]
        >>> (ifd0.image_width, ifd0.image_height, ifd0.is_tiled, ifd0.dtype.name)
        (2, 1, False, 'uint8')
        >>> header.header_size
        74
        >>> ifd0.tile_offsets, ifd0.tile_byte_counts
        (array([74], dtype=uint64), array([2], dtype=uint64))
    """
    reader = TiffReader(data, url, object_size)
    chain = reader.walk(value_ends)
    ifds = tuple(
        ImageFileDirectory(**ifd_fields(reader, index, offset, entries))
        for index, (offset, entries) in enumerate(chain)
    )
    return TiffHeader(
        byte_order=reader.byte_order,
        bigtiff=reader.bigtiff,
        ifds=ifds,
        header_size=reader.read_end,
    )
