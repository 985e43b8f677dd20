"""The TorchGeo dataset's own surface: index, sample keys and dtypes, time series, labels,
transforms, chip size, resampling of mixed-resolution bands, composition with TorchGeo
datasets, pickling, and the errors it raises."""

from __future__ import annotations

import dataclasses
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torchgeo.datasets")  # the ``torchgeo`` extra

import numpy as np
import pandas as pd
import rasterio
import torch
from torchgeo.datasets import GeoDataset, RasterDataset
from torchgeo_support import assert_same_sample, build, local_hrefs, oracle, spec, write_scenes

import rasteret
import rasteret.outputs
from rasteret.errors import (
    BandResolutionError,
    MissingDependencyError,
    ObjectNotFoundError,
    SchemaError,
)
from rasteret.outputs.torchgeo import TENSOR_SAMPLES
from rasteret.testing.scenes import write_scene
from support.samplers import grid_sampler, random_sampler

DAY5 = pd.Timestamp("2024-01-05")


def _day(day: int) -> slice:
    """The time slice of records taken at 00:00:00 on ``day`` (their one-second interval)."""
    start = pd.Timestamp(2024, 1, day)
    return slice(start, start + pd.Timedelta(seconds=1) - pd.Timedelta(microseconds=1))


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rasteret.Collection]:
    """Three dates over one footprint, plus a neighbour taken at the first date."""
    root = tmp_path_factory.mktemp("tg_series")
    neighbour = dataclasses.replace(
        spec(5), scene_id="s20240105T000000b", origin=(502_000.0, 4_600_000.0), seed=99
    )
    specs = [spec(5), neighbour, spec(10), spec(12)]
    paths = write_scenes(root / "scenes", specs)
    extra = {"crop": [1, 2, 3, 4], "name": ["a", "b", "c", "d"]}
    return root / "scenes", build(specs, local_hrefs(paths), root / "ws", extra=extra)


def _query(x0: float, y1: float, size: int = 40, res: float = 10.0, t: slice | None = None) -> Any:
    return slice(x0, x0 + size * res, res), slice(y1 - size * res, y1, res), t or slice(None)


def test_index_and_geodataset_surface(series: tuple[Path, rasteret.Collection]) -> None:
    _, collection = series
    ds = collection.to_torchgeo_dataset(bands=["B04", "B08"])
    assert isinstance(ds, GeoDataset)
    assert len(ds) == 4
    assert isinstance(ds.index.index, pd.IntervalIndex)
    assert ds.index.index.name == "datetime"
    assert ds.index.index.closed == "both"
    assert ds.index["id"].tolist() == [
        "s20240105T000000",
        "s20240105T000000b",
        "s20240110T000000",
        "s20240112T000000",
    ]
    assert ds.index.index[0].left == DAY5
    assert ds.crs.to_epsg() == 32633
    assert ds.res == (10.0, 10.0)
    x, y, _t = ds.bounds
    assert (x.start, x.stop, y.start, y.stop) == (500_000.0, 504_560.0, 4_597_440.0, 4_600_000.0)
    assert "RasteretGeoDataset" in str(ds)


def test_sample_keys_shapes_and_dtypes(series: tuple[Path, rasteret.Collection]) -> None:
    _, collection = series
    query = _query(500_100.0, 4_599_900.0, t=_day(10))
    dataset = collection.to_torchgeo_dataset(bands=["B04", "B08"])
    image = dataset[query]
    _assert_meta(image, "image", dataset, query)
    assert image["image"].shape == (2, 40, 40)
    assert image["image"].dtype == torch.float32
    native = collection.to_torchgeo_dataset(bands=["B04", "B08"], dtype="native")[query]
    assert native["image"].dtype == torch.int32  # uint16, converted as TorchGeo converts it
    assert torch.equal(native["image"].float(), image["image"])
    masks = collection.to_torchgeo_dataset(bands=["B08"], is_image=False)
    mask = masks[query]
    _assert_meta(mask, "mask", masks, query)
    assert mask["mask"].shape == (40, 40)
    assert mask["mask"].dtype == torch.int64
    assert torch.equal(mask["mask"], image["image"][1].long())


def _assert_meta(sample: dict[str, Any], key: str, dataset: Any, query: Any) -> None:
    """The sample's keys and metadata, as TorchGeo's ``RasterDataset`` gives them: from 0.9
    on, ``bounds`` (the whole slice) and ``transform`` (of the output pixels) as tensors;
    before, ``crs`` and the query as ``bounds``."""
    if TENSOR_SAMPLES:
        assert set(sample) == {key, "bounds", "transform"}
        x, y, t = query
        expected = [x.start, x.stop, x.step, y.start, y.stop, y.step]
        expected += [t.start.timestamp(), t.stop.timestamp(), 1]
        assert torch.equal(sample["bounds"], torch.tensor(expected))
        origin = rasterio.transform.from_origin(x.start, y.stop, x.step, y.step)
        assert torch.equal(sample["transform"], torch.tensor(origin))
    else:
        assert set(sample) == {key, "crs", "bounds"}
        assert sample["bounds"] == query
        assert sample["crs"] == dataset.crs


