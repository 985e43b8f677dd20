"""Loopback servers for tests and benchmarks: an HTTP range server and a moto S3 server.

Both bind 127.0.0.1 on a free port, run in daemon threads and are context managers.

:class:`RangeHTTPServer` serves a folder over HTTP/1.1 with real ``Range`` support (206,
``Content-Range``, 416), ``HEAD``, ``ETag``, keep-alive, an optional latency per request, a
request log, and injectable failures: a status for the next *n* requests of a path
(:meth:`~RangeHTTPServer.fail`), and seeded faults on the wire
(:meth:`~RangeHTTPServer.inject_faults` with a :class:`~rasteret.testing.faults.FaultPlan`):
503 SlowDown, 500 and 429 answers in S3's XML, connections reset before any byte, bodies cut
off half-way after the full ``Content-Length`` was promised, responses that stall mid-body,
and ``206`` answers that carry only half the range (with a matching ``Content-Range``). A
server can also stand in for S3: point ``AWS_ENDPOINT_URL`` at it and ``s3://bucket/key``
is served from ``root_dir/bucket/key`` (signatures are not checked). File bodies go from the
page cache to the socket with ``sendfile`` (no copy through Python), so the server costs
little CPU next to its client, as a remote store costs none.

:class:`MotoS3Server` runs moto's S3 in server mode and hands out the standard AWS environment
variables that point any client at it, so code under test is configured only through them.

>>> import pathlib, tempfile, urllib.request
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = (root / "a.bin").write_bytes(b"0123456789")
>>> with RangeHTTPServer(root) as server:
...     req = urllib.request.Request(server.url_for("a.bin"), headers={"Range": "bytes=2-4"})
...     with urllib.request.urlopen(req) as resp:
...         print(resp.status, resp.read(), server.count("/a.bin"))
206 b'234' 1
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rasteret._optional import import_optional
from rasteret.testing.faults import STATUS, FaultInjector, FaultKind, FaultPlan

__all__ = ["MotoS3Server", "RangeHTTPServer", "RequestRecord"]

#: Listen backlog of the HTTP server: enough for a few hundred simultaneous connects.
DEFAULT_REQUEST_QUEUE_SIZE = 1024
#: Seconds an idle keep-alive connection is kept open by the HTTP server.
DEFAULT_IDLE_TIMEOUT = 60.0

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request seen by :class:`RangeHTTPServer`."""

    method: str
    """``GET`` or ``HEAD``."""
    path: str
    """URL path without the query string, e.g. ``/scenes/a.tif``."""
    range: str | None
    """The raw ``Range`` header, if any."""
    status: int
    """The status code that was sent."""
    query: str = ""
    """The raw query string (signed URLs put their signature here)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Request headers as ``(lower-case name, value)`` pairs."""
    fault: str | None = None
    """The fault injected into the answer (a :data:`~rasteret.testing.faults.FaultKind`)."""

    def header(self, name: str) -> str | None:
        """The value of request header ``name`` (case-insensitive), if sent."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, slots=True)
class _FileSpan:
    """``length`` bytes of the file ``path`` from ``offset``: a response body not yet read."""

    path: Path
    offset: int
    length: int

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, part: slice) -> _FileSpan:
        """A sub-span (``span[:n]``); only plain forward slices are supported."""
        start, stop, step = part.indices(self.length)
        if step != 1:
            raise ValueError(f"expected a slice with step 1, got step {step}")
        return _FileSpan(self.path, self.offset + start, max(stop - start, 0))


_Body = bytes | _FileSpan
"""A response body: bytes in memory, or a span of a file sent with ``sendfile``."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = DEFAULT_REQUEST_QUEUE_SIZE
    owner: RangeHTTPServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, cancelled reads) are normal here; report the rest."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = DEFAULT_IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read :attr:`RangeHTTPServer.requests` instead."""

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _send(self, status: int, headers: Mapping[str, str], body: _Body, head: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self._write(body)

    def _write(self, body: _Body, start: int = 0, stop: int | None = None) -> None:
        """Send bytes ``[start, stop)`` of ``body``; file spans go out with ``sendfile``."""
        stop = len(body) if stop is None else stop
        if stop <= start:
            return
        if isinstance(body, _FileSpan):
            with body.path.open("rb") as fh:
                self.connection.sendfile(fh, body.offset + start, stop - start)
        else:
            self.wfile.write(memoryview(body)[start:stop])

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        split = urllib.parse.urlsplit(self.path)
        url_path = urllib.parse.unquote(split.path)
        range_header = self.headers.get("Range")
        if owner.latency > 0:
            time.sleep(owner.latency)
        forced = owner._forced_response(url_path)
        status, headers, body = forced or owner._respond(url_path, range_header)
        fault = None if head or forced else owner._next_fault(url_path, range_header, status)
        if fault in STATUS:
            status, code = STATUS[fault]
            headers = {"Content-Type": "application/xml", "Retry-After": "0"}
            body = _s3_error(code, url_path)
        sent = tuple((k.lower(), v) for k, v in self.headers.items())
        owner._record(
            RequestRecord(self.command, url_path, range_header, status, split.query, sent, fault)
        )
        if fault is None or fault in STATUS:
            self._send(status, headers, body, head)
        else:
            self._send_broken(fault, status, headers, body)

    def _send_broken(
        self, fault: FaultKind, status: int, headers: Mapping[str, str], body: _Body
    ) -> None:
        """A reset, a cut-off or stalled body, or a short 206 (see :class:`FaultPlan`)."""
        if fault == "reset":
            self._abort()
            return
        if fault == "short":
            start, _, size = _content_range(headers, len(body))
            body = body[: len(body) // 2]
            if body:
                headers = {
                    **headers,
                    "Content-Range": f"bytes {start}-{start + len(body) - 1}/{size}",
                }
            self._send(status, headers, body, head=False)
            return
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        half = len(body) // 2
        self._write(body, 0, half)
        if fault == "cut":
            self._abort()
            return
        # stall: stop sending for a while (or until the server stops), then finish the body
        self.wfile.flush()
        self.server.owner._stopping.wait(self.server.owner._stall_seconds())
        self._write(body, half)

    def _abort(self) -> None:
        """Drop the connection with a TCP reset."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # the socket closes (RST) once finish() closes its files


def _s3_error(code: str, resource: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
        f"{code}</Code><Message>Please reduce your request rate (injected)</Message>"
        f"<Resource>{resource}</Resource><RequestId>0</RequestId></Error>"
    ).encode()


def _content_range(headers: Mapping[str, str], length: int) -> tuple[int, int, int]:
    """``(start, end, size)`` of a response's ``Content-Range`` (the whole body if none)."""
    match = re.match(r"bytes (\d+)-(\d+)/(\d+)", headers.get("Content-Range", ""))
    if match is None:
        return 0, length, length
    start, last, size = (int(g) for g in match.groups())
    return start, last + 1, size


class RangeHTTPServer:
    """A threaded loopback HTTP/1.1 server for the files under ``root_dir``.

    Args:
        root_dir: Folder whose files are served; ``/a/b.tif`` maps to ``root_dir/a/b.tif``.
        latency: Seconds to sleep before answering each request (simulates an object store).
        host: Interface to bind; loopback by default.
        port: Port to bind; 0 picks a free one.
        faults: Seeded faults to inject into GET answers (see :meth:`inject_faults`).
    """

    def __init__(
        self,
        root_dir: str | Path,
        *,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.root_dir = Path(root_dir).resolve()
        self.latency = latency
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._forced: dict[str, list[Any]] = {}
        self._injector: FaultInjector | None = None
        self._stopping = threading.Event()
        self.inject_faults(faults)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind and start serving in a daemon thread; returns ``self``."""
        server = _Server((self._host, self._port), _Handler)
        server.owner = self
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so stop() returns quickly
            name="rasteret-range-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (stalled answers are let go)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("RangeHTTPServer is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url_for(self, relpath: str) -> str:
        """URL of ``relpath`` (relative to ``root_dir``)."""
        return f"{self.url}/{urllib.parse.quote(relpath.lstrip('/'))}"

    # -- request log -----------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of every request seen so far, in arrival order."""
        with self._lock:
            return list(self._log)

    def count(self, path: str | None = None, method: str = "GET") -> int:
        """Number of ``method`` requests, for one URL path (``/a.tif``) or all paths."""
        with self._lock:
            return sum(
                1 for r in self._log if r.method == method and (path is None or r.path == path)
            )

    def clear_log(self) -> None:
        """Forget every request seen so far."""
        with self._lock:
            self._log.clear()

    def fail(
        self,
        path: str,
        status: int,
        *,
        times: int | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests of URL path ``path`` with ``status``.

        Args:
            path: URL path, e.g. ``/a.tif``.
            status: Status code to send.
            times: How many requests (None: until :meth:`heal`).
            body: Response body (default: a short text naming the status).
            headers: Extra response headers.
        """
        with self._lock:
            self._forced[path] = [status, times, body, dict(headers or {})]

    def heal(self, path: str | None = None) -> None:
        """Stop the failures injected by :meth:`fail` (for one path or all)."""
        with self._lock:
            if path is None:
                self._forced.clear()
            else:
                self._forced.pop(path, None)

    def inject_faults(self, plan: FaultPlan | None) -> FaultInjector | None:
        """From now on, fault GET answers as ``plan`` says (None: stop injecting).

        Each GET is one request keyed by ``url_path|Range header``; a repeated request gets a
        fresh draw (see :class:`~rasteret.testing.faults.FaultPlan`). Status faults apply to
        every GET; resets, cuts, stalls and short bodies to answers with a body (200/206).
        HEAD requests and :meth:`fail` answers are never faulted.

        Returns:
            The injector, whose log lists the faults injected.
        """
        with self._lock:
            self._injector = None if plan is None else FaultInjector(plan)
            return self._injector

    @property
    def fault_injector(self) -> FaultInjector | None:
        """The current injector (its ``faults`` list what was injected), if any."""
        with self._lock:
            return self._injector

    # -- internals -------------------------------------------------------------------------
    def _next_fault(self, url_path: str, range_header: str | None, status: int) -> FaultKind | None:
        injector = self.fault_injector
        if injector is None:
            return None
        kind = injector.next(f"{url_path}|{range_header}")
        if kind is not None and kind not in STATUS and status not in (200, 206):
            return None
        return kind

    def _stall_seconds(self) -> float:
        injector = self.fault_injector
        return 0.0 if injector is None else injector.plan.stall_seconds

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _forced_response(self, url_path: str) -> tuple[int, dict[str, str], bytes] | None:
        with self._lock:
            forced = self._forced.get(url_path)
            if forced is None:
                return None
            status, times, body, headers = forced
            if times is not None:
                if times <= 1:
                    del self._forced[url_path]
                else:
                    forced[1] = times - 1
        body = body if body is not None else f"injected {status}\n".encode()
        return int(status), {"Content-Type": "text/plain", **headers}, body

    def _respond(
        self, url_path: str, range_header: str | None
    ) -> tuple[int, dict[str, str], _Body]:
        file = (self.root_dir / url_path.lstrip("/")).resolve()
        if not file.is_relative_to(self.root_dir) or not file.is_file():
            return 404, {"Content-Type": "text/plain"}, b"not found\n"
        stat = file.stat()
        size = stat.st_size
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{size:x}-{stat.st_mtime_ns:x}"',
            "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
        }
        span = _parse_range(range_header, size)
        if span is None:
            return 200, headers, _FileSpan(file, 0, size)
        start, end = span
        if start >= end:
            headers["Content-Range"] = f"bytes */{size}"
            return 416, headers, b""
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        return 206, headers, _FileSpan(file, start, end - start)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Half-open ``(start, end)`` for one ``bytes=`` range; None means "serve everything".

    An unsatisfiable range comes back as ``start >= end``. Malformed or multi-range headers
    are ignored, as RFC 9110 allows.
    """
    if header is None:
        return None
    match = _RANGE_RE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first == "":
        if last == "":
            return None
        suffix = int(last)  # the last N bytes
        return (max(size - suffix, 0), size) if suffix > 0 else (size, size)
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return size, size
    return start, size if last == "" else min(int(last) + 1, size)


class MotoS3Server:
    """moto's S3 in server mode on 127.0.0.1, configured through standard AWS variables.

    Args:
        region: Region reported in :attr:`env`.
        access_key: Access key id reported in :attr:`env` (moto accepts any).
        secret_key: Secret key reported in :attr:`env`.
    """

    def __init__(
        self, *, region: str = "us-east-1", access_key: str = "testing", secret_key: str = "testing"
    ) -> None:
        self.region = region
        self.access_key = access_key
        self.secret_key = secret_key
        self._server: Any = None
        self._client: Any = None

    def start(self) -> Self:
        """Start moto in a daemon thread; returns ``self``."""
        moto_server = import_optional("moto.server", extra="test")
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._client = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("MotoS3Server is not started")
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point S3 clients at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self) -> Any:
        """A boto3 S3 client for setting up fixtures (configured explicitly, not from env)."""
        if self._client is None:
            boto3 = import_optional("boto3", extra="test")
            self._client = boto3.session.Session(
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name=self.region,
            ).client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` (no error if it exists already)."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)

    def put(self, bucket: str, key: str, data: bytes | str | Path) -> str:
        """Upload bytes or a local file to ``s3://bucket/key``; returns that URL."""
        body = data if isinstance(data, bytes) else Path(data).read_bytes()
        self.client().put_object(Bucket=bucket, Key=key, Body=body)
        return f"s3://{bucket}/{key}"

    def put_dir(self, bucket: str, root_dir: str | Path, prefix: str = "") -> dict[str, str]:
        """Upload every file under ``root_dir``; returns {relative path: s3 URL}."""
        root = Path(root_dir)
        urls: dict[str, str] = {}
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = file.relative_to(root).as_posix()
            key = f"{prefix.rstrip('/')}/{rel}" if prefix else rel
            urls[rel] = self.put(bucket, key, file)
        return urls
