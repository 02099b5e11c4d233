"""Commands import only what they use: the import set of a fresh process per command.

A command that loads the simulators, the demo, the controller or Alembic costs every
user a second of start-up for nothing; times are in bench/startup.py, this test checks
the cause (what is imported), which does not depend on how loaded the machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from metalnet.cli.main import COMMANDS
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade

# `click` is the separate package: typer carries its own, so importing both is waste.
NEVER = ("alembic", "metalnet.sim", "metalnet.demo", "uvicorn", "fastapi", "ncclient", "click")
# On the embedded SQLite default: SQLAlchemy's PostgreSQL dialect (with every driver
# module) is imported only for a PostgreSQL URL; typer's pydantic adapters only for a
# value that needs converting (none of the commands below has one).
NOT_ON_SQLITE = ("sqlalchemy.dialects.postgresql", "typer._adapters")
# What only doing the work needs: `metalnet X --help` lists X from its module alone.
NOT_FOR_HELP = (
    *NEVER,
    "pydantic",
    "sqlalchemy",
    "httpx",
    "cryptography",
    "asyncssh",
    "metalnet.db",
    "metalnet.service",
    "metalnet.agent",
)

PROBE = """
import json, sys
from metalnet.cli.main import app
try:
    app(sys.argv[1:], prog_name="metalnet")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imported(*args: str, stdin: str = "") -> tuple[int, list[str]]:
    """Run `metalnet ARGS` in a fresh interpreter; its exit code and every module it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], report["modules"]


def probed(code: str) -> list:
    """What `code`, run in a fresh interpreter, prints as JSON on its last line."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def db_url(tmp_path_factory) -> str:
    """A migrated database holding one switch, so `node add` runs to completion."""
    url = f"sqlite:///{tmp_path_factory.mktemp('startup') / 'm.db'}"
    db = Database(load_settings(None, url))
    upgrade(db.engine)
    db.engine.dispose()
    code, _ = imported(
        "--db", url, "switch", "add", "tor1", "--driver", "fake",
        "--address", "127.0.0.1:830", "--username", "u", "--password", "pw",
    )  # fmt: skip
    assert code == 0
    return url


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("project", "--help"),
        ("node", "--help"),
        ("switch", "--help"),
        ("project", "list"),
        ("node", "add", "n1", "--mac", "52:54:00:00:00:01", "--switch", "tor1",
         "--port", "eth1", "--bmc", "ipmi://127.0.0.1:623"),
    ],
)  # fmt: skip
def test_command_imports_nothing_it_does_not_use(db_url, args) -> None:
    code, modules = imported("--db", db_url, *args)
    assert code in (0, None)
    assert heavy(modules, (*NEVER, *NOT_ON_SQLITE)) == []


def test_project_list_imports_no_other_area(db_url) -> None:
    """Listing projects reads two tables: it imports no DHCP, switch-driver or BMC-power
    module (their validators are imported where nodes, switches and instances are
    added), and no TOML parser when there is no configuration file to read."""
    code, modules = imported("--db", db_url, "project", "list")
    assert code in (0, None)
    other = ("metalnet.dhcp", "metalnet.switches", "metalnet.power", "tomllib")
    assert heavy(modules, other) == []


def test_read_models_are_built_on_first_use() -> None:
    """Importing the service builds no read model's validator (pydantic `defer_build`;
    request bodies are built, for FastAPI); the first one a command makes is built then,
    and serializes as before."""
    probe = (
        "import json, metalnet.service.local, metalnet.service.models as m\n"
        "views = [c for c in vars(m).values() if isinstance(c, type) and issubclass(c, m.View)]\n"
        "built = [c.__name__ for c in views if c.__pydantic_complete__]\n"
        "view = m.ProjectView(name='acme', networks=['n1'], created_at=None)\n"
        "print(json.dumps([len(views), built, view.model_dump(mode='json'),"
        " m.ProjectView.__pydantic_complete__, m.ProjectIn.__pydantic_complete__]))\n"
    )
    count, built, dumped, view_built, body_built = probed(probe)
    assert count > 10 and built == []
    assert dumped == {"name": "acme", "networks": ["n1"], "created_at": None}
    assert view_built and body_built


