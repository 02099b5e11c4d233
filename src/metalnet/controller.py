"""The controller process: agent endpoint over HTTP plus the lifecycle worker.

`metalnet serve` runs one in the foreground; the demo and the tests run one in-process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import uvicorn

from metalnet.api.app import create_app
from metalnet.db.engine import Database
from metalnet.lifecycle.engine import Engine, StepHook, power_for
from metalnet.lifecycle.worker import Worker
from metalnet.power import BmcTarget, PowerDriver
from metalnet.switching import Switching
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
    ) -> None:
        self.db = db
        self.host, self.port = check_host_port(listen or db.settings.controller_listen, "listen")
        self.switching = Switching(db)
        self.engine = Engine(db, self.switching, on_step=on_step, power=power)
        self.worker = Worker(self.engine)
        config = uvicorn.Config(
            create_app(db), host=self.host, port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self._http = threading.Thread(target=self.server.run, name="controller-http", daemon=True)

    def start(self, timeout: float = 10.0) -> Controller:
        """Serve the agent endpoint, then start working lifecycles (resuming any)."""
        self._http.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._http.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"controller could not listen on {self.host}:{self.port}")
            time.sleep(0.02)
        log.info("controller listening on %s:%d", self.host, self.port)
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.server.should_exit = True
        self._http.join(10)
        self.switching.close()

    def __enter__(self) -> Controller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
