"""Simulated BMCs that speak real Redfish and real IPMI on 127.0.0.1.

The power drivers are tested over the wire, and the lab powers its simulated nodes
through the same drivers the controller uses on real servers. Each simulated node
has one `SimNodePower` (power state, next boot device); a `RedfishBmc` or `IpmiBmc`
serves it. When the node powers on or reboots, `SimNodePower` tells the lab which
device it boots from, through the `on_change` callback, so the lab can start the
node's ramdisk agent (PXE) or its installed image (disk).

- `RedfishBmc` is metalnet's own small Redfish service rather than sushy-tools'
  emulator, because the emulator applies power changes after a random 1-11 s delay,
  too slow for the demo. It serves what the sushy client needs: the service root,
  sessions (with HTTP basic auth as well), one ComputerSystem, its Reset action and
  its Boot override. Changes apply immediately.
- `IpmiBmc` is pyghmi's IPMI server (`pyghmi.ipmi.bmc.Bmc`) with two fixes: it
  refuses RMCP+ session offers it cannot serve (pyghmi 1.6.19's server accepts the
  client's SHA-256 cipher suite, then answers with SHA-1 keys and the login fails),
  so clients fall back to cipher suite 3; and it answers an unknown user with
  "unauthorized name" instead of silence, so a client fails instead of retrying.

Both can be told to stall (accept requests and never answer) and to refuse every
login, to test that drivers fail cleanly.
"""

from __future__ import annotations

import abc
import base64
import binascii
import hmac
import json
import logging
import re
import secrets
import socket
import threading
from collections.abc import Callable
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import pyghmi.ipmi.bmc as pyghmi_bmc
import pyghmi.ipmi.private.serversession as pyghmi_serversession
import pyghmi.ipmi.private.session as pyghmi_session
from pyghmi.ipmi.private import constants as pyghmi_constants

from metalnet.power.base import BootDevice, PowerState

LOG = logging.getLogger(__name__)


# Shared node state -------------------------------------------------------------------


class PowerEvent(StrEnum):
    """What happened to a simulated node's power, as told to `on_change`."""

    POWER_ON = "power_on"
    POWER_OFF = "power_off"
    REBOOT = "reboot"


PowerCallback = Callable[[PowerEvent, BootDevice | None], None]
"""`on_change(event, boot_device)`: boot_device is what the node boots (None on power_off)."""


class InvalidPowerTransition(Exception):
    """The request makes no sense in the node's present state (reset while off)."""


class SimNodePower:
    """Power and boot state of one simulated node, shared by its BMC and the lab.

    The boot model is the one BMCs expose: without an override the node boots
    `default_boot` (its firmware's boot order); an override names a device for the
    next boot only, or for every boot if persistent. A one-time override is used up
    by the boot that honours it.

    Thread-safe: BMC requests arrive on server threads. `on_change` is called after
    the state changed and outside the lock, on the BMC's request thread, so it may
    read this object but should return quickly (start a process, not wait for one).
    """

    def __init__(
        self,
        node: str,
        on_change: PowerCallback | None = None,
        *,
        state: PowerState = PowerState.OFF,
        default_boot: BootDevice = BootDevice.DISK,
    ) -> None:
        self.node = node
        self.on_change = on_change
        self.default_boot = default_boot
        self._state = state
        self._override: BootDevice | None = None
        self._persistent = False
        self._lock = threading.Lock()

    @property
    def state(self) -> PowerState:
        """Whether the node is powered."""
        return self._state

    @property
    def boot_override(self) -> BootDevice | None:
        """The device the BMC was told to boot next, or None to follow `default_boot`."""
        return self._override

    @property
    def boot_persistent(self) -> bool:
        """Whether the override survives the next boot."""
        return self._persistent

    @property
    def next_boot(self) -> BootDevice:
        """The device the node will boot from when it next powers on or reboots."""
        with self._lock:
            return self._override or self.default_boot

    def set_boot(self, device: BootDevice | None, persistent: bool = False) -> None:
        """Override the next boot device (None clears the override)."""
        with self._lock:
            self._override = device
            self._persistent = persistent and device is not None
        LOG.info("node %s: boot override %s (persistent: %s)", self.node, device, persistent)

    def power_on(self) -> None:
        """Power on and boot; nothing happens if the node is already on."""
        with self._lock:
            if self._state is PowerState.ON:
                return
            self._state = PowerState.ON
            device = self._boot()
        self._notify(PowerEvent.POWER_ON, device)

    def power_off(self) -> None:
        """Cut power; nothing happens if the node is already off."""
        with self._lock:
            if self._state is PowerState.OFF:
                return
            self._state = PowerState.OFF
        self._notify(PowerEvent.POWER_OFF, None)

    def reboot(self) -> None:
        """Hard reset of a running node; refused while it is off, as most BMCs do."""
        with self._lock:
            if self._state is PowerState.OFF:
                raise InvalidPowerTransition(f"node {self.node} is off: cannot reset")
            device = self._boot()
        self._notify(PowerEvent.REBOOT, device)

    def press_power_button(self) -> None:
        """Toggle power, like the front-panel button."""
        with self._lock:
            on = self._state is PowerState.ON
        self.power_off() if on else self.power_on()

    def _boot(self) -> BootDevice:
        """Pick the boot device (caller holds the lock) and use up a one-time override."""
        device = self._override or self.default_boot
        if not self._persistent:
            self._override = None
        return device

    def _notify(self, event: PowerEvent, device: BootDevice | None) -> None:
        LOG.info("node %s: %s%s", self.node, event, f" from {device}" if device else "")
        if self.on_change is None:
            return
        try:
            self.on_change(event, device)
        except Exception:  # the lab's failure must not break the BMC protocol
            LOG.exception("node %s: on_change callback failed for %s", self.node, event)


