"""Port attachments: switch ports owned by a system outside metalnet (Neutron's ML2 driver).

`PUT /v1/attachments` records the owner's attachment of a port in a VLAN and answers
only once the switch committed the change and the port was read back from the device
in that VLAN (bounded by `switch_timeout`); a failure answers with the switch's own
words. `DELETE /v1/attachments` ends it and parks the port. Both go through the
switch service: the isolation guard decides, and the per-switch queue coalesces a
burst of attachments into about one commit per switch. Admin tokens only: an owner
outside metalnet moves ports of any tenant.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
from sqlalchemy import select

from metalnet import audit
from metalnet.api.auth import Caller, Db
from metalnet.api.errors import ERROR_RESPONSES
from metalnet.api.routing import Route, database_read
from metalnet.db.engine import Database
from metalnet.db.models import PortAttachment, Switch, SwitchPort
from metalnet.errors import InputError, MetalnetError, NotFound
from metalnet.service.models import Body, Text
from metalnet.switches.base import PortState, SwitchError
from metalnet.switches.queue import ChangeOutcome
from metalnet.switches.service import SwitchService
from metalnet.validate import normalize_mac

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES, route_class=Route)
Owner = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:-]+$")]


class SwitchFailed(MetalnetError):
    """The switch did not take the change, or did not read back what was committed."""

    code = "switch_failed"


class SwitchTimeout(MetalnetError):
    """No outcome within the bound; the change stays queued and reconcile keeps it."""

    code = "switch_timeout"


class AttachmentIn(Body):
    switch: Text
    port: Text
    vlan: int
    owner: Owner


class DetachIn(Body):
    switch: Text
    port: Text
    owner: Owner


class ReadBack:
    """Reads ports back after their commit, one device read serving every waiter.

    A waiter needs a read that started after its commit ended. Waiters of one switch
    queue on a lock; whoever gets it reuses the last read if it is fresh enough, else
    reads the whole switch once, so a burst of 40 confirmations costs one or two reads.
    """

    def __init__(self, service: SwitchService) -> None:
        self.service = service
        self._locks: dict[str, threading.Lock] = {}
        self._last: dict[str, tuple[float, dict[str, PortState]]] = {}
        self._guard = threading.Lock()

    def port(self, switch: str, interface: str, committed_at: float) -> PortState | None:
        with self._guard:
            lock = self._locks.setdefault(switch, threading.Lock())
        with lock:
            started, ports = self._last.get(switch, (0.0, {}))
            if started < committed_at:
                started = time.monotonic()
                ports = self.service.read_ports(switch)
                self._last[switch] = (started, ports)
            return ports.get(interface)


def _service(request: Request) -> tuple[SwitchService, ReadBack]:
    """The controller's switch service, so attachments share its queue with the lifecycle."""
    state = request.app.state
    service: SwitchService | None = getattr(state, "switching", None)
    if service is None:
        raise MetalnetError("this server has no switch service (run `metalnet serve`)")
    if getattr(state, "read_back", None) is None:
        state.read_back = ReadBack(service)
    return service, state.read_back


async def _settle(
    db: Database,
    actor: str,
    action: str,
    target: str,
    submit: Callable[[], Future[ChangeOutcome]],
    reader: ReadBack,
) -> ChangeOutcome:
    """Submit the change, wait for the switch, read the port back; audit how it ended.

    The wait holds no thread: the API runs endpoints on a few threads, and a burst of
    bindings shares one commit only if all of it is pending at once.
    """
    try:
        future = await run_in_threadpool(submit)
        outcome = await _confirm(reader, future, db.settings.switch_timeout)
    except Exception as exc:
        await run_in_threadpool(audit.record, db, actor, action, target, False, str(exc))
        raise
    await run_in_threadpool(audit.record, db, actor, action, target, True)
    return outcome


async def _confirm(
    reader: ReadBack, future: Future[ChangeOutcome], timeout: float
) -> ChangeOutcome:
    """Wait for the commit, then prove it by reading the port back from the device."""
    try:
        # shield: a timeout here must not cancel the queue's future under its lane
        outcome = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
    except TimeoutError as exc:
        raise SwitchTimeout(
            f"no answer from the switch within {timeout:.0f}s; the change stays queued"
        ) from exc
    if not outcome.ok:
        raise SwitchFailed(outcome.message)
    iface, vlan = outcome.change.interface, outcome.change.vlan
    try:
        state = await run_in_threadpool(reader.port, outcome.switch, iface, time.monotonic())
    except SwitchError as exc:
        raise SwitchFailed(f"committed, but reading the port back failed: {exc}") from exc
    if state is None or state.vlan != vlan:
        seen = "nothing" if state is None else f"VLAN {state.vlan}"
        raise SwitchFailed(
            f"switch {outcome.switch} port {iface}: committed VLAN {vlan} but reads back {seen}"
        )
    return outcome


@router.put("/attachments")
async def attach(body: AttachmentIn, request: Request, db: Db, who: Caller) -> dict:
    """Attach (or move) a port for `owner`; answers once committed and read back."""
    who.require_admin()
    service, reader = _service(request)
    target = f"{body.switch} {body.port} vlan {body.vlan} owner {body.owner}"
    started = time.monotonic()
    outcome = await _settle(
        db,
        who.actor,
        "attachment put",
        target,
        lambda: service.attach(body.switch, body.port, body.vlan, body.owner),
        reader,
    )
    return {
        "switch": body.switch,
        "port": body.port,
        "vlan": body.vlan,
        "owner": body.owner,
        "committed": True,
        "read_back": True,
        "batch_size": outcome.batch_size,
        "seconds": round(time.monotonic() - started, 3),
    }


@router.delete("/attachments")
async def detach(body: DetachIn, request: Request, db: Db, who: Caller) -> dict:
    """End `owner`'s attachment; the port goes back to parking, committed and read back."""
    who.require_admin()
    service, reader = _service(request)
    target = f"{body.switch} {body.port} owner {body.owner}"
    outcome = await _settle(
        db,
        who.actor,
        "attachment delete",
        target,
        lambda: service.detach(body.switch, body.port, body.owner),
        reader,
    )
    return {"switch": body.switch, "port": body.port, "vlan": outcome.change.vlan}


@router.get("/attachments")
@database_read
def list_attachments(db: Db, who: Caller) -> list[dict]:
    who.require_admin()
    query = (
        select(PortAttachment, SwitchPort, Switch)
        .join(SwitchPort, PortAttachment.port_id == SwitchPort.id)
        .join(Switch)
        .order_by(Switch.name, SwitchPort.interface)
    )
    with db.session() as s:
        return [
            {"switch": sw.name, "port": p.interface, "vlan": a.vlan, "owner": a.owner}
            for a, p, sw in s.execute(query)
        ]


@router.get("/attachments/switch")
@database_read
def find_switch(
    db: Db, who: Caller, name: str | None = None, chassis_mac: str | None = None
) -> dict:
    """The switch an owner's link information names: by name, or by its chassis MAC."""
    who.require_admin()
    if (name is None) == (chassis_mac is None):
        raise InputError("give exactly one of name= or chassis_mac=")
    if chassis_mac is not None:
        query = select(Switch).where(Switch.chassis_mac == normalize_mac(chassis_mac))
        what = f"chassis MAC {chassis_mac!r}"
    else:
        query = select(Switch).where(Switch.name == name)
        what = f"name {name!r}"
    with db.session() as s:
        switch = s.scalar(query)
        if switch is None:
            raise NotFound(f"no switch with {what}")
        return {"name": switch.name, "chassis_mac": switch.chassis_mac}
