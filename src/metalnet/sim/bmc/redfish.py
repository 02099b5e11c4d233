"""A simulated BMC speaking Redfish over plain HTTP on 127.0.0.1.

This is metalnet's own small Redfish service rather than sushy-tools' emulator,
because the emulator applies power changes after a random 1-11 s delay, too slow for
the demo. It serves what the sushy client needs: the service root, sessions (with
HTTP basic auth as well), one ComputerSystem, its Reset action and its Boot
override. Changes apply immediately.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from metalnet.power.base import BootDevice, PowerState
from metalnet.sim.bmc.base import SimBmc
from metalnet.sim.bmc.power import InvalidPowerTransition, SimNodePower

LOG = logging.getLogger(__name__)

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
