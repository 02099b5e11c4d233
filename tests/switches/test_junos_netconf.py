"""The NETCONF session layer on its own: any device handler, no library globals touched."""

from __future__ import annotations

import ncclient.transport.session as ncclient_session
import pytest
from lxml import etree

from metalnet.sim.switch import SimSwitch
from metalnet.switches.base import SwitchError, SwitchTarget, SwitchUnreachable
from metalnet.switches.netconf import NetconfSession


def test_importing_the_drivers_leaves_ncclient_alone() -> None:
    import metalnet.switches.junos  # noqa: F401

    assert ncclient_session.TICK == 0.1  # ncclient's own default


def test_a_standard_rpc_over_the_default_handler(sim: SimSwitch) -> None:
    """What the next NETCONF driver needs: connect, RFC 6241 operations, close."""
    session = NetconfSession(sim.target(), timeout=10)
    session.connect()
    try:
        reply = session.call(lambda m: m.get_config(source="running"), "get-config")
        names = reply.root.xpath("//*[local-name()='host-name']/text()")
        assert names == ["sw1"] and reply.warnings == ()
        with pytest.raises(SwitchError, match="switch sw1: syntax error"):
            session.rpc(etree.Element("bogus-rpc"))
    finally:
        session.close()
    assert not session.connected


def test_host_key_hook_decides(sim: SimSwitch) -> None:
    seen: list[str] = []

    def refuse(host: str, fingerprint: str) -> bool:
        seen.append(host)
        return False

    session = NetconfSession(sim.target(), timeout=10, host_key=refuse)
    with pytest.raises(SwitchUnreachable, match="switch sw1: no NETCONF session"):
        session.connect()
    assert seen == [sim.host]


def test_unreachable_is_named(nowhere: SwitchTarget) -> None:
    with pytest.raises(SwitchUnreachable, match="switch rack9-tor: no NETCONF session to"):
        NetconfSession(nowhere, timeout=5).connect()
