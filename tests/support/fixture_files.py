"""Pytest plugin: the GeoTIFF fixture matrix, written once per matrix version.

Files live in ``tests/.fixtures/<version>-<digest>/`` (git-ignored). The digest covers every
spec of :data:`rasteret.testing.fixtures.FIXTURE_MATRIX`, so changing the matrix writes a fresh
folder instead of reusing stale files. Writes are atomic, so concurrent sessions are safe.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rasteret.testing.fixtures import FIXTURE_MATRIX, FIXTURE_VERSION, write_fixture_matrix

FIXTURE_ROOT = Path(__file__).resolve().parent.parent / ".fixtures"


def _matrix_folder() -> Path:
    digest = hashlib.sha256(repr(FIXTURE_MATRIX).encode()).hexdigest()[:12]
    return FIXTURE_ROOT / f"v{FIXTURE_VERSION}-{digest}"


@pytest.fixture(scope="session")
def fixture_paths() -> dict[str, Path]:
    """Fixture name -> path of its GeoTIFF (every file of the matrix exists)."""
    return write_fixture_matrix(_matrix_folder())


@pytest.fixture(scope="session")
def fixture_dir(fixture_paths: dict[str, Path]) -> Path:
    """The folder holding every fixture of the matrix as ``<name>.tif``."""
    return _matrix_folder()
