"""The Panel dashboard of a run store: Overview, Pipeline and Performance tabs.

Needs the ``dashboard`` extra (``pip install "physicsnemo-curator[dashboard]"``);
Panel itself is imported when an app is built, not when this package is.

>>> from physicsnemo_curator.dashboard import launch, DashboardApp  # doctest: +SKIP
>>> launch("pipeline.db", port=5006)  # doctest: +SKIP
"""

from __future__ import annotations

from physicsnemo_curator.dashboard.app import DashboardApp, launch

__all__ = ["DashboardApp", "launch"]
