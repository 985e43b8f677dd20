"""A helper process for kill tests: imports rasteret once, then forks one builder per command.

Python and rasteret take ~2 s to import; forking an idle, single-threaded process that has
already imported them makes every killed build cost only the build itself.

Protocol (JSON lines): the zygote prints ``{"event": "ready"}``, then reads one command per
line: ``{"builds": [{...}, ...]}``. It forks one child per build, prints ``{"event": "forked",
"pid": ...}`` for each, and ``{"event": "exit", "pid": ..., "status": ...}`` as each ends
(killed children report ``-9``). A child prints ``{"event": "writing", "pid": ...}`` when the
collection write starts and ``{"event": "done", "pid": ..., "wrote": bool}`` when it returns.

Each build: ``workspace``, ``name``, ``rows``, ``seed``, optional ``kill_at`` (a named point
inside the write where the child SIGKILLs itself) and ``start_at`` (a wall-clock time to wait
for, so that several children start together).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

import rasteret
import rasteret.builders
from rasteret.ingest import store


def record_table(rows: int, seed: int) -> pa.Table:
    """A deterministic record table spread over 36 months (36 partitions)."""
    rng = np.random.default_rng(seed)
    base = np.datetime64("2020-01-01T00:00:00", "us")
    offsets = rng.integers(0, 3 * 365 * 86400, rows) * 1_000_000
    x, y = rng.uniform(-170, 170, rows), rng.uniform(-80, 80, rows)
    return pa.table(
        {
            "id": [f"s{seed}-{i:07d}" for i in range(rows)],
            "datetime": pa.array(
                base + offsets.astype("timedelta64[us]"), pa.timestamp("us", "UTC")
            ),
            "geometry": shapely.to_wkb(shapely.box(x, y, x + 0.1, y + 0.1)),
            "assets": [
                {"B04": {"href": f"https://h.example/{seed}/{i}/B04.tif"}} for i in range(rows)
            ],
        }
    )


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(kill_at: str | None) -> None:
    """Make this child SIGKILL itself at ``kill_at`` inside :func:`store.write_collection`."""
    if kill_at == "data":  # half-way through the data files
        original = store.ds.write_dataset

        def write_dataset(*args: Any, **kwargs: Any) -> Any:
            written: list[str] = []

            def visitor(file: Any) -> None:
                written.append(file.path)
                if len(written) == 5:
                    die()

            return original(*args, **kwargs, file_visitor=visitor)

        store.ds.write_dataset = write_dataset
    elif kill_at == "manifest":  # a torn manifest in the new folder
        original_write_text = Path.write_text

        def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
            if self.name == store.MANIFEST:
                with open(self, "w") as fh:
                    fh.write(data[: len(data) // 2])
                die()
            return original_write_text(self, data, *args, **kwargs)

        Path.write_text = write_text  # type: ignore[method-assign]
    elif kill_at == "synced":  # everything written and synced, nothing swapped
        store._swap_into_place = lambda *a: die()
    elif kill_at == "between_renames":  # the fallback without an atomic exchange
        store._exchange = lambda a, b: False
        original_rename = Path.rename
        renames: list[Path] = []

        def rename(self: Path, target: Any) -> Any:
            renames.append(self)
            if len(renames) == 2:
                die()
            return original_rename(self, target)

        Path.rename = rename  # type: ignore[method-assign]
    elif kill_at == "after_swap":
        original_swap = store._swap_into_place

        def swap(*args: Any) -> None:
            original_swap(*args)
            die()

        store._swap_into_place = swap
    elif kill_at == "cleanup":  # while deleting the previous collection
        original_rmtree = store.shutil.rmtree

        def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
            files = sorted(Path(path).rglob("*.parquet"))
            for file in files[: len(files) // 2]:
                file.unlink()
            die()
            original_rmtree(path, *args, **kwargs)

        store.shutil.rmtree = rmtree
    elif kill_at is not None:
        raise ValueError(f"unknown kill point {kill_at!r}")


def child(build: dict[str, Any]) -> None:
    table = record_table(build["rows"], build["seed"])
    arm(build.get("kill_at"))
    wrote = []
    original = rasteret.builders.write_collection

    def write_collection(*args: Any, **kwargs: Any) -> None:
        emit(event="writing", pid=os.getpid())
        wrote.append(True)
        original(*args, **kwargs)

    rasteret.builders.write_collection = write_collection
    start_at = build.get("start_at")
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    rasteret.build_from_table(table, name=build["name"], workspace_dir=build["workspace"])
    emit(event="done", pid=os.getpid(), wrote=bool(wrote))


def main() -> None:
    emit(event="ready")
    for line in sys.stdin:
        command = json.loads(line)
        pids = []
        for build in command["builds"]:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    child(build)
                except BaseException as exc:  # report, never fall back into the zygote loop
                    emit(event="error", pid=os.getpid(), error=f"{type(exc).__name__}: {exc}")
                    code = 1
                os._exit(code)
            pids.append(pid)
            emit(event="forked", pid=pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            emit(event="exit", pid=pid, status=code)


if __name__ == "__main__":
    main()
