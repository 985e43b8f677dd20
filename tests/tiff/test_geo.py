"""georeference() against rasterio/GDAL: CRS, transform, PixelIsPoint, nodata, scale/offset."""

from __future__ import annotations

import dataclasses
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS
from rasterio.control import GroundControlPoint
from rasterio.enums import Resampling

from rasteret.errors import HeaderError, UnsupportedFormatError
from rasteret.tiff.geo import GeoReference, georeference, overview_transform, parse_nodata
from rasteret.tiff.header import ImageFileDirectory, IncompleteHeaderError, parse_header

TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)


def _write(path: Path, *, crs: Any = "EPSG:32633", transform: Affine | None = TRANSFORM,
           dtype: str = "uint16", count: int = 1, width: int = 40, height: int = 30,
           tags: dict[str, str] | None = None, **kw: Any) -> Path:  # fmt: skip
    profile: dict[str, Any] = {"driver": "GTiff", "width": width, "height": height,
                               "count": count, "dtype": dtype, **kw}  # fmt: skip
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    with rasterio.open(path, "w", **profile) as dst:
        if tags:
            dst.update_tags(**tags)
        dst.write(np.zeros((count, height, width), dtype))
    return path


def _geo(path: Path) -> GeoReference:
    return georeference(parse_header(path.read_bytes()).ifds[0], url=str(path))


def _ifd(path: Path) -> ImageFileDirectory:
    return parse_header(path.read_bytes()).ifds[0]


# --------------------------------------------------------------------------- CRS

EPSG_CRSS = ["EPSG:32633", "EPSG:4326", "EPSG:3857", "EPSG:26717", "EPSG:4269", "EPSG:2263",
             "EPSG:3035", "EPSG:3031", "EPSG:27700"]  # fmt: skip

USER_CRSS = {
    "tmerc_grs80": "+proj=tmerc +lat_0=0 +lon_0=10.5 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m",
    "tmerc_us_ft": "+proj=tmerc +lat_0=0 +lon_0=10.5 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +units=us-ft",
    "tmerc_to_meter": "+proj=tmerc +lat_0=0 +lon_0=10 +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +to_meter=0.3",
    "tmerc_towgs84": "+proj=tmerc +lat_0=0 +lon_0=9 +k=1 +x_0=3500000 +y_0=0 +ellps=bessel +towgs84=598.1,73.7,418.2,0.202,0.045,-2.455,6.7 +units=m",
    "tmerc_paris": "+proj=tmerc +lat_0=0 +lon_0=3 +k=1 +x_0=500000 +y_0=0 +ellps=intl +pm=paris +units=m",
    "utm_grs80": "+proj=utm +zone=33 +ellps=GRS80 +units=m",
    "lcc_2sp_ft": "+proj=lcc +lat_1=30 +lat_2=60 +lat_0=40 +lon_0=-100 +x_0=0 +y_0=0 +datum=WGS84 +units=us-ft",
    "lcc_1sp": "+proj=lcc +lat_1=45 +lat_0=45 +lon_0=3 +k_0=0.99 +x_0=700000 +y_0=600000 +ellps=GRS80 +units=m",
    "laea": "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m",
    "aea_nad83": "+proj=aea +lat_0=23 +lon_0=-96 +lat_1=29.5 +lat_2=45.5 +x_0=0 +y_0=0 +datum=NAD83 +units=m",
    "merc_a": "+proj=merc +lon_0=0 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "merc_b": "+proj=merc +lat_ts=33 +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "stere_north_pole": "+proj=stere +lat_0=90 +lon_0=-45 +k=0.994 +x_0=2000000 +y_0=2000000 +datum=WGS84 +units=m",
    "stere_lat_ts": "+proj=stere +lat_0=-90 +lat_ts=-71 +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "sterea": "+proj=sterea +lat_0=52.15 +lon_0=5.38 +k=0.9999 +x_0=155000 +y_0=463000 +ellps=bessel +units=m",
    "stere": "+proj=stere +lat_0=40 +lon_0=10 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "eqc": "+proj=eqc +lat_ts=30 +lat_0=0 +lon_0=10 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "cea": "+proj=cea +lat_ts=30 +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "aeqd": "+proj=aeqd +lat_0=40 +lon_0=-100 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "ortho": "+proj=ortho +lat_0=40 +lon_0=-100 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "cass": "+proj=cass +lat_0=10 +lon_0=-61 +x_0=86501.46 +y_0=65379.0 +ellps=clrk80 +units=m",
    "poly": "+proj=poly +lat_0=0 +lon_0=-54 +x_0=5000000 +y_0=10000000 +ellps=GRS80 +units=m",
    "sinu_sphere": "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m",
    "robin": "+proj=robin +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "gnom": "+proj=gnom +lat_0=90 +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "mill": "+proj=mill +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "vandg": "+proj=vandg +lon_0=0 +x_0=0 +y_0=0 +R=6371000 +units=m",
    "eqdc": "+proj=eqdc +lat_0=40 +lon_0=-96 +lat_1=20 +lat_2=60 +x_0=0 +y_0=0 +datum=NAD83 +units=m",
    "omerc_a": "+proj=omerc +lat_0=4 +lonc=102.25 +alpha=323.025796466667 +k=0.99984 +x_0=804671 +y_0=0 +no_uoff +gamma=323.130102361111 +ellps=GRS80 +units=m",
    "omerc_b": "+proj=omerc +lat_0=4 +lonc=115 +alpha=53.3158204722 +k=0.99984 +x_0=590476.87 +y_0=442857.65 +gamma=53.1301023611 +ellps=evrstSS +units=m",
    "longlat_grs80": "+proj=longlat +ellps=GRS80 +no_defs",
    "longlat_sphere": "+proj=longlat +R=6371000 +no_defs",
    "longlat_paris": "+proj=longlat +ellps=WGS84 +pm=paris +no_defs",
    "longlat_towgs84": "+proj=longlat +ellps=WGS84 +towgs84=0,0,0 +no_defs",
    "custom_names_wkt": 'PROJCS["foo",GEOGCS["bar",DATUM["baz",SPHEROID["s",6378000,290]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Mercator_1SP"],PARAMETER["central_meridian",5],PARAMETER["scale_factor",1],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]',
    "esri_pe_mollweide": 'PROJCS["World_Mollweide",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Mollweide"],PARAMETER["False_Easting",0.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",0.0],UNIT["Meter",1.0]]',
}  # fmt: skip


