#!/usr/bin/env python
"""Adversary campaign: a hostile tenant, a careless admin and bad timing, one table.

Each attack of the isolation issue's list runs through the real REST API (project
tokens over HTTP) and the real `metalnet` CLI against a lab (simulated Junos switches
over NETCONF/SSH, Redfish BMCs, agent processes, a controller), on a fresh lab per
attack. Each states the rule it tests; each try is either refused (the rule held) or
"got through", with what got through. See bench/README.md, "Adversary campaign".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
from sqlalchemy import select, text

from metalnet import apitokens
from metalnet.db.models import Network, Project
from metalnet.errors import InputError
from metalnet.sim.lab.controller import write_config
from metalnet.sim.lab.model import SWITCH, ModelLab, until
from metalnet.sim.lab.world import free_port

WAIT = 90.0  # seconds any lifecycle gets to finish


@dataclass
class Row:
    """One attack over all its tries."""

    attack: str
    rule: str
    tries: int = 0
    refused: int = 0
    through: list[str] = field(default_factory=list)
    crashed: str = ""

    def held(self) -> None:
        self.tries += 1
        self.refused += 1

    def got(self, what: str) -> None:
        self.tries += 1
        self.through.append(what)

    def judge(self, what: str | None) -> None:
        """One try: `what` got through, or None when the rule held."""
        self.held() if what is None else self.got(what)


Attack = Callable[[ModelLab, Row], None]
ATTACKS: dict[str, tuple[str, Attack]] = {}


def attack(name: str, rule: str) -> Callable[[Attack], Attack]:
    def register(fn: Attack) -> Attack:
        ATTACKS[name] = (rule, fn)
        return fn

    return register


# Lab helpers ---------------------------------------------------------------------------


def body(lab: ModelLab, name: str, node: str | None = None, url: str | None = None) -> dict:
    spec = {
        "name": name,
        "network": "net",
        "image_url": url or lab.world.lab.image_url,
        "sha256": lab.world.lab.image_sha256,
    }
    return spec | ({"node": node} if node else {})


def instance(lab: ModelLab, project: str, name: str) -> dict:
    reply = lab.tenant(project).get(f"/v1/instances/{name}")
    return reply.json() if reply.status_code == 200 else {"state": f"HTTP {reply.status_code}"}


def spawn(lab: ModelLab, project: str, name: str, node: str) -> dict:
    """An active instance, through the tenant's API."""
    reply = lab.tenant(project).post("/v1/instances", json=body(lab, name, node))
    if reply.status_code != 202:
        raise RuntimeError(f"spawn {name} on {node}: {reply.status_code} {reply.text}")
    return until(WAIT, f"{name} to be active", lambda: _final(lab, project, name))


def _final(lab: ModelLab, project: str, name: str) -> dict | None:
    view = instance(lab, project, name)
    return view if view["state"] in ("active", "error", "deleted") else None


def port(lab: ModelLab, node: str) -> str:
    return lab.node(node).interface


def device_vlans(lab: ModelLab) -> dict[str, tuple[int, ...]]:
    """interface -> the VLANs the switch's committed configuration gives it (NETCONF)."""
    return {i: s.vlans for i, s in lab.reader.read_ports(SWITCH, lab.interfaces()).items()}


def full_terminate(lab: ModelLab, node: str) -> str | None:
    """What a terminate left wrong on `node` once the lifecycle settled, or None."""
    try:
        lab.settle()
    except AssertionError:
        states = {i[2]: f"{i[3]}/{i[4]}" for i in lab.instances() if i[5] == node}
        return f"never settled: {node} {lab.node_states().get(node)}, instances {states}"
    problems = [v for v in lab.isolation_violations() if f"node {node} " in v]
    state = lab.node_states().get(node)
    vlans = device_vlans(lab)[port(lab, node)]
    if vlans != (lab.settings.service_vlan,):
        problems.append(f"{node} port in VLAN {vlans}, not the service VLAN")
    if state != "available":
        problems.append(f"{node} is {state}")
    elif not lab.world.lab.disk_is_zero(lab.node(node)):
        problems.append(f"{node} disk not erased")
    if lab.node(node).running != "off":
        problems.append(f"{node} still running {lab.node(node).running!r}")
    return "; ".join(problems) or None


