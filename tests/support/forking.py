"""What tests that fork a multi-threaded process share.

Python >= 3.12 warns (DeprecationWarning) when a process with running threads forks: PyTorch's
``DataLoader`` workers and the read server's tests do exactly that, on purpose.
"""

from __future__ import annotations

import pytest

FORK_OF_THREADS_EXPECTED = pytest.mark.filterwarnings(
    r"ignore:This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to "
    "deadlocks in the child:DeprecationWarning"
)
"""Marker: the fork-of-a-multi-threaded-process warning is expected in this test."""
