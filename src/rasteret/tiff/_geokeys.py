"""GeoKeyDirectory decoding and GeoKeys -> CRS, the way GDAL reads what GDAL writes.

EPSG-coded CRSs become ``"EPSG:<code>"``. User-defined ones (code 32767) are rebuilt as
PROJJSON from the datum, ellipsoid, prime meridian, units and projection keys, or taken from
an ESRI PE string / WKT citation, and returned as WKT2 that pyproj (and GDAL) can parse.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from rasteret.errors import HeaderError, UnsupportedFormatError
from rasteret.tiff._projections import cartesian_axes, conversion_json

__all__ = ["GeoKeys", "Key", "crs_from_keys", "parse_geo_keys"]

USER_DEFINED: Final = 32767
_ESRI_PE: Final = "ESRI PE String = "
_ARC_SECOND: Final = 4.84813681109536e-06
"""Radians per arc-second."""
_WKT_STARTS: Final = ("PROJCS[", "GEOGCS[", "PROJCRS[", "GEOGCRS[", "GEODCRS[", "COMPD_CS[")


class Key:
    """GeoKey ids (GeoTIFF 1.1) that rasteret reads."""

    GT_MODEL_TYPE: Final = 1024
    GT_RASTER_TYPE: Final = 1025
    GT_CITATION: Final = 1026
    GEOGRAPHIC_TYPE: Final = 2048
    GEOG_CITATION: Final = 2049
    GEOG_GEODETIC_DATUM: Final = 2050
    GEOG_PRIME_MERIDIAN: Final = 2051
    GEOG_LINEAR_UNITS: Final = 2052
    GEOG_LINEAR_UNIT_SIZE: Final = 2053
    GEOG_ANGULAR_UNITS: Final = 2054
    GEOG_ANGULAR_UNIT_SIZE: Final = 2055
    GEOG_ELLIPSOID: Final = 2056
    GEOG_SEMI_MAJOR_AXIS: Final = 2057
    GEOG_SEMI_MINOR_AXIS: Final = 2058
    GEOG_INV_FLATTENING: Final = 2059
    GEOG_PRIME_MERIDIAN_LONG: Final = 2061
    GEOG_TOWGS84: Final = 2062
    PROJECTED_CS_TYPE: Final = 3072
    PCS_CITATION: Final = 3073
    PROJECTION: Final = 3074
    PROJ_COORD_TRANS: Final = 3075
    PROJ_LINEAR_UNITS: Final = 3076
    PROJ_LINEAR_UNIT_SIZE: Final = 3077


GeoKeys = Mapping[int, int | str | tuple[float, ...] | tuple[int, ...]]
"""Decoded GeoKeys: SHORT keys as int, ASCII keys as str, DOUBLE keys as a tuple."""


def parse_geo_keys(
    directory: tuple[int, ...],
    doubles: tuple[float, ...] | None,
    ascii_params: str | None,
    where: str,
) -> dict[int, int | str | tuple[float, ...] | tuple[int, ...]]:
    """Decode a GeoKeyDirectory with its GeoDoubleParams and GeoAsciiParams.

    Raises:
        HeaderError: the directory is shorter than it says, or a key points outside its params.
    """
    if len(directory) < 4:
        raise HeaderError(
            f"expected a GeoKeyDirectory of at least 4 values{where}, got {directory}"
        )
    n = directory[3]
    if len(directory) < 4 + 4 * n:
        raise HeaderError(
            f"expected {n} GeoKeys ({4 + 4 * n} values) in the GeoKeyDirectory{where}, "
            f"got {len(directory)} values"
        )
    keys: dict[int, int | str | tuple[float, ...] | tuple[int, ...]] = {}
    for i in range(n):
        key, location, count, value = directory[4 + 4 * i : 8 + 4 * i]
        if location == 0:
            keys[key] = value
            continue
        source: Any = {34736: doubles, 34737: ascii_params, 34735: directory}.get(location)
        if source is None or value + count > len(source):
            raise HeaderError(
                f"expected GeoKey {key} within tag {location} (values {value}..{value + count}){where}, "
                f"got {'no such tag' if source is None else f'{len(source)} values'}"
            )
        part = source[value : value + count]
        if location == 34737:
            keys[key] = part.rstrip("|\0").encode("latin-1").decode("utf-8", errors="replace")
        elif location == 34735 and count == 1:
            keys[key] = int(part[0])
        else:
            keys[key] = tuple(part)
    return keys


def _number(keys: GeoKeys, key: int) -> float | None:
    value = keys.get(key)
    if isinstance(value, tuple):
        return float(value[0]) if value else None
    return float(value) if isinstance(value, int) else None


def _code(keys: GeoKeys, key: int) -> int | None:
    value = keys.get(key)
    return value if isinstance(value, int) and value not in (0, USER_DEFINED) else None


def _citation_field(keys: GeoKeys, key: int, field: str) -> str | None:
    """``field`` of a GDAL-style citation ``"GCS Name = x|Datum = y|..."``."""
    text = keys.get(key)
    if not isinstance(text, str):
        return None
    for part in text.split("|"):
        name, sep, value = part.partition(" = ")
        if sep and name.strip() == field and value.strip():
            return value.strip()
    return None


@functools.lru_cache(maxsize=4)
def _units(category: str) -> dict[int, tuple[str, float]]:
    from pyproj.database import get_units_map

    units = get_units_map(auth_name="EPSG", category=category)
    return {int(u.code): (u.name, u.conv_factor) for u in units.values()}


def _unit(keys: GeoKeys, key: int, size_key: int, category: str, default: int) -> dict[str, Any]:
    kind = "LinearUnit" if category == "linear" else "AngularUnit"
    code = keys.get(key, default)
    if code == USER_DEFINED:
        size = _number(keys, size_key)
        if size is None:
            raise UnsupportedFormatError(f"expected GeoKey {size_key} for a user-defined unit")
        return {"type": kind, "name": "unknown", "conversion_factor": size}
    if not isinstance(code, int) or code not in _units(category):
        raise UnsupportedFormatError(
            f"expected an EPSG {category} unit code in GeoKey {key}, got {code}"
        )
    name, factor = _units(category)[code]
    return {
        "type": kind,
        "name": name,
        "conversion_factor": factor,
        "id": {"authority": "EPSG", "code": code},
    }


def _datum(keys: GeoKeys, angular: dict[str, Any]) -> dict[str, Any]:
    from pyproj.crs import Datum, Ellipsoid, PrimeMeridian

    code = _code(keys, Key.GEOG_GEODETIC_DATUM)
    if code is not None:
        datum = Datum.from_epsg(code).to_json_dict()
        datum.pop("$schema", None)
        return datum
    ellipsoid_code = _code(keys, Key.GEOG_ELLIPSOID)
    if ellipsoid_code is not None:
        ellipsoid = Ellipsoid.from_epsg(ellipsoid_code).to_json_dict()
    else:
        a = _number(keys, Key.GEOG_SEMI_MAJOR_AXIS)
        if a is None:
            raise UnsupportedFormatError("expected an ellipsoid code or GeogSemiMajorAxisGeoKey")
        unit = _unit(keys, Key.GEOG_LINEAR_UNITS, Key.GEOG_LINEAR_UNIT_SIZE, "linear", 9001)
        ellipsoid = {
            "name": _citation_field(keys, Key.GEOG_CITATION, "Ellipsoid") or "unknown",
            "semi_major_axis": {"value": a, "unit": unit},
        }
        inv_f, b = _number(keys, Key.GEOG_INV_FLATTENING), _number(keys, Key.GEOG_SEMI_MINOR_AXIS)
        if inv_f:
            ellipsoid["inverse_flattening"] = inv_f
        elif b is not None and b != a and b != 0:
            ellipsoid["semi_minor_axis"] = {"value": b, "unit": unit}
        else:
            ellipsoid["radius"] = ellipsoid.pop("semi_major_axis")
    pm_code = _code(keys, Key.GEOG_PRIME_MERIDIAN)
    if pm_code is not None:
        prime_meridian = PrimeMeridian.from_epsg(pm_code).to_json_dict()
    else:
        longitude = _number(keys, Key.GEOG_PRIME_MERIDIAN_LONG) or 0.0
        name = _citation_field(keys, Key.GEOG_CITATION, "Primem") or (
            "Greenwich" if longitude == 0 else "unknown"
        )
        prime_meridian = {"name": name, "longitude": {"value": longitude, "unit": angular}}
    name = _citation_field(keys, Key.GEOG_CITATION, "Datum") or "unknown"
    return {
        "type": "GeodeticReferenceFrame",
        "name": name,
        "ellipsoid": ellipsoid,
        "prime_meridian": prime_meridian,
    }


def _geographic(keys: GeoKeys) -> dict[str, Any]:
    """PROJJSON of the geographic (base) CRS."""
    from pyproj import CRS

    code = _code(keys, Key.GEOGRAPHIC_TYPE)
    if code is not None:
        return CRS.from_epsg(code).to_json_dict()
    angular = _unit(keys, Key.GEOG_ANGULAR_UNITS, Key.GEOG_ANGULAR_UNIT_SIZE, "angular", 9102)
    name = _citation_field(keys, Key.GEOG_CITATION, "GCS Name")
    if name is None and isinstance(keys.get(Key.GEOG_CITATION), str):
        name = str(keys[Key.GEOG_CITATION])
    axes = [("Geodetic latitude", "Lat", "north"), ("Geodetic longitude", "Lon", "east")]
    datum = _datum(keys, angular)
    return {
        "type": "GeographicCRS",
        "name": name or "unknown",
        "datum_ensemble" if datum.get("type") == "DatumEnsemble" else "datum": datum,
        "coordinate_system": {
            "subtype": "ellipsoidal",
            "axis": [
                {"name": n, "abbreviation": a, "direction": d, "unit": angular} for n, a, d in axes
            ],
        },
    }


def _bound(keys: GeoKeys, source: dict[str, Any]) -> dict[str, Any]:
    """Wrap ``source`` in a BoundCRS to WGS 84 when GeogTOWGS84GeoKey is present."""
    from pyproj import CRS

    towgs84 = keys.get(Key.GEOG_TOWGS84)
    if not isinstance(towgs84, tuple) or len(towgs84) not in (3, 7):
        return source
    names = [
        "X-axis translation",
        "Y-axis translation",
        "Z-axis translation",
        "X-axis rotation",
        "Y-axis rotation",
        "Z-axis rotation",
        "Scale difference",
    ]
    codes = [8605, 8606, 8607, 8608, 8609, 8610, 8611]
    arc_second = {"type": "AngularUnit", "name": "arc-second", "conversion_factor": _ARC_SECOND}
    ppm = {"type": "ScaleUnit", "name": "parts per million", "conversion_factor": 1e-6}
    units: list[Any] = ["metre"] * 3 + [arc_second] * 3 + [ppm]
    method = (
        {
            "name": "Geocentric translations (geog2D domain)",
            "id": {"authority": "EPSG", "code": 9603},
        }
        if len(towgs84) == 3
        else {
            "name": "Position Vector transformation (geog2D domain)",
            "id": {"authority": "EPSG", "code": 9606},
        }
    )
    return {
        "type": "BoundCRS",
        "source_crs": source,
        "target_crs": CRS.from_epsg(4326).to_json_dict(),
        "transformation": {
            "name": "Transformation to WGS84",
            "method": method,
            "parameters": [
                {
                    "name": names[i],
                    "value": float(v),
                    "unit": units[i],
                    "id": {"authority": "EPSG", "code": codes[i]},
                }
                for i, v in enumerate(towgs84)
            ],
        },
    }


@dataclass(frozen=True, slots=True)
class KeyCRS:
    """The CRS that GeoKeys describe."""

    crs: str | None
    epsg: int | None


def _from_citation(keys: GeoKeys) -> str | None:
    """A WKT or ESRI PE string carried in a citation key, if any."""
    for key in (Key.GT_CITATION, Key.PCS_CITATION, Key.GEOG_CITATION):
        text = keys.get(key)
        if isinstance(text, str):
            text = text.removeprefix(_ESRI_PE).strip()
            if text.upper().startswith(_WKT_STARTS):
                return text
    return None


def crs_from_keys(keys: GeoKeys, where: str) -> KeyCRS:
    """The CRS of decoded GeoKeys: ``EPSG:<code>`` when coded, else WKT2 rebuilt from the keys.

    Raises:
        UnsupportedFormatError: a geocentric model, or user-defined keys that cannot be
            turned into a CRS (unknown projection method, unit or datum code).
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    model = keys.get(Key.GT_MODEL_TYPE)
    citation_wkt = _from_citation(keys)
    if citation_wkt is not None:
        try:
            return KeyCRS(CRS.from_user_input(citation_wkt).to_wkt(), None)
        except CRSError as exc:
            raise UnsupportedFormatError(
                f"expected a WKT or ESRI PE string that pyproj can parse in the citation{where}, "
                f"got {citation_wkt[:200]!r}: {_short(exc)}"
            ) from exc
    projected = _code(keys, Key.PROJECTED_CS_TYPE)
    if projected is not None:
        return KeyCRS(f"EPSG:{projected}", projected)
    geographic = _code(keys, Key.GEOGRAPHIC_TYPE)
    if model != 1 and geographic is not None and Key.GEOG_TOWGS84 not in keys:
        return KeyCRS(f"EPSG:{geographic}", geographic)
    if model not in (1, 2):
        if model is None and not keys.keys() & {Key.GEOGRAPHIC_TYPE, Key.PROJECTION}:
            return KeyCRS(None, None)
        raise UnsupportedFormatError(
            f"expected GTModelTypeGeoKey 1 (projected) or 2 (geographic){where}, got {model}"
        )
    try:
        base = _geographic(keys)
        if model == 2:
            return KeyCRS(CRS.from_json_dict(_bound(keys, base)).to_wkt(), None)
        linear = _unit(keys, Key.PROJ_LINEAR_UNITS, Key.PROJ_LINEAR_UNIT_SIZE, "linear", 9001)
        angular = _unit(keys, Key.GEOG_ANGULAR_UNITS, Key.GEOG_ANGULAR_UNIT_SIZE, "angular", 9102)
        name = keys.get(Key.PCS_CITATION) or keys.get(Key.GT_CITATION) or "unknown"
        conversion = conversion_json(keys, linear, angular)
        projected_json = {
            "type": "ProjectedCRS",
            "name": str(name).split("|")[0] or "unknown",
            "base_crs": base,
            "conversion": conversion,
            "coordinate_system": {
                "subtype": "Cartesian",
                "axis": cartesian_axes(conversion, linear),
            },
        }
        return KeyCRS(CRS.from_json_dict(_bound(keys, projected_json)).to_wkt(), None)
    except (CRSError, UnsupportedFormatError) as exc:
        raise UnsupportedFormatError(
            f"expected GeoKeys that describe a CRS{where}, got user-defined keys that do not: "
            f"{_short(exc)}"
        ) from exc


def _short(exc: Exception) -> str:
    """PROJ's own complaint, without the (long) PROJJSON that pyproj echoes before it."""
    text = str(exc)
    start = text.find("(Internal Proj Error")
    return text[start:] if start >= 0 else text[:300]