def refused_port_change(lab: ModelLab, args: list[str], moves: list[tuple[str, int]]) -> str | None:
    """Run an admin port command; None when it was refused and nothing moved."""
    desired, device = lab.desired(), device_vlans(lab)
    result = lab.admin(*args)
    after_desired, after_device = lab.desired(), device_vlans(lab)
    written = [i for i, v in moves if after_desired.get(i) == v != desired.get(i)]
    moved = [i for i, v in moves if after_device.get(i) == (v,) != device.get(i)]
    if result.code != 0 and not written and not moved:
        return None
    return (
        f"exit {result.code}; desired written on {written or 'none'}; "
        f"device moved on {moved or 'none'}"
    )


# Attacks -------------------------------------------------------------------------------


@attack(
    "delete during the last spawn step",
    "a terminate requested at any moment of a spawn ends in a full terminate",
)
def delete_last_step(lab: ModelLab, row: Row) -> None:
    lab.switch.commit_latency = 1.0  # the move into the project takes a second: aim inside it
    for i in range(3):
        name = f"race{i}"
        lab.tenant("alpha").post("/v1/instances", json=body(lab, name, "n1"))
        until(WAIT, f"{name} at port_to_project", lambda n=name: _at(lab, n, "port_to_project"))
        lab.tenant("alpha").delete(f"/v1/instances/{name}")
        row.judge(full_terminate(lab, "n1"))


def _at(lab: ModelLab, name: str, step: str) -> bool:
    view = instance(lab, "alpha", name)
    return view.get("step") == step or view["state"] != "building"


@attack(
    "port-set into another tenant's VLAN",
    "every port change is checked against isolation before it is queued",
)
def portset_other_tenant(lab: ModelLab, row: Row) -> None:
    spawn(lab, "alpha", "web", "n1")
    beta = lab.world.vlans["beta"]
    args = ["switch", "port-set", SWITCH, port(lab, "n1"), "--vlan", str(beta)]
    row.judge(refused_port_change(lab, args, [(port(lab, "n1"), beta)]))


@attack(
    "apply into another tenant's VLAN",
    "every port change is checked against isolation before it is queued",
)
def apply_other_tenant(lab: ModelLab, row: Row) -> None:
    spawn(lab, "alpha", "web", "n1")
    beta, iface = lab.world.vlans["beta"], port(lab, "n1")
    path = lab.admin_file("apply.json", [{"switch": SWITCH, "port": iface, "vlan": beta}])
    row.judge(refused_port_change(lab, ["switch", "apply", path], [(iface, beta)]))


@attack("port-set a project VLAN onto an unbound port", "an unbound port is only parked")
def portset_unbound(lab: ModelLab, row: Row) -> None:
    alpha = lab.world.vlans["alpha"]
    for iface in ("ge-0/0/6", "ge-0/0/7"):
        args = ["switch", "port-set", SWITCH, iface, "--vlan", str(alpha)]
        row.judge(refused_port_change(lab, args, [(iface, alpha)]))


@attack("port-set the service VLAN onto an unbound port", "an unbound port is only parked")
def portset_service_idle(lab: ModelLab, row: Row) -> None:
    service = lab.settings.service_vlan
    args = ["switch", "port-set", SWITCH, "ge-0/0/7", "--vlan", str(service)]
    row.judge(refused_port_change(lab, args, [("ge-0/0/7", service)]))


@attack(
    "reconcile racing a terminate",
    "the reconciler never writes desired state; its fixes are compare-and-set",
)
def reconcile_race(lab: ModelLab, row: Row) -> None:
    lab.switch.commit_latency = 0.5
    for i in range(3):
        name = f"rc{i}"
        spawn(lab, "alpha", name, "n1")
        lab.switch.set_port_vlan_out_of_band(port(lab, "n1"), 1)  # drift for it to fix
        fixer = threading.Thread(target=lab.admin, args=("reconcile",))
        fixer.start()
        lab.tenant("alpha").delete(f"/v1/instances/{name}")
        fixer.join(WAIT)
        row.judge(full_terminate(lab, "n1"))