@pytest.mark.parametrize("code", EPSG_CRSS)
def test_epsg_crs_matches_rasterio(code: str, tmp_path: Path) -> None:
    path = _write(tmp_path / "e.tif", crs=code)
    geo = _geo(path)
    with rasterio.open(path) as src:
        assert geo.epsg == src.crs.to_epsg()
        assert geo.crs == f"EPSG:{geo.epsg}"
        assert CRS.from_user_input(geo.crs) == CRS.from_user_input(src.crs.to_wkt())


@pytest.mark.parametrize("name", sorted(USER_CRSS))
def test_user_defined_crs_matches_rasterio(name: str, tmp_path: Path) -> None:
    path = _write(tmp_path / "u.tif", crs=USER_CRSS[name])
    geo = _geo(path)
    assert geo.epsg is None
    assert geo.crs is not None
    ours = CRS.from_user_input(geo.crs)
    with rasterio.open(path) as src:
        theirs = CRS.from_user_input(src.crs.to_wkt())
    assert ours.equals(theirs, ignore_axis_order=True), (ours.to_wkt(), theirs.to_wkt())


def test_wkt_and_esri_citations_and_unknown_methods(tmp_path: Path) -> None:
    ifd = _ifd(_write(tmp_path / "t.tif", crs=USER_CRSS["tmerc_grs80"]))
    laea = CRS.from_user_input(USER_CRSS["laea"])
    for prefix, wkt in [("ESRI PE String = ", laea.to_wkt("WKT1_ESRI")), ("", laea.to_wkt())]:
        text = prefix + wkt
        keys = (1, 1, 0, 2, 1024, 0, 1, 1, 1026, 34737, len(text) + 1, 0)
        cited = dataclasses.replace(ifd, geo_key_directory=keys, geo_ascii_params=text + "|")
        ours = CRS.from_user_input(georeference(cited).crs)
        assert ours.equals(CRS.from_user_input(wkt), ignore_axis_order=True)
    assert ifd.geo_key_directory is not None
    directory = list(ifd.geo_key_directory)
    at = directory.index(3075, 4)  # ProjCoordTransGeoKey -> an unknown method code
    directory[at + 3] = 4000
    unknown = dataclasses.replace(ifd, geo_key_directory=tuple(directory))
    with pytest.raises(UnsupportedFormatError, match=r"ProjCoordTransGeoKey .*got 4000"):
        georeference(unknown, url="s3://b/k.tif")
    geocentric = dataclasses.replace(ifd, geo_key_directory=(1, 1, 0, 1, 1024, 0, 1, 3))
    with pytest.raises(
        UnsupportedFormatError, match=r"GTModelTypeGeoKey .* at s3://b/k\.tif, got 3"
    ):
        georeference(geocentric, url="s3://b/k.tif")


