"""The ``%psnc_monitor`` line magic."""

from __future__ import annotations

import argparse
import logging
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from physicsnemo_curator.core.errors import CuratorError

logger = logging.getLogger(__name__)

_USAGE = "%psnc_monitor [DB | HASH_PREFIX | PIPELINE.yaml/.json] [--interval SECONDS]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(f"{message}. Usage: {_USAGE}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%psnc_monitor", add_help=False)
    parser.add_argument("target", nargs="?", default=None)
    parser.add_argument("--interval", "-i", type=float, default=1.0)
    return parser


@magics_class
class PsncMagics(Magics):
    """IPython magics of physicsnemo-curator."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.widgets: list[Any] = []

    @line_magic
    def psnc_monitor(self, line: str) -> Any:
        """Show a live monitor of a run store.

        Usage: ``%psnc_monitor [DB | HASH_PREFIX | PIPELINE.yaml/.json] [--interval SECONDS]``.
        Without an argument, the most recent run in the cache directory is
        shown. A ``.db`` path that does not exist yet is watched until the
        run creates it.
        """
        from physicsnemo_curator.notebook._resolve import monitor_target
        from physicsnemo_curator.notebook._widgets import MonitorWidget

        try:
            args = _parser().parse_args(shlex.split(line))
            path = monitor_target(args.target)
        except (CuratorError, ValueError, OSError) as exc:
            # A clean one-line message in the cell output, not a traceback.
            raise UsageError(str(exc)) from None
        widget = MonitorWidget(path, interval=args.interval)
        self.widgets.append(widget)
        logger.info("Monitoring %s every %.2f s", path, args.interval)
        return widget

    def close_all(self) -> None:
        """Close every monitor this magic opened."""
        for widget in self.widgets:
            widget.close()
        self.widgets.clear()

