"""Filter widgets: the dashboard views that filters provide for their own artifacts.

A :class:`~physicsnemo_curator.core.base.Filter` subclass overrides the
classmethods ``dashboard_panel(artifact_paths, selected_index=None)`` and
``dashboard_layout_hints()``. :class:`WidgetRegistry` finds the built-in ones
and any filter that a package declares under the entry-point group
``physicsnemo_curator.dashboard_widgets``::

    [project.entry-points."physicsnemo_curator.dashboard_widgets"]
    my_stats = "my_package.filters:MyStatsFilter"

A filter whose panel raises is shown as an error card with the filter's name
and the message; the rest of the page keeps working.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from physicsnemo_curator.core.config import resolve_type
from physicsnemo_curator.core.errors import ConfigError
from physicsnemo_curator.dashboard import _html
from physicsnemo_curator.monitor.artifacts import has_dashboard_panel

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "physicsnemo_curator.dashboard_widgets"

BUILTIN_WIDGETS = {
    "mean": "physicsnemo_curator.domains.mesh.filters.mean:MeanFilter",
    "atomic_stats": "physicsnemo_curator.domains.atm.filters.stats:AtomicStatsFilter",
}
"""The widget filters that ship with this package, by entry-point name."""

__all__ = ["BUILTIN_WIDGETS", "ENTRY_POINT_GROUP", "WidgetRegistry", "error_card"]


def error_card(filter_name: str, exc: BaseException) -> Any:
    """Return a Panel pane that reports ``exc`` raised by ``filter_name``'s widget, escaped."""
    body = _html.tag(
        "div",
        _html.Safe(
            _html.tag("strong", f"The dashboard panel of filter {filter_name} failed")
            + _html.tag("div", f"{type(exc).__name__}: {exc}", class_="psnc-pre", data_testid="widget-error")
        ),
        class_="psnc-error-card",
    )
    return _html.pane(body)


class WidgetRegistry:
    """The filter classes that provide a dashboard panel, imported on first use.

    Parameters
    ----------
    load_entry_points : bool
        Also load the filters declared under :data:`ENTRY_POINT_GROUP`
        (the built-ins are always tried).

    Attributes
    ----------
    widgets : dict
        ``{name: filter class}`` of every importable widget filter.
    problems : dict
        ``{name: message}`` of declared widgets that could not be imported.
    """

    def __init__(self, load_entry_points: bool = True) -> None:
        self.load_entry_points = load_entry_points
        self._widgets: dict[str, type] = {}
        self._problems: dict[str, str] = {}
        self._loaded = False

    @property
    def widgets(self) -> dict[str, type]:
        self._load()
        return self._widgets

    @property
    def problems(self) -> dict[str, str]:
        self._load()
        return self._problems

    def _load(self) -> None:
        # Importing the widget filters pulls in their domains (ASE, for one), which
        # costs about half a second, so it waits until a page needs a widget.
        if self._loaded:
            return
        self._loaded = True
        for name, spec in BUILTIN_WIDGETS.items():
            self._add(name, lambda spec=spec: resolve_type(spec))
        if self.load_entry_points:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                if entry.name in self._widgets:
                    continue
                self._add(entry.name, entry.load)

    def _add(self, name: str, loader: Any) -> None:
        try:
            cls = loader()
        except (ImportError, ConfigError, AttributeError) as exc:
            self._problems[name] = f"{type(exc).__name__}: {exc}"
            logger.info("Dashboard widget %s is not available: %s", name, exc)
            return
        if not isinstance(cls, type) or not has_dashboard_panel(cls):
            self._problems[name] = f"{cls!r} does not override Filter.dashboard_panel"
            logger.info("Dashboard widget %s is ignored: %s", name, self._problems[name])
            return
        self._widgets[name] = cls

    def register(self, name: str, cls: type) -> None:
        """Add ``cls`` under ``name`` (for filters defined in a script or notebook)."""
        if not has_dashboard_panel(cls):
            raise TypeError(f"{cls.__name__} does not override dashboard_panel(), so it has no dashboard widget.")
        self.widgets[name] = cls

    def find(self, stage_name: str, configured: type | None = None) -> type | None:
        """Return the widget class for a stage, or ``None``.

        ``configured`` is the stage's class from the stored pipeline
        configuration; it wins when it defines a panel. Otherwise a widget
        whose class name or ``name`` equals ``stage_name`` is used.
        """
        if configured is not None and has_dashboard_panel(configured):
            return configured
        for cls in self.widgets.values():
            if stage_name in (cls.__name__, getattr(cls, "name", None)):
                return cls
        return None

    def render(self, cls: type, filter_name: str, artifact_paths: Sequence[str], selected_index: int | None = None) -> Any:
        """Return ``cls.dashboard_panel(...)`` as a Panel object, or an error card if it raises.

        A panel that returns ``None`` gives ``None`` (the caller shows the
        generic artifact listing).
        """
        import panel as pn

        try:
            view = cls.dashboard_panel(list(artifact_paths), selected_index)
            if view is None:
                return None
            hints = _hints(cls)
            pane = pn.panel(view)
            if hints.get("min_height") and hasattr(pane, "min_height"):
                pane.min_height = int(hints["min_height"])
            if hints.get("sizing_mode") and hasattr(pane, "sizing_mode"):
                pane.sizing_mode = hints["sizing_mode"]
            return pane
        except Exception as exc:  # noqa: BLE001 - a broken widget must not break the page
            logger.warning("Dashboard panel of filter %s (index %s) failed: %s", filter_name, selected_index, exc)
            return error_card(filter_name, exc)


def _hints(cls: type) -> dict[str, Any]:
    try:
        hints = cls.dashboard_layout_hints()
    except Exception as exc:  # noqa: BLE001 - hints are optional
        logger.warning("dashboard_layout_hints() of %s failed: %s", cls.__name__, exc)
        return {}
    return hints if isinstance(hints, dict) else {}
