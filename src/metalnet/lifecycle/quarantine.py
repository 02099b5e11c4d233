"""Quarantine: a node whose disk may still hold a tenant's data is never handed out.

The quarantine is remembered by the node's MAC and BMC URL, not by its row: deleting
the node and enrolling it again, under any name, brings it back quarantined. Only
`metalnet node clear` (after the operator dealt with the disk) forgets it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from metalnet.db.models import Node, QuarantineMark
from metalnet.lifecycle.states import NodeState


def mark(session: Session, node: Node, reason: str) -> None:
    """Quarantine `node` now and remember it by every MAC and its BMC."""
    stamped = f"{reason} (at {datetime.now(UTC).isoformat(timespec='seconds')})"
    node.state, node.state_reason = NodeState.QUARANTINED, stamped
    for nic in node.nics:
        session.add(QuarantineMark(mac=nic.mac, bmc_url=node.bmc_url, reason=stamped))


def remembered(session: Session, macs: list[str], bmc_url: str) -> QuarantineMark | None:
    """The quarantine a node with these MACs or this BMC is still under, if any."""
    return session.scalar(
        select(QuarantineMark)
        .where(or_(QuarantineMark.mac.in_(macs), QuarantineMark.bmc_url == bmc_url))
        .order_by(QuarantineMark.id.desc())
    )


def forget(session: Session, node: Node) -> None:
    """Drop every remembered quarantine of the node's MACs and BMC."""
    macs = [nic.mac for nic in node.nics]
    session.execute(
        delete(QuarantineMark).where(
            or_(QuarantineMark.mac.in_(macs), QuarantineMark.bmc_url == node.bmc_url)
        )
    )
