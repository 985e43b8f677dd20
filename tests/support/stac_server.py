"""A real STAC API on 127.0.0.1 (rustac's server) serving synthetic items whose COGs live on
the loopback S3 server, plus a static catalog of the same scenes on disk.

- :class:`StacApiServer`: ``rustac serve`` (in-memory backend) behind a small forwarding
  proxy on its public address. The proxy logs every request (method, path, JSON body) and can
  answer the next *n* requests with an error status (429 with ``Retry-After: 0``, 503...), so
  tests see retries and paging exactly as a client sends them.
- Fixtures: ``stac_scenes`` (session: COGs written by :mod:`rasteret.testing.scenes` and
  uploaded to ``s3_server``), ``stac_api`` (session: the server), ``stac_static_catalog``
  (session: a pystac catalog on disk with relative asset hrefs to local COGs).

Collections served: ``synthetic-s2`` (one COG per band, assets ``red``/``nir`` plus a
thumbnail and a metadata file; one item's hrefs carry a fake presigned query string) and
``synthetic-naip`` (one 4-band COG per item, asset ``image``).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import shapely.geometry

from rasteret.testing.scenes import SceneSpec, scene_footprint, write_multiband_scene, write_scene
from rasteret.testing.servers import MotoS3Server

BUCKET = "stac-cogs"
S2_COLLECTION = "synthetic-s2"
NAIP_COLLECTION = "synthetic-naip"
S2_ASSETS = {"B04": "red", "B08": "nir"}
NAIP_BANDS = ("R", "G", "B", "NIR")
SIGNED_QUERY = "X-Amz-Signature=deadbeef&X-Amz-Credential=AKIAFAKE&X-Amz-Expires=3600"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
SCALE, OFFSET = 0.0001, -0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rustac_executable() -> str:
    """The ``rustac`` console script of this interpreter's environment."""
    local = Path(sys.executable).with_name("rustac")
    found = str(local) if local.exists() else shutil.which("rustac")
    if not found:
        pytest.skip("rustac (pip install rustac) is needed to serve a STAC API")
    return found


@dataclass
class ProxyRecord:
    method: str
    path: str
    body: Any
    status: int


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: StacApiServer


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Proxy

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`StacApiServer.requests`."""

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")

    def _forward(self, method: str) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parsed = json.loads(body) if body else None
        forced = owner._take_failure()
        if forced is not None:
            payload = b'{"code": "failure", "description": "injected by the test"}'
            owner._log(ProxyRecord(method, self.path, parsed, forced))
            self.send_response(forced)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        conn = http.client.HTTPConnection("127.0.0.1", owner.upstream_port, timeout=30)
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        conn.request(method, self.path, body=body or None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        owner._log(ProxyRecord(method, self.path, parsed, response.status))
        self.send_response(response.status)
        self.send_header("Content-Type", response.getheader("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class StacApiServer:
    """``rustac serve`` of ``hrefs`` behind a logging, fault-injecting proxy on 127.0.0.1."""

    hrefs: list[Path]
    requests: list[ProxyRecord] = field(default_factory=list)
    upstream_port: int = 0
    port: int = 0
    _failures: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _process: subprocess.Popen[bytes] | None = None
    _proxy: _Proxy | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StacApiServer:
        self._proxy = _Proxy(("127.0.0.1", 0), _ProxyHandler)
        self._proxy.owner = self
        self.port = int(self._proxy.server_address[1])
        threading.Thread(target=self._proxy.serve_forever, daemon=True).start()
        self.upstream_port = free_port()
        command = [
            rustac_executable(),
            "serve",
            *map(str, self.hrefs),
            "--addr",
            self.url,
            "--bind",
            f"127.0.0.1:{self.upstream_port}",
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.upstream_port}/", timeout=2):
                    break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    error = self._process.stderr.read() if self._process.stderr else b""
                    self.stop()
                    raise RuntimeError(
                        f"rustac serve did not start: {error.decode()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.shutdown()
            self._proxy.server_close()
            self._proxy = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stderr is not None:
                self._process.stderr.close()
            self._process = None

    def fail(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After: 0``)."""
        with self._lock:
            self._failures.extend([status] * times)

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self.requests.clear()

    def searches(self) -> list[ProxyRecord]:
        """Requests to ``/search`` (one per page, retries included)."""
        return [r for r in self.requests if r.path.split("?")[0].rstrip("/") == "/search"]

    def _take_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _log(self, record: ProxyRecord) -> None:
        with self._lock:
            self.requests.append(record)