@attack("reconcile --dry-run", "a dry run changes nothing")
def dry_run(lab: ModelLab, row: Row) -> None:
    lab.switch.set_port_vlan_out_of_band(port(lab, "n2"), 1)
    before = lab.fingerprint()
    lab.admin("reconcile", "--dry-run")
    after = lab.fingerprint()
    row.judge(None if after == before else f"database changed: {before} -> {after}")


@attack(
    "quarantine bypass by delete and re-add",
    "quarantine is remembered by MAC and BMC and survives delete and re-add",
)
def quarantine_bypass(lab: ModelLab, row: Row) -> None:
    spawn(lab, "alpha", "web", "n1")
    disk = lab.node("n1").disk
    disk.rename(disk.with_suffix(".pulled"))  # the erase will fail: quarantine
    lab.tenant("alpha").delete("/v1/instances/web")
    lab.settle()
    disk.with_suffix(".pulled").rename(disk)  # the tenant's data is back on the node
    if lab.node_states().get("n1") != "quarantined":
        row.got(f"n1 not quarantined after a failed erase: {lab.node_states().get('n1')}")
        return
    deleted = lab.admin("node", "delete", "n1")
    added = lab.enrol("n1")
    lab.settle()
    state = lab.node_states().get("n1")
    dirty = not lab.world.lab.disk_is_zero(lab.node("n1"))
    if state == "available" and dirty:
        row.got(f"delete exit {deleted.code}, add exit {added.code}: n1 available, data on disk")
    else:
        row.held()


@attack(
    "node clear of a quarantined node",
    "a node is never offered again before its disk was erased and verified",
)
def clear_unerased(lab: ModelLab, row: Row) -> None:
    spawn(lab, "alpha", "web", "n1")
    disk = lab.node("n1").disk
    disk.rename(disk.with_suffix(".pulled"))  # the erase will fail: quarantine
    lab.tenant("alpha").delete("/v1/instances/web")
    lab.settle()
    disk.with_suffix(".pulled").rename(disk)  # back, the tenant's image still on it
    cleared = lab.admin("node", "clear", "n1")
    lab.settle()
    offered = [o for o in lab.unerased_offers() if "node n1 " in o]
    row.judge(f"clear exit {cleared.code}: {offered[0]}" if offered else None)


@attack("new node offered unerased", "a new node is erased and verified before first offered")
def new_node_unerased(lab: ModelLab, row: Row) -> None:
    lab.admin("node", "delete", "n3")
    lab.node("n3").disk.write_bytes(os.urandom(lab.node("n3").disk.stat().st_size))
    lab.enrol("n3")
    lab.settle()
    row.judge("; ".join(o for o in lab.unerased_offers() if "node n3 " in o) or None)


class _Canary(BaseHTTPRequestHandler):
    """Redirects to `target` when it has one; otherwise records that it was reached."""

    target = ""
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        if self.target:
            self.send_response(302)
            self.send_header("Location", self.target)
        else:
            self.hits.append(self.path)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _server(host: str, target: str = "") -> ThreadingHTTPServer:
    handler = type("Handler", (_Canary,), {"target": target, "hits": []})
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# What a tenant-facing error must not carry: what the fetch read or met (status codes,
# digests, socket errors, the URL a redirect led to).
ORACLE = re.compile(r"HTTP \d{3}|Errno|[0-9a-f]{64}|refused|timed out|https?://", re.IGNORECASE)


