"""Exceptions and warnings raised by physicsnemo-curator."""

from __future__ import annotations


class CuratorError(Exception):
    """Base class of every error this package raises on purpose."""


class StoreError(CuratorError):
    """A run store cannot be opened, read or written."""


class NotAStoreError(StoreError):
    """A file exists but is not a physicsnemo-curator run store."""


class SchemaVersionError(StoreError):
    """A run store was written by a newer version of this package."""


class StoreWriteError(StoreError):
    """A write to the run store kept failing after every retry."""


class MetricsDisabledError(CuratorError):
    """Metrics were requested from a pipeline that runs with ``track_metrics=False``."""


class ResolveError(CuratorError):
    """A database path, hash prefix or pipeline file could not be resolved to a run store."""


class ConfigError(CuratorError):
    """A pipeline configuration cannot be saved, loaded or hashed."""


class PartitionError(CuratorError):
    """The source and the sink declare index groups that cannot both be honoured."""


class WorkerDiedError(CuratorError):
    """A worker process ended (killed or crashed) while it was running an index."""


class IndexQueryError(CuratorError, ValueError):
    """An index query string is malformed."""


class CuratorWarning(UserWarning):
    """Base class of the warnings this package emits."""
