"""The versioned REST API: projects, networks, switches, nodes, instances, change log, audit.

Admin tokens may do everything; a project token sees and changes only its project's
networks and instances, and another project's things are simply not found (their
existence is not revealed). Every change is written to the audit log. Validation is
the same code the CLI runs (metalnet.inventory, metalnet.lifecycle.instances).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from metalnet import audit, inventory
from metalnet.api.auth import Caller, Db, Principal
from metalnet.db.engine import Database
from metalnet.db.models import AuditEntry, Instance, Network, Node, Project, Switch, SwitchChange
from metalnet.errors import InputError, NotFound
from metalnet.lifecycle import instances
from metalnet.views import (
    audit_view,
    change_view,
    instance_view,
    network_view,
    node_view,
    project_view,
    switch_view,
)

router = APIRouter(prefix="/v1")
Text = Annotated[str, Field(min_length=1, max_length=1024)]


class Body(BaseModel):
    """Request bodies: unknown fields and wrong types are refused, not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ProjectIn(Body):
    name: Text


class NetworkIn(Body):
    name: Text
    cidr: Text
    vlan: int | None = None
    gateway: Text | None = None


class SwitchIn(Body):
    name: Text
    driver: Text = "junos"
    address: Text
    username: Text
    password: Text


class NodeIn(Body):
    name: Text
    mac: Text
    switch: Text
    port: Text
    bmc_url: Text
    bmc_username: Text | None = None
    bmc_password: Text | None = None
    skip_initial_erase: bool = False


class InstanceIn(Body):
    name: Text
    project: Text | None = None
    network: Text
    node: Text | None = None
    image_url: Text
    sha256: Text


@contextmanager
def change(db: Database, who: Principal, action: str, target: str) -> Iterator[None]:
    """Audit the change in the body, whether it succeeds or fails."""
    try:
        yield
    except Exception as exc:
        audit.record(db, who.actor, action, target, False, str(exc))
        raise
    audit.record(db, who.actor, action, target, True)


def _visible_project(who: Principal, name: str) -> str:
    if not who.may_see(name):
        raise NotFound(f"unknown project {name!r}")
    return name


# Projects and networks ---------------------------------------------------------------


@router.get("/projects")
def list_projects(db: Db, who: Caller) -> list[dict]:
    query = select(Project).order_by(Project.name)
    if not who.admin:
        query = query.where(Project.name == who.project)
    with db.session() as s:
        return [project_view(p) for p in s.scalars(query)]


@router.post("/projects", status_code=201)
def create_project(body: ProjectIn, db: Db, who: Caller) -> dict:
    who.require_admin()
    with change(db, who, "project create", body.name), db.session() as s:
        return project_view(inventory.create_project(s, body.name))


@router.get("/projects/{name}")
def show_project(name: str, db: Db, who: Caller) -> dict:
    with db.session() as s:
        return project_view(inventory.get_project(s, _visible_project(who, name)))


@router.delete("/projects/{name}", status_code=204)
def delete_project(name: str, db: Db, who: Caller) -> Response:
    who.require_admin()
    with change(db, who, "project delete", name), db.session() as s:
        inventory.delete_project(s, name)
    return Response(status_code=204)


@router.get("/projects/{project}/networks")
def list_networks(project: str, db: Db, who: Caller) -> list[dict]:
    _visible_project(who, project)
    with db.session() as s:
        inventory.get_project(s, project)
        query = select(Network).join(Project).where(Project.name == project).order_by(Network.name)
        return [network_view(n) for n in s.scalars(query)]


@router.post("/projects/{project}/networks", status_code=201)
def create_network(project: str, body: NetworkIn, db: Db, who: Caller) -> dict:
    _visible_project(who, project)
    with change(db, who, "network create", f"{project}/{body.name}"), db.session() as s:
        net = inventory.create_network(
            s, db.settings, project, body.name, body.cidr, body.vlan, body.gateway
        )
        s.refresh(net)
        return network_view(net)


@router.get("/projects/{project}/networks/{name}")
def show_network(project: str, name: str, db: Db, who: Caller) -> dict:
    with db.session() as s:
        return network_view(inventory.get_network(s, _visible_project(who, project), name))


@router.delete("/projects/{project}/networks/{name}", status_code=204)
def delete_network(project: str, name: str, db: Db, who: Caller) -> Response:
    _visible_project(who, project)
    with change(db, who, "network delete", f"{project}/{name}"), db.session() as s:
        inventory.delete_network(s, project, name)
    return Response(status_code=204)


# Switches and nodes (admin only) ------------------------------------------------------


@router.get("/switches")
def list_switches(db: Db, who: Caller) -> list[dict]:
    who.require_admin()
    with db.session() as s:
        return [switch_view(x) for x in s.scalars(select(Switch).order_by(Switch.name))]


