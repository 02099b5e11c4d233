"""The configuration database of one switch: what Junos's management daemon keeps.

There is one shared candidate and one committed configuration, and any session
may open a private copy. The rules, each as Juniper documents it:

- `lock-configuration`/`<lock>` takes the shared candidate exclusively; it is
  refused with "configuration database modified" while the shared candidate holds
  uncommitted changes (RFC 6241 §7.5: a lock on a modified candidate fails with
  lock-denied; Junos words it "configuration database modified", as Ansible
  junipernetworks.junos issue 404 shows). While it is held, other sessions can
  read but not load, commit or discard.
- `<unlock-configuration/>` and the end of the holder's session discard the
  uncommitted changes ("If the Junos XML protocol session ends or the application
  emits the <unlock-configuration/> tag before the candidate configuration is
  committed, all changes made to the candidate are discarded" — the
  `<lock-configuration>` reference page).
- `<open-configuration><private/>` gives the session a private copy; it is
  refused while the shared candidate is modified ("shared configuration database
  modified", as `configure private` answers). Loads, reads and commits of that
  session use the copy; committing it merges only the session's changes into
  the shared candidate and commits that; the commit fails if another session
  holds the lock or the shared candidate was modified meanwhile, and a confirmed
  commit of a private copy is refused ("Commit a Private Copy of the
  Configuration Using the Junos XML Protocol"; "Commit the Candidate
  Configuration Only After Confirmation": "You cannot perform a confirmed commit
  operation on a private copy"). `<close-configuration/>` or the end of the
  session drops the copy.
- A confirmed commit rolls back by itself unless confirmed in time, and at once
  when the session that made it ends first (RFC 6241 §8.4, the
  confirmed-commit:1.0 capability Junos advertises).

A commit takes `commit_latency` seconds (awaited, so other switches in the same
event loop keep working).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from metalnet.sim.switch import inherit, tree, validate
from metalnet.sim.switch.dialect import ELS, Dialect
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
Change = Callable[[Element], Element | None]


@dataclass
class PrivateCopy:
    """A session's private candidate and the changes loaded into it, in order."""

    config: Element
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class CommitOutcome:
    """What a commit did: `changed` False for a private copy without changes."""

    private: bool = False
    changed: bool = True


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
        dialect: Dialect = ELS,
    ) -> None:
        self.ports = tuple(ports)
        self.dialect = dialect
        self.commit_latency = commit_latency
        self.confirm_unit_seconds = confirm_unit_seconds
        self.committed = tree.copy(initial)
        self.candidate = tree.copy(initial)
        self.history: list[Commit] = [Commit(tree.copy(initial), "root", time.time())]
        self.lock_owner: SessionInfo | None = None
        self.private: dict[int, PrivateCopy] = {}
        self._on_change = on_change
        self.changes = 0  # of the committed configuration, uncapped (history is capped)
        self._confirm_session: int | None = None
        self._rollback_task: asyncio.Task[None] | None = None
        self._rollback_target: Element | None = None

    # ------------------------------------------------------------------ locking

    @property
    def modified(self) -> bool:
        """The shared candidate holds uncommitted changes."""
        return not tree.same(self.candidate, self.committed)

    def lock(self, session: SessionInfo) -> None:
        """Take the exclusive lock, or fail as Junos does (held, or candidate modified)."""
        if self.lock_owner is not None:
            raise self._locked_error(tag="lock-denied")
        if self.modified:
            raise RpcFailure(ErrorSpec("configuration database modified", tag="lock-denied"))
        self.lock_owner = session

    def unlock(self, session: SessionInfo) -> None:
        """Release the lock this session holds, discarding its uncommitted changes."""
        if self.lock_owner is None or self.lock_owner.id != session.id:
            if self.lock_owner is not None:
                raise self._locked_error(tag="operation-failed")
            raise RpcFailure(ErrorSpec("configuration database is not locked"))
        self.candidate = tree.copy(self.committed)
        self.lock_owner = None

    def session_ended(self, session: SessionInfo) -> None:
        """Drop what the ended session left: private copy, lock with its changes, and
        an unconfirmed commit it made (rolled back now)."""
        self.private.pop(session.id, None)
        if self.lock_owner is not None and self.lock_owner.id == session.id:
            self.candidate = tree.copy(self.committed)
            self.lock_owner = None
        if self._confirm_session == session.id and self._rollback_target is not None:
            target = self._rollback_target
            self._cancel_rollback()
            self._restore(target, "commit confirmed rollback: session ended")

    def check_writable(self, session: SessionInfo) -> None:
        """Refuse a change of the shared candidate while another session holds the lock."""
        if self.lock_owner is not None and self.lock_owner.id != session.id:
            raise self._locked_error(tag="in-use")

    def _locked_error(self, *, tag: str) -> RpcFailure:
        assert self.lock_owner is not None
        message = "configuration database locked by:\n" + self.lock_owner.describe()
        return RpcFailure(ErrorSpec(message, tag=tag, session_id=self.lock_owner.id))

    # ------------------------------------------------------------------ private copies

    def open_private(self, session: SessionInfo) -> None:
        """`<open-configuration><private/>`: a private copy of the (unmodified) candidate."""
        if self.modified:
            raise RpcFailure(ErrorSpec("shared configuration database modified"))
        if session.id not in self.private:
            self.private[session.id] = PrivateCopy(tree.copy(self.candidate))

    def close_private(self, session: SessionInfo) -> None:
        """`<close-configuration/>`: drop the private copy and its uncommitted changes."""
        if self.private.pop(session.id, None) is None:
            raise RpcFailure(ErrorSpec("configuration database is not open"))

    def candidate_of(self, session: SessionInfo) -> Element:
        """The candidate this session sees: its private copy, or the shared one."""
        copy = self.private.get(session.id)
        return copy.config if copy is not None else self.candidate

    # ------------------------------------------------------------------ candidate

    def edit(self, session: SessionInfo, change: Change) -> None:
        """Apply `change` to a copy of the session's candidate; keep it only if it succeeds.

        `change` edits the copy in place, or returns a whole new tree (override).
        """
        private = self.private.get(session.id)
        if private is None:
            self.check_writable(session)
        work = tree.copy(self.candidate_of(session))
        replaced = change(work)
        result = replaced if replaced is not None else work
        if private is None:
            self.candidate = result
        else:
            private.config = result
            private.changes.append(change)

    def discard(self, session: SessionInfo) -> None:
        """`rollback 0`: the session's candidate becomes the committed configuration again."""
        private = self.private.get(session.id)
        if private is not None:
            self.private[session.id] = PrivateCopy(tree.copy(self.committed))
            return
        self.check_writable(session)
        self.candidate = tree.copy(self.committed)

    def effective(self, config: Element) -> Element:
        """`config` as the switch would run it (see `inherit.effective`)."""
        return inherit.effective(config, self.ports)

    def check(self, config: Element) -> None:
        """Commit check-out of `config`."""
        validate.check_commit(self.effective(config), self.dialect)

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
    ) -> CommitOutcome:
        """Validate and activate the session's candidate, taking `commit_latency` seconds.

        `check` only validates. `confirm_minutes` makes it a confirmed commit: the
        switch returns to the configuration before the first unconfirmed commit
        unless another commit arrives within that time.
        """
        private = self.private.get(session.id)
        if private is None:
            self.check_writable(session)
            snapshot = tree.copy(self.candidate)
        else:
            snapshot = self._merged_private(session, private, confirmed=confirm_minutes is not None)
            if not private.changes:
                return CommitOutcome(private=True, changed=False)
        if self.commit_latency:
            await asyncio.sleep(self.commit_latency)
        self.check(snapshot)
        if check:
            return CommitOutcome(private=private is not None)
        previous = self.committed
        self._activate(snapshot, session.user, log)
        if private is not None:
            self.candidate = tree.copy(snapshot)
            self.private[session.id] = PrivateCopy(tree.copy(snapshot))
        target = self._rollback_target if self._rollback_target is not None else previous
        self._cancel_rollback()
        if confirm_minutes is not None:
            self._schedule_rollback(target, confirm_minutes * self.confirm_unit_seconds)
            self._confirm_session = session.id
        return CommitOutcome(private=private is not None)

    def _merged_private(
        self, session: SessionInfo, private: PrivateCopy, *, confirmed: bool
    ) -> Element:
        """The shared candidate with this session's private changes replayed on it."""
        if confirmed:
            raise RpcFailure(ErrorSpec("commit confirmed is not supported in private mode"))
        if self.lock_owner is not None and self.lock_owner.id != session.id:
            raise self._locked_error(tag="in-use")
        if self.modified:
            raise RpcFailure(ErrorSpec("configuration database modified"))
        merged = tree.copy(self.candidate)
        for change in private.changes:
            replaced = change(merged)
            merged = replaced if replaced is not None else merged
        return merged

    def _activate(self, config: Element, user: str, log: str | None) -> None:
        self.committed = config
        self.history.insert(0, Commit(tree.copy(config), user, time.time(), log))
        del self.history[HISTORY:]
        self.changes += 1
        if self._on_change is not None:
            self._on_change(config)  # read only: a listener copies what it keeps

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
        self._confirm_session = None

    async def _rollback_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        target = self._rollback_target
        self._rollback_task = None
        self._rollback_target = None
        self._confirm_session = None
        if target is not None:
            self._restore(target, "commit confirmed rollback")

    def _restore(self, target: Element, log: str) -> None:
        self.candidate = tree.copy(target)
        self._activate(target, "root", log)

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
        self.check(new)
        change(self.candidate)
        self._activate(new, user, "out-of-band change")

    def stop(self) -> None:
        """Cancel a pending automatic rollback (the switch is shutting down)."""
        self._cancel_rollback()
