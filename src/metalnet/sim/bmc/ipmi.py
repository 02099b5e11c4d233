"""A simulated BMC speaking IPMI 2.0 (RMCP+) over UDP on 127.0.0.1.

It is pyghmi's IPMI server (`pyghmi.ipmi.bmc.Bmc`) with two fixes: it refuses RMCP+
session offers it cannot serve (pyghmi 1.6.19's server accepts the client's SHA-256
cipher suite, then answers with SHA-1 keys and the login fails), so clients fall
back to cipher suite 3; and it answers an unknown user with "unauthorized name"
instead of silence, so a client fails instead of retrying.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pyghmi.ipmi.bmc as pyghmi_bmc
import pyghmi.ipmi.private.serversession as pyghmi_serversession
import pyghmi.ipmi.private.session as pyghmi_session
from pyghmi.ipmi.private import constants as pyghmi_constants

import metalnet.power.ipmi  # noqa: F401 - its non-blocking send serves these sockets too
from metalnet.power.base import BootDevice
from metalnet.sim.bmc.base import SimBmc
from metalnet.sim.bmc.power import InvalidPowerTransition, SimNodePower

LOG = logging.getLogger(__name__)

_CIPHER_SUITE_3 = (1, 1, 1)  # RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128: all pyghmi serves
_NO_CIPHER_SUITE_MATCH = 0x11
_UNAUTHORIZED_NAME = 0x0D
_NOT_IN_PRESENT_STATE = 0xD5
_PARAMETER_NOT_SUPPORTED = 0x80
_INVALID_DATA = 0xCC
_IPMI_BOOT_DEVICES = {1: BootDevice.PXE, 2: BootDevice.DISK}  # boot flags bits 5:2
_IPMI_BOOT_CODES = {device: code for code, device in _IPMI_BOOT_DEVICES.items()}

_PUMP_TICK = 0.05
"""Longest wait of the event loop: pyghmi can leave a received packet queued until the
next tick (its poller checks the queue, then sleeps), so this bounds that delay."""

_pump_lock = threading.Lock()
_pump: threading.Thread | None = None


def _run_pump() -> None:
    """pyghmi's event loop: one per process serves every simulated IPMI BMC in it."""
    while True:
        try:
            pyghmi_session.Session.wait_for_rsp(timeout=_PUMP_TICK)
        except Exception:  # one malformed packet must not silence every BMC
            LOG.exception("IPMI simulator event loop")


def _ensure_pump() -> None:
    """Start the event loop once, after giving pyghmi a socket that is never closed.

    pyghmi's I/O thread wakes itself by sending to `iosockets[0]`, assuming it lives
    forever. A client socket from pyghmi's own pool is made first so that a BMC's
    server socket, which `IpmiBmc.stop` closes, never takes that place.
    """
    global _pump
    with _pump_lock:
        if _pump is None:
            if not pyghmi_session.iosockets:
                pyghmi_session.Session._assignsocket()
            _pump = threading.Thread(target=_run_pump, name="ipmi-sim-bmcs", daemon=True)
            _pump.start()


class _ServerSession(pyghmi_serversession.ServerSession):
    """pyghmi's server side of one RMCP+ session, with the two fixes described above."""

    bmc: _PyghmiBmc

    def sessionless_data(self, data: bytes, sockaddr: tuple[Any, ...]) -> None:
        """A late packet for a session that already ended: hand it to the BMC.

        pyghmi's client and these servers share one packet loop in a process, which
        routes such a packet here; without this it raised in whatever client waited.
        """
        self.bmc.sessionless_data(data, sockaddr)

    def create_open_session_response(self, request: bytearray) -> bytearray:
        """Accept only cipher suite 3; answer "no cipher suite match" to anything else.

        Request layout (IPMI 2.0 table 13-9): tag, role, 2 reserved, console session
        id (4), then 8-byte authentication, integrity and confidentiality payloads
        whose 5th byte is the algorithm.
        """
        offered = (request[12], request[20], request[28])
        if offered == _CIPHER_SUITE_3:
            return super().create_open_session_response(request)
        LOG.info("node %s ipmi: refusing cipher offer %s", self.bmc.sim.node, offered)
        self.clientsessionid = request[4:8]
        return bytearray([request[0], _NO_CIPHER_SUITE_MATCH, 0, 0]) + request[4:8]

    def _got_rakp1(self, data: bytearray) -> None:
        """Answer RAKP 2 "unauthorized name" for an unknown (or refused) user."""
        username = bytes(data[28:]).decode("utf-8", "replace")
        if data[27] and self.authdata.get(username) is not None:
            super()._got_rakp1(data)
            return
        LOG.info("node %s ipmi: refusing login of %r", self.bmc.sim.node, username)
        reply = bytearray([data[0], _UNAUTHORIZED_NAME, 0, 0]) + self.clientsessionid
        self.send_payload(reply, pyghmi_constants.payload_types["rakp2"], retry=False)

    def process_pktqueue(self) -> None:
        if self.bmc.silent:
            self.pktqueue.clear()
            return
        super().process_pktqueue()


