"""The io layer against real servers on 127.0.0.1: moto's S3 (configured only through the
standard AWS variables) and the HTTP range server (which counts every request)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from rasteret._sync import run
from rasteret.errors import AccessDeniedError, FetchError, ObjectNotFoundError
from rasteret.io import _s3region
from rasteret.io.fetch import FetchOptions, fetch_many, fetch_prefix, fetch_ranges
from rasteret.io.ranges import ByteRange
from rasteret.io.stores import CloudConfig, resolve
from rasteret.testing.servers import MotoS3Server, RangeHTTPServer
from rasteret.testing.stores import CountingReader, URLReader

pytestmark = pytest.mark.integration

BUCKET = "rasteret-io"
DATA = bytes((i * 131 + i // 1000) % 256 for i in range(300_000))
FAST = FetchOptions(backoff_base=0.001, backoff_max=0.005)
HttpServer = Callable[..., RangeHTTPServer]


@pytest.fixture(scope="module")
def s3_objects(s3_server: MotoS3Server) -> dict[str, str]:
    s3_server.create_bucket(BUCKET)
    urls = {
        "scene": s3_server.put(BUCKET, "scenes/scene.bin", DATA),
        "other": s3_server.put(BUCKET, "scenes/other.bin", DATA[:1000]),
        "tiny": s3_server.put(BUCKET, "tiny.bin", b"II*\x00"),
        "empty": s3_server.put(BUCKET, "empty.bin", b""),
    }
    s3_server.client().put_object(Bucket=BUCKET, Key="public.bin", Body=b"open", ACL="public-read")
    return urls


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "scene.bin").write_bytes(DATA)
    (tmp_path / "tiny.bin").write_bytes(b"tiny")
    (tmp_path / "empty.bin").write_bytes(b"")
    return tmp_path


def _etag(url: str) -> str:
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as response:
        return str(response.headers["ETag"])


# -- S3 (moto) -------------------------------------------------------------------------------


def test_s3_through_environment_only(s3_env: MotoS3Server, s3_objects: dict[str, str]) -> None:
    url = s3_objects["scene"]
    ranges = [ByteRange(0, 100), ByteRange(150_000, 150_500), ByteRange(299_990, 300_000)]
    assert [bytes(v) for v in run(fetch_ranges(url, ranges))] == [
        DATA[r.start : r.end] for r in ranges
    ]
    prefix = run(fetch_prefix(url))
    assert bytes(prefix.data) == DATA[:65536]
    assert prefix.object_size == len(DATA)
    assert prefix.etag == s3_env.client().head_object(Bucket=BUCKET, Key="scenes/scene.bin")["ETag"]
    reader, path = resolve(url)
    assert path == "scenes/scene.bin"
    assert "skip_signature" not in reader.store.config  # keys in the env: requests are signed


def test_s3_one_store_per_bucket(s3_env: MotoS3Server, s3_objects: dict[str, str]) -> None:
    assert resolve(s3_objects["scene"])[0] is resolve(s3_objects["other"])[0]
    results = run(fetch_many([(s3_objects["scene"], [ByteRange(5, 10)]),
                              (s3_objects["other"], [ByteRange(995, 1000)])]))  # fmt: skip
    assert [bytes(r[0]) for r in results] == [DATA[5:10], DATA[995:1000]]


def test_s3_tiny_and_empty_objects(s3_env: MotoS3Server, s3_objects: dict[str, str]) -> None:
    tiny = run(fetch_prefix(s3_objects["tiny"]))
    assert (bytes(tiny.data), tiny.object_size) == (b"II*\x00", 4)
    empty = run(fetch_prefix(s3_objects["empty"]))
    assert (bytes(empty.data), empty.object_size, empty.etag is not None) == (b"", 0, True)


def test_s3_missing_object_and_bucket(s3_env: MotoS3Server, s3_objects: dict[str, str]) -> None:
    with pytest.raises(ObjectNotFoundError, match=f"s3://{BUCKET}/nope.tif"):
        run(fetch_prefix(f"s3://{BUCKET}/nope.tif", options=FAST))
    with pytest.raises(FileNotFoundError, match=r"s3://no-such-bucket/a\.tif"):
        run(fetch_ranges("s3://no-such-bucket/a.tif", [ByteRange(0, 4)], options=FAST))


def test_s3_anonymous_when_no_credentials(
    s3_server: MotoS3Server, s3_objects: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)  # and nothing else
    public = run(fetch_prefix(f"s3://{BUCKET}/public.bin"))
    assert bytes(public.data) == b"open"
    with pytest.raises(AccessDeniedError, match=f"s3://{BUCKET}/tiny.bin.*requests are unsigned"):
        run(fetch_prefix(s3_objects["tiny"], options=FAST))


# -- S3 protocol details, observed on the range server standing in as the endpoint ----------


@pytest.fixture
def fake_s3(
    files: Path, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> RangeHTTPServer:
    (files / "bkt").mkdir()
    (files / "bkt" / "a.bin").write_bytes(DATA[:5000])
    server = http_server(files)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)  # an http:// endpoint is allowed as is
    return server


def test_s3_unsigned_and_requester_pays_headers(
    fake_s3: RangeHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(fetch_ranges("s3://bkt/a.bin", [ByteRange(0, 10)]))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")  # requester-pays needs signed requests
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    config = CloudConfig(requester_pays=True)
    run(fetch_ranges("s3://bkt/a.bin", [ByteRange(0, 10)], cloud_config=config))
    anonymous, payer = fake_s3.requests
    assert anonymous.header("authorization") is None
    assert anonymous.header("x-amz-request-payer") is None
    assert "AKIDTEST" in (payer.header("authorization") or "")
    assert payer.header("x-amz-request-payer") == "requester"


def test_s3_wrong_region_named_in_the_error_is_corrected(fake_s3: RangeHTTPServer) -> None:
    body = (b"<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region 'us-east-1' "
            b"is wrong; expecting 'eu-west-1'</Message><Region>eu-west-1</Region></Error>")  # fmt: skip
    fake_s3.fail("/bkt/a.bin", 400, times=1, body=body)
    (view,) = run(fetch_ranges("s3://bkt/a.bin", [ByteRange(0, 10)], options=FAST))
    assert bytes(view) == DATA[:10]
    assert resolve("s3://bkt/a.bin")[0].store.config["region"] == "eu-west-1"
    assert fake_s3.count("/bkt/a.bin") == 2


def test_s3_bare_redirect_looks_the_region_up(
    fake_s3: RangeHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _s3region.forget_regions()
    monkeypatch.setattr(_s3region, "REGION_LOOKUP_URL", fake_s3.url + "/region/{bucket}")
    fake_s3.fail("/region/bkt", 301, headers={"x-amz-bucket-region": "ap-south-1"})
    fake_s3.fail("/bkt/a.bin", 301, times=1)
    prefix = run(fetch_prefix("s3://bkt/a.bin", 100, options=FAST))
    assert (bytes(prefix.data), prefix.object_size) == (DATA[:100], 5000)
    assert resolve("s3://bkt/a.bin")[0].store.config["region"] == "ap-south-1"
    assert fake_s3.count("/region/bkt", method="HEAD") == 1
    _s3region.forget_regions()
    fake_s3.fail("/region/bkt", 404)  # no region header: give up with advice, no retries
    fake_s3.fail("/bkt/b.bin", 301)
    with pytest.raises(FetchError, match="set AWS_REGION"):
        run(fetch_prefix("s3://bkt/b.bin", 100, cloud_config=CloudConfig(region="us-west-1")))
    assert fake_s3.count("/bkt/b.bin") == 1
    _s3region.forget_regions()


# -- HTTP --------------------------------------------------------------------------------------


def test_http_prefix_is_one_get_with_size_and_etag(files: Path, http_server: HttpServer) -> None:
    server = http_server(files)
    url = server.url_for("scene.bin")
    prefix = run(fetch_prefix(url))
    assert (bytes(prefix.data), prefix.object_size) == (DATA[:65536], len(DATA))
    assert server.count("/scene.bin") == 1
    assert server.requests[0].range == "bytes=0-65535"
    assert prefix.etag == _etag(url)
    counting = CountingReader(URLReader())
    again = run(fetch_prefix(url, 1000, backend=counting))
    assert (again.object_size, again.etag) == (len(DATA), prefix.etag)
    assert counting.requests() == 1
    assert server.count("/scene.bin") == 2


def test_http_tiny_and_empty_objects(files: Path, http_server: HttpServer) -> None:
    server = http_server(files)
    tiny = run(fetch_prefix(server.url_for("tiny.bin")))
    assert (bytes(tiny.data), tiny.object_size, server.count("/tiny.bin")) == (b"tiny", 4, 1)
    empty = run(fetch_prefix(server.url_for("empty.bin")))
    assert (bytes(empty.data), empty.object_size) == (b"", 0)
    assert [(r.method, r.status) for r in server.requests[1:]] == [("GET", 416), ("HEAD", 200)]


def test_http_coalescing_decides_the_gets(files: Path, http_server: HttpServer) -> None:
    server = http_server(files)
    url = server.url_for("scene.bin")
    near = [ByteRange(1000, 2000), ByteRange(2500, 3000), ByteRange(0, 10)]
    views = run(fetch_ranges(url, near, options=FetchOptions(max_gap=1000)))
    assert [bytes(v) for v in views] == [DATA[r.start : r.end] for r in near]
    assert [r.range for r in server.requests] == ["bytes=0-2999"]
    server.clear_log()
    far = [ByteRange(i * 50_000, i * 50_000 + 10) for i in range(6)]
    run(fetch_ranges(url, far, options=FetchOptions(max_gap=1000)))
    assert sorted(r.range or "" for r in server.requests) == sorted(
        f"bytes={r.start}-{r.end - 1}" for r in far
    )


@pytest.mark.parametrize(
    ("status", "error", "gets"),
    [(404, ObjectNotFoundError, 1), (403, AccessDeniedError, 1), (401, AccessDeniedError, 1),
     (400, FetchError, 1), (500, FetchError, 3), (503, FetchError, 3), (429, FetchError, 3)],
)  # fmt: skip
def test_http_errors(
    status: int, error: type[Exception], gets: int, files: Path, http_server: HttpServer
) -> None:
    server = http_server(files)
    server.fail("/scene.bin", status)
    options = FetchOptions(retries=2, backoff_base=0.001)
    with pytest.raises(error, match=server.url_for("scene.bin")):
        run(fetch_ranges(server.url_for("scene.bin"), [ByteRange(0, 10)], options=options))
    assert server.count("/scene.bin") == gets


def test_http_transient_errors_are_retried(files: Path, http_server: HttpServer) -> None:
    server = http_server(files)
    server.fail("/scene.bin", 503, times=2)
    (view,) = run(fetch_ranges(server.url_for("scene.bin"), [ByteRange(10, 20)], options=FAST))
    assert bytes(view) == DATA[10:20]
    assert [r.status for r in server.requests] == [503, 503, 206]


def test_http_range_past_the_end(files: Path, http_server: HttpServer) -> None:
    server = http_server(files)
    url = server.url_for("tiny.bin")
    with pytest.raises(FetchError, match="starts past the end"):
        run(fetch_ranges(url, [ByteRange(10, 20)], options=FAST))
    with pytest.raises(FetchError, match=r"expected 8 bytes .* got 2"):
        run(fetch_ranges(url, [ByteRange(2, 10)], options=FetchOptions(retries=1)))


def test_signed_url_query_is_sent_but_never_shown(files: Path, http_server: HttpServer) -> None:
    server = http_server(files)
    signed = server.url_for("scene.bin") + "?X-Amz-Signature=SECRET&versionId=2"
    (view,) = run(fetch_ranges(signed, [ByteRange(0, 8)]))
    assert bytes(view) == DATA[:8]
    assert server.requests[0].query == "X-Amz-Signature=SECRET&versionId=2"
    server.fail("/scene.bin", 403)
    with pytest.raises(AccessDeniedError) as info:
        run(fetch_ranges(signed, [ByteRange(0, 8)]))
    assert "SECRET" not in str(info.value)
    assert "scene.bin?versionId=2" in str(info.value)


def test_local_paths_and_file_urls(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files)
    for url in ("scene.bin", str(files / "scene.bin"), f"file://{files}/scene.bin"):
        (view,) = run(fetch_ranges(url, [ByteRange(7, 70)]))
        assert bytes(view) == DATA[7:70]
    with pytest.raises(ObjectNotFoundError, match=r"missing\.bin"):
        run(fetch_ranges("missing.bin", [ByteRange(0, 1)]))


def test_range_server_sustains_300_concurrent_requests(
    files: Path, http_server: HttpServer
) -> None:
    server = http_server(files, latency=0.02)
    url = server.url_for("scene.bin")
    ranges = [ByteRange(i * 1000, i * 1000 + 100) for i in range(300)]
    started = time.perf_counter()
    views = run(fetch_ranges(url, ranges, options=FetchOptions(max_concurrent=300, max_gap=0)))
    elapsed = time.perf_counter() - started
    assert [bytes(v) for v in views] == [DATA[r.start : r.end] for r in ranges]
    assert server.count("/scene.bin") == 300
    assert elapsed < 2.0, f"300 requests of 20 ms took {elapsed:.2f}s (6 s if serial)"


def test_http_slow_responses_time_out_and_are_retried(files: Path, http_server: HttpServer) -> None:
    server = http_server(files, latency=0.5)
    options = FetchOptions(request_timeout=0.1, retries=1, backoff_base=0.001)
    started = time.perf_counter()
    with pytest.raises(FetchError, match=r"after 2 attempts: TimeoutError"):
        run(fetch_ranges(server.url_for("scene.bin"), [ByteRange(0, 10)], options=options))
    assert time.perf_counter() - started < 0.5
    server.latency = 0.0
    (view,) = run(fetch_ranges(server.url_for("scene.bin"), [ByteRange(0, 10)], options=options))
    assert bytes(view) == DATA[:10]
