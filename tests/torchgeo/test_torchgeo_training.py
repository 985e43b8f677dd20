"""Training smoke test: a tiny model learns from ``DataLoader(num_workers=2)`` batches that
rasteret's TorchGeo dataset reads from the loopback S3 server (moto), configured only
through the standard AWS environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torchgeo.datasets")  # the ``torchgeo`` extra

import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import stack_samples
from torchgeo_support import build, spec, write_scenes

from rasteret.testing.servers import MotoS3Server
from support.forking import FORK_OF_THREADS_EXPECTED
from support.samplers import grid_sampler, random_batches, random_sampler

pytestmark = [
    pytest.mark.integration,
    FORK_OF_THREADS_EXPECTED,
]


@pytest.fixture
def s3_dataset(s3_env: MotoS3Server, tmp_path: Path) -> object:
    specs = [spec(5), spec(10, origin=(501_280.0, 4_598_720.0)), spec(15)]
    write_scenes(tmp_path / "scenes", specs)
    s3_env.create_bucket("tg-train")
    urls = s3_env.put_dir("tg-train", tmp_path / "scenes", prefix="scenes")
    hrefs = {s.scene_id: {b: urls[f"{s.scene_id}_{b}.tif"] for b in ("B04", "B08")} for s in specs}
    collection = build(specs, hrefs, tmp_path / "ws", extra={"crop": [0, 1, 2]})
    return collection.to_torchgeo_dataset(bands=["B04", "B08"], label_field="crop")


def test_workers_read_the_same_samples_as_the_main_process(s3_dataset: object) -> None:
    queries = list(grid_sampler(s3_dataset, size=64, stride=96))[:12]
    expected = [s3_dataset[q] for q in queries]  # main process: loop, stores and pools running
    loader = DataLoader(
        s3_dataset, sampler=queries, batch_size=4, num_workers=2, collate_fn=stack_samples
    )
    got = [b for batch in loader for b in batch["image"]]
    assert len(got) == len(expected)
    for image, sample in zip(got, expected, strict=True):
        assert torch.equal(image, sample["image"])


def test_tiny_model_trains_on_worker_batches(s3_dataset: object) -> None:
    torch.manual_seed(0)
    batches = random_batches(s3_dataset, size=32, batch_size=8, length=32, seed=0)
    loader = DataLoader(s3_dataset, num_workers=2, collate_fn=stack_samples, **batches)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 1)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(2):  # two epochs: workers are forked twice, the parent's read server stays
        for batch in loader:
            image = batch["image"] / 4000.0
            assert image.shape == (8, 2, 32, 32)
            assert batch["label"].dtype == torch.int64
            target = 0.7 * image[:, :1] - 0.4 * image[:, 1:]  # learn a band combination
            loss = torch.nn.functional.mse_loss(model(image), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert len(losses) == 8
    assert sum(losses[-2:]) < 0.5 * sum(losses[:2])


def test_random_geo_sampler_with_workers(s3_dataset: object) -> None:
    sampler = random_sampler(s3_dataset, size=48, length=8, seed=3)
    loader = DataLoader(
        s3_dataset, sampler=sampler, batch_size=4, num_workers=2, collate_fn=stack_samples
    )
    batches = list(loader)
    assert [tuple(b["image"].shape) for b in batches] == [(4, 2, 48, 48)] * 2
    assert all(float(b["image"].max()) > 0 for b in batches)
