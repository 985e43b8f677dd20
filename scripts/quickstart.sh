#!/usr/bin/env bash
# Set up .venv (first run only installs), then run the quickstart on generated sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
RASTERET_TORCHGEO_LATEST=0 bash scripts/setup.sh  # .venv only: bash scripts/setup.sh adds .venv-tg
.venv/bin/python examples/quickstart.py
