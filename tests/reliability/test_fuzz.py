"""Bounded fuzzing in CI: mutated real headers and tiles; only RasteretErrors may escape.

The targets and mutators live in ``fuzz/`` (shared with ``fuzz/run_fuzz.py`` for long runs);
see ``fuzz/targets.py`` for the contract, including how the parser's IncompleteHeaderError is
handled. Seeds are every file of the fixture matrix. The process's address space is capped
while the examples run, so an input that makes the decoder reserve a huge buffer fails as a
MemoryError instead of passing unnoticed; a hypothesis deadline catches inputs that hang.
The suite's budget is ~30 s (``FUZZ_EXAMPLES`` examples per target).
"""

from __future__ import annotations

import contextlib
import resource
import struct
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))

from strategies import header_inputs, object_size, tile_inputs
from targets import HeaderSeed, Mutation, TileSeed, check_header, check_tile, load_seeds, mutate

from rasteret.errors import RasteretError
from rasteret.tiff.decode import TileLayout, decode_tile
from rasteret.tiff.header import parse_header

FUZZ_EXAMPLES = {"header": 2500, "tile": 1500}
MEMORY_HEADROOM = 3 * 2**30
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES["header"],
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same inputs on every CI run; run_fuzz.py explores new ones
)


@pytest.fixture(scope="module")
def seeds(fixture_paths: dict[str, Path]) -> tuple[list[HeaderSeed], list[TileSeed]]:
    return load_seeds(fixture_paths.values())


@contextlib.contextmanager
def capped_memory() -> Iterator[None]:
    """Cap the address space at what is mapped now plus ``MEMORY_HEADROOM``."""
    with open("/proc/self/statm") as fh:
        mapped = int(fh.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = mapped + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_seeds_cover_the_matrix(seeds: tuple[list[HeaderSeed], list[TileSeed]]) -> None:
    headers, tiles = seeds
    assert len(headers) >= 90
    assert len(tiles) >= 2 * len(headers)
    for seed in headers:  # unmutated seeds parse, as every prefix of them does
        assert check_header(seed.data, seed.object_size) is not None
        assert check_header(seed.data[: len(seed.data) // 3], seed.object_size) is None


def test_fuzz_header_parser(seeds: tuple[list[HeaderSeed], list[TileSeed]]) -> None:
    @FUZZ
    @given(header_inputs(seeds[0]))
    def run(case: tuple[HeaderSeed, list[Mutation], str]) -> None:
        seed, mutations, mode = case
        data = mutate(seed.data, mutations, seed.byte_order)
        check_header(data, object_size(mode, seed, data))

    with capped_memory():
        run()


def test_fuzz_tile_decoder(seeds: tuple[list[HeaderSeed], list[TileSeed]]) -> None:
    @settings(FUZZ, max_examples=FUZZ_EXAMPLES["tile"])
    @given(tile_inputs(seeds[1]))
    def run(case: tuple[TileSeed, list[Mutation], list[Mutation]]) -> None:
        seed, header_edits, tile_edits = case
        header = mutate(seed.header.data, header_edits, seed.header.byte_order)
        size = max(seed.header.object_size, len(header))
        check_tile(header, size, seed.tile, mutate(seed.data, tile_edits))

    with capped_memory():
        run()


# -- crashes the fuzzer found, kept as regression tests -----------------------------------------


def _patched(path: Path, values: dict[int, int]) -> bytes:
    """``path``'s bytes with IFD 0's entries ``{tag: value}`` rewritten as one LONG each."""
    data = bytearray(path.read_bytes())
    (first,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, first)
    for k in range(count):
        pos = first + 2 + 12 * k
        (tag,) = struct.unpack_from("<H", data, pos)
        if tag in values:
            struct.pack_into("<HHII", data, pos, tag, 4, 1, values[tag])
    return bytes(data)


def test_a_terabyte_tile_is_refused_before_allocating(fixture_paths: dict[str, Path]) -> None:
    """A one-tile file whose header declares a 65535 x 32768 tile of 64 x 64-bit samples
    made decode_tile allocate 1 TiB (MemoryError escaped); it is refused up front now."""
    path = fixture_paths["uint8_deflate_tile256_100x60"]
    data = _patched(path, {322: 65535, 323: 32768, 258: 64, 277: 64})
    header = parse_header(data, object_size=len(data))
    ifd = header.ifds[0]
    layout = TileLayout.from_ifd(ifd, header.byte_order)
    start, count = int(ifd.tile_offsets[0]), int(ifd.tile_byte_counts[0])
    with capped_memory(), pytest.raises(RasteretError, match="at most"):
        decode_tile(data[start : start + count], layout)


def test_a_lerc_tile_of_thousands_of_samples_stays_within_memory(
    fixture_paths: dict[str, Path],
) -> None:
    """atheris (tile target, 293k inputs in): SamplesPerPixel mutated to 4097 in a LERC+Deflate
    file declared a 1 GiB tile; the LERC second stage then reserved twice that again and
    MemoryError escaped under the 4 GiB cap. Tiles are capped at 1 GiB and the blob at 1.25x."""
    path = fixture_paths["float32_lerc_deflate_maxz0.01_tile256"]
    data = bytes(path.read_bytes())
    for samples, error in ((4097, "at most 1073741824 decoded bytes"), (4000, "LERC")):
        patched = mutate(data, [Mutation("tag", 277, samples)], "<")
        header = parse_header(patched, object_size=len(patched))
        ifd = header.ifds[0]
        layout = TileLayout.from_ifd(ifd, header.byte_order)
        start, count = int(ifd.tile_offsets[0]), int(ifd.tile_byte_counts[0])
        with capped_memory(), pytest.raises(RasteretError, match=error):
            decode_tile(patched[start : start + count], layout)
