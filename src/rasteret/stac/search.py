"""Finding STAC items: an API search (every page, retried) or a walk of a static catalog.

Both return plain item dicts. :class:`StacSearch` holds what was asked, so an empty result
or a failure names the query. API searches go through pystac-client with a urllib3 retry
policy: connection errors and HTTP 429/5xx answers are retried with exponential backoff,
honouring ``Retry-After``. A server without the STAC ``query`` extension gets the query
applied on the client (with a warning), as does a static catalog.

>>> search = StacSearch("https://stac.example/v1", collections=("sentinel-2-l2a",),
...                     bbox=(77.5, 12.9, 77.7, 13.1), date_range=("2024-01-01", "2024-01-31"))
>>> search.describe()
"collections ['sentinel-2-l2a'], bbox (77.5, 12.9, 77.7, 13.1), dates 2024-01-01..2024-01-31 at https://stac.example/v1"
>>> matches_query({"eo:cloud_cover": 12.0}, {"eo:cloud_cover": {"lt": 20}})
True
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import shapely
import shapely.geometry

from rasteret._dates import DateLike, date_bounds
from rasteret._optional import import_optional
from rasteret._warn import warn
from rasteret.errors import (
    AccessDeniedError,
    FetchError,
    ObjectNotFoundError,
    SchemaError,
    UnsupportedFormatError,
)
from rasteret.io.urls import redact_url
from rasteret.stac.records import parse_datetime

__all__ = [
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TIMEOUT",
    "RETRY_STATUSES",
    "StacSearch",
    "collections_tuple",
    "date_window",
    "matches_query",
    "retry_policy",
    "search_api",
    "walk_static_catalog",
]

DEFAULT_PAGE_SIZE = 100
"""Items asked for per page (the server may return fewer)."""
DEFAULT_MAX_RETRIES = 5
"""Retries of one request (connection errors, 429 and 5xx answers)."""
DEFAULT_BACKOFF_FACTOR = 0.5
"""Exponential backoff between retries: 0.5 s, 1 s, 2 s, ... (``Retry-After`` wins)."""
DEFAULT_TIMEOUT = 60.0
"""Seconds to wait for one API response."""
RETRY_STATUSES = (429, 500, 502, 503, 504)


_QUERY_OPS = ("eq", "neq", "lt", "lte", "gt", "gte", "in", "startsWith", "endsWith", "contains")


@dataclass(frozen=True, slots=True)
class StacSearch:
    """What to look for, and where; ``describe()`` names it in messages."""

    source: str
    """STAC API root URL, or the href of a static catalog/collection/item collection."""
    collections: tuple[str, ...] = ()
    """STAC collection ids (empty: every collection)."""
    bbox: tuple[float, float, float, float] | None = None
    """CRS84 (xmin, ymin, xmax, ymax)."""
    date_range: tuple[DateLike, DateLike] | None = None
    """Inclusive (start, end); a date-only end means the whole day; ``None`` is open."""
    query: Mapping[str, Any] | None = None
    """STAC query extension: ``{"eo:cloud_cover": {"lt": 20}}``."""
    max_items: int | None = None
    """Stop after this many items."""

    def describe(self) -> str:
        parts = []
        if self.collections:
            parts.append(f"collections {list(self.collections)}")
        if self.bbox is not None:
            parts.append(f"bbox {tuple(self.bbox)}")
        if self.date_range is not None:
            start, end = (".." if d is None else str(d) for d in self.date_range)
            parts.append(f"dates {start}..{end}")  # as given: this names the search
        if self.query:
            parts.append(f"query {dict(self.query)}")
        where = f"at {redact_url(self.source)}"
        return f"{', '.join(parts)} {where}" if parts else f"every item {where}"


def retry_policy(
    max_retries: int = DEFAULT_MAX_RETRIES, backoff_factor: float = DEFAULT_BACKOFF_FACTOR
) -> Any:
    """A urllib3 ``Retry`` for GET and POST on connection errors, 429 and 5xx."""
    from urllib3.util.retry import Retry

    return Retry(
        total=max_retries,
        backoff_factor=backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # POST searches are safe to repeat
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer reaches pystac-client, which reports it
    )


def search_api(
    search: StacSearch,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    max_retries: int = DEFAULT_MAX_RETRIES,
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Every item of a STAC API search, all pages followed.

    Raises:
        FetchError: the API could not be reached or kept failing after retries
            (:class:`AccessDeniedError` for 401/403, :class:`ObjectNotFoundError` for 404).
        UnsupportedFormatError: the server has no item search (a static catalog?).
    """
    client_mod = import_optional("pystac_client", extra="stac")
    stac_io = client_mod.stac_api_io.StacApiIO(
        headers=dict(headers or {}),
        timeout=timeout,
        max_retries=retry_policy(max_retries, backoff_factor),
    )
    with _api_errors(search):
        client = client_mod.Client.open(search.source, stac_io=stac_io, timeout=timeout)
        server_side = client.conforms_to(client_mod.ConformanceClasses.QUERY)
        if search.query and not server_side:
            warn(
                f"the STAC API at {redact_url(search.source)} does not support the query "
                f"extension; applying query {dict(search.query)} to the returned items",
                _warning_class(),
                stacklevel=3,
            )
        item_search = client.search(
            collections=list(search.collections) or None,
            bbox=list(search.bbox) if search.bbox is not None else None,
            datetime=_api_datetime(search.date_range),
            query=dict(search.query) if search.query and server_side else None,
            limit=page_size,
            max_items=None if search.query and not server_side else search.max_items,
        )
        items = _collect(item_search.pages_as_dicts(), search, server_side, progress)
    return items


