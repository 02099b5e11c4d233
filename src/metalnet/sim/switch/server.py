"""NETCONF over SSH: the asyncssh server, the hello exchange and the RPC loop.

One `NetconfServer` serves one simulated switch. Each SSH session that asks for
the `netconf` subsystem gets a `NetconfSession`, which answers RPCs one at a time
(as Junos does: a long commit leaves the session silent) and, however it ends,
hands its lock and uncommitted changes back to the configuration database.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from functools import cache
from xml.sax.saxutils import quoteattr

import asyncssh
from lxml import etree

from metalnet.sim.switch import rpcs
from metalnet.sim.switch.datastore import ConfigDatabase, SessionInfo
from metalnet.sim.switch.errors import ErrorSpec, RpcFailure
from metalnet.sim.switch.faults import Faults
from metalnet.sim.switch.framing import FrameReader, FramingError, frame
from metalnet.sim.switch.rpcs import DeviceInfo, RpcContext
from metalnet.sim.switch.tree import clean, localname

log = logging.getLogger("metalnet.sim.switch")

BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
BASE_10 = "urn:ietf:params:netconf:base:1.0"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
JUNOS_CAPABILITIES = (
    "urn:ietf:params:netconf:capability:candidate:1.0",
    "urn:ietf:params:netconf:capability:confirmed-commit:1.0",
    "urn:ietf:params:netconf:capability:validate:1.0",
    "urn:ietf:params:xml:ns:netconf:base:1.0",
    "urn:ietf:params:xml:ns:netconf:capability:candidate:1.0",
    "urn:ietf:params:xml:ns:netconf:capability:confirmed-commit:1.0",
    "urn:ietf:params:xml:ns:netconf:capability:validate:1.0",
    "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring",
    "http://xml.juniper.net/netconf/junos/1.0",
    "http://xml.juniper.net/dmi/system/1.0",
)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
_session_ids = itertools.count(40001)
INTERNAL_ERROR = "mgd: internal error"


@cache
def default_host_key() -> asyncssh.SSHKey:
    """One Ed25519 host key per process: generating keys per switch would slow fleets down."""
    return asyncssh.generate_private_key("ssh-ed25519")


class NetconfServer:
    """Accepts SSH connections for one switch and runs a NetconfSession per channel."""

    def __init__(
        self,
        *,
        db: ConfigDatabase,
        device: DeviceInfo,
        faults: Faults,
        username: str,
        password: str,
        netconf_11: bool = False,
        host_key: asyncssh.SSHKey | None = None,
    ) -> None:
        self.db = db
        self.device = device
        self.faults = faults
        self.username = username
        self.password = password
        self.capabilities = (BASE_10, *((BASE_11,) if netconf_11 else ()), *JUNOS_CAPABILITIES)
        self.host_key = host_key or default_host_key()
        self.sessions: dict[int, NetconfSession] = {}
        self._acceptor: asyncssh.SSHAcceptor | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 picks a free port); return the bound port."""
        self._acceptor = await asyncssh.create_server(
            lambda: _Auth(self),
            host,
            port,
            server_host_keys=[self.host_key],
            process_factory=self._serve,
            encoding=None,
            line_editor=False,
            keepalive_interval=0,
        )
        return self._acceptor.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open session."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        for session in list(self.sessions.values()):
            session.drop()

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        if process.subsystem != "netconf":
            process.stderr.write(b"only the netconf subsystem is available\n")
            process.exit(1)
            return
        session = NetconfSession(self, process)
        self.sessions[session.info.id] = session
        try:
            await session.run()
        finally:
            self.sessions.pop(session.info.id, None)
            self.db.session_ended(session.info)

    def kill(self, session_id: int) -> bool:
        """Drop another session (kill-session); its lock is released at once."""
        session = self.sessions.get(session_id)
        if session is None:
            return False
        self.db.session_ended(session.info)
        session.drop()
        return True


class _Auth(asyncssh.SSHServer):
    """Password authentication against the switch's one account."""

    def __init__(self, server: NetconfServer) -> None:
        self._server = server

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        if self._server.faults.refuse_login:
            return False
        return username == self._server.username and password == self._server.password