class _Accounts:
    """pyghmi's `authdata` (a mapping username -> password) backed by the SimBmc."""

    def __init__(self, sim: IpmiBmc) -> None:
        self.sim = sim

    def get(self, username: str) -> str | None:
        return self.sim.password_for(username)


class _PyghmiBmc(pyghmi_bmc.Bmc):
    """pyghmi's IPMI server wired to a SimNodePower."""

    def __init__(self, sim: IpmiBmc) -> None:
        self.sim = sim
        self.closed = False
        super().__init__(_Accounts(sim), port=sim.port, address=sim.host)
        # pyghmi routes session packets by this number, so it must be the real port.
        self.port = self.serversocket.getsockname()[1]

    def sessionless_data(self, data: bytes, sockaddr: tuple[Any, ...]) -> None:
        """Open RMCP+ sessions with `_ServerSession`; pyghmi handles the rest."""
        packet = bytearray(data)
        is_open_request = (
            len(packet) >= 48 and packet[0] == 6 and packet[2:4] == b"\xff\x07"
            and packet[4] == 6 and packet[5] == 0x10
        )  # fmt: skip
        if not is_open_request:
            super().sessionless_data(data, sockaddr)
            return
        _ServerSession(
            self.authdata, self.kg, sockaddr, self.serversocket, packet[16:], self.uuid, bmc=self
        )

    @property
    def silent(self) -> bool:
        """Drop packets: the BMC is stalled, or stopped (its socket may be closed)."""
        return self.closed or self.sim.stalled

    def process_pktqueue(self) -> None:
        if self.silent:
            self.pktqueue.clear()
            return
        super().process_pktqueue()

    def handle_raw_request(self, request: dict[str, Any], session: Any) -> None:
        LOG.info(
            "node %s ipmi: netfn %#04x command %#04x data %s",
            self.sim.node,
            request["netfn"],
            request["command"],
            bytes(request["data"]).hex(),
        )
        super().handle_raw_request(request, session)

    def get_power_state(self) -> str:
        return str(self.sim.power.state)

    def power_on(self) -> None:
        self.sim.power.power_on()

    def power_off(self) -> None:
        self.sim.power.power_off()

    def power_shutdown(self) -> None:
        self.sim.power.power_off()

    def power_reset(self) -> int | None:
        try:
            self.sim.power.reboot()
        except InvalidPowerTransition:
            return _NOT_IN_PRESENT_STATE
        return None

    def power_cycle(self) -> int | None:
        return self.power_reset()

    def get_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        """Report the boot flags parameter (5), including the persistent bit."""
        if request["data"][0] != 5:
            session.send_ipmi_response(code=_PARAMETER_NOT_SUPPORTED)
            return
        power = self.sim.power
        override = power.boot_override
        flags, code = 0, 0
        if override is not None:
            flags = 0x80 | (0x40 if power.boot_persistent else 0)
            code = _IPMI_BOOT_CODES[override] << 2
        session.send_ipmi_response(data=[1, 5, flags, code, 0, 0, 0])

    def set_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        """Set the boot flags parameter (5); acknowledge the housekeeping ones (0, 3, 4)."""
        data = request["data"]
        if data[0] in (0, 3, 4):
            session.send_ipmi_response()
            return
        if data[0] != 5 or len(data) < 3:
            session.send_ipmi_response(code=_PARAMETER_NOT_SUPPORTED)
            return
        valid, persistent, code = data[1] & 0x80, bool(data[1] & 0x40), (data[2] >> 2) & 0x0F
        if not valid or code == 0:
            self.sim.power.set_boot(None)
        elif code in _IPMI_BOOT_DEVICES:
            self.sim.power.set_boot(_IPMI_BOOT_DEVICES[code], persistent)
        else:
            session.send_ipmi_response(code=_INVALID_DATA)
            return
        session.send_ipmi_response()


class IpmiBmc(SimBmc):
    """An IPMI 2.0 (RMCP+, cipher suite 3) BMC on a UDP port of 127.0.0.1."""

    scheme = "ipmi"

    def __init__(
        self,
        power: SimNodePower,
        username: str = "admin",
        password: str = "password",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(power, username, password, host, port)
        self._server: _PyghmiBmc | None = None

    def start(self) -> IpmiBmc:
        """Bind the UDP port; the process-wide pyghmi event loop then serves it."""
        _ensure_pump()
        self._server = _PyghmiBmc(self)
        self.port = self._server.port
        LOG.info("node %s: IPMI BMC listening on %s", self.node, self.url)
        return self

    def stop(self) -> None:
        """Unregister from pyghmi's (process-global) tables, then close the socket.

        pyghmi's I/O thread reads every socket in `iosockets` and dies on a closed
        one, so the socket leaves that list first, and is closed only after the
        thread completed a pass (`_io_wait` returns after the next one).
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.closed = True
        handlers = pyghmi_session.Session.bmc_handlers
        handlers.pop(server.serversocket, None)
        for by_port in list(handlers.values()):
            session = by_port.get(server.port)
            if isinstance(session, _ServerSession) and session.bmc is server:
                del by_port[server.port]
        if server.serversocket in pyghmi_session.iosockets:
            pyghmi_session.iosockets.remove(server.serversocket)
        pyghmi_session._io_wait(0.01)
        server.serversocket.close()
