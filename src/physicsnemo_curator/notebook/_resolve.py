"""Turning the argument of ``%psnc_monitor`` into a run store path."""

from __future__ import annotations

from pathlib import Path

from physicsnemo_curator.core.errors import ResolveError
from physicsnemo_curator.core.paths import cache_dir
from physicsnemo_curator.dashboard._cli import list_runs, resolve_db_path


def monitor_target(arg: str | None) -> Path:
    """Return the run store ``%psnc_monitor`` should watch.

    No argument: the most recent run in the cache directory. A ``.db`` path
    is returned as is, existing or not: the monitor waits for a run to
    create it, or shows why the file is not a run store. Anything else goes
    through
    :func:`~physicsnemo_curator.dashboard._cli.resolve_db_path` (an
    existing file, a hash prefix, or a pipeline ``.yaml``/``.json``).

    Raises
    ------
    ResolveError
        When nothing matches, or the cache directory contains no run store.
    """
    text = (arg or "").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if not text:
        runs = [entry for entry in list_runs() if entry["error"] is None]
        if not runs:
            raise ResolveError(
                f"No run store found in the cache directory {cache_dir()}. Run a pipeline first, "
                f"or pass a .db path: %psnc_monitor path/to/pipeline.db"
            )
        return Path(runs[0]["path"])
    path = Path(text).expanduser()
    if path.suffix.lower() == ".db" and not path.is_dir():
        # The widget reports a missing file as 'waiting for run' and a file
        # that is not a run store with a message, so neither is an error here.
        return path
    return resolve_db_path(text)
