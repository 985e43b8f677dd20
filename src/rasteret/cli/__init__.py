"""The ``rasteret`` command line: a thin layer over the public API.

Commands::

    rasteret datasets list | info ID | register-local ID SOURCE --band B=ASSET[:INDEX] ...
    rasteret build ID --name NAME [--bbox ...] [--date-range START/END] [--bands B04,B08]
    rasteret build-table PATH --name NAME [--href-column URL --band-index B04=0 ...]
    rasteret collections list | info NAME
    rasteret sample-points NAME --points FILE --bands B04 --output OUT.parquet
    rasteret read NAME --bands B04 --bbox ... --output OUT.tif|OUT.nc|OUT.parquet

Exit codes: 0 success, 1 a rasteret error (message on stderr, no traceback), 2 a usage
error, 130 interrupted. Long work shows progress bars on a terminal (``--progress`` forces
them, ``--no-progress`` hides them).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

from rasteret.cli.parser import build_parser
from rasteret.errors import RasteretError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    >>> main(["datasets", "info", "earthsearch/naip", "--json"])  # doctest: +ELLIPSIS
    {...
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Any = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("rasteret: interrupted", file=sys.stderr)
        return 130
    except (RasteretError, OSError, ValueError) as exc:
        kind = "" if isinstance(exc, RasteretError) else f"{type(exc).__name__}: "
        print(f"rasteret: error: {kind}{exc}", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = previous


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    print(f"rasteret: warning: {message}", file=sys.stderr)
