"""Every tile of every IFD of every matrix fixture: rasteret's decode_tile equals rasterio.

Offsets, byte counts and layouts come from rasteret's own header parser; the oracle is
rasterio reading the same block (full resolution, each overview level, each mask level).
Edge tiles are compared on the part inside the image. Only JPEG may differ, by at most
``JPEG_TOLERANCE`` (GDAL's libjpeg against imagecodecs' libjpeg-turbo).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rasteret.testing.fixtures import FIXTURE_MATRIX, FixtureSpec
from rasteret.tiff.decode import TileLayout, decode_tile, empty_tile
from rasteret.tiff.header import ImageFileDirectory, parse_header

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

JPEG_TOLERANCE = 0
"""Largest |rasteret - GDAL| allowed for JPEG pixels (measured: identical decoders)."""


def _level_of(path: Path, ifd: ImageFileDirectory) -> int | None:
    """rasterio overview level (None: full resolution) with the IFD's size."""
    with rasterio.open(path) as src:
        if (src.width, src.height) == (ifd.image_width, ifd.image_height):
            return None
        for level in range(len(src.overviews(1))):
            with rasterio.open(path, overview_level=level) as ovr:
                if (ovr.width, ovr.height) == (ifd.image_width, ifd.image_height):
                    return level
    raise AssertionError(
        f"no rasterio level of {path.name} is {ifd.image_width}x{ifd.image_height}"
    )


def _oracle(
    path: Path, ifd: ImageFileDirectory, level: int | None, window: Window, bands: list[int]
) -> np.ndarray:
    kwargs = {} if level is None else {"overview_level": level}
    with rasterio.open(path, **kwargs) as src:
        if ifd.is_mask:  # GDAL maps the 1-bit mask to 0/255; rasteret keeps the stored 0/1
            return src.read_masks(1, window=window)[None] // 255
        return src.read(bands, window=window)


def _compare(
    spec: FixtureSpec, path: Path, data: bytes, ifd: ImageFileDirectory, byte_order: str
) -> int:
    """Compare every tile of one IFD; return the largest absolute difference seen."""
    layout = TileLayout.from_ifd(ifd, byte_order)  # type: ignore[arg-type]
    level = _level_of(path, ifd)
    per_plane = ifd.tiles_across * ifd.tiles_down
    fill = 0 if spec.nodata is None or ifd.is_mask else spec.nodata
    worst = 0
    for index, (offset, count) in enumerate(
        zip(ifd.tile_offsets, ifd.tile_byte_counts, strict=True)
    ):
        plane, rest = divmod(index, per_plane)
        row, col = divmod(rest, ifd.tiles_across)
        y0, x0 = row * ifd.tile_height, col * ifd.tile_width
        h = min(ifd.tile_height, ifd.image_height - y0)
        w = min(ifd.tile_width, ifd.image_width - x0)
        rows = None if ifd.is_tiled else h
        if count == 0:
            ours = empty_tile(layout, fill, rows=rows)
        else:
            ours = decode_tile(
                data[offset : offset + count], layout, rows=rows, url=path.name, tile=index
            )
        assert ours.shape == (layout.samples, rows or ifd.tile_height, ifd.tile_width)
        assert ours.dtype == ifd.dtype
        bands = [plane + 1] if ifd.planar_configuration == 2 else list(range(1, spec.count + 1))
        theirs = _oracle(path, ifd, level, Window(x0, y0, w, h), bands)
        ours = ours[:, :h, :w]
        where = f"{spec.name} IFD {ifd.index} tile {index}"
        if spec.compression == "JPEG" and not ifd.is_mask:
            diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
            worst = max(worst, int(diff.max()))
            assert worst <= JPEG_TOLERANCE, f"{where}: JPEG differs by {worst}"
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=where, strict=True)
    return worst


@pytest.mark.parametrize("spec", FIXTURE_MATRIX, ids=lambda s: s.name)
def test_every_tile_matches_rasterio(spec: FixtureSpec, fixture_paths: dict[str, Path]) -> None:
    path = fixture_paths[spec.name]
    data = path.read_bytes()
    header = parse_header(data, url=str(path))
    kinds = {(i.is_reduced_resolution, i.is_mask) for i in header.ifds}
    assert (False, False) in kinds
    if spec.overviews or spec.driver == "COG":
        assert (True, False) in kinds, "expected overview IFDs"
    if spec.internal_mask:
        assert (False, True) in kinds, "expected a mask IFD"
    for ifd in header.ifds:
        _compare(spec, path, data, ifd, header.byte_order)
