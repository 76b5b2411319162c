"""Where run stores live: the cache directory and database file names."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path


def cache_dir() -> Path:
    """Return the directory for run stores.

    ``$PSNC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/psnc``, else
    ``~/.cache/psnc``.
    """
    explicit = os.environ.get("PSNC_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "psnc"
    return Path.home() / ".cache" / "psnc"


def db_file_name(config_hash: str, resume: bool) -> str:
    """Return ``<hash16>.db`` for resumable runs, else ``<hash16>_<UTC timestamp>.db``."""
    short = config_hash[:16]
    if resume:
        return f"{short}.db"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S_%fZ")
    return f"{short}_{stamp}.db"
