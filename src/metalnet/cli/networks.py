"""`metalnet network`: project networks (one VLAN and one subnet each)."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote

import typer
from sqlalchemy import select

from metalnet import inventory
from metalnet.cli.common import JSON_OPTION, audited, print_fields, print_json, print_table, state
from metalnet.db.models import Network, Project
from metalnet.dhcp import DnsmasqError, check_config, find_dnsmasq, render_dnsmasq
from metalnet.dhcp.reservations import project_network
from metalnet.errors import MetalnetError
from metalnet.validate import check_vlan
from metalnet.views import network_view

app = typer.Typer(help="Create, list, show and delete project networks.", no_args_is_help=True)

PROJECT = typer.Option(..., "--project", "-p", help="Project that owns the network.")


@app.command("create")
@audited("network create", lambda kw: f"{kw['project']}/{kw['name']}")
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
    app_state = state(ctx)
    if api := app_state.remote:
        body = {
            "name": name,
            "cidr": cidr,
            "gateway": gateway,
            "vlan": None if vlan is None else check_vlan(vlan),
        }
        view = api.call("POST", f"/v1/projects/{quote(project)}/networks", body)
    else:
        with app_state.database().session() as session:
            net = inventory.create_network(
                session, app_state.settings, project, name, cidr, vlan=vlan, gateway=gateway
            )
            session.refresh(net)
            view = network_view(net)
    if json_out:
        print_json(view)
    else:
        typer.echo(f"network {project}/{name} created on VLAN {view['vlan']} ({view['cidr']})")


@app.command("list")
def list_(
    ctx: typer.Context,
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List networks.  Example: metalnet network list --project acme"""
    if api := state(ctx).remote:
        projects = [project] if project else [p["name"] for p in api.call("GET", "/v1/projects")]
        views = [
            view for p in projects for view in api.call("GET", f"/v1/projects/{quote(p)}/networks")
        ]
    else:
        query = select(Network).join(Project).order_by(Project.name, Network.name)
        if project:
            query = query.where(Project.name == project)
        with state(ctx).database().session() as session:
            if project:
                inventory.get_project(session, project)
            views = [network_view(n) for n in session.scalars(query)]
    if json_out:
        print_json(views)
        return
    rows = ((v["project"], v["name"], v["vlan"], v["cidr"], v["gateway"]) for v in views)
    print_table("networks", ["project", "name", "vlan", "cidr", "gateway"], rows)


@app.command("show")
def show(
    ctx: typer.Context, name: str, project: str = PROJECT, json_out: bool = JSON_OPTION
) -> None:
    """Show one network.  Example: metalnet network show web --project acme"""
    if api := state(ctx).remote:
        view = api.call("GET", f"/v1/projects/{quote(project)}/networks/{quote(name)}")
    else:
        with state(ctx).database().session() as session:
            view = network_view(inventory.get_network(session, project, name))
    print_json(view) if json_out else print_fields(view)


@app.command("delete")
@audited("network delete", lambda kw: f"{kw['project']}/{kw['name']}")
def delete(ctx: typer.Context, name: str, project: str = PROJECT) -> None:
    """Delete a network no instance uses.  Example: metalnet network delete web --project acme"""
    if api := state(ctx).remote:
        api.call("DELETE", f"/v1/projects/{quote(project)}/networks/{quote(name)}")
    else:
        with state(ctx).database().session() as session:
            inventory.delete_network(session, project, name)
    typer.echo(f"network {project}/{name} deleted")


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
    from metalnet.dhcp.interfaces import DhcpInterfaces

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
