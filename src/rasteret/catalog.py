"""The dataset catalog: named descriptors of public and private COG collections.

A :class:`DatasetDescriptor` says where a dataset's records are found (a STAC API and
collection, a static STAC catalog, or a GeoParquet record table), how band codes map to assets
(``"B04" -> asset "red"``, or a sample of a multi-band file), how its objects are reached
(region, requester-pays, anonymous, URL rewrites) and under which licence. Descriptors for
common public datasets ship with rasteret (``catalog_data/datasets.json``); users add their
own with :func:`register` (this process, or persisted with ``persist=True``) and
:func:`register_local`, persisted in ``$XDG_CONFIG_HOME/rasteret/datasets.json``
(``~/.config/rasteret/datasets.json``).

``rasteret.build("earthsearch/sentinel-2-l2a", name=..., bbox=..., date_range=...)`` builds a
collection from a descriptor; :func:`band_map_for` gives a ``data_source``'s band mapping.

>>> band_map_for("earthsearch/sentinel-2-l2a")["B04"]
BandSource(asset='red', band_index=None)
>>> get_dataset("earthsearch/naip").bands["NIR"]
BandSource(asset='image', band_index=3)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

from rasteret.errors import SchemaError
from rasteret.io.stores import CloudConfig

__all__ = [
    "BandMapLike",
    "BandSource",
    "CloudSettings",
    "DatasetDescriptor",
    "band_map_for",
    "cloud_config_for",
    "datasets",
    "get_dataset",
    "parse_band_map",
    "register",
    "register_local",
    "remap_assets",
    "unregister",
    "user_registry_path",
]


@dataclass(frozen=True, slots=True)
class BandSource:
    """Where one logical band lives in a record: an asset key and a sample index."""

    asset: str
    """The asset key (STAC asset name, or the href column of a multi-band table)."""
    band_index: int | None = None
    """0-based sample of a multi-band file; ``None`` means the asset's first (only) sample."""


BandMapLike: TypeAlias = Mapping[str, "str | BandSource | Sequence[Any] | Mapping[str, Any]"]
"""band code -> ``"asset"``, ``("asset", index)``, ``{"asset": ..., "band_index": ...}``
or a :class:`BandSource`."""


def parse_band_map(
    band_map: BandMapLike | None, band_index_map: Mapping[str, int] | None = None
) -> dict[str, BandSource]:
    """Normalise every accepted band-map form to ``{band code: BandSource}``.

    ``band_index_map`` sets (or overrides) the sample index of bands, e.g. for one multi-band
    asset: ``parse_band_map({"R": "image", "G": "image"}, {"R": 0, "G": 1})``.

    >>> parse_band_map({"B04": "red", "NIR": ("image", 3)})
    {'B04': BandSource(asset='red', band_index=None), 'NIR': BandSource(asset='image', band_index=3)}

    Raises:
        SchemaError: a value of another form, an empty asset key or a negative index.
    """
    out: dict[str, BandSource] = {}
    for band, value in (band_map or {}).items():
        if isinstance(value, BandSource):
            source = value
        elif isinstance(value, str):
            source = BandSource(value)
        elif isinstance(value, Mapping) and "asset" in value:
            source = BandSource(str(value["asset"]), _index(value.get("band_index"), band))
        elif isinstance(value, Sequence) and len(value) == 2 and isinstance(value[0], str):
            source = BandSource(value[0], _index(value[1], band))
        else:
            raise SchemaError(
                f"expected band_map[{band!r}] as an asset key, (asset, sample_index) or "
                f"{{'asset': ..., 'band_index': ...}}; got {value!r}"
            )
        if not band or not source.asset:
            raise SchemaError(f"expected a band code and an asset key, got {band!r}: {value!r}")
        out[str(band)] = source
    for band, index in (band_index_map or {}).items():
        if band not in out:
            raise SchemaError(
                f"band_index_map names band {band!r} that band_map does not map to an asset "
                f"(band_map bands: {sorted(out)}); give both, e.g. band_map={{{band!r}: 'image'}}"
            )
        out[band] = BandSource(out[band].asset, _index(index, band))
    return out


