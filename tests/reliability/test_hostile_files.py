"""Broken and hostile files through the whole pipeline: per-asset failures or clear errors.

- A header that keeps asking for more bytes (each IFD just past what was fetched): the parser
  signals IncompleteHeaderError, enrichment fetches more, at most ``MAX_HEADER_FETCHES``
  times, then lists the asset as a failure; the build goes on.
- A truncated file: its tile table points past the object, so enrichment lists it.
- A corrupt tile: enrichment is fine, a read raises DecodeError naming the URL and the tile.
- A tile declared absurdly large: refused by the decoder before it allocates.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow as pa
import pytest
import shapely

import rasteret
from rasteret._collection_reads import records_for
from rasteret.errors import DecodeError, RasteretWarning, UnsupportedFormatError
from rasteret.ingest.enrich import MAX_HEADER_FETCHES
from rasteret.read import ReadOptions, read_chips
from rasteret.testing.scenes import SceneSpec, write_scene
from rasteret.tiff.header import parse_header

SPEC = SceneSpec("good", 32633, (500_000.0, 4_600_000.0), size=256, tile=128, overviews=(2,))
AOI = shapely.box(500_050, 4_597_500, 500_950, 4_599_950)


def table_of(hrefs: dict[str, str]) -> pa.Table:
    return pa.table(
        {
            "id": list(hrefs),
            "datetime": [2024] * len(hrefs),
            "geometry": ["POLYGON ((14 41, 16 41, 16 42, 14 42, 14 41))"] * len(hrefs),
            "assets": [{"B04": {"href": href}} for href in hrefs.values()],
        }
    )


def write_ifd_chain(path: Path, hops: int) -> None:
    """A valid TIFF of ``hops`` 1x1 IFDs, each just past twice the previous one's offset."""
    offsets = [8] + [65536 * 2**k + 100 for k in range(1, hops)]
    with open(path, "wb") as fh:
        fh.write(b"II*\x00" + struct.pack("<I", offsets[0]))
        for k, offset in enumerate(offsets):
            following = offsets[k + 1] if k + 1 < len(offsets) else 0
            entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (273, 4, 1, offset + 70),
                       (279, 4, 1, 1)]  # fmt: skip
            fh.seek(offset)
            fh.write(struct.pack("<H", len(entries)))
            fh.write(b"".join(struct.pack("<HHII", *e) for e in entries))
            fh.write(struct.pack("<I", following) + b"\x00\x07")


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return write_scene(SPEC, tmp_path, bands=("B04",))["B04"]


def test_headers_that_never_end_become_per_asset_failures(tmp_path: Path, good: Path) -> None:
    chain = tmp_path / "chain.tif"
    write_ifd_chain(chain, MAX_HEADER_FETCHES + 3)
    assert len(parse_header(chain.read_bytes()).ifds) == MAX_HEADER_FETCHES + 3  # valid
    with pytest.warns(RasteretWarning, match="1 of 2 COG headers"):
        collection = rasteret.build_from_table(
            table_of({"chain": str(chain), "good": str(good)}), enrich_cog=True
        )
    (failure,) = collection.enrichment_errors
    assert failure.record_id == "chain"
    assert f"incomplete after {MAX_HEADER_FETCHES} ranged GETs" in failure.error
    assert collection.bands == ["B04"]


def test_truncated_files_are_listed(tmp_path: Path, good: Path) -> None:
    cut = tmp_path / "cut.tif"
    data = good.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.warns(RasteretWarning, match="1 of 2"):
        collection = rasteret.build_from_table(
            table_of({"cut": str(cut), "good": str(good)}), enrich_cog=True
        )
    (failure,) = collection.enrichment_errors
    assert failure.record_id == "cut"
    assert "HeaderError" in failure.error
    assert "to end within the object's" in failure.error


def test_corrupt_tiles_raise_decode_errors_naming_url_and_tile(tmp_path: Path, good: Path) -> None:
    bad = tmp_path / "bad.tif"
    data = bytearray(good.read_bytes())
    header = parse_header(bytes(data))
    ifd = header.ifds[0]
    start, count = int(ifd.tile_offsets[0]), int(ifd.tile_byte_counts[0])
    data[start + 10 : start + count - 10] = bytes(count - 20)  # the middle of tile 0 zeroed
    bad.write_bytes(bytes(data))
    collection = rasteret.build_from_table(table_of({"bad": str(bad)}), enrich_cog=True)
    assert collection.enrichment_errors == []
    with pytest.raises(DecodeError, match=rf"tile 0 of {bad}"):
        collection.get_numpy(AOI, ["B04"], geometry_crs=32633, cache_mb=0)
    records = records_for(collection, ["B04"])
    with pytest.warns(UserWarning, match="1 \\(record, band\\) pairs"):
        chips = read_chips(records, [AOI], "EPSG:32633", ["B04"],
                           ReadOptions(cache_mb=0, on_error="skip"))  # fmt: skip
    assert chips.chips == []
    (failed,) = chips.failed
    assert (failed.record_id, failed.band) == ("bad", "B04")
    assert failed.error.startswith("DecodeError: ")


def test_absurd_tile_sizes_are_refused_before_allocating(tmp_path: Path) -> None:
    """One 65535 x 32768 tile of 64 uint64 samples: 1 TiB declared, 60 bytes stored."""
    path = tmp_path / "huge.tif"
    entries = [(256, 4, 1, 100), (257, 4, 1, 60), (258, 3, 1, 64), (277, 3, 1, 64),
               (322, 4, 1, 65535), (323, 4, 1, 32768), (324, 4, 1, 200), (325, 4, 1, 60),
               (33550, 12, 3, 400), (33922, 12, 6, 424), (34735, 3, 16, 480)]  # fmt: skip
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
    body = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    body = body.ljust(200, b"\x00") + bytes(60)
    body = body.ljust(400, b"\x00") + struct.pack("<3d", 10.0, 10.0, 0.0)
    body += struct.pack("<6d", 0, 0, 0, 500_000.0, 4_600_000.0, 0)
    geokeys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633)
    body = body.ljust(480, b"\x00") + struct.pack("<16H", *geokeys)
    path.write_bytes(body)
    collection = rasteret.build_from_table(table_of({"huge": str(path)}), enrich_cog=True)
    assert collection.enrichment_errors == []  # a valid header; its tile is the problem
    with pytest.raises(UnsupportedFormatError, match="at most 1073741824 decoded bytes"):
        collection.get_numpy(shapely.box(500_000, 4_599_400, 500_500, 4_600_000), ["B04"],
                             geometry_crs=32633, cache_mb=0)  # fmt: skip
