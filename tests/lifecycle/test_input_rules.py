"""Input rules of the lifecycle through the CLI and on both databases: where images may
come from, and the uniqueness that keeps tenants apart.

Rule: image URLs are http(s) only, to the configured image server or an allow-listed
host or network, never the controller's own address. Rule: switch address, BMC URL,
node MAC and (project, instance name) among live instances are unique in the database.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from metalnet import inventory
from metalnet.config import load_settings
from metalnet.db.models import Instance
from metalnet.errors import ConfigError, Conflict, InputError
from metalnet.lifecycle import instances
from metalnet.validate import ImagePolicy

SHA = "a" * 64


@pytest.fixture
def run(cli, sqlite_url, tmp_path):
    config = tmp_path / "metalnet.toml"
    config.write_text(
        'image_server = "http://10.0.0.5:8080"\n'
        'image_allow = ["images.example.org", "192.0.2.0/24"]\n'
        'controller_listen = "10.0.0.1:8470"\n'
        'agent_url = "http://192.0.2.1:8470"\n'
    )

    def invoke(*args: str):
        return cli("--config", str(config), "--db", sqlite_url, *args)

    assert invoke("db", "upgrade").exit_code == 0
    assert invoke("project", "create", "acme").exit_code == 0
    assert invoke("network", "create", "web", "-p", "acme", "--cidr", "10.20.0.0/24").exit_code == 0
    assert (
        invoke(
            "switch",
            "add",
            "sw",
            "--driver",
            "fake",
            "--address",
            "127.0.0.1:830",
            "--username",
            "u",
            "--password",
            "p",
        ).exit_code
        == 0
    )
    assert (
        invoke(
            "node",
            "add",
            "n1",
            "--mac",
            "52:54:00:00:00:01",
            "--switch",
            "sw",
            "--port",
            "eth1",
            "--bmc",
            "ipmi://127.0.0.1:623",
            "--skip-initial-erase",
        ).exit_code
        == 0
    )
    return invoke


def create(run, image: str):
    return run(
        "instance",
        "create",
        "i1",
        "-p",
        "acme",
        "--network",
        "web",
        "--node",
        "n1",
        "--image",
        image,
        "--sha256",
        SHA,
    )


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("file:///etc/shadow", "expected http(s)://HOST/PATH"),
        ("gopher://10.0.0.5:8080/x", "expected http(s)://HOST/PATH"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254:80 is not an allowed"),
        ("http://10.0.0.5:22/x", "10.0.0.5:22 is not an allowed"),
        ("http://user:pw@10.0.0.5:8080/x", "expected http(s)://HOST/PATH"),
        ("http://192.0.2.1:8470/metrics", "points at the controller itself"),
        ("http://10.0.0.1:8470/v1/nodes", "points at the controller itself"),
        ("http://images.example.org.evil.net/x", "is not an allowed image server"),
    ],
)
def test_image_url_outside_the_policy_is_refused_in_one_line(run, image, why) -> None:
    result = create(run, image)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and why in result.stderr
    assert run("instance", "list", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize(
    "image",
    [
        "http://10.0.0.5:8080/img/base.raw",
        "https://images.example.org/base.raw",
        "http://192.0.2.77/base.raw",
    ],
)
def test_image_url_within_the_policy_is_taken(run, image) -> None:
    result = create(run, image)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value", ['["10.0.0.0/33"]', '["a b"]', '"10.0.0.0/8"'])
def test_bad_image_allow_is_a_config_error(tmp_path, value) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f"image_allow = {value}\n")
    with pytest.raises(ConfigError, match="config key image_allow"):
        load_settings(config)


def test_instance_names_are_unique_per_project_among_live_instances(db) -> None:
    settings = dataclasses.replace(db.settings, image_allow=("img",))
    with db.session() as s:
        inventory.add_switch(s, "sw", "fake", "127.0.0.1:830", "u", "p")
        for i, project in enumerate(("a", "b"), start=1):
            inventory.create_project(s, project)
            inventory.create_network(s, settings, project, "net", f"10.{i}.0.0/24")
            mac, bmc = f"52:54:00:00:00:0{i}", f"ipmi://127.0.0.1:62{i}"
            inventory.add_node(s, settings, f"n{i}", mac, "sw", f"eth{i}", bmc, initial_erase=False)
            instances.create_instance(
                s, "dup", project, "net", f"n{i}", "http://img/x", SHA, settings=settings
            )
    with pytest.raises(Conflict, match="several projects"), db.session() as s:
        instances.delete_instance(s, "dup")
    with db.session() as s:
        assert instances.delete_instance(s, "dup", "b").project.name == "b"
        assert instances.get_instance(s, "dup", "a").state == "building"
    # the database itself refuses a second live "dup" in project a, whatever Python checks
    with pytest.raises(IntegrityError), db.session() as s:
        s.execute(update(Instance).values(project_id=1))
    with db.session() as s:
        s.execute(update(Instance).where(Instance.state == "deleting").values(state="deleted"))
    with db.session() as s:  # deleted instances keep their names for history
        s.execute(update(Instance).values(project_id=1))


def test_switch_address_and_bmc_are_unique(db) -> None:
    with db.session() as s:
        inventory.add_switch(s, "sw", "fake", "127.0.0.1:830", "u", "p")
        inventory.add_node(
            s, db.settings, "n1", "52:54:00:00:00:01", "sw", "eth1", "ipmi://127.0.0.1:623"
        )
    taken = re.escape("switch address 127.0.0.1:830 is already switch 'sw'")
    with pytest.raises(Conflict, match=taken), db.session() as s:
        inventory.add_switch(s, "sw2", "fake", "127.0.0.1:830", "u", "p")
    taken = re.escape("BMC ipmi://127.0.0.1:623 already belongs to node 'n1'")
    with pytest.raises(Conflict, match=taken), db.session() as s:
        inventory.add_node(
            s, db.settings, "n2", "52:54:00:00:00:02", "sw", "eth2", "ipmi://127.0.0.1:623"
        )
    with pytest.raises(InputError), db.session() as s:
        inventory.add_node(s, db.settings, "n3", "nope", "sw", "eth3", "ipmi://127.0.0.1:624")


POLICY = ImagePolicy(
    allow=("images.example.org", "10.0.0.5:8080", "192.0.2.0/24"),
    deny=("192.0.2.1:8470", "0.0.0.0:9000"),
)


def oracle(scheme: str, host: str, port: int) -> bool:
    """The policy restated independently: what an image URL may reach."""
    if scheme not in ("http", "https") or port == 9000 or (host, port) == ("192.0.2.1", 8470):
        return False
    in_net = host.startswith("192.0.2.") and 0 <= int(host.rsplit(".", 1)[1]) <= 255
    return host == "images.example.org" or (host, port) == ("10.0.0.5", 8080) or in_net


@given(
    scheme=st.sampled_from(["http", "https", "ftp", "file", "HTTP"]),
    host=st.sampled_from(
        [
            "images.example.org",
            "images.example.org.evil",
            "10.0.0.5",
            "192.0.2.1",
            "192.0.2.200",
            "192.0.3.1",
            "127.0.0.1",
            "169.254.169.254",
            "evil",
        ]
    ),
    port=st.sampled_from([80, 443, 8080, 8470, 9000, 22]),
    path=st.text(alphabet="abc/._-", max_size=12),
)
def test_image_policy_accepts_exactly_what_it_allows(scheme, host, port, path) -> None:
    url = f"{scheme}://{host}:{port}/{path}"
    try:
        POLICY.check(url)
        accepted = True
    except InputError:
        accepted = False
    assert accepted == oracle(scheme.lower(), host, port), url
