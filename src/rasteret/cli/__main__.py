"""``python -m rasteret.cli``: the same as the ``rasteret`` console script."""

import sys

from rasteret.cli import main

sys.exit(main())
