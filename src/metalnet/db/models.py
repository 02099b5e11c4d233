"""The inventory and lifecycle tables: what is cabled where, and what should be.

The desired state of every switch port lives here (`SwitchPort.desired_vlan` and
`desired_enabled`) and is written before any device is touched, so a crash is
recovered by re-applying it.
Uniqueness that safety depends on (a MAC, a port's NIC, a VLAN, a node's instance)
is a database constraint, not a check in Python, so concurrent writers cannot race.

Annotations are evaluated by Python when a class is created, not postponed: SQLAlchemy
evaluates each annotation it gets as a string with `eval` (sqlalchemy/util/typing.py,
`de_stringify_annotation`), which for 130 mapped attributes cost ~1 % of the start-up
of `metalnet project list`. Only a relationship's target is a string (the classes refer
to each other), as SQLAlchemy's documentation writes it: `Mapped[list["Nic"]]`.
"""

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from metalnet.lifecycle.states import LIVE, InstanceState, NodeState, TaskState
from metalnet.secrets import EncryptedText

LIVE_SQL = "state IN (" + ", ".join(f"'{state}'" for state in LIVE) + ")"
"""The live instance states as a partial index's condition."""


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the tables use."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every metalnet table."""


class Switch(Base):
    """A top-of-rack switch metalnet manages. `password` is a secret: never printed, and
    stored encrypted. `host_key` is the SSH host key fingerprint every session must meet."""

    __tablename__ = "switches"
    __table_args__ = (UniqueConstraint("host", "port", name="uq_switches_host_port"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    driver: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(64))
    password: Mapped[str] = mapped_column(EncryptedText)
    host_key: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # The MAC the switch announces as its LLDP chassis ID: how Ironic's
    # local_link_information (`switch_id`) names it.
    chassis_mac: Mapped[str | None] = mapped_column(String(17), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    ports: Mapped[list["SwitchPort"]] = relationship(back_populates="switch")


class SwitchPort(Base):
    """One interface of a switch, with the VLAN metalnet wants it in, and whether enabled.

    A port is wanted disabled only while its node may still run a tenant's OS outside
    its project VLAN (a power-off that failed): in the service VLAN, but passing nothing.
    """

    __tablename__ = "switch_ports"
    __table_args__ = (UniqueConstraint("switch_id", "interface"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    switch_id: Mapped[int] = mapped_column(ForeignKey("switches.id", ondelete="RESTRICT"))
    interface: Mapped[str] = mapped_column(String(32))
    desired_vlan: Mapped[int | None] = mapped_column(Integer, nullable=True)
    desired_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    switch: Mapped["Switch"] = relationship(back_populates="ports")
    nic: Mapped["Nic | None"] = relationship(back_populates="port")
    attachment: Mapped["PortAttachment | None"] = relationship(back_populates="port")


class PortAttachment(Base):
    """A port owned by a system outside metalnet (e.g. `neutron:<port id>`), in one VLAN.

    One owner per port is a database constraint; while the attachment exists the port's
    desired VLAN is the attachment's, and removing it parks the port.
    """

    __tablename__ = "port_attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[int] = mapped_column(
        ForeignKey("switch_ports.id", ondelete="CASCADE"), unique=True
    )
    owner: Mapped[str] = mapped_column(String(255))
    vlan: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    port: Mapped["SwitchPort"] = relationship(back_populates="attachment")


class Node(Base):
    """A physical server: its BMC and its lifecycle state."""

    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("bmc_url", name="uq_nodes_bmc_url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    bmc_url: Mapped[str] = mapped_column(String(512))
    bmc_username: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bmc_password: Mapped[str | None] = mapped_column(EncryptedText, nullable=True)
    state: Mapped[str] = mapped_column(String(20), default=NodeState.AVAILABLE)
    state_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    agent_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The worker erasing a newly enrolled node (state cleaning), as for instances.
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    nics: Mapped[list["Nic"]] = relationship(back_populates="node", cascade="all, delete-orphan")


class Nic(Base):
    """A node's network interface, cabled to at most one switch port (and vice versa)."""

    __tablename__ = "nics"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    port_id: Mapped[int | None] = mapped_column(
        ForeignKey("switch_ports.id", ondelete="RESTRICT"), unique=True, nullable=True
    )

    node: Mapped["Node"] = relationship(back_populates="nics")
    port: Mapped["SwitchPort | None"] = relationship(back_populates="nic")


class Project(Base):
    """A tenant. Its quotas, when NULL, are the configuration's defaults."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    quota_networks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quota_instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    networks: Mapped[list["Network"]] = relationship(back_populates="project")


class Network(Base):
    """A project's layer-2 network: one VLAN (unique installation-wide) and one subnet."""

    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(63))
    vlan: Mapped[int] = mapped_column(Integer, unique=True)
    cidr: Mapped[str] = mapped_column(String(18))
    gateway: Mapped[str | None] = mapped_column(String(15), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    project: Mapped["Project"] = relationship(back_populates="networks")


class IpAllocation(Base):
    """A static address of a NIC on a network (a DHCP reservation MAC -> IP)."""

    __tablename__ = "ip_allocations"
    __table_args__ = (
        UniqueConstraint("network_id", "address"),
        UniqueConstraint("network_id", "nic_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id", ondelete="RESTRICT"))
    nic_id: Mapped[int] = mapped_column(ForeignKey("nics.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(15))

    network: Mapped["Network"] = relationship()
    nic: Mapped["Nic"] = relationship()


class Instance(Base):
    """A project's use of a node, from spawn to terminate, with its current lifecycle step."""

    __tablename__ = "instances"
    # One live instance per (project, name); deleted ones keep their name for history.
    # Migration 0004 creates this partial index on both databases; here it carries only
    # its SQLite predicate, for schemas built from the models (tests on SQLite). A
    # `postgresql_where` would make SQLAlchemy import its PostgreSQL dialect, with every
    # driver module, to validate the keyword (sqlalchemy/sql/base.py, DialectKWArgs):
    # ~6 % of the start-up of every command, for a model PostgreSQL never builds
    # schemas from (its schema comes from the migrations only, and Alembic's
    # autogenerate compares an index's columns and uniqueness, not its predicate:
    # alembic/ddl/postgresql.py, compare_indexes).
    __table_args__ = (
        Index(
            "uq_instances_live_name",
            "project_id",
            "name",
            unique=True,
            sqlite_where=text(LIVE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"))
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id", ondelete="RESTRICT"))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="RESTRICT"))
    # node_id while this instance owns the node, NULL once it released it: the unique
    # constraint makes giving one node to two instances impossible, even under races.
    holds_node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="RESTRICT"), unique=True, nullable=True
    )
    image_url: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default=InstanceState.BUILDING)
    step: Mapped[str] = mapped_column(String(32), default="queued")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The worker carrying the lifecycle out, and until when; an expired lease (a dead
    # worker) lets another worker take over and resume from the recorded step.
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    project: Mapped["Project"] = relationship()
    network: Mapped["Network"] = relationship()
    node: Mapped["Node"] = relationship(foreign_keys=[node_id])
    events: Mapped[list["InstanceEvent"]] = relationship(
        back_populates="instance", order_by="InstanceEvent.id"
    )


class InstanceEvent(Base):
    """One recorded lifecycle step of an instance: the history `instance show` prints."""

    __tablename__ = "instance_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    step: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)

    instance: Mapped["Instance"] = relationship(back_populates="events")


class AgentTask(Base):
    """Work for the agent on a node's ramdisk: deploy an image or erase the disk."""

    __tablename__ = "agent_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    # NULL for the erase of a newly enrolled node, which has no instance
    instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    image_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(10), default=TaskState.PENDING)
    phase: Mapped[str | None] = mapped_column(String(10), nullable=True)
    # 64-bit: images and disks are larger than 2 GiB
    done_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class QuarantineMark(Base):
    """A quarantine remembered by the node's MAC and BMC, so that deleting the node and
    adding it again (under any name) brings it back quarantined. `node clear` drops it."""

    __tablename__ = "quarantine_marks"

    id: Mapped[int] = mapped_column(primary_key=True)
    mac: Mapped[str] = mapped_column(String(17), index=True)
    bmc_url: Mapped[str] = mapped_column(String(512), index=True)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SwitchChange(Base):
    """The switch change log: one row per commit attempt (ports, VLANs, result, duration)."""

    __tablename__ = "switch_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    switch_id: Mapped[int | None] = mapped_column(
        ForeignKey("switches.id", ondelete="SET NULL"), nullable=True
    )
    switch_name: Mapped[str] = mapped_column(String(63))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ports: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    ok: Mapped[bool] = mapped_column(Boolean)
    seconds: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, default="")


class ApiToken(Base):
    """A bearer token for the REST API: admin (everything) or one project's. Stored hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    role: Mapped[str] = mapped_column(String(10))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    project: Mapped["Project | None"] = relationship()


class AuditEntry(Base):
    """Who changed what, when, through which door (CLI or API), and how it ended."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(Text, default="")
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
