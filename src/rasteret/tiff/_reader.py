"""Low-level TIFF byte reading: the file header, the IFD chain, and tag values.

Sans-I/O. Every read goes through :meth:`TiffReader.need`, which records the furthest byte
read (the header size) and raises :class:`IncompleteHeaderError` when the buffer is too short,
asking for as much as is already known to be needed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from rasteret.errors import HeaderError
from rasteret.tiff import _tags as t

__all__ = ["MAX_ENTRIES", "MAX_IFDS", "Entry", "IncompleteHeaderError", "TiffReader"]

MAX_IFDS: Final = 4096
"""Most IFDs one file may chain (GDAL COGs have a few dozen at most)."""
MAX_ENTRIES: Final = 4096
"""Most tag entries one IFD may hold (real files have fewer than 100)."""


class IncompleteHeaderError(Exception):
    """Raised by :func:`~rasteret.tiff.header.parse_header` when the buffer ends too early.

    A control-flow signal, not a :class:`~rasteret.errors.RasteretError`: fetch at least
    ``needed`` bytes from offset 0 and parse again.
    """

    def __init__(self, needed: int) -> None:
        super().__init__(f"header needs at least {needed} bytes")
        self.needed = needed


@dataclass(frozen=True, slots=True)
class Entry:
    """One IFD entry: a tag, its field type, its value count and where its value bytes are."""

    tag: int
    field_type: int
    count: int
    value_offset: int
    """Absolute offset of the value bytes (inside the entry itself when they fit there)."""
    nbytes: int
    """Size of the value bytes (0 for an unknown field type)."""

    @property
    def end(self) -> int:
        return self.value_offset + self.nbytes


class TiffReader:
    """Reads the file header, IFD entry tables and tag values from a prefix buffer."""

    def __init__(self, data: bytes | bytearray | memoryview, url: str, object_size: int | None):
        view = memoryview(data)
        self.buf = view if view.format == "B" and view.ndim == 1 else view.cast("B")
        self.url = url
        self.where = f" at {url}" if url else ""
        self.object_size = object_size
        self.read_end = 0
        """Furthest byte end read so far."""
        self.pending = 0
        """Furthest byte end known to be read later (a hint for IncompleteHeaderError)."""
        self.byte_order: Literal["<", ">"] = "<"
        self.bigtiff = False
        self.first_ifd = 0
        self._parse_file_header()

    def need(self, end: int, what: str) -> None:
        """Ensure bytes ``[0, end)`` are in the buffer; ``what`` names them for errors."""
        if self.object_size is not None and end > self.object_size:
            raise HeaderError(
                f"expected {what} to end within the object's {self.object_size} bytes{self.where}, "
                f"but it ends at byte {end} (truncated or corrupt file)"
            )
        if end > len(self.buf):
            raise IncompleteHeaderError(max(end, self.pending))
        self.read_end = max(self.read_end, end)

    def hint(self, end: int) -> None:
        """Note that bytes up to ``end`` will be read later, if that end is plausible."""
        if self.object_size is None or end <= self.object_size:
            self.pending = max(self.pending, end)

    def _parse_file_header(self) -> None:
        head = bytes(self.buf[:16])
        expected = "a TIFF header (b'II*\\x00' or b'MM\\x00*', or BigTIFF version 43)"
        if not head:
            raise HeaderError(f"expected {expected}{self.where}, got 0 bytes")
        order = head[:2]
        if order not in (b"II", b"MM", b"I", b"M"):
            raise HeaderError(f"expected {expected}{self.where}, got {head[:8]!r}")
        if len(head) < 4:
            self.need(8, "the TIFF file header")
        self.byte_order = "<" if order == b"II" else ">"
        (version,) = struct.unpack_from(self.byte_order + "H", head, 2)
        if version == t.CLASSIC_VERSION:
            self.need(8, "the TIFF file header")
            (self.first_ifd,) = struct.unpack_from(self.byte_order + "I", head, 4)
        elif version == t.BIGTIFF_VERSION:
            self.bigtiff = True
            self.need(16, "the BigTIFF file header")
            size, zero, self.first_ifd = struct.unpack_from(self.byte_order + "HHQ", head, 4)
            if size != 8 or zero != 0:
                raise HeaderError(
                    f"expected BigTIFF offset size 8 and reserved word 0{self.where}, "
                    f"got {size} and {zero}"
                )
        else:
            raise HeaderError(f"expected {expected}{self.where}, got {head[:8]!r}")

    def walk(
        self, value_ends: Callable[[dict[int, Entry]], Iterable[int]]
    ) -> list[tuple[int, dict[int, Entry]]]:
        """Walk the whole IFD chain; return (offset, entries by tag) for every IFD.

        ``value_ends`` names, for one IFD's entries, the byte ends of the values that will be
        read later; they are noted with :meth:`hint` so that an incomplete buffer asks for them
        together with the rest of the chain.
        """
        bo = self.byte_order
        count_fmt, count_size, entry_size, next_fmt = (
            ("Q", 8, 20, "Q") if self.bigtiff else ("H", 2, 12, "I")
        )
        entry_fmt = bo + ("HHQ" if self.bigtiff else "HHI")
        value_fmt = bo + next_fmt
        field_size = 8 if self.bigtiff else 4
        header_len = 16 if self.bigtiff else 8
        ifds: list[tuple[int, dict[int, Entry]]] = []
        seen: set[int] = set()
        offset = self.first_ifd
        if offset == 0:
            raise HeaderError(f"expected a first IFD offset{self.where}, got 0 (no image)")
        while offset:
            index = len(ifds)
            if offset in seen:
                raise HeaderError(
                    f"expected a chain of distinct IFDs{self.where}, but IFD {index} points back "
                    f"to offset {offset} (a loop)"
                )
            if index >= MAX_IFDS:
                raise HeaderError(f"expected at most {MAX_IFDS} IFDs{self.where}, got more")
            if offset < header_len:
                raise HeaderError(
                    f"expected IFD {index} at or after byte {header_len}{self.where}, "
                    f"got offset {offset}"
                )
            seen.add(offset)
            self.need(offset + count_size, f"the entry count of IFD {index}")
            (n,) = struct.unpack_from(bo + count_fmt, self.buf, offset)
            if not 0 < n <= MAX_ENTRIES:
                raise HeaderError(
                    f"expected 1 to {MAX_ENTRIES} entries in IFD {index}{self.where}, got {n}"
                )
            start = offset + count_size
            end = start + n * entry_size + field_size
            self.need(end, f"IFD {index}")
            entries: dict[int, Entry] = {}
            for k in range(n):
                pos = start + k * entry_size
                tag, ftype, count = struct.unpack_from(entry_fmt, self.buf, pos)
                if tag in entries:
                    continue  # a duplicate tag: the first one wins, as in libtiff
                nbytes = count * t.FIELD_TYPE_SIZES.get(ftype, 0)
                value_at = pos + entry_size - field_size
                if nbytes > field_size:
                    (value_at,) = struct.unpack_from(value_fmt, self.buf, value_at)
                entries[tag] = Entry(tag, ftype, count, value_at, nbytes)
            ifds.append((offset, entries))
            for value_end in value_ends(entries):
                self.hint(value_end)
            (offset,) = struct.unpack_from(value_fmt, self.buf, end - field_size)
            if offset:
                self.hint(offset + count_size)
        return ifds

    def array(self, entry: Entry, what: str) -> np.ndarray:
        """The entry's values as a NumPy array (rationals as float64); byte order applied."""
        dtype = t.NUMPY_TYPES.get(entry.field_type)
        if dtype is None:
            raise HeaderError(
                f"expected a TIFF field type for {what}{self.where}, got type {entry.field_type}"
            )
        self.need(entry.end, what)
        n = entry.count * (2 if entry.field_type in t.RATIONAL_TYPES else 1)
        values = np.frombuffer(
            self.buf, dtype=dtype.newbyteorder(self.byte_order), count=n, offset=entry.value_offset
        )
        if entry.field_type in t.RATIONAL_TYPES:
            pairs = values.astype(np.float64).reshape(-1, 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                return pairs[:, 0] / pairs[:, 1]
        return values

    def first_int(self, entry: Entry, what: str) -> int:
        """The first value of an integer entry (same checks as :meth:`array`, no array)."""
        self.need(entry.value_offset + t.FIELD_TYPE_SIZES[entry.field_type], what)
        code = self.byte_order + t.INTEGER_STRUCT_CODES[entry.field_type]
        (value,) = struct.unpack_from(code, self.buf, entry.value_offset)
        return int(value)

    def raw(self, entry: Entry, what: str) -> bytes:
        """The entry's value bytes as they are in the file."""
        self.need(entry.end, what)
        return bytes(self.buf[entry.value_offset : entry.end])
