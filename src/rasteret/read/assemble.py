"""Turn decoded tiles into chip pixels: paste whole tiles, then mask, resample or warp.

Pasting is whole-tile NumPy slicing (one copy per tile and band, no per-pixel Python); the
``resample`` and ``warp`` modes assemble their region the same way and hand it to
:mod:`rasteret.read.warp`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from rasterio.enums import Resampling

from rasteret.read.bands import BandRead, TileKey
from rasteret.read.grid import Grid
from rasteret.read.mask import apply_fill, nodata_mask
from rasteret.read.warp import resample_region, warp_region

__all__ = ["assemble_band", "paste_region"]


def paste_region(
    read: BandRead,
    keys: tuple[TileKey, ...],
    decoded: Mapping[TileKey, np.ndarray],
    out: np.ndarray,
    *,
    sample: int,
) -> None:
    """Copy the parts of the tiles ``keys`` under ``read.region`` into ``out`` (region-sized).

    Pixels of ``out`` outside the image are left untouched.
    """
    col, row, width, height = read.region
    img_w, img_h = read.image_size
    tw, th = read.tile_size
    across = -(-img_w // tw)
    c0, c1 = max(col, 0), min(col + width, img_w)
    r0, r1 = max(row, 0), min(row + height, img_h)
    for key in keys:
        tile = decoded[key]
        tr, tc = divmod(key.tile, across)
        ty, tx = tr * th, tc * tw
        ys, ye = max(ty, r0), min(ty + tile.shape[1], r1)
        xs, xe = max(tx, c0), min(tx + tile.shape[2], c1)
        if ys < ye and xs < xe:
            out[ys - row : ye - row, xs - col : xe - col] = tile[
                sample, ys - ty : ye - ty, xs - tx : xe - tx
            ]


def _inside(read: BandRead) -> tuple[slice, slice] | None:
    """Slices of the region that lie inside the image (None when none does)."""
    col, row, width, height = read.region
    img_w, img_h = read.image_size
    c0, c1 = max(col, 0), min(col + width, img_w)
    r0, r1 = max(row, 0), min(row + height, img_h)
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0 - row, r1 - row), slice(c0 - col, c1 - col)


def _region(
    read: BandRead, decoded: Mapping[TileKey, np.ndarray], buffer: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The region's pixels (band dtype), validity, and whether the validity needs a mask
    beyond nodata (internal mask, or pixels outside the image with no nodata to mark them).

    Pixels are written into ``buffer`` when given (region-shaped, band dtype): a pasted chip
    is assembled in place, with no intermediate copy.
    """
    _, _, width, height = read.region
    dtype = np.dtype(read.dtype)
    inside = _inside(read)
    full = inside is not None and inside == (slice(0, height), slice(0, width))
    canvas = np.empty((height, width), dtype) if buffer is None else buffer
    if not full:
        canvas[...] = dtype.type(read.nodata if read.nodata is not None else 0)
    paste_region(read, read.tiles, decoded, canvas, sample=read.sample)
    valid = np.zeros((height, width), dtype=bool)
    if inside is not None:
        valid[inside] = True
    # a read's mask_tiles also list the tiles of its validity read (another level)
    mask_keys = tuple(k for k in read.mask_tiles if k.level == read.level)
    masked = bool(mask_keys)
    if masked:
        mask = np.zeros((height, width), dtype=np.uint16)
        paste_region(read, mask_keys, decoded, mask, sample=read.mask_sample)
        valid &= mask != 0
    if read.nodata is not None:
        valid &= ~nodata_mask(canvas, read.nodata)
    return canvas, valid, masked or (not full and read.nodata is None)


def _all_samples(read: BandRead, decoded: Mapping[TileKey, np.ndarray]) -> np.ndarray | None:
    """Every sample of a chunky multi-band file over the region (``(samples, h, w)``), for
    kernels GDAL runs on the whole dataset at once; None otherwise."""
    if read.io_window is None or read.resampling == Resampling.nearest or not read.tiles:
        return None
    count = decoded[read.tiles[0]].shape[0]
    if count < 2:
        return None
    _, _, width, height = read.region
    out = np.zeros((count, height, width), dtype=np.dtype(read.dtype))
    for sample in range(count):
        paste_region(read, read.tiles, decoded, out[sample], sample=sample)
    return out


def _validity(read: BandRead, decoded: Mapping[TileKey, np.ndarray], grid: Grid) -> np.ndarray:
    """The validity of a nearest read (``read_masks(out_shape=)``) on ``grid``."""
    canvas, valid, _ = _region(read, decoded)
    if read.mode == "resample":
        _, valid = resample_region(canvas, valid, read, grid.shape, use_mask=False)
    return valid


