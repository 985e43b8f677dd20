"""What went wrong with one request: retry it, or turn it into a rasteret error.

obstore raises ``FileNotFoundError`` (404), ``PermissionDeniedError`` (403),
``UnauthenticatedError`` (401) and ``GenericError`` for everything else, with the HTTP status
in the message. Custom readers raise builtins. Both are sorted here into retryable failures
(5xx, 429, 408, timeouts, dropped connections, short bodies) and final ones.

Errors name the URL, never its credentials: :func:`describe` and :func:`scrub` take signature
query parameters (``X-Amz-Signature``, ``sig``, ...) and ``user:password@`` out of messages,
including those of the chained store errors a traceback prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from obstore import exceptions as obstore_errors

from rasteret.errors import AccessDeniedError, FetchError, ObjectNotFoundError
from rasteret.io._s3region import wrong_region
from rasteret.io.urls import redact_text

__all__ = [
    "Failure",
    "ShortBodyError",
    "classify",
    "describe",
    "redact_text",
    "scrub",
    "to_fetch_error",
]

FailureKind = Literal[
    "not_found", "denied", "unsatisfiable", "wrong_region", "short", "transient", "final"
]

_STATUS_RE = re.compile(r"(?:status code: |status: )(\d{3})")
_UNSATISFIABLE = ("StartTooLarge", "Range Not Satisfiable", "InvalidRange")
_FINAL_OBSTORE = (
    obstore_errors.InvalidPathError,
    obstore_errors.NotSupportedError,
    obstore_errors.PreconditionError,
    obstore_errors.NotModifiedError,
    obstore_errors.UnknownConfigurationKeyError,
    obstore_errors.AlreadyExistsError,
)
_MAX_CAUSE_CHARS = 300


class ShortBodyError(Exception):
    """A response carried fewer (or more) bytes than the range asked for."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"expected {expected} bytes, got {got}")
        self.expected = expected
        self.got = got


@dataclass(frozen=True, slots=True)
class Failure:
    """How one failed request is handled."""

    kind: FailureKind
    status: int | None = None

    @property
    def retryable(self) -> bool:
        """Worth another attempt (server trouble, throttling, network, short body)."""
        return self.kind in ("transient", "short")


def classify(exc: BaseException) -> Failure:
    """Sort an exception from a reader into a :class:`Failure`."""
    if isinstance(exc, ShortBodyError):
        return Failure("short")
    if isinstance(exc, ObjectNotFoundError | FileNotFoundError):
        return Failure("not_found", 404)
    if isinstance(exc, AccessDeniedError | PermissionError | obstore_errors.PermissionDeniedError):
        return Failure("denied", 403)
    if isinstance(exc, obstore_errors.UnauthenticatedError):
        return Failure("denied", 401)
    if isinstance(exc, TimeoutError | ConnectionError):
        return Failure("transient")
    if isinstance(exc, _FINAL_OBSTORE):
        return Failure("final")
    text = str(exc)
    if wrong_region(text)[0]:
        return Failure("wrong_region", _status(text))
    status = _status(text)
    if any(marker in text for marker in _UNSATISFIABLE) or status == 416:
        return Failure("unsatisfiable", 416)
    if status is not None:
        if status in (401, 403):
            return Failure("denied", status)
        if status == 404:
            return Failure("not_found", 404)
        if status in (408, 429) or status >= 500:
            return Failure("transient", status)
        return Failure("final", status)
    if isinstance(exc, obstore_errors.BaseError | OSError):
        return Failure("transient")  # connection refused/reset, DNS, body read errors
    return Failure("final")


def _status(text: str) -> int | None:
    match = _STATUS_RE.search(text)
    return int(match.group(1)) if match else None


def scrub(exc: BaseException) -> None:
    """Redact (in place) the messages of ``exc`` and of every exception chained to it."""
    stack, seen = [exc], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        try:
            current.args = tuple(redact_text(a) if isinstance(a, str) else a for a in current.args)
            if isinstance(current, OSError):
                for attr in ("filename", "filename2", "strerror"):
                    value = getattr(current, attr, None)
                    if isinstance(value, str):
                        setattr(current, attr, redact_text(value))
        except (AttributeError, TypeError):  # an exception type with read-only fields
            pass
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def describe(exc: BaseException) -> str:
    """A one-line summary of ``exc`` with every URL in it redacted."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    first = redact_text(first)
    if len(first) > _MAX_CAUSE_CHARS:
        first = first[: _MAX_CAUSE_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def to_fetch_error(
    exc: BaseException, failure: Failure, *, url: str, what: str, attempts: int
) -> FetchError:
    """The rasteret error for a request that will not be retried again.

    Args:
        exc: The last exception.
        failure: Its classification.
        url: The URL for the message (already redacted).
        what: What was being read, e.g. ``"bytes [0, 65536)"``.
        attempts: How many requests were made.
    """
    cause = describe(exc)
    tries = f"after {attempts} attempts" if attempts > 1 else "on the first attempt"
    if failure.kind == "not_found":
        return ObjectNotFoundError(f"expected an object at {url}, got none (404) reading {what}")
    if failure.kind == "denied":
        return AccessDeniedError(
            f"access to {url} was refused ({failure.status}) reading {what}: check the "
            "credentials (AWS_*/GOOGLE_*/AZURE_* environment variables; with none set, "
            "requests are unsigned), requester-pays (CloudConfig(requester_pays=True)), "
            f"or pass backend=... ({cause})"
        )
    if failure.kind == "unsatisfiable":
        return FetchError(
            f"expected {what} of {url}, but the range starts past the end of the object "
            f"(416; stale metadata or a truncated file?): {cause}"
        )
    if failure.kind == "wrong_region":
        return FetchError(
            f"{url} is in another S3 region than the one requested and its region could not "
            f"be found; set AWS_REGION or CloudConfig(region=...) ({cause})"
        )
    if isinstance(exc, ShortBodyError):
        return FetchError(
            f"expected {exc.expected} bytes for {what} of {url}, got {exc.got} {tries} "
            "(is the object shorter than the range, or was it replaced?)"
        )
    return FetchError(f"could not fetch {what} of {url} {tries}: {cause}")
