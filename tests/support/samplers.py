"""TorchGeo's samplers of the installed TorchGeo: from 0.10, ``GriddedPatchSampler`` and
``RandomPatchSampler`` (queries of ``(x, y)`` slices) replace the deprecated
``GridGeoSampler``, ``RandomGeoSampler`` and ``RandomBatchGeoSampler``. Sizes in pixels."""

from __future__ import annotations

from typing import Any

import torch
import torchgeo.samplers

PATCH_SAMPLERS = hasattr(torchgeo.samplers, "GriddedPatchSampler")
"""True for TorchGeo >= 0.10."""


def grid_sampler(dataset: Any, size: float, stride: float) -> Any:
    """TorchGeo's gridded sampler of this TorchGeo version (sizes in pixels)."""
    if PATCH_SAMPLERS:
        return torchgeo.samplers.GriddedPatchSampler(dataset, size=size, stride=stride)
    return torchgeo.samplers.GridGeoSampler(dataset, size=size, stride=stride)


def random_sampler(dataset: Any, size: float, length: int, seed: int) -> Any:
    """TorchGeo's random sampler of this TorchGeo version, seeded (sizes in pixels)."""
    if PATCH_SAMPLERS:
        return torchgeo.samplers.RandomPatchSampler(
            dataset, size=size, length=length, generator=seed
        )
    generator = torch.Generator().manual_seed(seed)
    return torchgeo.samplers.RandomGeoSampler(
        dataset, size=size, length=length, generator=generator
    )


def random_batches(
    dataset: Any, size: float, batch_size: int, length: int, seed: int
) -> dict[str, Any]:
    """``DataLoader`` keywords for ``length`` random samples in batches of ``batch_size``:
    ``RandomBatchGeoSampler`` before TorchGeo 0.10, ``RandomPatchSampler`` and
    ``batch_size`` from 0.10 on (which deprecates the batch sampler)."""
    if PATCH_SAMPLERS:
        return {"sampler": random_sampler(dataset, size, length, seed), "batch_size": batch_size}
    sampler = torchgeo.samplers.RandomBatchGeoSampler(
        dataset, size=size, batch_size=batch_size, length=length,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    return {"batch_sampler": sampler}
