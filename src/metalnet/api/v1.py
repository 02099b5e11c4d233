"""The versioned REST API: projects, networks, switches, nodes, instances, change log,
audit log and tokens.

Each route is the HTTP face of one method of the service layer (metalnet.service):
the caller's rights, the audit log and the read models are the service's, the same the
local CLI uses. A project token sees and changes only its project's networks and
instances; another project's things are simply not found.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from metalnet.api.auth import Caller
from metalnet.api.errors import ERROR_RESPONSES
from metalnet.api.routing import Route, database_read
from metalnet.service.local import LocalService
from metalnet.service.models import (
    MAX_LIMIT,
    AuditView,
    ChangeView,
    InstanceIn,
    InstanceView,
    NetworkIn,
    NetworkView,
    NewToken,
    NodeIn,
    NodeView,
    ProjectIn,
    ProjectView,
    SwitchIn,
    SwitchView,
    TokenIn,
    TokenView,
)


async def service(request: Request, who: Caller) -> LocalService:
    """The service for this request's caller (async: no I/O, so no thread hop)."""
    return LocalService(request.app.state.db, who)


Svc = Annotated[LocalService, Depends(service)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Newest N entries.")]
NO_CONTENT = {"status_code": 204, "response_class": Response}

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES, route_class=Route)


# Projects and networks ---------------------------------------------------------------


@router.get("/projects", response_model=list[ProjectView])
@database_read
def list_projects(svc: Svc) -> list[ProjectView]:
    return svc.list_projects()


@router.post("/projects", status_code=201, response_model=ProjectView)
def create_project(body: ProjectIn, svc: Svc) -> ProjectView:
    return svc.create_project(body)


@router.get("/projects/{name}", response_model=ProjectView)
@database_read
def show_project(name: str, svc: Svc) -> ProjectView:
    return svc.get_project(name)


@router.delete("/projects/{name}", **NO_CONTENT)
def delete_project(name: str, svc: Svc) -> None:
    svc.delete_project(name)


@router.get("/networks", response_model=list[NetworkView])
@database_read
def list_all_networks(svc: Svc, project: str | None = None) -> list[NetworkView]:
    return svc.list_networks(project)


@router.get("/projects/{project}/networks", response_model=list[NetworkView])
@database_read
def list_networks(project: str, svc: Svc) -> list[NetworkView]:
    return svc.list_networks(project)


@router.post("/projects/{project}/networks", status_code=201, response_model=NetworkView)
def create_network(project: str, body: NetworkIn, svc: Svc) -> NetworkView:
    return svc.create_network(project, body)


@router.get("/projects/{project}/networks/{name}", response_model=NetworkView)
@database_read
def show_network(project: str, name: str, svc: Svc) -> NetworkView:
    return svc.get_network(project, name)


@router.delete("/projects/{project}/networks/{name}", **NO_CONTENT)
def delete_network(project: str, name: str, svc: Svc) -> None:
    svc.delete_network(project, name)


# Switches and nodes (admin only) ------------------------------------------------------


@router.get("/switches", response_model=list[SwitchView])
@database_read
def list_switches(svc: Svc) -> list[SwitchView]:
    return svc.list_switches()


@router.post("/switches", status_code=201, response_model=SwitchView)
def add_switch(body: SwitchIn, svc: Svc) -> SwitchView:
    return svc.add_switch(body)


@router.get("/switches/{name}", response_model=SwitchView)
@database_read
def show_switch(name: str, svc: Svc) -> SwitchView:
    return svc.get_switch(name)


@router.delete("/switches/{name}", **NO_CONTENT)
def delete_switch(name: str, svc: Svc) -> None:
    svc.delete_switch(name)


@router.get("/switch-changes", response_model=list[ChangeView])
@database_read
def switch_changes(svc: Svc, limit: Limit = 100, switch: str | None = None) -> list[ChangeView]:
    return svc.switch_changes(switch, limit)


@router.get("/nodes", response_model=list[NodeView])
@database_read
def list_nodes(svc: Svc) -> list[NodeView]:
    return svc.list_nodes()


@router.post("/nodes", status_code=201, response_model=NodeView)
def add_node(body: NodeIn, svc: Svc) -> NodeView:
    return svc.add_node(body)


@router.get("/nodes/{name}", response_model=NodeView)
@database_read
def show_node(name: str, svc: Svc) -> NodeView:
    return svc.get_node(name)


@router.delete("/nodes/{name}", **NO_CONTENT)
def delete_node(name: str, svc: Svc) -> None:
    svc.delete_node(name)


@router.post("/nodes/{name}/clear", response_model=NodeView)
def clear_node(name: str, svc: Svc) -> NodeView:
    return svc.clear_node(name)


# Instances ---------------------------------------------------------------------------


@router.get("/instances", response_model=list[InstanceView])
@database_read
def list_instances(svc: Svc, all: bool = False) -> list[InstanceView]:
    return svc.list_instances(all)


@router.post("/instances", status_code=202, response_model=InstanceView)
def create_instance(body: InstanceIn, svc: Svc) -> InstanceView:
    """Returns at once; poll GET /v1/instances/{name} for the lifecycle's progress."""
    return svc.create_instance(body)


@router.get("/instances/{name}", response_model=InstanceView)
@database_read
def show_instance(name: str, svc: Svc, project: str | None = None) -> InstanceView:
    """`project` picks one of two live instances of the same name (admin)."""
    return svc.get_instance(name, project)


@router.delete("/instances/{name}", status_code=202, response_model=InstanceView)
def delete_instance(name: str, svc: Svc, project: str | None = None) -> InstanceView:
    """`project` picks one of two live instances of the same name (admin)."""
    return svc.delete_instance(name, project)


# Audit log and tokens (admin only) ------------------------------------------------------


@router.get("/audit", response_model=list[AuditView])
@database_read
def audit_log(svc: Svc, limit: Limit = 100) -> list[AuditView]:
    return svc.audit_log(limit)


@router.get("/tokens", response_model=list[TokenView])
@database_read
def list_tokens(svc: Svc) -> list[TokenView]:
    return svc.list_tokens()


@router.post("/tokens", status_code=201, response_model=NewToken)
def create_token(body: TokenIn, svc: Svc) -> NewToken:
    """The secret is in this answer only; the server keeps its hash."""
    return svc.create_token(body)


@router.delete("/tokens/{token_id}", response_model=TokenView)
def revoke_token(token_id: str, svc: Svc) -> TokenView:
    return svc.revoke_token(token_id)
