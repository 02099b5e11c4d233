"""The service over the database: the inventory and lifecycle rules, the caller's rights,
and the audit log, for the local CLI and for the REST API server.

Rules live where they were (metalnet.inventory, metalnet.lifecycle.instances,
metalnet.apitokens); this module decides who may call them, records every change in the
audit log, and turns rows into read models. Tenants get tenant views: their own names
only, and no operator detail (worker host:pid, device and BMC error text).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from metalnet import apitokens, audit, inventory
from metalnet.db.engine import Database
from metalnet.db.models import (
    ApiToken,
    AuditEntry,
    Instance,
    InstanceEvent,
    Network,
    Nic,
    Node,
    Project,
    Switch,
    SwitchChange,
    SwitchPort,
)
from metalnet.errors import Conflict, InputError, NotFound
from metalnet.lifecycle import instances
from metalnet.service.base import Principal
from metalnet.service.models import (
    MAX_LIMIT,
    AuditView,
    ChangeView,
    EventView,
    InstanceIn,
    InstanceView,
    NetworkIn,
    NetworkView,
    NewToken,
    NodeIn,
    NodeView,
    PortView,
    ProjectIn,
    ProjectView,
    SwitchIn,
    SwitchView,
    TokenIn,
    TokenView,
)


def check_limit(limit: int) -> int:
    """How many log rows to return: 1..MAX_LIMIT."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"invalid limit {limit!r}: expected 1 to {MAX_LIMIT}")
    return limit


# The API's most frequent reads, built once and run on a plain connection: building a
# statement (and its cache key) and setting up an ORM session cost more than running
# the query, several times over on SQLite.
PROJECT_ID = select(Project.id).where(Project.name == bindparam("name"))
PROJECT_WITH_NETWORKS = (
    select(Project.created_at, Network.name.label("network"))
    .outerjoin(Network, Network.project_id == Project.id)
    .where(Project.name == bindparam("name"))
    .order_by(Network.name)
)
NETWORKS = (
    select(
        Project.name.label("project"),
        Network.name,
        Network.vlan,
        Network.cidr,
        Network.gateway,
        Network.created_at,
    )
    .join(Network.project)
    .order_by(Project.name, Network.name)
)
NETWORKS_OF = NETWORKS.where(Project.name == bindparam("project"))


