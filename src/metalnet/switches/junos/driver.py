"""The Junos driver: one transaction per batch of port changes, over a NETCONF session.

A transaction (`stage`): lock the shared candidate; refuse if it holds changes we
did not make; read which VLANs and ports exist; load the rendered text; commit
confirmed; read the ports back from the committed configuration. Requests that do
not depend on each other's replies are sent together and their replies read in
order (NETCONF pipelining, RFC 6241 section 4.5): the lock, the check and the reads
go in one round trip, the commit and its read-back in another, and the unlock is
not waited for, so a transaction costs four round trips besides the commit itself
(a lost or refused lock simply discards the replies that followed it). The first
round trip can be sent ahead (`begin`), before the caller knows the ports; `stage`
then takes its replies (and lists the interfaces again only if a port is new). The
commit stays pending, so a session lost from here on leaves the switch to roll it
back by itself, until `confirm` (a plain commit) makes it permanent; the lock is
held until then, so transactions staged in a row and their confirmation lock once,
and no other session's commit confirms ours unseen. Any failure
before the commit discards the candidate, so the switch is never left locked or
half-changed.

Why not a private candidate (`<open-configuration><private/>`)? It would keep an
operator's edits out of our commit, but Junos does not allow a confirmed commit of
a private copy (Junos XML Management Protocol Guide, "Committing the Candidate
Configuration Only After Confirmation": "You cannot perform this commit operation
on a private copy"), and the confirmed commit is our safety net. Instead the lock
is exclusive and a modified shared candidate is refused with a clear message.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from lxml import etree

from metalnet.retry import Retry
from metalnet.switches.base import (
    CandidateModified,
    CommitRecord,
    CommitRefused,
    PortChange,
    PortState,
    SwitchDriver,
    SwitchError,
    SwitchLocked,
    SwitchSessionLost,
    SwitchTarget,
)
from metalnet.switches.drift import in_sync
from metalnet.switches.junos import parse
from metalnet.switches.junos.config import (
    AccessPort,
    Dialect,
    VlanDefinition,
    canonical_vlan_name,
    check_junos_interface,
    member_for,
    render,
)
from metalnet.switches.netconf import HostKeyCheck, NetconfSession, Pending, Reply
from metalnet.validate import check_vlan

T = TypeVar("T")

LOCKED = "configuration database locked"
MODIFIED = "configuration database modified"


@dataclass(frozen=True)
class _Reads:
    """What a transaction reads before it loads, asked for in one round trip."""

    candidate: Pending  # the candidate as written
    interfaces: Pending | None  # only when a port was not seen on this session
    software: Pending | None  # only until the dialect is known


@dataclass(frozen=True)
class _Asked:
    """A transaction's first round trip, on the wire: the lock, the candidate check and
    the reads."""

    lock: Pending
    diff: Pending
    reads: _Reads


class JunosDriver(SwitchDriver):
    """A NETCONF session to one Junos EX/QFX switch, kept open across calls."""

    name: ClassVar[str] = "junos"

    def __init__(
        self,
        target: SwitchTarget,
        *,
        timeout: float = 60.0,
        commit_timeout: float = 600.0,
        lock_wait: float = 60.0,
        confirm_minutes: int = 5,
        dialect: Dialect | None = None,
        host_key: HostKeyCheck | None = None,
    ) -> None:
        """`timeout` bounds connecting and ordinary RPCs; commits may take up to
        `commit_timeout` (real switches take minutes); a held lock is retried for
        `lock_wait` seconds; `confirm_minutes` 0 commits once, without confirmation;
        `dialect` None learns it from the switch's model."""
        super().__init__(target, timeout=timeout)
        self.commit_timeout = commit_timeout
        self.lock_wait = lock_wait
        self.confirm_minutes = confirm_minutes
        self._dialect = dialect
        self.session = NetconfSession(
            target, timeout=timeout, device_params={"name": "junos"}, host_key=host_key
        )
        self.pending = False
        self.locked = False  # the configuration lock, held from `stage` to `confirm`
        self._present: set[str] = set()  # physical interfaces seen on this session
        self._begun: _Asked | None = None  # lock and reads sent by `begin`, unanswered

    @classmethod
    def check_interface(cls, interface: str) -> str:
        return check_junos_interface(interface)

    # ------------------------------------------------------------------ session

    def open(self) -> None:
        self.pending = self.locked = False
        self._present = set()
        self._begun = None
        self.session.connect()

    def close(self) -> None:
        self.session.close()

    def _first(self, request: Callable[[], T]) -> T:
        """Run the first request of a call, reconnecting once if the session had died."""
        if not self.session.connected:
            self.open()
        try:
            return request()
        except SwitchSessionLost:
            self.open()
            return request()

    def _rpc(self, op: etree._Element, ports: Sequence[str] = (), **kw: object) -> Reply:
        return self.session.rpc(op, ports, **kw)  # type: ignore[arg-type]

    @property
    def dialect(self) -> Dialect:
        """The switch's Layer 2 dialect, learned once from its model."""
        if self._dialect is None:
            self._dialect = self._software().dialect
        return self._dialect

    # ------------------------------------------------------------------ apply

    def stage(self, changes: Sequence[PortChange]) -> CommitRecord:
        batch = self._validated(changes)
        name = self.target.name
        if not batch:
            return CommitRecord(name, (), True, 0.0, "nothing to change")
        ports = [c.interface for c in batch]
        started = time.monotonic()
        # with the lock held a commit may be pending: its session is never replaced unseen
        fresh = None if self.locked else self._first(lambda: self._lock_read(ports, self._take()))
        try:
            text = self._prepare(batch, fresh or self._read(ports))
            self.session.call(
                lambda m: m.load_configuration(format="text", action="replace", config=text),
                "load-configuration",
                ports,
                refused=CommitRefused,
            )
            commit = self._send_commit(ports, confirmed=bool(self.confirm_minutes))
            readback = self.session.send_rpc(self._configuration_op("committed"), ports)
            self._committed(commit, ports)
            self.pending = bool(self.confirm_minutes)
            self._verify(batch, readback)
        except SwitchSessionLost:
            self._lost()
            raise
        except BaseException:
            self._cleanup(lambda m: m.discard_changes())
            self._unlock()
            raise
        if not self.pending:
            self._unlock()
        seconds = time.monotonic() - started
        return CommitRecord(name, batch, True, seconds, f"committed {len(batch)} port change(s)")

    def begin(self) -> None:
        """Send the lock, the candidate check and the reads now (see `SwitchDriver`); a
        lost session is left for `stage`, which opens a new one."""
        if self.locked or self._begun is not None:
            return
        try:
            if not self.session.connected:
                self.open()
            self._begun = self._ask(())
        except SwitchSessionLost:
            self._lost()

    def end(self) -> None:
        """Release the lock `begin` asked for, if no `stage` took it."""
        if self._take() is not None:
            self._unlock()

    def _take(self) -> _Asked | None:
        begun, self._begun = self._begun, None
        return begun

    def confirm(self) -> None:
        """Confirm our pending confirmed commit with a plain commit, then unlock.

        The lock is kept from a confirmed commit to its confirmation: nobody else's
        commit can confirm ours meanwhile, and the confirmation and the transactions
        staged before it take the lock once.
        """
        if not self.pending:
            return
        if not self.session.connected:
            self._lost()
            raise SwitchSessionLost(self.target.name, "session lost before the confirmation")
        try:
            if not self.locked:
                self._lock(())
                self.locked = True
            try:
                self._committed(self._send_commit((), confirmed=False), ())
            finally:
                self._unlock()
        except SwitchSessionLost:
            self._lost()
            raise
        self.pending = False

    def _lost(self) -> None:
        """The switch discards our candidate, releases the lock, rolls back what is pending."""
        self.session.forget()
        self.pending = self.locked = False
        self._begun = None

    def _validated(self, changes: Sequence[PortChange]) -> tuple[PortChange, ...]:
        """Check every value before anything is sent; one interface, one state."""
        wanted: dict[str, PortChange] = {}
        for change in changes:
            check_junos_interface(change.interface)
            check_vlan(change.vlan)
            if wanted.setdefault(change.interface, change) != change:
                raise ValueError(
                    f"interface {change.interface} is given two states in one batch "
                    f"({wanted[change.interface]} and {change})"
                )
        return tuple(wanted.values())

    def _ask(self, ports: Sequence[str]) -> _Asked:
        """Send the lock, the candidate check and the reads, in one round trip."""
        lock = self._send_lock(ports)
        return _Asked(lock, self._send_compare(ports), self._read(ports))

    def _lock_read(self, ports: Sequence[str], asked: _Asked | None) -> _Reads:
        """Lock, check the candidate holds nothing of others, and read (`asked`: sent
        already by `begin`); if the lock is held elsewhere, back off, then ask again."""
        asked = asked or self._ask(ports)
        lock, diff, reads = asked.lock, asked.diff, asked.reads
        if not self._lock(ports, sent=lock):  # what followed the refused lock is void
            diff, reads = self._send_compare(ports), self._read(ports)
        self.locked = True
        try:
            self._refuse_foreign_changes(diff, ports)
        except BaseException:
            self._unlock()  # their edit stays theirs
            raise
        return reads

    def _read(self, ports: Sequence[str]) -> _Reads:
        """Ask for what `_prepare` needs, without waiting for the replies."""
        interfaces = None
        if not self._present or not set(ports) <= self._present:
            interfaces = self._send_listing(ports)
        software = None
        if self._dialect is None:
            software = self.session.send_rpc(etree.Element("get-software-information"))
        candidate = self._configuration_op("candidate", inherit=False)
        return _Reads(self.session.send_rpc(candidate, ports), interfaces, software)

    def _send_listing(self, ports: Sequence[str]) -> Pending:
        op = etree.Element("get-interface-information")
        etree.SubElement(op, "terse")
        return self.session.send_rpc(op, ports)

    def _lock(self, ports: Sequence[str], sent: Pending | None = None) -> bool:
        """Take the configuration lock, backing off while another session holds it;
        `sent`, a lock request already on its way, is the first try and counts in the
        budget. Returns whether that first try took it."""
        tries = 0

        def once() -> None:
            nonlocal tries
            tries += 1
            first = sent if tries == 1 else None
            self._locked(first or self._send_lock(ports), ports)

        Retry(seconds=self.lock_wait, first=0.1, cap=5.0).call(
            once, retry_on=(SwitchLocked,), what=f"lock of switch {self.target.name}"
        )
        return sent is not None and tries == 1

    def _send_lock(self, ports: Sequence[str]) -> Pending:
        return self.session.send_rpc(etree.Element("lock-configuration"), ports)

    def _locked(self, lock: Pending, ports: Sequence[str]) -> None:
        """The lock's reply: taken, or why not (held elsewhere, candidate modified)."""
        try:
            lock.result()
        except SwitchSessionLost:
            raise
        except SwitchError as exc:
            if LOCKED in exc.reason:
                raise SwitchLocked(self.target.name, exc.reason, ports) from exc
            if MODIFIED in exc.reason:
                raise self._modified(ports) from exc
            raise

    def _modified(self, ports: Sequence[str]) -> CandidateModified:
        return CandidateModified(
            self.target.name,
            "configuration database modified: the shared candidate holds uncommitted "
            "changes someone else made; metalnet will not commit them (commit or "
            "discard them on the switch)",
            ports,
        )

    def _send_compare(self, ports: Sequence[str]) -> Pending:
        return self.session.send(lambda m: m.compare_configuration(rollback=0), "compare", ports)

    def _refuse_foreign_changes(self, diff: Pending, ports: Sequence[str]) -> None:
        """Junos refuses the lock while the shared candidate holds uncommitted changes;
        checking the difference to the committed configuration as well keeps the rule
        where a device (or an older release) grants the lock anyway."""
        if (parse.plain(diff.result().root).findtext(".//configuration-output") or "").strip():
            raise self._modified(ports)

    def _prepare(self, batch: Sequence[PortChange], reads: _Reads) -> str:
        """Check the switch can take the batch as we mean it; return the text to load.

        The interface listing is asked for again only when a port is not among those
        seen on this session, so a port is never refused on a stale listing and a busy
        session does not list every interface for every transaction."""
        ports = [c.interface for c in batch]
        config = parse.configuration(reads.candidate.result().root)
        if reads.software is not None:
            self._dialect = _software(self.target.name, reads.software.result()).dialect
        listing = reads.interfaces
        if listing is None and not set(ports) <= self._present:  # read before the ports were known
            listing = self._send_listing(ports)
        if listing is not None:
            self._present = parse.physical_interfaces(listing.result().root)
        governed = parse.governed_ports(config, ports)
        if governed:
            where = "; ".join(f"{p} from {src}" for p, src in sorted(governed.items()))
            raise CommitRefused(
                self.target.name,
                f"ports take their configuration from elsewhere ({where}); metalnet "
                "manages only ports configured directly",
                sorted(governed),
            )
        missing = [p for p in ports if p not in self._present]
        if missing:
            raise CommitRefused(self.target.name, "no such interface on the switch", missing)
        names = parse.vlan_names(config)
        defined = self._definitions({c.vlan for c in batch} - set(names), config, names)
        native = parse.interfaces_with_native_vlan(config)
        disabled = parse.disabled_levels(config)
        ports_text = [
            AccessPort(
                c.interface,
                member_for(c.vlan, names),
                drop_native=c.interface in native,
                enabled=c.enabled,
                enable_at=disabled.get(c.interface, frozenset()),
            )
            for c in batch
        ]
        return render(ports_text, defined, self.dialect)

    @staticmethod
    def _definitions(
        missing: set[int], config: etree._Element | None, names: dict[int, str]
    ) -> list[VlanDefinition]:
        """A definition for each VLAN the switch lacks, never renumbering a taken name.

        A name like `vlan100` may already exist with another id (defined by hand);
        redefining it would move every port of that VLAN, so another name is chosen.
        """
        out = []
        for vlan in sorted(missing):
            name, n = canonical_vlan_name(vlan), 1
            while parse.vlan_name_taken(config, name) not in (None, vlan):
                n += 1
                name = f"{canonical_vlan_name(vlan)}-{n}"
            names[vlan] = name
            out.append(VlanDefinition(name, vlan))
        return out

    def _send_commit(self, ports: Sequence[str], *, confirmed: bool) -> Pending:
        minutes = self.confirm_minutes if confirmed else 0
        return self.session.send(
            lambda m: m.commit(confirmed=bool(minutes), timeout=minutes * 60 or None),
            "commit-configuration",
            ports,
            refused=CommitRefused,
            timeout=self.commit_timeout,
        )

    def _committed(self, commit: Pending, ports: Sequence[str]) -> None:
        """A commit's reply: success is `<commit-success/>`, warnings are logged by the
        session."""
        if not parse.commit_succeeded(commit.result().root):
            raise CommitRefused(self.target.name, "commit did not report commit-success", ports)

    def _verify(self, batch: Sequence[PortChange], readback: Pending) -> None:
        """The committed configuration must hold each port exactly as asked (its VLAN,
        and enabled or disabled), judged by the one drift rule.

        If it does not, the session is ended: the switch then rolls back what this
        session committed unconfirmed (Junos does so when such a session ends, and at
        the latest when the confirm timer runs out), so a failure means not applied.
        """
        ports = [c.interface for c in batch]
        states = parse.port_states(parse.configuration(readback.result().root), ports)
        wrong = [
            c.interface for c in batch if not in_sync(c.vlan, states.get(c.interface), c.enabled)
        ]
        if wrong:
            self.session.close()
            raise SwitchSessionLost(
                self.target.name,
                "committed but reads back otherwise; session ended so the switch rolls back",
                wrong,
            )

    def _unlock(self) -> None:
        """Release the lock without waiting for the reply: the switch handles requests
        in order, so whatever this session sends next finds it released; if the
        session is gone, the switch released it already."""
        self.locked = False
        if self.session.connected:
            with contextlib.suppress(SwitchError):
                self.session.send_rpc(etree.Element("unlock-configuration"))

    def _cleanup(self, request: Callable[..., object]) -> None:
        """Best effort: if the session is gone, the switch already discarded and unlocked."""
        if not self.session.connected:
            return
        try:
            self.session.call(request, "cleanup")
        except SwitchSessionLost:
            self._lost()
        except SwitchError:
            pass

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _configuration_op(database: str, *, inherit: bool = True) -> etree._Element:
        """Ask for the interfaces and VLANs of `database`: as the switch applies them
        (groups and ranges inherited, their statements tagged with where they come
        from), or as written (`inherit` False: the whole of it, to find what governs a
        port).

        ncclient's Junos `GetConfiguration` has no `database` or `inherit` attribute,
        so the element is built here.
        """
        attributes = {"database": database, "format": "xml"}
        if inherit:
            attributes |= {
                "inherit": "inherit",
                "groups": "groups",
                "interface-ranges": "interface-ranges",
            }
        op = etree.Element("get-configuration", attributes)
        if inherit:  # as written: all of it, since groups may apply anywhere
            config = etree.SubElement(op, "configuration")
            etree.SubElement(config, "interfaces")
            etree.SubElement(config, "vlans")
        return op

    def _software(self) -> parse.Software:
        op = etree.Element("get-software-information")
        return _software(self.target.name, self._first(lambda: self._rpc(op)))

    def read_ports(self, interfaces: Sequence[str] | None = None) -> dict[str, PortState]:
        names = [check_junos_interface(i) for i in interfaces] if interfaces is not None else None
        reply = self._first(lambda: self._rpc(self._configuration_op("committed"), names or ()))
        return parse.port_states(parse.configuration(reply.root), names)

    def facts(self) -> dict[str, str]:
        info = self._software()
        return {"model": info.model, "version": info.version, "hostname": info.hostname}


def _software(switch: str, reply: Reply) -> parse.Software:
    info = parse.software(reply.root)
    if info is None:
        raise SwitchError(switch, "get-software-information returned no information")
    return info
