"""Switch and BMC passwords never reach the database in clear, on either backend."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from alembic import command
from cryptography.fernet import Fernet
from sqlalchemy import text

from metalnet import inventory
from metalnet.config import load_settings
from metalnet.db.engine import Database, alembic_config, upgrade
from metalnet.errors import ConfigError
from metalnet.secrets import Keyring, create_key_file

SWITCH_PW = "Sw1tch-Clear-Pw"
BMC_PW = "Bmc-Clear-Pw-42"


def _enrol(run) -> None:
    added = run(
        "switch", "add", "tor1", "--driver", "fake", "--address", "127.0.0.1:830",
        "--username", "u", "--password", SWITCH_PW,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    node = run(
        "node", "add", "n1", "--mac", "52:54:00:00:00:01", "--switch", "tor1", "--port",
        "eth1", "--bmc", "ipmi://127.0.0.1:623", "--bmc-username", "admin",
        "--bmc-password", BMC_PW,
    )  # fmt: skip
    assert node.exit_code == 0, node.output


def _raw(url: str, config: Path | None = None) -> list[str]:
    """The stored values as the database holds them, not through the column type."""
    db = Database(load_settings(config, url))
    with db.engine.connect() as c:
        rows = [c.execute(text("SELECT password FROM switches")).scalar_one()]
        rows.append(c.execute(text("SELECT bmc_password FROM nodes")).scalar_one())
    db.engine.dispose()
    return rows


def test_database_file_never_holds_a_clear_password(run, sqlite_url, tmp_path) -> None:
    _enrol(run)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("cli.db")]
    blob = b"".join(p.read_bytes() for p in files)
    assert SWITCH_PW.encode() not in blob and BMC_PW.encode() not in blob
    assert all(v.startswith("gAAAAA") for v in _raw(sqlite_url))
    # The embedded default's key file was created on first use, for its owner only.
    key_file = tmp_path / "xdg" / "metalnet" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # ...and the commands that need the password still read it back.
    with Database(load_settings(None, sqlite_url)).session() as s:
        assert inventory.get_switch(s, "tor1").password == SWITCH_PW
        assert inventory.get_node(s, "n1").bmc_password == BMC_PW


def test_rows_are_encrypted_on_both_backends(db, database_url, monkeypatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("METALNET_SECRET_KEY", key)
    fresh = Database(db.settings)
    with fresh.session() as s:
        inventory.add_switch(s, "tor1", "fake", "127.0.0.1:830", "u", SWITCH_PW)
    with fresh.engine.connect() as c:
        raw = c.execute(text("SELECT password FROM switches")).scalar_one()
    assert SWITCH_PW not in raw and Fernet(key).decrypt(raw.encode()).decode() == SWITCH_PW
    fresh.engine.dispose()


def test_rotate_reencrypts_under_a_new_key_and_keeps_the_old(cli, sqlite_url, tmp_path) -> None:
    key_file = tmp_path / "keys"
    config = tmp_path / "metalnet.toml"
    config.write_text(f'secret_key_file = "{key_file}"\n')
    key_file.write_text(Fernet.generate_key().decode() + "\n")
    os.chmod(key_file, 0o600)

    def run(*args: str):
        return cli("--config", str(config), "--db", sqlite_url, *args)

    assert run("db", "upgrade").exit_code == 0
    _enrol(run)
    old_key = key_file.read_text().split()[0]
    before = _raw(sqlite_url, config)

    rotated = run("secrets", "rotate")
    assert rotated.exit_code == 0, rotated.output
    assert "2 secret(s) re-encrypted" in rotated.stdout
    keys = key_file.read_text().split()
    assert len(keys) == 2 and keys[1] == old_key  # new key first, the old one kept
    after = _raw(sqlite_url, config)
    new_only = Fernet(keys[0].encode())
    assert after != before
    assert [new_only.decrypt(v.encode()).decode() for v in after] == [SWITCH_PW, BMC_PW]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    audit = run("audit", "--json")
    assert '"action": "secrets rotate"' in audit.stdout


def test_a_wrong_key_is_one_clear_error(run, monkeypatch) -> None:
    _enrol(run)
    monkeypatch.setenv("METALNET_SECRET_KEY", Fernet.generate_key().decode())
    shown = run("switch", "show", "tor1")
    assert shown.exit_code == 2
    assert "cannot be decrypted with the key(s) from METALNET_SECRET_KEY" in shown.stderr
    assert "Traceback" not in shown.output


def test_a_bad_key_names_where_it_came_from(run, monkeypatch) -> None:
    monkeypatch.setenv("METALNET_SECRET_KEY", "not-a-key")
    added = run(
        "switch", "add", "s", "--driver", "fake", "--address", "127.0.0.1:830",
        "--username", "u", "--password", "p",
    )  # fmt: skip
    assert added.exit_code == 2 and "METALNET_SECRET_KEY: not a Fernet key" in added.stderr


def test_migration_encrypts_existing_clear_values(sqlite_url) -> None:
    db = Database(load_settings(None, sqlite_url))
    command.upgrade(alembic_config(db.engine), "0003")
    with db.engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO switches (name, driver, host, port, username, password, created_at)"
                " VALUES ('old', 'fake', '127.0.0.1', 830, 'u', :pw, CURRENT_TIMESTAMP)"
            ),
            {"pw": SWITCH_PW},
        )
    upgrade(db.engine)
    with db.engine.connect() as c:
        raw = c.execute(text("SELECT password FROM switches")).scalar_one()
    assert raw.startswith("gAAAAA") and SWITCH_PW not in raw
    with db.session() as s:
        assert inventory.get_switch(s, "old").password == SWITCH_PW
    db.engine.dispose()


def test_configured_key_file_must_exist(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"secret_key_file: .*nope\.key does not exist"):
        Keyring(str(tmp_path / "nope.key")).encrypt("x")


def test_processes_starting_together_share_one_default_key(tmp_path) -> None:
    """Eight keyrings creating the default file at once all end up with the same key."""
    path = tmp_path / "secret.key"
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def first_use() -> None:
        barrier.wait()
        create_key_file(path)
        tokens.append(Keyring(str(path)).encrypt("pw"))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(path.read_text().split()) == 1
    assert {Keyring(str(path)).decrypt(t) for t in tokens} == {"pw"}
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


def test_a_running_process_reads_secrets_rotated_by_another(tmp_path) -> None:
    """`serve` keeps running while `secrets rotate` runs elsewhere: it re-reads the keys."""
    path = tmp_path / "secret.key"
    create_key_file(path)
    serving, rotating = Keyring(str(path)), Keyring(str(path))
    serving.check()
    rotating.add_new_key()
    assert serving.decrypt(rotating.encrypt("pw")) == "pw"
