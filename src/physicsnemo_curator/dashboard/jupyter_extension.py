"""Jupyter server extension: the dashboard of a run store on the Jupyter server's own origin.

Enabled by ``jupyter-config/jupyter_server_config.d/physicsnemo_curator.json``.
Inside a running Jupyter server (JupyterLab, Notebook 7, a JupyterHub
single-user server), open::

    <base_url>psnc/dashboard?db=<path, pipeline file or hash prefix>

The handler resolves the store, starts a Panel server for it on a free
127.0.0.1 port in a background thread (once per store), and redirects to
``<base_url>psnc/app/<key>/``, where Jupyter's authenticated handlers relay
HTTP and the WebSocket to that Panel server. The browser only ever talks to
the Jupyter server, with its token or login cookie, so a JupyterHub user
needs no extra port. The Panel server rejects requests that do not carry a
per-server secret header, and signs its sessions, so the local port is of no
use without going through Jupyter's authentication.
"""

from __future__ import annotations

import hashlib
import html
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from physicsnemo_curator.core.errors import CuratorError

logger = logging.getLogger(__name__)

ROUTE = "psnc"
SECRET_HEADER = "X-Psnc-Proxy-Secret"
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "upgrade"}


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "physicsnemo_curator.dashboard.jupyter_extension"}]


@dataclass
class _Backend:
    key: str
    db_path: Path
    port: int
    secret: str
    server: Any


