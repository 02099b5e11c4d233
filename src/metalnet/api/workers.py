"""More processes for the REST API: `metalnet serve --workers N` on a multi-core machine.

One Python process answers HTTP on one core at a time (the interpreter lock), so the
controller shares its listening socket with N-1 API-only processes and the kernel hands
each new connection to whichever process accepts it first. Only the controller process
runs the lifecycle worker and the reconciler; the others answer requests from the
database, which is why several processes need PostgreSQL (SQLite has one writer).
"""

from __future__ import annotations

import gc
import multiprocessing
import socket
from multiprocessing.process import BaseProcess

from metalnet.config import Settings
from metalnet.errors import InputError


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket every process accepts on.

    Made with protocol IPPROTO_TCP spelled out, as asyncio's own servers do: asyncio
    turns Nagle's algorithm off only on sockets whose `proto` says TCP, and with Nagle
    on, a response written as headers then body waited ~40 ms for a delayed ACK.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def freeze_heap() -> None:
    """Hide every object alive now from the garbage collector's full collections.

    A serving process holds some 10^5 long-lived objects (modules, SQLAlchemy's and
    pydantic's schemas, the app) that a full collection walks every time: about
    100 ms during which no request moves, the periodic stall of one-at-a-time latency.
    Called once the process is ready to serve; garbage made by requests is still
    collected.
    """
    gc.collect()
    gc.freeze()


def serve_api(settings: Settings, sock: socket.socket, tls: tuple[str, str] | None) -> None:
    """An API-only process: the same application on the shared socket, until SIGTERM;
    `tls` (certificate file, key file) as the controller process serves it."""
    import uvicorn

    from metalnet.api.app import SERVER_OPTIONS, create_app
    from metalnet.db.engine import Database

    ssl = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
    app = create_app(Database(settings))
    config = uvicorn.Config(app, **SERVER_OPTIONS, **ssl)
    freeze_heap()
    uvicorn.Server(config).run(sockets=[sock])


def start_api_processes(
    settings: Settings, sock: socket.socket, count: int, tls: tuple[str, str] | None = None
) -> list[BaseProcess]:
    """`count` API-only processes on `sock` (refused on SQLite)."""
    if count and settings.database_url.startswith("sqlite"):
        raise InputError(
            f"--workers {count + 1} needs PostgreSQL; {settings.database_url} is SQLite, "
            "which takes one writer at a time"
        )
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(target=serve_api, args=(settings, sock, tls), name=f"metalnet-api-{i}")
        for i in range(count)
    ]
    for process in processes:
        process.start()
    return processes


def stop_api_processes(processes: list[BaseProcess], timeout: float = 10.0) -> None:
    """SIGTERM each (uvicorn finishes the requests in flight), then wait for it."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
