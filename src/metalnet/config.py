"""Configuration: a TOML file (`--config` or METALNET_CONFIG) over built-in defaults.

The defaults work out of the box (embedded SQLite in the user's data directory), so
a new operator can try metalnet before writing any file. Every value is checked on
load and a bad one is reported with the key that holds it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from metalnet.errors import ConfigError, InputError
from metalnet.validate import DEFAULT_VLAN, ImagePolicy, check_image_entry, is_digits

ENV_CONFIG = "METALNET_CONFIG"
ENV_DATABASE_URL = "METALNET_DATABASE_URL"


def default_database_url() -> str:
    """SQLite file in the user's data directory: the embedded default."""
    data_dir = Path(platformdirs.user_data_dir("metalnet"))
    return f"sqlite:///{data_dir / 'metalnet.db'}"


@dataclass(frozen=True)
class VlanRange:
    """Inclusive range of VLAN ids that project networks are allocated from."""

    first: int
    last: int

    def __contains__(self, vlan: object) -> bool:
        return isinstance(vlan, int) and self.first <= vlan <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Settings:
    """Validated settings. Construct with `load_settings`, not directly."""

    database_url: str = field(default_factory=default_database_url)
    service_vlan: int = 10
    parking_vlan: int = 4000
    # Parked (unbound) ports are also disabled: nothing plugged into an unused port
    # reaches anyone, the parking VLAN included (DESIGN: "an unused VLAN or disabled").
    park_disabled: bool = False
    project_vlan_range: VlanRange = VlanRange(100, 3999)
    switch_timeout: float = 120.0
    bmc_timeout: float = 10.0
    step_timeout: float = 600.0
    controller_listen: str = "127.0.0.1:8470"
    agent_url: str = ""
    service_interface: str = ""
    service_cidr: ipaddress.IPv4Network | None = None
    boot_server: ipaddress.IPv4Address | None = None
    ramdisk_dir: str = field(
        default_factory=lambda: platformdirs.user_data_dir("metalnet") + "/ramdisk"
    )
    poll_interval: float = 0.5
    lease_seconds: float = 15.0
    reconcile_interval: float = 300.0
    image_server: str = ""
    image_allow: tuple[str, ...] = ()
    # DHCP: which host interface serves a VLAN (template, or explicit per-VLAN names),
    # in which network namespace (empty: the host's), and where dnsmasq's files live.
    dhcp_interface: str = ""
    dhcp_interfaces: dict[int, str] = field(default_factory=dict)
    dhcp_netns: str = ""
    dhcp_state_dir: str = field(
        default_factory=lambda: platformdirs.user_data_dir("metalnet") + "/dhcp"
    )
    dhcp_lease_seconds: int = 3600
    dhcp_dns_servers: tuple[str, ...] = ()
    dhcp_interval: float = 2.0
    # Encryption keys of stored secrets (metalnet.secrets); "" is the default key file.
    secret_key_file: str = ""
    # What a project may hold unless `metalnet project quota` says otherwise.
    quota_networks: int = 64
    quota_instances: int = 1000
    source: str = "built-in defaults"

    @property
    def controller_url(self) -> str:
        """Where agents reach the controller: `agent_url`, else http://controller_listen."""
        return self.agent_url or f"http://{self.controller_listen}"

    @property
    def image_policy(self) -> ImagePolicy:
        """Where images may come from: `image_server`'s host and `image_allow`; never
        from the controller's own listeners (its listen address and `agent_url`)."""
        allow = list(self.image_allow)
        if self.image_server:
            allow.append(_endpoint(self.image_server, with_default_port=False))
        deny = [self.controller_listen]
        if self.agent_url:
            deny.append(_endpoint(self.agent_url))
        return ImagePolicy(tuple(allow), tuple(deny))

    @property
    def dhcp_configured(self) -> bool:
        """True when this host is told which interfaces serve DHCP (it then runs dnsmasq)."""
        return bool(self.dhcp_interface or self.dhcp_interfaces)

    @property
    def embedded(self) -> bool:
        """True when the database is the built-in SQLite default (may upgrade itself)."""
        return self.database_url == default_database_url()


