"""Finding the run store a user means, parsing index queries, and launching the dashboard.

:func:`resolve_db_path` accepts what a user types on the command line: a
``.db`` file, a pipeline file (``.yaml``, ``.yml``, ``.json``) or a hash
prefix. :func:`parse_index_query` turns the Pipeline tab's query box into a
selection. Neither imports Panel, so the ``psnc`` command stays fast.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from physicsnemo_curator.core.errors import IndexQueryError, NotAStoreError, ResolveError, SchemaVersionError
from physicsnemo_curator.core.paths import cache_dir
from physicsnemo_curator.core.store import open_readonly

logger = logging.getLogger(__name__)

PIPELINE_SUFFIXES = (".yaml", ".yml", ".json")

QUERY_FORMS = "'10-20' (a range), '1,5,10' (a list), 'all', 'completed' or 'error'"

_HASH_PREFIX = re.compile(r"^[0-9A-Za-z_.-]+$")
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A run store found in a directory: its path and when its first run started."""

    path: Path
    started_at: float | None

    @property
    def started_text(self) -> str:
        if self.started_at is None:
            return "start time unknown"
        stamp = _dt.datetime.fromtimestamp(self.started_at, _dt.timezone.utc)
        return "started " + stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def check_store(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` when it is a readable run store; raise otherwise.

    Raises
    ------
    ResolveError
        When the file does not exist.
    NotAStoreError, SchemaVersionError
        When the file is not a run store or comes from a newer version.
    """
    path = Path(path)
    try:
        conn = open_readonly(path)
    except FileNotFoundError as exc:
        raise ResolveError(f"Run store not found: {path}. Pass an existing .db file, a pipeline file or a hash prefix.") from exc
    conn.close()
    return path


def _started_at(path: Path) -> float | None:
    try:
        conn = open_readonly(path)
    except (OSError, NotAStoreError, SchemaVersionError):
        return None
    try:
        row = conn.execute("SELECT min(started_at) FROM runs").fetchone()
        if row and row[0] is not None:
            return float(row[0])
        row = conn.execute("SELECT value FROM meta WHERE key='created_at'").fetchone()
        return float(row[0]) if row and row[0] else None
    except Exception:  # noqa: BLE001 - a damaged candidate still gets listed
        return None
    finally:
        conn.close()


def _store_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.db") if p.is_file())


def _pick_for_hash(files: list[Path], hash16: str) -> Path | None:
    """Return the resume store ``<hash16>.db`` if present, else the newest ``<hash16>_<timestamp>.db``."""
    resume = [p for p in files if p.name == f"{hash16}.db"]
    if resume:
        return resume[0]
    stamped = [p for p in files if p.name.startswith(f"{hash16}_")]
    if not stamped:
        return None
    # The UTC timestamps in the names sort as text.
    return max(stamped, key=lambda p: p.name)


def _resolve_pipeline_file(path: Path) -> Path:
    from physicsnemo_curator.core.pipeline import Pipeline

    pipeline = Pipeline.load(path)
    if pipeline.db_file is not None:
        target = Path(pipeline.db_file)
        if not target.is_absolute():
            target = path.parent / target
        if target.exists():
            return check_store(target)
        raise ResolveError(
            f"Pipeline file {path} names the run store {target}, which does not exist. "
            f"Run the pipeline first, or pass the .db file directly."
        )
    hash16 = pipeline.config_hash[:16]
    directory = Path(pipeline.db_dir) if pipeline.db_dir is not None else cache_dir()
    found = _pick_for_hash(_store_files(directory), hash16)
    if found is None:
        raise ResolveError(
            f"No run store for pipeline file {path} (hash {hash16}) in {directory}. "
            f"Run the pipeline first, or pass the .db file directly."
        )
    return check_store(found)


def _resolve_prefix(prefix: str, directory: Path) -> Path:
    files = [p for p in _store_files(directory) if p.stem.startswith(prefix)]
    if not files:
        raise ResolveError(
            f"No run store matches {prefix!r}: it is not a file, and no *.db in {directory} starts with it. "
            f"Run 'psnc runs' to list the stores there, or pass a .db path."
        )
    exact = [p for p in files if p.stem == prefix]
    if exact:
        return check_store(exact[0])
    hashes = {p.stem.split("_", 1)[0] for p in files}
    if len(hashes) == 1:
        picked = _pick_for_hash(files, hashes.pop())
        if picked is not None:
            return check_store(picked)
    candidates = [Candidate(p, _started_at(p)) for p in files]
    listing = "; ".join(f"{c.path.name} ({c.started_text})" for c in candidates)
    raise ResolveError(
        f"Hash prefix {prefix!r} is ambiguous in {directory}: it matches {listing}. Give more characters of the hash."
    )


def resolve_db_path(arg: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None) -> Path:
    """Find the run store that ``arg`` names.

    Parameters
    ----------
    arg : str or Path
        An existing database file, returned as is after a check that it is
        a run store. Or a pipeline file (``.yaml``, ``.yml``, ``.json``), which
        is loaded and hashed the way the pipeline hashes itself, then matched
        against the cache directory (the resume store ``<hash16>.db``, else
        the newest ``<hash16>_<timestamp>.db``). Otherwise, a hash prefix
        matched against the ``*.db`` files of the cache directory.
    directory : str or Path, optional
        Where to look for hash prefixes; defaults to
        :func:`~physicsnemo_curator.core.paths.cache_dir`.

    Returns
    -------
    Path
        The run store file.

    Raises
    ------
    ResolveError
        When nothing matches (the message names the argument and the
        directory searched) or a prefix is ambiguous (it lists the
        candidates with their start times).
    NotAStoreError, SchemaVersionError
        When the file found is not a run store, or comes from a newer version.
    """
    text = os.fspath(arg)
    if not text.strip():
        raise ResolveError("Empty run store argument: pass a .db file, a pipeline file or a hash prefix.")
    path = Path(text).expanduser()
    search = Path(directory) if directory is not None else cache_dir()

    if path.is_file():
        if path.suffix.lower() in PIPELINE_SUFFIXES:
            return _resolve_pipeline_file(path)
        return check_store(path)
    if path.suffix.lower() in PIPELINE_SUFFIXES:
        raise ResolveError(f"Pipeline file not found: {path}. Check the path, or pass a .db file or a hash prefix.")
    if path.suffix.lower() == ".db" or os.sep in text or not _HASH_PREFIX.match(text):
        raise ResolveError(
            f"Run store not found: {path} (no such file, and not a hash prefix to look up in {search}). "
            f"Pass an existing .db file, a pipeline file or a hash prefix."
        )
    return _resolve_prefix(text, search)


def list_runs(directory: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Describe every run store in ``directory`` (default: the cache directory).

    Each entry has ``path``, ``hash``, ``source``, ``completed``, ``failed``,
    ``total``, ``started_at``, ``size`` and ``error`` (a message when the
    file could not be read, else ``None``), newest first.
    """
    search = Path(directory) if directory is not None else cache_dir()
    out = []
    for path in _store_files(search):
        entry: dict[str, Any] = {
            "path": path,
            "hash": path.stem.split("_", 1)[0],
            "source": None,
            "completed": None,
            "failed": None,
            "total": None,
            "started_at": None,
            # The WAL contains recent records until a checkpoint, so it counts toward the size.
            "size": sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists()),
            "error": None,
        }
        try:
            conn = open_readonly(path)
        except (NotAStoreError, SchemaVersionError, OSError) as exc:
            entry["error"] = str(exc)
            out.append(entry)
            continue
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            entry["hash"] = (meta.get("config_hash") or entry["hash"])[:16]
            entry["source"] = meta.get("source_name")
            total = meta.get("total")
            entry["total"] = int(total) if total not in (None, "", "None") else None
            completed, failed = conn.execute(
                "SELECT sum(status='completed'), sum(status='error') FROM indices"
            ).fetchone()
            entry["completed"], entry["failed"] = completed or 0, failed or 0
            started = conn.execute("SELECT min(started_at) FROM runs").fetchone()[0]
            entry["started_at"] = started if started is not None else float(meta.get("created_at") or 0) or None
        except Exception as exc:  # noqa: BLE001 - one unreadable store must not hide the others
            entry["error"] = f"cannot read {path}: {exc}"
        finally:
            conn.close()
        out.append(entry)
    out.sort(key=lambda e: e["started_at"] or 0.0, reverse=True)
    return out


@dataclasses.dataclass(frozen=True)
class IndexQuery:
    """A parsed index query.

    ``kind`` is ``all``, ``status`` (with ``status`` set to ``completed`` or
    ``error``), ``range`` (``start`` and ``stop`` inclusive) or ``list``
    (``indices``).
    """

    kind: str
    status: str | None = None
    start: int | None = None
    stop: int | None = None
    indices: tuple[int, ...] = ()

    def sql(self) -> tuple[str, tuple[Any, ...]]:
        """Return a ``WHERE`` clause on the ``indices`` table and its parameters."""
        if self.kind == "all":
            return "1", ()
        if self.kind == "status":
            return "status = ?", (self.status,)
        if self.kind == "range":
            return "idx BETWEEN ? AND ?", (self.start, self.stop)
        marks = ",".join("?" * len(self.indices))
        return f"idx IN ({marks})", tuple(self.indices)


def parse_index_query(text: str) -> IndexQuery:
    """Parse the Pipeline tab's index query.

    Accepted forms: ``10-20`` (inclusive range), ``1,5,10`` (a list; one
    number alone is a list of one), ``all``, ``completed`` and ``error``
    (also ``failed``). Blank text means ``all``.

    Raises
    ------
    IndexQueryError
        For anything else (``10-``, ``a,b``, ``5-2``), with the accepted forms.
    """
    query = (text or "").strip().lower()
    if query in ("", "all", "*"):
        return IndexQuery("all")
    if query in ("completed", "error", "failed"):
        return IndexQuery("status", status="error" if query == "failed" else query)
    match = _RANGE.match(query)
    if match:
        start, stop = int(match.group(1)), int(match.group(2))
        if start > stop:
            raise IndexQueryError(
                f"Index range {text.strip()!r} runs backwards: write the smaller index first. Accepted forms: {QUERY_FORMS}."
            )
        return IndexQuery("range", start=start, stop=stop)
    parts = [p.strip() for p in query.split(",")]
    if all(p.isdigit() for p in parts):
        return IndexQuery("list", indices=tuple(dict.fromkeys(int(p) for p in parts)))
    raise IndexQueryError(f"Invalid index query {text.strip()!r}. Accepted forms: {QUERY_FORMS}.")


def launch_dashboard(
    arg: str | os.PathLike[str],
    port: int = 5006,
    host: str = "127.0.0.1",
    open_browser: bool = True,
    threaded: bool = False,
) -> Any:
    """Resolve ``arg`` to a run store and serve its dashboard.

    Parameters
    ----------
    arg : str or Path
        A ``.db`` file, a pipeline file or a hash prefix (see :func:`resolve_db_path`).
    port : int
        The port to listen on; 0 picks a free one.
    host : str
        The address to bind; the default serves this machine only.
    open_browser : bool
        Open the page in the default browser once the server is up.
    threaded : bool
        Serve from a background thread and return the server object,
        instead of blocking until interrupted.
    """
    path = resolve_db_path(arg)
    from physicsnemo_curator.dashboard._data import DashboardData

    # Read the store while Panel imports: SQLite releases the GIL, so a second core can do the reading.
    data = DashboardData(path)
    loader = threading.Thread(target=data.poll, kwargs={"force": True}, name="psnc-dashboard-load", daemon=True)
    loader.start()
    from physicsnemo_curator.dashboard.app import DashboardApp

    app = DashboardApp(path, data=data)
    loader.join()
    return app.serve(port=port, address=host, open_browser=open_browser, threaded=threaded)
