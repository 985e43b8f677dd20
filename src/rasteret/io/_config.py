"""Store configuration: :class:`CloudConfig` and the environment rules obstore leaves out.

obstore reads the standard variables itself (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``). This
module fills the gaps so a URL behaves as the cloud SDKs would:

- client variables (``AWS_ALLOW_HTTP``, ``AWS_TIMEOUT``, ``AWS_PROXY_URL``...) still apply
  when rasteret passes its own client options (obstore would otherwise drop them);
- an ``http://`` endpoint (``AWS_ENDPOINT_URL=http://...``) is allowed, as boto3 allows it;
- ``AWS_PROFILE`` and the ``~/.aws`` files are honoured through boto3, when it is installed;
- with no credentials configured anywhere, requests are unsigned, so public buckets work.
  Setting ``AWS_SKIP_SIGNATURE``/``GOOGLE_SKIP_SIGNATURE``/``AZURE_SKIP_SIGNATURE`` (to any
  value) leaves the choice to obstore, e.g. ``false`` to use an instance's metadata service.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_CLIENT_OPTIONS",
    "DEFAULT_POOL_MAX_IDLE_PER_HOST",
    "CloudConfig",
    "anonymous_default",
    "client_options",
    "env_fingerprint",
]

DEFAULT_POOL_MAX_IDLE_PER_HOST = 512
"""Idle connections kept per host: above the largest default concurrency (300), so a second
wave of requests reuses the first wave's connections instead of new TLS handshakes."""

DEFAULT_CLIENT_OPTIONS: Mapping[str, str] = {
    "pool_max_idle_per_host": str(DEFAULT_POOL_MAX_IDLE_PER_HOST),
    "pool_idle_timeout": "90s",
    "connect_timeout": "10s",
    "timeout": "300s",  # a backstop; rasteret.io.fetch enforces FetchOptions.request_timeout
}
"""obstore client options used for every store rasteret creates."""

_ENV_PREFIX = {"s3": ("AWS_",), "gs": ("GOOGLE_", "CLOUDSDK_"), "az": ("AZURE_",)}
_CLIENT_KEYS = (
    "allow_http", "allow_invalid_certificates", "connect_timeout", "default_content_type",
    "http1_only", "http2_only", "http2_keep_alive_interval", "http2_keep_alive_timeout",
    "http2_keep_alive_while_idle", "pool_idle_timeout", "pool_max_idle_per_host",
    "proxy_url", "proxy_ca_certificate", "proxy_excludes", "randomize_addresses", "timeout",
    "user_agent",
)  # fmt: skip
_HTTP_ENDPOINT_VARS = {
    "s3": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
    "gs": ("GOOGLE_BASE_URL",),
    "az": ("AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT"),
}
_CREDENTIAL_VARS = {
    "s3": (
        "AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ),
    "gs": (
        "GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH", "GOOGLE_SERVICE_ACCOUNT_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_BEARER_TOKEN",
    ),
    "az": (
        "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_MASTER_KEY",
        "AZURE_STORAGE_SAS_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_TOKEN",
        "AZURE_CLIENT_SECRET", "AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_ID",
        "AZURE_STORAGE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USE_AZURE_CLI",
        "AZURE_STORAGE_USE_EMULATOR", "AZURE_MSI_ENDPOINT", "AZURE_IDENTITY_ENDPOINT",
        "AZURE_MSI_RESOURCE_ID", "AZURE_OBJECT_ID",
    ),
}  # fmt: skip
_SKIP_VARS = {
    "s3": "AWS_SKIP_SIGNATURE",
    "gs": "GOOGLE_SKIP_SIGNATURE",
    "az": "AZURE_SKIP_SIGNATURE",
}


@dataclass(frozen=True, slots=True)
class CloudConfig:
    """How URLs reach their stores, beyond what the environment says.

    >>> CloudConfig(requester_pays=True, region="us-west-2").requester_pays
    True
    """

    requester_pays: bool = False
    """Send ``x-amz-request-payer: requester`` (S3 requester-pays buckets)."""
    region: str | None = None
    """S3 region for ``s3://`` URLs; overrides ``AWS_REGION``."""
    url_rewrite_patterns: Mapping[str, str] | None = None
    """``{prefix: replacement}`` applied to every URL before it is routed (longest first)."""
    client_options: Mapping[str, Any] | None = None
    """obstore ``ClientConfig`` entries (timeouts, proxy, pool...) over rasteret's defaults."""
    anonymous: bool | None = None
    """Unsigned requests: True/False forces it; None (default) signs only when credentials
    are configured."""

    def __hash__(self) -> int:
        return hash(self.cache_key())

    def cache_key(self) -> tuple[Any, ...]:
        """A hashable key of everything that changes the store (rewrites do not)."""
        options = tuple(sorted((k, repr(v)) for k, v in (self.client_options or {}).items()))
        return (self.requester_pays, self.region, options, self.anonymous)


_HTTP_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy")
_fingerprints: dict[str, tuple[dict[Any, Any], tuple[tuple[str, str], ...]]] = {}
"""Per store kind: the environment (``os.environ``'s raw mapping, copied) the fingerprint
was taken from, and the fingerprint."""


def env_fingerprint(kind: str) -> tuple[tuple[str, str], ...]:
    """The environment variables that configure stores of ``kind``, as a hashable key.

    Every fetch asks (the shared store is keyed by it), so it is worked out again only when
    the environment changed: comparing the raw mapping with a copy is one C-level dict
    comparison, where decoding and filtering every variable costs ~0.1 ms.

    >>> os.environ["AWS_REGION_DOCTEST"] = "eu-west-1"
    >>> ("AWS_REGION_DOCTEST", "eu-west-1") in env_fingerprint("s3")
    True
    >>> del os.environ["AWS_REGION_DOCTEST"]
    >>> ("AWS_REGION_DOCTEST", "eu-west-1") in env_fingerprint("s3")
    False
    """
    prefixes = _ENV_PREFIX.get(kind)
    if prefixes is None:
        if kind != "http":
            return ()
        prefixes = _HTTP_ENV
    raw = getattr(os.environ, "_data", None)  # CPython's os._Environ keeps it; else no cache
    cached = _fingerprints.get(kind)
    if raw is not None and cached is not None and cached[0] == raw:
        return cached[1]
    found = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(prefixes)))
    if raw is not None:
        _fingerprints[kind] = (dict(raw), found)
    return found


