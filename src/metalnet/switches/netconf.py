"""A NETCONF session to one switch (ncclient over SSH), for any NETCONF driver.

The session knows nothing of a vendor's configuration: it connects, checks the
host key, sends one RPC at a time and maps every failure to metalnet's
`SwitchError` family with the switch's own words. Drivers (Junos today) build the
RPCs and read the replies.

Two things differ from a plain `ncclient.manager.connect`:

- Replies carrying only `<rpc-error>` of severity `warning` are not failures
  (RFC 6241 section 4.3 lets a server warn on success; Junos does so for licences
  and deprecated statements). They are logged and returned with the reply.
- Requests are pipelined: `send` puts a request on the wire and returns at once,
  `Pending.result` waits for its reply. NETCONF allows a client to send requests
  before earlier replies arrive; the server handles them one at a time and answers
  in order (RFC 6241 section 4.5, "Pipelining"). A driver can so ask for several
  things in one round trip, and a best-effort request (an unlock) need not be
  waited for at all. Every request is sent this way; `call` sends and waits.
- The session thread waits on its socket *and* on a wake-up pipe, so a queued RPC
  leaves at once and an idle session sleeps until data arrives. ncclient's own
  thread polls every `ncclient.transport.session.TICK` (100 ms): either slow RPCs
  or, with a lower tick, a busy idle loop for every open session. The change is
  made in a session subclass; ncclient's module globals are left alone. The SSH
  transport under it checks for a close once a second instead of ten times.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lxml import etree
from ncclient import manager
from ncclient.manager import Manager
from ncclient.operations import RaiseMode, RPCError
from ncclient.operations.rpc import RPC
from ncclient.transport import AuthenticationError, NCClientError, SSHSession, TransportError
from ncclient.transport.errors import SessionCloseError
from ncclient.transport.parser import DefaultXMLParser, SAXFilterXMLNotFoundError
from ncclient.transport.session import END_DELIM, MSG_DELIM, NetconfBase
from ncclient.xml_ import to_ele
from paramiko import SSHException

from metalnet.switches.base import (
    SwitchAuthError,
    SwitchError,
    SwitchSessionLost,
    SwitchTarget,
    SwitchUnreachable,
)

log = logging.getLogger(__name__)

# (host, fingerprint) -> accept; ncclient's `unknown_host_cb` signature.
HostKeyCheck = Callable[[str, str], bool]

# paramiko's transport thread reads its socket with a 0.1 s timeout
# (`Transport._active_check_timeout`) only to notice a close or a due rekey or
# keepalive; a close also closes the socket, so one check a second is enough for an
# idle session. Set on each session's own socket, not on the class.
TRANSPORT_CHECK_SECONDS = 1.0


def one_line(message: str) -> str:
    """Device messages span lines (lock holders, paths); metalnet errors are one line."""
    return " ".join(message.split())


def error_text(errors: Sequence[RPCError]) -> str:
    """The switch's own words: every `<error-message>` of the reply, `error: ` dropped."""
    parts = [e.message for e in errors if e.message]
    return "; ".join(one_line(p).removeprefix("error: ") for p in parts) or "operation failed"


def warnings_of(reply: etree._Element) -> list[str]:
    """The messages of every `<rpc-error>` of severity warning in a reply."""
    found = []
    for error in reply.iter("{*}rpc-error", "rpc-error"):
        severity = error.findtext("{*}error-severity") or error.findtext("error-severity")
        if (severity or "").strip() == "warning":
            text = error.findtext("{*}error-message") or error.findtext("error-message") or ""
            found.append(one_line(text))
    return found


