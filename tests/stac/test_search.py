"""STAC API searches against a real server on 127.0.0.1, and static catalog walks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import shapely

from rasteret.errors import FetchError, ObjectNotFoundError, SchemaError
from rasteret.stac.search import (
    StacSearch,
    date_window,
    matches_query,
    search_api,
    walk_static_catalog,
)
from rasteret.testing.scenes import scene_footprint
from support.stac_server import (
    NAIP_COLLECTION,
    S2_COLLECTION,
    StacApiServer,
    StacScenes,
    free_port,
)

pytestmark = pytest.mark.integration

NEAR = (77.40, 13.0, 77.51, 13.2)
"""A bbox over three of the five southern scenes (S2-00..02), far from the northern two."""


def _expected(scenes: StacScenes, bbox=None, dates=None, cloud_lt=None) -> list[str]:
    """Ground truth from the scene specs themselves."""
    window = date_window(dates) if dates else None
    out = []
    for spec in scenes.s2_specs:
        if bbox is not None and not scene_footprint(spec).intersects(shapely.box(*bbox)):
            continue
        if window is not None and not window[0] <= spec.datetime <= window[1]:
            continue
        if cloud_lt is not None and not spec.cloud_cover < cloud_lt:
            continue
        out.append(spec.scene_id)
    return out


def test_search_follows_every_page(stac_server: StacApiServer, stac_scenes: StacScenes) -> None:
    items = search_api(StacSearch(stac_server.url, collections=(S2_COLLECTION,)), page_size=2)

    assert [i["id"] for i in items] == [s.scene_id for s in stac_scenes.s2_specs]
    pages = stac_server.searches()
    assert len(pages) == 4  # 2 + 2 + 2 + 1 items
    assert all(p.body["limit"] == 2 and p.status == 200 for p in pages)
    assert [p.body.get("skip") for p in pages[1:]] == [2, 4, 6]  # followed rustac's next links


def test_search_filters_by_bbox_dates_and_collection(
    stac_server: StacApiServer, stac_scenes: StacScenes
) -> None:
    dates = ("2024-01-05", dt.date(2024, 1, 19))
    items = search_api(
        StacSearch(stac_server.url, collections=(S2_COLLECTION,), bbox=NEAR, date_range=dates)
    )
    assert [i["id"] for i in items] == _expected(stac_scenes, NEAR, dates)
    assert len(items) == 2  # S2-01 and S2-02: in the bbox and the dates
    body = stac_server.searches()[0].body
    assert body["collections"] == [S2_COLLECTION]
    assert body["datetime"] == "2024-01-05T00:00:00Z/2024-01-19T23:59:59.999999Z"

    naip = search_api(StacSearch(stac_server.url, collections=(NAIP_COLLECTION,)))
    assert [i["id"] for i in naip] == [s.scene_id for s in stac_scenes.naip_specs]


def test_query_is_applied_on_the_client_when_the_server_lacks_it(
    stac_server: StacApiServer, stac_scenes: StacScenes
) -> None:
    search = StacSearch(
        stac_server.url, collections=(S2_COLLECTION,), query={"eo:cloud_cover": {"lt": 30}}
    )
    with pytest.warns(UserWarning, match="does not support the query extension"):
        items = search_api(search, page_size=3)
    assert [i["id"] for i in items] == _expected(stac_scenes, cloud_lt=30)
    assert all("query" not in p.body for p in stac_server.searches())


def test_max_items_stops_early(stac_server: StacApiServer) -> None:
    items = search_api(
        StacSearch(stac_server.url, collections=(S2_COLLECTION,), max_items=3), page_size=2
    )
    assert len(items) == 3
    assert len(stac_server.searches()) == 2


def test_429_and_5xx_answers_are_retried(
    stac_server: StacApiServer, stac_scenes: StacScenes
) -> None:
    search = StacSearch(stac_server.url, collections=(S2_COLLECTION,))
    stac_server.fail(429, times=2)
    stac_server.fail(503, times=1)
    items = search_api(search, page_size=4, backoff_factor=0.01)

    assert len(items) == len(stac_scenes.s2_specs)
    statuses = [r.status for r in stac_server.requests]
    assert statuses[:3] == [429, 429, 503]
    assert statuses[3:]
    assert all(s == 200 for s in statuses[3:])


def test_retries_give_up_with_an_error_naming_the_search(stac_server: StacApiServer) -> None:
    search = StacSearch(stac_server.url, collections=(S2_COLLECTION,), bbox=NEAR)
    stac_server.fail(503, times=50)
    with pytest.raises(FetchError, match=r"HTTP 503.*") as caught:
        search_api(search, max_retries=2, backoff_factor=0.01)
    assert "synthetic-s2" in str(caught.value)
    assert "77.4" in str(caught.value)
    assert len(stac_server.requests) == 3  # the first try and two retries
    stac_server.clear()


def test_unknown_collection_and_unreachable_api(stac_server: StacApiServer) -> None:
    with pytest.raises(ObjectNotFoundError, match="HTTP 404"):
        search_api(StacSearch(f"{stac_server.url}/nope/"), max_retries=0)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(FetchError, match="could not be reached"):
        search_api(StacSearch(dead, collections=("x",)), max_retries=0)


def test_static_catalog_walk_filters_on_the_client(
    stac_static_catalog: Path, stac_scenes: StacScenes
) -> None:
    dates = ("2024-01-01", "2024-01-15")
    search = StacSearch(str(stac_static_catalog), bbox=NEAR, date_range=dates)
    items = walk_static_catalog(search)

    assert sorted(i["id"] for i in items) == sorted(_expected(stac_scenes, NEAR, dates))
    for item in items:
        href = item["assets"]["red"]["href"]
        assert Path(href).is_absolute()
        assert Path(href).samefile(stac_scenes.local[item["id"]]["B04"])

    query = StacSearch(str(stac_static_catalog), query={"eo:cloud_cover": {"gte": 40}})
    assert sorted(i["id"] for i in walk_static_catalog(query)) == sorted(
        s.scene_id for s in stac_scenes.s2_specs if s.cloud_cover >= 40
    )
    other = StacSearch(str(stac_static_catalog), collections=("another",))
    assert walk_static_catalog(other) == []


def test_static_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match="no static STAC catalog"):
        walk_static_catalog(StacSearch(str(tmp_path / "missing.json")))
    (tmp_path / "thing.json").write_text('{"type": "Thing"}')
    with pytest.raises(SchemaError, match="got type 'Thing'"):
        walk_static_catalog(StacSearch(str(tmp_path / "thing.json")))


def test_matches_query_operators() -> None:
    props = {"eo:cloud_cover": 12.0, "platform": "sentinel-2a", "grid": "MGRS-43PGQ"}
    assert matches_query(props, {"eo:cloud_cover": {"gte": 12, "lt": 13}})
    assert not matches_query(props, {"eo:cloud_cover": {"gt": 12}})
    assert matches_query(props, {"platform": {"in": ["sentinel-2a", "sentinel-2b"]}})
    assert matches_query(props, {"platform": "sentinel-2a"})
    assert matches_query(
        props, {"grid": {"startsWith": "MGRS", "endsWith": "GQ", "contains": "43"}}
    )
    assert not matches_query(props, {"missing": {"lt": 3}})
    assert matches_query(props, {"platform": {"neq": "landsat-9"}})
    with pytest.raises(SchemaError, match="query operators"):
        matches_query(props, {"platform": {"like": "x"}})
