"""The one retry policy: exponential back-off with a cap, bounded by attempts or by time.

Every layer that retries (driver lock wait, queue session loss, advisory lock,
lifecycle port moves) states its budget as a `Retry` and waits through this module,
so budgets are visible in one place and do not multiply unseen. `sleep` and `clock`
are module attributes looked up at call time: tests replace them with a virtual clock
(see `tests/conftest.py`) so no test waits through real back-off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

sleep: Callable[[float], None] = time.sleep
clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class Retry:
    """How long to keep trying: `attempts` tries and/or `seconds` from the first one.

    With neither, a policy retries forever; every use in metalnet sets at least one.
    """

    attempts: int | None = None
    seconds: float | None = None
    first: float = 0.5
    cap: float = 30.0
    factor: float = 2.0

    def delays(self) -> Iterator[float]:
        """The waits between tries: first, first*factor, ... never above cap."""
        delay = self.first
        while True:
            yield min(delay, self.cap)
            delay *= self.factor

    def call(
        self,
        fn: Callable[[], T],
        *,
        retry_on: tuple[type[BaseException], ...],
        what: str,
        giveup: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """Call `fn` until it returns; re-raise the last error when the budget is spent.

        `retry_on` names the errors worth another try; `giveup(exc)` can still refuse
        one of them (a refusal that retrying cannot change). `what` names the operation
        in the log line of every retry.
        """
        deadline = None if self.seconds is None else clock() + self.seconds
        waits = self.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except retry_on as exc:
                if giveup is not None and giveup(exc):
                    raise
                if self.attempts is not None and attempt >= self.attempts:
                    raise
                delay = next(waits)
                if deadline is not None:
                    remaining = deadline - clock()
                    if remaining <= 0:
                        raise
                    delay = min(delay, remaining)
                log.warning("%s failed (try %d), retrying in %.1fs: %s", what, attempt, delay, exc)
                sleep(delay)
