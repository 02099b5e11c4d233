"""The configuration database of one switch: what Junos's management daemon keeps.

There is one shared candidate and one committed configuration. A session may
take the exclusive lock (`lock-configuration`, `<lock>`); while it holds it, other
sessions can read but not load, commit or discard. When the holder's session
ends, its uncommitted changes are discarded and the lock is released — as when a
user leaves `configure exclusive`.

A commit takes `commit_latency` seconds (awaited, so other switches in the same
event loop keep working); a confirmed commit schedules an automatic rollback to
the configuration before it unless another commit confirms it in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from metalnet.sim.switch import tree, validate
from metalnet.sim.switch.errors import ErrorSpec, RpcFailure
from metalnet.sim.switch.tree import Element

HISTORY = 50


@dataclass(frozen=True)
class SessionInfo:
    """Who is on the other end of a NETCONF session (for lock messages and logs)."""

    id: int
    user: str
    since: datetime = field(default_factory=lambda: datetime.now(UTC))

    def describe(self) -> str:
        """The lines Junos prints for the holder of a configuration lock."""
        since = self.since.strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"  {self.user} terminal p0 (pid {self.id}) on since {since}\n  exclusive [edit]"


@dataclass(frozen=True)
class Commit:
    """One entry of the commit history (`rollback 0` is the newest)."""

    config: Element
    user: str
    at: float
    log: str | None = None


ChangeListener = Callable[[Element], None]


class ConfigDatabase:
    """Candidate, committed configuration, history, lock and pending confirmation."""

    def __init__(
        self,
        initial: Element,
        *,
        ports: Iterable[str],
        commit_latency: float = 0.0,
        confirm_unit_seconds: float = 60.0,
        on_change: ChangeListener | None = None,
    ) -> None:
        self.ports = tuple(ports)
        self.commit_latency = commit_latency
        self.confirm_unit_seconds = confirm_unit_seconds
        self.committed = tree.copy(initial)
        self.candidate = tree.copy(initial)
        self.history: list[Commit] = [Commit(tree.copy(initial), "root", time.time())]
        self.lock_owner: SessionInfo | None = None
        self._on_change = on_change
        self._rollback_task: asyncio.Task[None] | None = None
        self._rollback_target: Element | None = None

    # ------------------------------------------------------------------ locking

    def lock(self, session: SessionInfo) -> None:
        """Take the exclusive lock, or fail with Junos's lock-denied error."""
        if self.lock_owner is not None:
            raise self._locked_error(tag="lock-denied")
        self.lock_owner = session

    def unlock(self, session: SessionInfo) -> None:
        """Release the lock this session holds."""
        if self.lock_owner is None or self.lock_owner.id != session.id:
            if self.lock_owner is not None:
                raise self._locked_error(tag="operation-failed")
            raise RpcFailure(ErrorSpec("configuration database is not locked"))
        self.lock_owner = None

    def session_ended(self, session: SessionInfo) -> None:
        """Discard the ended session's uncommitted changes if it held the lock, and unlock."""
        if self.lock_owner is not None and self.lock_owner.id == session.id:
            self.candidate = tree.copy(self.committed)
            self.lock_owner = None

    def check_writable(self, session: SessionInfo) -> None:
        """Refuse a change of the candidate while another session holds the lock."""
        if self.lock_owner is not None and self.lock_owner.id != session.id:
            raise self._locked_error(tag="in-use")

    def _locked_error(self, *, tag: str) -> RpcFailure:
        assert self.lock_owner is not None
        message = "configuration database locked by:\n" + self.lock_owner.describe()
        return RpcFailure(ErrorSpec(message, tag=tag, session_id=self.lock_owner.id))

    # ------------------------------------------------------------------ candidate

    def edit(self, session: SessionInfo, change: Callable[[Element], Element | None]) -> None:
        """Apply `change` to a copy of the candidate; keep it only if `change` succeeds.

        `change` edits the copy in place, or returns a whole new tree (override).
        """
        self.check_writable(session)
        work = tree.copy(self.candidate)
        replaced = change(work)
        self.candidate = replaced if replaced is not None else work

    def discard(self, session: SessionInfo) -> None:
        """`rollback 0`: the candidate becomes the committed configuration again."""
        self.check_writable(session)
        self.candidate = tree.copy(self.committed)

    def rollback_config(self, index: int) -> Element:
        """The configuration of `rollback <index>`."""
        if not 0 <= index < len(self.history):
            raise RpcFailure(ErrorSpec(f"rollback {index} does not exist", bad_element=str(index)))
        return tree.copy(self.history[index].config)

    # ------------------------------------------------------------------ commit

    async def commit(
        self,
        session: SessionInfo,
        *,
        check: bool = False,
        confirm_minutes: float | None = None,
        log: str | None = None,
    ) -> None:
        """Validate and activate the candidate, taking `commit_latency` seconds.

        `check` only validates. `confirm_minutes` makes it a confirmed commit: the
        switch returns to the configuration before the first unconfirmed commit
        unless another commit arrives within that time.
        """
        self.check_writable(session)
        snapshot = tree.copy(self.candidate)
        if self.commit_latency:
            await asyncio.sleep(self.commit_latency)
        validate.check_commit(snapshot, self.ports)
        if check:
            return
        previous = self.committed
        self._activate(snapshot, session.user, log)
        target = self._rollback_target if self._rollback_target is not None else previous
        self._cancel_rollback()
        if confirm_minutes is not None:
            self._schedule_rollback(target, confirm_minutes * self.confirm_unit_seconds)

    def _activate(self, config: Element, user: str, log: str | None) -> None:
        self.committed = config
        self.history.insert(0, Commit(tree.copy(config), user, time.time(), log))
        del self.history[HISTORY:]
        if self._on_change is not None:
            self._on_change(tree.copy(config))

    def _schedule_rollback(self, target: Element, seconds: float) -> None:
        self._rollback_target = target
        self._rollback_task = asyncio.get_running_loop().create_task(
            self._rollback_after(seconds), name="commit-confirmed-rollback"
        )

    def _cancel_rollback(self) -> None:
        if self._rollback_task is not None:
            self._rollback_task.cancel()
        self._rollback_task = None
        self._rollback_target = None

    async def _rollback_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        target = self._rollback_target
        self._rollback_task = None
        self._rollback_target = None
        if target is not None:
            self.candidate = tree.copy(target)
            self._activate(target, "root", "commit confirmed rollback")

    @property
    def confirm_pending(self) -> bool:
        """A confirmed commit is waiting for its confirmation."""
        return self._rollback_task is not None

    def commit_out_of_band(self, change: Callable[[Element], None], user: str) -> None:
        """Change the committed configuration as another operator would (drift tests).

        The same change is made to the candidate so it is not lost by the next commit.
        """
        new = tree.copy(self.committed)
        change(new)
        validate.check_commit(new, self.ports)
        change(self.candidate)
        self._activate(new, user, "out-of-band change")

    def stop(self) -> None:
        """Cancel a pending automatic rollback (the switch is shutting down)."""
        self._cancel_rollback()
