"""The backend registry: names mapped to the classes that run a job."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """One registered backend: its name, whether it can run here, and how to enable it."""

    name: str
    available: bool
    description: str
    install_hint: str | None = None


@dataclasses.dataclass
class _Entry:
    factory: Callable[[], Any]
    description: str
    requires: tuple[str, ...]
    extra: str | None


_backends: dict[str, _Entry] = {}


def register_backend(
    name: str,
    factory: Callable[[], Any],
    description: str = "",
    requires: tuple[str, ...] = (),
    extra: str | None = None,
) -> None:
    """Register a backend under ``name``.

    Parameters
    ----------
    name : str
        The value users pass as ``run_pipeline(..., backend=name)``.
    factory : callable
        Returns an object with ``run(job)``; called once per run.
    description : str
        One line for ``list_backends()``.
    requires : tuple of str
        Modules that must import for the backend to be available.
    extra : str, optional
        The package extra that installs ``requires``.
    """
    _backends[name] = _Entry(factory, description, tuple(requires), extra)


def _missing(entry: _Entry) -> str | None:
    for module in entry.requires:
        try:
            importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return module
        if importlib.util.find_spec(module) is None:
            return module
    return None


def list_backends() -> list[BackendInfo]:
    """Return every registered backend with its availability."""
    out = []
    for name, entry in _backends.items():
        missing = _missing(entry)
        hint = None
        if missing is not None and entry.extra:
            hint = f'pip install "physicsnemo-curator[{entry.extra}]"'
        out.append(BackendInfo(name, missing is None, entry.description, hint))
    return out


def get_backend(name: str) -> Any:
    """Return a fresh backend object for ``name``; raise a clear error when it is unknown or missing."""
    entry = _backends.get(name)
    if entry is None:
        known = ", ".join(sorted(_backends))
        raise ValueError(f"Unknown backend {name!r}; choose one of: {known}, or register one with register_backend().")
    missing = _missing(entry)
    if missing is not None:
        hint = f' Install it with: pip install "physicsnemo-curator[{entry.extra}]"' if entry.extra else ""
        raise ImportError(f"Backend {name!r} needs the {missing!r} package, which is not installed.{hint}")
    return entry.factory()
