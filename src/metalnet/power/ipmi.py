"""IPMI 2.0 (RMCP+ over UDP) power driver, built on `pyghmi`.

pyghmi keeps one session per (BMC, user, password) in a process-wide table and
reuses it for every `Command` with the same credentials, so this driver builds a
`Command` per call: that costs nothing while the session lives and logs in again
after a BMC dropped it. pyghmi retries silently on a BMC that does not answer (and
forever on some broken ones); `PowerDriver`'s deadline bounds every call.

pyghmi reports every failure as `IpmiException` with a text message; the login
failures that mean "wrong credentials" are recognised by those texts.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import pyghmi.ipmi.private.session as pyghmi_session
from pyghmi import exceptions as pyghmi_exc
from pyghmi.ipmi.command import Command
from pyghmi.ipmi.private.session import Session

from metalnet.power.base import (
    DEFAULT_TIMEOUT,
    BmcAuthError,
    BmcTarget,
    BmcUnreachable,
    BootDevice,
    PowerDriver,
    PowerError,
    PowerState,
)

DEFAULT_PORT = 623
_BOOT_DEVICES = {BootDevice.PXE: "network", BootDevice.DISK: "hd"}
_AUTH_FAILURES = (
    "incorrect password",
    "unauthorized name",
    "unauthorized role",
    "invalid role",
    "unauthorized guid",
)
_NO_ANSWER = ("timeout", "no longer connected")


def _send_without_blocking(sock: socket.socket, packet: bytes, sockaddr: tuple[Any, ...]) -> None:
    """pyghmi's `_io_sendto` without its switch of the socket to blocking mode.

    pyghmi 1.6.19 makes a socket blocking to send (`_io_sendto`) and non-blocking to
    read (`_io_recvfrom`), from different threads. When a send lands between its I/O
    thread's setblocking(False) and recvfrom, that thread blocks in recvfrom until a
    datagram reaches that one socket, and every IPMI session in the process waits:
    forever when the BMC answering is served by the same I/O thread (the lab), for a
    whole retry cycle otherwise. A UDP send never needs to block; a datagram the
    kernel refuses is lost like one on the wire, and pyghmi retransmits it.
    Installed for every socket pyghmi makes, whenever it makes it, at import.
    """
    target = getattr(sock, "fd", sock)  # pyghmi's own unwrapping of an eventlet socket
    with suppress(OSError):
        target.sendto(packet, sockaddr)


pyghmi_session._io_sendto = _send_without_blocking


class IpmiDriver(PowerDriver):
    """Power control through IPMI chassis control and the boot flags parameter."""

    def __init__(self, target: BmcTarget, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(target, timeout)
        parts = urlsplit(target.url)
        if parts.hostname is None:
            raise ValueError(f"BMC URL {target.url!r} names no host")
        self._host = parts.hostname
        self._port = parts.port or DEFAULT_PORT
        self._last: Command | None = None

    def _do_power_on(self) -> None:
        with self._translated():
            self._command().set_power("on")

    def _do_power_off(self) -> None:
        with self._translated():
            self._command().set_power("off")

    def _do_reboot(self) -> None:
        with self._translated():
            # "boot" is pyghmi's "on if off, else reset", the reboot the interface promises.
            self._command().set_power("boot")

    def _do_power_state(self) -> PowerState:
        with self._translated():
            state = self._command().get_power()["powerstate"]
        return PowerState(state)

    def _do_set_boot_device(self, device: BootDevice, persistent: bool) -> None:
        with self._translated():
            self._command().set_bootdev(_BOOT_DEVICES[device], persist=persistent)

    def close(self) -> None:
        """Log out of the session this driver last used (best effort, UDP)."""
        last, self._last = self._last, None
        if last is not None:
            last.ipmi_session.logout()

    def _abandon(self) -> None:
        self._last = None

    def _command(self) -> Command:
        """A pyghmi Command on the (shared) session to this BMC, logging in if needed.

        The login runs in pyghmi's callback mode: in its blocking mode another thread
        running pyghmi's event loop can fail the session between the moment it is
        marked broken and the moment the reason is stored, and the caller gets an
        AttributeError instead of "incorrect password". The callback gets the reason.
        """
        outcome: dict[str, object] = {}
        done = threading.Event()

        def logged_in(response: dict[str, object], _command: Command) -> None:
            outcome.update(response)
            done.set()

        # Bytes, not str: pyghmi 1.6.19 files a logging-in session under the credentials
        # as given but removes it under their encoded form, so with str credentials the
        # next Command to the same BMC finds the stale entry and waits forever.
        command = Command(
            bmc=self._host,
            userid=self.target.username.encode(),
            password=self.target.password.encode(),
            port=self._port,
            onlogon=logged_in,
        )
        deadline = time.monotonic() + self.timeout
        while not done.is_set():
            if time.monotonic() > deadline:
                raise pyghmi_exc.IpmiException("timeout")
            Session.wait_for_rsp(timeout=0.1)
        if "error" in outcome:
            raise pyghmi_exc.IpmiException(str(outcome["error"]))
        self._last = command
        return command

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn pyghmi's exceptions into PowerErrors naming the node and its BMC."""
        try:
            yield
        except pyghmi_exc.PyghmiException as exc:
            text = str(exc) or type(exc).__name__
            lowered = text.lower()
            if any(marker in lowered for marker in _AUTH_FAILURES):
                raise self.error(BmcAuthError, f"credentials refused: {text}") from exc
            if any(marker in lowered for marker in _NO_ANSWER):
                raise self.error(BmcUnreachable, f"no answer: {text}") from exc
            raise self.error(PowerError, text) from exc
        except OSError as exc:  # name resolution or socket failure before any packet left
            raise self.error(BmcUnreachable, f"no answer: {exc}") from exc
