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

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rasteret.errors import RasteretError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    >>> main(["datasets", "info", "earthsearch/naip", "--json"])  # doctest: +ELLIPSIS
    {...
    0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
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


# ----------------------------------------------------------------------------- parser
def _parser() -> argparse.ArgumentParser:
    from importlib.metadata import version as package_version

    version = package_version("rasteret")

    parser = argparse.ArgumentParser(
        prog="rasteret",
        description="Index cloud-optimized GeoTIFFs into collections and read pixels from them.",
    )
    parser.add_argument("--version", action="version", version=f"rasteret {version}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    datasets = commands.add_parser("datasets", help="the dataset catalog", description="List, "
                                   "inspect and register catalog datasets.")  # fmt: skip
    datasets.set_defaults(handler=_usage(datasets))
    dataset_commands = datasets.add_subparsers(title="datasets commands", metavar="COMMAND")
    listing = dataset_commands.add_parser("list", help="list the known datasets")
    _json_flag(listing)
    listing.set_defaults(handler=_datasets_list)
    info = dataset_commands.add_parser("info", help="show one dataset's descriptor")
    info.add_argument("dataset", metavar="ID", help="dataset id, e.g. earthsearch/sentinel-2-l2a")
    _json_flag(info)
    info.set_defaults(handler=_datasets_info)
    local = dataset_commands.add_parser(
        "register-local", help="register your own record table or static STAC catalog"
    )
    local.add_argument("dataset", metavar="ID", help="id (a bare name gets the local/ prefix)")
    local.add_argument("source", help="a (Geo)Parquet record table, or a static catalog .json")
    local.add_argument("--band", action="append", required=True, metavar="B=ASSET[:INDEX]",
                       help="band code -> asset key (and sample index); repeat per band")  # fmt: skip
    local.add_argument("--href-column", help="column with one multi-band URL per row")
    local.add_argument("--title", default="", help="a human-readable title")
    local.add_argument("--license", default="", help="SPDX licence id")
    local.add_argument("--overwrite", action="store_true", help="replace a registration")
    local.set_defaults(handler=_datasets_register_local)

    build = commands.add_parser(
        "build", help="build a collection of a catalog dataset",
        description="Search a catalog dataset and build an enriched collection.",
    )  # fmt: skip
    build.add_argument("dataset", metavar="ID", help="dataset id (see: rasteret datasets list)")
    _name_args(build)
    _filter_args(build)
    build.add_argument(
        "--query", type=json.loads, help='STAC query JSON, e.g. \'{"eo:cloud_cover": {"lt": 20}}\''
    )
    build.add_argument("--bands", type=_csv, help="comma-separated band codes (default: all)")
    build.add_argument("--max-items", type=int, help="stop after this many items")
    _build_args(build)
    build.set_defaults(handler=_build)

    table = commands.add_parser(
        "build-table", help="build a collection from a Parquet/GeoParquet record table",
        description="Normalise a record table and (by default) enrich its COG headers.",
    )  # fmt: skip
    table.add_argument("path", help="Parquet/GeoParquet file or folder (local, s3://, gs://)")
    _name_args(table)
    table.add_argument("--data-source", default="", help="registered dataset id of the records")
    table.add_argument("--column-map", action="append", default=[], metavar="SOURCE=CANONICAL",
                       help="rename a column to id/datetime/geometry/assets; repeatable")  # fmt: skip
    table.add_argument("--href-column", help="column with one multi-band URL per row")
    table.add_argument("--band-index", action="append", default=[], metavar="BAND=INDEX",
                       help="0-based sample index of a band in --href-column files")  # fmt: skip
    table.add_argument("--band-codes", type=_csv, help="bands to enrich (default: all TIFFs)")
    table.add_argument("--no-enrich", action="store_true", help="skip COG header enrichment")
    table.add_argument("--requester-pays", action="store_true", help="requester-pays buckets")
    table.add_argument("--url-rewrite", action="append", default=[], metavar="OLD=NEW",
                       help="rewrite href prefixes before reading; repeatable")  # fmt: skip
    _build_args(table)
    table.set_defaults(handler=_build_table)

    collections = commands.add_parser("collections", help="collections in the workspace",
                                      description="List and inspect stored collections.")  # fmt: skip
    collections.set_defaults(handler=_usage(collections))
    collection_commands = collections.add_subparsers(
        title="collections commands", metavar="COMMAND"
    )
    clist = collection_commands.add_parser("list", help="list the workspace's collections")
    _workspace_arg(clist)
    _json_flag(clist)
    clist.set_defaults(handler=_collections_list)
    cinfo = collection_commands.add_parser("info", help="summarise one collection")
    cinfo.add_argument("collection", metavar="NAME", help="collection name or folder")
    _workspace_arg(cinfo)
    _json_flag(cinfo)
    cinfo.set_defaults(handler=_collections_info)

    points = commands.add_parser(
        "sample-points", help="sample band values at points",
        description="Sample a collection's bands at the points of a table; write Parquet or CSV.",
    )  # fmt: skip
    points.add_argument("collection", metavar="NAME", help="collection name or folder")
    points.add_argument("--points", required=True, help="points: Parquet/GeoParquet or CSV file")
    points.add_argument("--bands", type=_csv, required=True, help="comma-separated band codes")
    points.add_argument("--output", required=True, help="output .parquet or .csv")
    points.add_argument("--x-column", help="x/longitude column (with --y-column)")
    points.add_argument("--y-column", help="y/latitude column (with --x-column)")
    points.add_argument("--geometry-column", help="WKB point column")
    points.add_argument("--points-crs", help="CRS of the points (default EPSG:4326)")
    points.add_argument("--match", choices=("all", "latest"), default="all",
                        help="every record covering a point, or only the latest")  # fmt: skip
    _workspace_arg(points)
    _filter_args(points)
    points.set_defaults(handler=_sample_points)

    read = commands.add_parser(
        "read", help="read pixels of an area to GeoTIFF, NetCDF or Parquet",
        description="Read a collection's bands over one area (bbox or a geometry file).",
    )  # fmt: skip
    read.add_argument("collection", metavar="NAME", help="collection name or folder")
    read.add_argument("--bands", type=_csv, required=True, help="comma-separated band codes")
    read.add_argument("--output", required=True, help="output .tif, .nc or .parquet")
    read.add_argument("--geometry", help="GeoJSON file with the area (its geometries' union)")
    read.add_argument("--geometry-crs", help="CRS of --bbox/--geometry (default EPSG:4326)")
    read.add_argument("--target-crs", help="reproject onto this CRS")
    read.add_argument("--resolution", type=float, help="output pixel size (target CRS units)")
    read.add_argument("--resampling", help="nearest, bilinear, cubic, average or mode")
    _workspace_arg(read)
    _filter_args(read)
    read.set_defaults(handler=_read)
    return parser


def _usage(parser: argparse.ArgumentParser) -> Handler:
    """A handler for a command group called without its sub-command: help, exit code 2."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _workspace_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace-dir", help="workspace folder (default ~/rasteret_workspace)")


def _name_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="collection name in the workspace")
    _workspace_arg(parser)


def _filter_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bbox", type=_bbox, metavar="XMIN,YMIN,XMAX,YMAX",
                        help="area of interest in EPSG:4326 degrees")  # fmt: skip
    parser.add_argument("--date-range", type=_date_range, metavar="START/END",
                        help="inclusive dates, e.g. 2024-01-01/2024-01-31 ('..' is open)")  # fmt: skip


def _build_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--max-concurrent", type=int, default=300, help="header requests in flight")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show progress bars")  # fmt: skip
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never show progress bars")  # fmt: skip


def _csv(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
    return values


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected XMIN,YMIN,XMAX,YMAX, got {text!r}") from None
    if xmin > xmax or ymin > ymax:
        raise argparse.ArgumentTypeError(f"expected xmin <= xmax and ymin <= ymax, got {text!r}")
    return xmin, ymin, xmax, ymax


def _date_range(text: str) -> tuple[str | None, str | None]:
    start, sep, end = text.partition("/")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"expected START/END (e.g. 2024-01-01/2024-01-31), got {text!r}"
        )
    return (start if start not in ("", "..") else None, end if end not in ("", "..") else None)


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, target = value.partition("=")
        if not sep or not key or not target:
            raise ValueError(f"expected {what}, got {value!r}")
        out[key] = target
    return out


# ----------------------------------------------------------------------------- datasets
def _datasets_list(args: argparse.Namespace) -> int:
    from rasteret.catalog import datasets

    entries = datasets()
    if args.json:
        _print_json([d.to_dict() for d in entries])
        return 0
    rows = [("ID", "SOURCE", "BANDS", "LICENSE", "TITLE")]
    for d in entries:
        source = f"stac:{d.collection}" if d.stac_api and not d.static_catalog else (
            "static-catalog" if d.static_catalog else "geoparquet"
        )  # fmt: skip
        rows.append((d.id, source, str(len(d.bands)), d.license or "-", d.title))
    _print_table(rows)
    return 0


def _datasets_info(args: argparse.Namespace) -> int:
    from rasteret.catalog import get_dataset

    descriptor = get_dataset(args.dataset)
    data = descriptor.to_dict()
    if args.json:
        _print_json(data)
        return 0
    print(f"{descriptor.id}: {descriptor.title}")
    if descriptor.description:
        print(f"  {descriptor.description}")
    where = descriptor.stac_api or descriptor.geoparquet
    kind = (
        "static catalog"
        if descriptor.static_catalog
        else "STAC API"
        if descriptor.stac_api
        else "GeoParquet"
    )
    print(
        f"  source:     {kind} {where}"
        + (f" (collection {descriptor.collection})" if descriptor.collection else "")
    )
    print(f"  license:    {descriptor.license or '-'} {descriptor.license_url}".rstrip())
    cloud = descriptor.cloud
    print(
        f"  access:     region={cloud.region or '-'} requester_pays={cloud.requester_pays} anonymous={cloud.anonymous}"
    )
    for old, new in cloud.url_rewrite_patterns.items():
        print(f"  rewrite:    {old} -> {new}")
    if descriptor.example_bbox:
        print(
            f"  example:    bbox={list(descriptor.example_bbox)} dates={list(descriptor.example_date_range or ())}"
        )
    print("  bands:")
    for band, source in descriptor.bands.items():
        index = f" (sample {source.band_index})" if source.band_index is not None else ""
        print(f"    {band:<10} asset {source.asset}{index}")
    return 0


def _datasets_register_local(args: argparse.Namespace) -> int:
    from rasteret.catalog import register_local

    bands: dict[str, Any] = {}
    for spec in args.band:
        band, sep, target = spec.partition("=")
        asset, _, index = target.partition(":")
        if not sep or not band or not asset:
            raise ValueError(f"expected --band BAND=ASSET[:INDEX], got {spec!r}")
        bands[band] = (asset, int(index)) if index else asset
    descriptor = register_local(
        args.dataset,
        args.source,
        bands=bands,
        href_column=args.href_column,
        title=args.title,
        license=args.license,
        overwrite=args.overwrite,
    )
    print(f"registered {descriptor.id} ({len(descriptor.bands)} bands)")
    return 0


# ----------------------------------------------------------------------------- builds
def _build(args: argparse.Namespace) -> int:
    from rasteret.stac.build import build

    collection = build(
        args.dataset,
        name=args.name,
        bbox=args.bbox,
        date_range=args.date_range,
        query=args.query,
        bands=args.bands,
        max_items=args.max_items,
        max_concurrent=args.max_concurrent,
        workspace_dir=args.workspace_dir,
        force=args.force,
        progress=args.progress,
    )
    _report_build(collection)
    return 0


def _build_table(args: argparse.Namespace) -> int:
    from rasteret.builders import build_from_table

    band_index = {k: int(v) for k, v in _pairs(args.band_index, "--band-index BAND=INDEX").items()}
    collection = build_from_table(
        args.path,
        name=args.name,
        data_source=args.data_source,
        workspace_dir=args.workspace_dir,
        column_map=_pairs(args.column_map, "--column-map SOURCE=CANONICAL") or None,
        href_column=args.href_column,
        band_index_map=band_index or None,
        url_rewrite_patterns=_pairs(args.url_rewrite, "--url-rewrite OLD=NEW") or None,
        enrich_cog=not args.no_enrich,
        band_codes=args.band_codes,
        cloud_config={"requester_pays": True} if args.requester_pays else None,
        max_concurrent=args.max_concurrent,
        force=args.force,
        progress=args.progress,
    )
    _report_build(collection)
    return 0


def _report_build(collection: Any) -> None:
    where = f" at {collection.path}" if collection.path else ""
    print(
        f"collection {collection.name!r}: {len(collection)} records, bands {collection.bands}{where}"
    )
    failures = collection.enrichment_errors
    if failures:
        print(f"rasteret: warning: {len(failures)} COG headers could not be read, e.g. "
              f"{failures[0].url}: {failures[0].error}", file=sys.stderr)  # fmt: skip


# ----------------------------------------------------------------------------- collections
def _workspace(args: argparse.Namespace) -> Path:
    from rasteret.ingest.store import default_workspace

    return Path(args.workspace_dir).expanduser() if args.workspace_dir else default_workspace()


def _stored(workspace: Path) -> list[Path]:
    from rasteret.ingest.store import MANIFEST

    if not workspace.is_dir():
        return []
    return sorted(p for p in workspace.glob("*_records") if (p / MANIFEST).is_file())


def _open(args: argparse.Namespace) -> Any:
    from rasteret.builders import load
    from rasteret.errors import WorkspaceError
    from rasteret.ingest.store import MANIFEST, records_dir

    candidate = Path(args.collection).expanduser()
    if (candidate / MANIFEST).is_file():
        collection = load(candidate)
    else:
        folder = records_dir(args.collection, args.workspace_dir)
        if not (folder / MANIFEST).is_file():
            names = [p.name.removesuffix("_records") for p in _stored(_workspace(args))]
            raise WorkspaceError(
                f"expected a collection named {args.collection!r} in {folder.parent}, found "
                f"{names or 'none'}; build one with 'rasteret build' or 'rasteret build-table'"
            )
        collection = load(folder)
    if getattr(args, "bbox", None) or getattr(args, "date_range", None):
        collection = collection.subset(bbox=args.bbox, date_range=_dates_or_none(args.date_range))
    return collection


def _dates_or_none(dates: tuple[str | None, str | None] | None) -> tuple[str, str] | None:
    if dates is None:
        return None
    return (dates[0] or "0001-01-01", dates[1] or "9999-12-31")


def _collections_list(args: argparse.Namespace) -> int:
    from rasteret.builders import load

    rows: list[dict[str, Any]] = []
    for folder in _stored(_workspace(args)):
        collection = load(folder)
        rows.append({"name": collection.name or folder.name.removesuffix("_records"),
                     "records": len(collection), "bands": collection.bands,
                     "data_source": collection.data_source, "path": str(folder)})  # fmt: skip
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no collections in {_workspace(args)}")
        return 0
    table = [("NAME", "RECORDS", "BANDS", "DATA SOURCE")]
    table += [
        (r["name"], str(r["records"]), ",".join(r["bands"]) or "-", r["data_source"] or "-")
        for r in rows
    ]
    _print_table(table)
    return 0


def _collections_info(args: argparse.Namespace) -> int:
    collection = _open(args)
    summary = collection.describe()
    summary["data_source"] = collection.data_source
    summary["path"] = str(collection.path) if collection.path else None
    summary["asset_keys"] = collection.asset_keys
    if args.json:
        _print_json(summary)
        return 0
    for key, value in summary.items():
        if (
            isinstance(value, tuple | list)
            and value
            and all(hasattr(v, "isoformat") for v in value)
        ):
            value = " .. ".join(v.isoformat() for v in value)
        print(f"{key + ':':<28}{value}")
    return 0


# ----------------------------------------------------------------------------- pixel reads
def _sample_points(args: argparse.Namespace) -> int:
    collection = _open(args)
    points = _read_points(Path(args.points))
    options: dict[str, Any] = {"match": args.match}
    for key in ("x_column", "y_column", "geometry_column"):
        if getattr(args, key):
            options[key] = getattr(args, key)
    if args.points_crs:
        options["geometry_crs"] = args.points_crs
    result = collection.sample_points(points, bands=args.bands, **options)
    _write_table(result, Path(args.output))
    print(f"wrote {result.num_rows} samples to {args.output}")
    return 0


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
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, path)


def _read(args: argparse.Namespace) -> int:
    suffix = Path(args.output).suffix.lower()
    if suffix not in (".tif", ".tiff", ".nc", ".parquet"):
        raise ValueError(f"expected --output ending in .tif, .nc or .parquet, got {args.output!r}")
    if (args.bbox is None) == (args.geometry is None):
        raise ValueError("expected exactly one area: --bbox XMIN,YMIN,XMAX,YMAX or --geometry FILE")
    area: Any = args.bbox if args.bbox is not None else _geometry_file(Path(args.geometry))
    bbox = args.bbox
    args.bbox = None  # the area is the read's AOI; only dates filter the records here
    collection = _open(args)
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


# ----------------------------------------------------------------------------- printing
def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


if __name__ == "__main__":
    sys.exit(main())
