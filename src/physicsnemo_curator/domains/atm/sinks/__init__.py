"""Sinks that write atomic structures."""

from __future__ import annotations

from physicsnemo_curator.domains.atm.sinks.structure_writer import StructureSink

__all__ = ["StructureSink"]
