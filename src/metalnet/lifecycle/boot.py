"""What a node that network-boots into the provisioning ramdisk is told, and when.

The boot server hands iPXE a per-node script (metalnet.api.boot); its kernel command
line carries what the agent needs: the controller URL, the node's name and a token.
The rule lives here: a node gets a boot entry only while it has an open ramdisk task
(deploy or erase), and every entry carries a token issued for that very entry, which
replaces any earlier one. So a token is delivered once, dies when the node fetches
its script again, and is revoked when the task ends; nothing stores it in clear.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet.boot.cmdline import AgentBoot
from metalnet.db.models import AgentTask, Nic
from metalnet.lifecycle import tokens
from metalnet.lifecycle.states import OPEN_TASK


def entry_for(session: Session, mac: str, controller: str) -> AgentBoot | None:
    """The boot entry for the NIC with `mac`, with a fresh token, or None.

    None when the MAC is unknown or its node has no open ramdisk task: such a node
    boots from its disk (or not at all) and must not get an agent token.
    """
    nic = session.scalar(select(Nic).where(Nic.mac == mac))
    if nic is None:
        return None
    task = session.scalar(
        select(AgentTask.id).where(AgentTask.node_id == nic.node_id, AgentTask.state.in_(OPEN_TASK))
    )
    if task is None:
        return None
    return AgentBoot(controller, nic.node.name, tokens.issue(nic.node))