def test_time_series_stacks_one_frame_per_datetime(
    series: tuple[Path, rasteret.Collection],
) -> None:
    _, collection = series
    flat = collection.to_torchgeo_dataset(bands=["B04", "B08"])
    stacked = collection.to_torchgeo_dataset(
        bands=["B04", "B08"], time_series=True, label_field="crop"
    )
    assert len(stacked) == 2  # one row per footprint, spanning its records' times
    spans = sorted((i.left, i.right) for i in stacked.index.index)
    assert spans[1][0] == DAY5
    assert spans[1][1] > pd.Timestamp("2024-01-12")
    query = _query(501_800.0, 4_599_800.0, size=48)  # over the two day-5 records
    sample = stacked[query]
    assert sample["image"].shape == (3, 2, 48, 48)
    assert sample["label"] == torch.tensor(1)
    for frame, day in enumerate((5, 10, 12)):
        expected = flat[(*query[:2], _day(day))]["image"]
        assert torch.equal(sample["image"][frame], expected)
    sampler = grid_sampler(stacked, size=64, stride=128)
    shapes = {tuple(stacked[q]["image"].shape[1:]) for q in sampler}
    assert shapes == {(2, 64, 64)}
    masks = collection.to_torchgeo_dataset(bands=["B04"], time_series=True, is_image=False)
    assert masks[query]["mask"].shape == (3, 48, 48)


def test_label_field_transforms_and_chip_size(series: tuple[Path, rasteret.Collection]) -> None:
    _, collection = series
    query = _query(500_100.0, 4_599_900.0, size=64, t=_day(12))
    plain = collection.to_torchgeo_dataset(bands=["B04", "B08"])[query]
    labelled = collection.to_torchgeo_dataset(bands=["B04", "B08"], label_field="crop")[query]
    assert labelled["label"].dtype == torch.int64
    assert int(labelled["label"]) == 4
    named = collection.to_torchgeo_dataset(bands=["B04"], label_field="name")[query]
    assert named["label"] == "d"

    def double(sample: dict[str, Any]) -> dict[str, Any]:
        return {**sample, "image": sample["image"] * 2}

    transformed = collection.to_torchgeo_dataset(bands=["B04", "B08"], transforms=double)[query]
    assert torch.equal(transformed["image"], plain["image"] * 2)
    chipped = collection.to_torchgeo_dataset(bands=["B04", "B08"], chip_size=32)[query]
    coarse = collection.to_torchgeo_dataset(bands=["B04", "B08"], res=20.0)
    expected = coarse[
        (
            slice(query[0].start, query[0].stop, 20.0),
            slice(query[1].start, query[1].stop, 20.0),
            query[2],
        )
    ]
    assert torch.equal(chipped["image"], expected["image"])
    if TENSOR_SAMPLES:  # the transform of the chip's own pixels, 20 m here
        assert torch.equal(chipped["transform"], expected["transform"])
        assert float(chipped["transform"][0]) == 20.0


def test_bands_of_different_resolutions_need_allow_resample(tmp_path: Path) -> None:
    specs = [spec(5), spec(10)]
    paths = write_scenes(tmp_path / "scenes", specs, bands=("B04",))
    for s in specs:  # a 20 m band of the same extent
        coarse = dataclasses.replace(s, resolution=20.0, size=128)
        paths[s.scene_id].update(write_scene(coarse, tmp_path / "scenes", bands=("B11",)))
    collection = build(specs, local_hrefs(paths), tmp_path / "ws")
    with pytest.raises(SchemaError, match=r"B04: 10x10, B11: 20x20; pass allow_resample=True"):
        collection.to_torchgeo_dataset(bands=["B04", "B11"])
    ours = collection.to_torchgeo_dataset(bands=["B04", "B11"], allow_resample=True)
    assert ours.res == (10.0, 10.0)
    theirs = oracle(str(tmp_path / "scenes"), crs=ours.crs, res=ours.res, bands=("B04", "B11"))
    for query in random_sampler(theirs, size=40, length=6, seed=2):
        assert_same_sample(ours[query], theirs[query])


def test_composes_with_torchgeo_datasets(
    series: tuple[Path, rasteret.Collection], tmp_path: Path
) -> None:
    """``&`` with a TorchGeo label raster and ``|`` of two rasteret datasets."""
    _, collection = series
    labels = np.arange(200 * 200, dtype=np.uint8).reshape(200, 200) % 7
    with rasterio.open(
        tmp_path / "labels.tif", "w", driver="GTiff", width=200, height=200, count=1, dtype="uint8",
        crs="EPSG:32633", transform=rasterio.Affine(10, 0, 500_500, 0, -10, 4_599_500),
    ) as dst:  # fmt: skip
        dst.write(labels, 1)

    class Labels(RasterDataset):  # type: ignore[misc]
        filename_glob = "labels.tif"
        is_image = False

    images = collection.to_torchgeo_dataset(bands=["B04", "B08"])
    both = images & Labels(str(tmp_path), res=(10.0, 10.0))
    query = next(iter(random_sampler(both, size=32, length=1, seed=0)))
    sample = both[query]
    assert sample["image"].shape == (2, 32, 32)
    assert sample["mask"].shape == (32, 32)
    assert torch.equal(sample["image"], images[query]["image"])
    early = collection.subset(date_range=("2024-01-01", "2024-01-07")).to_torchgeo_dataset(
        bands=["B04"]
    )
    late = collection.subset(date_range=("2024-01-08", "2024-01-31")).to_torchgeo_dataset(
        bands=["B04"]
    )
    union = early | late
    assert len(union) == 4
    for q in random_sampler(union, size=16, length=4, seed=1):
        assert union[q]["image"].shape == (1, 16, 16)


