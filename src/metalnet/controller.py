"""The controller process: agent endpoint and REST API over HTTP, the lifecycle worker,
and the periodic reconciler.

`metalnet serve` runs one in the foreground; the demo and the tests run one in-process.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

import uvicorn

from metalnet.api.app import SERVER_OPTIONS, create_app
from metalnet.db.engine import Database
from metalnet.lifecycle.engine import Engine, StepHook, power_for
from metalnet.lifecycle.worker import Worker
from metalnet.power import BmcTarget, PowerDriver
from metalnet.switches.reconcile import PeriodicReconciler
from metalnet.switches.service import SwitchService
from metalnet.validate import check_host_port

log = logging.getLogger(__name__)


class Controller:
    """Start with `start()`; `stop()` closes the HTTP server, worker and switch sessions."""

    def __init__(
        self,
        db: Database,
        listen: str | None = None,
        on_step: StepHook | None = None,
        power: Callable[[BmcTarget, float], PowerDriver] = power_for,
        uds: str | None = None,
        on_start: StepHook | None = None,
        sock: socket.socket | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """`uds`: also serve the agent endpoint on this Unix socket, which a relay in
        another network namespace can reach (the root-mode lab's service network).
        `on_start`/`on_step`: called when a lifecycle step starts / is done.
        `sock`: accept on this listening socket (shared with API-only processes).
        `tls`: (certificate file, key file) to serve HTTPS on the TCP listener."""
        self.db = db
        self.host, self.port = check_host_port(listen or db.settings.controller_listen, "listen")
        self.switching = SwitchService(db)
        self.engine = Engine(db, self.switching, on_step=on_step, power=power, on_start=on_start)
        self.worker = Worker(self.engine)
        self.reconciler = PeriodicReconciler(db, self.switching)
        app = create_app(db)
        app.state.switching = self.switching  # attachments share the lifecycle's queue
        ssl = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
        self.scheme = "https" if tls else "http"
        configs = [uvicorn.Config(app, host=self.host, port=self.port, **SERVER_OPTIONS, **ssl)]
        if uds is not None:
            configs.append(uvicorn.Config(app, uds=uds, **SERVER_OPTIONS))
        self.servers = [uvicorn.Server(config) for config in configs]
        self._http = [
            threading.Thread(target=server.run, name="controller-http", daemon=True)
            for server in self.servers
        ]
        if sock is not None:
            self._http[0] = threading.Thread(
                target=self.servers[0].run,
                kwargs={"sockets": [sock]},
                name="controller-http",
                daemon=True,
            )

    def start(self, timeout: float = 10.0) -> Controller:
        """Serve the agent endpoint, then start working lifecycles (resuming any)."""
        deadline = time.monotonic() + timeout
        for server, thread in zip(self.servers, self._http, strict=True):
            thread.start()
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    where = server.config.uds or f"{self.host}:{self.port}"
                    raise RuntimeError(f"controller could not listen on {where}")
                time.sleep(0.02)
        log.info("controller listening on %s:%d", self.host, self.port)
        self.worker.start()
        self.reconciler.start()
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.reconciler.stop()
        for server in self.servers:
            server.should_exit = True
        for thread in self._http:
            thread.join(10)
        self.switching.close()

    def __enter__(self) -> Controller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
