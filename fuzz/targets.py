"""Fuzz targets: the TIFF header parser and the tile decoder, fed mutated real files.

Seeds come from the fixture matrix (:mod:`rasteret.testing.fixtures`, written with GDAL):
every file's header prefix, and a few real tiles of each file with the layout that decodes
them. A :class:`Mutation` list (bit flips, bytes, TIFF-typed integers at entry fields,
truncation, insertion, deletion, splices) turns a seed into an input. Both the hypothesis
tests (``tests/reliability/test_fuzz.py``) and ``run_fuzz.py`` (long runs, atheris or
hypothesis) drive the same two checks:

:func:`check_header`
    ``parse_header(data, object_size=...)`` and everything enrichment does with a parsed
    header (``TileLayout.from_ifd``, ``georeference``, ``band_metadata_from_header`` and its
    Arrow row) succeed or raise a :class:`~rasteret.errors.RasteretError`.
    :class:`~rasteret.tiff.header.IncompleteHeaderError` is the parser's control-flow signal
    ("fetch more from offset 0"), not an error: it is allowed only when the object may be
    longer than the buffer, and it must never ask for bytes past the object. Enrichment loops
    on it (at most ``MAX_HEADER_FETCHES`` ranged GETs) and turns a header still incomplete
    after that into a per-asset failure (an ``EnrichmentFailure``), never a crash.

:func:`check_tile`
    ``decode_tile`` with the layout of a (possibly mutated) header returns exactly
    ``(samples, rows, tile_width)`` of the declared dtype, or raises a RasteretError.

Anything else escaping, a result of the wrong shape, or an allocation past the process's
memory limit (``MemoryError``) is a crash. Hangs are caught by the callers (hypothesis
deadlines, ``faulthandler`` in ``run_fuzz.py``).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rasteret.errors import RasteretError
from rasteret.ingest.metadata import band_metadata_from_header
from rasteret.tiff.decode import TileLayout, decode_tile
from rasteret.tiff.geo import georeference
from rasteret.tiff.header import IncompleteHeaderError, TiffHeader, parse_header

__all__ = [
    "INTERESTING",
    "TAGS",
    "HeaderSeed",
    "Mutation",
    "TileSeed",
    "check_header",
    "check_tile",
    "load_seeds",
    "mutate",
]

HEADER_SLACK = 256
"""Bytes kept past a seed's header size (so tile bytes right after the IFDs are present)."""
TILES_PER_FILE = 3
TAGS = (256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325, 338, 339,
        530, 34735)  # fmt: skip
"""Tags whose values size the image, its tiles, samples and tables (targets of ``tag``)."""
INTERESTING = (0, 1, 2, 7, 8, 15, 16, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0xFFFFFFFF, 2**32, 2**63 - 1, 2**64 - 1)  # fmt: skip
"""Integers that find edge cases in offsets, counts and sizes."""


@dataclass(frozen=True, slots=True)
class HeaderSeed:
    """The first bytes of one real file."""

    name: str
    data: bytes
    object_size: int
    byte_order: str


@dataclass(frozen=True, slots=True)
class TileSeed:
    """One real tile: its header prefix, which tile of IFD 0 it is, and its bytes."""

    name: str
    header: HeaderSeed
    tile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Mutation:
    """One edit of a byte string; positions wrap around its length."""

    op: str
    """``flip`` (a bit), ``byte``, ``int`` (a TIFF-sized integer), ``tag`` (set tag ``pos`` of
    IFD 0 to the single integer ``arg``), ``truncate``, ``insert``, ``delete`` or ``splice``
    (copy a run of bytes elsewhere)."""
    pos: int
    arg: int = 0
    width: int = 1
    payload: bytes = b""


def mutate(data: bytes, mutations: Iterable[Mutation], byte_order: str = "<") -> bytes:
    """Apply ``mutations`` in order (integers are written in ``byte_order``)."""
    buf = bytearray(data)
    for m in mutations:
        if m.op == "tag":
            _set_tag(buf, byte_order, m.pos, m.arg)
            continue
        if not buf and m.op != "insert":
            continue
        pos = m.pos % max(len(buf), 1)
        if m.op == "flip":
            buf[pos] ^= 1 << (m.arg % 8)
        elif m.op == "byte":
            buf[pos] = m.arg % 256
        elif m.op == "int":
            width = m.width if m.width in (1, 2, 4, 8) else 4
            value = (m.arg % 2 ** (8 * width)).to_bytes(
                width, "little" if byte_order == "<" else "big"
            )
            buf[pos : pos + width] = value[: len(buf) - pos]
        elif m.op == "truncate":
            del buf[pos:]
        elif m.op == "insert":
            buf[pos:pos] = m.payload
        elif m.op == "delete":
            del buf[pos : pos + max(m.width, 1)]
        elif m.op == "splice":
            src = m.arg % len(buf)
            buf[pos : pos + m.width] = buf[src : src + m.width]
    return bytes(buf)


