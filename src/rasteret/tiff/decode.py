"""Tile decoding, sans-I/O: the bytes of one TIFF tile or strip in, an ndarray out.

:func:`decode_tile` undoes every TIFF codec rasteret reads (none, LZW, Deflate, PackBits,
LZMA, ZSTD, JPEG, WebP, LERC with its Deflate/ZSTD second stage, JPEG 2000), both
predictors (2: horizontal differencing, 3: floating point), big-endian byte order and 1-bit
packing, and returns ``(samples, rows, tile_width)`` in native byte order, exactly what GDAL
returns for the same block. The codecs are imagecodecs', which release the GIL, so callers
run :func:`decode_tile` on a thread pool.

Every decoder writes into a buffer sized for the declared tile (plus one byte, to notice
overflow), so a corrupt or hostile tile cannot make a codec allocate more than the tile needs.
That buffer comes from ``allocate`` when given (a pool of recycled memory, see
:mod:`rasteret.read.buffers`), so decoding can write into memory that is already mapped.

A read that needs only the top rows of a tile asks for them with ``prefix=``: Deflate is a
stream, so inflating can stop after those rows (ISA-L's streaming inflate, as fast per byte
as libdeflate's one-shot call, which cannot stop early), and the predictor is undone on
those rows only. The other codecs decode whole tiles. A :class:`PartialTile` keeps such a
decode's state, so that a later read needing deeper rows inflates only the rows below
(no second fetch, no second inflate of the top).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import imagecodecs
import numpy as np

try:  # ISA-L: a streaming inflate as fast per byte as libdeflate's one-shot one
    from isal import isal_zlib as _streaming_zlib

    PREFIX_SHARE = 0.85
except ImportError:  # pragma: no cover - isal is a dependency; zlib is ~2x slower per byte
    import zlib as _streaming_zlib  # type: ignore[no-redef]

    PREFIX_SHARE = 0.4

from rasteret.errors import DecodeError, UnsupportedFormatError

if TYPE_CHECKING:
    from rasteret.tiff.header import ImageFileDirectory

__all__ = [
    "COMPRESSION_NAMES",
    "Allocator",
    "MAX_TILE_BYTES",
    "PREFIX_SHARE",
    "SUPPORTED_COMPRESSIONS",
    "PartialTile",
    "TileLayout",
    "decode_tile",
    "decodes_in_part",
    "empty_tile",
]

COMPRESSION_NAMES: dict[int, str] = {
    1: "none", 2: "CCITT RLE", 3: "CCITT Group 3", 4: "CCITT Group 4", 5: "LZW",
    6: "old-style JPEG", 7: "JPEG", 8: "Adobe Deflate", 9: "JBIG (T.85)", 10: "JBIG (T.43)",
    32766: "NeXT", 32771: "CCITT RLEW", 32773: "PackBits", 32809: "ThunderScan",
    32895: "IT8 CT padding", 32896: "IT8 LW", 32897: "IT8 MP", 32898: "IT8 BL",
    32908: "PixarFilm", 32909: "PixarLog", 32946: "Deflate", 32947: "DCS",
    33003: "Aperio JPEG 2000 YCbCr", 33005: "Aperio JPEG 2000 RGB", 34661: "JBIG",
    34676: "SGILog", 34677: "SGILog24", 34712: "JPEG 2000", 34887: "LERC",
    34892: "lossy JPEG (DNG)", 34925: "LZMA", 50000: "ZSTD", 50001: "WebP",
    50002: "JPEG XL", 52546: "JPEG XL (DNG)",
}  # fmt: skip
"""TIFF Compression tag values and their names, known or not to rasteret."""

_LZW, _JPEG, _ADOBE_DEFLATE, _DEFLATE, _PACKBITS = 5, 7, 8, 32946, 32773
_JPEG2000, _LERC, _LZMA, _ZSTD, _WEBP = 34712, 34887, 34925, 50000, 50001


def _inflate(data: Any, *, out: Any) -> Any:
    if imagecodecs.DEFLATE.available:  # libdeflate: the fastest inflate there is
        return imagecodecs.deflate_decode(data, out=out)
    return imagecodecs.zlib_decode(data, out=out)


_BYTE_DECODERS: dict[int, Callable[..., Any]] = {
    _LZW: imagecodecs.lzw_decode,
    _ADOBE_DEFLATE: _inflate,
    _DEFLATE: _inflate,
    _PACKBITS: imagecodecs.packbits_decode,
    _LZMA: imagecodecs.lzma_decode,
    _ZSTD: imagecodecs.zstd_decode,
}
_LERC_STAGES: dict[int, Callable[..., Any]] = {1: _inflate, 2: imagecodecs.zstd_decode}
_STREAMED = frozenset({_ADOBE_DEFLATE, _DEFLATE})
"""Codecs whose decoding can stop after the first rows of a tile (``prefix=``)."""


SUPPORTED_COMPRESSIONS: frozenset[int] = frozenset(
    {1, _JPEG, _WEBP, _LERC, *_BYTE_DECODERS}
    | ({_JPEG2000} if imagecodecs.JPEG2K.available else set())
)
"""Compression codes :func:`decode_tile` decodes with the installed imagecodecs."""

_JPEG_RAW_COLORSPACES = {1: "GRAYSCALE", 3: "RGB", 4: "CMYK"}

Allocator = Callable[[int], np.ndarray]
"""``allocate(nbytes)``: a writable ``uint8`` array of ``nbytes`` for a decoded tile."""


def _empty(nbytes: int) -> np.ndarray:
    return np.empty(nbytes, dtype=np.uint8)


MAX_TILE_BYTES = 2**30
"""Largest decoded tile (or strip) accepted: 1 GiB, beyond any real COG tile (4096 x 4096
pixels of 8 float64 samples). A header declaring more (a hostile or corrupt file) is refused
before anything is allocated, so decoding one tile reserves at most ~2.25 GiB (the tile, and
for LERC with a second stage, its blob)."""


@dataclass(frozen=True, slots=True)
class TileLayout:
    """Everything needed to decode any tile of one IFD; cheap to build, copy and pickle."""

    tile_width: int
    """Pixels per tile row (the image width for strips)."""
    tile_height: int
    """Rows per tile (RowsPerStrip for strips; the last strip may be shorter)."""
    samples: int
    """Samples per tile pixel: SamplesPerPixel when chunky, 1 when planar."""
    dtype: str
    """Native NumPy dtype name of a decoded sample, e.g. ``"uint16"`` (``"uint8"`` for 1-bit)."""
    bits_per_sample: int
    big_endian: bool = False
    """The file is big-endian (``MM``); decoded tiles are always native byte order."""
    compression: int = 1
    predictor: int = 1
    photometric: int = 1
    planar_configuration: int = 1
    jpeg_tables: bytes | None = None
    ycbcr_subsampling: tuple[int, int] | None = None
    lerc_parameters: tuple[int, ...] | None = None
    """LercParameters: (version, 0 none / 1 Deflate / 2 ZSTD second stage)."""

    @classmethod
    def from_ifd(cls, ifd: ImageFileDirectory, byte_order: Literal["<", ">"]) -> TileLayout:
        """The layout of every tile of ``ifd`` in a file of ``byte_order``.

        Raises:
            UnsupportedFormatError: a sample type NumPy has no native dtype for.
        """
        return cls(
            tile_width=ifd.tile_width,
            tile_height=ifd.tile_height,
            samples=ifd.samples_per_pixel if ifd.planar_configuration == 1 else 1,
            dtype=ifd.dtype.name,
            bits_per_sample=ifd.bits_per_sample,
            big_endian=byte_order == ">",
            compression=ifd.compression,
            predictor=ifd.predictor,
            photometric=ifd.photometric,
            planar_configuration=ifd.planar_configuration,
            jpeg_tables=ifd.jpeg_tables,
            ycbcr_subsampling=ifd.ycbcr_subsampling,
            lerc_parameters=ifd.lerc_parameters,
        )

    @property
    def row_bytes(self) -> int:
        """Bytes of one decompressed tile row (1-bit rows are padded to whole bytes)."""
        return (self.tile_width * self.samples * self.bits_per_sample + 7) // 8

    @property
    def compression_name(self) -> str:
        """Name of the compression (``"unknown"`` for codes no TIFF writer documents)."""
        return COMPRESSION_NAMES.get(self.compression, "unknown")


def empty_tile(layout: TileLayout, fill: float, *, rows: int | None = None) -> np.ndarray:
    """A tile holding ``fill`` everywhere, for sparse tiles (offset and byte count 0).

    Example:
        >>> layout = TileLayout(tile_width=4, tile_height=2, samples=1, dtype="int16",
        ...                     bits_per_sample=16)
        >>> empty_tile(layout, -9999).tolist()
        [[[-9999, -9999, -9999, -9999], [-9999, -9999, -9999, -9999]]]
    """
    nrows = layout.tile_height if rows is None else rows
    _check_size(layout, "")
    return np.full((layout.samples, nrows, layout.tile_width), fill, dtype=layout.dtype)


def decode_tile(
    data: bytes | bytearray | memoryview,
    layout: TileLayout,
    *,
    rows: int | None = None,
    prefix: int | None = None,
    url: str = "",
    tile: int = -1,
    allocate: Allocator | None = None,
) -> np.ndarray:
    """Decode the bytes of one tile (or strip) into ``(samples, rows, tile_width)``.

    The result is in native byte order with dtype ``layout.dtype``; 1-bit data is unpacked
    to 0/1 ``uint8``. It may be a (read-only) view of ``data`` for uncompressed tiles and a
    transposed view for chunky tiles; copy it if you need a contiguous writable array.

    Args:
        data: The tile's bytes, exactly as stored in the file.
        layout: The tile layout of the IFD (:meth:`TileLayout.from_ifd`).
        rows: Rows in this tile when fewer than ``layout.tile_height`` (the last strip of a
            striped image); edge tiles of tiled images are always full tiles.
        prefix: Only the first ``prefix`` rows are needed. Uncompressed tiles, and Deflate
            tiles when ``prefix`` is at most :data:`PREFIX_SHARE` of the rows, then stop
            there and the result has ``prefix`` rows; otherwise (other codecs, a prefix
            too close to the whole tile for stopping early to pay) it has them all. Read
            the rows from the result's shape.
        url: Where the bytes came from, for error messages.
        tile: Index of the tile in its IFD, for error messages.
        allocate: Returns a writable ``uint8`` array of the given number of bytes for the
            decoded tile (its contents need not be initialised); ``np.empty`` by default.
            The result is a view of that array.

    Raises:
        UnsupportedFormatError: a compression or predictor rasteret does not decode.
        DecodeError: corrupt bytes, or bytes that decode to a different size than declared.

    Example:
        >>> import zlib
        >>> layout = TileLayout(tile_width=3, tile_height=2, samples=1, dtype="uint16",
        ...                     bits_per_sample=16, compression=8, predictor=2)
        >>> raw = np.array([[1, 1, 1], [5, 0, 0]], dtype="<u2").tobytes()
        >>> decode_tile(zlib.compress(raw), layout).tolist()
        [[[1, 2, 3], [5, 5, 5]]]
        >>> decode_tile(zlib.compress(raw), layout, prefix=1).tolist()  # the first row only
        [[[1, 2, 3]]]
    """
    nrows = layout.tile_height if rows is None else rows
    if not 0 < nrows <= layout.tile_height:
        raise ValueError(f"expected 0 < rows <= {layout.tile_height}, got {nrows}")
    if prefix is not None and not 0 < prefix <= nrows:
        raise ValueError(f"expected 0 < prefix <= {nrows}, got {prefix}")
    where = _Where(url, tile, layout)
    _check_size(layout, f" in {where}")
    allocate = allocate or _empty
    code = layout.compression
    if code not in SUPPORTED_COMPRESSIONS:
        raise UnsupportedFormatError(
            f"expected a supported TIFF compression "
            f"({', '.join(COMPRESSION_NAMES[c] for c in sorted(SUPPORTED_COMPRESSIONS))}), "
            f"got compression {code} ({layout.compression_name}) in {where}"
        )
    if prefix is not None and decodes_in_part(layout, prefix, nrows):
        partial = PartialTile(data, layout, rows=nrows, url=url, tile=tile, allocate=allocate)
        return partial.decode_rows(prefix)
    if code == 1 or code in _BYTE_DECODERS:
        keep = prefix if prefix is not None and code == 1 else nrows
        return _decode_raster(data, layout, nrows, where, allocate, keep)
    if code == _JPEG:
        return _decode_image(data, layout, nrows, where, _jpeg, allocate)
    if code == _WEBP:
        return _decode_image(data, layout, nrows, where, _webp, allocate)
    if code == _LERC:
        return _decode_image(data, layout, nrows, where, _lerc, allocate)
    return _decode_image(data, layout, nrows, where, _jpeg2k, allocate)


def _check_size(layout: TileLayout, where: str) -> None:
    size = layout.tile_height * layout.row_bytes
    if size > MAX_TILE_BYTES:
        raise UnsupportedFormatError(
            f"expected tiles of at most {MAX_TILE_BYTES} decoded bytes{where}, got "
            f"{layout.tile_width} x {layout.tile_height} pixels of {layout.samples} "
            f"{layout.bits_per_sample}-bit samples ({size} bytes)"
        )


@dataclass(frozen=True, slots=True)
class _Where:
    url: str
    tile: int
    layout: TileLayout

    def __str__(self) -> str:
        return f"tile {self.tile} of {self.url or '<bytes>'}"

    def error(self, expected: str, got: str) -> DecodeError:
        name = self.layout.compression_name
        return DecodeError(f"expected {expected} from {name} {self}, got {got}")

    def call(
        self, fn: Callable[..., Any], *args: Any, expected: str = "decodable bytes", **kwargs: Any
    ) -> Any:
        """Run one codec call; its failures become a DecodeError naming the tile."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise self.error(expected, f"{type(exc).__name__}: {exc}") from exc


