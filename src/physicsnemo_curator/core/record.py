"""The record of one executed index, as it travels from a worker to the store."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(slots=True)
class IndexRecord:
    """Everything recorded about one index; plain data so it pickles cheaply.

    ``stages`` holds ``(position, wall_ns, cpu_ns)`` per stage, ``artifacts``
    holds ``(stage position, path)`` and ``logs`` holds
    ``(unix time, level, logger name, message)``.
    """

    index: int
    status: str = "completed"
    run_id: int | None = None
    worker_id: int | None = None
    started_at: float | None = None
    wall_ns: int | None = None
    cpu_ns: int | None = None
    peak_mem: int | None = None
    rss_peak: int | None = None
    gpu_mem: int | None = None
    stages: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)
    artifacts: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    logs: list[tuple[float, int, str, str]] = dataclasses.field(default_factory=list)
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    exception: bytes | None = None
    replace: bool = False
