"""A filter's own ``dashboard_panel()`` view, rendered as a standalone HTML page for a notebook widget."""

from __future__ import annotations

import base64
import io
import logging
import re
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

# Panel's saved pages reference optional CDN scripts (MathJax for LaTeX in
# Markdown) even with inline resources. The page must work offline, so those
# references are dropped.
_REMOTE_SCRIPT = re.compile(r"<script[^>]*\ssrc=[\"']https?://[^\"']*[\"'][^>]*>\s*</script>", re.IGNORECASE)


def filter_panel_html(cls: type, paths: Sequence[str], index: int | None) -> tuple[str | None, str | None]:
    """Return ``(html, error)``: ``cls.dashboard_panel(paths, index)`` saved as one self-contained page.

    ``html`` is ``None`` when the filter returned ``None``; ``error`` is a
    message naming the filter when building or rendering its view failed.
    Bokeh and Panel's JavaScript is inlined, so the page loads nothing from
    the network.
    """
    try:
        view = cls.dashboard_panel(list(paths), index)
    except Exception as exc:  # noqa: BLE001 - a broken filter view is shown as a message
        logger.warning("dashboard_panel() of %s failed: %s", cls.__name__, exc)
        return None, f"{cls.__name__}.dashboard_panel() failed: {type(exc).__name__}: {exc}"
    if view is None:
        return None, None
    try:
        import panel as pn
        from bokeh.resources import INLINE
    except ImportError as exc:
        return None, (
            f"{cls.__name__} has its own view, which needs Panel: "
            f"pip install 'physicsnemo-curator[dashboard]' ({exc})."
        )
    try:
        buffer = io.StringIO()
        pn.panel(view).save(buffer, resources=INLINE, embed=True)
    except Exception as exc:  # noqa: BLE001
        logger.warning("Rendering the view of %s failed: %s", cls.__name__, exc)
        return None, f"Could not render the view of {cls.__name__}: {type(exc).__name__}: {exc}"
    return _offline(buffer.getvalue()), None


def _offline(page: str) -> str:
    """Replace Panel's CDN stylesheet URLs by ``data:`` URLs of the installed files, and drop remote scripts."""
    from panel.io.resources import CDN_DIST, DIST_DIR

    def inline(match: re.Match[str]) -> str:
        path = DIST_DIR / match.group(1)
        try:
            data = path.read_bytes()
        except OSError:
            logger.debug("No local copy of %s; the reference is left as is", match.group(0))
            return match.group(0)
        return "data:text/css;base64," + base64.b64encode(data).decode("ascii")

    page = re.sub(re.escape(CDN_DIST) + r"([\w./-]+\.css)(?:\?v=[\w.]+)?", inline, page)
    return _REMOTE_SCRIPT.sub("", page)


def panels_for(payload: dict[str, Any], classes: dict[int, type], index: int | None) -> None:
    """Add ``panel_html``/``panel_error`` to each group of an artifacts payload whose filter has a view."""
    for group in payload.get("groups", []):
        cls = classes.get(group["position"])
        if not group.get("has_panel") or cls is None:
            continue
        paths = [f["path"] for f in group["files"]]
        group["panel_html"], group["panel_error"] = filter_panel_html(cls, paths, index)
