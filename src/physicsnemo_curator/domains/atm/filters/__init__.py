"""Filters over atomic structures."""

from __future__ import annotations

from physicsnemo_curator.domains.atm.filters.rdf import SupercellRDFFilter
from physicsnemo_curator.domains.atm.filters.stats import AtomicStatsFilter

__all__ = ["AtomicStatsFilter", "SupercellRDFFilter"]
