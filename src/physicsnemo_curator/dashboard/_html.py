"""Small HTML builders that escape every value they are given.

Anything that came from a run store (error messages, paths, filter and
source names, configuration values, host names) reaches the page only
through :func:`esc`, which also escapes backticks and dollar signs so the
text cannot end a JavaScript template literal or start a math expression.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

_EXTRA = str.maketrans({"`": "&#96;", "$": "&#36;", "{": "&#123;", "}": "&#125;"})


class Safe(str):
    """Markup built by this module, inserted without escaping."""


def esc(value: Any) -> str:
    """Return ``value`` as text that displays literally inside HTML (``None`` becomes ``-``)."""
    if isinstance(value, Safe):
        return value
    if value is None:
        return "-"
    return html.escape(str(value), quote=True).translate(_EXTRA)


def tag(name: str, content: Any = "", **attrs: Any) -> Safe:
    """Return ``<name attrs>content</name>``; ``content`` and attribute values are escaped."""
    parts = [name]
    for key, value in attrs.items():
        if value is None:
            continue
        parts.append(f'{key.rstrip("_").replace("_", "-")}="{esc(value)}"')
    return Safe(f"<{' '.join(parts)}>{esc(content) if not isinstance(content, Safe) else content}</{name}>")


def join(items: Iterable[Any]) -> Safe:
    return Safe("".join(esc(item) for item in items))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], test_id: str | None = None, empty: str = "Nothing yet.") -> Safe:
    """Return an HTML table; every cell is escaped unless it is :class:`Safe`."""
    head = join(tag("th", h) for h in headers)
    body = [tag("tr", join(tag("td", cell) for cell in row)) for row in rows]
    if not body:
        return tag("p", empty, class_="psnc-empty", data_testid=test_id)
    return tag(
        "table",
        Safe(tag("thead", tag("tr", head)) + tag("tbody", join(body))),
        class_="psnc-table",
        data_testid=test_id,
    )


def seconds(value: float | None) -> str:
    """Format a duration for a table cell: ms below one second, else seconds."""
    if value is None or not math.isfinite(value):
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def size(value: float | None) -> str:
    """Format a byte count with a binary unit."""
    if value is None or not math.isfinite(value) or value < 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


CSS = (
    """
.psnc-table { border-collapse: collapse; width: 100%; font-size: 13px; }
.psnc-table th, .psnc-table td { text-align: left; padding: 3px 8px; border-bottom: 1px solid rgba(128,128,128,.3);
  vertical-align: top; overflow-wrap: anywhere; }
.psnc-table th { font-weight: 600; }
.psnc-empty { color: #888; font-style: italic; margin: 4px 0; }
.psnc-cards { display: flex; flex-wrap: wrap; gap: 10px; }
.psnc-card { border: 1px solid rgba(128,128,128,.35); border-left: 4px solid #76b900; border-radius: 6px;
  padding: 8px 14px; min-width: 120px; }
.psnc-card .label { font-size: 12px; opacity: .75; }
.psnc-card .value { font-size: 22px; font-weight: 600; }
.psnc-pre { white-space: pre-wrap; font-size: 12px; max-height: 320px; overflow: auto;
  background: rgba(128,128,128,.12); padding: 6px; border-radius: 4px; }
.psnc-badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; }
.psnc-state-busy, .psnc-state-completed, .psnc-state-live { background: rgba(118,185,0,.25); }
.psnc-state-idle, .psnc-state-stopped, .psnc-state-finished { background: rgba(128,128,128,.25); }
.psnc-state-stale, .psnc-state-interrupted { background: rgba(255,170,0,.35); }
.psnc-state-dead, .psnc-state-error, .psnc-state-failed, .psnc-state-invalid { background: rgba(220,50,50,.3); }
.psnc-run { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 410px; }
.psnc-error-card { border: 1px solid rgba(220,50,50,.6); border-radius: 6px; padding: 8px; }
"""
)
"""The style sheet of every pane built by :func:`pane` (each pane renders in its own shadow root)."""


def badge(state: Any) -> Safe:
    return tag("span", state, class_=f"psnc-badge psnc-state-{esc(state)}")


def card(label: str, value: Any, test_id: str) -> Safe:
    return tag(
        "div",
        Safe(tag("div", label, class_="label") + tag("div", value, class_="value", data_testid=test_id)),
        class_="psnc-card",
    )


def pane(content: Any = "", **params: Any) -> Any:
    """Return a Panel HTML pane with this module's style sheet and math rendering off."""
    import panel as pn

    params.setdefault("sizing_mode", "stretch_width")
    return pn.pane.HTML(content, stylesheets=[CSS], disable_math=True, **params)
