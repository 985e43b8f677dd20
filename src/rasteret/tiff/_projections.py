"""GeoTIFF coordinate transformation codes (ProjCoordTransGeoKey) -> PROJJSON conversions.

Each GeoTIFF projection method maps to its EPSG (or PROJ) method and parameters. A parameter
lists the GeoKeys to try in order, as libgeotiff does (GDAL writes e.g. Lambert Azimuthal
Equal Area with ProjCenterLat/LongGeoKey, and Transverse Mercator with ProjNatOrigin*).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rasteret.errors import UnsupportedFormatError

__all__ = ["cartesian_axes", "conversion_json"]

# GeoKey ids of projection parameters.
_STD_PARALLEL_1, _STD_PARALLEL_2 = 3078, 3079
_NAT_LONG, _NAT_LAT, _FALSE_EASTING, _FALSE_NORTHING = 3080, 3081, 3082, 3083
_FO_LONG, _FO_LAT, _FO_EASTING, _FO_NORTHING = 3084, 3085, 3086, 3087
_CENTER_LONG, _CENTER_LAT, _CENTER_EASTING, _CENTER_NORTHING = 3088, 3089, 3090, 3091
_SCALE_NAT, _SCALE_CENTER, _AZIMUTH, _STRAIGHT_VERT_POLE, _RECTIFIED_ANGLE = (
    3092,
    3093,
    3094,
    3095,
    3096,
)
_PROJECTION, _PROJ_COORD_TRANS = 3074, 3075
_USER_DEFINED = 32767

# (EPSG parameter name, EPSG parameter code, unit kind, GeoKeys to try, default)
_Param = tuple[str, int, str, tuple[int, ...], float]
_LAT = (_NAT_LAT, _FO_LAT, _CENTER_LAT)
_LON = (_NAT_LONG, _FO_LONG, _CENTER_LONG, _STRAIGHT_VERT_POLE)
_CLAT = (_CENTER_LAT, _NAT_LAT, _FO_LAT)
_CLON = (_CENTER_LONG, _NAT_LONG, _FO_LONG)
_FE = (_FALSE_EASTING, _CENTER_EASTING, _FO_EASTING)
_FN = (_FALSE_NORTHING, _CENTER_NORTHING, _FO_NORTHING)
_SCALE = (_SCALE_NAT, _SCALE_CENTER)

_LAT0: _Param = ("Latitude of natural origin", 8801, "angle", _LAT, 0.0)
_LON0: _Param = ("Longitude of natural origin", 8802, "angle", _LON, 0.0)
_CLAT0: _Param = ("Latitude of natural origin", 8801, "angle", _CLAT, 0.0)
_CLON0: _Param = ("Longitude of natural origin", 8802, "angle", _CLON, 0.0)
_K0: _Param = ("Scale factor at natural origin", 8805, "scale", _SCALE, 1.0)
_X0: _Param = ("False easting", 8806, "length", _FE, 0.0)
_Y0: _Param = ("False northing", 8807, "length", _FN, 0.0)
_SP1: _Param = ("Latitude of 1st standard parallel", 8823, "angle", (_STD_PARALLEL_1,), 0.0)
_SP2: _Param = ("Latitude of 2nd standard parallel", 8824, "angle", (_STD_PARALLEL_2,), 0.0)
_FO: tuple[_Param, ...] = (
    ("Latitude of false origin", 8821, "angle", (_FO_LAT, _NAT_LAT, _CENTER_LAT), 0.0),
    ("Longitude of false origin", 8822, "angle", (_FO_LONG, _NAT_LONG, _CENTER_LONG), 0.0),
    _SP1,
    _SP2,
    ("Easting at false origin", 8826, "length", (_FO_EASTING, *_FE), 0.0),
    ("Northing at false origin", 8827, "length", (_FO_NORTHING, *_FN), 0.0),
)
_HOTINE: tuple[_Param, ...] = (
    ("Latitude of projection centre", 8811, "angle", _CLAT, 0.0),
    ("Longitude of projection centre", 8812, "angle", _CLON, 0.0),
    ("Azimuth at projection centre", 8813, "angle", (_AZIMUTH,), 0.0),
    ("Angle from Rectified to Skew Grid", 8814, "angle", (_RECTIFIED_ANGLE, _AZIMUTH), 0.0),
    ("Scale factor at projection centre", 8815, "scale", (_SCALE_CENTER, _SCALE_NAT), 1.0),
)

# ProjCoordTransGeoKey -> (method name, EPSG method code or None, parameters)
_METHODS: Final[dict[int, tuple[str, int | None, tuple[_Param, ...]]]] = {
    1: ("Transverse Mercator", 9807, (_LAT0, _LON0, _K0, _X0, _Y0)),
    3: ("Hotine Oblique Mercator (variant A)", 9812, (*_HOTINE, _X0, _Y0)),
    7: ("Mercator (variant A)", 9804, (_LAT0, _LON0, _K0, _X0, _Y0)),
    8: ("Lambert Conic Conformal (2SP)", 9802, _FO),
    9: ("Lambert Conic Conformal (1SP)", 9801, (_LAT0, _LON0, _K0, _X0, _Y0)),
    10: ("Lambert Azimuthal Equal Area", 9820, (_CLAT0, _CLON0, _X0, _Y0)),
    11: ("Albers Equal Area", 9822, _FO),
    12: ("Azimuthal Equidistant", 1125, (_CLAT0, _CLON0, _X0, _Y0)),
    13: ("Equidistant Conic", 1119, _FO),
    14: ("Stereographic", None, (_CLAT0, _CLON0, _K0, _X0, _Y0)),
    15: ("Polar Stereographic (variant A)", 9810, (_LAT0, _LON0, _K0, _X0, _Y0)),
    16: ("Oblique Stereographic", 9809, (_LAT0, _LON0, _K0, _X0, _Y0)),
    17: ("Equidistant Cylindrical", 1028, (_SP1, _CLAT0, _CLON0, _X0, _Y0)),
    18: ("Cassini-Soldner", 9806, (_LAT0, _LON0, _X0, _Y0)),
    19: ("Gnomonic", None, (_CLAT0, _CLON0, _X0, _Y0)),
    20: ("Miller Cylindrical", None, (_CLON0, _X0, _Y0)),
    21: ("Orthographic", 9840, (_CLAT0, _CLON0, _X0, _Y0)),
    22: ("American Polyconic", 9818, (_LAT0, _LON0, _X0, _Y0)),
    23: ("Robinson", None, (_CLON0, _X0, _Y0)),
    24: ("Sinusoidal", None, (_CLON0, _X0, _Y0)),
    25: ("Van Der Grinten", None, (_CLON0, _X0, _Y0)),
    26: ("New Zealand Map Grid", 9811, (_LAT0, _LON0, _X0, _Y0)),
    27: ("Transverse Mercator (South Orientated)", 9808, (_LAT0, _LON0, _K0, _X0, _Y0)),
    28: ("Lambert Cylindrical Equal Area", 9835, (_SP1, _LON0, _X0, _Y0)),
    9815: (
        "Hotine Oblique Mercator (variant B)",
        9815,
        (
            *_HOTINE,
            ("Easting at projection centre", 8816, "length", _FE, 0.0),
            ("Northing at projection centre", 8817, "length", _FN, 0.0),
        ),
    ),
}
"""The transformation codes GDAL writes and reads (GeoTIFF 1.1 plus GDAL's 28 and 9815)."""


def _value(keys: Mapping[int, Any], candidates: tuple[int, ...], default: float) -> float:
    for key in candidates:
        value = keys.get(key)
        if isinstance(value, tuple) and value:
            return float(value[0])
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return default


def conversion_json(
    keys: Mapping[int, Any], linear: dict[str, Any], angular: dict[str, Any]
) -> dict[str, Any]:
    """The PROJJSON ``Conversion`` of a user-defined projected CRS.

    ``linear`` and ``angular`` are the PROJJSON units of ProjLinearUnitsGeoKey and
    GeogAngularUnitsGeoKey, in which GeoTIFF stores the parameters.

    Raises:
        UnsupportedFormatError: no ProjectionGeoKey code and an unknown ProjCoordTransGeoKey.
    """
    from pyproj.crs import CoordinateOperation

    projection = keys.get(_PROJECTION)
    if isinstance(projection, int) and projection not in (0, _USER_DEFINED):
        return CoordinateOperation.from_epsg(projection).to_json_dict()
    method_code = keys.get(_PROJ_COORD_TRANS)
    name: str
    epsg: int | None
    params: tuple[_Param, ...]
    if method_code == 7 and _STD_PARALLEL_1 in keys:
        name, epsg, params = "Mercator (variant B)", 9805, (_SP1, _LON0, _X0, _Y0)
    elif method_code == 15 and abs(_value(keys, _LAT, 90.0)) != 90.0:
        # GDAL reads a polar stereographic origin latitude other than +-90 as variant B.
        lat_ts = ("Latitude of standard parallel", 8832, "angle", _LAT, 0.0)
        lon = ("Longitude of origin", 8833, "angle", _LON, 0.0)
        name, epsg, params = "Polar Stereographic (variant B)", 9829, (lat_ts, lon, _X0, _Y0)
    elif isinstance(method_code, int) and method_code in _METHODS:
        name, epsg, params = _METHODS[method_code]
    else:
        raise UnsupportedFormatError(
            f"expected a known ProjCoordTransGeoKey (one of {sorted(_METHODS)}), got {method_code}"
        )
    units = {"angle": angular, "length": linear, "scale": "unity"}
    method: dict[str, Any] = {"name": name}
    if epsg is not None:
        method["id"] = {"authority": "EPSG", "code": epsg}
    return {
        "type": "Conversion",
        "name": "unknown",
        "method": method,
        "parameters": [
            {
                "name": pname,
                "value": _value(keys, candidates, default),
                "unit": units[kind],
                "id": {"authority": "EPSG", "code": pcode},
            }
            for pname, pcode, kind, candidates, default in params
        ],
    }


def cartesian_axes(conversion: dict[str, Any], linear: dict[str, Any]) -> list[dict[str, Any]]:
    """Easting/northing axes of a projected CRS, with PROJ's polar stereographic conventions.

    For a polar stereographic projection GDAL (through PROJ) gives the axes the directions
    that EPSG uses at the poles: both "south" (meridians 90 and 180 E) at the north pole,
    both "north" (meridians 90 and 0 E) at the south pole.
    """
    method = conversion.get("method", {}).get("id", {}).get("code")
    values = {p["id"]["code"]: p["value"] for p in conversion.get("parameters", []) if "id" in p}
    direction, meridians = None, (0.0, 0.0)
    if method == 9810 and abs(abs(values.get(8801, 0.0)) - 90.0) < 1e-10:
        north = values[8801] > 0
    elif method == 9829 and values.get(8832, 0.0) != 0:
        north = values[8832] > 0
    else:
        north = None
    if north is not None:
        direction, meridians = ("south", (90.0, 180.0)) if north else ("north", (90.0, 0.0))
    axes: list[dict[str, Any]] = []
    for (name, abbreviation, default), meridian in zip(
        (("Easting", "E", "east"), ("Northing", "N", "north")), meridians, strict=True
    ):
        axis: dict[str, Any] = {
            "name": name,
            "abbreviation": abbreviation,
            "direction": direction or default,
            "unit": linear,
        }
        if direction is not None:
            axis["meridian"] = {"longitude": meridian}
        axes.append(axis)
    return axes
