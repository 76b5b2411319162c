"""Incremental reads of a run store, turned into payloads for views.

Nothing here imports a UI library. :class:`RunMonitor` watches one store
and keeps its content in memory; the functions of
:mod:`~physicsnemo_curator.monitor.payloads` and
:mod:`~physicsnemo_curator.monitor.artifacts` build the data each view
draws; the ``read_*`` functions read a connection directly, with cursors.
The notebook widgets and the dashboard are both built on these.
"""

from __future__ import annotations

from physicsnemo_curator.monitor._monitor import Cursor, PollResult, RunMonitor
from physicsnemo_curator.monitor._reader import (
    INVALID,
    OPEN,
    STATUS_CODES,
    WAITING,
    IndexBatch,
    StoreReader,
    read_artifacts,
    read_error_detail,
    read_indices_after,
    read_logs_after,
    read_meta,
    read_outputs,
    read_runs,
    read_stage_times_after,
    read_stages,
    read_workers,
)
from physicsnemo_curator.monitor._table import IndexTable, LogHistogram
from physicsnemo_curator.monitor.artifacts import artifacts_payload, filter_classes, has_dashboard_panel, parquet_preview
from physicsnemo_curator.monitor.assets import esm, js_path
from physicsnemo_curator.monitor.payloads import (
    decode_timeline,
    error_log,
    format_duration,
    histogram_payload,
    progress_payload,
    run_state,
    slowest_indices,
    stage_payload,
    stage_statistics,
    timeline_payload,
    wall_statistics,
    worker_table,
)

__all__ = [
    "INVALID",
    "OPEN",
    "STATUS_CODES",
    "WAITING",
    "Cursor",
    "IndexBatch",
    "IndexTable",
    "LogHistogram",
    "PollResult",
    "RunMonitor",
    "StoreReader",
    "artifacts_payload",
    "decode_timeline",
    "error_log",
    "esm",
    "filter_classes",
    "format_duration",
    "has_dashboard_panel",
    "histogram_payload",
    "js_path",
    "parquet_preview",
    "progress_payload",
    "read_artifacts",
    "read_error_detail",
    "read_indices_after",
    "read_logs_after",
    "read_meta",
    "read_outputs",
    "read_runs",
    "read_stage_times_after",
    "read_stages",
    "read_workers",
    "run_state",
    "slowest_indices",
    "stage_payload",
    "stage_statistics",
    "timeline_payload",
    "wall_statistics",
    "worker_table",
]