def _collect(
    pages: Iterator[dict[str, Any]], search: StacSearch, server_side: bool, progress: bool
) -> list[dict[str, Any]]:
    bar = None
    items: list[dict[str, Any]] = []
    try:
        for page in pages:
            features = page.get("features") or []
            if bar is None and progress:
                from tqdm.auto import tqdm

                total = page.get("numberMatched") or (page.get("context") or {}).get("matched")
                bar = tqdm(total=total, desc="STAC items", unit="item")
            if bar is not None:
                bar.update(len(features))
            for item in features:
                properties = item.get("properties") or {}
                if search.query and not server_side and not matches_query(properties, search.query):
                    continue
                items.append(item)
                if search.max_items is not None and len(items) >= search.max_items:
                    return items
    finally:
        if bar is not None:
            bar.close()
    return items


@contextlib.contextmanager
def _api_errors(search: StacSearch) -> Iterator[None]:
    """Turn pystac-client's errors into rasteret's, naming the search."""
    from pystac_client.exceptions import APIError
    from pystac_client.warnings import DoesNotConformTo

    try:
        yield
    except (DoesNotConformTo, NotImplementedError) as exc:
        raise UnsupportedFormatError(
            f"expected a STAC API with item search for {search.describe()}, got a server "
            f"without it ({exc}); for a static catalog pass static_catalog=True"
        ) from exc
    except APIError as exc:
        status = getattr(exc, "status_code", None)
        detail = str(exc).strip()[:300] or type(exc).__name__
        if status is None:
            raise FetchError(
                f"STAC API could not be reached for {search.describe()}: {detail}"
            ) from exc
        message = f"STAC API request failed for {search.describe()}: HTTP {status}: {detail}"
        if status in (401, 403):
            raise AccessDeniedError(message) from exc
        if status == 404:
            raise ObjectNotFoundError(message) from exc
        raise FetchError(message) from exc


def walk_static_catalog(search: StacSearch, *, progress: bool = False) -> list[dict[str, Any]]:
    """Every item of a static catalog (or collection, or item collection) matching ``search``.

    Items are filtered on the client: collection ids, bbox (footprint intersects), dates
    (the item's datetime or start/end interval overlaps) and ``query``. Asset hrefs are made
    absolute.

    Raises:
        ObjectNotFoundError: no catalog at ``search.source``.
        SchemaError: the document is not a STAC catalog, collection or item collection.
    """
    pystac = import_optional("pystac", extra="stac")
    try:
        document = pystac.StacIO.default().read_json(search.source)
    except FileNotFoundError as exc:
        raise ObjectNotFoundError(f"no static STAC catalog at {search.source}") from exc
    except Exception as exc:  # pystac wraps HTTP and JSON errors in many types
        raise FetchError(f"could not read the static STAC catalog {search.source}: {exc}") from exc
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "FeatureCollection":
        collection = pystac.ItemCollection.from_dict(document, preserve_dict=False)
        candidates: Iterator[Any] = iter(collection.items)
        base: str | None = (
            search.source if "://" in search.source else os.path.abspath(search.source)
        )
    elif kind in ("Catalog", "Collection"):
        root = pystac.read_file(search.source)
        candidates = root.get_items(recursive=True)
        base = None
    else:
        raise SchemaError(
            f"expected a STAC Catalog, Collection or FeatureCollection at {search.source}, "
            f"got type {kind!r}"
        )
    window = date_window(search.date_range)
    area = shapely.box(*search.bbox) if search.bbox is not None else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="STAC items (static)", unit="item")
    items: list[dict[str, Any]] = []
    try:
        for item in candidates:
            if bar is not None:
                bar.update(1)
            if base is None:
                item.make_asset_hrefs_absolute()
            data = item.to_dict(include_self_link=True, transform_hrefs=False)
            if base is not None:
                data.setdefault("links", []).append({"rel": "self", "href": base})
            if _keep(data, search, window, area):
                items.append(data)
                if search.max_items is not None and len(items) >= search.max_items:
                    break
    finally:
        if bar is not None:
            bar.close()
    return items