@attack(
    "image_url SSRF",
    "http(s) only, allow-listed hosts, redirects within the list, never the controller; "
    "tenant errors say what failed, not what was read",
)
def ssrf(lab: ModelLab, row: Row) -> None:
    """Refused at input, or accepted (the lab allows its image server's host) and then
    judged by what the tenant is told and whether a canary outside the list was hit."""
    controller = f"http://{lab.controller.host}:{lab.controller.port}"
    canary = _server("127.0.0.2")  # loopback, but not the allow-listed image host
    canary_url = f"http://127.0.0.2:{canary.server_address[1]}/i.img"
    to_controller = _server("127.0.0.1", f"{controller}/v1/audit")
    to_canary = _server("127.0.0.1", canary_url)
    variants = {
        "file://": "file:///etc/passwd",
        "controller API": f"{controller}/v1/audit",
        "controller agent API": f"{controller}/agent/v1/nodes/n2/task",
        "redirect to the controller": f"http://127.0.0.1:{to_controller.server_address[1]}/i",
        "redirect outside the allow-list": f"http://127.0.0.1:{to_canary.server_address[1]}/i",
        "host outside the allow-list": canary_url,
        "metadata address": "http://169.254.169.254/latest/meta-data/",
        "allowed host, closed port": f"http://127.0.0.1:{free_port()}/i.img",
        "decimal loopback": f"http://2130706433:{lab.controller.port}/v1/audit",
        "IPv6 loopback": f"http://[::1]:{lab.controller.port}/v1/audit",
    }
    try:
        for i, (variant, url) in enumerate(variants.items()):
            name = f"ssrf{i}"
            reply = lab.tenant("alpha").post("/v1/instances", json=body(lab, name, "n2", url))
            if 400 <= reply.status_code < 500:
                row.held()
                continue
            view = until(WAIT, f"{name} to end", lambda n=name: _final(lab, "alpha", n))
            error = view.get("error") or ""
            hits = canary.RequestHandlerClass.hits
            if ORACLE.search(error) or hits or view["state"] == "active":
                row.got(f"{variant}: {view['state']}; tenant saw {error!r}; canary hits {hits}")
            else:
                row.held()
            lab.tenant("alpha").delete(f"/v1/instances/{name}")
            lab.settle()
    finally:
        for server in (canary, to_controller, to_canary):
            server.shutdown()
            server.server_close()


@attack(
    "duplicate instance names across tenants",
    "names unique per project among live instances; every lookup scoped to its project",
)
def duplicate_names(lab: ModelLab, row: Row) -> None:
    spawn(lab, "alpha", "dup", "n1")
    reply = lab.tenant("beta").post("/v1/instances", json=body(lab, "dup", "n2"))
    row.judge(
        None
        if reply.status_code == 202
        else f"beta refused 'dup' because alpha has one: {reply.text}"
    )
    lab.tenant("beta").delete("/v1/instances/dup")
    state = instance(lab, "alpha", "dup")["state"]
    row.judge(None if state == "active" else f"beta's DELETE dup left alpha's dup {state}")


@attack(
    "duplicate switch address, BMC URL, MAC",
    "database constraints: one switch per address, one node per BMC URL and per MAC",
)
def duplicate_addresses(lab: ModelLab, row: Row) -> None:
    n1, sw = lab.node("n1"), lab.switch
    switch = lab.admin(
        "switch", "add", "tor9", "--driver", "junos", "--address", f"{sw.host}:{sw.port}",
        "--username", "x", "--password", "y",
    )  # fmt: skip
    row.judge(None if switch.code != 0 else "second switch on tor1's address accepted")
    for what, mac, bmc in (
        ("BMC URL", "52:54:00:aa:00:01", n1.bmc.url),
        ("MAC", n1.mac, "ipmi://127.0.0.1:6299"),
    ):
        added = lab.admin(
            "node", "add", "n9", "--mac", mac, "--switch", SWITCH, "--port", "ge-0/0/5",
            "--bmc", bmc,
        )  # fmt: skip
        row.judge(None if added.code != 0 else f"second node with n1's {what} accepted")
        lab.admin("node", "delete", "n9")


