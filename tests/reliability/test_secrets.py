"""Signed-URL query strings and credentials never reach a stored collection, a log line, a
warning or an error message (tracebacks of chained store errors included)."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import shapely

import rasteret
from rasteret._sync import run
from rasteret.errors import FetchError, RasteretWarning
from rasteret.io.fetch import FetchOptions, fetch_prefix, fetch_ranges
from rasteret.io.ranges import ByteRange
from rasteret.testing.faults import FaultPlan
from rasteret.testing.scenes import SceneSpec, record_table, write_scene
from rasteret.testing.servers import RangeHTTPServer

pytestmark = pytest.mark.integration

ACCESS_KEY = "AKIAQSECRETKEYID0001"
SECRET_KEY = "wJalrSeCrEtAcCeSsKeY/K7MDENG+bPxRfiCY"
SESSION_TOKEN = "FwoGZXIvYXdzSeSsIoNtOkEn"
SIGNATURE = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
SAS_SIGNATURE = "SaSsIgNaTuReQ2x3"
PASSWORD = "hunter2pw"
SECRETS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, SIGNATURE, SAS_SIGNATURE, PASSWORD)

AWS_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential={ACCESS_KEY}%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    f"&X-Amz-Security-Token={SESSION_TOKEN}&X-Amz-Signature={SIGNATURE}&versionId=7"
)
SAS_QUERY = f"sv=2022-11-02&se=2030-01-01&sr=b&sp=r&sig={SAS_SIGNATURE}"
SPECS = [SceneSpec(f"sig-{i}", 32633, (500_000.0, 4_600_000.0), size=256, tile=128, seed=i)
         for i in range(3)]  # fmt: skip


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture
def signed_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[RangeHTTPServer, dict[str, dict[str, str]]]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
    }.items():
        monkeypatch.setenv(key, value)
    for spec in SPECS:
        write_scene(spec, tmp_path / "files", bands=("B04", "B08"))
    server = RangeHTTPServer(tmp_path / "files").start()

    def signed(name: str, query: str) -> str:
        return f"{server.url_for(name)}?{query}"

    hrefs = {
        "sig-0": {
            "B04": signed("sig-0_B04.tif", AWS_QUERY),
            "B08": signed("sig-0_B08.tif", SAS_QUERY),
        },
        "sig-1": {
            "B04": server.url_for("sig-1_B04.tif").replace("://", f"://user:{PASSWORD}@"),
            "B08": signed("sig-1_B08.tif", AWS_QUERY),
        },
        "sig-2": {
            "B04": signed("sig-2_B04.tif", SAS_QUERY),
            "B08": signed("missing.tif", AWS_QUERY),
        },
    }
    yield server, hrefs
    server.stop()


def test_secrets_stay_out_of_collections_logs_warnings_and_errors(
    signed_table: tuple[RangeHTTPServer, dict[str, dict[str, str]]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    server, hrefs = signed_table
    table = record_table(SPECS, hrefs)
    server.fail("/sig-0_B08.tif", 403)  # access denied, message names the URL
    # one asset's requests all fail (retried, then listed with the last cause)
    server.inject_faults(FaultPlan(rate=0.0, first=100, kinds=("reset",), match=("sig-1_B08",)))
    with pytest.warns(RasteretWarning) as warned:
        collection = rasteret.build_from_table(
            table, name="signed", workspace_dir=tmp_path / "ws", enrich_cog=True
        )
    errors = {(f.record_id, f.band): f.error for f in collection.enrichment_errors}
    assert set(errors) == {("sig-0", "B08"), ("sig-1", "B08"), ("sig-2", "B08")}
    assert "refused (403)" in errors[("sig-0", "B08")]
    assert "after 6 attempts" in errors[("sig-1", "B08")]
    assert "404" in errors[("sig-2", "B08")]
    assert server.url_for("sig-0_B08.tif") + "?versionId" not in errors[("sig-0", "B08")]

    # everything stored: raw bytes, decoded tables, the manifest
    stored = sorted(p for p in (tmp_path / "ws").rglob("*") if p.is_file())
    assert any(p.suffix == ".parquet" for p in stored)
    for path in stored:
        assert leaks(path.read_bytes().decode("latin-1")) == [], path
        if path.suffix == ".parquet":
            assert leaks(str(pq.read_table(path).to_pylist())) == [], path
    stored_table = rasteret.load(collection.path).to_table().sort_by("id")
    assets = [dict(row) for row in stored_table.column("assets").to_pylist()]
    assert assets[0]["B04"]["href"] == server.url_for("sig-0_B04.tif") + "?versionId=7"
    assert assets[1]["B04"]["href"] == server.url_for("sig-1_B04.tif")

    # fetches of signed URLs that fail, at the io layer (obstore's own messages name the URL)
    messages: list[str] = []
    signed = hrefs["sig-0"]["B04"]
    options = FetchOptions(retries=0, request_timeout=0.3)
    for status in (403, 404, 500):
        server.fail("/sig-0_B04.tif", status)
        with pytest.raises(FetchError) as info:
            run(fetch_ranges(signed, [ByteRange(0, 100)], options=options))
        messages.append("".join(traceback.format_exception(info.value)))
        server.heal()
    for kind in ("reset", "cut", "stall", "short"):
        server.inject_faults(FaultPlan(rate=0.0, first=1, kinds=(kind,), stall_seconds=2))
        with pytest.raises(FetchError) as info:
            run(fetch_prefix(signed, 4096, options=options))
        messages.append("".join(traceback.format_exception(info.value)))
    server.inject_faults(None)
    assert all("sig-0_B04.tif?versionId=7" in m for m in messages)

    # pixel reads whose requests keep failing
    aoi = shapely.box(500_100, 4_598_000, 500_900, 4_599_500)
    for status in (403, 404):
        server.fail("/sig-0_B04.tif", status)
        with pytest.raises(FetchError) as info:
            collection.get_numpy(aoi, ["B04"], geometry_crs=32633, cache_mb=0)
        messages.append("".join(traceback.format_exception(info.value)))
        server.heal()

    log_text = "\n".join(r.getMessage() for r in caplog.records)
    warning_text = "\n".join(str(w.message) for w in warned)
    out, err = capfd.readouterr()
    assert leaks("\n".join([*errors.values(), *messages, log_text, warning_text, out, err])) == []
