"""`metalnet sim switch`: run one simulated Junos switch in the foreground.

It answers NETCONF over SSH like an EX switch, so the Junos driver, ncclient or
PyEZ can be tried without hardware. Every RPC is logged on stderr as one line:
switch, session, RPC, result and duration.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from metalnet.cli.sim_bmc import serve_bmc
from metalnet.errors import InputError
from metalnet.validate import check_listen

if TYPE_CHECKING:
    import asyncssh

    from metalnet.sim.switch import SimSwitch

app = typer.Typer(help="Simulators for trying metalnet without hardware.", no_args_is_help=True)


@app.callback()
def sim() -> None:
    """Keep `sim` a command group even while it holds a single command."""


def parse_stall(stall: str) -> tuple[str, float]:
    """Split RPC=SECONDS, or raise InputError naming the value."""
    rpc, sep, seconds = stall.partition("=")
    try:
        value = float(seconds)
    except ValueError:
        value = -1.0
    if not sep or not rpc or value < 0:
        raise InputError(f"invalid --stall-next {stall!r}: expected RPC=SECONDS, e.g. commit=30")
    return rpc, value


def load_host_key(path: Path | None) -> asyncssh.SSHKey | None:
    """The host key at `path`, created there on first use so clients see a stable key."""
    import asyncssh

    if path is None:
        return None
    if not path.exists():
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(path)
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise InputError(f"cannot read host key {str(path)!r}: {exc}") from None


@app.command("switch")
def switch(
    listen: str = typer.Option("127.0.0.1:8300", help="HOST:PORT to listen on (port 0: any)."),
    name: str = typer.Option("sw1", help="Switch name (its host-name and log prefix)."),
    ports: int = typer.Option(48, min=1, max=96, help="Number of ports ge-0/0/0 … ge-0/0/N-1."),
    members: int = typer.Option(
        1, min=1, max=10, help="Virtual Chassis members (FPCs), each with --ports ports."
    ),
    username: str = typer.Option("admin", help="Login accepted over SSH."),
    password: str = typer.Option("admin", help="Password accepted over SSH."),
    commit_latency: float = typer.Option(0.0, min=0.0, help="Seconds every commit takes."),
    confirm_unit_seconds: float = typer.Option(
        60.0, min=0.01, help="Seconds per minute of a commit-confirmed timeout (shorten to test)."
    ),
    state_file: Path | None = typer.Option(
        None, help="Keep the committed configuration here (Junos text) across restarts."
    ),
    host_key: Path | None = typer.Option(None, help="SSH host key file (created if missing)."),
    netconf_1_1: bool = typer.Option(
        False,
        "--netconf-1-1",
        help="Also advertise base:1.1 (chunked framing); Junos hellos offer base:1.0 only.",
    ),
    dialect: str = typer.Option(
        "els", help="Layer 2 dialect: els (reported as an EX4300) or legacy (an EX4200)."
    ),
    commit_warning: list[str] = typer.Option(
        [], help="Answer every successful commit with this warning too (repeatable)."
    ),
    fail_next_commit: str | None = typer.Option(
        None, help="Fail the first commit with this error message."
    ),
    refuse_login: bool = typer.Option(False, help="Refuse every login (authentication fails)."),
    drop_next: str | None = typer.Option(
        None, help="Drop the connection when this RPC (e.g. commit) first arrives."
    ),
    stall_next: str | None = typer.Option(
        None, help="RPC=SECONDS: stay silent that long before the first such RPC."
    ),
) -> None:
    """Run a simulated Junos EX switch until SIGINT/SIGTERM.

    Example: metalnet sim switch --listen 127.0.0.1:8300 --ports 48 --commit-latency 2
    """
    from metalnet.sim.switch import SimSwitch
    from metalnet.sim.switch.dialect import DIALECTS

    host, port = check_listen(listen)
    if dialect not in DIALECTS:
        raise InputError(f"invalid --dialect {dialect!r}: expected {' or '.join(DIALECTS)}")
    sw = SimSwitch(
        name,
        ports=ports,
        username=username,
        password=password,
        host=host,
        port=port,
        commit_latency=commit_latency,
        confirm_unit_seconds=confirm_unit_seconds,
        netconf_11=netconf_1_1,
        dialect=dialect,
        members=members,
        state_file=state_file,
        host_key=load_host_key(host_key),
    )
    if fail_next_commit:
        sw.faults.fail_next_commit(fail_next_commit)
    sw.faults.refuse_login = refuse_login
    sw.faults.warn_on_commit(*commit_warning)
    if drop_next:
        sw.faults.drop_next(drop_next)
    if stall_next:
        sw.faults.stall_next(*parse_stall(stall_next))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        asyncio.run(_serve(sw))
    except OSError as exc:
        raise InputError(f"cannot listen on {listen!r}: {exc.strerror or exc}") from None


async def _serve(sw: SimSwitch) -> None:
    """Start `sw`, print where it listens, and run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sw.start()
    print(
        f"switch {sw.name}: NETCONF over SSH at {sw.host}:{sw.port}, "
        f"{len(sw.ports)} ports, {sw.dialect.name} dialect (Ctrl-C to stop)",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await sw.stop()


@app.command("bmc")
def bmc(
    redfish: bool = typer.Option(False, "--redfish", help="Serve Redfish over HTTP."),
    ipmi: bool = typer.Option(False, "--ipmi", help="Serve IPMI 2.0 (RMCP+) over UDP."),
    listen: str = typer.Option("127.0.0.1:0", help="HOST:PORT to listen on (port 0: any)."),
    node: str = typer.Option(..., help="Name of the simulated node (the Redfish System id)."),
    username: str = typer.Option("admin", help="BMC login."),
    password: str = typer.Option("password", help="BMC password."),
) -> None:
    """Run one simulated BMC until SIGINT/SIGTERM, logging each request.

    Example: metalnet sim bmc --ipmi --listen 127.0.0.1:6230 --node n1
    """
    if redfish == ipmi:
        raise InputError("give exactly one of --redfish or --ipmi")
    serve_bmc("redfish" if redfish else "ipmi", listen, node, username, password)
