"""One address for the agents in front of several `metalnet serve` workers.

It relays each TCP connection to the first worker that accepts one, as a load
balancer in front of several controllers does, so agents keep working when the
worker they talked to is killed.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading


class Failover(socketserver.ThreadingTCPServer):
    """The agents' one controller address, relaying to the first worker that answers
    (what a load balancer in front of several controllers does)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        super().__init__(("127.0.0.1", 0), _Relay)


class _Relay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        for port in self.server.backends:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                continue
            upstream.settimeout(None)
            pump = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
            pump.start()
            _pipe(self.request, upstream)
            pump.join(30)
            return


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
