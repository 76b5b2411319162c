"""Mesh sinks."""

from __future__ import annotations

from physicsnemo_curator.domains.mesh.sinks.mesh_writer import MeshSink, load_npz

__all__ = ["MeshSink", "load_npz"]
