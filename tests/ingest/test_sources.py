"""read_source: every input form -> one pa.Table, with pushdown and geometry metadata kept."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import duckdb
import geopandas as gpd
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import shapely
from shapely.geometry import box

from rasteret.errors import (
    FetchError,
    ObjectNotFoundError,
    SchemaError,
    UnsupportedFormatError,
)
from rasteret.ingest.filesystems import (
    azure_filesystem_from_env,
    filesystem_for_uri,
    gcs_filesystem_from_env,
    s3_filesystem_from_env,
)
from rasteret.ingest.sources import read_source
from rasteret.testing.servers import MotoS3Server
from rasteret.types import field_geometry_encoding, geometries_to_shapely

IDS = [f"scene-{i:03d}" for i in range(6)]
FOOTPRINTS = [box(77.5 + i * 0.1, 12.9, 77.6 + i * 0.1, 13.0) for i in range(6)]


@pytest.fixture
def gdf() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "id": IDS,
            "datetime": pd.to_datetime([dt.datetime(2023 + i % 3, 1 + i, 5) for i in range(6)]),
            "eo:cloud_cover": [5.0, 50.0, 12.5, 80.0, 1.0, 19.0],
            "year": [2023 + i % 3 for i in range(6)],
            "url": [f"s3://my-bucket/{i}.tif" for i in IDS],
        },
        geometry=FOOTPRINTS,
        crs="EPSG:4326",
    )


@pytest.fixture
def table(gdf: gpd.GeoDataFrame) -> pa.Table:
    return pa.table(gdf.to_arrow(geometry_encoding="WKB", index=False))


def assert_records(got: pa.Table, ids: list[str] = IDS, *, crs_kept: bool = True) -> None:
    assert isinstance(got, pa.Table)
    assert got.column("id").to_pylist() == ids
    geoms = geometries_to_shapely(got, geometry_column="geometry")
    expected = [FOOTPRINTS[IDS.index(i)] for i in ids]
    assert all(shapely.equals(g, e) for g, e in zip(geoms, expected, strict=True))
    if crs_kept:
        encoding, crs = field_geometry_encoding(got.schema.field("geometry"), got.schema.metadata)
        assert encoding is not None
        assert crs is not None
        assert crs.to_epsg() == 4326


class StreamOnly:
    """An object that only speaks the Arrow C stream protocol."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self._table.__arrow_c_stream__(requested_schema)


# ---------------------------------------------------------------- in-memory forms


def test_table_batch_reader_dataset_stream(table: pa.Table) -> None:
    assert read_source(table) is table
    assert_records(read_source(table.to_batches()[0]))
    assert_records(read_source(table.to_reader()))
    assert_records(read_source(ds.dataset(table)))
    assert_records(read_source(StreamOnly(table)))


def test_geodataframe_and_its_arrow_exports(gdf: gpd.GeoDataFrame) -> None:
    assert_records(read_source(gdf))
    assert_records(read_source(gdf.to_arrow(geometry_encoding="WKB")))
    native = read_source(gdf.to_arrow(geometry_encoding="geoarrow"))
    assert field_geometry_encoding(native.schema.field("geometry"))[0] == "geoarrow.polygon"
    assert_records(native)


def test_duckdb_relation_and_polars(table: pa.Table) -> None:
    con = duckdb.connect()
    con.register("records", table)
    relation = con.sql('SELECT * FROM records WHERE "eo:cloud_cover" < 20 ORDER BY id')
    assert_records(read_source(relation), [IDS[0], IDS[2], IDS[4], IDS[5]], crs_kept=False)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    got = read_source(frame)
    assert_records(got, crs_kept=False)
    assert got.column("eo:cloud_cover").to_pylist() == table.column("eo:cloud_cover").to_pylist()


