"""Running one async service in the foreground: SIGTERM and Ctrl-C stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping


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


def said_in_one_line(prog: str, run: Callable[[], int],
                     known: Mapping[type[Exception], Callable[[Exception], str]] | None = None
                     ) -> int:
    """Run a service's entry point. A bad setting, an unreachable broker or an error named in
    ``known`` (exception type -> what to say) ends the process with one line on stderr and
    exit status 2 (a setting) or 1, not a traceback; any other error is a bug and raises."""
    from aiokafka.errors import KafkaConnectionError

    from gpufleet.config import ConfigError

    said: dict[type[Exception], Callable[[Exception], str]] = {
        ConfigError: lambda e: f"bad setting: {e}",
        KafkaConnectionError: lambda e: (
            f"cannot reach Kafka ({e}); is GPUFLEET_KAFKA_BOOTSTRAP right, and is the broker up "
            "(make kafka)?"),
        **(known or {}),
    }
    try:
        return run()
    except Exception as e:
        say = next((s for kind, s in said.items() if isinstance(e, kind)), None)
        if say is None:
            raise
        print(f"{prog}: {say(e)}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
