"""Per-project quotas: how many networks and live instances one project may hold.

VLANs and nodes are shared by every tenant, so one project must not be able to take
them all. A project's own limit (`metalnet project quota`) wins over the
configuration's default (`quota_networks`, `quota_instances`).

The check is race-safe: it first takes the project's row lock (a no-op UPDATE: a row
lock on PostgreSQL, the database write lock on SQLite), then counts, so two creates
in one project are serialized and cannot both take the last unit.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from metalnet.config import Settings
from metalnet.db.models import Instance, Network, Project
from metalnet.errors import Conflict, InputError
from metalnet.lifecycle.states import LIVE

Kind = Literal["networks", "instances"]


class QuotaExceeded(Conflict):
    """Creating one more would exceed the project's quota."""

    code = "quota_exceeded"


def _used(session: Session, project: Project, kind: Kind) -> int:
    if kind == "networks":
        query = select(func.count()).select_from(Network).where(Network.project_id == project.id)
    else:
        query = (
            select(func.count())
            .select_from(Instance)
            .where(Instance.project_id == project.id, Instance.state.in_(LIVE))
        )
    return session.scalar(query) or 0


def reserve(session: Session, settings: Settings, project: Project, kind: Kind) -> None:
    """Lock the project and refuse when one more `kind` would exceed its quota."""
    column = Project.__table__.c[f"quota_{kind}"]
    own = session.execute(
        update(Project.__table__)
        .where(Project.__table__.c.id == project.id)
        .values({column: column})
        .returning(column)
    ).scalar_one()
    limit = own if own is not None else getattr(settings, f"quota_{kind}")
    used = _used(session, project, kind)
    if used >= limit:
        raise QuotaExceeded(
            f"project {project.name!r} has reached its quota of {limit} {kind} "
            f"(quota_{kind}; an admin raises it with `metalnet project quota`)"
        )


def set_quota(
    session: Session, project: Project, networks: int | None, instances: int | None
) -> Project:
    """Set the project's own limits; None leaves a limit as it is."""
    for kind, value in (("networks", networks), ("instances", instances)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"invalid {kind} quota {value!r}: must be a whole number 0 or more")
        setattr(project, f"quota_{kind}", value)
    return project


def quota_view(settings: Settings, project: Project) -> dict[str, object]:
    """The effective limits and where each comes from."""
    view: dict[str, object] = {"project": project.name}
    for kind in ("networks", "instances"):
        own = getattr(project, f"quota_{kind}")
        view[f"quota_{kind}"] = own if own is not None else getattr(settings, f"quota_{kind}")
        view[f"quota_{kind}_source"] = "project" if own is not None else "configuration"
    return view