# Common BMC behaviour ----------------------------------------------------------------


class SimBmc(abc.ABC):
    """A simulated BMC for one node, serving in a background thread on 127.0.0.1.

    `port=0` picks a free port; `port` holds the real one after `start()`.
    """

    scheme: str

    def __init__(
        self,
        power: SimNodePower,
        username: str = "admin",
        password: str = "password",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.power = power
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self._answering = threading.Event()
        self._answering.set()
        self._refusing = False

    @property
    def node(self) -> str:
        """The node this BMC manages."""
        return self.power.node

    @property
    def url(self) -> str:
        """The BMC URL a node is enrolled with (valid once started)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def stalled(self) -> bool:
        """True while the BMC swallows requests without answering."""
        return not self._answering.is_set()

    def stall(self, stalled: bool = True) -> None:
        """Stop answering (requests are received and ignored) or, with False, answer again."""
        if stalled:
            self._answering.clear()
        else:
            self._answering.set()

    def refuse_credentials(self, refuse: bool = True) -> None:
        """Refuse every login, even with the right username and password."""
        self._refusing = refuse

    def password_for(self, username: str) -> str | None:
        """The password `username` must present, or None if the user is unknown or refused."""
        if self._refusing or username != self.username:
            return None
        return self.password

    def credentials_ok(self, username: str, password: str) -> bool:
        """Constant-time check of a username and password."""
        expected = self.password_for(username)
        return expected is not None and hmac.compare_digest(expected, password)

    @abc.abstractmethod
    def start(self) -> SimBmc:
        """Bind the port and start serving in a background thread."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving and release the port."""

    def __enter__(self) -> SimBmc:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# Redfish -----------------------------------------------------------------------------

ROOT = "/redfish/v1"
SESSIONS = f"{ROOT}/SessionService/Sessions"
RESET_ACTIONS: dict[str, Callable[[SimNodePower], None]] = {
    "On": SimNodePower.power_on,
    "ForceOff": SimNodePower.power_off,
    "GracefulShutdown": SimNodePower.power_off,  # no OS to ask: same as ForceOff
    "ForceRestart": SimNodePower.reboot,
    "GracefulRestart": SimNodePower.reboot,
    "PushPowerButton": SimNodePower.press_power_button,
}
BOOT_TARGETS = {"None": None, "Pxe": BootDevice.PXE, "Hdd": BootDevice.DISK}
BOOT_ENABLED = ("Disabled", "Once", "Continuous")


class RedfishResponse(NamedTuple):
    """What the Redfish service answers: status, JSON body (None for none), headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = {}  # noqa: RUF012 - NamedTuple default, never mutated


def redfish_error(status: HTTPStatus, message: str) -> RedfishResponse:
    """A Redfish error document, as sushy parses it into its exceptions."""
    body = {
        "error": {
            "code": "Base.1.0.GeneralError",
            "message": message,
            "@Message.ExtendedInfo": [{"Message": message, "Severity": "Critical"}],
        }
    }
    return RedfishResponse(status, body)


class RedfishBmc(SimBmc):
    """A Redfish service with one ComputerSystem (Id = node name), over plain HTTP."""

    scheme = "redfish+http"

    def __init__(
        self,
        power: SimNodePower,
        username: str = "admin",
        password: str = "password",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(power, username, password, host, port)
        self._sessions: dict[str, str] = {}  # token -> session id
        self._next_session = 1
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._stopped = threading.Event()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., RedfishResponse]]] = [
            ("GET", re.compile(r"/redfish"), self._versions),
            ("GET", re.compile(ROOT), self._service_root),
            ("POST", re.compile(SESSIONS), self._login),
            ("GET", re.compile(f"{ROOT}/SessionService"), self._session_service),
            ("GET", re.compile(SESSIONS), self._session_collection),
            ("GET", re.compile(f"{SESSIONS}/(?P<ident>[^/]+)"), self._session),
            ("DELETE", re.compile(f"{SESSIONS}/(?P<ident>[^/]+)"), self._logout),
            ("GET", re.compile(f"{ROOT}/Systems"), self._systems),
            ("GET", re.compile(f"{ROOT}/Systems/(?P<ident>[^/]+)"), self._system),
            ("PATCH", re.compile(f"{ROOT}/Systems/(?P<ident>[^/]+)"), self._patch_system),
            (
                "POST",
                re.compile(rf"{ROOT}/Systems/(?P<ident>[^/]+)/Actions/ComputerSystem\.Reset"),
                self._reset,
            ),
        ]
        self._public = {self._versions, self._service_root, self._login}

    @property
    def system_path(self) -> str:
        """The ComputerSystem's path on this service."""
        return f"{ROOT}/Systems/{self.node}"

    @property
    def url(self) -> str:
        """The BMC URL, naming the ComputerSystem as metalnet's Redfish URLs do."""
        return f"{super().url}{self.system_path}"

    def start(self) -> RedfishBmc:
        """Listen on host:port and serve requests, each on its own daemon thread."""
        self._stopped.clear()
        self._server = _RedfishHttpServer((self.host, self.port), _RedfishHandler, self)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},  # how long stop() may wait for the loop to notice
            name=f"redfish-bmc-{self.node}",
            daemon=True,
        ).start()
        LOG.info("node %s: Redfish BMC listening on %s", self.node, self.url)
        return self

    def stop(self) -> None:
        """Stop serving; requests stalled in flight are dropped without an answer."""
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_until_answering(self) -> bool:
        """Block a request while stalled; False if the BMC stopped meanwhile."""
        while not self._answering.wait(0.1):
            if self._stopped.is_set():
                return False
        return not self._stopped.is_set()

    def handle(
        self, method: str, path: str, authorization: str | None, token: str | None, body: bytes
    ) -> RedfishResponse:
        """Answer one HTTP request (transport-free, so the routing is easy to read)."""
        path = path.split("?", 1)[0].rstrip("/") or "/"
        path_known = False
        for route_method, pattern, action in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            path_known = True
            if route_method != method:
                continue
            if action not in self._public and not self._authorized(authorization, token):
                return redfish_error(HTTPStatus.UNAUTHORIZED, "authentication required")
            try:
                document = json.loads(body) if body else {}
            except ValueError:
                return redfish_error(HTTPStatus.BAD_REQUEST, "request body is not JSON")
            if not isinstance(document, dict):
                return redfish_error(HTTPStatus.BAD_REQUEST, "request body is not a JSON object")
            return action(document, **match.groupdict())
        if path_known:
            return redfish_error(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}")
        return redfish_error(HTTPStatus.NOT_FOUND, f"no resource at {path}")

    def _authorized(self, authorization: str | None, token: str | None) -> bool:
        """A valid session token, or HTTP basic auth with the right credentials."""
        if token is not None:
            with self._lock:
                return token in self._sessions and not self._refusing
        if authorization is None or not authorization.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, _, password = decoded.partition(":")
        return self.credentials_ok(username, password)

    # Resources

    def _versions(self, _doc: dict[str, Any]) -> RedfishResponse:
        return RedfishResponse(HTTPStatus.OK, {"v1": f"{ROOT}/"})

    def _service_root(self, _doc: dict[str, Any]) -> RedfishResponse:
        return RedfishResponse(
            HTTPStatus.OK,
            {
                "@odata.id": f"{ROOT}/",
                "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                "Id": "RootService",
                "Name": f"metalnet simulated BMC of {self.node}",
                "RedfishVersion": "1.6.0",
                "Systems": {"@odata.id": f"{ROOT}/Systems"},
                "SessionService": {"@odata.id": f"{ROOT}/SessionService"},
                "Links": {"Sessions": {"@odata.id": SESSIONS}},
            },
        )

    def _login(self, doc: dict[str, Any]) -> RedfishResponse:
        username, password = doc.get("UserName"), doc.get("Password")
        if not (isinstance(username, str) and isinstance(password, str)):
            return redfish_error(HTTPStatus.BAD_REQUEST, "UserName and Password are required")
        if not self.credentials_ok(username, password):
            return redfish_error(HTTPStatus.UNAUTHORIZED, "invalid username or password")
        token = secrets.token_hex(16)
        with self._lock:
            ident = str(self._next_session)
            self._next_session += 1
            self._sessions[token] = ident
        location = f"{SESSIONS}/{ident}"
        return RedfishResponse(
            HTTPStatus.CREATED,
            self._session_document(ident),
            {"X-Auth-Token": token, "Location": location},
        )

    def _session_service(self, _doc: dict[str, Any]) -> RedfishResponse:
        return RedfishResponse(
            HTTPStatus.OK,
            {
                "@odata.id": f"{ROOT}/SessionService",
                "@odata.type": "#SessionService.v1_1_8.SessionService",
                "Id": "SessionService",
                "Name": "Session Service",
                "ServiceEnabled": True,
                "SessionTimeout": 3600,
                "Sessions": {"@odata.id": SESSIONS},
            },
        )

    def _session_collection(self, _doc: dict[str, Any]) -> RedfishResponse:
        with self._lock:
            idents = sorted(self._sessions.values(), key=int)
        return _collection(SESSIONS, "#SessionCollection.SessionCollection", idents)

    def _session(self, _doc: dict[str, Any], ident: str) -> RedfishResponse:
        with self._lock:
            known = ident in self._sessions.values()
        if not known:
            return redfish_error(HTTPStatus.NOT_FOUND, f"no session {ident}")
        return RedfishResponse(HTTPStatus.OK, self._session_document(ident))

    def _logout(self, _doc: dict[str, Any], ident: str) -> RedfishResponse:
        with self._lock:
            tokens = [t for t, i in self._sessions.items() if i == ident]
            for token in tokens:
                del self._sessions[token]
        if not tokens:
            return redfish_error(HTTPStatus.NOT_FOUND, f"no session {ident}")
        return RedfishResponse(HTTPStatus.NO_CONTENT)

    def _session_document(self, ident: str) -> dict[str, Any]:
        return {
            "@odata.id": f"{SESSIONS}/{ident}",
            "@odata.type": "#Session.v1_1_0.Session",
            "Id": ident,
            "Name": f"Session {ident}",
            "UserName": self.username,
        }

    def _systems(self, _doc: dict[str, Any]) -> RedfishResponse:
        return _collection(
            f"{ROOT}/Systems", "#ComputerSystemCollection.ComputerSystemCollection", [self.node]
        )

    def _system(self, _doc: dict[str, Any], ident: str) -> RedfishResponse:
        if ident != self.node:
            return redfish_error(HTTPStatus.NOT_FOUND, f"no system {ident}")
        power = self.power
        override = power.boot_override
        if override is None:
            target, enabled = "None", "Disabled"
        else:
            target = "Pxe" if override is BootDevice.PXE else "Hdd"
            enabled = "Continuous" if power.boot_persistent else "Once"
        return RedfishResponse(
            HTTPStatus.OK,
            {
                "@odata.id": self.system_path,
                "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
                "Id": self.node,
                "Name": self.node,
                "SystemType": "Physical",
                "PowerState": "On" if power.state is PowerState.ON else "Off",
                "Status": {"State": "Enabled", "Health": "OK"},
                "Boot": {
                    "BootSourceOverrideTarget": target,
                    "BootSourceOverrideEnabled": enabled,
                    "BootSourceOverrideTarget@Redfish.AllowableValues": list(BOOT_TARGETS),
                },
                "Actions": {
                    "#ComputerSystem.Reset": {
                        "target": f"{self.system_path}/Actions/ComputerSystem.Reset",
                        "ResetType@Redfish.AllowableValues": list(RESET_ACTIONS),
                    }
                },
            },
        )

    def _patch_system(self, doc: dict[str, Any], ident: str) -> RedfishResponse:
        if ident != self.node:
            return redfish_error(HTTPStatus.NOT_FOUND, f"no system {ident}")
        boot = doc.get("Boot")
        if set(doc) != {"Boot"} or not isinstance(boot, dict):
            return redfish_error(HTTPStatus.BAD_REQUEST, "only Boot can be changed")
        unknown = set(boot) - {"BootSourceOverrideTarget", "BootSourceOverrideEnabled"}
        if unknown:
            return redfish_error(HTTPStatus.BAD_REQUEST, f"unsupported Boot properties {unknown}")
        current = self.power.boot_override
        target = boot.get("BootSourceOverrideTarget")
        if target is not None and target not in BOOT_TARGETS:
            return redfish_error(HTTPStatus.BAD_REQUEST, f"invalid boot target {target!r}")
        # Unchanged unless given; a new target without Enabled means the next boot only.
        kept = "Continuous" if self.power.boot_persistent else "Once"
        enabled = boot.get("BootSourceOverrideEnabled", "Once" if current is None else kept)
        if enabled not in BOOT_ENABLED:
            return redfish_error(HTTPStatus.BAD_REQUEST, f"invalid boot enabled {enabled!r}")
        device = current if target is None else BOOT_TARGETS[target]
        if enabled == "Disabled":
            device = None
        self.power.set_boot(device, persistent=enabled == "Continuous")
        return RedfishResponse(HTTPStatus.NO_CONTENT)

    def _reset(self, doc: dict[str, Any], ident: str) -> RedfishResponse:
        if ident != self.node:
            return redfish_error(HTTPStatus.NOT_FOUND, f"no system {ident}")
        reset_type = str(doc.get("ResetType"))
        action = RESET_ACTIONS.get(reset_type)
        if action is None:
            return redfish_error(HTTPStatus.BAD_REQUEST, f"invalid ResetType {reset_type!r}")
        try:
            action(self.power)
        except InvalidPowerTransition as exc:
            return redfish_error(HTTPStatus.CONFLICT, str(exc))
        return RedfishResponse(HTTPStatus.NO_CONTENT)


