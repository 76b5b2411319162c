"""Static HTML for the rich display of metrics in notebooks: tables plus a small inline SVG chart.

No CSS classes, no scripts: only tables and SVG with presentation
attributes, so the output reads the same live in Jupyter, in nbconvert HTML
and on GitHub. Every string that comes from user data (stage names, error
messages, paths) is escaped. Standard library only.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from html import escape
from typing import Any

GREEN = "#76b900"
RED = "#e5484d"
GREY = "#8a8f98"
PALETTE = ("#76b900", "#3b82f6", "#e8a317", "#a855f7", "#14b8a6", "#e5484d", "#64748b", "#f472b6")

_MAX_SERIES = 400
_MAX_ERRORS = 10

_TABLE = '<table style="border-collapse:collapse;margin:4px 0;font-size:13px">'
_TD = '<td style="padding:2px 10px;text-align:{align};border-bottom:1px solid #ddd">{text}</td>'
_TH = '<th style="padding:2px 10px;text-align:{align};border-bottom:1px solid #999">{text}</th>'


def _ms(ns: float | None) -> str:
    if ns is None or (isinstance(ns, float) and not math.isfinite(ns)):
        return "-"
    seconds = ns / 1e9
    if seconds >= 60:
        return _seconds(seconds)
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{ns / 1e6:.2f} ms"


def _seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    units = ("B", "KB", "MB", "GB", "TB")
    size = float(value)
    unit = 0
    while size >= 1000 and unit < len(units) - 1:
        size /= 1000
        unit += 1
    return f"{size:.0f} {units[unit]}" if unit == 0 else f"{size:.1f} {units[unit]}"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return _dt.datetime.fromtimestamp(stamp, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> str:
    out = [_TABLE, "<tr>"]
    for i, name in enumerate(header):
        out.append(_TH.format(align="right" if i >= numeric_from else "left", text=escape(str(name))))
    out.append("</tr>")
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            out.append(_TD.format(align="right" if i >= numeric_from else "left", text=escape(str(cell))))
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _pairs(rows: Sequence[tuple[str, Any]]) -> str:
    out = [_TABLE]
    for name, value in rows:
        out.append("<tr>")
        out.append(_TD.format(align="left", text=f"<b>{escape(str(name))}</b>"))
        out.append(_TD.format(align="right", text=escape(str(value))))
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _stage_bars_svg(stages: Sequence[tuple[str, float]], width: int = 360) -> str:
    """Horizontal bars of per-stage totals (ns), one row per stage."""
    if not stages:
        return ""
    row = 20
    left = 110
    top = max((value for _, value in stages), default=0.0) or 1.0
    height = row * len(stages) + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    parts.append("<title>Own time per stage (total)</title>")
    for k, (name, value) in enumerate(stages):
        y = 2 + k * row
        bar = max(1.0, (width - left - 80) * value / top)
        label = escape(name if len(name) <= 16 else name[:15] + "\u2026")
        parts.append(f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end" fill="#555">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{bar:.1f}" height="{row - 6}" fill="{PALETTE[k % len(PALETTE)]}"/>')
        parts.append(f'<text x="{left + bar + 5:.1f}" y="{y + 13}" font-size="11" fill="#555">{escape(_ms(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _series_svg(points: Sequence[tuple[int, float, bool]], width: int = 360, height: int = 110) -> str:
    """Wall time per index as dots, red for failures; thinned to a few hundred points."""
    if not points:
        return ""
    if len(points) > _MAX_SERIES:
        step = math.ceil(len(points) / _MAX_SERIES)
        kept = [p for i, p in enumerate(points) if i % step == 0 or p[2]]
    else:
        kept = list(points)
    x0 = min(p[0] for p in kept)
    x1 = max(p[0] for p in kept)
    y1 = max(p[1] for p in kept) or 1.0
    span = (x1 - x0) or 1
    left, bottom, pad = 56, 18, 6
    plot_w = width - left - pad
    plot_h = height - bottom - pad
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    parts.append("<title>Wall time per index</title>")
    parts.append(f'<rect x="{left}" y="{pad}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>')
    parts.append(f'<text x="{left - 4}" y="{pad + 9}" font-size="10" text-anchor="end" fill="#555">{escape(_ms(y1))}</text>')
    parts.append(f'<text x="{left - 4}" y="{pad + plot_h}" font-size="10" text-anchor="end" fill="#555">0</text>')
    parts.append(f'<text x="{left}" y="{height - 4}" font-size="10" fill="#555">{x0}</text>')
    parts.append(f'<text x="{left + plot_w}" y="{height - 4}" font-size="10" text-anchor="end" fill="#555">index {x1}</text>')
    for index, wall, failed in kept:
        cx = left + plot_w * (index - x0) / span if x1 != x0 else left + plot_w / 2
        cy = pad + plot_h - plot_h * wall / y1
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2" fill="{RED if failed else GREEN}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _progress_svg(completed: int, failed: int, remaining: int, width: int = 360) -> str:
    total = completed + failed + remaining
    if total <= 0:
        return ""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="14" role="img">']
    parts.append(f"<title>{completed} completed, {failed} failed, {remaining} remaining</title>")
    x = 0.0
    for count, colour in ((completed, GREEN), (failed, RED), (remaining, "#ddd")):
        w = width * count / total
        if w > 0:
            parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="14" fill="{colour}"/>')
        x += w
    parts.append("</svg>")
    return "".join(parts)


def _two_columns(left: str, right: str) -> str:
    return (
        '<div style="display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start">'
        f"<div>{left}</div><div>{right}</div></div>"
    )


def metrics_html(metrics: Any) -> str:
    """Return an HTML summary of a :class:`~physicsnemo_curator.core.metrics.PipelineMetrics`.

    A table of the run's totals, a per-stage table with a bar chart of
    stage totals, a dot chart of wall time per index (failures in red), the
    slowest indices and the most recent errors, with every user-derived
    string escaped.
    """
    indices = list(metrics.indices)
    n = len(indices)
    failed = [m for m in indices if m.status != "completed"]
    summary = _pairs(
        [
            ("indices", n),
            ("completed", n - len(failed)),
            ("failed", len(failed)),
            ("total wall time", _ms(metrics.total_wall_time_ns)),
            ("mean per index", _ms(metrics.mean_index_time_ns if n else None)),
            ("peak Python memory", _bytes(metrics.total_peak_memory_bytes) if metrics.total_peak_memory_bytes else "-"),
            ("peak native RSS", _bytes(metrics.peak_native_rss_bytes)),
            ("peak GPU memory", _bytes(metrics.peak_gpu_memory_bytes)),
        ]
    )
    points = [(m.index, float(m.wall_time_ns or 0), m.status != "completed") for m in indices]
    out = [
        '<div style="font-family:system-ui,sans-serif">',
        f"<b>Pipeline metrics</b> &middot; {n} indices",
        _two_columns(summary, _series_svg(sorted(points))),
    ]

    totals = metrics.stage_totals()
    if totals:
        grand = sum(t["total_ns"] for t in totals.values()) or 1.0
        rows = [
            (name, _ms(t["total_ns"]), _ms(t["mean_ns"]), _ms(t["max_ns"]), f"{100 * t['total_ns'] / grand:.1f} %")
            for name, t in totals.items()
        ]
        table = _table(["stage", "total", "mean", "max", "share"], rows)
        out.append(_two_columns(table, _stage_bars_svg([(name, t["total_ns"]) for name, t in totals.items()])))

    slowest = sorted(indices, key=lambda m: m.wall_time_ns or 0, reverse=True)[:5]
    if slowest:
        out.append("<div><b>Slowest indices</b></div>")
        out.append(_table(["index", "wall time", "status"], [(m.index, _ms(m.wall_time_ns), m.status) for m in slowest], numeric_from=1))
    if failed:
        out.append(f"<div><b>Errors</b> ({len(failed)})</div>")
        rows = [(m.index, getattr(m, "error_type", None) or "-", getattr(m, "error_message", None) or "") for m in failed[-_MAX_ERRORS:]]
        out.append(_table(["index", "type", "message"], rows, numeric_from=99))
    out.append("</div>")
    return "".join(out)


def index_metrics_html(index_metrics: Any) -> str:
    """Return an HTML summary of one :class:`~physicsnemo_curator.core.metrics.IndexMetrics`: figures, stage bars, error."""
    m = index_metrics
    rows = [
        ("status", m.status),
        ("wall time", _ms(m.wall_time_ns)),
        ("CPU time", _ms(m.cpu_time_ns)),
        ("peak Python memory", _bytes(m.peak_memory_bytes)),
        ("peak native RSS", _bytes(m.native_peak_rss_bytes)),
        ("peak GPU memory", _bytes(m.gpu_memory_bytes)),
        ("worker", "-" if m.worker_id is None else m.worker_id),
        ("started", _when(m.started_at)),
    ]
    stage_rows = [(s.name, _ms(s.wall_time_ns), _ms(s.cpu_time_ns)) for s in m.stages]
    out = [
        '<div style="font-family:system-ui,sans-serif">',
        f"<b>Index {escape(str(m.index))}</b>",
        _two_columns(_pairs(rows), _stage_bars_svg([(s.name, float(s.wall_time_ns or 0)) for s in m.stages])),
    ]
    if stage_rows:
        out.append(_table(["stage", "wall time", "CPU time"], stage_rows))
    error_type = getattr(m, "error_type", None)
    error_message = getattr(m, "error_message", None)
    if error_type or error_message:
        out.append(
            f'<div style="color:{RED}"><b>{escape(error_type or "Error")}</b>: {escape(error_message or "")}</div>'
        )
    out.append("</div>")
    return "".join(out)


def summary_html(summary: dict[str, Any]) -> str:
    """Return an HTML view of a store summary (:meth:`PipelineStore.summary <physicsnemo_curator.core.pipeline_store.PipelineStore.summary>`).

    Counts with a progress bar, then times, rate and ETA; keys it does not
    know are listed as they are.
    """
    completed = int(summary.get("completed") or 0)
    failed = int(summary.get("failed") or 0)
    total = summary.get("total")
    remaining = summary.get("remaining")
    # The bar shows indices not yet attempted; a store's "remaining" also
    # counts failures, which a resumed run retries.
    untried = max(0, int(total) - completed - failed) if total is not None else int(remaining or 0)
    rate = summary.get("rate_per_s")
    known = {
        "db_path": ("database", lambda v: v),
        "source_name": ("source", lambda v: v),
        "status": ("status", lambda v: v),
        "total": ("total", lambda v: v),
        "completed": ("completed", lambda v: v),
        "failed": ("failed", lambda v: v),
        "remaining": ("remaining", lambda v: v),
        "elapsed_s": ("elapsed", _seconds),
        "busy_s": ("busy (sum of index times)", _seconds),
        "rate_per_s": ("rate", lambda v: f"{v:.2f} indices/s"),
        "eta_s": ("ETA", _seconds),
        "first_started_at": ("first index started", _when),
        "last_finished_at": ("last index finished", _when),
    }
    rows = []
    for key, value in summary.items():
        label, fmt = known.get(key, (key, lambda v: v))
        rows.append((label, "-" if value is None else fmt(value)))
    title = summary.get("source_name") or "Run"
    out = [
        '<div style="font-family:system-ui,sans-serif">',
        f"<b>{escape(str(title))}</b> &middot; {completed} completed, {failed} failed"
        + ("" if remaining is None else f", {int(remaining)} remaining")
        + ("" if rate is None else f" &middot; {rate:.2f}/s"),
        "<div>" + _progress_svg(completed, failed, untried) + "</div>",
        _pairs(rows),
        "</div>",
    ]
    return "".join(out)