def test_pandas_frame_with_shapely_objects_and_python_records() -> None:
    frame = pd.DataFrame({"id": IDS[:2], "geometry": FOOTPRINTS[:2], "n": [1, 2]})
    got = read_source(frame)
    assert got.schema.field("geometry").metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    assert_records(got, IDS[:2], crs_kept=False)
    utm = read_source(pd.DataFrame(gpd.GeoDataFrame(frame, crs=32643)))
    assert field_geometry_encoding(utm.schema.field("geometry"))[1].to_epsg() == 32643
    records = [{"id": IDS[0], "geometry": FOOTPRINTS[0]}, {"id": IDS[1], "geometry": FOOTPRINTS[1]}]
    assert_records(read_source(records), IDS[:2], crs_kept=False)
    columns = {"id": IDS[:2], "geometry": [g.wkt for g in FOOTPRINTS[:2]], "n": [1, 2]}
    assert read_source(columns).column("n").to_pylist() == [1, 2]


def test_columns_and_filters_on_in_memory_forms(table: pa.Table) -> None:
    expr = ds.field("eo:cloud_cover") < 20
    for source in (table, table.to_reader(), StreamOnly(table), ds.dataset(table)):
        got = read_source(source, columns=["id", "geometry"], filter_expr=expr)
        assert got.column_names == ["id", "geometry"]
        assert_records(got, [IDS[0], IDS[2], IDS[4], IDS[5]])
    dnf = read_source(table, filter_expr=[("year", "=", 2024)])
    assert dnf.column("id").to_pylist() == [IDS[1], IDS[4]]


def test_unknown_forms_and_columns(table: pa.Table) -> None:
    with pytest.raises(UnsupportedFormatError, match="Arrow-compatible"):
        read_source(42)
    with pytest.raises(SchemaError, match="nope"):
        read_source(table, columns=["id", "nope"])
    with pytest.raises(SchemaError, match="filter_expr"):
        read_source(table, filter_expr="year = 2024")


# ---------------------------------------------------------------- files and folders


def test_geoparquet_file_keeps_geo_metadata(gdf: gpd.GeoDataFrame, tmp_path: Path) -> None:
    path = tmp_path / "records.parquet"
    gdf.to_crs(32643).to_parquet(path)
    got = read_source(path)
    assert b"geo" in got.schema.metadata
    encoding, crs = field_geometry_encoding(got.schema.field("geometry"), got.schema.metadata)
    assert (encoding, crs.to_epsg()) == ("geoarrow.wkb", 32643)
    assert got.column("id").to_pylist() == IDS
    # str, file:// and a list of paths all reach the same file
    assert read_source(str(path)).equals(got)
    assert read_source(f"file://{path}").equals(got)
    assert read_source([path, path]).num_rows == 2 * len(IDS)


def test_arrow_ipc_file(table: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "records.arrow"
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)
    assert_records(read_source(path, filter_expr=ds.field("id") != "x"))


def _write_hive(table: pa.Table, root: Path) -> None:
    ds.write_dataset(
        table, root, format="parquet", partitioning=["year"], partitioning_flavor="hive"
    )


def test_hive_folder_prunes_partitions_and_projects(table: pa.Table, tmp_path: Path) -> None:
    root = tmp_path / "records"
    _write_hive(table, root)
    # A partition that can only be skipped if the filter reaches partition pruning: its file
    # is not Parquet at all, so opening it would fail.
    for file in (root / "year=2025").iterdir():
        file.write_bytes(b"not parquet")
    got = read_source(
        root, columns=["id", "geometry", "year"], filter_expr=ds.field("year") == 2024
    )
    assert got.column_names == ["id", "geometry", "year"]
    assert sorted(got.column("id").to_pylist()) == [IDS[1], IDS[4]]
    assert set(got.column("year").to_pylist()) == {2024}
    with pytest.raises(SchemaError, match="records"):
        read_source(root)  # without the filter the broken file is read and reported