@dataclass(frozen=True)
class StacScenes:
    """The synthetic scenes behind the served items."""

    s2_specs: list[SceneSpec]
    naip_specs: list[SceneSpec]
    s2_items: list[dict[str, Any]]
    naip_items: list[dict[str, Any]]
    local: dict[str, dict[str, Path]]
    """scene id -> band code (or "image") -> local COG path."""
    folder: Path


def _specs() -> tuple[list[SceneSpec], list[SceneSpec]]:
    s2 = []
    for i in range(7):
        near = i < 5  # five scenes around (77.6, 13.1), two far north
        origin = (770000.0 + 1000 * i, 1450000.0) if near else (500000.0, 2000000.0 + 5000 * i)
        s2.append(
            SceneSpec(
                f"S2-{i:02d}",
                epsg=32643,
                origin=origin,
                size=256,
                tile=128,
                datetime=dt.datetime(2024, 1, 3 + 4 * i, 5, 30, tzinfo=dt.UTC),
                seed=i,
                cloud_cover=5.0 + 10 * i,
                overviews=(2,),
            )
        )
    naip = [
        SceneSpec(
            f"NAIP-{i}",
            epsg=32610,
            origin=(550000.0 + 3000 * i, 4180000.0),
            size=256,
            tile=128,
            resolution=1.0,
            datetime=dt.datetime(2022, 6, 1 + i, tzinfo=dt.UTC),
            seed=100 + i,
            overviews=(2,),
        )
        for i in range(2)
    ]
    return s2, naip


def _item(spec: SceneSpec, collection: str, assets: dict[str, Any]) -> dict[str, Any]:
    footprint = scene_footprint(spec)
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": spec.scene_id,
        "collection": collection,
        "geometry": shapely.geometry.mapping(footprint),
        "bbox": list(footprint.bounds),
        "properties": {
            "datetime": spec.datetime.isoformat().replace("+00:00", "Z"),
            "created": "2024-02-01T00:00:00.123456789Z",
            "eo:cloud_cover": spec.cloud_cover,
            "proj:code": f"EPSG:{spec.epsg}",
            "platform": "synthetic-2a",
            "grid:code": f"MGRS-{spec.scene_id}",
            "s2:processing": {"baseline": "05.10", "flags": [1, 2]},
        },
        "assets": assets,
        "links": [],
    }


def make_scenes(folder: Path, s3: MotoS3Server) -> StacScenes:
    """Write the COGs, upload them to ``s3://stac-cogs/`` and describe them as STAC items."""
    s2_specs, naip_specs = _specs()
    s3.create_bucket(BUCKET)
    local: dict[str, dict[str, Path]] = {}
    s2_items, naip_items = [], []
    for number, spec in enumerate(s2_specs):
        paths = write_scene(spec, folder / "cogs", bands=tuple(S2_ASSETS))
        local[spec.scene_id] = paths
        assets: dict[str, Any] = {}
        for band, asset in S2_ASSETS.items():
            url = s3.put(BUCKET, f"s2/{paths[band].name}", paths[band])
            if number == 1:  # a presigned-looking href: the signature must never be stored
                url = f"{url}?{SIGNED_QUERY}"
            assets[asset] = {
                "href": url,
                "type": COG_TYPE,
                "roles": ["data", "reflectance"],
                "raster:bands": [
                    {"data_type": "uint16", "nodata": 0, "scale": SCALE, "offset": OFFSET}
                ],
            }
        assets["thumbnail"] = {
            "href": f"s3://{BUCKET}/s2/{spec.scene_id}.png",
            "type": "image/png",
            "roles": ["thumbnail"],
        }
        assets["metadata"] = {
            "href": f"s3://{BUCKET}/s2/{spec.scene_id}.xml",
            "type": "application/xml",
            "roles": ["metadata"],
        }
        s2_items.append(_item(spec, S2_COLLECTION, assets))
    for spec in naip_specs:
        path = write_multiband_scene(spec, folder / "cogs", bands=NAIP_BANDS)
        local[spec.scene_id] = {"image": path}
        url = s3.put(BUCKET, f"naip/{path.name}", path)
        assets = {"image": {"href": url, "type": COG_TYPE, "roles": ["data"]}}
        naip_items.append(_item(spec, NAIP_COLLECTION, assets))
    return StacScenes(s2_specs, naip_specs, s2_items, naip_items, local, folder)


