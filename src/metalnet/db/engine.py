"""Engines, sessions and the schema-version gate.

Commands other than `db upgrade` refuse a database whose schema is missing or older
than this release, except the embedded SQLite default, which upgrades itself so a
first-time user never has to run a migration by hand.

The gate reads the revision Alembic records (table `alembic_version`) and compares it
with the head of the migration files, read as text; Alembic itself is imported only to
migrate, since it costs more start-up time than a command that just lists projects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from metalnet import secrets
from metalnet.config import Settings
from metalnet.errors import ConfigError, DatabaseNotReady

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*=\s*['\"]?([\w.-]+|None)['\"]?", re.M)
# Every lifecycle thread and every switch lane may hold a connection at once during
# a mass deployment; the default pool of 5 + 10 made them queue for connections.
POOL_SIZE, POOL_OVERFLOW = 20, 80


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgresql:// URLs."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database URL {url!r} is not a valid SQLAlchemy URL") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _enable_sqlite_foreign_keys(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL: readers do not wait for the one writer. synchronous=NORMAL: a commit survives
    # the process being killed (the lifecycle's crash model) without an fsync per write,
    # which made every desired-state write cost ~20 ms; an OS crash may lose the last
    # commits, which the reconciler then finds as drift. PostgreSQL is for production.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine with foreign keys enforced on SQLite and its parent directory created."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
        )
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)


def alembic_config(engine: Engine) -> Config:
    """Alembic configured in code: no alembic.ini to ship or find."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision(_engine: Engine | None = None) -> str:
    """The newest migration this release ships: the one no other migration follows."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((k, v) for k, v in _REVISION_LINE.findall(path.read_text()))
        if "revision" in found:
            revisions.add(found["revision"])
            parents.add(found.get("down_revision"))
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"migrations in {MIGRATIONS} have heads {heads}, expected one")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None when it has no schema."""
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None  # no alembic_version table: an empty database


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to head; idempotent. Returns (before, after)."""
    from alembic import command

    before = current_revision(engine)
    command.upgrade(alembic_config(engine), "head")
    return before, current_revision(engine) or ""


def ensure_ready(engine: Engine, settings: Settings) -> None:
    """Refuse an un-migrated database (or upgrade the embedded default in place), then
    refuse unusable secret keys and settings that contradict what the database holds."""
    secrets.keyring_of(engine.dialect).check()
    current = current_revision(engine)
    head = head_revision(engine)
    if current == head or settings.embedded:
        if current != head:
            upgrade(engine)
        check_settings(engine, settings)
        return
    state = "has no metalnet schema" if current is None else f"is at revision {current}"
    raise DatabaseNotReady(
        f"database {make_url(engine.url).render_as_string()} {state} (this release needs "
        f"{head}): run `metalnet db upgrade`"
    )


def check_settings(engine: Engine, settings: Settings) -> None:
    """The VLAN settings must agree with the networks already stored: the service and
    parking VLANs belong to no network, and every network's VLAN lies in the project
    range. A setting changed after networks exist would otherwise put a tenant on the
    provisioning network, or make `network create` hand out a VLAN it cannot police."""
    from metalnet.db.models import Network, Project

    query = select(Network.vlan, Network.name, Project.name).join(Project)
    with engine.connect() as connection:
        networks = connection.execute(query).all()
    rng = settings.project_vlan_range
    for vlan, network, project in networks:
        where = f"network {network!r} of project {project!r}"
        for key in ("service_vlan", "parking_vlan"):
            if getattr(settings, key) == vlan:
                raise ConfigError(
                    f"config key {key}: {vlan} is the VLAN of {where} "
                    f"(settings from {settings.source})"
                )
        if vlan not in rng:
            raise ConfigError(
                f"config key project_vlan_range: {rng} excludes VLAN {vlan} of {where} "
                f"(settings from {settings.source})"
            )


class Database:
    """An engine plus a session factory; one per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        secrets.attach(self.engine, secrets.Keyring(settings.secret_key_file or None))
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A PostgreSQL read waits on the network; SQLite in WAL mode reads a local
        # file and never waits for the writer (https://sqlite.org/wal.html). The API
        # runs reads that cannot wait on its event loop (metalnet.api.routing).
        self.reads_wait = self.engine.dialect.name != "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any exception."""
        with self.sessions() as session, session.begin():
            yield session
