"""A TCP-to-Unix-socket relay, run inside the root-mode lab's service namespace.

The controller stays in the root namespace, because it must reach the simulated
switches and BMCs on 127.0.0.1; the agents run in node namespaces that may reach
only the service network. A Unix socket is a file, and files cross network
namespaces: the controller also listens on one, and this relay, started inside the
service endpoint's namespace, accepts TCP on the service address and pipes each
connection to that socket. It adds no route between namespaces: whoever reaches
service_ip:port (only nodes whose port is in the service VLAN) gets the agent
endpoint, and nothing else.

Usage: python -m metalnet.sim.lab.netns.forwarder HOST:PORT SOCKET_PATH
(prints READY when listening).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from functools import partial

from metalnet.validate import check_host_port

READY = "forwarder listening"
CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF, then pass the EOF on (HTTP clients may half-close)."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _relay(
    socket_path: str, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
) -> None:
    """Connect one TCP client to the Unix socket; close both ends when both directions end."""
    try:
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(socket_path)
    except OSError:  # the controller is not listening (yet): the agent retries
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer)
        )
    finally:
        for writer in (upstream_writer, client_writer):
            writer.close()


async def serve(host: str, port: int, socket_path: str) -> None:
    """Relay every connection to host:port until killed."""
    server = await asyncio.start_server(partial(_relay, socket_path), host, port)
    print(READY, flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Relay TCP HOST:PORT to a Unix socket.")
    parser.add_argument("listen", help="HOST:PORT to accept TCP connections on")
    parser.add_argument("socket", help="path of the Unix socket to relay to")
    args = parser.parse_args(argv)
    host, port = check_host_port(args.listen, "listen")
    asyncio.run(serve(host, port, args.socket))


if __name__ == "__main__":
    main()
