"""Query -> pixels: plan the whole read, fetch and decode tiles once, assemble chips.

Import direction: ``options <- grid <- bands <- plan <- result``, ``(mask, warp) <- assemble
<- execute (+ cache) <- engine``. Nothing here imports :mod:`rasteret.collection` or
:mod:`rasteret.outputs`.

>>> ReadOptions(resampling="average").resampling_for("uint16").name
'average'
"""

from rasteret.read.engine import read_chips, read_chips_async
from rasteret.read.options import DEFAULT_CACHE_MB, ReadOptions
from rasteret.read.plan import ReadPlan, RecordRef, SkippedRecord, plan_read
from rasteret.read.result import Chip, ChipSet, FailedRead

__all__ = [
    "DEFAULT_CACHE_MB",
    "Chip",
    "ChipSet",
    "FailedRead",
    "ReadOptions",
    "ReadPlan",
    "RecordRef",
    "SkippedRecord",
    "plan_read",
    "read_chips",
    "read_chips_async",
]
