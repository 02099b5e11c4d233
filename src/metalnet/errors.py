"""Errors a user can cause, each carrying the exit code the CLI uses for it.

Every layer raises these with one line that names the bad value; the CLI and the
API turn them into one line on stderr (exit code) or one JSON error (HTTP status).
"""

from __future__ import annotations


class MetalnetError(Exception):
    """Base of the errors that end in one clear line for the user."""

    exit_code = 1
    code = "error"


class InputError(MetalnetError, ValueError):
    """A value the user typed is malformed or out of range."""

    exit_code = 2
    code = "bad_input"


class NotFound(MetalnetError, LookupError):
    """The named project, network, switch, node or instance does not exist."""

    exit_code = 2
    code = "not_found"


class Conflict(MetalnetError):
    """The request contradicts what the inventory already holds (taken MAC, VLAN, port...)."""

    exit_code = 2
    code = "conflict"


class ConfigError(MetalnetError):
    """The configuration file or environment holds an invalid value."""

    exit_code = 2
    code = "bad_config"


class DatabaseNotReady(MetalnetError):
    """The database schema is missing or older than this release."""

    exit_code = 3
    code = "db_not_migrated"
