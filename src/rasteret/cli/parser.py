"""The argument parser of the ``rasteret`` command line: every command, option and help text."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from rasteret.cli import commands as workspace_commands
from rasteret.cli import reads as pixel_commands

__all__ = ["Handler", "build_parser"]

Handler = Callable[[argparse.Namespace], int]
"""A command: parsed arguments in, exit code out."""


def build_parser() -> argparse.ArgumentParser:
    """The ``rasteret`` parser; each command sets ``handler`` (see :data:`Handler`)."""
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
    listing.set_defaults(handler=workspace_commands.datasets_list)
    info = dataset_commands.add_parser("info", help="show one dataset's descriptor")
    info.add_argument("dataset", metavar="ID", help="dataset id, e.g. earthsearch/sentinel-2-l2a")
    _json_flag(info)
    info.set_defaults(handler=workspace_commands.datasets_info)
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
    local.set_defaults(handler=workspace_commands.datasets_register_local)

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
    build.set_defaults(handler=workspace_commands.build)

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
    table.set_defaults(handler=workspace_commands.build_table)

    collections = commands.add_parser("collections", help="collections in the workspace",
                                      description="List and inspect stored collections.")  # fmt: skip
    collections.set_defaults(handler=_usage(collections))
    collection_commands = collections.add_subparsers(
        title="collections commands", metavar="COMMAND"
    )
    clist = collection_commands.add_parser("list", help="list the workspace's collections")
    _workspace_arg(clist)
    _json_flag(clist)
    clist.set_defaults(handler=workspace_commands.collections_list)
    cinfo = collection_commands.add_parser("info", help="summarise one collection")
    cinfo.add_argument("collection", metavar="NAME", help="collection name or folder")
    _workspace_arg(cinfo)
    _json_flag(cinfo)
    cinfo.set_defaults(handler=workspace_commands.collections_info)

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
    points.add_argument(
        "--points-crs", help="CRS of the points (default: the file's, else EPSG:4326)"
    )
    points.add_argument("--max-distance-pixels", type=int, default=0,
                        help="use the nearest valid pixel within N pixels of a nodata one")  # fmt: skip
    points.add_argument("--keep-missing", action="store_true",
                        help="keep points outside every record as rows of nulls")  # fmt: skip
    points.add_argument("--match", choices=("all", "latest"), default="all",
                        help="every record covering a point, or only the latest")  # fmt: skip
    _workspace_arg(points)
    _filter_args(points)
    points.set_defaults(handler=pixel_commands.sample_points)

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
    read.set_defaults(handler=pixel_commands.read)
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