def _keep(
    item: Mapping[str, Any],
    search: StacSearch,
    window: tuple[_dt.datetime, _dt.datetime] | None,
    area: shapely.Geometry | None,
) -> bool:
    properties = item.get("properties") or {}
    if search.collections and item.get("collection") not in search.collections:
        return False
    if area is not None:
        geometry = item.get("geometry")
        if geometry and not shapely.intersects(shapely.geometry.shape(geometry), area):
            return False
        if not geometry and item.get("bbox"):
            box = item["bbox"]
            half = len(box) // 2
            if not shapely.intersects(shapely.box(box[0], box[1], box[half], box[half + 1]), area):
                return False
    if window is not None:
        start = parse_datetime(properties.get("start_datetime") or properties.get("datetime"))
        end = parse_datetime(properties.get("end_datetime") or properties.get("datetime"))
        if not isinstance(start, _dt.datetime) or not isinstance(end, _dt.datetime):
            return False
        if end < window[0] or start > window[1]:
            return False
    return not search.query or matches_query(properties, search.query)


def matches_query(properties: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """Whether item properties satisfy a STAC ``query`` extension object (all terms).

    Raises:
        SchemaError: an operator the query extension does not define.
    """
    for name, condition in query.items():
        ops = condition if isinstance(condition, Mapping) else {"eq": condition}
        value = properties.get(name)
        for op, target in ops.items():
            if op not in _QUERY_OPS:
                raise SchemaError(
                    f"expected query operators from {list(_QUERY_OPS)} for {name!r}, got {op!r}"
                )
            if not _test(op, value, target):
                return False
    return True


def _test(op: str, value: Any, target: Any) -> bool:
    if op == "eq":
        return bool(value == target)
    if op == "neq":
        return bool(value != target)
    if op == "in":
        return value in (target or ())
    if value is None:
        return False
    try:
        if op in ("lt", "lte", "gt", "gte"):
            return {
                "lt": value < target,
                "lte": value <= target,
                "gt": value > target,
                "gte": value >= target,
            }[op]
    except TypeError:
        return False
    text, needle = str(value), str(target)
    if op == "startsWith":
        return text.startswith(needle)
    if op == "endsWith":
        return text.endswith(needle)
    return needle in text


def _rfc3339(instant: _dt.datetime | None) -> str:
    """A bound of a STAC API ``datetime`` interval (``..`` when open)."""
    if instant is None:
        return ".."
    return instant.isoformat().replace("+00:00", "Z")


def _api_datetime(date_range: tuple[DateLike, DateLike] | None) -> str | None:
    """The STAC API ``datetime`` interval of a ``date_range``, as exact UTC instants (the
    rule of :mod:`rasteret._dates`), so every server reads partial dates the same way.

    >>> _api_datetime(("2024-01", None))
    '2024-01-01T00:00:00Z/..'
    """
    if date_range is None:
        return None
    start, end = date_bounds(date_range)
    return None if start is None and end is None else f"{_rfc3339(start)}/{_rfc3339(end)}"


def date_window(
    date_range: tuple[DateLike, DateLike] | None,
) -> tuple[_dt.datetime, _dt.datetime] | None:
    """``date_range`` as an inclusive ``(start, end)`` of UTC datetimes (open ends at the
    extremes), for filtering items on the client.

    >>> [d.isoformat() for d in date_window(("2024-02", "2024-02"))]
    ['2024-02-01T00:00:00+00:00', '2024-02-29T23:59:59.999999+00:00']
    """
    if date_range is None:
        return None
    start, end = date_bounds(date_range)
    low = start or _dt.datetime.min.replace(tzinfo=_dt.UTC)
    high = end or _dt.datetime.max.replace(tzinfo=_dt.UTC)
    return low, high


def _warning_class() -> type[Warning]:
    from rasteret.errors import RasteretWarning

    return RasteretWarning


def collections_tuple(collection: str | Sequence[str] | None) -> tuple[str, ...]:
    """``None``, one id or several ids -> a tuple of ids."""
    if collection is None:
        return ()
    if isinstance(collection, str):
        return (collection,) if collection else ()
    return tuple(str(c) for c in collection)
