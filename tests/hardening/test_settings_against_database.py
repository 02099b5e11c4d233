"""Settings that contradict stored networks refuse to open the database, naming the key,
the value and the network; one rule (`db.engine.check_settings`) for every command."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from metalnet.config import Settings, VlanRange
from metalnet.db.engine import check_settings
from metalnet.db.models import Base, Network, Project
from metalnet.errors import ConfigError


@pytest.fixture
def with_config(cli, sqlite_url, tmp_path):
    """Run the CLI with a TOML configuration given as text."""

    def invoke(toml: str, *args: str):
        path = tmp_path / "metalnet.toml"
        path.write_text(toml)
        return cli("--config", str(path), "--db", sqlite_url, *args)

    assert invoke("", "db", "upgrade").exit_code == 0
    assert invoke("", "project", "create", "acme").exit_code == 0
    made = invoke("", "network", "create", "web", "-p", "acme", "--cidr", "10.1.0.0/24",
                  "--vlan", "150")  # fmt: skip
    assert made.exit_code == 0, made.output
    return invoke


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("service_vlan = 150\nproject_vlan_range = '200-3999'\n", "config key service_vlan: 150"),
        ("parking_vlan = 150\nproject_vlan_range = '200-3999'\n", "config key parking_vlan: 150"),
        ("project_vlan_range = '200-3999'\n", "config key project_vlan_range: 200-3999 excludes"),
    ],
)
def test_every_command_refuses_settings_that_collide(with_config, toml, message) -> None:
    for command in (("network", "list", "-p", "acme"), ("serve", "--listen", "127.0.0.1:0")):
        result = with_config(toml, *command)
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert "network 'web' of project 'acme'" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_agreeing_settings_open_the_database(with_config) -> None:
    listed = with_config("project_vlan_range = '150-160'\n", "network", "list", "-p", "acme")
    assert listed.exit_code == 0, listed.output


@given(
    service=st.integers(1, 40),
    parking=st.integers(1, 40),
    first=st.integers(1, 40),
    span=st.integers(0, 40),
    vlans=st.sets(st.integers(1, 40), max_size=6),
)
@settings(max_examples=200, deadline=None)
def test_refused_exactly_when_a_network_collides(service, parking, first, span, vlans) -> None:
    """The rule as a property over a real (in-memory) database: refused iff some
    network's VLAN is the service or parking VLAN, or outside the project range."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        project = Project(name="p")
        s.add(project)
        s.flush()
        for v in vlans:
            s.add(Network(project_id=project.id, name=f"n{v}", vlan=v, cidr="10.0.0.0/24"))
    config = Settings(
        database_url="sqlite://",
        service_vlan=service,
        parking_vlan=parking,
        project_vlan_range=VlanRange(first, first + span),
    )
    bad = any(v in (service, parking) or not first <= v <= first + span for v in vlans)
    if bad:
        keys = r"config key (service_vlan|parking_vlan|project_vlan_range)"
        with pytest.raises(ConfigError, match=keys):
            check_settings(engine, config)
    else:
        check_settings(engine, config)
    engine.dispose()
