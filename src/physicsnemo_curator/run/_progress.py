"""Progress display for run_pipeline: a bar in a terminal, a widget in Jupyter."""

from __future__ import annotations

import importlib
import logging
import sys
import time
from typing import Any, TextIO

logger = logging.getLogger(__name__)


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


class TerminalProgress:
    """A one-line bar on a terminal: done/total, failed, rate and ETA."""

    def __init__(self, total: int, stream: TextIO, min_interval: float = 0.1) -> None:
        self.total = total
        self.stream = stream
        self.start = time.monotonic()
        self._last = 0.0
        self._min_interval = min_interval
        self._state = (0, 0)

    def update(self, done: int, failed: int) -> None:
        self._state = (done, failed)
        now = time.monotonic()
        if now - self._last >= self._min_interval or done >= self.total:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        done, failed = self._state
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else None
        width = 30
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        failed_text = f", {failed} failed" if failed else ""
        self.stream.write(
            f"\r[{bar}] {done}/{self.total}{failed_text} | {rate:.1f} it/s | ETA {_format_seconds(eta)}   "
        )
        self.stream.flush()

    def close(self) -> None:
        self._draw()
        self.stream.write("\n")
        self.stream.flush()


def _in_jupyter_kernel() -> bool:
    shell_module = sys.modules.get("IPython")
    if shell_module is None:
        return False
    try:
        shell = shell_module.get_ipython()
    except AttributeError:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def make_progress(total: int, enabled: bool, db_path: str | None) -> Any:
    """Return a progress display with ``update(done, failed)`` and ``close()``, or ``None``."""
    if not enabled or total == 0:
        return None
    if _in_jupyter_kernel():
        try:
            module = importlib.import_module("physicsnemo_curator.notebook._run_progress")
            return module.NotebookProgress(total, db_path)
        except Exception as exc:  # noqa: BLE001 - fall back to no display rather than fail the run
            logger.debug("Notebook progress widget unavailable: %s", exc)
            return None
    stream = sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return TerminalProgress(total, stream)
    return None
