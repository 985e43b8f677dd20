"""DataLoader workers of a TorchGeo dataset, from a process that has already read.

* forked workers (Linux's default before Python 3.14) hand their reads to the read server of
  the process that forked them: samples equal the main process's, the tiles land in the
  parent's cache, and the server keeps running across epochs;
* a forked process with no server to go to starts a helper process of its own;
* ``forkserver`` workers get the pickled dataset and read themselves.

A fork of a multi-threaded process warns on Python >= 3.12 (DeprecationWarning); PyTorch's
fork of its workers does, whatever rasteret does, so these tests say they expect it rather
than rely on the warning being silent.
"""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torchgeo.datasets")  # the ``torchgeo`` extra

import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import stack_samples
from torchgeo_support import build, spec, write_scenes

import rasteret
from rasteret.io import _fork
from rasteret.outputs import _torchgeo_helper as helper
from rasteret.read.cache import clear_tile_cache, get_tile_cache
from support.forking import FORK_OF_THREADS_EXPECTED
from support.samplers import grid_sampler

pytestmark = [
    pytest.mark.integration,
    FORK_OF_THREADS_EXPECTED,
]


@pytest.fixture
def http_dataset(tmp_path: Path, http_server: Any) -> Any:
    specs = [spec(5), spec(10, origin=(501_280.0, 4_598_720.0))]
    write_scenes(tmp_path / "scenes", specs)
    server = http_server(tmp_path / "scenes")
    hrefs = {
        s.scene_id: {b: server.url_for(f"{s.scene_id}_{b}.tif") for b in ("B04", "B08")}
        for s in specs
    }
    collection: rasteret.Collection = build(specs, hrefs, tmp_path / "ws")
    return collection.to_torchgeo_dataset(bands=["B04", "B08"])


def _queries(ds: Any) -> list[Any]:
    return list(grid_sampler(ds, size=64, stride=80))[:10]


def _loader(ds: Any, queries: list[Any], **kwargs: Any) -> DataLoader[Any]:
    return DataLoader(
        ds, sampler=queries, batch_size=3, num_workers=2, collate_fn=stack_samples, **kwargs
    )


def test_forked_workers_read_through_the_parent(http_dataset: Any) -> None:
    ds = http_dataset
    queries = _queries(ds)
    expected = [ds[q]["image"] for q in queries]  # the main process reads: runtime in use
    assert _fork.runtime_used()
    helper.stop_server()
    for _epoch in range(2):  # workers are forked anew each epoch; the server stays
        clear_tile_cache()
        loader = _loader(ds, queries, multiprocessing_context="fork")
        got = [image for batch in loader for image in batch["image"]]
        assert len(got) == len(expected)
        for image, sample in zip(got, expected, strict=True):
            assert torch.equal(image, sample)
        assert helper.server_address() is not None
        # the parent read the workers' tiles: they are in its cache
        assert get_tile_cache(ds.options.cache_mb).misses > 0
    helper.stop_server()
    assert helper.server_address() is None


def _read_without_server(ds: Any, query: Any, out: Any) -> None:
    helper._target = None  # as if the dataset had been made after the fork
    sample = ds[query]
    out.send(
        (helper._client is not None and helper._client._proc is not None, sample["image"].numpy())
    )


def test_a_fork_without_server_starts_its_own_helper(http_dataset: Any) -> None:
    ds = http_dataset
    query = _queries(ds)[3]
    expected = ds[query]["image"]
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_read_without_server, args=(ds, query, send))
    child.start()
    own_helper, image = receive.recv()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert own_helper
    assert torch.equal(torch.from_numpy(image), expected)


def test_the_server_refuses_a_wrong_key(http_dataset: Any) -> None:
    from multiprocessing.connection import Client

    ds = http_dataset
    ds[_queries(ds)[0]]
    context = multiprocessing.get_context("fork")
    child = context.Process(target=lambda: None)
    child.start()  # the fork starts the server
    child.join(timeout=60)
    address = helper.server_address()
    assert address is not None
    with pytest.raises(multiprocessing.AuthenticationError):
        Client(address, authkey=b"not the key")
    helper.stop_server()


@pytest.mark.slow
def test_forkserver_workers_read_a_pickled_dataset(http_dataset: Any) -> None:
    ds = http_dataset
    queries = _queries(ds)[:4]
    expected = [ds[q]["image"] for q in queries]
    assert pickle.loads(pickle.dumps(ds))._token == ds._token
    loader = _loader(ds, queries, multiprocessing_context="forkserver")
    got = [image for batch in loader for image in batch["image"]]
    for image, sample in zip(got, expected, strict=True):
        assert torch.equal(image, sample)


def test_a_failed_worker_read_names_record_band_and_url(tmp_path: Path) -> None:
    specs = [spec(5), spec(10)]
    paths = write_scenes(tmp_path / "scenes", specs)
    hrefs = {s.scene_id: {b: str(p) for b, p in paths[s.scene_id].items()} for s in specs}
    ds = build(specs, hrefs, tmp_path / "ws").to_torchgeo_dataset(bands=["B04", "B08"])
    queries = list(grid_sampler(ds, size=64, stride=80))  # chips of both records
    ds[queries[0]]  # the main process has read
    clear_tile_cache()
    missing = paths["s20240110T000000"]["B08"]
    missing.unlink()
    loader = _loader(ds, queries, multiprocessing_context="fork")
    with pytest.raises(FileNotFoundError) as info:
        list(loader)
    message = str(info.value)
    assert "record 's20240110T000000'" in message
    assert "band 'B08'" in message
    assert str(missing) in message
