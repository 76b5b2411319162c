"""Reading a run store: :class:`PipelineStore`.

``PipelineStore.from_db(path)`` opens a finished or running run read-only;
nothing it does changes the file. The metrics classes are re-exported here
because users of the reference project import them from this module.
"""

from __future__ import annotations

import os
import pickle
import socket
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from physicsnemo_curator.core.metrics import IndexMetrics, PipelineMetrics, StageMetrics
from physicsnemo_curator.core.store import open_readonly, writer_for

__all__ = ["IndexMetrics", "PipelineMetrics", "PipelineStore", "StageMetrics"]

def process_gone(host: str | None, pid: int | None) -> bool:
    """Return whether process ``pid`` on ``host`` has ended (a zombie counts as ended).

    Only this host can be checked; for another host this returns ``False``.
    """
    if host != socket.gethostname() or not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as handle:
            # The state field follows the parenthesised command name.
            return handle.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def run_abandoned(run: dict[str, Any]) -> bool:
    """Return whether a run marked ``running`` lost its driver process (checked on this host only)."""
    return run.get("status") == "running" and process_gone(run.get("host"), run.get("pid"))


STALE_HEARTBEATS = 3
"""A worker whose heartbeat is this many periods old is reported stale."""


class PipelineStore:
    """Read access to one run store, plus the resets that a pipeline requests.

    Parameters
    ----------
    db_path : str or Path
        The ``.db`` file.
    readonly : bool
        Open with a read-only connection; the methods that write raise.
    """

    def __init__(self, db_path: str | os.PathLike[str], readonly: bool = False) -> None:
        self.db_path = Path(db_path)
        self.readonly = readonly
        if not readonly:
            writer_for(self.db_path)
        self._conn: sqlite3.Connection | None = open_readonly(self.db_path)

    @classmethod
    def from_db(cls, db_path: str | os.PathLike[str]) -> PipelineStore:
        """Open an existing run store read-only.

        Raises
        ------
        FileNotFoundError
            When ``db_path`` does not exist.
        NotAStoreError, SchemaVersionError
            When the file is not a run store, or comes from a newer version.
        """
        return cls(db_path, readonly=True)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"PipelineStore for {self.db_path} is closed; open it again with PipelineStore.from_db().")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PipelineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PipelineStore({str(self.db_path)!r})"

    # -- identity -----------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def stage_names(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT name FROM stages ORDER BY position")]

    def total(self) -> int | None:
        value = self.meta().get("total")
        return None if value in (None, "None") else int(value)

    # -- indices ------------------------------------------------------

    def completed_indices(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT idx FROM indices WHERE status='completed' ORDER BY idx")]

    def failed_indices(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT idx FROM indices WHERE status='error' ORDER BY idx")]

    def status_of(self, index: int) -> str | None:
        row = self.conn.execute("SELECT status FROM indices WHERE idx=?", (index,)).fetchone()
        return None if row is None else row[0]

    def error(self, index: int) -> dict[str, Any] | None:
        """Return the recorded error of ``index`` (type, message, traceback, exception), or ``None``."""
        row = self.conn.execute(
            "SELECT error_type, error_message, traceback, exception FROM indices WHERE idx=? AND status='error'",
            (index,),
        ).fetchone()
        if row is None:
            return None
        exception = None
        if row[3] is not None:
            try:
                exception = pickle.loads(row[3])
            except Exception:  # noqa: BLE001 - the class may no longer import
                exception = None
        return {"type": row[0], "message": row[1], "traceback": row[2], "exception": exception}

    def output_paths_for_index(self, index: int) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM outputs WHERE idx=? ORDER BY rowid", (index,))]

    def outputs_for(self, indices: Sequence[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {i: [] for i in indices}
        rows = self.conn.execute("SELECT idx, path FROM outputs ORDER BY rowid")
        for index, path in rows:
            if index in out:
                out[index].append(path)
        return out

    def index_for_path(self, path: str | os.PathLike[str]) -> int | None:
        text = str(path)
        row = self.conn.execute("SELECT idx FROM outputs WHERE path=? LIMIT 1", (text,)).fetchone()
        if row is None and not os.path.isabs(text):
            row = self.conn.execute("SELECT idx FROM outputs WHERE path=? LIMIT 1", (os.path.abspath(text),)).fetchone()
        return None if row is None else int(row[0])

    def filter_artifacts_for_index(self, index: int) -> dict[str, list[str]]:
        """Return ``{filter name: [paths]}`` of the artifacts recorded for ``index``."""
        names = dict(self.conn.execute("SELECT position, name FROM stages").fetchall())
        out: dict[str, list[str]] = {}
        for position, path in self.conn.execute(
            "SELECT position, path FROM artifacts WHERE idx=? ORDER BY rowid", (index,)
        ):
            out.setdefault(names.get(position, f"stage {position}"), []).append(path)
        return out

    def all_filter_artifacts(self) -> dict[str, list[str]]:
        """Return ``{filter name: [unique paths]}`` over all indices and worker flushes."""
        names = dict(self.conn.execute("SELECT position, name FROM stages").fetchall())
        out: dict[str, list[str]] = {}
        seen: set[tuple[str, str]] = set()
        for position, path in self.conn.execute("SELECT position, path FROM artifacts ORDER BY rowid"):
            name = names.get(position, f"stage {position}")
            if (name, path) not in seen:
                seen.add((name, path))
                out.setdefault(name, []).append(path)
        return out

    # -- workers and runs ---------------------------------------------

    def workers(self, heartbeat_seconds: float = 2.0) -> list[dict[str, Any]]:
        """Return every registered worker with a ``state``: busy, idle, stale, stopped or dead."""
        now = time.time()
        cursor = self.conn.execute(
            "SELECT worker_id, run_id, pid, host, backend, started_at, heartbeat_at, status, current_index, "
            "n_done, ended_at, exit_reason FROM workers ORDER BY worker_id"
        )
        columns = [d[0] for d in cursor.description]
        out = []
        for row in cursor:
            worker = dict(zip(columns, row))
            state = worker["status"]
            if state in ("busy", "idle") and process_gone(worker["host"], worker["pid"]):
                state = "dead"
            elif state in ("busy", "idle") and worker["heartbeat_at"] is not None:
                if now - worker["heartbeat_at"] > STALE_HEARTBEATS * heartbeat_seconds:
                    state = "stale"
            worker["state"] = state
            out.append(worker)
        return out

    def active_workers(self) -> list[dict[str, Any]]:
        return [w for w in self.workers() if w["state"] in ("busy", "idle")]

    def runs(self) -> list[dict[str, Any]]:
        cursor = self.conn.execute("SELECT * FROM runs ORDER BY run_id")
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row)) for row in cursor]

    def logs(self, index: int | None = None) -> list[dict[str, Any]]:
        if index is None:
            cursor = self.conn.execute("SELECT ts, idx, worker_id, level, logger, message FROM logs ORDER BY seq")
        else:
            cursor = self.conn.execute(
                "SELECT ts, idx, worker_id, level, logger, message FROM logs WHERE idx=? ORDER BY seq", (index,)
            )
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row)) for row in cursor]

    # -- metrics ------------------------------------------------------

    def metrics(self) -> PipelineMetrics:
        """Return the :class:`PipelineMetrics` of every recorded index, in index order."""
        names = self.stage_names()
        stages: dict[int, list[StageMetrics]] = {}
        for index, position, wall, cpu in self.conn.execute(
            "SELECT idx, position, wall_ns, cpu_ns FROM stage_times ORDER BY idx, position"
        ):
            name = names[position] if position < len(names) else f"stage {position}"
            stages.setdefault(index, []).append(StageMetrics(name, wall, cpu))
        indices = [
            IndexMetrics(
                index=row[0],
                stages=stages.get(row[0], []),
                wall_time_ns=row[1],
                peak_memory_bytes=row[2],
                gpu_memory_bytes=row[3],
                cpu_time_ns=row[4],
                native_peak_rss_bytes=row[5],
                status=row[6],
                worker_id=row[7],
                started_at=row[8],
                error_type=row[9],
                error_message=row[10],
            )
            for row in self.conn.execute(
                "SELECT idx, wall_ns, peak_mem, gpu_mem, cpu_ns, rss_peak, status, worker_id, started_at, "
                "error_type, error_message FROM indices ORDER BY idx"
            )
        ]
        return PipelineMetrics(indices)

    def summary(self, total: int | None = None) -> dict[str, Any]:
        """Return progress figures: counts, elapsed time, rate and ETA.

        Parameters
        ----------
        total : int, optional
            The number of indices the run will have; defaults to the
            source length recorded in the store.

        ``status`` is the latest run's: ``running``, ``finished``,
        ``failed``, ``interrupted``, or ``abandoned`` when it is marked
        running but its driver process on this host is gone. ``remaining``
        counts every index not completed, failed ones included, since a
        resume runs them again.
        """
        if total is None:
            total = self.total()
        row = self.conn.execute(
            "SELECT count(*), sum(status='completed'), sum(status='error'), min(started_at), "
            "max(started_at + wall_ns / 1e9), sum(wall_ns) FROM indices"
        ).fetchone()
        recorded, completed, failed = row[0], row[1] or 0, row[2] or 0
        first, last, busy_ns = row[3], row[4], row[5] or 0
        elapsed = (last - first) if first is not None and last is not None else 0.0
        rate = recorded / elapsed if elapsed > 0 else None
        remaining = None if total is None else max(0, total - completed)
        eta = None
        if rate is not None and total is not None:
            eta = max(0, total - recorded) / rate
        runs = self.runs()
        status = None
        if runs:
            status = "abandoned" if run_abandoned(runs[-1]) else runs[-1]["status"]
        return {
            "db_path": str(self.db_path),
            "source_name": self.meta().get("source_name"),
            "total": total,
            "completed": completed,
            "failed": failed,
            "remaining": remaining,
            "elapsed_s": elapsed,
            "busy_s": busy_ns / 1e9,
            "rate_per_s": rate,
            "eta_s": eta,
            "first_started_at": first,
            "last_finished_at": last,
            "status": status,
        }

    def summary_html(self, total: int | None = None) -> str:
        from physicsnemo_curator.core import _html

        return _html.summary_html(self.summary(total))

    # -- writes -------------------------------------------------------

    def _writer(self):  # noqa: ANN202
        if self.readonly:
            raise PermissionError(
                f"PipelineStore for {self.db_path} was opened read-only (from_db); use PipelineStore(path) to write."
            )
        return writer_for(self.db_path)

    def reset(self) -> None:
        """Forget every recorded index so the next run executes them all."""
        self._writer().reset(None)

    def reset_index(self, index: int) -> None:
        """Forget ``index`` so the next run executes it again."""
        self._writer().reset([index])
