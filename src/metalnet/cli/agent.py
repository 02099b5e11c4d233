"""`metalnet agent`: the program the provisioning ramdisk runs on a node."""

from __future__ import annotations

import logging

import typer

from metalnet.cli.secrets import read_password
from metalnet.errors import InputError


def agent(
    controller: str = typer.Option(..., help="Controller URL on the service network."),
    node: str = typer.Option(..., help="This node's name."),
    token_env: str | None = typer.Option(
        None, help="Environment variable holding the node's token (from the boot entry)."
    ),
    token: str | None = typer.Option(None, help="The node's token (prefer --token-env)."),
    disk: str = typer.Option(..., help="Block device (or, in the lab, file) to deploy or erase."),
    wait: float = typer.Option(300.0, help="Seconds to wait for a task before giving up."),
    ca_file: str | None = typer.Option(
        None,
        envvar="METALNET_CA_FILE",
        help="CA certificate an https:// controller is verified against.",
    ),
) -> None:
    """Fetch this node's task (deploy or erase), run it, report; exit 0 on success.

    Example: metalnet agent --controller http://10.99.0.1:8470 --node n1
    --token-env METALNET_AGENT_TOKEN --disk /dev/sda
    """
    secret = read_password("agent token", token_env, token, prompt=False)
    if not secret:
        raise InputError("no token: pass --token-env VAR or --token")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(message)s")
    from metalnet.agent.runner import run_agent
    from metalnet.service.http import tls_verify

    verify = tls_verify(ca_file)
    raise typer.Exit(run_agent(controller, node, secret, disk, wait_timeout=wait, verify=verify))