class LocalService:
    """The service for one caller over one database."""

    def __init__(self, db: Database, who: Principal) -> None:
        self.db = db
        self.who = who

    @contextmanager
    def _change(self, action: str, target: str) -> Iterator[Session]:
        """A transaction for one change, audited whether it succeeds or fails."""
        with audit.change(self.db, self.who.actor, action, target), self.db.session() as session:
            yield session

    def _visible(self, project: str) -> str:
        """`project`, or NotFound for a tenant asking about another project."""
        if not self.who.may_see(project):
            raise NotFound(f"unknown project {project!r}")
        return project

    # Projects and networks ------------------------------------------------------------

    def list_projects(self) -> list[ProjectView]:
        query = select(Project).order_by(Project.name)
        if not self.who.admin:
            query = query.where(Project.name == self.who.project)
        with self.db.session() as s:
            projects = s.scalars(query).all()
            names = network_names(s, [p.id for p in projects])
            return [project_view(p, names.get(p.id, [])) for p in projects]

    def get_project(self, name: str) -> ProjectView:
        with self.db.engine.connect() as c:
            rows = c.execute(PROJECT_WITH_NETWORKS, {"name": self._visible(name)}).all()
        if not rows:
            raise NotFound(f"unknown project {name!r}")
        networks = [network for _, network in rows if network is not None]  # unpacked: fast
        return ProjectView(name=name, networks=networks, created_at=rows[0].created_at)

    def create_project(self, body: ProjectIn) -> ProjectView:
        self.who.require_admin()
        with self._change("project create", body.name) as s:
            return project_view(inventory.create_project(s, body.name), [])

    def delete_project(self, name: str) -> None:
        self.who.require_admin()
        with self._change("project delete", name) as s:
            inventory.delete_project(s, name)

    def list_networks(self, project: str | None = None) -> list[NetworkView]:
        """Networks, of one project when named (NotFound when it does not exist)."""
        only = project if self.who.admin else self.who.project
        if project is not None:
            self._visible(project)
        with self.db.engine.connect() as c:
            if only is None:
                rows = c.execute(NETWORKS).all()
            else:
                rows = c.execute(NETWORKS_OF, {"project": only}).all()
                if not rows and c.execute(PROJECT_ID, {"name": only}).first() is None:
                    raise NotFound(f"unknown project {only!r}")
        return [  # rows unpacked: ten times faster than reading a Row's attributes
            NetworkView(project=p, name=n, vlan=v, cidr=c, gateway=g, created_at=t)
            for p, n, v, c, g, t in rows
        ]

    def get_network(self, project: str, name: str) -> NetworkView:
        with self.db.session() as s:
            return network_view(inventory.get_network(s, self._visible(project), name))

    def create_network(self, project: str, body: NetworkIn) -> NetworkView:
        self._visible(project)
        with self._change("network create", f"{project}/{body.name}") as s:
            net = inventory.create_network(
                s, self.db.settings, project, body.name, body.cidr, body.vlan, body.gateway
            )
            s.refresh(net)
            return network_view(net)

    def delete_network(self, project: str, name: str) -> None:
        self._visible(project)
        with self._change("network delete", f"{project}/{name}") as s:
            inventory.delete_network(s, project, name)

    # Switches and nodes (admin only) ---------------------------------------------------

    def list_switches(self) -> list[SwitchView]:
        self.who.require_admin()
        with self.db.session() as s:
            return [switch_view(x) for x in s.scalars(select(Switch).order_by(Switch.name))]

    def get_switch(self, name: str) -> SwitchView:
        self.who.require_admin()
        with self.db.session() as s:
            return switch_view(inventory.get_switch(s, name))

    def add_switch(self, body: SwitchIn) -> SwitchView:
        self.who.require_admin()
        with self._change("switch add", body.name) as s:
            switch = inventory.add_switch(
                s,
                body.name,
                body.driver,
                body.address,
                body.username,
                body.password,
                body.chassis_mac,
            )
            return switch_view(switch)

    def delete_switch(self, name: str) -> None:
        self.who.require_admin()
        with self._change("switch delete", name) as s:
            inventory.delete_switch(s, name)

    def switch_changes(self, switch: str | None, limit: int) -> list[ChangeView]:
        """The newest `limit` commits, of one switch when named (filtered, then limited)."""
        self.who.require_admin()
        query = select(SwitchChange).order_by(SwitchChange.id.desc()).limit(check_limit(limit))
        if switch:
            query = query.where(SwitchChange.switch_name == switch)
        with self.db.session() as s:
            return [change_view(c) for c in s.scalars(query)]

    def list_nodes(self) -> list[NodeView]:
        self.who.require_admin()
        with self.db.session() as s:
            return [node_view(n) for n in s.scalars(select(Node).order_by(Node.name))]

    def get_node(self, name: str) -> NodeView:
        self.who.require_admin()
        with self.db.session() as s:
            return node_view(inventory.get_node(s, name))

    def add_node(self, body: NodeIn) -> NodeView:
        self.who.require_admin()
        skipped = " (--skip-initial-erase)" if body.skip_initial_erase else ""
        with self._change("node add", body.name + skipped) as s:
            node = inventory.add_node(
                s,
                self.db.settings,
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

    def delete_node(self, name: str) -> None:
        self.who.require_admin()
        with self._change("node delete", name) as s:
            inventory.delete_node(s, self.db.settings, name)

    def clear_node(self, name: str) -> NodeView:
        self.who.require_admin()
        with self._change("node clear", name) as s:
            return node_view(instances.clear_node(s, name))

    # Instances --------------------------------------------------------------------------

    def _instance(self, s: Session, name: str, project: str | None) -> Instance:
        """The caller's instance `name`, in `project` when named (how an admin picks one of
        two live instances of the same name); a tenant's lookup is scoped to its project."""
        if project is not None:
            inventory.get_project(s, self._visible(project))
        inst = instances.get_instance(s, name, project or self.who.project)
        if not self.who.may_see(inst.project.name):
            raise NotFound(f"unknown instance {name!r}")
        return inst

    def list_instances(self, include_deleted: bool = False) -> list[InstanceView]:
        query = select(Instance).order_by(Instance.id)
        if not include_deleted:
            query = query.where(Instance.state.in_(instances.LIVE))
        if not self.who.admin:
            query = query.join(Project).where(Project.name == self.who.project)
        with self.db.session() as s:
            return [self._view(i) for i in s.scalars(query)]

    def get_instance(self, name: str, project: str | None = None) -> InstanceView:
        with self.db.session() as s:
            return self._view(self._instance(s, name, project), history=True)

    def create_instance(self, body: InstanceIn) -> InstanceView:
        project = body.project or self.who.project
        if project is None:
            raise InputError("project is required with an admin token")
        self._visible(project)
        with self._change("instance create", body.name) as s:
            try:
                inst = instances.create_instance(
                    s,
                    body.name,
                    project,
                    body.network,
                    body.node,
                    body.image_url,
                    body.sha256,
                    settings=self.db.settings,
                )
            except Conflict as exc:
                raise self._tenant_conflict(exc, body) from None
            s.flush()
            return self._view(inst)

    def _tenant_conflict(self, exc: Conflict, body: InstanceIn) -> Conflict:
        """A tenant learns that the node it named is not available, not why (another
        project's instance, quarantine, a BMC fault are operator matters)."""
        if self.who.admin or body.node is None or repr(body.node) not in str(exc):
            return exc
        return Conflict(f"node {body.node!r} is not available")

    def delete_instance(self, name: str, project: str | None = None) -> InstanceView:
        target = name if project is None else f"{project}/{name}"
        with self._change("instance delete", target) as s:
            inst = self._instance(s, name, project)
            return self._view(instances.delete_instance(s, name, inst.project.name))

    def _view(self, inst: Instance, history: bool = False) -> InstanceView:
        view = instance_view(inst, history)
        return view if self.who.admin else tenant_instance_view(view)

    # Audit log and tokens (admin only) ---------------------------------------------------

    def audit_log(self, limit: int) -> list[AuditView]:
        self.who.require_admin()
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(check_limit(limit))
        with self.db.session() as s:
            return [AuditView.model_validate(e) for e in s.scalars(query)]

    def list_tokens(self) -> list[TokenView]:
        self.who.require_admin()
        with self.db.session() as s:
            return [token_view(t) for t in s.scalars(select(ApiToken).order_by(ApiToken.id))]

    def create_token(self, body: TokenIn) -> NewToken:
        self.who.require_admin()
        with self._change("token create", f"{body.name} ({body.project or 'admin'})") as s:
            row, secret = apitokens.create(s, body.name, body.project)
            return NewToken(**token_view(row).model_dump(), token=secret)

    def revoke_token(self, token_id: str) -> TokenView:
        self.who.require_admin()
        with self._change("token revoke", str(token_id)) as s:
            return token_view(apitokens.revoke(s, token_id))


# Read models from rows ------------------------------------------------------------------


def network_names(s: Session, project_ids: list[int]) -> dict[int, list[str]]:
    """The sorted network names of each project, in one query of two columns."""
    query = select(Network.project_id, Network.name).where(Network.project_id.in_(project_ids))
    names: dict[int, list[str]] = {}
    for project_id, name in s.execute(query.order_by(Network.name)):
        names.setdefault(project_id, []).append(name)
    return names


def project_view(project: Project, networks: list[str]) -> ProjectView:
    return ProjectView(name=project.name, networks=networks, created_at=project.created_at)


def network_view(network: Network) -> NetworkView:
    return NetworkView(
        project=network.project.name,
        name=network.name,
        vlan=network.vlan,
        cidr=network.cidr,
        gateway=network.gateway,
        created_at=network.created_at,
    )


def port_view(port: SwitchPort) -> PortView:
    nic: Nic | None = port.nic
    return PortView(
        interface=port.interface,
        desired_vlan=port.desired_vlan,
        desired_enabled=port.desired_enabled,
        node=nic.node.name if nic else None,
        mac=nic.mac if nic else None,
    )


def switch_view(switch: Switch) -> SwitchView:
    return SwitchView(
        name=switch.name,
        driver=switch.driver,
        address=f"{switch.host}:{switch.port}",
        username=switch.username,
        host_key=switch.host_key,
        ports=[port_view(p) for p in sorted(switch.ports, key=lambda p: p.interface)],
        created_at=switch.created_at,
    )


def node_view(node: Node) -> NodeView:
    nic = node.nics[0] if node.nics else None
    port = nic.port if nic else None
    return NodeView(
        name=node.name,
        state=node.state,
        state_reason=node.state_reason,
        mac=nic.mac if nic else None,
        switch=port.switch.name if port else None,
        port=port.interface if port else None,
        desired_vlan=port.desired_vlan if port else None,
        bmc_url=node.bmc_url,
        bmc_username=node.bmc_username,
        created_at=node.created_at,
    )


def event_view(event: InstanceEvent) -> EventView:
    return EventView.model_validate(event)


def instance_view(instance: Instance, history: bool = False) -> InstanceView:
    return InstanceView(
        id=instance.id,
        name=instance.name,
        project=instance.project.name,
        network=instance.network.name,
        node=instance.node.name,
        image_url=instance.image_url,
        sha256=instance.sha256,
        state=instance.state,
        step=instance.step,
        error=instance.error,
        created_at=instance.created_at,
        updated_at=instance.updated_at,
        history=[event_view(e) for e in instance.events] if history else [],
    )


def tenant_text(text: str | None) -> str | None:
    """What a tenant may read of a lifecycle message: the outcome, not the operator detail
    after the first colon ("step deploy failed: <BMC or switch error>")."""
    return None if text is None else text.split(":", 1)[0]


def tenant_instance_view(view: InstanceView) -> InstanceView:
    """An instance as its tenant sees it: no worker host:pid, no device or BMC error text."""
    history = [
        event.model_copy(update={"message": tenant_text(event.message), "worker": None})
        for event in view.history
    ]
    return view.model_copy(update={"error": tenant_text(view.error), "history": history})


def change_view(change: SwitchChange) -> ChangeView:
    return ChangeView(
        id=change.id,
        switch=change.switch_name,
        at=change.at,
        ports=change.ports,
        ok=change.ok,
        seconds=round(change.seconds, 3),
        message=change.message,
    )


def token_view(row: ApiToken) -> TokenView:
    return TokenView(
        id=row.id,
        name=row.name,
        role=row.role,
        project=row.project.name if row.project else None,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
