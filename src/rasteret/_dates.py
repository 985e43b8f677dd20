"""Date bounds as users write them, read one way by every ``date_range=`` of rasteret.

A bound is an ISO 8601 string, ``datetime.date``/``datetime`` (``pandas.Timestamp`` too),
``numpy.datetime64`` (any unit) or an integer year; ``None`` or ``".."`` leaves that end open,
and naive values are UTC. A bound that names a calendar period (``"2024"``, ``"2024-01"``,
``"2024-01-15"``, a ``date``, a ``datetime64`` in Y/M/W/D units) starts at the period's first
instant and, as the end, includes the whole period, as pandas partial-string indexing reads
it; a bound with a time of day is that instant. :meth:`rasteret.Collection.subset` and the
STAC searches of :func:`rasteret.build_from_stac` both use :func:`date_bounds`.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import numpy as np

from rasteret.errors import SchemaError

__all__ = ["DateLike", "date_bounds"]

DateLike = str | _dt.date | _dt.datetime | np.datetime64 | int
"""A ``date_range`` bound: ISO 8601 string, date, datetime (``pandas.Timestamp`` too),
``numpy.datetime64`` or integer year."""

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_OPEN_BOUNDS = frozenset({"", ".."})
_PERIODS = {unit: np.timedelta64(1, unit) for unit in ("Y", "M", "W", "D")}
"""numpy datetime units that name a calendar period (a whole end bound is included), each
with one period of it (NumPy 2.5 deprecates adding a bare ``1``)."""
_ONE_US = np.timedelta64(1, "us")
_YEAR = re.compile(r"^\d{4}$")
_YEAR_MONTH = re.compile(r"^\d{4}-\d{2}$")
_SUB_MICROSECONDS = re.compile(r"[.,]\d{6}(\d+)")


def date_bounds(date_range: Any) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    """``(start, end)`` of a ``date_range=`` as inclusive UTC datetimes (``None``: open).

    >>> start, end = date_bounds(("2024-01", "2024-02"))
    >>> str(start), str(end)
    ('2024-01-01 00:00:00+00:00', '2024-02-29 23:59:59.999999+00:00')
    >>> date_bounds((None, "2024"))[1].isoformat()
    '2024-12-31T23:59:59.999999+00:00'

    Raises:
        SchemaError: not a pair, a bound that is not a date, or a start after the end.
    """
    if isinstance(date_range, str | bytes) or not hasattr(date_range, "__len__"):
        raise SchemaError(
            f"expected date_range=(start, end), e.g. ('2024-01-01', '2024-01-31'), "
            f"got {date_range!r}"
        )
    if len(date_range) != 2:
        raise SchemaError(
            f"expected date_range=(start, end) with 2 values, got {len(date_range)}: {date_range!r}"
        )
    start, end = date_range
    low, high = _bound(start, end=False), _bound(end, end=True)
    if low is not None and high is not None and low > high:
        raise SchemaError(
            f"expected date_range=(start, end) with start <= end, got {date_range!r} "
            f"({low.isoformat()} after {high.isoformat()})"
        )
    return low, high


def _bound(value: DateLike | None, *, end: bool) -> _dt.datetime | None:
    """One bound of a date range as a UTC datetime (``None``: open).

    A calendar period (a year, a month, a day) starts at its first instant and, as an end
    bound, includes its whole period; anything with a time of day is that instant (naive
    values are UTC). Instants finer than a microsecond are rounded inward, so the bound is
    exact for the microsecond ``datetime`` column.
    """
    if value is None or (isinstance(value, str) and value.strip() in _OPEN_BOUNDS):
        return None
    instant = _as_datetime64(value)
    if instant is None:
        raise SchemaError(
            f"expected the date_range {'end' if end else 'start'} as an ISO 8601 string "
            "('2024', '2024-01', '2024-01-15', '2024-01-15T10:30:00Z'), a date, datetime, "
            "pandas Timestamp, numpy datetime64, integer year or None, got "
            f"{value!r} ({type(value).__name__})"
        )
    unit = np.datetime_data(instant.dtype)[0]
    if unit in _PERIODS:
        if end:
            instant = (instant + _PERIODS[unit]).astype("datetime64[us]") - _ONE_US
    else:
        floor = instant.astype("datetime64[us]")  # numpy rounds towards -inf
        instant = floor + _ONE_US if not end and floor < instant else floor
    micros = int(instant.astype("datetime64[us]").astype(np.int64))
    return _EPOCH + _dt.timedelta(microseconds=micros)


def _as_datetime64(value: Any) -> np.datetime64 | None:
    """A date bound as a naive-UTC ``numpy.datetime64`` whose unit is its precision."""
    parsed: np.datetime64 | None = None
    if isinstance(value, np.datetime64):
        parsed = value
    elif isinstance(value, _dt.datetime):  # pandas.Timestamp too (with its nanoseconds)
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC).replace(tzinfo=None)
        to_datetime64 = getattr(value, "to_datetime64", None)
        parsed = to_datetime64() if to_datetime64 is not None else np.datetime64(value, "us")
    elif isinstance(value, _dt.date):
        parsed = np.datetime64(value, "D")
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        parsed = np.datetime64(f"{int(value):04d}", "Y") if 1 <= value <= 9999 else None
    elif isinstance(value, str):
        parsed = _parse_iso(value.strip())
    return None if parsed is None or np.isnat(parsed) else parsed


def _parse_iso(text: str) -> np.datetime64 | None:
    """``'2024'`` -> a year, ``'2024-01'`` a month, ``'2024-01-15'`` a day, else an instant."""
    try:
        if _YEAR.match(text):
            return np.datetime64(text, "Y")
        if _YEAR_MONTH.match(text):
            return np.datetime64(_dt.date.fromisoformat(f"{text}-01"), "M")
        if len(text) <= 10:  # 2024-01-15, 20240115, 2024-W03-1
            return np.datetime64(_dt.date.fromisoformat(text), "D")
        parsed = _dt.datetime.fromisoformat(text)  # keeps 6 fractional digits
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(_dt.UTC).replace(tzinfo=None)
    instant = np.datetime64(parsed, "us")
    extra = _SUB_MICROSECONDS.search(text)
    if extra and extra.group(1).strip("0"):  # below a microsecond: keep nanoseconds
        nanos = int(extra.group(1)[:3].ljust(3, "0"))
        return instant.astype("datetime64[ns]") + np.timedelta64(max(nanos, 1), "ns")
    return instant
