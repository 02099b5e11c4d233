"""The service over a remote `metalnet serve`: the same interface, spoken over /v1.

The CLI with `--url` (token from METALNET_TOKEN) uses it; every answer is parsed into
the same read model the local backend returns, and every refusal comes back as the
server's one-line message with the exit code the local command would use.
"""

from __future__ import annotations

import ssl
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from metalnet.errors import InputError, MetalnetError
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

M = TypeVar("M", bound=BaseModel)
USER_ERRORS = {400, 401, 403, 404, 409, 413, 422}


def tls_verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """What an https:// connection is verified against: `ca_file`, else the system CAs."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"CA file {ca_file}: {exc}") from None


class RemoteError(MetalnetError):
    """The server refused the request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = 2 if status in USER_ERRORS else 1


def _q(name: str) -> str:
    return quote(name, safe="")


def _project(project: str | None) -> dict[str, str]:
    """The `project` query parameter, when one is named."""
    return {} if project is None else {"project": project}


class HttpService:
    """A bearer-token client of the /v1 API implementing metalnet.service.Service."""

    def __init__(self, url: str, token: str | None, ca_file: str | None = None) -> None:
        """`ca_file`: the CA (or self-signed certificate) an https:// server is checked
        against, instead of the system's trusted CAs."""
        if not token:
            raise RemoteError(f"--url {url} needs a token: set METALNET_TOKEN", 401)
        self.url = url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            verify=tls_verify(ca_file),
        )

    def _call(
        self,
        method: str,
        path: str,
        body: BaseModel | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """One request; the JSON answer, or RemoteError carrying the server's message."""
        payload = None if body is None else body.model_dump(mode="json")
        try:
            response = self.client.request(method, path, json=payload, params=params)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise RemoteError(_message(response), response.status_code)
        return response.json() if response.content else None

    def _one(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self._call(method, path, **kwargs))

    def _many(self, model: type[M], path: str, **kwargs: Any) -> list[M]:
        return TypeAdapter(list[model]).validate_python(self._call("GET", path, **kwargs))

    # Projects and networks ------------------------------------------------------------

    def list_projects(self) -> list[ProjectView]:
        return self._many(ProjectView, "/v1/projects")

    def get_project(self, name: str) -> ProjectView:
        return self._one(ProjectView, "GET", f"/v1/projects/{_q(name)}")

    def create_project(self, body: ProjectIn) -> ProjectView:
        return self._one(ProjectView, "POST", "/v1/projects", body=body)

    def delete_project(self, name: str) -> None:
        self._call("DELETE", f"/v1/projects/{_q(name)}")

    def list_networks(self, project: str | None = None) -> list[NetworkView]:
        return self._many(NetworkView, "/v1/networks", params=_project(project))

    def get_network(self, project: str, name: str) -> NetworkView:
        return self._one(NetworkView, "GET", f"/v1/projects/{_q(project)}/networks/{_q(name)}")

    def create_network(self, project: str, body: NetworkIn) -> NetworkView:
        return self._one(NetworkView, "POST", f"/v1/projects/{_q(project)}/networks", body=body)

    def delete_network(self, project: str, name: str) -> None:
        self._call("DELETE", f"/v1/projects/{_q(project)}/networks/{_q(name)}")

    # Switches and nodes -----------------------------------------------------------------

    def list_switches(self) -> list[SwitchView]:
        return self._many(SwitchView, "/v1/switches")

    def get_switch(self, name: str) -> SwitchView:
        return self._one(SwitchView, "GET", f"/v1/switches/{_q(name)}")

    def add_switch(self, body: SwitchIn) -> SwitchView:
        return self._one(SwitchView, "POST", "/v1/switches", body=body)

    def delete_switch(self, name: str) -> None:
        self._call("DELETE", f"/v1/switches/{_q(name)}")

    def switch_changes(self, switch: str | None, limit: int) -> list[ChangeView]:
        params: dict[str, Any] = {"limit": limit}
        if switch:
            params["switch"] = switch
        return self._many(ChangeView, "/v1/switch-changes", params=params)

    def list_nodes(self) -> list[NodeView]:
        return self._many(NodeView, "/v1/nodes")

    def get_node(self, name: str) -> NodeView:
        return self._one(NodeView, "GET", f"/v1/nodes/{_q(name)}")

    def add_node(self, body: NodeIn) -> NodeView:
        return self._one(NodeView, "POST", "/v1/nodes", body=body)

    def delete_node(self, name: str) -> None:
        self._call("DELETE", f"/v1/nodes/{_q(name)}")

    def clear_node(self, name: str) -> NodeView:
        return self._one(NodeView, "POST", f"/v1/nodes/{_q(name)}/clear")

    # Instances, audit, tokens -----------------------------------------------------------

    def list_instances(self, include_deleted: bool = False) -> list[InstanceView]:
        return self._many(InstanceView, "/v1/instances", params={"all": include_deleted})

    def get_instance(self, name: str, project: str | None = None) -> InstanceView:
        return self._one(InstanceView, "GET", f"/v1/instances/{_q(name)}", params=_project(project))

    def create_instance(self, body: InstanceIn) -> InstanceView:
        return self._one(InstanceView, "POST", "/v1/instances", body=body)

    def delete_instance(self, name: str, project: str | None = None) -> InstanceView:
        return self._one(
            InstanceView, "DELETE", f"/v1/instances/{_q(name)}", params=_project(project)
        )

    def audit_log(self, limit: int) -> list[AuditView]:
        return self._many(AuditView, "/v1/audit", params={"limit": limit})

    def list_tokens(self) -> list[TokenView]:
        return self._many(TokenView, "/v1/tokens")

    def create_token(self, body: TokenIn) -> NewToken:
        return self._one(NewToken, "POST", "/v1/tokens", body=body)

    def revoke_token(self, token_id: str) -> TokenView:
        return self._one(TokenView, "DELETE", f"/v1/tokens/{_q(token_id)}")


def _message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"{response.request.method} {response.request.url.path}: HTTP {response.status_code}"
