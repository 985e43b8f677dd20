#!/usr/bin/env bash
# Create .venv and install rasteret with every extra the tests use (test, torchgeo, dask, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# TorchGeo needs torch and torchvision. Pin the CPU-capable builds this workplace keeps on
# disk for Python 3.11, so pip never reaches for a multi-GB CUDA build; override with
# TORCH_SPEC="torch==X torchvision==Y" elsewhere.
read -r -a torch_spec <<< "${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
.venv/bin/python -m pip install --quiet "${torch_spec[@]}"
.venv/bin/python -m pip install --quiet -e ".[test,torchgeo]" "${torch_spec[@]}"

# TorchGeo 0.9 and newer need Python 3.12+, and change the samples (tensors for bounds and
# transform, no crs). Where such a Python is on the machine, .venv-tg holds rasteret with the
# newest TorchGeo, and the test suite runs rasteret's TorchGeo tests in it too
# (tests/torchgeo/test_torchgeo_latest.py). PYTHON_LATEST names the interpreter to use;
# RASTERET_TORCHGEO_LATEST=0 leaves .venv-tg out (the quickstart does: it is ~7 GB).
if [ "${RASTERET_TORCHGEO_LATEST:-1}" = "0" ]; then
    echo "setup: RASTERET_TORCHGEO_LATEST=0: .venv-tg (the newest TorchGeo) left out"
    exit 0
fi
latest=""
for candidate in "${PYTHON_LATEST:-}" python3.13 python3.12 \
    "$HOME"/.pyenv/versions/3.13*/bin/python "$HOME"/.pyenv/versions/3.12*/bin/python; do
    if [ -n "$candidate" ] && command -v "$candidate" > /dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2> /dev/null; then
        latest="$candidate"
        break
    fi
done
if [ -n "$latest" ]; then
    if [ ! -x .venv-tg/bin/python ]; then
        "$latest" -m venv .venv-tg
    fi
    .venv-tg/bin/python -m pip install --quiet --upgrade pip
    .venv-tg/bin/python -m pip install --quiet --upgrade -e ".[test,torchgeo]"
else
    echo "setup: no Python 3.12+ on this machine: TorchGeo >= 0.9 will not be tested"
fi
