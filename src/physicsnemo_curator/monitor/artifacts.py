"""Output files, filter artifacts and previews of the files they name.

Parquet previews import pyarrow only when a Parquet file is previewed.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import logging
import math
import sqlite3
from pathlib import Path
from typing import Any

from physicsnemo_curator.core.base import Filter
from physicsnemo_curator.core.config import resolve_type
from physicsnemo_curator.core.errors import ConfigError
from physicsnemo_curator.monitor._reader import read_artifacts, read_meta, read_outputs

logger = logging.getLogger(__name__)

PREVIEW_ROWS = 20
"""Rows shown in a Parquet preview."""

_CELL_CHARS = 80


def parquet_preview(path: str | Path, rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """Return the first ``rows`` rows and the column types of the Parquet file at ``path``.

    Returns ``{"path", "columns": [{"name", "type"}], "rows": [[cell, ...]],
    "num_rows", "error"}``. Cells are JSON-safe (numbers, strings, ``None``;
    long values are cut to 80 characters). A file that cannot be read gives
    an ``error`` string instead of raising, so a view can show it in place.
    """
    path = Path(path)
    out: dict[str, Any] = {"path": str(path), "columns": [], "rows": [], "num_rows": None, "error": None}
    try:
        import pyarrow.parquet as pq
    except ImportError:
        out["error"] = "Parquet previews need pyarrow: pip install 'physicsnemo-curator[notebook]'."
        return out
    try:
        handle = pq.ParquetFile(path)
        out["num_rows"] = handle.metadata.num_rows
        out["columns"] = [{"name": field.name, "type": str(field.type)} for field in handle.schema_arrow]
        batch = next(handle.iter_batches(batch_size=rows), None)
        if batch is not None:
            columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            out["rows"] = [[_cell(col[r]) for col in columns] for r in range(batch.num_rows)]
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported in the payload
        out["error"] = f"Cannot preview {path}: {type(exc).__name__}: {exc}"
    return out


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time, _dt.timedelta)):
        return str(value)
    if isinstance(value, bytes):
        text = value[: _CELL_CHARS // 2].hex()
        return f"<{len(value)} bytes> {text}"
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "\u2026"


def filter_classes(meta: dict[str, Any]) -> dict[int, type]:
    """Return the filter class of each stage position (1 for the first filter), from the stored configuration.

    Classes that cannot be imported in this process are left out (and
    logged at debug level), so previews still work for every other filter.
    """
    try:
        config = json.loads(meta.get("config") or "{}")
    except ValueError:
        return {}
    out: dict[int, type] = {}
    for position, spec in enumerate(config.get("filters") or [], start=1):
        type_name = spec.get("type") if isinstance(spec, dict) else None
        if not type_name:
            continue
        try:
            out[position] = resolve_type(type_name)
        except ConfigError as exc:
            logger.debug("Filter class of stage %d is not importable here: %s", position, exc)
    return out


def has_dashboard_panel(cls: type) -> bool:
    """True when ``cls`` overrides :meth:`Filter.dashboard_panel <physicsnemo_curator.core.base.Filter.dashboard_panel>`."""
    method = getattr(cls, "dashboard_panel", None)
    return method is not None and getattr(method, "__func__", None) is not Filter.dashboard_panel.__func__


def artifacts_payload(
    conn: sqlite3.Connection,
    index: int | None = None,
    previews: bool = True,
    limit: int = 200,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the outputs and filter artifacts of ``index`` (or of the whole run), grouped by filter.

    Returns ``{"index", "outputs": [{"index", "path", "exists"}],
    "groups": [{"position", "stage", "has_panel", "files": [{"index",
    "path", "exists", "preview"}]}]}``. ``preview`` is a
    :func:`parquet_preview` for ``.parquet`` files when ``previews`` is on
    (first file of each group only when ``index`` is ``None``), else
    ``None``. ``has_panel`` is true when the filter defines its own
    ``dashboard_panel()``.
    """
    meta = read_meta(conn) if meta is None else meta
    classes = filter_classes(meta)
    outputs = [{**row, "exists": Path(row["path"]).exists()} for row in read_outputs(conn, index, limit=20 if index is None else limit)]
    groups: dict[int, dict[str, Any]] = {}
    for row in read_artifacts(conn, index, limit):
        group = groups.setdefault(
            row["position"],
            {
                "position": row["position"],
                "stage": row["stage"],
                "has_panel": row["position"] in classes and has_dashboard_panel(classes[row["position"]]),
                "files": [],
            },
        )
        preview = None
        is_parquet = row["path"].lower().endswith((".parquet", ".pq"))
        if previews and is_parquet and (index is not None or not any(f["preview"] for f in group["files"])):
            preview = parquet_preview(row["path"])
        group["files"].append({"index": row["index"], "path": row["path"], "exists": Path(row["path"]).exists(), "preview": preview})
    return {"index": index, "outputs": outputs, "groups": [groups[p] for p in sorted(groups)]}
