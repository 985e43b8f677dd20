"""Point sampling partition by partition and enrichment over a cluster equal the eager paths.

One ``LocalCluster`` of two single-threaded worker processes is started here and shared by
the module.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import shapely
from dask_support import (
    BANDS,
    SPECS,
    X0,
    Y0,
    lonlat,
    points,
)

import dask
import rasteret
from rasteret._sync import run
from rasteret.collection import Collection
from rasteret.dask import enrich_table_distributed, sample_points_dask
from rasteret.errors import RasteretWarning, SchemaError
from rasteret.ingest.enrich import enrich_table_async
from rasteret.ingest.normalize import normalize_records
from rasteret.testing.scenes import record_table


def _outside(n: int) -> pa.Table:
    """Points west of every scene (a partition without a single sample)."""
    lon, lat = zip(*(lonlat(X0 - 20_000 - i, Y0 - 100) for i in range(n)), strict=True)
    return pa.table(
        {
            "site": [f"o{i}" for i in range(n)],
            "n": np.arange(1000, 1000 + n, dtype=np.int64),
            "geometry": shapely.to_wkb(shapely.points(lon, lat)),
        }
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hive-partitioned Parquet folder of points; one partition has no point in any scene."""
    root = tmp_path_factory.mktemp("points")
    table = points(600, seed=3)
    parts = [table.slice(0, 250), _outside(40), table.slice(250, 350)]
    for i, part in enumerate(parts):
        (root / f"batch={i}").mkdir()
        pq.write_table(part, root / f"batch={i}" / "points.parquet")
    return root


def _decoded(table: pa.Table) -> pa.Table:
    """``table`` with dictionary columns decoded (partitions carry their own dictionaries)."""
    fields = [
        f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def _arrow_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def test_parquet_folder_sampled_on_workers_equals_eager(
    col: Collection, client: Any, folder: Path
) -> None:
    eager = col.sample_points(ds.dataset(folder, partitioning="hive").to_table(), list(BANDS))
    ddf = sample_points_dask(col, str(folder), list(BANDS))
    assert ddf.npartitions == 3
    got = ddf.compute()
    assert len(got) == eager.num_rows > 0
    pd.testing.assert_frame_equal(got.reset_index(drop=True), _arrow_pandas(eager))
    empty = ddf.partitions[1].compute()
    assert len(empty) == 0
    assert list(empty.dtypes) == list(got.dtypes)  # same dtypes with no sample at all
    assert str(got["B04"].dtype) == "uint16[pyarrow]"


def test_parquet_output_has_the_eager_rows_and_schema(
    col: Collection, client: Any, folder: Path, tmp_path: Path
) -> None:
    eager = col.sample_points(
        ds.dataset(folder, partitioning="hive").to_table(), list(BANDS), match="latest"
    )
    written = sample_points_dask(col, folder, list(BANDS), output=tmp_path / "out", match="latest")
    assert [Path(p).name for p in written] == [f"part-{i:05d}.parquet" for i in range(3)]
    tables = [pq.read_table(p) for p in written]
    assert tables[1].num_rows == 0
    combined = pa.concat_tables(tables)
    assert combined.schema.equals(eager.schema, check_metadata=True)  # geoarrow CRS kept
    assert _decoded(combined).equals(_decoded(eager))


def test_dask_dataframe_through_sample_points_equals_eager(col: Collection, client: Any) -> None:
    table = pa.concat_tables([points(300, seed=5), _outside(5)])
    with dask.config.set({"dataframe.convert-string": False}):  # keep WKB bytes as bytes
        ddf = dd.from_pandas(table.to_pandas(), npartitions=4)
    options = {"max_distance_pixels": 1, "keep_missing": True, "return_neighbourhood": "always"}
    lazy = col.sample_points(ddf, list(BANDS), **options)
    assert isinstance(lazy, dd.DataFrame)
    assert lazy.npartitions == 4
    eager = col.sample_points(ddf.compute(), list(BANDS), **options)
    pd.testing.assert_frame_equal(lazy.compute().reset_index(drop=True), _arrow_pandas(eager))


def test_points_of_another_kind_are_refused(col: Collection) -> None:
    with pytest.raises(SchemaError, match="Dask DataFrame or the path of a Parquet folder"):
        sample_points_dask(col, points(3), ["B04"])
    with pytest.raises(TypeError, match="unexpected keyword"):
        sample_points_dask(col, "nowhere", ["B04"], colour="red")


def _records_with_failures(files: dict[str, dict[str, Path]], tmp: Path) -> pa.Table:
    """The scenes' records (twice, as more partitions) plus broken assets."""
    (tmp / "not_a_tiff.tif").write_bytes(b"GIF89a" + bytes(200))
    hrefs = {sid: {b: str(p) for b, p in paths.items()} for sid, paths in files.items()}
    table = record_table(SPECS, hrefs)
    broken = record_table(
        SPECS[:2],
        {
            "a": {"B04": str(tmp / "missing.tif"), "B08": str(files["a"]["B08"])},
            "b": {"B04": str(tmp / "not_a_tiff.tif"), "B08": str(tmp / "missing.tif")},
        },
    )
    broken = broken.set_column(0, "id", pa.array(["a-broken", "b-broken"]))
    return pa.concat_tables([table, broken, table])


def test_enrichment_over_the_cluster_equals_local(
    files: dict[str, dict[str, Path]], client: Any, tmp_path: Path
) -> None:
    records = _records_with_failures(files, tmp_path)
    with pytest.warns(RasteretWarning, match="3 of 16 COG headers"):
        local = rasteret.build_from_table(records, enrich_cog=True)
    with pytest.warns(RasteretWarning, match="3 of 16 COG headers"):
        spread = rasteret.build_from_table(records, enrich_cog=True, client=client)
    assert spread.to_table().equals(local.to_table())
    assert spread.enrichment_errors == local.enrichment_errors
    assert {e.record_id for e in local.enrichment_errors} == {"a-broken", "b-broken"}

    table = normalize_records(records)
    expected, failures, _ = run(enrich_table_async(table, list(BANDS), max_concurrent=8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, got_failures = enrich_table_distributed(
            table, list(BANDS), client=client, max_concurrent=8, partition_rows=2
        )
    assert got.equals(expected)  # four partitions, rows back in order
    assert got_failures == failures


def test_enrichment_needs_a_distributed_client(files: dict[str, dict[str, Path]]) -> None:
    hrefs = {sid: {b: str(p) for b, p in paths.items()} for sid, paths in files.items()}
    table = normalize_records(record_table(SPECS, hrefs))
    with pytest.raises(SchemaError, match=r"distributed\.Client"):
        enrich_table_distributed(table, ["B04"], client="tcp://127.0.0.1:8786", max_concurrent=8)
