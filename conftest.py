"""Collection of the doctests in ``src/rasteret``: leave out modules whose extra is missing.

The test extra installs everything but the ``torchgeo`` extra (torch is large); without it the
TorchGeo dataset module cannot be imported, so its docstring examples are not collected
(the tests in ``tests/torchgeo`` skip themselves).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_HERE = Path(__file__).parent
collect_ignore: list[str] = []
if importlib.util.find_spec("torch") is None:  # not "torchgeo": tests/torchgeo would match
    collect_ignore += [
        str(_HERE / "src/rasteret/outputs/torchgeo.py"),
        str(_HERE / "tests/torchgeo/torchgeo_support.py"),
    ]
