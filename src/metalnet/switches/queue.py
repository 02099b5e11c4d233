"""The switch work queue: one commit per switch for everything pending together.

A commit on a real switch costs seconds. Changes for the same switch that are
pending together are coalesced into one transaction; a later change to a port
supersedes an earlier pending one; each switch has its own worker thread and keeps
its session open, so switches are worked in parallel and pay the SSH handshake once.
Every change still gets its own outcome: bad values fail alone before anything is
sent, and when the switch refuses a batch the batch is split until the culprit is
found, so the good changes are applied anyway.

When a change is reported applied (the guarantee callers build isolation on):
each transaction is one provisional commit (`SwitchDriver.stage`, a Junos commit
confirmed) that the switch rolls back by itself unless confirmed. A change is
reported applied only after a plain confirming commit (`SwitchDriver.confirm`)
that follows it has succeeded, so a reported move is never rolled back: not a
terminate's move to the service VLAN, not a spawn's move to the project VLAN. The
lane confirms as soon as it has nothing else to commit, after `confirm_every`
provisional transactions in a row, or when a staged change already waited through
the previous confirmation; under load two transactions share one confirmation, and
no change waits longer than with a confirmation after every transaction. If the
session is lost while changes are provisional, the switch rolls them back; the lane
stages them again on a new session, with the batch at hand, before anyone is told
anything.

A queued change is conditional (`Precondition`): it carries the desired state it was
computed from, and the lane re-checks that (`recheck`) right before building the
device configuration, inside the switch's guard (held from a provisional transaction
to its confirmation). The transaction's first requests (the device's lock and reads,
`SwitchDriver.begin`) are sent before the re-check, so the switch answers them while
the database is asked. A change whose precondition no longer holds is dropped and
reported superseded: whoever changed the desired state since has queued its own
change, which reaches the device after this check.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field

from metalnet import metrics
from metalnet.retry import Retry
from metalnet.switches.base import (
    CommitRecord,
    CommitRefused,
    PortChange,
    SwitchDriver,
    SwitchError,
    SwitchSessionLost,
    SwitchUnreachable,
)
from metalnet.switches.drift import desired_text
from metalnet.validate import check_vlan

log = logging.getLogger(__name__)

# A lost session or an unreachable switch: retried on a new session (setting a VLAN
# is idempotent), a few times within seconds.
SESSION_RETRY = Retry(attempts=4, first=0.5, cap=4.0)
LOST = (SwitchSessionLost, SwitchUnreachable)


@dataclass(frozen=True)
class ChangeOutcome:
    """What became of one requested change."""

    switch: str
    change: PortChange
    ok: bool
    message: str = ""
    latency: float = 0.0
    batch_size: int = 0
    superseded: bool = False


@dataclass(frozen=True)
class Precondition:
    """What a queued change was computed from: the port's desired VLAN and enabled
    then, and whether the isolation guard must still allow the change (not for an
    override)."""

    desired: int | None
    guarded: bool = True
    enabled: bool = True


@dataclass
class _Request:
    change: PortChange
    future: Future[ChangeOutcome]
    precondition: Precondition | None = None
    submitted: float = field(default_factory=time.monotonic)
    batch: int = 0


Connect = Callable[[str], SwitchDriver]
Journal = Callable[[CommitRecord], None]
# (switch, [(change, precondition)]) -> interface -> why the change no longer holds
Recheck = Callable[[str, Sequence[tuple[PortChange, Precondition]]], dict[str, str]]


def _names_port(message: str, interface: str) -> bool:
    """Whether a switch's error message names this interface (ge-0/0/1 is not ge-0/0/10)."""
    return re.search(rf"(?<![\w/.:-]){re.escape(interface)}(?![\w/:-])", message) is not None


