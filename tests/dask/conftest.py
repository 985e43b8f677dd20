"""Fixtures shared by the Dask tests: scene corpora, their collections and a cluster per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_support import MIXED_SPECS, collection, local_cluster, write_scenes

from rasteret.collection import Collection


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    return write_scenes(tmp_path_factory.mktemp("dask-scenes"))


@pytest.fixture(scope="module")
def col(files: dict[str, dict[str, Path]]) -> Collection:
    return collection(files)


@pytest.fixture(scope="module")
def mixed_col(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """Records in UTM zones 32N and 33N over the same ground (see ``MIXED_SPECS``)."""
    files = write_scenes(tmp_path_factory.mktemp("dask-mixed"), MIXED_SPECS)
    return collection(files, specs=MIXED_SPECS)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with local_cluster() as c:
        yield c