@attack("VLAN exhaustion by one project", "per-project quotas for networks and instances")
def vlan_exhaustion(lab: ModelLab, row: Row) -> None:
    """Keep creating networks; every one beyond the project's quota is a try that must
    be refused (409 naming the quota), so no project can take every VLAN."""
    quota = lab.world.settings.quota_networks
    with lab.world.db.session() as s:  # the networks alpha has already
        owned = len(
            list(s.scalars(select(Network.id).join(Project).where(Project.name == "alpha")))
        )
    for i in range(quota + 5):
        reply = lab.tenant("alpha").post(
            "/v1/projects/alpha/networks",
            json={"name": f"grab{i}", "cidr": f"10.{100 + i // 256}.{i % 256}.0/24"},
        )
        if reply.status_code == 201:
            owned += 1
            if owned > quota:
                row.got(f"network {owned} created beyond the quota of {quota}")
        elif owned >= quota:
            row.judge(
                None if "quota" in reply.text else f"refused for another reason: {reply.text}"
            )


@attack("rich markup in user text", "nothing a user supplied is interpreted as markup")
def markup(lab: ModelLab, row: Row) -> None:
    url = lab.world.lab.image_url + "?x=[/oops][bold]"
    # A refused request's message (with the user's text in it) goes to the audit log.
    lab.tenant("alpha").post("/v1/instances", json=body(lab, "bad", "n1", "http://x/ [/oops]"))
    reply = lab.tenant("alpha").post("/v1/instances", json=body(lab, "mark", "n1", url))
    commands = [["audit"]]
    if reply.status_code == 202:
        commands += [["instance", "list"], ["instance", "show", "mark"]]
    for args in commands:
        result = lab.admin(*args)
        eaten = "oops" in result.output and "[/oops]" not in result.output
        if result.code != 0 or eaten:
            row.got(f"`{' '.join(args)}` exit {result.code}: {result.output.strip()[-80:]!r}")
        else:
            row.held()


@attack(
    "409 and history leaks across tenants",
    "tenants see only their own names; operator detail goes to operator views",
)
def leaks(lab: ModelLab, row: Row) -> None:
    spawn(lab, "alpha", "secretname", "n1")
    reply = lab.tenant("beta").post("/v1/instances", json=body(lab, "probe", "n1"))
    told = [w for w in ("secretname", "alpha", "active", "deploying") if w in reply.text]
    row.judge(f"409 names {told}: {reply.text}" if told else None)
    lab.node("n2").bmc.stall()
    lab.tenant("beta").post("/v1/instances", json=body(lab, "stalled", "n2"))
    view = until(WAIT, "stalled to end", lambda: _final(lab, "beta", "stalled"))
    lab.node("n2").bmc.stall(False)
    shown = json.dumps(view)
    operator = (lab.node("n2").bmc.url, "netconf", f"{socket.gethostname()}:")
    secrets = [s for s in operator if s in shown]
    row.judge(f"tenant history shows {secrets}" if secrets else None)


@attack("/metrics, /v1/audit and /docs", "metrics behind a token; limits validated; docs local")
def endpoints(lab: ModelLab, row: Row) -> None:
    base = f"http://{lab.controller.host}:{lab.controller.port}"
    with lab.world.db.session() as s:
        admin = apitokens.create(s, "bench-admin", None)[1]
    metrics = httpx.get(f"{base}/metrics")
    row.judge(f"/metrics without a token: {metrics.status_code}" if metrics.is_success else None)
    audit = httpx.get(f"{base}/v1/audit?limit=-1", headers={"Authorization": f"Bearer {admin}"})
    row.judge(f"/v1/audit?limit=-1: {audit.status_code}" if audit.is_success else None)
    docs = httpx.get(f"{base}/docs")
    cdn = "cdn" in docs.text or "https://" in docs.text
    row.judge("/docs loads scripts from a CDN" if docs.is_success and cdn else None)


