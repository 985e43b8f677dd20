"""The catalog, build and workspace commands of the ``rasteret`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "build",
    "build_table",
    "collections_info",
    "collections_list",
    "datasets_info",
    "datasets_list",
    "datasets_register_local",
    "open_collection",
    "pairs",
    "print_json",
    "print_table",
]


# ----------------------------------------------------------------------------- datasets
def datasets_list(args: argparse.Namespace) -> int:
    """``rasteret datasets list``: every known dataset (shipped, user, this process)."""
    from rasteret.catalog import datasets

    entries = datasets()
    if args.json:
        print_json([d.to_dict() for d in entries])
        return 0
    rows = [("ID", "SOURCE", "BANDS", "LICENSE", "TITLE")]
    for d in entries:
        source = f"stac:{d.collection}" if d.stac_api and not d.static_catalog else (
            "static-catalog" if d.static_catalog else "geoparquet"
        )  # fmt: skip
        rows.append((d.id, source, str(len(d.bands)), d.license or "-", d.title))
    print_table(rows)
    return 0


def datasets_info(args: argparse.Namespace) -> int:
    """``rasteret datasets info ID``: one dataset's descriptor."""
    from rasteret.catalog import get_dataset

    descriptor = get_dataset(args.dataset)
    data = descriptor.to_dict()
    if args.json:
        print_json(data)
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


def datasets_register_local(args: argparse.Namespace) -> int:
    """``rasteret datasets register-local``: persist a record table or static catalog."""
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
def build(args: argparse.Namespace) -> int:
    """``rasteret build ID``: build a collection of a catalog dataset."""
    from rasteret.stac.build import build as build_dataset

    collection = build_dataset(
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


def build_table(args: argparse.Namespace) -> int:
    """``rasteret build-table PATH``: build a collection from a record table."""
    from rasteret.builders import build_from_table

    band_index = {k: int(v) for k, v in pairs(args.band_index, "--band-index BAND=INDEX").items()}
    collection = build_from_table(
        args.path,
        name=args.name,
        data_source=args.data_source,
        workspace_dir=args.workspace_dir,
        column_map=pairs(args.column_map, "--column-map SOURCE=CANONICAL") or None,
        href_column=args.href_column,
        band_index_map=band_index or None,
        url_rewrite_patterns=pairs(args.url_rewrite, "--url-rewrite OLD=NEW") or None,
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


def open_collection(args: argparse.Namespace) -> Any:
    """The collection named (or at the folder) ``args.collection``, filtered by bbox/dates."""
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


def collections_list(args: argparse.Namespace) -> int:
    """``rasteret collections list``: the workspace's stored collections."""
    from rasteret.builders import load

    rows: list[dict[str, Any]] = []
    for folder in _stored(_workspace(args)):
        collection = load(folder)
        rows.append({"name": collection.name or folder.name.removesuffix("_records"),
                     "records": len(collection), "bands": collection.bands,
                     "data_source": collection.data_source, "path": str(folder)})  # fmt: skip
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no collections in {_workspace(args)}")
        return 0
    table = [("NAME", "RECORDS", "BANDS", "DATA SOURCE")]
    table += [
        (r["name"], str(r["records"]), ",".join(r["bands"]) or "-", r["data_source"] or "-")
        for r in rows
    ]
    print_table(table)
    return 0


def collections_info(args: argparse.Namespace) -> int:
    """``rasteret collections info NAME``: a summary of one collection."""
    collection = open_collection(args)
    summary = collection.describe()
    summary["data_source"] = collection.data_source
    summary["path"] = str(collection.path) if collection.path else None
    summary["asset_keys"] = collection.asset_keys
    if args.json:
        print_json(summary)
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


# ----------------------------------------------------------------------------- printing
def print_json(value: Any) -> None:
    """Indented JSON on stdout (dates and paths as strings)."""
    print(json.dumps(value, indent=2, default=str))


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns on stdout; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def pairs(values: Sequence[str], what: str) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}``; ``what`` names the expected form in errors."""
    out = {}
    for value in values:
        key, sep, target = value.partition("=")
        if not sep or not key or not target:
            raise ValueError(f"expected {what}, got {value!r}")
        out[key] = target
    return out