def test_missing_paths_and_http(tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"nothing\.parquet") as info:
        read_source(tmp_path / "nothing.parquet")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(UnsupportedFormatError, match="download the file first"):
        read_source("https://example.com/records.parquet")
    with pytest.raises(UnsupportedFormatError, match="ftp://"):
        read_source("ftp://example.com/records.parquet")


# ---------------------------------------------------------------- object stores


@pytest.mark.integration
def test_s3_parquet_and_hive_folder_through_env(
    s3_env: MotoS3Server, table: pa.Table, gdf: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    s3_env.create_bucket("records-bucket")
    buffer = io.BytesIO()
    gdf.to_parquet(buffer)
    url = s3_env.put("records-bucket", "cat/records.parquet", buffer.getvalue())
    got = read_source(url, filter_expr=ds.field("eo:cloud_cover") < 20)
    assert_records(got, [IDS[0], IDS[2], IDS[4], IDS[5]])
    root = tmp_path / "hive"
    _write_hive(table, root)
    s3_env.put_dir("records-bucket", root, prefix="hive")
    got = read_source("s3://records-bucket/hive", filter_expr=ds.field("year") == 2023)
    assert sorted(got.column("id").to_pylist()) == [IDS[0], IDS[3]]
    with pytest.raises(ObjectNotFoundError):
        read_source("s3://records-bucket/cat/missing.parquet")


@pytest.mark.integration
def test_s3_filesystem_follows_the_standard_variables(
    s3_env: MotoS3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env.create_bucket("env-bucket")
    s3_env.put("env-bucket", "a.parquet", _parquet_bytes(pa.table({"id": ["x"]})))
    options = s3_filesystem_from_env().__reduce__()[1][0]
    host = s3_env.endpoint_url.split("://")[1]
    assert (options["endpoint_override"], options["scheme"]) == (host, "http")
    assert options["access_key"] == s3_env.env["AWS_ACCESS_KEY_ID"]
    assert options["region"] == s3_env.env["AWS_REGION"]
    assert not options["anonymous"]
    # http endpoints work without AWS_ALLOW_HTTP, as for the COG reads (and boto3)
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    assert read_source("s3://env-bucket/a.parquet").column("id").to_pylist() == ["x"]
    # no credentials anywhere -> anonymous; AWS_SKIP_SIGNATURE forces it too
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert s3_filesystem_from_env().__reduce__()[1][0]["anonymous"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_SKIP_SIGNATURE", "true")
    assert s3_filesystem_from_env().__reduce__()[1][0]["anonymous"]


def test_explicit_filesystem_overrides_the_scheme(table: pa.Table, tmp_path: Path) -> None:
    pq.write_table(table, tmp_path / "t.parquet")
    local = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    got = read_source("s3://t.parquet", filesystem=local)
    assert_records(got)


def test_gcs_and_azure_filesystems_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    fs, path = filesystem_for_uri("gs://bucket/cat/records.parquet")
    assert isinstance(fs, pafs.GcsFileSystem)
    assert path == "bucket/cat/records.parquet"
    assert gcs_filesystem_from_env().__reduce__()[1][0]["anonymous"]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    options = gcs_filesystem_from_env().__reduce__()[1][0]
    assert (options["endpoint_override"], options["scheme"]) == ("127.0.0.1:4443", "http")
    with pytest.raises(FetchError, match="AZURE_STORAGE_ACCOUNT_NAME"):
        filesystem_for_uri("az://container/records.parquet")
    fs, path = filesystem_for_uri("abfss://container@acct.dfs.core.windows.net/a/b.parquet")
    assert isinstance(fs, pafs.AzureFileSystem)
    assert path == "container/a/b.parquet"
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1")
    monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", "http://127.0.0.1:10000")
    assert isinstance(azure_filesystem_from_env(), pafs.AzureFileSystem)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_stream_only_objects_keep_field_metadata(table: pa.Table) -> None:
    got = read_source(StreamOnly(table))
    meta = json.loads(got.schema.field("geometry").metadata[b"ARROW:extension:metadata"])
    assert "crs" in meta
