"""The ``rasteret`` console script, run as a subprocess against loopback servers."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rasteret import catalog
from rasteret.builders import load
from rasteret.catalog import DatasetDescriptor
from rasteret.cli import main
from rasteret.testing.servers import MotoS3Server
from support.stac_server import S2_COLLECTION, StacApiServer, StacScenes, rustac_executable

SOUTH = "77.40,13.0,77.51,13.2"
SHIPPED = ("earthsearch/sentinel-2-l2a", "earthsearch/naip", "pc/esa-worldcover")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``rasteret ARGS``; returns the CompletedProcess. Config and workspace are in tmp."""
    script = Path(sys.executable).with_name("rasteret")
    executable = str(script) if script.exists() else shutil.which("rasteret")
    assert executable, "the rasteret console script is not installed (pip install -e .)"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(catalog, "_session", {})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable, *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
        )

    return run


def _fails_cleanly(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr


def _in_process(*args: str) -> tuple[int, str, str]:
    """``rasteret.cli.main(args)`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


COMMANDS = [
    [],
    ["datasets"],
    ["datasets", "list"],
    ["datasets", "info"],
    ["datasets", "register-local"],
    ["build"],
    ["build-table"],
    ["collections"],
    ["collections", "list"],
    ["collections", "info"],
    ["sample-points"],
    ["read"],
]


def test_every_command_has_help(cli) -> None:  # type: ignore[no-untyped-def]
    for command in COMMANDS:
        code, out, _ = _in_process(*command, "--help")
        assert code == 0, command
        assert out.startswith("usage: rasteret"), command
        assert len(out.splitlines()) > 3, command
        for line in out.splitlines():
            if line.startswith("  -") and "  " in line.strip():
                assert line.split("  ", 2)[-1].strip(), f"an option without help in {command}"
    result = cli("--help")  # the installed console script
    assert result.returncode == 0
    assert "sample-points" in result.stdout
    version = cli("--version")
    assert version.stdout.startswith("rasteret ")


def test_usage_errors_exit_2(cli) -> None:  # type: ignore[no-untyped-def]
    _fails_cleanly(cli("build"), 2, "the following arguments are required")
    for args, text in [
        (("build", "x", "--name", "n", "--bbox", "1,2,3"), "XMIN,YMIN,XMAX,YMAX"),
        (("build", "x", "--name", "n", "--bbox", "3,2,1,0"), "xmin <= xmax"),
        (("build", "x", "--name", "n", "--date-range", "2024"), "START/END"),
        (("build", "x", "--name", "n", "--query", "{not json"), "invalid loads value"),
        (("datasets",), "usage:"),
        (("no-such-command",), "invalid choice"),
    ]:
        code, _, err = _in_process(*args)
        assert code == 2, args
        assert text in err, args


def test_datasets_list_and_info(cli) -> None:  # type: ignore[no-untyped-def]
    listing = cli("datasets", "list")
    assert listing.returncode == 0
    for dataset_id in SHIPPED:
        assert dataset_id in listing.stdout
    as_json = json.loads(_in_process("datasets", "list", "--json")[1])
    assert {d["id"] for d in as_json} >= set(SHIPPED)

    code, out, _ = _in_process("datasets", "info", "naip")
    assert code == 0
    assert "earthsearch/naip" in out
    assert "NIR        asset image (sample 3)" in out
    naip = json.loads(cli("datasets", "info", "earthsearch/naip", "--json").stdout)
    assert naip["bands"]["NIR"] == {"asset": "image", "band_index": 3}

    unknown = cli("datasets", "info", "sentinel-2-l2b")
    _fails_cleanly(unknown, 1, "did you mean")
    assert unknown.stdout == ""


def test_register_local_is_persisted(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = tmp_path / "survey.parquet"
    result = cli(
        "datasets", "register-local", "survey", str(table), "--band", "R=url:0", "--band", "N=url:3",
        "--href-column", "url", "--license", "CC-BY-4.0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "registered local/survey (2 bands)" in result.stdout
    info = json.loads(_in_process("datasets", "info", "local/survey", "--json")[1])
    assert info["geoparquet"] == str(table.resolve())
    assert info["bands"] == {
        "R": {"asset": "url", "band_index": 0},
        "N": {"asset": "url", "band_index": 3},
    }
    code, _, err = _in_process(
        "datasets", "register-local", "survey", str(table), "--band", "R=url"
    )
    assert code == 1
    assert "already registered" in err
    code, _, err = _in_process("datasets", "register-local", "x", str(table), "--band", "R")
    assert code == 1
    assert "BAND=ASSET" in err


def _stac_geoparquet(scenes: StacScenes, folder: Path) -> Path:
    source = folder / "items.json"
    source.write_text(json.dumps({"type": "FeatureCollection", "features": scenes.s2_items}))
    table = folder / "items.parquet"
    subprocess.run([rustac_executable(), "translate", str(source), str(table)], check=True)
    return table


@pytest.mark.integration
def test_build_table_and_collections(
    cli, stac_scenes: StacScenes, s3_env: MotoS3Server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    table = _stac_geoparquet(stac_scenes, tmp_path)
    workspace = tmp_path / "ws"
    built = cli(
        "build-table", str(table), "--name", "tbl", "--workspace-dir", str(workspace),
        "--band-codes", "red",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "7 records" in built.stdout
    assert load(workspace / "tbl_records").bands == ["red"]

    listing = cli("collections", "list", "--workspace-dir", str(workspace), "--json")
    rows = json.loads(listing.stdout)
    assert [(c["name"], c["records"], c["bands"]) for c in rows] == [("tbl", 7, ["red"])]
    code, out, _ = _in_process("collections", "list", "--workspace-dir", str(workspace))
    assert code == 0
    assert out.splitlines()[1].split() == ["tbl", "7", "red", "-"]
    info = cli("collections", "info", "tbl", "--workspace-dir", str(workspace), "--json")
    summary = json.loads(info.stdout)
    assert summary["records"] == 7
    assert summary["bands"] == ["red"]
    assert summary["records_with_band_metadata"] == {"red": 7}
    code, out, _ = _in_process("collections", "info", str(workspace / "tbl_records"))
    assert code == 0
    assert "records:" in out

    code, _, err = _in_process("collections", "info", "nope", "--workspace-dir", str(workspace))
    assert code == 1
    assert "['tbl']" in err
    code, _, err = _in_process("build-table", str(tmp_path / "missing.parquet"), "--name", "m")
    assert code == 1
    assert err.startswith("rasteret: error:")


@pytest.mark.integration
def test_build_a_registered_dataset_from_the_stac_api(
    cli, stac_server: StacApiServer, s3_env: MotoS3Server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    catalog.register(
        DatasetDescriptor(
            id="test/synthetic-s2",
            title="synthetic S2",
            stac_api=stac_server.url,
            collection=S2_COLLECTION,
            bands={"B04": "red", "B08": "nir"},
        ),
        persist=True,
    )
    workspace = tmp_path / "ws"
    result = cli(
        "build", "test/synthetic-s2", "--name", "cli-s2", "--bbox", SOUTH, "--date-range", "2024-01-05/..",
        "--bands", "B04", "--workspace-dir", str(workspace), "--progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "collection 'cli-s2': 2 records, bands ['B04']" in result.stdout
    assert "COG headers" in result.stderr  # a progress bar was drawn
    collection = load(workspace / "cli-s2_records")
    ids = collection.to_table(columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == ["S2-01", "S2-02"]
    assert collection.data_source == "test/synthetic-s2"

    empty = cli(
        "build", "test/synthetic-s2", "--name", "none", "--date-range", "1990-01-01/1990-02-01"
    )
    _fails_cleanly(empty, 1, "found no items")
    assert "1990-01-01..1990-02-01" in empty.stderr


@pytest.mark.integration
def test_read_writes_geotiff_netcdf_and_parquet(
    cli, stac_server: StacApiServer, stac_scenes: StacScenes, s3_env: MotoS3Server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import pyarrow.parquet as pq
    import rasterio
    import rasterio.windows
    import xarray as xr

    from rasteret.stac.build import build_from_stac

    workspace = tmp_path / "ws"
    build_from_stac(
        name="pix",
        stac_api=stac_server.url,
        collection=S2_COLLECTION,
        band_map={"B04": "red", "B08": "nir"},
        date_range=("2024-01-07", "2024-01-07"),  # S2-01 only
        workspace_dir=workspace,
    )
    spec = next(s for s in stac_scenes.s2_specs if s.scene_id == "S2-01")
    x0, y0 = spec.origin
    bounds = (x0 + 100.0, y0 - 600.0, x0 + 700.0, y0 - 200.0)
    area = ["--bbox", ",".join(map(str, bounds)), "--geometry-crs", "EPSG:32643"]
    common = ["read", "pix", "--workspace-dir", str(workspace), "--bands", "B04,B08", *area]
    expected = {}
    for band in ("B04", "B08"):
        with rasterio.open(stac_scenes.local["S2-01"][band]) as src:
            window = rasterio.windows.from_bounds(*bounds, transform=src.transform)
            expected[band] = src.read(1, window=window)
    assert expected["B04"].shape == (40, 60)

    tif = tmp_path / "out" / "aoi.tif"
    result = cli(*common, "--output", str(tif))
    assert result.returncode == 0, result.stderr
    with rasterio.open(tif) as dst:
        assert dst.count == 2
        assert dst.descriptions == ("B04@2024-01-07T05:30:00", "B08@2024-01-07T05:30:00")
        assert dst.crs.to_epsg() == 32643
        assert tuple(dst.bounds) == pytest.approx(bounds)
        assert dst.nodata == 0
        np.testing.assert_array_equal(dst.read(1), expected["B04"])
        np.testing.assert_array_equal(dst.read(2), expected["B08"])

    netcdf = tmp_path / "aoi.nc"
    code, _, err = _in_process(*common, "--output", str(netcdf))
    assert code == 0, err
    with xr.open_dataset(netcdf, decode_coords="all", mask_and_scale=False) as dataset:
        np.testing.assert_array_equal(dataset["B08"].isel(time=0).values, expected["B08"])
        assert dataset["B08"].dtype == np.uint16  # integers stay integers
        assert dataset.rio.crs.to_epsg() == 32643

    table = tmp_path / "aoi.parquet"
    code, _, err = _in_process(*common, "--output", str(table))
    assert code == 0, err
    pixels = pq.read_table(table)
    assert set(pixels.column_names) >= {"time", "y", "x", "B04", "B08"}
    assert pixels.num_rows == 40 * 60
    assert str(pixels.schema.field("B04").type) == "uint16"
    np.testing.assert_array_equal(pixels.column("B04").to_numpy().reshape(40, 60), expected["B04"])

    code, _, err = _in_process(*common, "--output", str(tmp_path / "aoi.png"))
    assert code == 1
    assert ".tif, .nc or .parquet" in err
    code, _, err = _in_process(
        "read", "pix", "--workspace-dir", str(workspace), "--bands", "B04", "--output", str(tif)
    )
    assert code == 1
    assert "exactly one area" in err


@pytest.mark.integration
def test_sample_points_writes_parquet_and_csv(
    cli, stac_server: StacApiServer, stac_scenes: StacScenes, s3_env: MotoS3Server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import csv

    import pyarrow.parquet as pq
    import rasterio
    from pyproj import Transformer

    from rasteret.stac.build import build_from_stac

    workspace = tmp_path / "ws"
    build_from_stac(
        name="pts",
        stac_api=stac_server.url,
        collection=S2_COLLECTION,
        band_map={"B04": "red", "B08": "nir"},
        date_range=("2024-01-07", "2024-01-07"),  # S2-01 only
        workspace_dir=workspace,
    )
    spec = next(s for s in stac_scenes.s2_specs if s.scene_id == "S2-01")
    x0, y0 = spec.origin
    utm = [(x0 + 10 * c + 5, y0 - 10 * r - 5) for r, c in ((30, 40), (100, 7), (200, 250))]
    to_lonlat = Transformer.from_crs(32643, 4326, always_xy=True)
    points = tmp_path / "points.csv"
    with points.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["site", "lon", "lat"])
        for number, (x, y) in enumerate(utm):
            writer.writerow([f"p{number}", *to_lonlat.transform(x, y)])
    expected = {}
    for band in ("B04", "B08"):
        with rasterio.open(stac_scenes.local["S2-01"][band]) as src:
            expected[band] = [int(v[0]) for v in src.sample(utm)]

    out = tmp_path / "samples.parquet"
    result = cli(
        "sample-points", "pts", "--workspace-dir", str(workspace), "--points", str(points),
        "--bands", "B04,B08", "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote 3 samples" in result.stdout
    table = pq.read_table(out)
    assert table.column("site").to_pylist() == ["p0", "p1", "p2"]
    assert table.column("record_id").to_pylist() == ["S2-01"] * 3
    assert table.column("B04").to_pylist() == expected["B04"]
    assert table.column("B08").to_pylist() == expected["B08"]
    assert str(table.schema.field("B04").type) == "uint16"

    as_csv = tmp_path / "samples.csv"
    code, _, err = _in_process(
        "sample-points", "pts", "--workspace-dir", str(workspace), "--points", str(points),
        "--bands", "B08", "--output", str(as_csv), "--x-column", "lon", "--y-column", "lat",
    )  # fmt: skip
    assert code == 0, err
    with as_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["B08"]) for r in rows] == expected["B08"]
    assert all(r["geometry"].startswith("POINT") for r in rows)

    code, _, err = _in_process(
        "sample-points", "pts", "--workspace-dir", str(workspace), "--points",
        str(tmp_path / "missing.csv"), "--bands", "B04", "--output", str(out),
    )  # fmt: skip
    assert code == 1
    assert "no points file" in err