def test_the_first_collection_waits_for_start_up_then_defaults_return() -> None:
    """`metalnet` makes START_UP_OBJECTS objects before the collector first runs (a
    command's start-up makes fewer); the collection that then comes restores the
    default thresholds, so a long-running command collects as usual."""
    probe = (
        "import gc, json\n"
        "from metalnet.cli.main import START_UP_OBJECTS, collect_after_start_up\n"
        "defaults = gc.get_threshold()\n"
        "collect_after_start_up()\n"
        "runs = lambda: gc.get_stats()[0]['collections']\n"
        "before = runs()\n"
        "start_up = [[] for _ in range(START_UP_OBJECTS // 2)]\n"
        "during = runs() - before\n"
        "more = [[] for _ in range(START_UP_OBJECTS)]\n"
        "print(json.dumps([during, runs() - before, gc.get_threshold() == defaults,"
        " len(gc.callbacks)]))\n"
    )
    during, after, restored, callbacks = probed(probe)
    assert during == 0
    assert after >= 1 and restored and callbacks == 0


def test_the_metalnet_process_does_not_look_for_pydantic_plugins(db_url) -> None:
    """The first read model a command builds would make pydantic scan every installed
    distribution's entry points for plugins; the `metalnet` process turns them off."""
    assert imported("--db", db_url, "project", "create", "plugins")[0] in (0, None)
    probe = (
        "import importlib.metadata, json, sys\n"
        "asked = []\n"
        "scan = importlib.metadata.entry_points\n"
        "importlib.metadata.entry_points = lambda **kw: asked.append(kw) or scan(**kw)\n"
        "from metalnet.cli.main import run\n"
        "sys.argv = ['metalnet', '--db', sys.argv[1], 'project', 'list', '--json']\n"
        "try:\n"
        "    run()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(asked), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, db_url], capture_output=True, text=True, timeout=120
    )
    assert '"name": "plugins"' in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_switch_apply_imports_no_driver_it_does_not_use(db_url) -> None:
    """A change parking an unbound port of the fake switch is committed without the
    Junos driver, its NETCONF client or the simulators being imported; nor pydantic
    (nothing of it is validated by a read model; its file name is taken as it is) or,
    with no terminal to show it on, the progress bar."""
    change = '[{"switch": "tor1", "port": "eth7", "vlan": 4000}]'
    code, modules = imported("--db", db_url, "switch", "apply", "-", stdin=change)
    assert code in (0, None)
    banned = (*NEVER, *NOT_ON_SQLITE, "metalnet.switches.junos", "asyncssh")
    assert heavy(modules, (*banned, "pydantic", "rich.progress")) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_command_imports_only_the_command_line(command) -> None:
    """Global options nobody gave are not validated (typer would import pydantic for
    that), and no command module imports the database, service or agent at its top."""
    code, modules = imported(command, "--help")
    assert code in (0, None)
    assert heavy(modules, NOT_FOR_HELP) == []


def heavy(modules: list[str], banned: tuple[str, ...]) -> list[str]:
    """The modules that are, or are inside, a banned package."""
    return [m for m in modules if any(m == b or m.startswith(b + ".") for b in banned)]


def test_help_opens_no_database(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    code, modules = imported("--db", url, "--help")
    assert code in (0, None)
    assert "sqlalchemy" not in modules and not (tmp_path / "never.db").exists()


def test_a_command_process_closes_its_database_and_keeps_its_exit_code(tmp_path) -> None:
    """`metalnet` as a process (`metalnet.cli.main:run`, which freezes the heap before
    the interpreter's shutdown): the embedded SQLite file is closed when the command
    ends (no write-ahead log left beside it, so copying the file copies everything),
    what it wrote is there for the next process, and a refusal still exits 2."""
    url = f"sqlite:///{tmp_path / 'm.db'}"

    def metalnet(*args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "metalnet", "--db", url, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    assert metalnet("db", "upgrade").returncode == 0
    assert metalnet("project", "create", "acme").returncode == 0
    assert not (tmp_path / "m.db-wal").exists()
    listed = metalnet("project", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["name"] == "acme"
    refused = metalnet("project", "create", "a;b")
    assert refused.returncode == 2 and "invalid project name 'a;b'" in refused.stderr
    assert not (tmp_path / "m.db-wal").exists()
