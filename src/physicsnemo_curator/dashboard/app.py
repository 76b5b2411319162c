"""The Panel dashboard of one run store: :class:`DashboardApp` and :func:`launch`.

One :class:`DashboardApp` serves any number of browser sessions. They share
one read-only view of the store (:class:`~physicsnemo_curator.dashboard._data.DashboardData`),
so a poll and the payloads it produces are computed once per change, not once
per session. Each session has its own page, its own periodic callback and its
own selection.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket
from pathlib import Path
from typing import Any

from physicsnemo_curator.dashboard import _html
from physicsnemo_curator.dashboard._data import DashboardData
from physicsnemo_curator.dashboard.widgets import WidgetRegistry

logger = logging.getLogger(__name__)

NVIDIA_GREEN = "#76b900"
DEFAULT_INTERVAL = 2.0
PAGE_TITLE = "PhysicsNeMo Curator"
STOP_AFTER_IDLE_SECONDS = 30.0
"""Auto-refresh turns itself off this long after the last change of a run that has ended."""

_EXTRA_HINT = 'The dashboard needs the "dashboard" extra: pip install "physicsnemo-curator[dashboard]"'


def _panel() -> tuple[Any, Any]:
    try:
        import panel as pn
        import panel_material_ui as pmui
    except ImportError as exc:
        raise ImportError(f"{_EXTRA_HINT} ({exc}).") from exc
    return pn, pmui


def _load_extension() -> None:
    """Load Panel with every resource inlined, so nothing is fetched from a CDN."""
    pn, _ = _panel()
    pn.config.inline = True
    if not _in_server_session() and not getattr(_load_extension, "done", False):
        # In a notebook the extension call also sends the JavaScript bundle to the page.
        pn.extension(inline=True)
        _load_extension.done = True  # type: ignore[attr-defined]


def _in_server_session() -> bool:
    pn, _ = _panel()
    doc = pn.state.curdoc
    return doc is not None and getattr(doc, "session_context", None) is not None


def free_port(address: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address if address not in ("localhost",) else "127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DashboardSession:
    """The page of one browser session (or one notebook display).

    Built by :meth:`DashboardApp.servable`. It contains the three tabs, the
    toolbar and the periodic callback.
    """

    def __init__(self, app: DashboardApp) -> None:
        pn, pmui = _panel()
        from physicsnemo_curator.dashboard.tabs.overview import OverviewTab
        from physicsnemo_curator.dashboard.tabs.performance import PerformanceTab
        from physicsnemo_curator.dashboard.tabs.pipeline import PipelineTab

        self.app = app
        self.data = app.data
        self.seen_version = -1
        self.callback: Any = None
        self._watching_live_run = False

        self.overview = OverviewTab(self.data)
        self.pipeline = PipelineTab(self.data, app.registry)
        self.performance = PerformanceTab(self.data, self.select)
        self.pipeline.selected.param.watch(lambda event: self.performance.select(event.new), "value")

        self.refresh_button = pmui.Button(label="Refresh", variant="contained", color="primary")
        self.refresh_button.on_click(lambda _event: self.refresh(force=True))
        self.run_label = _html.pane(sizing_mode="fixed", width=420, height=44, margin=(2, 10), styles={"color": "inherit"})
        self.updated = _html.pane(sizing_mode="fixed", width=150, margin=(10, 10))
        self.auto = pmui.Switch(label=f"Auto-refresh every {app.interval:g} s", value=False, color="primary")
        self.auto.param.watch(self._on_auto, "value")
        self.tabs = pmui.Tabs(
            ("Overview", self.overview.panel),
            ("Pipeline", self.pipeline.panel),
            ("Performance", self.performance.panel),
            sizing_mode="stretch_width",
            dynamic=False,
        )
        self.refresh(force=True)
        self.auto.value = self.data.live or not self.data.is_open
        self.page = pmui.Page(
            # NOTE: panel-material-ui writes the page title into a <meta> tag without
            # escaping it, so the title is fixed text and the run's name sits in an escaped pane.
            title=PAGE_TITLE,
            header=[self.run_label, self.refresh_button, self.updated, self.auto],
            main=[self.tabs],
            theme_toggle=True,
            theme_config={"palette": {"primary": {"main": NVIDIA_GREEN}}},
        )

    def _run_label(self) -> _html.Safe:
        header = self.data.header()
        name = _html.tag("div", _html.Safe(_html.tag("strong", header["name"], data_testid="run-name") + " " + _html.badge(header["state"])),
                         class_="psnc-run")
        return _html.Safe(name + _html.tag("div", header["db_path"], class_="psnc-run", style="font-size: 11px; opacity: .8"))

    def select(self, index: int | None) -> None:
        """Select ``index`` in the Pipeline tab (a timeline click calls this)."""
        self.pipeline.select(index)

    def _on_auto(self, event: Any) -> None:
        pn, _ = _panel()
        if event.new:
            if self.callback is None:
                self.callback = pn.state.add_periodic_callback(self.refresh, period=int(self.app.interval * 1000), start=True)
            else:
                self.callback.start()
        elif self.callback is not None:
            self.callback.stop()

    def refresh(self, force: bool = False) -> None:
        """Poll the store and redraw what changed; the Refresh button and the periodic callback call this."""
        try:
            version = self.data.poll(force=force)
            changed = version != self.seen_version
            self.seen_version = version
            self.overview.update(changed)
            self.pipeline.update(changed)
            self.performance.update(changed)
        except Exception:
            logger.exception("Dashboard refresh of %s failed", self.data.path)
            raise
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        self.updated.object = _html.tag("span", f"Updated {stamp}", data_testid="last-updated", style="color: inherit")
        label = self._run_label()
        if label != self.run_label.object:
            self.run_label.object = label
        if self.data.live:
            self._watching_live_run = True
        elif self._watching_live_run and self.data.monitor.idle_for() > STOP_AFTER_IDLE_SECONDS:
            # The run this page watched has ended and nothing changed since: stop polling until the user asks again.
            self._watching_live_run = False
            self.auto.value = False

    def close(self) -> None:
        if self.callback is not None:
            self.callback.stop()
            self.callback = None


class DashboardApp:
    """The dashboard of one run store.

    Parameters
    ----------
    db : str or Path
        The run store file. It may not exist yet: the page then shows that it
        is waiting, and shows the run once the file appears.
    interval : float
        Seconds between automatic refreshes.
    registry : WidgetRegistry, optional
        The filter widgets; defaults to the built-ins plus entry points.
    data : DashboardData, optional
        Store access that is already open (and possibly loaded) for ``db``.

    Examples
    --------
    >>> app = DashboardApp("pipeline.db")  # doctest: +SKIP
    >>> app.serve(port=5006)  # doctest: +SKIP
    >>> DashboardApp("pipeline.db").servable()  # in a notebook, or under panel serve  # doctest: +SKIP
    """

    def __init__(
        self,
        db: str | os.PathLike[str],
        interval: float = DEFAULT_INTERVAL,
        registry: WidgetRegistry | None = None,
        data: DashboardData | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}.")
        _panel()
        self.db_path = Path(db)
        self.interval = float(interval)
        self.data = data if data is not None else DashboardData(self.db_path)
        self.registry = registry if registry is not None else WidgetRegistry()
        self.sessions = 0

    def __repr__(self) -> str:
        return f"DashboardApp({str(self.db_path)!r})"

    def session(self) -> DashboardSession:
        """Build the page of a new session."""
        _load_extension()
        session = DashboardSession(self)
        self.sessions += 1
        pn, _ = _panel()
        if _in_server_session():
            pn.state.on_session_destroyed(lambda _context: session.close())
        return session

    def servable(self) -> Any:
        """Return the page (a panel-material-ui ``Page``) of a new session.

        In a notebook the page displays inline with every resource inlined
        (no CDN); under ``panel serve`` it is also marked servable.
        """
        page = self.session().page
        pn, _ = _panel()
        if _in_server_session():
            page.servable(title=PAGE_TITLE)
        return page

    def serve(
        self,
        port: int = 5006,
        open_browser: bool = True,
        address: str = "127.0.0.1",
        threaded: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Serve the dashboard until interrupted (or in a thread with ``threaded=True``).

        Parameters
        ----------
        port : int
            The port to listen on (0 picks a free one).
        open_browser : bool
            Open the page in the default browser.
        address : str
            The address to bind; the default serves this machine only.
        threaded : bool
            Run the server in a background thread and return it.
        **kwargs
            Passed to :func:`panel.serve` (``prefix``, ``websocket_origin``, ...).
        """
        pn, _ = _panel()
        pn.config.inline = True
        self.data.poll(force=True)
        if not port:
            port = free_port(address)
        origins = kwargs.pop("websocket_origin", None)
        if origins is None:
            hosts = {address, "localhost", "127.0.0.1"}
            if address not in ("127.0.0.1", "localhost", "::1"):
                hosts |= {socket.gethostname(), socket.getfqdn()}
            origins = sorted(f"{host}:{port}" for host in hosts)
        logger.info("Serving the dashboard of %s on http://%s:%s/", self.db_path, address, port)
        return pn.serve(
            {"/": lambda: self.session().page},
            port=port,
            address=address,
            show=open_browser,
            threaded=threaded,
            websocket_origin=origins,
            title=PAGE_TITLE,
            **kwargs,
        )


def launch(db: str | os.PathLike[str], port: int = 5006, open_browser: bool = True, address: str = "127.0.0.1", **kwargs: Any) -> Any:
    """Resolve ``db`` (a ``.db`` file, pipeline file or hash prefix) and serve its dashboard.

    See :meth:`DashboardApp.serve` for the parameters.
    """
    from physicsnemo_curator.dashboard._cli import resolve_db_path

    return DashboardApp(resolve_db_path(db)).serve(port=port, open_browser=open_browser, address=address, **kwargs)
