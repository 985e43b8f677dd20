"""Loopback servers as pytest fixtures, and a hermetic cloud environment for every test.

- ``s3_server`` (session): one moto S3 server on 127.0.0.1 for the whole run.
- ``s3_env`` (function): points the standard AWS variables at ``s3_server`` and returns it.
- ``http_server`` (function): a factory ``http_server(root_dir, latency=0.0)`` of started
  :class:`~rasteret.testing.servers.RangeHTTPServer` instances, stopped after the test.
- ``_hermetic_cloud_env`` (autouse): no test sees the developer's cloud credentials or
  ``~/.aws`` files, and every test starts with an empty store cache.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rasteret.io.stores import clear_store_cache
from rasteret.testing.servers import MotoS3Server, RangeHTTPServer

_CLOUD_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_", "CLOUDSDK_")


@pytest.fixture(autouse=True)
def _hermetic_cloud_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(_CLOUD_PREFIXES):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path_factory.getbasetemp() / "no-gcloud"))
    clear_store_cache()
    yield
    clear_store_cache()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    """moto's S3 on 127.0.0.1, shared by the session (buckets persist between tests)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with MotoS3Server() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> MotoS3Server:
    """Configure S3 clients for ``s3_server`` through the standard AWS variables only."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    clear_store_cache()
    return s3_server


@pytest.fixture
def http_server() -> Iterator[Callable[..., RangeHTTPServer]]:
    """Factory: ``http_server(root_dir, latency=0.0)`` returns a started range server."""
    started: list[RangeHTTPServer] = []

    def start(root_dir: str | Path, *, latency: float = 0.0) -> RangeHTTPServer:
        server = RangeHTTPServer(root_dir, latency=latency).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
