"""What the service layer takes and returns: validated inputs and read models.

The read models are the `--json` output, the REST API's response schemas and what the
remote CLI parses back, so the same command prints the same thing locally and remotely.
Secrets (switch and BMC passwords, token hashes) are never part of a read model.

Read models build their validator and serializer on first use (pydantic's `defer_build`),
not when this module is imported: a command uses one or two of them, and building all
of them at import cost `project list` ~2 % of its instructions. Request bodies are built
at import: FastAPI wraps each in field metadata (alias "body") that pydantic accepts only
around a model already built (UnsupportedFieldAttributeWarning otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from metalnet.errors import InputError

Text = Annotated[str, Field(min_length=1, max_length=1024)]


def _utc(value: datetime) -> datetime:
    """Times are stored in UTC; SQLite hands them back without their zone."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# A point in time with its offset (RFC 3339), as the OpenAPI `date-time` format requires.
Time = Annotated[datetime, AfterValidator(_utc)]
MAX_LIMIT = 1000
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]


def validation_message(errors: Sequence[Any]) -> str:
    """One line naming the first bad field and value, as the API and the CLI print it."""
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    value = first.get("input")
    shown = "" if isinstance(value, dict) or value is None else f" (got {value!r:.80})"
    return f"{where}: {first.get('msg', 'invalid')}{shown}"


class Body(BaseModel):
    """Request bodies: unknown fields and wrong types are refused, not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @classmethod
    def of(cls, **fields: Any) -> Self:
        """Build from command-line values; a bad one is an InputError naming it."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InputError(validation_message(exc.errors())) from None


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
    chassis_mac: Text | None = None


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


class TokenIn(Body):
    name: Text
    project: Text | None = None


class View(BaseModel):
    """A read model: built from database rows or parsed from the API's JSON."""

    model_config = ConfigDict(from_attributes=True, defer_build=True)


class ProjectView(View):
    name: str
    networks: list[str]
    created_at: Time | None


class NetworkView(View):
    project: str
    name: str
    vlan: int
    cidr: str
    gateway: str | None
    created_at: Time | None


class PortView(View):
    interface: str
    desired_vlan: int | None
    desired_enabled: bool  # False while its node may run a tenant's OS off its VLAN
    node: str | None
    mac: str | None


class SwitchView(View):
    name: str
    driver: str
    address: str
    username: str
    host_key: str | None = None
    ports: list[PortView]
    created_at: Time | None


class NodeView(View):
    name: str
    state: str
    state_reason: str | None
    mac: str | None
    switch: str | None
    port: str | None
    desired_vlan: int | None
    bmc_url: str
    bmc_username: str | None
    created_at: Time | None


class EventView(View):
    """One step of an instance's history; `worker` (host:pid) only for operators."""

    at: Time | None
    step: str
    message: str
    seconds: float | None
    worker: str | None


class InstanceView(View):
    """An instance; `history` is filled by `show`, empty in lists."""

    id: int
    name: str
    project: str
    network: str
    node: str
    image_url: str
    sha256: str
    state: str
    step: str
    error: str | None
    created_at: Time | None
    updated_at: Time | None
    history: list[EventView] = []


class ChangeView(View):
    """One row of the switch change log."""

    id: int
    switch: str
    at: Time | None
    ports: list[dict[str, Any]]
    ok: bool
    seconds: float
    message: str


class AuditView(View):
    at: Time | None
    actor: str
    action: str
    target: str
    ok: bool
    detail: str


class TokenView(View):
    """A token without its secret."""

    id: int
    name: str
    role: str
    project: str | None
    created_at: Time | None
    revoked_at: Time | None


class NewToken(TokenView):
    """A token just made: its secret is shown this once and never stored."""

    token: str
