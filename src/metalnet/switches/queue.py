"""The switch work queue: one commit per switch for everything pending together.

A commit on a real switch costs seconds. Changes for the same switch that are
pending together are coalesced into one transaction; a later change to a port
supersedes an earlier pending one; each switch has its own worker thread and keeps
its session open, so switches are worked in parallel and pay the SSH handshake once.
Every change still gets its own outcome: bad values fail alone before anything is
sent, and when the switch refuses a batch the batch is split until the culprit is
found, so the good changes are applied anyway.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from metalnet import metrics
from metalnet.switches.base import (
    CommitRefused,
    PortChange,
    SwitchDriver,
    SwitchError,
    SwitchSessionLost,
    SwitchUnreachable,
)
from metalnet.validate import check_vlan

log = logging.getLogger(__name__)

SESSION_ATTEMPTS = 4
RETRY_BACKOFF = 0.5


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
class CommitRecord:
    """One transaction attempt, for the switch change log."""

    switch: str
    changes: tuple[PortChange, ...]
    ok: bool
    seconds: float
    message: str


@dataclass
class _Request:
    change: PortChange
    future: Future[ChangeOutcome]
    submitted: float = field(default_factory=time.monotonic)


Connect = Callable[[str], SwitchDriver]
Journal = Callable[[CommitRecord], None]


def _names_port(message: str, interface: str) -> bool:
    """Whether a switch's error message names this interface (ge-0/0/1 is not ge-0/0/10)."""
    return re.search(rf"(?<![\w/.:-]){re.escape(interface)}(?![\w/:-])", message) is not None


class _Lane:
    """The pending changes and the worker thread of one switch."""

    def __init__(self, queue: SwitchQueue, switch: str) -> None:
        self.queue = queue
        self.switch = switch
        self.pending: dict[str, list[_Request]] = {}
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
        """Wait for work, then linger briefly so a burst arriving together commits together."""
        with self.cond:
            while not self.pending and not self.queue.closed:
                self.cond.wait()
            if not self.pending:
                return None
        time.sleep(self.queue.gather)
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
        if self.driver is not None:
            self.driver.close()

    def _supersede(self, requests: list[_Request]) -> _Request:
        """The last request for a port wins; the earlier ones are told so."""
        winner = requests[-1]
        for loser in requests[:-1]:
            loser.future.set_result(
                ChangeOutcome(
                    self.switch,
                    loser.change,
                    ok=True,
                    message=f"superseded by VLAN {winner.change.vlan}",
                    latency=time.monotonic() - loser.submitted,
                    superseded=True,
                )
            )
        return winner

    def _validate(self, request: _Request) -> bool:
        try:
            self.queue.driver_class(self.switch).check_interface(request.change.interface)
            check_vlan(request.change.vlan)
        except ValueError as exc:
            self._finish([request], ok=False, message=str(exc), batch=1)
            return False
        return True

    def _session(self) -> SwitchDriver:
        if self.driver is None:
            self.driver = self.queue.connect(self.switch)
        return self.driver

    def _commit(self, requests: Sequence[_Request]) -> None:
        """Apply as one transaction; on refusal split the batch to isolate the culprit.

        A lost session or an unreachable switch is retried a few times on a new session:
        setting a port's VLAN is idempotent, and a commit confirmed whose confirmation
        was lost is settled by the retry instead of rolling back behind our back.
        """
        changes = tuple(r.change for r in requests)
        for attempt in range(1, SESSION_ATTEMPTS + 1):
            started = time.monotonic()
            try:
                with self.queue.guard(self.switch):
                    self._session().apply(changes)
            except (SwitchSessionLost, SwitchUnreachable) as exc:
                self._drop_session()
                self._journal(changes, False, started, exc.reason)
                if attempt < SESSION_ATTEMPTS:
                    time.sleep(RETRY_BACKOFF * 2 ** (attempt - 1))
                    continue
                self._finish(requests, ok=False, message=str(exc), batch=len(requests))
            except CommitRefused as exc:
                self._journal(changes, False, started, exc.reason)
                self._isolate(requests, exc)
            except SwitchError as exc:
                self._drop_session()
                self._journal(changes, False, started, exc.reason)
                self._finish(requests, ok=False, message=str(exc), batch=len(requests))
            except Exception as exc:  # a driver bug must not kill the lane and hang callers
                log.exception(
                    "switch %s: unexpected error applying %d changes", self.switch, len(changes)
                )
                self._drop_session()
                self._journal(changes, False, started, repr(exc))
                self._finish(
                    requests,
                    ok=False,
                    message=f"switch {self.switch}: {exc!r}",
                    batch=len(requests),
                )
            else:
                self._finish(requests, ok=True, message="", batch=len(requests))
                self._journal(changes, True, started, "")
            return

    def _isolate(self, requests: Sequence[_Request], exc: CommitRefused) -> None:
        """Fail the ports the switch's message names and retry the rest; else bisect."""
        if len(requests) == 1:
            self._finish(requests, ok=False, message=str(exc), batch=1)
            return
        named = [r for r in requests if _names_port(exc.reason, r.change.interface)]
        if 0 < len(named) < len(requests):
            self._finish(named, ok=False, message=str(exc), batch=len(requests))
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
            ", ".join(f"{c.interface}->{c.vlan}" for c in changes),
            record.seconds,
            f": {message}" if message else "",
        )
        self.queue.commits += 1
        if self.queue.journal is not None:
            try:
                self.queue.journal(record)
            except Exception:
                log.exception("switch %s: could not write the change log", self.switch)

    def _finish(self, requests: Sequence[_Request], *, ok: bool, message: str, batch: int) -> None:
        now = time.monotonic()
        for r in requests:
            outcome = ChangeOutcome(self.switch, r.change, ok, message, now - r.submitted, batch)
            r.future.set_result(outcome)


class SwitchQueue:
    """Submit port changes; get one Future[ChangeOutcome] per change.

    `connect(switch)` opens a driver session to the named switch; `driver_class(switch)`
    returns its driver class (for validation before anything is sent); `journal` is
    called once per transaction attempt. `gather` is how long a lane waits after the
    first change of a burst before committing: milliseconds against commits of seconds.
    `guard(switch)` is held around every transaction; several workers sharing a database
    pass one that makes a switch be worked by one worker at a time.
    """

    def __init__(
        self,
        connect: Connect,
        driver_class: Callable[[str], type[SwitchDriver]],
        journal: Journal | None = None,
        gather: float = 0.02,
        guard: Callable[[str], AbstractContextManager[object]] = lambda _switch: nullcontext(),
    ) -> None:
        self.connect = connect
        self.gather = gather
        self.guard = guard
        self.driver_class = driver_class
        self.journal = journal
        self.closed = False
        self.commits = 0
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()

    def submit(self, switch: str, change: PortChange) -> Future[ChangeOutcome]:
        """Queue one change; it is coalesced with whatever else is pending for `switch`."""
        return self.submit_many(switch, [change])[0]

    def submit_many(
        self, switch: str, changes: Sequence[PortChange]
    ) -> list[Future[ChangeOutcome]]:
        """Queue several changes for one switch at once; one future per change."""
        requests = [_Request(change, Future()) for change in changes]
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