def _index(value: Any, band: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(f"expected a 0-based sample index for band {band!r}, got {value!r}")
    return value


def remap_assets(
    assets: Mapping[str, Mapping[str, Any]] | None, band_map: Mapping[str, BandSource]
) -> dict[str, dict[str, Any]]:
    """One record's assets keyed by band code (``{band: asset + band_index}``).

    Bands whose asset is missing from the record are left out.

    >>> remap_assets({"image": {"href": "s3://b/n.tif"}}, {"NIR": BandSource("image", 3)})
    {'NIR': {'href': 's3://b/n.tif', 'band_index': 3}}
    """
    out: dict[str, dict[str, Any]] = {}
    for band, source in band_map.items():
        asset = (assets or {}).get(source.asset)
        if asset and asset.get("href"):
            entry = dict(asset)
            if source.band_index is not None:
                entry["band_index"] = source.band_index
            out[band] = entry
    return out


_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_BAND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_BUILTIN_FILE = "datasets.json"


@dataclass(frozen=True)
class CloudSettings:
    """How a dataset's objects are reached."""

    region: str | None = None
    """S3 region of the bucket(s)."""
    requester_pays: bool = False
    """The bucket bills the requester (credentials needed)."""
    anonymous: bool | None = None
    """True: unsigned requests; None: sign only when credentials are configured."""
    url_rewrite_patterns: Mapping[str, str] = field(default_factory=dict)
    """``{prefix: replacement}`` applied to hrefs (e.g. an https mirror -> ``s3://``)."""

    def __hash__(self) -> int:
        return hash((self.region, self.requester_pays, self.anonymous,
                     tuple(sorted(self.url_rewrite_patterns.items()))))  # fmt: skip

    def to_cloud_config(self) -> CloudConfig:
        """The :class:`~rasteret.io.stores.CloudConfig` for reads and enrichment."""
        return CloudConfig(
            requester_pays=self.requester_pays,
            region=self.region,
            url_rewrite_patterns=dict(self.url_rewrite_patterns) or None,
            anonymous=self.anonymous,
        )


@dataclass(frozen=True)
class DatasetDescriptor:
    """One dataset: identity, where its records are, band map, access and licence.

    Exactly one of ``stac_api`` (with ``collection``; ``static_catalog=True`` for a static
    catalog's href) or ``geoparquet`` says where the records are.
    """

    id: str
    """``provider/name``, e.g. ``"earthsearch/sentinel-2-l2a"``."""
    title: str
    bands: Mapping[str, BandSource]
    """band code -> asset key and sample index."""
    stac_api: str | None = None
    """STAC API root URL, or a static catalog's href when ``static_catalog``."""
    collection: str | None = None
    """STAC collection id searched."""
    static_catalog: bool = False
    geoparquet: str | None = None
    """A (STAC) GeoParquet record table: file, folder or ``s3://`` URL."""
    href_column: str | None = None
    """For a GeoParquet table with one multi-band URL per row (bands by sample index)."""
    column_map: Mapping[str, str] = field(default_factory=dict)
    """``{source column: canonical column}`` for a GeoParquet table."""
    cloud: CloudSettings = field(default_factory=CloudSettings)
    license: str = ""
    """SPDX id or ``"proprietary"`` (see ``license_url``)."""
    license_url: str = ""
    description: str = ""
    example_bbox: tuple[float, float, float, float] | None = None
    """A CRS84 bbox known to hold data (docs and live smoke tests)."""
    example_date_range: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        where = f"dataset descriptor {self.id!r}"
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise SchemaError(f"expected a dataset id like 'provider/name', got {self.id!r}")
        if not self.title:
            raise SchemaError(f"expected a title in {where}, got none")
        if bool(self.stac_api) == bool(self.geoparquet):
            raise SchemaError(
                f"expected exactly one of stac_api or geoparquet in {where}, got "
                f"stac_api={self.stac_api!r}, geoparquet={self.geoparquet!r}"
            )
        if self.stac_api and not self.static_catalog and not self.collection:
            raise SchemaError(f"expected a STAC collection id with stac_api in {where}")
        bands = parse_band_map(self.bands)
        if not bands:
            raise SchemaError(f"expected at least one band in {where}, got none")
        bad = [b for b in bands if not _BAND.match(b)]
        if bad:
            raise SchemaError(f"expected band codes of letters, digits, _.:- in {where}, got {bad}")
        if self.href_column and any(s.asset != self.href_column for s in bands.values()):
            raise SchemaError(
                f"expected every band of {where} to name href_column {self.href_column!r}"
            )
        object.__setattr__(self, "bands", bands)
        if isinstance(self.cloud, Mapping):
            object.__setattr__(self, "cloud", CloudSettings(**self.cloud))
        for name in ("example_bbox", "example_date_range"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.example_bbox is not None and len(self.example_bbox) != 4:
            raise SchemaError(f"expected example_bbox of 4 numbers in {where}")

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def band_index_map(self) -> dict[str, int]:
        """band code -> sample index, for the bands that name one."""
        return {b: s.band_index for b, s in self.bands.items() if s.band_index is not None}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` reads back."""
        out = dataclasses.asdict(self)
        out["bands"] = {
            band: source.asset
            if source.band_index is None
            else {"asset": source.asset, "band_index": source.band_index}
            for band, source in self.bands.items()
        }
        for name in ("example_bbox", "example_date_range"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetDescriptor:
        """Read a descriptor dict (as in ``datasets.json``).

        Raises:
            SchemaError: unknown keys, missing required keys or invalid values.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SchemaError(
                f"unknown keys {unknown} in dataset descriptor {data.get('id')!r}; "
                f"expected keys from {sorted(names)}"
            )
        values = dict(data)
        values["bands"] = parse_band_map(values.get("bands") or {})
        values["cloud"] = CloudSettings(**(values.get("cloud") or {}))
        try:
            return cls(**values)
        except TypeError as exc:
            raise SchemaError(f"invalid dataset descriptor {data.get('id')!r}: {exc}") from exc


_session: dict[str, DatasetDescriptor] = {}
"""Descriptors registered in this process without persisting them."""


def user_registry_path() -> Path:
    """``$XDG_CONFIG_HOME/rasteret/datasets.json`` (default ``~/.config/rasteret/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join("~", ".config")
    return Path(base).expanduser() / "rasteret" / "datasets.json"


def _builtin() -> dict[str, DatasetDescriptor]:
    text = resources.files("rasteret.catalog_data").joinpath(_BUILTIN_FILE).read_text("utf-8")
    return {d.id: d for d in map(DatasetDescriptor.from_dict, json.loads(text)["datasets"])}


def _user() -> dict[str, DatasetDescriptor]:
    path = user_registry_path()
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text("utf-8")).get("datasets", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise SchemaError(
            f"expected a JSON object with a 'datasets' list in {path}: {exc}"
        ) from exc
    return {d.id: d for d in map(DatasetDescriptor.from_dict, entries)}


def datasets() -> list[DatasetDescriptor]:
    """Every known descriptor: shipped ones, then the user's, then this process's."""
    merged = {**_builtin(), **_user(), **_session}
    return list(merged.values())


def get_dataset(dataset_id: str) -> DatasetDescriptor:
    """The descriptor named ``dataset_id``; a bare name (``"sentinel-2-l2a"``) or a STAC
    collection id matches too when exactly one descriptor has it.

    Raises:
        SchemaError: no descriptor, or several, match.
    """
    known = {d.id: d for d in datasets()}
    if dataset_id in known:
        return known[dataset_id]
    matches = [d for d in known.values() if dataset_id in (d.id.split("/", 1)[1], d.collection)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SchemaError(
            f"dataset {dataset_id!r} is ambiguous: it matches {[d.id for d in matches]}; "
            "use the full 'provider/name' id"
        )
    close = difflib.get_close_matches(dataset_id, list(known), n=3)
    hint = f" (did you mean {close}?)" if close else ""
    raise SchemaError(f"unknown dataset {dataset_id!r}{hint}; known datasets: {sorted(known)}")


def cloud_config_for(data_source: str) -> CloudConfig | None:
    """The cloud settings (requester-pays, region, rewrites) of a registered data source.

    ``""`` and names that are not registered datasets have none (``None``).
    """
    if not data_source:
        return None
    try:
        return get_dataset(data_source).cloud.to_cloud_config()
    except SchemaError:
        return None


def band_map_for(data_source: str) -> dict[str, BandSource]:
    """The band mapping (band code -> asset key, sample index) of a registered data source.

    ``""`` and names that are not registered datasets have no mapping (``{}``).
    """
    if not data_source:
        return {}
    try:
        return dict(get_dataset(data_source).bands)
    except SchemaError:
        return {}


def register(
    descriptor: DatasetDescriptor | Mapping[str, Any],
    *,
    persist: bool = False,
    overwrite: bool = False,
) -> DatasetDescriptor:
    """Add a descriptor for this process, or (``persist=True``) to the user's registry file.

    Raises:
        SchemaError: an invalid descriptor, or its id is taken and ``overwrite`` is False.
    """
    if not isinstance(descriptor, DatasetDescriptor):
        descriptor = DatasetDescriptor.from_dict(descriptor)
    if not overwrite and descriptor.id in {d.id for d in datasets()}:
        raise SchemaError(
            f"dataset {descriptor.id!r} is already registered; pass overwrite=True to replace it"
        )
    if persist:
        entries = _user()
        entries[descriptor.id] = descriptor
        _write_user(entries)
        _session.pop(descriptor.id, None)
    else:
        _session[descriptor.id] = descriptor
    return descriptor


def register_local(
    dataset_id: str,
    source: str | os.PathLike[str],
    *,
    bands: BandMapLike,
    band_index_map: Mapping[str, int] | None = None,
    title: str = "",
    description: str = "",
    license: str = "",
    href_column: str | None = None,
    column_map: Mapping[str, str] | None = None,
    static_catalog: bool | None = None,
    collection: str | None = None,
    cloud: CloudSettings | Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> DatasetDescriptor:
    """Register the user's own record table or static STAC catalog, persisted for later runs.

    ``source`` is a (Geo)Parquet record table (file, folder, ``s3://``...) or, when it ends
    in ``.json`` (or ``static_catalog=True``), a static STAC catalog. A bare ``dataset_id``
    gets the ``local/`` prefix.

    Example::

        register_local("local/field-survey", "/data/survey.parquet",
                       bands={"R": "url", "G": "url"}, band_index_map={"R": 0, "G": 1},
                       href_column="url")
    """
    text = os.fspath(source)
    is_catalog = text.lower().endswith(".json") if static_catalog is None else static_catalog
    if "://" not in text:
        text = str(Path(text).expanduser().resolve())
    descriptor = DatasetDescriptor(
        id=dataset_id if "/" in dataset_id else f"local/{dataset_id}",
        title=title or dataset_id,
        bands=parse_band_map(bands, band_index_map),
        stac_api=text if is_catalog else None,
        collection=collection,
        static_catalog=is_catalog,
        geoparquet=None if is_catalog else text,
        href_column=href_column,
        column_map=dict(column_map or {}),
        cloud=CloudSettings(**cloud) if isinstance(cloud, Mapping) else cloud or CloudSettings(),
        license=license,
        description=description,
    )
    return register(descriptor, persist=True, overwrite=overwrite)


def unregister(dataset_id: str) -> None:
    """Remove a user or process registration (shipped descriptors cannot be removed).

    Raises:
        SchemaError: ``dataset_id`` is not a user or process registration.
    """
    entries = _user()
    if dataset_id in entries:
        del entries[dataset_id]
        _write_user(entries)
    elif _session.pop(dataset_id, None) is None:
        raise SchemaError(
            f"expected a dataset registered by the user, got {dataset_id!r}; user datasets: "
            f"{sorted({*entries, *_session})}"
        )


def _write_user(entries: Mapping[str, DatasetDescriptor]) -> None:
    path = user_registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"datasets": [d.to_dict() for d in entries.values()]}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    os.replace(tmp, path)
