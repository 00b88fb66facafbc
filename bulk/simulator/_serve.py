"""Serving a Simulator: on the running loop (`serve`), in a thread (`SimulatorThread`), or
until Ctrl-C (`run_forever`); and the environment for a `bulk` process that talks to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from aiohttp import web

from ._app import Simulator
from ._config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

__all__ = ["SimulatorThread", "demo_env", "run_forever", "serve"]


@asynccontextmanager
async def serve(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `sim` on the running loop and yield its base URL."""
    # A short shutdown timeout keeps slow answers from holding up the end of a test.
    runner = web.AppRunner(sim.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        yield f"http://{shown_host}:{bound_port}"
    finally:
        await asyncio.shield(runner.cleanup())


class SimulatorThread:
    """Runs `serve` on its own loop in a daemon thread, for tests that drive a subprocess."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.base_url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="bulk-simulator", daemon=True)

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self.sim, self.host, self.port) as base_url:
            self.base_url = base_url
            self._ready.set()
            await self._stop.wait()


def run_forever(
    sim: Simulator, host: str, port: int, *, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve until Ctrl-C or SIGTERM, then shut down cleanly and return."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Not available on Windows or off the main thread; Ctrl-C still ends the run below.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        async with serve(sim, host, port) as base_url:
            if on_ready is not None:
                on_ready(base_url)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def demo_env(base_url: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A process environment for `bulk` against a simulator: the demo credentials, and
    none of the caller's own SPACEBRING_* settings (so a real account is never used)."""
    source = os.environ if environ is None else environ
    keep = {k: v for k, v in source.items() if not k.startswith("SPACEBRING_")}
    return {
        **keep,
        "SPACEBRING_BASE_URL": base_url,
        "SPACEBRING_CLIENT_ID": DEMO_CLIENT_ID,
        "SPACEBRING_CLIENT_SECRET": DEMO_CLIENT_SECRET,
    }