@pytest.mark.parametrize(
    ("directory", "match"),
    [
        ((1, 1, 0), "at least 4 values"),
        ((1, 1, 0, 2, 1024, 0, 1, 1), r"expected 2 GeoKeys \(12 values\)"),
        ((1, 1, 0, 1, 3072, 34736, 1, 99), r"GeoKey 3072 within tag 34736 .*got \d+ values"),
        ((1, 1, 0, 1, 3072, 4242, 1, 0), "got no such tag"),
    ],
)
def test_malformed_geokeys_are_header_errors(directory: tuple[int, ...], match: str,
                                             tmp_path: Path) -> None:  # fmt: skip
    path = _write(tmp_path / "g.tif", crs=USER_CRSS["tmerc_grs80"])  # has GeoDoubleParams
    ifd = dataclasses.replace(_ifd(path), geo_key_directory=directory)
    with pytest.raises(HeaderError, match=match):
        georeference(ifd, url="u")


# --------------------------------------------------------------------------- transform


@pytest.mark.parametrize("point", [False, True], ids=["area", "point"])
@pytest.mark.parametrize(
    "transform",
    [
        TRANSFORM,
        Affine(0.25, 0.0, -180.0, 0.0, -0.125, 90.0),
        Affine(30.0, 0.0, -1e6, 0.0, -30.0, 0.0),
    ],
    ids=["utm10m", "degrees", "negative_origin"],
)
def test_transform_matches_rasterio(transform: Affine, point: bool, tmp_path: Path) -> None:
    tags = {"AREA_OR_POINT": "Point"} if point else None
    path = _write(tmp_path / "t.tif", transform=transform, tags=tags)
    geo = _geo(path)
    with rasterio.open(path) as src:
        assert geo.transform == tuple(src.transform)[:6]
        assert geo.pixel_is_point == (src.tags().get("AREA_OR_POINT") == "Point") == point
    assert geo.georeferenced


