"""SIGINT and SIGTERM during a batch: deferred while planning and reporting, graceful while sending."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import anyio

from .._core._exit import ExitCode
from ..send import Engine
from ._summary import INTERRUPTED

__all__ = ["Interrupts", "watch_signals"]

log = logging.getLogger("bulk")


class Interrupts:
    """SIGINT and SIGTERM while planning or writing the report: noted, acted on when safe.

    Both are blocking work in a worker thread, where a signal's default action
    would end the process halfway (a scheduler's stop leaving no report). While
    `deferred`, the first signal only sets `requested`: planning checks it
    between chunks, the report is finished and the run then exits 130. A second
    one ends the process at once (the journal is SQLite in WAL mode: safe to
    kill). While `suspended` (the confirmation prompt, sending) the usual
    handlers act: Ctrl-C at the prompt, the engine's graceful stop.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.requested = threading.Event()
        self.then = "stopping before anything is sent"
        self._outer: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.requested.is_set():
            log.warning("second interrupt: stopping now")
            os._exit(ExitCode.INTERRUPTED)
        self.requested.set()
        log.warning("interrupt: %s (interrupt again to stop at once)", self.then)

    def _install(self, handlers: Mapping[int, Any]) -> None:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._outer = {sig: signal.getsignal(sig) for sig in self._SIGNALS}
        self._install(dict.fromkeys(self._SIGNALS, self._on_signal))
        try:
            yield
        finally:
            self._install(self._outer)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._install(self._outer)
        try:
            yield
        finally:
            self._install(dict.fromkeys(self._SIGNALS, self._on_signal))


async def watch_signals(engine: Engine, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if engine.stopping:
                log.warning("second interrupt: stopping now")
                scope.cancel()
                return
            log.warning(
                "interrupt: finishing requests in flight, then writing the report "
                "(interrupt again to stop at once)"
            )
            engine.stop(INTERRUPTED)
