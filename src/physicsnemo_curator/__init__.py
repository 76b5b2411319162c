"""physicsnemo-curator: profiled source -> filters -> sink pipelines for physics-simulation data.

Only the standard library is imported here, so ``import physicsnemo_curator``
stays fast and works without pandas, Panel, torch or Jupyter.
"""

from __future__ import annotations

from physicsnemo_curator.core.base import Filter, Param, Sink, Source
from physicsnemo_curator.core.config import register_component
from physicsnemo_curator.core.execute import current_index
from physicsnemo_curator.core.metrics import IndexMetrics, PipelineMetrics, StageMetrics
from physicsnemo_curator.core.pipeline import Pipeline
from physicsnemo_curator.run import gather_pipeline, list_backends, register_backend, run_pipeline

__version__ = "0.1.0"

__all__ = [
    "Filter",
    "IndexMetrics",
    "Param",
    "Pipeline",
    "PipelineMetrics",
    "Sink",
    "Source",
    "StageMetrics",
    "current_index",
    "gather_pipeline",
    "list_backends",
    "register_backend",
    "register_component",
    "run_pipeline",
]
