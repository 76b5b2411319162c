"""Anywidget hosts of the visual components, each polling its run store on a background thread."""

from __future__ import annotations

import difflib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import anywidget
import traitlets

from physicsnemo_curator.monitor import OPEN, PollResult, RunMonitor, esm, filter_classes
from physicsnemo_curator.monitor.payloads import STALE_AFTER_SECONDS
from physicsnemo_curator.notebook._panel_render import panels_for
from physicsnemo_curator.notebook._poller import Poller

logger = logging.getLogger(__name__)

_ENDED = ("finished", "failed", "interrupted")

ALL_ARTIFACTS_REFRESH_SECONDS = 5.0
"""With no index selected, the artifact listing of a live run is refreshed at most this often."""

TIMELINE_COST_FACTOR = 20
"""The timeline is rebuilt at most once per this many times its last build time (at least once per poll).

Building it costs O(n) (about 0.15 s for 10^6 indices), unlike the rest of a
poll, so on large live runs it is sent less often instead of competing with
the pipeline for the kernel's CPU.
"""


def _db_path(db: Any) -> Path:
    if isinstance(db, (str, os.PathLike)):
        return Path(db).expanduser()
    path = getattr(db, "db_path", None)
    if path is not None:
        return Path(path)
    raise TypeError(
        f"Cannot watch {db!r}: pass the path of a run store (.db file), or a Pipeline (its db_path is used)."
    )


