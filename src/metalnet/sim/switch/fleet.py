"""`SimFleet`: many simulated switches served from one background event loop.

Tests and benchmarks run in ordinary synchronous code; the fleet owns a daemon
thread running an asyncio loop, starts each switch on it, and stops them all on
`stop()`. Fifty 48-port switches in one process cost one thread, not fifty.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from metalnet.sim.switch.device import SimSwitch

T = TypeVar("T")


class SimFleet:
    """Simulated switches sharing one event loop in a background thread."""

    def __init__(self) -> None:
        self.switches: list[SimSwitch] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="metalnet-sim-fleet", daemon=True
        )
        self._thread.start()

    def add(self, name: str | None = None, **options: Any) -> SimSwitch:
        """Create and start a switch (options as for `SimSwitch`); return it listening."""
        switch = SimSwitch(name or f"sw{len(self.switches) + 1}", **options)
        self._run(switch.start())
        self.switches.append(switch)
        return switch

    def stop(self) -> None:
        """Stop every switch, end the loop and join its thread; safe to call twice."""
        if self._loop.is_closed():
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        for switch in self.switches:
            await switch.stop()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def __enter__(self) -> SimFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
