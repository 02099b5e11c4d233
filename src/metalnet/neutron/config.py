"""The `[metalnet]` group of Neutron's configuration files (oslo.config)."""

from __future__ import annotations

from oslo_config import cfg

GROUP = "metalnet"

OPTS = [
    cfg.URIOpt("url", schemes=["http", "https"], help="Base URL of the metalnet controller."),
    cfg.StrOpt("token", secret=True, help="metalnet admin API token."),
    cfg.StrOpt("token_file", help="File holding the metalnet admin API token (first line)."),
    cfg.ListOpt(
        "physical_networks",
        default=[],
        help="Physical networks whose VLAN segments metalnet binds (empty: none).",
    ),
    cfg.StrOpt(
        "switch_lookup",
        default="switch_info",
        choices=[
            ("switch_info", "local_link_information switch_info is the metalnet switch name"),
            ("switch_id", "local_link_information switch_id is the switch's chassis MAC"),
        ],
        help="How a local_link_information entry names a metalnet switch.",
    ),
    cfg.FloatOpt(
        "timeout",
        default=300.0,
        min=1.0,
        help="Seconds to wait for metalnet to commit a port and read it back.",
    ),
]


def register(conf: cfg.ConfigOpts = cfg.CONF) -> cfg.ConfigOpts:
    """Register the options (idempotent) and return the config object."""
    conf.register_opts(OPTS, group=GROUP)
    return conf


def token(conf: cfg.ConfigOpts = cfg.CONF) -> str:
    """The API token, from `token` or the first line of `token_file`."""
    group = conf[GROUP]
    if group.token:
        return group.token
    if group.token_file:
        with open(group.token_file, encoding="utf-8") as handle:
            return handle.readline().strip()
    raise cfg.RequiredOptError("token", cfg.OptGroup(GROUP))


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """For oslo-config-generator."""
    return [(GROUP, OPTS)]
