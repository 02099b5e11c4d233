"""The metalnet REST calls the mechanism driver makes, with metalnet's own words on failure."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


class MetalnetFailed(Exception):
    """metalnet (or the switch behind it) refused or failed; the message is theirs."""


@dataclass(frozen=True)
class Attachment:
    """One switch port Neutron owns through metalnet, in one VLAN."""

    switch: str
    port: str
    vlan: int
    owner: str


class MetalnetClient:
    """Thin client of `/v1/attachments`; one connection pool shared by all threads."""

    def __init__(self, url: str, token: str, timeout: float) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout + 30.0, connect=10.0),
            limits=httpx.Limits(max_connections=100),
        )

    def find_switch(self, *, name: str | None = None, chassis_mac: str | None = None) -> str:
        """The metalnet name of the switch with this name or chassis MAC."""
        params = {"name": name} if name is not None else {"chassis_mac": chassis_mac}
        return self._call("GET", "/v1/attachments/switch", params=params)["name"]

    def attach(self, a: Attachment) -> dict:
        """Put the port in the VLAN for its owner; returns once committed and read back."""
        body = {"switch": a.switch, "port": a.port, "vlan": a.vlan, "owner": a.owner}
        return self._call("PUT", "/v1/attachments", json=body)

    def detach(self, a: Attachment) -> dict:
        """End the owner's attachment; metalnet parks the port."""
        body = {"switch": a.switch, "port": a.port, "owner": a.owner}
        return self._call("DELETE", "/v1/attachments", json=body)

    def _call(self, method: str, path: str, **kwargs: object) -> dict:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise MetalnetFailed(f"metalnet unreachable: {exc!r}") from exc
        if response.is_success:
            return response.json()
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise MetalnetFailed(f"metalnet answered {response.status_code}: {message}")

    def close(self) -> None:
        self._http.close()
