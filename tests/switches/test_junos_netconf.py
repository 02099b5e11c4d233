"""The NETCONF session layer on its own: any device handler, no library globals touched."""

from __future__ import annotations

import ncclient.transport.session as ncclient_session
import pytest
from lxml import etree

from metalnet.sim.switch import SimSwitch
from metalnet.switches.base import (
    SwitchError,
    SwitchSessionLost,
    SwitchTarget,
    SwitchUnreachable,
)
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


def test_pipelined_requests_each_get_their_own_reply(sim: SimSwitch) -> None:
    """Requests sent before earlier replies arrive (RFC 6241 section 4.5, "Pipelining"):
    the device answers in order, and each `Pending` gets its own reply or error,
    whichever order they are read in."""
    sim.faults.stall_next("get-software-information", 0.5)
    session = NetconfSession(sim.target(), timeout=10)
    session.connect()
    try:
        first = session.send_rpc(etree.Element("get-software-information"))
        bad = session.send_rpc(etree.Element("bogus-rpc"))
        config = session.send(lambda m: m.get_config(source="running"), "get-config")
        names = config.result().root.xpath("//*[local-name()='host-name']/text()")
        assert names == ["sw1"]
        assert first.operation.event.is_set()  # answered in order: the stalled one first
        with pytest.raises(SwitchError, match="switch sw1: syntax error"):
            bad.result()
        software = first.result().root
        assert software.xpath("//*[local-name()='host-name']/text()") == ["sw1"]
        assert session.connected  # an error reply ends nothing
    finally:
        session.close()


def test_a_lost_session_fails_every_request_in_flight(sim: SimSwitch) -> None:
    sim.faults.drop_next("get-software-information")
    session = NetconfSession(sim.target(), timeout=10)
    session.connect()
    sent = [
        session.send_rpc(etree.Element("get-software-information"), ["ge-0/0/1"]),
        session.send(lambda m: m.get_config(source="running"), "get-config"),
    ]
    for pending in sent:
        with pytest.raises(SwitchSessionLost, match=r"switch sw1.*: session lost during"):
            pending.result()
    session.forget()


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