def write_api_files(folder: Path, scenes: StacScenes) -> list[Path]:
    """collection.json + items FeatureCollection per collection, for ``rustac serve``."""
    out = []
    for collection, items in (
        (S2_COLLECTION, scenes.s2_items),
        (NAIP_COLLECTION, scenes.naip_items),
    ):
        bounds = [shapely.geometry.shape(i["geometry"]).bounds for i in items]
        extent = [
            min(b[0] for b in bounds),
            min(b[1] for b in bounds),
            max(b[2] for b in bounds),
            max(b[3] for b in bounds),
        ]
        document = {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": collection,
            "description": f"synthetic {collection}",
            "license": "CC0-1.0",
            "extent": {
                "spatial": {"bbox": [extent]},
                "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
            },
            "links": [],
        }
        (folder / f"{collection}.json").write_text(json.dumps(document))
        (folder / f"{collection}-items.json").write_text(
            json.dumps({"type": "FeatureCollection", "features": items})
        )
        out += [folder / f"{collection}.json", folder / f"{collection}-items.json"]
    return out


def write_static_catalog(folder: Path, scenes: StacScenes) -> Path:
    """A self-contained static catalog whose assets are relative hrefs to local COGs."""
    import pystac

    root = folder / "catalog"
    catalog = pystac.Catalog(id="synthetic", description="synthetic scenes on disk")
    collection = pystac.Collection(
        id=S2_COLLECTION,
        description="synthetic Sentinel-2-like scenes",
        extent=pystac.Extent(
            pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
            pystac.TemporalExtent([[dt.datetime(2020, 1, 1, tzinfo=dt.UTC), None]]),
        ),
        license="CC0-1.0",
    )
    catalog.add_child(collection)
    for spec in scenes.s2_specs:
        footprint = scene_footprint(spec)
        item = pystac.Item(
            id=spec.scene_id,
            geometry=shapely.geometry.mapping(footprint),
            bbox=list(footprint.bounds),
            datetime=spec.datetime,
            properties={"eo:cloud_cover": spec.cloud_cover, "proj:code": f"EPSG:{spec.epsg}"},
        )
        for band, asset in S2_ASSETS.items():
            source = scenes.local[spec.scene_id][band]
            item.add_asset(
                asset, pystac.Asset(href=str(source), media_type=COG_TYPE, roles=["data"])
            )
        collection.add_item(item)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


@pytest.fixture(scope="session")
def stac_scenes(s3_server: MotoS3Server, tmp_path_factory: pytest.TempPathFactory) -> StacScenes:
    with warnings.catch_warnings():
        # rasterio's from_origin uses Affine * (affine >= 3.1 warns); not ours to fix here
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return make_scenes(tmp_path_factory.mktemp("stac-scenes"), s3_server)


@pytest.fixture(scope="session")
def stac_api(stac_scenes: StacScenes) -> Iterator[StacApiServer]:
    """The STAC API (proxy URL in ``.url``); its log and injected failures are reset per use."""
    server = StacApiServer(write_api_files(stac_scenes.folder, stac_scenes)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stac_server(stac_api: StacApiServer) -> StacApiServer:
    """``stac_api`` with an empty request log and no pending failures."""
    stac_api.clear()
    return stac_api


@pytest.fixture(scope="session")
def stac_static_catalog(stac_scenes: StacScenes) -> Path:
    return write_static_catalog(stac_scenes.folder, stac_scenes)