def _set_tag(buf: bytearray, byte_order: str, tag: int, value: int) -> None:
    """Rewrite IFD 0's entry ``tag`` (if present) as one LONG (LONG8 in BigTIFF) ``value``."""
    bigtiff = bytes(buf[2:4]) == (b"+\x00" if byte_order == "<" else b"\x00+")
    entry, head = (20, "HHQQ") if bigtiff else (12, "HHII")
    try:
        first = struct.unpack_from(
            byte_order + ("Q" if bigtiff else "I"), buf, 8 if bigtiff else 4
        )[0]
        count = struct.unpack_from(byte_order + ("Q" if bigtiff else "H"), buf, first)[0]
        start = first + (8 if bigtiff else 2)
        for k in range(min(count, 4096)):
            pos = start + k * entry
            if struct.unpack_from(byte_order + "H", buf, pos)[0] == tag:
                kind, limit = (16, 2**64) if bigtiff else (4, 2**32)
                struct.pack_into(byte_order + head, buf, pos, tag, kind, 1, value % limit)
                return
    except struct.error:
        return


def load_seeds(paths: Iterable[Path]) -> tuple[list[HeaderSeed], list[TileSeed]]:
    """Header and tile seeds from real TIFF files (every IFD-0 layout of the matrix)."""
    headers: list[HeaderSeed] = []
    tiles: list[TileSeed] = []
    for path in sorted(paths):
        data = path.read_bytes()
        header = parse_header(data, object_size=len(data))
        prefix = data[: header.header_size + HEADER_SLACK]
        seed = HeaderSeed(path.stem, prefix, len(data), header.byte_order)
        headers.append(seed)
        ifd = header.ifds[0]
        nonempty = [i for i, n in enumerate(ifd.tile_byte_counts) if n > 0]
        for i in dict.fromkeys(
            [*nonempty[:1], *nonempty[len(nonempty) // 2 :][:1], *nonempty[-1:]]
        ):
            start, count = int(ifd.tile_offsets[i]), int(ifd.tile_byte_counts[i])
            tiles.append(TileSeed(f"{path.stem}#{i}", seed, i, data[start : start + count]))
    return headers, tiles[: TILES_PER_FILE * len(headers)]


def check_header(data: bytes, object_size: int | None) -> TiffHeader | None:
    """Parse ``data`` as a prefix of an object of ``object_size`` bytes and use the result
    as enrichment does; raise AssertionError (or the escaping exception) on a contract breach.

    Returns:
        The parsed header, or None when the input was refused or is an incomplete prefix.
    """
    try:
        header = parse_header(data, url="fuzz://header", object_size=object_size)
    except IncompleteHeaderError as exc:
        _check_incomplete(exc.needed, len(data), object_size)
        return None
    except RasteretError:
        return None
    assert header.ifds, "a parsed header without IFDs"
    assert header.header_size <= len(data)
    for ifd in header.ifds:
        assert len(ifd.tile_offsets) == len(ifd.tile_byte_counts)
        if object_size is not None and len(ifd.tile_offsets):
            ends = ifd.tile_offsets + ifd.tile_byte_counts
            assert int(ends.max()) <= object_size, "a tile past the object"
        with contextlib.suppress(RasteretError):
            TileLayout.from_ifd(ifd, header.byte_order)
    with contextlib.suppress(RasteretError):
        georeference(header.ifds[0], url="fuzz://header")
    for band in range(min(header.ifds[0].samples_per_pixel, 2)):
        try:
            meta = band_metadata_from_header(header, band_index=band, href="fuzz://header",
                                             object_size=object_size)  # fmt: skip
        except RasteretError:
            continue
        meta.to_row()
    return header


def _check_incomplete(needed: int, have: int, object_size: int | None) -> None:
    """The parser asked for more bytes: only sound for a prefix, and never past the object."""
    assert object_size is None or have < object_size, (
        f"IncompleteHeaderError on a complete object ({have} of {object_size} bytes)"
    )
    assert needed > have, f"asked for {needed} bytes, already had {have}"
    assert object_size is None or needed <= object_size, "asked for bytes past the object"


def check_tile(header_data: bytes, object_size: int, tile: int, data: bytes) -> None:
    """Decode ``data`` as tile ``tile`` of IFD 0 of the header in ``header_data``."""
    header = check_header(header_data, object_size)
    if header is None:
        return
    ifd = header.ifds[0]
    try:
        layout = TileLayout.from_ifd(ifd, header.byte_order)
    except RasteretError:
        return
    index = tile % len(ifd.tile_offsets)
    rows = layout.tile_height
    if not ifd.is_tiled:
        strip = index % ifd.tiles_down
        rows = min(layout.tile_height, ifd.image_height - strip * layout.tile_height)
    try:
        arr = decode_tile(data, layout, rows=rows, url="fuzz://tile", tile=index)
    except RasteretError:
        return
    assert arr.shape == (layout.samples, rows, layout.tile_width), (arr.shape, layout, rows)
    assert arr.dtype == np.dtype(layout.dtype), (arr.dtype, layout.dtype)


def entry_positions(data: bytes, byte_order: str) -> Sequence[int]:
    """Offsets of the count/value fields of IFD 0's entries (where integers do most harm)."""
    try:
        if data[2:4] == (b"+\x00" if byte_order == "<" else b"\x00+"):  # BigTIFF
            (first,) = struct.unpack_from(byte_order + "Q", data, 8)
            (count,) = struct.unpack_from(byte_order + "Q", data, first)
            return [first + 8 + 20 * k + f for k in range(min(count, 64)) for f in (4, 12)]
        (first,) = struct.unpack_from(byte_order + "I", data, 4)
        (count,) = struct.unpack_from(byte_order + "H", data, first)
        return [first + 2 + 12 * k + f for k in range(min(count, 64)) for f in (4, 8)]
    except struct.error:
        return []