@attack(
    "configuration colliding with live data", "on start, settings are checked against the database"
)
def config_collision(lab: ModelLab, row: Row) -> None:
    config = write_config(
        lab.tmp / "collide.toml",
        database_url=lab.db_url,
        service_vlan=lab.world.vlans["alpha"],
        controller_listen=f"127.0.0.1:{free_port()}",
    )
    serve = subprocess.Popen(
        [sys.executable, "-m", "metalnet", "--config", str(config), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = serve.communicate(timeout=20)
        refused = serve.returncode != 0 and str(lab.world.vlans["alpha"]) in output
        row.judge(None if refused else f"serve exit {serve.returncode}: {output[-100:]!r}")
    except subprocess.TimeoutExpired:
        serve.terminate()
        serve.communicate(timeout=20)
        row.got(f"serve ran with service_vlan = project VLAN {lab.world.vlans['alpha']}")


@attack(
    "a node name breaking DHCP",
    "host names are DHCP-safe; a deleted instance's reservation goes with it",
)
def dhcp_names(lab: ModelLab, row: Row) -> None:
    from metalnet.dhcp.dnsmasq import DnsmasqError, check_config, render_dnsmasq
    from metalnet.dhcp.reservations import project_network

    lab.admin("node", "delete", "n3")
    n3 = lab.node("n3")
    lab.admin(
        "node", "add", "web.1", "--mac", n3.mac, "--switch", SWITCH, "--port", n3.interface,
        "--bmc", n3.bmc.url,
    )  # fmt: skip
    lab.settle()
    lab.tenant("alpha").post("/v1/instances", json=body(lab, "d1", "web.1"))

    def rendered() -> str:
        with lab.world.db.session() as s:
            net = s.scalar(select(Network).where(Network.vlan == lab.world.vlans["alpha"]))
            return render_dnsmasq(project_network(s, net, "lo"))

    try:
        check_config(rendered())
        row.held()
    except (DnsmasqError, InputError) as exc:
        row.got(f"dnsmasq refuses the network's configuration: {exc}")
    lab.tenant("alpha").delete("/v1/instances/d1")
    lab.settle()
    try:
        kept = n3.mac in rendered()
    except InputError as exc:
        row.got(f"after the delete the configuration still fails: {exc}")
    else:
        row.judge(f"reservation of {n3.mac} kept after the delete" if kept else None)


@attack("secrets at rest and in transit", "secrets encrypted at rest; serve --tls-cert/--tls-key")
def secrets(lab: ModelLab, row: Row) -> None:
    with lab.world.db.engine.connect() as conn:
        switch_pw = conn.execute(text("select password from switches")).scalar()
        bmc_pw = conn.execute(text("select bmc_password from nodes")).scalar()
    row.judge("switch password stored in clear" if switch_pw == lab.switch.password else None)
    row.judge("BMC password stored in clear" if bmc_pw == "lab-bmc-pw" else None)
    helptext = lab.admin("serve", "--help").output
    row.judge(None if "--tls-cert" in helptext else "serve speaks plain HTTP only (no --tls-cert)")


# Running -------------------------------------------------------------------------------


def run(names: list[str]) -> list[Row]:
    rows = []
    for name in names:
        rule, fn = ATTACKS[name]
        row = Row(name, rule)
        print(f"{name} ...", file=sys.stderr, flush=True)
        lab = ModelLab()
        try:
            lab.settle()
            fn(lab, row)
        except Exception:
            row.crashed = traceback.format_exc(limit=4)
            row.through.append("attack crashed: " + row.crashed.strip().splitlines()[-1])
        finally:
            lab.close()
        rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    """The attack table as fixed-width text."""
    lines = [("attack", "tries", "refused", "got through")]
    for r in rows:
        through = r.through or ["-"]
        lines.append((r.attack, str(r.tries), f"{r.refused}/{r.tries}", through[0]))
        lines += [("", "", "", more) for more in through[1:]]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    out = [
        "  ".join([*(c.ljust(w) for c, w in zip(line[:3], widths, strict=True)), line[3]])
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in [*widths, 11]))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(ATTACKS), help="repeatable")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    names = args.only or list(ATTACKS)
    started = time.monotonic()
    rows = run(names)
    text_table = table(rows)
    print(text_table)
    through = sum(bool(r.through) for r in rows)
    seconds = time.monotonic() - started
    print(f"\n{len(rows)} attacks, {through} got through, in {seconds:.0f}s")
    if args.json:
        document = {
            "commit": _commit(),
            "seconds": round(seconds, 1),
            "table": text_table,
            "attacks": [asdict(r) for r in rows],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if through else 0


def _commit() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return head.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
