"""The one gate for optional dependencies.

>>> np = import_optional("numpy", extra="core")
>>> np.__name__
'numpy'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rasteret.errors import MissingDependencyError

__all__ = ["import_optional"]


def import_optional(module: str, *, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is needed for this feature but is not installed; "
            f"install it with: pip install 'rasteret[{extra}]'"
        ) from exc
