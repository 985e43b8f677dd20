"""URL routing, rewrites, redaction, the shared store cache and environment configuration.

No request leaves the process here: stores are only constructed and inspected.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import obstore.store
import pytest

from rasteret.errors import FetchError
from rasteret.io import stores
from rasteret.io.stores import (
    MAX_PER_URL_STORES,
    CloudConfig,
    ObstoreReader,
    RangeReader,
    clear_store_cache,
    open_target,
    redact_url,
    resolve,
    rewrite_url,
)
from rasteret.io.urls import Location, parse_location
from rasteret.testing.stores import CountingReader, URLReader


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bkt/a/b.tif", Location("s3", "bkt", "a/b.tif")),
        ("s3a://bkt/a.tif", Location("s3", "bkt", "a.tif")),
        ("gs://bkt/a.tif", Location("gs", "bkt", "a.tif")),
        ("gcs://bkt/a.tif", Location("gs", "bkt", "a.tif")),
        ("az://cont/a/b.tif", Location("az", "cont", "a/b.tif")),
        (
            "abfss://cont@acct.dfs.core.windows.net/a.tif",
            Location("az", "cont", "a.tif", account="acct"),
        ),
        (
            "https://bkt.s3.us-west-2.amazonaws.com/a/b%20c.tif",
            Location(
                "s3", "bkt", "a/b c.tif", "us-west-2", None, "https://s3.us-west-2.amazonaws.com"
            ),
        ),
        (
            "https://bkt.s3-eu-west-1.amazonaws.com/a.tif",
            Location("s3", "bkt", "a.tif", "eu-west-1", None, "https://s3.eu-west-1.amazonaws.com"),
        ),
        (
            "https://my.bucket.s3.amazonaws.com/a.tif",
            Location("s3", "my.bucket", "a.tif", None, None, "https://s3.amazonaws.com"),
        ),
        (
            "https://s3.us-west-2.amazonaws.com/bkt/a.tif",
            Location("s3", "bkt", "a.tif", "us-west-2", None, "https://s3.us-west-2.amazonaws.com"),
        ),
        (
            "https://example.com:8443/x/a%20b.tif",
            Location("http", "https://example.com:8443", "x/a b.tif"),
        ),
        (
            "https://bkt.s3.amazonaws.com/a.tif?X-Amz-Signature=s#frag",
            Location("http", "https://bkt.s3.amazonaws.com/a.tif?X-Amz-Signature=s", ""),
        ),
        (
            "http://bkt.s3-website-us-east-1.amazonaws.com/a.tif",
            Location("http", "http://bkt.s3-website-us-east-1.amazonaws.com", "a.tif"),
        ),
        ("file:///data/a%20b.tif", Location("file", "", "data/a b.tif")),
        ("/data/x.tif", Location("file", "", "data/x.tif")),
    ],
)
def test_parse_location(url: str, expected: Location) -> None:
    assert parse_location(url) == expected


def test_relative_and_home_paths_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert parse_location("sub/a.tif").path == f"{tmp_path}/sub/a.tif".lstrip("/")
    assert parse_location("~/a.tif").path == f"{tmp_path}/home/a.tif".lstrip("/")


@pytest.mark.parametrize(
    ("url", "match"),
    [("s3:///key.tif", "s3://BUCKET/KEY"), ("ftp://h/a.tif", "scheme 'ftp'"),
     ("abfss://acct.dfs.core.windows.net/a", "CONTAINER@ACCOUNT")],
)  # fmt: skip
def test_parse_location_rejects(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_location(url)


def test_rewrite_url_longest_prefix_once() -> None:
    patterns = {"s3://a/": "s3://b/", "s3://a/deep/": "https://cdn.example/deep/", "s3://b/": "X"}
    assert rewrite_url("s3://a/deep/x.tif", patterns) == "https://cdn.example/deep/x.tif"
    assert rewrite_url("s3://a/x.tif", patterns) == "s3://b/x.tif"  # not rewritten again to X
    assert rewrite_url("s3://c/x.tif", patterns) == "s3://c/x.tif"
    assert rewrite_url("s3://c/x.tif", None) == "s3://c/x.tif"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://b.s3.amazonaws.com/k.tif?X-Amz-Algorithm=A&X-Amz-Credential=C&X-Amz-Signature=S",
            "https://b.s3.amazonaws.com/k.tif",
        ),
        (
            "https://acct.blob.core.windows.net/c/k.tif?st=1&se=2&sp=r&sv=3&sr=b&sig=SECRET",
            "https://acct.blob.core.windows.net/c/k.tif",
        ),
        ("https://h.example/k.tif?versionId=7&Signature=S", "https://h.example/k.tif?versionId=7"),
        ("https://user:pw@h.example/k.tif", "https://h.example/k.tif"),
        ("https://h.example/k.tif?page=2", "https://h.example/k.tif?page=2"),
        ("s3://bkt/k.tif", "s3://bkt/k.tif"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_one_shared_store_per_bucket_and_origin() -> None:
    reader_a, path_a = resolve("s3://bkt/a.tif")
    reader_b, path_b = resolve("s3://bkt/dir/b.tif")
    assert reader_a is reader_b
    assert (path_a, path_b) == ("a.tif", "dir/b.tif")
    assert isinstance(reader_a, ObstoreReader)
    assert isinstance(reader_a, RangeReader)
    assert isinstance(reader_a.store, obstore.store.S3Store)
    assert resolve("s3://other/a.tif")[0] is not reader_a
    assert resolve("gs://bkt/a.tif")[0] is not reader_a
    http_a = resolve("https://example.com/a.tif")[0]
    assert resolve("https://example.com/x/b.tif")[0] is http_a
    assert resolve("https://example.org/a.tif")[0] is not http_a
    assert resolve("/tmp/a.tif")[0] is resolve("file:///var/b.tif")[0]


def test_cache_key_includes_config_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = resolve("s3://bkt/a.tif")[0]
    assert resolve("s3://bkt/a.tif", cloud_config=CloudConfig())[0] is plain
    payer = resolve("s3://bkt/a.tif", cloud_config=CloudConfig(requester_pays=True))[0]
    assert payer is not plain
    assert resolve("s3://bkt/a.tif", cloud_config=CloudConfig(requester_pays=True))[0] is payer
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert resolve("s3://bkt/a.tif")[0] is not plain  # a new env is honoured
    clear_store_cache()
    monkeypatch.delenv("AWS_REGION")
    assert resolve("s3://bkt/a.tif")[0] is not plain  # the cache was emptied


def test_signed_urls_get_bounded_per_url_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_PER_URL_STORES >= 64
    monkeypatch.setattr(stores, "MAX_PER_URL_STORES", 8)  # building 257 clients is slow
    first = resolve("https://h.example/a.tif?sig=1")
    assert first[1] == ""
    assert first[0].store.url == "https://h.example/a.tif?sig=1"
    assert resolve("https://h.example/a.tif?sig=1")[0] is first[0]
    assert resolve("https://h.example/a.tif?sig=2")[0] is not first[0]
    for i in range(8 + 1):
        resolve(f"https://h.example/a.tif?sig=x{i}")
    assert resolve("https://h.example/a.tif?sig=1")[0] is not first[0]  # evicted


def test_cloud_config_is_hashable_and_round_trips() -> None:
    config = CloudConfig(
        requester_pays=True,
        region="us-west-2",
        url_rewrite_patterns={"a": "b"},
        client_options={"timeout": "5s"},
    )
    assert hash(config) == hash(CloudConfig(**dataclasses.asdict(config)))
    assert CloudConfig(**dataclasses.asdict(config)) == config
    assert {config: 1}[CloudConfig(**dataclasses.asdict(config))] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.region = "x"  # type: ignore[misc]


def test_s3_store_configuration_from_config() -> None:
    config = CloudConfig(requester_pays=True, region="eu-west-1", client_options={"timeout": "7s"})
    store = resolve("s3://bkt/a.tif", cloud_config=config)[0].store
    assert store.config["region"] == "eu-west-1"
    assert store.config["request_payer"] == "true"
    assert store.client_options["timeout"] == "7s"
    assert store.client_options["pool_max_idle_per_host"] == "512"
    assert store.retry_config["max_retries"] == 0  # rasteret.io.fetch owns retries


def test_https_s3_urls_name_their_region_and_ignore_the_env_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    store = resolve("https://bkt.s3.us-west-2.amazonaws.com/a.tif")[0].store
    assert store.config["region"] == "us-west-2"
    assert store.config["endpoint"] == "https://s3.us-west-2.amazonaws.com"


def test_anonymous_when_no_credentials_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")  # not a credential
    assert resolve("s3://bkt/a.tif")[0].store.config.get("skip_signature") == "true"
    assert resolve("gs://bkt/a.tif")[0].store.config.get("skip_signature") == "true"
    assert resolve("az://cont/a.tif")[0].store.config.get("skip_signature") == "true"


@pytest.mark.parametrize(
    ("url", "env"),
    [
        ("s3://bkt/a.tif", {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}),
        ("s3://bkt/a.tif", {"AWS_SKIP_SIGNATURE": "false"}),
        ("gs://bkt/a.tif", {"GOOGLE_BEARER_TOKEN": "t"}),
        ("gs://bkt/a.tif", {"GOOGLE_SKIP_SIGNATURE": "false"}),
        (
            "az://cont/a.tif",
            {"AZURE_STORAGE_ACCOUNT_NAME": "a", "AZURE_STORAGE_ACCOUNT_KEY": "eA=="},
        ),
        ("az://cont/a.tif", {"AZURE_STORAGE_ACCOUNT_NAME": "a", "AZURE_STORAGE_SAS_TOKEN": "sv=1"}),
    ],
)
def test_signed_when_credentials_or_an_explicit_choice_exist(
    url: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert "skip_signature" not in resolve(url)[0].store.config


def test_explicit_anonymous_choice_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    store = resolve("s3://bkt/a.tif", cloud_config=CloudConfig(anonymous=False))[0].store
    assert "skip_signature" not in store.config
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = resolve("s3://bkt/a.tif", cloud_config=CloudConfig(anonymous=True))[0].store
    assert store.config["skip_signature"] == "true"


def test_gcloud_application_default_credentials_file_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "application_default_credentials.json").write_text("{}")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    assert "skip_signature" not in resolve("gs://bkt/a.tif")[0].store.config


def test_client_variables_and_http_endpoints_allow_http(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "allow_http" not in resolve("s3://bkt/a.tif")[0].store.client_options
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert resolve("s3://bkt/a.tif")[0].store.client_options["allow_http"] == "true"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_TIMEOUT", "9s")
    options = resolve("s3://bkt/a.tif")[0].store.client_options
    assert (options["allow_http"], options["timeout"]) == ("true", "9s")
    assert resolve("http://127.0.0.1:1/a.tif")[0].store.client_options["allow_http"] == "true"


def test_aws_profile_through_boto3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[work]\naws_access_key_id = AKIDWORK\naws_secret_access_key = s\n")
    config = tmp_path / "config"
    config.write_text("[profile work]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "work")
    store = resolve("s3://bkt/a.tif")[0].store
    assert "skip_signature" not in store.config
    assert store.config["region"] == "ap-south-1"
    assert store.credential_provider()["access_key_id"] == "AKIDWORK"


def test_unsupported_urls_are_fetch_errors() -> None:
    with pytest.raises(FetchError, match="cannot read from this URL: expected an s3://"):
        resolve("ftp://host/a.tif")


def test_misconfigured_environment_is_a_fetch_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")  # but no secret
    with pytest.raises(FetchError, match=r"could not set up an s3 store for s3://bkt/a\.tif"):
        resolve("s3://bkt/a.tif")


def test_azure_account_from_abfs_url() -> None:
    store = resolve("abfss://cont@acct.dfs.core.windows.net/a.tif")[0].store
    assert (store.config["container_name"], store.config["account_name"]) == ("cont", "acct")


def test_rewrites_apply_before_routing() -> None:
    config = CloudConfig(url_rewrite_patterns={"https://cdn.example/l/": "s3://landsat/"})
    target = open_target("https://cdn.example/l/x/a.tif", cloud_config=config)
    assert (target.url, target.path) == ("s3://landsat/x/a.tif", "x/a.tif")
    assert isinstance(target.reader.store, obstore.store.S3Store)
    assert target.reader is resolve("s3://landsat/y.tif")[0]


def test_obstore_backend_is_wrapped_with_relative_paths(tmp_path: Path) -> None:
    s3 = obstore.store.S3Store("bkt", prefix="scenes", skip_signature=True)
    reader, path = resolve("s3://bkt/scenes/a.tif", backend=s3)
    assert isinstance(reader, ObstoreReader)
    assert reader.store is s3
    assert path == "a.tif"
    assert resolve("s3://bkt/scenes/b.tif", backend=s3)[0] is reader
    http = obstore.store.HTTPStore("https://example.com/data")
    assert resolve("https://example.com/data/x/a.tif", backend=http)[1] == "x/a.tif"
    local = obstore.store.LocalStore(tmp_path)
    assert resolve(str(tmp_path / "a.tif"), backend=local)[1] == "a.tif"


def test_custom_backend_gets_the_full_url() -> None:
    custom = CountingReader(URLReader())
    config = CloudConfig(url_rewrite_patterns={"s3://a/": "s3://b/"})
    reader, path = resolve("s3://a/k.tif?sig=1", backend=custom, cloud_config=config)
    assert reader is custom
    assert path == "s3://b/k.tif?sig=1"
    with pytest.raises(TypeError, match="get_range"):
        resolve("s3://a/k.tif", backend=object())


def test_store_cache_is_emptied_in_a_forked_child() -> None:
    parent = resolve("s3://bkt/a.tif")[0]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether it got a fresh store, then leave at once
        fresh = resolve("s3://bkt/a.tif")[0] is not parent
        os.write(write_fd, b"1" if fresh else b"0")
        os._exit(0)
    os.close(write_fd)
    answer = os.read(read_fd, 1)
    os.close(read_fd)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert resolve("s3://bkt/a.tif")[0] is parent