def test_pickles_as_plain_data(series: tuple[Path, rasteret.Collection]) -> None:
    _, collection = series
    ds = collection.to_torchgeo_dataset(bands=["B04", "B08"], label_field="crop")
    query = _query(500_300.0, 4_599_700.0, t=_day(5))
    before = ds[query]  # the event loop, stores and pools are running now
    clone = pickle.loads(pickle.dumps(ds))
    assert_same_sample(clone[query], before)


def test_a_failed_read_names_record_band_and_url(
    series: tuple[Path, rasteret.Collection], tmp_path: Path
) -> None:
    _folder, _ = series
    specs = [spec(5), spec(10)]
    paths = write_scenes(tmp_path / "scenes", specs)
    ds = build(specs, local_hrefs(paths), tmp_path / "ws").to_torchgeo_dataset(bands=["B04", "B08"])
    missing = paths["s20240110T000000"]["B08"]
    missing.unlink()
    with pytest.raises(ObjectNotFoundError) as info:
        ds[_query(500_100.0, 4_599_900.0, t=_day(10))]
    message = str(info.value)
    assert "record 's20240110T000000'" in message
    assert "band 'B08'" in message
    assert str(missing) in message
    assert "B04" not in message.split(":")[0]  # only the failing pair is named
    with pytest.raises(IndexError, match="not found in index"):
        ds[_query(400_000.0, 4_599_900.0)]


def test_bad_arguments_raise(series: tuple[Path, rasteret.Collection]) -> None:
    _, collection = series
    with pytest.raises(BandResolutionError, match="B99"):
        collection.to_torchgeo_dataset(bands=["B99"])
    with pytest.raises(SchemaError, match="label column 'nope'"):
        collection.to_torchgeo_dataset(bands=["B04"], label_field="nope")
    with pytest.raises(SchemaError, match="res="):
        collection.to_torchgeo_dataset(bands=["B04"], res=-1)
    with pytest.raises(SchemaError, match="chip_size="):
        collection.to_torchgeo_dataset(bands=["B04"], chip_size=0)
    with pytest.raises(SchemaError, match="resampling="):
        collection.to_torchgeo_dataset(bands=["B04"], resampling="sharpest")
    with pytest.raises(SchemaError, match="at least one record"):
        collection.to_torchgeo_dataset(bands=["B04"], date_range=("2023-01-01", "2023-01-02"))
    with pytest.raises(TypeError, match="unexpected keyword"):
        collection.to_torchgeo_dataset(bands=["B04"], colour="red")


def test_missing_torchgeo_names_the_extra(
    series: tuple[Path, rasteret.Collection], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, collection = series
    monkeypatch.setitem(sys.modules, "torchgeo.datasets", None)
    monkeypatch.delitem(sys.modules, "rasteret.outputs.torchgeo")
    monkeypatch.delattr(rasteret.outputs, "torchgeo")
    with pytest.raises(MissingDependencyError, match=r"rasteret\[torchgeo\]"):
        collection.to_torchgeo_dataset(bands=["B04"])


def test_a_batch_is_read_in_one_wave(tmp_path: Path, http_server: Any) -> None:
    """``__getitems__`` (what ``DataLoader`` calls per batch) returns the samples of
    ``__getitem__`` while fetching each tile the batch needs once."""
    specs = [spec(5), spec(10)]
    write_scenes(tmp_path / "scenes", specs)
    server = http_server(tmp_path / "scenes")
    hrefs = {
        s.scene_id: {b: server.url_for(f"{s.scene_id}_{b}.tif") for b in ("B04", "B08")}
        for s in specs
    }
    ds = build(specs, hrefs, tmp_path / "ws").to_torchgeo_dataset(bands=["B04", "B08"], cache_mb=0)
    queries = [
        _query(500_000.0 + 30 * i, 4_600_000.0 - 20 * i, size=64, t=_day(10)) for i in range(4)
    ]
    server.clear_log()
    single = [ds[q] for q in queries]
    one_by_one = server.count()
    server.clear_log()
    batch = ds.__getitems__(queries)
    together = server.count()
    for ours, expected in zip(batch, single, strict=True):
        assert_same_sample(ours, expected)
    assert together < one_by_one
    assert together == one_by_one // len(queries)  # the same tiles, each fetched once
