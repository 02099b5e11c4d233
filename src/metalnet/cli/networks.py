"""`metalnet network`: project networks (one VLAN and one subnet each)."""

from __future__ import annotations

import ipaddress

import typer

from metalnet.cli.common import JSON_OPTION, print_fields, print_json, print_rows, say, state
from metalnet.errors import MetalnetError

app = typer.Typer(help="Create, list, show and delete project networks.", no_args_is_help=True)

PROJECT = typer.Option(..., "--project", "-p", help="Project that owns the network.")


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    project: str = PROJECT,
    cidr: str = typer.Option(..., help="IPv4 subnet, e.g. 10.20.0.0/24."),
    vlan: str | None = typer.Option(
        None, help="VLAN id from project_vlan_range; a free one is taken when omitted."
    ),
    gateway: str | None = typer.Option(None, help="Gateway address (default: first host)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create a network.  Example: metalnet network create web --project acme --cidr 10.20.0.0/24"""
    from metalnet.service.models import NetworkIn
    from metalnet.validate import check_vlan

    body = NetworkIn.of(
        name=name, cidr=cidr, gateway=gateway, vlan=None if vlan is None else check_vlan(vlan)
    )
    view = state(ctx).service.create_network(project, body)
    if json_out:
        print_json(view)
    else:
        say(f"network {project}/{name} created on VLAN {view.vlan} ({view.cidr})")


@app.command("list")
def list_(
    ctx: typer.Context,
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List networks.  Example: metalnet network list --project acme"""
    views = state(ctx).service.list_networks(project)
    if json_out:
        print_json(views)
    else:
        print_rows("networks", ["project", "name", "vlan", "cidr", "gateway"], views)


@app.command("show")
def show(
    ctx: typer.Context, name: str, project: str = PROJECT, json_out: bool = JSON_OPTION
) -> None:
    """Show one network.  Example: metalnet network show web --project acme"""
    view = state(ctx).service.get_network(project, name)
    print_json(view) if json_out else print_fields(view)


@app.command("delete")
def delete(ctx: typer.Context, name: str, project: str = PROJECT) -> None:
    """Delete a network no instance uses.  Example: metalnet network delete web --project acme"""
    state(ctx).service.delete_network(project, name)
    say(f"network {project}/{name} deleted")


class DhcpConfigRefused(MetalnetError):
    """dnsmasq --test refused the rendered configuration."""


@app.command("dhcp")
def dhcp(
    ctx: typer.Context,
    name: str,
    project: str = PROJECT,
    interface: str | None = typer.Option(
        None, help="Interface dnsmasq serves the VLAN on (default: from dhcp_interface(s))."
    ),
    server: str | None = typer.Option(None, help="dnsmasq's own address (default: last host)."),
) -> None:
    """Print the network's dnsmasq configuration as the DHCP manager runs it (static
    MAC -> IP reservations of its live instances, from the database), checked with
    `dnsmasq --test` when dnsmasq is installed.

    Example: metalnet network dhcp web --project acme --interface br-vlan100 > web.conf
    """
    from metalnet import inventory
    from metalnet.dhcp import DnsmasqError, check_config, find_dnsmasq, render_dnsmasq
    from metalnet.dhcp.interfaces import DhcpInterfaces
    from metalnet.dhcp.reservations import project_network

    settings = state(ctx).settings
    state(ctx).local_only("network dhcp")
    dns = [ipaddress.IPv4Address(address) for address in settings.dhcp_dns_servers]
    with state(ctx).database().session() as session:
        net = inventory.get_network(session, project, name)
        interface = interface or DhcpInterfaces.from_settings(settings).name_for(net.vlan)
        dhcp = project_network(session, net, interface, server, settings.dhcp_lease_seconds, dns)
        text = render_dnsmasq(dhcp)
    if find_dnsmasq() is None:
        typer.echo("note: dnsmasq is not installed; configuration not checked", err=True)
    else:
        try:
            check_config(text)
        except DnsmasqError as exc:
            raise DhcpConfigRefused(f"dnsmasq refused the configuration: {exc}") from None
    typer.echo(text, nl=False)