def client_options(kind: str, config: CloudConfig, *, allow_http: bool) -> dict[str, Any]:
    """obstore client options: defaults, then client variables from the env, then config."""
    options: dict[str, Any] = dict(DEFAULT_CLIENT_OPTIONS)
    for prefix in _ENV_PREFIX.get(kind, ())[:1]:
        for key in _CLIENT_KEYS:
            value = os.environ.get(prefix + key.upper())
            if value is not None:
                options[key] = _as_bool(value) if key in ("allow_http", "http1_only") else value
    endpoints = (os.environ.get(v, "") for v in _HTTP_ENDPOINT_VARS.get(kind, ()))
    if allow_http or any(e.lower().startswith("http://") for e in endpoints):
        options.setdefault("allow_http", True)
    options.update(config.client_options or {})
    return options


def anonymous_default(kind: str) -> tuple[bool, dict[str, Any]]:
    """Whether stores of ``kind`` sign nothing by default, and extra store keyword arguments.

    Returns ``(anonymous, extra)``; ``extra`` may hold a ``credential_provider`` (boto3
    profile credentials) and ``config`` defaults (a region from ``~/.aws/config``).
    """
    if os.environ.get(_SKIP_VARS[kind]) is not None:
        return False, {}
    extra: dict[str, Any] = {}
    if kind == "s3" and not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        region = _aws_profile_region()
        if region:
            extra["config"] = {"region": region}
    if any(os.environ.get(var) for var in _CREDENTIAL_VARS[kind]):
        return False, extra
    if kind == "s3":
        provider = _aws_profile_credentials()
        if provider is not None:
            extra["credential_provider"] = provider
            return False, extra
    if kind == "gs" and _google_adc_file().is_file():
        return False, extra
    return True, extra


def _as_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _aws_files_present() -> bool:
    credentials = os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
    config = os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")
    return bool(os.environ.get("AWS_PROFILE")) or any(
        Path(p).expanduser().is_file() for p in (credentials, config)
    )


def _boto3_session() -> Any:
    if not _aws_files_present() or importlib.util.find_spec("boto3") is None:
        return None
    import boto3

    try:
        return boto3.session.Session()
    except Exception:  # a broken profile: behave as if there were none
        return None


def _aws_profile_region() -> str | None:
    session = _boto3_session()
    return None if session is None else session.region_name


def _aws_profile_credentials() -> Any:
    session = _boto3_session()
    if session is None or session.get_credentials() is None:
        return None
    from obstore.auth.boto3 import Boto3CredentialProvider

    return Boto3CredentialProvider(session)


def _google_adc_file() -> Path:
    root = os.environ.get("CLOUDSDK_CONFIG") or os.path.join("~", ".config", "gcloud")
    return Path(root, "application_default_credentials.json").expanduser()
