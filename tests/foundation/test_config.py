"""Configuration: defaults work, every bad value names its key."""

from pathlib import Path

import pytest

from metalnet.config import load_settings
from metalnet.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "metalnet.toml"
    path.write_text(text)
    return path


def test_defaults_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METALNET_DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.database_url.startswith("sqlite:///")
    assert settings.embedded
    assert settings.service_vlan not in settings.project_vlan_range


def test_file_then_env_then_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'database_url = "sqlite:///a.db"\nservice_vlan = 20\n')
    assert load_settings(path).database_url == "sqlite:///a.db"
    monkeypatch.setenv("METALNET_DATABASE_URL", "sqlite:///b.db")
    assert load_settings(path).database_url == "sqlite:///b.db"
    assert load_settings(path, "sqlite:///c.db").database_url == "sqlite:///c.db"
    assert load_settings(path).service_vlan == 20


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("service_vlan = 0", "service_vlan"),
        ("service_vlan = 5000", "service_vlan"),
        ('service_vlan = "ten"', "service_vlan"),
        ("service_vlan = 150", "service_vlan"),
        ("parking_vlan = 150", "parking_vlan"),
        ("parking_vlan = 10", "parking_vlan"),
        ('project_vlan_range = "300-200"', "project_vlan_range"),
        ('project_vlan_range = "100"', "project_vlan_range"),
        ('project_vlan_range = "100-4095"', "project_vlan_range"),
        ('park_disabled = "yes"', "park_disabled"),
        ("park_disabled = 1", "park_disabled"),
        ("bogus = 1", "bogus"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(write(tmp_path, text))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
