"""The background thread that keeps a widget in step with its run store."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable

logger = logging.getLogger(__name__)

_live: weakref.WeakSet[Poller] = weakref.WeakSet()
_live_lock = threading.Lock()


class Poller:
    """Call ``tick()`` every ``interval`` seconds on a daemon thread until it returns ``False``.

    ``tick`` returns ``False`` to end the thread (the run finished and
    nothing changed for a while); ``on_exit`` runs on the thread when it
    ends, whatever the reason, so the store connection is closed by the
    thread that used it. :meth:`stop` ends it from outside (widget closed);
    every poller still running is stopped at interpreter exit (kernel
    shutdown).
    """

    def __init__(self, tick: Callable[[], bool], on_exit: Callable[[], None], interval: float, name: str) -> None:
        if not interval > 0:
            raise ValueError(f"Polling interval must be a positive number of seconds, got {interval!r}.")
        self.interval = float(interval)
        self._tick = tick
        self._on_exit = on_exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.ticks = 0

    def start(self) -> None:
        with _live_lock:
            _live.add(self)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.ticks += 1
                try:
                    keep_going = self._tick()
                except Exception:  # noqa: BLE001 - a failing poll must not kill the widget silently
                    logger.exception("Polling failed on thread %s; it stops", self._thread.name)
                    break
                if not keep_going:
                    logger.debug("Poller %s stops: the run finished and nothing changed", self._thread.name)
                    break
                self._stop.wait(self.interval)
        finally:
            try:
                self._on_exit()
            finally:
                with _live_lock:
                    _live.discard(self)
                logger.debug("Poller %s stopped after %d polls", self._thread.name, self.ticks)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait for it (up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("Poller %s did not stop within %.1f s", self._thread.name, timeout)


def stop_all() -> None:
    """Stop every running poller (called at interpreter exit)."""
    with _live_lock:
        pollers = list(_live)
    for poller in pollers:
        poller.stop(timeout=1.0)


def running() -> int:
    """Number of pollers whose thread is still running."""
    with _live_lock:
        return sum(1 for p in _live if p.alive)


atexit.register(stop_all)
