"""Stable dictionaries of inventory rows: the `--json` output and the API's bodies.

Secrets (switch and BMC passwords, token hashes) are never part of a view.
"""

from __future__ import annotations

from datetime import datetime

from metalnet.db.models import (
    AuditEntry,
    Instance,
    InstanceEvent,
    Network,
    Node,
    Project,
    Switch,
    SwitchChange,
    SwitchPort,
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def project_view(project: Project) -> dict[str, object]:
    """A project and the names of its networks."""
    return {
        "name": project.name,
        "networks": sorted(n.name for n in project.networks),
        "created_at": _time(project.created_at),
    }


def network_view(network: Network) -> dict[str, object]:
    """A project network: VLAN, subnet, gateway."""
    return {
        "project": network.project.name,
        "name": network.name,
        "vlan": network.vlan,
        "cidr": network.cidr,
        "gateway": network.gateway,
        "created_at": _time(network.created_at),
    }


def switch_view(switch: Switch) -> dict[str, object]:
    """A switch without its password; ports with the node cabled to each."""
    return {
        "name": switch.name,
        "driver": switch.driver,
        "address": f"{switch.host}:{switch.port}",
        "username": switch.username,
        "host_key": switch.host_key,
        "ports": [port_view(p) for p in sorted(switch.ports, key=lambda p: p.interface)],
        "created_at": _time(switch.created_at),
    }


def port_view(port: SwitchPort) -> dict[str, object]:
    """One switch port: desired VLAN and the node cabled to it."""
    return {
        "interface": port.interface,
        "desired_vlan": port.desired_vlan,
        "node": port.nic.node.name if port.nic else None,
        "mac": port.nic.mac if port.nic else None,
    }


def node_view(node: Node) -> dict[str, object]:
    """A node without BMC credentials' secret part."""
    nic = node.nics[0] if node.nics else None
    port = nic.port if nic else None
    return {
        "name": node.name,
        "state": node.state,
        "state_reason": node.state_reason,
        "mac": nic.mac if nic else None,
        "switch": port.switch.name if port else None,
        "port": port.interface if port else None,
        "desired_vlan": port.desired_vlan if port else None,
        "bmc_url": node.bmc_url,
        "bmc_username": node.bmc_username,
        "created_at": _time(node.created_at),
    }


def event_view(event: InstanceEvent) -> dict[str, object]:
    """One step of an instance's history."""
    return {
        "at": _time(event.at),
        "step": event.step,
        "message": event.message,
        "seconds": event.seconds,
        "worker": event.worker,
    }


def instance_view(instance: Instance, history: bool = False) -> dict[str, object]:
    """An instance with its current step, and its step history when asked."""
    view: dict[str, object] = {
        "id": instance.id,
        "name": instance.name,
        "project": instance.project.name,
        "network": instance.network.name,
        "node": instance.node.name,
        "image_url": instance.image_url,
        "sha256": instance.sha256,
        "state": instance.state,
        "step": instance.step,
        "error": instance.error,
        "created_at": _time(instance.created_at),
        "updated_at": _time(instance.updated_at),
    }
    if history:
        view["history"] = [event_view(e) for e in instance.events]
    return view


def change_view(change: SwitchChange) -> dict[str, object]:
    """One row of the switch change log."""
    return {
        "id": change.id,
        "switch": change.switch_name,
        "at": _time(change.at),
        "ports": change.ports,
        "ok": change.ok,
        "seconds": round(change.seconds, 3),
        "message": change.message,
    }


def audit_view(entry: AuditEntry) -> dict[str, object]:
    """One audit log entry."""
    return {
        "at": _time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "ok": entry.ok,
        "detail": entry.detail,
    }
