"""The application service: every operation the CLI and the REST API offer, in one interface.

Two backends implement it: `LocalService` over the database (the local CLI, and the API
server itself) and `HttpService` over the REST API (the CLI with `--url`). A command
calls the interface and prints the read model it gets back, so its output is the same
whichever backend answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from metalnet.errors import MetalnetError
from metalnet.service.models import (
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


class Forbidden(MetalnetError):
    """The caller is known but may not do this."""

    exit_code = 2
    code = "forbidden"


@dataclass(frozen=True)
class Principal:
    """Who asks: an admin (`project` None) or one project's tenant."""

    actor: str
    project: str | None

    @property
    def admin(self) -> bool:
        return self.project is None

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden("this needs an admin token")

    def may_see(self, project: str) -> bool:
        return self.admin or self.project == project


class Service(Protocol):
    """Projects, networks, switches, nodes, instances, the change and audit logs, tokens."""

    def list_projects(self) -> list[ProjectView]: ...
    def get_project(self, name: str) -> ProjectView: ...
    def create_project(self, body: ProjectIn) -> ProjectView: ...
    def delete_project(self, name: str) -> None: ...

    def list_networks(self, project: str | None = None) -> list[NetworkView]: ...
    def get_network(self, project: str, name: str) -> NetworkView: ...
    def create_network(self, project: str, body: NetworkIn) -> NetworkView: ...
    def delete_network(self, project: str, name: str) -> None: ...

    def list_switches(self) -> list[SwitchView]: ...
    def get_switch(self, name: str) -> SwitchView: ...
    def add_switch(self, body: SwitchIn) -> SwitchView: ...
    def delete_switch(self, name: str) -> None: ...
    def switch_changes(self, switch: str | None, limit: int) -> list[ChangeView]: ...

    def list_nodes(self) -> list[NodeView]: ...
    def get_node(self, name: str) -> NodeView: ...
    def add_node(self, body: NodeIn) -> NodeView: ...
    def delete_node(self, name: str) -> None: ...
    def clear_node(self, name: str) -> NodeView: ...

    def list_instances(self, include_deleted: bool = False) -> list[InstanceView]: ...
    def get_instance(self, name: str, project: str | None = None) -> InstanceView: ...
    def create_instance(self, body: InstanceIn) -> InstanceView: ...
    def delete_instance(self, name: str, project: str | None = None) -> InstanceView: ...

    def audit_log(self, limit: int) -> list[AuditView]: ...

    def list_tokens(self) -> list[TokenView]: ...
    def create_token(self, body: TokenIn) -> NewToken: ...
    def revoke_token(self, token_id: str) -> TokenView: ...