def decodes_in_part(layout: TileLayout, prefix: int, rows: int | None = None) -> bool:
    """Whether a decode of the top ``prefix`` of the tile's ``rows`` (default:
    ``layout.tile_height``) stops there through a :class:`PartialTile`: for Deflate tiles,
    when the prefix is at most :data:`PREFIX_SHARE` of the rows (deeper, one whole-tile
    inflate is faster). Uncompressed tiles are sliced instead; other codecs decode whole.

    >>> layout = TileLayout(tile_width=4, tile_height=100, samples=1, dtype="uint16",
    ...                     bits_per_sample=16, compression=8)
    >>> decodes_in_part(layout, 50), decodes_in_part(layout, 100)
    (True, False)
    """
    nrows = layout.tile_height if rows is None else rows
    return layout.compression in _STREAMED and prefix <= PREFIX_SHARE * nrows


class PartialTile:
    """A Deflate tile decoded down to some row, able to decode the rows below it later.

    The inflater's state and the input it has not consumed yet are kept, so going deeper
    costs only the new rows: no second fetch and no second inflate of the rows above. Rows
    are written into one buffer sized for the whole tile (from ``allocate``), so every
    array :meth:`decode_rows` returns is a view of its top. Thread-safe: concurrent calls
    decode each row once. Holds at most :attr:`nbytes`; once the last row is decoded, only
    the buffer.

    Args:
        data: The tile's bytes, exactly as stored (Deflate or Adobe Deflate).
        layout: The tile layout of the IFD.
        rows: Rows in this tile when fewer than ``layout.tile_height`` (a last strip).
        url, tile: Where the bytes came from, for error messages.
        allocate: As for :func:`decode_tile`.

    Raises:
        UnsupportedFormatError: the tile is not Deflate-compressed.

    Example:
        >>> import zlib
        >>> layout = TileLayout(tile_width=2, tile_height=3, samples=1, dtype="uint8",
        ...                     bits_per_sample=8, compression=8)
        >>> tile = PartialTile(zlib.compress(bytes(range(6))), layout)
        >>> tile.decode_rows(1).tolist(), tile.decoded, tile.complete
        ([[[0, 1]]], 1, False)
        >>> tile.decode_rows(3).tolist(), tile.complete  # rows 1 and 2 inflated now
        ([[[0, 1], [2, 3], [4, 5]]], True)
    """

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        layout: TileLayout,
        *,
        rows: int | None = None,
        url: str = "",
        tile: int = -1,
        allocate: Allocator | None = None,
    ) -> None:
        nrows = layout.tile_height if rows is None else rows
        if not 0 < nrows <= layout.tile_height:
            raise ValueError(f"expected 0 < rows <= {layout.tile_height}, got {nrows}")
        self._where = _Where(url, tile, layout)
        _check_size(layout, f" in {self._where}")
        if layout.compression not in _STREAMED:
            raise UnsupportedFormatError(
                f"expected a Deflate tile to decode in parts in {self._where}, got "
                f"compression {layout.compression} ({layout.compression_name})"
            )
        _check_raster(layout, self._where)
        allocate = allocate or _empty
        self.layout = layout
        self.rows = nrows
        """Rows in the tile."""
        self.decoded = 0
        """Rows decoded so far (from the top)."""
        size = nrows * layout.row_bytes
        self._raw = allocate(size)[:size]
        self._out = self._raw
        if layout.bits_per_sample == 1:  # unpacked to one byte per sample, apart
            count = nrows * layout.tile_width * layout.samples
            self._out = allocate(count)[:count]
        self._inflater: Any = _streaming_zlib.decompressobj()
        self._pending: Any = data
        self._input_bytes = len(data)
        self._failed: DecodeError | None = None
        self._lock = threading.Lock()

    @property
    def complete(self) -> bool:
        """Every row is decoded (the inflater and the input it held are let go)."""
        return self.decoded == self.rows

    @property
    def nbytes(self) -> int:
        """Memory the tile holds: its buffers and, until the last row is decoded, at most
        its compressed input (what the inflater has not consumed, and what it buffers)."""
        extra = self._out.nbytes if self._out is not self._raw else 0
        return int(self._raw.nbytes) + extra + (0 if self.complete else self._input_bytes)

    def decode_rows(self, count: int) -> np.ndarray:
        """The tile's top ``count`` rows, ``(samples, count, tile_width)``, decoding those
        not decoded yet.

        Raises:
            DecodeError: corrupt bytes, or fewer bytes than the rows need (this call and
                every later one: the stream cannot be resumed past the damage).
        """
        if not 0 < count <= self.rows:
            raise ValueError(f"expected 0 < count <= {self.rows}, got {count}")
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if count > self.decoded:
                try:
                    self._inflate_to(count)
                except DecodeError as exc:
                    self._failed = exc
                    self._inflater = self._pending = None
                    raise
            return self._view(count)

    def _inflate_to(self, count: int) -> None:
        layout, where = self.layout, self._where
        first, row_bytes = self.decoded, layout.row_bytes
        target = self._raw[first * row_bytes : count * row_bytes]
        filled = 0
        while filled < target.size:  # ISA-L may hold input inside: ask until it gives none
            chunk = where.call(
                self._inflater.decompress,
                self._pending,
                target.size - filled,
                expected=f"{count * row_bytes} bytes",
            )
            self._pending = self._inflater.unconsumed_tail
            if not chunk:
                break
            target[filled : filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            filled += len(chunk)
        if filled < target.size:
            got = first * row_bytes + filled
            raise where.error(f"at least {count * row_bytes} bytes", f"{got} bytes")
        rows = _finish_rows(target, layout, count - first, where)
        if self._out is not self._raw:
            width = layout.tile_width * layout.samples
            self._out[first * width : count * width] = rows.reshape(-1)
        elif not np.shares_memory(rows, target):  # Predictor 3 writes a new array
            target.view(rows.dtype).reshape(rows.shape)[...] = rows
        if count == self.rows:
            self._check_end()
            self._inflater = self._pending = None
        self.decoded = count

    def _check_end(self) -> None:
        """At the last row: a tile whose stream holds more than its rows is corrupt, as for a
        whole-tile decode (a last strip may be stored padded to the full tile height). The
        checksum was verified on the way, where the stream ended with the last row."""
        layout, where = self.layout, self._where
        if self._inflater.eof or self.rows < layout.tile_height:
            return
        size = self.rows * layout.row_bytes
        extra = where.call(self._inflater.decompress, self._pending, 1, expected=f"{size} bytes")
        if extra:
            raise where.error(f"{size} bytes", f"more than {size} bytes")

    def _view(self, count: int) -> np.ndarray:
        layout = self.layout
        width = layout.tile_width * layout.samples
        if self._out is not self._raw:
            flat = self._out[: count * width]
        else:
            flat = self._raw[: count * layout.row_bytes].view(np.dtype(layout.dtype))
        return flat.reshape(count, layout.tile_width, layout.samples).transpose(2, 0, 1)


def _check_raster(layout: TileLayout, where: _Where) -> None:
    """Refuse byte-stream layouts rasteret cannot turn into samples."""
    if layout.photometric == 6 and layout.ycbcr_subsampling not in (None, (1, 1)):
        raise UnsupportedFormatError(
            f"expected chroma-subsampled YCbCr only inside JPEG tiles in {where}, got "
            f"YCbCrSubSampling {layout.ycbcr_subsampling} with {layout.compression_name}"
        )
    native = np.dtype(layout.dtype)
    if layout.bits_per_sample != 1 and native.itemsize * 8 != layout.bits_per_sample:
        raise UnsupportedFormatError(
            f"expected {native.itemsize * 8}-bit samples for dtype {native} in {where}, "
            f"got BitsPerSample {layout.bits_per_sample}"
        )
    if layout.predictor == 3 and native.kind != "f":
        raise UnsupportedFormatError(
            f"expected floating-point samples with Predictor 3 in {where}, got {native}"
        )
    if layout.predictor not in (1, 2, 3):
        raise UnsupportedFormatError(
            f"expected Predictor 1, 2 or 3 in {where}, got {layout.predictor}"
        )


def _decode_raster(
    data: Any, layout: TileLayout, nrows: int, where: _Where, allocate: Allocator, keep: int
) -> np.ndarray:
    """Byte-stream codecs (and none): decompress, unpack bits, undo predictor and byte order.

    Only the first ``keep`` of the tile's ``nrows`` rows are returned (``keep < nrows``
    for uncompressed tiles only; Deflate prefixes go through :class:`PartialTile`)."""
    _check_raster(layout, where)
    expected = nrows * layout.row_bytes
    if layout.compression == 1:
        buf = np.frombuffer(data, dtype=np.uint8)
        if buf.size < expected:
            raise where.error(f"{expected} bytes", f"{buf.size} bytes")
        buf = buf[: keep * layout.row_bytes]
        if layout.predictor != 1 or (layout.big_endian and layout.bits_per_sample > 8):
            buf = buf.copy()  # undone in place below
    else:
        capacity = layout.tile_height * layout.row_bytes  # a last strip may be stored padded
        out = allocate(capacity + 1)  # one spare byte exposes an overflow
        decoder = _BYTE_DECODERS[layout.compression]
        want = f"{expected} bytes (or corrupt/oversized data)"
        size = len(where.call(decoder, data, out=out, expected=want))
        if size not in (expected, capacity):
            got = f"more than {capacity} bytes" if size > capacity else f"{size} bytes"
            raise where.error(f"{expected} bytes", got)
        buf = out[:expected]
    return _finish_rows(buf, layout, keep, where).transpose(2, 0, 1)


def _finish_rows(buf: np.ndarray, layout: TileLayout, nrows: int, where: _Where) -> np.ndarray:
    """Decompressed rows (``uint8``, ``nrows`` whole rows) to samples, ``(rows, width,
    samples)``: 1-bit rows unpacked, byte order and predictor undone (each row on its own,
    so rows can be finished in parts). In place, except for 1-bit rows and Predictor 3,
    which return a new array."""
    if layout.bits_per_sample == 1:
        count = layout.tile_width * layout.samples
        bits = np.unpackbits(buf.reshape(nrows, layout.row_bytes), axis=1, count=count)
        return bits.reshape(nrows, layout.tile_width, layout.samples)
    native = np.dtype(layout.dtype)
    arr = buf.view(native).reshape(nrows, layout.tile_width, layout.samples)
    if layout.predictor == 3:
        # Byte planes are stored most significant first whatever the file's byte order, and
        # the result is native: no byte swap (libtiff's fpAcc does the same).
        return where.call(imagecodecs.floatpred_decode, arr, axis=-2, out=arr)
    if layout.big_endian and native.itemsize > 1:
        arr.byteswap(inplace=True)
    if layout.predictor == 2:
        ints = arr.view(f"u{native.itemsize}")  # floats with Predictor 2 difference bits
        where.call(imagecodecs.delta_decode, ints, axis=-2, out=ints)
    return arr


def _decode_image(
    data: Any,
    layout: TileLayout,
    nrows: int,
    where: _Where,
    codec: Callable[[Any, TileLayout, np.ndarray, _Where], np.ndarray],
    allocate: Allocator,
) -> np.ndarray:
    """Image codecs decode into a preallocated tile-shaped array (never larger)."""
    if layout.predictor != 1:
        raise UnsupportedFormatError(
            f"expected no predictor with {layout.compression_name} in {where}, "
            f"got Predictor {layout.predictor}"
        )
    shape = (nrows, layout.tile_width, layout.samples)
    dtype = np.dtype(layout.dtype)
    buf = allocate(nrows * layout.tile_width * layout.samples * dtype.itemsize)
    out = buf.view(dtype).reshape(shape if layout.samples > 1 else shape[:2])
    arr = codec(data, layout, out, where)
    return arr.reshape(shape).transpose(2, 0, 1)


def _describe(out: np.ndarray) -> str:
    samples = out.shape[2] if out.ndim == 3 else 1
    return f"a {out.shape[1]}x{out.shape[0]} {out.dtype} image with {samples} sample(s)"


def _jpeg(data: Any, layout: TileLayout, out: np.ndarray, where: _Where) -> np.ndarray:
    # As libtiff with GDAL's JPEGCOLORMODE=RGB: chunky YCbCr is converted to RGB, everything
    # else is returned as stored. Naming the stream's colour space as the output's stops
    # libjpeg from guessing YCbCr (no Adobe marker) and transforming it.
    colorspace: str | None
    outcolorspace: str | None
    if layout.photometric == 6 and layout.samples == 3:
        colorspace, outcolorspace = "YCBCR", "RGB"
    else:
        colorspace = outcolorspace = _JPEG_RAW_COLORSPACES.get(layout.samples)
    return where.call(
        imagecodecs.jpeg8_decode,
        data,
        expected=_describe(out),
        tables=layout.jpeg_tables,
        colorspace=colorspace,
        outcolorspace=outcolorspace,
        out=out,
    )


def _webp(data: Any, layout: TileLayout, out: np.ndarray, where: _Where) -> np.ndarray:
    if layout.samples not in (3, 4):
        raise UnsupportedFormatError(
            f"expected 3 or 4 samples per pixel with WebP in {where}, got {layout.samples}"
        )
    hasalpha = layout.samples == 4
    return where.call(
        imagecodecs.webp_decode, data, hasalpha=hasalpha, out=out, expected=_describe(out)
    )


def _lerc(data: Any, layout: TileLayout, out: np.ndarray, where: _Where) -> np.ndarray:
    params = layout.lerc_parameters or ()
    stage = params[1] if len(params) > 1 else 0
    if stage:
        decoder = _LERC_STAGES.get(stage)
        if decoder is None:
            raise UnsupportedFormatError(
                f"expected LERC second stage 0, 1 (Deflate) or 2 (ZSTD) in {where}, got {stage}"
            )
        # A LERC blob is at most the raw tile plus its valid-pixel bit mask and headers.
        capacity = out.nbytes + out.nbytes // 4 + 65536
        blob = np.empty(capacity + 1, dtype=np.uint8)
        want = f"a LERC blob of at most {capacity} bytes"
        size = len(where.call(decoder, data, out=blob, expected=want))
        if size > capacity:
            raise where.error(f"a LERC blob of at most {capacity} bytes", "more")
        data = blob[:size]
    arr, mask = where.call(
        imagecodecs.lerc_decode, data, masks=True, out=out, expected=_describe(out)
    )
    if layout.big_endian and arr.dtype.itemsize > 1:
        arr.byteswap(inplace=True)  # libtiff hands LERC the samples in file byte order
    if mask is not None and arr.dtype.kind == "f":
        # GDAL writes NaN (and nothing else) as LERC's invalid pixels; restore it.
        valid = np.asarray(mask, dtype=bool)
        if valid.shape != arr.shape[: valid.ndim]:
            raise where.error(f"a LERC mask of shape {arr.shape[:2]}", f"shape {valid.shape}")
        arr[~valid] = np.nan  # a per-pixel mask blanks every sample of the pixel
    return arr


def _jpeg2k(data: Any, layout: TileLayout, out: np.ndarray, where: _Where) -> np.ndarray:
    return where.call(imagecodecs.jpeg2k_decode, data, out=out, expected=_describe(out))