class _StoreWidget(anywidget.AnyWidget):
    """Shared machinery: the store watcher, the polling thread and the payload traits it fills."""

    _component: ClassVar[str] = ""
    _parts: ClassVar[tuple[str, ...]] = ()

    store_state = traitlets.Dict().tag(sync=True)

    # Class defaults so that close() works on a widget whose __init__ raised.
    _poller: Poller | None = None
    _monitor: RunMonitor | None = None
    _closed = False

    def __init__(
        self,
        db: str | os.PathLike[str] | Any,
        interval: float = 1.0,
        idle_stop: float = 30.0,
        stale_after: float = STALE_AFTER_SECONDS,
        autostart: bool = True,
        **kwargs: Any,
    ) -> None:
        unknown = [key for key in kwargs if not self.has_trait(key)]
        if unknown:
            known = ["interval", "idle_stop", "stale_after", "autostart", *self.trait_names()]
            hints = [difflib.get_close_matches(key, known, n=1) for key in unknown]
            hint = "; ".join(f"{key!r} (did you mean {h[0]!r}?)" if h else repr(key) for key, h in zip(unknown, hints, strict=True))
            raise TypeError(f"{type(self).__name__} got unknown keyword argument(s) {hint}.")
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}.")
        kwargs.setdefault("_esm", esm(self._component))
        super().__init__(**kwargs)
        self.interval = float(interval)
        self.idle_stop = float(idle_stop)
        self._monitor = RunMonitor(_db_path(db), stale_after=stale_after)
        self._lock = threading.RLock()
        self._artifacts_at = 0.0
        self._timeline_pending = False
        self._timeline_due = 0.0
        self._classes: dict[int, type] | None = None
        self.store_state = self._monitor.header()
        if "artifacts" in self._parts:
            self.observe(self._on_select, names="selected_index")
        if autostart:
            self.start()

    # -- public controls ----------------------------------------------------

    @property
    def db_path(self) -> str:
        """The run store this widget watches."""
        return self._monitor.path

    @property
    def polling(self) -> bool:
        """Whether the background thread is running."""
        return self._poller is not None and self._poller.alive

    def start(self) -> None:
        """Start (or restart) polling in the background; a no-op while it runs."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} for {self.db_path} is closed; create a new widget.")
        if self.polling:
            return
        self._poller = Poller(self._tick, self._on_poller_exit, self.interval, f"psnc-poll-{Path(self.db_path).name}")
        self._poller.start()

    def stop(self) -> None:
        """Stop polling; the widget keeps showing what it has."""
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    def refresh(self) -> PollResult:
        """Poll the store once, now, and update the traits; return what the poll found."""
        with self._lock:
            result = self._monitor.poll()
            self._apply(result)
            return result

    def close(self) -> None:
        """Stop polling, close the store connection and close the widget."""
        self._closed = True
        self.stop()
        if self._monitor is not None:
            with self._lock:
                self._monitor.close()
        super().close()

    # -- polling ------------------------------------------------------------

    def _tick(self) -> bool:
        self.refresh()
        monitor = self._monitor
        return not (monitor.state in _ENDED and monitor.idle_for() >= self.idle_stop)

    def _on_poller_exit(self) -> None:
        with self._lock:
            self._monitor.close()

    def _apply(self, result: PollResult) -> None:
        monitor = self._monitor
        header = monitor.header()
        if header != self.store_state:
            self.store_state = header
        grew = result.reload or result.n_rows > 0
        with self.hold_sync():
            if "progress" in self._parts and (result.changed or monitor.state == "live"):
                self.progress = monitor.progress() if monitor.reader.state == OPEN else {}
            if "timeline" in self._parts:
                self._timeline_pending = self._timeline_pending or grew
                if self._timeline_pending and (result.reload or time.monotonic() >= self._timeline_due):
                    started = time.monotonic()
                    meta, buffer = monitor.timeline()
                    self.timeline = buffer
                    self.timeline_meta = meta
                    self._timeline_pending = False
                    self._timeline_due = started + TIMELINE_COST_FACTOR * (time.monotonic() - started)
            if "stages" in self._parts and grew:
                self.stages = monitor.stage_bars()
            if "artifacts" in self._parts and grew:
                if result.reload:
                    self._classes = None
                selected = self.selected_index
                touched = selected is not None and selected in set(monitor.table.column("idx")[result.rows].tolist())
                due = time.monotonic() - self._artifacts_at >= ALL_ARTIFACTS_REFRESH_SECONDS
                if result.reload or touched or (selected is None and due):
                    self._refresh_artifacts()

    def _on_select(self, change: dict[str, Any]) -> None:
        with self._lock:
            self._refresh_artifacts()

    def _refresh_artifacts(self) -> None:
        monitor = self._monitor
        index = self.selected_index
        try:
            payload = monitor.artifacts(index)
            if self._classes is None and monitor.meta:
                self._classes = filter_classes(monitor.meta)
            panels_for(payload, self._classes or {}, index)
        except Exception as exc:  # noqa: BLE001 - shown in the widget instead of a traceback
            logger.warning("Reading artifacts of index %s from %s failed: %s", index, self.db_path, exc)
            payload = {"index": index, "outputs": [], "groups": [], "error": f"Could not read artifacts: {exc}"}
        self._artifacts_at = time.monotonic()
        self.artifacts = payload

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.db_path!r}, state={self._monitor.state!r})"


class ProgressWidget(_StoreWidget):
    """Completed, failed and remaining counts, elapsed time, rate, ETA and worker heartbeats.

    Parameters
    ----------
    db : str, os.PathLike or Pipeline
        The run store to watch; it may not exist yet (the widget shows
        'waiting for run' until it appears).
    interval : float
        Seconds between polls of the store.
    idle_stop : float
        Polling stops once the run has ended and nothing changed for this
        many seconds; :meth:`start` resumes it.
    stale_after : float
        Seconds without a heartbeat after which a worker shows as stale.
    autostart : bool
        Start polling at once; otherwise call :meth:`start` or :meth:`refresh`.
    """

    _component = "progress"
    _parts = ("progress",)

    progress = traitlets.Dict().tag(sync=True)


class TimelineWidget(_StoreWidget):
    """Wall time per index as a scatter, coloured by status, with a memory overlay.

    Clicking a point sets :attr:`selected_index`. The points travel as one
    binary buffer (see :func:`physicsnemo_curator.monitor.timeline_payload`).
    Parameters are those of :class:`ProgressWidget`.
    """

    _component = "timeline"
    _parts = ("timeline",)

    timeline = traitlets.Bytes(b"").tag(sync=True)
    timeline_meta = traitlets.Dict().tag(sync=True)
    selected_index = traitlets.Int(None, allow_none=True).tag(sync=True)


class StageBarsWidget(_StoreWidget):
    """Own time per stage: stacked per index (or totals for many indices) and a statistics table.

    Parameters are those of :class:`ProgressWidget`.
    """

    _component = "stage_bars"
    _parts = ("stages",)

    stages = traitlets.Dict().tag(sync=True)
    selected_index = traitlets.Int(None, allow_none=True).tag(sync=True)


class ArtifactPreviewWidget(_StoreWidget):
    """Output files and filter artifacts of :attr:`selected_index` (or the whole run), with previews.

    Parquet files show their first 20 rows and column types; a filter that
    defines ``dashboard_panel()`` shows its own view. Parameters are those
    of :class:`ProgressWidget`.
    """

    _component = "artifact_preview"
    _parts = ("artifacts",)

    artifacts = traitlets.Dict().tag(sync=True)
    selected_index = traitlets.Int(None, allow_none=True).tag(sync=True)


class MonitorWidget(_StoreWidget):
    """The live run monitor: a header, progress, timeline, stage bars and artifact preview.

    All four views share one :attr:`selected_index`: clicking a point in
    the timeline shows that index's files below.

    Parameters
    ----------
    db : str, os.PathLike or Pipeline
        The run store to watch; it may not exist yet.
    interval : float
        Seconds between polls of the store.
    idle_stop : float
        Polling stops once the run has ended and nothing changed for this
        many seconds; :meth:`start` resumes it.
    stale_after : float
        Seconds without a heartbeat after which a worker shows as stale.
    autostart : bool
        Start polling at once.

    Examples
    --------
    >>> from physicsnemo_curator.notebook import MonitorWidget
    >>> MonitorWidget("pipeline.db", interval=1.0)  # doctest: +SKIP
    """

    _component = "monitor"
    _parts = ("progress", "timeline", "stages", "artifacts")

    progress = traitlets.Dict().tag(sync=True)
    timeline = traitlets.Bytes(b"").tag(sync=True)
    timeline_meta = traitlets.Dict().tag(sync=True)
    stages = traitlets.Dict().tag(sync=True)
    artifacts = traitlets.Dict().tag(sync=True)
    selected_index = traitlets.Int(None, allow_none=True).tag(sync=True)
