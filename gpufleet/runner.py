"""Running one async service in the foreground: SIGTERM and Ctrl-C stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable


def run_service(main: Callable[[asyncio.Event], Awaitable[None]], log_level: str = "INFO") -> int:
    """Run ``main(stop)``; ``stop`` is set on SIGTERM/SIGINT and main is expected to return.

    A second signal cancels main outright.
    """
    logging.getLogger().setLevel(log_level.upper())

    async def _go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def _signal() -> None:
            if stop.is_set() and task is not None:
                task.cancel()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _signal)
        await main(stop)

    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(_go())
    return 0