class _Lane:
    """The pending changes and the worker thread of one switch."""

    def __init__(self, queue: SwitchQueue, switch: str) -> None:
        self.queue = queue
        self.switch = switch
        self.pending: dict[str, list[_Request]] = {}
        self.unconfirmed: list[_Request] = []  # staged on the switch, not yet reported
        self.staged: list[tuple[tuple[PortChange, ...], float]] = []  # (changes, started)
        self.confirm_started = 0.0  # when the last confirmation began
        self.window = ExitStack()  # the switch's guard, while `holding`
        self.holding = False
        self.cond = threading.Condition()
        self.driver: SwitchDriver | None = None
        self.thread = threading.Thread(target=self._run, name=f"switch-{switch}", daemon=True)
        self.thread.start()

    def put(self, requests: Sequence[_Request]) -> None:
        """Queue requests together, so a burst is never split by the worker waking early."""
        with self.cond:
            for request in requests:
                self.pending.setdefault(request.change.interface, []).append(request)
            metrics.QUEUE_DEPTH.inc(len(requests))
            self.cond.notify()

    def _take(self) -> list[list[_Request]] | None:
        """Wait for work, then linger briefly so a burst arriving together commits together.

        Returns [] when nothing is pending but staged changes wait for confirmation,
        None when the queue is closed and nothing is left.
        """
        with self.cond:
            while not self.pending and not self.unconfirmed and not self.queue.closed:
                self.cond.wait()
            if not self.pending:
                return [] if self.unconfirmed else None
            first = min(r.submitted for requests in self.pending.values() for r in requests)
        # changes that gathered during a commit in flight have lingered long enough
        time.sleep(max(0.0, first + self.queue.gather - time.monotonic()))
        with self.cond:
            taken, self.pending = list(self.pending.values()), {}
        metrics.QUEUE_DEPTH.dec(sum(len(requests) for requests in taken))
        return taken

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            winners = [self._supersede(requests) for requests in taken]
            valid = [r for r in winners if self._validate(r)]
            if valid:
                self._commit(valid)
            with self.cond:
                idle = not self.pending
            if self.unconfirmed and (idle or self._confirm_due()):
                self._confirm()
            if not self.staged:
                self._let_go()
        self._let_go()
        if self.driver is not None:
            self.driver.close()

    def _hold(self) -> None:
        """Take the switch's guard unless this lane holds it already: it is held from a
        provisional transaction to its confirmation, so no other worker stages between
        them, and the switch's configuration lock is taken once for all of them."""
        if not self.holding:
            self.window.enter_context(self.queue.guard(self.switch))
            self.holding = True

    def _let_go(self) -> None:
        """Release the switch's guard once nothing staged waits for confirmation."""
        if self.holding:
            self.holding = False
            self.window.close()

    def _confirm_due(self) -> bool:
        """Confirm now rather than stage more: after `confirm_every` staged transactions,
        or when a staged change already waited through the previous confirmation (so no
        change waits longer than with a confirmation after every transaction)."""
        return len(self.staged) >= self.queue.confirm_every or any(
            r.submitted < self.confirm_started for r in self.unconfirmed
        )

    def _supersede(self, requests: list[_Request]) -> _Request:
        """The last request for a port wins whole (VLAN and enabled); the earlier ones
        are told so."""
        winner = requests[-1]
        self._superseded(requests[:-1], winner.change)
        return winner

    def _merge(self, older: Sequence[_Request], newer: Sequence[_Request]) -> list[_Request]:
        """Requests of both lists, one per port: a port's newer request wins, and the
        older one it replaces is told so (every request gets exactly one outcome)."""
        winners = {r.change.interface: r.change for r in newer}
        for request in older:
            if request.change.interface in winners:
                self._superseded([request], winners[request.change.interface])
        return [r for r in older if r.change.interface not in winners] + list(newer)

    def _superseded(self, losers: Sequence[_Request], winner: PortChange) -> None:
        now = time.monotonic()
        for loser in losers:
            loser.future.set_result(
                ChangeOutcome(
                    self.switch,
                    loser.change,
                    ok=True,
                    message=f"superseded by {desired_text(winner.vlan, winner.enabled)}",
                    latency=now - loser.submitted,
                    superseded=True,
                )
            )

    def _validate(self, request: _Request) -> bool:
        try:
            self.queue.driver_class(self.switch).check_interface(request.change.interface)
            check_vlan(request.change.vlan)
        except ValueError as exc:
            self._finish([request], ok=False, message=str(exc))
            return False
        return True

    def _session(self) -> SwitchDriver:
        if self.driver is None:
            self.driver = self.queue.connect(self.switch)
        return self.driver

    def _commit(self, requests: Sequence[_Request]) -> None:
        """Stage as one transaction; on refusal split the batch to isolate the culprit.

        A lost session or an unreachable switch is retried on a new session; what was
        staged and not yet confirmed is rolled back by the switch, so it joins the retry.
        """
        batch = list(requests)

        def attempt() -> None:
            nonlocal batch
            started = time.monotonic()
            changes: tuple[PortChange, ...] = ()
            try:
                self._hold()
                driver = self._session()
                driver.begin()  # the switch answers the lock and reads during the re-check
                batch = self._still_wanted(batch)
                changes = tuple(r.change for r in batch)
                if changes:
                    driver.stage(changes)
                else:
                    driver.end()
            except LOST as exc:
                self._drop_session()
                self._journal(changes, False, started, exc.reason)
                batch = self._rolled_back(batch)
                raise
            if changes:
                self.staged.append((changes, started))

        try:
            SESSION_RETRY.call(attempt, retry_on=LOST, what=f"switch {self.switch} transaction")
        except LOST as exc:
            self._finish(batch, ok=False, message=str(exc))
        except CommitRefused as exc:
            self._journal(tuple(r.change for r in batch), False, time.monotonic(), exc.reason)
            self._isolate(batch, exc)
        except SwitchError as exc:  # nothing of this batch applied; the session goes on
            self._journal(tuple(r.change for r in batch), False, time.monotonic(), exc.reason)
            self._finish(batch, ok=False, message=str(exc))
        except Exception as exc:  # a driver bug must not kill the lane and hang callers
            log.exception("switch %s: unexpected error on %d changes", self.switch, len(batch))
            self._drop_session()
            self._finish(
                self._rolled_back(batch), ok=False, message=f"switch {self.switch}: {exc!r}"
            )
        else:
            self._staged(batch)

    def _still_wanted(self, batch: Sequence[_Request]) -> list[_Request]:
        """The requests whose precondition still holds; the others are told they were
        superseded by a newer desired state. Called with the switch's guard held."""
        conditional = [(r.change, r.precondition) for r in batch if r.precondition is not None]
        if not conditional or self.queue.recheck is None:
            return list(batch)
        stale = self.queue.recheck(self.switch, conditional)
        now = time.monotonic()
        for r in batch:
            if r.precondition is not None and r.change.interface in stale:
                why = stale[r.change.interface]
                r.future.set_result(
                    ChangeOutcome(
                        self.switch,
                        r.change,
                        True,
                        f"superseded: {why}",
                        now - r.submitted,
                        superseded=True,
                    )
                )
        return [r for r in batch if r.precondition is None or r.change.interface not in stale]

    def _staged(self, batch: Sequence[_Request]) -> None:
        """The batch is on the switch, provisionally; earlier staged moves of its ports
        were replaced by it."""
        for request in batch:
            request.batch = len(batch)
        self.unconfirmed = self._merge(self.unconfirmed, batch)

    def _rolled_back(self, batch: Sequence[_Request]) -> list[_Request]:
        """The session is gone: the switch rolls back what was staged; stage it again."""
        for changes, started in self.staged:
            self._journal(changes, False, started, "rolled back: session lost before confirming")
        again, self.unconfirmed, self.staged = self.unconfirmed, [], []
        return self._merge(again, batch)

    def _confirm(self) -> None:
        """Make staged changes permanent, then report them applied."""
        started = self.confirm_started = time.monotonic()
        try:
            if self.driver is None:
                raise SwitchSessionLost(self.switch, "session lost before the confirmation")
            self._hold()
            self.driver.confirm()
        except LOST:
            self._drop_session()
            self._commit(self._rolled_back([]))
            return
        except SwitchError as exc:  # the session ends: the switch rolls the staged back
            self._not_confirmed(exc.reason, str(exc))
            return
        except Exception as exc:  # a driver bug must not kill the lane and hang callers
            log.exception("switch %s: unexpected error confirming", self.switch)
            self._not_confirmed(repr(exc), f"switch {self.switch}: {exc!r}")
            return
        log.info("switch %s confirmed (%.2fs)", self.switch, time.monotonic() - started)
        for changes, staged_at in self.staged:
            self._journal(changes, True, staged_at, "")
        confirmed, self.unconfirmed, self.staged = self.unconfirmed, [], []
        self._finish(confirmed, ok=True, message="")

    def _not_confirmed(self, reason: str, message: str) -> None:
        """End the session (the switch rolls back what it staged) and fail those changes."""
        self._drop_session()
        for changes, staged_at in self.staged:
            self._journal(changes, False, staged_at, f"not confirmed: {reason}")
        failed, self.unconfirmed, self.staged = self.unconfirmed, [], []
        self._finish(failed, ok=False, message=message)

    def _isolate(self, requests: Sequence[_Request], exc: CommitRefused) -> None:
        """Fail the ports the refusal names (in its ports or the switch's message) and
        retry the rest; else bisect."""
        if len(requests) == 1:
            self._finish(requests, ok=False, message=str(exc))
            return
        named = [
            r
            for r in requests
            if r.change.interface in exc.ports or _names_port(exc.reason, r.change.interface)
        ]
        if 0 < len(named) < len(requests):
            self._finish(named, ok=False, message=str(exc))
            self._commit([r for r in requests if r not in named])
            return
        half = len(requests) // 2
        self._commit(requests[:half])
        self._commit(requests[half:])

    def _drop_session(self) -> None:
        if self.driver is not None:
            try:
                self.driver.close()
            finally:
                self.driver = None

    def _journal(
        self, changes: tuple[PortChange, ...], ok: bool, started: float, message: str
    ) -> None:
        record = CommitRecord(self.switch, changes, ok, time.monotonic() - started, message)
        log.info(
            "switch %s commit %s: %s (%.2fs)%s",
            self.switch,
            "ok" if ok else "FAILED",
            ", ".join(map(str, changes)),
            record.seconds,
            f": {message}" if message else "",
        )
        self.queue.commits += 1
        if self.queue.journal is not None:
            try:
                self.queue.journal(record)
            except Exception:
                log.exception("switch %s: could not write the change log", self.switch)

    def _finish(self, requests: Sequence[_Request], *, ok: bool, message: str) -> None:
        now = time.monotonic()
        for r in requests:
            outcome = ChangeOutcome(
                self.switch, r.change, ok, message, now - r.submitted, r.batch or len(requests)
            )
            r.future.set_result(outcome)


