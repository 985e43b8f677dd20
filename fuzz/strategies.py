"""Hypothesis strategies over the seeds of :mod:`targets`: a seed plus a list of mutations."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st
from targets import INTERESTING, TAGS, HeaderSeed, Mutation, TileSeed, entry_positions

__all__ = ["header_inputs", "mutations", "tile_inputs"]

OBJECT_SIZES = ("true", "unknown", "buffer", "short")
"""How the object size handed to the parser relates to the (mutated) buffer."""


def mutations(positions: Sequence[int], max_size: int = 8) -> st.SearchStrategy[list[Mutation]]:
    """Edits aimed at IFD entry fields (``positions``) half of the time."""
    anywhere = st.integers(0, 2**20)
    pos = st.one_of(st.sampled_from(positions), anywhere) if positions else anywhere
    value = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**64 - 1))
    one = st.one_of(
        st.builds(Mutation, op=st.just("tag"), pos=st.sampled_from(TAGS), arg=value),
        st.builds(Mutation, op=st.just("flip"), pos=pos, arg=st.integers(0, 7)),
        st.builds(Mutation, op=st.just("byte"), pos=pos, arg=st.integers(0, 255)),
        st.builds(
            Mutation, op=st.just("int"), pos=pos, arg=value, width=st.sampled_from([2, 4, 8])
        ),
        st.builds(Mutation, op=st.just("truncate"), pos=anywhere),
        st.builds(Mutation, op=st.just("insert"), pos=pos, payload=st.binary(max_size=16)),
        st.builds(Mutation, op=st.just("delete"), pos=pos, width=st.integers(1, 64)),
        st.builds(Mutation, op=st.just("splice"), pos=pos, arg=anywhere, width=st.integers(1, 64)),
    )
    return st.lists(one, min_size=1, max_size=max_size)


def header_inputs(
    seeds: Sequence[HeaderSeed],
) -> st.SearchStrategy[tuple[HeaderSeed, list[Mutation], str]]:
    """(seed, mutations of its bytes, object-size mode)."""
    edits = [mutations(entry_positions(s.data, s.byte_order)) for s in seeds]
    return st.integers(0, len(seeds) - 1).flatmap(
        lambda i: st.tuples(st.just(seeds[i]), edits[i], st.sampled_from(OBJECT_SIZES))
    )


def tile_inputs(
    seeds: Sequence[TileSeed],
) -> st.SearchStrategy[tuple[TileSeed, list[Mutation], list[Mutation]]]:
    """(seed, mutations of its header, mutations of its tile bytes); either may be empty."""
    header_edits = [
        st.one_of(st.just([]), mutations(entry_positions(s.header.data, s.header.byte_order), 3))
        for s in seeds
    ]
    tile_edits = st.one_of(st.just([]), mutations([], 6))
    return st.integers(0, len(seeds) - 1).flatmap(
        lambda i: st.tuples(st.just(seeds[i]), header_edits[i], tile_edits)
    )


def object_size(mode: str, seed: HeaderSeed, data: bytes) -> int | None:
    """The object size for ``mode`` (see :data:`OBJECT_SIZES`)."""
    if mode == "true":
        return max(seed.object_size, len(data))
    if mode == "unknown":
        return None
    if mode == "buffer":
        return len(data)
    return max(len(data) // 2, 1)
