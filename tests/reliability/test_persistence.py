"""Persistence that loses nothing: builds killed at any point, concurrent builders, torn copies.

Builds run in processes forked from a zygote that has rasteret imported (build_zygote.py) and
are SIGKILLed either at named points inside the write (white box) or after a seeded random
delay into it. Afterwards the folder must hold a complete collection, the previous one unless
the new one was already in place, and never a mixture or a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from build_zygote import record_table

import rasteret
from rasteret.errors import WorkspaceError
from rasteret.ingest import store
from rasteret.ingest.store import MANIFEST, read_manifest, redact_table

ROWS = 60_000
NAME = "killme"
HERE = Path(__file__).resolve().parent
KILL_POINTS_PREVIOUS = ("data", "manifest", "synced", "between_renames")
KILL_POINTS_NEW = ("after_swap", "cleanup")


class Zygote:
    """The helper process and its event stream."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "build_zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()
        assert self.next(timeout=60)["event"] == "ready"

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def next(self, timeout: float = 60) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def run(self, builds: list[dict[str, Any]], kill_delay: float | None = None) -> list[dict]:
        """Run builds at once; with ``kill_delay``, SIGKILL the (single) build that long after
        its write starts. Returns every event until all builds have exited."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"builds": builds}) + "\n")
        self.proc.stdin.flush()
        events: list[dict[str, Any]] = []
        exited = 0
        while exited < len(builds):
            event = self.next()
            event["at"] = time.monotonic()
            events.append(event)
            if event["event"] == "writing" and kill_delay is not None:
                time.sleep(kill_delay)
                with contextlib.suppress(ProcessLookupError):  # it finished first
                    os.kill(event["pid"], signal.SIGKILL)
            exited += event["event"] == "exit"
        return events

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.pump.join(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace holding collection A, and the fingerprints of A and B."""
    base = tmp_path_factory.mktemp("persist")
    a = rasteret.build_from_table(record_table(ROWS, 1), name=NAME, workspace_dir=base / "a")
    b = rasteret.build_from_table(record_table(ROWS, 2), name=NAME, workspace_dir=base / "b")
    fingerprints = {
        read_manifest(a.path)["fingerprint"]: "A",  # type: ignore[index]
        read_manifest(b.path)["fingerprint"]: "B",  # type: ignore[index]
    }
    return {"workspace": base / "a", "fingerprints": fingerprints}


