"""Opening run stores, and the writer that records indices into them.

Writers keep one connection per process and thread (:func:`writer_for`),
opened once and reused for the whole run. Everything about one index goes in
one transaction. A write that finds the database locked is retried with a
short backoff. If it keeps failing, the record stays buffered, a warning
names the index and the reason, and the index is not reported as completed.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import pickle
import random
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from physicsnemo_curator.core.errors import (
    CuratorWarning,
    NotAStoreError,
    SchemaVersionError,
    StoreError,
    StoreWriteError,
)
from physicsnemo_curator.core.record import IndexRecord
from physicsnemo_curator.core.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

logger = logging.getLogger(__name__)

BUSY_RETRY_SECONDS = 60.0
"""How long a writer keeps retrying a locked database before it gives up on a record."""

GROUP_COMMIT_SECONDS = 0.05
"""Records that arrive within this time of the last commit are committed together."""

GROUP_COMMIT_MAX = 256
"""A batch of buffered records is committed once it reaches this size."""

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _is_transient(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _move_aside(path: Path, reason: str) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
        counter += 1
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    warnings.warn(
        f"Run store {path} could not be read ({reason}); it was moved to {target} "
        f"and a fresh store was started in its place.",
        CuratorWarning,
        stacklevel=3,
    )
    return target


def _looks_like_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError:
        return False
    return len(header) == 100 and header.startswith(_SQLITE_MAGIC)


def _is_access_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text or "disk i/o" in text


def _check_foreign(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if version == 0 and app_id != APPLICATION_ID:
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if has_tables:
            raise NotAStoreError(
                f"{path} is an SQLite database but not a physicsnemo-curator run store "
                f"(it has other tables). Pass the path of a run store, or a new path."
            )


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Each checkpoint fsyncs the database. At SQLite's default of 1,000 pages
    # those fsyncs stalled the sinks' own file writes several-fold (measured
    # with benchmarks/bench_core.py), so the WAL may grow to about 40 MB first.
    conn.execute("PRAGMA wal_autocheckpoint=10000")
    conn.execute("PRAGMA foreign_keys=ON")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"Run store {path} has schema version {version}, but this physicsnemo-curator "
            f"reads up to version {SCHEMA_VERSION}. Upgrade physicsnemo-curator to open it."
        )
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if has_tables and app_id != APPLICATION_ID:
            raise NotAStoreError(
                f"{path} is an SQLite database but not a physicsnemo-curator run store "
                f"(it has other tables). Pass the path of a run store, or a new path."
            )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[target - 1]
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{script}\nPRAGMA application_id={APPLICATION_ID};\n"
            f"PRAGMA user_version={target};\nCOMMIT;"
        )
        logger.debug("Migrated run store %s to schema version %d", path, target)


def open_writable(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open (or create) the run store at ``path`` for writing.

    The parent directory is created. A file that is not SQLite, or that
    SQLite cannot read, is renamed to ``<name>.corrupt-<UTC timestamp>``
    (never deleted) with a warning naming both paths, and a fresh store is
    created. A store from a newer schema version raises
    :class:`~physicsnemo_curator.core.errors.SchemaVersionError`.
    """
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep):
        raise StoreError(f"The run store path {path} is a directory; pass a file path such as {Path(path) / 'run.db'}, or use db_dir= for a directory.")
    if path.exists() and not path.is_file():
        raise StoreError(f"The run store path {path} exists but is not a regular file; pass a path to a .db file.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"Cannot create the directory {path.parent} for the run store: {exc}. Choose a writable db_dir or db_file.") from exc
    if path.exists() and path.stat().st_size > 0 and not _looks_like_sqlite(path):
        _move_aside(path, "not an SQLite database")

    for attempt in range(2):
        conn = sqlite3.connect(path, timeout=BUSY_RETRY_SECONDS, isolation_level=None, check_same_thread=False)
        try:
            # Check what the file is before switching it to WAL, so another
            # application's database is rejected untouched.
            _check_foreign(conn, path)
            _configure(conn)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            _migrate(conn, path)
            # SQLite silently opens a file it cannot write read-only, so probe with a write now.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            finally:
                conn.execute("ROLLBACK")
            if attempt == 0:
                conn.execute("PRAGMA quick_check(1)").fetchone()
            return conn
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and _is_transient(exc):
                raise
            if isinstance(exc, sqlite3.OperationalError) and _is_access_error(exc):
                raise StoreError(
                    f"Cannot write the run store {path} ({exc}). Check the permissions of the file and its "
                    f"directory, or choose another db_dir or db_file."
                ) from exc
            if attempt == 1:
                raise
            _move_aside(path, str(exc))
        except BaseException:
            conn.close()
            raise
    raise AssertionError("unreachable")


def open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open the run store at ``path`` read-only; the file is never modified."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Run store not found: {path}")
    if path.stat().st_size > 0 and not _looks_like_sqlite(path):
        raise NotAStoreError(f"{path} is not an SQLite database, so it is not a physicsnemo-curator run store.")
    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_RETRY_SECONDS, isolation_level=None, check_same_thread=False)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise NotAStoreError(f"{path} cannot be read as a run store: {exc}") from exc
    if version > SCHEMA_VERSION:
        conn.close()
        raise SchemaVersionError(
            f"Run store {path} has schema version {version}, but this physicsnemo-curator "
            f"reads up to version {SCHEMA_VERSION}. Upgrade physicsnemo-curator to open it."
        )
    if app_id != APPLICATION_ID or version == 0:
        conn.close()
        raise NotAStoreError(
            f"{path} is an SQLite database but not a physicsnemo-curator run store. "
            f"Pass the .db file that a pipeline run wrote."
        )
    return conn


