"""Mesh sources."""

from __future__ import annotations

from physicsnemo_curator.domains.mesh.sources.random import RandomMeshSource

__all__ = ["RandomMeshSource"]
