"""Find the region of an S3 bucket when a request went to the wrong one.

With no region configured, S3 requests go to us-east-1. A bucket elsewhere answers a signed
request with ``400 AuthorizationHeaderMalformed ... <Region>eu-west-1</Region>`` and an
unsigned one with a bare ``301`` redirect (no body, no ``Location``). Like boto3 and GDAL,
rasteret then learns the bucket's region, from the error or from the ``x-amz-bucket-region``
header of one HEAD request to the bucket, and retries with a store for that region.
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request

__all__ = ["REGION_LOOKUP_URL", "forget_regions", "lookup_bucket_region", "wrong_region"]

REGION_LOOKUP_URL = "https://{bucket}.s3.amazonaws.com/"
"""Where the region of a bucket is asked for (any answer carries ``x-amz-bucket-region``)."""
REGION_LOOKUP_TIMEOUT = 10.0
"""Seconds for that HEAD request."""

_MARKERS = (
    "incorrectly configured region",  # obstore: 301 without Location
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
)
_REGION_RE = re.compile(r"<Region>([a-z0-9-]+)</Region>")
_lock = threading.Lock()
_known: dict[str, str | None] = {}


def wrong_region(message: str) -> tuple[bool, str | None]:
    """Whether an S3 error says the region is wrong, and the right region if it names it.

    >>> wrong_region("400 Bad Request: <Code>AuthorizationHeaderMalformed</Code>"
    ...              "<Region>eu-west-1</Region>")
    (True, 'eu-west-1')
    >>> wrong_region("503 Slow Down")
    (False, None)
    """
    if not any(marker in message for marker in _MARKERS):
        return False, None
    match = _REGION_RE.search(message)
    return True, match.group(1) if match else None


def lookup_bucket_region(bucket: str) -> str | None:
    """The region of ``bucket`` from one HEAD request (blocking; memoised per process)."""
    with _lock:
        if bucket in _known:
            return _known[bucket]
        request = urllib.request.Request(REGION_LOOKUP_URL.format(bucket=bucket), method="HEAD")
        region: str | None
        try:
            with urllib.request.urlopen(request, timeout=REGION_LOOKUP_TIMEOUT) as response:
                region = response.headers.get("x-amz-bucket-region")
        except urllib.error.HTTPError as error:  # 301/403 still carry the header
            region = error.headers.get("x-amz-bucket-region")
        except OSError:
            return None  # no answer: do not remember, a later call may succeed
        _known[bucket] = region
        return region


def forget_regions() -> None:
    """Drop the memoised regions (tests, and after a fork)."""
    global _lock
    _lock = threading.Lock()
    _known.clear()
