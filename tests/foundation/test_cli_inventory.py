"""The inventory CLI: happy paths, --json, and every kind of bad input (exit 2, one line)."""

import itertools
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalnet.cli import common
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade

ADMIN = ("--password", "pw")
COUNTER = itertools.count(2)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """One SQLite file migrated to head; each test works on its own copy of it."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    db = Database(load_settings(None, f"sqlite:///{path}"))
    upgrade(db.engine)
    db.engine.dispose()
    return path


@pytest.fixture
def run(cli, tmp_path, migrated):
    """`metalnet --db <fresh migrated sqlite> ...`."""
    path = tmp_path / "cli.db"
    shutil.copy(migrated, path)

    def invoke(*args: str, input: str | None = None):
        return cli("--db", f"sqlite:///{path}", *args, input=input)

    return invoke


@pytest.fixture
def lab(run):
    """One project with a network, one switch, one node."""
    assert run("project", "create", "acme").exit_code == 0
    assert run("network", "create", "web", "-p", "acme", "--cidr", "10.20.0.0/24").exit_code == 0
    r = run(
        "switch",
        "add",
        "tor1",
        "--driver",
        "fake",
        "--address",
        "127.0.0.1:830",
        "--username",
        "u",
        *ADMIN,
    )
    assert r.exit_code == 0, r.output
    r = run(
        "node",
        "add",
        "n1",
        "--mac",
        "AA-BB-CC-00-00-01",
        "--switch",
        "tor1",
        "--port",
        "eth1",
        "--bmc",
        "ipmi://127.0.0.1:623",
        "--bmc-username",
        "admin",
        "--bmc-password",
        "bmcpw",
    )
    assert r.exit_code == 0, r.output
    return run


def test_unmigrated_database_refused(cli, sqlite_url) -> None:
    result = cli("--db", sqlite_url, "project", "list")
    assert result.exit_code == 3
    assert "run `metalnet db upgrade`" in result.stderr


def test_db_upgrade_twice(run) -> None:
    result = run("db", "upgrade")
    assert result.exit_code == 0 and "already at revision" in result.output


def test_lists_as_json_with_stable_keys_and_no_secrets(lab) -> None:
    nodes = json.loads(lab("node", "list", "--json").stdout)
    assert nodes[0]["mac"] == "aa:bb:cc:00:00:01"
    assert nodes[0]["desired_vlan"] == 10
    assert set(nodes[0]) >= {"name", "state", "mac", "switch", "port", "bmc_url"}
    network = json.loads(lab("network", "show", "web", "-p", "acme", "--json").stdout)
    assert network["vlan"] == 100 and network["gateway"] == "10.20.0.1"
    everything = "".join(
        lab(*args).output
        for args in [
            ("switch", "list", "--json"),
            ("switch", "show", "tor1", "--json"),
            ("switch", "show", "tor1"),
            ("node", "show", "n1", "--json"),
            ("node", "show", "n1"),
            ("node", "list"),
        ]
    )
    assert "pw" not in everything.replace("password", "")
    assert "bmcpw" not in everything


def test_password_from_env_and_prompt(run, monkeypatch) -> None:
    monkeypatch.setenv("SW_PW", "from-env")
    args = ("--driver", "fake", "--address", "127.0.0.1:830", "--username", "u")
    assert run("switch", "add", "s1", *args, "--password-env", "SW_PW").exit_code == 0
    other = ("--driver", "fake", "--address", "127.0.0.1:831", "--username", "u")
    assert run("switch", "add", "s2", *other, input="typed\n").exit_code == 0
    missing = run("switch", "add", "s3", *args, "--password-env", "NOPE_PW")
    assert missing.exit_code == 2 and "NOPE_PW" in missing.stderr


BAD_INPUT = [
    (
        (
            "node",
            "add",
            "n2",
            "--mac",
            "aa:bb:cc:dd:ee",
            "--switch",
            "tor1",
            "--port",
            "eth2",
            "--bmc",
            "ipmi://127.0.0.1:623",
        ),
        "invalid MAC 'aa:bb:cc:dd:ee'",
    ),
    (
        (
            "node",
            "add",
            "n2",
            "--mac",
            "01:00:5e:00:00:01",
            "--switch",
            "tor1",
            "--port",
            "eth2",
            "--bmc",
            "ipmi://127.0.0.1:623",
        ),
        "multicast",
    ),
    (
        (
            "node",
            "add",
            "n2",
            "--mac",
            "ff:ff:ff:ff:ff:ff",
            "--switch",
            "tor1",
            "--port",
            "eth2",
            "--bmc",
            "ipmi://127.0.0.1:623",
        ),
        "broadcast",
    ),
    (
        (
            "node",
            "add",
            "n2",
            "--mac",
            "aabb.cc00.0001",
            "--switch",
            "tor1",
            "--port",
            "eth2",
            "--bmc",
            "ipmi://127.0.0.1:623",
        ),
        "MAC aa:bb:cc:00:00:01 is already registered",
    ),
    (
        (
            "node",
            "add",
            "n2",
            "--mac",
            "aa:bb:cc:00:00:02",
            "--switch",
            "tor1",
            "--port",
            "eth1",
            "--bmc",
            "ipmi://127.0.0.1:623",
        ),
        "already bound to node 'n1'",
    ),
    (
        (
            "node",
            "add",
            "n2",
            "--mac",
            "aa:bb:cc:00:00:02",
            "--switch",
            "tor1",
            "--port",
            "eth2;x",
            "--bmc",
            "ipmi://127.0.0.1:623",
        ),
        "interface 'eth2;x'",
    ),
    (
        (
            "node",
            "add",
            "n2",
            "--mac",
            "aa:bb:cc:00:00:02",
            "--switch",
            "nope",
            "--port",
            "eth2",
            "--bmc",
            "ipmi://127.0.0.1:623",
        ),
        "unknown switch 'nope'",
    ),
    (
        (
            "node",
            "add",
            "n2",
            "--mac",
            "aa:bb:cc:00:00:02",
            "--switch",
            "tor1",
            "--port",
            "eth2",
            "--bmc",
            "telnet://x",
        ),
        "invalid BMC URL",
    ),
    (
        (
            "node",
            "add",
            "N 2",
            "--mac",
            "aa:bb:cc:00:00:02",
            "--switch",
            "tor1",
            "--port",
            "eth2",
            "--bmc",
            "ipmi://127.0.0.1:623",
        ),
        "invalid node name 'N 2'",
    ),
    (
        ("network", "create", "db", "-p", "acme", "--cidr", "10.30.0.0/24", "--vlan", "0"),
        "invalid VLAN 0",
    ),
    (
        ("network", "create", "db", "-p", "acme", "--cidr", "10.30.0.0/24", "--vlan", "4095"),
        "invalid VLAN 4095",
    ),
    (
        ("network", "create", "db", "-p", "acme", "--cidr", "10.30.0.0/24", "--vlan", "5000"),
        "invalid VLAN 5000",
    ),
    (
        ("network", "create", "db", "-p", "acme", "--cidr", "10.30.0.0/24", "--vlan", "ten"),
        "invalid VLAN 'ten'",
    ),
    (
        ("network", "create", "db", "-p", "acme", "--cidr", "10.30.0.0/24", "--vlan", "10"),
        "service",
    ),
    (
        ("network", "create", "db", "-p", "acme", "--cidr", "10.30.0.0/24", "--vlan", "4000"),
        "parking",
    ),
    (
        ("network", "create", "db", "-p", "acme", "--cidr", "10.30.0.0/24", "--vlan", "100"),
        "VLAN 100 is already taken",
    ),
    (("network", "create", "db", "-p", "acme", "--cidr", "10.30.0.7/24"), "host bits set"),
    (("network", "create", "db", "-p", "acme", "--cidr", "banana"), "invalid CIDR 'banana'"),
    (
        ("network", "create", "db", "-p", "acme", "--cidr", "10.20.0.128/25"),
        "overlaps network 'web'",
    ),
    (("network", "create", "db", "-p", "nope", "--cidr", "10.30.0.0/24"), "unknown project 'nope'"),
    (("network", "create", "d{b}", "-p", "acme", "--cidr", "10.30.0.0/24"), "invalid network name"),
    (("project", "create", "acme"), "project 'acme' already exists"),
    (("project", "create", "a;b"), "invalid project name 'a;b'"),
    (("project", "delete", "acme"), "still has networks (web)"),
    (("switch", "delete", "tor1"), "still has nodes on ports eth1"),
    (
        (
            "switch",
            "add",
            "tor2",
            "--driver",
            "nosuch",
            "--address",
            "127.0.0.1:830",
            "--username",
            "u",
            *ADMIN,
        ),
        "unknown switch driver 'nosuch'",
    ),
    (
        (
            "switch",
            "add",
            "tor2",
            "--driver",
            "fake",
            "--address",
            "127.0.0.1",
            "--username",
            "u",
            *ADMIN,
        ),
        "invalid switch address '127.0.0.1'",
    ),
    (
        (
            "switch",
            "add",
            "tor2",
            "--driver",
            "fake",
            "--address",
            "127.0.0.1:70000",
            "--username",
            "u",
            *ADMIN,
        ),
        "port must be 1-65535",
    ),
    (("node", "show", "ghost"), "unknown node 'ghost'"),
    (("node", "delete", "ghost"), "unknown node 'ghost'"),
]


@pytest.mark.parametrize(
    ("args", "message"),
    BAD_INPUT,
    ids=[" ".join(a[:2]) + f" {i}" for i, (a, _) in enumerate(BAD_INPUT)],
)
def test_bad_input_one_line_exit_2_nothing_written(lab, args, message) -> None:
    before = [
        lab(group, "list", "--json").stdout for group in ("project", "network", "switch", "node")
    ]
    result = lab(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]
    after = [
        lab(group, "list", "--json").stdout for group in ("project", "network", "switch", "node")
    ]
    assert before == after


def test_every_command_has_help_with_example(cli) -> None:
    for group in ("project", "network", "switch", "node"):
        for command in ("list", "show", "delete"):
            result = cli(group, command, "--help")
            assert result.exit_code == 0
            assert "Example" in result.output


MARKUP = st.lists(
    st.sampled_from(
        ["[/oops]", "[bold]", "[/]", "[link=http://x]", "[red", "]", "\\[", "[", "a", "=", "#"]
    ),
    min_size=1,
    max_size=8,
).map("".join)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=MARKUP)
def test_user_text_is_never_terminal_markup(lab, monkeypatch, tmp_path, text) -> None:
    """Markup-like text a user typed (an image URL, a refused name) prints as itself in
    tables, `show` fields and the audit log, and never crashes the command."""
    monkeypatch.setattr(common.console, "width", 1000)  # no wrapping inside the text
    config = tmp_path / "images.toml"
    config.write_text('image_allow = ["img"]\n')
    monkeypatch.setenv("METALNET_CONFIG", str(config))
    n = next(COUNTER)
    node = (
        "node", "add", f"m{n}", "--mac", f"52:54:00:00:{n // 256:02x}:{n % 256:02x}",
        "--switch", "tor1", "--port", f"eth{n}", "--bmc", f"ipmi://127.0.0.1:{1000 + n}",
        "--skip-initial-erase",
    )  # fmt: skip
    added = lab(*node)
    assert added.exit_code == 0, added.output
    image = f"http://img/{text}"
    made = lab(
        "instance", "create", f"i{n}", "-p", "acme", "--network", "web",
        "--node", f"m{n}", "--image", image, "--sha256", "a" * 64,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    refused = f"{text}[/]"  # never a valid project name
    assert lab("project", "create", refused).exit_code == 2  # refused, audited with the name
    for args, shown in [
        (("instance", "list"), f"i{n}"),
        (("instance", "show", f"i{n}"), image),
        (("audit",), refused),
    ]:
        result = lab(*args)
        assert result.exit_code == 0, result.output
        assert shown in result.stdout
