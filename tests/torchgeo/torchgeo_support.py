"""Helpers for the TorchGeo tests: real COG scenes, their collection, TorchGeo's own dataset.

Scenes are named ``s{YYYYmmddTHHMMSS}_{band}.tif`` so that TorchGeo's ``RasterDataset``
(the oracle) parses the same datetime rasteret's records carry, to the second.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torchgeo.datasets import RasterDataset

import rasteret
from rasteret.testing.scenes import SceneSpec, record_table, write_scene

BANDS = ("B04", "B08")
DATE_FORMAT = "%Y%m%dT%H%M%S"


def when(day: int, hour: int = 0) -> dt.datetime:
    """A January 2024 datetime (UTC)."""
    return dt.datetime(2024, 1, day, hour, tzinfo=dt.UTC)


def spec(
    day: int,
    *,
    epsg: int = 32633,
    origin: tuple[float, float] = (500_000.0, 4_600_000.0),
    size: int = 256,
    hour: int = 0,
    **kwargs: Any,
) -> SceneSpec:
    """A scene named after its datetime (tiles of 128 px, two overview levels)."""
    moment = when(day, hour)
    return SceneSpec(
        f"s{moment.strftime(DATE_FORMAT)}",
        epsg=epsg,
        origin=origin,
        size=size,
        tile=128,
        datetime=moment,
        seed=day * 31 + hour,
        overviews=(2, 4),
        **kwargs,
    )


def write_scenes(
    folder: Path, specs: Sequence[SceneSpec], bands: Sequence[str] = BANDS
) -> dict[str, dict[str, Path]]:
    """Write every scene's bands under ``folder``: scene id -> band -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    return {s.scene_id: write_scene(s, folder, bands=bands) for s in specs}


def build(
    specs: Sequence[SceneSpec],
    hrefs: Mapping[str, Mapping[str, str]],
    workspace: Path,
    *,
    name: str = "tg",
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> rasteret.Collection:
    """An enriched collection of ``specs`` whose assets point at ``hrefs``."""
    table = record_table(specs, hrefs)
    for column, values in (extra or {}).items():
        table = table.append_column(column, [list(values)])
    return rasteret.build_from_table(table, name=name, workspace_dir=workspace, enrich_cog=True)


def local_hrefs(paths: Mapping[str, Mapping[str, Path]]) -> dict[str, dict[str, str]]:
    return {sid: {band: str(p) for band, p in bands.items()} for sid, bands in paths.items()}


def oracle(
    paths: str | Path | Sequence[str],
    *,
    crs: Any,
    res: tuple[float, float],
    bands: Sequence[str] = BANDS,
    is_image: bool = True,
) -> RasterDataset:
    """TorchGeo's own ``RasterDataset`` over the scene files (one file per band)."""

    class Scenes(RasterDataset):  # type: ignore[misc]
        filename_glob = f"s*_{bands[0]}.tif"
        filename_regex = r"^s(?P<date>\d{8}T\d{6})_(?P<band>B\d\d)\.tif$"
        date_format = DATE_FORMAT
        separate_files = True
        all_bands = tuple(bands)

    Scenes.is_image = is_image
    return Scenes(paths, crs=crs, res=res, bands=list(bands))


def assert_same_sample(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Same keys, shapes, dtypes and values (NaN equal to NaN)."""
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        mine = ours[key]
        if isinstance(value, torch.Tensor):
            assert mine.shape == value.shape, (key, mine.shape, value.shape)
            assert mine.dtype == value.dtype, (key, mine.dtype, value.dtype)
            assert torch.equal(
                torch.nan_to_num(mine, nan=-1e30), torch.nan_to_num(value, nan=-1e30)
            ), (
                key,
                float((mine.double() - value.double()).abs().nan_to_num().max()),
            )
        else:
            assert mine == value, key
