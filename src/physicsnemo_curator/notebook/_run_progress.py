"""The progress widget that ``run_pipeline`` shows when it runs inside a Jupyter kernel."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

from physicsnemo_curator.monitor import RunMonitor, esm
from physicsnemo_curator.monitor.payloads import format_duration

logger = logging.getLogger(__name__)

MIN_REDRAW_SECONDS = 0.1
WORKER_READ_SECONDS = 1.0


class RunProgressWidget(anywidget.AnyWidget):
    """The progress component, fed by ``run_pipeline`` instead of by polling."""

    _esm = traitlets.Unicode().tag(sync=True)
    store_state = traitlets.Dict().tag(sync=True)
    progress = traitlets.Dict().tag(sync=True)

    def __repr__(self) -> str:
        p = self.progress
        return f"RunProgressWidget(completed={p.get('completed')}, failed={p.get('failed')}, total={p.get('total')})"


class NotebookProgress:
    """Progress of one ``run_pipeline`` call, shown as a widget in the notebook.

    Parameters
    ----------
    total : int
        Indices this call will run.
    db_path : str, optional
        The run store; when given, the widget shows it and the workers'
        heartbeat states read from it (at most once a second).
    display : callable, optional
        Shows the widget; defaults to :func:`IPython.display.display`.
    clock : callable, optional
        Monotonic seconds; tests pass a fake one.
    """

    def __init__(
        self,
        total: int,
        db_path: str | None = None,
        display: Callable[[Any], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = int(total)
        self.db_path = None if db_path is None else str(db_path)
        self._clock = clock
        self._start = clock()
        self._drawn_at = -float("inf")
        self._workers_at = -float("inf")
        self._workers: dict[str, Any] = {"workers": [], "worker_states": {}}
        self._monitor = RunMonitor(self.db_path) if self.db_path else None
        self.done = 0
        self.failed = 0
        self.widget = RunProgressWidget(_esm=esm("progress"))
        self.widget.store_state = {
            "name": "run_pipeline",
            "db_path": self.db_path or "",
            "state": "live",
            "message": "",
        }
        self._draw("live")
        if display is None:
            from IPython.display import display
        display(self.widget)

    def update(self, done: int, failed: int) -> None:
        """Record that ``done`` indices ran so far, ``failed`` of them with an error."""
        self.done = int(done)
        self.failed = int(failed)
        now = self._clock()
        if now - self._drawn_at >= MIN_REDRAW_SECONDS or self.done >= self.total:
            self._draw("live")

    def close(self) -> None:
        """Show the final counts and release the store connection."""
        state = "finished" if self.done >= self.total else "interrupted"
        self._workers_at = -float("inf")
        self._draw(state)
        self.widget.store_state = {**self.widget.store_state, "state": state}
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None

    def _draw(self, state: str) -> None:
        now = self._clock()
        self._drawn_at = now
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 and self.done else None
        remaining = max(0, self.total - self.done)
        if rate:
            eta: float | None = remaining / rate
        else:
            eta = None if remaining else 0.0
        if self._monitor is not None and now - self._workers_at >= WORKER_READ_SECONDS:
            self._workers_at = now
            try:
                self._monitor.poll()
                progress = self._monitor.progress()
                self._workers = {"workers": progress["workers"], "worker_states": progress["worker_states"]}
            except Exception as exc:  # noqa: BLE001 - the widget must never fail the run
                logger.debug("Reading workers from %s failed: %s", self.db_path, exc)
        self.widget.progress = {
            "state": state,
            "total": self.total,
            "completed": self.done - self.failed,
            "failed": self.failed,
            "remaining": remaining,
            "elapsed_s": elapsed,
            "rate_per_s": rate,
            "eta_s": eta,
            "elapsed_text": format_duration(elapsed),
            "eta_text": format_duration(eta),
            **self._workers,
        }
