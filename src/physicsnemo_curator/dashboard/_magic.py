"""``%psnc_dashboard DB``: the link to a run store's dashboard on the notebook's own Jupyter server.

The link points at the Jupyter server extension
(:mod:`physicsnemo_curator.dashboard.jupyter_extension`), so it opens on the
same origin with the same login, also under JupyterHub. The IPython extension
(``%load_ext psnc``) registers the magic through :func:`register`.
"""

from __future__ import annotations

import html
import logging
import os
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import quote

from physicsnemo_curator.core.errors import CuratorError

logger = logging.getLogger(__name__)

USAGE = "%psnc_dashboard DB | PIPELINE_FILE | HASH_PREFIX"


def server_base_url() -> str:
    """Return the base URL of the Jupyter server this kernel most likely belongs to (``/`` when unknown).

    JupyterHub sets ``JUPYTERHUB_SERVICE_PREFIX`` in single-user servers and
    their kernels; otherwise the running servers whose root folder contains
    the kernel's working folder are checked.
    """
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        return prefix if prefix.endswith("/") else prefix + "/"
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return "/"
    cwd = Path.cwd().resolve()
    for info in list_running_servers():
        root = Path(info.get("root_dir") or info.get("notebook_dir") or "/").resolve()
        if cwd == root or root in cwd.parents:
            base = info.get("base_url") or "/"
            return base if base.endswith("/") else base + "/"
    return "/"


def dashboard_link(target: str, base_url: str | None = None) -> tuple[Path, str]:
    """Resolve ``target`` to a run store and return ``(path, URL path of its dashboard)``."""
    from physicsnemo_curator.dashboard._cli import resolve_db_path

    path = resolve_db_path(target).resolve()
    base = server_base_url() if base_url is None else base_url
    return path, f"{base}psnc/dashboard?db={quote(str(path), safe='')}"


class DashboardLink:
    """The displayed result of ``%psnc_dashboard``: an HTML link, or the URL as plain text."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url

    def __repr__(self) -> str:
        return f"Dashboard of {self.path}: {self.url}"

    def _repr_html_(self) -> str:
        return (
            f'<a href="{html.escape(self.url, quote=True)}" target="_blank" rel="noopener">'
            f"Open the dashboard of {html.escape(str(self.path))}</a>"
        )


def psnc_dashboard(line: str) -> None:
    """Display the link to the dashboard of the run store named on ``line`` (plain text outside a notebook)."""
    from IPython.core.error import UsageError
    from IPython.display import display

    words = shlex.split(line)
    if len(words) != 1:
        raise UsageError(f"Expected one run store, got {len(words)} arguments. Usage: {USAGE}")
    try:
        path, url = dashboard_link(words[0])
    except (CuratorError, OSError) as exc:
        raise UsageError(str(exc)) from None
    display(DashboardLink(path, url))


def register(ipython: Any) -> None:
    """Register ``%psnc_dashboard`` with ``ipython``."""
    ipython.register_magic_function(psnc_dashboard, magic_kind="line", magic_name="psnc_dashboard")


def unregister(ipython: Any) -> None:
    """Remove ``%psnc_dashboard`` from ``ipython``."""
    ipython.magics_manager.magics["line"].pop("psnc_dashboard", None)
