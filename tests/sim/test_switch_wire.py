"""The bytes on the wire, seen by a bare SSH client: hello, framing, message-id."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from metalnet.sim.switch import SimSwitch

CLIENT_HELLO = (
    b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    b"<capability>urn:ietf:params:netconf:base:1.0</capability>"
    b"<capability>urn:ietf:params:netconf:base:1.1</capability>"
    b"</capabilities></hello>]]>]]>"
)


async def _exchange(sw: SimSwitch, rpc: bytes, *, chunked: bool = True) -> tuple[bytes, bytes]:
    async with asyncssh.connect(
        sw.host, sw.port, username="admin", password="admin", known_hosts=None
    ) as conn:
        writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        hello = await asyncio.wait_for(reader.readuntil(b"]]>]]>"), 10)
        writer.write(CLIENT_HELLO)
        if chunked:
            writer.write(b"\n#%d\n%s\n##\n" % (len(rpc), rpc))
            reply = await asyncio.wait_for(reader.readuntil(b"\n##\n"), 10)
        else:
            writer.write(rpc + b"]]>]]>")
            reply = await asyncio.wait_for(reader.readuntil(b"]]>]]>"), 10)
        return hello, reply


RPC = b'<rpc message-id="42" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><lock/></rpc>'


def test_hello_offers_base_1_0_only_by_default(switch: SimSwitch) -> None:
    """Published Junos hellos (Junos XML/NETCONF guides' session examples) list
    base:1.0 alone; a client offering 1.1 too gets end-of-message framing."""
    hello, reply = asyncio.run(_exchange(switch, RPC, chunked=False))
    assert b"urn:ietf:params:netconf:base:1.0</capability>" in hello
    assert b"base:1.1" not in hello
    assert reply.rstrip(b"\n]>").endswith(b"</rpc-reply") and b'message-id="42"' in reply


def test_hello_then_chunked_reply_echoing_message_id() -> None:
    with SimSwitch.running(ports=4, netconf_11=True) as sw:
        hello, reply = asyncio.run(_exchange(sw, RPC))
    assert b"<capability>urn:ietf:params:netconf:base:1.1</capability>" in hello
    assert b"candidate:1.0" in hello and b"<session-id>" in hello
    assert reply.startswith(b"\n#")
    assert b'message-id="42"' in reply
    assert b"<?xml" not in reply
    assert b"<error-tag>invalid-value</error-tag>" in reply  # <lock/> without a target


def test_only_netconf_subsystem_is_served(switch: SimSwitch) -> None:
    async def shell() -> int | None:
        async with asyncssh.connect(
            switch.host, switch.port, username="admin", password="admin", known_hosts=None
        ) as conn:
            result = await conn.run("show version")
            return result.exit_status

    assert asyncio.run(shell()) == 1


def test_refused_login(switch: SimSwitch) -> None:
    switch.faults.refuse_login = True
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(_exchange(switch, b"<rpc/>", chunked=False))