def _patched(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    return path


@pytest.mark.parametrize("point", [False, True], ids=["area", "point"])
def test_north_up_model_transformation_matches_rasterio(point: bool, tmp_path: Path) -> None:
    # GDAL writes ModelTransformation only for rotated grids: write one, then zero its rotation.
    rotated = Affine(10.0, 2.0, 500000.0, 3.0, -10.0, 6000000.0)
    tags = {"AREA_OR_POINT": "Point"} if point else None
    path = _write(tmp_path / "m.tif", transform=rotated, tags=tags)
    matrix = _ifd(path).model_transformation
    assert matrix is not None
    with pytest.raises(UnsupportedFormatError, match=r"north-up ModelTransformation .*m\.tif"):
        _geo(path)
    north_up = list(matrix)
    north_up[1] = north_up[4] = 0.0
    _patched(path, struct.pack("<16d", *matrix), struct.pack("<16d", *north_up))
    geo = _geo(path)
    with rasterio.open(path) as src:
        assert geo.transform == tuple(src.transform)[:6]
    assert geo.transform[0] == 10.0
    assert geo.pixel_is_point == point


def test_negative_scale_y_is_north_up_like_gdal(tmp_path: Path) -> None:
    path = _write(tmp_path / "n.tif")
    _patched(path, struct.pack("<3d", 10.0, 10.0, 0.0), struct.pack("<3d", 10.0, -10.0, 0.0))
    geo = _geo(path)
    with rasterio.open(path) as src:
        assert geo.transform == tuple(src.transform)[:6]
    assert geo.transform[4] == -10.0


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_no_georeferencing_gives_identity_like_rasterio(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.tif", crs=None, transform=None)
    geo = _geo(path)
    with rasterio.open(path) as src:
        assert geo.transform == tuple(src.transform)[:6] == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        assert src.crs is None
    assert (geo.crs, geo.epsg, geo.georeferenced, geo.pixel_is_point) == (None, None, False, False)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_ground_control_points_are_unsupported(tmp_path: Path) -> None:
    gcps = [GroundControlPoint(row=r, col=c, x=500000.0 + 10 * c, y=6e6 - 10 * r)
            for r, c in [(0, 0), (0, 39), (29, 0), (29, 39)]]  # fmt: skip
    path = _write(tmp_path / "gcp.tif", crs=None, transform=None)
    with rasterio.open(path, "r+") as dst:
        dst.gcps = (gcps, CRS.from_epsg(32633))
    with pytest.raises(UnsupportedFormatError, match=r"4 ground control points only"):
        _geo(path)


@pytest.mark.parametrize(
    ("width", "height", "factors"), [(1000, 700, (2, 4, 8)), (1001, 703, (2, 3, 7))]
)
def test_overview_transform_matches_gdal(width: int, height: int, factors: tuple[int, ...],
                                         tmp_path: Path) -> None:  # fmt: skip
    path = _write(tmp_path / "o.tif", width=width, height=height, tiled=True, blockxsize=128,
                  blockysize=128)  # fmt: skip
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews(list(factors), Resampling.nearest)
    header = parse_header(path.read_bytes())
    base = _geo(path).transform
    assert len(header.overviews) == len(factors)
    for level, ifd in enumerate(header.overviews):
        ours = overview_transform(base, width, height, ifd.image_width, ifd.image_height)
        with rasterio.open(path, overview_level=level) as ovr:
            assert ours == pytest.approx(tuple(ovr.transform)[:6], rel=1e-15, abs=1e-9)


# --------------------------------------------------------------------------- nodata, scales


@pytest.mark.parametrize(
    ("dtype", "nodata"),
    [("uint16", 0), ("int16", -9999), ("uint32", 4294967295), ("float32", float("nan")),
     ("float32", float("-inf")), ("float32", 1e20), ("float64", float("inf")),
     ("float64", -3.4028234663852886e38), ("float64", 0.1), ("uint8", None)],
)  # fmt: skip
def test_nodata_matches_rasterio(dtype: str, nodata: float | None, tmp_path: Path) -> None:
    geo = _geo(path := _write(tmp_path / "n.tif", dtype=dtype, nodata=nodata))
    with rasterio.open(path) as src:
        if src.nodata is None or not math.isnan(src.nodata):
            assert geo.nodata == src.nodata
        else:
            assert geo.nodata is not None
            assert math.isnan(geo.nodata)


def test_nodata_text_forms() -> None:
    assert parse_nodata("18446744073709551615") == float(2**64 - 1)
    assert parse_nodata(" -9223372036854775808\0") == float(-(2**63))
    assert parse_nodata("1" * 400) == float("inf")
    assert parse_nodata("-inf") == float("-inf")
    assert parse_nodata("1e+20") == 1e20
    with pytest.raises(HeaderError, match=r"number in GDAL_NODATA at u, got 'abc'"):
        parse_nodata("abc", where=" at u")


def test_scales_and_offsets_match_rasterio(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.tif", count=3, dtype="int16")
    with rasterio.open(path, "r+") as dst:
        dst.scales = (0.01, 1.0, 2.5)
        dst.offsets = (-10.0, 0.0, 0.5)
    geo = _geo(path)
    with rasterio.open(path) as src:
        assert geo.scales == src.scales
        assert geo.offsets == src.offsets
    # Only some samples given: the others default to 1 and 0, as GDAL reports.
    partial = _write(tmp_path / "p.tif", count=2)
    with rasterio.open(partial, "r+") as dst:
        dst.scales = (1.0, 0.5)  # GDAL writes SCALE and OFFSET items for sample 1 only
    ifd = _ifd(partial)
    assert ifd.gdal_metadata is not None
    assert 'sample="0"' not in ifd.gdal_metadata
    geo = _geo(partial)
    with rasterio.open(partial) as src:
        assert geo.scales == src.scales == (1.0, 0.5)
        assert geo.offsets == src.offsets == (0.0, 0.0)
    assert _geo(_write(tmp_path / "none.tif")).scales is None


def test_bad_gdal_metadata_is_a_header_error(tmp_path: Path) -> None:
    ifd = _ifd(_write(tmp_path / "x.tif"))
    broken = dataclasses.replace(ifd, gdal_metadata="<GDALMetadata><Item")
    with pytest.raises(HeaderError, match=r"GDAL_METADATA XML in IFD 0 at u"):
        georeference(broken, url="u")
    bad_number = dataclasses.replace(
        ifd,
        gdal_metadata='<GDALMetadata><Item name="SCALE" sample="0" role="scale">x</Item></GDALMetadata>',
    )
    with pytest.raises(HeaderError, match=r"number for scale of sample 0"):
        georeference(bad_number, url="u")


# --------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def geo_header(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("geo") / "g.tif"
    _write(path, crs=USER_CRSS["tmerc_towgs84"], dtype="int16", nodata=-1,
           tags={"AREA_OR_POINT": "Point"})  # fmt: skip
    with rasterio.open(path, "r+") as dst:
        dst.scales = (0.5,)
    data = path.read_bytes()
    return data[: parse_header(data).header_size]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_geokeys_raise_only_rasteret_errors(geo_header: bytes, data: st.DataObject) -> None:
    buf = bytearray(geo_header)
    ifd_end = 8 + 2 + 12 * struct.unpack_from("<H", buf, 8)[0] + 4
    for _ in range(data.draw(st.integers(1, 6))):  # mutate the tag values after the IFD
        buf[data.draw(st.integers(ifd_end, len(buf) - 1))] = data.draw(st.integers(0, 255))
    try:
        header = parse_header(bytes(buf))
        georeference(header.ifds[0], url="u")
    except (HeaderError, UnsupportedFormatError, IncompleteHeaderError):
        pass
