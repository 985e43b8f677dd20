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
