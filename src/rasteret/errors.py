"""The exception tree of rasteret.

Every error rasteret raises on purpose derives from :class:`RasteretError`. Leaves also
inherit the builtin that fits, so ``except ValueError`` or ``except FileNotFoundError`` keeps
working in code that does not know rasteret::

    RasteretError(Exception)
     ├── HeaderError(ValueError)            a TIFF/GeoTIFF header that cannot be parsed
     ├── DecodeError(ValueError)            tile bytes that do not decode to the declared tile
     ├── UnsupportedFormatError(NotImplementedError)
     │                                      valid input rasteret does not read (rotated grid, ...)
     ├── FetchError(OSError)                bytes could not be fetched after retries
     │    ├── ObjectNotFoundError(FileNotFoundError)
     │    └── AccessDeniedError(PermissionError)
     ├── SchemaError(ValueError)            a record table or collection with missing/bad fields
     ├── BandResolutionError(LookupError)   requested bands that the collection cannot resolve
     ├── EnrichmentError(RuntimeError)      every COG header of a build failed
     ├── WorkspaceError(ValueError)         refused collection names, unreadable workspaces
     │    └── CollectionNotFoundError(FileNotFoundError)
     │                                      nothing at the path given to load()
     ├── ReadError(RuntimeError)            a pixel read that could not produce a result
     │    └── StaleIndexError               a file changed since it was indexed
     └── MissingDependencyError(ImportError)
                                            an optional extra is not installed

    RasteretWarning(UserWarning)            something was skipped or guessed (unreadable
                                            headers, records or tiles left out of a read)
     └── NoOverlapWarning                   a read's AOIs or points meet no record: its
                                            result is empty (lon/lat swapped, say)

Messages say what was expected, what came, and where (URL, band, IFD, tile). URLs in them
never carry credentials: signature query parameters and ``user:password@`` are taken out of
every message a :class:`RasteretError` is made with, wherever it was written.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "BandResolutionError",
    "CollectionNotFoundError",
    "DecodeError",
    "EnrichmentError",
    "FetchError",
    "HeaderError",
    "MissingDependencyError",
    "NoOverlapWarning",
    "ObjectNotFoundError",
    "RasteretError",
    "RasteretWarning",
    "ReadError",
    "SchemaError",
    "StaleIndexError",
    "UnsupportedFormatError",
    "WorkspaceError",
]


class RasteretError(Exception):
    """Root of every error rasteret raises on purpose.

    Text arguments are redacted (:func:`rasteret.io.urls.redact_text`): a signed URL
    named in a message keeps its path and harmless parameters only.

    >>> str(RasteretError("bad tile in https://h/a.tif?X-Amz-Signature=abc&v=1"))
    'bad tile in https://h/a.tif?v=1'
    """

    def __init__(self, *args: object) -> None:
        from rasteret.io.urls import redact_text

        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class HeaderError(RasteretError, ValueError):
    """A TIFF/GeoTIFF header is malformed, truncated or inconsistent."""


class DecodeError(RasteretError, ValueError):
    """Tile bytes do not decode to the tile the header declares."""


class UnsupportedFormatError(RasteretError, NotImplementedError):
    """Well-formed input that rasteret does not read (e.g. a rotated transform)."""


class FetchError(RasteretError, OSError):
    """Bytes could not be fetched from the object store after retries."""


class ObjectNotFoundError(FetchError, FileNotFoundError):
    """The object does not exist (HTTP 404 or a missing local file)."""


class AccessDeniedError(FetchError, PermissionError):
    """The store refused access (HTTP 401/403): credentials or requester-pays are missing."""


class SchemaError(RasteretError, ValueError):
    """A record table or collection lacks a required field or has one of the wrong type."""


class BandResolutionError(RasteretError, LookupError):
    """Requested bands cannot be resolved from the collection's assets or metadata."""

    def __str__(self) -> str:  # LookupError/KeyError-style repr quoting is unhelpful here
        return str(self.args[0]) if self.args else ""


class EnrichmentError(RasteretError, RuntimeError):
    """COG header enrichment failed for every asset of a build."""


class WorkspaceError(RasteretError, ValueError):
    """A collection name or workspace that cannot be used (escapes the workspace, corrupt)."""


class CollectionNotFoundError(WorkspaceError, FileNotFoundError):
    """Nothing at the path given to :func:`rasteret.load`: no collection, no table of records.

    >>> issubclass(CollectionNotFoundError, FileNotFoundError)
    True
    """


class ReadError(RasteretError, RuntimeError):
    """A pixel read could not produce the requested result."""


class StaleIndexError(ReadError):
    """A file changed since it was indexed (its size or ETag differs from the collection's),
    so the stored tile offsets no longer point at its tiles; rebuild or re-enrich."""


class MissingDependencyError(RasteretError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""


class RasteretWarning(UserWarning):
    """Something was skipped or guessed and the user should know.

    Unreadable COG headers at build time, records without the requested bands' metadata
    (``on_missing="skip"``) or tiles that could not be fetched (``on_error="skip"``) at read
    time. Filter it like any warning:

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("2 records skipped", RasteretWarning)
    >>> caught[0].category.__name__
    'RasteretWarning'
    """


class NoOverlapWarning(RasteretWarning):
    """A read's AOIs or points meet no record of the collection (after its filters), so its
    result is empty: the message gives both extents, and says so when the coordinates would
    meet the records with x and y swapped. Silence it like any warning:

    >>> import warnings
    >>> warnings.filterwarnings("ignore", category=NoOverlapWarning)
    >>> warnings.resetwarnings()
    """