class NetconfSession:
    """One NETCONF session: hello, then RPCs answered in order until it ends."""

    def __init__(self, server: NetconfServer, process: asyncssh.SSHServerProcess[bytes]) -> None:
        self.server = server
        self.process = process
        self.info = SessionInfo(next(_session_ids), process.get_extra_info("username") or "")
        self.reader = FrameReader()
        self._closing = False
        self.context = RpcContext(
            session=self.info,
            db=server.db,
            faults=server.faults,
            device=server.device,
            end_session=self._end,
            kill_session=server.kill,
        )

    def drop(self) -> None:
        """Cut the SSH connection without a goodbye, like a crashed peer or link."""
        self.process.channel.get_connection().abort()

    def _end(self) -> None:
        self._closing = True

    async def run(self) -> None:
        """Serve the session until the client closes it or the connection is lost."""
        try:
            self._send(self._hello())
            hello = await self._receive()
            if hello is None:
                return
            self.reader.chunked = self._client_speaks_11(hello)
            while not self._closing:
                message = await self._receive()
                if message is None:
                    return
                if not await self._answer(message):
                    return
            await self.process.stdout.drain()
            self.process.exit(0)
        except (asyncssh.Error, OSError, FramingError, asyncio.IncompleteReadError) as exc:
            log.info("%s session %d ended: %s", self.server.device.name, self.info.id, exc)

    def _hello(self) -> bytes:
        caps = "".join(f"<capability>{c}</capability>" for c in self.server.capabilities)
        return (
            f'<hello xmlns="{BASE_NS}"><capabilities>{caps}</capabilities>'
            f"<session-id>{self.info.id}</session-id></hello>"
        ).encode()

    def _client_speaks_11(self, hello: bytes) -> bool:
        try:
            root = etree.fromstring(hello, _PARSER)
        except etree.XMLSyntaxError:
            return False
        caps = {(c.text or "").strip() for c in root.iter() if localname(c.tag) == "capability"}
        return BASE_11 in caps and BASE_11 in self.server.capabilities

    async def _receive(self) -> bytes | None:
        while True:
            message = self.reader.next_message()
            if message is not None:
                return message
            data = await self.process.stdin.read(65536)
            if not data:
                return None
            self.reader.feed(data)

    def _send(self, message: bytes) -> None:
        self.process.stdout.write(frame(message, chunked=self.reader.chunked))

    async def _answer(self, message: bytes) -> bool:
        """Handle one `<rpc>`; False when the connection was dropped by a fault."""
        started = time.monotonic()
        try:
            rpc = etree.fromstring(message, _PARSER)
        except etree.XMLSyntaxError as exc:
            self._send(
                self._reply({}, [ErrorSpec(f"XML parse error: {exc}", tag="malformed-message")])
            )
            return True
        op = next((clean(c) for c in rpc if isinstance(c.tag, str)), None)
        name = op.tag if op is not None else "(empty)"
        attrs = {localname(k): v for k, v in rpc.attrib.items()}
        stall = self.server.faults.take_stall(name)
        if stall:
            await asyncio.sleep(stall)
        drop = self.server.faults.take_drop(name)
        if drop is False:
            return self._dropped(name)
        reply, outcome = await self._execute(op, attrs)
        if drop:
            return self._dropped(name)
        self._send(reply)
        log.info(
            "%s session %d %s: %s (%.0f ms)",
            self.server.device.name,
            self.info.id,
            name,
            outcome,
            (time.monotonic() - started) * 1000,
        )
        return True

    async def _execute(self, op: etree._Element | None, attrs: dict[str, str]) -> tuple[bytes, str]:
        if op is None:
            return self._reply(attrs, [ErrorSpec("empty rpc", tag="missing-element")]), "error"
        try:
            payload = await rpcs.dispatch(self.context, op)
        except RpcFailure as failure:
            return self._reply(attrs, list(failure.errors)), "error: " + str(failure).splitlines()[
                0
            ]
        except Exception:  # a switch answers every rpc; a simulator bug must not end the session
            log.exception("%s session %d %s failed", self.server.device.name, self.info.id, op.tag)
            return self._reply(attrs, [ErrorSpec(INTERNAL_ERROR)]), "error: " + INTERNAL_ERROR
        return self._reply(attrs, payload), "ok"

    def _reply(self, attrs: dict[str, str], payload: rpcs.Payload) -> bytes:
        release = rpcs.junos_release(self.server.device.version)
        return _reply(rpcs.JUNOS_NS.format(release=release), attrs, payload)

    def _dropped(self, name: str) -> bool:
        log.info("%s session %d %s: dropped (fault)", self.server.device.name, self.info.id, name)
        self.drop()
        return False


def _reply(junos_ns: str, attrs: dict[str, str], payload: rpcs.Payload) -> bytes:
    """An `<rpc-reply>` echoing the rpc's attributes, without an XML declaration.

    The payload is spliced in unqualified so it inherits the base namespace, as on
    a real Junos wire (ncclient looks for `<ok/>` and `<rpc-error>` there).
    """
    head = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    if payload is None:
        body = b"<ok/>"
    else:
        elements = [p.element() if isinstance(p, ErrorSpec) else p for p in payload]
        body = b"".join(etree.tostring(e) for e in elements)
    return (
        f'<rpc-reply xmlns="{BASE_NS}" xmlns:junos="{junos_ns}"{head}>'.encode()
        + body
        + b"</rpc-reply>"
    )