class StoreWriter:
    """The recording side of a run store, one per process and thread.

    Use :func:`writer_for` to get the shared instance for a path instead of
    creating one per call.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.conn = open_writable(self.path)
        self.conn.execute("PRAGMA busy_timeout=0")
        self.pending: list[IndexRecord] = []
        self.commits = 0
        self._last_commit = time.monotonic()
        self._last_failure: str | None = None

    # -- transactions -------------------------------------------------

    def _begin(self) -> None:
        # SQLite's own busy handler sleeps whole milliseconds, which would cap
        # two busy writers far below their speed, so the writer connection has
        # busy_timeout=0 and backs off here in microseconds.
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        delay = 20e-6
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_transient(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.02)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement in its own transaction, with the busy retry (pending records go first)."""
        self.flush()
        self._begin()
        try:
            cursor = self.conn.execute(sql, params)
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self.commits += 1
        return cursor

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass

    # -- index records ------------------------------------------------

    def record(self, record: IndexRecord) -> bool:
        """Queue one index's record and commit the queue when it is due.

        Records are group-committed: a record is written at once when the
        last commit is older than :data:`GROUP_COMMIT_SECONDS`, else with the
        next batch. Callers :meth:`flush` before they report indices as
        completed. Returns ``False`` when a due commit failed; the record
        then stays in :attr:`pending` and a warning names the index and the
        reason.
        """
        self.pending.append(record)
        if len(self.pending) >= GROUP_COMMIT_MAX or time.monotonic() - self._last_commit >= GROUP_COMMIT_SECONDS:
            return self.flush()
        return True

    def flush(self) -> bool:
        """Write every pending record in one transaction; return ``True`` when none is left."""
        if not self.pending:
            return True
        try:
            self._begin()
            try:
                self._insert_all(self.pending)
                done: dict[int, int] = {}
                for record in self.pending:
                    if record.worker_id is not None:
                        done[record.worker_id] = done.get(record.worker_id, 0) + 1
                self.conn.executemany(
                    "UPDATE workers SET n_done = n_done + ? WHERE worker_id=?", [(n, w) for w, n in done.items()]
                )
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if reason != self._last_failure:
                indices = ", ".join(str(r.index) for r in self.pending[:20])
                warnings.warn(
                    f"Could not record index {indices} in {self.path} ({reason}); "
                    f"the record is kept in memory and retried, and the index is not marked completed.",
                    CuratorWarning,
                    stacklevel=3,
                )
                self._last_failure = reason
            return False
        self.commits += 1
        self._last_commit = time.monotonic()
        self.pending.clear()
        self._last_failure = None
        return True

    def _insert_all(self, records: Sequence[IndexRecord]) -> None:
        # One executemany per table for the whole batch: per-record calls
        # cost more in Python than SQLite spends on the rows.
        conn = self.conn
        replaced = [(r.index,) for r in records if r.replace]
        if replaced:
            for table in ("stage_times", "outputs", "artifacts"):
                conn.executemany(f"DELETE FROM {table} WHERE idx=?", replaced)  # noqa: S608 - fixed table names

        conn.executemany(
            "INSERT OR REPLACE INTO indices (idx, status, run_id, worker_id, started_at, wall_ns, cpu_ns, "
            "peak_mem, rss_peak, gpu_mem, error_type, error_message, traceback, exception) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    r.index, r.status, r.run_id, r.worker_id, r.started_at, r.wall_ns, r.cpu_ns, r.peak_mem,
                    r.rss_peak, r.gpu_mem, r.error_type, r.error_message, r.traceback, r.exception,
                )
                for r in records
            ],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO stage_times (idx, position, wall_ns, cpu_ns) VALUES (?,?,?,?)",
            [(r.index, position, wall, cpu) for r in records for position, wall, cpu in r.stages],
        )
        conn.executemany("INSERT INTO outputs (idx, path) VALUES (?,?)", [(r.index, p) for r in records for p in r.outputs])

        artifacts = [(r.index, position, r.worker_id, p) for r in records for position, p in r.artifacts]
        if artifacts:
            conn.executemany("INSERT INTO artifacts (idx, position, worker_id, path) VALUES (?,?,?,?)", artifacts)

        logs = [(ts, r.index, r.worker_id, level, name, message) for r in records for ts, level, name, message in r.logs]
        if logs:
            conn.executemany("INSERT INTO logs (ts, idx, worker_id, level, logger, message) VALUES (?,?,?,?,?,?)", logs)

    # -- run bookkeeping ----------------------------------------------

    def ensure_meta(self, config_hash: str, config_json: str, source_name: str, total: int | None, stages: Sequence[tuple[str, str]]) -> None:
        """Record the pipeline's identity and stage list; a no-op when already recorded."""
        self._begin()
        try:
            known = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            if known.get("config_hash") not in (None, config_hash):
                raise StoreError(
                    f"Run store {self.path} records another pipeline (configuration hash "
                    f"{known['config_hash'][:16]}, source {known.get('source_name')!r}), but this pipeline's "
                    f"hash is {config_hash[:16]}. Mixing them would return the other pipeline's results; "
                    f"use another db_file or db_dir, or move that file away."
                )
            if "config_hash" not in known:
                self.conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("config_hash", config_hash),
                        ("config", config_json),
                        ("source_name", source_name),
                        ("created_at", repr(time.time())),
                        ("generation", "0"),
                    ],
                )
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('total', ?)", (None if total is None else str(total),))
            existing = self.conn.execute("SELECT name, kind FROM stages ORDER BY position").fetchall()
            if [tuple(row) for row in existing] != [tuple(s) for s in stages]:
                self.conn.execute("DELETE FROM stages")
                self.conn.executemany(
                    "INSERT INTO stages (position, name, kind) VALUES (?,?,?)",
                    [(position, name, kind) for position, (name, kind) in enumerate(stages)],
                )
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self.commits += 1

    def start_run(self, backend: str, n_jobs: int, requested: int) -> int:
        cursor = self.execute(
            "INSERT INTO runs (started_at, status, backend, n_jobs, requested, host, pid) VALUES (?,?,?,?,?,?,?)",
            (time.time(), "running", backend, n_jobs, requested, socket.gethostname(), os.getpid()),
        )
        return int(cursor.lastrowid)

    def finish_run(self, run_id: int, status: str) -> None:
        self.execute("UPDATE runs SET finished_at=?, status=? WHERE run_id=?", (time.time(), status, run_id))
        self.execute(
            "UPDATE workers SET status='stopped', ended_at=? WHERE run_id=? AND status IN ('idle', 'busy')",
            (time.time(), run_id),
        )

    def register_worker(self, run_id: int | None, backend: str, pid: int | None = None, host: str | None = None) -> int:
        now = time.time()
        cursor = self.execute(
            "INSERT INTO workers (run_id, pid, host, backend, started_at, heartbeat_at, status) VALUES (?,?,?,?,?,?,?)",
            (run_id, pid or os.getpid(), host or socket.gethostname(), backend, now, now, "idle"),
        )
        return int(cursor.lastrowid)

    def heartbeat(self, worker_id: int, status: str, current_index: int | None) -> None:
        self.execute(
            "UPDATE workers SET heartbeat_at=?, status=?, current_index=? WHERE worker_id=? "
            "AND status NOT IN ('dead', 'stopped')",
            (time.time(), status, current_index, worker_id),
        )

    def mark_worker(self, worker_id: int, status: str, reason: str | None = None) -> None:
        self.execute(
            "UPDATE workers SET status=?, ended_at=?, exit_reason=? WHERE worker_id=?",
            (status, time.time(), reason, worker_id),
        )

    def record_flush_artifacts(self, worker_id: int | None, artifacts: Iterable[tuple[int, str]]) -> None:
        rows = [(None, position, worker_id, path) for position, path in artifacts]
        if not rows:
            return
        self._begin()
        try:
            self.conn.executemany("INSERT INTO artifacts (idx, position, worker_id, path) VALUES (?,?,?,?)", rows)
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self.commits += 1

    def reset(self, indices: Sequence[int] | None = None) -> None:
        """Forget recorded indices (all when ``indices`` is ``None``) so they run again."""
        self.flush()
        self._begin()
        try:
            if indices is None:
                for table in ("stage_times", "outputs", "artifacts", "logs", "indices"):
                    self.conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            else:
                for table in ("stage_times", "outputs", "artifacts", "logs", "indices"):
                    self.conn.executemany(f"DELETE FROM {table} WHERE idx=?", [(i,) for i in indices])  # noqa: S608
            self.conn.execute(
                "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key='generation'"
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self.commits += 1

    def require_flushed(self) -> None:
        """Raise :class:`StoreWriteError` naming the indices that could not be recorded."""
        if self.flush():
            return
        indices = sorted(r.index for r in self.pending)
        raise StoreWriteError(
            f"Could not record {len(indices)} index(es) in {self.path} ({self._last_failure}): "
            f"{indices[:50]}. They are not marked completed; rerun with resume=True once the "
            f"database is writable."
        )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.conn.close()


_writers: dict[tuple[str, int, int], StoreWriter] = {}
_writers_lock = threading.Lock()


def writer_for(path: str | os.PathLike[str]) -> StoreWriter:
    """Return this process's and thread's writer for ``path``, opening it on first use."""
    key = (os.path.abspath(path), os.getpid(), threading.get_ident())
    with _writers_lock:
        writer = _writers.get(key)
        if writer is None:
            writer = StoreWriter(path)
            _writers[key] = writer
        return writer


def close_writers(path: str | os.PathLike[str] | None = None) -> None:
    """Close this process's writers (for ``path`` only, when given)."""
    target = None if path is None else os.path.abspath(path)
    with _writers_lock:
        for key in list(_writers):
            if key[1] != os.getpid():
                # A connection inherited through fork() must not be closed by
                # the child: SQLite could checkpoint or unlock the parent's file.
                continue
            if target is None or key[0] == target:
                writer = _writers.pop(key)
                try:
                    writer.close()
                except sqlite3.Error as exc:
                    logger.warning("Closing run store %s failed: %s", key[0], exc)


def dumps_exception(exc: BaseException) -> bytes | None:
    """Pickle ``exc`` so it can be re-raised later, or return ``None`` when it does not pickle."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
    except Exception:  # noqa: BLE001 - any failure means "not picklable"
        return None
    return data
