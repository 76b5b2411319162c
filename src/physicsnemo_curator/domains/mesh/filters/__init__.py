"""Mesh filters."""

from __future__ import annotations

from physicsnemo_curator.domains.mesh.filters.mean import MeanFilter
from physicsnemo_curator.domains.mesh.filters.precision import PrecisionFilter

__all__ = ["MeanFilter", "PrecisionFilter"]
