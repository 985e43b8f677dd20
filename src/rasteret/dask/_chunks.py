"""Chunk sizes of a lazy read: the ``chunks=`` argument normalised to block sizes per dim.

``chunks`` is ``"auto"`` (or ``{}``), one int (pixels along y and x), a ``(y, x)`` or
``(time, y, x)`` tuple, or a dict over ``time``/``y``/``x`` whose values are ints, ``-1`` /
``None`` (the whole dimension) or ``"auto"``. ``time`` defaults to one slot per chunk.

``"auto"`` y/x chunks are whole multiples of the COG tile size of the finest native band (as
close to :data:`DEFAULT_CHUNK_PIXELS` as a multiple gets) with chunk edges on tile edges, so
no tile is fetched by two chunks. Explicit sizes start at the grid's first pixel, as in dask.

>>> block_sizes(10, 4)
(4, 4, 2)
>>> aligned_sizes(10, 4, 3)  # tile corners at 3, 7: edges there
(3, 4, 3)
>>> auto_size(256)
2048
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rasteret.errors import SchemaError

__all__ = [
    "DEFAULT_CHUNK_PIXELS",
    "ChunkSpec",
    "aligned_sizes",
    "auto_size",
    "block_sizes",
    "parse_chunks",
]

DEFAULT_CHUNK_PIXELS = 2048
"""Target side of an ``"auto"`` chunk in pixels (8 MiB of uint16 per band and time step)."""

DIMS = ("time", "y", "x")

ChunkSpec = dict[str, int | None]
"""Per dim: a size, ``None`` for the whole dim, or absent for the default (time 1, y/x auto)."""


def parse_chunks(chunks: Any) -> ChunkSpec:
    """Normalise a ``chunks=`` value to ``{dim: size | None}`` (auto dims left out).

    >>> parse_chunks({"x": 512, "y": -1})
    {'y': None, 'x': 512}
    >>> parse_chunks((2, 256, 256))
    {'time': 2, 'y': 256, 'x': 256}
    """
    if isinstance(chunks, str):
        if chunks != "auto":
            raise SchemaError(f"expected chunks='auto', an int, a tuple or a dict, got {chunks!r}")
        return {}
    if isinstance(chunks, bool):
        raise SchemaError(f"expected chunks='auto', an int, a tuple or a dict, got {chunks!r}")
    if isinstance(chunks, int):
        return {"y": _size("y", chunks), "x": _size("x", chunks)}
    if isinstance(chunks, tuple | list):
        if len(chunks) not in (2, 3):
            raise SchemaError(
                f"expected chunks as (y, x) or (time, y, x), got {len(chunks)} values {chunks!r}"
            )
        dims = DIMS[3 - len(chunks) :]
        return {d: _size(d, v) for d, v in zip(dims, chunks, strict=True) if v != "auto"}
    if isinstance(chunks, Mapping):
        unknown = sorted(set(chunks) - set(DIMS))
        if unknown:
            raise SchemaError(f"expected chunks keys among {DIMS}, got {unknown}")
        return {d: _size(d, chunks[d]) for d in DIMS if d in chunks and chunks[d] != "auto"}
    raise SchemaError(
        f"expected chunks='auto', an int, a tuple or a dict, got {type(chunks).__name__}"
    )


def _size(dim: str, value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value == -1):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SchemaError(f"expected a positive chunk size, -1 or None for {dim!r}, got {value!r}")
    return value


def block_sizes(length: int, size: int | None) -> tuple[int, ...]:
    """Regular blocks of ``size`` (the last one shorter) covering ``length``."""
    if length == 0:
        return (0,)
    if size is None or size >= length:
        return (length,)
    full, rest = divmod(length, size)
    return (size,) * full + ((rest,) if rest else ())


def aligned_sizes(length: int, size: int, origin: int) -> tuple[int, ...]:
    """Blocks of ``size`` whose edges fall on ``origin + k * size`` (first/last may be short)."""
    if length == 0:
        return (0,)
    first = (origin % size) or size
    if first >= length:
        return (length,)
    sizes = [first]
    done = first
    while done < length:
        step = min(size, length - done)
        sizes.append(step)
        done += step
    return tuple(sizes)


def auto_size(tile: int | None) -> int:
    """The ``"auto"`` chunk side: the multiple of ``tile`` nearest :data:`DEFAULT_CHUNK_PIXELS`
    (at least one tile)."""
    if not tile:
        return DEFAULT_CHUNK_PIXELS
    return tile * max(1, round(DEFAULT_CHUNK_PIXELS / tile))
