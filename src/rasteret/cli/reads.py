"""The pixel commands of the ``rasteret`` command line: ``sample-points`` and ``read``.

Outputs: sampled points as Parquet or CSV; an area as GeoTIFF (one layer per band and time
step, described ``BAND@TIME``), NetCDF (the ``get_xarray`` dataset, CF georeferencing) or
Parquet (one row per pixel and time step: ``time``, ``y``, ``x`` and a column per band).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rasteret.cli.commands import open_collection

__all__ = ["read", "sample_points"]


# ----------------------------------------------------------------------------- pixel reads
def sample_points(args: argparse.Namespace) -> int:
    """``rasteret sample-points NAME``: band values at the points of a table."""
    collection = open_collection(args)
    points = _read_points(Path(args.points))
    options: dict[str, Any] = {
        "match": args.match,
        "max_distance_pixels": args.max_distance_pixels,
        "keep_missing": args.keep_missing,
    }
    for key in ("x_column", "y_column", "geometry_column"):
        if getattr(args, key):
            options[key] = getattr(args, key)
    if args.points_crs:
        options["geometry_crs"] = args.points_crs
    elif not _has_crs(points, args.geometry_column):
        options["geometry_crs"] = "EPSG:4326"
    result = collection.sample_points(points, bands=args.bands, **options)
    _write_table(result, Path(args.output))
    print(f"wrote {result.num_rows} samples to {args.output}")
    return 0


def _has_crs(points: Any, geometry_column: str | None) -> bool:
    """Whether the points' geometry column says its CRS (GeoArrow or GeoParquet metadata)."""
    from rasteret.errors import RasteretError
    from rasteret.types import geometry_crs

    try:
        return geometry_crs(points, geometry_column=geometry_column) is not None
    except (RasteretError, ValueError, TypeError):  # no geometry column (x/y points)
        return False


def _read_points(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"no points file at {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".geoparquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if suffix in (".csv", ".txt"):
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path)
    raise ValueError(f"expected a points file ending in .parquet or .csv, got {path.name!r}")


def _write_table(table: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import shapely

        for index, field in enumerate(table.schema):
            if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
                wkt = shapely.to_wkt(shapely.from_wkb(table.column(index).to_numpy(False)))
                table = table.set_column(index, field.name, pa.array(wkt, pa.string()))
        pacsv.write_csv(table, path)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, path)


def read(args: argparse.Namespace) -> int:
    """``rasteret read NAME``: pixels of one area to GeoTIFF, NetCDF or Parquet."""
    suffix = Path(args.output).suffix.lower()
    if suffix not in (".tif", ".tiff", ".nc", ".parquet"):
        raise ValueError(f"expected --output ending in .tif, .nc or .parquet, got {args.output!r}")
    if (args.bbox is None) == (args.geometry is None):
        raise ValueError("expected exactly one area: --bbox XMIN,YMIN,XMAX,YMAX or --geometry FILE")
    area: Any = args.bbox if args.bbox is not None else _geometry_file(Path(args.geometry))
    bbox = args.bbox
    args.bbox = None  # the area is the read's AOI; only dates filter the records here
    collection = open_collection(args)
    options = {k: getattr(args, k) for k in ("geometry_crs", "target_crs", "resolution", "resampling")
               if getattr(args, k) is not None}  # fmt: skip
    dataset = collection.get_xarray(geometries=area, bands=args.bands, **options)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".nc":
        _write_netcdf(dataset, output)
    elif suffix == ".parquet":
        _write_pixel_table(dataset, args.bands, output)
    else:
        _write_geotiff(dataset, args.bands, output)
    print(f"wrote {', '.join(args.bands)} over {bbox or args.geometry} to {output}")
    return 0


def _geometry_file(path: Path) -> Any:
    import shapely

    data = json.loads(path.read_text())
    features = data.get("features") if data.get("type") == "FeatureCollection" else [data]
    geometries = [shapely.geometry.shape(f.get("geometry", f)) for f in features or ()]
    if not geometries:
        raise ValueError(f"expected at least one geometry in {path}")
    return shapely.union_all(geometries)


def _write_netcdf(dataset: Any, path: Path) -> None:
    import importlib.util

    engine = next((e for e, module in (("netcdf4", "netCDF4"), ("h5netcdf", "h5netcdf"),
                                        ("scipy", "scipy")) if importlib.util.find_spec(module)), None)  # fmt: skip
    if engine is None:
        from rasteret.errors import MissingDependencyError

        raise MissingDependencyError(
            "writing NetCDF needs netCDF4, h5netcdf or scipy; install one, e.g. "
            "pip install h5netcdf"
        )
    dataset.to_netcdf(path, engine=engine)


def _write_pixel_table(dataset: Any, bands: Sequence[str], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = dataset[list(bands)].to_dataframe().reset_index()
    frame = frame[[c for c in frame.columns if c != "spatial_ref"]]
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def _write_geotiff(dataset: Any, bands: Sequence[str], path: Path) -> None:
    """One GeoTIFF layer per (time, band), described as ``BAND@TIME``."""
    import numpy as np
    import rasterio
    import rioxarray  # noqa: F401 - registers the .rio accessor

    first = dataset[bands[0]]
    times = list(first["time"].values) if "time" in first.dims else [None]
    layers, names = [], []
    for index, when in enumerate(times):
        for band in bands:
            array = dataset[band]
            layers.append(np.asarray(array.isel(time=index) if when is not None else array))
            names.append(
                f"{band}@{np.datetime_as_string(when, unit='s')}" if when is not None else band
            )
    stack = np.stack(layers)
    nodata = first.attrs.get("_FillValue", first.encoding.get("_FillValue"))
    profile = {
        "driver": "GTiff", "width": stack.shape[2], "height": stack.shape[1], "count": len(stack),
        "dtype": stack.dtype.name, "crs": dataset.rio.crs, "transform": dataset.rio.transform(),
        "nodata": nodata, "tiled": True, "compress": "deflate",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(stack)
        for number, name in enumerate(names, start=1):
            dst.set_band_description(number, name)
