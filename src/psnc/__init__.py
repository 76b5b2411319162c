"""IPython extension of physicsnemo-curator: ``%load_ext psnc`` adds ``%psnc_monitor``.

Nothing heavy is imported until IPython loads the extension.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

_magics: Any = None


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%psnc_monitor`` with ``ipython`` (called by ``%load_ext psnc``)."""
    global _magics
    from physicsnemo_curator.notebook._magics import PsncMagics

    _magics = PsncMagics(ipython)
    ipython.register_magics(_magics)


def unload_ipython_extension(ipython: Any) -> None:
    """Close the monitors opened by ``%psnc_monitor`` and remove the magic (``%unload_ext psnc``)."""
    global _magics
    if _magics is None:
        return
    _magics.close_all()
    ipython.magics_manager.magics["line"].pop("psnc_monitor", None)
    _magics = None
