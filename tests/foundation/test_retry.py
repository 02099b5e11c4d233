"""The one retry policy: budgets by attempts and by time, give-up, capped back-off."""

from __future__ import annotations

import pytest

from metalnet.retry import Retry


class Flaky:
    """Fails `failures` times with `error`, then returns "ok"."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_retries_until_success_with_growing_capped_waits(virtual_clock: list[float]) -> None:
    fn = Flaky(5, ConnectionError("down"))
    policy = Retry(attempts=10, first=1.0, cap=4.0)
    assert policy.call(fn, retry_on=(ConnectionError,), what="x") == "ok"
    assert fn.calls == 6
    assert virtual_clock == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_attempt_budget_reraises_last_error(virtual_clock: list[float]) -> None:
    fn = Flaky(10, ConnectionError("down"))
    with pytest.raises(ConnectionError):
        Retry(attempts=3).call(fn, retry_on=(ConnectionError,), what="x")
    assert fn.calls == 3
    assert len(virtual_clock) == 2


def test_time_budget_never_waits_past_the_deadline(virtual_clock: list[float]) -> None:
    fn = Flaky(100, TimeoutError("slow"))
    with pytest.raises(TimeoutError):
        Retry(seconds=10, first=3.0, cap=30.0).call(fn, retry_on=(TimeoutError,), what="x")
    assert sum(virtual_clock) == pytest.approx(10.0, abs=0.5)


def test_other_errors_and_give_up_are_not_retried(virtual_clock: list[float]) -> None:
    fn = Flaky(1, ValueError("bad"))
    with pytest.raises(ValueError):
        Retry(attempts=5).call(fn, retry_on=(ConnectionError,), what="x")
    refused = Flaky(1, ConnectionError("refused for good"))
    with pytest.raises(ConnectionError):
        Retry(attempts=5).call(
            refused, retry_on=(ConnectionError,), what="x", giveup=lambda e: "good" in str(e)
        )
    assert fn.calls == refused.calls == 1
    assert virtual_clock == []
