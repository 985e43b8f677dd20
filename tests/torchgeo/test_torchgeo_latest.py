"""rasteret's TorchGeo tests once more under the newest TorchGeo.

TorchGeo 0.9 and newer need Python 3.12+ and change what a sample holds (``bounds`` and
``transform`` tensors, no ``crs``), so the main environment (Python 3.11) cannot hold them.
Where the machine has a Python 3.12+, ``scripts/setup.sh`` makes ``.venv-tg`` with it and
rasteret's ``[test,torchgeo]`` extras (the newest TorchGeo); this test runs the TorchGeo tests
there, parity with TorchGeo's own ``RasterDataset`` included, and fails with their report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LATEST = ROOT / ".venv-tg" / "bin" / "python"
TESTS = [  # every test that builds a TorchGeo dataset
    "tests/torchgeo",
    "tests/outputs/test_torchgeo_waves.py",
    "tests/test_data_source_reads.py",
    "tests/test_input_forms.py",
]


@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    not LATEST.exists(),
    reason="no .venv-tg: scripts/setup.sh found no Python 3.12+ for TorchGeo >= 0.9, or ran "
    "with RASTERET_TORCHGEO_LATEST=0 (as the quickstart does); run bash scripts/setup.sh",
)
@pytest.mark.skipif(
    Path(sys.prefix).resolve() == LATEST.parent.parent.resolve(),
    reason="already running in .venv-tg",
)
def test_the_torchgeo_tests_pass_under_the_newest_torchgeo() -> None:
    version = subprocess.run(
        [str(LATEST), "-c", "import torchgeo; print(torchgeo.__version__)"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout.strip()  # fmt: skip
    major, minor = (int(p) for p in version.split(".")[:2])
    assert (major, minor) >= (0, 9), f".venv-tg holds TorchGeo {version}, expected 0.9 or newer"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [str(LATEST), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS,
         "--deselect", "tests/torchgeo/test_torchgeo_latest.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1700,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, (
        f"TorchGeo {version} in .venv-tg: {summary}\n{result.stdout[-8000:]}{result.stderr[-2000:]}"
    )
    assert " passed" in summary, summary