def _paste_band(
    read: BandRead,
    decoded: Mapping[TileKey, np.ndarray],
    inside_aoi: np.ndarray,
    out: np.ndarray,
    out_valid: np.ndarray,
    fill: float,
) -> None:
    """A paste assembled straight into the chip: tiles copied into ``out`` (in place when
    the dtypes agree), validity built in ``out_valid`` from the AOI with in-place ANDs (the
    general path's result, with fewer full-size temporaries)."""
    _, _, width, height = read.region
    dtype = np.dtype(read.dtype)
    inside = _inside(read)
    full = inside is not None and inside == (slice(0, height), slice(0, width))
    canvas = out if out.dtype == dtype else np.empty((height, width), dtype)
    if not full:
        canvas[...] = dtype.type(read.nodata if read.nodata is not None else 0)
    paste_region(read, read.tiles, decoded, canvas, sample=read.sample)
    np.copyto(out_valid, inside_aoi)
    if not full:
        in_image = np.zeros((height, width), dtype=bool)
        if inside is not None:
            in_image[inside] = True
        np.logical_and(out_valid, in_image, out=out_valid)
    mask_keys = tuple(k for k in read.mask_tiles if k.level == read.level)
    if mask_keys:
        mask = np.zeros((height, width), dtype=np.uint16)
        paste_region(read, mask_keys, decoded, mask, sample=read.mask_sample)
        np.logical_and(out_valid, mask, out=out_valid)
    if read.nodata is not None:
        keep = nodata_mask(canvas, read.nodata)
        np.logical_not(keep, out=keep)
        np.logical_and(out_valid, keep, out=out_valid)
    if canvas is not out:
        out[...] = canvas
    if _fill_needed(read, out.dtype, inside_aoi, bool(mask_keys), fill):
        apply_fill(out, out_valid, fill)


def _fill_needed(
    read: BandRead, out_dtype: np.dtype, inside_aoi: np.ndarray, masked: bool, fill: float
) -> bool:
    """Whether a pasted chip's invalid pixels may hold something other than ``fill``.

    Without an internal mask and with every pixel inside the AOI, a pixel is invalid only
    for lying outside the image (pre-filled with the band's nodata, else 0) or for holding
    the nodata value: when that value, cast as the chip is, is ``fill`` (the default fill),
    every invalid pixel holds it already.
    """
    if masked or not inside_aoi.all():
        return True
    value = read.nodata if read.nodata is not None else 0
    with np.errstate(all="ignore"):
        held = out_dtype.type(np.dtype(read.dtype).type(value))
        return bool(held != out_dtype.type(fill))


def assemble_band(
    read: BandRead,
    decoded: Mapping[TileKey, np.ndarray],
    grid: Grid,
    inside_aoi: np.ndarray,
    out: np.ndarray,
    out_valid: np.ndarray,
    fill: float,
) -> None:
    """Write one band of one chip into ``out`` / ``out_valid`` (both ``grid``-shaped).

    Args:
        read: The band's plan.
        decoded: Every tile the read needs, decoded.
        grid: The chip's grid.
        inside_aoi: Pixels of ``grid`` inside the AOI polygon.
        out: The chip channel to fill (output dtype; cast from the band dtype).
        out_valid: Its validity.
        fill: Value of invalid pixels.
    """
    if not read.overlaps:
        out[...] = out.dtype.type(fill)
        out_valid[...] = False
        return
    if read.mode == "paste" and read.validity is None:
        _paste_band(read, decoded, inside_aoi, out, out_valid, fill)
        return
    in_place = read.mode == "paste" and out.dtype == np.dtype(read.dtype)
    canvas, valid, use_mask = _region(read, decoded, out if in_place else None)
    if read.mode == "resample":
        samples = _all_samples(read, decoded)
        canvas, valid = resample_region(
            canvas, valid, read, grid.shape, use_mask=use_mask, samples=samples
        )
    elif read.mode == "warp":
        canvas, valid = warp_region(canvas, valid, read, grid, use_mask=use_mask)
    if read.validity is not None:  # GDAL's mask read picks another level (see BandRead)
        valid = _validity(read.validity, decoded, grid) & ~nodata_mask(canvas, read.nodata)
    np.logical_and(valid, inside_aoi, out=out_valid)
    if not in_place:
        out[...] = canvas
    apply_fill(out, out_valid, fill)