@router.post("/switches", status_code=201)
def add_switch(body: SwitchIn, db: Db, who: Caller) -> dict:
    who.require_admin()
    with change(db, who, "switch add", body.name), db.session() as s:
        return switch_view(
            inventory.add_switch(
                s, body.name, body.driver, body.address, body.username, body.password
            )
        )


@router.get("/switches/{name}")
def show_switch(name: str, db: Db, who: Caller) -> dict:
    who.require_admin()
    with db.session() as s:
        return switch_view(inventory.get_switch(s, name))


@router.delete("/switches/{name}", status_code=204)
def delete_switch(name: str, db: Db, who: Caller) -> Response:
    who.require_admin()
    with change(db, who, "switch delete", name), db.session() as s:
        inventory.delete_switch(s, name)
    return Response(status_code=204)


@router.get("/switch-changes")
def switch_changes(db: Db, who: Caller, limit: int = 100) -> list[dict]:
    who.require_admin()
    query = select(SwitchChange).order_by(SwitchChange.id.desc()).limit(min(limit, 1000))
    with db.session() as s:
        return [change_view(c) for c in s.scalars(query)]


@router.get("/nodes")
def list_nodes(db: Db, who: Caller) -> list[dict]:
    who.require_admin()
    with db.session() as s:
        return [node_view(n) for n in s.scalars(select(Node).order_by(Node.name))]


@router.post("/nodes", status_code=201)
def add_node(body: NodeIn, db: Db, who: Caller) -> dict:
    who.require_admin()
    target = body.name + (" (--skip-initial-erase)" if body.skip_initial_erase else "")
    with change(db, who, "node add", target), db.session() as s:
        node = inventory.add_node(
            s,
            db.settings,
            body.name,
            body.mac,
            body.switch,
            body.port,
            body.bmc_url,
            body.bmc_username,
            body.bmc_password,
            initial_erase=not body.skip_initial_erase,
        )
        return node_view(node)


@router.get("/nodes/{name}")
def show_node(name: str, db: Db, who: Caller) -> dict:
    who.require_admin()
    with db.session() as s:
        return node_view(inventory.get_node(s, name))


@router.delete("/nodes/{name}", status_code=204)
def delete_node(name: str, db: Db, who: Caller) -> Response:
    who.require_admin()
    with change(db, who, "node delete", name), db.session() as s:
        inventory.delete_node(s, db.settings, name)
    return Response(status_code=204)


@router.post("/nodes/{name}/clear")
def clear_node(name: str, db: Db, who: Caller) -> dict:
    who.require_admin()
    with change(db, who, "node clear", name), db.session() as s:
        return node_view(instances.clear_node(s, name))


# Instances -------------------------------------------------------------------------


def _instance(s, who: Principal, name: str) -> Instance:
    inst = instances.get_instance(s, name, who.project)
    if not who.may_see(inst.project.name):
        raise NotFound(f"unknown instance {name!r}")
    return inst


@router.get("/instances")
def list_instances(db: Db, who: Caller, all: bool = False) -> list[dict]:
    query = select(Instance).order_by(Instance.id)
    if not all:
        query = query.where(Instance.state.in_(instances.LIVE))
    if not who.admin:
        query = query.join(Project).where(Project.name == who.project)
    with db.session() as s:
        return [instance_view(i) for i in s.scalars(query)]


@router.post("/instances", status_code=202)
def create_instance(body: InstanceIn, db: Db, who: Caller) -> dict:
    """Returns at once; poll GET /v1/instances/{name} for the lifecycle's progress."""
    project = body.project or who.project
    if project is None:
        raise InputError("project is required with an admin token")
    _visible_project(who, project)
    with change(db, who, "instance create", body.name), db.session() as s:
        inst = instances.create_instance(
            s,
            body.name,
            project,
            body.network,
            body.node,
            body.image_url,
            body.sha256,
            settings=db.settings,
        )
        s.flush()
        return instance_view(inst)


@router.get("/instances/{name}")
def show_instance(name: str, db: Db, who: Caller) -> dict:
    with db.session() as s:
        return instance_view(_instance(s, who, name), history=True)


@router.delete("/instances/{name}", status_code=202)
def delete_instance(name: str, db: Db, who: Caller) -> dict:
    with change(db, who, "instance delete", name), db.session() as s:
        inst = _instance(s, who, name)
        return instance_view(instances.delete_instance(s, name, inst.project.name))


@router.get("/audit")
def audit_log(db: Db, who: Caller, limit: int = 100) -> list[dict]:
    who.require_admin()
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(min(limit, 1000))
    with db.session() as s:
        return [audit_view(e) for e in s.scalars(query)]
