"""The CLI against a remote `metalnet serve`: `--url` (or METALNET_URL) and METALNET_TOKEN.

The API returns the same views the local commands build (metalnet.views), so a command
prints the same table or JSON either way; errors come back as one line too.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from metalnet.errors import InputError, MetalnetError

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


class Remote:
    """A bearer-token client of the /v1 API."""

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

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; the JSON answer, or RemoteError carrying the server's message."""
        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise RemoteError(_message(response), response.status_code)
        return response.json() if response.content else None


def _message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"{response.request.method} {response.request.url.path}: HTTP {response.status_code}"