def _endpoint(url: str, with_default_port: bool = True) -> str:
    """HOST:PORT of an http(s) URL (HOST alone for any port, unless it names one)."""
    parts = urlsplit(url)
    if parts.port is None and not with_default_port:
        return parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.hostname}:{parts.port or default}"


def _vlan(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4094:
        raise ConfigError(f"config key {key}: {value!r} is not a VLAN id 1-4094")
    return value


def _vlan_range(key: str, value: object) -> VlanRange:
    text = str(value)
    first, sep, last = text.partition("-")
    if not sep or not is_digits(first.strip()) or not is_digits(last.strip()):
        raise ConfigError(f"config key {key}: {value!r} is not a range like 100-3999")
    rng = VlanRange(_vlan(key, int(first)), _vlan(key, int(last)))
    if rng.first > rng.last:
        raise ConfigError(f"config key {key}: range {value!r} is empty")
    return rng


def _positive(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"config key {key}: {value!r} must be a positive number of seconds")
    return float(value)


def _count(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"config key {key}: {value!r} must be a whole number 0 or more")
    return value


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"config key {key}: {value!r} must be true or false")
    return value


def _text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key {key}: {value!r} must be a non-empty string")
    return value


def _url(key: str, value: object) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"config key {key}: {value!r} is not an http(s) URL")
    return value


