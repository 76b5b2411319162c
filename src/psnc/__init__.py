"""IPython extension of physicsnemo-curator: ``%load_ext psnc`` adds ``%psnc_monitor`` and ``%psnc_dashboard``.

Nothing heavy is imported until IPython loads the extension.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

_magics: Any = None


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%psnc_monitor`` and ``%psnc_dashboard`` with ``ipython`` (called by ``%load_ext psnc``)."""
    global _magics
    from physicsnemo_curator.dashboard import _magic
    from physicsnemo_curator.notebook._magics import PsncMagics

    _magics = PsncMagics(ipython)
    ipython.register_magics(_magics)
    _magic.register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Close the monitors opened by ``%psnc_monitor`` and remove the magic (``%unload_ext psnc``)."""
    global _magics
    if _magics is None:
        return
    from physicsnemo_curator.dashboard import _magic

    _magics.close_all()
    ipython.magics_manager.magics["line"].pop("psnc_monitor", None)
    _magic.unregister(ipython)
    _magics = None