def fresh_workspace(template: dict[str, Any], tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    shutil.copytree(template["workspace"], workspace)
    return workspace


def stored_state(workspace: Path, fingerprints: dict[str, str]) -> str:
    """'A' or 'B' after checking the stored collection is complete and exactly that input."""
    folder = workspace / f"{NAME}_records"
    collection = rasteret.load(folder)  # raises WorkspaceError when incomplete
    manifest = read_manifest(folder)
    assert manifest is not None
    state = fingerprints[manifest["fingerprint"]]
    ids = collection.to_table(columns=["id"]).column("id")
    seed = 1 if state == "A" else 2
    assert len(ids) == ROWS
    assert pc.all(pc.starts_with(ids, f"s{seed}-")).as_py()
    assert len(pc.unique(ids)) == ROWS
    return state


def leftovers(workspace: Path) -> list[str]:
    return sorted(p.name for p in workspace.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def build(workspace: Path, seed: int, **extra: Any) -> dict[str, Any]:
    return {"workspace": str(workspace), "name": NAME, "rows": ROWS, "seed": seed, **extra}


@pytest.mark.parametrize("kill_at", KILL_POINTS_PREVIOUS + KILL_POINTS_NEW)
def test_build_killed_at_each_step_leaves_a_complete_collection(
    kill_at: str, zygote: Zygote, template: dict[str, Any], tmp_path: Path
) -> None:
    workspace = fresh_workspace(template, tmp_path)
    events = zygote.run([build(workspace, 2, kill_at=kill_at)])
    assert (events[-1]["event"], events[-1]["status"]) == ("exit", -9)
    expected = "A" if kill_at in KILL_POINTS_PREVIOUS else "B"
    assert stored_state(workspace, template["fingerprints"]) == expected
    # the next build cleans up whatever the killed one left, and is itself complete
    rasteret.build_from_table(record_table(ROWS, 2), name=NAME, workspace_dir=workspace)
    assert stored_state(workspace, template["fingerprints"]) == "B"
    assert leftovers(workspace) == []


def test_build_killed_at_random_moments(
    zygote: Zygote, template: dict[str, Any], tmp_path: Path
) -> None:
    workspace = fresh_workspace(template, tmp_path / "timing")
    events = {e["event"]: e for e in zygote.run([build(workspace, 2)])}
    write_time = events["done"]["at"] - events["writing"]["at"]
    outcomes = []
    for seed in range(6):
        delay = (seed + 0.5) / 6 * 1.2 * write_time  # spread over the write and a bit past it
        workspace = fresh_workspace(template, tmp_path / f"seed{seed}")
        events = zygote.run([build(workspace, 2)], kill_delay=delay)
        assert events[-1]["event"] == "exit"
        outcomes.append(stored_state(workspace, template["fingerprints"]))
    assert "A" in outcomes  # some kills landed before the new collection was in place


def test_first_build_killed_leaves_nothing_that_loads(zygote: Zygote, tmp_path: Path) -> None:
    events = zygote.run([build(tmp_path, 2, kill_at="synced")])
    assert events[-1]["status"] == -9
    folder = tmp_path / f"{NAME}_records"
    assert read_manifest(folder) is None
    with pytest.raises(WorkspaceError, match="expected a complete rasteret collection"):
        rasteret.load(folder)


def test_two_processes_building_one_name(
    zygote: Zygote, template: dict[str, Any], tmp_path: Path
) -> None:
    workspace = fresh_workspace(template, tmp_path / "different")
    start_at = time.time() + 1.0
    events = zygote.run(
        [build(workspace, 2, start_at=start_at), build(workspace, 3, start_at=start_at)]
    )
    assert [e["status"] for e in events if e["event"] == "exit"] == [0, 0]
    folder = workspace / f"{NAME}_records"
    manifest = read_manifest(folder)
    assert manifest is not None
    ids = rasteret.load(folder).to_table(columns=["id"]).column("id")
    prefix = "s2-" if pc.starts_with(ids[0:1], "s2-")[0].as_py() else "s3-"
    assert len(ids) == ROWS
    assert pc.all(pc.starts_with(ids, prefix)).as_py()
    assert leftovers(workspace) == []

    # the same input twice at once: one writes, the other waits and reuses it
    workspace = fresh_workspace(template, tmp_path / "same")
    start_at = time.time() + 1.0
    events = zygote.run(
        [build(workspace, 2, start_at=start_at), build(workspace, 2, start_at=start_at)]
    )
    assert sorted(e["wrote"] for e in events if e["event"] == "done") == [False, True]
    assert stored_state(workspace, template["fingerprints"]) == "B"


def test_threads_building_one_name_take_turns(tmp_path: Path) -> None:
    """Builds of one name in threads serialise. A collection returned to one thread may be
    replaced by another thread's build of different input before it is read: reading it then
    fails loudly (FileNotFoundError), it never returns the other input's rows or a mixture."""
    tables = {seed: record_table(2000, seed) for seed in (5, 6)}
    outcomes: list[str] = []

    def run(seed: int) -> None:
        c = rasteret.build_from_table(tables[seed], name="threads", workspace_dir=tmp_path)
        try:
            ids = c.to_table(columns=["id"]).column("id")
        except FileNotFoundError:
            outcomes.append("replaced")
            return
        own = len(ids) == 2000 and pc.all(pc.starts_with(ids, f"s{seed}-")).as_py()
        outcomes.append("own" if own else "WRONG")

    threads = [threading.Thread(target=run, args=(s,)) for s in (5, 6, 5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 4
    assert "WRONG" not in outcomes
    assert "own" in outcomes
    ids = rasteret.load(tmp_path / "threads_records").to_table(columns=["id"]).column("id")
    assert len(ids) == 2000
    assert leftovers(tmp_path) == []


def test_incomplete_folders_never_load_as_complete(tmp_path: Path) -> None:
    table = record_table(3000, 7)
    collection = rasteret.build_from_table(table, name="torn", workspace_dir=tmp_path)
    folder = collection.path
    assert folder is not None
    manifest = json.loads((folder / MANIFEST).read_text())
    assert len(manifest["files"]) == 36  # one file per month partition
    victim = folder / sorted(manifest["files"])[3]

    victim.write_bytes(victim.read_bytes()[:100])  # a torn copy
    assert read_manifest(folder) is None
    with pytest.raises(WorkspaceError, match="every data file it lists"):
        rasteret.load(folder)
    rebuilt = rasteret.build_from_table(table, name="torn", workspace_dir=tmp_path)  # no cache hit
    assert len(rebuilt.to_table(columns=["id"])) == 3000

    victim = folder / sorted(json.loads((folder / MANIFEST).read_text())["files"])[0]
    victim.unlink()  # a partial copy
    assert read_manifest(folder) is None


def test_collection_files_of_a_rebuild_never_mix(tmp_path: Path) -> None:
    """A dataset opened before a rebuild fails loudly instead of reading the new files."""
    old = rasteret.build_from_table(record_table(1000, 8), name="mix", workspace_dir=tmp_path)
    rasteret.build_from_table(record_table(1000, 9), name="mix", workspace_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        old.to_table()


def test_export_refuses_to_replace_foreign_folders(tmp_path: Path) -> None:
    collection = rasteret.build_from_table(record_table(100, 10))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(WorkspaceError, match="refusing to replace"):
        collection.export(foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(rasteret.load(collection.export(empty))) == 100
    assert len(rasteret.load(collection.export(empty))) == 100  # replacing a collection is fine


def test_redact_table_reaches_every_nesting_level() -> None:
    signed = "https://h.example/a.tif?X-Amz-Signature=SIG&X-Amz-Credential=CRED&versionId=2"
    plain = "https://h.example/a.tif?versionId=2"
    secret_words = ("SIG", "CRED", "sig=", "pw@")
    table = pa.table(
        {
            "assets": pa.array([{"B1": {"href": signed, "type": "image/tiff"}}, None]),
            "as_map": pa.array(
                [[("B1", signed)], [("B2", "s3://b/k.tif")]], pa.map_(pa.string(), pa.string())
            ),
            "hrefs": pa.array([[signed, "https://u:pw@h.example/x.tif"], None]),
            "sas": pa.array(["https://acct.blob.core.windows.net/c/x.tif?sv=1&sig=abc", "x"]),
            "dict": pa.array([signed, signed]).dictionary_encode(),
            "clean": pa.array(["s3://bucket/key.tif?versionId=1", None]),
        }
    ).slice(0, 2)
    out = redact_table(table)
    text = json.dumps(out.to_pylist())
    assert not any(word in text for word in secret_words)
    assert out.column("assets")[0].as_py() == {"B1": {"href": plain, "type": "image/tiff"}}
    assert out.column("assets")[1].as_py() is None
    assert out.column("as_map")[0].as_py() == [("B1", plain)]
    assert out.column("hrefs")[0].as_py() == [plain, "https://h.example/x.tif"]
    untouched = [c.column("clean").chunk(0).buffers()[2].address for c in (out, table)]
    assert untouched[0] == untouched[1]  # columns without secrets are not copied
    assert out.schema == table.schema


def test_rename_fallback_without_atomic_exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where renameat2(RENAME_EXCHANGE) is missing, two renames do the swap."""
    monkeypatch.setattr(store, "_exchange", lambda a, b: False)
    for seed in (11, 12):
        collection = rasteret.build_from_table(
            record_table(500, seed), name="fallback", workspace_dir=tmp_path
        )
        ids = collection.to_table(columns=["id"]).column("id")
        assert pc.all(pc.starts_with(ids, f"s{seed}-")).as_py()
    assert leftovers(tmp_path) == []