class SwitchQueue:
    """Submit port changes; get one Future[ChangeOutcome] per change.

    `connect(switch)` opens a driver session to the named switch; `driver_class(switch)`
    returns its driver class (for validation before anything is sent); `journal` gets
    one record per transaction attempt: ok once confirmed, failed when refused or rolled
    back. `gather` is how long a lane waits after the
    first change of a burst before committing: milliseconds against commits of seconds.
    `confirm_every` bounds how many provisional transactions a busy lane stages before
    it confirms them (the module docstring says when a change counts as applied).
    `guard(switch)` is held from a transaction to its confirmation; several workers
    sharing a database pass one that makes a switch be worked by one worker at a time.
    `recheck` is asked, with the guard held, which changes' preconditions no longer hold.
    """

    def __init__(
        self,
        connect: Connect,
        driver_class: Callable[[str], type[SwitchDriver]],
        journal: Journal | None = None,
        gather: float = 0.02,
        confirm_every: int = 2,
        guard: Callable[[str], AbstractContextManager[object]] = lambda _switch: nullcontext(),
        recheck: Recheck | None = None,
    ) -> None:
        self.connect = connect
        self.recheck = recheck
        self.gather = gather
        self.confirm_every = confirm_every
        self.guard = guard
        self.driver_class = driver_class
        self.journal = journal
        self.closed = False
        self.commits = 0
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()

    def submit(
        self, switch: str, change: PortChange, precondition: Precondition | None = None
    ) -> Future[ChangeOutcome]:
        """Queue one change; it is coalesced with whatever else is pending for `switch`."""
        return self.submit_many(switch, [change], [precondition])[0]

    def submit_many(
        self,
        switch: str,
        changes: Sequence[PortChange],
        preconditions: Sequence[Precondition | None] | None = None,
    ) -> list[Future[ChangeOutcome]]:
        """Queue several changes for one switch at once; one future per change."""
        conditions = preconditions or [None] * len(changes)
        requests = [
            _Request(change, Future(), precondition)
            for change, precondition in zip(changes, conditions, strict=True)
        ]
        with self._lock:
            if self.closed:
                raise RuntimeError("switch queue is closed")
            lane = self._lanes.get(switch)
            if lane is None:
                lane = self._lanes[switch] = _Lane(self, switch)
        lane.put(requests)
        return [r.future for r in requests]

    def apply(
        self, switch: str, changes: Sequence[PortChange], timeout: float | None = None
    ) -> list[ChangeOutcome]:
        """Submit several changes and wait for all their outcomes."""
        return [f.result(timeout) for f in self.submit_many(switch, changes)]

    def close(self) -> None:
        """Finish what is pending, then stop the workers and close the sessions."""
        with self._lock:
            self.closed = True
            lanes = list(self._lanes.values())
        for lane in lanes:
            with lane.cond:
                lane.cond.notify_all()
        for lane in lanes:
            lane.thread.join()

    def __enter__(self) -> SwitchQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