def _collection(path: str, odata_type: str, members: list[str]) -> RedfishResponse:
    return RedfishResponse(
        HTTPStatus.OK,
        {
            "@odata.id": path,
            "@odata.type": odata_type,
            "Name": path.rsplit("/", 1)[-1],
            "Members@odata.count": len(members),
            "Members": [{"@odata.id": f"{path}/{m}"} for m in members],
        },
    )


class _RedfishHttpServer(ThreadingHTTPServer):
    """The HTTP transport of one RedfishBmc (stdlib: light enough for dozens per process)."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], bmc: RedfishBmc
    ) -> None:
        self.bmc = bmc
        super().__init__(address, handler)


class _RedfishHandler(BaseHTTPRequestHandler):
    """Moves bytes between HTTP and `RedfishBmc.handle`; logs every request."""

    server: _RedfishHttpServer
    server_version = "metalnet-sim-bmc"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        bmc = self.server.bmc
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if not bmc.wait_until_answering():
            self.close_connection = True
            return
        response = bmc.handle(
            method,
            self.path,
            self.headers.get("Authorization"),
            self.headers.get("X-Auth-Token"),
            body,
        )
        payload = json.dumps(response.body).encode() if response.body is not None else b""
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Basic realm="metalnet"')
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("OData-Version", "4.0")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.info("node %s redfish: %s", self.server.bmc.node, format % args)


# IPMI --------------------------------------------------------------------------------

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


class _NeverBlockingSocket(socket.socket):
    """A UDP socket that stays non-blocking whatever pyghmi asks.

    pyghmi makes a socket blocking to send and non-blocking to read, from different
    threads. When a send lands between its I/O thread's setblocking(False) and
    recvfrom, that thread blocks in recvfrom; on a BMC's socket nothing then wakes
    it, and every IPMI session in the process hangs. UDP sends never need to block.
    Installed by changing the class of pyghmi's socket objects (same memory layout).
    """

    __slots__ = ()

    def setblocking(self, flag: bool) -> None:
        super().setblocking(False)


def _never_block(sock: socket.socket) -> None:
    sock.__class__ = _NeverBlockingSocket
    sock.setblocking(False)


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
            for sock in list(pyghmi_session.iosockets):  # client sockets made before us
                _never_block(sock)
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
        _never_block(self.serversocket)
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


__all__ = [
    "InvalidPowerTransition",
    "IpmiBmc",
    "PowerCallback",
    "PowerEvent",
    "RedfishBmc",
    "RedfishResponse",
    "SimBmc",
    "SimNodePower",
]