def _image_allow(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key {key}: {value!r} must be a list of strings")
    try:
        return tuple(check_image_entry(v) for v in value)
    except InputError as exc:
        raise ConfigError(f"config key {key}: {exc}") from None


def _cidr(key: str, value: object) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(_text(key, value))
    except ValueError as exc:
        raise ConfigError(f"config key {key}: {value!r} is not an IPv4 network ({exc})") from None


def _address(key: str, value: object) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(_text(key, value))
    except ValueError:
        raise ConfigError(f"config key {key}: {value!r} is not an IPv4 address") from None


def _interface_template(key: str, value: object) -> str:
    """A name with `{vlan}` in it that gives a valid interface name for every VLAN."""
    text = _text(key, value)
    if "{vlan" not in text:
        raise ConfigError(f"config key {key}: {text!r} must contain {{vlan}}, e.g. 'eth1.{{vlan}}'")
    try:
        names = [text.format(vlan=vlan) for vlan in (1, 4094)]
    except (KeyError, IndexError, ValueError):
        raise ConfigError(
            f"config key {key}: {text!r} may use only the placeholder {{vlan}}"
        ) from None
    for name in names:
        _interface_name(key, name)
    return text


def _interface_name(key: str, name: object) -> str:
    from metalnet.dhcp.network import check_interface

    try:
        return check_interface(name)
    except InputError:
        raise ConfigError(
            f"config key {key}: {name!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -)"
        ) from None


def _interface_map(key: str, value: object) -> dict[int, str]:
    """VLAN -> interface, as a TOML table: [dhcp_interfaces] "100" = "eth1.100"."""
    if not isinstance(value, dict):
        raise ConfigError(
            f'config key {key}: {value!r} must be a table like {{"100" = "eth1.100"}}'
        )
    result: dict[int, str] = {}
    for vlan, name in value.items():
        if not is_digits(str(vlan)):
            raise ConfigError(f"config key {key}: {vlan!r} is not a VLAN id 1-4094")
        result[_vlan(key, int(vlan))] = _interface_name(key, name)
    if len(set(result.values())) < len(result):
        raise ConfigError(f"config key {key}: one interface is named for two VLANs: {value!r}")
    return result


def _netns(key: str, value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}", value):
        raise ConfigError(f"config key {key}: {value!r} is not a network namespace name")
    return value


def _directory(key: str, value: object) -> str:
    from metalnet.dhcp.network import check_path

    try:
        return str(check_path(value, "directory"))
    except InputError:
        raise ConfigError(
            f"config key {key}: {value!r} must be an absolute path of A-Z a-z 0-9 _ . / -"
        ) from None


def _lease_seconds(key: str, value: object) -> int:
    from metalnet.dhcp.network import MIN_LEASE_SECONDS

    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_LEASE_SECONDS:
        raise ConfigError(
            f"config key {key}: {value!r} must be a whole number of seconds, "
            f"at least {MIN_LEASE_SECONDS}"
        )
    return value


def _addresses(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"config key {key}: {value!r} must be a list of IPv4 addresses")
    try:
        return tuple(str(ipaddress.IPv4Address(item)) for item in value)
    except ValueError:
        raise ConfigError(f"config key {key}: {value!r} must be a list of IPv4 addresses") from None


_PARSERS = {
    "database_url": _text,
    "service_vlan": _vlan,
    "parking_vlan": _vlan,
    "park_disabled": _flag,
    "project_vlan_range": _vlan_range,
    "switch_timeout": _positive,
    "bmc_timeout": _positive,
    "step_timeout": _positive,
    "controller_listen": _text,
    "agent_url": _text,
    "service_interface": _text,
    "service_cidr": _cidr,
    "boot_server": _address,
    "ramdisk_dir": _text,
    "poll_interval": _positive,
    "lease_seconds": _positive,
    "reconcile_interval": _positive,
    "image_server": _url,
    "image_allow": _image_allow,
    "dhcp_interface": _interface_template,
    "dhcp_interfaces": _interface_map,
    "dhcp_netns": _netns,
    "dhcp_state_dir": _directory,
    "dhcp_lease_seconds": _lease_seconds,
    "dhcp_dns_servers": _addresses,
    "dhcp_interval": _positive,
    "secret_key_file": _text,
    "quota_networks": _count,
    "quota_instances": _count,
}


def _read_toml(path: Path) -> dict[str, object]:
    """The file's table; tomllib is imported only when there is a file to read."""
    import tomllib

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def _check_vlans(settings: Settings) -> None:
    rng = settings.project_vlan_range
    for key in ("service_vlan", "parking_vlan"):
        if getattr(settings, key) == DEFAULT_VLAN:
            raise ConfigError(
                f"config key {key}: VLAN {DEFAULT_VLAN} is the switches' default VLAN, "
                "where every unconfigured port sits; pick another"
            )
    if DEFAULT_VLAN in rng:
        raise ConfigError(
            f"config key project_vlan_range: {rng} includes VLAN {DEFAULT_VLAN}, the switches' "
            "default VLAN"
        )
    if settings.service_vlan in rng:
        raise ConfigError(
            f"config key service_vlan: {settings.service_vlan} lies inside project_vlan_range {rng}"
        )
    if settings.parking_vlan in rng:
        raise ConfigError(
            f"config key parking_vlan: {settings.parking_vlan} lies inside project_vlan_range {rng}"
        )
    if settings.parking_vlan == settings.service_vlan:
        raise ConfigError(
            f"config key parking_vlan: {settings.parking_vlan} equals service_vlan; "
            "unused ports must not sit on the provisioning network"
        )


def _check_service_network(settings: Settings) -> None:
    """The boot server's address must be a host address of the service network."""
    cidr, server = settings.service_cidr, settings.boot_server
    if cidr is None or server is None:
        return
    if server not in cidr or server in (cidr.network_address, cidr.broadcast_address):
        raise ConfigError(f"config key boot_server: {server} is not a host address of {cidr}")


def load_settings(
    config_path: str | Path | None = None, database_url: str | None = None
) -> Settings:
    """Defaults, then the TOML file, then METALNET_DATABASE_URL, then an explicit URL."""
    path = config_path or os.environ.get(ENV_CONFIG)
    values: dict[str, object] = {}
    source = "built-in defaults"
    if path:
        raw = _read_toml(Path(path))
        known = {f.name for f in fields(Settings)} - {"source"}
        for key, value in raw.items():
            if key not in known:
                raise ConfigError(f"config file {path}: unknown key {key!r}")
            values[key] = _PARSERS[key](key, value)
        source = str(path)
    env_url = os.environ.get(ENV_DATABASE_URL)
    if env_url:
        values["database_url"] = env_url
    if database_url:
        values["database_url"] = database_url
    settings = Settings(**values, source=source)  # type: ignore[arg-type]
    _check_vlans(settings)
    _check_service_network(settings)
    return settings
