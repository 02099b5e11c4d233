"""Juniper Junos EX/QFX switches: driver, typed configuration, reply parsing."""

from metalnet.switches.junos.config import Dialect, check_junos_interface
from metalnet.switches.junos.driver import JunosDriver

__all__ = ["Dialect", "JunosDriver", "check_junos_interface"]