class WakingSSHSession(SSHSession):
    """ncclient's SSH session whose thread sleeps until the socket or a send wakes it.

    Same framing and parser as ncclient's loop (`Session.run`); only the wait differs:
    a socketpair registered beside the channel is written by `send`, so there is no
    poll interval to tune and no wake-up while the session is idle.
    """

    def __init__(self, device_handler: object) -> None:
        super().__init__(device_handler)
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)

    def connect(self, *args: object, **kwargs: object) -> None:
        try:
            super().connect(*args, **kwargs)
        except BaseException:
            self._wake_read.close()
            self._wake_write.close()
            raise

    def send(self, message: str) -> None:
        super().send(message)
        self._wake()

    def close(self) -> None:
        super().close()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    def _frame(self, message: str) -> bytes:
        data = message.encode()
        if self._base == NetconfBase.BASE_11:
            return b"\n#%d\n%s%s" % (len(data), data, END_DELIM)
        return data + MSG_DELIM

    def _flush(self) -> None:
        while not self._q.empty():
            data = self._frame(self._q.get())
            while data:
                sent = self._transport_write(data)
                if sent <= 0:
                    raise SessionCloseError(self._buffer.getvalue(), data)
                data = data[sent:]

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.parse(data)
        except SAXFilterXMLNotFoundError:
            self.parser = DefaultXMLParser(self)
            self.parser.parse(data)

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            self._transport_register(selector, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                self._flush()
                for key, _events in selector.select():
                    if self._closing.is_set():
                        return
                    if key.fileobj is self._wake_read:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_read.recv(4096)
                        continue
                    data = self._transport_read()
                    if not data:
                        raise SessionCloseError(self._buffer.getvalue())
                    self._feed(data)
        except Exception as exc:  # as ncclient's loop: every waiter learns of the end
            if not self._closing.is_set():
                log.debug("NETCONF session ended: %r", exc)
                # closed first: a waiter woken by the error sees a closed session, so a
                # reconnect does not ask the dead one for a polite close_session (ncclient
                # closes after telling; that reply never comes, and the close waits out
                # its timeout)
                self.close()
                self._dispatch_error(exc)
        finally:
            selector.close()
            self._wake_read.close()
            self._wake_write.close()


@dataclass(frozen=True)
class Reply:
    """An RPC reply's root element and the warnings the device attached to it."""

    root: etree._Element
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pending:
    """A request on the wire; `result` waits for its reply (or the session's end).

    Replies are taken as the device sent them (ncclient's Junos handler would strip
    their namespaces with an XSLT per reply; the parsers ignore namespaces anyway).
    """

    switch: str
    what: str
    ports: Sequence[str]
    refused: type[SwitchError]
    timeout: float
    operation: RPC

    def result(self, timeout: float | None = None) -> Reply:
        """The reply, or a SwitchError naming the switch: `refused` for an `<rpc-error>`
        of severity error, `SwitchSessionLost` when the session ended first."""
        wait = timeout or self.timeout
        if not self.operation.event.wait(wait):
            message = f"no reply to {self.what} within {wait:.0f} s"
            raise SwitchError(self.switch, message, self.ports)
        if self.operation.error is not None:
            raise _lost(self.switch, self.what, self.operation.error, self.ports)
        reply = self.operation.reply
        reply.parse()
        errors = [e for e in reply.errors if e.severity != "warning"]
        if errors:
            raise self.refused(self.switch, error_text(errors), self.ports)
        root = to_ele(reply.xml)
        warned = tuple(warnings_of(root))
        for warning in warned:
            log.warning("switch %s warns on %s: %s", self.switch, self.what, warning)
        return Reply(root, warned)


def _lost(switch: str, what: str, exc: BaseException, ports: Sequence[str]) -> SwitchSessionLost:
    message = f"session lost during {what}: {one_line(str(exc)) or 'connection closed'}"
    return SwitchSessionLost(switch, message, ports)


class NetconfSession:
    """One NETCONF session to `target`: connect, send RPCs, close.

    `device_params` selects ncclient's device handler (its vendor operations);
    `host_key` decides on an unknown host key (None: keys are not checked, as on a
    lab network; production deployments pass a check against their inventory).
    """

    def __init__(
        self,
        target: SwitchTarget,
        *,
        timeout: float,
        device_params: dict[str, str] | None = None,
        host_key: HostKeyCheck | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.device_params = device_params or {"name": "default"}
        self.host_key = host_key
        self.manager: Manager | None = None

    @property
    def connected(self) -> bool:
        return self.manager is not None and self.manager.connected

    def connect(self) -> None:
        """Open the session (closing an old one first), or raise a SwitchError naming why."""
        self.close()
        t = self.target
        handler = manager.make_device_handler(self.device_params)
        session = WakingSSHSession(handler)
        try:
            session.connect(
                host=t.host,
                port=t.port,
                username=t.username,
                password=t.password,
                hostkey_verify=self.host_key is not None,
                unknown_host_cb=self.host_key or (lambda _host, _fingerprint: True),
                look_for_keys=False,
                allow_agent=False,
                timeout=self.timeout,
            )
        except AuthenticationError as exc:
            raise SwitchAuthError(t.name, f"login refused for user {t.username!r}") from exc
        except (NCClientError, SSHException, OSError) as exc:
            with contextlib.suppress(Exception):
                session.close()
            raise SwitchUnreachable(
                t.name, f"no NETCONF session to {t.host}:{t.port}: {one_line(str(exc))}"
            ) from exc
        session.transport.sock.settimeout(TRANSPORT_CHECK_SECONDS)
        self.manager = Manager(session, handler, timeout=self.timeout, raise_mode=RaiseMode.ERRORS)

    def close(self) -> None:
        """Close politely if still open; safe to call twice."""
        session, self.manager = self.manager, None
        if session is not None and session.connected:
            session.async_mode = False  # wait for the device to end the session
            with contextlib.suppress(NCClientError, SSHException, OSError):
                session.close_session()

    def forget(self) -> None:
        """Drop a session known to be dead without talking to the device."""
        session, self.manager = self.manager, None
        if session is not None:
            with contextlib.suppress(Exception):
                session.session.close()

    def send(
        self,
        request: Callable[[Manager], object],
        what: str,
        ports: Sequence[str] = (),
        *,
        refused: type[SwitchError] = SwitchError,
        timeout: float | None = None,
    ) -> Pending:
        """Send one ncclient operation without waiting for its reply.

        `what` names the RPC in messages; `refused` is the error its `result` raises
        when the device answers with an `<rpc-error>` of severity error; `timeout`
        bounds the wait for the reply (default: the session's).
        """
        session = self.manager
        name = self.target.name
        if session is None:
            raise SwitchSessionLost(name, "no open session", ports)
        session.async_mode = True
        try:
            operation = request(session)
        except (TransportError, OSError) as exc:
            raise _lost(name, what, exc, ports) from exc
        return Pending(name, what, ports, refused, timeout or self.timeout, operation)  # type: ignore[arg-type]

    def call(
        self,
        request: Callable[[Manager], object],
        what: str,
        ports: Sequence[str] = (),
        *,
        refused: type[SwitchError] = SwitchError,
        timeout: float | None = None,
    ) -> Reply:
        """Send one ncclient operation and wait for its reply (see `send`)."""
        return self.send(request, what, ports, refused=refused, timeout=timeout).result()

    def send_rpc(
        self,
        op: etree._Element,
        ports: Sequence[str] = (),
        *,
        refused: type[SwitchError] = SwitchError,
        timeout: float | None = None,
    ) -> Pending:
        """Send an RPC element for which ncclient has no operation of its own."""
        return self.send(lambda m: m.rpc(op), op.tag, ports, refused=refused, timeout=timeout)

    def rpc(
        self,
        op: etree._Element,
        ports: Sequence[str] = (),
        *,
        refused: type[SwitchError] = SwitchError,
        timeout: float | None = None,
    ) -> Reply:
        """Send an RPC element and wait for its reply."""
        return self.send_rpc(op, ports, refused=refused, timeout=timeout).result()
