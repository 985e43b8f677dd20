"""The quickstart: build a collection from a record table and read pixels from it.

Run it with ``bash scripts/quickstart.sh`` (which sets up ``.venv`` first) or, in a set-up
environment, ``python examples/quickstart.py``. It

1. writes sample Sentinel-2-like COGs (two bands, three dates, two UTM zones) and a
   ``records.parquet`` table describing them into ``sample_data/generated/``;
2. serves them from a loopback HTTP server with 20 ms of injected latency, as an object store
   would, and builds a collection with ``rasteret.build_from_table(..., enrich_cog=True)``
   (one ranged GET per COG header);
3. reads parcels with ``get_numpy``, ``get_xarray`` and ``get_gdf`` and checks the pixels
   against rasterio reading the same files.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import shapely

import rasteret
from rasteret.testing.oracle import rasterio_aoi_read
from rasteret.testing.scenes import SceneSpec, record_table, scene_footprint, write_scene
from rasteret.testing.servers import RangeHTTPServer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "sample_data" / "generated"


def sample_scenes() -> list[SceneSpec]:
    """Three dates over one place in UTM 43N, and one scene in the neighbouring zone 44N."""
    dates = [dt.datetime(2024, m, 15, tzinfo=dt.UTC) for m in (1, 2, 3)]
    scenes = [
        SceneSpec(
            f"s2-43N-{d:%Y%m%d}",
            32643,
            (770000.0, 1450000.0),
            size=1024,
            tile=256,
            datetime=d,
            seed=i,
            cloud_cover=10.0 * (i + 1),
        )
        for i, d in enumerate(dates)
    ]
    scenes.append(
        SceneSpec(
            "s2-44N-20240115",
            32644,
            (170000.0, 1450000.0),
            size=1024,
            tile=256,
            datetime=dates[0],
            seed=9,
        )
    )
    return scenes


def main() -> int:
    DATA.mkdir(parents=True, exist_ok=True)
    scenes = sample_scenes()
    for spec in scenes:
        write_scene(spec, DATA / "cogs")

    with RangeHTTPServer(DATA, latency=0.02) as server:
        hrefs = {
            s.scene_id: {b: server.url_for(f"cogs/{s.scene_id}_{b}.tif") for b in ("B04", "B08")}
            for s in scenes
        }
        pq.write_table(record_table(scenes, hrefs), DATA / "records.parquet")
        print(f"wrote {len(scenes)} scenes and records.parquet to {DATA}")

        server.clear_log()
        started = time.perf_counter()
        collection = rasteret.build_from_table(
            str(DATA / "records.parquet"),
            name="quickstart",
            workspace_dir=DATA / "workspace",
            enrich_cog=True,
            force=True,
            progress=False,
        )
        took = time.perf_counter() - started
        gets = server.count()
        print(
            f"built {collection!r} in {took:.2f} s: {gets} GETs for {2 * len(scenes)} COG headers"
        )
        print("describe():", collection.describe())

        # A parcel inside the UTM 43N scenes, in lon/lat.
        footprint = scene_footprint(scenes[0])
        cx, cy = footprint.centroid.x, footprint.centroid.y
        parcel = shapely.box(cx - 0.01, cy - 0.01, cx + 0.012, cy + 0.008)

        started = time.perf_counter()
        array, index = collection.get_numpy(parcel, ["B04", "B08"], return_index=True)
        print(
            f"get_numpy: {array.shape} {array.dtype} in {time.perf_counter() - started:.2f} s "
            f"for records {list(index.record_id)}"
        )
        ds = collection.get_xarray(parcel, ["B04", "B08"])
        print(f"get_xarray: variables {list(ds.data_vars)}, dims {dict(ds.sizes)}")
        gdf = collection.get_gdf(parcel, ["B04"])
        print(f"get_gdf: {len(gdf)} rows, columns {list(gdf.columns)}")

        # rasterio as the oracle for the first entry (same grid, so bit for bit).
        first = scenes[0]
        expected = rasterio_aoi_read(
            DATA / "cogs" / f"{first.scene_id}_B04.tif", parcel, "EPSG:4326"
        )
        same = np.array_equal(array[0, 0], expected)
        print(f"pixels equal rasterio's read of the same window: {same}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