class _Backends:
    """The Panel servers started by this Jupyter server, one per run store."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.by_key: dict[str, _Backend] = {}
        self._lock = threading.Lock()

    def prefix(self, key: str) -> str:
        return f"{self.base_url}{ROUTE}/app/{key}"

    def get_or_start(self, db_path: Path) -> _Backend:
        key = hashlib.sha256(str(db_path).encode()).hexdigest()[:16]
        with self._lock:
            backend = self.by_key.get(key)
            if backend is None:
                backend = self._start(key, db_path)
                self.by_key[key] = backend
            return backend

    def _start(self, key: str, db_path: Path) -> _Backend:
        from bokeh.server.auth_provider import AuthProvider

        from physicsnemo_curator.dashboard.app import DashboardApp, free_port

        secret = secrets.token_urlsafe(32)

        class _SecretHeader(AuthProvider):
            @property
            def get_user(self) -> Any:
                def check(handler: Any) -> str | None:
                    sent = handler.request.headers.get(SECRET_HEADER, "")
                    return "jupyter" if secrets.compare_digest(sent, secret) else None

                return check

            @property
            def login_url(self) -> str:
                return "/psnc-denied"

        port = free_port()
        app = DashboardApp(db_path)
        outcome: dict[str, Any] = {}

        def start() -> None:
            try:
                outcome["server"] = app.serve(
                    port=port,
                    open_browser=False,
                    address="127.0.0.1",
                    threaded=True,
                    prefix=self.prefix(key),
                    websocket_origin=[f"127.0.0.1:{port}"],
                    auth_provider=_SecretHeader(),
                    sign_sessions=True,
                    secret_key=secrets.token_urlsafe(32),
                )
            except Exception as exc:  # noqa: BLE001 - re-raised in the calling thread
                outcome["error"] = exc

        # Panel's server thread inherits the daemon flag of the thread that starts it, and a
        # daemon thread does not keep the Jupyter server process alive after it shuts down.
        starter = threading.Thread(target=start, name=f"psnc-dashboard-{key}", daemon=True)
        starter.start()
        starter.join()
        if "error" in outcome:
            raise outcome["error"]
        server = outcome["server"]
        _wait_for_port(port)
        logger.info("Started the dashboard of %s for Jupyter on 127.0.0.1:%d", db_path, port)
        return _Backend(key, db_path, port, secret, server)

    def stop_all(self) -> None:
        with self._lock:
            for backend in self.by_key.values():
                try:
                    backend.server.stop()
                except Exception as exc:  # noqa: BLE001 - shutting down anyway
                    logger.warning("Stopping the dashboard of %s failed: %s", backend.db_path, exc)
            self.by_key.clear()


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"The dashboard server on 127.0.0.1:{port} did not start within {timeout:.0f} s.")


def _strip_token(uri: str) -> str:
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    return parts.path + (f"?{urlencode(query)}" if query else "")


def _handlers(serverapp: Any, backends: _Backends) -> list[tuple[str, type, dict[str, Any]]]:
    from jupyter_server.base.handlers import JupyterHandler
    from jupyter_server.base.websocket import WebSocketMixin
    from tornado import web
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.ioloop import IOLoop
    from tornado.websocket import WebSocketHandler, websocket_connect

    root_dir = Path(getattr(serverapp, "root_dir", ".") or ".")

    class EntryHandler(JupyterHandler):
        """``psnc/dashboard?db=...``: resolve the store, start its server, redirect to it."""

        @web.authenticated
        async def get(self) -> None:
            from physicsnemo_curator.dashboard._cli import resolve_db_path

            target = self.get_argument("db", "").strip()
            if not target:
                self._fail(400, "Missing run store: open psnc/dashboard?db=PATH (a .db file, a pipeline file or a hash prefix).")
                return
            candidate = Path(target).expanduser()
            if not candidate.is_absolute() and (root_dir / candidate).exists():
                candidate = root_dir / candidate
            try:
                path = resolve_db_path(candidate if candidate.exists() else target).resolve()
                backend = await IOLoop.current().run_in_executor(None, backends.get_or_start, path)
            except (CuratorError, OSError, TimeoutError) as exc:
                logger.warning("Dashboard request for %r failed: %s", target, exc)
                self._fail(404, str(exc))
                return
            self.redirect(backends.prefix(backend.key) + "/")

        def _fail(self, status: int, message: str) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(f"<!DOCTYPE html><title>Dashboard</title><p>{html.escape(message)}</p>")

    class ProxyHandler(JupyterHandler):
        """Relay page and static requests to the store's Panel server."""

        @web.authenticated
        async def get(self, key: str, rest: str | None = None) -> None:
            backend = backends.by_key.get(key)
            if backend is None:
                raise web.HTTPError(404, f"No dashboard is running under {key}; open psnc/dashboard?db=PATH again.")
            headers = {
                k: v for k, v in self.request.headers.get_all() if k.lower() not in _HOP_HEADERS | {"host", "cookie", "authorization"}
            }
            headers[SECRET_HEADER] = backend.secret
            request = HTTPRequest(
                f"http://127.0.0.1:{backend.port}{_strip_token(self.request.uri or '')}",
                method="GET",
                headers=headers,
                follow_redirects=False,
                request_timeout=120,
            )
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
            if response.code == 599:
                raise web.HTTPError(502, f"The dashboard server of {backend.db_path} did not respond: {response.error}")
            self.set_status(response.code, response.reason)
            for name, value in response.headers.get_all():
                if name.lower() not in _HOP_HEADERS and name.lower() != "set-cookie":
                    self.set_header(name, value)
            if response.body:
                self.write(response.body)
            await self.finish()

    class SocketHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
        """Relay the Bokeh WebSocket of a session, message by message, in both directions."""

        backend_socket: Any = None
        offered: list[str] = []

        async def get(self, *args: Any, **kwargs: Any) -> None:
            if not self.current_user:
                raise web.HTTPError(403)
            await super().get(*args, **kwargs)

        def select_subprotocol(self, subprotocols: list[str]) -> str | None:
            self.offered = list(subprotocols)
            return subprotocols[0] if subprotocols else None

        async def open(self, key: str) -> None:  # type: ignore[override]
            backend = backends.by_key.get(key)
            if backend is None:
                self.close(1011, "no such dashboard")
                return
            request = HTTPRequest(
                f"ws://127.0.0.1:{backend.port}{_strip_token(self.request.uri or '')}",
                headers={"Origin": f"http://127.0.0.1:{backend.port}", SECRET_HEADER: backend.secret},
            )
            try:
                self.backend_socket = await websocket_connect(request, subprotocols=self.offered, max_message_size=512 * 2**20)
            except Exception as exc:  # noqa: BLE001 - report and close the browser side
                logger.warning("Connecting to the dashboard WebSocket of %s failed: %s", backend.db_path, exc)
                self.close(1011, "dashboard server unavailable")
                return
            IOLoop.current().spawn_callback(self._relay_to_browser)

        async def _relay_to_browser(self) -> None:
            while True:
                message = await self.backend_socket.read_message()
                if message is None:
                    self.close()
                    return
                try:
                    await self.write_message(message, binary=isinstance(message, bytes))
                except Exception:  # noqa: BLE001 - the browser went away
                    self.backend_socket.close()
                    return

        async def on_message(self, message: str | bytes) -> None:
            if self.backend_socket is not None:
                await self.backend_socket.write_message(message, binary=isinstance(message, bytes))

        def on_close(self) -> None:
            if self.backend_socket is not None:
                self.backend_socket.close()

    base = f"{backends.base_url}{ROUTE}"
    return [
        (rf"{base}/dashboard/?", EntryHandler, {}),
        (rf"{base}/app/([0-9a-f]{{16}})/ws", SocketHandler, {}),
        (rf"{base}/app/([0-9a-f]{{16}})(/.*)?", ProxyHandler, {}),
    ]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the ``psnc/dashboard`` and ``psnc/app/<key>/`` routes to the Jupyter server."""
    web_app = serverapp.web_app
    base_url = web_app.settings.get("base_url", "/")
    if not base_url.endswith("/"):
        base_url += "/"
    backends = _Backends(base_url)
    web_app.add_handlers(".*$", _handlers(serverapp, backends))
    web_app.settings["psnc_dashboard_backends"] = backends
    logger.info("physicsnemo-curator dashboard available at %s%s/dashboard?db=PATH", base_url, ROUTE)


# Older jupyter_server and notebook versions look for the name without the leading underscore.
load_jupyter_server_extension = _load_jupyter_server_extension
