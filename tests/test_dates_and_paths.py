"""Date bounds of subset(), record datetimes, export/load targets and filesystem paths.

- ``subset(date_range=...)`` takes every common date form; a bound naming a calendar period
  (year, month, day) starts at its first instant and, as the end, includes the whole period.
- Record datetimes: year-months and nanosecond ISO strings are accepted, garbage is named.
- ``export``/``load`` on a moto S3 server: a complete collection or the previous one, never a
  mixture or leftovers; plain record Parquet files load too.
- ``build_from_table(path, filesystem=fs)``: a scheme-less path is the filesystem's own path.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import shapely

import rasteret
from rasteret.errors import (
    CollectionNotFoundError,
    ObjectNotFoundError,
    SchemaError,
    UnsupportedFormatError,
    WorkspaceError,
)
from rasteret.ingest import filesystems
from rasteret.ingest.filesystems import filesystem_for_uri, s3_filesystem_from_env
from rasteret.ingest.normalize import normalize_datetimes, normalize_records
from rasteret.ingest.store import MANIFEST
from rasteret.testing.servers import MotoS3Server

UTC = dt.UTC
EDGES = {
    "dec31": "2023-12-31T23:59:59.999999Z",
    "jan01": "2024-01-01T00:00:00Z",
    "jan10": "2024-01-10T12:00:00Z",
    "feb29": "2024-02-29T23:59:59.999999Z",
    "mar01": "2024-03-01T00:00:00Z",
    "dec2025": "2025-12-31T23:59:59.999999Z",
    "jan2026": "2026-01-01T00:00:00Z",
}


def _records(when: dict[str, str] = EDGES) -> pa.Table:
    n = len(when)
    return pa.table(
        {
            "id": list(when),
            "datetime": list(when.values()),
            "geometry": shapely.to_wkb([shapely.box(10 + i, 40, 10.5 + i, 40.5) for i in range(n)]),
            "assets": [{"B04": {"href": f"s3://bucket/{k}_B04.tif"}} for k in when],
            "eo:cloud_cover": [float(i) for i in range(n)],
        }
    )


@pytest.fixture
def edges() -> rasteret.Collection:
    return rasteret.build_from_table(_records())


def ids(collection: rasteret.Collection) -> list[str]:
    return collection.to_table(columns=["id"]).column("id").to_pylist()


# ---------------------------------------------------------------- subset(date_range=...)


@pytest.mark.parametrize(
    ("date_range", "expected"),
    [
        # calendar periods: the start's first instant through the end's last one
        (("2024-01", "2024-02"), ["jan01", "jan10", "feb29"]),
        (("2024", "2025"), ["jan01", "jan10", "feb29", "mar01", "dec2025"]),
        (("2024", "2024"), ["jan01", "jan10", "feb29", "mar01"]),
        (("2024-01-10", "2024-02-29"), ["jan10", "feb29"]),  # a plain date end: its whole day
        ((2024, 2024), ["jan01", "jan10", "feb29", "mar01"]),  # integer years, like records
        ((np.datetime64("2024-01-10"), np.datetime64("2024-02-29")), ["jan10", "feb29"]),
        ((np.datetime64("2024-01"), np.datetime64("2024-02")), ["jan01", "jan10", "feb29"]),
        ((np.datetime64("2024"), np.datetime64("2024")), ["jan01", "jan10", "feb29", "mar01"]),
        ((dt.date(2024, 1, 10), dt.date(2024, 2, 29)), ["jan10", "feb29"]),
        # instants: exactly that moment (naive = UTC)
        (("2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z"), ["jan01", "jan10", "feb29", "mar01"]),
        (("2024-01-01T00:00:00.000001Z", "2024-02-29T23:59:59.999998Z"), ["jan10"]),
        ((dt.datetime(2024, 1, 10, 12), dt.datetime(2024, 3, 1)), ["jan10", "feb29", "mar01"]),
        (
            (dt.datetime(2024, 1, 10, 13, tzinfo=ZoneInfo("Europe/Berlin")), "2024-01-10T12:00Z"),
            ["jan10"],
        ),
        (
            (pd.Timestamp("2024-01-10 12:00"), pd.Timestamp("2024-03-01")),
            ["jan10", "feb29", "mar01"],
        ),
        (
            (
                pd.Timestamp("2024-01-10 13:00", tz="Europe/Berlin"),
                pd.Timestamp("2024-01-10 12:00"),
            ),
            ["jan10"],
        ),
        (
            (
                np.datetime64("2024-01-10T12:00:00", "s"),
                np.datetime64("2024-02-29T23:59:59.999999999"),
            ),
            ["jan10", "feb29"],
        ),
        # open ends
        ((None, "2023"), ["dec31"]),
        (("2025-12", ".."), ["dec2025", "jan2026"]),
        ((None, None), list(EDGES)),
    ],
)
def test_date_range_bound_forms(
    edges: rasteret.Collection, date_range: tuple[Any, Any], expected: list[str]
) -> None:
    assert ids(edges.subset(date_range=date_range)) == expected


def test_sub_microsecond_bounds_round_inward(edges: rasteret.Collection) -> None:
    # records are microseconds: a start just after jan01 excludes it, an end just after keeps it
    assert ids(edges.subset(date_range=("2024-01-01T00:00:00.0000001Z", "2024-01-10"))) == ["jan10"]
    assert ids(edges.subset(date_range=("2023-12-31", "2024-01-01T00:00:00.0000009Z"))) == [
        "dec31",
        "jan01",
    ]
    ns = pd.Timestamp("2023-12-31T23:59:59.999999001Z")
    assert ids(edges.subset(date_range=(ns, "2024-01-01T00:00:00Z"))) == ["jan01"]


@pytest.mark.parametrize(
    ("date_range", "message"),
    [
        (("yesterday", "2024"), r"date_range start .*got 'yesterday' \(str\)"),
        (("2024", "2024-02-30"), r"date_range end .*got '2024-02-30'"),
        (("2024", "2024-13"), r"date_range end .*got '2024-13'"),
        ((np.datetime64("NaT", "D"), None), r"date_range start .*NaT"),
        ((True, None), r"date_range start .*got True \(bool\)"),
        ((1.5, None), r"got 1.5 \(float\)"),
        (("2024",), r"expected date_range=\(start, end\) with 2 values, got 1"),
        ("2024-01", r"expected date_range=\(start, end\).*got '2024-01'"),
    ],
)
def test_bad_date_ranges_say_what_was_expected(
    edges: rasteret.Collection, date_range: Any, message: str
) -> None:
    with pytest.raises(SchemaError, match=message):
        edges.subset(date_range=date_range)


# ---------------------------------------------------------------- record datetimes


def test_year_months_and_nanoseconds_in_record_datetimes() -> None:
    values = pa.array(
        [
            "2023-05",
            "2023-05-01T10:00:00.123456789Z",
            " 2023-05-01T12:00:00.9999999+02:00 ",
            "2023-05-01 10:00:00.000000999",
            "2023",
            None,
        ]
    )
    got = normalize_datetimes(values).to_pylist()
    assert got == [
        dt.datetime(2023, 5, 1, tzinfo=UTC),  # first instant of the month
        dt.datetime(2023, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),  # truncated to microseconds
        dt.datetime(2023, 5, 1, 10, 0, 0, 999999, tzinfo=UTC),
        dt.datetime(2023, 5, 1, 10, tzinfo=UTC),
        dt.datetime(2023, 1, 1, tzinfo=UTC),
        None,
    ]


def test_build_from_table_takes_year_month_and_nanosecond_strings() -> None:
    table = _records({"a": "2023-05", "b": "2023-05-01T10:00:00.123456789Z"})
    out = rasteret.build_from_table(table).to_table(columns=["datetime", "year", "month"])
    assert out.column("datetime").to_pylist() == [
        dt.datetime(2023, 5, 1, tzinfo=UTC),
        dt.datetime(2023, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
    ]
    assert out.column("month").to_pylist() == [5, 5]


def test_garbage_record_datetimes_name_column_rows_ids_and_values() -> None:
    table = _records({"a": "2023-05", "b": "not a date", "c": "2023-13", "d": "2024"})
    with pytest.raises(SchemaError) as info:
        normalize_records(table)
    message = str(info.value)
    assert "'datetime'" in message
    assert "'not a date' (row 1, id 'b')" in message
    assert "'2023-13' (row 2, id 'c')" in message
    assert "(row 0" not in message
    assert "(row 3" not in message
    # the start_datetime fallback is named as itself
    fallback = table.set_column(1, "datetime", pa.array([None] * 4, pa.timestamp("us")))
    fallback = fallback.append_column("start_datetime", pa.array(["2020", "x", "2021", "2022"]))
    with pytest.raises(SchemaError, match=r"'start_datetime'.*'x' \(row 1, id 'b'\)"):
        normalize_records(fallback)


def test_many_bad_record_datetimes_show_the_first_ten() -> None:
    values = pa.array(["2024"] * 1000 + [f"bad{i}" for i in range(25)] + ["2024-01"] * 1000)
    with pytest.raises(SchemaError, match=r"'bad0' \(row 1000\).*'bad9' \(row 1009\); the first"):
        normalize_datetimes(values)


# ---------------------------------------------------------------- filesystem= paths


def test_scheme_less_path_is_the_given_filesystems_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    pq.write_table(_records(), tmp_path / "data" / "rec.parquet")
    subtree = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    collection = rasteret.build_from_table("data/rec.parquet", filesystem=subtree)
    assert ids(collection) == list(EDGES)
    # the usual pyarrow style: S3FileSystem() + "bucket/key" (no request is made here)
    s3 = pafs.S3FileSystem(anonymous=True, region="us-east-1")
    assert filesystem_for_uri("bucket/cat/rec.parquet", s3) == (s3, "bucket/cat/rec.parquet")
    # the local filesystem keeps reading relative paths against the working directory
    monkeypatch.chdir(tmp_path)
    local = pafs.LocalFileSystem()
    assert filesystem_for_uri("data/rec.parquet", local)[1] == str(tmp_path / "data/rec.parquet")
    assert len(rasteret.build_from_table("data/rec.parquet", filesystem=local)) == len(EDGES)


@pytest.mark.integration
def test_s3_filesystem_with_bucket_key_path(s3_env: MotoS3Server) -> None:
    s3_env.create_bucket("fs-style")
    sink = pa.BufferOutputStream()
    pq.write_table(_records(), sink)
    s3_env.put("fs-style", "cat/rec.parquet", sink.getvalue().to_pybytes())
    collection = rasteret.build_from_table(
        "fs-style/cat/rec.parquet", filesystem=s3_filesystem_from_env()
    )
    assert ids(collection) == list(EDGES)


# ---------------------------------------------------------------- load(plain Parquet)


def test_load_opens_plain_record_parquet(tmp_path: Path, edges: rasteret.Collection) -> None:
    raw = tmp_path / "raw.parquet"
    pq.write_table(_records(), raw)
    assert ids(rasteret.load(raw)) == list(EDGES)
    assert rasteret.load(str(raw)).schema.field("datetime").type == pa.timestamp("us", tz="UTC")
    # a normalised table written by hand (not by export) keeps its extra columns
    written = tmp_path / "hand.parquet"
    pq.write_table(edges.to_table().append_column("label", pa.array(range(7))), written)
    loaded = rasteret.load(written)
    assert loaded.to_table(columns=["label"]).column(0).to_pylist() == list(range(7))
    assert loaded.path is None
    # a Hive folder of records without a manifest
    hive = tmp_path / "hive"
    pq.write_to_dataset(_records(), hive, partition_cols=["eo:cloud_cover"])
    assert sorted(ids(rasteret.load(hive))) == sorted(EDGES)


def test_load_says_what_it_expects(tmp_path: Path) -> None:
    # nothing there: a FileNotFoundError too, as open() would raise
    with pytest.raises(FileNotFoundError, match=r"or a Parquet/GeoParquet table .* got nothing"):
        rasteret.load(tmp_path / "missing")
    with pytest.raises(WorkspaceError, match="got nothing"):
        rasteret.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkspaceError, match="got no Parquet file") as empty:
        rasteret.load(tmp_path / "empty")
    assert not isinstance(empty.value, FileNotFoundError)  # something is there
    not_records = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), not_records)
    with pytest.raises(SchemaError, match="no 'id', 'datetime', 'geometry', 'assets' column"):
        rasteret.load(not_records)


# ---------------------------------------------------------------- local export


def test_failed_local_export_leaves_nothing(tmp_path: Path) -> None:
    folder = rasteret.build_from_table(_records()).export(tmp_path / "a_records")
    stale = rasteret.load(folder)
    rasteret.build_from_table(_records({"x": "2024"})).export(folder)  # stale's files are gone
    with pytest.raises(FileNotFoundError):
        stale.export(tmp_path / "out" / "b_records")
    assert not (tmp_path / "out").exists()
    assert ids(rasteret.load(folder)) == ["x"]


def test_export_refuses_unusable_targets_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edges: rasteret.Collection
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceError, match=r"bucket and a prefix.*got s3://bucket$"):
        edges.export("s3://bucket")
    with pytest.raises(WorkspaceError, match="bucket and a prefix"):
        edges.export("s3:///x")
    with pytest.raises(UnsupportedFormatError, match="HTTP"):
        edges.export("https://example.com/x")
    with pytest.raises(UnsupportedFormatError, match="ftp://"):
        edges.export("ftp://example.com/x")
    with pytest.raises(UnsupportedFormatError, match="HTTP"):
        rasteret.load("https://example.com/x")
    assert list(tmp_path.iterdir()) == []  # no "s3:" folder, no lock file
    assert ids(rasteret.load(edges.export(f"file://{tmp_path}/f_records"))) == list(EDGES)


# ---------------------------------------------------------------- export/load on S3


def keys(server: MotoS3Server, bucket: str) -> list[str]:
    """Object keys, without the empty folder markers pyarrow writes."""
    listing = server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in listing if not o["Key"].endswith("/"))


@pytest.mark.integration
def test_export_and_load_on_s3(s3_env: MotoS3Server, edges: rasteret.Collection) -> None:
    s3_env.create_bucket("exports")
    uri = "s3://exports/team/edges_records"
    assert edges.export(uri) == uri
    first = keys(s3_env, "exports")
    assert "team/edges_records/_rasteret.json" in first
    assert any(k.startswith("team/edges_records/year=2024/month=1/") for k in first)
    loaded = rasteret.load(uri)
    assert loaded.path == uri
    assert ids(loaded) == list(EDGES)
    assert loaded.schema.field("datetime").type == pa.timestamp("us", tz="UTC")
    assert ids(loaded.subset(date_range=("2024-01", "2024-02"))) == ["jan01", "jan10", "feb29"]

    # replacing it: the new files, then the manifest, then the old files go
    loaded.subset(date_range=("2025", None)).export(uri)
    assert ids(rasteret.load(uri)) == ["dec2025", "jan2026"]
    manifest = json.loads(
        s3_env.client()
        .get_object(Bucket="exports", Key=f"team/edges_records/{MANIFEST}")["Body"]
        .read()
    )
    assert keys(s3_env, "exports") == sorted(
        [f"team/edges_records/{MANIFEST}"] + [f"team/edges_records/{p}" for p in manifest["files"]]
    )
    with pytest.raises(FileNotFoundError):  # a collection opened before fails loudly
        loaded.to_table()


@pytest.mark.integration
@pytest.mark.parametrize("fail_at", [1, 2, "manifest"])
def test_failed_s3_export_keeps_the_previous_one(
    s3_env: MotoS3Server,
    edges: rasteret.Collection,
    monkeypatch: pytest.MonkeyPatch,
    fail_at: int | str,
) -> None:
    bucket = f"failing-{fail_at}"
    s3_env.create_bucket(bucket)
    uri = f"s3://{bucket}/edges_records"
    previous = edges.subset(date_range=(None, "2024-01")).export(uri)
    before = keys(s3_env, bucket)
    upload = filesystems._upload
    calls: list[str] = []

    def flaky(local: Path, filesystem: pafs.FileSystem, path: str) -> None:
        calls.append(path)
        if fail_at == len(calls) or (fail_at == "manifest" and path.endswith(MANIFEST)):
            raise OSError("AWS Error NETWORK_CONNECTION during PutObject: connection reset")
        upload(local, filesystem, path)

    monkeypatch.setattr(filesystems, "_upload", flaky)
    with pytest.raises(OSError, match=f"could not write the collection to {uri}"):
        edges.export(uri)
    assert keys(s3_env, bucket) == before  # nothing of the failed export is left
    assert ids(rasteret.load(previous)) == ["dec31", "jan01", "jan10"]

    # and into an empty prefix, a failed export leaves no object at all
    calls.clear()
    with pytest.raises(OSError, match="could not write"):
        edges.export(f"s3://{bucket}/fresh_records")
    listing = s3_env.client().list_objects_v2(Bucket=bucket, Prefix="fresh")
    assert listing.get("Contents", []) == []


@pytest.mark.integration
def test_s3_export_refuses_foreign_content_and_missing_buckets(
    s3_env: MotoS3Server,
    edges: rasteret.Collection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    s3_env.create_bucket("foreign")
    s3_env.put("foreign", "mine/thesis.tex", b"precious")
    s3_env.put("foreign", "file_records", b"a file")
    with pytest.raises(
        WorkspaceError, match=r"got 1 other objects \(e.g. 'thesis.tex'\); refusing"
    ):
        edges.export("s3://foreign/mine")
    with pytest.raises(WorkspaceError, match="got a file; refusing"):
        edges.export("s3://foreign/file_records")
    assert keys(s3_env, "foreign") == ["file_records", "mine/thesis.tex"]
    with pytest.raises(ObjectNotFoundError, match="could not write the collection to s3://no-such"):
        edges.export("s3://no-such-bucket/x")
    assert list(tmp_path.iterdir()) == []  # no local "s3:" folder


@pytest.mark.integration
def test_s3_load_refuses_partial_copies_and_reads_plain_parquet(
    s3_env: MotoS3Server, edges: rasteret.Collection
) -> None:
    s3_env.create_bucket("loads")
    uri = edges.export("s3://loads/torn_records")
    manifest = json.loads(
        s3_env.client().get_object(Bucket="loads", Key=f"torn_records/{MANIFEST}")["Body"].read()
    )
    s3_env.client().delete_object(
        Bucket="loads", Key=f"torn_records/{sorted(manifest['files'])[0]}"
    )
    with pytest.raises(WorkspaceError, match="every data file it lists"):
        rasteret.load(uri)
    sink = pa.BufferOutputStream()
    pq.write_table(_records(), sink)
    s3_env.put("loads", "plain/rec.parquet", sink.getvalue().to_pybytes())
    assert ids(rasteret.load("s3://loads/plain/rec.parquet")) == list(EDGES)
    with pytest.raises(CollectionNotFoundError, match="at s3://loads/nothing_here, got nothing"):
        rasteret.load("s3://loads/nothing_here")


@pytest.mark.integration
def test_s3_export_whose_manifest_landed_despite_an_error_is_complete(
    s3_env: MotoS3Server, edges: rasteret.Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest PUT that succeeded but reported an error: the export is done, not undone."""
    s3_env.create_bucket("landed")
    uri = edges.subset(date_range=(None, "2024-01")).export("s3://landed/edges_records")
    upload = filesystems._upload

    def lost_response(local: Path, filesystem: pafs.FileSystem, path: str) -> None:
        upload(local, filesystem, path)
        if path.endswith(MANIFEST):
            raise OSError("AWS Error NETWORK_CONNECTION: the response was lost")

    monkeypatch.setattr(filesystems, "_upload", lost_response)
    assert edges.export(uri) == uri
    assert ids(rasteret.load(uri)) == list(EDGES)
    manifest = json.loads(
        s3_env.client().get_object(Bucket="landed", Key=f"edges_records/{MANIFEST}")["Body"].read()
    )
    assert keys(s3_env, "landed") == sorted(
        [f"edges_records/{MANIFEST}", *(f"edges_records/{p}" for p in manifest["files"])]
    )


def test_stac_searches_read_dates_as_subset_does() -> None:
    """build_from_stac's searches use the same bounds as Collection.subset: partial dates,
    datetime64 and open ends, sent to the API as exact UTC instants."""
    from rasteret.stac.search import _api_datetime, date_window

    assert _api_datetime(("2024-01", "2024-02")) == (
        "2024-01-01T00:00:00Z/2024-02-29T23:59:59.999999Z"
    )
    assert _api_datetime((np.datetime64("2024-03-01T12:00"), None)) == "2024-03-01T12:00:00Z/.."
    assert _api_datetime((None, None)) is None
    window = date_window(("2023", "2023"))
    assert window is not None
    assert (window[0].isoformat(), window[1].isoformat()) == (
        "2023-01-01T00:00:00+00:00",
        "2023-12-31T23:59:59.999999+00:00",
    )


def test_a_reversed_date_range_is_refused() -> None:
    from rasteret._dates import date_bounds

    with pytest.raises(SchemaError, match=r"start <= end.*2024-02-01T00:00:00\+00:00 after"):
        date_bounds(("2024-02", "2024-01"))
    assert date_bounds(("2024-01-10", "2024-01-10"))[0] is not None  # one day is fine
